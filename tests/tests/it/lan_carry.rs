//! What a move of the host role carries besides the message log (issue
//! 18; docs/LAN.md "Planned handover" and "Reconciliation after a
//! takeover"), with real processes on loopback: a host on 127.0.0.2 and
//! its standby on 127.0.0.3.
//!
//! - A planned handover carries SQLite's writes up to the pause: tickets,
//!   a rename and an assignment made while it happens are on the new host,
//!   every one the old host acknowledged; after the grant the old host
//!   refuses them (503) instead of taking writes the new host never gets.
//! - A reconciliation carries a conversation started on the old host after
//!   the fork (the new host creates it from the old host's start, the
//!   visitor's token works there), exactly once, from an old host that was
//!   fenced and then restarted (it comes up retired and serves the fork
//!   routes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kefu_server::lan::HostAddress;
use kefu_server::lan::client::DeviceClient;
use kefu_server::lan::identity::Identity;
use kefu_server::lan::state::LanStateFile;
use kefu_server::lan::tls::ServerTrust;
use reqwest::Method;
use serde_json::json;

use super::lan_failover::{
    Server, call, create_app, create_owner, kefu, make_standby, pair, say, standby_process,
    standby_until, visitor,
};
use super::lan_handover::{Serving, Shop, conversation_until, shop};
use super::lan_reconcile::{reconciled, takeover_record};

const HOST_IP: &str = "127.0.0.2";
const STANDBY_IP: &str = "127.0.0.3";
/// Agents creating tickets all the while.
const TICKET_WRITERS: usize = 3;

/// What the old host acknowledged and refused while the writers ran.
#[derive(Default)]
struct Writes {
    /// Ticket number → subject, for every `201`.
    tickets: Vec<(u64, String)>,
    /// The last display name acknowledged.
    last_name: Option<String>,
    /// Writes refused with 503 `unavailable` (after the grant).
    refused: u64,
}

