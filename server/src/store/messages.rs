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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, Direction,
    IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
};
use serde_json::Value;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::keys::{self, CF_DEDUP, CF_HEAD, CF_MSG, CF_START, FLAG_NOTE};
use super::memory::{LogSizes, MemoryProfile};
use crate::config::Durability;
use crate::ids::{ConversationId, MessageId};
use crate::message::{Message, MessageKind, Sender};

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
    /// When it was queued, for [`LogMetrics::send_timed`].
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
    /// Where one send's time in the log went, called for each send of a
    /// written batch (so that quantiles are the sends', as its sender
    /// sees them): `queued`, from its enqueue to the start of its batch
    /// (mostly the batches before it); `write`, its batch's RocksDB write
    /// (the WAL append, its sync in `fsync` durability, the memtable
    /// inserts), `None` when the batch wrote nothing (only resends);
    /// `answered`, from its enqueue to its answer (the two, its batch's
    /// planning and the publishing of its messages).
    fn send_timed(&self, _queued: f64, _write: Option<f64>, _answered: f64) {}
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

/// RocksDB options shared by the log and by the storage baseline of the
/// bench, so that the baseline measures exactly what the log runs on.
pub fn db_options() -> Options {
    db_options_sized(MemoryProfile::Server.log())
}

/// [`db_options`] for a memory profile (crate::store::memory).
pub fn db_options_sized(sizes: LogSizes) -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.increase_parallelism(sizes.background_jobs);
    options.set_max_background_jobs(sizes.background_jobs);
    options.set_compression_type(DBCompressionType::Lz4);
    options.set_keep_log_file_num(4);
    options.set_max_total_wal_size(sizes.max_total_wal_bytes);
    options
}

/// The log's column families with their options (one block cache for
/// all), shared with the bench's storage baseline like [`db_options`].
pub fn column_families() -> Vec<ColumnFamilyDescriptor> {
    column_families_sized(MemoryProfile::Server.log())
}

/// [`column_families`] for a memory profile (crate::store::memory).
pub fn column_families_sized(sizes: LogSizes) -> Vec<ColumnFamilyDescriptor> {
    let cache = Cache::new_lru_cache(sizes.block_cache_bytes);
    vec![
        ColumnFamilyDescriptor::new(CF_MSG, cf_options(&cache, false, sizes)),
        ColumnFamilyDescriptor::new(CF_DEDUP, cf_options(&cache, true, sizes)),
        ColumnFamilyDescriptor::new(CF_HEAD, cf_options(&cache, true, sizes)),
        ColumnFamilyDescriptor::new(CF_START, cf_options(&cache, false, sizes)),
    ]
}

