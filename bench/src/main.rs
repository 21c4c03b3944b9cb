//! `kefu-bench`: drives a real Kefu server over the real protocol (REST to
//! set up, WebSocket `hello`/`send`/`ack`/`message` to measure) side by side
//! with three baselines started in the same run — B0, a minimal
//! tokio-tungstenite relay (`b0.rs`), B1, the same relay writing each send
//! to a RocksDB log before acking it (`b0.rs`, `--log`), and N, a Node.js
//! `ws` relay (`bench/baselines/node`) — and a raw RocksDB put loop
//! (`storage.rs`). Results are printed as tables (with Kefu's ratios to B0,
//! B1 and N) and written as JSON.
//!
//! Each system runs in its own process, so its memory and CPU can be read
//! from /proc; with `--pin` the server runs on core 0 and the load on core
//! 1 (taskset). Client sockets bind to source addresses 127.0.0.2… before
//! connecting; the connection scenarios spread clients over worker
//! processes (one process may hold 20,000 files).

mod assist;
mod assist_path;
mod assist_select;
mod assist_suggest;
mod b0;
mod backup;
mod client;
mod coldstart;
mod fuzz;
mod lan;
mod lan_lag;
mod pin;
mod report;
mod scenarios;
mod server;
mod storage;
mod store;
mod store_seam;
mod storm;
mod target;
mod worker;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::scenarios::check;
use crate::target::System;

#[derive(Parser)]
#[command(name = "kefu-bench", about = "Benchmarks Kefu over its real protocol")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    #[command(flatten)]
    global: Global,
}

#[derive(Args, Clone)]
struct Global {
    /// Path of the kefu-server binary (default: next to kefu-bench).
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
    /// A second kefu-server binary, measured as the system `kefu-b` beside
    /// `kefu` in the same run (before vs after a change).
    #[arg(long, global = true)]
    server_bin_b: Option<PathBuf>,
    /// Write the results as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Systems to measure (comma-separated).
    #[arg(long, global = true, value_delimiter = ',', default_values = ["kefu", "b0", "b1", "node"])]
    systems: Vec<System>,
    /// Pin the server to core 0 and the load to core 1 (taskset).
    #[arg(long, global = true)]
    pin: bool,
    /// Tiny sizes, for CI: checks that the tool works, not how fast.
    #[arg(long, global = true)]
    smoke: bool,
}

#[derive(Subcommand)]
enum Scenario {
    /// Idle authenticated WebSocket connections held by one server
    /// process: how many, for how long, memory per connection (slope).
    Connections(ConnectionsArgs),
    /// Persisted messages per second visitor → agent, closed loop.
    Throughput(ThroughputArgs),
    /// End-to-end latency visitor → agent, open loop on a fixed schedule.
    Latency(LatencyArgs),
    /// Every client drops at once and resumes by seq.
    Reconnect(ReconnectArgs),
    /// New visitors start chats at a rate on top of a steady message rate:
    /// senders' acks, and when each new chat is visible and assigned.
    Storm(StormArgs),
    /// Exec → serving the last 50 messages, clean and after kill -9 under load.
    Coldstart(ColdstartArgs),
    /// Raw RocksDB put loop with the log's options: the storage ceiling.
    Storage(StorageArgs),
    /// Ticket lists and full-text search at scale (Kefu only).
    #[command(alias = "tickets")]
    Store(StoreArgs),
    /// A healthy client's latency alone, then beside frame fuzzers (Kefu only).
    Fuzz(FuzzArgs),
    /// Backup time and size, and send latency before vs during a backup
    /// (Kefu only; prints JSON).
    Backup(BackupArgs),
    /// An agent's reply through a LAN peer's relay vs straight to the
    /// host, in the same run (Kefu only; prints JSON).
    LanRelay(LanRelayArgs),
    /// A LAN standby's lag behind its host (sequences and ms) under a
    /// steady visitor message rate (Kefu only; prints JSON).
    LanLag(LanLagArgs),
    /// Kefu Assist: FAQ precision and answer rate on the labelled set
    /// (split by time, deduplicated), signal and retrieval latency at
    /// 10,000 entries (in-process; prints JSON).
    Assist,
    /// Kefu Assist off vs on (FAQ bot, trained intents, suggestions) under
    /// the same message load, in the same run (Kefu only; prints JSON).
    AssistPath(AssistPathArgs),
    /// The message stores behind the MessageStore seam in the same run:
    /// RocksDB (os, fsync) and, built with `--features kefu-bench/cluster`,
    /// PostgreSQL; sends/s and append latency (in-process; prints JSON).
    StoreSeam(StoreSeamArgs),
    /// Every scenario in turn (with `--smoke`: tiny, for CI).
    All(AllArgs),
    /// Baseline B0: serve the minimal relay (used by the bench itself).
    #[command(hide = true)]
    B0Server {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: std::net::SocketAddr,
        /// Baseline B1: write every send to a RocksDB log in this directory
        /// before acking and relaying it.
        #[arg(long)]
        log: Option<PathBuf>,
        /// With `--log`: sync each batch to disk before acking (B1f).
        #[arg(long, requires = "log")]
        fsync: bool,
    },
    /// A load worker process (used by the bench itself).
    #[command(hide = true)]
    Worker,
}

