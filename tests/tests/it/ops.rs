//! Running Kefu for real (issue 19): `backup` (asking a running server,
//! or offline), `verify-backup`, `restore`, scheduled backups, `doctor`
//! and `healthcheck`, each as a separate `kefu-server` process against
//! real servers, real RocksDB and SQLite in temp dirs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kefu_tests::TestServer;
use kefu_tests::serde_json::{Value, json};

fn kefu() -> Command {
    let mut command = Command::new(kefu_tests::server_bin(env!(
        "CARGO_BIN_EXE_kefu-server-under-test"
    )));
    command.env_remove("KEFU_CONFIG").env("RUST_LOG", "warn");
    command
}

/// Runs the CLI off the async runtime (the server under test lives on it).
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || kefu().args(&args).output().expect("run kefu-server"))
        .await
        .expect("join")
}

fn args(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<String> {
    parts
        .iter()
        .map(|p| p.as_ref().to_string_lossy().into_owned())
        .collect()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn server_without_message_rate() -> TestServer {
    TestServer::start_with(|config| {
        config.limits.visitor_messages_per_second = 0;
        config.limits.visitor_sessions_per_minute = 0;
    })
    .await
}

async fn server_on(data_dir: &Path) -> TestServer {
    let dir = data_dir.to_path_buf();
    TestServer::start_with(move |config| {
        config.data_dir = dir;
        config.limits.visitor_messages_per_second = 0;
    })
    .await
}

/// Every message of a conversation through the agent REST route.
async fn all_messages(server: &TestServer, token: &str, conversation: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let after = out.last().map_or(0, |m| m["seq"].as_u64().expect("seq"));
        let (status, body) = server
            .get(
                &format!("/api/v1/conversations/{conversation}/messages?after={after}&limit=200"),
                Some(token),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let page = body["messages"].as_array().expect("messages").clone();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Fills a server with `visitors` conversations of `each` messages.
async fn fill(server: &mut TestServer, visitors: usize, each: usize) -> Vec<String> {
    let app = server.app(json!({})).await;
    let mut conversations = Vec::new();
    for v in 0..visitors {
        let visitor = server.visitor(&app).await;
        for i in 0..each {
            let (status, body) = server
                .visitor_says(&visitor, &format!("v{v}-m{i}"), &format!("hello {v} {i}"))
                .await;
            assert_eq!(status, 201, "{body}");
        }
        conversations.push(visitor.conversation_id);
    }
    conversations
}

#[tokio::test]
async fn backup_under_load_then_restore_keeps_every_acked_message() {
    let mut server = server_without_message_rate().await;
    let admin = server.admin().await;
    let app = server.app(json!({})).await;
    let backups = tempfile::tempdir().expect("tempdir");
    let target = backups.path().join("under-load");

    // Concurrent senders, each with its own visitor, sending until told to
    // stop; every ack is recorded as (conversation, seq, content).
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    let mut progress = Vec::new();
    for s in 0..6 {
        let visitor = server.visitor(&app).await;
        let acks = Arc::new(AtomicU64::new(0));
        progress.push((visitor.conversation_id.clone(), Arc::clone(&acks)));
        let http = reqwest::Client::new();
        let url = server.url("/api/v1/visitor/messages");
        let stop = Arc::clone(&stop);
        senders.push(tokio::spawn(async move {
            let mut acked: Vec<(u64, String)> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let content = format!("sender {s} message {i}");
                let response = http
                    .post(&url)
                    .bearer_auth(&visitor.token)
                    .json(&json!({"client_msg_id": format!("s{s}-{i}"), "content": content}))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(response.status(), 201);
                let body: Value = response.json().await.expect("json");
                acked.push((body["message"]["seq"].as_u64().expect("seq"), content));
                acks.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
            (visitor.conversation_id, acked)
        }));
    }
    // Let the load build up, note how much was acked before the backup.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: HashMap<String, u64> = progress
        .iter()
        .map(|(conversation, acks)| (conversation.clone(), acks.load(Ordering::SeqCst)))
        .collect();
    let output = run(args(&[
        &"backup",
        &"--data-dir",
        &server.data_dir(),
        &"--to",
        &target,
    ]))
    .await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("asking it"),
        "{}",
        text(&output)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = HashMap::new();
    for sender in senders {
        let (conversation, messages) = sender.await.expect("sender");
        assert!(messages.len() > 5, "the sender got acks");
        acked.insert(conversation, messages);
    }

    let output = run(args(&[&"verify-backup", &target])).await;
    assert!(output.status.success(), "{}", text(&output));

    let restored_dir = backups.path().join("restored-data");
    let output = run(args(&[
        &"restore",
        &"--from",
        &target,
        &"--data-dir",
        &restored_dir,
    ]))
    .await;
    assert!(output.status.success(), "{}", text(&output));

    let second = server_on(&restored_dir).await;
    let mut restored_total = 0;
    for (conversation, messages) in &acked {
        let restored = all_messages(&second, &admin, conversation).await;
        // Gap-free from 1, and each one is the message acked at that seq.
        for (index, message) in restored.iter().enumerate() {
            assert_eq!(message["seq"].as_u64(), Some(index as u64 + 1), "gap");
            let (seq, content) = &messages[index];
            assert_eq!(*seq, index as u64 + 1);
            assert_eq!(message["content"].as_str(), Some(content.as_str()));
        }
        let acked_before = before.get(conversation).copied().unwrap_or(0);
        assert!(
            restored.len() as u64 >= acked_before,
            "{conversation}: {} restored, {acked_before} acked before the backup began",
            restored.len()
        );
        restored_total += restored.len();
    }
    assert!(restored_total > 0);
    // The restored server's conversation list agrees with its log.
    let (status, body) = second
        .get(
            &format!(
                "/api/v1/conversations/{}",
                acked.keys().next().expect("one")
            ),
            Some(&admin),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    second.shutdown().await;

    // SQLite of the restored data is intact (doctor's check 5), and the
    // log is not behind it (check 8).
    let output = run(args(&[&"doctor", &"--data-dir", &restored_dir])).await;
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    assert!(report.contains(" 5. OK"), "{report}");
    assert!(report.contains(" 8. OK"), "{report}");
    server.shutdown().await;
}

/// Each conversation's `last_seq` as the admin sees it now.
async fn counts(server: &TestServer, token: &str) -> HashMap<String, u64> {
    let (status, body) = server
        .get("/api/v1/conversations?limit=200", Some(token))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut out = HashMap::new();
    for conversation in body["conversations"].as_array().expect("conversations") {
        let id = conversation["id"].as_str().expect("id").to_owned();
        // Acked messages are in the log; ask it (derived columns lag).
        let messages = all_messages(server, token, &id).await;
        out.insert(id, messages.len() as u64);
    }
    out
}

fn partials(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".partial-"))
        })
        .collect()
}

#[tokio::test]
async fn kill_9_during_a_backup_never_leaves_a_backup_that_verifies() {
    let mut server = server_without_message_rate().await;
    fill(&mut server, 20, 50).await;
    let data = server.stop().await.expect("data dir");
    let backups = tempfile::tempdir().expect("tempdir");

    // How long a whole offline backup takes here.
    let started = std::time::Instant::now();
    let output = run(args(&[
        &"backup",
        &"--data-dir",
        &data.path(),
        &"--to",
        &backups.path().join("whole"),
    ]))
    .await;
    assert!(output.status.success(), "{}", text(&output));
    let whole = started.elapsed();

    let mut interrupted = 0;
    for round in 0..12u32 {
        let target = backups.path().join(format!("round-{round}"));
        let mut child = kefu()
            .args(["backup", "--data-dir"])
            .arg(data.path())
            .arg("--to")
            .arg(&target)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        // Spread the kills over the backup's whole run.
        let delay = whole.mul_f64(f64::from(round) / 12.0);
        tokio::time::sleep(delay).await;
        let _ = child.kill();
        let status = child.wait().expect("wait");
        if target.exists() {
            // It finished before the kill: then it is whole.
            let output = run(args(&[&"verify-backup", &target])).await;
            assert!(output.status.success(), "{}", text(&output));
        } else {
            assert!(!status.success());
            interrupted += 1;
        }
    }
    assert!(interrupted > 0, "no kill landed during a backup");
    // Whatever the kills left is a temporary that does not verify.
    let left = partials(backups.path());
    assert!(
        !left.is_empty(),
        "no kill landed while a temporary existed ({interrupted} interrupted, whole backup {whole:?})"
    );
    for partial in &left {
        let output = run(args(&[&"verify-backup", partial])).await;
        assert!(!output.status.success(), "{}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("unfinished"),
            "{}",
            text(&output)
        );
    }
    // Even renamed to a backup's name, a temporary without its manifest fails.
    if let Some(partial) = left.first() {
        let renamed = backups.path().join("renamed-partial");
        std::fs::rename(partial, &renamed).expect("rename");
        if !renamed.join("manifest.json").exists() {
            let output = run(args(&[&"verify-backup", &renamed])).await;
            assert!(!output.status.success(), "{}", text(&output));
        }
    }
    // The killed backups let go of the data dir: a server starts on it.
    let server = server_on(data.path()).await;
    server.shutdown().await;
}

/// A small data dir and an offline backup of it.
async fn small_backup(backups: &Path) -> (tempfile::TempDir, PathBuf) {
    let mut server = server_without_message_rate().await;
    fill(&mut server, 3, 5).await;
    let data = server.stop().await.expect("data dir");
    let target = backups.join("small");
    let output = run(args(&[
        &"backup",
        &"--data-dir",
        &data.path(),
        &"--to",
        &target,
    ]))
    .await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("offline"),
        "{}",
        text(&output)
    );
    (data, target)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: Value =
        kefu_tests::serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    edit(&mut manifest);
    std::fs::write(&path, manifest.to_string()).expect("write");
}

