//! Full-text search over messages and tickets: `GET /api/v1/search`.
//!
//! Indexes (migration 0006): FTS5 `trigram` for terms of 3+ characters in
//! any script, and FTS5 `unicode61` over CJK bigrams for 2-character
//! Chinese/Japanese/Korean terms (`退款`), which trigram cannot match.
//!
//! Messages live in the RocksDB log; the [`Indexer`] copies them into
//! `message_index` off the send path. Invariants:
//! - The writer thread only *marks* a conversation with its new head
//!   ([`Indexer::mark`]: a map insert, no I/O); the indexer task reads the
//!   missing range from the log and writes it in batches.
//! - A conversation's indexed rows are always `1..=mark` without gaps: each
//!   range is read from the log in seq order and written in one
//!   transaction; `INSERT OR IGNORE` on `(conversation_id, seq)` makes any
//!   replay harmless.
//! - At start every conversation whose log head is past its mark is marked,
//!   so a crash, a kill or a wiped index converges to the log.
//!
//! Tickets are one document each (subject, description, comments): the
//! trigram one kept by SQL triggers, the bigram one rewritten by the
//! indexer for the tickets those triggers queue in `search_pending_tickets`.
//!
//! Results are plain text split into segments (`{"text", "match"}`), never
//! HTML, so a UI renders highlights without parsing anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::Notify;

use crate::auth::AgentAuth;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiQuery;
use crate::ids::ConversationId;
use crate::message::{MessageKind, SenderType};
use crate::state::AppState;
use crate::store::messages::{MessageLog, StoredMessage};

/// Longest query, in characters.
pub const QUERY_MAX_CHARS: usize = 200;
/// Most whitespace-separated terms in one query.
pub const TERMS_MAX: usize = 8;
pub const LIMIT_DEFAULT: u32 = 20;
pub const LIMIT_MAX: u32 = 50;

/// Messages read from the log per conversation per pass; the rest waits for
/// the next pass, so one long conversation cannot hold the write lock.
const RANGE_MAX: usize = 500;
/// Messages written per transaction.
/// How long new messages wait to be indexed, at most about: like a search
/// engine's refresh interval, it lets a burst become one large batch.
const INDEX_INTERVAL_MS: u64 = 1_000;
const BATCH_MAX: usize = 5_000;
/// Marks cached by the indexer; cleared past this (a miss is one lookup).
const MARKS_MAX: usize = 200_000;
/// Rows per multi-row INSERT (7 parameters each, far below SQLite's cap).
const ROWS_PER_STATEMENT: usize = 500;
/// Tickets re-indexed per pass.
const TICKETS_PER_PASS: i64 = 500;

// ---- text helpers -------------------------------------------------------

/// Chinese, Japanese and Korean characters: indexed by bigram.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x3FFFF) // CJK Extensions B–H
}

/// Overlapping pairs of adjacent CJK characters, space-separated, with a
/// `0` token between runs so that a phrase of bigrams only matches inside
/// one run: "我要退款!ok 发票" → "我要 要退 退款 0 发票".
pub fn cjk_bigrams(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut previous_pair_at: Option<usize> = None;
    for (at, pair) in chars.windows(2).enumerate() {
        if is_cjk(pair[0]) && is_cjk(pair[1]) {
            match previous_pair_at {
                Some(previous) if previous + 1 == at => out.push(' '),
                Some(_) => out.push_str(" 0 "),
                None => {}
            }
            out.push(pair[0]);
            out.push(pair[1]);
            previous_pair_at = Some(at);
        }
    }
    out
}

/// A parsed query: trigram terms (3+ characters) and bigram terms
/// (exactly 2 CJK characters), all of which must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub terms: Vec<String>,
    trigram: Vec<String>,
    bigram: Vec<String>,
}

/// Refuses free text that cannot be a search: control characters other
/// than whitespace (tabs and line breaks separate terms). A NUL is the one
/// that matters: FTS5 reads its query as a C string, so `a\0bc` would end
/// inside a quoted phrase ("unterminated string", an SQL error), and
/// nobody types the others. Shared by every route whose free text reaches
/// SQL (`/search`, the ticket list's `q`, the audit log's `action`).
pub fn check_text(field: &str, text: &str) -> Result<(), ApiError> {
    if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(
            ApiError::bad_request(format!("{field} must not contain control characters"))
                .in_field(field.to_owned()),
        );
    }
    Ok(())
}

