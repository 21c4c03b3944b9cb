//! Prometheus metrics, served as text at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::messages::LogMetrics;

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
    http: Family<HttpLabels, Histogram>,
    log_write_errors: Counter,
    log_writable: Gauge,
    backup: BackupMetrics,
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
        let mut registry = Registry::with_prefix("kefu");
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
        Metrics {
            registry,
            connections,
            slow_dropped,
            messages_stored,
            messages_duplicate,
            batch_size,
            batch_seconds,
            http,
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

    fn write_failed(&self) {
        self.log_write_errors.inc();
    }

    fn writable(&self, writable: bool) {
        self.log_writable.set(i64::from(writable));
    }
}
