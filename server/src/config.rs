//! Effective configuration: embedded defaults, then a TOML file, then `KEFU_*`
//! environment variables, then command-line flags (each overrides the one before).
//!
//! Figment does the layering; we only describe the shape and the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// How far a message must have travelled before the server acks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Written to RocksDB's WAL in the OS page cache: survives a crash of the
    /// process, not a power loss.
    Os,
    /// The write batch is fsynced before the ack: survives power loss.
    Fsync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP/WebSocket server listens on.
    pub bind: SocketAddr,
    /// Where SQLite, the RocksDB message log and attachments live.
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub log_format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `kefu_server=debug,info`.
    pub log_level: String,
    pub limits: Limits,
    pub ws: WsConfig,
    pub presence: PresenceConfig,
    pub http: HttpConfig,
    pub backup: BackupConfig,
    /// LAN hosting (docs/LAN.md); off by default.
    pub lan: crate::lan::LanConfig,
    /// Cache and buffer sizes of the stores: `server` or `desktop`
    /// (crate::store::memory).
    pub memory: crate::store::memory::MemoryProfile,
}

/// Scheduled backups (docs/OPERATIONS.md): off unless `dir` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where the server writes `kefu-backup-<UTC time>` directories. Must
    /// not be inside the data dir. Unset: no scheduled backups.
    pub dir: Option<PathBuf>,
    /// Minutes between two scheduled backups (counted from the newest one
    /// in `dir`, so a restart does not reset the clock).
    pub interval_minutes: u64,
    /// Backups kept in `dir`; older ones are deleted after each success.
    pub keep: usize,
}

impl BackupConfig {
    pub fn validate(&self, data_dir: &std::path::Path) -> Result<(), String> {
        if self.interval_minutes == 0 || self.keep == 0 {
            return Err(
                "invalid configuration: backup.interval_minutes and backup.keep must be > 0".into(),
            );
        }
        if let Some(dir) = &self.dir
            && (dir.starts_with(data_dir) || !dir.is_absolute())
        {
            return Err(format!(
                "invalid configuration: backup.dir {} must be an absolute path outside the data dir",
                dir.display()
            ));
        }
        Ok(())
    }
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: None,
            interval_minutes: 24 * 60,
            keep: 7,
        }
    }
}

/// The network edge: which `Host` names this server answers to, which peers
/// may tell it the client's address, and how long a connection may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Host names (or IP literals) requests may name in `Host`, besides the
    /// ones always allowed: `localhost`, loopback addresses, the bind
    /// address and the address the client connected to. `*.shop.example`
    /// allows every subdomain; `*` alone allows any Host (no protection
    /// against DNS rebinding). Others are answered 421.
    pub allowed_hosts: Vec<String>,
    /// CIDRs (or single addresses) of reverse proxies whose
    /// `X-Forwarded-For` is believed: the client is the right-most address
    /// in it that is not one of these. From other peers the header is
    /// ignored.
    pub trusted_proxies: Vec<String>,
    /// Seconds a client has to send a request's headers (also how long an
    /// idle keep-alive connection stays open). Over it: closed.
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may go without a byte arriving. Over it: the
    /// request fails (400) and the connection is closed.
    pub body_idle_timeout_secs: u64,
    /// Concurrent HTTP connections, not counting those upgraded to a
    /// WebSocket (`limits.max_connections` caps those). Over it: 503 and
    /// closed.
    pub max_connections: usize,
    /// Seconds a graceful shutdown waits for requests in flight and for
    /// WebSockets to close; then the rest are dropped.
    pub shutdown_timeout_secs: u64,
    /// The public listener (`http::public`): serves only what visitors
    /// need (widget, visitor REST and WebSocket, attachments, health), for
    /// a tunnel, port forward or reverse proxy in front of it. Unset: none.
    pub public_bind: Option<SocketAddr>,
    /// PEM certificate chain and key for TLS on the public listener (both
    /// or neither); without them it speaks plain HTTP.
    pub public_tls_cert: Option<PathBuf>,
    pub public_tls_key: Option<PathBuf>,
    /// The address visitors reach Kefu at (`https://chat.shop.example`):
    /// the admin's embed snippet uses it, and its host is served by the
    /// Host check.
    pub public_url: Option<String>,
    /// A listener of its own for `/metrics` (and, in a build with the
    /// `pprof` feature, CPU profiles): `PORT` alone means `127.0.0.1:PORT`,
    /// or give `ADDR:PORT`. When set, the main listener no longer serves
    /// `/metrics` (404). Unset: `/metrics` is on the main listener.
    pub metrics_bind: Option<MetricsBind>,
}