fn cf_options(cache: &Cache, bloom: bool, sizes: LogSizes) -> Options {
    let mut block = BlockBasedOptions::default();
    block.set_block_cache(cache);
    if sizes.cache_index_and_filter_blocks {
        block.set_cache_index_and_filter_blocks(true);
        block.set_pin_l0_filter_and_index_blocks_in_cache(true);
    }
    if bloom {
        block.set_bloom_filter(10.0, false);
    }
    let mut options = Options::default();
    options.set_compression_type(DBCompressionType::Lz4);
    options.set_block_based_table_factory(&block);
    options.set_write_buffer_size(sizes.write_buffer_bytes);
    if bloom {
        // Point reads also get a bloom filter in the memtable: every new
        // message looks its dedup key up, and without one the miss is a
        // skip-list search (≈ 17 % of the writer thread's CPU). 2 % of the
        // 32 MiB buffer is 640 KiB, ~13 bits per key when the memtable is full.
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(0.02);
    }
    options
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

/// Whether the disk under the log has room for a reopen: its WAL files
/// (what the reopen replays and flushes, compressed) plus a margin.
#[cfg(unix)]
fn room_to_reopen(path: &Path) -> bool {
    let Ok(stat) = rustix::fs::statvfs(path) else {
        return false;
    };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    free >= wal_bytes(path).saturating_add(REOPEN_MARGIN_BYTES)
}

/// On Windows, `GetDiskFreeSpaceExW` through `fs4` (the room the caller
/// may use, like `f_bavail`). Without it, recovery was RocksDB's own resume
/// alone (64 MiB free), and a smaller disk never recovered.
#[cfg(windows)]
fn room_to_reopen(path: &Path) -> bool {
    let Ok(free) = fs4::available_space(path) else {
        return false;
    };
    free >= wal_bytes(path).saturating_add(REOPEN_MARGIN_BYTES)
}

/// The size of the WAL files in the log's directory.
#[cfg(any(unix, windows))]
fn wal_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Elsewhere there is no free-space query: recovery is RocksDB's own resume
/// alone (64 MiB free).
#[cfg(not(any(unix, windows)))]
fn room_to_reopen(_path: &Path) -> bool {
    false
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

/// Heads cached by the writer; cleared past this many to stay bounded (the
/// CF is the truth, a miss costs one point read).
const HEAD_CACHE_MAX: usize = 200_000;

struct Writer {
    db: Arc<DB>,
    durability: Durability,
    batch_max: usize,
    heads: HashMap<ConversationId, Head>,
    metrics: Arc<dyn LogMetrics>,
    on_commit: CommitHook,
    // ---- write failures and recovery (see the module doc) ----
    /// The readers' handle of the database, emptied during a reopen.
    slot: Arc<DbSlot>,
    /// Where the database lives, to reopen it.
    path: PathBuf,
    /// Shared with [`MessageLog::is_writable`].
    writable: Arc<AtomicBool>,
    /// Set while the log cannot write.
    failure: Option<Failure>,
    /// RocksDB sizes, to reopen with the same.
    sizes: LogSizes,
}

/// The writer's state while the log cannot write.
struct Failure {
    since: Instant,
    /// Each conversation of a batch that failed, with its head before that
    /// batch: what was acknowledged. A failed write that still reached the
    /// WAL whole (an error after the append) comes back when the database
    /// is reopened, and is then published (see [`Writer::publish_found`]).
    suspects: HashMap<ConversationId, u64>,
    /// When the next recovery attempt is due.
    next_try: Instant,
    /// The pause after a reopen that did not make the log writable,
    /// doubled each time up to [`REOPEN_PAUSE_MAX`].
    reopen_pause: Duration,
}

/// How often the writer checks, while the log cannot write, whether it
/// can again (a one-key write: cheap, and it bounds the time to recover).
const RECOVERY_POLL: Duration = Duration::from_millis(200);
/// The first pause after a reopen that did not help, and the longest.
const REOPEN_PAUSE_MIN: Duration = Duration::from_secs(1);
const REOPEN_PAUSE_MAX: Duration = Duration::from_secs(30);
/// Room a reopen needs on top of the WAL it replays (the memtables it
/// flushes are at most that, compressed): a new MANIFEST, OPTIONS file,
/// WAL and info log lines.
#[cfg(any(unix, windows))]
const REOPEN_MARGIN_BYTES: u64 = 8 << 20;
/// How long a reopen waits for readers still holding the old database
/// (each holds it for one call) before it gives up until the next try.
const REOPEN_READERS_WAIT: Duration = Duration::from_secs(5);
/// The key of the recovery probe, in the default column family (which
/// holds nothing else): writing it tells whether RocksDB accepts writes.
const PROBE_KEY: &[u8] = b"kefu.writable-probe";

/// What the writer decided for one request of a batch.
enum Outcome {
    New(Arc<StoredMessage>),
    Existing(Arc<StoredMessage>),
    /// Same conversation, sender and client_msg_id as an earlier request of
    /// this batch: answered with that one's result.
    SameAs(usize),
    Failed(LogError),
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut batch: Vec<Request> = Vec::with_capacity(self.batch_max);
        let mut stop = false;
        while !stop {
            let first = if self.failure.is_none() {
                rx.blocking_recv()
            } else {
                // Unwritable: wake up now and then to try to recover, even
                // when nothing is sent.
                loop {
                    match rx.try_recv() {
                        Ok(command) => break Some(command),
                        Err(TryRecvError::Disconnected) => break None,
                        Err(TryRecvError::Empty) => {}
                    }
                    if self
                        .failure
                        .as_ref()
                        .is_some_and(|f| Instant::now() >= f.next_try)
                    {
                        self = match self.try_recover(&mut rx) {
                            Some(writer) => writer,
                            // Stopped while the database was closed.
                            None => return,
                        };
                        if self.failure.is_none() {
                            break rx.blocking_recv();
                        }
                    }
                    std::thread::sleep(RECOVERY_POLL);
                }
            };
            match first {
                Some(Command::Append(request)) => batch.push(request),
                Some(Command::Stop) | None => break,
            }
            while batch.len() < self.batch_max {
                match rx.try_recv() {
                    Ok(Command::Append(request)) => batch.push(request),
                    Ok(Command::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if self.failure.is_some() {
                // One probe before refusing: RocksDB may have resumed. No
                // seq is handed out for a batch that cannot be written.
                if self.probe().is_ok() {
                    self.recovered("writes accepted again");
                } else {
                    self.refuse(&mut batch);
                    continue;
                }
            }
            self.write_batch(&mut batch);
        }
        // Anything still queued after Stop is dropped: its callers get Closed.
    }

    // ---- write failures and recovery ------------------------------------

    /// Notes a failed batch write: the first one turns the log unwritable
    /// and is logged (once: later refusals are counted, not logged); its
    /// new messages become suspects (see [`Failure::suspects`]).
    fn write_failed(&mut self, error: &LogError, outcomes: &[Outcome], batch: &[Request]) {
        self.metrics.write_failed();
        if self.failure.is_none() {
            tracing::error!(%error, "the message log cannot write; sends are refused (503) until it recovers");
            self.writable.store(false, Ordering::Release);
            self.metrics.writable(false);
        }
        let now = Instant::now();
        let failure = self.failure.get_or_insert_with(|| Failure {
            since: now,
            suspects: HashMap::new(),
            next_try: now + RECOVERY_POLL,
            reopen_pause: REOPEN_PAUSE_MIN,
        });
        for (outcome, request) in outcomes.iter().zip(batch) {
            if let Outcome::New(message) = outcome {
                let before = message.seq.saturating_sub(1);
                let suspect = failure
                    .suspects
                    .entry(request.draft.conversation_id)
                    .or_insert(before);
                *suspect = (*suspect).min(before);
            }
        }
    }

    /// Refuses a whole batch while the log cannot write.
    fn refuse(&self, batch: &mut Vec<Request>) {
        self.metrics.write_failed();
        for request in batch.drain(..) {
            let _ = request.reply.send((Err(unwritable()), request.draft));
        }
    }

    /// Writes the probe key as a send would be written.
    fn probe(&self) -> Result<(), rocksdb::Error> {
        let mut options = WriteOptions::default();
        options.set_sync(self.durability == Durability::Fsync);
        self.db.put_opt(PROBE_KEY, [], &options)
    }

    /// Back to writable: said once, with how long it took; then whatever a
    /// reopen brought back is published.
    fn recovered(&mut self, how: &str) {
        let Some(failure) = self.failure.take() else {
            return;
        };
        self.writable.store(true, Ordering::Release);
        self.metrics.writable(true);
        tracing::warn!(
            unwritable_ms = failure.since.elapsed().as_millis() as u64,
            how,
            "the message log is writable again"
        );
        self.publish_found(failure.suspects);
    }

    /// Publishes messages of failed batches that the log holds after all
    /// (above the head acknowledged before the failure), in seq order, as
    /// if just committed: subscribers then never miss one. Their senders
    /// were told the send failed; a resend finds them by `client_msg_id`.
    fn publish_found(&mut self, suspects: HashMap<ConversationId, u64>) {
        let mut found: Vec<(Arc<StoredMessage>, Option<u64>)> = Vec::new();
        for (conversation, acknowledged) in suspects {
            let head = match read_head(&self.db, conversation) {
                Ok(head) => head.map_or(0, |h| h.last_seq),
                Err(error) => {
                    tracing::error!(%error, %conversation, "cannot read a head after recovery");
                    continue;
                }
            };
            for seq in acknowledged + 1..=head {
                let read = cf(&self.db, CF_MSG).and_then(|msg_cf| {
                    match self
                        .db
                        .get_pinned_cf(msg_cf, keys::msg_key(conversation, seq))?
                    {
                        Some(value) => {
                            StoredMessage::from_value(conversation, seq, &value).map(Some)
                        }
                        None => Ok(None),
                    }
                });
                match read {
                    Ok(Some(mut message)) => {
                        // Its start marker came back with it, if it had one.
                        message.start = cf(&self.db, CF_START)
                            .and_then(|start_cf| {
                                Ok(self
                                    .db
                                    .get_pinned_cf(start_cf, keys::start_key(conversation, seq))?)
                            })
                            .is_ok_and(|marker| marker.is_some());
                        found.push((Arc::new(message), None));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(%error, %conversation, seq, "cannot read a recovered message")
                    }
                }
            }
        }
        if !found.is_empty() {
            tracing::warn!(
                messages = found.len(),
                "messages of a failed write were found in the log after it reopened; published now"
            );
            (self.on_commit)(&found);
        }
    }

    /// One recovery attempt (see the module doc). RocksDB resumes writes by
    /// itself after a full disk once a write buffer's worth of space (64 MiB
    /// here) is free again; short of that its error stays. So: probe, and
    /// if RocksDB still refuses, reopen the database once the disk has room
    /// for the reopen (its WAL replayed and flushed): a reopen clears the
    /// error whatever RocksDB's own threshold. Returns `None` only when the
    /// log was stopped while the database was closed.
    fn try_recover(mut self, rx: &mut mpsc::Receiver<Command>) -> Option<Writer> {
        if self.probe().is_ok() {
            self.recovered("RocksDB resumed writes");
            return Some(self);
        }
        if !room_to_reopen(&self.path) {
            if let Some(failure) = self.failure.as_mut() {
                failure.next_try = Instant::now() + RECOVERY_POLL;
            }
            return Some(self);
        }
        self.reopen(rx)
    }

    /// Closes the database and opens it again, inside the writer thread:
    /// the WAL is replayed (a record torn by the failed write is dropped,
    /// as after a crash) and the memtables flushed, which clears RocksDB's
    /// sticky error. Readers get `Unavailable` meanwhile. While the
    /// database cannot be opened, sends are refused as they come.
    fn reopen(self, rx: &mut mpsc::Receiver<Command>) -> Option<Writer> {
        tracing::info!("reopening the message log to recover from the write error");
        let slot = Arc::clone(&self.slot);
        let path = self.path.clone();
        let pause = self
            .failure
            .as_ref()
            .map_or(REOPEN_PAUSE_MIN, |f| f.reopen_pause);
        slot.set(None);
        // RocksDB allows one open instance per directory: every handle of
        // the old one must be gone before the new one opens.
        let old = match sole_handle(self.db, REOPEN_READERS_WAIT) {
            Ok(old) => old,
            Err(shared) => {
                slot.set(Some(Arc::clone(&shared)));
                let mut writer = Writer { db: shared, ..self };
                writer.after_failed_reopen(pause);
                return Some(writer);
            }
        };
        drop(old);
        let mut wait = pause;
        loop {
            match DB::open_cf_descriptors(
                &db_options_sized(self.sizes),
                &path,
                column_families_sized(self.sizes),
            ) {
                Ok(db) => {
                    let db = Arc::new(db);
                    slot.set(Some(Arc::clone(&db)));
                    // Heads are read again from the reopened log.
                    let mut writer = Writer {
                        db,
                        heads: HashMap::new(),
                        ..self
                    };
                    if writer.probe().is_ok() {
                        writer.recovered("reopened");
                    } else {
                        writer.after_failed_reopen(pause);
                    }
                    return Some(writer);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot reopen the message log yet");
                    // No database: answer what comes, then try again.
                    let until = Instant::now() + wait;
                    while Instant::now() < until {
                        match rx.try_recv() {
                            Ok(Command::Append(request)) => {
                                self.metrics.write_failed();
                                let _ = request.reply.send((Err(unwritable()), request.draft));
                            }
                            Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return None,
                            Err(TryRecvError::Empty) => std::thread::sleep(RECOVERY_POLL),
                        }
                    }
                    wait = (wait * 2).min(REOPEN_PAUSE_MAX);
                }
            }
        }
    }

    /// A reopen that did not make the log writable: wait longer next time.
    fn after_failed_reopen(&mut self, pause: Duration) {
        if let Some(failure) = self.failure.as_mut() {
            failure.next_try = Instant::now() + pause;
            failure.reopen_pause = (pause * 2).min(REOPEN_PAUSE_MAX);
        }
    }

    fn write_batch(&mut self, batch: &mut Vec<Request>) {
        let started = Instant::now();
        let mut write_time = Duration::ZERO;
        let mut puts = SortedPuts::default();
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut touched: HashMap<ConversationId, Head> = HashMap::new();

        for (index, request) in batch.iter_mut().enumerate() {
            let outcome = self.plan(
                &mut request.draft,
                index,
                &mut puts,
                &mut seen,
                &mut touched,
            );
            outcomes.push(outcome);
        }

        let new_count = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::New(_)))
            .count();
        if new_count > 0 {
            let mut options = WriteOptions::default();
            options.set_sync(self.durability == Durability::Fsync);
            let written = puts.into_batch(&self.db, &touched).and_then(|write| {
                let writing = Instant::now();
                let written = self.db.write_opt(write, &options);
                write_time = writing.elapsed();
                Ok(written?)
            });
            if let Err(error) = written {
                // Nothing of this batch was acknowledged: forget the seqs
                // handed out (heads are read again from the log), and stop
                // writing until the log recovers.
                for conv in touched.keys() {
                    self.heads.remove(conv);
                }
                self.write_failed(&error, &outcomes, batch);
                for outcome in outcomes.iter_mut() {
                    if matches!(outcome, Outcome::New(_)) {
                        *outcome = Outcome::Failed(unwritable());
                    }
                }
            } else {
                self.heads.extend(touched);
                if self.heads.len() > HEAD_CACHE_MAX {
                    self.heads.clear();
                }
            }
        }

        // Publish the new messages in commit order before answering.
        let committed: Vec<(Arc<StoredMessage>, Option<u64>)> = outcomes
            .iter()
            .zip(batch.iter())
            .filter_map(|(outcome, request)| match outcome {
                Outcome::New(message) => Some((Arc::clone(message), request.origin)),
                _ => None,
            })
            .collect();
        if !committed.is_empty() {
            (self.on_commit)(&committed);
        }

        let duplicates = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Existing(_) | Outcome::SameAs(_)))
            .count();
        let resolved: Vec<Result<Appended, LogError>> = (0..outcomes.len())
            .map(|index| resolve(&outcomes, index))
            .collect();
        let answered = Instant::now();
        for (request, answer) in batch.drain(..).zip(resolved) {
            self.metrics.send_timed(
                started
                    .saturating_duration_since(request.queued)
                    .as_secs_f64(),
                (new_count > 0).then_some(write_time.as_secs_f64()),
                answered
                    .saturating_duration_since(request.queued)
                    .as_secs_f64(),
            );
            let _ = request.reply.send((answer, request.draft));
        }
        self.metrics.batch_written(
            new_count + duplicates,
            duplicates,
            started.elapsed().as_secs_f64(),
        );
    }

    fn head_of(
        &mut self,
        conversation: ConversationId,
        touched: &HashMap<ConversationId, Head>,
    ) -> Result<Head, LogError> {
        if let Some(head) = touched
            .get(&conversation)
            .or_else(|| self.heads.get(&conversation))
        {
            return Ok(*head);
        }
        let head = read_head(&self.db, conversation)?.unwrap_or(Head {
            last_seq: 0,
            last_at: 0,
        });
        self.heads.insert(conversation, head);
        Ok(head)
    }

    /// Decides one request. A new message borrows its fields from `draft`
    /// by moving them out for serialization and back in afterwards, rather
    /// than copying them.
    fn plan(
        &mut self,
        draft: &mut Draft,
        index: usize,
        puts: &mut SortedPuts,
        seen: &mut HashMap<Vec<u8>, usize>,
        touched: &mut HashMap<ConversationId, Head>,
    ) -> Outcome {
        let dedup_key = draft
            .client_msg_id
            .as_deref()
            .map(|id| keys::dedup_key(draft.conversation_id, draft.sender_key, id));
        if let Some(key) = &dedup_key {
            if let Some(&first) = seen.get(key) {
                return Outcome::SameAs(first);
            }
            match self.find_existing(draft.conversation_id, key) {
                Ok(Some(existing)) => return Outcome::Existing(Arc::new(existing)),
                Ok(None) => {}
                Err(error) => return Outcome::Failed(error),
            }
        }
        let head = match self.head_of(draft.conversation_id, touched) {
            Ok(head) => head,
            Err(error) => return Outcome::Failed(error),
        };
        let seq = head.last_seq + 1;
        // Times never go backwards within a conversation, whatever the clock does.
        let created_at = now_ms().max(head.last_at);
        let empty_sender = Sender {
            kind: draft.sender.kind,
            id: String::new(),
            name: String::new(),
        };
        let message = Message {
            id: MessageId::new(),
            conversation_id: draft.conversation_id,
            seq,
            client_msg_id: draft.client_msg_id.take(),
            kind: draft.kind,
            sender: std::mem::replace(&mut draft.sender, empty_sender),
            content: std::mem::take(&mut draft.content),
            meta: draft.meta.take(),
            attachment: draft.attachment.take(),
            created_at,
        };
        let note = draft.kind == MessageKind::Note;
        // The stored value is the header and the JSON, written in place.
        let mut value = keys::msg_value_header(
            if note { FLAG_NOTE } else { 0 },
            created_at,
            message.content.len() + 256,
        );
        let serialized = serde_json::to_writer(&mut value, &message);
        // The draft's buffers go back to the draft, to be freed by the
        // appending thread that allocated them: freed here, each would take
        // that thread's malloc arena lock, and the writer was seen sleeping
        // on it (glibc frees a chunk into the arena it came from).
        draft.client_msg_id = message.client_msg_id;
        draft.sender = message.sender;
        draft.content = message.content;
        draft.meta = message.meta;
        draft.attachment = message.attachment;
        if let Err(error) = serialized {
            return Outcome::Failed(LogError::Corrupt(error.to_string()));
        }
        let Some((_, _, json)) = keys::split_msg_value(&value) else {
            return Outcome::Failed(LogError::Corrupt("short msg value".into()));
        };
        // serde_json writes UTF-8 only.
        let json: Arc<str> = match std::str::from_utf8(json) {
            Ok(json) => Arc::from(json),
            Err(error) => return Outcome::Failed(LogError::Corrupt(error.to_string())),
        };
        puts.msg
            .push((keys::msg_key(draft.conversation_id, seq), value));
        if let Some(key) = dedup_key {
            puts.dedup.push((key.clone(), seq.to_be_bytes()));
            seen.insert(key, index);
        }
        if draft.start {
            puts.start.push(keys::start_key(draft.conversation_id, seq));
        }
        // The conversation's head is put once per batch, from `touched`.
        touched.insert(
            draft.conversation_id,
            Head {
                last_seq: seq,
                last_at: created_at,
            },
        );
        Outcome::New(Arc::new(StoredMessage {
            conversation_id: draft.conversation_id,
            seq,
            note,
            created_at,
            json,
            start: draft.start,
        }))
    }

    fn find_existing(
        &self,
        conversation: ConversationId,
        key: &[u8],
    ) -> Result<Option<StoredMessage>, LogError> {
        let dedup_cf = cf(&self.db, CF_DEDUP)?;
        let Some(value) = self.db.get_pinned_cf(dedup_cf, key)? else {
            return Ok(None);
        };
        let seq = keys::parse_seq(&value).ok_or_else(|| LogError::Corrupt("dedup value".into()))?;
        let msg_cf = cf(&self.db, CF_MSG)?;
        let value = self
            .db
            .get_pinned_cf(msg_cf, keys::msg_key(conversation, seq))?
            .ok_or_else(|| LogError::Corrupt(format!("dedup entry points at missing seq {seq}")))?;
        StoredMessage::from_value(conversation, seq, &value).map(Some)
    }
}

