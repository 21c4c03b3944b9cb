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
//!
//! Parts: [`text`] (queries, bigrams, snippets), [`indexer`] (the log →
//! index copier), the searches themselves here, the door in [`routes`].

mod indexer;
pub mod routes;
mod text;

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

pub use indexer::{Indexer, spawn};
pub use text::{Query, Segment, TicketFilter, check_text, cjk_bigrams, is_cjk, snippet};

use crate::error::ApiError;
use crate::ids::ConversationId;
use crate::store::messages::MessageLog;

/// Longest query, in characters.
pub const QUERY_MAX_CHARS: usize = 200;
/// Most whitespace-separated terms in one query.
pub const TERMS_MAX: usize = 8;
pub const LIMIT_DEFAULT: u32 = 20;
pub const LIMIT_MAX: u32 = 50;

/// Messages read from the log per conversation per pass; the rest waits for
/// the next pass, so one long conversation cannot hold the write lock.
const RANGE_MAX: usize = 500;
/// How long new messages wait to be indexed, at most about: like a search
/// engine's refresh interval, it lets a burst become one large batch.
const INDEX_INTERVAL_MS: u64 = 1_000;
/// Messages written per transaction.
const BATCH_MAX: usize = 5_000;
/// Marks cached by the indexer; cleared past this (a miss is one lookup).
const MARKS_MAX: usize = 200_000;
/// Rows per multi-row INSERT (7 parameters each, far below SQLite's cap).
const ROWS_PER_STATEMENT: usize = 500;
/// Tickets re-indexed per pass.
const TICKETS_PER_PASS: i64 = 500;

#[derive(Debug, Serialize)]
pub struct SenderRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Serialize)]
pub struct MessageHit {
    pub conversation_id: ConversationId,
    pub seq: u64,
    pub kind: String,
    /// An internal note: show it as such, never to a visitor.
    pub note: bool,
    pub sender: SenderRef,
    pub created_at: i64,
    pub snippet: Vec<Segment>,
    /// The whole protocol `Message` (id, sender name, content, attachment),
    /// read from the log; `null` if the log no longer has it.
    pub message: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Debug, Serialize)]
pub struct TicketHit {
    pub number: u64,
    pub subject: String,
    pub status: String,
    pub priority: String,
    pub assignee_id: Option<String>,
    pub updated_at: i64,
    /// Where the snippet comes from: `subject`, `description` or `comment`.
    pub matched: &'static str,
    pub snippet: Vec<Segment>,
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

/// Fills each hit's `message` from the log: a point read per hit.
fn attach_messages(log: &MessageLog, hits: &mut [MessageHit]) {
    for hit in hits {
        hit.message = match log.get(hit.conversation_id, hit.seq) {
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

/// Messages matching `query`, newest-indexed first, each with its whole
/// protocol `Message` from the log; the cursor is the last row's index id.
pub async fn messages(
    db: &SqlitePool,
    log: &MessageLog,
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
                    text: row.text.chars().take(text::SNIPPET_MAX).collect(),
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
        .collect::<Vec<_>>();
    let mut hits = hits;
    attach_messages(log, &mut hits);
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

/// Tickets matching `query`, highest number first; the cursor is the last
/// ticket's number.
pub async fn tickets(
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
    indexer::push_list(&mut select, &numbers);
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