impl Query {
    pub fn parse(q: &str) -> Result<Query, ApiError> {
        let q = q.trim();
        if q.is_empty() {
            return Err(ApiError::bad_request("q is required").in_field("q"));
        }
        if q.chars().count() > QUERY_MAX_CHARS {
            return Err(ApiError::bad_request(format!(
                "q is longer than {QUERY_MAX_CHARS} characters"
            ))
            .in_field("q"));
        }
        check_text("q", q)?;
        let terms: Vec<String> = q.split_whitespace().map(str::to_owned).collect();
        if terms.len() > TERMS_MAX {
            return Err(
                ApiError::bad_request(format!("q has more than {TERMS_MAX} terms")).in_field("q"),
            );
        }
        let mut query = Query {
            terms: Vec::new(),
            trigram: Vec::new(),
            bigram: Vec::new(),
        };
        for term in terms {
            let count = term.chars().count();
            if count >= 3 {
                query.trigram.push(term.clone());
            } else if count == 2 && term.chars().all(is_cjk) {
                query.bigram.push(term.clone());
            } else {
                return Err(ApiError::bad_request(
                    "each search term needs at least 3 characters (2 for Chinese, Japanese or Korean)",
                ).in_field("q"));
            }
            if !query.terms.contains(&term) {
                query.terms.push(term);
            }
        }
        Ok(query)
    }

    /// The FTS5 queries to run: `(trigram, bigram)`. When every term is
    /// Chinese/Japanese/Korean and one is 2 characters, the bigram table
    /// answers alone: a longer CJK term is the phrase of its bigrams
    /// (`快递单号` → `"快递 递单 单号"`), so one FTS scan drives the page.
    fn indexes(&self) -> (Option<String>, Option<String>) {
        let all_cjk = self.trigram.iter().all(|t| t.chars().all(is_cjk));
        if !self.bigram.is_empty() && all_cjk {
            let phrases: Vec<String> = self
                .bigram
                .iter()
                .cloned()
                .chain(self.trigram.iter().map(|t| cjk_bigrams(t)))
                .collect();
            return (None, Self::fts(&phrases));
        }
        (Self::fts(&self.trigram), Self::fts(&self.bigram))
    }

    /// How a ticket list's `q` filter reads the ticket indexes: the table
    /// that drives (in rowid order) with its MATCH text, and optionally a
    /// second table every row must also match. `None` when `q` is not a
    /// search query (a term too short): the caller falls back to a scan.
    pub fn ticket_filter(q: &str) -> Option<TicketFilter> {
        let query = Query::parse(q).ok()?;
        match query.indexes() {
            (Some(trigram), bigram) => Some(TicketFilter {
                driver: ("ticket_fts", trigram),
                also: bigram.map(|bigram| ("ticket_bigram", bigram)),
            }),
            (None, Some(bigram)) => Some(TicketFilter {
                driver: ("ticket_bigram", bigram),
                also: None,
            }),
            (None, None) => None,
        }
    }

