//! Reconciliation after a fork (issue 18, docs/LAN.md "Reconciliation
//! after a takeover"), with real processes on loopback: a host on
//! 127.0.0.2 with visitors sending all the while, its standby on 127.0.0.3.
//! The standby stops while the host keeps acknowledging (everything from
//! then on is past the fork), the host is cut off (SIGSTOP), the standby
//! takes over and serves; then the old host comes back (SIGCONT) and goes
//! on acknowledging until the new host's term reaches it. It demotes within
//! a bound and writes nothing more, and every message it acknowledged past
//! the fork lands on the new host exactly once (counted), also when the
//! re-send is done again from the start.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kefu_tests::WAIT;
use reqwest::Method;
use serde_json::{Value, json};

use crate::lan_failover::{
    Server, call, create_app, create_owner, kefu, make_standby, pair, standby_process,
    standby_until, visitor,
};

const HOST_IP: &str = "127.0.0.2";
const STANDBY_IP: &str = "127.0.0.3";
const VISITORS: usize = 4;

/// What the old host acknowledged: per conversation, seq → client_msg_id.
type Acked = Arc<std::sync::Mutex<HashMap<String, BTreeMap<u64, String>>>>;

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
                    let acknowledged = match sent {
                        Ok(response) if response.status() == 201 => {
                            response.json::<Value>().await.ok()
                        }
                        _ => None,
                    };
                    let Some(body) = acknowledged else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
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

