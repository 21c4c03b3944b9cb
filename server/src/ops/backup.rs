//! Making a backup: by the running server ([`online`], asked over the
//! admin route) or by the command line on a stopped server's data dir
//! ([`offline`]). The same steps either way, in this order (see the
//! module doc of `ops` for why):
//!
//! 1. a temporary directory beside the target, `.NAME.partial-<ulid>`;
//! 2. SQLite: `VACUUM INTO` — one read transaction, so a consistent
//!    snapshot, while writers go on (WAL);
//! 3. the message log: a RocksDB checkpoint, taken *after* SQLite;
//! 4. attachments that the SQLite snapshot references, hard-linked (same
//!    file system; files are never modified) or copied;
//! 5. `lan/` (device identity and LAN state), copied;
//! 6. every file hashed and fsynced, `manifest.json` written and fsynced,
//!    every directory fsynced;
//! 7. the temporary renamed to the target, and the parent fsynced.
//!
//! A failure removes the temporary; a killed process leaves it, and it
//! never verifies (`verify` refuses `.partial-` names, and it has no
//! manifest until everything else is on disk).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;

use super::manifest::{self, FileEntry, Manifest};
use crate::state::AppState;
use crate::store::db;

/// Backups refused before anything was written: the caller's mistake.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists: a backup never overwrites anything")]
    Exists(PathBuf),
    #[error("{0} is inside the data dir: choose a directory outside it")]
    InsideDataDir(PathBuf),
    #[error("a server is running on {0}: it makes the backup (kefu-server backup asks it)")]
    ServerRunning(PathBuf),
    #[error("{0} holds no Kefu data ({1} is missing)")]
    NoData(PathBuf, &'static str),
}

/// What a finished backup holds, as the route and the command line report it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub path: PathBuf,
    pub created_at: String,
    pub created_at_ms: i64,
    pub duration_secs: f64,
    pub bytes: u64,
    pub files: usize,
    pub conversations: u64,
    pub messages: u64,
    pub attachments: u64,
    pub schema_version: i64,
    pub kefu_version: String,
    pub source: String,
}

/// Marker in the temporary directory's name.
pub const PARTIAL_MARK: &str = ".partial-";

/// Where the message log comes from.
enum Log {
    Serving(AppState),
    Offline(Arc<rocksdb::DB>),
}

impl Log {
    fn checkpoint(&self, path: &Path) -> anyhow::Result<()> {
        match self {
            Log::Serving(state) => state.log.checkpoint(path)?,
            Log::Offline(db) => {
                rocksdb::checkpoint::Checkpoint::new(&**db)?.create_checkpoint(path)?
            }
        }
        Ok(())
    }
}

/// A backup made by the running server into `to` (absolute, must not exist).
pub async fn online(state: &AppState, to: &Path) -> anyhow::Result<Summary> {
    let log = Log::Serving(Arc::clone(state));
    write(&state.db, &state.config.data_dir, to, "online", log).await
}

/// A backup of a data dir no server runs on. Holds the message log's lock
/// throughout, so a server cannot start on the data dir meanwhile.
pub async fn offline(data_dir: &Path, to: &Path) -> anyhow::Result<Summary> {
    if super::runtime::server_running(data_dir)? {
        return Err(BackupError::ServerRunning(data_dir.to_path_buf()).into());
    }
    if !data_dir.join(db::FILE_NAME).is_file() {
        return Err(BackupError::NoData(data_dir.to_path_buf(), db::FILE_NAME).into());
    }
    let log_dir = data_dir.join(crate::LOG_DIR);
    let log = tokio::task::spawn_blocking(move || open_log(&log_dir)).await??;
    let pool = open_sqlite(&data_dir.join(db::FILE_NAME), Access::ReadWrite).await?;
    let result = write(&pool, data_dir, to, "offline", Log::Offline(log)).await;
    pool.close().await;
    result
}

/// Opens a stopped server's log for writing (a checkpoint needs that),
/// taking its lock: fails if a process has it.
fn open_log(dir: &Path) -> anyhow::Result<Arc<rocksdb::DB>> {
    let mut options = crate::store::messages::db_options();
    options.create_if_missing(false);
    let db =
        rocksdb::DB::open_cf_descriptors(&options, dir, crate::store::messages::column_families())
            .map_err(|e| {
                anyhow::anyhow!("cannot open the message log at {}: {e}", dir.display())
            })?;
    Ok(Arc::new(db))
}

/// How the ops commands open an SQLite file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A data dir's database, without running migrations.
    ReadWrite,
    /// A file nothing else writes (a backup's snapshot): nothing is ever
    /// written, not even a `-shm` or `-wal` beside it.
    Immutable,
}

pub async fn open_sqlite(path: &Path, access: Access) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(db::BUSY_TIMEOUT);
    let options = match access {
        Access::ReadWrite => options,
        Access::Immutable => options.read_only(true).immutable(true),
    };
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))
}

