//! The host's LAN listener: what `kefu-server serve --lan-bind ADDR:PORT`
//! (`lan.bind`) adds to a server.
//!
//! - **Start** ([`LanHost::open`]): the device identity (made on first
//!   use, its certificate naming the LAN address and `lan.names`), then
//!   the term, written durably before anything is served as host: a solo
//!   or peer device is promoted (`term = highest seen + 1`; a former peer
//!   starts a new history, it kept no shop data), a host starts its next
//!   term. Then the allowlist is loaded, and, with `lan.mdns.enabled`, the
//!   host is announced (shop name, device ID, term, role). A device
//!   another one took the shop over from (`superseded_by`, not a restored
//!   backup) starts **retired**: no new term, its message log closed
//!   before anything runs, nothing announced; it serves the new host's
//!   reconciliation (`lan::fork`) and refuses every write.
//! - **TLS only** ([`LanHandshake`]): the accept loop of `http::serve`
//!   with a rustls handshake (`lan::tls::server_config`: asks for a client
//!   certificate, does not require one) as its handshake step, so the
//!   connection cap, the timeouts and graceful shutdown are the loopback
//!   listener's. Plain HTTP on this port fails the handshake.
//! - **Who may do what** ([`gate`], on every request of this listener,
//!   inside the `Host` check): a device certificate on the allowlist uses
//!   the whole API as on loopback (same auth, limits and origin rules); a
//!   device not approved reaches only the pairing routes (`/lan/v1/pair`);
//!   a client without a certificate is a browser: it gets the workstation
//!   and the API only when `lan.browsers` is on, and never the pairing
//!   routes. Everything else is 403.
//! - **Revocation** closes a device's connections at once
//!   (`lan::connections`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::connections::{Connections, Revocable};
use super::device_id::DeviceId;
use super::devices::Devices;
use super::discovery::Advertiser;
use super::discovery::txt::Announcement;
use super::identity::Identity;
use super::pairing::HostPairing;
use super::shop_name::ShopName;
use super::state::{HistoryId, LanStateFile, Role};
use super::tls::{self, PeerKey};
use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;

/// Pairing exchanges started and not finished, at most; the oldest goes.
const MAX_OPEN_PAIRINGS: usize = 64;
/// How long a started pairing waits for the device's nonce.
const PAIRING_TTL: Duration = Duration::from_secs(120);
/// Pairing starts per client IP per minute.
const PAIR_STARTS_PER_MINUTE: u32 = 10;

/// What the LAN listener knows of a connection's client, in the
/// extensions of each of its requests.
#[derive(Clone, Debug)]
pub struct LanPeer {
    /// The client's key (a device); `None`: no certificate, a browser.
    pub key: Option<PeerKey>,
}

/// This server as the shop's host on the LAN.
pub struct LanHost {
    pub identity: Identity,
    /// The LAN listener's address (as bound).
    pub listening: SocketAddr,
    pub term: u64,
    pub history_id: HistoryId,
    pub role: Role,
    /// The shop's name as announced; changed by [`LanHost::rename_shop`].
    shop_name: Mutex<Option<ShopName>>,
    /// Serialises changes to `state.json` made while hosting.
    state_writes: tokio::sync::Mutex<()>,
    data_dir: std::path::PathBuf,
    /// `lan.browsers`: clients without a certificate get the workstation.
    pub browsers: bool,
    pub devices: Devices,
    pub connections: Arc<Connections>,
    /// Standbys' replication progress (`lan::replication`).
    pub standbys: super::replication::Standbys,
    /// `lan.min_standby_acks`: the synchronous standby
    /// (`lan::sync_standby`).
    pub sync: super::sync_standby::SyncStandby,
    /// Set once another device took the shop over: the message log is
    /// closed, nothing more is written in this term (`lan::replication`).
    pub superseded: std::sync::atomic::AtomicBool,
    /// Planned handover: the write gate and the handover under way
    /// (`lan::handover`).
    pub handover: super::handover::Handover,
    /// `lan.handover_timeout_secs`: how long writes stay paused for a
    /// standby that does not confirm.
    pub handover_timeout: Duration,
    /// The line of seqs served, for `welcome` (`lan::fork::Line`).
    pub line: super::fork::Line,
    acceptor: TlsAcceptor,
    pairings: Mutex<HashMap<DeviceId, OpenPairing>>,
    pair_starts: DefaultKeyedRateLimiter<IpAddr>,
    advertiser: Mutex<Option<Advertiser>>,
}

