//! The message indexer: keeps `message_index` (and the tickets' bigram
//! index) up with the log, off the send path, and records each
//! conversation's first agent response on the way. Invariants: see
//! [`super`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection, Transaction};
use tokio::sync::Notify;

use super::cjk_bigrams;
use super::{
    BATCH_MAX, INDEX_INTERVAL_MS, MARKS_MAX, RANGE_MAX, ROWS_PER_STATEMENT, TICKETS_PER_PASS,
};
use crate::ids::ConversationId;
use crate::message::{MessageKind, SenderType};
use crate::state::AppState;
use crate::store::messages::{MessageLog, StoredMessage};

/// Keeps `message_index` up with the log. See the module doc.
#[derive(Default)]
pub struct Indexer {
    /// Conversation → its newest seq the indexer has not caught up to.
    dirty: Mutex<HashMap<ConversationId, u64>>,
    wake: Notify,
}

/// A row of `message_index`.
struct IndexRow {
    conversation_id: ConversationId,
    seq: u64,
    kind: MessageKind,
    sender_type: SenderType,
    sender_id: String,
    created_at: i64,
    text: String,
}

fn kind_str(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Text => "text",
        MessageKind::Image => "image",
        MessageKind::File => "file",
        MessageKind::Event => "event",
        MessageKind::Note => "note",
    }
}

fn sender_str(sender: SenderType) -> &'static str {
    match sender {
        SenderType::Visitor => "visitor",
        SenderType::Agent => "agent",
        SenderType::System => "system",
    }
}

impl IndexRow {
    fn from_stored(stored: &StoredMessage) -> Option<IndexRow> {
        let message = match stored.decode() {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(%error, conversation = %stored.conversation_id, seq = stored.seq, "cannot index a message");
                return None;
            }
        };
        let mut text = message.content;
        if let Some(name) = message
            .attachment
            .as_ref()
            .and_then(|a| a.get("name"))
            .and_then(|n| n.as_str())
        {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(name);
        }
        Some(IndexRow {
            conversation_id: stored.conversation_id,
            seq: stored.seq,
            kind: message.kind,
            sender_type: message.sender.kind,
            sender_id: message.sender.id,
            created_at: stored.created_at,
            text,
        })
    }
}

impl Indexer {
    /// Called on the writer thread after each commit; never blocks on I/O.
    pub fn mark(&self, messages: &[(Arc<StoredMessage>, Option<u64>)]) {
        let mut dirty = self.dirty.lock();
        for (message, _) in messages {
            let head = dirty.entry(message.conversation_id).or_insert(0);
            *head = (*head).max(message.seq);
        }
        drop(dirty);
        self.wake.notify_one();
    }

    /// How many conversations wait to be indexed (for tests and the bench).
    pub fn backlog(&self) -> usize {
        self.dirty.lock().len()
    }

