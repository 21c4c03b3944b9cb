//! `kefu-server verify-backup DIR`: whether a backup can be restored, read
//! without writing a byte into it.
//!
//! In order, stopping at the first failure:
//! 1. not a temporary (`.partial-` in its name: an unfinished backup);
//! 2. `manifest.json` readable and of a known format;
//! 3. exactly the listed files, each with its size and SHA-256;
//! 4. SQLite `PRAGMA integrity_check` is `ok` (opened immutable);
//! 5. the message log opens read-only (RocksDB's info log goes to a
//!    temporary directory, not into the backup);
//! 6. the log holds everything SQLite references: each conversation's
//!    `last_seq` and indexed messages are at or below its log head;
//! 7. every attachment row has its file, of the recorded size (unless the
//!    manifest says it was already missing when the backup was made).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use sqlx::SqlitePool;

use super::backup::{Access, PARTIAL_MARK, open_sqlite};
use super::manifest::{self, Manifest};
use crate::ids::ConversationId;
use crate::store::db;

/// A backup that verified.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
}

/// Verifies the backup in `dir` (module doc); the error says what is wrong.
pub async fn verify(dir: &Path) -> anyhow::Result<Verified> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.contains(PARTIAL_MARK) {
        anyhow::bail!(
            "{} is an unfinished backup (a process making it stopped): not restorable; delete it",
            dir.display()
        );
    }
    let manifest = Manifest::read(dir)?;
    let checked_dir = dir.to_path_buf();
    let listed = manifest.files.clone();
    tokio::task::spawn_blocking(move || check_files(&checked_dir, &listed)).await??;

    let pool = open_sqlite(&dir.join(db::FILE_NAME), Access::Immutable).await?;
    let result = check_sqlite(&pool, dir, &manifest).await;
    pool.close().await;
    result?;
    Ok(Verified { manifest })
}

fn check_files(dir: &Path, listed: &[manifest::FileEntry]) -> anyhow::Result<()> {
    let mut names = HashSet::new();
    for entry in listed {
        let path = manifest::resolve(dir, &entry.path)
            .ok_or_else(|| anyhow::anyhow!("manifest lists an unsafe path {:?}", entry.path))?;
        let (size, sha256) = manifest::hash_file(&path, false)
            .map_err(|e| anyhow::anyhow!("{} is listed but cannot be read: {e}", entry.path))?;
        if size != entry.size || sha256 != entry.sha256 {
            anyhow::bail!(
                "{} is damaged: {size} bytes, sha256 {sha256}; the manifest says {} bytes, sha256 {}",
                entry.path,
                entry.size,
                entry.sha256
            );
        }
        names.insert(entry.path.as_str());
    }
    for path in manifest::list_files(dir)? {
        if path != manifest::FILE && !names.contains(path.as_str()) {
            anyhow::bail!("{path} is in the backup but not in its manifest");
        }
    }
    for required in [db::FILE_NAME, "messages/CURRENT"] {
        if !names.contains(required) {
            anyhow::bail!("the manifest lists no {required}");
        }
    }
    Ok(())
}

async fn check_sqlite(pool: &SqlitePool, dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let problems = integrity_check(pool).await?;
    if !problems.is_empty() {
        anyhow::bail!("SQLite integrity_check: {}", problems.join("; "));
    }
    let schema = super::backup::schema_version(pool).await?;
    if schema != manifest.schema_version {
        anyhow::bail!(
            "SQLite has schema version {schema}, the manifest says {}",
            manifest.schema_version
        );
    }
    let log_dir = dir.join(crate::LOG_DIR);
    let heads = tokio::task::spawn_blocking(move || log_heads(&log_dir)).await??;
    if let Some(behind) = log_behind_sqlite(pool, &heads).await?.first() {
        anyhow::bail!("the message log is behind SQLite: {behind}");
    }
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT stored_name, size FROM attachments")
        .fetch_all(pool)
        .await?;
    let sizes: HashMap<&str, u64> = manifest
        .files
        .iter()
        .filter_map(|f| {
            f.path
                .strip_prefix("attachments/")
                .map(|name| (name, f.size))
        })
        .collect();
    let known_missing: HashSet<&str> = manifest
        .missing_attachments
        .iter()
        .map(String::as_str)
        .collect();
    for (name, size) in &rows {
        if known_missing.contains(name.as_str()) {
            continue;
        }
        match sizes.get(name.as_str()) {
            Some(found) if i64::try_from(*found).ok() == Some(*size) => {}
            Some(found) => anyhow::bail!("attachment {name} has {found} bytes, SQLite says {size}"),
            None => {
                anyhow::bail!("attachment {name} is referenced by SQLite but not in the backup")
            }
        }
    }
    Ok(())
}

