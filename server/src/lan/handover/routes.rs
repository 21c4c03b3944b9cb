//! The doors of a planned handover (`lan::handover`, API.md §2.23):
//!
//! - `POST /api/v1/lan/handover {"device_id", "address"?}` — an admin, on
//!   the host, hands the shop over to an approved standby;
//! - `POST /lan/v1/handover {"address"?}` — the same asked by the standby
//!   itself ("make this computer the host", `kefu-server lan handover`),
//!   over the pairing's mutual TLS;
//! - `POST /lan/v1/handover/commit {"seq", "term"}` — the candidate, at
//!   the host's last sequence, asks for the grant;
//! - `GET /lan/v1/successor` — the signed notice of where the shop went,
//!   for the old host's approved devices.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Successor, grant, hand_over};
use crate::error::{ApiError, ApiResult};
use crate::lan::address::HostAddress;
use crate::lan::device_id::DeviceId;
use crate::lan::host::{LanHost, LanPeer};
use crate::lan::routes::LanAdmin;
use crate::state::AppState;

/// On the LAN listener (merged into `lan::routes::pairing_routes`).
pub fn lan_routes() -> Router<AppState> {
    Router::new()
        .route("/lan/v1/handover", post(asked_by_standby))
        .route("/lan/v1/handover/commit", post(commit))
        .route("/lan/v1/successor", get(successor))
}

/// The admin's, under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/lan/handover", post(by_admin))
}

fn hosting(state: &AppState) -> ApiResult<&LanHost> {
    state.lan.as_deref().ok_or_else(|| {
        ApiError::Conflict("this server is not a LAN host (start it with --lan-bind)".into())
    })
}

/// The calling device when it is approved; 403 otherwise.
fn approved_device(host: &LanHost, peer: &LanPeer) -> ApiResult<DeviceId> {
    match &peer.key {
        Some(key) if host.devices.is_approved(&key.device_id) => Ok(key.device_id),
        _ => Err(ApiError::forbidden(
            "only an approved device of this host may do this",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminBody {
    device_id: String,
    #[serde(default)]
    address: Option<HostAddress>,
}

fn outcome(outcome: super::Outcome) -> Json<Value> {
    Json(json!({
        "handed_over": true,
        "successor": outcome.successor,
        "pause_ms": outcome.pause_ms,
        "drain_ms": outcome.drain_ms,
    }))
}

async fn by_admin(
    State(state): State<AppState>,
    LanAdmin(admin): LanAdmin,
    crate::http::extract::ApiJson(body): crate::http::extract::ApiJson<AdminBody>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let device: DeviceId = body
        .device_id
        .parse()
        .map_err(|_| ApiError::bad_request("device_id is not a device ID").in_field("device_id"))?;
    let device_text = device.to_string();
    crate::audit::record(
        &state.db,
        Some(admin.id),
        "lan.handover",
        Some(("lan_device", &device_text)),
        json!({"address": body.address}),
    )
    .await?;
    let done = hand_over(&state, host, device, body.address, host.handover_timeout).await?;
    Ok(outcome(done))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StandbyBody {
    #[serde(default)]
    address: Option<HostAddress>,
}

async fn asked_by_standby(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
    crate::http::extract::ApiJson(body): crate::http::extract::ApiJson<StandbyBody>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let device = approved_device(host, &peer)?;
    let device_text = device.to_string();
    crate::audit::record(
        &state.db,
        None,
        "lan.handover",
        Some(("lan_device", &device_text)),
        json!({"address": body.address, "asked_by": "standby"}),
    )
    .await?;
    let done = hand_over(&state, host, device, body.address, host.handover_timeout).await?;
    Ok(outcome(done))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    seq: u64,
    term: u64,
}

async fn commit(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
    crate::http::extract::ApiJson(body): crate::http::extract::ApiJson<CommitBody>,
) -> ApiResult<Json<Successor>> {
    let host = hosting(&state)?;
    let device = approved_device(host, &peer)?;
    grant(&state, host, device, body.seq, body.term)
        .await
        .map(Json)
}

async fn successor(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
) -> ApiResult<Json<Successor>> {
    let host = hosting(&state)?;
    approved_device(host, &peer)?;
    host.handover
        .gate
        .moved()
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("this computer still hosts the shop".into()))
}

/// The API's middleware (on `/api/v1`): a request that writes holds a
/// pass through the outer gate while it runs, so that a handover waits
/// for the SQLite writes in flight and holds new ones until the candidate
/// has its last snapshot (docs/LAN.md, "Planned handover"). Once the shop
/// was handed over, such a request is refused with 503 and the successor
/// before it changes anything; once it was taken over (fenced, or
/// restarted retired), with 503 too. Signing in or out is answered in both
/// cases (it waits at a pause like any write). Not a LAN host: passes
/// without waiting.
pub async fn api_writes(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(host) = state.lan.as_deref() else {
        return next.run(request).await;
    };
    if !super::is_api_write(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let pass = Arc::clone(&host.handover.gate.api).read_owned().await;
    // Handed over or taken over (fenced, or restarted retired): this SQLite
    // is no longer the shop's, and nothing written here would reach the
    // new host. Only signing in or out (to read what is left: where the
    // shop went, the LAN status) still works.
    let gone = host.handover.gate.moved().is_some() || host.gate_closed_for_good();
    if gone && !super::is_sign_in(request.uri().path()) {
        return match host.handover.gate.moved() {
            Some(successor) => super::moved(successor),
            None => ApiError::Unavailable("this computer no longer hosts the shop".into()),
        }
        .into_response();
    }
    let response = next.run(request).await;
    drop(pass);
    response
}
