//! What Assist reads in a conversation: the predicted intent, the
//! visitor's language and the urgency signals, kept in
//! `conversations.assist_insight` (shown as the conversation's `assist`
//! member) with `conversations.priority` (1 = urgent).
//!
//! - **At the start** of each session (the conversation starter, inside
//!   its transaction, before routing): intent, language and urgency of the
//!   message that starts it ([`read`], microseconds), so the routing
//!   rules' intent condition sees it. A new session starts over.
//! - **Later messages** ([`Watcher`]): the log's commit hook hands every
//!   message over (one push onto a bounded queue, no parsing on the
//!   writer's thread); a task then raises the priority when a visitor
//!   message carries a complaint word (`投诉`, `差评`, `12315`…,
//!   [`super::signals`]), or when the visitor has written
//!   [`REPEATED_MIN`] messages in a row with no reply.
//! - **Long waits**: every [`SWEEP_EVERY`] a sweep marks chats queued for
//!   more than [`LONG_WAIT_MS`].
//!
//! Urgent chats are served first from the queue (routing orders it by
//! priority, then FIFO). Priority only ever rises within a session.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use tokio::sync::Notify;

use super::intent::Model;
use super::normalize::normalize;
use super::signals::{self, Signal};
use crate::error::ApiError;
use crate::ids::ConversationId;
use crate::message::{MessageKind, SenderType};
use crate::state::AppState;
use crate::store::messages::StoredMessage;
use crate::time::now_ms;

/// Visitor messages in a row, unanswered, that make a chat urgent.
pub const REPEATED_MIN: u32 = 3;
/// How long in the queue makes a chat urgent.
pub const LONG_WAIT_MS: i64 = 5 * 60 * 1000;
/// How often queued chats are checked for long waits.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Messages waiting for the watcher, at most (beyond: the oldest is
/// dropped; its chat is only checked again on its next message).
const QUEUE_MAX: usize = 10_000;
/// Conversations whose unanswered run is counted in memory, at most.
const STREAKS_MAX: usize = 100_000;
/// Chats marked per sweep, at most.
const SWEEP_MAX: i64 = 500;

/// Why a chat is urgent.
pub const COMPLAINT: &str = "complaint";
pub const REPEATED: &str = "repeated";
pub const LONG_WAIT: &str = "long_wait";

/// The predicted intent of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct IntentGuess {
    pub name: String,
    pub confidence: f32,
}

/// The conversation's `assist` member.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "AssistInsight"))]
pub struct Insight {
    /// `null` when the app has no ready model or the message has no words.
    pub intent: Option<IntentGuess>,
    /// A code of [`super::language::CODES`], or `null` (no letters).
    pub language: Option<String>,
    /// Why the chat is urgent (empty: it is not).
    #[serde(default)]
    pub urgency: Vec<String>,
}

impl Insight {
    pub fn urgent(&self) -> bool {
        !self.urgency.is_empty()
    }
}

/// Intent, language and urgency of one message.
pub fn read(model: Option<&Model>, text: &str) -> Insight {
    let intent = model.and_then(|m| m.predict(text)).map(|p| IntentGuess {
        name: p.intent,
        confidence: (p.confidence * 1000.0).round() / 1000.0,
    });
    let urgency = if complaint(text) {
        vec![COMPLAINT.to_owned()]
    } else {
        Vec::new()
    };
    Insight {
        intent,
        language: super::language::detect(text).map(str::to_owned),
        urgency,
    }
}

/// A complaint, anger or urgency word (the hand-off list's urgent half).
pub fn complaint(text: &str) -> bool {
    signals::detect(&normalize(text)) == Some(Signal::Urgent)
}

/// At a session's start, inside the starter's transaction: reads the
/// starting message and stores the insight (a new session starts over).
pub async fn at_start(
    state: &AppState,
    db: &mut SqliteConnection,
    conversation: ConversationId,
    app: crate::ids::AppId,
    text: &str,
) -> Result<(), ApiError> {
    let model = state.assist.trainer.model(&mut *db, app).await?;
    let insight = read(model.as_deref(), text);
    sqlx::query("UPDATE conversations SET assist_insight = ?, priority = ? WHERE id = ?")
        .bind(serde_json::to_string(&insight).unwrap_or_default())
        .bind(i64::from(insight.urgent()))
        .bind(conversation)
        .execute(&mut *db)
        .await?;
    Ok(())
}

/// Messages waiting to be looked at for urgency, and each chat's run of
/// unanswered visitor messages.
#[derive(Default)]
pub struct Watcher {
    queue: Mutex<VecDeque<Arc<StoredMessage>>>,
    wake: Notify,
    streaks: Mutex<HashMap<ConversationId, u32>>,
}

impl Watcher {
    /// On the log's writer thread: queues the batch (no parsing here).
    pub fn mark(&self, messages: &[(Arc<StoredMessage>, Option<u64>)]) {
        let mut queue = self.queue.lock();
        for (message, _) in messages {
            if message.note {
                continue;
            }
            if queue.len() >= QUEUE_MAX {
                queue.pop_front();
            }
            queue.push_back(Arc::clone(message));
        }
        drop(queue);
        self.wake.notify_one();
    }

