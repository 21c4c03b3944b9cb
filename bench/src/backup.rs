//! The `backup` scenario (Kefu only, issue 19): what an online backup
//! costs.
//!
//! 1. A store is filled offline (`store::fill`: messages, tickets and
//!    comments), then the real `kefu-server` serves it.
//! 2. Once the server has settled (the search index and the conversation
//!    list caught up with the filled store, read from `/metrics`), and each
//!    visitor's first message (the conversation's start) is acked outside
//!    the measurement, visitors send on a fixed schedule (open loop: a send every
//!    `interval` per visitor, each waiting for its ack), and every send's
//!    latency is recorded with the phase it started in.
//! 3. After `before` seconds, `kefu-server backup --to DIR` runs (a
//!    separate process asking the server, as an operator would); the
//!    sends started while it runs form the "during" phase.
//! 4. Reported: backup seconds and bytes, `verify-backup` seconds, and
//!    p50/p99/max send latency before and during, same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::client::{Connection, Shop};
use crate::report::dir_size;
use crate::scenarios::round2;
use crate::server::Server;
use crate::store;

pub struct Sizes {
    pub messages: u64,
    pub tickets: u64,
    pub visitors: usize,
    /// Milliseconds between two sends of one visitor.
    pub interval_ms: u64,
    /// Seconds of load before the backup.
    pub before: u64,
}

const BEFORE: u8 = 0;
const DURING: u8 = 1;
const AFTER: u8 = 2;

pub async fn run(bin: &std::path::Path, sizes: Sizes) -> anyhow::Result<Value> {
    let dir = Server::prepare(bin)?;
    let fill = store::Sizes {
        tickets: sizes.tickets,
        messages: sizes.messages,
        conversations: (sizes.messages / 10).max(1),
        comments: sizes.tickets / 10,
        requests: 0,
    };
    eprintln!(
        "backup: filling {} messages, {} tickets",
        sizes.messages, sizes.tickets
    );
    let (sqlite_seconds, log_seconds) = store::fill(dir.path(), &fill).await?;
    let server = Server::serve(bin, dir, "fsync").await?;
    let data_bytes = dir_size(server.data_dir());
    let settle_seconds = settle(&server.base).await?;
    let shop = Shop::setup(&server.base).await?;
    let visitors = shop.visitors(sizes.visitors).await?;
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let mut senders = Vec::new();
    for (index, visitor) in visitors.into_iter().enumerate() {
        let mut connection = Connection::open(&server.ws_url(), &visitor.token, index).await?;
        // The conversation's start, not measured: the phases compare sends
        // into open conversations.
        connection
            .send_and_ack(&visitor.conversation_id, &format!("b{index}-start"))
            .await?;
        let phase = Arc::clone(&phase);
        let interval = Duration::from_millis(sizes.interval_ms);
        senders.push(tokio::spawn(async move {
            let mut histograms = [new_histogram()?, new_histogram()?, new_histogram()?];
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                tick.tick().await;
                let started_in = phase.load(Ordering::Acquire);
                if started_in > AFTER {
                    break;
                }
                let started = Instant::now();
                connection
                    .send_and_ack(&visitor.conversation_id, &format!("b{index}-{n}"))
                    .await?;
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                histograms[usize::from(started_in)].saturating_record(micros.max(1));
                n += 1;
            }
            anyhow::Ok(histograms)
        }));
    }
    tokio::time::sleep(Duration::from_secs(sizes.before)).await;
    let backups = tempfile::tempdir()?;
    let target = backups.path().join("backup");
    phase.store(DURING, Ordering::Release);
    let started = Instant::now();
    let output = tokio::process::Command::new(bin)
        .args(["backup", "--data-dir"])
        .arg(server.data_dir())
        .arg("--to")
        .arg(&target)
        .output()
        .await?;
    let backup_seconds = started.elapsed().as_secs_f64();
    phase.store(AFTER, Ordering::Release);
    if !output.status.success() {
        bail!("backup failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    // A few seconds after, then stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    phase.store(AFTER + 1, Ordering::Release);
    let mut totals = [new_histogram()?, new_histogram()?, new_histogram()?];
    for sender in senders {
        let histograms = sender.await.context("sender panicked")??;
        for (total, histogram) in totals.iter_mut().zip(histograms.iter()) {
            total.add(histogram)?;
        }
    }
    let backup_bytes = dir_size(&target);
    let started = Instant::now();
    let verified = tokio::process::Command::new(bin)
        .arg("verify-backup")
        .arg(&target)
        .output()
        .await?;
    let verify_seconds = started.elapsed().as_secs_f64();
    if !verified.status.success() {
        bail!(
            "verify-backup failed: {}",
            String::from_utf8_lossy(&verified.stderr)
        );
    }
    drop(server.terminate()?);
    let phase_row = |name: &str, h: &Histogram<u64>| {
        json!({
            "phase": name,
            "sends": h.len(),
            "p50_ms": round2(h.value_at_quantile(0.5) as f64 / 1000.0),
            "p99_ms": round2(h.value_at_quantile(0.99) as f64 / 1000.0),
            "max_ms": round2(h.max() as f64 / 1000.0),
        })
    };
    Ok(json!({
        "messages": sizes.messages,
        "tickets": sizes.tickets,
        "fill_sqlite_s": round2(sqlite_seconds),
        "fill_log_s": round2(log_seconds),
        "data_dir_bytes": data_bytes,
        "settle_s": round2(settle_seconds),
        "backup_s": round2(backup_seconds),
        "backup_bytes": backup_bytes,
        "verify_s": round2(verify_seconds),
        "visitors": sizes.visitors,
        "send_interval_ms": sizes.interval_ms,
        "latency": [
            phase_row("before", &totals[usize::from(BEFORE)]),
            phase_row("during backup", &totals[usize::from(DURING)]),
            phase_row("after", &totals[usize::from(AFTER)]),
        ],
    }))
}

/// Waits (at most 15 minutes) until the server's background catch-up on a
/// freshly filled store is done: no conversation waits for the search
/// index or for its place in the conversation list. Returns the seconds.
async fn settle(base: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let http = reqwest::Client::new();
    let backlog = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    };
    loop {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let index = backlog(&text, "kefu_search_index_backlog_conversations");
        let derived = backlog(&text, "kefu_derived_backlog_conversations");
        if index.unwrap_or(0.0) == 0.0 && derived.unwrap_or(0.0) == 0.0 {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("the server did not settle in 15 minutes (index {index:?}, derived {derived:?})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}