#[derive(Args, Clone)]
struct ConnectionsArgs {
    #[arg(long, default_value_t = 19_000)]
    connections: usize,
    /// Seconds Kefu holds them before counting the survivors.
    #[arg(long, default_value_t = 600)]
    hold: u64,
    /// Seconds the baselines hold them (their memory is what is compared).
    #[arg(long, default_value_t = 60)]
    baseline_hold: u64,
    /// Connections per worker process.
    #[arg(long, default_value_t = 9_500)]
    per_worker: usize,
}

#[derive(Args, Clone)]
struct ThroughputArgs {
    #[arg(long, default_value_t = 100)]
    conversations: usize,
    /// Sends in flight per visitor connection.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[derive(Args, Clone)]
struct LatencyArgs {
    /// Messages per second, all visitors together.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Visitor connections (conversations); one run per value.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 5_000])]
    conversations: Vec<usize>,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds sent before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
}

#[derive(Args, Clone)]
struct StormArgs {
    /// Messages per second over the steady conversations.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Steady conversations (opened before the storm).
    #[arg(long, default_value_t = 1_000)]
    steady: usize,
    /// New conversations per second during the storm.
    #[arg(long, default_value_t = 200)]
    new_rate: u64,
    /// Seconds the storm lasts.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of steady rate before it.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Agents online on Kefu, each with room for every new chat (up to
    /// 1,000): together they can take the steady and the new chats.
    #[arg(long, default_value_t = 6)]
    agents: usize,
}

#[derive(Args, Clone)]
struct ReconnectArgs {
    #[arg(long, default_value_t = 19_000)]
    clients: usize,
    #[arg(long, default_value_t = 9_500)]
    per_worker: usize,
}

#[derive(Args, Clone)]
struct ColdstartArgs {
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 100_000)]
    tickets: u64,
    /// Clean starts measured.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Args, Clone)]
struct StorageArgs {
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 512)]
    batch: usize,
}

#[derive(Args, Clone)]
struct StoreArgs {
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
}

#[derive(Args, Clone)]
struct FuzzArgs {
    /// Messages per second the healthy visitor sends.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Fuzzing connections beside it.
    #[arg(long, default_value_t = 2)]
    fuzzers: usize,
    /// Malformed frames per second per fuzzer (0: as fast as it can).
    #[arg(long, default_value_t = 1_000)]
    fuzz_rate: u64,
    /// Seconds measured alone, then as long beside the fuzzers.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[derive(Args, Clone)]
struct BackupArgs {
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 100_000)]
    tickets: u64,
    /// Visitors sending during the measurement.
    #[arg(long, default_value_t = 20)]
    visitors: usize,
    /// Milliseconds between two sends of one visitor.
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
    /// Seconds measured before the backup starts.
    #[arg(long, default_value_t = 10)]
    before: u64,
}

#[derive(Args, Clone)]
struct LanRelayArgs {
    /// Replies measured per path (after a tenth as many for warm-up).
    #[arg(long, default_value_t = 2_000)]
    replies: usize,
}

#[derive(Args, Clone)]
struct LanLagArgs {
    /// Messages per second, all visitors together (open loop).
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// How long the load runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Visitor WebSockets sharing the rate.
    #[arg(long, default_value_t = 50)]
    visitors: usize,
}

