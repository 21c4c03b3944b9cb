//! Planned handover with real processes on loopback (issue 18 item 3,
//! docs/LAN.md "Planned handover"): a host (`serve --lan-bind`) on
//! 127.0.0.2, its standby (`lan standby`) on 127.0.0.3, visitors sending
//! all the while. An admin hands the shop over: the host pauses writes
//! (sends wait), the standby catches up and is granted the next term, the
//! old host refuses what waited (503, retryable) and the visitors resend
//! to the new host with the same `client_msg_id`. Nothing acked is lost,
//! nothing is stored twice, every conversation's seq is gap-free. And an
//! interrupted handover (the candidate dies once writes are paused): the
//! host resumes writes in its own term after the bound, and the candidate
//! never writes the next term.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kefu_server::lan::HostAddress;
use kefu_server::lan::client::DeviceClient;
use kefu_server::lan::handover::Successor;
use kefu_server::lan::identity::Identity;
use kefu_server::lan::tls::ServerTrust;
use kefu_tests::WAIT;
use reqwest::Method;
use serde_json::{Value, json};

use super::lan_failover::{
    Server, call, create_app, create_owner, free_addr, kefu, make_standby, pair, standby_process,
    standby_until, visitor,
};

const HOST_IP: &str = "127.0.0.2";
const STANDBY_IP: &str = "127.0.0.3";
const PEER_IP: &str = "127.0.0.4";
const VISITORS: usize = 4;
const RUNS: usize = 3;

/// What the hosts acknowledged: per conversation, seq → client_msg_id,
/// and when each ack came (for the interruption the visitors saw).
#[derive(Default)]
pub(crate) struct Acks {
    pub(crate) by_conversation: HashMap<String, BTreeMap<u64, String>>,
    pub(crate) times: Vec<Instant>,
}

pub(crate) type Shared = Arc<std::sync::Mutex<Acks>>;

/// Visitors sending one message after another to whatever `target` says
/// (the public address, as a reverse proxy would switch it), resending
/// the same `client_msg_id` until it is acked.
pub(crate) fn start_load(
    target: Arc<std::sync::Mutex<SocketAddr>>,
    visitors: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
    acks: Shared,
) -> Vec<tokio::task::JoinHandle<u64>> {
    visitors
        .into_iter()
        .enumerate()
        .map(|(index, (token, conversation))| {
            let (stop, acks, target) = (Arc::clone(&stop), Arc::clone(&acks), Arc::clone(&target));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 1u64;
                while !stop.load(Ordering::Acquire) {
                    let id = format!("v{index}-{n}");
                    let public = *target.lock().expect("lock");
                    let sent = client
                        .post(format!("http://{public}/api/v1/visitor/messages"))
                        .bearer_auth(&token)
                        .json(&json!({"client_msg_id": id, "content": format!("message {n}")}))
                        .timeout(Duration::from_secs(20))
                        .send()
                        .await;
                    let body = match sent {
                        Ok(response) if response.status() == 201 || response.status() == 200 => {
                            response.json::<Value>().await.ok()
                        }
                        _ => None,
                    };
                    let Some(body) = body else {
                        // Refused or failed: the same message again.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let seq = body["message"]["seq"].as_u64().expect("seq");
                    let mut acks = acks.lock().expect("lock");
                    let previous = acks
                        .by_conversation
                        .entry(conversation.clone())
                        .or_default()
                        .insert(seq, id.clone());
                    assert!(previous.is_none(), "seq {seq} acked twice ({id})");
                    acks.times.push(Instant::now());
                    n += 1;
                }
                n - 1
            })
        })
        .collect()
}

pub(crate) async fn acked(acks: &Shared) -> usize {
    acks.lock()
        .expect("lock")
        .by_conversation
        .values()
        .map(BTreeMap::len)
        .sum()
}

/// A host with an app, visitors and a caught-up standby (running).
pub(crate) struct Shop {
    pub(crate) host: Server,
    pub(crate) admin: String,
    pub(crate) device: kefu_server::lan::device_id::DeviceId,
    pub(crate) visitors: Vec<(String, String)>,
    pub(crate) standby: std::process::Child,
}

/// Where a standby serves once it is granted the shop.
#[derive(Clone, Copy)]
pub(crate) struct Serving {
    pub(crate) http: SocketAddr,
    pub(crate) lan: SocketAddr,
    pub(crate) public: SocketAddr,
}

