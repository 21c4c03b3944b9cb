//! The scenarios that compare Kefu with the baselines B0 and N in one run:
//! connections, throughput, latency and reconnect. Each returns rows (one
//! per system and case) for the report; `coldstart.rs`, `storage.rs` and
//! `store.rs` hold the Kefu-only ones.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Connection};
use crate::target::{Client, System, Target};
use crate::worker::{Job, Worker};

/// Opens one connection per client, `concurrency` at a time.
pub async fn open_all(
    url: &str,
    clients: &[Client],
    index_base: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Connection>> {
    let opened: Vec<anyhow::Result<Connection>> =
        futures_util::stream::iter(clients.iter().enumerate())
            .map(|(n, c)| Connection::open(url, &c.token, index_base + n))
            .buffered(concurrency)
            .collect()
            .await;
    opened.into_iter().collect()
}

/// Spawns workers for `clients` (≤ `per_worker` each) and waits until every
/// one has connected; returns them, the sums of their counts and the wall
/// time.
async fn spawn_workers(
    url: &str,
    clients: &[Client],
    index_base: usize,
    per_worker: usize,
    prepare: bool,
) -> anyhow::Result<(Vec<Worker>, usize, usize, f64)> {
    let started = Instant::now();
    let mut workers = Vec::new();
    for (n, chunk) in clients.chunks(per_worker.max(1)).enumerate() {
        let job = Job {
            url: url.to_owned(),
            clients: chunk.to_vec(),
            index_base: index_base + n * per_worker,
            prepare,
            concurrency: 128,
        };
        workers.push(Worker::spawn(&job).await?);
    }
    let (mut ok, mut failed) = (0, 0);
    for worker in workers.iter_mut() {
        let event = worker.event().await?;
        ok += event["ok"].as_u64().unwrap_or(0) as usize;
        failed += event["failed"].as_u64().unwrap_or(0) as usize;
        if let Some(error) = event["first_error"].as_str() {
            eprintln!("worker: a connection failed: {error}");
        }
    }
    Ok((workers, ok, failed, started.elapsed().as_secs_f64()))
}

/// Idle authenticated connections: how many one server process holds, for
/// how long, and the resident memory per connection as the slope from
/// `base` to `count` connections.
pub async fn connections(
    bin: &std::path::Path,
    systems: &[System],
    count: usize,
    hold: u64,
    baseline_hold: u64,
    per_worker: usize,
) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    for &system in systems {
        let hold = if system.is_kefu() {
            hold
        } else {
            baseline_hold
        };
        eprintln!("connections: {} with {count}", system.label());
        let target = Target::start(system, bin, "os").await?;
        let clients = target.clients(count).await?;
        let base = (count / 19).clamp(1, 1_000);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_empty = target.rss_kib()?;
        let cpu_before = target.cpu_seconds()?;
        let (mut workers, ok_base, failed_base, _) =
            spawn_workers(&target.ws_url, &clients[..base], 0, per_worker, false).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_base = target.rss_kib()?;
        let (more, ok_rest, failed_rest, connect_seconds) =
            spawn_workers(&target.ws_url, &clients[base..], base, per_worker, false).await?;
        workers.extend(more);
        let cpu_connecting = target.cpu_seconds()? - cpu_before;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_full = target.rss_kib()?;
        let connected = ok_base + ok_rest;
        tokio::time::sleep(Duration::from_secs(hold)).await;
        let rss_held = target.rss_kib()?;
        let mut alive = 0;
        for worker in workers.iter_mut() {
            worker.command("check").await?;
            alive += worker.event().await?["alive"].as_u64().unwrap_or(0) as usize;
        }
        let slope = (rss_full.saturating_sub(rss_base)) as f64 * 1024.0
            / (connected.saturating_sub(ok_base)).max(1) as f64;
        rows.push(json!({
            "system": system.label(),
            "case": format!("{count} idle"),
            "connections": connected,
            "failed_to_connect": failed_base + failed_rest,
            "connect_seconds": round2(connect_seconds),
            "connects_per_second": ((connected - ok_base) as f64 / connect_seconds.max(1e-9)).round(),
            "server_cpu_ms_per_connect": round2(cpu_connecting * 1000.0 / connected.max(1) as f64),
            "rss_kib_empty": rss_empty,
            "rss_kib_base": rss_base,
            "base_connections": ok_base,
            "rss_kib_full": rss_full,
            "rss_kib_after_hold": rss_held,
            "bytes_per_connection": slope.round(),
            "hold_seconds": hold,
            "alive_after_hold": alive,
            "dropped_percent": round3(100.0 * (connected.saturating_sub(alive)) as f64 / connected.max(1) as f64),
        }));
        drop(workers);
    }
    Ok(rows)
}

