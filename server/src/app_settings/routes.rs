//! The door `GET /api/v1/visitor/config`: no token needed, the widget asks
//! before it has a session.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::VisitorConfig;
use crate::error::ApiResult;
use crate::http::extract::ApiQuery;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/visitor/config", get(config))
}

#[derive(Debug, Deserialize)]
struct ConfigQuery {
    #[serde(default)]
    app_key: Option<String>,
}

async fn config(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ConfigQuery>,
) -> ApiResult<Json<VisitorConfig>> {
    let token = crate::auth::bearer(&headers);
    let origin = crate::http::cross_origin(&headers);
    let config = super::config_for(&state, query.app_key.as_deref(), token, origin).await?;
    Ok(Json(config))
}
