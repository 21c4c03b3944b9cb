//! `kefu-server doctor`: numbered checks of a data dir and its
//! configuration, each with a verdict (OK, WARN, FAIL, or SKIP when what it
//! needs failed before); non-zero exit when one fails.
//!
//! It never writes into the store and never fights a running server: the
//! message log is opened read-only (RocksDB's read-only mode takes no
//! lock), SQLite is only read. With a server running, SQLite is read
//! *before* the log, so the log (which only grows) is never seen behind
//! SQLite for a message that arrived between the two reads.
//!
//! The numbers are stable: docs/OPERATIONS.md explains each.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use sqlx::SqlitePool;

use super::backup::{Access, open_sqlite, schema_version};
use crate::config::Config;
use crate::ids::ConversationId;
use crate::store::db;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub number: u32,
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn add(
        &mut self,
        number: u32,
        name: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
    ) {
        self.checks.push(Check {
            number,
            name,
            verdict,
            detail: detail.into(),
        });
    }

    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Fail)
    }

    pub fn count(&self, verdict: Verdict) -> usize {
        self.checks.iter().filter(|c| c.verdict == verdict).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            writeln!(
                f,
                "{:>2}. {:<4}  {}: {}",
                check.number, check.verdict, check.name, check.detail
            )?;
        }
        writeln!(
            f,
            "verdict: {} failed, {} warnings, {} ok, {} skipped",
            self.count(Verdict::Fail),
            self.count(Verdict::Warn),
            self.count(Verdict::Ok),
            self.count(Verdict::Skip)
        )
    }
}

/// Free space under which the disk check fails / warns.
#[cfg(unix)]
const DISK_FAIL_BYTES: u64 = 256 << 20;
#[cfg(unix)]
const DISK_WARN_BYTES: u64 = 2 << 30;
/// Descriptors beyond the connection limits: the stores, listeners, files.
#[cfg(unix)]
const FD_MARGIN: u64 = 256;
/// Messages not yet searchable before check 9 warns.
const INDEX_LAG_WARN: u64 = 1_000;
/// How far data may be ahead of this clock before check 13 fails.
const CLOCK_SLACK_MS: i64 = 5 * 60_000;

pub async fn run(config: &Config) -> Report {
    let data_dir = config.data_dir.as_path();
    let mut report = Report::default();
    let dir_ok = check_data_dir(&mut report, data_dir);
    check_disk(&mut report, data_dir);
    check_open_files(&mut report, config);
    match super::runtime::server_running(data_dir) {
        Ok(true) => {
            let who = super::runtime::read(data_dir)
                .map(|info| format!("pid {}, listening on {}", info.pid, info.addr))
                .unwrap_or_else(|_| "no server.json".into());
            report.add(
                4,
                "server",
                Verdict::Ok,
                format!("running ({who}); the store checks read it live, read-only"),
            );
        }
        Ok(false) => report.add(4, "server", Verdict::Ok, "not running"),
        Err(error) => {
            report.add(
                4,
                "server",
                Verdict::Warn,
                format!("cannot tell whether a server runs ({error})"),
            );
        }
    }
    let pool = if dir_ok {
        open_store(&mut report, data_dir).await
    } else {
        report.add(5, "SQLite integrity", Verdict::Skip, "data dir not usable");
        None
    };
    match &pool {
        Some(pool) => {
            check_schema(&mut report, pool).await;
            check_log(&mut report, pool, data_dir).await;
            check_attachments(&mut report, pool, data_dir).await;
        }
        None => {
            for (number, name) in [
                (6, "schema version"),
                (7, "message log"),
                (8, "log heads vs SQLite"),
                (9, "search index lag"),
                (10, "attachments"),
            ] {
                report.add(number, name, Verdict::Skip, "SQLite not usable");
            }
        }
    }
    check_tzdata(&mut report, pool.as_ref()).await;
    check_proxies(&mut report, config);
    check_clock(&mut report, pool.as_ref()).await;
    check_backups(&mut report, config);
    if let Some(pool) = pool {
        pool.close().await;
    }
    report.checks.sort_by_key(|c| c.number);
    report
}