/// Persisted (on Kefu) messages per second visitor → agent, closed loop:
/// `conversations` visitors keep `in_flight` sends each outstanding.
pub async fn throughput(
    bin: &std::path::Path,
    systems: &[System],
    conversations: usize,
    in_flight: usize,
    seconds: u64,
) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    let mut runs: Vec<(System, &str)> = Vec::new();
    for &system in systems {
        if system.is_kefu() {
            runs.push((system, "os"));
            runs.push((system, "fsync"));
        } else {
            let durability = match system {
                System::B1 => "os",
                System::B1f => "fsync",
                _ => "none",
            };
            runs.push((system, durability));
        }
    }
    for (system, durability) in runs {
        eprintln!("throughput: {} ({durability})", system.label());
        let target = Target::start(system, bin, durability).await?;
        let clients = target.clients(conversations).await?;
        let mut agent = Connection::open(&target.ws_url, &target.agent_token(), 0).await?;
        let visitors = open_all(&target.ws_url, &clients, 1, 64).await?;
        let cpu_before = target.cpu_seconds()?;
        let agent_reader =
            tokio::spawn(
                async move { agent.count_messages(Duration::from_secs(seconds + 3)).await },
            );
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (mut connection, client) in visitors.into_iter().zip(clients) {
            tasks.push(tokio::spawn(async move {
                connection
                    .pipeline(&client.conversation, in_flight, deadline)
                    .await
            }));
        }
        let mut histogram = Histogram::<u64>::new(3)?;
        let mut acked = 0u64;
        for task in tasks {
            let (count, latencies) = task.await??;
            acked += count;
            histogram.add(latencies)?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let server_cpu = target.cpu_seconds()? - cpu_before;
        let received = agent_reader.await??;
        rows.push(json!({
            "system": system.label(),
            "case": format!("{conversations} x {in_flight} in flight"),
            "load": crate::report::load_average(),
            "durability": durability,
            "acked": acked,
            "acks_per_second": (acked as f64 / elapsed).round(),
            "agent_received": received,
            "agent_got_all": received == acked,
            "ack_us": percentiles(&histogram),
            "server_cpu_seconds": round2(server_cpu),
            "server_rss_kib": target.rss_kib()?,
        }));
    }
    Ok(rows)
}

/// End-to-end latency visitor → agent, open loop: `rate` messages per
/// second in total over `conversations` visitors, each sending on a fixed
/// schedule whatever the answers do (no coordinated omission). Each send
/// carries its *intended* send time in `meta.t`; the agent measures from
/// there, so a stalled sender shows as latency.
pub async fn latency(
    bin: &std::path::Path,
    systems: &[System],
    rate: u64,
    conversations: usize,
    seconds: u64,
    warmup: u64,
) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    for &system in systems {
        eprintln!(
            "latency: {} at {rate}/s over {conversations}",
            system.label()
        );
        let target = Target::start(system, bin, "os").await?;
        let clients = target.clients(conversations).await?;
        let mut agent = Connection::open(&target.ws_url, &target.agent_token(), 0).await?;
        let visitors = open_all(&target.ws_url, &clients, 1, 256).await?;
        let (visitors, opening) = open_conversations(&mut agent, visitors, &clients).await?;

        let origin = Instant::now();
        let epoch_us = crate::now_us();
        let now_us = move || epoch_us + origin.elapsed().as_micros() as u64;
        let start = origin + Duration::from_millis(500);
        let measure_from = epoch_us + 500_000 + warmup * 1_000_000;
        let end = start + Duration::from_secs(warmup + seconds);
        let period = Duration::from_secs_f64(conversations as f64 / rate as f64);

        let agent_reader = tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut received = 0u64;
            let stop = tokio::time::Instant::from_std(end + Duration::from_secs(3));
            while let Ok(Some(frame)) = tokio::time::timeout_at(stop, agent.next_frame()).await {
                let Ok(Message::Text(text)) = frame else {
                    continue;
                };
                if let Some(sent) = client::meta_time(text.as_str()) {
                    received += 1;
                    if sent >= measure_from {
                        histogram.saturating_record(now_us().saturating_sub(sent).max(1));
                    }
                }
            }
            anyhow::Ok((received, histogram))
        });

        let mut senders = Vec::new();
        for (n, (connection, client)) in visitors.into_iter().zip(clients).enumerate() {
            let (mut sink, mut stream) = connection.into_stream().split();
            // Acks are read (and dropped) apart from the schedule.
            tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
            let offset = period.mul_f64(n as f64 / conversations as f64);
            senders.push(tokio::spawn(async move {
                let mut sent = 0u64;
                let mut intended = start + offset;
                while intended < end {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(intended)).await;
                    let t = epoch_us + (intended - origin).as_micros() as u64;
                    let frame = format!(
                        r#"{{"type":"send","client_msg_id":"l{sent}","conversation_id":"{}","content":"benchmark message","meta":{{"t":{t}}}}}"#,
                        client.conversation
                    );
                    if sink.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                    sent += 1;
                    intended += period;
                }
                sent
            }));
        }
        let mut sent = 0;
        for sender in senders {
            sent += sender.await?;
        }
        let (received, histogram) = agent_reader.await??;
        rows.push(json!({
            "system": system.label(),
            "case": format!("{rate}/s over {conversations}"),
            "load": crate::report::load_average(),
            "sent": sent,
            "received": received,
            "measured": histogram.len(),
            "rate_achieved": (sent as f64 / (warmup + seconds) as f64).round(),
            "latency_us": percentiles(&histogram),
            "open_seconds": round3(opening.seconds),
            "open_ack_us": percentiles(&opening.acks),
        }));
    }
    Ok(rows)
}

