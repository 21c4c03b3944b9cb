//! Standby replication, takeover and fencing with real processes on
//! loopback (issue 18, docs/LAN.md "Replication and fencing"): a host
//! (`serve --lan-bind`) on 127.0.0.2, a paired device on 127.0.0.3 made a
//! standby by an admin and running `lan standby`, visitors sending all the
//! while. The host is killed with `kill -9` under load; the standby takes
//! over (`lan takeover`, then `serve --lan-bind`) and serves every message
//! its copy had: per conversation a gap-free prefix of what the old host
//! acknowledged, nothing twice, and what is missing is only what was
//! acknowledged after the copy's last batch. The old host, started again,
//! is fenced by the new one's term within a bound, refuses writes from
//! then on and never hosts again (restarted, it comes up retired).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kefu_server::lan::HostAddress;
use kefu_server::lan::client::{self, PairingProgress};
use kefu_server::lan::device_id::DeviceId;
use kefu_server::lan::identity::Identity;
use kefu_server::lan::pairing::PairingCode;
use kefu_server::lan::state::LanStateFile;
use kefu_tests::WAIT;
use reqwest::Method;
use serde_json::{Value, json};

pub(crate) const HOST_IP: &str = "127.0.0.2";
pub(crate) const STANDBY_IP: &str = "127.0.0.3";
/// Visitors sending at once.
const VISITORS: usize = 4;

pub(crate) fn kefu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kefu-server-under-test"))
}

pub(crate) fn free_addr(ip: &str) -> SocketAddr {
    std::net::TcpListener::bind(format!("{ip}:0"))
        .expect("bind")
        .local_addr()
        .expect("addr")
}