    /// Indexes until shutdown: first whatever the log has beyond the index
    /// (start-up catch-up), then what the writer marks.
    pub async fn run(self: Arc<Self>, state: AppState) {
        let mut marks: HashMap<ConversationId, u64> = HashMap::new();
        if let Err(error) = self.catch_up(&state, &mut marks).await {
            tracing::error!(%error, "search index catch-up failed");
        }
        // The indexer's own connection, made from this low-priority thread
        // (see `spawn`), so that its SQLite work runs at that priority too.
        let mut background: Option<SqliteConnection> = None;
        // Consecutive failed passes: the first is logged as an error, the
        // rest (a full disk fails every pass until it frees) only counted.
        let mut failing = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = self.wake.notified() => {
                    // Let a burst accumulate into one transaction.
                    tokio::time::sleep(Duration::from_millis(INDEX_INTERVAL_MS)).await;
                }
                _ = tick.tick() => {}
                _ = state.shutdown.cancelled() => break,
            }
            let result = match background.as_mut() {
                Some(conn) => self.pass(&state, conn, &mut marks).await,
                None => match open_background(&state).await {
                    Ok(conn) => {
                        let conn = background.insert(conn);
                        self.pass(&state, conn, &mut marks).await
                    }
                    Err(error) => Err(error),
                },
            };
            if let Err(error) = result {
                if state.shutdown.is_cancelled() {
                    break;
                }
                failing += 1;
                if failing == 1 {
                    tracing::error!(%error, "search indexing failed; retrying every second");
                } else {
                    tracing::debug!(%error, failing, "search indexing failed again");
                }
                // A fresh connection next time, in case this one broke.
                background = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
            } else if failing > 0 {
                tracing::info!(failed_passes = failing, "search indexing works again");
                failing = 0;
            }
        }
    }

    /// Marks every conversation whose log head is past its indexed mark.
    async fn catch_up(
        &self,
        state: &AppState,
        marks: &mut HashMap<ConversationId, u64>,
    ) -> anyhow::Result<()> {
        let reading = Arc::clone(state);
        let heads = tokio::task::spawn_blocking(move || reading.log.heads()).await??;
        let indexed: Vec<(ConversationId, i64)> = sqlx::query_as(
            "SELECT conversation_id, MAX(seq) FROM message_index GROUP BY conversation_id",
        )
        .fetch_all(&state.db)
        .await?;
        let indexed: HashMap<ConversationId, u64> = indexed
            .into_iter()
            .map(|(id, seq)| (id, u64::try_from(seq).unwrap_or(0)))
            .collect();
        let mut lagging = 0usize;
        {
            let mut dirty = self.dirty.lock();
            for (conversation, head) in heads {
                let mark = indexed.get(&conversation).copied().unwrap_or(0);
                if head.last_seq > mark {
                    lagging += 1;
                    let entry = dirty.entry(conversation).or_insert(0);
                    *entry = (*entry).max(head.last_seq);
                }
                if marks.len() < MARKS_MAX {
                    marks.insert(conversation, mark);
                }
            }
        }
        tracing::info!(conversations = lagging, "search index catching up");
        self.wake.notify_one();
        Ok(())
    }

    /// One pass: some dirty conversations, then pending tickets.
    async fn pass(
        &self,
        state: &AppState,
        conn: &mut SqliteConnection,
        marks: &mut HashMap<ConversationId, u64>,
    ) -> anyhow::Result<()> {
        loop {
            let work: Vec<(ConversationId, u64)> = {
                let mut dirty = self.dirty.lock();
                let keys: Vec<ConversationId> =
                    dirty.keys().take(BATCH_MAX / 10).copied().collect();
                keys.into_iter()
                    .filter_map(|k| dirty.remove(&k).map(|head| (k, head)))
                    .collect()
            };
            if work.is_empty() {
                break;
            }
            if let Err(error) = self.index_conversations(state, conn, marks, &work).await {
                // Put the work back: nothing of the failed transaction stuck.
                let mut dirty = self.dirty.lock();
                for (conversation, head) in work {
                    let entry = dirty.entry(conversation).or_insert(0);
                    *entry = (*entry).max(head);
                }
                marks.clear();
                return Err(error);
            }
            if state.shutdown.is_cancelled() {
                return Ok(());
            }
            // Let requests in between large catch-up batches.
            tokio::task::yield_now().await;
        }
        index_pending_tickets(conn, &state.shutdown).await
    }

    async fn index_conversations(
        &self,
        state: &AppState,
        conn: &mut SqliteConnection,
        marks: &mut HashMap<ConversationId, u64>,
        work: &[(ConversationId, u64)],
    ) -> anyhow::Result<()> {
        let mut ranges = Vec::with_capacity(work.len());
        for &(conversation, head) in work {
            let mark = match marks.get(&conversation) {
                Some(mark) => *mark,
                None => {
                    let mark: Option<i64> = sqlx::query_scalar(
                        "SELECT MAX(seq) FROM message_index WHERE conversation_id = ?",
                    )
                    .bind(conversation)
                    .fetch_one(&mut *conn)
                    .await?;
                    u64::try_from(mark.unwrap_or(0)).unwrap_or(0)
                }
            };
            if head > mark {
                ranges.push((conversation, mark, head));
            }
        }
        if ranges.is_empty() {
            return Ok(());
        }
        let reading = Arc::clone(state);
        let read =
            tokio::task::spawn_blocking(move || read_ranges(&reading.log, &ranges)).await??;
        let mut tx = conn.begin().await?;
        // Multi-row statements: per statement, sqlx costs more than SQLite.
        let mut inserted: HashMap<(ConversationId, i64), i64> = HashMap::new();
        for chunk in read.rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT OR IGNORE INTO message_index
                 (conversation_id, seq, kind, sender_type, sender_id, created_at, text) ",
            );
            insert.push_values(chunk, |mut values, row| {
                values
                    .push_bind(row.conversation_id)
                    .push_bind(i64::try_from(row.seq).unwrap_or(i64::MAX))
                    .push_bind(kind_str(row.kind))
                    .push_bind(sender_str(row.sender_type))
                    .push_bind(row.sender_id.as_str())
                    .push_bind(row.created_at)
                    .push_bind(row.text.as_str());
            });
            insert.push(" RETURNING id, conversation_id, seq");
            let rows: Vec<(i64, ConversationId, i64)> =
                insert.build_query_as().fetch_all(&mut *tx).await?;
            inserted.extend(rows.into_iter().map(|(id, conv, seq)| ((conv, seq), id)));
        }
        let fresh: Vec<(&IndexRow, i64)> = read
            .rows
            .iter()
            .filter_map(|row| {
                let seq = i64::try_from(row.seq).unwrap_or(i64::MAX);
                inserted
                    .get(&(row.conversation_id, seq))
                    .map(|id| (row, *id))
            })
            .collect();
        let grams: Vec<(i64, String)> = fresh
            .iter()
            .map(|(row, id)| (*id, cjk_bigrams(&row.text)))
            .filter(|(_, grams)| !grams.is_empty())
            .collect();
        for chunk in grams.chunks(ROWS_PER_STATEMENT) {
            let mut insert =
                QueryBuilder::<Sqlite>::new("INSERT INTO message_bigram(rowid, grams) ");
            insert.push_values(chunk, |mut values, (id, grams)| {
                values.push_bind(*id).push_bind(grams.as_str());
            });
            insert.build().execute(&mut *tx).await?;
        }
        let replies: Vec<&IndexRow> = fresh
            .iter()
            .map(|(row, _)| *row)
            .filter(|row| {
                row.sender_type == SenderType::Agent
                    && matches!(
                        row.kind,
                        MessageKind::Text | MessageKind::Image | MessageKind::File
                    )
            })
            .collect();
        first_responses(&mut tx, &replies).await?;
        tx.commit().await?;
        if marks.len() >= MARKS_MAX {
            marks.clear();
        }
        marks.extend(read.reached);
        if !read.again.is_empty() {
            let mut dirty = self.dirty.lock();
            for (conversation, head) in read.again {
                let entry = dirty.entry(conversation).or_insert(0);
                *entry = (*entry).max(head);
            }
        }
        Ok(())
    }
}

