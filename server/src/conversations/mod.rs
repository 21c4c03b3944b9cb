//! Conversations: the `Conversation` object and what happens to one
//! (listing, assigning, changing status), the one send path ([`send`]), the
//! start of a chat ([`start`]) and the columns SQLite derives from the
//! message log ([`derived`]). The HTTP doors are in [`routes`].
//!
//! Lifecycle: a conversation is created with its visitor's session and is
//! not a chat yet (`started_at` NULL: hidden from lists). The visitor's first
//! message starts it (`queued`, or `open` when it has an assignee); a visitor
//! message after `resolved` reopens it the same way. The message is acked
//! once durable; the start follows off the send path, in batches
//! ([`start`]).
//!
//! Follow-up actions of a change, owned here: a changed conversation is
//! forgotten by the send path's cache, announced to every agent, and the
//! routing queue is drained (capacity may have been freed, a chat
//! requeued); a newly resolved one records its report fact and tells the
//! reply-suggestion learner.

use std::collections::HashSet;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agents::Agent;
use crate::auth::VisitorPrincipal;
use crate::error::ApiError;
use crate::hub::frames;
use crate::ids::{AgentId, AppId, ConversationId, VisitorId};
use crate::message::{Sender, SenderType};
use crate::state::AppState;
use crate::store::messages::MessageLog;
use crate::time::now_ms;

pub mod derived;
pub mod routes;
pub mod send;
pub mod start;

pub use derived::{Derived, apply_heads};
pub use send::{Checked, Line, SendRequest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "ConversationStatus"))]
pub enum Status {
    Queued,
    Open,
    Pending,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Open => "open",
            Status::Pending => "pending",
            Status::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "Visitor"))]
pub struct VisitorSummary {
    pub id: VisitorId,
    pub name: Option<String>,
    pub email: Option<String>,
    #[cfg_attr(feature = "ts", ts(type = "Record<string, unknown>"))]
    pub attributes: Value,
}

/// The protocol's `Conversation` object.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Conversation {
    pub id: ConversationId,
    pub app_id: AppId,
    pub visitor: VisitorSummary,
    pub status: Status,
    pub assignee_id: Option<AgentId>,
    pub last_seq: u64,
    pub last_message_at: Option<i64>,
    pub created_at: i64,
    /// [ext] For the agent that asked: see `reads::fill_for_agent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub unread_count: Option<u64>,
    /// [ext] How far the visitor has read (agent views only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub visitor_read_seq: Option<u64>,
    /// [ext] The team routing sent it to (rules, transfer); null: everyone.
    pub team_id: Option<crate::ids::TeamId>,
    /// [ext] While `queued`: since when it waits (the queue is FIFO by it).
    pub queued_at: Option<i64>,
    /// [ext] Start of the current session (first or reopening visitor message).
    pub opened_at: Option<i64>,
    /// [ext] The last message (notes included), for list previews; agent
    /// views only (`fill_last_message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub last_message: Option<Box<crate::message::Message>>,
    /// [ext] When `last_message` is an event line ("boss joined"): the last
    /// message a person wrote before it, among the last
    /// [`LAST_SAID_LOOKBACK`]; what a chat list shows as its preview.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub last_said: Option<Box<crate::message::Message>>,
    /// [ext] The asking agent's own read marker (see `reads::fill_for_agent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub read_seq: Option<u64>,
    /// [ext] `normal` or `urgent` (Kefu Assist's urgency signals; urgent
    /// chats are served first from the queue).
    #[cfg_attr(feature = "ts", ts(type = "\"normal\" | \"urgent\""))]
    pub priority: &'static str,
    /// [ext] What Kefu Assist read: predicted intent, language, urgency
    /// reasons (`null` before the first message).
    pub assist: Option<crate::assist::insight::Insight>,
}

/// How far back `last_said` looks behind a trailing run of event lines.
pub const LAST_SAID_LOOKBACK: usize = 20;

