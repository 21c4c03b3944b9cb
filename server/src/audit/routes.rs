//! The admins' door `GET /api/v1/audit`: parse, call [`super::list`],
//! shape the answer.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{AuditEntry, ListQuery};
use crate::auth::AdminAuth;
use crate::error::ApiResult;
use crate::http::extract::{ApiQuery, page_limit};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/audit", get(list))
}

#[derive(Debug, Serialize)]
struct ListResponse {
    entries: Vec<AuditEntry>,
    next_cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListResponse>> {
    let limit = page_limit(&state.config.limits, query.limit, 50)?;
    let (entries, next_cursor) = super::list(&state.db, query, limit).await?;
    Ok(Json(ListResponse {
        entries,
        next_cursor,
    }))
}
