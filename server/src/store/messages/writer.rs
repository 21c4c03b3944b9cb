//! The log's writer thread: it takes appends from the queue in batches
//! (group commit), decides each (new, duplicate, failed), writes the batch
//! in one `WriteBatch` with the configured durability, publishes the new
//! messages (`on_commit`) and then answers. When a write fails it turns
//! the log unwritable and recovers (RocksDB's resume or a reopen); see the
//! invariants in the parent module's doc.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::super::keys::{self, CF_DEDUP, CF_HEAD, CF_MSG, CF_START, FLAG_NOTE};
use super::super::memory::LogSizes;
use super::options::{column_families_sized, db_options_sized};
use super::{
    Appended, Command, CommitHook, DbSlot, Draft, Head, LogError, LogMetrics, Request,
    StoredMessage, cf, now_ms, read_head, sole_handle, unwritable,
};
use crate::config::Durability;
use crate::ids::{ConversationId, MessageId};
use crate::message::{Message, MessageKind, Sender};

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

/// Heads cached by the writer; cleared past this many to stay bounded (the
/// CF is the truth, a miss costs one point read).
const HEAD_CACHE_MAX: usize = 200_000;

pub(super) struct Writer {
    pub(super) db: Arc<DB>,
    pub(super) durability: Durability,
    pub(super) batch_max: usize,
    pub(super) heads: HashMap<ConversationId, Head>,
    pub(super) metrics: Arc<dyn LogMetrics>,
    pub(super) on_commit: CommitHook,
    // ---- write failures and recovery (see the module doc) ----
    /// The readers' handle of the database, emptied during a reopen.
    pub(super) slot: Arc<DbSlot>,
    /// Where the database lives, to reopen it.
    pub(super) path: PathBuf,
    /// Shared with [`MessageLog::is_writable`].
    pub(super) writable: Arc<AtomicBool>,
    /// Set while the log cannot write.
    pub(super) failure: Option<Failure>,
    /// RocksDB sizes, to reopen with the same.
    pub(super) sizes: LogSizes,
    /// Each batch's per-send times for [`LogMetrics::batch_timed`], the
    /// buffers reused from batch to batch.
    pub(super) times: BatchTimes,
}

/// One batch's times per send, in seconds (see [`LogMetrics::batch_timed`]).
#[derive(Default)]
pub(super) struct BatchTimes {
    queued: Vec<f64>,
    answered: Vec<f64>,
}

/// The writer's state while the log cannot write.
pub(super) struct Failure {
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
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
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
        // Each send's times from the clock read at its enqueue and two
        // read per batch; recorded after the answers, in one call.
        let answered = Instant::now();
        self.times.queued.clear();
        self.times.answered.clear();
        for request in batch.iter() {
            self.times.queued.push(
                started
                    .saturating_duration_since(request.queued)
                    .as_secs_f64(),
            );
            self.times.answered.push(
                answered
                    .saturating_duration_since(request.queued)
                    .as_secs_f64(),
            );
        }
        // Every message of the batch (a duplicate's original too) is at or
        // below the log's sequence now: one read per batch, for a
        // synchronous standby (`lan::sync_standby`).
        let log_seq = self.db.latest_sequence_number();
        for (index, request) in batch.drain(..).enumerate() {
            let _ = request
                .reply
                .send((resolve(&outcomes, index, log_seq), request.draft));
        }
        self.metrics.batch_timed(
            &self.times.queued,
            (new_count > 0).then_some(write_time.as_secs_f64()),
            &self.times.answered,
        );
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

fn resolve(outcomes: &[Outcome], index: usize, log_seq: u64) -> Result<Appended, LogError> {
    match &outcomes[index] {
        Outcome::New(message) => Ok(Appended {
            message: Arc::clone(message),
            duplicate: false,
            log_seq,
        }),
        Outcome::Existing(message) => Ok(Appended {
            message: Arc::clone(message),
            duplicate: true,
            log_seq,
        }),
        Outcome::SameAs(first) => resolve(outcomes, *first, log_seq).map(|appended| Appended {
            duplicate: true,
            ..appended
        }),
        Outcome::Failed(error) => Err(error.for_another()),
    }
}
