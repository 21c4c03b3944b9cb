//! "Keep a copy of the shop on this computer" and "Take over" from a
//! peer's own server (issue 18; API.md §2.28; `lan::peer::copy`), with
//! real processes on loopback: a host (`serve --lan-bind`) on 127.0.0.2 and
//! a paired peer (`serve --peer-of`) on 127.0.0.3 whose admin switches its
//! copy on through the peer's local API (no `lan standby` process). Who may
//! is checked (no token, an agent, a bad body: refused, nothing changes);
//! the switch survives the peer's restart; a take-over is refused while
//! the host answers; after `kill -9` of the host the peer says how far
//! behind its copy was, takes over when confirmed, and the same process
//! goes on serving the shop as its host (on its LAN address) with every
//! message its copy had, audited. And a peer whose copy the host's admin
//! hands the shop to goes on as the host on the address the handover named.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::lan_failover::{
    Server, call, create_app, create_owner, free_addr, kefu, make_standby, pair, visitor,
};

const HOST_IP: &str = "127.0.0.2";
const PEER_IP: &str = "127.0.0.3";

fn peer_process(dir: &Path, http: SocketAddr, host_lan: SocketAddr) -> Child {
    kefu()
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--bind", &http.to_string()])
        .args(["--peer-of", &host_lan.to_string()])
        .args(["--durability", "os"])
        .env("RUST_LOG", "warn")
        .env("KEFU_LIMITS__LOGIN_PER_MINUTE", "0")
        .env("KEFU_LIMITS__PASSWORD_ATTEMPTS_PER_ACCOUNT_PER_HOUR", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn peer")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> Option<Value>) -> Value {
    for _ in 0..600 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn copy(peer: SocketAddr, token: &str) -> (u16, Value) {
    call(peer, Method::GET, "/api/v1/lan/copy", Some(token), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_keeps_a_copy_when_its_admin_says_and_takes_the_shop_over_when_the_host_is_gone() {
    let host_dir = tempfile::tempdir().expect("tmp");
    let peer_dir = tempfile::tempdir().expect("tmp");
    create_owner(host_dir.path());
    let mut host = Server::start_on(host_dir.path(), HOST_IP, free_addr(HOST_IP), &[]).await;
    let admin = host.login().await;
    let device = pair(&host, host_dir.path(), &admin, peer_dir.path()).await;
    let (status, body) = call(
        host.http,
        Method::POST,
        "/api/v1/agents",
        Some(&admin),
        Some(json!({"username": "li", "password": "agent-password", "role": "agent"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let app = create_app(&host, &admin).await;
    let (visitor_token, conversation) =
        visitor(&host, app["app"]["app_key"].as_str().expect("key")).await;
    let say = async |n: u32| {
        let (status, body) = call(
            host.public,
            Method::POST,
            "/api/v1/visitor/messages",
            Some(&visitor_token),
            Some(json!({"client_msg_id": format!("m{n}"), "content": format!("message {n}")})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    };
    for n in 1..=5 {
        say(n).await;
    }

    // The peer, with the shop's admin and an agent signed in through it.
    let peer_http = free_addr(PEER_IP);
    let mut peer = Killed(peer_process(peer_dir.path(), peer_http, host.lan));
    until("the peer", async || {
        let (status, _) = call(peer_http, Method::GET, "/readyz", None, None).await;
        (status == 200).then_some(Value::Null)
    })
    .await;
    let login = async |username: &str, password: &str| {
        let (status, body) = call(
            peer_http,
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().expect("token").to_owned()
    };
    let owner = login("owner", "owner-password").await;
    let agent = login("li", "agent-password").await;

    // Who may: an admin of the shop only; a bad body changes nothing.
    let (status, body) = call(peer_http, Method::GET, "/api/v1/lan/copy", None, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = copy(peer_http, &agent).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        peer_http,
        Method::PUT,
        "/api/v1/lan/copy",
        Some(&agent),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = copy(peer_http, &owner).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], false, "{body}");
    assert_eq!(body["copy"], false, "{body}");
    assert_eq!(body["host_reachable"], true, "{body}");
    for bad in [
        json!({"enabled": "yes"}),
        json!({"enabled": true, "more": 1}),
        json!({}),
    ] {
        let (status, body) = call(
            peer_http,
            Method::PUT,
            "/api/v1/lan/copy",
            Some(&owner),
            Some(bad),
        )
        .await;
        assert_eq!(status, 400, "{body}");
    }
    assert!(!peer_dir.path().join("lan/standby.json").exists());
    let (_, body) = copy(peer_http, &owner).await;
    assert_eq!(body["enabled"], false, "{body}");

    // Switched on here, but the host has not made it a standby: it says why.
    let (status, body) = call(
        peer_http,
        Method::PUT,
        "/api/v1/lan/copy",
        Some(&owner),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true, "{body}");
    assert_eq!(body["running"], true, "{body}");
    let refused = until("the host's refusal shown", async || {
        let (_, body) = copy(peer_http, &owner).await;
        body["last_error"].as_str().is_some().then_some(body)
    })
    .await;
    assert!(
        refused["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("403")),
        "{refused}"
    );
    // The host's admin makes it a standby: the copy follows.
    make_standby(&host, &admin, &device).await;
    for n in 6..=10 {
        say(n).await;
    }
    let log_seq = host.status(&admin).await["log_seq"]
        .as_u64()
        .expect("log seq");
    let followed = until("the copy caught up", async || {
        let (_, body) = copy(peer_http, &owner).await;
        (body["applied_seq"].as_u64() >= Some(log_seq) && body["last_error"].is_null())
            .then_some(body)
    })
    .await;
    assert_eq!(followed["copy"], true, "{followed}");
    assert_eq!(followed["full_syncs"], 1, "{followed}");
    assert_eq!(followed["behind_seq"], 0, "{followed}");
    assert_eq!(followed["can_take_over"], false, "{followed}");
    let hosts_view = host.status(&admin).await;
    assert_eq!(hosts_view["standbys"][0]["connected"], true, "{hosts_view}");

    // A take-over while the host answers is refused: hand over instead.
    let (status, body) = call(
        peer_http,
        Method::POST,
        "/api/v1/lan/copy/takeover",
        Some(&owner),
        Some(json!({"confirm": true})),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    // The switch is kept: a restarted peer keeps its copy again by itself.
    drop(peer);
    peer = Killed(peer_process(peer_dir.path(), peer_http, host.lan));
    until("the peer again", async || {
        let (status, _) = call(peer_http, Method::GET, "/readyz", None, None).await;
        (status == 200).then_some(Value::Null)
    })
    .await;
    let (_, body) = copy(peer_http, &owner).await;
    assert_eq!(body["enabled"], true, "{body}");
    assert_eq!(body["running"], true, "{body}");
    for n in 11..=15 {
        say(n).await;
    }
    let log_seq = host.status(&admin).await["log_seq"]
        .as_u64()
        .expect("log seq");
    until("the copy caught up again", async || {
        let (_, body) = copy(peer_http, &owner).await;
        (body["applied_seq"].as_u64() >= Some(log_seq)).then_some(body)
    })
    .await;

    // The host dies. The peer says how far behind it was and may take over.
    host.kill_9();
    let gone = until("the host seen gone", async || {
        let (status, body) = copy(peer_http, &owner).await;
        (status == 200 && body["can_take_over"] == true).then_some(body)
    })
    .await;
    assert_eq!(gone["host_reachable"], false, "{gone}");
    assert_eq!(gone["behind_seq"], 0, "{gone}");
    assert!(gone["seconds_since_contact"].as_f64().is_some(), "{gone}");
    // The agent may not; a take-over needs the confirmation.
    let (status, body) = call(
        peer_http,
        Method::POST,
        "/api/v1/lan/copy/takeover",
        Some(&agent),
        Some(json!({"confirm": true})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        peer_http,
        Method::POST,
        "/api/v1/lan/copy/takeover",
        Some(&owner),
        Some(json!({"confirm": false})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let state: Value = serde_json::from_slice(
        &std::fs::read(peer_dir.path().join("lan/state.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(state["role"], "peer", "nothing changed: {state}");

    let peer_lan = free_addr(PEER_IP);
    let (status, took) = call(
        peer_http,
        Method::POST,
        "/api/v1/lan/copy/takeover",
        Some(&owner),
        Some(json!({"confirm": true, "lan_bind": peer_lan.to_string()})),
    )
    .await;
    assert_eq!(status, 200, "{took}");
    assert_eq!(took["took_over"], true, "{took}");
    assert_eq!(took["behind_seq"], 0, "{took}");
    let term = took["term"].as_u64().expect("term");
    assert!(
        term > hosts_view["term"].as_u64().expect("old term"),
        "{took}"
    );

    // The same process serves the shop as its host now.
    let serving = until("the peer serving as the host", async || {
        let (status, body) = call(
            peer_http,
            Method::GET,
            "/api/v1/lan/status",
            Some(&owner),
            None,
        )
        .await;
        // Not the old host's answer, relayed while the peer still is one.
        (status == 200 && body["role"] == "host" && body["superseded_by"].is_null()).then_some(body)
    })
    .await;
    assert!(serving["term"].as_u64() >= Some(term), "{serving}");
    assert_eq!(serving["listening"], peer_lan.to_string(), "{serving}");
    assert!(
        peer.0.try_wait().expect("wait").is_none(),
        "the process goes on"
    );
    let (status, body) = call(
        peer_http,
        Method::GET,
        &format!("/api/v1/conversations/{conversation}/messages?limit=200"),
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let messages = body["messages"].as_array().expect("messages").clone();
    let ids: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["client_msg_id"].as_str())
        .collect();
    let expected: Vec<String> = (1..=15).map(|n| format!("m{n}")).collect();
    assert_eq!(ids, expected, "every message the copy had, once, in order");
    let (status, audit) = call(
        peer_http,
        Method::GET,
        "/api/v1/audit?action=lan.takeover",
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["entries"][0]["details"]["term"], term, "{audit}");
    assert_eq!(
        audit["entries"][0]["details"]["lan_bind"],
        peer_lan.to_string(),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_whose_copy_is_handed_the_shop_goes_on_as_the_host_on_the_address_named() {
    let host_dir = tempfile::tempdir().expect("tmp");
    let peer_dir = tempfile::tempdir().expect("tmp");
    create_owner(host_dir.path());
    let host = Server::start_on(host_dir.path(), HOST_IP, free_addr(HOST_IP), &[]).await;
    let admin = host.login().await;
    let device = pair(&host, host_dir.path(), &admin, peer_dir.path()).await;
    make_standby(&host, &admin, &device).await;
    let app = create_app(&host, &admin).await;
    let (visitor_token, conversation) =
        visitor(&host, app["app"]["app_key"].as_str().expect("key")).await;
    for n in 1..=5 {
        let (status, body) = call(
            host.public,
            Method::POST,
            "/api/v1/visitor/messages",
            Some(&visitor_token),
            Some(json!({"client_msg_id": format!("m{n}"), "content": format!("message {n}")})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let peer_http = free_addr(PEER_IP);
    let peer = Killed(peer_process(peer_dir.path(), peer_http, host.lan));
    until("the peer", async || {
        let (status, _) = call(peer_http, Method::GET, "/readyz", None, None).await;
        (status == 200).then_some(Value::Null)
    })
    .await;
    let (status, body) = call(
        peer_http,
        Method::PUT,
        "/api/v1/lan/copy",
        Some(&admin),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    until("the standby connected", async || {
        let status = host.status(&admin).await;
        (status["standbys"][0]["connected"] == true
            && status["standbys"][0]["applied_seq"] == status["log_seq"])
            .then_some(status)
    })
    .await;

    // The host's admin hands the shop to it, naming where it will host.
    let peer_lan = free_addr(PEER_IP);
    let (status, handed) = call(
        host.http,
        Method::POST,
        "/api/v1/lan/handover",
        Some(&admin),
        Some(json!({"device_id": device.to_string(), "address": peer_lan.to_string()})),
    )
    .await;
    assert_eq!(status, 200, "{handed}");
    let term = handed["successor"]["term"].as_u64().expect("term");
    let serving = until("the peer serving as the host", async || {
        let (status, body) = call(
            peer_http,
            Method::GET,
            "/api/v1/lan/status",
            Some(&admin),
            None,
        )
        .await;
        // Not the old host's answer, relayed while the peer still is one.
        (status == 200 && body["role"] == "host" && body["superseded_by"].is_null()).then_some(body)
    })
    .await;
    assert!(serving["term"].as_u64() >= Some(term), "{serving}");
    assert_eq!(serving["listening"], peer_lan.to_string(), "{serving}");
    let (status, body) = call(
        peer_http,
        Method::GET,
        &format!("/api/v1/conversations/{conversation}/messages?limit=200"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["client_msg_id"].as_str())
        .collect();
    assert_eq!(ids, ["m1", "m2", "m3", "m4", "m5"]);
    drop(peer);
}
