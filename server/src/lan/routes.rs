//! The LAN routes.
//!
//! **Pairing** (`/lan/v1/pair…`), on the LAN listener only, for a client
//! with a device certificate (its device ID is the TLS key's, never a value
//! in the body):
//!
//! 1. `POST /lan/v1/pair` `{"name"?}` → the host's commitment to its nonce,
//!    its device ID, term and history (at most 10 starts per IP a minute).
//! 2. `POST /lan/v1/pair/nonce` `{"nonce"}` → the host's nonce; both sides
//!    now compute the code; the device is `pending` (listed for the admin
//!    with the host's code) unless already approved.
//! 3. `GET /lan/v1/pair` → the device's status, polled until `approved`.
//!
//! **Relay handshake** (`GET /lan/v1/hello`, LAN listener, approved devices
//! only): the host's device ID, term and history, which a peer's relay
//! checks (`lan::peer::link`) before it relays anything.
//!
//! **Admin** (`/api/v1/lan/…`, every listener): status, the shop's name
//! (`PUT /lan/shop`, re-announced over mDNS at once), the device list,
//! approve (with the code the device shows), rename, revoke (closes the
//! device's connections at once), delete. Admins only (403 for agents;
//! a visitor token gets 404, as if the routes did not exist); every change
//! is audited.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, patch, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::device_id::DeviceId;
use super::devices::{DeviceStatus, check_name};
use super::host::{LanHost, LanPeer, OpenPairing};
use super::pairing::{HostPairing, Nonce};
use super::shop_name::ShopName;
use crate::agents::{Agent, Role};
use crate::auth::{AdminAuth, Principal};
use crate::error::{ApiError, ApiResult};
use crate::http::ClientIp;
use crate::http::extract::ApiJson;
use crate::state::AppState;

/// The pairing routes, mounted on the LAN listener only.
pub fn pairing_routes() -> Router<AppState> {
    Router::new()
        .route("/lan/v1/pair", post(pair_start).get(pair_status))
        .route("/lan/v1/pair/nonce", post(pair_nonce))
        .route("/lan/v1/hello", get(hello))
        .merge(super::replication::routes::lan_routes())
        .merge(super::handover::routes::lan_routes())
        .merge(super::fork::routes::lan_routes())
}

/// The admin routes, under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/lan/status", get(status))
        .route("/lan/shop", put(rename_shop))
        .route("/lan/devices", get(list))
        .route("/lan/devices/{id}", patch(rename).delete(delete))
        .route("/lan/devices/{id}/approve", post(approve))
        .route("/lan/devices/{id}/revoke", post(revoke))
        .merge(super::replication::routes::routes())
        .merge(super::handover::routes::routes())
}

/// An admin; a visitor token is answered as if the route did not exist.
pub struct LanAdmin(pub Agent);

impl FromRequestParts<AppState> for LanAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = crate::auth::bearer(&parts.headers)
            && let Some(Principal::Visitor(_)) = crate::auth::resolve_token(state, token).await?
        {
            return Err(ApiError::NotFound("no such route".into()));
        }
        let AdminAuth(agent) = AdminAuth::from_request_parts(parts, state).await?;
        debug_assert_eq!(agent.role, Role::Admin);
        Ok(LanAdmin(agent))
    }
}

/// An admin or the local operator (`crate::ops::Operator`); a visitor
/// token is answered as if the route did not exist. `None`: the operator.
pub struct LanOperator(pub Option<crate::ids::AgentId>);

impl FromRequestParts<AppState> for LanOperator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = crate::auth::bearer(&parts.headers)
            && let Some(Principal::Visitor(_)) = crate::auth::resolve_token(state, token).await?
        {
            return Err(ApiError::NotFound("no such route".into()));
        }
        Ok(
            match crate::ops::Operator::from_request_parts(parts, state).await? {
                crate::ops::Operator::Local => LanOperator(None),
                crate::ops::Operator::Admin(id) => LanOperator(Some(id)),
            },
        )
    }
}

fn hosting(state: &AppState) -> ApiResult<&LanHost> {
    state.lan.as_deref().ok_or_else(|| {
        ApiError::Conflict("this server is not a LAN host (start it with --lan-bind)".into())
    })
}

fn device_key(peer: &LanPeer) -> ApiResult<&super::tls::PeerKey> {
    peer.key
        .as_ref()
        .ok_or_else(|| ApiError::forbidden("pairing needs a Kefu device certificate"))
}