impl Serving {
    pub(crate) fn on(ip: &str) -> Serving {
        Serving {
            http: free_addr(ip),
            lan: free_addr(ip),
            public: free_addr(ip),
        }
    }
}

/// `lan standby` with the listeners it serves on once granted the shop
/// (the same flags and limits as the tests' `serve`).
fn serving_standby(dir: &Path, serving: Serving, env: &[(&str, &str)]) -> std::process::Child {
    kefu()
        .args(["lan", "standby", "--data-dir"])
        .arg(dir)
        .args(["--bind", &serving.http.to_string()])
        .args(["--lan-bind", &serving.lan.to_string()])
        .args(["--public-bind", &serving.public.to_string()])
        .args(["--durability", "os"])
        .env("RUST_LOG", "warn")
        .env("KEFU_LIMITS__LOGIN_PER_MINUTE", "0")
        .env("KEFU_LIMITS__PASSWORD_ATTEMPTS_PER_ACCOUNT_PER_HOUR", "0")
        .env("KEFU_LIMITS__VISITOR_MESSAGES_PER_SECOND", "0")
        .env("KEFU_LIMITS__VISITOR_MESSAGE_BURST", "0")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn lan standby")
}

/// `env` for the host, `standby_env` for the standby.
pub(crate) async fn shop(
    host_dir: &Path,
    standby_dir: &Path,
    env: &[(&str, &str)],
    serving: Option<Serving>,
    standby_env: &[(&str, &str)],
) -> Shop {
    create_owner(host_dir);
    let host = Server::start_on(host_dir, HOST_IP, free_addr(HOST_IP), env).await;
    let admin = host.login().await;
    let device = pair(&host, host_dir, &admin, standby_dir).await;
    make_standby(&host, &admin, &device).await;
    let app = create_app(&host, &admin).await;
    let app_key = app["app"]["app_key"].as_str().expect("app key").to_owned();
    let mut visitors = Vec::new();
    for _ in 0..VISITORS {
        visitors.push(visitor(&host, &app_key).await);
    }
    let standby = match serving {
        Some(serving) => serving_standby(standby_dir, serving, standby_env),
        None => standby_process(standby_dir),
    };
    standby_until(&host, &admin, |status, standby| {
        standby["connected"] == true && standby["applied_seq"] == status["log_seq"]
    })
    .await;
    Shop {
        host,
        admin,
        device,
        visitors,
        standby,
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_planned_handover_under_load_loses_nothing_and_doubles_nothing() {
    let mut pauses = Vec::new();
    let mut interruptions = Vec::new();
    for run in 0..RUNS {
        let host_dir = tempfile::tempdir().expect("tempdir");
        let standby_dir = tempfile::tempdir().expect("tempdir");
        let serving = Serving::on(STANDBY_IP);
        let Shop {
            mut host,
            admin,
            device,
            visitors,
            standby,
        } = shop(host_dir.path(), standby_dir.path(), &[], Some(serving), &[]).await;
        let old_term = host.status(&admin).await["term"].as_u64().expect("term");

        // Only an admin hands over, only to a standby; a bad body changes
        // nothing.
        let (status, body) = call(
            host.http,
            Method::POST,
            "/api/v1/lan/handover",
            Some(&visitors[0].0),
            Some(json!({"device_id": device})),
        )
        .await;
        assert_eq!(status, 404, "{body}");
        let (status, body) = call(
            host.http,
            Method::POST,
            "/api/v1/lan/handover",
            Some(&admin),
            Some(json!({"device_id": "not-a-device"})),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["field"], "device_id", "{body}");
        let host_id = Identity::open(host_dir.path())
            .expect("identity")
            .0
            .device_id();
        let (status, body) = call(
            host.http,
            Method::POST,
            "/api/v1/lan/handover",
            Some(&admin),
            Some(json!({"device_id": host_id})),
        )
        .await;
        assert_eq!(status, 409, "not a standby: {body}");

        // Visitors send all the while.
        let target = Arc::new(std::sync::Mutex::new(host.public));
        let stop = Arc::new(AtomicBool::new(false));
        let acks: Shared = Arc::default();
        let load = start_load(
            Arc::clone(&target),
            visitors.clone(),
            Arc::clone(&stop),
            Arc::clone(&acks),
        );
        while acked(&acks).await < 100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // The handover, to where the standby will serve.
        let new_lan = serving.lan;
        let (status, outcome) = call(
            host.http,
            Method::POST,
            "/api/v1/lan/handover",
            Some(&admin),
            Some(json!({"device_id": device, "address": new_lan.to_string()})),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        let last_old_ack = acks.lock().expect("lock").times.last().copied();
        // The visitors' resends go to where the standby serves (as a
        // reverse proxy would switch), from now on.
        *target.lock().expect("lock") = serving.public;
        let successor: Successor =
            serde_json::from_value(outcome["successor"].clone()).expect("successor");
        assert_eq!(successor.device_id, device);
        assert_eq!(successor.old_term, old_term);
        assert_eq!(successor.term, old_term + 1);
        successor.verify(&host_id).expect("signed by the old host");
        pauses.push(outcome["pause_ms"].as_f64().expect("pause"));

        // The standby goes on as the new host by itself, in the same
        // process: granted term T+1, and its start as host opens T+2 (as
        // every start as host does).
        let mut new_host = Server::adopt(standby, serving.http, serving.lan, serving.public);
        new_host.ready().await;
        assert!(
            new_host.child.try_wait().expect("wait").is_none(),
            "the standby process serves"
        );
        let state: Value = serde_json::from_slice(
            &std::fs::read(standby_dir.path().join("lan/state.json")).expect("state"),
        )
        .expect("json");
        assert_eq!(state["role"], "host", "{state}");
        assert_eq!(state["term"], old_term + 2, "{state}");
        let taken: Value = serde_json::from_slice(
            &std::fs::read(standby_dir.path().join("lan/takeover.json")).expect("takeover"),
        )
        .expect("json");
        assert!(taken["fenced_at_ms"].is_i64(), "{taken}");

        // The old host writes nothing more: sends are refused (503,
        // retryable), it records who took over, and it tells its devices
        // where the shop went, signed.
        let (status, body) = call(
            host.public,
            Method::POST,
            "/api/v1/visitor/messages",
            Some(&visitors[0].0),
            Some(json!({"client_msg_id": "to-the-old-host", "content": "late"})),
        )
        .await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        let status = host.status(&admin).await;
        assert_eq!(
            status["superseded_by"]["device_id"],
            json!(device),
            "{status}"
        );
        assert_eq!(status["superseded_by"]["term"], old_term + 1, "{status}");
        let (identity, _) = Identity::open(standby_dir.path()).expect("identity");
        let mut client = DeviceClient::connect(
            &identity,
            ServerTrust::Pinned(host_id),
            &HostAddress::from(host.lan),
        )
        .await
        .expect("connect");
        let (status, notice) = client
            .request(Method::GET, "/lan/v1/successor", None, None)
            .await
            .expect("successor");
        assert_eq!(status, 200, "{notice}");
        let notice: Successor = serde_json::from_value(notice).expect("notice");
        assert_eq!(notice, successor);

        // The visitors' resends succeed on the new host.
        let before = acked(&acks).await;
        while acked(&acks).await < before + 100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Release);
        for task in load {
            task.await.expect("visitor");
        }
        let first_new_ack = {
            let acks = acks.lock().expect("lock");
            last_old_ack.and_then(|last| acks.times.iter().copied().find(|t| *t > last))
        };
        if let (Some(last), Some(first)) = (last_old_ack, first_new_ack) {
            interruptions.push((first - last).as_secs_f64() * 1000.0);
        }

        // 0 acked lost, 0 duplicates, gap-free seq on the new host.
        let new_admin = new_host.login().await;
        let acked_by_conversation = acks.lock().expect("lock").by_conversation.clone();
        let mut total = 0;
        for (_, conversation) in &visitors {
            let served = new_host.messages(&new_admin, conversation).await;
            let expected = acked_by_conversation
                .get(conversation)
                .cloned()
                .unwrap_or_default();
            let mut seen = HashSet::new();
            for (index, message) in served.iter().enumerate() {
                let seq = message["seq"].as_u64().expect("seq");
                assert_eq!(seq, index as u64 + 1, "gap-free seq in {conversation}");
                if let Some(id) = message["client_msg_id"].as_str() {
                    assert!(seen.insert(id.to_owned()), "{id} twice in {conversation}");
                }
            }
            for (seq, id) in &expected {
                let stored = served
                    .get(*seq as usize - 1)
                    .unwrap_or_else(|| panic!("acked seq {seq} ({id}) lost in {conversation}"));
                assert_eq!(stored["client_msg_id"], id.as_str(), "seq {seq}");
            }
            total += expected.len();
        }
        eprintln!(
            "handover run {run}: {total} acked messages, none lost or doubled; writes paused \
             {:.1} ms (drain {:.1} ms)",
            outcome["pause_ms"].as_f64().unwrap_or(0.0),
            outcome["drain_ms"].as_f64().unwrap_or(0.0)
        );
        new_host.kill_9();
        host.kill_9();
    }
    pauses.sort_by(f64::total_cmp);
    interruptions.sort_by(f64::total_cmp);
    eprintln!(
        "handover write pause over {RUNS} runs: p50 {:.1} ms, max {:.1} ms; the visitors' \
         interruption (last ack on the old host → first on the new, the standby turning into \
         the host in its own process): p50 {:.0} ms, max {:.0} ms",
        percentile(&pauses, 0.5),
        percentile(&pauses, 1.0),
        percentile(&interruptions, 0.5),
        percentile(&interruptions, 1.0),
    );
}

pub(crate) fn signal(child: &std::process::Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_handover_resumes_writes_in_the_hosts_term_and_the_candidate_never_writes_the_next()
 {
    let host_dir = tempfile::tempdir().expect("tempdir");
    let standby_dir = tempfile::tempdir().expect("tempdir");
    let Shop {
        host,
        admin,
        device,
        visitors,
        mut standby,
    } = shop(
        host_dir.path(),
        standby_dir.path(),
        &[("KEFU_LAN__HANDOVER_TIMEOUT_SECS", "2")],
        None,
        &[],
    )
    .await;
    let term = host.status(&admin).await["term"].as_u64().expect("term");
    // A queued chat, for a claim during the pause (its "joined" line is
    // written by Kefu itself, through `send::line`).
    let (queued_token, queued) = &visitors[1];
    let (status, body) = call(
        host.public,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(queued_token),
        Some(json!({"client_msg_id": "queued", "content": "anyone?"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    conversation_until(&host, &admin, queued, |body| {
        body["conversation"]["status"] == "queued"
    })
    .await;
    // The candidate is frozen (still counted as connected), so it cannot
    // answer once the host pauses; then it dies.
    signal(&standby, "-STOP");
    let asked = Instant::now();
    let handover = tokio::spawn({
        let (http, admin) = (host.http, admin.clone());
        async move {
            call(
                http,
                Method::POST,
                "/api/v1/lan/handover",
                Some(&admin),
                Some(json!({"device_id": device})),
            )
            .await
        }
    });
    // A send made during the pause waits, then is written in this term.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (token, _) = &visitors[0];
    let waiting = tokio::spawn({
        let (public, token) = (host.public, token.clone());
        async move {
            call(
                public,
                Method::POST,
                "/api/v1/visitor/messages",
                Some(&token),
                Some(json!({"client_msg_id": "during-the-pause", "content": "wait for me"})),
            )
            .await
        }
    });
    let claiming = tokio::spawn({
        let (http, admin, queued) = (host.http, admin.clone(), queued.clone());
        async move {
            call(
                http,
                Method::POST,
                &format!("/api/v1/conversations/{queued}/claim"),
                Some(&admin),
                None,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the send waits while writes pause");
    assert!(
        !claiming.is_finished(),
        "a line Kefu writes itself waits at the gate too"
    );
    let _ = standby.kill();
    let _ = standby.wait();
    let (status, body) = handover.await.expect("handover");
    let resumed_after = asked.elapsed();
    assert_eq!(status, 409, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("resumed writes"), "{message}");
    let (status, body) = waiting.await.expect("send");
    assert_eq!(status, 201, "written after the pause: {body}");
    let paused_seq = body["message"]["seq"].as_u64().expect("seq");
    let (status, body) = claiming.await.expect("claim");
    assert_eq!(status, 200, "the claim went on after the pause: {body}");
    let joined = host.messages(&admin, queued).await;
    assert!(
        joined
            .iter()
            .any(|m| m["kind"] == "event" && m["meta"]["by"] == "claim"),
        "the joined line, written in the host's term after the pause: {joined:?}"
    );
    eprintln!(
        "interrupted handover: writes resumed {:.2} s after the ask (bound 2 s)",
        resumed_after.as_secs_f64()
    );

    // One writer per term: the host is still the host in its term, the
    // candidate never wrote the next one, and a late grant is refused.
    let status = host.status(&admin).await;
    assert_eq!(status["term"], term, "{status}");
    assert!(status["superseded_by"].is_null(), "{status}");
    let state: Value = serde_json::from_slice(
        &std::fs::read(standby_dir.path().join("lan/state.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(state["role"], "peer", "{state}");
    assert_eq!(state["term"], 0, "{state}");
    let host_id = Identity::open(host_dir.path())
        .expect("identity")
        .0
        .device_id();
    let (identity, _) = Identity::open(standby_dir.path()).expect("identity");
    let mut client = DeviceClient::connect(
        &identity,
        ServerTrust::Pinned(host_id),
        &HostAddress::from(host.lan),
    )
    .await
    .expect("connect");
    let seq = host.status(&admin).await["log_seq"].as_u64().expect("seq");
    let (status, body) = client
        .request(
            Method::POST,
            "/lan/v1/handover/commit",
            Some(&json!({"seq": seq, "term": term + 1})),
            None,
        )
        .await
        .expect("commit");
    assert_eq!(status, 409, "{body}");
    let (status, body) = call(
        host.public,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(token),
        Some(json!({"client_msg_id": "after", "content": "still here"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["message"]["seq"].as_u64().expect("seq") > paused_seq,
        "{body}"
    );
}

/// Reads a WebSocket until the server closes it: (code, reason).
pub(crate) async fn close_of(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (u16, String) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => panic!("not closed within {WAIT:?}"),
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (frame.code.into(), frame.reason.to_string());
            }
            Ok(Some(Ok(Message::Close(None)) | Err(_)) | None) => panic!("closed without a code"),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// An agent's WebSocket at `base`, past its `welcome`.
pub(crate) async fn agent_ws(
    base: SocketAddr,
    token: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Value,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{base}/api/v1/ws"))
        .await
        .expect("ws connect");
    ws.send(Message::text(
        json!({"type": "hello", "token": token}).to_string(),
    ))
    .await
    .expect("hello");
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("welcome in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).expect("json");
            assert_eq!(value["type"], "welcome", "{value}");
            return (ws, value);
        }
    }
}

/// The peer's link, polled until `check` holds.
async fn link_until(peer: SocketAddr, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, link) = call(peer, Method::GET, "/api/v1/lan/link", None, None).await;
        if status == 200 && check(&link) {
            return link;
        }
        assert!(Instant::now() < deadline, "the peer's link: {link}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_are_told_where_the_shop_went_and_a_peer_follows_without_a_restart() {
    let host_dir = tempfile::tempdir().expect("tempdir");
    let standby_dir = tempfile::tempdir().expect("tempdir");
    let peer_dir = tempfile::tempdir().expect("tempdir");
    let serving = Serving::on(STANDBY_IP);
    let Shop {
        mut host,
        admin,
        device,
        visitors,
        standby,
    } = shop(host_dir.path(), standby_dir.path(), &[], Some(serving), &[]).await;
    let old_term = host.status(&admin).await["term"].as_u64().expect("term");

    // A peer on .4, relaying an agent's REST and WebSocket to the host.
    let peer_device = pair(&host, host_dir.path(), &admin, peer_dir.path()).await;
    let peer_addr = free_addr(PEER_IP);
    let mut peer = kefu()
        .args(["serve", "--data-dir"])
        .arg(peer_dir.path())
        .args(["--bind", &peer_addr.to_string()])
        .args(["--peer-of", &host.lan.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn peer");
    let host_id = Identity::open(host_dir.path())
        .expect("identity")
        .0
        .device_id();
    link_until(peer_addr, |link| {
        link["state"] == "connected" && link["host_device_id"] == json!(host_id)
    })
    .await;
    // The standby's SQLite copy holds the peer's approval, the agent's
    // session and the conversation once the handover's final snapshot is
    // taken.
    let (token, conversation) = &visitors[0];
    let (status, body) = call(
        host.public,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(token),
        Some(json!({"client_msg_id": "before", "content": "hello"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    conversation_until(&host, &admin, conversation, |_| true).await;
    let (mut direct, _) = agent_ws(host.http, &admin).await;
    let (mut relayed, welcome) = agent_ws(peer_addr, &admin).await;
    assert_eq!(welcome["term"], old_term, "{welcome}");

    let (status, outcome) = call(
        host.http,
        Method::POST,
        "/api/v1/lan/handover",
        Some(&admin),
        Some(json!({"device_id": device, "address": serving.lan.to_string()})),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    let handed = Instant::now();

    // Clients are told where to go: close 4301, the successor's device ID
    // and address in the reason; through the peer's tunnel too.
    let (code, reason) = close_of(&mut direct).await;
    assert_eq!(code, 4301, "{reason}");
    assert_eq!(
        reason,
        format!("moved {device} {}", serving.lan),
        "the close names the successor"
    );
    let (code, _) = close_of(&mut relayed).await;
    assert_eq!(code, 4301);
    // As a client does after a close frame: its socket ends, and so does
    // the peer's tunnel, which has the peer's link look at the host.
    drop(relayed);
    drop(direct);
    // A WebSocket opened later on the old host is closed the same way.
    let (mut late, _) = agent_ws(host.http, &admin).await;
    assert_eq!(close_of(&mut late).await.0, 4301);
    // REST on the old host: 503 with the successor in the error body.
    let (status, body) = call(
        host.public,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(&visitors[0].0),
        Some(json!({"client_msg_id": "to-the-old-host", "content": "late"})),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(
        body["error"]["successor"]["device_id"],
        json!(device),
        "{body}"
    );
    assert_eq!(
        body["error"]["successor"]["address"],
        serving.lan.to_string(),
        "{body}"
    );
    assert_eq!(body["error"]["successor"]["term"], old_term + 1, "{body}");

    // The standby serves by itself; the peer follows the signed notice
    // without a restart: the new host pinned, persisted, connected.
    let new_host = Server::adopt(standby, serving.http, serving.lan, serving.public);
    new_host.ready().await;
    let link = link_until(peer_addr, |link| {
        link["state"] == "connected" && link["host_device_id"] == json!(device)
    })
    .await;
    eprintln!(
        "the peer followed the new host {:.0} ms after the handover's answer (the new host's \
         start included)",
        handed.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(link["host"], serving.lan.to_string(), "{link}");
    assert!(link["term"].as_u64().expect("term") > old_term, "{link}");
    assert!(
        peer.try_wait().expect("wait").is_none(),
        "the same peer process"
    );
    let state: Value = serde_json::from_slice(
        &std::fs::read(peer_dir.path().join("lan/state.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(state["host"]["device_id"], json!(device), "{state}");
    assert_eq!(state["host"]["address"], serving.lan.to_string(), "{state}");
    assert_eq!(state["role"], "peer", "{state}");
    let _ = peer_device;

    // The agent's session works through the peer on the new host: a
    // visitor's resend lands there and the agent reads it, REST and
    // WebSocket alike.
    let (status, body) = call(
        new_host.public,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(&visitors[0].0),
        Some(json!({"client_msg_id": "to-the-old-host", "content": "late"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        peer_addr,
        Method::GET,
        &format!("/api/v1/conversations/{conversation}/messages"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let messages = body["messages"].as_array().expect("messages");
    assert!(
        messages
            .iter()
            .any(|m| m["client_msg_id"] == "to-the-old-host"),
        "{body}"
    );
    let (_ws, welcome) = agent_ws(peer_addr, &admin).await;
    assert_eq!(welcome["term"], old_term + 2, "{welcome}");

    // Restarted with its old `--peer-of` (the old host's address, where
    // the old host still answers with its own key), the peer goes to the
    // host it pinned, at the address it recorded, instead of refusing.
    let _ = peer.kill();
    let _ = peer.wait();
    drop(_ws);
    let mut peer = kefu()
        .args(["serve", "--data-dir"])
        .arg(peer_dir.path())
        .args(["--bind", &peer_addr.to_string()])
        .args(["--peer-of", &host.lan.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn peer");
    let link = link_until(peer_addr, |link| {
        link["state"] == "connected" && link["host_device_id"] == json!(device)
    })
    .await;
    assert_eq!(link["host"], serving.lan.to_string(), "{link}");
    let (_ws, welcome) = agent_ws(peer_addr, &admin).await;
    assert_eq!(welcome["term"], old_term + 2, "{welcome}");

    let _ = peer.kill();
    let _ = peer.wait();
    drop(new_host);
    host.kill_9();
}

/// A conversation on `host` as agents see it, polled until `check` holds
/// (a visitor's first message starts it after the ack).
pub(crate) async fn conversation_until(
    host: &Server,
    admin: &str,
    conversation: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = call(
            host.http,
            Method::GET,
            &format!("/api/v1/conversations/{conversation}"),
            Some(admin),
            None,
        )
        .await;
        if status == 200 && check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the conversation: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
