//! The synchronous standby (`lan.min_standby_acks`; issue 18, docs/LAN.md
//! "The synchronous standby") with real processes on loopback: a host
//! (`serve --lan-bind`) on 127.0.0.2, its standby (`lan standby`) on
//! 127.0.0.3, visitors sending all the while over REST.
//!
//! - With `min_standby_acks = 1` the host is killed with `kill -9` under
//!   load, the standby takes over (`lan takeover`, then `serve`): **no
//!   acknowledged message is missing**, none twice, every seq gap-free.
//! - Without it, the same: what is missing is exactly the acknowledged
//!   messages the copy never received, per conversation a suffix of what
//!   was acknowledged (the served messages are a prefix of the
//!   acknowledged ones, nothing served that was not sent, nothing twice),
//!   set beside what `lan takeover` said.
//! - The standby frozen (SIGSTOP) under sync: sends are still acknowledged
//!   after the timeout, the fallback shows in `/metrics` and in the LAN
//!   status, and the host is synchronous again once the standby is thawed
//!   and caught up.
//! - `lan.min_standby_acks` other than 0 or 1 is refused at start.
//!
//! Each kill test prints the sends' acknowledgement latency (p50, p99):
//! sync against async on loopback (a debug build, figures not asserted).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kefu_server::lan::device_id::DeviceId;
use kefu_tests::WAIT;
use reqwest::Method;
use serde_json::{Value, json};

use crate::lan_failover::{
    HOST_IP, STANDBY_IP, Server, call, create_app, create_owner, free_addr, kefu, make_standby,
    pair, standby_process, standby_until, visitor,
};

/// Visitors sending at once.
const VISITORS: usize = 4;

/// A `lan standby` process, killed when dropped.
struct Standby(Child);

impl Standby {
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        // A frozen process is killed all the same (SIGKILL).
        self.kill_9();
    }
}

/// A host with a paired standby following it, an app and its visitors.
struct Shop {
    host_dir: tempfile::TempDir,
    standby_dir: tempfile::TempDir,
    host: Server,
    admin: String,
    device: DeviceId,
    visitors: Vec<(String, String)>,
    standby: Standby,
}

/// Starts the host with `env` (the `[lan]` keys under test), pairs and
/// makes a standby of 127.0.0.3's device, starts it, and waits until it
/// has everything.
async fn shop(env: &[(&str, &str)]) -> Shop {
    let host_dir = tempfile::tempdir().expect("tempdir");
    let standby_dir = tempfile::tempdir().expect("tempdir");
    create_owner(host_dir.path());
    let host = Server::start_on(host_dir.path(), HOST_IP, free_addr(HOST_IP), env).await;
    let admin = host.login().await;
    let device = pair(&host, host_dir.path(), &admin, standby_dir.path()).await;
    make_standby(&host, &admin, &device).await;
    let app = create_app(&host, &admin).await;
    let app_key = app["app"]["app_key"].as_str().expect("app key").to_owned();
    let mut visitors = Vec::new();
    for _ in 0..VISITORS {
        visitors.push(visitor(&host, &app_key).await);
    }
    let standby = Standby(standby_process(standby_dir.path()));
    standby_until(&host, &admin, caught_up).await;
    Shop {
        host_dir,
        standby_dir,
        host,
        admin,
        device,
        visitors,
        standby,
    }
}

fn caught_up(status: &Value, standby: &Value) -> bool {
    standby["connected"] == true
        && standby["lag_seq"] == 0
        && standby["applied_seq"] == status["log_seq"]
}

/// What visitors sent and what the host acknowledged.
#[derive(Default)]
struct Load {
    /// Every `client_msg_id` sent (acknowledged or not).
    sent: HashSet<String>,
    /// Per conversation: seq → `client_msg_id`, acknowledged.
    acked: HashMap<String, BTreeMap<u64, String>>,
    /// Each acknowledged send's time from request to answer.
    latencies: Vec<Duration>,
}

