//! Pairing and the relay across two network namespaces (the veth pair of
//! `lan_discovery`, 10.231.0.0/24 inside the namespaces only): a host
//! process in namespace a, listening on the LAN at 10.231.0.1, and a peer
//! in namespace b that finds it over mDNS, pairs with `lan pair --link`
//! (the admin approving on the host with the code it printed), then runs
//! `serve --peer-of` and relays an agent's REST and WebSocket to the host,
//! where a visitor's message arrives and the agent's reply goes back. The
//! same as on loopback (lan_peer.rs), but over a real link between two
//! network stacks, as two computers of a shop are.
//!
//! The test's own HTTP and WebSocket clients enter a namespace with
//! `setns(2)` before they connect (a socket stays in the namespace it was
//! made in). Where namespaces cannot be made (not root, no `ip`), the test
//! prints "SKIPPED: …" and passes, as lan_discovery's do.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kefu_server::lan::identity::Identity;
use kefu_tests::Ws;
use nix::sched::{CloneFlags, setns};
use reqwest::Method;
use serde_json::{Value, json};

use crate::lan_discovery::{Namespaces, host_with, namespaces_or_skip};

const HOST_LAN: &str = "10.231.0.1:5339";
const HOST_HTTP: &str = "127.0.0.1:5338";
const PEER_HTTP: &str = "127.0.0.1:5340";

/// Kills the process on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn kefu_in(ns: &Namespaces, index: usize) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &ns.names[index]])
        .arg(env!("CARGO_BIN_EXE_kefu-server-under-test"));
    command
}

/// Moves this thread into namespace `index` (0 = a, 1 = b): the sockets it
/// makes from now on are there.
pub(crate) fn enter(ns: &Namespaces, index: usize) {
    let file = File::open(format!("/run/netns/{}", ns.names[index])).expect("namespace file");
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
}

