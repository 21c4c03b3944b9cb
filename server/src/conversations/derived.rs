//! Derived columns (`last_seq`, `last_message_at`, `activity_at`): the
//! writer marks conversations dirty, a task writes them to SQLite. They
//! follow the log 20–500 ms behind (more under load, see [`derive_pause`]),
//! are rebuilt from `conv_head` at start ([`apply_heads`]), and are overlaid
//! from the log whenever a `Conversation` is served, so clients always see
//! the log's truth.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::SqlitePool;
use tokio::sync::Notify;

use crate::hub::ConnId;
use crate::ids::ConversationId;
use crate::store::messages::{Head, StoredMessage};

/// Derived-column upkeep: the writer marks conversations dirty, a task
/// writes them to SQLite in one transaction every few milliseconds.
#[derive(Default)]
pub struct Derived {
    dirty: Mutex<HashMap<ConversationId, Head>>,
    wake: Notify,
}

impl Derived {
    /// Called on the writer thread; never blocks on I/O.
    pub fn mark(&self, messages: &[(Arc<StoredMessage>, Option<ConnId>)]) {
        let mut dirty = self.dirty.lock();
        for (message, _) in messages {
            dirty.insert(
                message.conversation_id,
                Head {
                    last_seq: message.seq,
                    last_at: message.created_at,
                },
            );
        }
        drop(dirty);
        self.wake.notify_one();
    }

    /// Conversations whose derived columns wait to be written (for
    /// `/metrics`: what the conversation list's order lags by).
    pub fn backlog(&self) -> usize {
        self.dirty.lock().len()
    }

    /// Writes everything marked so far.
    pub async fn flush(&self, db: &SqlitePool) -> Result<(), sqlx::Error> {
        let batch = std::mem::take(&mut *self.dirty.lock());
        apply_heads(db, batch.into_iter()).await.map(drop)
    }

    pub async fn run(
        self: Arc<Self>,
        db: SqlitePool,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut pause = DERIVE_PAUSE_MIN;
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = shutdown.cancelled() => break,
            }
            // Let a burst accumulate into one transaction.
            tokio::time::sleep(pause).await;
            let started = std::time::Instant::now();
            if let Err(error) = self.flush(&db).await {
                tracing::error!(%error, "updating derived conversation columns failed");
            }
            pause = derive_pause(started.elapsed());
        }
    }
}

/// The deriver's shortest wait between a mark and its flush: what the
/// conversation list's order lags by when the shop is quiet.
const DERIVE_PAUSE_MIN: Duration = Duration::from_millis(20);
/// The longest: what the list's order may lag by under heavy load.
const DERIVE_PAUSE_MAX: Duration = Duration::from_millis(500);
/// Wait this many times as long as the last flush took, so that the
/// deriver keeps to about 1/25 of a core until the pause reaches its bound:
/// under load more messages per conversation fall into one flush, and each
/// conversation's row (with its three indexes on `activity_at`) is written
/// once for all of them. At 10,000 messages a second over 1,000
/// conversations a 20 ms pause wrote ~10,000 rows a second in 50 bursts of
/// 2–3 ms on the cores that serve the messages (docs/PERFORMANCE.md).
const DERIVE_PAUSE_PER_WORK: u32 = 25;

/// How long the deriver waits before its next flush, given how long the
/// last one took.
fn derive_pause(took: Duration) -> Duration {
    took.saturating_mul(DERIVE_PAUSE_PER_WORK)
        .clamp(DERIVE_PAUSE_MIN, DERIVE_PAUSE_MAX)
}

/// Conversations per `UPDATE` statement (3 parameters each).
const HEADS_PER_STATEMENT: usize = 1_000;

