//! Start-up reconciliation: SQLite's copies of log facts are brought back
//! to the message log's heads before anything is served. **The log is the
//! truth.**
//!
//! SQLite can be *ahead* of the log after a crash that lost the log's tail
//! (durability `os` and a power cut, or a WAL whose last record was torn):
//! the search indexer, the deriver and the routes copied a message into
//! SQLite, then the message was lost. The writer then hands the lost seq to
//! the next message (correct: seqs stay gap-free), and every copy of the
//! lost one would describe the new one: search served the lost text at
//! that seq and never indexed the new message (its mark was already
//! there), a read marker counted the new message as read, a ticket's
//! transcript took it in.
//!
//! So, for every conversation whose SQLite facts reach above its log head
//! (`head` = 0 when the log has none of it):
//! - `message_index` rows above the head are deleted (their FTS and bigram
//!   rows go with them, by trigger), so the indexer re-indexes from the
//!   head; a first response stamped from a deleted agent reply is unset,
//!   and its `first_response` reporting event deleted, to be stamped again
//!   from whatever the log holds;
//! - `last_seq`/`last_message_at` go back to the head (the deriver only
//!   moves them forward), and `activity_at` with them when it came from
//!   the lost message;
//! - read markers above the head go back to it;
//! - a ticket's `transcript_seq` goes back to the head, a `source_seq`
//!   (the offline form's message) and a comment's `message_seq` (its
//!   delivered reply) above it are cleared: the message they named is gone;
//! - a visitor's rating of a bot answer above it is deleted.
//!
//! Workflow state that a lost message caused (a conversation started or
//! reopened by it, an assignment) is not undone: it is not a copy of the
//! log, and the conversation is real.
//!
//! Cost: one pass over `conversations` with an index seek per table per
//! conversation, in one transaction; nothing is written when nothing is
//! ahead, the normal case.

use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::messages::{Head, LogError, MessageLog};
use crate::ids::ConversationId;

/// Heads per multi-row INSERT (3 parameters each).
const HEADS_PER_STATEMENT: usize = 1_000;

/// The conversations SQLite is ahead of the log in, and the log's head of
/// each (`seq` 0 and `at` NULL when the log has nothing of it).
const FIND_AHEAD: &str = "
    INSERT INTO temp.log_ahead (id, seq, at)
    SELECT c.id, COALESCE(h.seq, 0), h.at
    FROM conversations c LEFT JOIN temp.log_heads h ON h.id = c.id
    WHERE c.last_seq > COALESCE(h.seq, 0)
       OR EXISTS (SELECT 1 FROM message_index i
                  WHERE i.conversation_id = c.id AND i.seq > COALESCE(h.seq, 0))
       OR EXISTS (SELECT 1 FROM read_markers r
                  WHERE r.conversation_id = c.id AND r.seq > COALESCE(h.seq, 0))
       OR EXISTS (SELECT 1 FROM tickets t
                  WHERE t.conversation_id = c.id
                    AND (t.transcript_seq > COALESCE(h.seq, 0) OR t.source_seq > COALESCE(h.seq, 0)))
       OR EXISTS (SELECT 1 FROM tickets t JOIN ticket_comments m ON m.ticket_number = t.number
                  WHERE t.conversation_id = c.id AND m.message_seq > COALESCE(h.seq, 0))
       OR EXISTS (SELECT 1 FROM assist_ratings r
                  WHERE r.conversation_id = c.id AND r.seq > COALESCE(h.seq, 0))";