async fn call(
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    // A new client each time: its connections are made in the namespace
    // the thread is in now.
    let mut request = reqwest::Client::new()
        .request(method, format!("http://{base}{path}"))
        .timeout(Duration::from_secs(20));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> Option<Value>) -> Value {
    for _ in 0..400 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn a_peer_in_another_namespace_finds_pairs_with_and_relays_to_the_host() {
    kefu_tests::in_process_only("runs the Linux build inside network namespaces");
    let Some(ns) = namespaces_or_skip("lan_netns::a_peer_in_another_namespace_finds_pairs_with")
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // The host, in namespace a, announcing on its veth only.
    let host_dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_kefu-server-under-test"))
        .args(["admin", "create", "--data-dir"])
        .arg(host_dir.path())
        .args(["--username", "owner", "--password", "owner-password"])
        .output()
        .expect("admin create");
    assert!(output.status.success());
    let config = host_dir.path().join("kefu.toml");
    std::fs::write(
        &config,
        format!(
            "[lan]\nbind = \"{HOST_LAN}\"\n[lan.mdns]\nenabled = true\ninterfaces = [\"{}\"]\n",
            ns.interfaces[0]
        ),
    )
    .expect("config");
    let _host = Process(
        kefu_in(&ns, 0)
            .args([
                "serve",
                "--bind",
                HOST_HTTP,
                "--durability",
                "os",
                "--data-dir",
            ])
            .arg(host_dir.path())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the host"),
    );
    enter(&ns, 0);
    let admin = runtime.block_on(until("the host", async || {
        let (status, body) = call(
            HOST_HTTP,
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "owner", "password": "owner-password"})),
        )
        .await;
        (status == 200).then_some(body)
    }))["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (status, lan) = runtime.block_on(call(
        HOST_HTTP,
        Method::GET,
        "/api/v1/lan/status",
        Some(&admin),
        None,
    ));
    assert_eq!(status, 200, "{lan}");
    let link = lan["pairing_links"][0].as_str().expect("link").to_owned();
    let host_id = Identity::open(host_dir.path())
        .expect("identity")
        .0
        .device_id()
        .to_string();
    assert_eq!(link, format!("kefu://pair?host={HOST_LAN}&id={host_id}"));

    // In namespace b, the host is found over mDNS, at its LAN address.
    let mut browser = ns.probe(1, &["browse", "--interface", &ns.interfaces[1]]);
    let found = browser.until(
        "the host's announcement",
        |_| {},
        |v| host_with(v, &host_id).is_some(),
    );
    let entry = host_with(&found, &host_id).expect("entry");
    assert_eq!(entry["addresses"], json!([HOST_LAN]), "{entry}");
    drop(browser);

    // The peer pairs from namespace b with the link; the admin approves
    // with the code it prints.
    let peer_dir = tempfile::tempdir().expect("tempdir");
    let mut pairing = kefu_in(&ns, 1)
        .args([
            "lan",
            "pair",
            "--link",
            &link,
            "--name",
            "Back office",
            "--data-dir",
        ])
        .arg(peer_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lan pair");
    let mut stdout = BufReader::new(pairing.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the code");
    let code = line
        .trim()
        .strip_prefix("pairing code: ")
        .unwrap_or_else(|| panic!("no code in {line:?}"))
        .to_owned();
    let peer_id = Identity::open(peer_dir.path())
        .expect("identity")
        .0
        .device_id();
    let (status, devices) = runtime.block_on(call(
        HOST_HTTP,
        Method::GET,
        "/api/v1/lan/devices",
        Some(&admin),
        None,
    ));
    assert_eq!(status, 200, "{devices}");
    let pending = &devices["devices"][0];
    assert_eq!(pending["device_id"], peer_id.to_string());
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["code"], code, "both sides show the same code");
    assert_eq!(pending["address"], "10.231.0.2", "it paired over the veth");
    let (status, body) = runtime.block_on(call(
        HOST_HTTP,
        Method::POST,
        &format!("/api/v1/lan/devices/{peer_id}/approve"),
        Some(&admin),
        Some(json!({"code": code})),
    ));
    assert_eq!(status, 200, "{body}");
    let output = pairing.wait_with_output().expect("lan pair");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The peer relays from namespace b to the host in namespace a.
    let _peer = Process(
        kefu_in(&ns, 1)
            .args([
                "serve",
                "--bind",
                PEER_HTTP,
                "--peer-of",
                HOST_LAN,
                "--data-dir",
            ])
            .arg(peer_dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the peer"),
    );
    // A visitor on the host (namespace a).
    let (status, app) = runtime.block_on(call(
        HOST_HTTP,
        Method::POST,
        "/api/v1/apps",
        Some(&admin),
        Some(json!({"name": "Shop"})),
    ));
    assert_eq!(status, 201, "{app}");
    let (status, session) = runtime.block_on(call(
        HOST_HTTP,
        Method::POST,
        "/api/v1/visitor/sessions",
        None,
        Some(json!({"app_key": app["app"]["app_key"]})),
    ));
    assert_eq!(status, 201, "{session}");
    let visitor = session["token"].as_str().expect("token").to_owned();
    let conversation = session["conversation_id"].as_str().expect("id").to_owned();
    let (status, _) = runtime.block_on(call(
        HOST_HTTP,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(&visitor),
        Some(json!({"client_msg_id": "n1", "content": "across the namespaces?"})),
    ));
    assert_eq!(status, 201);

    // The agent on the peer (namespace b): link connected, sign-in and the
    // WebSocket through the relay, the visitor's message caught up, the
    // reply acknowledged by the host.
    enter(&ns, 1);
    let link_status = runtime.block_on(until("the peer's link", async || {
        let (status, body) = call(PEER_HTTP, Method::GET, "/api/v1/lan/link", None, None).await;
        (status == 200 && body["state"] == "connected").then_some(body)
    }));
    assert_eq!(link_status["host"], HOST_LAN);
    assert_eq!(link_status["host_device_id"], host_id);
    let (status, body) = runtime.block_on(call(
        PEER_HTTP,
        Method::POST,
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "owner", "password": "owner-password"})),
    ));
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let reply_seq = runtime.block_on(async {
        let mut ws = Ws::connect(&format!("ws://{PEER_HTTP}/api/v1/ws")).await;
        ws.send(json!({"type": "hello", "token": token, "resume": {&conversation: 0}}))
            .await;
        let welcome = ws.next().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let message = ws.next_of("message").await;
        assert_eq!(message["message"]["content"], "across the namespaces?");
        ws.send(json!({"type": "send", "client_msg_id": "r1", "conversation_id": conversation, "content": "yes, through the relay"}))
            .await;
        ws.next_of("ack").await["message"]["seq"].as_u64().expect("seq")
    });

    // Back in namespace a: the visitor sees the reply.
    enter(&ns, 0);
    let (status, visible) = runtime.block_on(call(
        HOST_HTTP,
        Method::GET,
        "/api/v1/visitor/messages",
        Some(&visitor),
        None,
    ));
    assert_eq!(status, 200, "{visible}");
    assert!(
        visible["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["seq"] == reply_seq && m["content"] == "yes, through the relay"),
        "{visible}"
    );
}