#[derive(Args, Clone)]
struct AssistPathArgs {
    /// Visitor connections (conversations).
    #[arg(long, default_value_t = 200)]
    conversations: usize,
    /// Visitor messages per second, all together (the agent answers each).
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds sent before measuring, per run.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Runs of each mode (alternating off, on, on, off, …).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The server's durability.
    #[arg(long, default_value = "fsync")]
    durability: String,
}

#[derive(Args, Clone)]
struct StoreSeamArgs {
    /// Seconds measured per engine (after one of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Appends in flight (tasks, each one send at a time).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Conversations the sends are spread over.
    #[arg(long, default_value_t = 1_000)]
    conversations: usize,
    /// A PostgreSQL to measure instead of a throwaway one (it gets the
    /// schema of server/migrations-pg).
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Args, Clone)]
struct AllArgs {
    /// Seconds Kefu holds the idle connections.
    #[arg(long, default_value_t = 600)]
    hold: u64,
    /// Seconds the baselines hold theirs.
    #[arg(long, default_value_t = 60)]
    baseline_hold: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let hidden = matches!(cli.scenario, Scenario::B0Server { .. } | Scenario::Worker);
    if !hidden {
        let pin = cli.global.pin.then(|| ("0".to_owned(), "1".to_owned()));
        if let Some(code) = pin::setup(pin)? {
            std::process::exit(code);
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    let bin = match &global.server_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("kefu-server"),
    };
    if let Some(bin_b) = &global.server_bin_b {
        target::set_server_bin_b(bin_b.clone());
    }
    let sections = match cli.scenario {
        Scenario::B0Server { bind, log, fsync } => {
            return b0::serve(bind, log.as_deref(), fsync).await;
        }
        Scenario::Worker => return worker::run().await,
        Scenario::All(args) => {
            // Each scenario's result is written as soon as it is in, and a
            // failing one does not stop the others: an hour-long run that
            // fails near its end (a full disk in the store scenario) keeps
            // everything measured before. The run still fails at the end.
            let mut all = AllRun::new(&global);
            let connections = ConnectionsArgs {
                connections: 19_000,
                hold: args.hold,
                baseline_hold: args.baseline_hold,
                per_worker: 9_500,
            };
            all.add(
                "connections",
                connections_section(&bin, &global, &connections).await,
            )?;
            let throughput = ThroughputArgs {
                conversations: 100,
                in_flight: 8,
                seconds: 10,
            };
            all.add(
                "throughput",
                throughput_section(&bin, &global, &throughput).await,
            )?;
            let latency = LatencyArgs {
                rate: 10_000,
                conversations: vec![1_000, 5_000],
                seconds: 20,
                warmup: 3,
            };
            all.add("latency", latency_section(&bin, &global, &latency).await)?;
            let storm = StormArgs {
                rate: 10_000,
                steady: 1_000,
                new_rate: 200,
                seconds: 20,
                warmup: 3,
                agents: 6,
            };
            all.add("storm", storm_section(&bin, &global, &storm).await)?;
            let reconnect = ReconnectArgs {
                clients: 19_000,
                per_worker: 9_500,
            };
            all.add(
                "reconnect",
                reconnect_section(&bin, &global, &reconnect).await,
            )?;
            let fuzz = FuzzArgs {
                rate: 100,
                fuzzers: 2,
                fuzz_rate: 1_000,
                seconds: 10,
            };
            all.add("fuzz", fuzz_section(&bin, &global, &fuzz).await)?;
            let coldstart = ColdstartArgs {
                messages: 1_000_000,
                tickets: 100_000,
                runs: 3,
            };
            all.add(
                "coldstart",
                coldstart_section(&bin, &global, &coldstart).await,
            )?;
            let store = StoreArgs {
                tickets: 1_000_000,
                messages: 1_000_000,
                conversations: None,
                comments: None,
                requests: 2_000,
            };
            all.add("tickets", store_section(&bin, &global, &store).await)?;
            return all.finish();
        }
        Scenario::Connections(args) => vec![connections_section(&bin, &global, &args).await?],
        Scenario::Throughput(args) => vec![throughput_section(&bin, &global, &args).await?],
        Scenario::Latency(args) => vec![latency_section(&bin, &global, &args).await?],
        Scenario::Reconnect(args) => vec![reconnect_section(&bin, &global, &args).await?],
        Scenario::Storm(args) => vec![storm_section(&bin, &global, &args).await?],
        Scenario::Coldstart(args) => vec![coldstart_section(&bin, &global, &args).await?],
        Scenario::Storage(args) => vec![storage_section(&global, &args)?],
        Scenario::Store(args) => vec![store_section(&bin, &global, &args).await?],
        Scenario::Fuzz(args) => vec![fuzz_section(&bin, &global, &args).await?],
        Scenario::LanRelay(args) => {
            let replies = if global.smoke { 20 } else { args.replies };
            let row = lan::run(&bin, replies).await?;
            println!("{}", serde_json::to_string_pretty(&row)?);
            let report = full_report(&global, vec![section("lan-relay", vec![row])]);
            return write_json(&global, &report);
        }
        Scenario::LanLag(args) => {
            let sizes = if global.smoke {
                lan_lag::Sizes {
                    rate: 100,
                    seconds: 2,
                    visitors: 4,
                }
            } else {
                lan_lag::Sizes {
                    rate: args.rate,
                    seconds: args.seconds,
                    visitors: args.visitors,
                }
            };
            let row = lan_lag::run(&bin, sizes).await?;
            println!("{}", serde_json::to_string_pretty(&row)?);
            let report = full_report(&global, vec![section("lan-lag", vec![row])]);
            return write_json(&global, &report);
        }
        Scenario::StoreSeam(args) => {
            let sizes = if global.smoke {
                store_seam::Sizes {
                    seconds: 1,
                    concurrency: 8,
                    conversations: 10,
                }
            } else {
                store_seam::Sizes {
                    seconds: args.seconds,
                    concurrency: args.concurrency.max(1),
                    conversations: args.conversations.max(1),
                }
            };
            let rows = store_seam::run(sizes, args.database_url.as_deref(), global.smoke).await?;
            println!("{}", serde_json::to_string_pretty(&rows)?);
            let report = full_report(&global, vec![section("store-seam", rows)]);
            return write_json(&global, &report);
        }
        Scenario::Assist => {
            let row = assist::run(global.smoke)?;
            println!("{}", serde_json::to_string_pretty(&row)?);
            let suggest = assist_suggest::run(global.smoke)?;
            println!("{}", serde_json::to_string_pretty(&suggest)?);
            let report = full_report(
                &global,
                vec![
                    section("assist", vec![row]),
                    section("assist-suggest", vec![suggest]),
                ],
            );
            return write_json(&global, &report);
        }
        Scenario::AssistPath(args) => {
            let sizes = if global.smoke {
                assist_path::Sizes {
                    conversations: 10,
                    rate: 20,
                    seconds: 2,
                    warmup: 1,
                    rounds: 1,
                }
            } else {
                assist_path::Sizes {
                    conversations: args.conversations.max(1),
                    rate: args.rate.max(1),
                    seconds: args.seconds,
                    warmup: args.warmup,
                    rounds: args.rounds.max(1),
                }
            };
            let row = assist_path::run(&bin, &args.durability, sizes).await?;
            println!("{}", serde_json::to_string_pretty(&row)?);
            if global.smoke {
                for mode in ["off", "on"] {
                    check(
                        row[mode]["missing_acks"] == 0,
                        "assist-path: every send acked",
                    )?;
                    check(
                        row[mode]["replies"].as_u64() > Some(0),
                        "assist-path: the agent replied",
                    )?;
                }
                check(
                    row["on"]["bot_messages"].as_u64() > Some(0),
                    "assist-path: the bot answered",
                )?;
                check(
                    row["off"]["bot_messages"] == 0,
                    "assist-path: no bot when off",
                )?;
            }
            let report = full_report(&global, vec![section("assist-path", vec![row])]);
            return write_json(&global, &report);
        }
        Scenario::Backup(args) => {
            let row = backup::run(
                &bin,
                backup::Sizes {
                    messages: args.messages,
                    tickets: args.tickets,
                    visitors: args.visitors,
                    interval_ms: args.interval_ms,
                    before: args.before,
                },
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&row)?);
            let report = full_report(&global, vec![section("backup", vec![row])]);
            return write_json(&global, &report);
        }
    };
    let report = full_report(&global, sections);
    println!("{}", report::tables(&report));
    write_json(&global, &report)
}