/// Sets `last_message` from the log (one point read) and, when that is an
/// event line, `last_said` (one bounded backward scan).
pub fn fill_last_message(log: &MessageLog, conversation: &mut Conversation) {
    conversation.last_message = match log.get(conversation.id, conversation.last_seq) {
        Ok(Some(stored)) => stored.decode().ok().map(Box::new),
        _ => None,
    };
    conversation.last_said = None;
    if conversation
        .last_message
        .as_ref()
        .is_some_and(|m| m.kind == crate::message::MessageKind::Event)
        && let Ok(page) = log.page(
            conversation.id,
            0,
            Some(conversation.last_seq),
            LAST_SAID_LOOKBACK,
            true,
        )
    {
        conversation.last_said = page
            .iter()
            .rev()
            .filter_map(|stored| stored.decode().ok())
            .find(|m| m.kind != crate::message::MessageKind::Event)
            .map(Box::new);
    }
}

#[derive(sqlx::FromRow)]
struct ConversationRow {
    id: ConversationId,
    app_id: AppId,
    status: Status,
    assignee_id: Option<AgentId>,
    last_seq: i64,
    last_message_at: Option<i64>,
    activity_at: i64,
    created_at: i64,
    visitor_id: VisitorId,
    visitor_name: Option<String>,
    visitor_email: Option<String>,
    visitor_attributes: String,
    team_id: Option<crate::ids::TeamId>,
    queued_at: Option<i64>,
    opened_at: Option<i64>,
    priority: i64,
    assist_insight: Option<String>,
}

const SELECT: &str =
    "SELECT c.id, c.app_id, c.status, c.assignee_id, c.last_seq, c.last_message_at, c.activity_at,
    c.created_at, v.id AS visitor_id, v.name AS visitor_name, v.email AS visitor_email,
    v.attributes AS visitor_attributes, c.team_id, c.queued_at, c.opened_at,
    c.priority, c.assist_insight
    FROM conversations c JOIN visitors v ON v.id = c.visitor_id";

impl ConversationRow {
    /// The row with the log's head laid over the derived columns.
    fn into_conversation(self, log: &MessageLog) -> Conversation {
        let head = log.head(self.id).ok().flatten();
        let (last_seq, last_message_at) = match head {
            Some(head) => (head.last_seq, Some(head.last_at)),
            None => (
                u64::try_from(self.last_seq).unwrap_or(0),
                self.last_message_at,
            ),
        };
        Conversation {
            id: self.id,
            app_id: self.app_id,
            visitor: VisitorSummary {
                id: self.visitor_id,
                name: self.visitor_name,
                email: self.visitor_email,
                attributes: serde_json::from_str(&self.visitor_attributes)
                    .unwrap_or(Value::Object(Default::default())),
            },
            status: self.status,
            assignee_id: self.assignee_id,
            last_seq,
            last_message_at,
            created_at: self.created_at,
            unread_count: None,
            visitor_read_seq: None,
            team_id: self.team_id,
            queued_at: self.queued_at.filter(|_| self.status == Status::Queued),
            opened_at: self.opened_at,
            last_message: None,
            last_said: None,
            read_seq: None,
            priority: if self.priority > 0 {
                "urgent"
            } else {
                "normal"
            },
            assist: self
                .assist_insight
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok()),
        }
    }
}

pub async fn find(state: &AppState, id: ConversationId) -> Result<Option<Conversation>, ApiError> {
    let row: Option<ConversationRow> = sqlx::query_as(&format!("{SELECT} WHERE c.id = ?"))
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    Ok(row.map(|row| row.into_conversation(&state.log)))
}

/// The conversations of `ids` that exist (any order): one query per
/// thousand.
pub async fn find_many(
    state: &AppState,
    ids: &[ConversationId],
) -> Result<Vec<Conversation>, ApiError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1_000) {
        let mut query =
            sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!("{SELECT} WHERE c.id IN ("));
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(")");
        let rows: Vec<ConversationRow> = query.build_query_as().fetch_all(&state.db).await?;
        out.extend(
            rows.into_iter()
                .map(|row| row.into_conversation(&state.log)),
        );
    }
    Ok(out)
}

/// Who is sending.
#[derive(Debug, Clone)]
pub enum Author {
    Agent(Agent),
    Visitor(VisitorPrincipal),
}

impl Author {
    pub fn sender(&self) -> Sender {
        match self {
            Author::Agent(agent) => Sender {
                kind: SenderType::Agent,
                id: agent.id.to_string(),
                name: agent.display_name.clone(),
            },
            Author::Visitor(visitor) => Sender {
                kind: SenderType::Visitor,
                id: visitor.visitor_id.to_string(),
                name: visitor.name.clone().unwrap_or_default(),
            },
        }
    }