/// `PRAGMA integrity_check`: empty when it says `ok`.
pub async fn integrity_check(pool: &SqlitePool) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check(20)")
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(line,)| line)
        .filter(|line| line != "ok")
        .collect())
}

/// Conversations whose SQLite facts reach above the log's head (at most
/// 20, described), for `verify` and `doctor`.
pub async fn log_behind_sqlite(
    pool: &SqlitePool,
    heads: &HashMap<ConversationId, u64>,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let seqs: Vec<(ConversationId, i64)> =
        sqlx::query_as("SELECT id, last_seq FROM conversations WHERE last_seq > 0")
            .fetch_all(pool)
            .await?;
    let indexed: Vec<(ConversationId, i64)> = sqlx::query_as(
        "SELECT conversation_id, MAX(seq) FROM message_index GROUP BY conversation_id",
    )
    .fetch_all(pool)
    .await?;
    for (what, rows) in [("last_seq", seqs), ("indexed seq", indexed)] {
        for (conversation, seq) in rows {
            let head = heads.get(&conversation).copied().unwrap_or(0);
            if u64::try_from(seq).unwrap_or(0) > head && out.len() < 20 {
                out.push(format!(
                    "conversation {conversation}: SQLite {what} {seq}, log head {head}"
                ));
            }
        }
    }
    Ok(out)
}

/// A message log opened read-only; its RocksDB info log lives in a
/// temporary directory for as long as it is open.
pub struct ReadOnlyLog {
    pub db: rocksdb::DB,
    _info_log: tempfile::TempDir,
}

/// Opens a message log read-only, without writing into its directory.
pub fn open_log_read_only(dir: &Path) -> anyhow::Result<ReadOnlyLog> {
    if !dir.join("CURRENT").is_file() {
        anyhow::bail!("no message log at {}", dir.display());
    }
    let info_log = tempfile::tempdir()?;
    let mut options = crate::store::messages::db_options();
    options.create_if_missing(false);
    options.create_missing_column_families(false);
    options.set_db_log_dir(info_log.path());
    let db = rocksdb::DB::open_cf_descriptors_read_only(
        &options,
        dir,
        crate::store::messages::column_families(),
        false,
    )
    .map_err(|e| anyhow::anyhow!("the message log at {} does not open: {e}", dir.display()))?;
    Ok(ReadOnlyLog {
        db,
        _info_log: info_log,
    })
}

/// Every conversation's head (`last_seq`) in a log directory.
pub fn log_heads(dir: &Path) -> anyhow::Result<HashMap<ConversationId, u64>> {
    let log = open_log_read_only(dir)?;
    let db = &log.db;
    let cf = db
        .cf_handle(crate::store::keys::CF_HEAD)
        .ok_or_else(|| anyhow::anyhow!("the message log has no conv_head column family"))?;
    let mut heads = HashMap::new();
    for item in db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
        let (key, value) = item?;
        let key: [u8; 16] = key
            .as_ref()
            .try_into()
            .map_err(|_| anyhow::anyhow!("a conv_head key has the wrong length"))?;
        let (last_seq, _) = crate::store::keys::parse_head_value(&value)
            .ok_or_else(|| anyhow::anyhow!("a conv_head value is damaged"))?;
        heads.insert(ConversationId::from_bytes(key), last_seq);
    }
    Ok(heads)
}

/// Conversations and messages in a log directory.
pub fn log_totals(dir: &Path) -> anyhow::Result<(u64, u64)> {
    let heads = log_heads(dir)?;
    Ok((heads.len() as u64, heads.values().sum()))
}