/// The migration version of an open database (0 when it has none).
pub async fn schema_version(pool: &SqlitePool) -> anyhow::Result<i64> {
    let exists: Option<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await?;
    if exists.is_none() {
        return Ok(0);
    }
    let (version,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(version) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(pool)
            .await?;
    Ok(version.unwrap_or(0))
}

async fn write(
    pool: &SqlitePool,
    data_dir: &Path,
    to: &Path,
    source: &str,
    log: Log,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let to = std::path::absolute(to)?;
    let data_dir_abs = std::path::absolute(data_dir)?;
    if to.starts_with(&data_dir_abs) {
        return Err(BackupError::InsideDataDir(to).into());
    }
    if to.exists() {
        return Err(BackupError::Exists(to).into());
    }
    let (Some(parent), Some(name)) = (to.parent(), to.file_name().and_then(|n| n.to_str())) else {
        anyhow::bail!("{} cannot be a backup directory", to.display());
    };
    std::fs::create_dir_all(parent)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    let temp = parent.join(format!(".{name}{PARTIAL_MARK}{}", ulid::Ulid::new()));
    super::manifest::create_private_dir(&temp)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", temp.display()))?;
    let result = fill(pool, data_dir, &temp, source, log).await;
    let written = match result {
        Ok(written) => written,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(error);
        }
    };
    // The commit point. `rename` onto an existing empty directory would
    // succeed on Linux: check again, as late as possible.
    if to.exists() {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(BackupError::Exists(to).into());
    }
    if let Err(error) = std::fs::rename(&temp, &to) {
        let _ = std::fs::remove_dir_all(&temp);
        anyhow::bail!("cannot rename the backup into place: {error}");
    }
    manifest::sync_dir(parent)?;
    Ok(Summary {
        path: to,
        created_at: written.created_at.clone(),
        created_at_ms: written.created_at_ms,
        duration_secs: started.elapsed().as_secs_f64(),
        bytes: written.total_bytes(),
        files: written.files.len(),
        conversations: written.conversations,
        messages: written.messages,
        attachments: written.attachments,
        schema_version: written.schema_version,
        kefu_version: written.kefu_version,
        source: written.source,
    })
}

/// Steps 2-6 of the module doc, into `temp`.
async fn fill(
    pool: &SqlitePool,
    data_dir: &Path,
    temp: &Path,
    source: &str,
    log: Log,
) -> anyhow::Result<Manifest> {
    let created_at_ms = crate::time::now_ms();
    // 2. SQLite first.
    let snapshot = temp.join(db::FILE_NAME);
    let snapshot_text = snapshot
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not a UTF-8 path", snapshot.display()))?
        .to_owned();
    sqlx::query("VACUUM INTO ?")
        .bind(snapshot_text)
        .execute(pool)
        .await
        .map_err(|e| anyhow::anyhow!("copying SQLite (VACUUM INTO) failed: {e}"))?;
    // 3. Then the log.
    let checkpoint_dir = temp.join(crate::LOG_DIR);
    tokio::task::spawn_blocking(move || log.checkpoint(&checkpoint_dir))
        .await?
        .map_err(|e| anyhow::anyhow!("checkpointing the message log failed: {e:#}"))?;
    // 4. What the snapshot references.
    let snapshot_pool = open_sqlite(&snapshot, Access::Immutable).await?;
    let schema_version = schema_version(&snapshot_pool).await?;
    let names: Vec<(String,)> = sqlx::query_as("SELECT stored_name FROM attachments")
        .fetch_all(&snapshot_pool)
        .await?;
    snapshot_pool.close().await;
    let data_dir = data_dir.to_path_buf();
    let temp = temp.to_path_buf();
    let source = source.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Manifest> {
        let attachments = names.len() as u64;
        let missing = link_attachments(&data_dir, &temp, names.into_iter().map(|(n,)| n))?;
        // 5. The LAN identity, if any (a stray temporary of lan::fs is not state).
        let lan = data_dir.join(crate::lan::identity::LAN_DIR);
        if lan.is_dir() {
            manifest::copy_tree(&lan, &temp.join(crate::lan::identity::LAN_DIR), &|name| {
                name.contains(".tmp-")
            })?;
        }
        // 6. Checksums, fsync, manifest.
        let (conversations, messages) = super::verify::log_totals(&temp.join(crate::LOG_DIR))?;
        let mut files = Vec::new();
        for path in manifest::list_files(&temp)? {
            let full = manifest::resolve(&temp, &path)
                .ok_or_else(|| anyhow::anyhow!("unexpected file {path}"))?;
            let (size, sha256) = manifest::hash_file(&full, true)?;
            files.push(FileEntry { path, size, sha256 });
        }
        let created_at = jiff::Timestamp::from_millisecond(created_at_ms)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let written = Manifest {
            format: manifest::FORMAT,
            kefu_version: super::KEFU_VERSION.to_owned(),
            schema_version,
            created_at,
            created_at_ms,
            source,
            conversations,
            messages,
            attachments,
            missing_attachments: missing,
            files,
        };
        let bytes = serde_json::to_vec_pretty(&written)?;
        let path = temp.join(manifest::FILE);
        std::fs::write(&path, bytes)?;
        manifest::sync_file(&path)?;
        manifest::sync_dirs(&temp)?;
        Ok(written)
    })
    .await?
}

/// Hard-links (or copies) each attachment into the backup. Returns the
/// names whose file is missing from the data dir (logged; the backup goes
/// on: it is most needed when something is already wrong).
fn link_attachments(
    data_dir: &Path,
    temp: &Path,
    names: impl Iterator<Item = String>,
) -> anyhow::Result<Vec<String>> {
    let from = data_dir.join(crate::attachments::DIR);
    let to = temp.join(crate::attachments::DIR);
    std::fs::create_dir_all(&to)?;
    let mut missing = Vec::new();
    for name in names {
        // Stored names are random hex; anything else is not a file name here.
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            anyhow::bail!("attachment stored_name {name:?} is not a plain file name");
        }
        let source = from.join(&name);
        let target = to.join(&name);
        match std::fs::hard_link(&source, &target) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(stored_name = %name, "attachment file missing from the data dir");
                missing.push(name);
            }
            // Another file system, or none with hard links: copy.
            Err(_) => {
                manifest::copy_file(&source, &target)?;
            }
        }
    }
    Ok(missing)
}
