//! Conversations: the `Conversation` object, the agent routes under
//! `/api/v1/conversations`, the send path shared by REST and WebSocket, and
//! the columns SQLite derives from the message log.
//!
//! Lifecycle: a conversation is created with its visitor's session and is
//! not a chat yet (`started_at` NULL: hidden from lists). The visitor's first
//! message starts it (`queued`, or `open` when it has an assignee); a visitor
//! message after `resolved` reopens it the same way. The message is acked
//! once durable; the start follows off the send path, in batches
//! ([`start`]).
//!
//! Derived columns (`last_seq`, `last_message_at`, `activity_at`) follow the
//! log 20–500 ms behind (more under load, see [`derive_pause`]), are
//! rebuilt from `conv_head` at start, and are overlaid from the log whenever
//! a `Conversation` is served, so clients always see the log's truth.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::SqlitePool;
use tokio::sync::Notify;

use crate::agents::Agent;
use crate::auth::{AgentAuth, VisitorPrincipal};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::hub::{ConnId, frames};
use crate::ids::{AgentId, AppId, ConversationId, VisitorId};
use crate::message::{self, MessageKind, SendInput, Sender, SenderType};
use crate::state::AppState;
use crate::store::messages::{Appended, Draft, Head, MessageLog, StoredMessage};
use crate::time::now_ms;

pub mod start;

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

    fn is_active(&self, id: ConversationId) -> bool {
        self.active.read().contains(&id)
    }
}

