//! The doors of operations under `/api/v1/admin`: a backup now and a CPU
//! profile, and the [`Operator`] extractor that says who asks. Parse, call
//! the operation in [`super`], shape the answer.

use std::path::PathBuf;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{Operator, backup, profile};
use crate::auth::AdminAuth;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/backup", post(backup_now))
        .route("/admin/profile", get(profile))
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        // The operator is on this machine: the token counts only from a
        // loopback peer (never over the LAN listener or through a proxy).
        let from_loopback = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_some_and(|peer| peer.0.ip().is_loopback());
        if let Some(presented) = presented
            && from_loopback
            && bool::from(presented.as_bytes().ct_eq(state.ops.token().as_bytes()))
        {
            return Ok(Operator::Local);
        }
        let AdminAuth(agent) = AdminAuth::from_request_parts(parts, state).await?;
        Ok(Operator::Admin(agent.id))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    /// The backup directory to create (absolute; must not exist). Only the
    /// local operator may name one: an admin's backup goes to `backup.dir`.
    #[serde(default)]
    to: Option<PathBuf>,
}

/// `POST /api/v1/admin/backup`: makes a backup now and answers when it is
/// complete (201 with its summary).
async fn backup_now(
    State(state): State<AppState>,
    operator: Operator,
    ApiJson(request): ApiJson<BackupRequest>,
) -> ApiResult<(StatusCode, Json<backup::Summary>)> {
    let summary = super::backup_now(&state, &operator, request.to).await?;
    Ok((StatusCode::CREATED, Json(summary)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileQuery {
    seconds: Option<u64>,
}

/// `GET /api/v1/admin/profile?seconds=N`: a flame graph, `image/svg+xml`.
async fn profile(
    State(state): State<AppState>,
    operator: Operator,
    ApiQuery(query): ApiQuery<ProfileQuery>,
) -> ApiResult<Response> {
    let svg = profile::take(&state, &operator, query.seconds).await?;
    let mut response = svg.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    Ok(response)
}
