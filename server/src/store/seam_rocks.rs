//! The embedded RocksDB [`MessageLog`] behind the [`MessageStore`] seam: an
//! adapter over the log's public API only, so the log itself (its writer
//! thread, group commit and on-commit fan-out) is unchanged.
//!
//! Costs to know: the log's heads are one unbounded scan
//! ([`MessageLog::heads`]), so [`RocksStore::heads`] pages by scanning them
//! all on a blocking thread and keeping one page; fine at start-up sizes,
//! and a ranged read in the log would make it O(page) once the log's owner
//! adds one.

use std::sync::Arc;

use futures_util::future::join_all;

use super::messages::{Appended, Draft, Head, MessageLog, StoredMessage};
use super::seam::{MessageStore, StoreError, check_batch, read_limit};
use crate::ids::ConversationId;

/// The RocksDB log as a [`MessageStore`].
#[derive(Clone)]
pub struct RocksStore {
    log: Arc<MessageLog>,
}

impl RocksStore {
    pub fn new(log: Arc<MessageLog>) -> Self {
        RocksStore { log }
    }

    pub fn log(&self) -> &Arc<MessageLog> {
        &self.log
    }
}

impl MessageStore for RocksStore {
    async fn append(&self, draft: Draft, origin: Option<u64>) -> Result<Appended, StoreError> {
        Ok(self.log.append(draft, origin).await?)
    }

    async fn append_batch(&self, drafts: Vec<Draft>) -> Result<Vec<Appended>, StoreError> {
        check_batch(&drafts)?;
        // `join_all` polls the appends in order on its first poll: each
        // enters the writer's queue in the drafts' order (a full queue
        // waits in FIFO order), so one conversation's seqs follow it.
        join_all(drafts.into_iter().map(|draft| self.log.append(draft, None)))
            .await
            .into_iter()
            .map(|answer| answer.map_err(StoreError::from))
            .collect()
    }

    async fn head(&self, conversation: ConversationId) -> Result<Option<Head>, StoreError> {
        Ok(self.log.head(conversation)?)
    }

    async fn page_after(
        &self,
        conversation: ConversationId,
        after: u64,
        limit: usize,
        include_notes: bool,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(self
            .log
            .page(conversation, after, None, read_limit(limit), include_notes)?)
    }

    async fn heads(
        &self,
        after: Option<ConversationId>,
        limit: usize,
    ) -> Result<Vec<(ConversationId, Head)>, StoreError> {
        let log = Arc::clone(&self.log);
        let limit = read_limit(limit);
        tokio::task::spawn_blocking(move || {
            // The log's head keys are the conversation ids' bytes, which
            // order like the ids (ULIDs, big-endian).
            let all = log.heads()?;
            Ok(all
                .into_iter()
                .filter(|(conversation, _)| after.is_none_or(|after| *conversation > after))
                .take(limit)
                .collect())
        })
        .await
        .map_err(|e| StoreError::Backend(format!("heads task: {e}")))?
    }
}