fn flip_byte(path: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(at)).expect("seek");
    file.read_exact(&mut byte).expect("read");
    file.seek(SeekFrom::Start(at)).expect("seek");
    file.write_all(&[byte[0] ^ 0xFF]).expect("write");
}

async fn restore(from: &Path, data_dir: &Path) -> Output {
    run(args(&[
        &"restore",
        &"--from",
        &from,
        &"--data-dir",
        &data_dir,
    ]))
    .await
}

#[tokio::test]
async fn restore_refuses_a_running_server_a_newer_backup_and_a_damaged_one() {
    let backups = tempfile::tempdir().expect("tempdir");
    let (_data, backup) = small_backup(backups.path()).await;

    // A running server on the target.
    let mut running = server_without_message_rate().await;
    running.admin().await;
    let output = restore(&backup, running.data_dir()).await;
    assert!(!output.status.success());
    assert!(
        text(&output).contains("server is running"),
        "{}",
        text(&output)
    );
    // Nothing changed: the server still serves its own data.
    let admin = running.admin().await;
    let (status, _) = running.get("/api/v1/agents/me", Some(&admin)).await;
    assert_eq!(status, 200);
    running.shutdown().await;

    // A newer schema, then a newer Kefu.
    let newer_schema = backups.path().join("newer-schema");
    copy_dir(&backup, &newer_schema);
    edit_manifest(&newer_schema, |m| {
        m["schema_version"] = json!(m["schema_version"].as_i64().expect("schema") + 1)
    });
    let target = backups.path().join("target");
    let output = restore(&newer_schema, &target).await;
    assert!(!output.status.success());
    assert!(text(&output).contains("newer"), "{}", text(&output));
    assert!(!target.exists());
    let newer_kefu = backups.path().join("newer-kefu");
    copy_dir(&backup, &newer_kefu);
    edit_manifest(&newer_kefu, |m| m["kefu_version"] = json!("999.0.0"));
    let output = restore(&newer_kefu, &target).await;
    assert!(!output.status.success());
    assert!(text(&output).contains("newer"), "{}", text(&output));
    assert!(!target.exists());

    // One flipped byte in SQLite, then in the log.
    for file in ["kefu.sqlite3", "messages/CURRENT"] {
        let damaged = backups
            .path()
            .join(format!("damaged-{}", file.replace('/', "-")));
        copy_dir(&backup, &damaged);
        flip_byte(&damaged.join(file), 3);
        let output = run(args(&[&"verify-backup", &damaged])).await;
        assert!(!output.status.success());
        assert!(text(&output).contains("damaged"), "{}", text(&output));
        let output = restore(&damaged, &target).await;
        assert!(!output.status.success());
        assert!(
            text(&output).contains("nothing was restored"),
            "{}",
            text(&output)
        );
        assert!(!target.exists());
    }
    // A file added to a backup.
    let extra = backups.path().join("extra");
    copy_dir(&backup, &extra);
    std::fs::write(extra.join("attachments").join("stray"), b"x").expect("write");
    let output = run(args(&[&"verify-backup", &extra])).await;
    assert!(!output.status.success());
    assert!(
        text(&output).contains("not in its manifest"),
        "{}",
        text(&output)
    );

    // Over an existing data dir: the old one is kept beside it.
    let mut other = server_without_message_rate().await;
    fill(&mut other, 1, 1).await;
    let other_dir = other.stop().await.expect("dir");
    let existing = backups.path().join("existing");
    copy_dir(other_dir.path(), &existing);
    let output = restore(&backup, &existing).await;
    assert!(output.status.success(), "{}", text(&output));
    let kept: Vec<_> = std::fs::read_dir(backups.path())
        .expect("read_dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("existing.before-restore-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "the old data dir is kept");
    assert!(kept[0].path().join("kefu.sqlite3").exists());
    // The restored one holds the backup's three conversations.
    let server = server_on(&existing).await;
    let (conversations, messages) = totals(&server).await;
    assert_eq!((conversations, messages), (3, 15));
    server.shutdown().await;
}

