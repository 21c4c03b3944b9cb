//! The doors under `/api/v1/reports`: parse the range, call the report in
//! [`super`], echo the range with the figures.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{AgentRow, Day, Figures, Range, RangeOut, RangeParams};
use crate::auth::AgentAuth;
use crate::error::ApiResult;
use crate::http::extract::ApiQuery;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/reports/summary", get(summary))
        .route("/reports/daily", get(daily))
        .route("/reports/agents", get(agents))
}

#[derive(Debug, Serialize)]
struct SummaryResponse {
    range: RangeOut,
    #[serde(flatten)]
    figures: Figures,
}

#[derive(Debug, Serialize)]
struct DailyResponse {
    range: RangeOut,
    days: Vec<Day>,
}

#[derive(Debug, Serialize)]
struct AgentsResponse {
    range: RangeOut,
    agents: Vec<AgentRow>,
}

async fn summary(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiQuery(params): ApiQuery<RangeParams>,
) -> ApiResult<Json<SummaryResponse>> {
    let (range, figures) = super::summary(&state, &agent, &params).await?;
    Ok(Json(SummaryResponse {
        range: range.out(),
        figures,
    }))
}

async fn daily(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiQuery(params): ApiQuery<RangeParams>,
) -> ApiResult<Json<DailyResponse>> {
    let (range, days) = super::daily(&state, &agent, &params).await?;
    Ok(Json(DailyResponse {
        range: range.out(),
        days,
    }))
}

async fn agents(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiQuery(params): ApiQuery<RangeParams>,
) -> ApiResult<Json<AgentsResponse>> {
    let range = Range::parse(&params)?;
    let agents = super::agents(&state, &agent, &range).await?;
    Ok(Json(AgentsResponse {
        range: range.out(),
        agents,
    }))
}
