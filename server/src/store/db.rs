//! SQLite through sqlx: migrations embedded in the binary, WAL journal,
//! `synchronous=FULL` (everything here is small and rare next to the message
//! log, so it can afford to be durable on every commit), foreign keys on.
//!
//! Another process (`kefu-server admin create`) may open the same file while
//! a server runs: WAL allows that, and the busy timeout makes writers wait
//! for each other instead of failing.

use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub const FILE_NAME: &str = "kefu.sqlite3";

pub async fn open(data_dir: &Path) -> anyhow::Result<SqlitePool> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", data_dir.display()))?;
    let path = data_dir.join(FILE_NAME);
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("temp_store", "memory");
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .min_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}