/// Conversations and messages the server holds (via doctor-free means: the
/// log through the REST routes).
async fn totals(server: &TestServer) -> (usize, usize) {
    let owner = "restored-owner";
    kefu_server::agents::create(
        &server.state().db,
        kefu_server::agents::NewAgent {
            username: owner.into(),
            password: "owner-password".into(),
            display_name: None,
            role: kefu_server::agents::Role::Admin,
        },
    )
    .await
    .expect("admin");
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            None,
            json!({"username": owner, "password": "owner-password"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let counts = counts(server, &token).await;
    (counts.len(), counts.values().sum::<u64>() as usize)
}

async fn doctor(data_dir: &Path, config: Option<&Path>) -> (bool, String) {
    let mut parts = vec![
        "doctor".to_owned(),
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
    ];
    if let Some(config) = config {
        parts.push("--config".into());
        parts.push(config.display().to_string());
    }
    let output = run(parts).await;
    (output.status.success(), text(&output))
}

fn line(report: &str, number: u32) -> &str {
    let prefix = format!("{number:>2}. ");
    report
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no check {number} in {report}"))
}

#[tokio::test]
async fn doctor_finds_each_broken_case() {
    let mut server = server_without_message_rate().await;
    let conversations = fill(&mut server, 2, 3).await;
    let admin = server.admin().await;
    // An attachment, uploaded for real.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"%PDF-1.4 backup me".to_vec())
            .file_name("doc.pdf")
            .mime_str("application/pdf")
            .expect("mime"),
    );
    let response = server
        .http
        .post(server.url("/api/v1/attachments"))
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 201);

    // Against the running server: reads only, and says so.
    let (ok, report) = doctor(server.data_dir(), None).await;
    assert!(ok, "{report}");
    assert!(line(&report, 4).contains("running"), "{report}");
    // (1 may warn: the harness's temp dir is not 0700.)
    assert!(!line(&report, 1).contains("FAIL"), "{report}");
    for number in [5, 6, 7, 8, 10] {
        assert!(line(&report, number).contains("OK"), "{report}");
    }
    let data = server.stop().await.expect("data dir");
    let dir = data.path();
    let (ok, report) = doctor(dir, None).await;
    assert!(ok, "{report}");
    assert!(line(&report, 4).contains("not running"), "{report}");

    // 1: a data dir its owner cannot use (Unix modes: not a Windows
    // server's check).
    #[cfg(unix)]
    if !kefu_tests::server_is_windows() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).expect("meta").permissions().mode();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        let (ok, report) = doctor(dir, None).await;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
        assert!(!ok, "{report}");
        assert!(line(&report, 1).contains("FAIL"), "{report}");
    }

    // 10: a stray file warns; a missing one fails.
    let attachments = dir.join("attachments");
    std::fs::write(attachments.join("0123456789abcdef"), b"stray").expect("write");
    let (ok, report) = doctor(dir, None).await;
    assert!(ok, "{report}");
    assert!(line(&report, 10).contains("WARN"), "{report}");
    std::fs::remove_file(attachments.join("0123456789abcdef")).expect("rm");
    let stored = std::fs::read_dir(&attachments)
        .expect("read_dir")
        .flatten()
        .find(|e| e.file_type().expect("type").is_file())
        .expect("the uploaded file")
        .path();
    let kept = dir.join("kept-aside");
    std::fs::rename(&stored, &kept).expect("move");
    let (ok, report) = doctor(dir, None).await;
    assert!(!ok, "{report}");
    assert!(line(&report, 10).contains("FAIL"), "{report}");
    std::fs::rename(&kept, &stored).expect("move back");

    // 8: SQLite ahead of the log (as after a lost log tail).
    {
        let pool = kefu_server::store::db::open(dir).await.expect("open");
        sqlx::query("UPDATE conversations SET last_seq = last_seq + 7 WHERE id = ?")
            .bind(&conversations[0])
            .execute(&pool)
            .await
            .expect("update");
        pool.close().await;
    }
    let (ok, report) = doctor(dir, None).await;
    assert!(!ok, "{report}");
    assert!(line(&report, 8).contains("FAIL"), "{report}");
    {
        let pool = kefu_server::store::db::open(dir).await.expect("open");
        sqlx::query("UPDATE conversations SET last_seq = last_seq - 7 WHERE id = ?")
            .bind(&conversations[0])
            .execute(&pool)
            .await
            .expect("update");
        pool.close().await;
    }
    let (ok, report) = doctor(dir, None).await;
    assert!(ok, "{report}");

    // 12: trusting every address.
    let config = dir.join("..").join(format!(
        "doctor-{}.toml",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    std::fs::write(&config, "[http]\ntrusted_proxies = [\"0.0.0.0/0\"]\n").expect("write");
    let (ok, report) = doctor(dir, Some(&config)).await;
    let _ = std::fs::remove_file(&config);
    assert!(!ok, "{report}");
    assert!(line(&report, 12).contains("FAIL"), "{report}");

    // 5: a damaged SQLite file (a page in the middle overwritten).
    let sqlite = dir.join("kefu.sqlite3");
    let size = std::fs::metadata(&sqlite).expect("meta").len();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&sqlite)
            .expect("open");
        file.seek(SeekFrom::Start(size / 2)).expect("seek");
        file.write_all(&vec![0xA5; 8192]).expect("write");
    }
    let (ok, report) = doctor(dir, None).await;
    assert!(!ok, "{report}");
    assert!(line(&report, 5).contains("FAIL"), "{report}");
    assert!(line(&report, 8).contains("SKIP"), "{report}");
}

