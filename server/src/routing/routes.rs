//! The doors of routing: the settings (`/api/v1/routing`), the queue
//! (`/queue`), rules (`/routing/rules…`), teams (`/teams…`), claim and
//! transfer (`/conversations/{id}/claim`, `…/transfer`). Parse, call the
//! operation in [`super`] or its submodules, shape the answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::claim::{self, Transfer};
use super::rules::{self, Rule, RuleInput};
use super::teams::{self, Team, TeamInput};
use super::{QueueEntry, QueueFilter, Settings, SettingsUpdate};
use crate::auth::{AdminAuth, AgentAuth};
use crate::conversations::Conversation;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, page_limit};
use crate::ids::{ConversationId, RuleId, TeamId};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/routing",
            get(get_settings).patch(patch_settings).put(patch_settings),
        )
        .route("/queue", get(queue))
        .route("/routing/rules", get(list_rules).post(create_rule))
        .route("/routing/rules/reorder", post(reorder_rules))
        .route(
            "/routing/rules/{id}",
            patch(update_rule).delete(delete_rule),
        )
        .route("/teams", get(list_teams).post(create_team))
        .route(
            "/teams/{id}",
            get(get_team).patch(update_team).delete(delete_team),
        )
        .route("/conversations/{id}/claim", post(claim))
        .route("/conversations/{id}/transfer", post(transfer))
}

// ---- settings and queue ---------------------------------------------------

#[derive(Debug, Serialize)]
struct SettingsResponse {
    routing: Settings,
}

async fn get_settings(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
) -> ApiResult<Json<SettingsResponse>> {
    let routing = super::settings(&state.db).await?;
    Ok(Json(SettingsResponse { routing }))
}

async fn patch_settings(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiJson(body): ApiJson<SettingsUpdate>,
) -> ApiResult<Json<SettingsResponse>> {
    let routing = super::update_settings(&state, admin.id, body).await?;
    Ok(Json(SettingsResponse { routing }))
}

#[derive(Debug, Deserialize)]
struct QueueQuery {
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct QueueResponse {
    /// How many conversations wait in all (under the filter).
    total: u64,
    queue: Vec<QueueEntry>,
}

/// The queue head first: `GET /api/v1/queue?team_id=&limit=`. `team_id=none`
/// lists the chats routed to nobody in particular.
async fn queue(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    ApiQuery(query): ApiQuery<QueueQuery>,
) -> ApiResult<Json<QueueResponse>> {
    let limit = page_limit(&state.config.limits, query.limit, 50)?;
    let filter = match query.team_id.as_deref() {
        None => QueueFilter::All,
        Some("none") => QueueFilter::NoTeam,
        Some(text) => QueueFilter::Team(text.parse::<TeamId>().map_err(|_| {
            ApiError::bad_request("team_id must be a team id or none").in_field("team_id")
        })?),
    };
    let head = super::queue(&state, filter, limit).await?;
    Ok(Json(QueueResponse {
        total: head.total,
        queue: head.entries,
    }))
}

// ---- rules ----------------------------------------------------------------

#[derive(Debug, Serialize)]
struct RulesResponse {
    rules: Vec<Rule>,
}

#[derive(Debug, Serialize)]
struct RuleResponse {
    rule: Rule,
}

async fn list_rules(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
) -> ApiResult<Json<RulesResponse>> {
    let rules = rules::all(&state.db).await?;
    Ok(Json(RulesResponse { rules }))
}

async fn create_rule(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiJson(body): ApiJson<RuleInput>,
) -> ApiResult<(StatusCode, Json<RuleResponse>)> {
    let rule = rules::create(&state, admin.id, body).await?;
    Ok((StatusCode::CREATED, Json(RuleResponse { rule })))
}

async fn update_rule(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<RuleId>,
    ApiJson(body): ApiJson<RuleInput>,
) -> ApiResult<Json<RuleResponse>> {
    let rule = rules::update(&state, admin.id, id, body).await?;
    Ok(Json(RuleResponse { rule }))
}

async fn delete_rule(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<RuleId>,
) -> ApiResult<Json<Value>> {
    rules::delete(&state, admin.id, id).await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReorderBody {
    /// Every rule id exactly once, in the new order.
    ids: Vec<RuleId>,
}

async fn reorder_rules(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiJson(body): ApiJson<ReorderBody>,
) -> ApiResult<Json<RulesResponse>> {
    let rules = rules::reorder(&state, admin.id, body.ids).await?;
    Ok(Json(RulesResponse { rules }))
}

// ---- teams ----------------------------------------------------------------

#[derive(Debug, Serialize)]
struct TeamsResponse {
    teams: Vec<Team>,
}

#[derive(Debug, Serialize)]
struct TeamResponse {
    team: Team,
}

async fn list_teams(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
) -> ApiResult<Json<TeamsResponse>> {
    let teams = teams::list(&state.db).await?;
    Ok(Json(TeamsResponse { teams }))
}

async fn get_team(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    ApiPath(id): ApiPath<TeamId>,
) -> ApiResult<Json<TeamResponse>> {
    let team = teams::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("team"))?;
    Ok(Json(TeamResponse { team }))
}

async fn create_team(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiJson(body): ApiJson<TeamInput>,
) -> ApiResult<(StatusCode, Json<TeamResponse>)> {
    let team = teams::create(&state, admin.id, body).await?;
    Ok((StatusCode::CREATED, Json(TeamResponse { team })))
}

async fn update_team(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<TeamId>,
    ApiJson(body): ApiJson<TeamInput>,
) -> ApiResult<Json<TeamResponse>> {
    let team = teams::update(&state, admin.id, id, body).await?;
    Ok(Json(TeamResponse { team }))
}

async fn delete_team(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<TeamId>,
) -> ApiResult<Json<Value>> {
    teams::delete(&state, admin.id, id).await?;
    Ok(Json(json!({})))
}

// ---- claim and transfer ---------------------------------------------------

#[derive(Debug, Serialize)]
struct ConversationResponse {
    conversation: Conversation,
}

/// 200 for the one claimer that wins; 409 `conflict` for anyone else.
async fn claim(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiPath(id): ApiPath<ConversationId>,
) -> ApiResult<Json<ConversationResponse>> {
    let conversation = claim::claim(&state, &agent, id).await?;
    Ok(Json(ConversationResponse { conversation }))
}

async fn transfer(
    State(state): State<AppState>,
    AgentAuth(actor): AgentAuth,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(body): ApiJson<Transfer>,
) -> ApiResult<Json<ConversationResponse>> {
    let conversation = claim::transfer(&state, &actor, id, body).await?;
    Ok(Json(ConversationResponse { conversation }))
}
