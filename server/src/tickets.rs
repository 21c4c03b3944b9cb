//! Tickets: numbered (#1, #2, …) cases with status, priority, assignee,
//! tags, a requester and an optional link to a conversation; comments are
//! public or internal. Every change goes to agents as a `ticket` frame.
//! Routes under `/api/v1/tickets`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::AgentAuth;
use crate::conversations::page_limit;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::hub::frames;
use crate::ids::{AgentId, CommentId, ConversationId, VisitorId};
use crate::state::AppState;
use crate::time::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum TicketStatus {
    Open,
    Pending,
    Solved,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

#[derive(Debug, Clone, Serialize)]
pub struct Requester {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<VisitorId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The protocol's `Ticket` object.
#[derive(Debug, Clone, Serialize)]
pub struct Ticket {
    pub number: u64,
    pub subject: String,
    pub description: String,
    pub status: TicketStatus,
    pub priority: Priority,
    pub assignee_id: Option<AgentId>,
    pub conversation_id: Option<ConversationId>,
    pub requester: Requester,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    number: i64,
    subject: String,
    description: String,
    status: TicketStatus,
    priority: Priority,
    assignee_id: Option<AgentId>,
    conversation_id: Option<ConversationId>,
    requester_visitor_id: Option<VisitorId>,
    requester_email: Option<String>,
    tags: String,
    created_at: i64,
    updated_at: i64,
}

impl From<TicketRow> for Ticket {
    fn from(row: TicketRow) -> Self {
        Ticket {
            number: u64::try_from(row.number).unwrap_or(0),
            subject: row.subject,
            description: row.description,
            status: row.status,
            priority: row.priority,
            assignee_id: row.assignee_id,
            conversation_id: row.conversation_id,
            requester: Requester {
                visitor_id: row.requester_visitor_id,
                email: row.requester_email,
            },
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const COLUMNS: &str =
    "number, subject, description, status, priority, assignee_id, conversation_id,
    requester_visitor_id, requester_email, tags, created_at, updated_at";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Comment {
    pub id: CommentId,
    pub ticket_number: i64,
    pub author_id: AgentId,
    pub body: String,
    pub public: bool,
    pub created_at: i64,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tickets", post(create).get(list))
        .route("/tickets/{number}", get(get_one).patch(update))
        .route(
            "/tickets/{number}/comments",
            post(add_comment).get(comments),
        )
}

async fn find(state: &AppState, number: i64) -> Result<Option<Ticket>, ApiError> {
    let row: Option<TicketRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM tickets WHERE number = ?"))
            .bind(number)
            .fetch_optional(&state.db)
            .await?;
    Ok(row.map(Ticket::from))
}

fn parse_number(text: &str) -> Result<i64, ApiError> {
    text.trim_start_matches('#')
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found("ticket"))
}

fn check_subject(subject: &str) -> Result<String, ApiError> {
    let subject = subject.trim();
    if subject.is_empty() {
        return Err(ApiError::bad_request("subject must not be empty"));
    }
    if subject.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "subject is longer than 200 characters",
        ));
    }
    Ok(subject.to_owned())
}

fn check_text(state: &AppState, field: &str, text: &str) -> Result<(), ApiError> {
    if text.len() > state.config.limits.content_bytes {
        return Err(ApiError::too_large(format!(
            "{field} is longer than {} bytes",
            state.config.limits.content_bytes
        )));
    }
    Ok(())
}

fn check_tags(tags: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut clean: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() || tag.chars().count() > 50 || tag.chars().any(char::is_control) {
            return Err(ApiError::bad_request("tags must be 1-50 characters"));
        }
        if !clean.contains(&tag) {
            clean.push(tag);
        }
    }
    if clean.len() > 20 {
        return Err(ApiError::bad_request("at most 20 tags"));
    }
    Ok(clean)
}

async fn check_agent(state: &AppState, agent: Option<AgentId>) -> Result<(), ApiError> {
    if let Some(agent) = agent
        && crate::agents::find(&state.db, agent).await?.is_none()
    {
        return Err(ApiError::not_found("assignee"));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    subject: String,
    #[serde(default)]
    description: String,
    priority: Option<Priority>,
    conversation_id: Option<ConversationId>,
    assignee_id: Option<AgentId>,
    requester_email: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Serialize)]
struct TicketResponse {
    ticket: Ticket,
}