/// A pairing between its two steps.
pub struct OpenPairing {
    pub pairing: HostPairing,
    pub name: String,
    pub started: Instant,
}

impl LanHost {
    /// Makes or loads the identity, writes the new term, loads the
    /// allowlist and starts announcing (see the module doc). `listening`
    /// is the bound LAN address.
    pub async fn open(
        config: &Config,
        db: &sqlx::SqlitePool,
        listening: SocketAddr,
    ) -> anyhow::Result<LanHost> {
        let mut names = config.lan.names.clone();
        if !listening.ip().is_unspecified() {
            names.push(listening.ip().to_string());
        }
        let data_dir = config.data_dir.clone();
        let (identity, state, retired) = tokio::task::spawn_blocking(move || {
            let (identity, _) = Identity::load_or_create(&data_dir, &names)?;
            let mut state = LanStateFile::open(&data_dir)?;
            if let Some(by) = state.state().superseded_by.clone()
                && !by.restored
            {
                // Retired: its log stays closed (`open_state`); it serves
                // only what the new host's reconciliation reads.
                tracing::warn!(
                    by = %by.device_id,
                    term = by.term,
                    "this device was the shop's host until another device took it over: it writes \
                     nothing, and serves only the new host's reconciliation (lan::fork). To work \
                     with the shop again, join the new host as a peer (kefu-server lan pair)"
                );
                return anyhow::Ok((identity, state.state().clone(), true));
            }
            if let Some(by) = &state.state().superseded_by {
                anyhow::bail!(
                    "this device was the shop's host until {} took it over in term {}: it does \
                     not host this shop again. Join the new host as a peer (kefu-server lan pair \
                     --host ADDRESS --id {}); this data dir keeps the old copy",
                    by.device_id,
                    by.term,
                    by.device_id
                );
            }
            let was = state.state().role;
            let term = match was {
                Role::Host => state.bump_term()?,
                // A peer kept no shop data: its store starts a new history.
                Role::Peer => state.promote_to_host(true)?,
                Role::Solo => state.promote_to_host(false)?,
            };
            tracing::info!(%was, term, "LAN host: term written");
            anyhow::Ok((identity, state.state().clone(), false))
        })
        .await??;
        let devices = Devices::load(db)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut server_config = tls::server_config(&identity)?;
        server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let quota =
            Quota::per_minute(NonZeroU32::new(PAIR_STARTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN));
        let host = LanHost {
            listening,
            term: state.term,
            history_id: state.history_id,
            role: state.role,
            shop_name: Mutex::new(state.shop_name.clone()),
            state_writes: tokio::sync::Mutex::new(()),
            data_dir: config.data_dir.clone(),
            browsers: config.lan.browsers,
            devices,
            connections: Arc::new(Connections::default()),
            standbys: super::replication::Standbys::default(),
            sync: super::sync_standby::SyncStandby::new(
                config.lan.min_standby_acks,
                Duration::from_millis(config.lan.sync_standby_timeout_ms),
            ),
            superseded: std::sync::atomic::AtomicBool::new(retired),
            handover: super::handover::Handover::default(),
            handover_timeout: Duration::from_secs(config.lan.handover_timeout_secs),
            line: super::fork::Line::of(&config.data_dir, state.history_id),
            acceptor: TlsAcceptor::from(Arc::new(server_config)),
            pairings: Mutex::new(HashMap::new()),
            pair_starts: RateLimiter::keyed(quota),
            advertiser: Mutex::new(None),
            identity,
        };
        if retired {
            // Not the host: no announcement, no fencer.
            return Ok(host);
        }
        if config.lan.mdns.enabled {
            let announcement = Announcement {
                device_id: host.identity.device_id(),
                shop: state.shop_name.clone(),
                term: state.term,
                role: Role::Host,
            };
            let addresses: Vec<IpAddr> = Some(listening.ip())
                .filter(|ip| !ip.is_unspecified())
                .into_iter()
                .collect();
            match Advertiser::start(
                &config.lan.mdns,
                &announcement,
                listening.port(),
                &addresses,
            ) {
                Ok(advertiser) => *host.advertiser.lock() = Some(advertiser),
                Err(error) => tracing::warn!(%error, "cannot announce the host over mDNS"),
            }
        }
        tracing::info!(
            %listening,
            device_id = %host.identity.device_id(),
            term = host.term,
            links = ?pairing_links(&host, &config.lan.names),
            "LAN host listening (TLS)"
        );
        // A host that took the shop over tells the old host its term.
        let address =
            (!listening.ip().is_unspecified()).then(|| super::HostAddress::from(listening));
        super::takeover::spawn_fencer(config.data_dir.clone(), host.term, address);
        Ok(host)
    }

