//! Peer mode (`kefu-server serve --peer-of HOST:PORT`, `lan.peer_of`): a
//! device paired with the shop's host serves its agent on loopback and
//! relays the API to the host. It keeps no shop data: no message log, no
//! SQLite, no hub; agents sign in with their accounts on the host.
//!
//! A webview cannot pin a self-signed certificate, so the UI never sees
//! LAN TLS: it talks plain HTTP to this loopback server, exactly as to a
//! solo server, and this server speaks mutual TLS to the host.
//!
//! - [`link`] — the relay handshake and the link's state (connected /
//!   reconnecting / unreachable / refused), for the UI and the tray.
//! - [`relay`] — `/api/*` and the WebSocket to the pinned host only.
//! - [`connector`] — the mutual-TLS connections under the relay.
//!
//! What the loopback listener serves (same accept loop, limits, timeouts
//! and `Host` check as a solo server's): the workstation UI, `/healthz`,
//! `/readyz` (503 until the link is connected), `GET /api/v1/lan/link` (the
//! link's status, answered here and never relayed), `/api/v1/lan/copy…`
//! (this computer's copy of the shop and the take-over, [`copy`]) and the
//! relay for every other `/api/…` path. Nothing else.
//!
//! It listens **on loopback only**, refused otherwise at start: anything
//! reaching it acts with this device's key on the host.
//!
//! The library API the desktop calls: [`start`] / [`start_on`] →
//! [`RunningPeer`] (its address, [`RunningPeer::link`] for the status and
//! [`link::Link::subscribe`] for changes, shutdown).

pub mod connector;
pub mod copy;
pub mod link;
pub mod relay;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, middleware};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;

use self::connector::PinnedConnector;
use self::link::{Link, LinkState, LinkStatus};
use self::relay::Relay;
use super::identity::Identity;
use super::state::{LanStateFile, Role};
use super::tls::ServerTrust;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::edge::{self, Edge};

/// A started peer server.
pub struct RunningPeer {
    /// The loopback address it serves on.
    pub addr: SocketAddr,
    link: Arc<Link>,
    copy: Arc<copy::LocalCopy>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningPeer {
    /// The link to the host (status, changes).
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    pub fn status(&self) -> LinkStatus {
        self.link.status()
    }

    /// Set when this device became the shop's host while serving as a peer
    /// (its admin took the shop over, or the host handed it over to this
    /// device's copy): the peer then stops, and its caller serves the shop
    /// as the host (`copy`).
    pub fn became_host(&self) -> Arc<parking_lot::Mutex<Option<copy::BecameHost>>> {
        self.copy.became_host()
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Graceful stop: no new connections, requests in flight finish
    /// (until `http.shutdown_timeout_secs`), tunnels closed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Runs until the server stops (its shutdown token is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("peer server task panicked")?
    }
}

/// Binds `config.bind` and serves as a peer of `config.lan.peer_of`.
pub async fn start(config: Config) -> anyhow::Result<RunningPeer> {
    let listener = TcpListener::bind(config.bind).await.with_context(|| {
        format!(
            "cannot listen on {} (is another Kefu running there?)",
            config.bind
        )
    })?;
    start_on(config, listener).await
}

/// As [`start`], on a listener the caller bound (on loopback).
pub async fn start_on(config: Config, listener: TcpListener) -> anyhow::Result<RunningPeer> {
    config.validate().map_err(anyhow::Error::msg)?;
    let Some(address) = config.lan.peer_of.clone() else {
        anyhow::bail!("peer mode needs the host's address (--peer-of HOST:PORT, lan.peer_of)");
    };
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "a peer listens on loopback only (bind = {addr}): whoever reaches it acts with this device's key on the host"
        );
    }
    let data_dir = config.data_dir.clone();
    let (identity, state_file) = tokio::task::spawn_blocking(move || {
        let (identity, _) = Identity::open(&data_dir)?;
        let state_file = LanStateFile::open(&data_dir)?;
        anyhow::Ok((identity, state_file))
    })
    .await??;
    match state_file.state().role {
        Role::Peer => {}
        Role::Host => anyhow::bail!(
            "this device hosts the shop (DATA_DIR/lan/state.json); a host is not a peer"
        ),
        Role::Solo => anyhow::bail!(
            "this device is not paired with a host: run `kefu-server lan pair --host HOST:PORT` (or --link) first"
        ),
    }
    // Tests run several devices on loopback addresses: connect from this
    // listener's address so that the host tells them apart.
    let local = source_address(addr.ip(), &address);
    let address = pinned_address(&identity, &state_file, address, local).await;
    let identity = Arc::new(identity);
    let link = Arc::new(
        Link::new(Arc::clone(&identity), address.clone(), local, state_file)
            .map_err(anyhow::Error::msg)?,
    );
    let connector = PinnedConnector::new(
        &identity,
        ServerTrust::Pinned(link.pinned()),
        address,
        local,
    )
    .map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    let copy = copy::LocalCopy::new(config.data_dir.clone(), Arc::clone(&link), shutdown.clone());
    copy.resume().await;
    let relay = Arc::new(Relay::new(
        Arc::clone(&link),
        connector,
        config.limits.max_connections,
        shutdown.clone(),
    ));
    let router = router(&config, Arc::clone(&relay), Arc::clone(&copy));
    tokio::spawn(Arc::clone(&link).supervise(shutdown.clone()));
    let slots = crate::http::serve::slots(&config.http);
    let http_config = config.http.clone();
    let serving_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let deadline = crate::http::serve::serve_with(
            listener,
            Arc::new(crate::http::serve::Plain),
            router,
            &http_config,
            serving_shutdown.clone(),
            slots,
        )
        .await;
        serving_shutdown.cancel();
        if tokio::time::timeout_at(deadline, relay.tunnels_closed())
            .await
            .is_err()
        {
            tracing::warn!("relayed WebSockets still open at the shutdown deadline");
        }
        tracing::info!("peer stopped");
        Ok(())
    });
    tracing::info!(%addr, host = %link.address(), host_device_id = %link.pinned(), "kefu peer listening");
    Ok(RunningPeer {
        addr,
        link,
        copy,
        shutdown,
        task,
    })
}

