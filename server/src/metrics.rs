//! Prometheus metrics, served as text at `GET /metrics` (on the main
//! listener, or on `http.metrics_bind`'s own listener when set).
//!
//! Three kinds of series:
//! - counted as things happen (messages, batches, HTTP latency, WebSocket
//!   connections, backups);
//! - read at each scrape ([`Metrics::refresh`]): uptime, the writer's queue,
//!   the search indexer's and the deriver's backlogs, the routing queue,
//!   connected agents by status, the backup's age. Each is a bounded read:
//!   in-memory lengths, one indexed SQLite count (the queue) and one read of
//!   the agents table (one row per agent);
//! - the process (`process_*`, Linux only, [`process`]): the names every
//!   Prometheus client library uses, so stock dashboards work.
//!
//! deploy/grafana/kefu.json and deploy/prometheus/kefu-alerts.yml use only
//! names exported here; tests/tests/it/metrics_lint.rs fails if they name
//! a series or label a live server does not export.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use std::sync::atomic::AtomicU64;

use crate::store::messages::LogMetrics;

#[cfg(target_os = "linux")]
pub mod process;
mod scrape;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    /// `debug` or `release`.
    profile: &'static str,
    /// Whether CPU profiles can be taken (the `pprof` feature).
    pprof: &'static str,
}

/// Read at each scrape (see the module doc).
#[derive(Default)]
struct Scraped {
    uptime: Gauge<f64, AtomicU64>,
    writer_queue: Gauge,
    search_backlog: Gauge,
    derived_backlog: Gauge,
    routing_queue: Gauge,
    routing_oldest: Gauge<f64, AtomicU64>,
    agents: Family<StatusLabel, Gauge>,
    backup_age: Gauge<f64, AtomicU64>,
    backup_interval: Gauge,
}

/// The agent statuses, each always exported (at 0 when nobody has it).
const AGENT_STATUSES: [&str; 3] = ["online", "away", "offline"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// A standard method or `other` (never the client's raw token).
    pub method: &'static str,
    pub route: String,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    connections: Family<RoleLabel, Gauge>,
    slow_dropped: Counter,
    messages_stored: Counter,
    messages_duplicate: Counter,
    batch_size: Histogram,
    batch_seconds: Histogram,
    log_queue_wait: Histogram,
    log_write: Histogram,
    log_answer: Histogram,
    http: Family<HttpLabels, Histogram>,
    log_write_errors: Counter,
    log_writable: Gauge,
    backup: BackupMetrics,
    scraped: Scraped,
    started: std::time::Instant,
}

/// The last backup the server made (scheduled or asked for), see `ops`.
#[derive(Default)]
struct BackupMetrics {
    last_success: Gauge,
    duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    size: Gauge,
    failures: Counter,
}