    /// The handshake step for `http::serve::serve_with`.
    pub fn handshake(self: &Arc<Self>) -> LanHandshake {
        LanHandshake {
            host: Arc::clone(self),
        }
    }

    /// `data_dir/lan/` of this server.
    pub fn lan_dir(&self) -> std::path::PathBuf {
        self.data_dir.join(super::identity::LAN_DIR)
    }

    /// Records durably that `by` took the shop over in `term` (see
    /// `LanStateFile::demote`). False: `term` is below this host's own.
    pub async fn demote(&self, term: u64, by: DeviceId) -> anyhow::Result<bool> {
        let _writing = self.state_writes.lock().await;
        let data_dir = self.data_dir.clone();
        let demoted = tokio::task::spawn_blocking(move || {
            let mut state = LanStateFile::open(&data_dir)?;
            anyhow::Ok(state.demote(term, by)?)
        })
        .await??;
        if demoted {
            self.superseded
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(demoted)
    }

    /// Whether another device holds the shop now (handed over or taken
    /// over): this host never writes again.
    pub fn gate_closed_for_good(&self) -> bool {
        self.superseded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops announcing (says goodbye over mDNS).
    pub async fn stop_announcing(&self) {
        let advertiser = self.advertiser.lock().take();
        if let Some(advertiser) = advertiser {
            advertiser.shutdown().await;
        }
    }

    /// The shop's name as announced now.
    pub fn shop_name(&self) -> Option<ShopName> {
        self.shop_name.lock().clone()
    }

    /// Renames the shop on a running host: written durably to
    /// `state.json` first (so a restart keeps it), then announced over
    /// mDNS at once (the instance is re-registered under the new name;
    /// the old one says goodbye). Returns whether mDNS announced it.
    pub async fn rename_shop(&self, name: ShopName) -> anyhow::Result<bool> {
        let _writing = self.state_writes.lock().await;
        let data_dir = self.data_dir.clone();
        let stored = name.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = LanStateFile::open(&data_dir)?;
            state.update(|s| s.shop_name = Some(stored))?;
            anyhow::Ok(())
        })
        .await??;
        *self.shop_name.lock() = Some(name.clone());
        let mut advertiser = self.advertiser.lock();
        let Some(advertiser) = advertiser.as_mut() else {
            return Ok(false);
        };
        let announcement = Announcement {
            device_id: self.identity.device_id(),
            shop: Some(name),
            term: self.term,
            role: Role::Host,
        };
        match advertiser.update(&announcement) {
            Ok(()) => Ok(true),
            Err(error) => {
                tracing::warn!(%error, "cannot announce the new shop name over mDNS");
                Ok(false)
            }
        }
    }

    /// Whether the host is announced over mDNS now.
    pub fn announcing(&self) -> bool {
        self.advertiser.lock().is_some()
    }

    /// Spends one pairing start of `ip`'s budget.
    pub fn pair_start_allowed(&self, ip: IpAddr) -> bool {
        self.pair_starts.check_key(&ip).is_ok()
    }

    /// Keeps `pairing` for `device` until its nonce arrives (a newer one
    /// replaces it; beyond the bound the oldest is dropped).
    pub fn open_pairing(&self, device: DeviceId, pairing: OpenPairing) {
        let mut pairings = self.pairings.lock();
        pairings.retain(|_, open| open.started.elapsed() < PAIRING_TTL);
        if pairings.len() >= MAX_OPEN_PAIRINGS
            && !pairings.contains_key(&device)
            && let Some(oldest) = pairings
                .iter()
                .min_by_key(|(_, open)| open.started)
                .map(|(id, _)| *id)
        {
            pairings.remove(&oldest);
        }
        pairings.insert(device, pairing);
    }

