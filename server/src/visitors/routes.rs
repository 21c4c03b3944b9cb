//! The visitors' doors: `POST /api/v1/visitor/sessions` and
//! `GET|POST /api/v1/visitor/messages` (the thread's page and body shapes
//! are the agents' ones, from `conversations::routes`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};

use super::{Session, SessionRequest};
use crate::auth::VisitorAuth;
use crate::conversations::routes::{PageQuery, SendBody, message_response, messages_page};
use crate::conversations::{self, Author};
use crate::error::ApiResult;
use crate::http::ClientIp;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/visitor/sessions", post(create_session))
        .route("/visitor/messages", post(post_message).get(messages))
}

async fn create_session(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SessionRequest>,
) -> ApiResult<(StatusCode, Json<Session>)> {
    let origin = crate::http::cross_origin(&headers);
    let session = super::open_session(&state, client, origin, body).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

async fn post_message(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    ApiJson(body): ApiJson<SendBody>,
) -> ApiResult<Response> {
    let conversation = visitor.conversation_id;
    let author = Author::Visitor(visitor);
    let appended =
        conversations::send::send(&state, &author, conversation, body.request(), None).await?;
    Ok(message_response(&appended))
}

async fn messages(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    // The thread as it reads once its start is done: the first message,
    // then its auto-reply or "joined" line (see `conversations::start`).
    state.starts.settled(visitor.conversation_id).await;
    messages_page(&state, visitor.conversation_id, &query, false)
}