// 1
fn check_data_dir(report: &mut Report, dir: &Path) -> bool {
    const NAME: &str = "data dir";
    let meta = match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => meta,
        Ok(_) => {
            report.add(
                1,
                NAME,
                Verdict::Fail,
                format!("{} is not a directory", dir.display()),
            );
            return false;
        }
        Err(error) => {
            report.add(
                1,
                NAME,
                Verdict::Fail,
                format!("{}: {error}", dir.display()),
            );
            return false;
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = meta.permissions().mode() & 0o7777;
        // The uid this process creates files with.
        let me = tempfile::tempfile()
            .and_then(|f| f.metadata())
            .map(|m| m.uid())
            .ok();
        if mode & 0o700 != 0o700 {
            report.add(
                1,
                NAME,
                Verdict::Fail,
                format!(
                    "{} has mode {mode:04o}: its owner needs rwx (chmod 700)",
                    dir.display()
                ),
            );
            return false;
        }
        if me.is_some_and(|me| me != meta.uid() && me != 0) {
            report.add(
                1,
                NAME,
                Verdict::Fail,
                format!(
                    "{} is owned by uid {}, not by this user (uid {}): run as the server's user",
                    dir.display(),
                    meta.uid(),
                    me.unwrap_or_default()
                ),
            );
            return false;
        }
        if mode & 0o002 != 0 {
            report.add(
                1,
                NAME,
                Verdict::Fail,
                format!(
                    "{} is writable by everyone (mode {mode:04o}): chmod 700",
                    dir.display()
                ),
            );
            return true;
        }
        if let Err(error) = std::fs::read_dir(dir) {
            report.add(
                1,
                NAME,
                Verdict::Fail,
                format!("cannot list {}: {error}", dir.display()),
            );
            return false;
        }
        if mode & 0o077 != 0 {
            report.add(
                1,
                NAME,
                Verdict::Warn,
                format!(
                    "{} has mode {mode:04o}: other users can look into it (password hashes, tokens, \
                     messages); chmod 700",
                    dir.display()
                ),
            );
            return true;
        }
        report.add(
            1,
            NAME,
            Verdict::Ok,
            format!("{} (mode {mode:04o})", dir.display()),
        );
        true
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        report.add(1, NAME, Verdict::Ok, format!("{}", dir.display()));
        true
    }
}

// 2
fn check_disk(report: &mut Report, dir: &Path) {
    const NAME: &str = "disk space";
    #[cfg(unix)]
    {
        let stat = match rustix::fs::statvfs(dir) {
            Ok(stat) => stat,
            Err(error) => {
                report.add(2, NAME, Verdict::Skip, format!("statvfs: {error}"));
                return;
            }
        };
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let total = stat.f_blocks.saturating_mul(stat.f_frsize).max(1);
        let percent = free.saturating_mul(100) / total;
        let detail = format!("{} free of {} ({percent}%)", gib(free), gib(total));
        let verdict = if free < DISK_FAIL_BYTES || percent < 1 {
            Verdict::Fail
        } else if free < DISK_WARN_BYTES || percent < 10 {
            Verdict::Warn
        } else {
            Verdict::Ok
        };
        report.add(2, NAME, verdict, detail);
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        report.add(2, NAME, Verdict::Skip, "not measured on this OS");
    }
}

#[cfg(unix)]
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

// 3
fn check_open_files(report: &mut Report, config: &Config) {
    const NAME: &str = "open files limit";
    #[cfg(unix)]
    {
        let (soft, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok(limits) => limits,
            Err(error) => {
                report.add(3, NAME, Verdict::Skip, format!("getrlimit: {error}"));
                return;
            }
        };
        let ws = config.limits.max_connections as u64;
        let http = config.http.max_connections as u64;
        let needed = ws.saturating_add(http).saturating_add(FD_MARGIN);
        // The server raises its soft limit to the hard one at start.
        let detail = format!(
            "soft {soft}, hard {hard}; limits.max_connections {ws} + http.max_connections {http} \
             + {FD_MARGIN} need {needed}"
        );
        if hard >= needed {
            report.add(3, NAME, Verdict::Ok, detail);
        } else {
            report.add(
                3,
                NAME,
                Verdict::Warn,
                format!(
                    "{detail}: connections past {hard} fail to open; raise the hard limit \
                     (LimitNOFILE=, ulimit -Hn) or lower the connection limits"
                ),
            );
        }
    }
    #[cfg(not(unix))]
    {
        let _ = config;
        report.add(3, NAME, Verdict::Skip, "not measured on this OS");
    }
}