/// What [`read_ranges`] found.
struct Read {
    rows: Vec<IndexRow>,
    /// Per conversation read: the seq reached.
    reached: Vec<(ConversationId, u64)>,
    /// Conversations with more to read, and their head: marked again.
    again: Vec<(ConversationId, u64)>,
}

/// Reads each range `(mark, head]` from the log, up to [`RANGE_MAX`]
/// messages per conversation and [`BATCH_MAX`] in all; what is left is
/// returned in `again`.
fn read_ranges(
    log: &MessageLog,
    ranges: &[(ConversationId, u64, u64)],
) -> Result<Read, crate::store::messages::LogError> {
    let mut read = Read {
        rows: Vec::new(),
        reached: Vec::with_capacity(ranges.len()),
        again: Vec::new(),
    };
    for &(conversation, mark, head) in ranges {
        if read.rows.len() >= BATCH_MAX {
            read.again.push((conversation, head));
            continue;
        }
        let page = log.page(conversation, mark, None, RANGE_MAX, true)?;
        let reached = page.last().map_or(mark, |m| m.seq);
        read.rows
            .extend(page.iter().filter_map(IndexRow::from_stored));
        read.reached.push((conversation, reached));
        // A full page may have more behind it; a short one reached the
        // log's end (a head past it would be a marked seq not yet
        // readable, which the writer never publishes).
        if page.len() == RANGE_MAX && reached < head {
            read.again.push((conversation, head));
        }
    }
    Ok(read)
}