    /// FTS5 query text: every term a quoted phrase, implicitly ANDed.
    fn fts(terms: &[String]) -> Option<String> {
        if terms.is_empty() {
            return None;
        }
        Some(
            terms
                .iter()
                .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

/// See [`Query::ticket_filter`]: `(table, MATCH text)` pairs over the
/// ticket indexes, whose rowid is the ticket number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketFilter {
    pub driver: (&'static str, String),
    pub also: Option<(&'static str, String)>,
}

/// One run of a snippet: matched text or the text around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub text: String,
    #[serde(rename = "match")]
    pub matched: bool,
}

/// Characters of context kept before the first match.
const SNIPPET_BEFORE: usize = 30;
/// Longest snippet, in characters.
const SNIPPET_MAX: usize = 160;

fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// Where `terms` occur in `text` (case-insensitive), as char ranges, merged.
fn match_ranges(text: &[char], terms: &[String]) -> Vec<(usize, usize)> {
    let folded: Vec<char> = text.iter().map(|&c| fold(c)).collect();
    let mut ranges = Vec::new();
    for term in terms {
        let term: Vec<char> = term.chars().map(fold).collect();
        if term.is_empty() || term.len() > folded.len() {
            continue;
        }
        for start in 0..=folded.len() - term.len() {
            if folded[start..start + term.len()] == term[..] {
                ranges.push((start, start + term.len()));
            }
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// A window of `text` around its first match, split into segments; `None`
/// when no term occurs in it.
pub fn snippet(text: &str, terms: &[String]) -> Option<Vec<Segment>> {
    let chars: Vec<char> = text.chars().collect();
    let ranges = match_ranges(&chars, terms);
    let first = ranges.first()?.0;
    let start = first.saturating_sub(SNIPPET_BEFORE);
    let end = (start + SNIPPET_MAX).min(chars.len());
    let mut segments = Vec::new();
    let mut push = |from: usize, to: usize, matched: bool| {
        if from < to {
            let mut text: String = chars[from..to].iter().collect();
            if !matched && from == start && start > 0 {
                text.insert(0, '…');
            }
            if !matched && to == end && end < chars.len() {
                text.push('…');
            }
            segments.push(Segment { text, matched });
        }
    };
    let mut at = start;
    for (from, to) in ranges {
        let (from, to) = (from.max(start), to.min(end));
        if from >= end {
            break;
        }
        if to <= at {
            continue;
        }
        push(at, from, false);
        push(from.max(at), to, true);
        at = to;
    }
    push(at, end, false);
    Some(segments)
}

// ---- the message indexer -----------------------------------------------

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
fn push_list(query: &mut QueryBuilder<'_, Sqlite>, values: &[i64]) {
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

// ---- the route ----------------------------------------------------------

pub fn routes() -> Router<AppState> {
    Router::new().route("/search", get(search))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SearchType {
    Messages,
    Tickets,
    #[default]
    All,
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    r#type: Option<SearchType>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct SenderRef {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

#[derive(Debug, Serialize)]
struct MessageHit {
    conversation_id: ConversationId,
    seq: u64,
    kind: String,
    /// An internal note: show it as such, never to a visitor.
    note: bool,
    sender: SenderRef,
    created_at: i64,
    snippet: Vec<Segment>,
    /// The whole protocol `Message` (id, sender name, content, attachment),
    /// read from the log; `null` if the log no longer has it.
    message: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Debug, Serialize)]
struct TicketHit {
    number: u64,
    subject: String,
    status: String,
    priority: String,
    assignee_id: Option<String>,
    updated_at: i64,
    /// Where the snippet comes from: `subject`, `description` or `comment`.
    matched: &'static str,
    snippet: Vec<Segment>,
}

#[derive(Debug, Default, Serialize)]
struct NextCursor {
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tickets: Option<Option<String>>,
}

#[derive(Debug, Default, Serialize)]
struct SearchResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<MessageHit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tickets: Option<Vec<TicketHit>>,
    next_cursor: NextCursor,
}

fn parse_cursor(cursor: Option<&str>) -> Result<i64, ApiError> {
    match cursor {
        None => Ok(i64::MAX),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ApiError::bad_request("invalid cursor").in_field("cursor")),
    }
}

async fn search(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> ApiResult<Json<SearchResponse>> {
    let query = Query::parse(params.q.as_deref().unwrap_or(""))?;
    let limit = match params.limit {
        None => LIMIT_DEFAULT,
        Some(0) => return Err(ApiError::bad_request("limit must be at least 1").in_field("limit")),
        Some(n) if n > LIMIT_MAX => {
            return Err(
                ApiError::bad_request(format!("limit must be at most {LIMIT_MAX}"))
                    .in_field("limit"),
            );
        }
        Some(n) => n,
    };
    let kind = params.r#type.unwrap_or_default();
    if kind == SearchType::All && params.cursor.is_some() {
        return Err(ApiError::bad_request(
            "a cursor pages one type: pass type=messages or type=tickets",
        )
        .in_field("type"));
    }
    let before = parse_cursor(params.cursor.as_deref())?;
    let mut response = SearchResponse::default();
    if kind != SearchType::Tickets {
        let (mut hits, next) = search_messages(&state.db, &query, before, limit).await?;
        attach_messages(&state, &mut hits);
        response.messages = Some(hits);
        response.next_cursor.messages = Some(next);
    }
    if kind != SearchType::Messages {
        let (hits, next) = search_tickets(&state.db, &query, before, limit).await?;
        response.tickets = Some(hits);
        response.next_cursor.tickets = Some(next);
    }
    Ok(Json(response))
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: i64,
    conversation_id: ConversationId,
    seq: i64,
    kind: String,
    sender_type: String,
    sender_id: String,
    created_at: i64,
    text: String,
}

/// Newest-indexed first; the cursor is the last row's index id.
/// Fills each hit's `message` from the log: a point read per hit.
fn attach_messages(state: &AppState, hits: &mut [MessageHit]) {
    for hit in hits {
        hit.message = match state.log.get(hit.conversation_id, hit.seq) {
            Ok(Some(stored)) => {
                serde_json::value::RawValue::from_string(stored.json.to_string()).ok()
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "reading a search hit from the log failed");
                None
            }
        };
    }
}

async fn search_messages(
    db: &SqlitePool,
    query: &Query,
    before: i64,
    limit: u32,
) -> Result<(Vec<MessageHit>, Option<String>), ApiError> {
    let (trigram, bigram) = query.indexes();
    // The FTS table drives (CROSS JOIN keeps it the outer loop), walking
    // its rowids downwards, so a page costs `limit` rows however common
    // the term.
    let sql = match (&trigram, &bigram) {
        (Some(_), None) => {
            "SELECT i.id, i.conversation_id, i.seq, i.kind, i.sender_type, i.sender_id, i.created_at, i.text
             FROM message_fts f CROSS JOIN message_index i ON i.id = f.rowid
             WHERE message_fts MATCH ?1 AND f.rowid < ?3 ORDER BY f.rowid DESC LIMIT ?4"
        }
        (None, Some(_)) => {
            "SELECT i.id, i.conversation_id, i.seq, i.kind, i.sender_type, i.sender_id, i.created_at, i.text
             FROM message_bigram b CROSS JOIN message_index i ON i.id = b.rowid
             WHERE message_bigram MATCH ?2 AND b.rowid < ?3 ORDER BY b.rowid DESC LIMIT ?4"
        }
        _ => {
            "SELECT i.id, i.conversation_id, i.seq, i.kind, i.sender_type, i.sender_id, i.created_at, i.text
             FROM message_fts f CROSS JOIN message_index i ON i.id = f.rowid
             WHERE message_fts MATCH ?1 AND f.rowid < ?3
               AND f.rowid IN (SELECT rowid FROM message_bigram WHERE message_bigram MATCH ?2)
             ORDER BY f.rowid DESC LIMIT ?4"
        }
    };
    let mut rows: Vec<MessageRow> = sqlx::query_as(sql)
        .bind(trigram.unwrap_or_default())
        .bind(bigram.unwrap_or_default())
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(db)
        .await?;
    let next = crate::http::extract::cut_page(&mut rows, limit, |row| row.id.to_string());
    let hits = rows
        .into_iter()
        .map(|row| {
            let snippet = snippet(&row.text, &query.terms).unwrap_or_else(|| {
                vec![Segment {
                    text: row.text.chars().take(SNIPPET_MAX).collect(),
                    matched: false,
                }]
            });
            MessageHit {
                conversation_id: row.conversation_id,
                seq: u64::try_from(row.seq).unwrap_or(0),
                note: row.kind == "note",
                kind: row.kind,
                sender: SenderRef {
                    kind: row.sender_type,
                    id: row.sender_id,
                },
                created_at: row.created_at,
                snippet,
                message: None,
            }
        })
        .collect();
    Ok((hits, next))
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    number: i64,
    subject: String,
    description: String,
    status: String,
    priority: String,
    assignee_id: Option<String>,
    updated_at: i64,
}

/// Highest number first; the cursor is the last ticket's number.
async fn search_tickets(
    db: &SqlitePool,
    query: &Query,
    before: i64,
    limit: u32,
) -> Result<(Vec<TicketHit>, Option<String>), ApiError> {
    let (trigram, bigram) = query.indexes();
    let take = i64::from(limit) + 1;
    // One document per ticket (subject, description, comments), so the
    // FTS table drives and a page costs `limit` rows.
    let mut numbers: Vec<i64> = match (&trigram, &bigram) {
        (Some(trigram), None) => {
            sqlx::query_scalar(
                "SELECT rowid FROM ticket_fts WHERE ticket_fts MATCH ?1 AND rowid < ?2
                 ORDER BY rowid DESC LIMIT ?3",
            )
            .bind(trigram)
            .bind(before)
            .bind(take)
            .fetch_all(db)
            .await?
        }
        (Some(trigram), Some(bigram)) => {
            sqlx::query_scalar(
                "SELECT rowid FROM ticket_fts WHERE ticket_fts MATCH ?1 AND rowid < ?2
                   AND rowid IN (SELECT rowid FROM ticket_bigram WHERE ticket_bigram MATCH ?3)
                 ORDER BY rowid DESC LIMIT ?4",
            )
            .bind(trigram)
            .bind(before)
            .bind(bigram)
            .bind(take)
            .fetch_all(db)
            .await?
        }
        (None, bigram) => {
            sqlx::query_scalar(
                "SELECT rowid FROM ticket_bigram WHERE ticket_bigram MATCH ?1 AND rowid < ?2
                 ORDER BY rowid DESC LIMIT ?3",
            )
            .bind(bigram.clone().unwrap_or_default())
            .bind(before)
            .bind(take)
            .fetch_all(db)
            .await?
        }
    };
    let next = crate::http::extract::cut_page(&mut numbers, limit, i64::to_string);
    let mut hits = Vec::with_capacity(numbers.len());
    if numbers.is_empty() {
        return Ok((hits, next));
    }
    let mut select = QueryBuilder::<Sqlite>::new(
        "SELECT number, subject, description, status, priority, assignee_id, updated_at
         FROM tickets WHERE number IN (",
    );
    push_list(&mut select, &numbers);
    let rows: Vec<TicketRow> = select.build_query_as().fetch_all(db).await?;
    let mut rows: HashMap<i64, TicketRow> = rows.into_iter().map(|r| (r.number, r)).collect();
    for number in numbers {
        let row = rows.remove(&number);
        let Some(row) = row else { continue };
        let (matched, snippet) = if let Some(s) = snippet(&row.subject, &query.terms) {
            ("subject", s)
        } else if let Some(s) = snippet(&row.description, &query.terms) {
            ("description", s)
        } else {
            let bodies: Vec<String> = sqlx::query_scalar(
                "SELECT body FROM ticket_comments WHERE ticket_number = ? ORDER BY created_at",
            )
            .bind(number)
            .fetch_all(db)
            .await?;
            let found = bodies.iter().find_map(|body| snippet(body, &query.terms));
            match found {
                Some(s) => ("comment", s),
                None => (
                    "subject",
                    vec![Segment {
                        text: row.subject.clone(),
                        matched: false,
                    }],
                ),
            }
        };
        hits.push(TicketHit {
            number: u64::try_from(row.number).unwrap_or(0),
            subject: row.subject,
            status: row.status,
            priority: row.priority,
            assignee_id: row.assignee_id,
            updated_at: row.updated_at,
            matched,
            snippet,
        });
    }
    Ok((hits, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigrams_only_pair_cjk() {
        assert_eq!(cjk_bigrams("我要退款!ok 发票"), "我要 要退 退款 0 发票");
        assert_eq!(cjk_bigrams("退款"), "退款");
        assert_eq!(cjk_bigrams("refund"), "");
    }

    #[test]
    fn query_terms_by_length_and_script() {
        let q = Query::parse(" 退款  refund ").expect("parse");
        assert_eq!(q.bigram, vec!["退款".to_owned()]);
        assert_eq!(q.trigram, vec!["refund".to_owned()]);
        assert_eq!(
            q.indexes(),
            (Some("\"refund\"".into()), Some("\"退款\"".into()))
        );
        let cjk = Query::parse("退款 快递单号").expect("parse");
        assert_eq!(
            cjk.indexes(),
            (None, Some("\"退款\" \"快递 递单 单号\"".into()))
        );
        assert!(Query::parse("ok").is_err());
        assert!(Query::parse("退").is_err());
        assert!(Query::parse("   ").is_err());
        // A NUL would end the FTS5 query inside its quotes; other control
        // characters are refused alike, whitespace ones separate terms.
        assert!(Query::parse("a\0bcd").is_err());
        assert!(Query::parse("退款\0").is_err());
        assert!(Query::parse("abc\u{1b}def").is_err());
        assert_eq!(
            Query::parse("refund\tinvoice\nabc").expect("parse").terms,
            vec!["refund".to_owned(), "invoice".to_owned(), "abc".to_owned()]
        );
        assert_eq!(
            Query::fts(&["a\"b c".to_owned()]).as_deref(),
            Some("\"a\"\"b c\"")
        );
    }

    #[test]
    fn snippet_marks_matches_case_insensitively() {
        let segments =
            snippet("Please REFUND my order, refund now", &["refund".into()]).expect("matches");
        let matched: Vec<&str> = segments
            .iter()
            .filter(|s| s.matched)
            .map(|s| s.text.as_str())
            .collect();
        assert_eq!(matched, vec!["REFUND", "refund"]);
        let joined: String = segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(joined, "Please REFUND my order, refund now");
        assert!(snippet("nothing here", &["refund".into()]).is_none());
    }
}
