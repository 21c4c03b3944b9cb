//! The reverse-proxy set-ups of docs/LAN.md ("Visitors") with the configs
//! kept in the repository (deploy/nginx/kefu.conf, deploy/caddy/Caddyfile),
//! run as they are against a throwaway nginx and Caddy on loopback: TLS
//! with a CA made by the test, the widget, hidden routes, the WebSocket
//! upgrade, a 2 MiB upload, the Host check, and per-visitor rate limits
//! through X-Forwarded-For with `http.trusted_proxies` (a forged header
//! from a visitor is ignored).
//!
//! Without nginx or Caddy (scripts/deps.sh `kefu_ensure_proxy_deps`
//! installs them) each test prints `SKIPPED: …` and passes.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kefu_tests::TestServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::Message;

use crate::public_listener::{PUBLIC_HOST, connector, issue_certificate};

/// The "load balancer" in front of the proxy in these tests: a peer both
/// the proxy and Kefu trust to say who the visitor is.
const BALANCER: &str = "127.0.0.2";
/// A visitor that connects to the proxy directly and forges a header.
const STRANGER: &str = "127.0.0.3";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn find(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// A free loopback port (bound and released; the proxy binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}

/// A proxy process, killed (by its own pid) when dropped.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn started(mut child: Child, addr: SocketAddr, dir: tempfile::TempDir, name: &str) -> Proxy {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Proxy {
                    child,
                    addr,
                    _dir: dir,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                panic!("{name} exited ({status}) before listening: {stderr}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Replaces `from` (which must be in `text`: the repo file and this test
/// stay in step) with `to`.
fn swap(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the config no longer has {from:?}");
    text.replace(from, to)
}

/// nginx with deploy/nginx/kefu.conf, the port, names and certificate
/// paths swapped, inside a minimal main context of the test's own.
fn nginx(kefu: SocketAddr, certs: &Path) -> Option<Proxy> {
    let Some(binary) = find("nginx") else {
        println!(
            "SKIPPED: nginx is not installed (scripts/deps.sh kefu_ensure_proxy_deps installs it)"
        );
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let site = std::fs::read_to_string(repo_file("deploy/nginx/kefu.conf")).expect("kefu.conf");
    let site = swap(&site, "server 127.0.0.1:5340;", &format!("server {kefu};"));
    let site = swap(
        &site,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{port} ssl;"),
    );
    let site = swap(
        &site,
        "server_name chat.shop.example;",
        &format!("server_name {PUBLIC_HOST};"),
    );
    let site = swap(
        &site,
        "/etc/letsencrypt/live/chat.shop.example/fullchain.pem",
        &certs.join("fullchain.pem").display().to_string(),
    );
    let site = swap(
        &site,
        "/etc/letsencrypt/live/chat.shop.example/privkey.pem",
        &certs.join("privkey.pem").display().to_string(),
    );
    std::fs::write(dir.path().join("kefu.conf"), site).expect("write site");
    let temp = dir.path().display();
    // Workers run as root here (the test may be root; nginx would switch
    // to nobody, who cannot write into the test's temp dir).
    let user = if is_root() { "user root;" } else { "" };
    let main = format!(
        "{user}\nworker_processes 1;\npid {temp}/nginx.pid;\nerror_log {temp}/error.log warn;\ndaemon off;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n  include {temp}/kefu.conf;\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), main).expect("write main");
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nginx");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    Some(Proxy::started(child, addr, dir, "nginx"))
}

/// Caddy with deploy/caddy/Caddyfile, its site address swapped for the
/// test's and the test's certificate added; global options of the test's
/// own (no admin endpoint, the balancer trusted, state in a temp dir).
fn caddy(kefu: SocketAddr, certs: &Path) -> Option<Proxy> {
    let Some(binary) = find("caddy") else {
        println!(
            "SKIPPED: caddy is not installed (scripts/deps.sh kefu_ensure_proxy_deps installs it)"
        );
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let site = std::fs::read_to_string(repo_file("deploy/caddy/Caddyfile")).expect("Caddyfile");
    let site = swap(
        &site,
        "chat.shop.example {",
        &format!(
            "https://{PUBLIC_HOST}:{port} {{\n\tbind 127.0.0.1\n\ttls {} {}",
            certs.join("fullchain.pem").display(),
            certs.join("privkey.pem").display()
        ),
    );
    // The balancer is trusted to say who the visitor is (Caddy 2.6 sets
    // this per reverse_proxy).
    let site = swap(
        &site,
        "reverse_proxy 127.0.0.1:5340",
        &format!("reverse_proxy {kefu} {{\n\t\ttrusted_proxies {BALANCER}/32\n\t}}"),
    );
    let global = format!(
        "{{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system {}\n}}\n\n",
        dir.path().join("state").display()
    );
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, format!("{global}{site}")).expect("write Caddyfile");
    let child = Command::new(binary)
        .arg("run")
        .arg("--adapter")
        .arg("caddyfile")
        .arg("--config")
        .arg(&file)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start caddy");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    Some(Proxy::started(child, addr, dir, "caddy"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A TLS connection to the proxy from `local` (a loopback address of the
/// test's choosing, so the proxy sees that client address).
async fn connect(
    tls: &TlsConnector,
    proxy: SocketAddr,
    local: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().expect("socket");
    let local: IpAddr = local.parse().expect("ip");
    socket.bind(SocketAddr::new(local, 0)).expect("bind");
    let tcp = socket.connect(proxy).await.expect("connect");
    tls.connect(ServerName::try_from(PUBLIC_HOST).expect("name"), tcp)
        .await
        .expect("TLS to the proxy")
}

/// One HTTP/1.0 request (so the answer is never chunked); status and body.
async fn request(
    tls: &TlsConnector,
    proxy: SocketAddr,
    local: &str,
    head: &str,
    body: &[u8],
) -> (u16, String) {
    let mut stream = connect(tls, proxy, local).await;
    let mut bytes = head.replace('\n', "\r\n").into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn get(tls: &TlsConnector, proxy: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let head = format!("GET {path} HTTP/1.0\nHost: {host}\n\n");
    request(tls, proxy, "127.0.0.1", &head, b"").await
}

/// A visitor session asked for from `local`, with an X-Forwarded-For the
/// client sent (if any): the status.
async fn session(
    tls: &TlsConnector,
    proxy: SocketAddr,
    local: &str,
    forwarded: Option<&str>,
    app_key: &str,
) -> u16 {
    let body = json!({"app_key": app_key}).to_string();
    let forwarded = forwarded
        .map(|ip| format!("X-Forwarded-For: {ip}\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /api/v1/visitor/sessions HTTP/1.0\nHost: {PUBLIC_HOST}\n{forwarded}Content-Type: application/json\nContent-Length: {}\n\n",
        body.len()
    );
    request(tls, proxy, local, &head, body.as_bytes()).await.0
}

async fn kefu_behind_a_proxy() -> TestServer {
    TestServer::start_with(|config| {
        config.http.public_bind = Some("127.0.0.1:0".parse().expect("addr"));
        config.http.public_url = Some(format!("https://{PUBLIC_HOST}"));
        // The proxy (it connects from 127.0.0.1) and the balancer.
        config.http.trusted_proxies = vec!["127.0.0.1".to_owned(), BALANCER.to_owned()];
        config.limits.visitor_sessions_per_minute = 3;
    })
    .await
}

/// What every proxy set-up must do (see the module doc).
async fn through(proxy: &Proxy, tls: &TlsConnector, server: &mut TestServer, name: &str) {
    let addr = proxy.addr;
    let (status, script) = get(tls, addr, "/widget.js", PUBLIC_HOST).await;
    assert_eq!(status, 200, "{name}: widget.js");
    assert!(!script.is_empty());
    for hidden in [
        "/metrics",
        "/",
        "/api/v1/conversations",
        "/api/v1/lan/status",
    ] {
        let (status, body) = get(tls, addr, hidden, PUBLIC_HOST).await;
        assert_eq!(status, 404, "{name}: {hidden}: {body}");
    }

    // Per-visitor limits: two visitors behind the balancer have a budget
    // each; a stranger forging the first one's address is not counted as
    // it (its own address is used, and loopback is exempt).
    let app = server.app(json!({})).await;
    let key = app["app_key"].as_str().expect("key").to_owned();
    for _ in 0..3 {
        let status = session(tls, addr, BALANCER, Some("198.51.100.7"), &key).await;
        assert_eq!(status, 201, "{name}: within the budget");
    }
    let status = session(tls, addr, BALANCER, Some("198.51.100.7"), &key).await;
    assert_eq!(status, 429, "{name}: the fourth session of one visitor");
    let status = session(tls, addr, BALANCER, Some("198.51.100.8"), &key).await;
    assert_eq!(
        status, 201,
        "{name}: another visitor has a budget of its own"
    );
    let status = session(tls, addr, STRANGER, Some("198.51.100.7"), &key).await;
    assert_eq!(
        status, 201,
        "{name}: a forged X-Forwarded-For is not believed"
    );

    // A 2 MiB upload (nginx's default body limit is 1 MiB).
    let visitor = server.visitor(&app).await;
    let mut file = b"%PDF-1.4\n".to_vec();
    file.resize(2 * 1024 * 1024, b'x');
    let boundary = "kefuTestBoundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /api/v1/visitor/attachments HTTP/1.0\nHost: {PUBLIC_HOST}\nAuthorization: Bearer {}\nContent-Type: multipart/form-data; boundary={boundary}\nContent-Length: {}\n\n",
        visitor.token,
        body.len()
    );
    let (status, uploaded) = request(tls, addr, "127.0.0.1", &head, &body).await;
    assert_eq!(status, 201, "{name}: upload: {uploaded}");
    let uploaded: Value = serde_json::from_str(&uploaded).expect("json");
    assert_eq!(
        uploaded["attachment"]["size"],
        2 * 1024 * 1024,
        "{name}: {uploaded}"
    );

    // The WebSocket through the proxy, the agent on loopback.
    let agent = server.agent(&format!("agent-{name}")).await;
    let mut agent_ws = server.ws(&agent.token, json!({})).await;
    let stream = connect(tls, addr, "127.0.0.1").await;
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://{PUBLIC_HOST}/api/v1/ws"), stream)
            .await
            .unwrap_or_else(|e| panic!("{name}: WebSocket upgrade: {e}"));
    let send = |frame: Value| Message::Text(frame.to_string().into());
    ws.send(send(json!({"type": "hello", "token": visitor.token})))
        .await
        .expect("hello");
    ws.send(send(json!({"type": "send", "conversation_id": visitor.conversation_id, "client_msg_id": "p-1", "content": format!("via {name}")})))
        .await
        .expect("send");
    let seen = agent_ws.next_of("message").await;
    assert_eq!(seen["message"]["content"], format!("via {name}"));
    let (status, _) = server
        .agent_says(&agent, &visitor.conversation_id, "p-2", "answered")
        .await;
    assert_eq!(status.as_u16(), 201);
    let deadline = tokio::time::Instant::now() + kefu_tests::WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: no reply through the proxy"))
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).expect("json");
            if value["type"] == "message" && value["message"]["content"] == "answered" {
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_of_the_public_listener() {
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = issue_certificate(certs.path());
    kefu_tests::in_process_only("reads the public listener's address from the in-process server");
    let mut server = kefu_behind_a_proxy().await;
    let kefu = server
        .running
        .as_ref()
        .expect("running")
        .public_addr
        .expect("public");
    let Some(proxy) = nginx(kefu, certs.path()) else {
        return;
    };
    let tls = connector(Some(&ca));
    through(&proxy, &tls, &mut server, "nginx").await;
    // nginx passes Host on: a rebinding name reaches Kefu and gets 421.
    let (status, body) = get(&tls, proxy.addr, "/widget.js", "evil.example").await;
    assert_eq!(status, 421, "{body}");
    drop(proxy);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_in_front_of_the_public_listener() {
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = issue_certificate(certs.path());
    kefu_tests::in_process_only("reads the public listener's address from the in-process server");
    let mut server = kefu_behind_a_proxy().await;
    let kefu = server
        .running
        .as_ref()
        .expect("running")
        .public_addr
        .expect("public");
    let Some(proxy) = caddy(kefu, certs.path()) else {
        return;
    };
    let tls = connector(Some(&ca));
    through(&proxy, &tls, &mut server, "caddy").await;
    drop(proxy);
    server.shutdown().await;
}
