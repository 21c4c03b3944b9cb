//! The message store in PostgreSQL: the system of record of cluster mode
//! (docs/CLUSTER.md), behind the same [`MessageStore`] seam as the
//! embedded RocksDB log. Schema: `server/migrations-pg/`.
//!
//! A send is one transaction:
//! 1. lock the conversation's counter row (`SELECT … FOR UPDATE`; the row
//!    is created first when the conversation has none);
//! 2. `INSERT … ON CONFLICT ON CONSTRAINT messages_dedup DO NOTHING` with
//!    seq = counter + 1, and in the same statement bump the counter only
//!    when a row went in (a data-modifying CTE);
//! 3. no row: a duplicate; the original is read back (the lock made the
//!    earlier sender's commit visible) and nothing was written;
//! 4. COMMIT; only then is the answer returned.
//!
//! Why it holds across nodes: the row lock serialises every send to one
//! conversation, whichever node or connection it came from, so seq has no
//! gap and no repeat; the unique constraint makes a resend at the same
//! moment wait for the first transaction and then do nothing. A batch over
//! several conversations creates missing counter rows and locks them in
//! conversation id order (bytes, which order like the ULIDs), so two
//! batches never deadlock.
//!
//! Durability is PostgreSQL's: with `synchronous_commit = on` (its default)
//! COMMIT returns after the WAL is flushed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Row};

use crate::ids::{ConversationId, MessageId};
use crate::message::{Message, MessageKind};
use crate::store::messages::{Appended, Draft, Head, StoredMessage};
use crate::store::seam::{MessageStore, StoreError, check_batch, read_limit};