#[tokio::test]
async fn healthcheck_exit_codes() {
    let server = TestServer::start().await;
    let url = server.url("/readyz");
    let output = run(args(&[&"healthcheck", &"--url", &url])).await;
    assert!(output.status.success(), "{}", text(&output));
    server.shutdown().await;
    let output = run(args(&[&"healthcheck", &"--url", &url])).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    // A route that answers, but not 2xx.
    let server = TestServer::start().await;
    let output = run(args(&[
        &"healthcheck",
        &"--url",
        &server.url("/no-such-route"),
    ]))
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    server.shutdown().await;
}

#[tokio::test]
async fn scheduled_backups_keep_the_newest_and_report_in_metrics() {
    let backups = tempfile::tempdir().expect("tempdir");
    let dir = backups.path().to_path_buf();
    // Two old backups, as an earlier run of the scheduler left them.
    let (_data, real) = small_backup(&dir).await;
    for name in [
        "kefu-backup-20200101T000000Z",
        "kefu-backup-20200102T000000Z",
    ] {
        copy_dir(&real, &dir.join(name));
        edit_manifest(&dir.join(name), |m| {
            m["created_at_ms"] = json!(1_577_836_800_000i64)
        });
    }
    // And a temporary that a killed backup left.
    std::fs::create_dir(dir.join(".kefu-backup-20200103T000000Z.partial-01X")).expect("mkdir");
    let schedule_dir = dir.clone();
    let mut server = TestServer::start_with(move |config| {
        config.backup.dir = Some(schedule_dir);
        config.backup.keep = 2;
        config.backup.interval_minutes = 60;
    })
    .await;
    // The newest is old: the server backs up at once.
    let mut newest = None;
    for _ in 0..200 {
        let names = scheduled(&dir);
        if names.len() == 2 && !names.contains(&"kefu-backup-20200101T000000Z".to_owned()) {
            newest = names.last().cloned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let newest = newest.unwrap_or_else(|| panic!("no scheduled backup: {:?}", scheduled(&dir)));
    assert!(
        !dir.join(".kefu-backup-20200103T000000Z.partial-01X")
            .exists()
    );
    assert!(
        dir.join("small").exists(),
        "other directories are left alone"
    );
    let output = run(args(&[&"verify-backup", &dir.join(&newest)])).await;
    assert!(output.status.success(), "{}", text(&output));
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let stamp: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kefu_backup_last_success_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no backup metric in {metrics}"));
    let now = kefu_server::time::now_ms() / 1000;
    assert!((now - 120..=now).contains(&stamp), "{stamp} vs {now}");

    // The admin route: authz first, then a backup into backup.dir.
    let (status, _) = server.post("/api/v1/admin/backup", None, json!({})).await;
    assert_eq!(status, 401);
    let amy = server.agent("amy").await;
    let (status, _) = server
        .post("/api/v1/admin/backup", Some(&amy.token), json!({}))
        .await;
    assert_eq!(status, 403);
    let admin = server.admin().await;
    let (status, body) = server
        .post(
            "/api/v1/admin/backup",
            Some(&admin),
            json!({"to": dir.join("elsewhere")}),
        )
        .await;
    assert_eq!(status, 403, "an admin cannot choose the path: {body}");
    assert!(!dir.join("elsewhere").exists());
    let (status, body) = server
        .post("/api/v1/admin/backup", Some(&admin), json!({"extra": 1}))
        .await;
    assert_eq!(status, 400, "{body}");
    // A new second, so the name is new.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = server
        .post("/api/v1/admin/backup", Some(&admin), json!({}))
        .await;
    assert_eq!(status, 201, "{body}");
    let reported = body["path"].as_str().expect("path");
    // A Windows server (under Wine) names it on the `Z:` drive, with `\`.
    let path = PathBuf::from(if kefu_tests::server_is_windows() {
        reported.trim_start_matches("Z:").replace('\\', "/")
    } else {
        reported.to_owned()
    });
    assert!(path.starts_with(&dir), "{reported}");
    let (status, body) = server
        .get("/api/v1/audit?action=backup.create", Some(&admin))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(1), "{body}");
    server.shutdown().await;
}

fn scheduled(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with("kefu-backup-"))
        .collect();
    names.sort();
    names
}