/// Visitors sending one message after another until `stop`.
fn start_load(
    public: SocketAddr,
    visitors: &[(String, String)],
    stop: &Arc<AtomicBool>,
    load: &Arc<Mutex<Load>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    visitors
        .iter()
        .cloned()
        .enumerate()
        .map(|(index, (token, conversation))| {
            let (stop, load) = (Arc::clone(stop), Arc::clone(load));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    n += 1;
                    let id = format!("v{index}-{n}");
                    load.lock().expect("lock").sent.insert(id.clone());
                    let started = Instant::now();
                    let sent = client
                        .post(format!("http://{public}/api/v1/visitor/messages"))
                        .bearer_auth(&token)
                        .json(&json!({"client_msg_id": id, "content": format!("message {n}")}))
                        .timeout(Duration::from_secs(5))
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
                    let latency = started.elapsed();
                    let seq = body["message"]["seq"].as_u64().expect("seq");
                    let mut load = load.lock().expect("lock");
                    load.latencies.push(latency);
                    load.acked
                        .entry(conversation.clone())
                        .or_default()
                        .insert(seq, id);
                }
            })
        })
        .collect()
}

fn acked_count(load: &Mutex<Load>) -> usize {
    load.lock()
        .expect("lock")
        .acked
        .values()
        .map(BTreeMap::len)
        .sum()
}