/// `http.metrics_bind`: an address, or a bare port on loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsBind(pub SocketAddr);

impl Serialize for MetricsBind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MetricsBind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A port in the environment (`KEFU_HTTP__METRICS_BIND=9464`) or the
        // file arrives as a number, an address as a string.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Port(u16),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Port(port) => Ok(MetricsBind(SocketAddr::from(([127, 0, 0, 1], port)))),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl std::str::FromStr for MetricsBind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(port) = text.parse::<u16>() {
            return Ok(MetricsBind(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        text.parse::<SocketAddr>()
            .map(MetricsBind)
            .map_err(|_| format!("{text:?} is neither a port nor an ADDR:PORT (metrics_bind)"))
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            header_read_timeout_secs: 10,
            body_idle_timeout_secs: 30,
            max_connections: 10_000,
            shutdown_timeout_secs: 10,
            public_bind: None,
            public_tls_cert: None,
            public_tls_key: None,
            public_url: None,
            metrics_bind: None,
        }
    }
}

impl HttpConfig {
    /// The parsed `trusted_proxies`: `a.b.c.d/n`, `v6::/n` or an address.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!(
                            "invalid configuration: http.trusted_proxies entry {entry:?} is not an address or CIDR"
                        )
                    })
            })
            .collect()
    }

    /// The normalized `allowed_hosts` (lower case, no trailing dot).
    pub fn allowed_host_names(&self) -> Result<Vec<String>, String> {
        self.allowed_hosts
            .iter()
            .map(|entry| {
                let name = entry
                    .trim()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                let bare = name
                    .strip_prefix('[')
                    .and_then(|n| n.strip_suffix(']'))
                    .unwrap_or(&name);
                let wildcard = bare.strip_prefix("*.").unwrap_or(bare);
                let ok = bare == "*"
                    || bare.parse::<std::net::IpAddr>().is_ok()
                    || (!wildcard.is_empty()
                        && wildcard
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
                if ok {
                    Ok(bare.to_owned())
                } else {
                    Err(format!(
                        "invalid configuration: http.allowed_hosts entry {entry:?} must be a host name, `*.` and a domain, an IP address or `*` (no scheme, no port)"
                    ))
                }
            })
            .collect()
    }

    /// `public_url` parsed: scheme `http` or `https`, a host, an optional
    /// port, nothing else (no path, query or user).
    pub fn public_url_parts(&self) -> Result<Option<(String, String)>, String> {
        let Some(url) = &self.public_url else {
            return Ok(None);
        };
        let bad = || {
            format!(
                "invalid configuration: http.public_url {url:?} must be http(s)://HOST[:PORT] without a path"
            )
        };
        let uri: axum::http::Uri = url.trim_end_matches('/').parse().map_err(|_| bad())?;
        let scheme = uri.scheme_str().ok_or_else(bad)?;
        let authority = uri.authority().ok_or_else(bad)?;
        let path_ok = matches!(uri.path(), "" | "/");
        if !matches!(scheme, "http" | "https")
            || !path_ok
            || uri.query().is_some()
            || authority.as_str().contains('@')
            || authority.host().is_empty()
        {
            return Err(bad());
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        Ok(Some((format!("{scheme}://{authority}"), host)))
    }

    pub fn validate(&self) -> Result<(), String> {
        self.trusted_proxy_nets()?;
        self.allowed_host_names()?;
        self.public_url_parts()?;
        if self.public_tls_cert.is_some() != self.public_tls_key.is_some() {
            return Err(
                "invalid configuration: http.public_tls_cert and http.public_tls_key go together"
                    .to_owned(),
            );
        }
        let checks = [
            (
                "http.header_read_timeout_secs must be > 0",
                self.header_read_timeout_secs > 0,
            ),
            (
                "http.body_idle_timeout_secs must be > 0",
                self.body_idle_timeout_secs > 0,
            ),
            ("http.max_connections must be > 0", self.max_connections > 0),
        ];
        for (message, ok) in checks {
            if !ok {
                return Err(format!("invalid configuration: {message}"));
            }
        }
        Ok(())
    }
}

/// Agent presence: how long an `online` agent may be without any
/// WebSocket connection before routing treats them as `away`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Seconds after an online agent's last connection closed (or, at
    /// start, since the server started) before they become `away`, unless
    /// a connection comes back first.
    pub away_grace_secs: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            away_grace_secs: 60,
        }
    }
}