/// The opening phase of a scenario: how long it took, and each first
/// message's ack latency (µs).
pub struct Opening {
    pub seconds: f64,
    pub acks: Histogram<u64>,
}

/// Opens every conversation before the schedule starts: each visitor sends
/// one message and waits for its ack, 256 at a time, while the agent's
/// frames are read and dropped. The schedule measures messages in
/// conversations that are going; the opening is reported beside it
/// (`open_seconds`, `open_ack_us`: a conversation's first message also
/// starts it, on Kefu off the ack path since issue 24). Every system gets
/// the same opening.
pub async fn open_conversations(
    agent: &mut Connection,
    visitors: Vec<Connection>,
    clients: &[Client],
) -> anyhow::Result<(Vec<Connection>, Opening)> {
    let started = Instant::now();
    let opening = futures_util::stream::iter(visitors.into_iter().zip(clients))
        .map(|(mut visitor, client)| async move {
            let sent = Instant::now();
            visitor.send_and_ack(&client.conversation, "open").await?;
            anyhow::Ok((visitor, sent.elapsed().as_micros() as u64))
        })
        .buffered(256)
        .collect::<Vec<_>>();
    tokio::pin!(opening);
    let opened = loop {
        tokio::select! {
            opened = &mut opening => break opened,
            frame = agent.next_frame() => {
                if !matches!(frame, Some(Ok(_))) {
                    bail!("the agent's connection ended while conversations opened: {frame:?}");
                }
            }
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut acks = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut out = Vec::with_capacity(opened.len());
    for opened in opened {
        let (visitor, micros) = opened?;
        acks.saturating_record(micros.max(1));
        out.push(visitor);
    }
    Ok((out, Opening { seconds, acks }))
}

/// Reconnect storm: `count` clients connected (on Kefu each has sent two
/// messages), all drop at once and resume by seq from the first; each must
/// get the second in the catch-up. The baselines keep no log: they are
/// measured reconnecting only.
pub async fn reconnect(
    bin: &std::path::Path,
    systems: &[System],
    count: usize,
    per_worker: usize,
) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    for &system in systems {
        eprintln!("reconnect: {} with {count}", system.label());
        let target = Target::start(system, bin, "os").await?;
        let clients = target.clients(count).await?;
        let prepare = system.is_kefu();
        let (mut workers, connected, failed, connect_seconds) =
            spawn_workers(&target.ws_url, &clients, 0, per_worker, prepare).await?;
        if failed > 0 {
            eprintln!("reconnect: {failed} clients failed to connect");
        }
        let started = Instant::now();
        for worker in workers.iter_mut() {
            worker.command("storm").await?;
        }
        let (mut resumed, mut missed, mut lost) = (0, 0, 0);
        for worker in workers.iter_mut() {
            let event = worker.event().await?;
            resumed += event["resumed"].as_u64().unwrap_or(0);
            missed += event["missed"].as_u64().unwrap_or(0);
            lost += event["failed"].as_u64().unwrap_or(0);
        }
        let seconds = started.elapsed().as_secs_f64();
        rows.push(json!({
            "system": system.label(),
            "case": format!("{count} clients"),
            "connected": connected,
            "connect_seconds": round2(connect_seconds),
            "resumed": resumed,
            "catch_up_checked": prepare,
            "missed": missed,
            "failed": lost,
            "storm_seconds": round2(seconds),
        }));
        drop(workers);
    }
    Ok(rows)
}

pub fn percentiles(histogram: &Histogram<u64>) -> Value {
    json!({
        "p50": histogram.value_at_quantile(0.50),
        "p90": histogram.value_at_quantile(0.90),
        "p99": histogram.value_at_quantile(0.99),
        "p999": histogram.value_at_quantile(0.999),
        "max": histogram.max(),
        "count": histogram.len(),
    })
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Fails the run when a smoke check finds the tool broken.
pub fn check(ok: bool, what: &str) -> anyhow::Result<()> {
    if ok {
        Ok(())
    } else {
        bail!("smoke check failed: {what}")
    }
}