/// One batch's puts, written per column family in key order. RocksDB's
/// memtable is a skip list that inserts a key next to the previous one
/// cheaply, whereas keys in arrival order (random conversations: ULIDs)
/// each search from the top: that search was ~13.5 % of the server's CPU.
/// Sorting cannot change what is stored: every key of a batch is distinct
/// (message keys by seq, dedup keys by `seen`, one head per conversation).
#[derive(Default)]
struct SortedPuts {
    msg: Vec<([u8; keys::MSG_KEY_LEN], Vec<u8>)>,
    dedup: Vec<(Vec<u8>, [u8; 8])>,
    start: Vec<[u8; keys::MSG_KEY_LEN]>,
}

impl SortedPuts {
    fn into_batch(
        mut self,
        db: &DB,
        heads: &HashMap<ConversationId, Head>,
    ) -> Result<WriteBatch, LogError> {
        let (msg_cf, dedup_cf, head_cf) = (cf(db, CF_MSG)?, cf(db, CF_DEDUP)?, cf(db, CF_HEAD)?);
        let start_cf = cf(db, CF_START)?;
        self.msg.sort_unstable_by_key(|a| a.0);
        self.dedup.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut heads: Vec<([u8; keys::CONV_LEN], [u8; 16])> = heads
            .iter()
            .map(|(conversation, head)| {
                (
                    keys::head_key(*conversation),
                    keys::head_value(head.last_seq, head.last_at),
                )
            })
            .collect();
        heads.sort_unstable_by_key(|a| a.0);
        let mut write = WriteBatch::default();
        for (key, value) in &self.msg {
            write.put_cf(msg_cf, key, value);
        }
        for (key, value) in &self.dedup {
            write.put_cf(dedup_cf, key, value);
        }
        for (key, value) in &heads {
            write.put_cf(head_cf, key, value);
        }
        self.start.sort_unstable();
        for key in &self.start {
            write.put_cf(start_cf, key, []);
        }
        Ok(write)
    }
}

