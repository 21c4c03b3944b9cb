//! The doors of `lan::fork` on the LAN listener: `/lan/v1/fork/heads`,
//! `/lan/v1/fork/messages` and `/lan/v1/fork/conversation` (mutual TLS,
//! the caller's device from its certificate). Parse, call the operation
//! in [`super`], shape the answer.

use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiResult;
use crate::ids::ConversationId;
use crate::lan::host::LanPeer;
use crate::state::AppState;

/// The old host's doors, on the LAN listener (merged into
/// `routes::pairing_routes`).
pub fn lan_routes() -> axum::Router<AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/lan/v1/fork/heads", get(heads_route))
        .route("/lan/v1/fork/messages", get(messages_route))
        .route("/lan/v1/fork/conversation", get(conversation_route))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversationQuery {
    conversation_id: ConversationId,
}

async fn conversation_route(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::Extension(peer): axum::Extension<LanPeer>,
    crate::http::extract::ApiQuery(query): crate::http::extract::ApiQuery<ConversationQuery>,
) -> ApiResult<axum::Json<super::Start>> {
    let host = crate::lan::replication::hosting(&state)?;
    Ok(axum::Json(
        super::conversation_start(&state, host, &peer, query.conversation_id).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadsQuery {
    after: Option<ConversationId>,
}

async fn heads_route(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::Extension(peer): axum::Extension<LanPeer>,
    crate::http::extract::ApiQuery(query): crate::http::extract::ApiQuery<HeadsQuery>,
) -> ApiResult<axum::Json<Value>> {
    let host = crate::lan::replication::hosting(&state)?;
    Ok(axum::Json(
        super::heads(&state, host, &peer, query.after).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesQuery {
    conversation_id: ConversationId,
    after: u64,
}

async fn messages_route(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::Extension(peer): axum::Extension<LanPeer>,
    crate::http::extract::ApiQuery(query): crate::http::extract::ApiQuery<MessagesQuery>,
) -> ApiResult<axum::Json<Value>> {
    let host = crate::lan::replication::hosting(&state)?;
    Ok(axum::Json(
        super::messages(&state, host, &peer, query.conversation_id, query.after).await?,
    ))
}
