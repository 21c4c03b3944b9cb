//! systemd's `Type=notify` (issue 19 item 4): the real binary, started with
//! `NOTIFY_SOCKET` naming a Unix datagram socket this test binds (as
//! systemd does), says `READY=1` only once it answers on its address, feeds
//! the watchdog at half `WATCHDOG_USEC`, and says `STOPPING=1` on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::net::UnixDatagram;

async fn next_datagram(socket: &UnixDatagram) -> String {
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(60), socket.recv(&mut buffer))
        .await
        .expect("a notification within 60 s")
        .expect("recv");
    String::from_utf8(buffer[..read].to_vec()).expect("utf-8")
}

#[tokio::test]
async fn serve_notifies_readiness_watchdog_and_stopping() {
    kefu_tests::unix_server_only(
        "systemd's NOTIFY_SOCKET is a Unix datagram socket, and the test stops the server with SIGTERM",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let data_dir = dir.path().join("data");
    let mut child = std::process::Command::new(kefu_tests::server_bin(env!(
        "CARGO_BIN_EXE_kefu-server-under-test"
    )))
    .args(["serve", "--data-dir"])
    .arg(&data_dir)
    .args(["--bind", "127.0.0.1:0"])
    .env_remove("KEFU_CONFIG")
    .env("RUST_LOG", "warn")
    .env("NOTIFY_SOCKET", &socket_path)
    // systemd sets WATCHDOG_PID too; without it the variable is for us.
    .env("WATCHDOG_USEC", "400000")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");

    // READY=1 comes with the address, and the server answers there at once.
    let ready = next_datagram(&socket).await;
    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "{ready:?}");
    let addr = lines
        .iter()
        .find_map(|l| l.strip_prefix("STATUS=serving on "))
        .unwrap_or_else(|| panic!("no status with the address: {ready:?}"));
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .expect("the server answers once it said READY=1");
    assert_eq!(response.status(), 200);

    // The watchdog is fed at half the interval (200 ms): several in 2 s.
    let mut fed = 0;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let message = next_datagram(&socket).await;
        assert_eq!(message, "WATCHDOG=1\n", "only the watchdog while serving");
        fed += 1;
    }
    assert!(fed >= 4, "watchdog fed {fed} times in 2 s");

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let mut stopping = String::new();
    for _ in 0..10 {
        stopping = next_datagram(&socket).await;
        if stopping != "WATCHDOG=1\n" {
            break;
        }
    }
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "exit {status:?}");
}

#[tokio::test]
async fn without_notify_socket_nothing_is_sent_and_serving_works() {
    kefu_tests::unix_server_only(
        "systemd's NOTIFY_SOCKET is a Unix datagram socket, and the test stops the server with SIGTERM",
    );
    // The desktop app and every other test run without NOTIFY_SOCKET; an
    // unreachable one is logged, never fatal.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(kefu_tests::server_bin(env!(
        "CARGO_BIN_EXE_kefu-server-under-test"
    )))
    .args(["serve", "--data-dir"])
    .arg(dir.path().join("data"))
    .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
    .env_remove("KEFU_CONFIG")
    .env("RUST_LOG", "warn")
    .env("NOTIFY_SOCKET", dir.path().join("nobody-listens.sock"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn");
    let server_json = dir.path().join("data").join("server.json");
    let mut started = false;
    for _ in 0..400 {
        if server_json.exists() {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started, "the server did not start");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still serving"
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    assert!(output.status.success(), "exit {:?}", output.status);
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(logs.contains("sd_notify failed"), "{logs}");
}
