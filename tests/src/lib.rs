//! Test support: a real Kefu server on an ephemeral port over a temp data
//! dir, and small clients that speak the protocol over real sockets.
//! Each helper is one line in a test: `server.agent("amy")`,
//! `server.visitor(&app)`, `server.ws(&token, resume)`.
//!
//! The server runs in this process by default. With `SERVER_UNDER_TEST` set
//! to a command (scripts/windows-check: `kefu-server.exe` under Wine), every
//! [`TestServer`] is that command, started as `serve --config FILE` on a
//! loopback port, and the CLI tests run it too ([`server_bin`]). A test that
//! needs the server's in-process state ([`TestServer::state`]) cannot run
//! against another process: it stops with [`EXTERNAL_SKIP`] in its panic
//! message, and the script counts it as skipped, with the reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kefu_server::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use serde_json;

/// How long a test waits for a frame that must come.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a test waits for work the server does at idle priority (the
/// reply-suggestion learner, the intent trainer): SCHED_IDLE threads run
/// only when nothing else wants the CPU, and a test run keeps both cores
/// busy with other tests.
pub const WAIT_IDLE: Duration = Duration::from_secs(60);

/// The variable naming the external server command. Not `KEFU_*`: the
/// server reads every such variable as configuration.
pub const SERVER_UNDER_TEST: &str = "SERVER_UNDER_TEST";

/// Marks a test that cannot run against an external server (see the crate doc).
pub const EXTERNAL_SKIP: &str = "kefu-tests: skipped with an external server:";

/// The external server command, when the suite runs against one.
pub fn external_server() -> Option<PathBuf> {
    std::env::var_os(SERVER_UNDER_TEST).map(PathBuf::from)
}

/// The `kefu-server` CLI the CLI tests run: the external server command when
/// there is one, else the test crate's own build (`CARGO_BIN_EXE_…`).
pub fn server_bin(built: &str) -> std::ffi::OsString {
    external_server().map_or_else(|| built.into(), PathBuf::into_os_string)
}

/// Set (by scripts/windows-check) when the external server is a Windows
/// build: Unix-only behaviour (signals, file modes) is not asked of it.
pub const SERVER_UNDER_TEST_WINDOWS: &str = "SERVER_UNDER_TEST_WINDOWS";

/// Whether the server under test is a Windows build (under Wine).
pub fn server_is_windows() -> bool {
    external_server().is_some() && std::env::var_os(SERVER_UNDER_TEST_WINDOWS).is_some()
}

/// Stops a test of Unix-only behaviour when the server is a Windows build
/// ([`EXTERNAL_SKIP`]).
pub fn unix_server_only(reason: &str) {
    if server_is_windows() {
        panic!("{EXTERNAL_SKIP} {reason}");
    }
}

/// How long a request to an external server may take before the test
/// fails. Under Wine a connection's first request is, rarely, never read by
/// the server (docs/DESKTOP.md, "Windows"): without a bound the test waits
/// for nextest's 10-minute kill, and that stall hides the other results.
pub const EXTERNAL_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP client for the server under test: with an external server every
/// request is bounded by [`EXTERNAL_REQUEST_TIMEOUT`] (a stuck request fails
/// the test with a timeout error instead of stalling the suite); in process,
/// a plain client.
pub fn http_client() -> reqwest::Client {
    if external_server().is_some() {
        reqwest::Client::builder()
            .timeout(EXTERNAL_REQUEST_TIMEOUT)
            .build()
            .expect("http client")
    } else {
        reqwest::Client::new()
    }
}

/// Stops a test that needs this process's own server ([`EXTERNAL_SKIP`]).
pub fn in_process_only(reason: &str) {
    if external_server().is_some() {
        panic!("{EXTERNAL_SKIP} {reason}");
    }
}

/// How long an external server may take to exit after Ctrl-C (its own
/// shutdown deadline is `http.shutdown_timeout_secs`, 10 s by default).
const EXTERNAL_EXIT_WAIT: Duration = Duration::from_secs(60);

