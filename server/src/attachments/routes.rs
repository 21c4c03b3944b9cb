//! The attachment doors: uploads (`POST /visitor/attachments`,
//! `POST /attachments`, `multipart/form-data` streamed part by part into
//! [`super::Receiving`]) and the download (`GET /attachments/{id}/{key}`,
//! the key being the only way in, with the headers that keep a served file
//! inert).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path as UrlPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{AttachmentObject, FRAMING_BYTES, Incoming, Receiving, Uploader, too_large};
use crate::auth::{AgentAuth, VisitorAuth};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiQuery;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    // The global 64 KiB body limit is lifted for the two upload routes only;
    // they enforce `limits.attachment_bytes` themselves while streaming.
    Router::new()
        .route(
            "/visitor/attachments",
            post(upload_visitor).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/attachments",
            post(upload_agent).layer(DefaultBodyLimit::disable()),
        )
        .route("/attachments/{id}/{key}", get(download))
}

#[derive(Debug, Serialize)]
struct UploadResponse {
    attachment: AttachmentObject,
}

async fn upload_visitor(
    State(state): State<AppState>,
    VisitorAuth(visitor): VisitorAuth,
    request: Request,
) -> ApiResult<(StatusCode, Json<UploadResponse>)> {
    // Admitted (or 429) before anything is received.
    let uploader = Uploader::visitor(&state, visitor.visitor_id, visitor.conversation_id).await?;
    upload(&state, uploader, request).await
}

async fn upload_agent(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    request: Request,
) -> ApiResult<(StatusCode, Json<UploadResponse>)> {
    upload(&state, Uploader::Agent(agent.id), request).await
}

async fn upload(
    state: &AppState,
    uploader: Uploader,
    request: Request,
) -> ApiResult<(StatusCode, Json<UploadResponse>)> {
    let limit = state.config.limits.attachment_bytes;
    let body_cap = limit.saturating_add(FRAMING_BYTES);
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|&n| n > body_cap as u64) {
        // Read the rest first when it is not much more (the client is
        // still sending: an early answer would reach it as a reset).
        if declared <= (body_cap + crate::http::extract::DRAIN_BYTES_MAX) as u64 {
            crate::http::extract::discard(body, crate::http::extract::DRAIN_BYTES_MAX + body_cap)
                .await;
        }
        return Err(too_large(limit));
    }
    // Counts the body as it streams and cuts it off past the cap, so that
    // neither a lying Content-Length nor a chunked body can go beyond it.
    let exceeded = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&exceeded);
    let mut seen = 0usize;
    let limited = body.into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        seen = seen.saturating_add(chunk.len());
        if seen > body_cap {
            flag.store(true, Ordering::Release);
            return Err(axum::Error::new(std::io::Error::other("body too large")));
        }
        Ok(chunk)
    });
    let request = Request::from_parts(parts, Body::from_stream(limited));
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|rejection| {
            ApiError::bad_request(format!(
                "expected multipart/form-data with one part named file: {}",
                rejection.body_text()
            ))
        })?;

    let incoming_dir = super::incoming_dir(&state.config.data_dir).await?;
    let received = receive(&mut multipart, &incoming_dir, limit).await;
    let incoming = match received {
        Ok(incoming) => incoming,
        Err(error) => {
            // Read what is left (bounded by the cap) so the client, still
            // sending, reads our answer instead of a reset connection.
            drain(&mut multipart).await;
            if exceeded.load(Ordering::Acquire) {
                return Err(too_large(limit));
            }
            return Err(error);
        }
    };
    let stored = super::store(state, uploader, incoming).await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadResponse {
            attachment: stored.object(),
        }),
    ))
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(format!("malformed multipart body: {}", error.body_text()))
}

/// Reads the whole multipart body: exactly one part, named `file`, written
/// to a temp file as it arrives.
async fn receive(
    multipart: &mut Multipart,
    incoming_dir: &Path,
    limit: usize,
) -> Result<Incoming, ApiError> {
    let mut received: Option<Incoming> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("file") {
            return Err(ApiError::bad_request(
                "unexpected part: send exactly one part, named file",
            ));
        }
        if received.is_some() {
            return Err(ApiError::bad_request("send exactly one file per upload"));
        }
        let mut receiving = Receiving::start(incoming_dir, field.file_name(), limit).await?;
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            receiving.write(&chunk).await?;
        }
        received = Some(receiving.finish().await?);
    }
    received.ok_or_else(|| ApiError::bad_request("missing the part named file"))
}

async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

#[derive(Debug, Deserialize)]
struct DownloadQuery {
    #[serde(default)]
    inline: Option<String>,
}

async fn download(
    State(state): State<AppState>,
    UrlPath((id, key)): UrlPath<(String, String)>,
    ApiQuery(query): ApiQuery<DownloadQuery>,
) -> ApiResult<Response> {
    let found = super::open(&state, &id, &key, query.inline.as_deref()).await?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        found.file,
        64 * 1024,
    ));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(found.mime));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(found.size));
    if let Ok(value) = HeaderValue::from_str(&found.disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The bytes behind a URL never change; the URL is a capability, so only
    // private caches may keep it.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    Ok(response)
}
