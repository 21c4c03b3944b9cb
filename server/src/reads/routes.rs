//! The doors of read markers: `POST /api/v1/conversations/{id}/read`,
//! `GET|POST /api/v1/visitor/read`, `GET /api/v1/agents/me/unread`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{AgentUnread, ReadState};
use crate::auth::{AgentAuth, VisitorAuth};
use crate::error::ApiResult;
use crate::http::extract::{ApiJson, ApiPath};
use crate::ids::ConversationId;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/conversations/{id}/read", post(agent_read))
        .route("/visitor/read", get(visitor_state).post(visitor_read))
        .route("/agents/me/unread", get(agent_unread))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    seq: u64,
}

#[derive(Debug, Serialize)]
struct ReadResponse {
    read: ReadState,
}

async fn agent_read(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(body): ApiJson<ReadBody>,
) -> ApiResult<Json<ReadResponse>> {
    let read = super::agent_read(&state, agent, id, body.seq).await?;
    Ok(Json(ReadResponse { read }))
}

async fn visitor_read(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    ApiJson(body): ApiJson<ReadBody>,
) -> ApiResult<Json<ReadResponse>> {
    let read = super::visitor_read(&state, visitor, body.seq).await?;
    Ok(Json(ReadResponse { read }))
}

async fn visitor_state(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
) -> ApiResult<Json<ReadResponse>> {
    let read = super::visitor_state(&state, visitor).await?;
    Ok(Json(ReadResponse { read }))
}

async fn agent_unread(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
) -> ApiResult<Json<AgentUnread>> {
    Ok(Json(super::agent_unread(&state, agent.id).await?))
}
