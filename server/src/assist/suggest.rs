//! Reply suggestions for agents: while a chat is open, the composer offers
//! the three replies that best fit the visitor's last message, from the
//! shop's canned replies and from what the shop's agents actually answered
//! to similar messages in resolved chats (docs/ASSIST.md, "Reply
//! suggestions"; [`for_agent`] answers `GET
//! /api/v1/conversations/{id}/suggestions`, docs/API.md 2.19, whose door
//! is in [`super::routes`]).
//!
//! - [`mask`] — phone numbers, emails and long numbers out of a reply.
//! - [`learnt`] — the (visitor message → agent reply) pairs, bounded, and
//!   the rule that a learnt reply is shown only once two different
//!   visitors were sent it.
//! - [`rank`] — one app's snapshot of canned and learnt replies, TF-IDF
//!   over character 1–2-grams, as the FAQ index.
//!
//! **Off the message path.** Nothing here runs when a message is sent.
//! The learner is a thread of its own at idle priority (as the search
//! indexer): it follows `conversation_resolved` facts in
//! `reporting_events` (woken by [`Suggestions::resolved`], and every
//! [`POLL`] anyway), reads each resolved chat's new messages from the log,
//! and learns their pairs. At start it learns the last
//! [`RECENT_AT_START`] resolved chats again: the pairs live in memory only
//! (no table), bounded by [`learnt::EXAMPLES_MAX`].
//!
//! **Invariants.** What a suggestion shows is either a canned reply the
//! asking agent may see (shared, or their own), rendered for this
//! conversation, or a learnt reply that is masked and was sent to at least
//! two different visitors. A visitor's words are never shown; nothing of a
//! chat is shown in another unless agents said it to two customers.

pub mod learnt;
pub mod mask;
pub mod rank;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use sqlx::SqliteConnection;
use tokio::sync::Notify;

use crate::agents::Agent;
use crate::error::ApiError;
use crate::ids::{AgentId, AppId, ConversationId, VisitorId};
use crate::message::{Message, MessageKind, SenderType};
use crate::state::AppState;
use learnt::{Pair, Pairs};
use rank::{Candidate, CannedDoc, Ranker};

/// Suggestions offered at most.
pub const SUGGESTIONS_MAX: usize = 3;
/// Resolved chats learnt again at start.
pub const RECENT_AT_START: i64 = 2_000;
/// The learner looks for resolved chats at least this often.
pub const POLL: Duration = Duration::from_secs(10);
/// Messages of a conversation read per resolution (the rest at its next).
const MESSAGES_PER_CONVERSATION: usize = 1_000;
/// Visitor messages in a row that make one question.
const TURN_MESSAGES: usize = 3;
/// Agent replies in a row learnt for one question.
const REPLIES_PER_TURN: usize = 2;
/// Resolution facts read per query.
const EVENTS_PER_QUERY: i64 = 200;
/// Canned replies indexed at most (shared ones first).
const CANNED_MAX: i64 = 5_000;
/// Apps whose ranker is kept built.
const RANKERS_MAX: usize = 64;
/// Conversations whose learnt position is remembered (then forgotten all
/// at once: a chat resolved again is read from its start, and its pairs,
/// already known, are not counted twice).
const POSITIONS_MAX: usize = 100_000;
/// Messages read back to find the visitor's last turn.
const RECENT_MESSAGES: usize = 30;

#[derive(Clone)]
struct CannedSet {
    version: (i64, i64),
    docs: Arc<Vec<CannedDoc>>,
}

/// The suggestions' shared state (in `Assist::suggestions`).
#[derive(Default)]
pub struct Suggestions {
    pairs: Mutex<Pairs>,
    positions: Mutex<HashMap<ConversationId, u64>>,
    canned: Mutex<Option<CannedSet>>,
    rankers: Mutex<HashMap<AppId, Arc<Ranker>>>,
    wake: Notify,
}

impl Suggestions {
    /// A conversation was resolved: the learner reads it soon.
    pub fn resolved(&self) {
        self.wake.notify_one();
    }

    /// Pairs learnt (all apps), for tests and the bench.
    pub fn learnt(&self) -> usize {
        self.pairs.lock().len()
    }