    fn key(&self) -> [u8; 16] {
        match self {
            Author::Agent(agent) => agent.id.to_bytes(),
            Author::Visitor(visitor) => visitor.visitor_id.to_bytes(),
        }
    }
}

/// In-memory facts that keep SQLite off the message hot path. Both sets are
/// caches of what SQLite says, bounded by clearing.
#[derive(Default)]
pub struct ConversationCache {
    /// Conversations known to exist (they are never deleted).
    known: RwLock<HashSet<ConversationId>>,
    /// Conversations known to be started and not resolved: a visitor
    /// message to one of these changes nothing in SQLite.
    active: RwLock<HashSet<ConversationId>>,
}

const CACHE_MAX: usize = 500_000;

impl ConversationCache {
    fn remember(set: &RwLock<HashSet<ConversationId>>, id: ConversationId) {
        let mut set = set.write();
        if set.len() >= CACHE_MAX {
            set.clear();
        }
        set.insert(id);
    }

    pub fn forget_active(&self, id: ConversationId) {
        self.active.write().remove(&id);
    }

    pub(crate) fn is_active(&self, id: ConversationId) -> bool {
        self.active.read().contains(&id)
    }
}

pub(crate) async fn exists(state: &AppState, id: ConversationId) -> Result<bool, ApiError> {
    if state.conversations.known.read().contains(&id) {
        return Ok(true);
    }
    let found: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM conversations WHERE id = ?")
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    if found.is_some() {
        ConversationCache::remember(&state.conversations.known, id);
    }
    Ok(found.is_some())
}

/// Sends each current `Conversation` of `ids` to every agent connection.
pub async fn announce_many(state: &AppState, ids: &[ConversationId]) -> Result<(), ApiError> {
    for conversation in find_many(state, ids).await? {
        state
            .hub
            .broadcast_agents(&frames::conversation(&conversation));
    }
    Ok(())
}

/// Sends the current `Conversation` to every agent connection.
pub async fn announce(
    state: &AppState,
    id: ConversationId,
) -> Result<Option<Conversation>, ApiError> {
    let conversation = find(state, id).await?;
    if let Some(conversation) = &conversation {
        state
            .hub
            .broadcast_agents(&frames::conversation(conversation));
    }
    Ok(conversation)
}

/// Which conversations a list asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub assignee: Assignee,
}

/// Whose conversations a list asks for.
#[derive(Debug, Clone, Copy, Default)]
pub enum Assignee {
    #[default]
    Anyone,
    Nobody,
    Agent(AgentId),
}

/// A page of started conversations, newest activity first, and the cursor
/// of the next page. Every start acked before the call is listed.
pub async fn list(
    state: &AppState,
    filter: ListFilter,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Vec<Conversation>, Option<String>), ApiError> {
    state.starts.settled_all().await;
    let mut sql = format!("{SELECT} WHERE c.started_at IS NOT NULL");
    let mut binds: Vec<String> = Vec::new();
    if let Some(status) = filter.status {
        sql.push_str(" AND c.status = ?");
        binds.push(status.as_str().to_owned());
    }
    match filter.assignee {
        Assignee::Anyone => {}
        Assignee::Nobody => sql.push_str(" AND c.assignee_id IS NULL"),
        Assignee::Agent(id) => {
            sql.push_str(" AND c.assignee_id = ?");
            binds.push(id.to_string());
        }
    }
    let cursor = cursor.map(parse_cursor).transpose()?;
    if cursor.is_some() {
        sql.push_str(" AND (c.activity_at, c.id) < (?, ?)");
    }
    sql.push_str(" ORDER BY c.activity_at DESC, c.id DESC LIMIT ?");
    let mut q = sqlx::query_as::<_, ConversationRow>(&sql);
    for bind in binds {
        q = q.bind(bind);
    }
    if let Some((at, id)) = cursor {
        q = q.bind(at).bind(id);
    }
    let mut rows = q.bind(i64::from(limit) + 1).fetch_all(&state.db).await?;
    let next_cursor = crate::http::extract::cut_page(&mut rows, limit, |row| {
        format!("{}_{}", row.activity_at, row.id)
    });
    let conversations = rows
        .into_iter()
        .map(|row| row.into_conversation(&state.log))
        .collect();
    Ok((conversations, next_cursor))
}

