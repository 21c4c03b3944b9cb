//! The doors under `/api/v1/agents` and `/api/v1/auth`: parse, call the
//! operation in [`super`], shape the answer.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{AdminUpdate, Agent, Availability, NewAgent, Role, SelfUpdate};
use crate::auth::{self, AdminAuth, AgentAuth};
use crate::error::ApiResult;
use crate::http::ClientIp;
use crate::http::extract::{ApiJson, ApiPath};
use crate::ids::AgentId;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/agents", post(create).get(list))
        .route("/agents/me", get(me).patch(update_me))
        .route("/agents/me/status", post(set_status))
        .route("/agents/{id}", patch(update))
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Debug, Serialize)]
struct LoginResponse {
    token: String,
    agent: Agent,
}

#[derive(Debug, Serialize)]
struct AgentResponse {
    agent: Agent,
}

#[derive(Debug, Serialize)]
struct AgentsResponse {
    agents: Vec<Agent>,
}

async fn login(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Json<LoginResponse>> {
    let (token, agent) = super::login(&state, client, &body.username, body.password).await?;
    Ok(Json(LoginResponse { token, agent }))
}

async fn logout(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    super::logout(&state, agent.id, auth::bearer(&headers)).await?;
    Ok(Json(serde_json::json!({})))
}

/// `PATCH /api/v1/agents/me`.
async fn update_me(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    AgentAuth(agent): AgentAuth,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SelfUpdate>,
) -> ApiResult<Json<AgentResponse>> {
    let agent = super::update_self(&state, client, &agent, auth::bearer(&headers), body).await?;
    Ok(Json(AgentResponse { agent }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    username: String,
    password: String,
    display_name: Option<String>,
    role: Option<Role>,
}

async fn create(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<AgentResponse>)> {
    let new = NewAgent {
        username: body.username,
        password: body.password,
        display_name: body.display_name,
        role: body.role.unwrap_or(Role::Agent),
    };
    let agent = super::create_by(&state.db, Some(admin.id), new).await?;
    Ok((StatusCode::CREATED, Json(AgentResponse { agent })))
}

async fn list(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
) -> ApiResult<Json<AgentsResponse>> {
    let agents = super::list(&state.db).await?;
    Ok(Json(AgentsResponse { agents }))
}

async fn me(AgentAuth(agent): AgentAuth) -> Json<AgentResponse> {
    Json(AgentResponse { agent })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: Availability,
}

async fn set_status(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiJson(body): ApiJson<StatusBody>,
) -> ApiResult<Json<AgentResponse>> {
    let agent = super::set_status(&state, agent.id, body.status).await?;
    Ok(Json(AgentResponse { agent }))
}

/// `PATCH /api/v1/agents/{id}` (admin).
async fn update(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<AgentId>,
    ApiJson(body): ApiJson<AdminUpdate>,
) -> ApiResult<Json<AgentResponse>> {
    let agent = super::update(&state, admin.id, id, body).await?;
    Ok(Json(AgentResponse { agent }))
}