// 5
async fn open_store(report: &mut Report, dir: &Path) -> Option<SqlitePool> {
    const NAME: &str = "SQLite integrity";
    let path = dir.join(db::FILE_NAME);
    if !path.is_file() {
        report.add(
            5,
            NAME,
            Verdict::Fail,
            format!("{} does not exist", path.display()),
        );
        return None;
    }
    let pool = match open_sqlite(&path, Access::ReadWrite).await {
        Ok(pool) => pool,
        Err(error) => {
            report.add(5, NAME, Verdict::Fail, format!("{error:#}"));
            return None;
        }
    };
    match super::verify::integrity_check(&pool).await {
        Ok(problems) if problems.is_empty() => {
            report.add(5, NAME, Verdict::Ok, "integrity_check: ok");
            Some(pool)
        }
        Ok(problems) => {
            report.add(
                5,
                NAME,
                Verdict::Fail,
                format!(
                    "integrity_check: {}; restore the newest backup",
                    problems.join("; ")
                ),
            );
            pool.close().await;
            None
        }
        Err(error) => {
            report.add(
                5,
                NAME,
                Verdict::Fail,
                format!("{error:#}; restore the newest backup"),
            );
            pool.close().await;
            None
        }
    }
}

// 6
async fn check_schema(report: &mut Report, pool: &SqlitePool) {
    const NAME: &str = "schema version";
    let ours = super::binary_schema_version();
    match schema_version(pool).await {
        Ok(0) => report.add(
            6,
            NAME,
            Verdict::Fail,
            "no migrations table: not a Kefu database",
        ),
        Ok(found) if found == ours => {
            report.add(6, NAME, Verdict::Ok, format!("{found}, as this binary"))
        }
        Ok(found) if found < ours => report.add(
            6,
            NAME,
            Verdict::Warn,
            format!(
                "{found}; this binary migrates it to {ours} at its next start (take a backup first)"
            ),
        ),
        Ok(found) => report.add(
            6,
            NAME,
            Verdict::Fail,
            format!(
                "{found}, newer than this binary knows ({ours}): run the kefu-server that wrote it"
            ),
        ),
        Err(error) => report.add(6, NAME, Verdict::Fail, format!("{error:#}")),
    }
}

// 7, 8, 9
async fn check_log(report: &mut Report, pool: &SqlitePool, dir: &Path) {
    // SQLite first (module doc).
    let seqs: Result<Vec<(ConversationId, i64)>, _> =
        sqlx::query_as("SELECT id, last_seq FROM conversations WHERE last_seq > 0")
            .fetch_all(pool)
            .await;
    let indexed: Result<Vec<(ConversationId, i64)>, _> = sqlx::query_as(
        "SELECT conversation_id, MAX(seq) FROM message_index GROUP BY conversation_id",
    )
    .fetch_all(pool)
    .await;
    let log_dir = dir.join(crate::LOG_DIR);
    let heads = match tokio::task::spawn_blocking(move || super::verify::log_heads(&log_dir)).await
    {
        Ok(Ok(heads)) => heads,
        Ok(Err(error)) => {
            report.add(7, "message log", Verdict::Fail, format!("{error:#}"));
            report.add(8, "log heads vs SQLite", Verdict::Skip, "no log");
            report.add(9, "search index lag", Verdict::Skip, "no log");
            return;
        }
        Err(error) => {
            report.add(7, "message log", Verdict::Fail, format!("{error}"));
            return;
        }
    };
    let messages: u64 = heads.values().sum();
    report.add(
        7,
        "message log",
        Verdict::Ok,
        format!(
            "opens read-only: {} conversations, {messages} messages",
            heads.len()
        ),
    );
    match (seqs, indexed) {
        (Ok(seqs), Ok(indexed)) => {
            let behind = behind(&heads, &seqs, "last_seq")
                .chain(behind(&heads, &indexed, "indexed seq"))
                .collect::<Vec<_>>();
            if behind.is_empty() {
                report.add(
                    8,
                    "log heads vs SQLite",
                    Verdict::Ok,
                    format!("{} conversations, none ahead of the log", seqs.len()),
                );
            } else {
                let shown: Vec<&str> = behind.iter().take(5).map(String::as_str).collect();
                report.add(
                    8,
                    "log heads vs SQLite",
                    Verdict::Fail,
                    format!(
                        "{} facts in SQLite above the log's head (the log lost its tail: \
                         those messages are gone; the server brings SQLite back to the log at \
                         start): {}",
                        behind.len(),
                        shown.join("; ")
                    ),
                );
            }
            let indexed: HashMap<ConversationId, u64> = indexed
                .into_iter()
                .map(|(id, seq)| (id, u64::try_from(seq).unwrap_or(0)))
                .collect();
            let lag: u64 = heads
                .iter()
                .map(|(id, head)| head.saturating_sub(indexed.get(id).copied().unwrap_or(0)))
                .sum();
            let detail = format!("{lag} messages not yet searchable");
            if lag <= INDEX_LAG_WARN {
                report.add(9, "search index lag", Verdict::Ok, detail);
            } else {
                report.add(
                    9,
                    "search index lag",
                    Verdict::Warn,
                    format!("{detail}; the server's indexer catches up in the background"),
                );
            }
        }
        (Err(error), _) | (_, Err(error)) => {
            report.add(8, "log heads vs SQLite", Verdict::Fail, format!("{error}"));
            report.add(9, "search index lag", Verdict::Skip, "SQLite query failed");
        }
    }
}