fn signal(server: &Server, name: &str) {
    let status = Command::new("kill")
        .args([name, &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

pub(crate) fn takeover_record(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("lan/takeover.json")).expect("takeover.json"))
        .expect("json")
}

/// Waits until the new host recorded its reconciliation; returns it.
pub(crate) async fn reconciled(dir: &Path) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let record = takeover_record(dir);
        if record["reconciled"].is_object() {
            return record["reconciled"].clone();
        }
        assert!(Instant::now() < deadline, "not reconciled: {record}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every conversation on the new host: gap-free, no `client_msg_id` twice,
/// every acknowledged one there exactly once. Returns how many of them
/// were past the fork.
pub(crate) async fn check_exactly_once(
    new_host: &Server,
    admin: &str,
    visitors: &[(String, String)],
    acked: &HashMap<String, BTreeMap<u64, String>>,
    fork_heads: &Value,
) -> usize {
    let mut past_fork = 0;
    for (_, conversation) in visitors {
        let served = new_host.messages(admin, conversation).await;
        let mut seen = HashSet::new();
        for (index, message) in served.iter().enumerate() {
            assert_eq!(
                message["seq"],
                index as u64 + 1,
                "gap-free in {conversation}"
            );
            if let Some(id) = message["client_msg_id"].as_str() {
                assert!(seen.insert(id.to_owned()), "{id} twice in {conversation}");
            }
        }
        let fork_head = fork_heads[conversation].as_u64().unwrap_or(0);
        for (seq, id) in acked.get(conversation).into_iter().flatten() {
            assert!(
                seen.contains(id),
                "{id} (seq {seq} on the old host, fork at {fork_head}) lost in {conversation}"
            );
            if *seq > fork_head {
                past_fork += 1;
            }
        }
    }
    past_fork
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_host_cut_off_then_back_re_sends_its_writes_past_the_fork_exactly_once() {
    let host_dir = tempfile::tempdir().expect("tempdir");
    let standby_dir = tempfile::tempdir().expect("tempdir");
    create_owner(host_dir.path());
    let host = Server::start(host_dir.path(), HOST_IP).await;
    let admin = host.login().await;
    let device = pair(&host, host_dir.path(), &admin, standby_dir.path()).await;
    make_standby(&host, &admin, &device).await;
    let app = create_app(&host, &admin).await;
    let app_key = app["app"]["app_key"].as_str().expect("app key").to_owned();
    let mut visitors = Vec::new();
    for _ in 0..VISITORS {
        visitors.push(visitor(&host, &app_key).await);
    }
    let mut standby = standby_process(standby_dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let load = start_load(
        host.public,
        visitors.clone(),
        Arc::clone(&stop),
        Arc::clone(&acked),
    );
    // The copy follows under load (its full sync holds the conversations).
    standby_until(&host, &admin, |_, standby| {
        let sent: usize = acked
            .lock()
            .expect("lock")
            .values()
            .map(BTreeMap::len)
            .sum();
        standby["connected"] == true
            && standby["applied_seq"].as_u64().unwrap_or(0) > 0
            && sent >= 200
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A visitor's WebSocket on the old host: the line its cursors count in.
    let mut ws = kefu_tests::Ws::connect(&format!("ws://{}/api/v1/ws", host.public)).await;
    ws.send(json!({"type": "hello", "token": visitors[0].0, "resume": {}}))
        .await;
    let welcome = ws.next().await;
    let old_line = welcome["history_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no history_id in {welcome}"))
        .to_owned();
    drop(ws);

    // The fork: the standby stops while the host goes on acknowledging,
    // then the host is cut off.
    let _ = standby.kill();
    let _ = standby.wait();
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&host, "-STOP");
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
    let record = takeover_record(standby_dir.path());
    let fork_heads = record["fork"]["heads"].clone();
    assert!(
        fork_heads.as_object().is_some_and(|h| !h.is_empty()),
        "{record}"
    );
    let new_host = Server::start(standby_dir.path(), STANDBY_IP).await;
    let new_admin = new_host.login().await;

    // Healed: the old host goes on acknowledging in its stale term until
    // the new term reaches it, then demotes.
    let healed = Instant::now();
    signal(&host, "-CONT");
    let deadline = Instant::now() + WAIT;
    loop {
        let status = host.status(&admin).await;
        if !status["superseded_by"].is_null() {
            assert_eq!(
                status["superseded_by"]["device_id"],
                json!(device),
                "{status}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old host did not demote: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let demoted_after = healed.elapsed();
    // From then on it writes nothing: a send is refused, not acknowledged.
    let (status, body) = call(
        host.public,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(&visitors[0].0),
        Some(json!({"client_msg_id": "after-the-fence", "content": "late"})),
    )
    .await;
    assert_eq!(status, 503, "a superseded host writes nothing: {body}");
    stop.store(true, Ordering::Release);
    for task in load {
        let _ = task.await;
    }
    let acked_after_fence = {
        let (status, _) = call(
            host.public,
            Method::POST,
            "/api/v1/visitor/messages",
            Some(&visitors[1].0),
            Some(json!({"client_msg_id": "after-the-fence-2", "content": "late"})),
        )
        .await;
        status == 201
    };
    assert!(!acked_after_fence);

    // Reconciled: every message the old host acknowledged is on the new
    // host exactly once; those past the fork got new seqs there.
    let done = reconciled(standby_dir.path()).await;
    let acked = acked.lock().expect("lock").clone();
    let past_fork = check_exactly_once(&new_host, &new_admin, &visitors, &acked, &fork_heads).await;
    let resent = done["resent"].as_u64().expect("resent");
    assert!(past_fork > 0, "nothing was acknowledged past the fork");
    assert!(
        resent >= past_fork as u64,
        "{done}, {past_fork} acknowledged past the fork"
    );
    assert_eq!(done["skipped"], 0, "{done}");
    for (_, conversation) in &visitors {
        let served = new_host.messages(&new_admin, conversation).await;
        assert!(
            !served
                .iter()
                .any(|m| m["client_msg_id"] == "after-the-fence"),
            "a refused send was written"
        );
    }
    eprintln!(
        "fork: {past_fork} acknowledged messages past the fork; re-sent {resent}, \
         {} already there; the old host demoted {:.0} ms after the heal",
        done["duplicates"],
        demoted_after.as_secs_f64() * 1000.0
    );

    // The visitor comes back to the new host with its cursor from the old
    // one, past the fork: `welcome` names another line and where both
    // agree, the catch-up starts there, and the visitor's view (what it
    // held up to there, then the catch-up) has every acknowledged message
    // once.
    let (token, conversation) = &visitors[0];
    let held = acked.get(conversation).cloned().unwrap_or_default();
    let (&cursor, _) = held.last_key_value().expect("acked");
    let fork_head = fork_heads[conversation].as_u64().expect("fork head");
    assert!(cursor > fork_head, "cursor {cursor}, fork at {fork_head}");
    let ws_url = format!("ws://{}/api/v1/ws", new_host.public);
    let mut ws = kefu_tests::Ws::connect(&ws_url).await;
    ws.send(json!({"type": "hello", "token": token, "resume": {conversation.as_str(): cursor}, "history_id": old_line}))
        .await;
    let welcome = ws.next().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let new_line = welcome["history_id"]
        .as_str()
        .expect("history_id")
        .to_owned();
    assert_ne!(new_line, old_line, "{welcome}");
    assert_eq!(
        welcome["forked"],
        json!({conversation.as_str(): fork_head}),
        "{welcome}"
    );
    let mut view: Vec<String> = held.range(..=fork_head).map(|(_, id)| id.clone()).collect();
    let mut expected_seq = fork_head + 1;
    while let Some(frame) = ws.try_next(Duration::from_millis(500)).await {
        assert_eq!(frame["type"], "message", "{frame}");
        assert_eq!(frame["message"]["seq"], expected_seq, "{frame}");
        expected_seq += 1;
        if let Some(id) = frame["message"]["client_msg_id"].as_str() {
            view.push(id.to_owned());
        }
    }
    let served: Vec<String> = new_host
        .messages(&new_admin, conversation)
        .await
        .iter()
        .filter_map(|m| m["client_msg_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(view, served, "the visitor's view is the surviving history");
    let unique: HashSet<&String> = view.iter().collect();
    assert_eq!(unique.len(), view.len(), "a message seen twice");
    assert!(
        held.values().all(|id| unique.contains(id)),
        "an acked message lost"
    );
    drop(ws);
    // A cursor from the new line itself, or from no line: resumed as is.
    for line in [Some(new_line.as_str()), None] {
        let mut ws = kefu_tests::Ws::connect(&ws_url).await;
        ws.send(json!({"type": "hello", "token": token, "resume": {conversation.as_str(): cursor}, "history_id": line}))
            .await;
        let welcome = ws.next().await;
        assert_eq!(welcome["history_id"], new_line.as_str(), "{welcome}");
        assert!(welcome.get("forked").is_none(), "{welcome}");
        let first = ws.try_next(Duration::from_millis(500)).await;
        if let Some(first) = first {
            assert_eq!(first["message"]["seq"], cursor + 1, "{first}");
        }
    }

    // Done again from the start (as after a crash midway): nothing twice.
    let mut new_host = new_host;
    new_host.kill_9();
    let mut record = takeover_record(standby_dir.path());
    record.as_object_mut().expect("object").remove("reconciled");
    std::fs::write(
        standby_dir.path().join("lan/takeover.json"),
        serde_json::to_vec(&record).expect("json"),
    )
    .expect("write");
    new_host.restart(standby_dir.path()).await;
    let again = reconciled(standby_dir.path()).await;
    assert_eq!(again["resent"], 0, "{again}");
    assert_eq!(
        again["duplicates"].as_u64(),
        Some(resent + done["duplicates"].as_u64().expect("duplicates")),
        "{again}"
    );
    let new_admin = new_host.login().await;
    let past_fork_again =
        check_exactly_once(&new_host, &new_admin, &visitors, &acked, &fork_heads).await;
    assert_eq!(past_fork_again, past_fork);
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fork_routes_answer_only_the_device_that_superseded_the_host() {
    let host_dir = tempfile::tempdir().expect("tempdir");
    let device_dir = tempfile::tempdir().expect("tempdir");
    create_owner(host_dir.path());
    let host = Server::start(host_dir.path(), HOST_IP).await;
    let admin = host.login().await;
    let device = pair(&host, host_dir.path(), &admin, device_dir.path()).await;
    let (identity, _) =
        kefu_server::lan::identity::Identity::open(device_dir.path()).expect("identity");
    let host_id = kefu_server::lan::identity::Identity::open(host_dir.path())
        .expect("host identity")
        .0
        .device_id();
    let mut client = kefu_server::lan::client::DeviceClient::connect(
        &identity,
        kefu_server::lan::tls::ServerTrust::Pinned(host_id),
        &kefu_server::lan::HostAddress::from(host.lan),
    )
    .await
    .expect("connect");
    // An approved device, the host not superseded: refused.
    for path in [
        "/lan/v1/fork/heads",
        "/lan/v1/fork/messages?conversation_id=01J00000000000000000000000&after=0",
    ] {
        let (status, body) = client
            .request(Method::GET, path, None, None)
            .await
            .expect("request");
        assert_eq!(status.as_u16(), 403, "{path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
    }
    // A bad query is the protocol's error body.
    let (status, body) = client
        .request(
            Method::GET,
            "/lan/v1/fork/messages?conversation_id=nope&after=0",
            None,
            None,
        )
        .await
        .expect("request");
    assert_eq!(status.as_u16(), 400, "{body}");
    let _ = device;
}