/// What brings them back, in order (the reporting statements read the
/// index rows the next one deletes).
const BRING_BACK: [&str; 9] = [
    // A first response stamped from an agent reply that is gone.
    "DELETE FROM reporting_events WHERE id IN (
        SELECT e.id FROM temp.log_ahead a
        JOIN conversations c ON c.id = a.id
        JOIN reporting_events e ON e.name = 'first_response' AND e.created_at = c.first_response_at
             AND e.conversation_id = a.id
        WHERE EXISTS (SELECT 1 FROM message_index i
                      WHERE i.conversation_id = a.id AND i.seq > a.seq AND i.sender_type = 'agent'
                        AND i.created_at = c.first_response_at))",
    "UPDATE conversations SET first_response_at = NULL
     FROM temp.log_ahead a
     WHERE conversations.id = a.id AND conversations.first_response_at IS NOT NULL
       AND EXISTS (SELECT 1 FROM message_index i
                   WHERE i.conversation_id = a.id AND i.seq > a.seq AND i.sender_type = 'agent'
                     AND i.created_at = conversations.first_response_at)",
    // The search index (FTS and bigram rows follow by trigger).
    "DELETE FROM message_index WHERE id IN (
        SELECT i.id FROM temp.log_ahead a
        JOIN message_index i ON i.conversation_id = a.id AND i.seq > a.seq)",
    // Derived columns; `activity_at` only when it was the lost message's.
    "UPDATE conversations
     SET last_seq = a.seq, last_message_at = a.at,
         activity_at = CASE WHEN conversations.activity_at = conversations.last_message_at
                            THEN COALESCE(a.at, conversations.created_at)
                            ELSE conversations.activity_at END
     FROM temp.log_ahead a
     WHERE conversations.id = a.id AND conversations.last_seq > a.seq",
    "UPDATE read_markers SET seq = a.seq
     FROM temp.log_ahead a
     WHERE read_markers.conversation_id = a.id AND read_markers.seq > a.seq",
    "UPDATE tickets SET transcript_seq = NULLIF(a.seq, 0)
     FROM temp.log_ahead a
     WHERE tickets.conversation_id = a.id AND tickets.transcript_seq > a.seq",
    "UPDATE tickets SET source_seq = NULL
     FROM temp.log_ahead a
     WHERE tickets.conversation_id = a.id AND tickets.source_seq > a.seq",
    "UPDATE ticket_comments SET message_seq = NULL
     WHERE message_seq IS NOT NULL
       AND EXISTS (SELECT 1 FROM tickets t JOIN temp.log_ahead a ON a.id = t.conversation_id
                   WHERE t.number = ticket_comments.ticket_number
                     AND ticket_comments.message_seq > a.seq)",
    // A visitor's rating of a bot answer that is gone (assist::bot).
    "DELETE FROM assist_ratings WHERE rowid IN (
        SELECT r.rowid FROM temp.log_ahead a
        JOIN assist_ratings r ON r.conversation_id = a.id AND r.seq > a.seq)",
];

/// Brings SQLite's copies of log facts back to the log's heads (see the
/// module doc). Called once at start, before the search indexer, the
/// deriver or any request runs. Returns how many conversations were ahead.
pub async fn to_log(db: &SqlitePool, log: &MessageLog) -> anyhow::Result<usize> {
    let heads = log.heads().map_err(|e: LogError| anyhow::anyhow!(e))?;
    to_heads(db, &heads).await
}