async fn exists(state: &AppState, id: ConversationId) -> Result<bool, ApiError> {
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

/// The one send path: authorizes, appends to the log (waiting until it is
/// durable), and moves the conversation along when a visitor writes.
pub async fn send(
    state: &AppState,
    author: &Author,
    conversation: ConversationId,
    input: SendInput,
    kind: MessageKind,
    origin: Option<ConnId>,
) -> Result<Appended, ApiError> {
    send_with_attachment(state, author, conversation, input, kind, None, origin).await
}

/// [`send`] with a `Message.attachment` (checked by `attachments::attach`).
pub async fn send_with_attachment(
    state: &AppState,
    author: &Author,
    conversation: ConversationId,
    input: SendInput,
    kind: MessageKind,
    attachment: Option<Value>,
    origin: Option<ConnId>,
) -> Result<Appended, ApiError> {
    match author {
        Author::Visitor(visitor) if visitor.conversation_id != conversation => {
            return Err(ApiError::forbidden("not your conversation"));
        }
        Author::Visitor(_) => {}
        Author::Agent(_) => {
            // Boxed, like the rare paths below: a query's state would
            // otherwise enlarge every send's future.
            if !Box::pin(exists(state, conversation)).await? {
                return Err(ApiError::not_found("conversation"));
            }
        }
    }
    // A conversation whose start is still being committed: wait for it, so
    // that the thread keeps its order (the first message, its "joined" line
    // or auto-reply, then this one) and the start is not asked for twice.
    state.starts.settled(conversation).await;
    // A visitor writing into a conversation that is not known to be going
    // (checked without I/O) starts it: the message carries a start marker
    // in its own log batch, and the starter does the rest after the ack
    // (see `start`).
    let start =
        matches!(author, Author::Visitor(_)) && !state.conversations.is_active(conversation);
    if start {
        state.starts.room().await;
    }
    let draft = Draft {
        conversation_id: conversation,
        sender: author.sender(),
        sender_key: author.key(),
        client_msg_id: Some(input.client_msg_id),
        kind,
        content: input.content,
        meta: input.meta,
        attachment,
        start,
    };
    Ok(state.log.append(draft, origin).await?)
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

// ---- routes -------------------------------------------------------------

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list))
        .route("/conversations/{id}", get(get_one))
        .route(
            "/conversations/{id}/messages",
            get(messages).post(post_message),
        )
        .route("/conversations/{id}/assign", post(assign))
        .route("/conversations/{id}/status", post(set_status))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct ListResponse {
    conversations: Vec<Conversation>,
    next_cursor: Option<String>,
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

pub fn page_limit(state: &AppState, limit: Option<u32>, default: u32) -> Result<u32, ApiError> {
    let max = state.config.limits.page_max;
    match limit {
        None => Ok(default.min(max)),
        Some(0) => Err(ApiError::bad_request("limit must be at least 1").in_field("limit")),
        Some(n) if n > max => {
            Err(ApiError::bad_request(format!("limit must be at most {max}")).in_field("limit"))
        }
        Some(n) => Ok(n),
    }
}

async fn list(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListResponse>> {
    let limit = page_limit(&state, query.limit, 50)?;
    // Every start acked before this request is listed (see `start`).
    state.starts.settled_all().await;
    let mut sql = format!("{SELECT} WHERE c.started_at IS NOT NULL");
    let mut binds: Vec<String> = Vec::new();
    if let Some(status) = query.status {
        sql.push_str(" AND c.status = ?");
        binds.push(
            serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        );
    }
    match query.assignee.as_deref() {
        None | Some("") => {}
        Some("me") => {
            sql.push_str(" AND c.assignee_id = ?");
            binds.push(agent.id.to_string());
        }
        Some("none") => sql.push_str(" AND c.assignee_id IS NULL"),
        Some(other) => {
            let id: AgentId = other.parse().map_err(|_| {
                ApiError::bad_request("assignee must be me, none or an agent id")
                    .in_field("assignee")
            })?;
            sql.push_str(" AND c.assignee_id = ?");
            binds.push(id.to_string());
        }
    }
    let cursor = query.cursor.as_deref().map(parse_cursor).transpose()?;
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
    let mut conversations: Vec<Conversation> = rows
        .into_iter()
        .map(|row| row.into_conversation(&state.log))
        .collect();
    crate::reads::fill_for_agent(&state, agent.id, &mut conversations).await?;
    Ok(Json(ListResponse {
        conversations,
        next_cursor,
    }))
}

#[derive(Debug, Serialize)]
struct ConversationResponse {
    conversation: Conversation,
}

async fn get_one(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiPath(id): ApiPath<ConversationId>,
) -> ApiResult<Json<ConversationResponse>> {
    state.starts.settled(id).await;
    let conversation = find(&state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let mut one = [conversation];
    crate::reads::fill_for_agent(&state, agent.id, &mut one).await?;
    let [conversation] = one;
    Ok(Json(ConversationResponse { conversation }))
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// A page of messages as `{"messages": [...]}`, the stored JSON spliced in.
pub fn messages_page(
    state: &AppState,
    conversation: ConversationId,
    query: &PageQuery,
    include_notes: bool,
) -> Result<Response, ApiError> {
    let limit = page_limit(state, query.limit, state.config.limits.page_max)?;
    let page = state.log.page(
        conversation,
        query.after.unwrap_or(0),
        query.before,
        limit as usize,
        include_notes,
    )?;
    let mut body = String::with_capacity(16 + page.iter().map(|m| m.json.len() + 1).sum::<usize>());
    body.push_str(r#"{"messages":["#);
    for (index, message) in page.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(&message.json);
    }
    body.push_str("]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `{"message": …}` with 201 for a new message, 200 for a resend.
pub fn message_response(appended: &Appended) -> Response {
    let status = if appended.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = format!(r#"{{"message":{}}}"#, appended.message.json);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn messages(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    ApiPath(id): ApiPath<ConversationId>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    // A start acked before this request is committed first (see `start`).
    state.starts.settled(id).await;
    if !exists(&state, id).await? {
        return Err(ApiError::not_found("conversation"));
    }
    messages_page(&state, id, &query, true)
}

#[derive(Debug, Deserialize)]
pub struct SendBody {
    pub client_msg_id: Option<String>,
    pub content: Option<String>,
    pub meta: Option<Value>,
    #[serde(default)]
    pub private: bool,
    /// An uploaded attachment to send (then `content` is an optional caption).
    pub attachment_id: Option<String>,
}

async fn post_message(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(body): ApiJson<SendBody>,
) -> ApiResult<Response> {
    // A start acked before this request is committed first (see `start`).
    state.starts.settled(id).await;
    let input = message::validate_send_with(
        &state.config.limits,
        body.client_msg_id.as_deref(),
        body.content.as_deref(),
        body.meta.as_ref(),
        body.attachment_id.is_some(),
    )?;
    let kind = if body.private {
        MessageKind::Note
    } else {
        MessageKind::Text
    };
    let author = Author::Agent(agent);
    let (kind, attachment) =
        crate::attachments::attach(&state, &author, body.attachment_id.as_deref(), kind).await?;
    let appended = send_with_attachment(&state, &author, id, input, kind, attachment, None).await?;
    Ok(message_response(&appended))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    #[serde(default, deserialize_with = "crate::http::extract::explicit_null")]
    agent_id: Option<Option<AgentId>>,
}

async fn assign(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(body): ApiJson<AssignBody>,
) -> ApiResult<Json<ConversationResponse>> {
    // A start acked before this request is committed first (see `start`).
    state.starts.settled(id).await;
    let Some(assignee) = body.agent_id else {
        return Err(
            ApiError::bad_request("agent_id is required (null to unassign)").in_field("agent_id"),
        );
    };
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
    // Assigning takes a waiting chat out of the queue; unassigning an
    // active one puts it back.
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
    changed(&state, id, updated).await
}

/// After an update of `updated` rows: 404 if none, else the fresh
/// conversation, announced to every agent.
async fn changed(
    state: &AppState,
    id: ConversationId,
    updated: u64,
) -> ApiResult<Json<ConversationResponse>> {
    if updated == 0 {
        return Err(ApiError::not_found("conversation"));
    }
    state.conversations.forget_active(id);
    let conversation = announce(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    // Capacity may have been freed (resolve, reassign) or a chat requeued.
    crate::routing::drain_logged(state).await;
    Ok(Json(ConversationResponse { conversation }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: Status,
}

async fn set_status(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(body): ApiJson<StatusBody>,
) -> ApiResult<Json<ConversationResponse>> {
    // A start acked before this request is committed first (see `start`).
    state.starts.settled(id).await;
    if body.status == Status::Queued {
        return Err(
            ApiError::bad_request("status must be open, pending or resolved").in_field("status"),
        );
    }
    let now = now_ms();
    // Resolving stamps `resolved_at` once per session (a repeated resolve
    // changes nothing); any other status clears it.
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
    .bind(body.status)
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
    changed(&state, id, u64::from(updated.is_some())).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
