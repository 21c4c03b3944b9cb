//! A backup restored on a LAN device (issue 18, docs/LAN.md "A restored
//! backup"), with real processes, a real backup (`kefu-server backup` from
//! the running host) and `kefu-server restore`: terms never go backwards
//! across a restore, and a backup whose term is behind what the device has
//! seen (another device took the shop over) is restored but refuses to
//! host, saying how to join as a peer.

use std::path::Path;

use kefu_server::lan::device_id::DeviceId;
use kefu_server::lan::state::LanStateFile;
use serde_json::Value;

use crate::lan_failover::{Server, create_owner, free_addr, kefu};

const HOST_IP: &str = "127.0.0.2";

fn state(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("lan/state.json")).expect("state"))
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_behind_the_shop_refuses_to_host_and_says_how_to_join() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    std::fs::create_dir_all(&dir).expect("mkdir");
    create_owner(&dir);
    let mut host = Server::start(&dir, HOST_IP).await;
    let admin = host.login().await;
    assert_eq!(host.status(&admin).await["term"], 1);
    let backup = root.path().join("backup-term-1");
    let output = kefu()
        .args(["backup", "--data-dir"])
        .arg(&dir)
        .arg("--to")
        .arg(&backup)
        .output()
        .expect("backup");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    host.restart(&dir).await;
    let admin = host.login().await;
    assert_eq!(host.status(&admin).await["term"], 2);
    host.kill_9();

    // 1. Its own backup (term 1): restored, and it hosts again in a term
    // above every one it had, never term 2 again.
    let output = kefu()
        .args(["restore", "--data-dir"])
        .arg(&dir)
        .arg("--from")
        .arg(&backup)
        .output()
        .expect("restore");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains("will not host"), "{stdout}");
    assert_eq!(state(&dir)["term"], 2, "the device's term carried over");
    let host = Server::start(&dir, HOST_IP).await;
    let admin = host.login().await;
    assert_eq!(host.status(&admin).await["term"], 3);
    drop(host);

    // 2. Another device took the shop over in term 7 (what the new host's
    // fence writes here), then the old backup is restored: the copy is in
    // place, but it does not host, and the operator is told how to join.
    // (The data dir set aside is named by the second: not the first one's.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let took_over = DeviceId::from_bytes([3; 32]);
    assert!(
        LanStateFile::open(&dir)
            .expect("state")
            .demote(7, took_over)
            .expect("demote")
    );
    let output = kefu()
        .args(["restore", "--data-dir"])
        .arg(&dir)
        .arg("--from")
        .arg(&backup)
        .output()
        .expect("restore");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("will not host"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "kefu-server lan pair --host ADDRESS --id {took_over}"
        )),
        "{stdout}"
    );
    let restored = state(&dir);
    assert_eq!(restored["term"], 3, "{restored}");
    assert_eq!(restored["highest_term_seen"], 7, "{restored}");
    assert_eq!(restored["superseded_by"]["term"], 7, "{restored}");
    let output = kefu()
        .args(["serve", "--data-dir"])
        .arg(&dir)
        .args(["--bind", &free_addr(HOST_IP).to_string()])
        .args(["--lan-bind", &free_addr(HOST_IP).to_string()])
        .output()
        .expect("serve");
    assert!(!output.status.success(), "a restored old backup hosted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("took it over in term 7"), "{stderr}");
    assert!(stderr.contains("lan pair"), "{stderr}");
    // Still refused at the next try: nothing in the refusal lifted it.
    assert_eq!(state(&dir)["superseded_by"]["term"], 7);
}