async fn to_heads(db: &SqlitePool, heads: &[(ConversationId, Head)]) -> anyhow::Result<usize> {
    // One connection throughout: the temp tables are the connection's.
    let mut tx = super::db::begin_write(db).await?;
    for statement in [
        "CREATE TEMP TABLE IF NOT EXISTS log_heads
             (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL) WITHOUT ROWID",
        "CREATE TEMP TABLE IF NOT EXISTS log_ahead
             (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER) WITHOUT ROWID",
        "DELETE FROM temp.log_heads",
        "DELETE FROM temp.log_ahead",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    for chunk in heads.chunks(HEADS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO temp.log_heads (id, seq, at) ");
        insert.push_values(chunk, |mut row, (id, head)| {
            row.push_bind(*id)
                .push_bind(i64::try_from(head.last_seq).unwrap_or(i64::MAX))
                .push_bind(head.last_at);
        });
        insert.build().execute(&mut *tx).await?;
    }
    let ahead = sqlx::query(FIND_AHEAD)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if ahead > 0 {
        for statement in BRING_BACK {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
    }
    for statement in ["DROP TABLE temp.log_heads", "DROP TABLE temp.log_ahead"] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let ahead = usize::try_from(ahead).unwrap_or(usize::MAX);
    if ahead > 0 {
        tracing::warn!(
            conversations = ahead,
            "SQLite was ahead of the message log (its tail was lost in a crash): \
             search index, derived columns, read markers and ticket links brought back to the log"
        );
    }
    Ok(ahead)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn scalar(db: &SqlitePool, sql: &str) -> Option<i64> {
        sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
    }

    /// A conversation whose SQLite facts reach seq 5 while the log's head
    /// is 3, one whose log is gone entirely, and one in step: only the
    /// first two are brought back, to 3 and to 0.
    #[tokio::test]
    async fn everything_above_the_head_is_brought_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = super::super::db::open(dir.path()).await.expect("open");
        let (ahead, gone, fine) = (
            ConversationId::new(),
            ConversationId::new(),
            ConversationId::new(),
        );
        for statement in [
            "INSERT INTO apps (id, app_key, secret, name, identity_verification, created_at)
             VALUES ('app', 'ak', 'sk', 'Shop', 'off', 0)",
            "INSERT INTO agents (id, username, password_hash, display_name, role, created_at)
             VALUES ('amy', 'amy', 'x', 'Amy', 'agent', 0)",
        ] {
            sqlx::query(statement).execute(&db).await.expect(statement);
        }
        for (index, conversation) in [ahead, gone, fine].iter().enumerate() {
            let visitor = format!("v{index}");
            sqlx::query("INSERT INTO visitors (id, app_id, created_at, last_seen_at) VALUES (?, 'app', 0, 0)")
                .bind(&visitor)
                .execute(&db)
                .await
                .expect("visitor");
            sqlx::query(
                "INSERT INTO conversations (id, app_id, visitor_id, status, last_seq, last_message_at,
                     activity_at, started_at, created_at, opened_at, first_response_at)
                 VALUES (?, 'app', ?, 'open', 5, 5000, 5000, 1, 1, 1000, 4000)",
            )
            .bind(conversation)
            .bind(&visitor)
            .execute(&db)
            .await
            .expect("conversation");
            for seq in 1..=5i64 {
                let sender = if seq == 4 { "agent" } else { "visitor" };
                sqlx::query(
                    "INSERT INTO message_index (conversation_id, seq, kind, sender_type, sender_id, created_at, text)
                     VALUES (?, ?, 'text', ?, 'amy', ?, ?)",
                )
                .bind(conversation)
                .bind(seq)
                .bind(sender)
                .bind(seq * 1000)
                .bind(format!("message {seq} of {index}"))
                .execute(&db)
                .await
                .expect("index");
            }
            sqlx::query(
                "INSERT INTO reporting_events (name, conversation_id, agent_id, value_ms, created_at)
                 VALUES ('first_response', ?, 'amy', 3000, 4000)",
            )
            .bind(conversation)
            .execute(&db)
            .await
            .expect("event");
            sqlx::query(
                "INSERT INTO read_markers (conversation_id, reader_id, reader_type, seq, updated_at)
                 VALUES (?, 'amy', 'agent', 5, 0)",
            )
            .bind(conversation)
            .execute(&db)
            .await
            .expect("marker");
            let number: i64 = sqlx::query_scalar(
                "INSERT INTO tickets (subject, status, priority, conversation_id, via, transcript_seq,
                     source_seq, created_at, updated_at)
                 VALUES ('t', 'open', 'normal', ?, 'form', 5, 5, 0, 0) RETURNING number",
            )
            .bind(conversation)
            .fetch_one(&db)
            .await
            .expect("ticket");
            sqlx::query(
                "INSERT INTO ticket_comments (id, ticket_number, author_id, body, public, created_at, message_seq)
                 VALUES (?, ?, 'amy', 'reply', 1, 0, 5)",
            )
            .bind(format!("c{index}"))
            .bind(number)
            .execute(&db)
            .await
            .expect("comment");
            sqlx::query(
                "INSERT INTO assist_ratings (conversation_id, seq, entry_id, rating, created_at)
                 VALUES (?, 5, NULL, 'down', 0)",
            )
            .bind(conversation)
            .execute(&db)
            .await
            .expect("rating");
        }
        let heads = vec![
            (
                ahead,
                Head {
                    last_seq: 3,
                    last_at: 3000,
                },
            ),
            (
                fine,
                Head {
                    last_seq: 5,
                    last_at: 5000,
                },
            ),
        ];
        assert_eq!(to_heads(&db, &heads).await.expect("reconcile"), 2);
        for (conversation, head) in [(ahead, 3), (gone, 0), (fine, 5)] {
            let id = conversation.to_string();
            let q = |sql: &str| sql.replace("?", &format!("'{id}'"));
            assert_eq!(
                scalar(
                    &db,
                    &q("SELECT MAX(seq) FROM message_index WHERE conversation_id = ?")
                )
                .await
                .unwrap_or(0),
                head,
                "index of {head}"
            );
            assert_eq!(
                scalar(&db, &q("SELECT last_seq FROM conversations WHERE id = ?")).await,
                Some(head)
            );
            assert_eq!(
                scalar(
                    &db,
                    &q("SELECT seq FROM read_markers WHERE conversation_id = ?")
                )
                .await,
                Some(head)
            );
            let transcript = scalar(
                &db,
                &q("SELECT transcript_seq FROM tickets WHERE conversation_id = ?"),
            )
            .await;
            assert_eq!(transcript, (head > 0).then_some(head));
            let source = scalar(
                &db,
                &q("SELECT source_seq FROM tickets WHERE conversation_id = ?"),
            )
            .await;
            assert_eq!(source, (head == 5).then_some(5));
            let delivered = scalar(
                &db,
                &q("SELECT m.message_seq FROM ticket_comments m JOIN tickets t ON t.number = m.ticket_number
                    WHERE t.conversation_id = ?"),
            )
            .await;
            assert_eq!(delivered, (head == 5).then_some(5));
            let rated = scalar(
                &db,
                &q("SELECT MAX(seq) FROM assist_ratings WHERE conversation_id = ?"),
            )
            .await;
            assert_eq!(rated, (head == 5).then_some(5));
            // The first response (seq 4, an agent's) survives only where seq 4 does.
            let stamped = scalar(
                &db,
                &q("SELECT first_response_at FROM conversations WHERE id = ?"),
            )
            .await;
            let events = scalar(
                &db,
                &q("SELECT COUNT(*) FROM reporting_events WHERE conversation_id = ?"),
            )
            .await;
            if head >= 4 {
                assert_eq!((stamped, events), (Some(4000), Some(1)));
            } else {
                assert_eq!((stamped, events), (None, Some(0)));
            }
            // The full-text index follows its rows.
            let found = scalar(
                &db,
                &format!(
                    "SELECT COUNT(*) FROM message_fts WHERE message_fts MATCH '\"message 5 of\"'
                     AND rowid IN (SELECT id FROM message_index WHERE conversation_id = '{id}')"
                ),
            )
            .await;
            assert_eq!(found, Some(i64::from(head == 5)));
        }
        let fts_rows = scalar(
            &db,
            "SELECT COUNT(*) FROM message_fts WHERE message_fts MATCH '\"message 5\"'",
        )
        .await;
        assert_eq!(fts_rows, Some(1), "the deleted rows left the FTS index");
        // In step now: a second pass changes nothing.
        assert_eq!(to_heads(&db, &heads).await.expect("again"), 0);
    }
}