    /// The canned replies, read again when they changed (their count or
    /// newest change); a change drops every built ranker.
    async fn canned(&self, db: &mut SqliteConnection) -> Result<CannedSet, ApiError> {
        let version: (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM canned_replies")
                .fetch_one(&mut *db)
                .await?;
        if let Some(set) = self.canned.lock().as_ref().filter(|s| s.version == version) {
            return Ok(set.clone());
        }
        let rows: Vec<(String, Option<AgentId>, String, String)> = sqlx::query_as(
            "SELECT id, owner_id, title, substr(body, 1, ?) FROM canned_replies
             ORDER BY owner_id IS NOT NULL, id LIMIT ?",
        )
        .bind(rank::CANNED_TEXT_CHARS as i64)
        .bind(CANNED_MAX)
        .fetch_all(&mut *db)
        .await?;
        let set = CannedSet {
            version,
            docs: Arc::new(
                rows.into_iter()
                    .map(|(id, owner, title, body)| CannedDoc {
                        id,
                        owner,
                        title,
                        body,
                    })
                    .collect(),
            ),
        };
        *self.canned.lock() = Some(set.clone());
        self.rankers.lock().clear();
        Ok(set)
    }

    async fn build(&self, app: AppId, canned: &CannedSet) -> Result<Arc<Ranker>, ApiError> {
        let documents = self.pairs.lock().documents(app);
        let docs = Arc::clone(&canned.docs);
        let ranker = tokio::task::spawn_blocking(move || Ranker::build(&docs, &documents))
            .await
            .map_err(ApiError::internal)?;
        let ranker = Arc::new(ranker);
        let mut rankers = self.rankers.lock();
        if rankers.len() >= RANKERS_MAX {
            rankers.clear();
        }
        rankers.insert(app, Arc::clone(&ranker));
        Ok(ranker)
    }

    /// The app's ranker: built when first asked for and after the canned
    /// replies changed; the learner rebuilds it after it learnt.
    async fn ranker(&self, state: &AppState, app: AppId) -> Result<Arc<Ranker>, ApiError> {
        let canned = {
            let mut db = state.db.acquire().await?;
            self.canned(&mut db).await?
        };
        if let Some(ranker) = self.rankers.lock().get(&app) {
            return Ok(Arc::clone(ranker));
        }
        self.build(app, &canned).await
    }
}

/// The (visitor turn → agent reply) pairs of a conversation's messages,
/// in seq order: up to [`TURN_MESSAGES`] visitor text messages in a row
/// make a question, the next [`REPLIES_PER_TURN`] agent text messages are
/// its replies. Notes, bot and system lines, images and files are skipped.
pub fn pairs_of(messages: &[Message]) -> Vec<Pair> {
    let mut pairs = Vec::new();
    let mut turn: Vec<&str> = Vec::new();
    let mut replies = 0;
    for message in messages {
        if message.kind != MessageKind::Text || message.content.trim().is_empty() {
            continue;
        }
        match message.sender.kind {
            SenderType::Visitor => {
                if replies > 0 {
                    turn.clear();
                    replies = 0;
                }
                turn.push(&message.content);
                if turn.len() > TURN_MESSAGES {
                    turn.remove(0);
                }
            }
            SenderType::Agent if !turn.is_empty() && replies < REPLIES_PER_TURN => {
                pairs.push(Pair {
                    question: turn.join(" "),
                    reply: message.content.clone(),
                    canned_id: canned_id(&message.meta),
                });
                replies += 1;
            }
            _ => {}
        }
    }
    pairs
}

/// `meta.canned_id` of an agent's message: the canned reply it was
/// inserted from (docs/PROTOCOL.md, "Canned reply labels").
pub fn canned_id(meta: &Value) -> Option<String> {
    meta.get("canned_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= 64)
        .map(str::to_owned)
}

/// The visitor's last turn: their last text messages in a row (up to
/// [`TURN_MESSAGES`]), before whatever agents said after them.
pub fn last_turn(messages: &[Message]) -> String {
    let mut turn: Vec<&str> = Vec::new();
    for message in messages.iter().rev() {
        if message.kind != MessageKind::Text || message.content.trim().is_empty() {
            continue;
        }
        match message.sender.kind {
            SenderType::Visitor => {
                turn.push(&message.content);
                if turn.len() == TURN_MESSAGES {
                    break;
                }
            }
            SenderType::Agent if !turn.is_empty() => break,
            _ => {}
        }
    }
    turn.reverse();
    turn.join(" ")
}

fn decode_all(stored: &[crate::store::messages::StoredMessage]) -> Vec<Message> {
    stored.iter().filter_map(|m| m.decode().ok()).collect()
}

// ---- the learner --------------------------------------------------------

/// Runs the learner on a thread of its own at the lowest CPU priority
/// (as `search::spawn`); it stops with the server.
pub fn spawn(state: AppState) {
    let spawned = std::thread::Builder::new()
        .name("kefu-suggest".into())
        .spawn(move || {
            crate::store::db::lower_own_priority();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(learn(state)),
                Err(error) => tracing::error!(%error, "cannot start the suggestion learner"),
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the suggestion learner's thread");
    }
}

async fn learn(state: AppState) {
    let suggestions = &state.assist.suggestions;
    let mut db = match crate::store::db::connect_background(
        &state.config.data_dir,
        state.config.memory.sqlite(),
    )
    .await
    {
        Ok(db) => db,
        Err(error) => return tracing::error!(%error, "the suggestion learner cannot open SQLite"),
    };
    let mut cursor = match start_cursor(&mut db).await {
        Ok(cursor) => cursor,
        Err(error) => {
            tracing::error!(%error, "the suggestion learner cannot read resolutions");
            0
        }
    };
    loop {
        if let Err(error) = pass(&state, &mut db, &mut cursor).await {
            tracing::warn!(%error, "the suggestion learner failed a pass");
        }
        tokio::select! {
            _ = suggestions.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = state.shutdown.cancelled() => return,
        }
    }
}

/// Just below the last [`RECENT_AT_START`] resolutions.
async fn start_cursor(db: &mut SqliteConnection) -> Result<i64, ApiError> {
    let first: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(id) FROM (SELECT id FROM reporting_events
         WHERE name = 'conversation_resolved' ORDER BY id DESC LIMIT ?)",
    )
    .bind(RECENT_AT_START)
    .fetch_one(&mut *db)
    .await?;
    Ok(first.map_or(0, |id| id - 1))
}

/// Learns every chat resolved since `cursor`, then rebuilds the rankers
/// of the apps that learnt something.
async fn pass(state: &AppState, db: &mut SqliteConnection, cursor: &mut i64) -> anyhow::Result<()> {
    let suggestions = &state.assist.suggestions;
    let canned = suggestions.canned(&mut *db).await?;
    let known: HashSet<&str> = canned.docs.iter().map(|d| d.id.as_str()).collect();
    let mut changed: HashSet<AppId> = HashSet::new();
    loop {
        if state.shutdown.is_cancelled() {
            return Ok(());
        }
        // Facts up to `last` are committed (one writer at a time gives
        // ids in commit order), so none is skipped.
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM reporting_events")
            .fetch_one(&mut *db)
            .await?;
        let events: Vec<(i64, ConversationId)> = sqlx::query_as(
            "SELECT id, conversation_id FROM reporting_events
             WHERE id > ? AND id <= ? AND name = 'conversation_resolved'
               AND conversation_id IS NOT NULL
             ORDER BY id LIMIT ?",
        )
        .bind(*cursor)
        .bind(last)
        .bind(EVENTS_PER_QUERY)
        .fetch_all(&mut *db)
        .await?;
        let full = events.len() as i64 == EVENTS_PER_QUERY;
        for (id, conversation) in events {
            if let Some(app) = learn_conversation(state, db, conversation, &known).await? {
                changed.insert(app);
            }
            *cursor = id;
        }
        if !full {
            *cursor = (*cursor).max(last);
            break;
        }
    }
    for app in changed {
        let built = suggestions.rankers.lock().contains_key(&app);
        if built {
            suggestions.build(app, &canned).await?;
        }
    }
    Ok(())
}

async fn learn_conversation(
    state: &AppState,
    db: &mut SqliteConnection,
    conversation: ConversationId,
    canned: &HashSet<&str>,
) -> anyhow::Result<Option<AppId>> {
    let row: Option<(AppId, VisitorId)> =
        sqlx::query_as("SELECT app_id, visitor_id FROM conversations WHERE id = ?")
            .bind(conversation)
            .fetch_optional(&mut *db)
            .await?;
    let Some((app, visitor)) = row else {
        return Ok(None);
    };
    let suggestions = &state.assist.suggestions;
    let from = suggestions
        .positions
        .lock()
        .get(&conversation)
        .copied()
        .unwrap_or(0);
    let stored = state
        .log
        .page(conversation, from, None, MESSAGES_PER_CONVERSATION, false)?;
    let Some(last) = stored.last().map(|m| m.seq) else {
        return Ok(None);
    };
    {
        let mut positions = suggestions.positions.lock();
        if positions.len() >= POSITIONS_MAX {
            positions.clear();
        }
        positions.insert(conversation, last);
    }
    let pairs = pairs_of(&decode_all(&stored));
    let added = suggestions
        .pairs
        .lock()
        .learn(app, visitor, &pairs, &|id| canned.contains(id));
    Ok((added > 0 || !pairs.is_empty()).then_some(app))
}

// ---- suggesting ---------------------------------------------------------

/// One suggestion (docs/API.md 2.19).
#[derive(Debug, Serialize)]
pub struct Suggestion {
    /// `canned` or `learnt`.
    pub source: &'static str,
    /// The text to insert: a canned reply rendered for this conversation,
    /// or a learnt reply with its masks (`[电话]`, `[号码]`…).
    pub content: String,
    pub score: f32,
    pub canned_id: Option<String>,
    pub shortcut: Option<String>,
    pub title: Option<String>,
    /// For a learnt reply: in how many conversations agents sent it.
    pub conversations: Option<u32>,
}

/// At most [`SUGGESTIONS_MAX`] replies for `agent` to the visitor's last
/// turn in conversation `id` (404 for an unknown one; none when the
/// visitor has not written).
pub async fn for_agent(
    state: &AppState,
    agent: &Agent,
    id: ConversationId,
) -> Result<Vec<Suggestion>, ApiError> {
    state.starts.settled(id).await;
    let conversation = crate::conversations::find(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let recent = state
        .log
        .page(id, 0, Some(u64::MAX), RECENT_MESSAGES, false)?;
    let text = last_turn(&decode_all(&recent));
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let ranker = state
        .assist
        .suggestions
        .ranker(state, conversation.app_id)
        .await?;
    let ranked: Vec<(Candidate, f32)> = ranker
        .rank(&text, SUGGESTIONS_MAX * 3, |candidate| match candidate {
            Candidate::Canned { owner, .. } => owner.is_none_or(|owner| owner == agent.id),
            Candidate::Learnt { .. } => true,
        })
        .into_iter()
        .map(|(candidate, score)| (candidate.clone(), score))
        .collect();
    drop(ranker);
    let app_name = crate::apps::find(&state.db, conversation.app_id)
        .await?
        .map(|app| app.name)
        .unwrap_or_default();
    let context = crate::canned::Context {
        visitor_name: conversation.visitor.name.as_deref(),
        visitor_email: conversation.visitor.email.as_deref(),
        visitor_attributes: &conversation.visitor.attributes,
        agent_name: &agent.display_name,
        app_name: &app_name,
        conversation_id: Some(id),
    };
    let mut out: Vec<Suggestion> = Vec::new();
    let mut contents: HashSet<String> = HashSet::new();
    for (candidate, score) in ranked {
        if out.len() == SUGGESTIONS_MAX {
            break;
        }
        let score = (score * 1000.0).round() / 1000.0;
        let suggestion = match candidate {
            Candidate::Canned { id: canned_id, .. } => {
                // Read now: deleted, changed or not the agent's since the
                // ranker was built means not suggested, or as it is now.
                let row: Option<(String, String, String)> = sqlx::query_as(
                    "SELECT shortcut, title, body FROM canned_replies
                     WHERE id = ? AND (owner_id IS NULL OR owner_id = ?)",
                )
                .bind(&canned_id)
                .bind(agent.id)
                .fetch_optional(&state.db)
                .await?;
                let Some((shortcut, title, body)) = row else {
                    continue;
                };
                Suggestion {
                    source: "canned",
                    content: crate::canned::render(&body, &context).content,
                    score,
                    canned_id: Some(canned_id),
                    shortcut: Some(shortcut),
                    title: Some(title),
                    conversations: None,
                }
            }
            Candidate::Learnt {
                text,
                conversations,
            } => Suggestion {
                source: "learnt",
                content: text,
                score,
                canned_id: None,
                shortcut: None,
                title: None,
                conversations: Some(conversations),
            },
        };
        if contents.insert(crate::assist::normalize::normalize(&suggestion.content)) {
            out.push(suggestion);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MessageId;
    use crate::message::Sender;

    fn message(kind: SenderType, content: &str, meta: Value) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: ConversationId::new(),
            seq: 0,
            client_msg_id: None,
            kind: MessageKind::Text,
            sender: Sender {
                kind,
                id: "x".into(),
                name: "x".into(),
            },
            content: content.into(),
            meta,
            attachment: None,
            created_at: 0,
        }
    }

    #[test]
    fn turns_pair_with_the_replies_that_follow() {
        use SenderType::{Agent, System, Visitor};
        let none = Value::Null;
        let thread = [
            message(Agent, "您好，有什么可以帮您", none.clone()),
            message(Visitor, "你好", none.clone()),
            message(Visitor, "我想退货", none.clone()),
            message(System, "已转人工", none.clone()),
            message(Agent, "好的", none.clone()),
            message(
                Agent,
                "在订单页申请售后即可",
                serde_json::json!({"canned_id": "c1"}),
            ),
            message(Agent, "还有别的吗", none.clone()),
            message(Visitor, "运费谁出", none.clone()),
        ];
        let pairs = pairs_of(&thread);
        assert_eq!(pairs.len(), 2, "{pairs:?}");
        assert_eq!(pairs[0].question, "你好 我想退货");
        assert_eq!(pairs[0].reply, "好的");
        assert_eq!(pairs[1].canned_id.as_deref(), Some("c1"));
        assert_eq!(last_turn(&thread), "运费谁出");
        assert_eq!(last_turn(&thread[..7]), "你好 我想退货");
        assert_eq!(last_turn(&thread[..1]), "");
    }
}
