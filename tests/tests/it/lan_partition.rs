//! Partitions and crashes in the middle of moving the host role (issue
//! 18; docs/LAN.md, "Partition, takeover, heal" and "Crash-safety of
//! handover and takeover"), with real server processes:
//!
//! - **A real partition.** The host in network namespace a, its standby
//!   in namespace b (the veth pair of `lan_discovery`, 10.231.0.0/24
//!   inside the namespaces only), visitors sending to the host all the
//!   while from the test process (a thread that entered namespace a with
//!   `setns`). The link goes down (`ip link set … down` on the host's
//!   veth); the standby stops hearing the host; it is taken over and
//!   serves in namespace b, where visitors write too, while the old host
//!   goes on acknowledging in its stale term (the fork). The link comes
//!   back: the old host demotes within a bound (measured), acknowledges
//!   nothing once it knows the higher term (every send 503, its
//!   WebSockets closed with 4301), and every message it acknowledged past
//!   the fork lands on the new host exactly once, every conversation
//!   gap-free. The schedule (visitors, when the link goes down, how long
//!   each phase lasts, the visitors' pace) comes from a seed:
//!   `KEFU_TEST_SEED=N` repeats a run's schedule; each run prints its seed.
//! - **The candidate of a planned handover killed between writing its
//!   term and announcing it**, at a test-only crash point
//!   (`kefu_server::fault`, `KEFU_TEST_CRASH_AT`): one writer per term,
//!   and the shop recovers when the candidate is started again.
//! - **`lan takeover` killed at each of its steps**: run again, it
//!   finishes the job, with the same fork point and every message there.
//!
//! Where namespaces cannot be made (not root, no `ip`), the partition
//! test prints "SKIPPED: …" and passes, as lan_discovery's do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use kefu_server::fault::CRASH_AT_ENV;
use kefu_tests::WAIT;
use reqwest::Method;
use serde_json::{Value, json};

use crate::lan_discovery::{Namespaces, namespaces_or_skip};
use crate::lan_failover::{
    Server, call, create_app, create_owner, free_addr, kefu, make_standby, pair, say, serve_with,
    standby_process, standby_process_with, standby_until, visitor,
};
use crate::lan_handover::{Serving, Shared, Shop, acked, agent_ws, close_of, shop, start_load};
use crate::lan_netns::{enter, kefu_in};
use crate::lan_reconcile::{check_exactly_once, reconciled, takeover_record};

const HOST_IP: &str = "127.0.0.2";
const STANDBY_IP: &str = "127.0.0.3";
/// The namespaces' own addresses (lan_discovery's veth pair).
const HOST_LAN_IP: &str = "10.231.0.1";
const STANDBY_LAN_IP: &str = "10.231.0.2";
/// Inside a namespace, its own loopback.
const LOOPBACK: &str = "127.0.0.1";
/// The bound on the old host's demotion after the heal: the new host's
/// fencer tries every second, each try bounded by the LAN client's
/// connect timeout (10 s). A deadline for a condition, not a timing.
const DEMOTION_BOUND: Duration = Duration::from_secs(25);

/// The seeded schedule of a partition run.
#[derive(Debug)]
struct Schedule {
    seed: u64,
    /// Visitors sending at once.
    visitors: usize,
    /// Acknowledged sends before the link goes down.
    acks_before_cut: usize,
    /// How long the old host is alone, cut off, before the takeover.
    alone_ms: u64,
    /// How long both hosts write before the link comes back.
    both_ms: u64,
    /// Each visitor's pause between two sends.
    pace_ms: u64,
}

/// splitmix64: a small, good-enough generator, so that a seed gives the
/// same schedule on every machine and every version of every crate.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `low..=high` for a schedule.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

