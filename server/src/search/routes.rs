//! The door `GET /api/v1/search` (agents): parse, call the searches in
//! [`super`], shape the answer.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{LIMIT_DEFAULT, LIMIT_MAX, MessageHit, Query, TicketHit};
use crate::auth::AgentAuth;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiQuery;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/search", get(search))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SearchType {
    Messages,
    Tickets,
    #[default]
    All,
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    r#type: Option<SearchType>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Default, Serialize)]
struct NextCursor {
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tickets: Option<Option<String>>,
}

#[derive(Debug, Default, Serialize)]
struct SearchResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<MessageHit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tickets: Option<Vec<TicketHit>>,
    next_cursor: NextCursor,
}

fn parse_cursor(cursor: Option<&str>) -> Result<i64, ApiError> {
    match cursor {
        None => Ok(i64::MAX),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ApiError::bad_request("invalid cursor").in_field("cursor")),
    }
}

async fn search(
    State(state): State<AppState>,
    AgentAuth(_): AgentAuth,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> ApiResult<Json<SearchResponse>> {
    let query = Query::parse(params.q.as_deref().unwrap_or(""))?;
    let limit = match params.limit {
        None => LIMIT_DEFAULT,
        Some(0) => return Err(ApiError::bad_request("limit must be at least 1").in_field("limit")),
        Some(n) if n > LIMIT_MAX => {
            return Err(
                ApiError::bad_request(format!("limit must be at most {LIMIT_MAX}"))
                    .in_field("limit"),
            );
        }
        Some(n) => n,
    };
    let kind = params.r#type.unwrap_or_default();
    if kind == SearchType::All && params.cursor.is_some() {
        return Err(ApiError::bad_request(
            "a cursor pages one type: pass type=messages or type=tickets",
        )
        .in_field("type"));
    }
    let before = parse_cursor(params.cursor.as_deref())?;
    let mut response = SearchResponse::default();
    if kind != SearchType::Tickets {
        let (hits, next) = super::messages(&state.db, &state.log, &query, before, limit).await?;
        response.messages = Some(hits);
        response.next_cursor.messages = Some(next);
    }
    if kind != SearchType::Messages {
        let (hits, next) = super::tickets(&state.db, &query, before, limit).await?;
        response.tickets = Some(hits);
        response.next_cursor.tickets = Some(next);
    }
    Ok(Json(response))
}