/// The highest `limits.meta_depth` the configuration accepts. A stored
/// message is read back by serde_json, whose recursion limit is 128 levels,
/// inside up to three levels of wrapping (a page: object, array, message;
/// a frame: object, message); 100 leaves room for all of them.
pub const META_DEPTH_MAX: usize = 100;

/// Every bound the server enforces. Over a size limit: 413; see docs/API.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Message `content`, in UTF-8 bytes.
    pub content_bytes: usize,
    /// Message `meta`, serialized JSON bytes.
    pub meta_bytes: usize,
    /// Visitor `attributes`, serialized JSON bytes.
    pub attributes_bytes: usize,
    /// One WebSocket message (frame) from a client.
    pub ws_frame_bytes: usize,
    /// One HTTP JSON request body.
    pub http_body_bytes: usize,
    /// Frames queued for one WebSocket client before it is dropped as too
    /// slow. Frames are shared between recipients (a queued frame costs a
    /// pointer, not a copy), so this can be generous: it must absorb a whole
    /// write batch fanned out to one agent without dropping a client that
    /// keeps up.
    pub ws_outbound_queue: usize,
    /// Sends one WebSocket connection may have waiting for their ack; past it
    /// the server stops reading that connection until acks go out.
    pub ws_sends_in_flight: usize,
    /// Concurrent WebSocket connections for the whole server.
    pub max_connections: usize,
    /// Tokens (and, as many, visitors) kept in memory so that a WebSocket
    /// `hello` needs no SQLite read; past it the least useful are evicted
    /// and read again when next used.
    pub auth_cache_entries: usize,
    /// Conversations one `hello` may ask to resume.
    pub resume_conversations: usize,
    /// Page size cap for lists and message pages.
    pub page_max: u32,
    /// Sends queued for the log writer before callers wait.
    pub writer_queue: usize,
    /// Sends the writer puts into one RocksDB write batch at most.
    pub writer_batch_max: usize,
    /// Password attempts per client IP per minute: every well-formed login
    /// and every `current_password` check counts, right or wrong (0 =
    /// unlimited).
    pub login_per_minute: u32,
    /// Password attempts per account (username) per hour, from anywhere:
    /// logins and `current_password` checks, right or wrong (0 = unlimited).
    pub password_attempts_per_account_per_hour: u32,
    /// Visitor sessions created per client IP per minute (0 = unlimited).
    /// Loopback clients are exempt (a local reverse proxy or load tool).
    pub visitor_sessions_per_minute: u32,
    /// One uploaded attachment, in bytes (the file part of the upload).
    pub attachment_bytes: usize,
    /// Attachments one visitor may upload per hour (0 = unlimited).
    pub visitor_uploads_per_hour: u32,
    // issue 23: sessions and WebSocket
    /// Messages one visitor may send per second, sustained, over REST and
    /// WebSocket together (0 = unlimited). Agents are not limited.
    pub visitor_messages_per_second: u32,
    /// Messages one visitor may send in a burst before the per-second rate
    /// applies (at least 1 when the rate is on).
    pub visitor_message_burst: u32,
    /// Nesting depth of a message `meta` (the object itself is level 1).
    /// Kept well below serde_json's recursion limit (128) so that a stored
    /// message can always be read back inside the frames that carry it.
    pub meta_depth: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// Seconds a new connection has to send its `hello`.
    pub hello_timeout_secs: u64,
    /// Seconds without any frame from the client before the server closes it.
    pub idle_timeout_secs: u64,
    /// Seconds between the server's WebSocket pings.
    pub ping_interval_secs: u64,
    /// tungstenite read buffer per connection, bytes.
    pub read_buffer_bytes: usize,
    // issue 23: sessions and WebSocket
    /// Seconds one write to a client may take (a batch of frames, an ack,
    /// a ping). A client that reads nothing for this long while frames wait
    /// is dropped: its socket is closed without a close frame.
    pub write_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 5338)),
            data_dir: default_data_dir(),
            durability: Durability::Fsync,
            log_format: LogFormat::Human,
            log_level: "info".to_owned(),
            limits: Limits::default(),
            ws: WsConfig::default(),
            presence: PresenceConfig::default(),
            http: HttpConfig::default(),
            backup: BackupConfig::default(),
            lan: crate::lan::LanConfig::default(),
            memory: crate::store::memory::MemoryProfile::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            content_bytes: 16 * 1024,
            meta_bytes: 4 * 1024,
            attributes_bytes: 4 * 1024,
            ws_frame_bytes: 64 * 1024,
            http_body_bytes: 64 * 1024,
            ws_outbound_queue: 4_096,
            ws_sends_in_flight: 64,
            max_connections: 60_000,
            auth_cache_entries: 100_000,
            resume_conversations: 1_000,
            page_max: 200,
            writer_queue: 8_192,
            writer_batch_max: 512,
            login_per_minute: 20,
            password_attempts_per_account_per_hour: 20,
            visitor_sessions_per_minute: 60,
            attachment_bytes: 10 * 1024 * 1024,
            visitor_uploads_per_hour: 60,
            visitor_messages_per_second: 5,
            visitor_message_burst: 20,
            meta_depth: 32,
        }
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            hello_timeout_secs: 5,
            idle_timeout_secs: 90,
            ping_interval_secs: 30,
            read_buffer_bytes: 256,
            write_timeout_secs: 10,
        }
    }
}