/// Writes conversation heads into the derived columns; only ever moves
/// them forward, so replays and races with the deriver are harmless.
/// Idempotent. Returns how many heads it applied.
///
/// One statement per thousand conversations: at a steady 10,000 messages a
/// second over 1,000 conversations, a statement per conversation was ~9,000
/// round trips a second between the runtime and SQLite's worker thread, each
/// waking both, on the cores that serve the messages (docs/PERFORMANCE.md).
pub async fn apply_heads(
    db: &SqlitePool,
    heads: impl Iterator<Item = (ConversationId, Head)>,
) -> Result<usize, sqlx::Error> {
    let heads: Vec<_> = heads.collect();
    // A transaction per statement: a rebuild at start lets other writers in
    // between.
    for chunk in heads.chunks(HEADS_PER_STATEMENT) {
        let mut tx = db.begin().await?;
        let mut update = sqlx::QueryBuilder::<sqlx::Sqlite>::new("WITH head(id, seq, at) AS (");
        update.push_values(chunk, |mut row, (id, head)| {
            row.push_bind(*id)
                .push_bind(i64::try_from(head.last_seq).unwrap_or(i64::MAX))
                .push_bind(head.last_at);
        });
        update.push(
            ") UPDATE conversations
               SET last_seq = head.seq, last_message_at = head.at,
                   activity_at = MAX(conversations.activity_at, head.at)
               FROM head
               WHERE conversations.id = head.id AND conversations.last_seq < head.seq",
        );
        update.build().execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(heads.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::VisitorId;

    #[test]
    fn the_deriver_waits_in_proportion_to_its_last_flush_within_bounds() {
        // A quiet shop: a flush of a few rows, the list lags 20 ms.
        assert_eq!(derive_pause(Duration::ZERO), DERIVE_PAUSE_MIN);
        assert_eq!(derive_pause(Duration::from_micros(300)), DERIVE_PAUSE_MIN);
        // Under load: 25 times the flush.
        assert_eq!(
            derive_pause(Duration::from_millis(4)),
            Duration::from_millis(100)
        );
        // Never longer than the bound, however slow SQLite was.
        assert_eq!(derive_pause(Duration::from_secs(3)), DERIVE_PAUSE_MAX);
        assert_eq!(derive_pause(Duration::MAX), DERIVE_PAUSE_MAX);
    }

    /// `count` conversations (with their app and visitors), heads at zero.
    async fn conversations(db: &SqlitePool, count: usize) -> Vec<ConversationId> {
        let mut tx = db.begin().await.expect("begin");
        sqlx::query(
            "INSERT INTO apps (id, app_key, secret, name, identity_verification, created_at)
             VALUES ('app', 'key', 'secret', 'Shop', 'off', 0)",
        )
        .execute(&mut *tx)
        .await
        .expect("app");
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let (conversation, visitor) = (ConversationId::new(), VisitorId::new());
            sqlx::query(
                "INSERT INTO visitors (id, app_id, created_at, last_seen_at) VALUES (?, 'app', 0, 0)",
            )
            .bind(visitor)
            .execute(&mut *tx)
            .await
            .expect("visitor");
            sqlx::query(
                "INSERT INTO conversations (id, app_id, visitor_id, status, activity_at, started_at, created_at)
                 VALUES (?, 'app', ?, 'queued', 100, 100, 100)",
            )
            .bind(conversation)
            .bind(visitor)
            .execute(&mut *tx)
            .await
            .expect("conversation");
            ids.push(conversation);
        }
        tx.commit().await.expect("commit");
        ids
    }

    async fn columns(db: &SqlitePool, id: ConversationId) -> (i64, Option<i64>, i64) {
        sqlx::query_as(
            "SELECT last_seq, last_message_at, activity_at FROM conversations WHERE id = ?",
        )
        .bind(id)
        .fetch_one(db)
        .await
        .expect("row")
    }

    fn head(last_seq: u64, last_at: i64) -> Head {
        Head { last_seq, last_at }
    }

    /// More heads than one statement takes, some moving forward and some
    /// stale: each conversation ends at its newest head, whichever
    /// statement carried it, and unknown conversations are skipped.
    #[tokio::test]
    async fn apply_heads_moves_every_conversation_forward_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::store::db::open(dir.path()).await.expect("open");
        let count = HEADS_PER_STATEMENT * 2 + 3;
        let ids = conversations(&db, count).await;

        let first = apply_heads(&db, ids.iter().map(|id| (*id, head(5, 1_000))))
            .await
            .expect("apply");
        assert_eq!(first, count);
        for id in [ids[0], ids[HEADS_PER_STATEMENT], ids[count - 1]] {
            assert_eq!(columns(&db, id).await, (5, Some(1_000), 1_000));
        }

        // Even conversations get a stale head, odd ones a newer one; plus a
        // conversation that does not exist.
        let next = ids
            .iter()
            .enumerate()
            .map(|(n, id)| {
                if n.is_multiple_of(2) {
                    (*id, head(3, 500))
                } else {
                    (*id, head(7, 2_000))
                }
            })
            .chain([(ConversationId::new(), head(9, 9_000))]);
        apply_heads(&db, next).await.expect("apply again");
        let rows: Vec<(String, i64, Option<i64>, i64)> =
            sqlx::query_as("SELECT id, last_seq, last_message_at, activity_at FROM conversations")
                .fetch_all(&db)
                .await
                .expect("rows");
        assert_eq!(rows.len(), count, "no row added for the unknown one");
        let position: HashMap<String, usize> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| (id.to_string(), n))
            .collect();
        for (id, last_seq, last_message_at, activity_at) in rows {
            let expected = if position[&id].is_multiple_of(2) {
                (5, Some(1_000), 1_000)
            } else {
                (7, Some(2_000), 2_000)
            };
            assert_eq!((last_seq, last_message_at, activity_at), expected, "{id}");
        }
        assert_eq!(
            apply_heads(&db, std::iter::empty()).await.expect("empty"),
            0
        );
    }
}
