//! What a move of the host role carries besides the message log (issue
//! 18; docs/LAN.md "Planned handover" and "Reconciliation after a
//! takeover"), with real processes on loopback: a host on 127.0.0.2 and
//! its standby on 127.0.0.3.
//!
//! - A planned handover carries SQLite's writes up to the pause: tickets,
//!   a rename and an assignment made while it happens are on the new host,
//!   every one the old host acknowledged; after the grant the old host
//!   refuses them (503) instead of taking writes the new host never gets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::lan_failover::{Server, call};
use super::lan_handover::{Serving, Shop, shop};

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
                let mut writes = writes.lock().expect("lock");
                match status {
                    200 if rename => writes.last_name = Some(format!("Owner {n}")),
                    201 => {
                        let number = body["ticket"]["number"].as_u64().expect("number");
                        writes.tickets.push((number, format!("ticket {writer}-{n}")));
                    }
                    503 => {
                        assert_eq!(body["error"]["code"], "unavailable", "{body}");
                        writes.refused += 1;
                        drop(writes);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("a write answered {other}: {body}"),
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
    } = shop(host_dir.path(), standby_dir.path(), &[], Some(serving)).await;
    let (status, me) = call(host.http, Method::GET, "/api/v1/agents/me", Some(&admin), None).await;
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
    // An assignment just before the handover (its answer before the ask).
    let conversation = visitors[0].1.clone();
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
    while writes.lock().expect("lock").refused < refused_before + 10 {
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
    let last = writes.tickets.iter().map(|(n, _)| *n).max().expect("tickets");
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
