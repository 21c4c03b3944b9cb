//! `kefu-bench`: drives a real Kefu server over the real protocol (REST to
//! set up, WebSocket `hello`/`send`/`ack`/`message` to measure) and reports
//! figures as a table and as JSON.
//!
//! By default it starts its own `kefu-server` (the binary next to this one)
//! on a temp data dir, so the server runs in its own process and its memory
//! can be read from /proc. Client sockets bind to source addresses
//! 127.0.0.2… in turn, so one run can open more connections than one
//! source address has ephemeral ports.

mod client;
mod server;
mod store;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;

#[derive(Parser)]
#[command(name = "kefu-bench", about = "Benchmarks Kefu over its real protocol")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Path of the kefu-server binary (default: next to kefu-bench).
    #[arg(long, global = true)]
    server_bin: Option<std::path::PathBuf>,
    /// Write the results as JSON to this file.
    #[arg(long, global = true)]
    json: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Scenario {
    /// Persisted messages per second, visitor → agent, closed loop with
    /// many sends in flight; ack latency histogram.
    Throughput {
        #[arg(long, default_value = "os")]
        durability: String,
        #[arg(long, default_value_t = 100)]
        conversations: usize,
        /// Sends in flight per visitor connection.
        #[arg(long, default_value_t = 32)]
        in_flight: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Authenticated idle WebSocket connections: server memory per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Seconds to hold them before measuring again.
        #[arg(long, default_value_t = 10)]
        hold: u64,
    },
    /// Ticket lists and full-text search on a store filled with many
    /// tickets and messages (filled offline through the server library,
    /// then served by the real server over HTTP).
    Store {
        #[arg(long, default_value_t = 1_000_000)]
        tickets: u64,
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// Conversations the messages are spread over (default messages / 10).
        #[arg(long)]
        conversations: Option<u64>,
        /// Ticket comments (default tickets / 10).
        #[arg(long)]
        comments: Option<u64>,
        /// Requests measured per query.
        #[arg(long, default_value_t = 2_000)]
        requests: u64,
        /// Tiny sizes, for CI: checks that the scenario works, not speed.
        #[arg(long)]
        smoke: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bin = match cli.server_bin {
        Some(bin) => bin,
        None => std::env::current_exe()?.with_file_name("kefu-server"),
    };
    let report = match cli.scenario {
        Scenario::Throughput {
            durability,
            conversations,
            in_flight,
            seconds,
        } => throughput(&bin, &durability, conversations, in_flight, seconds).await?,
        Scenario::Idle { connections, hold } => idle(&bin, connections, hold).await?,
        Scenario::Store {
            tickets,
            messages,
            conversations,
            comments,
            requests,
            smoke,
        } => {
            let sizes = if smoke {
                store::Sizes {
                    tickets: 2_000,
                    messages: 2_000,
                    conversations: 200,
                    comments: 200,
                    requests: 20,
                }
            } else {
                store::Sizes {
                    tickets,
                    messages,
                    conversations: conversations.unwrap_or(messages / 10).max(1),
                    comments: comments.unwrap_or(tickets / 10),
                    requests: requests.max(1),
                }
            };
            store::run(&bin, sizes).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn throughput(
    bin: &std::path::Path,
    durability: &str,
    conversations: usize,
    in_flight: usize,
    seconds: u64,
) -> anyhow::Result<serde_json::Value> {
    let server = server::Server::start(bin, durability).await?;
    let shop = client::Shop::setup(&server.base).await?;
    let visitors = shop.visitors(conversations).await?;
    let mut agent = client::Connection::open(&server.ws_url(), &shop.admin_token, 0).await?;
    let agent_reader =
        tokio::spawn(async move { agent.count_messages(Duration::from_secs(seconds + 5)).await });

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (index, visitor) in visitors.into_iter().enumerate() {
        let url = server.ws_url();
        tasks.push(tokio::spawn(async move {
            let mut connection = client::Connection::open(&url, &visitor.token, index).await?;
            connection
                .pipeline(&visitor.conversation_id, in_flight, deadline)
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
    let received = agent_reader.await??;
    let rate = acked as f64 / seconds as f64;
    let rss = server.rss_kib()?;
    Ok(json!({
        "scenario": "throughput",
        "durability": durability,
        "conversations": conversations,
        "in_flight_per_connection": in_flight,
        "seconds": seconds,
        "acked": acked,
        "acks_per_second": rate.round(),
        "agent_received": received,
        "ack_latency_us": percentiles(&histogram),
        "server_rss_kib": rss,
    }))
}

async fn idle(
    bin: &std::path::Path,
    connections: usize,
    hold: u64,
) -> anyhow::Result<serde_json::Value> {
    let server = server::Server::start(bin, "os").await?;
    let shop = client::Shop::setup(&server.base).await?;
    let visitors = shop.visitors(connections).await?;
    // Let SQLite and the allocator settle before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server.rss_kib()?;
    let cpu_before = server.cpu_seconds()?;
    let mut open = Vec::with_capacity(connections);
    let started = Instant::now();
    for chunk in visitors.chunks(500) {
        let mut batch = Vec::new();
        for (offset, visitor) in chunk.iter().enumerate() {
            let url = server.ws_url();
            let token = visitor.token.clone();
            let index = open.len() + offset;
            batch.push(tokio::spawn(async move {
                client::Connection::open(&url, &token, index).await
            }));
        }
        for task in batch {
            open.push(task.await??);
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let server_cpu_connecting = server.cpu_seconds()? - cpu_before;
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let after = server.rss_kib()?;
    // Every connection must still be alive: ping a sample of them.
    let mut alive = 0usize;
    for connection in open.iter_mut().step_by((connections / 100).max(1)) {
        if connection.ping().await.is_ok() {
            alive += 1;
        }
    }
    let per_connection = (after.saturating_sub(before)) as f64 * 1024.0 / connections as f64;
    Ok(json!({
        "scenario": "idle",
        "connections": connections,
        "connect_seconds": (connect_seconds * 100.0).round() / 100.0,
        "server_cpu_seconds_connecting": (server_cpu_connecting * 100.0).round() / 100.0,
        "server_rss_kib_before": before,
        "server_rss_kib_after": after,
        "bytes_per_connection": per_connection.round(),
        "sampled_alive": alive,
        "sampled": connections.div_ceil((connections / 100).max(1)),
    }))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn percentiles(histogram: &Histogram<u64>) -> serde_json::Value {
    json!({
        "p50": histogram.value_at_quantile(0.50),
        "p90": histogram.value_at_quantile(0.90),
        "p99": histogram.value_at_quantile(0.99),
        "p999": histogram.value_at_quantile(0.999),
        "max": histogram.max(),
        "count": histogram.len(),
    })
}