impl Schedule {
    /// From `KEFU_TEST_SEED`, or a new seed (printed, to repeat the run).
    fn from_env() -> Schedule {
        let seed = std::env::var("KEFU_TEST_SEED")
            .ok()
            .map(|text| text.trim().parse().expect("KEFU_TEST_SEED is a u64"))
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .as_nanos() as u64
            });
        let mut random = SplitMix(seed);
        Schedule {
            seed,
            visitors: random.between(2, 4) as usize,
            acks_before_cut: random.between(100, 300) as usize,
            alone_ms: random.between(300, 1200),
            both_ms: random.between(500, 1500),
            pace_ms: random.between(0, 5),
        }
    }
}

/// One send of a visitor, as the visitor saw it.
#[derive(Clone, Debug)]
struct Sent {
    conversation: String,
    client_msg_id: String,
    /// 0: no answer (a connection error or the client's timeout).
    status: u16,
    seq: Option<u64>,
    sent_at: Instant,
    answered_at: Instant,
}

type Log = Arc<Mutex<Vec<Sent>>>;

/// Raises every flag when dropped (also while unwinding).
struct StopOnDrop(Vec<Arc<AtomicBool>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for flag in &self.0 {
            flag.store(true, Ordering::Release);
        }
    }
}

/// Visitors sending from a thread inside namespace `side` (its sockets are
/// made there) to `public`, one message after another until `stop`, each
/// with a new `client_msg_id` (`{prefix}{visitor}-{n}`), every answer
/// logged.
#[allow(clippy::too_many_arguments)]
fn load_from<'scope>(
    scope: &'scope Scope<'scope, '_>,
    ns: &'scope Namespaces,
    side: usize,
    public: SocketAddr,
    visitors: Vec<(String, String)>,
    prefix: &'static str,
    pace: Duration,
    stop: Arc<AtomicBool>,
    log: Log,
) -> ScopedJoinHandle<'scope, ()> {
    scope.spawn(move || {
        enter(ns, side);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let senders = visitors
                .into_iter()
                .enumerate()
                .map(|(index, (token, conversation))| {
                    let (stop, log) = (Arc::clone(&stop), Arc::clone(&log));
                    async move {
                        let client = reqwest::Client::new();
                        let mut n = 0u64;
                        while !stop.load(Ordering::Acquire) {
                            n += 1;
                            let id = format!("{prefix}{index}-{n}");
                            let sent_at = Instant::now();
                            let answer = client
                                .post(format!("http://{public}/api/v1/visitor/messages"))
                                .bearer_auth(&token)
                                .json(&json!({"client_msg_id": id, "content": format!("message {n}")}))
                                .timeout(Duration::from_secs(5))
                                .send()
                                .await;
                            let (status, body) = match answer {
                                Ok(response) => {
                                    let status = response.status().as_u16();
                                    (status, response.json::<Value>().await.unwrap_or(Value::Null))
                                }
                                Err(_) => (0, Value::Null),
                            };
                            log.lock().expect("lock").push(Sent {
                                conversation: conversation.clone(),
                                client_msg_id: id,
                                status,
                                seq: body["message"]["seq"].as_u64(),
                                sent_at,
                                answered_at: Instant::now(),
                            });
                            let pause = if status == 201 { pace } else { Duration::from_millis(20) };
                            tokio::time::sleep(pause).await;
                        }
                    }
                });
            futures_util::future::join_all(senders).await;
        });
    })
}

/// What the log says was acknowledged: per conversation, seq → id.
fn acknowledged(log: &[Sent]) -> HashMap<String, BTreeMap<u64, String>> {
    let mut acked: HashMap<String, BTreeMap<u64, String>> = HashMap::new();
    for sent in log.iter().filter(|sent| sent.status == 201) {
        let seq = sent.seq.expect("an ack carries its seq");
        let previous = acked
            .entry(sent.conversation.clone())
            .or_default()
            .insert(seq, sent.client_msg_id.clone());
        assert!(previous.is_none(), "seq {seq} acknowledged twice");
    }
    acked
}

fn acks_in(log: &Log) -> usize {
    log.lock()
        .expect("lock")
        .iter()
        .filter(|sent| sent.status == 201)
        .count()
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("json")
}

