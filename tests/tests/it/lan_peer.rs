//! Peer mode end to end with real processes on loopback: a host started
//! with `serve --lan-bind` on 127.0.0.2, peers started with `serve
//! --peer-of` on 127.0.0.3 and 127.0.0.4, paired with `lan pair --link`
//! and approved by an admin. The relay of REST and the WebSocket, resume
//! across a host restart (nothing lost, nothing twice), the term in the
//! handshake and in `welcome`, revocation cutting one peer off at once,
//! pinning failures (another host's key, the host's certificate replayed
//! with another key, a certificate that spells the pinned ID, a man in the
//! middle) all refused, nothing but `/api/…` relayed, and the `Host`
//! check on every listener.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kefu_server::lan::HostAddress;
use kefu_server::lan::client::{self, DeviceClient, PairingProgress};
use kefu_server::lan::device_id::DeviceId;
use kefu_server::lan::identity::Identity;
use kefu_server::lan::pairing::PairingCode;
use kefu_server::lan::state::{LanStateFile, PinnedHost};
use kefu_server::lan::tls::ServerTrust;
use kefu_tests::{Closed, WAIT, Ws};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::lan_tls::{mitm_server_config, replayed, server_config_for};

const HOST_IP: &str = "127.0.0.2";
const PEER_IP: &str = "127.0.0.3";
const OTHER_PEER_IP: &str = "127.0.0.4";

fn kefu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kefu-server-under-test"))
}

fn free_addr(ip: &str) -> SocketAddr {
    std::net::TcpListener::bind(format!("{ip}:0"))
        .expect("bind")
        .local_addr()
        .expect("addr")
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("in time")
}

async fn call(
    base: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("http://{base}{path}"))
        .timeout(WAIT);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A host process: `serve --bind 127.0.0.2:P --lan-bind 127.0.0.2:Q
/// --public-bind 127.0.0.2:R`: its visitors come through the public
/// listener, as a shop's website and APPs do.
struct Host {
    child: Child,
    dir: tempfile::TempDir,
    http: SocketAddr,
    lan: SocketAddr,
    public: SocketAddr,
    admin: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Host {
    async fn start() -> Host {
        Host::start_at(free_addr(HOST_IP)).await
    }

    async fn start_at(lan: SocketAddr) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = kefu()
            .args(["admin", "create", "--data-dir"])
            .arg(dir.path())
            .args(["--username", "owner", "--password", "owner-password"])
            .output()
            .expect("admin create");
        assert!(output.status.success());
        let http = free_addr(HOST_IP);
        let public = free_addr(HOST_IP);
        let child = Host::spawn(dir.path(), http, lan, public);
        let mut host = Host {
            child,
            dir,
            http,
            lan,
            public,
            admin: String::new(),
        };
        host.ready().await;
        host
    }

