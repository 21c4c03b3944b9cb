//! Scheduled backups: with `backup.dir` set, the server writes
//! `kefu-backup-<UTC time>` there every `backup.interval_minutes` and keeps
//! the newest `backup.keep`.
//!
//! - The clock is the newest backup in the directory, not the server's
//!   start: a restart does not postpone (or repeat) a backup; a server that
//!   finds none, or only old ones, backs up at once.
//! - Only directories this module names (`kefu-backup-YYYYMMDDTHHMMSSZ`
//!   with a manifest) are counted or deleted; anything else in `dir` is
//!   left alone. Temporaries of backups that were killed (`.kefu-backup-…
//!   .partial-…`) are removed at start.
//! - A failed backup is logged and counted (`kefu_backup_failures_total`)
//!   and tried again after a tenth of the interval (at least a minute).
//! - `kefu_backup_last_success_timestamp_seconds` is the newest backup's
//!   time, also one found at start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::manifest::Manifest;
use crate::state::AppState;

const PREFIX: &str = "kefu-backup-";

/// The directory name of a backup made at `unix_ms`.
pub fn backup_name(unix_ms: i64) -> String {
    let stamp = jiff::Timestamp::from_millisecond(unix_ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y%m%dT%H%M%SZ");
    format!("{PREFIX}{stamp}")
}

fn is_backup_name(name: &str) -> bool {
    name.strip_prefix(PREFIX).is_some_and(|stamp| {
        stamp.len() == 16
            && stamp.ends_with('Z')
            && stamp.as_bytes()[8] == b'T'
            && stamp
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 8 || i == 15 || b.is_ascii_digit())
    })
}

/// The scheduler's backups in `dir`, oldest first, with their manifests.
pub fn backups(dir: &Path) -> Vec<(PathBuf, Manifest)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Manifest)> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_backup_name))
        .filter_map(|e| {
            let path = e.path();
            Manifest::read(&path).ok().map(|m| (path, m))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Runs until the server stops. Spawned at start when `backup.dir` is set.
pub async fn run(state: AppState) {
    let Some(dir) = state.config.backup.dir.clone() else {
        return;
    };
    let interval_ms = i64::try_from(state.config.backup.interval_minutes)
        .unwrap_or(i64::MAX / 60_000)
        .saturating_mul(60_000);
    remove_stale_temporaries(&dir);
    let mut newest = backups(&dir).last().map(|(_, m)| m.created_at_ms);
    if let Some((_, manifest)) = backups(&dir).last() {
        state
            .metrics
            .backup_succeeded(manifest.created_at_ms / 1000, 0.0, manifest.total_bytes());
    }
    loop {
        let due = newest.map_or(0, |at| at.saturating_add(interval_ms));
        let wait = due.saturating_sub(crate::time::now_ms()).max(0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())) => {}
            _ = state.shutdown.cancelled() => return,
        }
        match once(&state, &dir).await {
            Ok(at) => newest = Some(at),
            Err(error) => {
                state.metrics.backup_failed();
                tracing::error!(error = %format!("{error:#}"), dir = %dir.display(), "scheduled backup failed");
                // Try again after a tenth of the interval, at least a minute.
                let retry = (interval_ms / 10).max(60_000);
                newest = Some(
                    crate::time::now_ms()
                        .saturating_add(retry)
                        .saturating_sub(interval_ms),
                );
            }
        }
    }
}

/// One scheduled backup and the retention pass after it. Returns its time.
async fn once(state: &AppState, dir: &Path) -> anyhow::Result<i64> {
    let _running = state.ops.backup.lock().await;
    let now = crate::time::now_ms();
    let to = dir.join(backup_name(now));
    let summary = match super::backup::online(state, &to).await {
        Ok(summary) => summary,
        Err(error) => {
            state.ops.backup_failed(&to, &error);
            return Err(error);
        }
    };
    state.ops.backup_succeeded(&summary);
    state.metrics.backup_succeeded(
        summary.created_at_ms / 1000,
        summary.duration_secs,
        summary.bytes,
    );
    tracing::info!(path = %summary.path.display(), bytes = summary.bytes, seconds = summary.duration_secs, "scheduled backup written");
    prune(dir, state.config.backup.keep);
    Ok(summary.created_at_ms)
}

/// Deletes all but the newest `keep` scheduled backups.
pub fn prune(dir: &Path, keep: usize) {
    let all = backups(dir);
    let excess = all.len().saturating_sub(keep);
    for (path, _) in all.into_iter().take(excess) {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "old backup deleted"),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot delete an old backup")
            }
        }
    }
}

fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = name
            .strip_prefix('.')
            .and_then(|rest| rest.split_once(super::backup::PARTIAL_MARK))
            .is_some_and(|(backup, _)| is_backup_name(backup));
        if stale && let Err(error) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(%error, "cannot remove an unfinished backup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_are_recognized() {
        let early = backup_name(1_700_000_000_000);
        let later = backup_name(1_700_000_060_000);
        assert_eq!(early, "kefu-backup-20231114T221320Z");
        assert!(early < later);
        assert!(is_backup_name(&early));
        for other in [
            "kefu-backup-2023111T221320Z",
            "kefu-backup-20231114X221320Z",
            "kefu-backup-20231114T221320",
            "notes",
            ".kefu-backup-20231114T221320Z.partial-01",
        ] {
            assert!(!is_backup_name(other), "{other}");
        }
    }
}
