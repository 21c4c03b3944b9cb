//! The doors under `/api/v1/tickets` (agents) and
//! `/api/v1/visitor/tickets` (visitors): parse, call the operation in
//! [`super`] or its submodules, shape the answer. A `{number}` is a positive
//! integer, optionally after a `#`; anything else is `not_found`.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::comments::{self, NewComment};
use super::history::{self, TicketEvent};
use super::list::{self, ListQuery};
use super::visitor::{self, Form, FormAnswer, VisitorTicket};
use super::{Comment, Made, Ticket, TicketCreate, TicketUpdate, parse_number, transcript};
use crate::auth::{AgentAuth, VisitorAuth};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery, page_limit};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tickets", post(create).get(list))
        .route("/tickets/{number}", get(get_one).patch(update))
        .route(
            "/tickets/{number}/comments",
            post(add_comment).get(comments),
        )
        .route("/tickets/{number}/history", get(history))
        .route("/tickets/{number}/transcript", get(transcript))
        .route("/visitor/tickets", post(submit_form).get(visitor_list))
        .route("/visitor/tickets/{number}", get(visitor_get_one))
}

/// 201 for what was made now, 200 for what an earlier post made.
fn status<T>(made: &Made<T>) -> StatusCode {
    if made.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// A page's `cursor`: a non-negative integer; `None` when absent.
fn cursor_number(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|text| {
            text.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::bad_request("invalid cursor").in_field("cursor"))
        })
        .transpose()
}

#[derive(Debug, Serialize)]
struct TicketResponse {
    ticket: Ticket,
}

#[derive(Debug, Serialize)]
struct TicketsResponse {
    tickets: Vec<Ticket>,
    next_cursor: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiJson(body): ApiJson<TicketCreate>,
) -> ApiResult<(StatusCode, Json<TicketResponse>)> {
    let ticket = super::create(&state, agent.id, body).await?;
    Ok((StatusCode::CREATED, Json(TicketResponse { ticket })))
}

async fn list(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<TicketsResponse>> {
    let limit = page_limit(&state.config.limits, query.limit, 50)?;
    let (tickets, next_cursor) = list::list(&state.db, agent.id, query, limit).await?;
    Ok(Json(TicketsResponse {
        tickets,
        next_cursor,
    }))
}

async fn get_one(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    Path(number): Path<String>,
) -> ApiResult<Json<TicketResponse>> {
    let ticket = super::find(&state, parse_number(&number)?)
        .await?
        .ok_or_else(|| ApiError::not_found("ticket"))?;
    Ok(Json(TicketResponse { ticket }))
}

async fn update(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    Path(number): Path<String>,
    ApiJson(body): ApiJson<TicketUpdate>,
) -> ApiResult<Json<TicketResponse>> {
    let ticket = super::update(&state, agent.id, parse_number(&number)?, body).await?;
    Ok(Json(TicketResponse { ticket }))
}

#[derive(Debug, Serialize)]
struct CommentResponse {
    comment: Comment,
}

#[derive(Debug, Serialize)]
struct CommentsResponse {
    comments: Vec<Comment>,
}

async fn add_comment(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    Path(number): Path<String>,
    ApiJson(body): ApiJson<NewComment>,
) -> ApiResult<(StatusCode, Json<CommentResponse>)> {
    let made = comments::add(&state, &agent, parse_number(&number)?, body).await?;
    let status = status(&made);
    Ok((
        status,
        Json(CommentResponse {
            comment: made.value,
        }),
    ))
}

async fn comments(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    Path(number): Path<String>,
) -> ApiResult<Json<CommentsResponse>> {
    let comments = comments::list(&state, parse_number(&number)?).await?;
    Ok(Json(CommentsResponse { comments }))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct HistoryResponse {
    events: Vec<TicketEvent>,
    next_cursor: Option<String>,
}

/// Oldest first; the cursor is the last event id served.
async fn history(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    Path(number): Path<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<HistoryResponse>> {
    let number = parse_number(&number)?;
    let limits = &state.config.limits;
    let limit = page_limit(limits, query.limit, limits.page_max)?;
    let after = cursor_number(query.cursor.as_deref())?.unwrap_or(0);
    let (events, next_cursor) = history::list(&state, number, after, limit).await?;
    Ok(Json(HistoryResponse {
        events,
        next_cursor,
    }))
}

#[derive(Debug, Deserialize)]
struct TranscriptQuery {
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

async fn transcript(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    Path(number): Path<String>,
    ApiQuery(query): ApiQuery<TranscriptQuery>,
) -> ApiResult<Response> {
    let number = parse_number(&number)?;
    let limits = &state.config.limits;
    let limit = page_limit(limits, query.limit, limits.page_max)?;
    let after = query.after.unwrap_or(0);
    let body = transcript::get(&state, number, after, limit).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn submit_form(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    ApiJson(body): ApiJson<Form>,
) -> ApiResult<(StatusCode, Json<FormAnswer>)> {
    let made = visitor::submit_form(&state, visitor, body).await?;
    let status = status(&made);
    Ok((status, Json(made.value)))
}

#[derive(Debug, Serialize)]
struct VisitorTicketsResponse {
    tickets: Vec<VisitorTicket>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct VisitorTicketResponse {
    ticket: VisitorTicket,
}

/// The visitor's tickets, newest first.
async fn visitor_list(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<VisitorTicketsResponse>> {
    let limit = page_limit(&state.config.limits, query.limit, 50)?;
    let before = cursor_number(query.cursor.as_deref())?.unwrap_or(i64::MAX);
    let (tickets, next_cursor) = visitor::list(&state, visitor.visitor_id, before, limit).await?;
    Ok(Json(VisitorTicketsResponse {
        tickets,
        next_cursor,
    }))
}

async fn visitor_get_one(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    Path(number): Path<String>,
) -> ApiResult<Json<VisitorTicketResponse>> {
    let ticket = visitor::get_one(&state, visitor.visitor_id, parse_number(&number)?).await?;
    Ok(Json(VisitorTicketResponse { ticket }))
}