    /// The urgency reason a message adds, if any.
    fn look(&self, message: &StoredMessage) -> Option<&'static str> {
        let decoded = message.decode().ok()?;
        let mut streaks = self.streaks.lock();
        match decoded.sender.kind {
            SenderType::Visitor => {
                if streaks.len() >= STREAKS_MAX && !streaks.contains_key(&message.conversation_id) {
                    streaks.clear();
                }
                let streak = streaks.entry(message.conversation_id).or_insert(0);
                *streak += 1;
                let streak = *streak;
                drop(streaks);
                if decoded.kind == MessageKind::Text && complaint(&decoded.content) {
                    Some(COMPLAINT)
                } else if streak >= REPEATED_MIN {
                    Some(REPEATED)
                } else {
                    None
                }
            }
            // A reply (an agent's, or the bot's text) ends the run; event
            // lines ("X joined") do not.
            SenderType::Agent => {
                streaks.remove(&message.conversation_id);
                None
            }
            SenderType::System => {
                if decoded.kind != MessageKind::Event {
                    streaks.remove(&message.conversation_id);
                }
                None
            }
        }
    }
}

/// Adds `reason` to a going chat's urgency and raises its priority;
/// whether anything changed (the caller then announces the chat).
async fn raise(
    db: &mut SqliteConnection,
    conversation: ConversationId,
    reason: &str,
) -> Result<bool, ApiError> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT assist_insight FROM conversations
         WHERE id = ? AND started_at IS NOT NULL AND status != 'resolved'",
    )
    .bind(conversation)
    .fetch_optional(&mut *db)
    .await?;
    let Some((stored,)) = row else {
        return Ok(false);
    };
    let mut insight: Insight = stored
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    if insight.urgency.iter().any(|r| r == reason) {
        return Ok(false);
    }
    insight.urgency.push(reason.to_owned());
    let updated = sqlx::query(
        "UPDATE conversations SET assist_insight = ?, priority = 1
         WHERE id = ? AND started_at IS NOT NULL AND status != 'resolved'",
    )
    .bind(serde_json::to_string(&insight).unwrap_or_default())
    .bind(conversation)
    .execute(&mut *db)
    .await?
    .rows_affected();
    Ok(updated > 0)
}

/// The watcher's task: looks at each message, and sweeps for long waits.
pub async fn run(state: AppState) {
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        loop {
            let next = state.assist.watcher.queue.lock().pop_front();
            let Some(message) = next else { break };
            let Some(reason) = state.assist.watcher.look(&message) else {
                continue;
            };
            // The starter reads the starting message itself; wait for it
            // so that its fresh insight is not overwritten by this one.
            if message.start {
                state.starts.settled_all().await;
            }
            if let Err(error) = raise_and_announce(&state, message.conversation_id, reason).await {
                tracing::warn!(%error, "raising a chat's priority failed");
            }
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = state.assist.watcher.wake.notified() => {}
            _ = sweep.tick() => {
                if let Err(error) = sweep_long_waits(&state).await {
                    tracing::warn!(%error, "the long-wait sweep failed");
                }
            }
        }
    }
}

async fn raise_and_announce(
    state: &AppState,
    conversation: ConversationId,
    reason: &str,
) -> Result<(), ApiError> {
    let mut conn = state.db.acquire().await?;
    let changed = raise(&mut conn, conversation, reason).await?;
    drop(conn);
    if changed {
        crate::conversations::announce(state, conversation).await?;
    }
    Ok(())
}

/// Marks the chats queued for longer than [`LONG_WAIT_MS`].
pub async fn sweep_long_waits(state: &AppState) -> Result<(), ApiError> {
    let waiting: Vec<(ConversationId,)> = sqlx::query_as(
        "SELECT id FROM conversations
         WHERE status = 'queued' AND started_at IS NOT NULL AND queued_at < ?
           AND NOT EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(assist_insight)
                                THEN assist_insight ELSE '{}' END, '$.urgency')
                           WHERE value = 'long_wait')
         LIMIT ?",
    )
    .bind(now_ms() - LONG_WAIT_MS)
    .bind(SWEEP_MAX)
    .fetch_all(&state.db)
    .await?;
    for (conversation,) in waiting {
        raise_and_announce(state, conversation, LONG_WAIT).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_language_and_complaints_without_a_model() {
        let insight = read(None, "我要投訴，你們再不處理我就打12315");
        assert_eq!(insight.intent, None);
        assert_eq!(insight.language.as_deref(), Some("zh-Hant"));
        assert_eq!(insight.urgency, vec![COMPLAINT]);
        assert!(insight.urgent());
        let calm = read(None, "what colours do you have?");
        assert_eq!(calm.language.as_deref(), Some("en"));
        assert!(!calm.urgent());
    }
}