fn http_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Metrics {
        // The root holds the process's standard series; Kefu's own are
        // under the `kefu_` prefix.
        let mut root = Registry::default();
        #[cfg(target_os = "linux")]
        root.register_collector(Box::new(process::Process));
        let registry = root.sub_registry_with_prefix("kefu");
        let connections = Family::<RoleLabel, Gauge>::default();
        // Both series exist from the start, at 0.
        let _ = connections.get_or_create(&role(true));
        let _ = connections.get_or_create(&role(false));
        registry.register(
            "ws_connections",
            "Open WebSocket connections after hello",
            connections.clone(),
        );
        let slow_dropped = Counter::default();
        registry.register(
            "ws_slow_clients_dropped",
            "Connections closed because their queue was full",
            slow_dropped.clone(),
        );
        let messages_stored = Counter::default();
        registry.register(
            "messages_stored",
            "Messages written to the log",
            messages_stored.clone(),
        );
        let messages_duplicate = Counter::default();
        registry.register(
            "messages_duplicate",
            "Sends answered with an already stored message",
            messages_duplicate.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "write_batch_size",
            "Sends per log write batch (group commit)",
            batch_size.clone(),
        );
        let batch_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "write_batch_seconds",
            "Time to plan and write one batch",
            batch_seconds.clone(),
        );
        // Fine buckets (×1.25 from 0.1 ms to 5.6 s): these three say where
        // a send's time in the log goes, at the resolution of its p99.
        let log_histogram = || Histogram::new(exponential_buckets(0.000_1, 1.25, 50));
        let log_queue_wait = log_histogram();
        registry.register(
            "log_queue_wait_seconds",
            "Per send written: from its enqueue to the start of its write batch",
            log_queue_wait.clone(),
        );
        let log_write = log_histogram();
        registry.register(
            "log_write_seconds",
            "Per send written: its batch's RocksDB write (WAL append, its sync in fsync durability, memtable)",
            log_write.clone(),
        );
        let log_answer = log_histogram();
        registry.register(
            "log_answer_seconds",
            "Per send: from its enqueue to the log's answer (queue, planning, write, publishing)",
            log_answer.clone(),
        );
        let log_write_errors = Counter::default();
        registry.register(
            "log_write_errors",
            "Log write batches refused because the log could not write (e.g. a full disk)",
            log_write_errors.clone(),
        );
        let log_writable = Gauge::default();
        log_writable.set(1);
        registry.register(
            "log_writable",
            "1 while the message log can write, 0 while sends are refused (503)",
            log_writable.clone(),
        );
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(
            http_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http.clone(),
        );
        let backup = BackupMetrics::default();
        registry.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of the newest successful backup (0: none yet)",
            backup.last_success.clone(),
        );
        registry.register(
            "backup_last_duration_seconds",
            "How long the newest successful backup took",
            backup.duration.clone(),
        );
        registry.register(
            "backup_last_size_bytes",
            "Bytes in the newest successful backup",
            backup.size.clone(),
        );
        registry.register(
            "backup_failures",
            "Backups that failed",
            backup.failures.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                profile: if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
                pprof: if cfg!(all(feature = "pprof", target_os = "linux")) {
                    "on"
                } else {
                    "off"
                },
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the labels describe the build",
            build,
        );
        let start_time = Gauge::<i64>::default();
        start_time.set(crate::time::now_ms() / 1000);
        registry.register(
            "start_time_seconds",
            "Unix time the server started",
            start_time,
        );
        let scraped = Scraped::default();
        for status in AGENT_STATUSES {
            let _ = scraped.agents.get_or_create(&StatusLabel { status });
        }
        registry.register(
            "uptime_seconds",
            "Seconds since the server started",
            scraped.uptime.clone(),
        );
        registry.register(
            "writer_queue_depth",
            "Sends waiting for the message log's writer (limits.writer_queue at most)",
            scraped.writer_queue.clone(),
        );
        registry.register(
            "search_index_backlog_conversations",
            "Conversations with messages the search index has not caught up with",
            scraped.search_backlog.clone(),
        );
        registry.register(
            "derived_backlog_conversations",
            "Conversations whose derived columns (list order) wait to be written",
            scraped.derived_backlog.clone(),
        );
        registry.register(
            "routing_queue_length",
            "Conversations queued for an agent",
            scraped.routing_queue.clone(),
        );
        registry.register(
            "routing_queue_oldest_seconds",
            "How long the oldest queued conversation has waited (0: none queued)",
            scraped.routing_oldest.clone(),
        );
        registry.register(
            "agents_connected",
            "Agents with at least one WebSocket connection, by their status",
            scraped.agents.clone(),
        );
        registry.register(
            "backup_age_seconds",
            "Seconds since the newest successful backup, or since start when none is known",
            scraped.backup_age.clone(),
        );
        registry.register(
            "backup_interval_seconds",
            "backup.interval_minutes in seconds when scheduled backups are on, else 0",
            scraped.backup_interval.clone(),
        );
        Metrics {
            registry: root,
            scraped,
            started: std::time::Instant::now(),
            connections,
            slow_dropped,
            messages_stored,
            messages_duplicate,
            batch_size,
            batch_seconds,
            http,
            log_queue_wait,
            log_write,
            log_answer,
            log_write_errors,
            log_writable,
            backup,
        }
    }

    /// A backup finished at `unix_seconds` (or an older one was found at start).
    pub fn backup_succeeded(&self, unix_seconds: i64, seconds: f64, bytes: u64) {
        self.backup.last_success.set(unix_seconds);
        self.backup.duration.set(seconds);
        self.backup
            .size
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn backup_failed(&self) {
        self.backup.failures.inc();
    }

    pub fn connection_opened(&self, agent: bool) {
        self.connections.get_or_create(&role(agent)).inc();
    }

    pub fn connection_closed(&self, agent: bool) {
        self.connections.get_or_create(&role(agent)).dec();
    }

    pub fn slow_client_dropped(&self) {
        self.slow_dropped.inc();
    }

    pub fn http_request(&self, labels: HttpLabels, seconds: f64) {
        self.http.get_or_create(&labels).observe(seconds);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn role(agent: bool) -> RoleLabel {
    RoleLabel {
        role: if agent { "agent" } else { "visitor" },
    }
}

impl LogMetrics for Metrics {
    fn batch_written(&self, size: usize, duplicates: usize, seconds: f64) {
        self.messages_stored.inc_by((size - duplicates) as u64);
        self.messages_duplicate.inc_by(duplicates as u64);
        self.batch_size.observe(size as f64);
        self.batch_seconds.observe(seconds);
    }

    fn send_timed(&self, queued: f64, write: Option<f64>, answered: f64) {
        if let Some(write) = write {
            self.log_queue_wait.observe(queued);
            self.log_write.observe(write);
        }
        self.log_answer.observe(answered);
    }

    fn write_failed(&self) {
        self.log_write_errors.inc();
    }

    fn writable(&self, writable: bool) {
        self.log_writable.set(i64::from(writable));
    }
}
