//! The `kefu-server` command line as scripts and the desktop app use it.

use std::process::{Command, Stdio};

fn kefu() -> Command {
    Command::new(kefu_tests::server_bin(env!(
        "CARGO_BIN_EXE_kefu-server-under-test"
    )))
}

#[test]
fn admin_create_and_taken_username() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = kefu()
        .args(["admin", "create", "--data-dir"])
        .arg(dir.path())
        .args(["--username", "boss", "--password", "boss-password"])
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("created admin boss"));

    let output = kefu()
        .args(["admin", "create", "--data-dir"])
        .arg(dir.path())
        .args(["--username", "BOSS", "--password", "other-password"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("taken"), "{stderr}");

    let output = kefu()
        .args(["admin", "create", "--data-dir"])
        .arg(dir.path())
        .args(["--username", "weak", "--password", "short"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 8"));
}

#[test]
fn admin_password_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = kefu()
        .args(["admin", "create", "--data-dir"])
        .arg(dir.path())
        .args(["--username", "boss", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"from-stdin-password\n")
        .expect("write");
    assert!(child.wait().expect("wait").success());
}

#[tokio::test]
async fn admin_create_while_the_server_runs() {
    let server = kefu_tests::TestServer::start().await;
    let output = kefu()
        .args(["admin", "create", "--data-dir"])
        .arg(server.data_dir())
        .args(["--username", "second", "--password", "second-password"])
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (status, body) = server
        .post(
            "/api/v1/auth/login",
            None,
            kefu_tests::serde_json::json!({"username": "second", "password": "second-password"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agent"]["role"], "admin");
    server.shutdown().await;
}

#[test]
fn config_precedence_file_env_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kefu.toml");
    std::fs::write(&file, "bind = \"127.0.0.1:6001\"\ndurability = \"os\"\n[limits]\ncontent_bytes = 1000\nmeta_bytes = 100\n")
        .expect("write");
    let print = |env: &[(&str, &str)], flags: &[&str]| {
        let mut command = kefu();
        command
            .args(["serve", "--print-config", "--config"])
            .arg(&file)
            .args(flags);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().expect("run");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf8")
    };
    let text = print(&[], &[]);
    assert!(text.contains("bind = \"127.0.0.1:6001\""), "{text}");
    assert!(text.contains("content_bytes = 1000"), "{text}");
    assert!(text.contains("durability = \"os\""), "{text}");
    let text = print(
        &[
            ("KEFU_BIND", "127.0.0.1:6002"),
            ("KEFU_LIMITS__META_BYTES", "200"),
        ],
        &[],
    );
    assert!(text.contains("bind = \"127.0.0.1:6002\""), "{text}");
    assert!(text.contains("meta_bytes = 200"), "{text}");
    let text = print(
        &[("KEFU_BIND", "127.0.0.1:6002")],
        &["--bind", "127.0.0.1:6003", "--durability", "fsync"],
    );
    assert!(text.contains("bind = \"127.0.0.1:6003\""), "{text}");
    assert!(text.contains("durability = \"fsync\""), "{text}");
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kefu.toml");
    std::fs::write(&file, "bnid = \"x\"\n").expect("write");
    let output = kefu()
        .args(["serve", "--print-config", "--config"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    let output = kefu()
        .args([
            "serve",
            "--print-config",
            "--config",
            "/nonexistent/kefu.toml",
        ])
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    let output = kefu()
        .args(["serve", "--bind", "not-an-address"])
        .output()
        .expect("run");
    assert!(!output.status.success());
}

#[tokio::test]
async fn sigterm_stops_gracefully() {
    kefu_tests::unix_server_only(
        "sends SIGTERM (Windows stops the server by console events: every test's Ctrl-C)",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = kefu()
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "server never answered /healthz");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let output = tokio::task::spawn_blocking(move || {
        let _ = child.stdin.take();
        child.wait_with_output()
    })
    .await
    .expect("join")
    .expect("wait");
    assert!(output.status.success(), "exit {:?}", output.status);
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(
        logs.contains("\"stopped\""),
        "json logs end with a stop record: {logs}"
    );
}