#[test]
fn a_partition_by_link_down_then_takeover_and_heal_demotes_the_old_host_and_loses_nothing() {
    kefu_tests::in_process_only("runs the Linux build inside network namespaces");
    let Some(ns) = namespaces_or_skip("lan_partition::a_partition_by_link_down") else {
        return;
    };
    let schedule = Schedule::from_env();
    eprintln!(
        "partition schedule: KEFU_TEST_SEED={} ({schedule:?})",
        schedule.seed
    );
    let pace = Duration::from_millis(schedule.pace_ms);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let host_dir = tempfile::tempdir().expect("tempdir");
    let standby_dir = tempfile::tempdir().expect("tempdir");
    create_owner(host_dir.path());

    // The host in namespace a: its LAN listener on the veth, its other
    // listeners on the namespace's own loopback.
    enter(&ns, 0);
    let (http, lan, public) = (
        free_addr(LOOPBACK),
        free_addr(HOST_LAN_IP),
        free_addr(LOOPBACK),
    );
    let child = serve_with(kefu_in(&ns, 0), host_dir.path(), http, lan, public)
        .spawn()
        .expect("spawn the host");
    let host = Server::adopt(child, http, lan, public);
    runtime.block_on(host.ready());
    let admin = runtime.block_on(host.login());
    let old_term = runtime.block_on(host.status(&admin))["term"]
        .as_u64()
        .expect("term");
    // A device paired over the veth (the test's client in namespace a
    // dials the host's veth address), made a standby.
    let device = runtime.block_on(pair(&host, host_dir.path(), &admin, standby_dir.path()));
    let (status, body) = runtime.block_on(call(
        host.http,
        Method::PUT,
        &format!("/api/v1/lan/devices/{device}/standby"),
        Some(&admin),
        Some(json!({"enabled": true})),
    ));
    assert_eq!(status, 200, "{body}");
    let (status, app) = runtime.block_on(call(
        host.http,
        Method::POST,
        "/api/v1/apps",
        Some(&admin),
        Some(json!({"name": "Shop"})),
    ));
    assert_eq!(status, 201, "{app}");
    let app_key = app["app"]["app_key"].as_str().expect("app key").to_owned();
    let mut visitors = Vec::new();
    for _ in 0..schedule.visitors {
        visitors.push(runtime.block_on(visitor(&host, &app_key)));
    }
    // One more, who only listens on a WebSocket (its conversation has no
    // traffic, so its socket is never a slow consumer).
    let listener = runtime.block_on(visitor(&host, &app_key));

    // The standby in namespace b follows the host over the veth.
    let mut standby = standby_process_with(kefu_in(&ns, 1), standby_dir.path());
    runtime.block_on(standby_until(&host, &admin, |status, standby| {
        standby["connected"] == true && standby["applied_seq"] == status["log_seq"]
    }));

    let old_log: Log = Arc::default();
    let new_log: Log = Arc::default();
    let stop_old = Arc::new(AtomicBool::new(false));
    let stop_new = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        // A failed assertion stops the visitors too: the scope waits for
        // their threads before it passes the panic on.
        let _stop_on_panic = StopOnDrop(vec![Arc::clone(&stop_old), Arc::clone(&stop_new)]);
        let old_load = load_from(
            scope,
            &ns,
            0,
            host.public,
            visitors.clone(),
            "a",
            pace,
            Arc::clone(&stop_old),
            Arc::clone(&old_log),
        );
        let deadline = Instant::now() + WAIT;
        while acks_in(&old_log) < schedule.acks_before_cut {
            assert!(
                Instant::now() < deadline,
                "the visitors are not acknowledged"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let (mut ws, _) = runtime.block_on(agent_ws(host.public, &listener.0));

        // The cut: the host's end of the link goes down.
        ip(&["-n", &ns.names[0], "link", "set", &ns.interfaces[0], "down"]);
        let cut = Instant::now();
        let progress = standby_dir.path().join("lan/replica.json");
        let deadline = Instant::now() + WAIT;
        loop {
            let heard = read_json(&progress)["last_contact_ms"]
                .as_i64()
                .expect("last contact");
            if now_ms() - heard >= 1000 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the standby still hears the host"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "the standby has not heard the host for a second, {} ms after the cut",
            cut.elapsed().as_millis()
        );
        std::thread::sleep(Duration::from_millis(schedule.alone_ms));

        // The takeover on the standby's side.
        let _ = standby.kill();
        let _ = standby.wait();
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
        enter(&ns, 1);
        let (http, lan, public) = (
            free_addr(LOOPBACK),
            free_addr(STANDBY_LAN_IP),
            free_addr(LOOPBACK),
        );
        let child = serve_with(kefu_in(&ns, 1), standby_dir.path(), http, lan, public)
            .spawn()
            .expect("spawn the new host");
        let new_host = Server::adopt(child, http, lan, public);
        runtime.block_on(new_host.ready());
        let serving_since = Instant::now();
        let new_admin = runtime.block_on(new_host.login());
        let new_term = runtime.block_on(new_host.status(&new_admin))["term"]
            .as_u64()
            .expect("term");
        assert!(new_term > old_term + 1, "{new_term}");
        // Visitors write to the new host too (the same visitors, on the
        // new host's side of the cut).
        let new_load = load_from(
            scope,
            &ns,
            1,
            new_host.public,
            visitors.clone(),
            "b",
            pace,
            Arc::clone(&stop_new),
            Arc::clone(&new_log),
        );
        std::thread::sleep(Duration::from_millis(schedule.both_ms));
        let stale_acks = old_log
            .lock()
            .expect("lock")
            .iter()
            .filter(|sent| sent.status == 201 && sent.sent_at > serving_since)
            .count();
        assert!(
            stale_acks > 0,
            "the old host, cut off, goes on acknowledging in its stale term"
        );
        assert!(acks_in(&new_log) > 0, "the new host acknowledges");
        enter(&ns, 0);
        let status = runtime.block_on(host.status(&admin));
        assert_eq!(status["term"], old_term, "{status}");
        assert!(status["superseded_by"].is_null(), "{status}");

        // The heal: the old host demotes once the new term reaches it.
        ip(&["-n", &ns.names[0], "link", "set", &ns.interfaces[0], "up"]);
        let healed = Instant::now();
        let status = loop {
            let status = runtime.block_on(host.status(&admin));
            if !status["superseded_by"].is_null() {
                break status;
            }
            assert!(
                healed.elapsed() < DEMOTION_BOUND,
                "the old host did not demote within {DEMOTION_BOUND:?} of the heal: {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let demoted_after = healed.elapsed();
        let demoted_seen = Instant::now();
        assert_eq!(
            status["superseded_by"]["device_id"],
            json!(device),
            "{status}"
        );
        assert_eq!(status["superseded_by"]["term"], new_term, "{status}");
        // Its clients are told where the shop went.
        let (code, reason) = runtime.block_on(close_of(&mut ws));
        assert_eq!(code, 4301, "{reason}");
        assert_eq!(reason, format!("moved {device} {}", new_host.lan));
        let (mut late, _) = runtime.block_on(agent_ws(host.public, &listener.0));
        assert_eq!(runtime.block_on(close_of(&mut late)).0, 4301);
        let (status, body) = runtime.block_on(call(
            host.public,
            Method::POST,
            "/api/v1/visitor/messages",
            Some(&visitors[0].0),
            Some(json!({"client_msg_id": "after-the-heal", "content": "late"})),
        ));
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["successor"]["term"], new_term, "{body}");
        // The visitors on the old side go on a moment, all refused.
        std::thread::sleep(Duration::from_millis(300));
        stop_old.store(true, Ordering::Release);
        stop_new.store(true, Ordering::Release);
        old_load.join().expect("old side");
        new_load.join().expect("new side");

        // Never an ack once it knew the higher term: after its first
        // refusal no send is acknowledged, and every send made after the
        // test saw it demoted was refused.
        let old_sends = old_log.lock().expect("lock").clone();
        let first_refusal = old_sends
            .iter()
            .filter(|sent| sent.status == 503)
            .map(|sent| sent.answered_at)
            .min()
            .expect("the old host refused sends after the heal");
        let late_acks: Vec<&Sent> = old_sends
            .iter()
            .filter(|sent| sent.status == 201 && sent.sent_at >= first_refusal)
            .collect();
        assert!(
            late_acks.is_empty(),
            "acknowledged after a refusal: {late_acks:?}"
        );
        let after_demotion: Vec<&Sent> = old_sends
            .iter()
            .filter(|sent| sent.sent_at >= demoted_seen)
            .collect();
        assert!(!after_demotion.is_empty());
        assert!(
            after_demotion.iter().all(|sent| sent.status == 503),
            "every send after the demotion is refused: {:?}",
            after_demotion.iter().find(|sent| sent.status != 503)
        );

        // Reconciled: every message the old host acknowledged is on the
        // new host exactly once, every conversation gap-free; what the new
        // host acknowledged is where it was acknowledged.
        enter(&ns, 1);
        let done = runtime.block_on(reconciled(standby_dir.path()));
        let old_acked = acknowledged(&old_sends);
        let new_sends = new_log.lock().expect("lock").clone();
        let new_acked = acknowledged(&new_sends);
        let past_fork = runtime.block_on(check_exactly_once(
            &new_host,
            &new_admin,
            &visitors,
            &old_acked,
            &fork_heads,
        ));
        runtime.block_on(check_exactly_once(
            &new_host,
            &new_admin,
            &visitors,
            &new_acked,
            &Value::Null,
        ));
        for (_, conversation) in &visitors {
            let served = runtime.block_on(new_host.messages(&new_admin, conversation));
            for (seq, id) in new_acked.get(conversation).into_iter().flatten() {
                assert_eq!(
                    served[*seq as usize - 1]["client_msg_id"],
                    id.as_str(),
                    "the new host's seq {seq} in {conversation} moved"
                );
            }
            let ids: HashSet<&str> = served
                .iter()
                .filter_map(|m| m["client_msg_id"].as_str())
                .collect();
            assert!(
                !ids.contains("after-the-heal"),
                "a refused send was written"
            );
        }
        assert!(past_fork > 0, "nothing was acknowledged past the fork");
        assert_eq!(done["skipped"], 0, "{done}");
        let resent = done["resent"].as_u64().expect("resent");
        assert!(
            resent >= past_fork as u64,
            "{done}, {past_fork} past the fork"
        );
        eprintln!(
            "partition (seed {}): the old host acknowledged {} sends ({past_fork} past the fork, \
             {stale_acks} of them while the new host served), the new host {}; the old host \
             demoted {:.0} ms after the heal (bound {DEMOTION_BOUND:?}) and refused every send \
             from then on ({} refused); reconciled: {resent} re-sent, {} already there",
            schedule.seed,
            old_sends.iter().filter(|s| s.status == 201).count(),
            new_sends.iter().filter(|s| s.status == 201).count(),
            demoted_after.as_secs_f64() * 1000.0,
            old_sends.iter().filter(|s| s.status == 503).count(),
            done["duplicates"],
        );
        drop(new_host);
    });
    drop(host);
}

fn exited_by_sigkill(output: &Output) -> bool {
    output.status.signal() == Some(9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_candidate_killed_between_writing_its_term_and_announcing_it_leaves_one_writer_per_term()
{
    let host_dir = tempfile::tempdir().expect("tempdir");
    let standby_dir = tempfile::tempdir().expect("tempdir");
    let serving = Serving::on(STANDBY_IP);
    let Shop {
        host,
        admin,
        device,
        visitors,
        mut standby,
    } = shop(
        host_dir.path(),
        standby_dir.path(),
        &[],
        Some(serving),
        &[(CRASH_AT_ENV, "handover.term_written")],
    )
    .await;
    let old_term = host.status(&admin).await["term"].as_u64().expect("term");
    let target = Arc::new(Mutex::new(host.public));
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

    // The handover is granted; the candidate writes the next term and is
    // killed before it serves (or tells) anything.
    let (status, outcome) = call(
        host.http,
        Method::POST,
        "/api/v1/lan/handover",
        Some(&admin),
        Some(json!({"device_id": device, "address": serving.lan.to_string()})),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    let deadline = Instant::now() + WAIT;
    let exit = loop {
        if let Some(exit) = standby.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "the candidate did not crash");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        exit.signal(),
        Some(9),
        "killed at the crash point: {exit:?}"
    );
    let state = read_json(&standby_dir.path().join("lan/state.json"));
    assert_eq!(state["role"], "host", "{state}");
    assert_eq!(state["term"], old_term + 1, "the term was written: {state}");
    let record = takeover_record(standby_dir.path());
    assert!(record.get("pending").is_none(), "{record}");
    assert!(record["fenced_at_ms"].is_i64(), "{record}");
    // Nothing answered where it was to serve: term T+1 has no writer.
    let (status, _) = call(serving.http, Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 0, "the candidate never served");

    // The old host is fenced in its own term and refuses every send.
    let status = host.status(&admin).await;
    assert_eq!(status["term"], old_term, "{status}");
    assert_eq!(status["superseded_by"]["term"], old_term + 1, "{status}");
    let (status, body) = call(
        host.public,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(&visitors[0].0),
        Some(json!({"client_msg_id": "to-the-old-host", "content": "late"})),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    // What was acknowledged so far, the old host acknowledged, in its term.
    let old_acks = acks.lock().expect("lock").by_conversation.clone();
    let refused_for = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        acks.lock().expect("lock").by_conversation,
        old_acks,
        "nothing acknowledged while the shop has no host"
    );

    // The candidate, started again, serves in a higher term; the visitors'
    // resends (the same client_msg_id until acknowledged) succeed there.
    let new_host = Server::start_on(standby_dir.path(), STANDBY_IP, serving.lan, &[]).await;
    let new_admin = new_host.login().await;
    let status = new_host.status(&new_admin).await;
    assert_eq!(status["term"], old_term + 2, "{status}");
    *target.lock().expect("lock") = new_host.public;
    let before = acked(&acks).await;
    while acked(&acks).await < before + 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Release);
    for task in load {
        task.await.expect("visitor");
    }
    let recovered_after = refused_for.elapsed();

    // Nothing acknowledged lost or doubled, gap-free; everything the old
    // host acknowledged is at its own seq on the new host (it was all
    // before the grant: in the copy).
    let all = acks.lock().expect("lock").by_conversation.clone();
    check_exactly_once(&new_host, &new_admin, &visitors, &all, &Value::Null).await;
    let mut total = 0;
    for (_, conversation) in &visitors {
        let served = new_host.messages(&new_admin, conversation).await;
        for (seq, id) in old_acks.get(conversation).into_iter().flatten() {
            assert_eq!(served[*seq as usize - 1]["client_msg_id"], id.as_str());
        }
        total += all.get(conversation).map_or(0, BTreeMap::len);
    }
    eprintln!(
        "candidate killed after writing term {}: the old host fenced in term {old_term}, the \
         candidate restarted in term {}; {total} acknowledged, none lost or doubled (the shop \
         wrote again {:.1} s after the crash, the restart by the test included)",
        old_term + 1,
        old_term + 2,
        recovered_after.as_secs_f64()
    );
}

/// `lan takeover` on `dir`, killed at `point` when given.
fn takeover(dir: &Path, point: Option<&str>) -> Output {
    let mut command = kefu();
    command.args(["lan", "takeover", "--data-dir"]).arg(dir);
    if let Some(point) = point {
        command.env(CRASH_AT_ENV, point);
    }
    command.output().expect("lan takeover")
}

/// A copy of a stopped standby's data dir.
fn copy_of(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("tempdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dir.display()))
        .arg(copy.path())
        .status()
        .expect("cp");
    assert!(status.success());
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_takeover_killed_at_any_step_is_finished_by_running_it_again() {
    let host_dir = tempfile::tempdir().expect("tempdir");
    let standby_dir = tempfile::tempdir().expect("tempdir");
    create_owner(host_dir.path());
    // The standby computer has a shop of its own (its solo data): a
    // takeover moves it aside.
    create_owner(standby_dir.path());
    let mut host = Server::start(host_dir.path(), HOST_IP).await;
    let admin = host.login().await;
    let device = pair(&host, host_dir.path(), &admin, standby_dir.path()).await;
    make_standby(&host, &admin, &device).await;
    let app = create_app(&host, &admin).await;
    let (token, conversation) = visitor(&host, app["app"]["app_key"].as_str().expect("key")).await;
    let mut standby = standby_process(standby_dir.path());
    for n in 0..30 {
        say(host.public, &token, n).await;
    }
    standby_until(&host, &admin, |status, standby| {
        standby["connected"] == true && standby["applied_seq"] == status["log_seq"]
    })
    .await;
    let _ = standby.kill();
    let _ = standby.wait();
    host.kill_9();

    // The takeover not interrupted, for reference.
    let reference = copy_of(standby_dir.path());
    let output = takeover(reference.path(), None);
    assert!(output.status.success(), "{output:?}");
    let expected_fork = takeover_record(reference.path())["fork"].clone();
    let expected: Vec<String> = (0..30).map(|n| format!("m{n}")).collect();

    for point in [
        "takeover.recorded",
        "takeover.moving_aside",
        "takeover.moving_in",
        "takeover.copy_in_place",
        "takeover.term_written",
    ] {
        let dir = copy_of(standby_dir.path());
        let output = takeover(dir.path(), Some(point));
        assert!(exited_by_sigkill(&output), "{point}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("crashing at {point}")), "{stderr}");
        // Half done: serving it, or following the host again, is refused.
        let output = kefu()
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--bind", &free_addr(STANDBY_IP).to_string()])
            .output()
            .expect("serve");
        assert!(
            !output.status.success(),
            "{point}: served a half-done takeover"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("lan takeover"), "{point}: {stderr}");
        let output = kefu()
            .args(["lan", "standby", "--data-dir"])
            .arg(dir.path())
            .output()
            .expect("lan standby");
        assert!(
            !output.status.success(),
            "{point}: followed the old host again"
        );

        // Run again: finished.
        let output = takeover(dir.path(), None);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{point}: {output:?}");
        assert!(
            stdout.contains("took over the shop in term 2"),
            "{point}: {stdout}"
        );
        let state = read_json(&dir.path().join("lan/state.json"));
        assert_eq!(state["role"], "host", "{point}: {state}");
        assert_eq!(state["term"], 2, "{point}: {state}");
        let record = takeover_record(dir.path());
        assert!(record.get("pending").is_none(), "{point}: {record}");
        assert_eq!(record["term"], 2, "{point}: {record}");
        assert_eq!(
            record["fork"], expected_fork,
            "{point}: the same fork point"
        );
        assert!(!dir.path().join("replica").exists(), "{point}");
        let aside = dir.path().join(record["aside"].as_str().expect("aside"));
        assert!(
            aside.join("kefu.sqlite3").is_file(),
            "{point}: this device's own data is kept aside"
        );
        // It serves every message, in order, once.
        let served_host = Server::start(dir.path(), STANDBY_IP).await;
        let served_admin = served_host.login().await;
        let served = served_host.messages(&served_admin, &conversation).await;
        let ids: Vec<String> = served
            .iter()
            .filter_map(|m| m["client_msg_id"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(ids, expected, "{point}");
        for (index, message) in served.iter().enumerate() {
            assert_eq!(message["seq"], index as u64 + 1, "{point}");
        }
        eprintln!("lan takeover killed at {point}: finished by running it again");
    }
}