fn behind<'a>(
    heads: &'a HashMap<ConversationId, u64>,
    rows: &'a [(ConversationId, i64)],
    what: &'a str,
) -> impl Iterator<Item = String> + 'a {
    rows.iter().filter_map(move |(conversation, seq)| {
        let head = heads.get(conversation).copied().unwrap_or(0);
        (u64::try_from(*seq).unwrap_or(0) > head)
            .then(|| format!("conversation {conversation}: SQLite {what} {seq}, log head {head}"))
    })
}

// 10
async fn check_attachments(report: &mut Report, pool: &SqlitePool, dir: &Path) {
    const NAME: &str = "attachments";
    // Rows first: a file renamed into place before its row is written is
    // then at worst an unreferenced file (a warning), never a missing one.
    let rows: Vec<(String, i64)> = match sqlx::query_as("SELECT stored_name, size FROM attachments")
        .fetch_all(pool)
        .await
    {
        Ok(rows) => rows,
        Err(error) => {
            report.add(10, NAME, Verdict::Fail, format!("{error}"));
            return;
        }
    };
    let files_dir = dir.join(crate::attachments::DIR);
    let mut files: HashMap<String, u64> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir(&files_dir) {
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                files.insert(name.to_owned(), meta.len());
            }
        }
    }
    let mut missing = Vec::new();
    let mut wrong_size = Vec::new();
    for (name, size) in &rows {
        match files.remove(name) {
            None => missing.push(name.clone()),
            Some(found) if i64::try_from(found).ok() != Some(*size) => {
                wrong_size.push(format!("{name} ({found} bytes, recorded {size})"))
            }
            Some(_) => {}
        }
    }
    let orphaned: Vec<String> = files.into_keys().collect();
    if !missing.is_empty() || !wrong_size.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!(
                "{} referenced but missing (e.g. {}): downloads of them fail; restore them from a backup",
                missing.len(),
                missing[0]
            ));
        }
        if !wrong_size.is_empty() {
            parts.push(format!(
                "{} of the wrong size (e.g. {})",
                wrong_size.len(),
                wrong_size[0]
            ));
        }
        report.add(10, NAME, Verdict::Fail, parts.join("; "));
    } else if !orphaned.is_empty() {
        report.add(
            10,
            NAME,
            Verdict::Warn,
            format!(
                "{} of {} files referenced by no attachment (e.g. {}; an upload cut short): \
                 they only take space and may be deleted",
                orphaned.len(),
                rows.len() + orphaned.len(),
                orphaned[0]
            ),
        );
    } else {
        report.add(
            10,
            NAME,
            Verdict::Ok,
            format!("{} files, all referenced and present", rows.len()),
        );
    }
}

// 11
async fn check_tzdata(report: &mut Report, pool: Option<&SqlitePool>) {
    const NAME: &str = "time zone data";
    let mut zones: Vec<String> = Vec::new();
    if let Some(pool) = pool {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT json_extract(business_hours, '$.timezone') FROM apps
             WHERE business_hours IS NOT NULL AND json_valid(business_hours)
               AND json_extract(business_hours, '$.timezone') IS NOT NULL",
        )
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        zones = rows.into_iter().map(|(zone,)| zone).collect();
    }
    let broken: Vec<&str> = zones
        .iter()
        .map(String::as_str)
        .filter(|zone| jiff::tz::TimeZone::get(zone).is_err())
        .collect();
    let probe = jiff::tz::TimeZone::get("Asia/Shanghai").is_ok();
    if !broken.is_empty() {
        report.add(
            11,
            NAME,
            Verdict::Fail,
            format!(
                "business hours use {} but it does not load: those apps count as always open; \
                 install tzdata (or set TZDIR)",
                broken.join(", ")
            ),
        );
    } else if !probe {
        report.add(
            11,
            NAME,
            Verdict::Warn,
            "no IANA time zone database (e.g. Asia/Shanghai does not load): business hours \
             and reports by day cannot be set; install tzdata",
        );
    } else {
        report.add(
            11,
            NAME,
            Verdict::Ok,
            format!(
                "loads (the system's zoneinfo, else the copy built into Kefu); {} zone(s) in use \
                 by business hours",
                zones.len()
            ),
        );
    }
}

