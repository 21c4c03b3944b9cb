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

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;

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
    /// The synchronous standby (`lan::sync_standby`), read from the LAN
    /// host; counters copied at each scrape.
    sync_standby_required: Gauge,
    sync_standby_synchronous: Gauge,
    sync_standby_durable_seq: Gauge,
    sync_standby_fallbacks: Counter,
    sync_standby_async_acks: Counter,
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
    log_timing: LogTiming,
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
        let [log_queue_wait, log_write, log_answer] =
            LogTiming::new(exponential_buckets(0.000_1, 1.25, 50));
        let log_timing = log_queue_wait.clone();
        registry.register(
            "log_queue_wait_seconds",
            "Per send written: from its enqueue to the start of its write batch",
            log_queue_wait,
        );
        registry.register(
            "log_write_seconds",
            "Per send written: its batch's RocksDB write (WAL append, its sync in fsync durability, memtable)",
            log_write,
        );
        registry.register(
            "log_answer_seconds",
            "Per send: from its enqueue to the log's answer (queue, planning, write, publishing)",
            log_answer,
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
        registry.register(
            "lan_sync_standby_required",
            "lan.min_standby_acks of this LAN host (1: sends wait for a standby; 0 otherwise)",
            scraped.sync_standby_required.clone(),
        );
        registry.register(
            "lan_sync_standby_synchronous",
            "1 while sends wait for a standby; 0 when not required or fallen back to async",
            scraped.sync_standby_synchronous.clone(),
        );
        registry.register(
            "lan_sync_standby_durable_seq",
            "The highest log sequence a standby reported on its disk",
            scraped.sync_standby_durable_seq.clone(),
        );
        registry.register(
            "lan_sync_standby_fallbacks",
            "Times the host fell back to acknowledging sends without a standby (lan.sync_standby_timeout_ms)",
            scraped.sync_standby_fallbacks.clone(),
        );
        registry.register(
            "lan_sync_standby_async_acks",
            "Sends acknowledged without a standby having them while lan.min_standby_acks is 1",
            scraped.sync_standby_async_acks.clone(),
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
            log_timing,
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

/// The log writer's three timing histograms (`log_queue_wait_seconds`,
/// `log_write_seconds`, `log_answer_seconds`), kept together behind one
/// lock that the writer takes once per batch, after its answers
/// ([`LogMetrics::batch_timed`]). Three `prometheus_client` histograms
/// cost three write locks and three linear bucket scans (50 buckets) per
/// send on the writer thread, before each answer. The counts of the
/// three are updated and scraped under the same lock: a scrape never sees
/// a batch half counted.
#[derive(Clone, Debug)]
struct LogTiming {
    inner: Arc<Mutex<LogTimingInner>>,
    which: LogSeries,
}

#[derive(Clone, Copy, Debug)]
enum LogSeries {
    QueueWait,
    Write,
    Answer,
}

#[derive(Debug)]
struct LogTimingInner {
    /// Upper bounds, the last one `f64::MAX` (`+Inf`), as
    /// `prometheus_client`'s histogram has them.
    bounds: Vec<f64>,
    queue_wait: Buckets,
    write: Buckets,
    answer: Buckets,
}

/// One histogram's figures: observations per bucket (not cumulative),
/// their sum and count.
#[derive(Debug)]
struct Buckets {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Buckets {
    fn new(len: usize) -> Self {
        Buckets {
            counts: vec![0; len],
            sum: 0.0,
            count: 0,
        }
    }

    /// `times` observations of `value` (binary search of the bounds).
    fn observe(&mut self, bounds: &[f64], value: f64, times: u64) {
        let bucket = bounds
            .partition_point(|bound| *bound < value)
            .min(bounds.len() - 1);
        self.counts[bucket] += times;
        self.sum += value * times as f64;
        self.count += times;
    }
}

impl LogTiming {
    /// The three series, sharing one store.
    fn new(bounds: impl IntoIterator<Item = f64>) -> [LogTiming; 3] {
        let bounds: Vec<f64> = bounds
            .into_iter()
            .chain(std::iter::once(f64::MAX))
            .collect();
        let len = bounds.len();
        let inner = Arc::new(Mutex::new(LogTimingInner {
            bounds,
            queue_wait: Buckets::new(len),
            write: Buckets::new(len),
            answer: Buckets::new(len),
        }));
        [LogSeries::QueueWait, LogSeries::Write, LogSeries::Answer].map(|which| LogTiming {
            inner: Arc::clone(&inner),
            which,
        })
    }

    fn batch(&self, queued: &[f64], write: Option<f64>, answered: &[f64]) {
        let mut inner = self.inner.lock();
        let LogTimingInner {
            bounds,
            queue_wait,
            write: write_buckets,
            answer,
        } = &mut *inner;
        if let Some(write) = write {
            for &value in queued {
                queue_wait.observe(bounds, value, 1);
            }
            write_buckets.observe(bounds, write, queued.len() as u64);
        }
        for &value in answered {
            answer.observe(bounds, value, 1);
        }
    }
}

impl TypedMetric for LogTiming {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LogTiming {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = self.inner.lock();
        let buckets = match self.which {
            LogSeries::QueueWait => &inner.queue_wait,
            LogSeries::Write => &inner.write,
            LogSeries::Answer => &inner.answer,
        };
        let pairs: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .zip(buckets.counts.iter().copied())
            .collect();
        encoder.encode_histogram::<NoLabelSet>(buckets.sum, buckets.count, &pairs, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

impl LogMetrics for Metrics {
    fn batch_written(&self, size: usize, duplicates: usize, seconds: f64) {
        self.messages_stored.inc_by((size - duplicates) as u64);
        self.messages_duplicate.inc_by(duplicates as u64);
        self.batch_size.observe(size as f64);
        self.batch_seconds.observe(seconds);
    }

    fn batch_timed(&self, queued: &[f64], write: Option<f64>, answered: &[f64]) {
        self.log_timing.batch(queued, write, answered);
    }

    fn write_failed(&self) {
        self.log_write_errors.inc();
    }

    fn writable(&self, writable: bool) {
        self.log_writable.set(i64::from(writable));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log's timing series encode as the histograms they replaced:
    /// cumulative buckets, `+Inf`, sum and count, a batch's write counted
    /// once per send, nothing queued counted for a batch that wrote nothing.
    #[test]
    fn log_timing_counts_per_send_in_cumulative_buckets() {
        let mut registry = Registry::with_prefix("t");
        let [queue_wait, write, answer] = LogTiming::new([0.001, 0.01]);
        let timing = queue_wait.clone();
        registry.register("q", "q", queue_wait);
        registry.register("w", "w", write);
        registry.register("a", "a", answer);
        // A written batch of three sends, then one of resends only.
        timing.batch(&[0.0005, 0.005, 0.5], Some(0.002), &[0.001, 0.02, 0.6]);
        timing.batch(&[0.0001], None, &[0.0001]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "t_q_bucket{le=\"0.001\"} 1",
            "t_q_bucket{le=\"0.01\"} 2",
            "t_q_bucket{le=\"+Inf\"} 3",
            "t_q_count 3",
            "t_w_bucket{le=\"0.001\"} 0",
            "t_w_bucket{le=\"0.01\"} 3",
            "t_w_count 3",
            "t_a_bucket{le=\"0.001\"} 2",
            "t_a_bucket{le=\"0.01\"} 2",
            "t_a_bucket{le=\"+Inf\"} 4",
            "t_a_count 4",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }
}