/// A server in another process (see the crate doc).
struct External {
    child: std::process::Child,
    _config_file: tempfile::NamedTempFile,
}

impl External {
    /// Creates the owner (`admin create`) on a fresh data dir, then `serve`.
    async fn start(command: &Path, config: &Config, create_owner: bool) -> (External, String) {
        let mut config = config.clone();
        if config.bind.port() == 0 {
            let probe = std::net::TcpListener::bind((config.bind.ip(), 0)).expect("free port");
            config
                .bind
                .set_port(probe.local_addr().expect("addr").port());
        }
        let mut file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("config file");
        let mut toml = config.to_toml();
        if server_is_windows() {
            // A Windows build sees this machine's files on Wine's `Z:`
            // drive; a path without a drive is not absolute there (and
            // `backup.dir` must be).
            toml = toml.replace("\"/", "\"Z:/");
        }
        std::io::Write::write_all(&mut file, toml.as_bytes()).expect("write config");
        let run = |args: &[&str]| {
            let mut command = std::process::Command::new(command);
            command.args(args).arg("--config").arg(file.path());
            // The server reads every `KEFU_*` variable as configuration:
            // none of the caller's (a script's own switches) may reach it.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("KEFU_") {
                    command.env_remove(key);
                }
            }
            command
        };
        if create_owner {
            let output = run(&["admin", "create", "--username", "owner"])
                .args(["--password", "owner-password", "--display-name", "Owner"])
                .output()
                .expect("admin create runs");
            // A restart on a data dir that has its owner (a restored
            // backup, a second start) keeps that owner.
            let taken = String::from_utf8_lossy(&output.stderr).contains("username owner is taken");
            assert!(output.status.success() || taken, "admin create: {output:?}");
        }
        let child = run(&["serve"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("external server starts");
        let base = format!("http://{}", config.bind);
        let client = http_client();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client.get(format!("{base}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "external server not ready at {base}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let external = External {
            child,
            _config_file: file,
        };
        (external, base)
    }

    /// Ctrl-C (SIGINT; Wine turns it into the console's CTRL_C_EVENT), then
    /// waits for a clean exit, at most [`EXTERNAL_EXIT_WAIT`] (then the test
    /// fails, and the process is killed when `self` drops).
    async fn shutdown(mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
        let deadline = std::time::Instant::now() + EXTERNAL_EXIT_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "external server still running {EXTERNAL_EXIT_WAIT:?} after Ctrl-C"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "external server exit: {status}");
    }
}

impl Drop for External {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub struct TestServer {
    pub running: Option<kefu_server::Running>,
    external: Option<External>,
    /// The owner made by `admin create` (external servers only).
    owner_made: bool,
    pub base: String,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    pub http: reqwest::Client,
    config: Config,
    admin_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AgentClient {
    pub id: String,
    pub username: String,
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct VisitorClient {
    pub visitor_id: String,
    pub conversation_id: String,
    pub token: String,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::for_data_dir(dir.path());
        adjust(&mut config);
        let mut server = Self::on(config).await;
        server._dir = Some(dir);
        server
    }

    async fn on(config: Config) -> TestServer {
        Self::on_with(config, false).await
    }

    async fn on_with(config: Config, owner_made: bool) -> TestServer {
        let (running, external, base) = match external_server() {
            Some(command) => {
                let (external, base) = External::start(&command, &config, !owner_made).await;
                (None, Some(external), base)
            }
            None => {
                let running = kefu_server::start(config.clone())
                    .await
                    .expect("server starts");
                let base = format!("http://{}", running.addr);
                (Some(running), None, base)
            }
        };
        TestServer {
            data_dir: config.data_dir.clone(),
            running,
            external,
            owner_made: owner_made || external_server().is_some(),
            base,
            _dir: None,
            http: http_client(),
            config,
            admin_token: None,
        }
    }

    /// Stops gracefully and starts again on the same data dir and port 0.
    pub async fn restart(mut self) -> TestServer {
        self.halt().await;
        let dir = self._dir.take();
        let admin_token = self.admin_token.take();
        let mut server = Self::on_with(self.config.clone(), self.owner_made).await;
        server._dir = dir;
        server.admin_token = admin_token;
        server
    }

    /// Stops gracefully, keeping the data dir and config: a test can
    /// change the stores before [`TestServer::resume`].
    pub async fn halt(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
        if let Some(external) = self.external.take() {
            external.shutdown().await;
        }
    }

    /// Starts again after [`TestServer::halt`], on the same data dir.
    pub async fn resume(&mut self) {
        let mut again = Self::on_with(self.config.clone(), self.owner_made).await;
        self.running = again.running.take();
        self.external = again.external.take();
        self.base = again.base.clone();
    }

    pub async fn shutdown(self) {
        drop(self.stop().await);
    }

    /// Stops gracefully and hands over the temp data dir, so a test can
    /// inspect the files (the dir is deleted when the guard drops).
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.halt().await;
        self._dir.take()
    }

    /// The server's in-process state; a test that uses it is skipped with
    /// an external server.
    pub fn state(&self) -> &kefu_server::state::AppState {
        in_process_only("reads or changes the server's in-process state");
        self.running.as_ref().expect("running").state()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        let host = self.base.trim_start_matches("http://");
        host.parse().expect("base is http://ip:port")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn ws_url(&self) -> String {
        format!("{}/api/v1/ws", self.base.replacen("http", "ws", 1))
    }

    /// An admin, created in the store directly (as `kefu-server admin create` does).
    pub async fn admin(&mut self) -> String {
        if let Some(token) = &self.admin_token {
            return token.clone();
        }
        if !self.owner_made {
            kefu_server::agents::create(
                &self.state().db,
                kefu_server::agents::NewAgent {
                    username: "owner".into(),
                    password: "owner-password".into(),
                    display_name: Some("Owner".into()),
                    role: kefu_server::agents::Role::Admin,
                },
            )
            .await
            .expect("create admin");
            self.owner_made = true;
        }
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"username": "owner", "password": "owner-password"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["token"].as_str().expect("token").to_owned();
        self.admin_token = Some(token.clone());
        token
    }

    /// An agent created by the admin over the API, then logged in.
    pub async fn agent(&mut self, username: &str) -> AgentClient {
        let admin = self.admin().await;
        let (status, body) = self
            .post(
                "/api/v1/agents",
                Some(&admin),
                json!({"username": username, "password": "agent-password", "display_name": username.to_uppercase()}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"username": username, "password": "agent-password"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        AgentClient {
            id: body["agent"]["id"].as_str().expect("id").to_owned(),
            username: username.to_owned(),
            token: body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// An app (`{"app": …}` body's inner object) with the given extra fields.
    pub async fn app(&mut self, extra: Value) -> Value {
        let admin = self.admin().await;
        let mut body = json!({"name": "Shop"});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let (status, body) = self.post("/api/v1/apps", Some(&admin), body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["app"].clone()
    }

    pub async fn visitor(&self, app: &Value) -> VisitorClient {
        self.visitor_with(app, json!({})).await
    }

    pub async fn visitor_with(&self, app: &Value, extra: Value) -> VisitorClient {
        let mut body = json!({"app_key": app["app_key"]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let (status, body) = self.post("/api/v1/visitor/sessions", None, body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        VisitorClient {
            visitor_id: body["visitor_id"].as_str().expect("visitor_id").to_owned(),
            conversation_id: body["conversation_id"]
                .as_str()
                .expect("conversation_id")
                .to_owned(),
            token: body["token"].as_str().expect("token").to_owned(),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read(request.send().await.expect("request")).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = self.http.post(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read(request.send().await.expect("request")).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = self.http.patch(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read(request.send().await.expect("request")).await
    }

    /// POST with a raw body and content type, for malformed-input tests.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read(request.send().await.expect("request")).await
    }

    /// A visitor message over REST; returns the status and the message.
    pub async fn visitor_says(
        &self,
        visitor: &VisitorClient,
        client_msg_id: &str,
        content: &str,
    ) -> (StatusCode, Value) {
        let (status, body) = self
            .post(
                "/api/v1/visitor/messages",
                Some(&visitor.token),
                json!({"client_msg_id": client_msg_id, "content": content}),
            )
            .await;
        (status, body["message"].clone())
    }

    pub async fn agent_says(
        &self,
        agent: &AgentClient,
        conversation: &str,
        client_msg_id: &str,
        content: &str,
    ) -> (StatusCode, Value) {
        let (status, body) = self
            .post(
                &format!("/api/v1/conversations/{conversation}/messages"),
                Some(&agent.token),
                json!({"client_msg_id": client_msg_id, "content": content}),
            )
            .await;
        (status, body["message"].clone())
    }

    /// All messages an agent can read in a conversation, by REST.
    pub async fn transcript(&self, token: &str, conversation: &str) -> Vec<Value> {
        let (status, body) = self
            .get(
                &format!("/api/v1/conversations/{conversation}/messages?limit=200"),
                Some(token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["messages"].as_array().expect("messages").clone()
    }

    /// A WebSocket that has said hello and read its welcome.
    pub async fn ws(&self, token: &str, resume: Value) -> Ws {
        let mut ws = Ws::connect(&self.ws_url()).await;
        ws.send(json!({"type": "hello", "token": token, "resume": resume}))
            .await;
        let welcome = ws.next().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        ws
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Asserts the protocol's error body and code.
pub fn assert_error(status: StatusCode, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status.as_u16(), expected_status, "status for {body}");
    assert_eq!(body["error"]["code"], code, "code in {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a WebSocket ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Closed {
    Code(u16),
    NoCode,
}

impl Ws {
    pub async fn connect(url: &str) -> Ws {
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        Ws { stream }
    }

    /// A client whose socket receive buffer is tiny, to play a client that
    /// cannot keep up.
    pub async fn connect_with_small_buffer(url: &str) -> Ws {
        let addr: std::net::SocketAddr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host")
            .parse()
            .expect("addr");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let tcp = socket.connect(addr).await.expect("connect");
        let (stream, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
            .await
            .expect("handshake");
        Ws { stream }
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream
            .send(WsMessage::Text(frame.to_string().into()))
            .await
            .expect("ws send");
    }

    pub async fn send_text(&mut self, text: String) {
        self.stream
            .send(WsMessage::Text(text.into()))
            .await
            .expect("ws send");
    }

    /// The next JSON frame; panics after [`WAIT`].
    pub async fn next(&mut self) -> Value {
        match self.try_next(WAIT).await {
            Some(value) => value,
            None => panic!("no frame within {WAIT:?}"),
        }
    }

    /// The next JSON frame within `wait`, skipping pings.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            match message {
                Ok(WsMessage::Text(text)) => {
                    return Some(serde_json::from_str(text.as_str()).expect("json frame"));
                }
                Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => continue,
                Ok(WsMessage::Close(frame)) => panic!("closed: {frame:?}"),
                Ok(other) => panic!("unexpected frame {other:?}"),
                Err(error) => panic!("ws error {error}"),
            }
        }
    }

    /// The next frame of the given type, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Closed {
        loop {
            match tokio::time::timeout(WAIT, self.stream.next()).await {
                Err(_) => panic!("not closed within {WAIT:?}"),
                Ok(None) => return Closed::NoCode,
                Ok(Some(Ok(WsMessage::Close(Some(CloseFrame { code, .. }))))) => {
                    return Closed::Code(code.into());
                }
                Ok(Some(Ok(WsMessage::Close(None)))) => return Closed::NoCode,
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) => return Closed::NoCode,
            }
        }
    }

    /// Asserts that no frame arrives for `wait`.
    pub async fn silent(&mut self, wait: Duration) {
        if let Some(frame) = self.try_next(wait).await {
            panic!("expected silence, got {frame}");
        }
    }
}