/// The OS's conventional data directory for Kefu, e.g.
/// `~/.local/share/kefu` on Linux.
pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "kefu")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("kefu-data"))
}

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durability: Option<Durability>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// `--lan-bind`: `lan.bind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lan: Option<LanOverrides>,
    /// `--public-bind`: `http.public_bind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOverrides>,
}

/// The `[http]` values the command line may set.
#[derive(Debug, Default, Clone, Serialize)]
pub struct HttpOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_bind: Option<SocketAddr>,
    /// `--metrics-bind`: `http.metrics_bind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_bind: Option<MetricsBind>,
}

/// The `[lan]` values the command line may set.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LanOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    /// `--peer-of`: `lan.peer_of`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_of: Option<crate::lan::HostAddress>,
    /// `--min-standby-acks`: `lan.min_standby_acks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_standby_acks: Option<u32>,
}

impl Config {
    /// Layers defaults < `file` < `KEFU_*` env < `overrides`.
    /// Nested keys in the environment use `__`: `KEFU_LIMITS__CONTENT_BYTES=8192`.
    pub fn load(file: Option<&std::path::Path>, overrides: &Overrides) -> Result<Config, String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(format!("config file {} does not exist", file.display()));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment
            .merge(
                Env::prefixed("KEFU_")
                    .ignore(&["CONFIG"])
                    // `KEFU_TEST_*` belong to the tests (`fault`'s crash
                    // points, seeded schedules): never configuration.
                    .filter(|key| {
                        !key.as_str()
                            .get(..5)
                            .is_some_and(|head| head.eq_ignore_ascii_case("test_"))
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides));
        let config: Config = figment
            .extract()
            .map_err(|e| format!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        let checks: [(&str, bool); 12] = [
            ("limits.content_bytes must be > 0", l.content_bytes > 0),
            ("limits.meta_bytes must be >= 2", l.meta_bytes >= 2),
            (
                "limits.ws_frame_bytes must be >= 1024",
                l.ws_frame_bytes >= 1024,
            ),
            (
                "limits.ws_outbound_queue must be > 0",
                l.ws_outbound_queue > 0,
            ),
            (
                "limits.ws_sends_in_flight must be > 0",
                l.ws_sends_in_flight > 0,
            ),
            ("limits.writer_queue must be > 0", l.writer_queue > 0),
            (
                "limits.writer_batch_max must be > 0",
                l.writer_batch_max > 0,
            ),
            ("limits.page_max must be > 0", l.page_max > 0),
            (
                "limits.attachment_bytes must be > 0",
                l.attachment_bytes > 0,
            ),
            (
                "limits.visitor_message_burst must be > 0 when visitor_messages_per_second is",
                l.visitor_messages_per_second == 0 || l.visitor_message_burst > 0,
            ),
            (
                "limits.meta_depth must be 1-100",
                (1..=META_DEPTH_MAX).contains(&l.meta_depth),
            ),
            (
                "ws.write_timeout_secs must be > 0",
                self.ws.write_timeout_secs > 0,
            ),
        ];
        for (message, ok) in checks {
            if !ok {
                return Err(format!("invalid configuration: {message}"));
            }
        }
        self.backup.validate(&self.data_dir)?;
        self.http.validate()?;
        self.lan
            .validate()
            .map_err(|e| format!("invalid configuration: {e}"))?;
        if self.lan.bind.is_some_and(|lan| lan == self.bind) {
            return Err(
                "invalid configuration: lan.bind must differ from bind (plain HTTP stays on loopback)"
                    .to_owned(),
            );
        }
        if let Some(public) = self.http.public_bind
            && public.port() != 0
            && (public == self.bind || Some(public) == self.lan.bind)
        {
            return Err(
                "invalid configuration: http.public_bind must differ from bind and lan.bind"
                    .to_owned(),
            );
        }
        if let Some(MetricsBind(metrics)) = self.http.metrics_bind
            && metrics.port() != 0
            && (metrics == self.bind
                || Some(metrics) == self.lan.bind
                || Some(metrics) == self.http.public_bind)
        {
            return Err(
                "invalid configuration: http.metrics_bind must differ from the other listeners"
                    .to_owned(),
            );
        }
        if self.http.public_bind.is_some() && self.lan.peer_of.is_some() {
            return Err(
                "invalid configuration: http.public_bind and lan.peer_of exclude each other: \
                 a peer keeps no shop data, so visitors must reach the host's public listener"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// A config for tests and embedding: everything default but the data dir,
    /// an ephemeral port on loopback and `os` durability.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            durability: Durability::Os,
            ..Config::default()
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kefu.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:7000\"\ndurability = \"os\"\n[limits]\ncontent_bytes = 100\n",
        )
        .expect("write");
        let config = Config::load(Some(&file), &Overrides::default()).expect("load");
        assert_eq!(config.bind.port(), 7000);
        assert_eq!(config.durability, Durability::Os);
        assert_eq!(config.limits.content_bytes, 100);
        assert_eq!(config.limits.meta_bytes, 4096);

        let flags = Overrides {
            bind: Some("127.0.0.1:7001".parse().expect("addr")),
            ..Overrides::default()
        };
        let config = Config::load(Some(&file), &flags).expect("load");
        assert_eq!(config.bind.port(), 7001);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kefu.toml");
        std::fs::write(&file, "bnid = \"127.0.0.1:7000\"\n").expect("write");
        assert!(Config::load(Some(&file), &Overrides::default()).is_err());
        std::fs::write(&file, "durability = \"sometimes\"\n").expect("write");
        assert!(Config::load(Some(&file), &Overrides::default()).is_err());
        std::fs::write(&file, "[limits]\nws_outbound_queue = 0\n").expect("write");
        assert!(Config::load(Some(&file), &Overrides::default()).is_err());
        assert!(
            Config::load(
                Some(&dir.path().join("missing.toml")),
                &Overrides::default()
            )
            .is_err()
        );
    }

    #[test]
    fn http_section_from_file_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kefu.toml");
        std::fs::write(
            &file,
            "[http]\nallowed_hosts = [\"chat.shop.example\", \"*.kefu.example\"]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\nshutdown_timeout_secs = 3\n",
        )
        .expect("write");
        let config = Config::load(Some(&file), &Overrides::default()).expect("load");
        assert_eq!(config.http.allowed_hosts.len(), 2);
        assert_eq!(config.http.trusted_proxy_nets().expect("nets").len(), 2);
        assert_eq!(config.http.shutdown_timeout_secs, 3);
        assert_eq!(config.http.header_read_timeout_secs, 10);
        let text = config.to_toml();
        assert_eq!(toml::from_str::<Config>(&text).expect("parse"), config);

        for bad in [
            "[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "[http]\ntrusted_proxies = [\"proxy.local\"]\n",
            "[http]\nallowed_hosts = [\"https://shop.example\"]\n",
            "[http]\nallowed_hosts = [\"shop.example:443\"]\n",
            "[http]\nallowed_hosts = [\"\"]\n",
            "[http]\nheader_read_timeout_secs = 0\n",
            "[http]\nmax_connections = 0\n",
        ] {
            std::fs::write(&file, bad).expect("write");
            assert!(
                Config::load(Some(&file), &Overrides::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn session_and_websocket_limits_have_defaults_and_bounds() {
        let config = Config::default();
        assert_eq!(config.limits.visitor_messages_per_second, 5);
        assert_eq!(config.limits.visitor_message_burst, 20);
        assert_eq!(config.limits.meta_depth, 32);
        assert_eq!(config.ws.write_timeout_secs, 10);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kefu.toml");
        for bad in [
            "[limits]\nmeta_depth = 0\n",
            "[limits]\nmeta_depth = 101\n",
            "[limits]\nvisitor_message_burst = 0\n",
            "[ws]\nwrite_timeout_secs = 0\n",
        ] {
            std::fs::write(&file, bad).expect("write");
            assert!(
                Config::load(Some(&file), &Overrides::default()).is_err(),
                "{bad}"
            );
        }
        // 0 turns the message rate off, and then the burst does not matter.
        std::fs::write(
            &file,
            "[limits]\nvisitor_messages_per_second = 0\nvisitor_message_burst = 0\n",
        )
        .expect("write");
        let config = Config::load(Some(&file), &Overrides::default()).expect("load");
        assert_eq!(config.limits.visitor_messages_per_second, 0);
    }

    #[test]
    fn lan_bind_from_file_and_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kefu.toml");
        std::fs::write(&file, "[lan]\nbind = \"127.0.0.2:5339\"\n").expect("write");
        let config = Config::load(Some(&file), &Overrides::default()).expect("load");
        assert_eq!(
            config.lan.bind,
            Some("127.0.0.2:5339".parse().expect("addr"))
        );
        let flags = Overrides {
            lan: Some(LanOverrides {
                bind: Some("127.0.0.2:6000".parse().expect("addr")),
                ..LanOverrides::default()
            }),
            ..Overrides::default()
        };
        let config = Config::load(Some(&file), &flags).expect("load");
        assert_eq!(
            config.lan.bind,
            Some("127.0.0.2:6000".parse().expect("addr"))
        );
        assert!(!config.lan.mdns.enabled);
        let same = Overrides {
            bind: Some("127.0.0.2:6000".parse().expect("addr")),
            ..flags
        };
        assert!(Config::load(Some(&file), &same).is_err());
        std::fs::write(&file, "[lan]\nbnd = \"127.0.0.2:5339\"\n").expect("write");
        assert!(Config::load(Some(&file), &Overrides::default()).is_err());
    }

    #[test]
    fn public_listener_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kefu.toml");
        std::fs::write(
            &file,
            "[http]\npublic_bind = \"127.0.0.1:8443\"\npublic_url = \"https://Chat.Shop.Example/\"\n",
        )
        .expect("write");
        let config = Config::load(Some(&file), &Overrides::default()).expect("load");
        assert_eq!(
            config.http.public_url_parts().expect("url"),
            Some((
                "https://Chat.Shop.Example".to_owned(),
                "chat.shop.example".to_owned()
            ))
        );
        let flags = Overrides {
            http: Some(HttpOverrides {
                public_bind: Some("127.0.0.1:9443".parse().expect("addr")),
                ..HttpOverrides::default()
            }),
            ..Overrides::default()
        };
        let config = Config::load(Some(&file), &flags).expect("load");
        assert_eq!(config.http.public_bind.map(|a| a.port()), Some(9443));
        assert_eq!(
            toml::from_str::<Config>(&config.to_toml()).expect("parse"),
            config
        );
        for bad in [
            "[http]\npublic_url = \"chat.shop.example\"\n",
            "[http]\npublic_url = \"ftp://chat.shop.example\"\n",
            "[http]\npublic_url = \"https://chat.shop.example/kefu\"\n",
            "[http]\npublic_url = \"https://chat.shop.example/?a=1\"\n",
            "[http]\npublic_url = \"https://user@chat.shop.example\"\n",
            "[http]\npublic_tls_cert = \"/etc/kefu/cert.pem\"\n",
            "bind = \"127.0.0.1:7000\"\n[http]\npublic_bind = \"127.0.0.1:7000\"\n",
            "[http]\npublic_bind = \"127.0.0.1:7001\"\n[lan]\npeer_of = \"192.168.1.20:5339\"\n",
        ] {
            std::fs::write(&file, bad).expect("write");
            assert!(
                Config::load(Some(&file), &Overrides::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn print_config_round_trips() {
        let config = Config::default();
        let text = config.to_toml();
        let back: Config = toml::from_str(&text).expect("parse");
        assert_eq!(back, config);
    }

    #[test]
    fn metrics_bind_is_loopback_when_only_a_port_is_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kefu.toml");
        let load = |text: &str| {
            std::fs::write(&file, text).expect("write");
            Config::load(Some(&file), &Overrides::default())
        };
        let port_only = load("[http]\nmetrics_bind = 9464\n").expect("port");
        assert_eq!(
            port_only.http.metrics_bind,
            Some(MetricsBind(SocketAddr::from(([127, 0, 0, 1], 9464))))
        );
        let port_text = load("[http]\nmetrics_bind = \"9465\"\n").expect("port text");
        assert_eq!(
            port_text.http.metrics_bind.map(|b| b.0.to_string()),
            Some("127.0.0.1:9465".to_owned())
        );
        let address = load("[http]\nmetrics_bind = \"0.0.0.0:9466\"\n").expect("address");
        assert_eq!(
            address.http.metrics_bind.map(|b| b.0.to_string()),
            Some("0.0.0.0:9466".to_owned())
        );
        // Round trip through --print-config's TOML.
        assert!(
            address
                .to_toml()
                .contains("metrics_bind = \"0.0.0.0:9466\"")
        );
        for bad in [
            "[http]\nmetrics_bind = \"metrics.local:9464\"\n",
            "[http]\nmetrics_bind = 70000\n",
            "bind = \"127.0.0.1:7000\"\n[http]\nmetrics_bind = 7000\n",
            "[http]\npublic_bind = \"127.0.0.1:7001\"\nmetrics_bind = \"127.0.0.1:7001\"\n",
        ] {
            let error = load(bad).expect_err(bad);
            assert!(error.contains("metrics_bind"), "{bad}: {error}");
        }
        assert_eq!(
            "9464".parse::<MetricsBind>().map(|b| b.0.to_string()),
            Ok("127.0.0.1:9464".to_owned())
        );
        assert!("nine".parse::<MetricsBind>().is_err());
    }
}