// 12
fn check_proxies(report: &mut Report, config: &Config) {
    const NAME: &str = "proxy settings";
    let nets = match config.http.trusted_proxy_nets() {
        Ok(nets) => nets,
        Err(error) => {
            report.add(12, NAME, Verdict::Fail, error);
            return;
        }
    };
    if let Some(everyone) = nets.iter().find(|net| net.prefix_len() == 0) {
        report.add(
            12,
            NAME,
            Verdict::Fail,
            format!(
                "http.trusted_proxies has {everyone}: every client may claim any address in \
                 X-Forwarded-For, so per-IP login limits mean nothing; list only your proxies"
            ),
        );
        return;
    }
    let any_host = config.http.allowed_hosts.iter().any(|h| h.trim() == "*");
    if any_host {
        report.add(
            12,
            NAME,
            Verdict::Warn,
            "http.allowed_hosts is *: no protection against DNS rebinding; list your host names",
        );
        return;
    }
    if nets.is_empty() && config.bind.ip().is_loopback() {
        report.add(
            12,
            NAME,
            Verdict::Warn,
            format!(
                "listening on {} with no http.trusted_proxies: if a reverse proxy on this \
                 machine forwards to Kefu, every client shares its address (and its login \
                 budget); add the proxy's address to http.trusted_proxies",
                config.bind
            ),
        );
        return;
    }
    let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
    report.add(
        12,
        NAME,
        Verdict::Ok,
        if list.is_empty() {
            format!(
                "listening on {}; clients are the TCP peers (no proxies trusted)",
                config.bind
            )
        } else {
            format!("X-Forwarded-For believed from {}", list.join(", "))
        },
    );
}

// 13
async fn check_clock(report: &mut Report, pool: Option<&SqlitePool>) {
    const NAME: &str = "clock";
    let now = crate::time::now_ms();
    let shown = jiff::Timestamp::from_millisecond(now)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| now.to_string());
    // 2024-01-01: a clock before it was never set.
    if now < 1_704_067_200_000 {
        report.add(
            13,
            NAME,
            Verdict::Fail,
            format!("system time {shown} is not set (check NTP)"),
        );
        return;
    }
    let newest: Option<i64> = match pool {
        Some(pool) => sqlx::query_as::<_, (Option<i64>,)>(
            "SELECT MAX(t) FROM (SELECT MAX(last_message_at) AS t FROM conversations
                                 UNION ALL SELECT MAX(created_at) FROM conversations
                                 UNION ALL SELECT MAX(created_at) FROM audit_log)",
        )
        .fetch_one(pool)
        .await
        .ok()
        .and_then(|(t,)| t),
        None => None,
    };
    match newest {
        Some(newest) if newest > now + CLOCK_SLACK_MS => report.add(
            13,
            NAME,
            Verdict::Fail,
            format!(
                "system time {shown} is {} s behind the newest data: new messages would be \
                 stamped before older ones (check NTP)",
                (newest - now) / 1000
            ),
        ),
        _ => report.add(13, NAME, Verdict::Ok, format!("system time {shown}")),
    }
}

// 14
fn check_backups(report: &mut Report, config: &Config) {
    const NAME: &str = "backups";
    let Some(dir) = &config.backup.dir else {
        report.add(
            14,
            NAME,
            Verdict::Warn,
            "no scheduled backups (backup.dir is not set); see docs/OPERATIONS.md",
        );
        return;
    };
    let interval_ms =
        i64::try_from(config.backup.interval_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX);
    match super::schedule::backups(dir).last() {
        None => report.add(
            14,
            NAME,
            Verdict::Warn,
            format!("no backup in {} yet", dir.display()),
        ),
        Some((path, manifest)) => {
            let age = crate::time::now_ms().saturating_sub(manifest.created_at_ms);
            let detail = format!(
                "newest {} ({} min old, {} bytes)",
                path.display(),
                age / 60_000,
                manifest.total_bytes()
            );
            if age > interval_ms.saturating_mul(2) {
                report.add(
                    14,
                    NAME,
                    Verdict::Warn,
                    format!("{detail}: older than two intervals; are backups failing?"),
                );
            } else {
                report.add(14, NAME, Verdict::Ok, detail);
            }
        }
    }
}