/// p50 and p99 of `latencies`, in ms.
fn quantiles(latencies: &[Duration]) -> (f64, f64) {
    let mut sorted: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// `GET /metrics` on the main listener, as text.
async fn metrics(server: &Server) -> String {
    reqwest::Client::new()
        .get(format!("http://{}/metrics", server.http))
        .timeout(WAIT)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of an unlabelled series in a scrape.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no {name} in the scrape"))
}

/// Kills the host with `kill -9` under load (its standby following, with
/// or without `min_standby_acks = 1`), takes over on the standby and
/// checks what it serves against what was sent and acknowledged. Returns
/// how many acknowledged messages are missing.
async fn kill_9_under_load(sync: bool) -> usize {
    let mode = if sync { "sync" } else { "async" };
    // A timeout no send reaches on a busy machine: the sync run must not
    // fall back (asserted before the kill).
    let env: &[(&str, &str)] = if sync {
        &[
            ("KEFU_LAN__MIN_STANDBY_ACKS", "1"),
            ("KEFU_LAN__SYNC_STANDBY_TIMEOUT_MS", "20000"),
        ]
    } else {
        &[]
    };
    let mut shop = shop(env).await;
    let status = shop.host.status(&shop.admin).await;
    let expected_mode = if sync { "synchronous" } else { "off" };
    assert_eq!(status["sync_standby"]["mode"], expected_mode, "{status}");

    let stop = Arc::new(AtomicBool::new(false));
    let load: Arc<Mutex<Load>> = Arc::default();
    let started = Instant::now();
    let tasks = start_load(shop.host.public, &shop.visitors, &stop, &load);
    // Under load for a while, then the status once more: still in sync.
    let deadline = Instant::now() + WAIT;
    while acked_count(&load) < 400 || started.elapsed() < Duration::from_secs(3) {
        assert!(Instant::now() < deadline, "too few sends acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = shop.host.status(&shop.admin).await;
    assert_eq!(status["sync_standby"]["mode"], expected_mode, "{status}");
    if sync {
        assert_eq!(status["sync_standby"]["async_acks"], 0, "{status}");
        assert_eq!(status["sync_standby"]["fallbacks"], 0, "{status}");
    }

    // kill -9 while visitors send; the standby stops a moment later.
    shop.host.kill_9();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Release);
    for task in tasks {
        let _ = task.await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    shop.standby.kill_9();
    let load = std::mem::take(&mut *load.lock().expect("lock"));
    let acked_total: usize = load.acked.values().map(BTreeMap::len).sum();
    let (p50, p99) = quantiles(&load.latencies);
    eprintln!(
        "{mode}: {acked_total} sends acknowledged in {:.1} s by {VISITORS} visitors \
         ({:.0}/s); ack latency p50 {p50:.2} ms, p99 {p99:.2} ms (debug build, loopback)",
        elapsed.as_secs_f64(),
        acked_total as f64 / elapsed.as_secs_f64()
    );

    let output = kefu()
        .args(["lan", "takeover", "--data-dir"])
        .arg(shop.standby_dir.path())
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

    let new_host = Server::start(shop.standby_dir.path(), STANDBY_IP).await;
    let new_admin = new_host.login().await;
    let (mut kept, mut missing, mut unacked_served) = (0usize, 0usize, 0usize);
    for (_, conversation) in &shop.visitors {
        let served = new_host.messages(&new_admin, conversation).await;
        let acked = load.acked.get(conversation).cloned().unwrap_or_default();
        let mut seen = HashSet::new();
        for (index, message) in served.iter().enumerate() {
            let seq = message["seq"].as_u64().expect("seq");
            assert_eq!(seq, index as u64 + 1, "gap-free seq in {conversation}");
            let Some(id) = message["client_msg_id"].as_str() else {
                continue;
            };
            assert!(seen.insert(id.to_owned()), "{id} twice in {conversation}");
            let from_visitor = message["sender"]["type"] == "visitor";
            if from_visitor {
                assert!(load.sent.contains(id), "{id} served but never sent");
            }
            match acked.get(&seq) {
                // The prefix: what was acknowledged at this seq is this.
                Some(acked_id) => assert_eq!(id, acked_id, "seq {seq} of {conversation}"),
                // Written, its answer lost to the kill.
                None if from_visitor => unacked_served += 1,
                None => {}
            }
        }
        let last = served.len() as u64;
        kept += acked.range(..=last).count();
        // What is missing is a suffix of what was acknowledged: all of it
        // above the copy's last seq, none below.
        missing += acked.range(last + 1..).count();
    }
    assert_eq!(kept + missing, acked_total);
    eprintln!(
        "{mode}: after kill -9 and takeover: {kept} acknowledged messages served, {missing} \
         missing (acknowledged, never replicated), {unacked_served} served whose answer the \
         kill cut; lan takeover said at least {behind} log sequences behind"
    );
    if sync {
        assert_eq!(missing, 0, "an acknowledged message is missing");
    }
    // The new host: the old one's standby, serving; the device is its own.
    let status = new_host.status(&new_admin).await;
    assert_eq!(status["role"], "host", "{status}");
    assert_ne!(status["device_id"], json!(null));
    assert_eq!(status["device_id"], json!(shop.device), "{status}");
    let _ = &shop.host_dir;
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_synchronous_standby_kill_9_loses_no_acknowledged_message() {
    assert_eq!(kill_9_under_load(true).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_it_kill_9_loses_exactly_the_acknowledged_unreplicated_suffix() {
    kill_9_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_standby_makes_the_host_fall_back_to_async_until_it_catches_up() {
    let shop = shop(&[
        ("KEFU_LAN__MIN_STANDBY_ACKS", "1"),
        ("KEFU_LAN__SYNC_STANDBY_TIMEOUT_MS", "300"),
    ])
    .await;
    let (host, admin) = (&shop.host, shop.admin.as_str());
    let (token, conversation) = &shop.visitors[0];
    let send = |id: String| async move {
        let started = Instant::now();
        let (status, body) = call(
            host.public,
            Method::POST,
            "/api/v1/visitor/messages",
            Some(token),
            Some(json!({"client_msg_id": id, "content": "hello"})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        started.elapsed()
    };
    let sync_status = |status: &Value| status["sync_standby"].clone();

    // In sync: acknowledged once the standby has it.
    let took = send("before".to_owned()).await;
    let took_next = send("before-2".to_owned()).await;
    let full = host.status(admin).await;
    eprintln!(
        "in sync: the conversation's first send took {took:?}, the next {took_next:?}; \
         standby full syncs {}",
        full["standbys"][0]["full_syncs"]
    );
    assert_eq!(full["standbys"][0]["full_syncs"], 1, "{full}");
    let status = sync_status(&full);
    assert_eq!(status["mode"], "synchronous", "{status}");
    assert_eq!(status["async_acks"], 0, "{status}");
    assert_eq!(status["min_standby_acks"], 1, "{status}");
    let scrape = metrics(host).await;
    assert_eq!(series(&scrape, "kefu_lan_sync_standby_required"), 1.0);
    assert_eq!(series(&scrape, "kefu_lan_sync_standby_synchronous"), 1.0);
    assert_eq!(
        series(&scrape, "kefu_lan_sync_standby_fallbacks_total"),
        0.0
    );

    // The standby frozen: the next send waits for the timeout, then is
    // acknowledged all the same, and the host says it fell back.
    shop.standby.signal("-STOP");
    let took = send("frozen-1".to_owned()).await;
    let status = sync_status(&host.status(admin).await);
    assert_eq!(status["mode"], "async_fallback", "{status}");
    assert!(status["fell_back_at_ms"].is_i64(), "{status}");
    assert_eq!(status["fallbacks"], 1, "{status}");
    assert_eq!(status["async_acks"], 1, "{status}");
    let scrape = metrics(host).await;
    assert_eq!(series(&scrape, "kefu_lan_sync_standby_synchronous"), 0.0);
    assert_eq!(
        series(&scrape, "kefu_lan_sync_standby_fallbacks_total"),
        1.0
    );
    assert_eq!(
        series(&scrape, "kefu_lan_sync_standby_async_acks_total"),
        1.0
    );
    // The next ones do not wait: acknowledged without a standby, no
    // further fallback.
    let mut async_took = Vec::new();
    for n in 2..=5 {
        async_took.push(send(format!("frozen-{n}")).await);
    }
    let status = sync_status(&host.status(admin).await);
    assert_eq!(status["fallbacks"], 1, "{status}");
    assert_eq!(status["async_acks"], 5, "{status}");
    eprintln!(
        "standby frozen: the first send took {took:?} (the 300 ms timeout), the next ones \
         {async_took:?}"
    );
    // The status is for admins only.
    let (code, _) = call(
        host.http,
        Method::GET,
        "/api/v1/lan/status",
        Some(token),
        None,
    )
    .await;
    assert!(code == 401 || code == 403 || code == 404, "{code}");

    // Thawed, it catches up and the host waits for it again.
    shop.standby.signal("-CONT");
    let status = standby_until(host, admin, |status, standby| {
        caught_up(status, standby) && status["sync_standby"]["mode"] == "synchronous"
    })
    .await;
    assert!(
        status["sync_standby"]["fell_back_at_ms"].is_null(),
        "{status}"
    );
    let scrape = metrics(host).await;
    assert_eq!(series(&scrape, "kefu_lan_sync_standby_synchronous"), 1.0);
    send("after".to_owned()).await;
    let status = sync_status(&host.status(admin).await);
    assert_eq!(status["mode"], "synchronous", "{status}");
    assert_eq!(
        status["async_acks"], 5,
        "replicated, not acknowledged alone: {status}"
    );
    assert_eq!(status["fallbacks"], 1, "{status}");
    // Every message is on the host once, in order.
    let served = host.messages(admin, conversation).await;
    let ids: Vec<&str> = served
        .iter()
        .filter_map(|m| m["client_msg_id"].as_str())
        .filter(|id| id.starts_with("before") || id.starts_with("frozen") || *id == "after")
        .collect();
    assert_eq!(
        ids,
        [
            "before", "before-2", "frozen-1", "frozen-2", "frozen-3", "frozen-4", "frozen-5",
            "after"
        ]
    );
}

#[tokio::test]
async fn min_standby_acks_other_than_0_or_1_is_refused_at_start() {
    let refused = |configure: &dyn Fn(&mut Command, &Path)| {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut command = kefu();
        command
            .args(["serve", "--data-dir"])
            .arg(&data)
            .args(["--bind", &free_addr(HOST_IP).to_string()])
            .args(["--lan-bind", &free_addr(HOST_IP).to_string()])
            .env("RUST_LOG", "warn");
        configure(&mut command, dir.path());
        let output = command.output().expect("serve");
        assert!(!output.status.success());
        assert!(!data.exists(), "nothing is written for a bad configuration");
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let stderr = refused(&|command, _| {
        command.args(["--min-standby-acks", "2"]);
    });
    assert!(
        stderr.contains("lan.min_standby_acks must be 0"),
        "{stderr}"
    );
    let stderr = refused(&|command, dir| {
        let file = dir.join("kefu.toml");
        std::fs::write(&file, "[lan]\nmin_standby_acks = 3\n").expect("write");
        command.arg("--config").arg(file);
    });
    assert!(
        stderr.contains("lan.min_standby_acks must be 0"),
        "{stderr}"
    );
    let stderr = refused(&|command, _| {
        command.env("KEFU_LAN__MIN_STANDBY_ACKS", "-1");
    });
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("lan.min_standby_acks"),
        "{stderr}"
    );
    let stderr = refused(&|command, _| {
        command.env("KEFU_LAN__SYNC_STANDBY_TIMEOUT_MS", "0");
    });
    assert!(
        stderr.contains("lan.sync_standby_timeout_ms must be 1"),
        "{stderr}"
    );
}
