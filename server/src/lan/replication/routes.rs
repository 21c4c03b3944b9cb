//! The doors of standby replication: the LAN listener's `/lan/v1/replica/…`
//! and `/lan/v1/fence` (mutual TLS, the caller's device from its
//! certificate) and the admin's `PUT /api/v1/lan/devices/{id}/standby`.
//! Parse, call the operation in [`super`], shape the answer.

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{HISTORY_HEADER, LOG_SEQ_HEADER, Replica, ReplicaBody, hosting};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::lan::device_id::DeviceId;
use crate::lan::host::LanPeer;
use crate::lan::routes::LanAdmin;
use crate::state::AppState;

/// The routes on the LAN listener (merged into `routes::pairing_routes`).
pub fn lan_routes() -> Router<AppState> {
    Router::new()
        .route("/lan/v1/replica/snapshot", get(snapshot))
        .route("/lan/v1/replica/sqlite", get(sqlite))
        .route("/lan/v1/replica/tail", get(tail))
        .route("/lan/v1/replica/attachment", get(attachment))
        .route("/lan/v1/fence", post(fence))
}

/// The admin's routes, under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/lan/devices/{id}/standby", put(set_standby))
}

/// An octet stream with the host's history (and, on a tail, its latest
/// sequence) in headers.
fn replication_response(replica: Replica) -> ApiResult<Response> {
    let body = match replica.body {
        ReplicaBody::Files(reader) => Body::from_stream(tokio_util::io::ReaderStream::new(reader)),
        ReplicaBody::Batches(bytes) => Body::from(bytes),
    };
    let mut response = Response::builder()
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .header(HISTORY_HEADER, replica.history_id.to_string())
        .body(body)
        .map_err(|e| ApiError::Internal(e.into()))?;
    if let Some(latest) = replica.latest_seq {
        response
            .headers_mut()
            .insert(LOG_SEQ_HEADER, http::HeaderValue::from(latest));
    }
    Ok(response)
}

async fn snapshot(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
) -> ApiResult<Response> {
    let host = hosting(&state)?;
    replication_response(super::snapshot(&state, host, &peer).await?)
}

async fn sqlite(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
) -> ApiResult<Response> {
    let host = hosting(&state)?;
    replication_response(super::sqlite(&state, host, &peer).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentQuery {
    /// The attachment's stored name.
    name: String,
}

async fn attachment(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
    ApiQuery(query): ApiQuery<AttachmentQuery>,
) -> ApiResult<Response> {
    let host = hosting(&state)?;
    replication_response(super::attachments::attachment(&state, host, &peer, &query.name).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TailQuery {
    /// The last sequence the standby applied.
    after: u64,
    /// The highest term the standby has seen.
    term: u64,
    /// Long poll: wait up to this long (at most 5000) for the log to move
    /// when it has nothing after `after`; absent or 0: answer at once.
    #[serde(default)]
    wait_ms: u64,
}

async fn tail(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
    ApiQuery(query): ApiQuery<TailQuery>,
) -> ApiResult<Response> {
    let host = hosting(&state)?;
    let wait = std::time::Duration::from_millis(query.wait_ms);
    let replica = super::tail(&state, host, &peer, query.after, query.term, wait).await?;
    replication_response(replica)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FenceBody {
    term: u64,
    /// Where the new host serves its LAN listener (for the successor
    /// notice the old host gives its clients and devices).
    #[serde(default)]
    address: Option<crate::lan::HostAddress>,
}

async fn fence(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
    ApiJson(body): ApiJson<FenceBody>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let term = super::fence(&state, host, &peer, body.term, body.address).await?;
    Ok(Json(json!({"superseded": true, "term": term})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StandbyBody {
    enabled: bool,
}

async fn set_standby(
    State(state): State<AppState>,
    LanAdmin(admin): LanAdmin,
    UrlPath(id): UrlPath<String>,
    ApiJson(body): ApiJson<StandbyBody>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let device: DeviceId = id
        .parse()
        .map_err(|_| ApiError::NotFound("device not found".into()))?;
    super::set_standby(&state.db, host, admin.id, device, body.enabled).await?;
    Ok(Json(json!({"device_id": device, "standby": body.enabled})))
}
