//! `store-seam` (in-process): the message stores behind the `MessageStore`
//! seam (server/src/store/seam.rs), side by side in the same run — the
//! embedded RocksDB log through its adapter (durability `os` and `fsync`)
//! and, when kefu-bench is built with `--features kefu-bench/cluster`,
//! PostgreSQL (a throwaway server from Debian's binaries with its default
//! `fsync = on`, `synchronous_commit = on`, or `--database-url`).
//!
//! Closed loop: `concurrency` tasks each append one message at a time with
//! a fresh `client_msg_id` to a conversation picked round-robin among
//! `conversations`, for `seconds` after one second of warm-up. Measured:
//! sends/s, and the latency of `append` (call → durable answer). After the
//! run, every conversation's head is checked against what was acked
//! (gap-free: the heads add up to the acks).
//!
//! No server, no network protocol: this is the store alone, the part of a
//! send that cluster mode changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use kefu_server::config::Durability;
use kefu_server::ids::ConversationId;
use kefu_server::message::{MessageKind, Sender, SenderType};
use kefu_server::store::messages::{Draft, LogMetrics, MessageLog};
use kefu_server::store::seam::MessageStore;
use kefu_server::store::seam_rocks::RocksStore;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::scenarios::{check, percentiles, round2};

#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub seconds: u64,
    pub concurrency: usize,
    pub conversations: usize,
}

struct NoMetrics;
impl LogMetrics for NoMetrics {
    fn batch_written(&self, _: usize, _: usize, _: f64) {}
}

/// Every engine in turn; one row each.
pub async fn run(
    sizes: Sizes,
    database_url: Option<&str>,
    smoke: bool,
) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    for (name, durability) in [
        ("rocksdb-os", Durability::Os),
        ("rocksdb-fsync", Durability::Fsync),
    ] {
        let dir = tempfile::tempdir()?;
        let log = Arc::new(MessageLog::open(
            &dir.path().join("log"),
            durability,
            16_384,
            1_024,
            Arc::new(NoMetrics),
            Box::new(|_| {}),
        )?);
        let store = RocksStore::new(Arc::clone(&log));
        let row = measure(name, &store, sizes).await?;
        log.close().await;
        rows.push(row);
    }
    rows.push(postgres(sizes, database_url).await?);
    for row in &rows {
        println!(
            "{:<16} {:>10} sends/s  append p50 {:>7} µs  p99 {:>7} µs  p99.9 {:>7} µs",
            row["engine"].as_str().unwrap_or("?"),
            row["sends_per_second"],
            row["append_us"]["p50"],
            row["append_us"]["p99"],
            row["append_us"]["p999"],
        );
        if smoke && row.get("skipped").is_none() {
            check(row["acked"].as_u64() > Some(0), "store-seam: sends acked")?;
            check(
                row["gap_free"] == true,
                "store-seam: heads add up to the acks",
            )?;
        }
    }
    Ok(rows)
}

#[cfg(feature = "cluster")]
async fn postgres(sizes: Sizes, database_url: Option<&str>) -> anyhow::Result<Value> {
    use anyhow::Context;
    use kefu_server::cluster::postgres::{PgMessageStore, PgStoreOptions};
    use kefu_server::cluster::throwaway::ThrowawayPostgres;
    let options = PgStoreOptions {
        max_connections: u32::try_from(sizes.concurrency)
            .unwrap_or(u32::MAX)
            .clamp(1, 150),
        acquire_timeout: Duration::from_secs(30),
    };
    let (server, url) = match database_url {
        Some(url) => (None, url.to_owned()),
        None => {
            let server = tokio::task::spawn_blocking(|| ThrowawayPostgres::start(true))
                .await??
                .context("no PostgreSQL binaries (apt-get install postgresql)")?;
            let url = server.url().to_owned();
            (Some(server), url)
        }
    };
    let store = PgMessageStore::connect(&url, options)?;
    store.migrate().await?;
    let mut row = measure("postgresql", &store, sizes).await?;
    row["pool_connections"] = json!(options.max_connections);
    row["server"] = json!(if server.is_some() {
        "throwaway (fsync=on, synchronous_commit=on)"
    } else {
        "--database-url"
    });
    store.close().await;
    drop(server);
    Ok(row)
}

#[cfg(not(feature = "cluster"))]
async fn postgres(_sizes: Sizes, _database_url: Option<&str>) -> anyhow::Result<Value> {
    println!("postgresql: SKIPPED (kefu-bench built without --features kefu-bench/cluster)");
    Ok(json!({"engine": "postgresql", "skipped": "built without the cluster feature"}))
}

fn draft(conversation: ConversationId, id: u64) -> Draft {
    Draft {
        conversation_id: conversation,
        sender: Sender {
            kind: SenderType::Visitor,
            id: "bench-visitor".into(),
            name: "Bench".into(),
        },
        sender_key: [1; 16],
        client_msg_id: Some(format!("m{id}")),
        kind: MessageKind::Text,
        content: "你好, where is my parcel? 我的快递到哪里了".into(),
        meta: json!({}),
        attachment: None,
        start: false,
    }
}

async fn measure<S: MessageStore + Clone + 'static>(
    name: &str,
    store: &S,
    sizes: Sizes,
) -> anyhow::Result<Value> {
    let conversations: Arc<Vec<ConversationId>> = Arc::new(
        (0..sizes.conversations.max(1))
            .map(|_| ConversationId::new())
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let mut tasks = Vec::with_capacity(sizes.concurrency);
    for _ in 0..sizes.concurrency.max(1) {
        let store = store.clone();
        let conversations = Arc::clone(&conversations);
        let next = Arc::clone(&next);
        let measuring = Arc::clone(&measuring);
        let stop = Arc::clone(&stop);
        let acked = Arc::clone(&acked);
        let histogram = Arc::clone(&histogram);
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new(3)?;
            let mut measured = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = next.fetch_add(1, Ordering::Relaxed);
                let conversation = conversations[(id as usize) % conversations.len()];
                let started = Instant::now();
                let appended = store.append(draft(conversation, id), None).await?;
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                anyhow::ensure!(
                    !appended.duplicate,
                    "a fresh client_msg_id came back as a duplicate"
                );
                acked.fetch_add(1, Ordering::Relaxed);
                if measuring.load(Ordering::Relaxed) {
                    local.record(micros.max(1))?;
                    measured += 1;
                }
            }
            histogram.lock().add(&local)?;
            anyhow::Ok(measured)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(sizes.seconds.max(1))).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut measured = 0;
    for task in tasks {
        measured += task.await??;
    }
    // Gap-free: the conversations' heads add up to every ack.
    let mut heads = 0;
    for conversation in conversations.iter() {
        heads += store.head(*conversation).await?.map_or(0, |h| h.last_seq);
    }
    let acked = acked.load(Ordering::Relaxed);
    let histogram = histogram.lock();
    Ok(json!({
        "engine": name,
        "concurrency": sizes.concurrency,
        "conversations": sizes.conversations,
        "seconds": round2(elapsed),
        "sends_per_second": round2(measured as f64 / elapsed),
        "append_us": percentiles(&histogram),
        "acked": acked,
        "gap_free": heads == acked,
    }))
}
