//! Running Kefu for real: backups that are consistent while the server
//! serves ([`backup`]), their check ([`verify`]) and their restore
//! ([`restore`]), scheduled backups with retention ([`schedule`]), the
//! operator's checks ([`doctor`]), and how the command line finds and talks
//! to a running server ([`runtime`], [`client`]). docs/OPERATIONS.md is the
//! operator's side of all this.
//!
//! Invariants:
//! - A backup copies SQLite first (`VACUUM INTO`, one read transaction),
//!   then checkpoints the message log: everything SQLite references (a
//!   conversation's `last_seq`, an indexed message) is in the log copy,
//!   because the log only grows and SQLite only copies what the log
//!   committed. `verify` checks exactly that.
//! - A backup exists under its final name only when complete: it is
//!   written to a temporary directory beside it (`.NAME.partial-…`), every
//!   file and directory fsynced, then renamed. `verify` refuses a temporary.
//! - Only the process that holds the message log's lock touches a data
//!   dir's RocksDB for writing: with a server running, the server makes the
//!   backup (asked over loopback with the one-time operator token of
//!   [`runtime`]); restore refuses to run.
//! - The operator token is never in a URL or a log line: it lives in the
//!   server's memory and in `DATA_DIR/server.json` (mode 0600), and travels
//!   in the `Authorization` header.
//!
//! The doors (`POST /api/v1/admin/backup`, `GET /api/v1/admin/profile`) and
//! the [`Operator`] extractor are in [`routes`].

pub mod backup;
pub mod cli;
pub mod client;
pub mod doctor;
pub mod export;
pub mod manifest;
pub mod notify;
pub mod profile;
pub mod restore;
pub mod routes;
pub mod runtime;
pub mod schedule;
pub mod verify;

use std::path::PathBuf;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The server's side of operations: its operator token, the one backup
/// that may run at a time, and how the latest one went.
pub struct Ops {
    /// 256 random bits, new at every start; also in `server.json`.
    token: String,
    backup: tokio::sync::Mutex<()>,
    last_backup: parking_lot::Mutex<Option<LastBackup>>,
}

/// How the latest backup this server attempted went (asked for, scheduled
/// or from the desktop's Settings → Backup), since it started.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastBackup {
    /// When it ended (Unix ms).
    pub at_ms: i64,
    pub ok: bool,
    pub path: PathBuf,
    /// Size and duration of a successful one (0 when it failed).
    pub bytes: u64,
    pub duration_secs: f64,
    /// Why it failed.
    pub error: Option<String>,
}

impl Ops {
    pub fn new() -> Ops {
        Ops {
            token: {
                use rand::RngCore;
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                format!("kfop_{}", hex::encode(bytes))
            },
            backup: tokio::sync::Mutex::new(()),
            last_backup: parking_lot::Mutex::new(None),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// How the latest backup since start went; None before the first.
    pub fn last_backup(&self) -> Option<LastBackup> {
        self.last_backup.lock().clone()
    }

    fn backup_succeeded(&self, summary: &backup::Summary) {
        *self.last_backup.lock() = Some(LastBackup {
            at_ms: crate::time::now_ms(),
            ok: true,
            path: summary.path.clone(),
            bytes: summary.bytes,
            duration_secs: summary.duration_secs,
            error: None,
        });
    }

    fn backup_failed(&self, path: &std::path::Path, error: &anyhow::Error) {
        *self.last_backup.lock() = Some(LastBackup {
            at_ms: crate::time::now_ms(),
            ok: false,
            path: path.to_path_buf(),
            bytes: 0,
            duration_secs: 0.0,
            error: Some(format!("{error:#}")),
        });
    }
}

impl Default for Ops {
    fn default() -> Self {
        Ops::new()
    }
}

/// Kefu's version, as the manifest records it.
pub const KEFU_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The newest SQLite schema (migration) version this binary knows.
pub fn binary_schema_version() -> i64 {
    sqlx::migrate!("./migrations")
        .iter()
        .map(|migration| migration.version)
        .max()
        .unwrap_or(0)
}

/// `major.minor.patch` as numbers (a pre-release suffix is ignored), for
/// "is this backup from a newer Kefu".
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// Who asks for an operation: the local operator (the command line, with
/// the token of `server.json`) or an admin agent. Read from a request by
/// its extractor in [`routes`].
pub(crate) enum Operator {
    Local,
    Admin(crate::ids::AgentId),
}

impl Operator {
    /// The audit log's actor: none for the local operator.
    pub(crate) fn actor(&self) -> Option<crate::ids::AgentId> {
        match self {
            Operator::Local => None,
            Operator::Admin(id) => Some(*id),
        }
    }
}

/// A backup asked for now (`POST /api/v1/admin/backup`) by `operator`,
/// into `to` or, when none is named, a new directory under `backup.dir`.
/// Only the local operator may name one (absolute): an admin's backup goes
/// to `backup.dir`. See [`backup_into`].
pub(crate) async fn backup_now(
    state: &AppState,
    operator: &Operator,
    to: Option<PathBuf>,
) -> ApiResult<backup::Summary> {
    let to = match (operator, to) {
        (Operator::Local, Some(to)) if to.is_absolute() => to,
        (Operator::Local, Some(_)) => {
            return Err(ApiError::bad_request("to must be an absolute path"));
        }
        (Operator::Admin(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "only the server's operator (kefu-server backup) may choose where a backup goes",
            ));
        }
        (_, None) => match &state.config.backup.dir {
            Some(dir) => dir.join(schedule::backup_name(crate::time::now_ms())),
            None => {
                return Err(ApiError::Conflict(
                    "no backup.dir is configured; name a directory with kefu-server backup --to"
                        .into(),
                ));
            }
        },
    };
    backup_into(state, &to, operator.actor()).await
}

/// Makes a backup into `to` (absolute, must not exist) now, as the running
/// server: one at a time (409 while another runs), counted in the
/// `kefu_backup_*` metrics and [`Ops::last_backup`], audited
/// (`backup.create`, by `actor`; none for the local operator). The admin
/// route and the desktop's Settings → Backup both come here.
pub async fn backup_into(
    state: &AppState,
    to: &std::path::Path,
    actor: Option<crate::ids::AgentId>,
) -> ApiResult<backup::Summary> {
    let Ok(_running) = state.ops.backup.try_lock() else {
        return Err(ApiError::Conflict("a backup is already running".into()));
    };
    let summary = match backup::online(state, to).await {
        Ok(summary) => summary,
        Err(error) => {
            state.metrics.backup_failed();
            state.ops.backup_failed(to, &error);
            tracing::error!(error = %format!("{error:#}"), "backup failed");
            return Err(match error.downcast::<backup::BackupError>() {
                Ok(refused) => ApiError::Conflict(refused.to_string()),
                Err(error) => ApiError::Internal(error),
            });
        }
    };
    state.metrics.backup_succeeded(
        summary.created_at_ms / 1000,
        summary.duration_secs,
        summary.bytes,
    );
    state.ops.backup_succeeded(&summary);
    crate::audit::record(
        &state.db,
        actor,
        "backup.create",
        None,
        serde_json::json!({"path": summary.path, "bytes": summary.bytes}),
    )
    .await?;
    tracing::info!(path = %summary.path.display(), bytes = summary.bytes, seconds = summary.duration_secs, "backup written");
    Ok(summary)
}
