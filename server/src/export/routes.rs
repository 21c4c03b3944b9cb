//! The export doors, `GET /api/v1/admin/export/{messages,tickets}` (admins,
//! or the local operator): parse, call the operation in [`super`], send
//! its chunks as the body.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Export, ExportQuery};
use crate::error::ApiResult;
use crate::http::extract::ApiQuery;
use crate::ops::Operator;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/export/messages", get(messages))
        .route("/admin/export/tickets", get(tickets))
}

async fn messages(
    State(state): State<AppState>,
    operator: Operator,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let export = super::messages(&state, operator.actor(), &query).await?;
    Ok(download(export))
}

async fn tickets(
    State(state): State<AppState>,
    operator: Operator,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let export = super::tickets(&state, operator.actor(), &query).await?;
    Ok(download(export))
}

/// The streamed body, labelled as a download.
fn download(export: Export) -> Response {
    let mut response = Body::from_stream(export.chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(export.content_type),
    );
    if let Ok(value) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", export.file_name))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}