/// Pool settings of the PostgreSQL store.
#[derive(Debug, Clone, Copy)]
pub struct PgStoreOptions {
    /// Connections this node holds open; every send in flight holds one
    /// for its transaction.
    pub max_connections: u32,
    /// How long a send waits for a free connection before it is refused
    /// with [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The PostgreSQL message store.
#[derive(Clone)]
pub struct PgMessageStore {
    pool: PgPool,
}

impl PgMessageStore {
    /// Connects (lazily: the first use opens connections) to `url`.
    pub fn connect(url: &str, options: PgStoreOptions) -> Result<Self, StoreError> {
        let connect: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("database url: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect);
        Ok(PgMessageStore { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        PgMessageStore { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Brings the schema up to date (`server/migrations-pg/`). Safe to run
    /// from several nodes at once: sqlx takes an advisory lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations-pg")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migrations: {e}")))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl MessageStore for PgMessageStore {
    async fn append(&self, draft: Draft, _origin: Option<u64>) -> Result<Appended, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let head = lock_head(&mut tx, draft.conversation_id)
            .await
            .map_err(classify)?;
        let (appended, _) = insert(&mut tx, draft, head).await?;
        tx.commit().await.map_err(classify)?;
        Ok(appended)
    }

    async fn append_batch(&self, drafts: Vec<Draft>) -> Result<Vec<Appended>, StoreError> {
        check_batch(&drafts)?;
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let mut conversations: Vec<Vec<u8>> = drafts
            .iter()
            .map(|draft| draft.conversation_id.to_bytes().to_vec())
            .collect();
        conversations.sort_unstable();
        conversations.dedup();
        // Counter rows first, committed on their own and in id order: an
        // insert holds its new row's index entry until it commits, so two
        // batches inserting in different orders could deadlock.
        sqlx::query(
            "INSERT INTO message_heads (conversation_id, last_seq, last_at) \
             SELECT c, 0, 0 FROM unnest($1::bytea[]) AS c ORDER BY c \
             ON CONFLICT (conversation_id) DO NOTHING",
        )
        .bind(&conversations)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // LockRows runs above the sort: rows are locked in id order.
        let rows = sqlx::query(
            "SELECT conversation_id, last_seq, last_at FROM message_heads \
             WHERE conversation_id = ANY($1) ORDER BY conversation_id FOR UPDATE",
        )
        .bind(&conversations)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let mut heads: HashMap<ConversationId, Head> = HashMap::with_capacity(rows.len());
        for row in rows {
            let id = conversation_from(row.try_get("conversation_id").map_err(classify)?)?;
            heads.insert(id, head_from(&row)?);
        }
        let mut out = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let head = *heads
                .get(&draft.conversation_id)
                .ok_or_else(|| StoreError::Backend("a counter row vanished".into()))?;
            let conversation = draft.conversation_id;
            let (appended, new_head) = insert(&mut tx, draft, head).await?;
            heads.insert(conversation, new_head);
            out.push(appended);
        }
        tx.commit().await.map_err(classify)?;
        Ok(out)
    }

    async fn head(&self, conversation: ConversationId) -> Result<Option<Head>, StoreError> {
        let row = sqlx::query(
            "SELECT last_seq, last_at FROM message_heads \
             WHERE conversation_id = $1 AND last_seq > 0",
        )
        .bind(conversation.to_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref().map(head_from).transpose()
    }

    async fn page_after(
        &self,
        conversation: ConversationId,
        after: u64,
        limit: usize,
        include_notes: bool,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let limit = i64::try_from(read_limit(limit)).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT seq, note, created_at, body FROM messages \
             WHERE conversation_id = $1 AND seq > $2 AND ($3 OR NOT note) \
             ORDER BY seq LIMIT $4",
        )
        .bind(conversation.to_bytes().as_slice())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(include_notes)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| stored_from(conversation, row))
            .collect()
    }

    async fn heads(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<(ConversationId, Head)>, StoreError> {
        let limit = i64::try_from(read_limit(limit)).unwrap_or(i64::MAX);
        // No id sorts below 16 zero bytes... except itself: an empty
        // bytea sorts below every id.
        let after = after.map(|id| id.to_bytes().to_vec()).unwrap_or_default();
        let rows = sqlx::query(
            "SELECT conversation_id, last_seq, last_at FROM message_heads \
             WHERE conversation_id > $1 AND last_seq > 0 ORDER BY conversation_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let id = conversation_from(row.try_get("conversation_id").map_err(classify)?)?;
                Ok((id, head_from(row)?))
            })
            .collect()
    }
}

/// Locks the conversation's counter row for this transaction, creating it
/// (at 0) when the conversation has none yet.
async fn lock_head(
    tx: &mut PgConnection,
    conversation: ConversationId,
) -> Result<Head, sqlx::Error> {
    let key = conversation.to_bytes();
    let select = "SELECT last_seq, last_at FROM message_heads \
                  WHERE conversation_id = $1 FOR UPDATE";
    if let Some(row) = sqlx::query(select)
        .bind(key.as_slice())
        .fetch_optional(&mut *tx)
        .await?
    {
        return head_row(&row);
    }
    // A first message: make the row (another transaction making it at the
    // same moment makes this wait, then do nothing), then lock it.
    sqlx::query(
        "INSERT INTO message_heads (conversation_id, last_seq, last_at) VALUES ($1, 0, 0) \
         ON CONFLICT (conversation_id) DO NOTHING",
    )
    .bind(key.as_slice())
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(select)
        .bind(key.as_slice())
        .fetch_one(&mut *tx)
        .await?;
    head_row(&row)
}

/// Inserts `draft` as seq `head.last_seq + 1` under the counter lock, or
/// finds the original it duplicates. Returns the answer and the head after it.
async fn insert(
    tx: &mut PgConnection,
    draft: Draft,
    head: Head,
) -> Result<(Appended, Head), StoreError> {
    let conversation = draft.conversation_id;
    let seq = head.last_seq + 1;
    // Times never go backwards within a conversation, whatever the clock does.
    let created_at = crate::time::now_ms().max(head.last_at);
    let note = draft.kind == MessageKind::Note;
    let sender_key = draft.sender_key;
    let message = Message {
        id: MessageId::new(),
        conversation_id: conversation,
        seq,
        client_msg_id: draft.client_msg_id,
        kind: draft.kind,
        sender: draft.sender,
        content: draft.content,
        meta: draft.meta,
        attachment: draft.attachment,
        created_at,
    };
    let body = serde_json::to_string(&message).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let inserted = sqlx::query(
        "WITH inserted AS ( \
             INSERT INTO messages \
                 (conversation_id, seq, id, sender_key, client_msg_id, note, created_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT ON CONSTRAINT messages_dedup DO NOTHING \
             RETURNING conversation_id, seq, created_at) \
         UPDATE message_heads AS h SET last_seq = inserted.seq, last_at = inserted.created_at \
         FROM inserted WHERE h.conversation_id = inserted.conversation_id \
         RETURNING h.last_seq",
    )
    .bind(conversation.to_bytes().as_slice())
    .bind(to_i64(seq)?)
    .bind(message.id.to_bytes().as_slice())
    .bind(sender_key.as_slice())
    .bind(message.client_msg_id.as_deref())
    .bind(note)
    .bind(created_at)
    .bind(body.as_str())
    .fetch_optional(&mut *tx)
    .await
    .map_err(classify)?;
    if inserted.is_some() {
        let stored = StoredMessage {
            conversation_id: conversation,
            seq,
            note,
            created_at,
            json: Arc::from(body),
            start: false,
        };
        return Ok((
            Appended {
                message: Arc::new(stored),
                duplicate: false,
                log_seq: 0,
            },
            Head {
                last_seq: seq,
                last_at: created_at,
            },
        ));
    }
    // Only a dedup conflict skips the insert (a seq conflict would be an
    // error): the original is there, committed before the lock was ours
    // or earlier in this batch.
    let row = sqlx::query(
        "SELECT seq, note, created_at, body FROM messages \
         WHERE conversation_id = $1 AND sender_key = $2 AND client_msg_id = $3",
    )
    .bind(conversation.to_bytes().as_slice())
    .bind(sender_key.as_slice())
    .bind(message.client_msg_id.as_deref())
    .fetch_one(&mut *tx)
    .await
    .map_err(classify)?;
    Ok((
        Appended {
            message: Arc::new(stored_from(conversation, &row)?),
            duplicate: true,
            log_seq: 0,
        },
        head,
    ))
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("seq {value} out of range")))
}

fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative seq {value}")))
}