async fn create(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<TicketResponse>)> {
    let subject = check_subject(&body.subject)?;
    check_text(&state, "description", &body.description)?;
    let tags = check_tags(body.tags)?;
    check_agent(&state, body.assignee_id).await?;
    let mut requester_visitor = None;
    let mut requester_email = body.requester_email.filter(|e| !e.trim().is_empty());
    if let Some(email) = &requester_email
        && (email.len() > 320 || !email.contains('@'))
    {
        return Err(ApiError::bad_request(
            "requester_email is not an email address",
        ));
    }
    if let Some(conversation) = body.conversation_id {
        let row: Option<(VisitorId, Option<String>)> = sqlx::query_as(
            "SELECT v.id, v.email FROM conversations c JOIN visitors v ON v.id = c.visitor_id WHERE c.id = ?",
        )
        .bind(conversation)
        .fetch_optional(&state.db)
        .await?;
        let (visitor, email) = row.ok_or_else(|| ApiError::not_found("conversation"))?;
        requester_visitor = Some(visitor);
        requester_email = requester_email.or(email);
    }
    let now = now_ms();
    let number: (i64,) = sqlx::query_as(
        "INSERT INTO tickets (subject, description, status, priority, assignee_id, conversation_id,
             requester_visitor_id, requester_email, tags, created_by, created_at, updated_at)
         VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING number",
    )
    .bind(&subject)
    .bind(body.description.trim())
    .bind(body.priority.unwrap_or(Priority::Normal))
    .bind(body.assignee_id)
    .bind(body.conversation_id)
    .bind(requester_visitor)
    .bind(requester_email)
    .bind(serde_json::to_string(&tags).map_err(ApiError::internal)?)
    .bind(agent.id)
    .bind(now)
    .bind(now)
    .fetch_one(&state.db)
    .await?;
    let ticket = find(&state, number.0)
        .await?
        .ok_or_else(|| ApiError::not_found("ticket"))?;
    state.hub.broadcast_agents(&frames::ticket(&ticket));
    Ok((StatusCode::CREATED, Json(TicketResponse { ticket })))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default, deserialize_with = "crate::http::extract::empty_as_none")]
    status: Option<TicketStatus>,
    #[serde(default, deserialize_with = "crate::http::extract::empty_as_none")]
    priority: Option<Priority>,
    #[serde(default, deserialize_with = "crate::http::extract::empty_as_none")]
    assignee: Option<String>,
    #[serde(default, deserialize_with = "crate::http::extract::empty_as_none")]
    q: Option<String>,
    #[serde(default, deserialize_with = "crate::http::extract::empty_as_none")]
    tag: Option<String>,
    #[serde(default, deserialize_with = "crate::http::extract::empty_as_none")]
    cursor: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::http::extract::empty_as_none_number"
    )]
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct TicketsResponse {
    tickets: Vec<Ticket>,
    next_cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<TicketsResponse>> {
    let limit = page_limit(&state, query.limit, 50)?;
    let mut sql = format!("SELECT {COLUMNS} FROM tickets WHERE 1 = 1");
    let mut binds: Vec<Value> = Vec::new();
    if let Some(status) = query.status {
        sql.push_str(" AND status = ?");
        binds.push(serde_json::to_value(status).map_err(ApiError::internal)?);
    }
    if let Some(priority) = query.priority {
        sql.push_str(" AND priority = ?");
        binds.push(serde_json::to_value(priority).map_err(ApiError::internal)?);
    }
    match query.assignee.as_deref() {
        None | Some("") => {}
        Some("me") => {
            sql.push_str(" AND assignee_id = ?");
            binds.push(Value::String(agent.id.to_string()));
        }
        Some("none") => sql.push_str(" AND assignee_id IS NULL"),
        Some(other) => {
            let id: AgentId = other
                .parse()
                .map_err(|_| ApiError::bad_request("assignee must be me, none or an agent id"))?;
            sql.push_str(" AND assignee_id = ?");
            binds.push(Value::String(id.to_string()));
        }
    }
    if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        if q.chars().count() > 200 {
            return Err(ApiError::bad_request("q is longer than 200 characters"));
        }
        let pattern = format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        sql.push_str(" AND (subject LIKE ? ESCAPE '\\' OR description LIKE ? ESCAPE '\\')");
        binds.push(Value::String(pattern.clone()));
        binds.push(Value::String(pattern));
    }
    if let Some(tag) = query.tag.as_deref().filter(|t| !t.is_empty()) {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM json_each(tickets.tags) WHERE json_each.value = ?)",
        );
        binds.push(Value::String(tag.to_lowercase()));
    }
    if let Some(cursor) = query.cursor.as_deref() {
        let before: i64 = cursor
            .parse()
            .map_err(|_| ApiError::bad_request("invalid cursor"))?;
        sql.push_str(" AND number < ?");
        binds.push(Value::from(before));
    }
    sql.push_str(" ORDER BY number DESC LIMIT ?");
    let mut q = sqlx::query_as::<_, TicketRow>(&sql);
    for bind in binds {
        q = match bind {
            Value::Number(n) => q.bind(n.as_i64()),
            Value::String(s) => q.bind(s),
            other => q.bind(other.as_str().unwrap_or_default().to_owned()),
        };
    }
    let mut rows = q.bind(i64::from(limit) + 1).fetch_all(&state.db).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|row| row.number.to_string())
    } else {
        None
    };
    Ok(Json(TicketsResponse {
        tickets: rows.into_iter().map(Ticket::from).collect(),
        next_cursor,
    }))
}

