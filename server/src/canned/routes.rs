//! The agents' doors under `/api/v1/canned_replies`: parse, call the
//! operation in [`super`], shape the answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{CannedReply, ListQuery, NewReply, Rendered, ReplyUpdate};
use crate::auth::AgentAuth;
use crate::error::ApiResult;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::ids::ConversationId;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/canned_replies", get(list).post(create))
        .route(
            "/canned_replies/{id}",
            get(get_one).patch(update).delete(delete),
        )
        .route("/canned_replies/{id}/render", post(render))
}

#[derive(Debug, Serialize)]
struct ListResponse {
    canned_replies: Vec<CannedReply>,
}

#[derive(Debug, Serialize)]
struct ReplyResponse {
    canned_reply: CannedReply,
}

/// Shared and own replies; `q` matches the shortcut (with or without the
/// leading `/`), the title or the body. Shortcut-prefix matches first.
async fn list(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListResponse>> {
    let canned_replies = super::list(&state.db, &agent, query).await?;
    Ok(Json(ListResponse { canned_replies }))
}

async fn create(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiJson(input): ApiJson<NewReply>,
) -> ApiResult<(StatusCode, Json<ReplyResponse>)> {
    let canned_reply = super::create(&state, &agent, input).await?;
    Ok((StatusCode::CREATED, Json(ReplyResponse { canned_reply })))
}

async fn get_one(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<ReplyResponse>> {
    let canned_reply = super::visible(&state.db, &agent, &id).await?;
    Ok(Json(ReplyResponse { canned_reply }))
}

async fn update(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ReplyUpdate>,
) -> ApiResult<Json<ReplyResponse>> {
    let canned_reply = super::update(&state, &agent, &id, input).await?;
    Ok(Json(ReplyResponse { canned_reply }))
}

async fn delete(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    super::delete(&state, &agent, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenderBody {
    conversation_id: Option<ConversationId>,
}

async fn render(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RenderBody>,
) -> ApiResult<Json<Rendered>> {
    let rendered = super::render_for(&state, &agent, &id, input.conversation_id).await?;
    Ok(Json(rendered))
}