/// Cursor: `activity_at` and id of the last row served, as `ms_id`.
fn parse_cursor(cursor: &str) -> Result<(i64, ConversationId), ApiError> {
    let bad = || ApiError::bad_request("invalid cursor").in_field("cursor");
    let (at, id) = cursor.split_once('_').ok_or_else(bad)?;
    Ok((
        at.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

/// Gives the conversation to `assignee` (or to nobody): assigning takes a
/// waiting chat out of the queue; unassigning an active one puts it back.
/// A deactivated agent cannot be given chats (409, nothing changes).
pub async fn assign(
    state: &AppState,
    id: ConversationId,
    assignee: Option<AgentId>,
) -> Result<Conversation, ApiError> {
    // A start acked before this call is committed first (see `start`).
    state.starts.settled(id).await;
    if let Some(agent) = assignee {
        match crate::agents::find(&state.db, agent).await? {
            None => return Err(ApiError::not_found("agent")),
            Some(agent) if !agent.active => {
                return Err(ApiError::Conflict(format!(
                    "{} is deactivated and cannot be assigned chats",
                    agent.display_name
                )));
            }
            Some(_) => {}
        }
    }
    let updated = sqlx::query(
        "UPDATE conversations SET assignee_id = ?1,
             status = CASE
                 WHEN ?1 IS NOT NULL AND status = 'queued' THEN 'open'
                 WHEN ?1 IS NULL AND status IN ('open', 'pending') AND started_at IS NOT NULL THEN 'queued'
                 ELSE status END,
             queued_at = CASE
                 WHEN ?1 IS NULL AND status IN ('open', 'pending') AND started_at IS NOT NULL THEN ?3
                 ELSE queued_at END
         WHERE id = ?2",
    )
    .bind(assignee)
    .bind(id)
    .bind(now_ms())
    .execute(&state.db)
    .await?
    .rows_affected();
    changed(state, id, updated).await
}

/// Sets the status an agent may set (`open`, `pending`, `resolved`; the
/// queue is routing's). Resolving stamps `resolved_at` once per session (a
/// repeated resolve changes nothing); any other status clears it.
pub async fn set_status(
    state: &AppState,
    id: ConversationId,
    status: Status,
) -> Result<Conversation, ApiError> {
    // A start acked before this call is committed first (see `start`).
    state.starts.settled(id).await;
    if status == Status::Queued {
        return Err(
            ApiError::bad_request("status must be open, pending or resolved").in_field("status"),
        );
    }
    let now = now_ms();
    #[derive(sqlx::FromRow)]
    struct Resolved {
        app_id: AppId,
        assignee_id: Option<AgentId>,
        opened_at: Option<i64>,
        newly_resolved: bool,
    }
    let updated: Option<Resolved> = sqlx::query_as(
        "UPDATE conversations SET
             resolved_at = CASE WHEN ?1 = 'resolved' THEN COALESCE(resolved_at, ?2) ELSE NULL END,
             status = ?1
         WHERE id = ?3
         RETURNING app_id, assignee_id, opened_at, (resolved_at = ?2 AND ?1 = 'resolved') AS newly_resolved",
    )
    .bind(status)
    .bind(now)
    .bind(id)
    .fetch_optional(&state.db)
    .await?;
    if let Some(Resolved {
        app_id,
        assignee_id: assignee,
        opened_at,
        newly_resolved: true,
    }) = updated
    {
        crate::reports::record(
            &state.db,
            crate::reports::EventName::ConversationResolved,
            crate::reports::Event {
                app_id: Some(app_id),
                conversation_id: Some(id),
                agent_id: assignee,
                value_ms: opened_at.map(|opened| now - opened),
                at: Some(now),
                ..Default::default()
            },
        )
        .await?;
        state.assist.suggestions.resolved();
    }
    changed(state, id, u64::from(updated.is_some())).await
}

/// The follow-up of a change to `updated` rows: 404 if none, else the fresh
/// conversation, announced to every agent, then a drain of the queue.
async fn changed(
    state: &AppState,
    id: ConversationId,
    updated: u64,
) -> Result<Conversation, ApiError> {
    if updated == 0 {
        return Err(ApiError::not_found("conversation"));
    }
    state.conversations.forget_active(id);
    let conversation = announce(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    // Capacity may have been freed (resolve, reassign) or a chat requeued.
    crate::routing::drain_logged(state).await;
    Ok(conversation)
}
