//! The admins' doors under `/api/v1/apps`: parse, call the operation in
//! [`super`], shape the answer (the app and where visitors reach this
//! server, for the embed snippet).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::{App, AppUpdate, NewApp};
use crate::auth::AdminAuth;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath};
use crate::ids::AppId;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps", post(create).get(list))
        .route("/apps/{id}", get(get_one).patch(update))
        .route("/apps/{id}/rotate_secret", post(rotate_secret))
}

#[derive(Debug, Serialize)]
struct AppResponse {
    app: App,
    /// Where visitors reach this server (`http.public_url`), for the embed
    /// snippet; `None`: the address the admin uses. **[ext]**
    public_url: Option<String>,
}

impl AppResponse {
    fn new(state: &AppState, app: App) -> AppResponse {
        AppResponse {
            app,
            public_url: public_url(state),
        }
    }
}

#[derive(Debug, Serialize)]
struct AppsResponse {
    apps: Vec<App>,
    public_url: Option<String>,
}

/// `http.public_url`, normalized (no trailing slash).
fn public_url(state: &AppState) -> Option<String> {
    state
        .config
        .http
        .public_url_parts()
        .ok()
        .flatten()
        .map(|(url, _)| url)
}

async fn create(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiJson(body): ApiJson<NewApp>,
) -> ApiResult<(StatusCode, Json<AppResponse>)> {
    let app = super::create(&state, admin.id, body).await?;
    Ok((StatusCode::CREATED, Json(AppResponse::new(&state, app))))
}

async fn list(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
) -> ApiResult<Json<AppsResponse>> {
    Ok(Json(AppsResponse {
        apps: super::list(&state.db).await?,
        public_url: public_url(&state),
    }))
}

async fn get_one(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiPath(id): ApiPath<AppId>,
) -> ApiResult<Json<AppResponse>> {
    let app = super::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))?;
    Ok(Json(AppResponse::new(&state, app)))
}

async fn update(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<AppId>,
    ApiJson(body): ApiJson<AppUpdate>,
) -> ApiResult<Json<AppResponse>> {
    let app = super::update(&state, admin.id, id, body).await?;
    Ok(Json(AppResponse::new(&state, app)))
}

async fn rotate_secret(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<AppId>,
) -> ApiResult<Json<AppResponse>> {
    let app = super::rotate_secret(&state, admin.id, id).await?;
    Ok(Json(AppResponse::new(&state, app)))
}
