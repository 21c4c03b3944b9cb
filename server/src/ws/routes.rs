//! The WebSocket door, `GET /api/v1/ws`: refuse what may not connect
//! (an app's origin, a full server), upgrade, and hand the socket to the
//! connection's task (`ws::serve`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::socket::Upgrade;
use crate::error::ApiError;
use crate::http::ClientIp;
use crate::http::extract::ApiQuery;
use crate::http::public::PublicListener;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    app_key: Option<String>,
}

pub async fn upgrade(
    ws: Upgrade,
    State(state): State<AppState>,
    ClientIp(peer): ClientIp,
    headers: HeaderMap,
    public: Option<axum::Extension<PublicListener>>,
    ApiQuery(query): ApiQuery<WsQuery>,
) -> Response {
    // On the public listener only visitors may say hello (http::public).
    let visitors_only = public.is_some();
    let origin = crate::http::cross_origin(&headers).map(str::to_owned);
    if let Some(app_key) = query.app_key {
        match state.auth_cache.app_by_key(&state.db, &app_key).await {
            Ok(Some(app)) if app.origin_allowed(origin.as_deref()) => {}
            Ok(Some(_)) => {
                return ApiError::forbidden("origin not allowed for this app").into_response();
            }
            Ok(None) => return ApiError::not_found("app").into_response(),
            Err(error) => return error.into_response(),
        }
    }
    let Ok(permit) = Arc::clone(&state.connection_slots).try_acquire_owned() else {
        return ApiError::Unavailable("too many connections".into()).into_response();
    };
    let config = super::config(&state);
    let tasks = state.websocket_tasks.clone();
    ws.on_upgrade(config, &tasks, move |socket| {
        super::serve(socket, state, origin, peer, permit, visitors_only)
    })
}