fn full_report(global: &Global, sections: Vec<Value>) -> Value {
    json!({
        "tool": "kefu-bench",
        "date": report::date(),
        "commit": report::commit(),
        "machine": report::machine(),
        "pinning": pin::describe(),
        "smoke": global.smoke,
        "load_average_1m_at_end": report::load_average(),
        "sections": sections,
    })
}

fn write_json(global: &Global, report: &Value) -> anyhow::Result<()> {
    if let Some(path) = &global.json {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `kefu-bench all`: the sections so far, and which scenarios failed.
struct AllRun<'a> {
    global: &'a Global,
    sections: Vec<Value>,
    failed: Vec<&'static str>,
}

impl<'a> AllRun<'a> {
    fn new(global: &'a Global) -> Self {
        AllRun {
            global,
            sections: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Records a scenario's result (or its failure) and rewrites the JSON.
    fn add(&mut self, name: &'static str, result: anyhow::Result<Value>) -> anyhow::Result<()> {
        match result {
            Ok(section) => self.sections.push(section),
            Err(error) => {
                eprintln!("kefu-bench: the {name} scenario failed: {error:#}");
                self.sections
                    .push(json!({"scenario": name, "rows": [], "error": format!("{error:#}")}));
                self.failed.push(name);
            }
        }
        write_json(
            self.global,
            &full_report(self.global, self.sections.clone()),
        )
    }

    fn finish(self) -> anyhow::Result<()> {
        let report = full_report(self.global, self.sections);
        println!("{}", report::tables(&report));
        write_json(self.global, &report)?;
        if self.failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("scenarios failed: {}", self.failed.join(", "))
        }
    }
}

fn section(name: &str, rows: Vec<Value>) -> Value {
    json!({"scenario": name, "rows": rows})
}

async fn connections_section(
    bin: &Path,
    global: &Global,
    args: &ConnectionsArgs,
) -> anyhow::Result<Value> {
    let (count, hold, baseline_hold, per_worker) = if global.smoke {
        (300, 1, 1, 200)
    } else {
        (
            args.connections,
            args.hold,
            args.baseline_hold,
            args.per_worker,
        )
    };
    let rows = scenarios::connections(bin, &global.systems, count, hold, baseline_hold, per_worker)
        .await?;
    if global.smoke {
        for row in &rows {
            check(row["alive_after_hold"] == count, "connections all held")?;
        }
    }
    Ok(section("connections", rows))
}

async fn throughput_section(
    bin: &Path,
    global: &Global,
    args: &ThroughputArgs,
) -> anyhow::Result<Value> {
    let (conversations, in_flight, seconds) = if global.smoke {
        (4, 2, 1)
    } else {
        (args.conversations, args.in_flight, args.seconds)
    };
    let mut rows =
        scenarios::throughput(bin, &global.systems, conversations, in_flight, seconds).await?;
    if global.smoke {
        for row in &rows {
            check(row["acked"].as_u64() > Some(0), "throughput acked")?;
            check(row["agent_got_all"] == true, "the agent got every message")?;
        }
    }
    rows.extend(storage::run(if global.smoke { 1 } else { 5 }, 512)?);
    Ok(section("throughput", rows))
}

async fn latency_section(bin: &Path, global: &Global, args: &LatencyArgs) -> anyhow::Result<Value> {
    let (rate, conversations, seconds, warmup) = if global.smoke {
        (200, vec![20], 1, 1)
    } else {
        (
            args.rate,
            args.conversations.clone(),
            args.seconds,
            args.warmup,
        )
    };
    let mut rows = Vec::new();
    for count in conversations {
        rows.extend(scenarios::latency(bin, &global.systems, rate, count, seconds, warmup).await?);
    }
    if global.smoke {
        for row in &rows {
            check(
                row["received"] == row["sent"],
                "latency: every send arrived",
            )?;
            check(row["measured"].as_u64() > Some(0), "latency measured")?;
        }
    }
    Ok(section("latency", rows))
}

async fn storm_section(bin: &Path, global: &Global, args: &StormArgs) -> anyhow::Result<Value> {
    let sizes = if global.smoke {
        storm::Sizes {
            rate: 200,
            steady: 10,
            new_rate: 20,
            seconds: 1,
            warmup: 1,
            agents: 2,
        }
    } else {
        storm::Sizes {
            rate: args.rate,
            steady: args.steady.max(1),
            new_rate: args.new_rate.max(1),
            seconds: args.seconds,
            warmup: args.warmup,
            agents: args.agents.max(1),
        }
    };
    let rows = storm::run(bin, &global.systems, sizes).await?;
    if global.smoke {
        for row in &rows {
            check(row["missing_acks"] == 0, "storm: every send acked")?;
            check(
                row["visible"] == row["new_sent"],
                "storm: every new chat reached the agents",
            )?;
            if row["system"] == "Kefu" {
                check(
                    row["assigned"] == row["new_sent"],
                    "storm: every new chat assigned",
                )?;
            }
        }
    }
    Ok(section("storm", rows))
}

async fn reconnect_section(
    bin: &Path,
    global: &Global,
    args: &ReconnectArgs,
) -> anyhow::Result<Value> {
    let (clients, per_worker) = if global.smoke {
        (200, 120)
    } else {
        (args.clients, args.per_worker)
    };
    let rows = scenarios::reconnect(bin, &global.systems, clients, per_worker).await?;
    if global.smoke {
        for row in &rows {
            check(row["resumed"] == clients, "reconnect: every client resumed")?;
        }
    }
    Ok(section("reconnect", rows))
}

async fn coldstart_section(
    bin: &Path,
    global: &Global,
    args: &ColdstartArgs,
) -> anyhow::Result<Value> {
    if !global.systems.contains(&System::Kefu) {
        return Ok(section("coldstart", Vec::new()));
    }
    let sizes = if global.smoke {
        coldstart::Sizes {
            messages: 2_000,
            tickets: 200,
            runs: 1,
            load_seconds: 1,
        }
    } else {
        coldstart::Sizes {
            messages: args.messages,
            tickets: args.tickets,
            runs: args.runs,
            load_seconds: 3,
        }
    };
    let rows = coldstart::run(bin, sizes).await?;
    if global.smoke {
        for row in &rows {
            check(row["crash_lost"] == 0, "coldstart: nothing acked lost")?;
        }
    }
    Ok(section("coldstart", rows))
}

async fn fuzz_section(bin: &Path, global: &Global, args: &FuzzArgs) -> anyhow::Result<Value> {
    if !global.systems.contains(&System::Kefu) {
        return Ok(section("fuzz", Vec::new()));
    }
    let (rate, fuzzers, fuzz_rate, seconds) = if global.smoke {
        (20, 1, 200, 1)
    } else {
        (args.rate, args.fuzzers, args.fuzz_rate, args.seconds)
    };
    let rows = fuzz::run(bin, rate, fuzzers, fuzz_rate, seconds).await?;
    if global.smoke {
        for row in &rows {
            check(
                row["received"] == row["sent"],
                "fuzz: every healthy send arrived",
            )?;
        }
    }
    Ok(section("fuzz", rows))
}

fn storage_section(global: &Global, args: &StorageArgs) -> anyhow::Result<Value> {
    let seconds = if global.smoke { 1 } else { args.seconds };
    Ok(section("storage", storage::run(seconds, args.batch)?))
}

async fn store_section(bin: &Path, global: &Global, args: &StoreArgs) -> anyhow::Result<Value> {
    if !global.systems.contains(&System::Kefu) {
        return Ok(section("tickets", Vec::new()));
    }
    let sizes = if global.smoke {
        store::Sizes {
            tickets: 2_000,
            messages: 2_000,
            conversations: 200,
            comments: 200,
            requests: 20,
        }
    } else {
        store::Sizes {
            tickets: args.tickets,
            messages: args.messages,
            conversations: args.conversations.unwrap_or(args.messages / 10).max(1),
            comments: args.comments.unwrap_or(args.tickets / 10),
            requests: args.requests.max(1),
        }
    };
    let result = store::run(bin, sizes).await?;
    let mut rows = Vec::new();
    if let Some(latencies) = result["latency_us"].as_object() {
        for (query, figures) in latencies {
            rows.push(json!({"system": "Kefu", "case": query, "latency_us": figures}));
        }
    }
    Ok(json!({"scenario": "tickets", "rows": rows, "details": result}))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