async fn get_one(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    Path(number): Path<String>,
) -> ApiResult<Json<TicketResponse>> {
    let ticket = find(&state, parse_number(&number)?)
        .await?
        .ok_or_else(|| ApiError::not_found("ticket"))?;
    Ok(Json(TicketResponse { ticket }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    subject: Option<String>,
    description: Option<String>,
    status: Option<TicketStatus>,
    priority: Option<Priority>,
    #[serde(default, deserialize_with = "crate::http::extract::explicit_null")]
    assignee_id: Option<Option<AgentId>>,
    tags: Option<Vec<String>>,
}

async fn update(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    Path(number): Path<String>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> ApiResult<Json<TicketResponse>> {
    let number = parse_number(&number)?;
    let subject = body.subject.as_deref().map(check_subject).transpose()?;
    if let Some(description) = &body.description {
        check_text(&state, "description", description)?;
    }
    let tags = body.tags.map(check_tags).transpose()?;
    if let Some(assignee) = body.assignee_id {
        check_agent(&state, assignee).await?;
    }
    let tags = tags
        .map(|t| serde_json::to_string(&t))
        .transpose()
        .map_err(ApiError::internal)?;
    let updated = sqlx::query(
        "UPDATE tickets SET
             subject = COALESCE(?, subject),
             description = COALESCE(?, description),
             status = COALESCE(?, status),
             priority = COALESCE(?, priority),
             assignee_id = CASE WHEN ? THEN ? ELSE assignee_id END,
             tags = COALESCE(?, tags),
             updated_at = ?
         WHERE number = ?",
    )
    .bind(subject)
    .bind(body.description.as_deref().map(str::trim))
    .bind(body.status)
    .bind(body.priority)
    .bind(body.assignee_id.is_some())
    .bind(body.assignee_id.flatten())
    .bind(tags)
    .bind(now_ms())
    .bind(number)
    .execute(&state.db)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(ApiError::not_found("ticket"));
    }
    let ticket = find(&state, number)
        .await?
        .ok_or_else(|| ApiError::not_found("ticket"))?;
    state.hub.broadcast_agents(&frames::ticket(&ticket));
    Ok(Json(TicketResponse { ticket }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    body: String,
    /// Internal unless said otherwise: a forgotten flag must never leak a
    /// note to the customer.
    #[serde(default)]
    public: bool,
}

#[derive(Debug, Serialize)]
struct CommentResponse {
    comment: Comment,
}

async fn add_comment(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    Path(number): Path<String>,
    ApiJson(body): ApiJson<CommentBody>,
) -> ApiResult<(StatusCode, Json<CommentResponse>)> {
    let number = parse_number(&number)?;
    let text = body.body.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request("body must not be empty"));
    }
    check_text(&state, "body", text)?;
    let now = now_ms();
    let comment = Comment {
        id: CommentId::new(),
        ticket_number: number,
        author_id: agent.id,
        body: text.to_owned(),
        public: body.public,
        created_at: now,
    };
    let mut tx = state.db.begin().await?;
    let touched = sqlx::query("UPDATE tickets SET updated_at = ? WHERE number = ?")
        .bind(now)
        .bind(number)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if touched == 0 {
        return Err(ApiError::not_found("ticket"));
    }
    sqlx::query(
        "INSERT INTO ticket_comments (id, ticket_number, author_id, body, public, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(comment.id)
    .bind(number)
    .bind(comment.author_id)
    .bind(&comment.body)
    .bind(comment.public)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if let Some(ticket) = find(&state, number).await? {
        state.hub.broadcast_agents(&frames::ticket(&ticket));
    }
    Ok((StatusCode::CREATED, Json(CommentResponse { comment })))
}

#[derive(Debug, Serialize)]
struct CommentsResponse {
    comments: Vec<Comment>,
}

async fn comments(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    Path(number): Path<String>,
) -> ApiResult<Json<CommentsResponse>> {
    let number = parse_number(&number)?;
    if find(&state, number).await?.is_none() {
        return Err(ApiError::not_found("ticket"));
    }
    let comments = sqlx::query_as(
        "SELECT id, ticket_number, author_id, body, public, created_at FROM ticket_comments
         WHERE ticket_number = ? ORDER BY created_at, id LIMIT 1000",
    )
    .bind(number)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(CommentsResponse { comments }))
}