pub(crate) async fn call(
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
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// A server process: `serve --bind IP:P --lan-bind IP:Q --public-bind IP:R`.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) lan: SocketAddr,
    pub(crate) public: SocketAddr,
    env: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(
    dir: &Path,
    http: SocketAddr,
    lan: SocketAddr,
    public: SocketAddr,
    env: &[(String, String)],
) -> Child {
    serve_with(kefu(), dir, http, lan, public)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .expect("spawn server")
}

/// `command` (the server binary, or `ip netns exec NS` it) as the tests'
/// `serve`: the three listeners, `--durability os`, no rate limits.
pub(crate) fn serve_with(
    mut command: Command,
    dir: &Path,
    http: SocketAddr,
    lan: SocketAddr,
    public: SocketAddr,
) -> Command {
    command
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args(["--bind", &http.to_string()])
        .args(["--lan-bind", &lan.to_string()])
        .args(["--public-bind", &public.to_string()])
        .args(["--durability", "os"])
        .env("RUST_LOG", "warn")
        .env("KEFU_LIMITS__LOGIN_PER_MINUTE", "0")
        .env("KEFU_LIMITS__PASSWORD_ATTEMPTS_PER_ACCOUNT_PER_HOUR", "0")
        .env("KEFU_LIMITS__VISITOR_MESSAGES_PER_SECOND", "0")
        .env("KEFU_LIMITS__VISITOR_MESSAGE_BURST", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

impl Server {
    pub(crate) async fn start(dir: &Path, ip: &str) -> Server {
        Server::start_on(dir, ip, free_addr(ip), &[]).await
    }

    /// With its LAN listener on `lan` and extra environment.
    pub(crate) async fn start_on(
        dir: &Path,
        ip: &str,
        lan: SocketAddr,
        env: &[(&str, &str)],
    ) -> Server {
        let (http, public) = (free_addr(ip), free_addr(ip));
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let server = Server {
            child: spawn_server(dir, http, lan, public, &env),
            http,
            lan,
            public,
            env,
        };
        server.ready().await;
        server
    }

    pub(crate) async fn restart(&mut self, dir: &Path) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_server(dir, self.http, self.lan, self.public, &self.env);
        self.ready().await;
    }

    /// Starts it again without waiting for it to be ready for traffic
    /// (a retired host never is): until it answers `/healthz`.
    pub(crate) async fn respawn(&mut self, dir: &Path) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_server(dir, self.http, self.lan, self.public, &self.env);
        for _ in 0..600 {
            let (status, _) = call(self.http, Method::GET, "/healthz", None, None).await;
            if status == 200 {
                return;
            }
            assert!(
                self.child.try_wait().expect("wait").is_none(),
                "the server exited"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not answer /healthz");
    }

    pub(crate) async fn ready(&self) {
        for _ in 0..600 {
            let (status, _) = call(self.http, Method::GET, "/readyz", None, None).await;
            if status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not become ready");
    }

    pub(crate) fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) async fn login(&self) -> String {
        let (status, body) = call(
            self.http,
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "owner", "password": "owner-password"})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub(crate) async fn status(&self, admin: &str) -> Value {
        let (status, body) = call(
            self.http,
            Method::GET,
            "/api/v1/lan/status",
            Some(admin),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Every message of a conversation, through the agent API.
    pub(crate) async fn messages(&self, admin: &str, conversation: &str) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        loop {
            let after = all.last().map_or(0, |m| m["seq"].as_u64().expect("seq"));
            let (status, body) = call(
                self.http,
                Method::GET,
                &format!("/api/v1/conversations/{conversation}/messages?after={after}&limit=200"),
                Some(admin),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let page = body["messages"].as_array().expect("messages").clone();
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }
}

pub(crate) fn create_owner(dir: &Path) {
    let output = kefu()
        .args(["admin", "create", "--data-dir"])
        .arg(dir)
        .args(["--username", "owner", "--password", "owner-password"])
        .output()
        .expect("admin create");
    assert!(output.status.success());
}

struct CodeOut(Option<tokio::sync::oneshot::Sender<PairingCode>>);

impl PairingProgress for CodeOut {
    fn code(&mut self, _: &DeviceId, code: PairingCode) {
        if let Some(out) = self.0.take() {
            let _ = out.send(code);
        }
    }
}

/// Pairs the device in `dir` with `host` (the library's exchange, an admin
/// approving with the code) and pins the host. Returns its device ID.
/// The host's admin makes `device` a standby (`PUT
/// /api/v1/lan/devices/{id}/standby`).
pub(crate) async fn make_standby(host: &Server, admin: &str, device: &DeviceId) {
    let (status, body) = call(
        host.http,
        Method::PUT,
        &format!("/api/v1/lan/devices/{device}/standby"),
        Some(admin),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The host's admin creates the app "Shop"; its body (`app.app_key`…).
pub(crate) async fn create_app(host: &Server, admin: &str) -> Value {
    let (status, app) = call(
        host.http,
        Method::POST,
        "/api/v1/apps",
        Some(admin),
        Some(json!({"name": "Shop"})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    app
}

pub(crate) async fn pair(host: &Server, host_dir: &Path, admin: &str, dir: &Path) -> DeviceId {
    let (identity, _) = Identity::load_or_create(dir, &[]).expect("identity");
    let host_id = Identity::open(host_dir)
        .expect("host identity")
        .0
        .device_id();
    let (code_in, code_out) = tokio::sync::oneshot::channel();
    let address = HostAddress::from(host.lan);
    let mut progress = CodeOut(Some(code_in));
    let pairing = Box::pin(client::pair(
        &identity,
        &address,
        Some(host_id),
        Some("Back office"),
        Duration::from_millis(100),
        &mut progress,
    ));
    let device = identity.device_id();
    let approval = async {
        let code = code_out.await.expect("code");
        let (status, body) = call(
            host.http,
            Method::POST,
            &format!("/api/v1/lan/devices/{device}/approve"),
            Some(admin),
            Some(json!({"code": code.to_string()})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    };
    let (paired, ()) = tokio::time::timeout(WAIT, async { tokio::join!(pairing, approval) })
        .await
        .expect("in time");
    LanStateFile::open(dir)
        .expect("state")
        .become_peer(paired.expect("paired").host)
        .expect("pin");
    device
}

/// A visitor of `app_key` on the public listener: (token, conversation).
pub(crate) async fn visitor(host: &Server, app_key: &str) -> (String, String) {
    let (status, session) = call(
        host.public,
        Method::POST,
        "/api/v1/visitor/sessions",
        None,
        Some(json!({"app_key": app_key})),
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

/// What the host acknowledged: per conversation, seq → client_msg_id.
type Acked = Arc<std::sync::Mutex<HashMap<String, BTreeMap<u64, String>>>>;

/// Visitors sending one message after another until `stop`, recording each
/// acknowledged one; a refused or failed send is not recorded.
fn start_load(
    public: SocketAddr,
    visitors: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
    acked: Acked,
) -> Vec<tokio::task::JoinHandle<()>> {
    visitors
        .into_iter()
        .enumerate()
        .map(|(index, (token, conversation))| {
            let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    n += 1;
                    let id = format!("v{index}-{n}");
                    let sent = client
                        .post(format!("http://{public}/api/v1/visitor/messages"))
                        .bearer_auth(&token)
                        .json(&json!({"client_msg_id": id, "content": format!("message {n}")}))
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await;
                    let Ok(response) = sent else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    if response.status() != 201 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let Ok(body) = response.json::<Value>().await else {
                        continue;
                    };
                    let seq = body["message"]["seq"].as_u64().expect("seq");
                    acked
                        .lock()
                        .expect("lock")
                        .entry(conversation.clone())
                        .or_default()
                        .insert(seq, id);
                }
            })
        })
        .collect()
}

pub(crate) fn standby_process(dir: &Path) -> Child {
    standby_process_with(kefu(), dir)
}

/// `lan standby` run by `command` (the server binary, or `ip netns exec
/// NS` it).
pub(crate) fn standby_process_with(mut command: Command, dir: &Path) -> Child {
    command
        .args(["lan", "standby", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lan standby")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_takes_over_after_kill_9_under_load_and_the_old_host_is_fenced() {
    let host_dir = tempfile::tempdir().expect("tempdir");
    let standby_dir = tempfile::tempdir().expect("tempdir");
    create_owner(host_dir.path());
    let mut host = Server::start(host_dir.path(), HOST_IP).await;
    let admin = host.login().await;

    // 1. The status: role, term (persisted), history, no standbys yet.
    let status = host.status(&admin).await;
    assert_eq!(status["role"], "host", "{status}");
    assert_eq!(status["term"], 1);
    assert_eq!(status["highest_term_seen"], 1);
    assert_eq!(status["standbys"], json!([]));
    let history = status["history_id"].as_str().expect("history").to_owned();

    // 2. A paired device, made a standby by the admin (the visitor's token
    // does not reach the route; a bad body changes nothing).
    let device = pair(&host, host_dir.path(), &admin, standby_dir.path()).await;
    let path = format!("/api/v1/lan/devices/{device}/standby");
    let (status, body) = call(
        host.http,
        Method::PUT,
        &path,
        Some(&admin),
        Some(json!({"enabled": "yes"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(host.status(&admin).await["standbys"], json!([]));
    let (status, body) = call(
        host.http,
        Method::PUT,
        &path,
        Some(&admin),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let app = create_app(&host, &admin).await;
    let app_key = app["app"]["app_key"].as_str().expect("app key").to_owned();
    let mut visitors = Vec::new();
    for _ in 0..VISITORS {
        visitors.push(visitor(&host, &app_key).await);
    }
    let (status, body) = call(
        host.http,
        Method::PUT,
        &path,
        Some(&visitors[0].0),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // 3. The standby syncs in full, then follows the tail under load.
    let mut standby = standby_process(standby_dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let load_started = Instant::now();
    let load = start_load(
        host.public,
        visitors.clone(),
        Arc::clone(&stop),
        Arc::clone(&acked),
    );
    let deadline = Instant::now() + WAIT;
    let mut max_lag_seq = 0;
    let mut max_lag_seconds: f64 = 0.0;
    loop {
        let status = host.status(&admin).await;
        let standby = &status["standbys"][0];
        assert_eq!(standby["device_id"], json!(device), "{status}");
        if let Some(lag) = standby["lag_seq"].as_u64() {
            max_lag_seq = max_lag_seq.max(lag);
            max_lag_seconds = max_lag_seconds.max(standby["lag_seconds"].as_f64().unwrap_or(0.0));
        }
        let sent: usize = acked
            .lock()
            .expect("lock")
            .values()
            .map(BTreeMap::len)
            .sum();
        if standby["connected"] == true
            && standby["applied_seq"].as_u64().unwrap_or(0) > 0
            && sent >= 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not follow: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent: usize = acked
        .lock()
        .expect("lock")
        .values()
        .map(BTreeMap::len)
        .sum();
    eprintln!(
        "standby lag under load ({:.0} acknowledged sends/s): at most {max_lag_seq} log \
         sequences, {max_lag_seconds:.3} s",
        sent as f64 / load_started.elapsed().as_secs_f64()
    );

    // 4. kill -9 of the host while visitors send; the standby stops a
    // moment later (it had what it had).
    host.kill_9();
    stop.store(true, Ordering::Release);
    for task in load {
        let _ = task.await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = standby.kill();
    let _ = standby.wait();

    // 5. Takeover: term 2 written, how far behind said.
    let output = kefu()
        .args(["lan", "takeover", "--data-dir"])
        .arg(standby_dir.path())
        .output()
        .expect("lan takeover");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("took over the shop in term 2"), "{stdout}");
    let behind: u64 = stdout
        .split("behind: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lag in {stdout:?}"));
    let state: Value = serde_json::from_slice(
        &std::fs::read(standby_dir.path().join("lan/state.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(state["role"], "host");
    assert_eq!(state["term"], 2);
    assert_eq!(state["history_id"], history.as_str());

    // 6. It serves: every conversation a gap-free prefix of what the old
    // host acknowledged, nothing twice.
    let new_host = Server::start(standby_dir.path(), STANDBY_IP).await;
    let new_admin = new_host.login().await;
    let status = new_host.status(&new_admin).await;
    assert_eq!(
        status["term"], 3,
        "every start as host opens a term: {status}"
    );
    assert_eq!(status["history_id"], history.as_str());
    let acked = acked.lock().expect("lock").clone();
    let (mut kept, mut missing) = (0usize, 0usize);
    for (_, conversation) in &visitors {
        let served = new_host.messages(&new_admin, conversation).await;
        let expected = acked.get(conversation).cloned().unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        for (index, message) in served.iter().enumerate() {
            let seq = message["seq"].as_u64().expect("seq");
            assert_eq!(seq, index as u64 + 1, "gap-free seq in {conversation}");
            let id = message["client_msg_id"].as_str().map(str::to_owned);
            if let Some(id) = &id {
                assert!(seen.insert(id.clone()), "{id} twice in {conversation}");
            }
            if let Some(acked_id) = expected.get(&seq) {
                assert_eq!(
                    id.as_deref(),
                    Some(acked_id.as_str()),
                    "seq {seq} of {conversation}"
                );
            }
        }
        let last = served.len() as u64;
        kept += expected.range(..=last).count();
        let lost: Vec<_> = expected.range(last + 1..).collect();
        missing += lost.len();
    }
    eprintln!(
        "after takeover: {kept} acknowledged messages kept, {missing} missing (acknowledged after \
         the copy's last batch); the copy said it was at least {behind} log sequences behind"
    );
    // Every acknowledged message up to the copy's end is there with its
    // own client_msg_id (checked above), so what is missing is exactly the
    // acknowledged suffix the copy never received; the lag the takeover
    // printed is what the standby knew at its last answer, a lower bound.
    assert!(kept > 0);

    // 7. The old host comes back (a new term of its own, 2): the new host
    // tells it term 3 and it demotes at once, for good.
    host.restart(host_dir.path()).await;
    let admin = host.login().await;
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let status = host.status(&admin).await;
        if !status["superseded_by"].is_null() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the old host was not fenced: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        status["superseded_by"]["device_id"],
        json!(device),
        "{status}"
    );
    assert_eq!(status["superseded_by"]["term"], 3);
    assert_eq!(status["highest_term_seen"], 3);
    let (status, body) = call(
        host.public,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(&visitors[0].0),
        Some(json!({"client_msg_id": "after-the-fence", "content": "late"})),
    )
    .await;
    assert_eq!(status, 503, "a superseded host writes nothing: {body}");
    // The new host records the answer (after the old one demoted).
    let deadline = Instant::now() + WAIT;
    loop {
        let taken: Value = serde_json::from_slice(
            &std::fs::read(standby_dir.path().join("lan/takeover.json")).expect("takeover.json"),
        )
        .expect("json");
        if taken["fenced_at_ms"].is_i64() {
            break;
        }
        assert!(Instant::now() < deadline, "{taken}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It never hosts this shop again: started once more, it comes up
    // retired (no term of its own, its log closed, not ready for
    // traffic), refusing every send; it only serves the new host's
    // reconciliation (lan_carry.rs).
    host.kill_9();
    host.respawn(host_dir.path()).await;
    let state: Value = serde_json::from_slice(
        &std::fs::read(host_dir.path().join("lan/state.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(state["term"], 2, "no new term: {state}");
    assert_eq!(state["superseded_by"]["term"], 3, "{state}");
    let (status, _) = call(host.http, Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 503, "a retired host is not ready for traffic");
    let (status, body) = call(
        host.public,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(&visitors[0].0),
        Some(json!({"client_msg_id": "after-the-restart", "content": "late"})),
    )
    .await;
    assert_eq!(status, 503, "a retired host writes nothing: {body}");
    // Nor does its API: a ticket made there would never reach the new
    // host. Signing in still works, to read what is left.
    let admin = host.login().await;
    let (_, before) = call(
        host.http,
        Method::GET,
        "/api/v1/tickets",
        Some(&admin),
        None,
    )
    .await;
    let (status, body) = call(
        host.http,
        Method::POST,
        "/api/v1/tickets",
        Some(&admin),
        Some(json!({"subject": "on a retired host"})),
    )
    .await;
    assert_eq!(status, 503, "a retired host takes no API write: {body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let (status, after) = call(
        host.http,
        Method::GET,
        "/api/v1/tickets",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after, before, "nothing changed");
    drop(new_host);
}

/// The host's status until `done` holds for its first standby.
pub(crate) async fn standby_until(
    host: &Server,
    admin: &str,
    done: impl Fn(&Value, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = host.status(admin).await;
        if done(&status, &status["standbys"][0]) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not get there: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_whose_tail_the_host_no_longer_holds_syncs_in_full_and_never_skips() {
    let host_dir = tempfile::tempdir().expect("tempdir");
    let standby_dir = tempfile::tempdir().expect("tempdir");
    create_owner(host_dir.path());
    let mut host = Server::start(host_dir.path(), HOST_IP).await;
    let admin = host.login().await;
    let device = pair(&host, host_dir.path(), &admin, standby_dir.path()).await;
    // Not a standby yet: the replication routes refuse it.
    let mut standby = standby_process(standby_dir.path());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = host.status(&admin).await;
    assert_eq!(status["standbys"], json!([]), "{status}");
    assert!(!standby_dir.path().join("replica").exists());
    make_standby(&host, &admin, &device).await;
    let app = create_app(&host, &admin).await;
    let (token, conversation) = visitor(&host, app["app"]["app_key"].as_str().expect("key")).await;
    for n in 0..20 {
        say(host.public, &token, n).await;
    }
    let caught_up = |status: &Value, standby: &Value| {
        standby["connected"] == true
            && standby["lag_seq"] == 0
            && standby["applied_seq"] == status["log_seq"]
    };
    let status = standby_until(&host, &admin, caught_up).await;
    assert_eq!(status["standbys"][0]["full_syncs"], 1, "{status}");
    let since = status["standbys"][0]["last_full_sync_seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("the full sync's age: {status}"));
    assert!((0.0..60.0).contains(&since), "{status}");

    // The standby is away while the host writes and restarts: RocksDB's
    // recovery flushes the memtables and the WAL that held the tail goes.
    let _ = standby.kill();
    let _ = standby.wait();
    for n in 20..40 {
        say(host.public, &token, n).await;
    }
    host.restart(host_dir.path()).await;
    let admin = host.login().await;
    for n in 40..60 {
        say(host.public, &token, n).await;
    }
    let mut standby = standby_process(standby_dir.path());
    let status = standby_until(&host, &admin, caught_up).await;
    // A restarted host knows a standby again from its first request: the
    // full sync after the gap is the one it counts.
    assert_eq!(
        status["standbys"][0]["full_syncs"], 1,
        "it synced in full again: {status}"
    );
    let _ = standby.kill();
    let _ = standby.wait();
    let progress: Value = serde_json::from_slice(
        &std::fs::read(standby_dir.path().join("lan/replica.json")).expect("replica.json"),
    )
    .expect("json");
    assert_eq!(progress["full_syncs"], 2, "{progress}");
    assert_eq!(progress["applied_seq"], status["log_seq"], "{progress}");

    // The copy serves every message, in order, once.
    host.kill_9();
    let output = kefu()
        .args(["lan", "takeover", "--data-dir"])
        .arg(standby_dir.path())
        .output()
        .expect("lan takeover");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let new_host = Server::start(standby_dir.path(), STANDBY_IP).await;
    let new_admin = new_host.login().await;
    let served = new_host.messages(&new_admin, &conversation).await;
    let ids: Vec<String> = served
        .iter()
        .filter_map(|m| m["client_msg_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, (0..60).map(|n| format!("m{n}")).collect::<Vec<_>>());
    for (index, message) in served.iter().enumerate() {
        assert_eq!(message["seq"], index as u64 + 1);
    }
}

/// The visitor's message number `n` (`client_msg_id` "m{n}"), acked.
pub(crate) async fn say(public: SocketAddr, token: &str, n: u32) {
    let (status, body) = call(
        public,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(token),
        Some(json!({"client_msg_id": format!("m{n}"), "content": format!("message {n}")})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

impl Server {
    /// A process started by the caller that serves on these addresses (a
    /// `lan standby` that goes on as the host after a planned handover).
    pub(crate) fn adopt(
        child: Child,
        http: SocketAddr,
        lan: SocketAddr,
        public: SocketAddr,
    ) -> Server {
        Server {
            child,
            http,
            lan,
            public,
            env: Vec::new(),
        }
    }
}
