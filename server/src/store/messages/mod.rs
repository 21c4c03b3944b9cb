//! The message log: RocksDB, one writer thread, group commit.
//!
//! Invariants:
//! - `seq` is per conversation, starts at 1 and has no gaps: only the writer
//!   thread assigns it, from `conv_head`, and a batch that fails to write
//!   assigns nothing (the in-memory heads of its conversations are dropped
//!   and re-read).
//! - A message, its dedup entry and its conversation head are written in one
//!   `WriteBatch`: after a crash either all three exist or none does. So is
//!   a draft's `conv_start` marker ([`Draft::start`]): a start that a crash
//!   interrupted is found in the log at the next start-up
//!   ([`MessageLog::pending_starts`]).
//! - A send is answered only after its batch is written with the configured
//!   durability (`os`: in the WAL; `fsync`: synced to disk).
//! - Subscribers (`on_commit`) see every new message once, in commit order,
//!   which is `seq` order within each conversation.
//! - When a write fails (a full disk: RocksDB's error is sticky from then
//!   on), the log turns *unwritable*: it says so once in the log and in
//!   `/metrics`, `/readyz` answers 503, and every send is refused with
//!   [`LogError::Unavailable`] (HTTP 503 `unavailable`) without being
//!   planned, so no seq is handed out. The writer recovers by itself (see
//!   `Writer::try_recover`): RocksDB's own resume when it manages, else a
//!   clean reopen of the database inside the writer thread once there is
//!   room. Nothing failed was acknowledged; a failed write that reached the
//!   WAL whole is found by the reopen and published late, never lost.
//!
//! Key grammar: see [`super::keys`].
//!
//! Files: this one holds the types and [`MessageLog`] (its API and its
//! reads); `options.rs` the RocksDB options and sizes; `writer.rs` the
//! writer thread (group commit, outcomes, failure, recovery, reopen).

mod options;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rocksdb::{DB, Direction, IteratorMode, ReadOptions, WriteBatch};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::keys::{self, CF_HEAD, CF_MSG, CF_START, FLAG_NOTE};
use super::memory::{LogSizes, MemoryProfile};
use crate::config::Durability;
use crate::ids::ConversationId;
use crate::message::{Message, MessageKind, Sender};

pub use options::{column_families, column_families_sized, db_options, db_options_sized};
use writer::{BatchTimes, Writer};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("the message log is closed")]
    Closed,
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The log cannot write now (a full disk) or is reopening: retry later.
    #[error("the message log is unavailable: {0}")]
    Unavailable(String),
}

impl LogError {
    /// The same error for another waiter of one batch (`rocksdb::Error`
    /// is not `Clone`): kinds that callers branch on are kept.
    fn for_another(&self) -> LogError {
        match self {
            LogError::Closed => LogError::Closed,
            LogError::Unavailable(why) => LogError::Unavailable(why.clone()),
            other => LogError::Corrupt(other.to_string()),
        }
    }
}

/// What a send is told while the log cannot write. The cause (a path and
/// an OS error) is in the server's log, not in the answer.
fn unwritable() -> LogError {
    LogError::Unavailable("the message store cannot write right now (is the disk full?)".into())
}

/// A message as the log holds it: the wire JSON, serialized once, plus the
/// few fields routing needs without parsing it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub conversation_id: ConversationId,
    pub seq: u64,
    pub note: bool,
    pub created_at: i64,
    /// The `Message` object as JSON text.
    pub json: Arc<str>,
    /// Written with a `conv_start` marker: it starts (or reopens) its
    /// conversation (see `conversations::start`). False when read back.
    pub start: bool,
}

impl StoredMessage {
    pub fn decode(&self) -> Result<Message, LogError> {
        serde_json::from_str(&self.json).map_err(|e| LogError::Corrupt(e.to_string()))
    }

