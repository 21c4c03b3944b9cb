//! SQLite through sqlx: migrations embedded in the binary, WAL journal,
//! `synchronous=FULL` (everything here is small and rare next to the message
//! log, so it can afford to be durable on every commit), foreign keys on.
//!
//! Another process (`kefu-server admin create`) may open the same file while
//! a server runs: WAL allows that, and the busy timeout makes writers wait
//! for each other instead of failing.
//!
//! **Every transaction that writes begins with [`begin_write`]**
//! (`BEGIN IMMEDIATE`). A deferred transaction (`begin()`) that reads and
//! then writes fails at its first write with `SQLITE_BUSY` ("database is
//! locked") whenever another connection committed after its read: in WAL
//! mode its snapshot is stale, and the busy timeout cannot help, since
//! waiting would not make the snapshot current. `BEGIN IMMEDIATE` takes the
//! write lock first (waiting up to the busy timeout for it), so what the
//! transaction reads is still true when it writes: concurrent admin writes
//! queue instead of failing, and a check inside one ("the last admin",
//! "at most 200 teams") holds under any concurrency. Single statements
//! (autocommit) need nothing: SQLite retries their lock with the busy
//! handler itself.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::memory::{MemoryProfile, SqliteSizes};

pub const FILE_NAME: &str = "kefu.sqlite3";

/// How long a connection waits for another's write lock before failing
/// with "database is locked". Writes here are small (milliseconds), so
/// only a stuck writer or a second process holding a transaction open
/// reaches it.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Begins a transaction holding SQLite's write lock from its first
/// statement (see the module doc): use it for every transaction that
/// writes, above all one that reads before it writes.
pub async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

pub async fn open(data_dir: &Path) -> anyhow::Result<SqlitePool> {
    open_sized(data_dir, MemoryProfile::Server.sqlite()).await
}

/// [`open`] with the sizes of a memory profile (crate::store::memory).
pub async fn open_sized(data_dir: &Path, sizes: SqliteSizes) -> anyhow::Result<SqlitePool> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", data_dir.display()))?;
    let path = data_dir.join(FILE_NAME);
    let options = options(&path, sizes);
    let pool = SqlitePoolOptions::new()
        .max_connections(sizes.pool_connections)
        .min_connections(1)
        .before_acquire(|conn, _| Box::pin(healthy(conn)))
        .connect_with(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// Whether a pooled connection may be handed out: not one still inside a
/// transaction. A transaction dropped on an error is rolled back by a
/// command queued on the connection; when SQLite had already ended it (it
/// rolls a transaction back by itself on SQLITE_FULL and some I/O errors),
/// that ROLLBACK fails and sqlx keeps counting the transaction as open, so
/// the next `BEGIN` on the connection would fail. The ping waits for the
/// queued rollback; a connection still "in a transaction" after it is
/// closed and replaced (the full-disk test in store_faults.rs).
async fn healthy(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

fn options(path: &Path, sizes: SqliteSizes) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("temp_store", "memory")
        // Negative: a size in KiB, not in pages.
        .pragma("cache_size", format!("-{}", sizes.cache_kib))
}

/// The search indexer's own connection: `synchronous=NORMAL`, because
/// everything written through it (the search index) is derived from the
/// message log and the tickets and redone at start if a power cut took the
/// last commits, so it needs no fsync per commit. sqlx runs it on a worker
/// thread of its own, created by the connecting thread: connected from the
/// indexer's thread, it inherits that thread's low priority
/// ([`lower_own_priority`]).
pub async fn connect_background(
    data_dir: &Path,
    sizes: SqliteSizes,
) -> anyhow::Result<SqliteConnection> {
    let path = data_dir.join(FILE_NAME);
    options(&path, sizes)
        .synchronous(SqliteSynchronous::Normal)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))
}

/// A connection of its own for a task that writes often and must not queue
/// behind the pool's requests (the conversation starter): the pool's
/// settings, `synchronous=FULL` (what it writes is not derived).
pub async fn connect_own(data_dir: &Path, sizes: SqliteSizes) -> anyhow::Result<SqliteConnection> {
    let path = data_dir.join(FILE_NAME);
    options(&path, sizes)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))
}

/// Moves the calling thread to Linux's `SCHED_IDLE` policy, where the
/// threads it creates afterwards inherit it; elsewhere a no-op (on macOS
/// `setpriority` would apply to the whole process). An idle-policy thread
/// runs only on CPU time no normal thread wants, and any normal thread that
/// wakes preempts it; a nice-19 thread (tried first) still gets a weighted
/// share (docs/PERFORMANCE.md has the A/B). If the policy cannot be set,
/// falls back to nice 19.
#[cfg(target_os = "linux")]
pub fn lower_own_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_current_thread_priority, set_thread_priority_and_policy, thread_native_id,
    };
    let idle = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    );
    if let Err(error) = idle {
        tracing::debug!(?error, "cannot use SCHED_IDLE; trying nice 19");
        if let Err(error) = set_current_thread_priority(ThreadPriority::Min) {
            tracing::warn!(?error, "cannot lower a background thread's priority");
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn lower_own_priority() {}
