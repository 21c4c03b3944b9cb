//! LAN hosting end to end with real processes on loopback: a host started
//! with `serve --lan-bind` on 127.0.0.2, peers on 127.0.0.3 and .4 (the
//! `lan pair` CLI, and devices driven from the test with
//! `kefu_server::lan::client`). Promotion and terms, TLS only on the LAN
//! port, pairing with both codes equal, approval (admins only), the gate
//! (an unapproved device, a browser), revocation closing open connections
//! at once, pinning against a new key, a look-alike certificate and a man
//! in the middle, and the Host check on the LAN listener.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kefu_server::lan::HostAddress;
use kefu_server::lan::client::{self, DeviceClient, PairingProgress};
use kefu_server::lan::device_id::DeviceId;
use kefu_server::lan::identity::Identity;
use kefu_server::lan::pairing::PairingCode;
use kefu_server::lan::tls::{self, ServerTrust};
use kefu_tests::WAIT;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::lan_tls::{HashOnly, mitm_server_config, replayed, server_config_for};

const HOST_IP: &str = "127.0.0.2";
const PEER_IP: &str = "127.0.0.3";
const OTHER_IP: &str = "127.0.0.4";

pub(crate) fn kefu() -> Command {
    Command::new(kefu_tests::server_bin(env!(
        "CARGO_BIN_EXE_kefu-server-under-test"
    )))
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind(format!("{ip}:0"))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A host process: `serve --bind 127.0.0.2:P --lan-bind 127.0.0.2:Q`.
pub(crate) struct Host {
    child: Child,
    pub(crate) dir: tempfile::TempDir,
    http: SocketAddr,
    lan: SocketAddr,
    reqwest: reqwest::Client,
    pub(crate) admin: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_host(dir: &Path, http: SocketAddr, lan: SocketAddr) -> Child {
    kefu()
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--bind", &http.to_string()])
        .args(["--lan-bind", &lan.to_string()])
        .args(["--durability", "os"])
        .env("RUST_LOG", "warn")
        .env("KEFU_LIMITS__LOGIN_PER_MINUTE", "0")
        .env("KEFU_LIMITS__PASSWORD_ATTEMPTS_PER_ACCOUNT_PER_HOUR", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn host")
}

async fn ready(http: SocketAddr) {
    let client = kefu_tests::http_client();
    for _ in 0..600 {
        if let Ok(response) = client.get(format!("http://{http}/readyz")).send().await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("host did not become ready");
}

impl Host {
    pub(crate) async fn start() -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = kefu()
            .args(["admin", "create", "--data-dir"])
            .arg(dir.path())
            .args(["--username", "owner", "--password", "owner-password"])
            .output()
            .expect("admin create");
        assert!(output.status.success());
        let http: SocketAddr = format!("{HOST_IP}:{}", free_port(HOST_IP))
            .parse()
            .expect("addr");
        let lan: SocketAddr = format!("{HOST_IP}:{}", free_port(HOST_IP))
            .parse()
            .expect("addr");
        let child = spawn_host(dir.path(), http, lan);
        ready(http).await;
        let mut host = Host {
            child,
            dir,
            http,
            lan,
            reqwest: kefu_tests::http_client(),
            admin: String::new(),
        };
        host.admin = host.login("owner", "owner-password").await;
        host
    }

    /// Stops the process (SIGKILL is enough here) and starts it again on
    /// the same data dir and addresses.
    pub(crate) async fn restart(&mut self) {
        self.stop();
        self.child = spawn_host(self.dir.path(), self.http, self.lan);
        ready(self.http).await;
        self.admin = self.login("owner", "owner-password").await;
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

    /// An agent (not an admin), logged in.
    pub(crate) async fn agent(&self, username: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/agents",
                Some(&self.admin),
                Some(json!({"username": username, "password": "agent-password", "display_name": username})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        self.login(username, "agent-password").await
    }

    /// A request over the loopback listener (plain HTTP).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .reqwest
            .request(method, format!("http://{}{path}", self.http));
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

    fn address(&self) -> HostAddress {
        HostAddress::from(self.lan)
    }

    fn device_id(&self) -> DeviceId {
        Identity::open(self.dir.path())
            .expect("host identity")
            .0
            .device_id()
    }

    pub(crate) fn state(&self) -> Value {
        read_state(self.dir.path())
    }

    async fn devices(&self) -> Vec<Value> {
        let (status, body) = self
            .call(Method::GET, "/api/v1/lan/devices", Some(&self.admin), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["devices"].as_array().expect("devices").clone()
    }

    async fn approve(&self, device: &DeviceId, code: &str) -> (u16, Value) {
        self.call(
            Method::POST,
            &format!("/api/v1/lan/devices/{device}/approve"),
            Some(&self.admin),
            Some(json!({"code": code})),
        )
        .await
    }
}

fn read_state(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("lan/state.json")).expect("state.json");
    serde_json::from_str(&text).expect("json")
}

struct Device {
    _dir: tempfile::TempDir,
    identity: Identity,
}

fn device() -> Device {
    let dir = tempfile::tempdir().expect("tempdir");
    let (identity, _) = Identity::load_or_create(dir.path(), &[]).expect("identity");
    Device {
        _dir: dir,
        identity,
    }
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("in time")
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("ip"))
}

/// Sends the code out when pairing reaches it.
struct CodeOut(Option<tokio::sync::oneshot::Sender<PairingCode>>);

impl PairingProgress for CodeOut {
    fn code(&mut self, _: &DeviceId, code: PairingCode) {
        if let Some(out) = self.0.take() {
            let _ = out.send(code);
        }
    }
}

/// Pairs `identity` with `host` from the test (from 127.0.0.3) and has
/// the admin approve it.
async fn pair_and_approve(host: &Host, identity: &Identity) -> client::Paired {
    let (code_in, code_out) = tokio::sync::oneshot::channel();
    let address = host.address();
    let mut progress = CodeOut(Some(code_in));
    // Boxed: the pairing future holds a TLS connection (clippy::large_futures).
    let pairing = Box::pin(client::pair(
        identity,
        &address,
        None,
        Some("Test device"),
        Duration::from_millis(100),
        &mut progress,
    ));
    let approval = async {
        let code = code_out.await.expect("code");
        host.approve(&identity.device_id(), &code.to_string()).await
    };
    let (paired, (status, body)) = within(async { tokio::join!(pairing, approval) }).await;
    assert_eq!(status, 200, "{body}");
    let paired = paired.expect("paired");
    assert_eq!(paired.host.device_id, host.device_id());
    paired
}

/// A raw HTTP/1.1 exchange over TLS without a client certificate (a
/// browser that accepted the certificate warning).
async fn browser_get(host: &Host, path: &str, host_header: &str) -> u16 {
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(HashOnly(host.device_id())))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(host.lan).await.expect("tcp");
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(tls::server_name(&host.address()), tcp)
        .await
        .expect("tls");
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = within(stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"))
}

#[tokio::test]
async fn lan_bind_promotes_with_a_durable_term_and_serves_tls_only() {
    let mut host = Host::start().await;
    let state = host.state();
    assert_eq!(state["role"], "host");
    assert_eq!(state["term"], 1);
    assert_eq!(state["highest_term_seen"], 1);
    let history = state["history_id"].clone();

    let (status, body) = host
        .call(Method::GET, "/api/v1/lan/status", Some(&host.admin), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "host");
    assert_eq!(body["term"], 1);
    assert_eq!(body["history_id"], history);
    assert_eq!(body["device_id"], host.device_id().to_string());
    assert_eq!(body["listening"], host.lan.to_string());
    assert_eq!(body["devices"]["pending"], 0);

    // Plain HTTP on the LAN port: no answer, the handshake fails.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", host.lan))
        .timeout(WAIT)
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    // Pairing routes do not exist on loopback.
    let (status, _) = host
        .call(Method::POST, "/lan/v1/pair", None, Some(json!({})))
        .await;
    assert_eq!(status, 404);

    // Every start as host is a new term, written before serving; the
    // history stays.
    host.restart().await;
    let state = host.state();
    assert_eq!(state["term"], 2);
    assert_eq!(state["history_id"], history);
    let (_, body) = host
        .call(Method::GET, "/api/v1/lan/status", Some(&host.admin), None)
        .await;
    assert_eq!(body["term"], 2);
}

#[tokio::test]
async fn pairing_from_the_cli_with_equal_codes_then_approval_by_an_admin_only() {
    let host = Host::start().await;
    let peer_dir = tempfile::tempdir().expect("tempdir");
    let mut pairing = kefu()
        .args([
            "lan",
            "pair",
            "--host",
            &host.lan.to_string(),
            "--name",
            "Front desk",
        ])
        .arg("--data-dir")
        .arg(peer_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lan pair");
    let mut stdout = BufReader::new(pairing.stdout.take().expect("stdout"));
    let code_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        (line, stdout)
    });
    let (line, mut stdout) = within(code_line).await.expect("task");
    let peer_code = line
        .trim()
        .strip_prefix("pairing code: ")
        .unwrap_or_else(|| panic!("no code in {line:?}"))
        .to_owned();
    assert_eq!(peer_code.len(), 7, "{peer_code}");

    // The host lists the device, pending, with the same code.
    let peer_id = Identity::open(peer_dir.path())
        .expect("peer identity")
        .0
        .device_id();
    let devices = host.devices().await;
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0]["device_id"], peer_id.to_string());
    assert_eq!(devices[0]["status"], "pending");
    assert_eq!(devices[0]["name"], "Front desk");
    assert_eq!(
        devices[0]["code"], peer_code,
        "both sides show the same code"
    );

    // Agents may not approve; visitors do not even see the routes; a
    // wrong code approves nothing.
    let agent = host.agent("amy").await;
    let path = format!("/api/v1/lan/devices/{peer_id}/approve");
    let (status, body) = host
        .call(
            Method::POST,
            &path,
            Some(&agent),
            Some(json!({"code": peer_code})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, _) = host
        .call(Method::GET, "/api/v1/lan/devices", Some(&agent), None)
        .await;
    assert_eq!(status, 403);
    let (status, app) = host
        .call(
            Method::POST,
            "/api/v1/apps",
            Some(&host.admin),
            Some(json!({"name": "Shop"})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let (status, visitor) = host
        .call(
            Method::POST,
            "/api/v1/visitor/sessions",
            None,
            Some(json!({"app_key": app["app"]["app_key"]})),
        )
        .await;
    assert_eq!(status, 201, "{visitor}");
    let visitor_token = visitor["token"].as_str().expect("token");
    let (status, _) = host
        .call(
            Method::GET,
            "/api/v1/lan/devices",
            Some(visitor_token),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let wrong = if peer_code == "000 000" {
        "000 001"
    } else {
        "000 000"
    };
    let (status, body) = host.approve(&peer_id, wrong).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(host.devices().await[0]["status"], "pending");

    let (status, body) = host.approve(&peer_id, &peer_code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device"]["status"], "approved");
    let (status, audit) = host
        .call(
            Method::GET,
            "/api/v1/audit?action=lan.device.approve",
            Some(&host.admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(1),
        "{audit}"
    );

    // The CLI sees the approval, pins the host and exits.
    let status = within(tokio::task::spawn_blocking(move || pairing.wait()))
        .await
        .expect("task")
        .expect("wait");
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read");
    assert!(rest.contains("paired"), "{rest}");
    let state = read_state(peer_dir.path());
    assert_eq!(state["role"], "peer");
    assert_eq!(state["host"]["device_id"], host.device_id().to_string());
    assert_eq!(state["host"]["address"], host.lan.to_string());
    assert_eq!(state["host"]["history_id"], host.state()["history_id"]);

    // `lan check` reaches the pinned host.
    let output = kefu()
        .args(["lan", "check", "--data-dir"])
        .arg(peer_dir.path())
        .output()
        .expect("check");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("approved"));

    // The approved device uses the API over the LAN, from 127.0.0.3.
    let (identity, _) = Identity::open(peer_dir.path()).expect("identity");
    let mut client = DeviceClient::connect_from(
        &identity,
        ServerTrust::Pinned(host.device_id()),
        &host.address(),
        ip(PEER_IP),
    )
    .await
    .expect("connect");
    let (status, body) = client
        .request(
            Method::POST,
            "/api/v1/auth/login",
            Some(&json!({"username": "amy", "password": "agent-password"})),
            None,
        )
        .await
        .expect("login");
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let (status, _) = client
        .request(Method::GET, "/api/v1/conversations", None, Some(&token))
        .await
        .expect("list");
    assert_eq!(status, 200);
    // An agent over the LAN is still not an admin.
    let (status, _) = client
        .request(Method::GET, "/api/v1/lan/devices", None, Some(&token))
        .await
        .expect("devices");
    assert_eq!(status, 403);
}

#[tokio::test]
async fn unapproved_devices_reach_only_pairing_and_browsers_nothing_by_default() {
    let host = Host::start().await;
    let stranger = device();
    let mut client = DeviceClient::connect_from(
        &stranger.identity,
        ServerTrust::Pinned(host.device_id()),
        &host.address(),
        ip(OTHER_IP),
    )
    .await
    .expect("connect");
    for path in ["/healthz", "/api/v1/agents", "/"] {
        let (status, body) = client
            .request(Method::GET, path, None, None)
            .await
            .expect("request");
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, body) = client
        .request(
            Method::POST,
            "/api/v1/auth/login",
            Some(&json!({"username": "owner", "password": "owner-password"})),
            None,
        )
        .await
        .expect("login");
    assert_eq!(status, 403, "{body}");
    let (status, body) = client
        .request(Method::GET, "/lan/v1/pair", None, None)
        .await
        .expect("pair status");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "none");
    // A nonce without a started pairing changes nothing.
    let (status, _) = client
        .request(
            Method::POST,
            "/lan/v1/pair/nonce",
            Some(&json!({"nonce": "00".repeat(32)})),
            None,
        )
        .await
        .expect("nonce");
    assert_eq!(status, 409);
    assert!(host.devices().await.is_empty());

    // A browser (no client certificate): nothing, pairing included.
    let host_header = host.lan.to_string();
    assert_eq!(browser_get(&host, "/healthz", &host_header).await, 403);
    assert_eq!(browser_get(&host, "/lan/v1/pair", &host_header).await, 403);
}

#[tokio::test]
async fn revoking_a_device_closes_its_open_connections_at_once() {
    let host = Host::start().await;
    let peer = device();
    pair_and_approve(&host, &peer.identity).await;
    let agent = host.agent("bo").await;

    // An idle keep-alive connection and a WebSocket, both over the LAN.
    let mut idle = DeviceClient::connect_from(
        &peer.identity,
        ServerTrust::Pinned(host.device_id()),
        &host.address(),
        ip(PEER_IP),
    )
    .await
    .expect("connect");
    let (status, _) = idle
        .request(Method::GET, "/healthz", None, None)
        .await
        .expect("healthz");
    assert_eq!(status, 200);

    let mut config =
        tls::client_config(&peer.identity, ServerTrust::Pinned(host.device_id())).expect("config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(host.lan).await.expect("tcp");
    let stream = tls::connect(Arc::new(config), &host.address(), tcp)
        .await
        .expect("tls");
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://{}/api/v1/ws", host.lan), stream)
            .await
            .expect("websocket over the LAN");
    ws.send(WsMessage::Text(
        json!({"type": "hello", "token": agent, "resume": {}})
            .to_string()
            .into(),
    ))
    .await
    .expect("hello");
    let welcome = within(ws.next()).await.expect("frame").expect("ok");
    let welcome: Value = serde_json::from_str(welcome.to_text().expect("text")).expect("json");
    assert_eq!(welcome["type"], "welcome", "{welcome}");

    // The pairing's own connection is gone once the host saw it close.
    let mut devices = host.devices().await;
    for _ in 0..100 {
        if devices[0]["connections"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        devices = host.devices().await;
    }
    assert_eq!(devices[0]["connections"], 2, "{devices:?}");
    let (status, body) = host
        .call(
            Method::POST,
            &format!("/api/v1/lan/devices/{}/revoke", peer.identity.device_id()),
            Some(&host.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device"]["status"], "revoked");
    assert_eq!(body["closed_connections"], 2);

    // Both end now, not at some timeout.
    within(idle.closed()).await;
    loop {
        match within(ws.next()).await {
            None | Some(Err(_)) => break,
            Some(Ok(WsMessage::Close(_))) => break,
            Some(Ok(_)) => {}
        }
    }
    // And it is refused from then on, pairing again included.
    let mut again = DeviceClient::connect_from(
        &peer.identity,
        ServerTrust::Pinned(host.device_id()),
        &host.address(),
        ip(PEER_IP),
    )
    .await
    .expect("connect");
    let (status, _) = again
        .request(Method::GET, "/healthz", None, None)
        .await
        .expect("request");
    assert_eq!(status, 403);
    let (status, _) = again
        .request(Method::POST, "/lan/v1/pair", Some(&json!({})), None)
        .await
        .expect("pair");
    assert_eq!(status, 403);
    let (_, body) = again
        .request(Method::GET, "/lan/v1/pair", None, None)
        .await
        .expect("status");
    assert_eq!(body["status"], "revoked");
}

#[tokio::test]
async fn the_host_check_applies_on_the_lan_listener() {
    let host = Host::start().await;
    let peer = device();
    pair_and_approve(&host, &peer.identity).await;
    let mut client = DeviceClient::connect_from(
        &peer.identity,
        ServerTrust::Pinned(host.device_id()),
        &host.address(),
        ip(PEER_IP),
    )
    .await
    .expect("connect");
    for (name, expected) in [
        ("evil.example", 421),
        ("127.0.0.2.nip.io", 421),
        ("kefu.local", 200),
        ("localhost", 200),
    ] {
        let request = http::Request::get("/healthz")
            .header(http::header::HOST, name)
            .body(axum::body::Body::empty())
            .expect("request");
        let (status, body) = client.send(request).await.expect("send");
        assert_eq!(status.as_u16(), expected, "Host: {name}: {body}");
    }
}

/// Runs `lan check` for the peer in `dir`: its exit status and stderr.
fn check(dir: &Path) -> (bool, String) {
    let output = kefu()
        .args(["lan", "check", "--data-dir"])
        .arg(dir)
        .output()
        .expect("check");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A TLS listener at `address` that accepts connections until dropped.
fn impostor(address: SocketAddr, config: rustls::ServerConfig) -> tokio::task::JoinHandle<()> {
    let listener = std::net::TcpListener::bind(address).expect("bind the host's address");
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut stream) = acceptor.accept(tcp).await {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 21\r\n\r\n{\"status\":\"approved\"}")
                        .await;
                }
            });
        }
    })
}

// Multi-threaded: the impostors accept while the test waits on the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paired_peer_refuses_a_changed_key_a_lookalike_and_a_man_in_the_middle() {
    let mut host = Host::start().await;
    let peer_dir = tempfile::tempdir().expect("tempdir");
    let (peer_identity, _) = Identity::open(peer_dir.path()).expect("identity");
    let paired = pair_and_approve(&host, &peer_identity).await;
    let mut state = kefu_server::lan::state::LanStateFile::open(peer_dir.path()).expect("state");
    state.become_peer(paired.host).expect("pin");
    drop(state);
    let pinned = host.device_id();
    let (ok, stderr) = check(peer_dir.path());
    assert!(ok, "{stderr}");
    // Anyone can copy the host's certificate: the man in the middle will.
    let real_certificate = {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(host.dir.path().join("lan/identity.crt")).expect("certificate");
        rustls::pki_types::CertificateDer::from_pem_slice(&pem).expect("pem")
    };

    // 1. The host's key changes (identity deleted, a new one made).
    host.stop();
    for file in ["identity.key", "identity.crt", "identity.json"] {
        std::fs::remove_file(host.dir.path().join("lan").join(file)).expect("remove");
    }
    host.restart().await;
    let new_id = host.device_id();
    assert_ne!(new_id, pinned);
    let (ok, stderr) = check(peer_dir.path());
    assert!(!ok, "a new key was accepted");
    assert!(stderr.contains(&pinned.to_string()), "{stderr}");
    assert!(stderr.contains(&new_id.to_string()), "{stderr}");
    host.stop();

    // 2. A certificate that spells the pinned ID, with another key.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["kefu.local".to_owned()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, pinned.to_string());
    let lookalike = params.self_signed(&key).expect("cert");
    let lookalike_id = DeviceId::from_certificate(lookalike.der()).expect("id");
    let listener = impostor(host.lan, server_config_for(lookalike.der().clone(), &key));
    let (ok, stderr) = check(peer_dir.path());
    assert!(!ok, "a look-alike was accepted");
    assert!(stderr.contains(&pinned.to_string()), "{stderr}");
    assert!(stderr.contains(&lookalike_id.to_string()), "{stderr}");
    listener.abort();
    let _ = listener.await;

    // 3. A man in the middle replaying the pinned host's real certificate
    //    without its key: the handshake signature does not verify.
    let listener = impostor(host.lan, mitm_server_config(replayed(&real_certificate)));
    let (ok, stderr) = check(peer_dir.path());
    assert!(!ok, "a man in the middle was accepted: {stderr}");
    assert!(stderr.contains("handshake"), "{stderr}");
    listener.abort();
    let _ = listener.await;
    assert_eq!(
        read_state(peer_dir.path())["host"]["device_id"],
        pinned.to_string()
    );
}