    fn from_value(
        conversation_id: ConversationId,
        seq: u64,
        value: &[u8],
    ) -> Result<Self, LogError> {
        let (flags, created_at, json) = keys::split_msg_value(value)
            .ok_or_else(|| LogError::Corrupt("short msg value".into()))?;
        let json = std::str::from_utf8(json).map_err(|e| LogError::Corrupt(e.to_string()))?;
        Ok(StoredMessage {
            conversation_id,
            seq,
            note: flags & FLAG_NOTE != 0,
            created_at,
            json: Arc::from(json),
            start: false,
        })
    }
}

/// A message to append; the writer gives it its id, seq and time.
#[derive(Debug, Clone)]
pub struct Draft {
    pub conversation_id: ConversationId,
    pub sender: Sender,
    /// The sender's 16-byte id, the dedup scope (all zeros for the system).
    pub sender_key: [u8; 16],
    pub client_msg_id: Option<String>,
    pub kind: MessageKind,
    pub content: String,
    pub meta: Value,
    pub attachment: Option<Value>,
    /// Write a `conv_start` marker with the message (in the same batch):
    /// a visitor message to a conversation not known to be going. Ignored
    /// for a duplicate (the original carried it).
    pub start: bool,
}

/// The writer's answer to one append.
#[derive(Debug, Clone)]
pub struct Appended {
    pub message: Arc<StoredMessage>,
    /// True when the `client_msg_id` was seen before: `message` is the
    /// original and nothing was written.
    pub duplicate: bool,
    /// The log's RocksDB sequence once its batch was written: the message
    /// (a duplicate's original too) is at or below it. What a synchronous
    /// standby must have before the send is acknowledged
    /// (`lan::sync_standby`); 0 where there is no such sequence.
    pub log_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub last_seq: u64,
    pub last_at: i64,
}

/// Called on the writer thread after every committed batch with the new
/// messages in commit order, and the connection each came from (if any).
/// It must not block: it only queues frames.
pub type CommitHook = Box<dyn Fn(&[(Arc<StoredMessage>, Option<u64>)]) + Send + 'static>;

struct Request {
    draft: Draft,
    origin: Option<u64>,
    /// The answer, and the draft back: what the writer moved out of it to
    /// serialize the message is moved back in, so that its buffers are
    /// freed by the thread that allocated them (see `Writer::plan`).
    reply: oneshot::Sender<(Result<Appended, LogError>, Draft)>,
    /// When it was queued, for [`LogMetrics::batch_timed`].
    queued: Instant,
}

// Boxing the request would cost an allocation per send; a queue slot is
// sized by the largest variant either way, and `Stop` is sent once.
#[allow(clippy::large_enum_variant)]
enum Command {
    Append(Request),
    Stop,
}

/// Figures the writer reports after each batch, for `/metrics`.
pub trait LogMetrics: Send + Sync + 'static {
    fn batch_written(&self, size: usize, duplicates: usize, seconds: f64);
    /// Where the sends' time in the log went, called once per batch after
    /// its answers (one lock and no work per send before an ack), with one
    /// figure per send of the batch, in seconds (so that quantiles are the
    /// sends', as each sender sees them): `queued`, from its enqueue to
    /// the start of its batch (mostly the batches before it); `write`, the
    /// batch's RocksDB write (the WAL append, its sync in `fsync`
    /// durability, the memtable inserts), the same for each of its sends,
    /// `None` when the batch wrote nothing (only resends: `queued` is then
    /// not counted either); `answered`, from its enqueue to its answer (the
    /// two, the batch's planning and the publishing of its messages).
    fn batch_timed(&self, _queued: &[f64], _write: Option<f64>, _answered: &[f64]) {}
    /// A batch the log could not write (each of its sends was refused).
    fn write_failed(&self) {}
    /// The log became unwritable (`false`) or writable again (`true`).
    fn writable(&self, _writable: bool) {}
}

/// The open database, shared by the readers and the writer thread. A
/// reader clones the handle for one call; the writer empties the slot
/// while it reopens the database after a write error, and readers get
/// [`LogError::Unavailable`] for that moment.
struct DbSlot(parking_lot::RwLock<Option<Arc<DB>>>);