/// Where to reach the pinned host: the configured address (`--peer-of`),
/// unless the pinned host does not answer there and does at the address
/// `state.json` recorded. That is a peer that followed a planned handover
/// (`lan::peer::link` pins the new host and records its address) and was
/// restarted with the old host's address: the pinned key decides, so it
/// goes on with the new host instead of refusing the old one's key. Any
/// other failure keeps the configured address (the link says why).
async fn pinned_address(
    identity: &Identity,
    state_file: &LanStateFile,
    configured: super::HostAddress,
    local: Option<IpAddr>,
) -> super::HostAddress {
    let Some(host) = state_file.state().host.clone() else {
        return configured;
    };
    if host.address == configured {
        return configured;
    }
    let answers = |address: super::HostAddress| async move {
        super::client::DeviceClient::connect_from(
            identity,
            ServerTrust::Pinned(host.device_id),
            &address,
            local,
        )
        .await
        .is_ok()
    };
    if answers(configured.clone()).await {
        return configured;
    }
    if answers(host.address.clone()).await {
        tracing::warn!(
            %configured,
            recorded = %host.address,
            host_device_id = %host.device_id,
            "the pinned host does not answer at the configured address but at the one this \
             device recorded (it followed a handover there): connecting there; update \
             --peer-of (lan.peer_of)"
        );
        return host.address;
    }
    configured
}

fn source_address(listening: IpAddr, host: &super::HostAddress) -> Option<IpAddr> {
    let host_ip = host.socket_addr()?.ip();
    (listening.is_loopback() && host_ip.is_loopback() && listening != host_ip).then_some(listening)
}

fn router(config: &Config, relay: Arc<Relay>, copy: Arc<copy::LocalCopy>) -> Router {
    let local = copy::routes(copy).merge(
        Router::new()
            .route("/api/v1/lan/link", get(link_status))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .merge(crate::ui::workstation_routes())
            .route("/api/{*rest}", axum::routing::any(relay::forward))
            .fallback(|| async { ApiError::NotFound("no such route".into()) })
            .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
            .with_state(relay),
    );
    local
        // Outside everything: a foreign Host (DNS rebinding) gets nothing.
        .layer(middleware::from_fn_with_state(
            Arc::new(Edge::new(config)),
            edge::edge,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// `GET /api/v1/lan/link`: the link's status. No token: it is the relay's
/// health, like `/readyz`, on a loopback-only listener, and names nothing
/// secret (the host's address and device ID are announced over mDNS).
async fn link_status(State(relay): State<Arc<Relay>>) -> Json<LinkStatus> {
    Json(relay.link().status())
}

async fn readyz(State(relay): State<Arc<Relay>>) -> Response {
    if relay.link().state() == LinkState::Connected {
        "ready".into_response()
    } else {
        ApiError::Unavailable("not connected to the shop's host".into()).into_response()
    }
}
