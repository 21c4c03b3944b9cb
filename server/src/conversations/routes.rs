//! The agents' doors under `/api/v1/conversations`: parse, call the
//! operation in [`super`], shape the answer. Also the message-page and
//! sent-message bodies that the visitors' doors share.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Assignee, Author, Conversation, ListFilter, SendRequest, Status};
use crate::auth::AgentAuth;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, page_limit};
use crate::ids::{AgentId, ConversationId};
use crate::state::AppState;
use crate::store::messages::Appended;

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

async fn list(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListResponse>> {
    let limit = page_limit(&state.config.limits, query.limit, 50)?;
    let assignee = match query.assignee.as_deref() {
        None | Some("") => Assignee::Anyone,
        Some("me") => Assignee::Agent(agent.id),
        Some("none") => Assignee::Nobody,
        Some(other) => Assignee::Agent(other.parse::<AgentId>().map_err(|_| {
            ApiError::bad_request("assignee must be me, none or an agent id").in_field("assignee")
        })?),
    };
    let filter = ListFilter {
        status: query.status,
        assignee,
    };
    let (mut conversations, next_cursor) =
        super::list(&state, filter, query.cursor.as_deref(), limit).await?;
    crate::reads::fill_for_agent(&state, agent.id, &mut conversations).await?;
    Ok(Json(ListResponse {
        conversations,
        next_cursor,
    }))
}

#[derive(Debug, Serialize)]
pub struct ConversationResponse {
    pub conversation: Conversation,
}

async fn get_one(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiPath(id): ApiPath<ConversationId>,
) -> ApiResult<Json<ConversationResponse>> {
    state.starts.settled(id).await;
    let conversation = super::find(&state, id)
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
    let limit = page_limit(
        &state.config.limits,
        query.limit,
        state.config.limits.page_max,
    )?;
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
    if !super::exists(&state, id).await? {
        return Err(ApiError::not_found("conversation"));
    }
    messages_page(&state, id, &query, true)
}

/// A send's body, for agents and visitors alike.
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

impl SendBody {
    pub fn request(&self) -> SendRequest<'_> {
        SendRequest {
            client_msg_id: self.client_msg_id.as_deref(),
            content: self.content.as_deref(),
            meta: self.meta.as_ref(),
            private: self.private,
            attachment_id: self.attachment_id.as_deref(),
        }
    }
}

async fn post_message(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(body): ApiJson<SendBody>,
) -> ApiResult<Response> {
    let author = Author::Agent(agent);
    let appended = super::send::send(&state, &author, id, body.request(), None).await?;
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
    let Some(assignee) = body.agent_id else {
        return Err(
            ApiError::bad_request("agent_id is required (null to unassign)").in_field("agent_id"),
        );
    };
    let conversation = super::assign(&state, id, assignee).await?;
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
    let conversation = super::set_status(&state, id, body.status).await?;
    Ok(Json(ConversationResponse { conversation }))
}