/// Stamps each session's first response and records it, once per
/// session. `replies` are new agent replies, in seq order per conversation.
async fn first_responses(
    tx: &mut Transaction<'_, Sqlite>,
    replies: &[&IndexRow],
) -> Result<(), sqlx::Error> {
    if replies.is_empty() {
        return Ok(());
    }
    // Only conversations whose session still waits for an answer.
    let mut waiting: HashMap<ConversationId, i64> = HashMap::new();
    let conversations: Vec<ConversationId> = {
        let mut ids: Vec<ConversationId> = replies.iter().map(|r| r.conversation_id).collect();
        ids.sort_unstable_by_key(|id| id.to_string());
        ids.dedup();
        ids
    };
    for chunk in conversations.chunks(ROWS_PER_STATEMENT) {
        let mut select = QueryBuilder::<Sqlite>::new(
            "SELECT id, opened_at FROM conversations
             WHERE first_response_at IS NULL AND opened_at IS NOT NULL AND id IN (",
        );
        let mut ids = select.separated(", ");
        for id in chunk {
            ids.push_bind(*id);
        }
        select.push(")");
        let rows: Vec<(ConversationId, i64)> = select.build_query_as().fetch_all(&mut **tx).await?;
        waiting.extend(rows);
    }
    for row in replies {
        let Some(&opened_at) = waiting.get(&row.conversation_id) else {
            continue;
        };
        if row.created_at < opened_at {
            continue;
        }
        let stamped: Option<(i64, crate::ids::AppId)> = sqlx::query_as(
            "UPDATE conversations SET first_response_at = ?1
             WHERE id = ?2 AND first_response_at IS NULL AND opened_at IS NOT NULL AND opened_at <= ?1
             RETURNING opened_at, app_id",
        )
        .bind(row.created_at)
        .bind(row.conversation_id)
        .fetch_optional(&mut **tx)
        .await?;
        waiting.remove(&row.conversation_id);
        let Some((opened_at, app_id)) = stamped else {
            continue;
        };
        crate::reports::record(
            &mut **tx,
            crate::reports::EventName::FirstResponse,
            crate::reports::Event {
                app_id: Some(app_id),
                conversation_id: Some(row.conversation_id),
                agent_id: row.sender_id.parse().ok(),
                value_ms: Some(row.created_at - opened_at),
                at: Some(row.created_at),
                ..Default::default()
            },
        )
        .await
        .map_err(|error| sqlx::Error::Protocol(error.to_string()))?;
    }
    Ok(())
}

/// Appends `v1, v2, …)` to an `IN (` clause.
pub(super) fn push_list(query: &mut QueryBuilder<'_, Sqlite>, values: &[i64]) {
    let mut list = query.separated(", ");
    for value in values {
        list.push_bind(*value);
    }
    query.push(")");
}

async fn open_background(state: &AppState) -> anyhow::Result<SqliteConnection> {
    crate::store::db::connect_background(&state.config.data_dir, state.config.memory.sqlite()).await
}

/// Runs the indexer on a thread of its own at the lowest CPU priority, with
/// a single-threaded runtime: its work (reading messages back from the log,
/// bigrams, and, on sqlx's worker thread for its own connection, SQLite's
/// FTS writes) then yields to serving instead of taking a core from the
/// WebSocket workers for a moment once a second, which showed in the
/// message path's tail latency (docs/PERFORMANCE.md). The handle resolves
/// when the indexer has stopped.
pub fn spawn(indexer: Arc<Indexer>, state: AppState) -> tokio::task::JoinHandle<()> {
    let (done, stopped) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("kefu-indexer".into())
        .spawn(move || {
            crate::store::db::lower_own_priority();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(indexer.run(state)),
                Err(error) => tracing::error!(%error, "cannot start the search indexer"),
            }
            let _ = done.send(());
        });
    if let Err(error) = &spawned {
        tracing::error!(%error, "cannot start the search indexer's thread");
    }
    tokio::spawn(async move {
        let _ = stopped.await;
    })
}

/// Rewrites the bigram document of every ticket the triggers queued.
async fn index_pending_tickets(
    conn: &mut SqliteConnection,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    while !shutdown.is_cancelled() {
        // Read and write in one transaction that holds the write lock
        // from the start (BEGIN IMMEDIATE): no ticket can change between
        // reading its document and dequeuing it, so a queued change is
        // never dropped, and the transaction never fails on a concurrent
        // ticket write (a deferred one did, "database is locked").
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let numbers: Vec<i64> =
            sqlx::query_scalar("SELECT number FROM search_pending_tickets ORDER BY number LIMIT ?")
                .bind(TICKETS_PER_PASS)
                .fetch_all(&mut *tx)
                .await?;
        if numbers.is_empty() {
            return Ok(());
        }
        // The trigram document already joins subject, description and
        // comments (kept by the triggers): read it from there.
        let mut select = QueryBuilder::<Sqlite>::new(
            "SELECT rowid, subject, description, comments FROM ticket_fts WHERE rowid IN (",
        );
        push_list(&mut select, &numbers);
        let docs: Vec<(i64, String, String, String)> =
            select.build_query_as().fetch_all(&mut *tx).await?;
        let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM ticket_bigram WHERE rowid IN (");
        push_list(&mut delete, &numbers);
        delete.build().execute(&mut *tx).await?;
        let grams: Vec<(i64, String)> = docs
            .into_iter()
            .map(|(number, subject, description, comments)| {
                let grams = [subject, description, comments]
                    .iter()
                    .map(|text| cjk_bigrams(text))
                    .filter(|g| !g.is_empty())
                    .collect::<Vec<_>>()
                    .join(" 0 ");
                (number, grams)
            })
            .filter(|(_, grams)| !grams.is_empty())
            .collect();
        for chunk in grams.chunks(ROWS_PER_STATEMENT) {
            let mut insert =
                QueryBuilder::<Sqlite>::new("INSERT INTO ticket_bigram(rowid, grams) ");
            insert.push_values(chunk, |mut values, (number, grams)| {
                values.push_bind(*number).push_bind(grams.as_str());
            });
            insert.build().execute(&mut *tx).await?;
        }
        let mut done =
            QueryBuilder::<Sqlite>::new("DELETE FROM search_pending_tickets WHERE number IN (");
        push_list(&mut done, &numbers);
        done.build().execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(())
}