fn head_row(row: &sqlx::postgres::PgRow) -> Result<Head, sqlx::Error> {
    let last_seq: i64 = row.try_get("last_seq")?;
    Ok(Head {
        last_seq: u64::try_from(last_seq).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        last_at: row.try_get("last_at")?,
    })
}

fn head_from(row: &sqlx::postgres::PgRow) -> Result<Head, StoreError> {
    head_row(row).map_err(classify)
}

fn conversation_from(bytes: Vec<u8>) -> Result<ConversationId, StoreError> {
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("conversation id length".into()))?;
    Ok(ConversationId::from_bytes(bytes))
}

fn stored_from(
    conversation: ConversationId,
    row: &sqlx::postgres::PgRow,
) -> Result<StoredMessage, StoreError> {
    let seq: i64 = row.try_get("seq").map_err(classify)?;
    let body: String = row.try_get("body").map_err(classify)?;
    Ok(StoredMessage {
        conversation_id: conversation,
        seq: to_u64(seq)?,
        note: row.try_get("note").map_err(classify)?,
        created_at: row.try_get("created_at").map_err(classify)?,
        json: Arc::from(body),
        start: false,
    })
}

/// Sorts a database error into what the caller can do about it: retry
/// later (connection lost, pool exhausted, server shutting down, a
/// transaction rolled back by the server) or not.
fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::PoolClosed => StoreError::Closed,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exception; 40: transaction rollback
            // (serialization failure, deadlock); 53: insufficient
            // resources; 57P0x: admin/crash shutdown, cannot connect now.
            if code.starts_with("08")
                || code.starts_with("40")
                || code.starts_with("53")
                || code.starts_with("57P0")
            {
                StoreError::Unavailable(error.to_string())
            } else {
                StoreError::Backend(error.to_string())
            }
        }
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
            StoreError::Corrupt(error.to_string())
        }
        _ => StoreError::Backend(error.to_string()),
    }
}