fn resolve(outcomes: &[Outcome], index: usize) -> Result<Appended, LogError> {
    match &outcomes[index] {
        Outcome::New(message) => Ok(Appended {
            message: Arc::clone(message),
            duplicate: false,
        }),
        Outcome::Existing(message) => Ok(Appended {
            message: Arc::clone(message),
            duplicate: true,
        }),
        Outcome::SameAs(first) => resolve(outcomes, *first).map(|appended| Appended {
            duplicate: true,
            ..appended
        }),
        Outcome::Failed(error) => Err(error.for_another()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SenderType;

    struct NoMetrics;
    impl LogMetrics for NoMetrics {
        fn batch_written(&self, _: usize, _: usize, _: f64) {}
    }

    fn draft(conv: ConversationId, cmid: &str, kind: MessageKind) -> Draft {
        Draft {
            conversation_id: conv,
            sender: Sender {
                kind: SenderType::Visitor,
                id: "v".into(),
                name: "V".into(),
            },
            sender_key: [7; 16],
            client_msg_id: Some(cmid.into()),
            kind,
            content: format!("content {cmid}"),
            meta: serde_json::json!({}),
            attachment: None,
            start: false,
        }
    }

    fn open(dir: &Path) -> MessageLog {
        MessageLog::open(
            dir,
            Durability::Os,
            64,
            16,
            Arc::new(NoMetrics),
            Box::new(|_| {}),
        )
        .expect("open")
    }

    #[tokio::test]
    async fn seq_dedup_paging_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conv = ConversationId::new();
        {
            let log = open(dir.path());
            for i in 1..=10 {
                let kind = if i % 3 == 0 {
                    MessageKind::Note
                } else {
                    MessageKind::Text
                };
                let appended = log
                    .append(draft(conv, &format!("c{i}"), kind), None)
                    .await
                    .expect("append");
                assert_eq!(appended.message.seq, i);
                assert!(!appended.duplicate);
            }
            let again = log
                .append(draft(conv, "c4", MessageKind::Text), None)
                .await
                .expect("dup");
            assert!(again.duplicate);
            assert_eq!(again.message.seq, 4);
            // Same client id in another conversation is another message.
            let other = ConversationId::new();
            let fresh = log
                .append(draft(other, "c4", MessageKind::Text), None)
                .await
                .expect("other");
            assert_eq!(fresh.message.seq, 1);
            assert!(!fresh.duplicate);

            let all = log.page(conv, 0, None, 100, true).expect("page");
            assert_eq!(
                all.iter().map(|m| m.seq).collect::<Vec<_>>(),
                (1..=10).collect::<Vec<_>>()
            );
            let visible = log.page(conv, 0, None, 4, false).expect("page");
            assert_eq!(
                visible.iter().map(|m| m.seq).collect::<Vec<_>>(),
                vec![1, 2, 4, 5]
            );
            let after = log.page(conv, 7, None, 100, true).expect("page");
            assert_eq!(
                after.iter().map(|m| m.seq).collect::<Vec<_>>(),
                vec![8, 9, 10]
            );
            let before = log.page(conv, 0, Some(8), 3, true).expect("page");
            assert_eq!(
                before.iter().map(|m| m.seq).collect::<Vec<_>>(),
                vec![5, 6, 7]
            );
            assert_eq!(log.page(other, 0, None, 100, true).expect("page").len(), 1);
            log.close().await;
        }
        let log = open(dir.path());
        assert_eq!(log.head(conv).expect("head").map(|h| h.last_seq), Some(10));
        let next = log
            .append(draft(conv, "c11", MessageKind::Text), None)
            .await
            .expect("append");
        assert_eq!(next.message.seq, 11);
        let dup = log
            .append(draft(conv, "c1", MessageKind::Text), None)
            .await
            .expect("dup");
        assert!(dup.duplicate);
        assert_eq!(dup.message.seq, 1);
        let decoded = dup.message.decode().expect("decode");
        assert_eq!(decoded.content, "content c1");
        assert_eq!(log.heads().expect("heads").len(), 2);
    }

    #[tokio::test]
    async fn concurrent_identical_sends_store_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(open(dir.path()));
        let conv = ConversationId::new();
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let log = Arc::clone(&log);
            tasks.push(tokio::spawn(async move {
                log.append(draft(conv, "same", MessageKind::Text), None)
                    .await
            }));
        }
        let mut fresh = 0;
        for task in tasks {
            let appended = task.await.expect("join").expect("append");
            assert_eq!(appended.message.seq, 1);
            if !appended.duplicate {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1);
        assert_eq!(log.page(conv, 0, None, 100, true).expect("page").len(), 1);
    }

    #[tokio::test]
    async fn a_start_marker_is_written_with_its_message_and_kept_until_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conv = ConversationId::new();
        {
            let log = open(dir.path());
            let mut first = draft(conv, "c1", MessageKind::Text);
            first.start = true;
            let appended = log.append(first.clone(), None).await.expect("append");
            assert!(appended.message.start);
            // A resend is a duplicate: no second marker.
            let again = log.append(first, None).await.expect("resend");
            assert!(again.duplicate);
            let next = log
                .append(draft(conv, "c2", MessageKind::Text), None)
                .await
                .expect("append");
            assert!(!next.message.start);
            assert_eq!(log.pending_starts().expect("markers"), [(conv, 1)]);
            log.close().await;
        }
        // Durable with its message: still there after a reopen.
        let log = open(dir.path());
        assert_eq!(log.pending_starts().expect("markers"), [(conv, 1)]);
        log.clear_starts(&[(conv, 1)]).expect("clear");
        assert!(log.pending_starts().expect("markers").is_empty());
        assert_eq!(log.head(conv).expect("head").map(|h| h.last_seq), Some(2));
    }

    #[tokio::test]
    async fn closed_log_refuses_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(dir.path());
        log.close().await;
        let error = log
            .append(draft(ConversationId::new(), "c1", MessageKind::Text), None)
            .await
            .expect_err("closed");
        assert!(matches!(error, LogError::Closed));
    }

    /// A closed log frees its store at once, though other handles of the
    /// log remain (background tasks that have not yet noticed the
    /// shutdown): the same process can open it again, and it holds what
    /// was written.
    #[tokio::test]
    async fn a_closed_log_frees_its_store_for_the_next_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(open(dir.path()));
        let conversation = ConversationId::new();
        log.append(draft(conversation, "c1", MessageKind::Text), None)
            .await
            .expect("append");
        let still_held = Arc::clone(&log);
        log.close().await;
        assert!(matches!(
            still_held.head(conversation),
            Err(LogError::Unavailable(_))
        ));
        let again = open(dir.path());
        assert_eq!(
            again.head(conversation).expect("head").map(|h| h.last_seq),
            Some(1)
        );
        again.close().await;
    }
}