fn parse_device(id: &str) -> ApiResult<DeviceId> {
    id.parse()
        .map_err(|_| ApiError::NotFound("device not found".into()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PairStart {
    #[serde(default)]
    name: Option<String>,
}

async fn pair_start(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<PairStart>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let key = device_key(&peer)?;
    let name = match body.name {
        Some(name) => check_name(&name)?,
        None => format!("Device {}", key.device_id.short()),
    };
    if let Ok(current) = host.devices.get(&state.db, &key.device_id).await
        && current.status == DeviceStatus::Revoked
    {
        return Err(ApiError::forbidden(
            "this device was revoked on the host; an admin must delete it before it can pair again",
        ));
    }
    if !host.pair_start_allowed(ip) {
        return Err(ApiError::RateLimited);
    }
    let pairing = HostPairing::new(host.identity.spki_der());
    let commitment = pairing.commitment();
    host.open_pairing(
        key.device_id,
        OpenPairing {
            pairing,
            name,
            started: std::time::Instant::now(),
        },
    );
    Ok(Json(json!({
        "commitment": commitment,
        "host_device_id": host.identity.device_id(),
        "term": host.term,
        "history_id": host.history_id,
        "shop_name": host.shop_name(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairNonce {
    nonce: Nonce,
}

async fn pair_nonce(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<PairNonce>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let key = device_key(&peer)?;
    let open = host.take_pairing(&key.device_id).ok_or_else(|| {
        ApiError::Conflict("no pairing in progress for this device: start again".into())
    })?;
    let (nonce, code) = open
        .pairing
        .reveal(host.identity.spki_der(), &key.spki, body.nonce);
    let status = host
        .devices
        .request(&state.db, &key.device_id, &open.name, code, &ip.to_string())
        .await?;
    tracing::info!(device = %key.device_id.short(), "LAN device asked to pair");
    Ok(Json(json!({"nonce": nonce, "status": status})))
}

async fn pair_status(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let key = device_key(&peer)?;
    let status = match host.devices.get(&state.db, &key.device_id).await {
        Ok(device) => json!(device.status),
        Err(ApiError::NotFound(_)) => json!("none"),
        Err(error) => return Err(error),
    };
    Ok(Json(json!({
        "status": status,
        "host_device_id": host.identity.device_id(),
        "term": host.term,
        "history_id": host.history_id,
    })))
}

/// The relay handshake (module doc): only for a device on the allowlist;
/// any other gets 403 naming its status, so the peer can say why.
async fn hello(
    State(state): State<AppState>,
    Extension(peer): Extension<LanPeer>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let key = device_key(&peer)?;
    if !host.devices.is_approved(&key.device_id) {
        let status = match host.devices.get(&state.db, &key.device_id).await {
            Ok(device) => device.status.as_str().to_owned(),
            Err(ApiError::NotFound(_)) => "none".to_owned(),
            Err(error) => return Err(error),
        };
        return Err(ApiError::forbidden(format!(
            "this device is not approved on the host (status: {status})"
        )));
    }
    Ok(Json(json!({
        "host_device_id": host.identity.device_id(),
        "device_id": key.device_id,
        // A host that handed the shop over: its devices read the signed
        // notice (`GET /lan/v1/successor`) and follow it.
        "handed_over": host.handover.gate.moved().is_some(),
        "term": host.term,
        "history_id": host.history_id,
        "shop_name": host.shop_name(),
    })))
}

async fn status(State(state): State<AppState>, LanAdmin(_): LanAdmin) -> ApiResult<Json<Value>> {
    let Some(host) = state.lan.as_deref() else {
        return Ok(Json(json!({
            "role": "solo",
            "hosting": false,
            "term": null,
            "highest_term_seen": null,
            "superseded_by": null,
            "log_seq": null,
            "standbys": null,
            "sync_standby": null,
            "history_id": null,
            "device_id": null,
            "listening": null,
            "shop_name": null,
            "announced": false,
            "pairing_links": null,
            "devices": null,
        })));
    };
    let (highest_term_seen, superseded_by) = {
        let lan_dir = host.lan_dir();
        let data_dir = lan_dir.parent().map(std::path::Path::to_path_buf);
        let read = tokio::task::spawn_blocking(move || {
            data_dir.map(|dir| super::state::LanStateFile::open(&dir).map(|f| f.state().clone()))
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
        match read {
            Some(Ok(stored)) => (stored.highest_term_seen, stored.superseded_by),
            _ => (host.term, None),
        }
    };
    let log_seq = if state.log.is_open() {
        Some(state.log.latest_sequence()?)
    } else {
        None
    };
    Ok(Json(json!({
        "role": host.role,
        "hosting": true,
        "term": host.term,
        "highest_term_seen": highest_term_seen,
        "superseded_by": superseded_by,
        "log_seq": log_seq,
        "standbys": super::replication::status(&state, host).await?,
        "sync_standby": host.sync.status(),
        "history_id": host.history_id,
        "device_id": host.identity.device_id(),
        "short_id": host.identity.device_id().short(),
        "certificate_sha256": hex::encode(host.identity.certificate_sha256()),
        "listening": host.listening.to_string(),
        "shop_name": host.shop_name(),
        "announced": host.announcing(),
        "pairing_links": super::host::pairing_links(host, &state.config.lan.names),
        "browsers": host.browsers,
        "devices": host.devices.counts(&state.db).await?,
    })))
}

async fn list(State(state): State<AppState>, LanAdmin(_): LanAdmin) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let mut devices = host.devices.list(&state.db).await?;
    for device in &mut devices {
        device.connections = host.connections.count(&device.device_id);
    }
    Ok(Json(json!({"devices": devices})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// The code the device shows, with or without its space.
    code: String,
}

async fn approve(
    State(state): State<AppState>,
    LanAdmin(admin): LanAdmin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let device = parse_device(&id)?;
    let digits: String = body.code.chars().filter(|c| *c != ' ').collect();
    let code = (digits.len() == 6 && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| digits.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| ApiError::bad_request("code must be the 6 digits the device shows"))?;
    let mut device = host
        .devices
        .approve(&state.db, &device, code, admin.id)
        .await?;
    device.connections = host.connections.count(&device.device_id);
    Ok(Json(json!({"device": device})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    name: String,
}

async fn rename(
    State(state): State<AppState>,
    LanAdmin(admin): LanAdmin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenameBody>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let device = parse_device(&id)?;
    let mut device = host
        .devices
        .rename(&state.db, &device, &body.name, admin.id)
        .await?;
    device.connections = host.connections.count(&device.device_id);
    Ok(Json(json!({"device": device})))
}

async fn revoke(
    State(state): State<AppState>,
    LanAdmin(admin): LanAdmin,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let device = parse_device(&id)?;
    let device = host.devices.revoke(&state.db, &device, admin.id).await?;
    let closed = host.connections.revoke(&device.device_id);
    tracing::info!(device = %device.device_id.short(), closed, "LAN device revoked");
    Ok(Json(
        json!({"device": device, "closed_connections": closed}),
    ))
}

async fn delete(
    State(state): State<AppState>,
    LanAdmin(admin): LanAdmin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let host = hosting(&state)?;
    let device = parse_device(&id)?;
    host.devices.delete(&state.db, &device, admin.id).await?;
    host.connections.revoke(&device);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShopBody {
    name: String,
}

/// `PUT /api/v1/lan/shop` `{"name"}`: renames the shop on the running
/// host (kept in `state.json`, announced over mDNS at once), audited.
/// Admins, or the local operator (`kefu-server lan shop-name` against the
/// running server, with the token of `server.json`, from loopback only).
async fn rename_shop(
    State(state): State<AppState>,
    operator: LanOperator,
    ApiJson(body): ApiJson<ShopBody>,
) -> ApiResult<Json<Value>> {
    let host = hosting(&state)?;
    let name: ShopName = body
        .name
        .parse()
        .map_err(|e: super::shop_name::ShopNameError| {
            ApiError::bad_request(e.to_string()).in_field("name")
        })?;
    let before = host.shop_name();
    let announced = host
        .rename_shop(name.clone())
        .await
        .map_err(ApiError::Internal)?;
    crate::audit::record(
        &state.db,
        operator.0,
        "lan.shop.rename",
        None,
        json!({"from": before, "to": name, "via": if operator.0.is_some() { "api" } else { "cli" }}),
    )
    .await?;
    tracing::info!(announced, "LAN shop renamed");
    Ok(Json(json!({"shop_name": name, "announced": announced})))
}