    fn spawn(dir: &Path, http: SocketAddr, lan: SocketAddr, public: SocketAddr) -> Child {
        kefu()
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--bind", &http.to_string()])
            .args(["--lan-bind", &lan.to_string()])
            .args(["--public-bind", &public.to_string()])
            .args(["--durability", "os"])
            .env("RUST_LOG", "warn")
            .env("KEFU_LIMITS__LOGIN_PER_MINUTE", "0")
            .env("KEFU_LIMITS__PASSWORD_ATTEMPTS_PER_ACCOUNT_PER_HOUR", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn host")
    }

    async fn ready(&mut self) {
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(response) = client
                .get(format!("http://{}/readyz", self.http))
                .send()
                .await
                && response.status() == 200
            {
                self.admin = self.login("owner", "owner-password").await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("host did not become ready");
    }

    /// Kills the process (as a crash or a power cut would) and starts it
    /// again on the same data dir and addresses.
    async fn restart(&mut self) {
        self.stop();
        self.child = Host::spawn(self.dir.path(), self.http, self.lan, self.public);
        self.ready().await;
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        call(self.http, method, path, token, body).await
    }

    async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    async fn create_agent(&self, username: &str) {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/agents",
                Some(&self.admin),
                Some(json!({"username": username, "password": "agent-password", "display_name": username})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// A visitor of a new app, on the public listener: (visitor token,
    /// conversation ID).
    async fn visitor(&self) -> (String, String) {
        let (status, app) = self
            .call(
                Method::POST,
                "/api/v1/apps",
                Some(&self.admin),
                Some(json!({"name": "Shop"})),
            )
            .await;
        assert_eq!(status, 201, "{app}");
        let (status, session) = call(
            self.public,
            Method::POST,
            "/api/v1/visitor/sessions",
            None,
            Some(json!({"app_key": app["app"]["app_key"]})),
        )
        .await;
        assert_eq!(status, 201, "{session}");
        (
            session["token"].as_str().expect("token").to_owned(),
            session["conversation_id"]
                .as_str()
                .expect("conversation")
                .to_owned(),
        )
    }

    /// A visitor's message, through the public listener.
    async fn visitor_says(&self, token: &str, id: &str, content: &str) -> u64 {
        let (status, body) = call(
            self.public,
            Method::POST,
            "/api/v1/visitor/messages",
            Some(token),
            Some(json!({"client_msg_id": id, "content": content})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        body["message"]["seq"].as_u64().expect("seq")
    }

    fn address(&self) -> HostAddress {
        HostAddress::from(self.lan)
    }

    fn device_id(&self) -> DeviceId {
        Identity::open(self.dir.path())
            .expect("host identity")
            .0
            .device_id()
    }

    async fn approve(&self, device: &DeviceId, code: &str) {
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/lan/devices/{device}/approve"),
                Some(&self.admin),
                Some(json!({"code": code})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

fn read_state(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("lan/state.json")).expect("state.json");
    serde_json::from_str(&text).expect("json")
}

/// Pairs the device in `dir` with `host` through the CLI, `lan pair
/// --link`, the admin approving with the code it prints.
async fn pair_with_link(host: &Host, dir: &Path, link: &str) {
    let mut pairing = kefu()
        .args(["lan", "pair", "--link", link, "--name", "Counter"])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lan pair");
    let stdout = BufReader::new(pairing.stdout.take().expect("stdout"));
    let reading = tokio::task::spawn_blocking(move || {
        let mut stdout = stdout;
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        (line, stdout)
    });
    // Keep its stdout open: it prints once more when paired.
    let (line, _stdout) = within(reading).await.expect("task");
    let code = line
        .trim()
        .strip_prefix("pairing code: ")
        .unwrap_or_else(|| panic!("no code in {line:?}"))
        .to_owned();
    let device = Identity::open(dir).expect("identity").0.device_id();
    host.approve(&device, &code).await;
    let output = within(tokio::task::spawn_blocking(move || {
        pairing.wait_with_output()
    }))
    .await
    .expect("task")
    .expect("wait");
    assert!(
        output.status.success(),
        "lan pair failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

struct CodeOut(Option<tokio::sync::oneshot::Sender<PairingCode>>);

impl PairingProgress for CodeOut {
    fn code(&mut self, _: &DeviceId, code: PairingCode) {
        if let Some(out) = self.0.take() {
            let _ = out.send(code);
        }
    }
}

/// Pairs the device in `dir` with `host` from the library (faster than
/// the CLI, same exchange) and pins the host in its state.
async fn pair_in_process(host: &Host, dir: &Path) {
    let (identity, _) = Identity::load_or_create(dir, &[]).expect("identity");
    let (code_in, code_out) = tokio::sync::oneshot::channel();
    let address = host.address();
    let mut progress = CodeOut(Some(code_in));
    let pairing = Box::pin(client::pair(
        &identity,
        &address,
        Some(host.device_id()),
        Some("Back office"),
        Duration::from_millis(100),
        &mut progress,
    ));
    let approval = async {
        let code = code_out.await.expect("code");
        host.approve(&identity.device_id(), &code.to_string()).await;
    };
    let (paired, ()) = within(async { tokio::join!(pairing, approval) }).await;
    let paired = paired.expect("paired");
    LanStateFile::open(dir)
        .expect("state")
        .become_peer(paired.host)
        .expect("pin");
}

/// A peer process: `serve --bind IP:P --peer-of HOST`, its log in a file.
struct Peer {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn spawn(dir: &Path, ip: &str, host: SocketAddr) -> Peer {
        let addr = free_addr(ip);
        let log_dir = tempfile::tempdir().expect("tempdir");
        let log = log_dir.path().join("peer.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = kefu()
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--bind", &addr.to_string()])
            .args(["--peer-of", &host.to_string()])
            // Everything it logs, to check no token gets there.
            .env("RUST_LOG", "debug")
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawn peer");
        Peer {
            child,
            addr,
            log,
            _log_dir: log_dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        call(self.addr, method, path, token, body).await
    }

    /// Polls the link until `check` holds; returns that status.
    async fn link_until(&self, check: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            if let Ok(response) = reqwest::Client::new()
                .get(format!("http://{}/api/v1/lan/link", self.addr))
                .timeout(WAIT)
                .send()
                .await
                && let Ok(status) = response.json::<Value>().await
            {
                if check(&status) {
                    return status;
                }
                last = status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the link never got there; last status {last}");
    }

    async fn connected(&self) -> Value {
        self.link_until(|status| status["state"] == "connected")
            .await
    }

    async fn login(&self, username: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": username, "password": "agent-password"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// An agent's WebSocket through the relay: hello, welcome.
    async fn ws(&self, token: &str, resume: Value) -> (Ws, Value) {
        let mut ws = within(Ws::connect(&format!("ws://{}/api/v1/ws", self.addr))).await;
        ws.send(json!({"type": "hello", "token": token, "resume": resume}))
            .await;
        let welcome = ws.next().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (ws, welcome)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The next `message` frames of `conversation`, `count` of them.
async fn messages(ws: &mut Ws, conversation: &str, count: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let frame = ws.next_of("message").await;
        if frame["message"]["conversation_id"] == conversation {
            seen.push(frame["message"].clone());
        }
    }
    seen
}

#[tokio::test]
async fn a_peer_relays_rest_and_the_websocket_and_resumes_across_a_host_restart() {
    let mut host = Host::start().await;
    host.create_agent("amy").await;

    // The manual path: the host's link, from its CLI and its admin status.
    let (status, lan) = host
        .call(Method::GET, "/api/v1/lan/status", Some(&host.admin), None)
        .await;
    assert_eq!(status, 200, "{lan}");
    let link = lan["pairing_links"][0].as_str().expect("link").to_owned();
    assert_eq!(
        link,
        format!("kefu://pair?host={}&id={}", host.lan, host.device_id())
    );
    let output = kefu()
        .args(["lan", "link", "--address", &host.lan.to_string()])
        .arg("--data-dir")
        .arg(host.dir.path())
        .output()
        .expect("lan link");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), link);

    let peer_dir = tempfile::tempdir().expect("tempdir");
    pair_with_link(&host, peer_dir.path(), &link).await;
    let state = read_state(peer_dir.path());
    assert_eq!(state["role"], "peer");
    assert_eq!(state["host"]["device_id"], host.device_id().to_string());

    let peer = Peer::spawn(peer_dir.path(), PEER_IP, host.lan);
    let status = peer.connected().await;
    assert_eq!(status["role"], "peer");
    assert_eq!(status["host"], host.lan.to_string());
    assert_eq!(status["host_device_id"], host.device_id().to_string());
    assert_eq!(status["term"], 1);
    assert_eq!(status["refusal"], Value::Null);
    let (status, _) = peer.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200);

    // Agents sign in with their accounts on the host, through the relay.
    let token = peer.login("amy").await;
    let (status, me) = peer
        .call(Method::GET, "/api/v1/agents/me", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["agent"]["username"], "amy", "{me}");
    let (status, body) = peer
        .call(Method::GET, "/api/v1/agents/me", Some("not-a-token"), None)
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");

    let (visitor, conversation) = host.visitor().await;
    let first = host.visitor_says(&visitor, "v1", "hello?").await;
    let (mut ws, welcome) = peer.ws(&token, json!({&conversation: 0})).await;
    assert_eq!(welcome["role"], "agent");
    assert_eq!(welcome["term"], 1, "{welcome}");
    let caught_up = messages(&mut ws, &conversation, 1).await;
    assert_eq!(caught_up[0]["seq"], first);
    assert_eq!(caught_up[0]["content"], "hello?");

    // A reply through the relayed socket reaches the host's log.
    ws.send(json!({"type": "send", "client_msg_id": "a1", "conversation_id": conversation, "content": "hi from the counter"}))
        .await;
    let ack = ws.next_of("ack").await;
    let reply_seq = ack["message"]["seq"].as_u64().expect("seq");
    // The visitor, on the host's public listener, reads the reply an agent
    // gave on a peer.
    let (status, visible) = call(
        host.public,
        Method::GET,
        "/api/v1/visitor/messages",
        Some(&visitor),
        None,
    )
    .await;
    assert_eq!(status, 200, "{visible}");
    assert!(
        visible["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["content"] == "hi from the counter"),
        "{visible}"
    );
    // Live frames arrive through the relay too.
    let live = host.visitor_says(&visitor, "v2", "thanks").await;
    let frame = messages(&mut ws, &conversation, 1).await;
    assert_eq!(frame[0]["seq"], live);
    let mut held = live;
    assert!(held > reply_seq);

    // The host goes down: the relayed socket drops, the link says so,
    // REST through the peer is 503 (the protocol's error body).
    host.stop();
    assert_ne!(ws.closed().await, Closed::Code(1000));
    let down = peer
        .link_until(|s| s["state"] == "reconnecting" || s["state"] == "unreachable")
        .await;
    assert!(down["message"].is_string(), "{down}");
    let (status, body) = peer
        .call(Method::GET, "/api/v1/agents/me", Some(&token), None)
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let (status, _) = peer.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 503);

    // It comes back (a new term); meanwhile the visitor wrote on.
    host.restart().await;
    let mut missed = Vec::new();
    for (n, text) in ["one", "two", "three"].iter().enumerate() {
        missed.push(host.visitor_says(&visitor, &format!("m{n}"), text).await);
    }
    let status = peer
        .link_until(|s| s["state"] == "connected" && s["term"] == 2)
        .await;
    assert_eq!(status["highest_term_seen"], 2);
    assert_eq!(read_state(peer_dir.path())["highest_term_seen"], 2);

    // The agent resumes by seq through the relay: exactly what it missed,
    // in order, then nothing more.
    let (mut ws, welcome) = peer.ws(&token, json!({&conversation: held})).await;
    assert_eq!(welcome["term"], 2);
    let resumed = messages(&mut ws, &conversation, 3).await;
    let seqs: Vec<u64> = resumed
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, missed, "every missed message once, in order");
    held = *seqs.last().expect("last");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(
        ws.next().await["type"],
        "pong",
        "no duplicate before the pong"
    );
    let transcript = host
        .call(
            Method::GET,
            &format!("/api/v1/conversations/{conversation}/messages?after={held}"),
            Some(&host.admin),
            None,
        )
        .await;
    assert_eq!(transcript.1["messages"], json!([]), "nothing after {held}");

    // Nothing secret in the peer's log, at debug level.
    let log = peer.log();
    assert!(!log.is_empty(), "the peer logs");
    assert!(!log.contains(&token), "a token in the peer's log");
    assert!(!log.contains("agent-password"), "a password in the log");
    assert!(!log.contains(&visitor), "a visitor token in the log");
}

#[tokio::test]
async fn revoking_a_peer_cuts_it_off_at_once_and_leaves_the_other_peer() {
    let host = Host::start().await;
    host.create_agent("amy").await;
    host.create_agent("bob").await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    pair_in_process(&host, dir_a.path()).await;
    pair_in_process(&host, dir_b.path()).await;
    let peer_a = Peer::spawn(dir_a.path(), PEER_IP, host.lan);
    let peer_b = Peer::spawn(dir_b.path(), OTHER_PEER_IP, host.lan);
    peer_a.connected().await;
    peer_b.connected().await;
    let (amy, bob) = (peer_a.login("amy").await, peer_b.login("bob").await);
    let (mut ws_a, _) = peer_a.ws(&amy, json!({})).await;
    let (mut ws_b, _) = peer_b.ws(&bob, json!({})).await;

    // The host tells the two devices apart.
    let (_, devices) = host
        .call(Method::GET, "/api/v1/lan/devices", Some(&host.admin), None)
        .await;
    let devices = devices["devices"].as_array().expect("devices").clone();
    assert_eq!(devices.len(), 2);
    let id_b = Identity::open(dir_b.path()).expect("id").0.device_id();
    let b = devices
        .iter()
        .find(|d| d["device_id"] == id_b.to_string())
        .expect("device b");
    assert!(b["connections"].as_u64().expect("connections") >= 1, "{b}");

    let (status, body) = host
        .call(
            Method::POST,
            &format!("/api/v1/lan/devices/{id_b}/revoke"),
            Some(&host.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // At once: the relayed socket ends without waiting for any timeout.
    within(ws_b.closed()).await;
    let refused = peer_b.link_until(|s| s["state"] == "refused").await;
    assert_eq!(refused["refusal"], "not_approved", "{refused}");
    let (status, body) = peer_b
        .call(Method::GET, "/api/v1/agents/me", Some(&bob), None)
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");

    // The other peer is untouched.
    ws_a.send(json!({"type": "ping"})).await;
    assert_eq!(ws_a.next().await["type"], "pong");
    let (status, _) = peer_a
        .call(Method::GET, "/api/v1/agents/me", Some(&amy), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(peer_a.connected().await["state"], "connected");
}

#[tokio::test]
async fn a_peer_refuses_a_host_whose_term_is_lower_than_one_it_has_seen() {
    let host = Host::start().await;
    host.create_agent("amy").await;
    let peer_dir = tempfile::tempdir().expect("tempdir");
    pair_in_process(&host, peer_dir.path()).await;
    // This device has seen term 5 (a newer host, before a handover); the
    // host it is pinned to is at term 1: an old host.
    LanStateFile::open(peer_dir.path())
        .expect("state")
        .observe_term(5)
        .expect("observe");
    let peer = Peer::spawn(peer_dir.path(), PEER_IP, host.lan);
    let status = peer.link_until(|s| s["state"] == "refused").await;
    assert_eq!(status["refusal"], "stale_term", "{status}");
    assert_eq!(status["highest_term_seen"], 5);
    let message = status["message"].as_str().expect("message");
    assert!(
        message.contains("term 1") && message.contains("term 5"),
        "{message}"
    );
    // Nothing is relayed to it: not even a login.
    let (code, body) = peer
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "amy", "password": "agent-password"})),
        )
        .await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let (code, _) = peer.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 503);
    // The highest term seen never goes down.
    assert_eq!(read_state(peer_dir.path())["highest_term_seen"], 5);
}

/// A TLS listener on an address, counting handshakes that completed.
struct Impostor {
    task: tokio::task::JoinHandle<()>,
    completed: Arc<AtomicUsize>,
}

impl Impostor {
    async fn listen(address: SocketAddr, config: rustls::ServerConfig) -> Impostor {
        let listener = bind_again(address).await;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let completed = Arc::new(AtomicUsize::new(0));
        let counting = Arc::clone(&completed);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counting = Arc::clone(&counting);
                tokio::spawn(async move {
                    if let Ok(mut stream) = acceptor.accept(tcp).await {
                        let mut buffer = [0u8; 1];
                        // A client that proved nothing sends no request.
                        if matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {
                            counting.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Impostor { task, completed }
    }

    fn stop(self) -> usize {
        self.task.abort();
        self.completed.load(Ordering::SeqCst)
    }
}

async fn bind_again(address: SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = tokio::net::TcpListener::bind(address).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot bind {address} again");
}

#[tokio::test]
async fn the_peer_refuses_another_key_a_replayed_certificate_a_lookalike_and_a_man_in_the_middle() {
    // The host the peer paired with, known by its key only; the impostors
    // take its address in turn.
    let address = free_addr(HOST_IP);
    let real_dir = tempfile::tempdir().expect("tempdir");
    let (real, _) = Identity::load_or_create(real_dir.path(), &[]).expect("identity");
    let pinned = real.device_id();
    let peer_dir = tempfile::tempdir().expect("tempdir");
    Identity::load_or_create(peer_dir.path(), &[]).expect("peer identity");
    LanStateFile::open(peer_dir.path())
        .expect("state")
        .become_peer(PinnedHost {
            address: HostAddress::from(address),
            device_id: pinned,
            history_id: None,
        })
        .expect("pin");
    let peer = Peer::spawn(peer_dir.path(), PEER_IP, address);

    // 1. Another Kefu host (another key) at the pinned address: a changed
    //    certificate, as after a reinstall.
    let other = Host::start_at(address).await;
    let other_id = other.device_id();
    let status = peer.link_until(|s| s["refusal"] == "pin_mismatch").await;
    assert_eq!(status["state"], "refused");
    let message = status["message"].as_str().expect("message");
    assert!(message.contains(&pinned.to_string()), "{message}");
    assert!(message.contains(&other_id.to_string()), "{message}");
    let (code, body) = peer
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "owner", "password": "owner-password"})),
        )
        .await;
    assert_eq!(code, 503, "{body}");
    let text = body["error"]["message"].as_str().expect("message");
    assert!(
        text.contains(&pinned.to_string()) && text.contains(&other_id.to_string()),
        "{text}"
    );
    drop(other);

    // 2. The pinned host's own certificate (same device ID, the same
    //    fingerprint string) with another key: the handshake signature
    //    gives it away.
    let replay = Impostor::listen(
        address,
        mitm_server_config(replayed(real.certificate_der())),
    )
    .await;
    let status = peer.link_until(|s| s["refusal"] == "handshake").await;
    assert_eq!(status["state"], "refused");
    let (code, _) = peer
        .call(Method::GET, "/api/v1/agents/me", None, None)
        .await;
    assert_eq!(code, 503);
    assert_eq!(replay.stop(), 0, "the replaying impostor got a request");

    // 3. A certificate that spells the pinned ID in its names, another key.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["kefu.local".to_owned()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, pinned.to_string());
    let lookalike = params.self_signed(&key).expect("cert");
    let lookalike_id = DeviceId::from_certificate(lookalike.der()).expect("id");
    let impostor =
        Impostor::listen(address, server_config_for(lookalike.der().clone(), &key)).await;
    let status = peer
        .link_until(|s| {
            s["refusal"] == "pin_mismatch"
                && s["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&lookalike_id.to_string()))
        })
        .await;
    assert!(
        status["message"]
            .as_str()
            .expect("message")
            .contains(&pinned.to_string())
    );
    assert_eq!(impostor.stop(), 0);

    // 4. A man in the middle on the host's address: its own key (it would
    //    relay to the real host behind it).
    let mitm_dir = tempfile::tempdir().expect("tempdir");
    let (mitm, _) = Identity::load_or_create(mitm_dir.path(), &[]).expect("identity");
    let mitm_config = kefu_server::lan::tls::server_config(&mitm).expect("config");
    let impostor = Impostor::listen(address, mitm_config).await;
    let status = peer
        .link_until(|s| {
            s["refusal"] == "pin_mismatch"
                && s["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&mitm.device_id().to_string()))
        })
        .await;
    assert_eq!(status["state"], "refused");
    let (code, _) = peer
        .call(Method::GET, "/api/v1/agents/me", None, None)
        .await;
    assert_eq!(code, 503);
    assert_eq!(impostor.stop(), 0, "the man in the middle got a request");
}

/// One raw HTTP/1.1 request over plain TCP; the status code.
async fn raw_status(addr: SocketAddr, request: &str) -> u16 {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = within(tcp.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"))
}

#[tokio::test]
async fn a_peer_relays_only_the_api_and_every_listener_checks_the_host_header() {
    let host = Host::start().await;
    let peer_dir = tempfile::tempdir().expect("tempdir");
    pair_in_process(&host, peer_dir.path()).await;
    let peer = Peer::spawn(peer_dir.path(), PEER_IP, host.lan);
    peer.connected().await;
    let me = peer.addr;

    // The workstation is served by the peer itself; the host's other
    // routes are not reachable, however the path is spelt.
    let (status, _) = peer.call(Method::GET, "/", None, None).await;
    assert_eq!(status, 200);
    for path in ["/metrics", "/lan/v1/hello", "/lan/v1/pair", "/widget.js"] {
        let (status, body) = peer.call(Method::GET, path, None, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    for target in [
        "/api/v1/../../metrics",
        "/api/v1/%2e%2e/%2e%2e/lan/v1/hello",
        "/api/v1%2f..%2f..%2fmetrics",
        "/api/./v1/agents/me",
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: {me}\r\nConnection: close\r\n\r\n");
        assert_eq!(raw_status(me, &request).await, 404, "{target}");
    }
    // An absolute-form target naming another server, and CONNECT: the
    // relay is no proxy.
    let request = format!(
        "GET http://{}/metrics HTTP/1.1\r\nHost: {me}\r\nConnection: close\r\n\r\n",
        host.http
    );
    assert_eq!(raw_status(me, &request).await, 404);
    let request = format!(
        "GET http://evil.example/api/v1/agents/me HTTP/1.1\r\nHost: {me}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_status(me, &request).await, 421);
    let request = format!(
        "GET http://{me}/api/v1/../../metrics HTTP/1.1\r\nHost: {me}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_status(me, &request).await, 404);
    let request = format!(
        "CONNECT {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        host.lan, host.lan
    );
    assert_ne!(raw_status(me, &request).await, 200);
    let (status, _) = peer
        .call(Method::TRACE, "/api/v1/agents/me", None, None)
        .await;
    assert_eq!(status, 405);

    // DNS rebinding: a foreign Host is 421 on the peer, on the host's
    // loopback listener and on its LAN listener.
    for addr in [me, host.http] {
        let request = "GET /api/v1/agents/me HTTP/1.1
Host: evil.example
Connection: close

";
        assert_eq!(raw_status(addr, request).await, 421, "{addr}");
    }
    let request =
        "GET /api/v1/lan/link HTTP/1.1\r\nHost: kefu.evil.example:80\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(me, request).await, 421);
    let (identity, _) = Identity::open(peer_dir.path()).expect("identity");
    let mut device = DeviceClient::connect(
        &identity,
        ServerTrust::Pinned(host.device_id()),
        &host.address(),
    )
    .await
    .expect("device connection");
    let request = http::Request::builder()
        .uri("/lan/v1/hello")
        .header(http::header::HOST, "evil.example")
        .body(axum::body::Body::empty())
        .expect("request");
    let (status, body) = device.send(request).await.expect("send");
    assert_eq!(status, 421, "{body}");
    // The relay handshake itself, with the right Host: the term is there.
    let (status, hello) = device
        .request(Method::GET, "/lan/v1/hello", None, None)
        .await
        .expect("hello");
    assert_eq!(status, 200, "{hello}");
    assert_eq!(hello["term"], 1);
    assert_eq!(hello["host_device_id"], host.device_id().to_string());
    assert_eq!(hello["device_id"], identity.device_id().to_string());
}

#[tokio::test]
async fn peer_mode_refuses_a_lan_address_an_unpaired_device_and_a_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |bind: &str, dir: &Path| {
        kefu()
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--bind", bind, "--peer-of", "127.0.0.2:5339"])
            .output()
            .expect("serve")
    };
    // Not paired.
    let output = run(&format!("{PEER_IP}:0"), dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not paired"), "{stderr}");
    // Paired, but asked to listen beyond loopback.
    Identity::load_or_create(dir.path(), &[]).expect("identity");
    LanStateFile::open(dir.path())
        .expect("state")
        .become_peer(PinnedHost {
            address: "127.0.0.2:5339".parse().expect("address"),
            device_id: DeviceId::from_bytes([7; 32]),
            history_id: None,
        })
        .expect("pin");
    let output = run("0.0.0.0:0", dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback only"), "{stderr}");
    // Hosting and joining exclude each other.
    let output = kefu()
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--lan-bind", "127.0.0.2:0", "--peer-of", "127.0.0.2:5339"])
        .output()
        .expect("serve");
    assert!(!output.status.success());
}

#[test]
fn a_hosts_own_announcement_is_found_across_namespaces() {
    let Some(ns) = crate::lan_discovery::namespaces_or_skip(
        "lan_peer::a_hosts_own_announcement_is_found_across_namespaces",
    ) else {
        return;
    };
    // A real host process in namespace a, announcing on its veth only.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kefu.toml");
    std::fs::write(
        &config,
        format!(
            "[lan]\nbind = \"10.231.0.1:5339\"\n[lan.mdns]\nenabled = true\ninterfaces = [\"{}\"]\n",
            ns.interfaces[0]
        ),
    )
    .expect("config");
    let mut host = Command::new("ip")
        .args(["netns", "exec", &ns.names[0]])
        .arg(env!("CARGO_BIN_EXE_kefu-server-under-test"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the host");
    let mut browser = ns.probe(1, &["browse", "--interface", &ns.interfaces[1]]);
    // The identity is made at start, before the term is written; the
    // browser is already listening.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while std::fs::read_to_string(dir.path().join("lan/state.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_none_or(|state| state["role"] != "host")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the host never started"
        );
        assert!(
            host.try_wait().expect("host").is_none(),
            "the host process exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let id = Identity::open(dir.path())
        .expect("identity")
        .0
        .device_id()
        .to_string();
    let found = browser.until(
        "the host's own announcement",
        |_| {},
        |v| crate::lan_discovery::host_with(v, &id).is_some(),
    );
    let entry = crate::lan_discovery::host_with(&found, &id).expect("entry");
    assert_eq!(entry["term"], 1, "{entry}");
    assert_eq!(entry["addresses"], json!(["10.231.0.1:5339"]), "{entry}");
    let _ = host.kill();
    let _ = host.wait();
}

/// What a webview sends before each JSON request: a CORS preflight (the
/// desktop's page has the origin `tauri://localhost`, its server another).
/// Through a peer it reaches the host's LAN listener, whose CORS layer
/// answers it; that answer passes the gate and carries the term like every
/// other, so the relay accepts it and the link stays connected (found by
/// the desktop e2e: the preflight's answer once had no term, and the peer
/// refused the host).
#[tokio::test]
async fn a_webviews_cors_preflight_through_a_peer_is_answered_and_keeps_the_link() {
    let host = Host::start().await;
    host.create_agent("amy").await;
    let dir = tempfile::tempdir().expect("tempdir");
    pair_in_process(&host, dir.path()).await;
    let peer = Peer::spawn(dir.path(), PEER_IP, host.lan);
    peer.connected().await;
    let client = reqwest::Client::new();
    let response = client
        .request(
            Method::OPTIONS,
            format!("http://{}/api/v1/auth/login", peer.addr),
        )
        .header("origin", "tauri://localhost")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .timeout(WAIT)
        .send()
        .await
        .expect("preflight");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "tauri://localhost"
    );
    assert!(
        response.headers().get("kefu-term").is_none(),
        "the relay keeps the term to itself"
    );
    let status = peer.link_until(|_| true).await;
    assert_eq!(status["state"], "connected", "{status}");
    // The request that follows, with the same origin.
    let response = client
        .post(format!("http://{}/api/v1/auth/login", peer.addr))
        .header("origin", "tauri://localhost")
        .json(&json!({"username": "amy", "password": "agent-password"}))
        .timeout(WAIT)
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "tauri://localhost"
    );
}