impl DbSlot {
    fn get(&self) -> Result<Arc<DB>, LogError> {
        self.0
            .read()
            .clone()
            .ok_or_else(|| LogError::Unavailable("the message log is reopening".into()))
    }

    fn set(&self, db: Option<Arc<DB>>) {
        *self.0.write() = db;
    }
}

pub struct MessageLog {
    db: Arc<DbSlot>,
    tx: mpsc::Sender<Command>,
    closed: AtomicBool,
    /// False while writes fail (see the module doc); set by the writer.
    writable: Arc<AtomicBool>,
    writer: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl MessageLog {
    /// Opens (or creates) the log under `path` and starts its writer thread.
    pub fn open(
        path: &Path,
        durability: Durability,
        queue: usize,
        batch_max: usize,
        metrics: Arc<dyn LogMetrics>,
        on_commit: CommitHook,
    ) -> Result<MessageLog, LogError> {
        Self::open_sized(
            path,
            durability,
            queue,
            batch_max,
            metrics,
            on_commit,
            MemoryProfile::Server.log(),
        )
    }

    /// [`MessageLog::open`] with the RocksDB sizes of a memory profile.
    pub fn open_sized(
        path: &Path,
        durability: Durability,
        queue: usize,
        batch_max: usize,
        metrics: Arc<dyn LogMetrics>,
        on_commit: CommitHook,
        sizes: LogSizes,
    ) -> Result<MessageLog, LogError> {
        let db = Arc::new(DB::open_cf_descriptors(
            &db_options_sized(sizes),
            path,
            column_families_sized(sizes),
        )?);
        let slot = Arc::new(DbSlot(parking_lot::RwLock::new(Some(Arc::clone(&db)))));
        let writable = Arc::new(AtomicBool::new(true));
        let (tx, rx) = mpsc::channel(queue);
        let writer = Writer {
            db,
            durability,
            batch_max,
            heads: HashMap::new(),
            metrics,
            on_commit,
            slot: Arc::clone(&slot),
            path: path.to_path_buf(),
            writable: Arc::clone(&writable),
            failure: None,
            sizes,
            times: BatchTimes::default(),
        };
        let handle = std::thread::Builder::new()
            .name("kefu-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::Corrupt(format!("cannot start writer thread: {e}")))?;
        Ok(MessageLog {
            db: slot,
            tx,
            closed: AtomicBool::new(false),
            writable,
            writer: parking_lot::Mutex::new(Some(handle)),
        })
    }

    /// Appends a message and waits until it is durable (or found to be a
    /// duplicate). Waits for room when the writer's queue is full.
    pub async fn append(&self, draft: Draft, origin: Option<u64>) -> Result<Appended, LogError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        let command = Command::Append(Request {
            draft,
            origin,
            reply,
            queued: Instant::now(),
        });
        // Room in the queue is the common case: no send future then (it
        // would hold the command and a semaphore wait in every append's
        // state, and so in every pending send's allocation).
        match self.tx.try_send(command) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(command)) => Box::pin(self.tx.send(command))
                .await
                .map_err(|_| LogError::Closed)?,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(LogError::Closed),
        }
        let (result, _spent) = answer.await.map_err(|_| LogError::Closed)?;
        result
    }

    /// Stops taking appends, lets the writer finish what it has, waits for
    /// it, and closes the database. Appends queued after the stop fail with
    /// `Closed`, reads with `Unavailable`.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.tx.send(Command::Stop).await;
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        if let Ok(db) = self.db.get() {
            let _ = db.flush_wal(true);
        }
        // Close the database (and free its LOCK) now, whoever still holds
        // the log: background tasks notice the shutdown in their own time,
        // and a restart in the same process, `doctor` or a backup restore
        // may open the store as soon as the server has stopped.
        let taken = self.db.0.write().take();
        if let Some(db) = taken {
            let _ = tokio::task::spawn_blocking(move || {
                drop(sole_handle(db, Duration::from_secs(5)));
            })
            .await;
        }
    }

    pub fn head(&self, conversation: ConversationId) -> Result<Option<Head>, LogError> {
        read_head(&*self.db.get()?, conversation)
    }

    pub fn get(
        &self,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<Option<StoredMessage>, LogError> {
        let db = self.db.get()?;
        let cf = cf(&db, CF_MSG)?;
        match db.get_pinned_cf(cf, keys::msg_key(conversation, seq))? {
            Some(value) => Ok(Some(StoredMessage::from_value(conversation, seq, &value)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` messages of a conversation, ascending by seq.
    /// With `before`, the newest ones below it (for paging back);
    /// otherwise the oldest ones above `after`. Notes are skipped unless
    /// `include_notes`, and skipping one does not shorten the page.
    pub fn page(
        &self,
        conversation: ConversationId,
        after: u64,
        before: Option<u64>,
        limit: usize,
        include_notes: bool,
    ) -> Result<Vec<StoredMessage>, LogError> {
        let db = self.db.get()?;
        let cf = cf(&db, CF_MSG)?;
        let mut options = ReadOptions::default();
        options
            .set_iterate_lower_bound(keys::msg_key(conversation, after.saturating_add(1)).to_vec());
        let upper = match before {
            Some(before) => keys::msg_key(conversation, before).to_vec(),
            // The next conversation's first key: conv ++ 8 bytes is a full
            // key, so bounding by conv+1 is needed; ULIDs of all 0xFF
            // do not occur, but be exact anyway.
            None => next_prefix(&conversation.to_bytes()),
        };
        options.set_iterate_upper_bound(upper);
        let backwards = before.is_some();
        let mode = if backwards {
            IteratorMode::End
        } else {
            IteratorMode::Start
        };
        let mut out = Vec::with_capacity(limit.min(256));
        for item in db.iterator_cf_opt(cf, options, mode) {
            let (key, value) = item?;
            let Some((conv, seq)) = keys::parse_msg_key(&key) else {
                continue;
            };
            if conv != conversation {
                continue;
            }
            let message = StoredMessage::from_value(conv, seq, &value)?;
            if message.note && !include_notes {
                continue;
            }
            out.push(message);
            if out.len() >= limit {
                break;
            }
        }
        if backwards {
            out.reverse();
        }
        Ok(out)
    }

    /// Every conversation head in the log: what SQLite's derived columns are
    /// rebuilt from at start.
    pub fn heads(&self) -> Result<Vec<(ConversationId, Head)>, LogError> {
        let db = self.db.get()?;
        let cf = cf(&db, CF_HEAD)?;
        let mut out = Vec::new();
        for item in db.iterator_cf(cf, IteratorMode::From(&[], Direction::Forward)) {
            let (key, value) = item?;
            let key: [u8; 16] = key
                .as_ref()
                .try_into()
                .map_err(|_| LogError::Corrupt("conv_head key length".into()))?;
            let (last_seq, last_at) = keys::parse_head_value(&value)
                .ok_or_else(|| LogError::Corrupt("conv_head value".into()))?;
            out.push((ConversationId::from_bytes(key), Head { last_seq, last_at }));
        }
        Ok(out)
    }

    /// Every `conv_start` marker in the log, in key order (by conversation,
    /// then seq): the starts not yet committed to SQLite.
    pub fn pending_starts(&self) -> Result<Vec<(ConversationId, u64)>, LogError> {
        let db = self.db.get()?;
        let cf = cf(&db, CF_START)?;
        let mut out = Vec::new();
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (key, _) = item?;
            let parsed = keys::parse_msg_key(&key)
                .ok_or_else(|| LogError::Corrupt("conv_start key length".into()))?;
            out.push(parsed);
        }
        Ok(out)
    }

    /// Deletes `conv_start` markers once their starts are committed. Not
    /// synced: a delete lost in a crash makes the start run again at
    /// start-up, where it changes nothing (`conversations.start_seq`).
    /// Blocking (a RocksDB write may wait for another's sync): call it
    /// from a blocking thread.
    pub fn clear_starts(&self, starts: &[(ConversationId, u64)]) -> Result<(), LogError> {
        let db = self.db.get()?;
        let cf = cf(&db, CF_START)?;
        let mut write = WriteBatch::default();
        for (conversation, seq) in starts {
            write.delete_cf(cf, keys::start_key(*conversation, *seq));
        }
        db.write(write)?;
        Ok(())
    }

    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// A consistent copy of the log in `path` (which must not exist), taken
    /// while it serves: RocksDB's checkpoint (SST files hard-linked when on
    /// the same file system, the WAL copied). For `ops::backup`.
    pub fn checkpoint(&self, path: &Path) -> Result<(), LogError> {
        let db = self.db.get()?;
        rocksdb::checkpoint::Checkpoint::new(&*db)?.create_checkpoint(path)?;
        Ok(())
    }

    /// RocksDB's sequence number of the last write: the replication
    /// cursor (`lan::replication`). A standby that applied every batch up
    /// to it has the same log.
    pub fn latest_sequence(&self) -> Result<u64, LogError> {
        Ok(self.db.get()?.latest_sequence_number())
    }

    /// The write batches after sequence `after`, as RocksDB wrote them to
    /// its WAL, each with its first sequence number, oldest first, until
    /// about `max_bytes` (at least one batch when there is one). RocksDB
    /// skips ahead silently when the WAL holding `after + 1` is gone: the
    /// caller checks that the first batch starts at `after + 1` (see
    /// `lan::replication`). Nothing after the last write: empty.
    pub fn wal_batches_after(
        &self,
        after: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        let db = self.db.get()?;
        if after >= db.latest_sequence_number() {
            return Ok(Vec::new());
        }
        let mut batches = Vec::new();
        let mut bytes = 0;
        for item in db.get_updates_since(after)? {
            let (seq, batch) = item?;
            bytes += batch.data().len();
            batches.push((seq, batch.data().to_vec()));
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(batches)
    }

    /// False while the log cannot write (a full disk): sends are refused
    /// with [`LogError::Unavailable`] until the writer recovers.
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    /// Commands waiting for the writer thread (`limits.writer_queue` at
    /// most; at the bound, senders wait): for `/metrics`.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

impl Drop for MessageLog {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.tx.try_send(Command::Stop);
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }
}

/// Waits until `db` is the last handle of its database (readers hold one
/// for a call each) and returns it; gives it back after `wait` otherwise.
fn sole_handle(mut db: Arc<DB>, wait: Duration) -> Result<DB, Arc<DB>> {
    let deadline = Instant::now() + wait;
    loop {
        match Arc::try_unwrap(db) {
            Ok(db) => return Ok(db),
            Err(shared) if Instant::now() >= deadline => return Err(shared),
            Err(shared) => {
                db = shared;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

fn next_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < 0xFF {
            next.push(last + 1);
            return next;
        }
    }
    // All 0xFF: no upper bound short of the end; use a longer max key.
    vec![0xFF; keys::MSG_KEY_LEN + 1]
}

fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, LogError> {
    db.cf_handle(name)
        .ok_or_else(|| LogError::Corrupt(format!("missing column family {name}")))
}

fn read_head(db: &DB, conversation: ConversationId) -> Result<Option<Head>, LogError> {
    let cf = cf(db, CF_HEAD)?;
    match db.get_pinned_cf(cf, keys::head_key(conversation))? {
        Some(value) => {
            let (last_seq, last_at) = keys::parse_head_value(&value)
                .ok_or_else(|| LogError::Corrupt("conv_head value".into()))?;
            Ok(Some(Head { last_seq, last_at }))
        }
        None => Ok(None),
    }
}

fn now_ms() -> i64 {
    crate::time::now_ms()
}

/// A log error as the client sees it: shutting down and a full disk are
/// `unavailable` (retry later); anything else is internal. Here rather than
/// in `error`, so that the error type depends on no store.
impl From<LogError> for crate::error::ApiError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Closed => {
                crate::error::ApiError::Unavailable("server is shutting down".into())
            }
            LogError::Unavailable(why) => crate::error::ApiError::Unavailable(why),
            other => crate::error::ApiError::Internal(other.into()),
        }
    }
}