fn start_writers(
    http: std::net::SocketAddr,
    admin: String,
    stop: Arc<AtomicBool>,
    writes: Arc<std::sync::Mutex<Writes>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for writer in 0..=TICKET_WRITERS {
        let (admin, stop, writes) = (admin.clone(), Arc::clone(&stop), Arc::clone(&writes));
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                // The last writer renames its agent; the others file tickets.
                let rename = writer == TICKET_WRITERS;
                let (status, body) = if rename {
                    call(
                        http,
                        Method::PATCH,
                        "/api/v1/agents/me",
                        Some(&admin),
                        Some(json!({"display_name": format!("Owner {n}")})),
                    )
                    .await
                } else {
                    call(
                        http,
                        Method::POST,
                        "/api/v1/tickets",
                        Some(&admin),
                        Some(json!({"subject": format!("ticket {writer}-{n}")})),
                    )
                    .await
                };
                let refused = {
                    let mut acked = writes.lock().expect("lock");
                    match status {
                        200 if rename => {
                            acked.last_name = Some(format!("Owner {n}"));
                            false
                        }
                        201 => {
                            let number = body["ticket"]["number"].as_u64().expect("number");
                            acked.tickets.push((number, format!("ticket {writer}-{n}")));
                            false
                        }
                        503 => {
                            assert_eq!(body["error"]["code"], "unavailable", "{body}");
                            acked.refused += 1;
                            true
                        }
                        other => panic!("a write answered {other}: {body}"),
                    }
                };
                if refused {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handover_carries_sqlites_writes_up_to_the_pause_and_refuses_them_after() {
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
    let (status, me) = call(
        host.http,
        Method::GET,
        "/api/v1/agents/me",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{me}");
    let owner_id = me["agent"]["id"].as_str().expect("id").to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let writes: Arc<std::sync::Mutex<Writes>> = Arc::default();
    let writers = start_writers(
        host.http,
        admin.clone(),
        Arc::clone(&stop),
        Arc::clone(&writes),
    );
    while writes.lock().expect("lock").tickets.len() < 30 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // An assignment just before the handover (its answer before the ask),
    // of a chat the visitor started.
    let conversation = visitors[0].1.clone();
    say(host.public, &visitors[0].0, 1).await;
    conversation_until(&host, &admin, &conversation, |_| true).await;
    let (status, body) = call(
        host.http,
        Method::POST,
        &format!("/api/v1/conversations/{conversation}/assign"),
        Some(&admin),
        Some(json!({"agent_id": owner_id})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, outcome) = call(
        host.http,
        Method::POST,
        "/api/v1/lan/handover",
        Some(&admin),
        Some(json!({"device_id": device, "address": serving.lan.to_string()})),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    // The writers go on at the old host a while: every write is refused
    // there now.
    let refused_before = writes.lock().expect("lock").refused;
    let deadline = std::time::Instant::now() + kefu_tests::WAIT;
    while writes.lock().expect("lock").refused < refused_before + 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old host still takes writes after the grant: {} tickets acked",
            writes.lock().expect("lock").tickets.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Release);
    for writer in writers {
        writer.await.expect("writer");
    }
    let (status, body) = call(
        host.http,
        Method::POST,
        "/api/v1/tickets",
        Some(&admin),
        Some(json!({"subject": "too late"})),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"]["successor"]["device_id"],
        json!(device),
        "{body}"
    );
    // Signing in still works there (to read where the shop went), and the
    // status says so.
    let late_admin = host.login().await;
    let status = host.status(&late_admin).await;
    assert_eq!(
        status["superseded_by"]["device_id"],
        json!(device),
        "{status}"
    );

    let new_host = Server::adopt(standby, serving.http, serving.lan, serving.public);
    new_host.ready().await;
    let new_admin = new_host.login().await;
    let writes = std::mem::take(&mut *writes.lock().expect("lock"));
    for (number, subject) in &writes.tickets {
        let (status, body) = call(
            new_host.http,
            Method::GET,
            &format!("/api/v1/tickets/{number}"),
            Some(&new_admin),
            None,
        )
        .await;
        assert_eq!(
            status, 200,
            "ticket {number} ({subject}), acked by the old host, is not on the new one: {body}"
        );
        assert_eq!(body["ticket"]["subject"], subject.as_str(), "{body}");
    }
    let (status, me) = call(
        new_host.http,
        Method::GET,
        "/api/v1/agents/me",
        Some(&new_admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{me}");
    let last_name = writes.last_name.clone().expect("a rename was acked");
    assert_eq!(me["agent"]["display_name"], last_name.as_str(), "{me}");
    let (status, body) = call(
        new_host.http,
        Method::GET,
        &format!("/api/v1/conversations/{conversation}"),
        Some(&new_admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["conversation"]["assignee_id"],
        owner_id.as_str(),
        "{body}"
    );
    // Nothing more than what was acked: the new host's next ticket takes
    // the number after the last acknowledged one.
    let last = writes
        .tickets
        .iter()
        .map(|(n, _)| *n)
        .max()
        .expect("tickets");
    let (status, body) = call(
        new_host.http,
        Method::POST,
        "/api/v1/tickets",
        Some(&new_admin),
        Some(json!({"subject": "on the new host"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["ticket"]["number"], last + 1, "{body}");
    eprintln!(
        "handover with SQLite writes: {} tickets and a rename acked by the old host, all on the \
         new host; {} refused after the grant; writes paused {:.1} ms (drain {:.1} ms)",
        writes.tickets.len(),
        writes.refused,
        outcome["pause_ms"].as_f64().unwrap_or(0.0),
        outcome["drain_ms"].as_f64().unwrap_or(0.0)
    );
    host.kill_9();
}

/// The `client_msg_id`s of the visitor's messages in a conversation on
/// `server` (lines Kefu wrote itself left out), the whole thread checked
/// gap-free and without a `client_msg_id` twice.
async fn ids_on(server: &Server, admin: &str, conversation: &str) -> Vec<String> {
    let served = server.messages(admin, conversation).await;
    let mut seen = std::collections::HashSet::new();
    for (index, message) in served.iter().enumerate() {
        assert_eq!(message["seq"], index as u64 + 1, "gap-free {conversation}");
        if let Some(id) = message["client_msg_id"].as_str() {
            assert!(seen.insert(id.to_owned()), "{id} twice in {conversation}");
        }
    }
    served
        .iter()
        .filter(|m| m["sender"]["type"] == "visitor")
        .filter_map(|m| m["client_msg_id"].as_str().map(str::to_owned))
        .collect()
}

fn numbered(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| format!("m{n}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conversation_started_after_the_fork_is_carried_from_a_restarted_old_host_once() {
    let host_dir = tempfile::tempdir().expect("tempdir");
    let standby_dir = tempfile::tempdir().expect("tempdir");
    create_owner(host_dir.path());
    let mut host = Server::start(host_dir.path(), HOST_IP).await;
    let admin = host.login().await;
    let device = pair(&host, host_dir.path(), &admin, standby_dir.path()).await;
    make_standby(&host, &admin, &device).await;
    let app = create_app(&host, &admin).await;
    let app_key = app["app"]["app_key"].as_str().expect("app key").to_owned();
    let known = visitor(&host, &app_key).await;
    for n in 1..=3 {
        say(host.public, &known.0, n).await;
    }
    let mut standby = standby_process(standby_dir.path());
    standby_until(&host, &admin, |status, standby| {
        standby["connected"] == true && standby["applied_seq"] == status["log_seq"]
    })
    .await;

    // The fork: the standby stops; the old host goes on. A new visitor
    // starts a conversation there (its SQLite rows in no snapshot the
    // copy has), and the known one writes on.
    let _ = standby.kill();
    let _ = standby.wait();
    let late = visitor(&host, &app_key).await;
    for n in 1..=5 {
        say(host.public, &late.0, n).await;
    }
    for n in 4..=5 {
        say(host.public, &known.0, n).await;
    }

    // The standby takes over; the old host is fenced (as the new host's
    // fencer does) and then restarted: it comes up retired.
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
    let term = LanStateFile::open(standby_dir.path())
        .expect("state")
        .state()
        .term;
    let (identity, _) = Identity::open(standby_dir.path()).expect("identity");
    let host_id = Identity::open(host_dir.path())
        .expect("host identity")
        .0
        .device_id();
    let mut client = DeviceClient::connect(
        &identity,
        ServerTrust::Pinned(host_id),
        &HostAddress::from(host.lan),
    )
    .await
    .expect("connect");
    let (status, body) = client
        .request(
            Method::POST,
            "/lan/v1/fence",
            Some(&json!({"term": term})),
            None,
        )
        .await
        .expect("fence");
    assert_eq!(status.as_u16(), 200, "{body}");
    drop(client);
    host.kill_9();
    host.respawn(host_dir.path()).await;

    // The new host reconciles from the restarted old host: the unknown
    // conversation is created from the old host's start and its messages
    // re-sent, with the known one's two.
    let new_host = Server::start(standby_dir.path(), STANDBY_IP).await;
    let done = reconciled(standby_dir.path()).await;
    assert_eq!(done["skipped"], 0, "{done}");
    assert_eq!(done["carried"], 1, "{done}");
    // The visitors' 7 (and any line Kefu wrote there after the fork).
    let resent = done["resent"].as_u64().expect("resent");
    assert!(resent >= 7, "{done}");
    let new_admin = new_host.login().await;
    assert_eq!(
        ids_on(&new_host, &new_admin, &late.1).await,
        numbered(1..=5)
    );
    assert_eq!(
        ids_on(&new_host, &new_admin, &known.1).await,
        numbered(1..=5)
    );
    // The visitor goes on at the new host with the token it had.
    let (status, body) = call(
        new_host.public,
        Method::GET,
        "/api/v1/visitor/messages",
        Some(&late.0),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen: Vec<&str> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["sender"]["type"] == "visitor")
        .filter_map(|m| m["client_msg_id"].as_str())
        .collect();
    assert_eq!(seen, numbered(1..=5), "{body}");
    say(new_host.public, &late.0, 6).await;

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
    assert_eq!(again["carried"], 0, "{again}");
    assert_eq!(
        again["duplicates"].as_u64(),
        Some(resent + done["duplicates"].as_u64().expect("duplicates")),
        "{again}"
    );
    let new_admin = new_host.login().await;
    assert_eq!(
        ids_on(&new_host, &new_admin, &late.1).await,
        numbered(1..=6)
    );
    eprintln!(
        "fork: a conversation started on the old host after the fork carried from it after its \
         restart (retired): {done}; again from the start: {again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attachment_uploaded_after_the_full_sync_reaches_the_standby_and_is_served_after_a_takeover()
 {
    let host_dir = tempfile::tempdir().expect("tempdir");
    let standby_dir = tempfile::tempdir().expect("tempdir");
    create_owner(host_dir.path());
    let host = Server::start(host_dir.path(), HOST_IP).await;
    let admin = host.login().await;
    let device = pair(&host, host_dir.path(), &admin, standby_dir.path()).await;
    make_standby(&host, &admin, &device).await;
    let app = create_app(&host, &admin).await;
    let app_key = app["app"]["app_key"].as_str().expect("app key").to_owned();
    let (token, conversation) = visitor(&host, &app_key).await;
    say(host.public, &token, 1).await;
    let mut standby = standby_process(standby_dir.path());
    standby_until(&host, &admin, |status, standby| {
        standby["connected"] == true
            && standby["applied_seq"] == status["log_seq"]
            && standby["full_syncs"] == 1
    })
    .await;

    // After the full sync: an upload and the message that sends it.
    let bytes: Vec<u8> = (0..70_000u32).map(|n| (n % 251) as u8).collect();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes.clone())
            .file_name("receipt.bin")
            .mime_str("application/octet-stream")
            .expect("mime"),
    );
    let uploaded: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{}/api/v1/visitor/attachments", host.public))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    let attachment = uploaded["attachment"].clone();
    let id = attachment["id"].as_str().expect("id").to_owned();
    let url = attachment["url"].as_str().expect("url").to_owned();
    let (status, body) = call(
        host.public,
        Method::POST,
        "/api/v1/visitor/messages",
        Some(&token),
        Some(json!({"client_msg_id": "with-file", "attachment_id": id})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // The file reaches the copy within one SQLite refresh, without a
    // full sync.
    let copy = standby_dir.path().join("replica/attachments");
    let deadline = std::time::Instant::now() + kefu_tests::WAIT + Duration::from_secs(5);
    loop {
        let found = std::fs::read_dir(&copy)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| std::fs::read(entry.path()).is_ok_and(|content| content == bytes));
        if found {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the attachment did not reach the standby's copy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = host.status(&admin).await;
    assert_eq!(status["standbys"][0]["full_syncs"], 1, "{status}");

    // Taken over, the copy serves it at the same URL.
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
    let new_host = Server::start(standby_dir.path(), STANDBY_IP).await;
    let served = reqwest::Client::new()
        .get(format!("http://{}{url}", new_host.http))
        .send()
        .await
        .expect("download");
    assert_eq!(served.status(), 200, "{url}");
    assert_eq!(served.bytes().await.expect("bytes").to_vec(), bytes);
    let new_admin = new_host.login().await;
    let messages = new_host.messages(&new_admin, &conversation).await;
    assert!(
        messages
            .iter()
            .any(|m| m["client_msg_id"] == "with-file" && m["attachment"]["id"] == id.as_str()),
        "{messages:?}"
    );
    drop(host);
}