    /// Takes the open pairing of `device`, if it is still fresh.
    pub fn take_pairing(&self, device: &DeviceId) -> Option<OpenPairing> {
        self.pairings
            .lock()
            .remove(device)
            .filter(|open| open.started.elapsed() < PAIRING_TTL)
    }

    /// Housekeeping: forgets rate-limit keys back at full quota.
    pub fn housekeeping(&self) {
        self.pair_starts.retain_recent();
        self.pair_starts.shrink_to_fit();
        self.pairings
            .lock()
            .retain(|_, open| open.started.elapsed() < PAIRING_TTL);
    }
}

/// The `kefu://pair` links a peer may be given for this host (no
/// secrets: an address and the device ID): one per address it can be
/// reached at, the LAN listener's own (unless it is `0.0.0.0`) and then
/// `lan.names`, each with the listener's port.
pub fn pairing_links(host: &LanHost, names: &[String]) -> Vec<String> {
    let port = host.listening.port();
    let mut addresses = Vec::new();
    if !host.listening.ip().is_unspecified() {
        addresses.push(super::HostAddress::from(host.listening));
    }
    for name in names {
        let text = match name.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port).to_string(),
            Err(_) => format!("{name}:{port}"),
        };
        if let Ok(address) = text.parse::<super::HostAddress>()
            && !addresses.contains(&address)
        {
            addresses.push(address);
        }
    }
    addresses
        .into_iter()
        .map(|address| {
            super::pairing::PairingLink {
                host: address,
                device_id: host.identity.device_id(),
            }
            .to_string()
        })
        .collect()
}

/// The TLS handshake of the LAN listener (see `http::serve::Handshake`).
pub struct LanHandshake {
    host: Arc<LanHost>,
}

impl crate::http::serve::Handshake for LanHandshake {
    type Stream = Revocable<TlsStream<TcpStream>>;
    const ANSWERS_BUSY_IN_CLEAR: bool = false;

    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<(Self::Stream, http::Extensions)> {
        let stream = match self.host.acceptor.accept(tcp).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "LAN TLS handshake failed");
                return None;
            }
        };
        let key = tls::peer_key(stream.get_ref().1);
        let stream = match &key {
            Some(key) => self.host.connections.track(key.device_id, stream),
            None => Revocable::untracked(stream),
        };
        let mut extensions = http::Extensions::new();
        extensions.insert(LanPeer { key });
        Some((stream, extensions))
    }
}

/// Whether a request on the LAN listener may go on (module doc).
pub async fn gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(host) = state.lan.as_ref() else {
        return refused("this server is not a LAN host");
    };
    let Some(peer) = request.extensions().get::<LanPeer>() else {
        return refused("no LAN connection");
    };
    let pairing = request.uri().path().starts_with("/lan/v1/");
    let candidate = peer.key.as_ref().map(|key| key.device_id);
    let refusal = match &peer.key {
        Some(key) if pairing || host.devices.is_approved(&key.device_id) => None,
        Some(_) => {
            Some("this device is not approved on the host: pair it and have an admin approve it")
        }
        None if pairing => Some("pairing needs a Kefu device certificate"),
        None if host.browsers => None,
        None => Some("browsers are not served on this LAN listener (lan.browsers is off)"),
    };
    let mut response = match refusal {
        None => next.run(request).await,
        Some(message) => refused(message),
    };
    // Every answer on the LAN listener carries the host's term, so that a
    // peer's relay checks it on each response, not only at its handshake.
    response
        .headers_mut()
        .insert(TERM_HEADER, http::HeaderValue::from(host.term));
    // A standby a handover waits for learns here how far to catch up.
    if let Some(seq) = candidate.and_then(|device| host.handover.pending_seq(&device)) {
        response
            .headers_mut()
            .insert(super::handover::SEQ_HEADER, http::HeaderValue::from(seq));
    }
    response
}

/// The response header carrying the host's term on the LAN listener.
pub const TERM_HEADER: &str = "kefu-term";

fn refused(message: &str) -> Response {
    ApiError::forbidden(message).into_response()
}
