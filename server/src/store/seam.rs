//! The seam between the service and its message store: what a send, a
//! resume and start-up need from "the log", whichever engine holds it.
//!
//! Two engines stand behind it (docs/CLUSTER.md):
//! - the embedded RocksDB [`MessageLog`](super::messages::MessageLog), through
//!   [`RocksStore`](super::seam_rocks::RocksStore);
//! - PostgreSQL, `cluster::postgres::PgMessageStore` (feature `cluster`).
//!
//! The promises every implementation keeps (the suite in
//! `server/tests/store_seam.rs` runs against each):
//! - `append` returns only after the message is durably committed (or found
//!   to be a duplicate): an ack never goes out for something a crash loses.
//! - `seq` is per conversation, starts at 1 and has no gaps, whatever the
//!   concurrency (several connections, several nodes).
//! - `(conversation, sender, client_msg_id)` is unique: a resend, even at
//!   the same moment from another connection or node, gets the original
//!   back with `duplicate: true`, and nothing is written.
//! - Reads are bounded: a page or a list of heads holds at most
//!   [`READ_LIMIT_MAX`] items, whatever the caller asks for.
//!
//! The trait is static (`impl Future`), not `dyn`: the send path is hot and
//! a boxed future per send is an allocation the RocksDB path does not pay
//! today. The server picks its engine once; the wiring can hold an enum of
//! the two.
//!
//! Not here yet (the wiring's job, see docs/CLUSTER.md "Not built yet"): the
//! `conv_start` markers (with PostgreSQL the conversation rows live in the
//! same database, so a start commits in the send's own transaction) and the
//! fan-out after commit (the `Bus`).

use std::future::Future;

use super::messages::{Appended, Draft, Head, LogError, StoredMessage};
use crate::ids::ConversationId;

/// The most items one read returns ([`MessageStore::page_after`],
/// [`MessageStore::heads`]); a larger `limit` is lowered to it.
pub const READ_LIMIT_MAX: usize = 1000;

/// The most drafts one [`MessageStore::append_batch`] takes; a larger
/// batch is refused with [`StoreError::Invalid`] and nothing is written.
pub const BATCH_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take or serve this now (a full disk, a lost or
    /// saturated database connection, a failover): retry later (HTTP 503).
    /// When it came from a send whose COMMIT was in flight, the outcome is
    /// unknown; the client's resend with the same `client_msg_id` returns
    /// the original if it did commit.
    #[error("the message store is unavailable: {0}")]
    Unavailable(String),
    /// The store was closed (the server is stopping).
    #[error("the message store is closed")]
    Closed,
    /// What the store holds cannot be read back (a bug or a damaged store).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The request breaks a limit of this module (e.g. [`BATCH_MAX`]);
    /// nothing was written.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// Any other failure of the engine (details for the server's log only).
    #[error("message store: {0}")]
    Backend(String),
}

impl From<LogError> for StoreError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Closed => StoreError::Closed,
            LogError::Unavailable(why) => StoreError::Unavailable(why),
            LogError::Corrupt(why) => StoreError::Corrupt(why),
            LogError::Rocks(error) => StoreError::Backend(error.to_string()),
        }
    }
}

/// A message store: the system of record of every conversation's messages.
pub trait MessageStore: Send + Sync {
    /// Appends one message and returns once it is durably committed, or
    /// the original when its `client_msg_id` was seen before from the same
    /// sender in the same conversation (`duplicate: true`, nothing
    /// written). `origin` is the connection it came from, for the fan-out
    /// not to echo it (engines without an in-process fan-out ignore it).
    fn append(
        &self,
        draft: Draft,
        origin: Option<u64>,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// Appends up to [`BATCH_MAX`] drafts, possibly to several
    /// conversations; the answers come in the drafts' order, and drafts to
    /// one conversation get their seqs in that order. PostgreSQL commits
    /// the batch in one transaction (all or nothing, conversations locked
    /// in id order); the RocksDB log queues them one by one into its group
    /// commit (each is durable when answered; a failure may leave a prefix).
    fn append_batch(
        &self,
        drafts: Vec<Draft>,
    ) -> impl Future<Output = Result<Vec<Appended>, StoreError>> + Send;

    /// The conversation's last seq and time, or `None` before its first
    /// message.
    fn head(
        &self,
        conversation: ConversationId,
    ) -> impl Future<Output = Result<Option<Head>, StoreError>> + Send;

    /// Up to `limit` (at most [`READ_LIMIT_MAX`]) messages of a
    /// conversation with a seq above `after`, ascending; notes are skipped
    /// unless `include_notes`, and a skipped note does not shorten the page.
    fn page_after(
        &self,
        conversation: ConversationId,
        after: u64,
        limit: usize,
        include_notes: bool,
    ) -> impl Future<Output = Result<Vec<StoredMessage>, StoreError>> + Send;

    /// Up to `limit` (at most [`READ_LIMIT_MAX`]) conversation heads in
    /// conversation id order, starting after `after` (from the first when
    /// `None`): page through them with the last id of each answer.
    fn heads(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(ConversationId, Head)>, StoreError>> + Send;
}

/// `limit` lowered to [`READ_LIMIT_MAX`].
pub fn read_limit(limit: usize) -> usize {
    limit.min(READ_LIMIT_MAX)
}

/// Refuses a batch over [`BATCH_MAX`] drafts.
pub fn check_batch(drafts: &[Draft]) -> Result<(), StoreError> {
    if drafts.len() > BATCH_MAX {
        return Err(StoreError::Invalid(format!(
            "{} drafts in one batch; at most {BATCH_MAX}",
            drafts.len()
        )));
    }
    Ok(())
}
