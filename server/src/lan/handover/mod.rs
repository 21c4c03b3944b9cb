//! Planned handover of the host role to a standby (issue 18 item 3;
//! docs/LAN.md, "Planned handover"). The doors are in [`routes`].
//!
//! 1. **Pause.** The host closes its [`WriteGate`]: every send waits at
//!    the gate (it is not refused), and the gate is closed only once the
//!    sends already past it are durable, so the log's last sequence `S`
//!    is final for the term. The API's other writes (a ticket, a rename,
//!    an assignment: SQLite's) wait at its outer side ([`routes::api_writes`]),
//!    so the snapshot the candidate takes next is final too.
//! 2. **Catch up.** The candidate (an approved standby running `lan
//!    standby`) learns `S` from the `kefu-handover-seq` header the host
//!    adds to its answers, applies the tail up to `S`, takes a fresh
//!    SQLite snapshot, and asks for the grant (`POST
//!    /lan/v1/handover/commit {"seq": S, "term": T'}`, `T'` above the
//!    host's term).
//! 3. **Grant.** The host checks the candidate is at its last sequence,
//!    writes `superseded_by {T', candidate}` durably, closes its message
//!    log for good, and signs a [`Successor`] notice. Only then does the
//!    candidate write `T'` ([`super::state::LanStateFile::take_over`]):
//!    the old host stopped writing before the new term exists, so there is
//!    **one writer per term**, and never two at once.
//! 4. **Release.** The gate opens on a fenced host: the sends that waited
//!    fail with 503 `unavailable` (retryable: the client resends the same
//!    `client_msg_id` to the new host, where dedup makes it exactly
//!    once; its error body's `successor` says where to). The WebSockets
//!    close with 4301 naming the successor ([`close_reason`]), and the
//!    signed notice tells devices where the shop went (`GET
//!    /lan/v1/successor`; the relay handshake says `handed_over`).
//!
//! **Bound.** If the grant is not asked for within
//! `lan.handover_timeout_secs`, the host drops the handover and opens the
//! gate in its own term (it wrote nothing in another): the candidate that
//! comes late is refused, and never writes the next term.

pub mod routes;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::SignatureScheme;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedRwLockReadGuard, RwLock, oneshot};

use super::address::HostAddress;
use super::device_id::DeviceId;
use super::host::LanHost;
use super::identity::Identity;
use super::state::HistoryId;
use crate::error::ApiError;
use crate::state::AppState;

/// The header carrying the sequence the candidate must reach, on the
/// host's answers to the candidate while a handover to it is paused.
pub const SEQ_HEADER: &str = "kefu-handover-seq";
/// The signature scheme of the successor notice (the device keys are
/// P-256).
const SCHEME: SignatureScheme = SignatureScheme::ECDSA_NISTP256_SHA256;

/// Where the shop went: the new host, signed by the old one so that a
/// device that trusts the old host (it pinned its key) can trust the new
/// one as if the old host had introduced it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Successor {
    pub history_id: HistoryId,
    /// The old host's term, and the term the new host writes.
    pub old_term: u64,
    pub term: u64,
    pub device_id: DeviceId,
    /// Where the new host serves its LAN listener, when it said.
    pub address: Option<HostAddress>,
    /// The old host's public key (DER SubjectPublicKeyInfo, hex): its
    /// SHA-256 is the old host's device ID.
    pub signer_spki: String,
    /// ECDSA P-256 SHA-256 (ASN.1) over [`Successor::message`], hex.
    pub signature: String,
}

/// Why a successor notice is not to be trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoticeError {
    #[error("the notice is not signed by the pinned host")]
    OtherSigner,
    #[error("the notice's signature does not verify")]
    BadSignature,
    #[error("the notice is malformed")]
    Malformed,
}

impl Successor {
    fn message(
        history: &HistoryId,
        old_term: u64,
        term: u64,
        device: &DeviceId,
        address: Option<&HostAddress>,
    ) -> Vec<u8> {
        format!(
            "kefu-successor-v1\0{history}\0{old_term}\0{term}\0{device}\0{}",
            address.map(ToString::to_string).unwrap_or_default()
        )
        .into_bytes()
    }

    /// Signs a notice with `identity` (the old host's key).
    pub fn sign(
        identity: &Identity,
        history_id: HistoryId,
        old_term: u64,
        term: u64,
        device_id: DeviceId,
        address: Option<HostAddress>,
    ) -> anyhow::Result<Successor> {
        let provider = super::tls::provider();
        let certified = identity.certified_key(&provider)?;
        let signer = certified
            .key
            .choose_scheme(&[SCHEME])
            .ok_or_else(|| anyhow::anyhow!("the device key cannot sign with P-256"))?;
        let message = Successor::message(&history_id, old_term, term, &device_id, address.as_ref());
        let signature = signer.sign(&message)?;
        Ok(Successor {
            history_id,
            old_term,
            term,
            device_id,
            address,
            signer_spki: hex::encode(identity.spki_der()),
            signature: hex::encode(signature),
        })
    }

    /// Checks that the notice was signed by the device `signer` (the
    /// pinned old host).
    pub fn verify(&self, signer: &DeviceId) -> Result<(), NoticeError> {
        let spki = hex::decode(&self.signer_spki).map_err(|_| NoticeError::Malformed)?;
        if DeviceId::from_spki(&spki) != *signer {
            return Err(NoticeError::OtherSigner);
        }
        let signature = hex::decode(&self.signature).map_err(|_| NoticeError::Malformed)?;
        let point = p256_point(&spki).ok_or(NoticeError::Malformed)?;
        let message = Successor::message(
            &self.history_id,
            self.old_term,
            self.term,
            &self.device_id,
            self.address.as_ref(),
        );
        let provider = super::tls::provider();
        let algorithms = provider
            .signature_verification_algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == SCHEME)
            .map(|(_, algorithms)| *algorithms)
            .ok_or(NoticeError::BadSignature)?;
        if algorithms.iter().any(|algorithm| {
            algorithm
                .verify_signature(point, &message, &signature)
                .is_ok()
        }) {
            Ok(())
        } else {
            Err(NoticeError::BadSignature)
        }
    }
}

/// The uncompressed point of a P-256 `SubjectPublicKeyInfo` (what the
/// verifier takes): the key's BIT STRING, after its fixed 26-byte header.
fn p256_point(spki: &[u8]) -> Option<&[u8]> {
    const HEADER: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    (spki.len() == 91 && spki[..26] == HEADER).then(|| &spki[26..])
}

/// Where the sends of a host pass (the send path's one hook: [`enter`]).
/// Open, a send holds a shared pass while it is appended; a handover
/// takes the exclusive side, which waits for the sends in flight and
/// holds every new one until it is released. Once the host handed the
/// shop over, a send that passes is refused (503) with the successor.
///
/// The API's writes (every request that is not a read, [`routes::api_writes`])
/// pass an outer gate first, `api`: SQLite takes no write that the
/// candidate's last snapshot misses. A handover closes `api`, then
/// `lock`, always in that order, and a request takes `api` before any
/// send inside it takes `lock`, so neither waits for the other.
#[derive(Default)]
pub struct WriteGate {
    lock: Arc<RwLock<()>>,
    pub(super) api: Arc<RwLock<()>>,
    moved: OnceLock<Successor>,
}

/// A send's pass through the gate, held until its append returned.
pub type Pass = OwnedRwLockReadGuard<()>;

impl WriteGate {
    async fn enter(&self) -> Result<Pass, ApiError> {
        let pass = Arc::clone(&self.lock).read_owned().await;
        match self.moved.get() {
            None => Ok(pass),
            Some(successor) => Err(moved(successor)),
        }
    }

    /// The successor, once the shop was handed over.
    pub fn moved(&self) -> Option<&Successor> {
        self.moved.get()
    }
}

pub(super) fn moved(successor: &Successor) -> ApiError {
    ApiError::Moved {
        message: format!(
            "this computer handed the shop over to {} (term {}); send again there with the same \
             client_msg_id",
            successor.device_id.short(),
            successor.term
        ),
        successor: Box::new(crate::error::MovedTo {
            device_id: successor.device_id.to_string(),
            address: successor.address.as_ref().map(ToString::to_string),
            term: successor.term,
        }),
    }
}

/// The WebSocket close code of a host that handed the shop over
/// (docs/PROTOCOL.md: 4301 mirrors HTTP 301).
pub const CLOSE_MOVED: u16 = 4301;
/// A close reason's limit (RFC 6455: 125 bytes of payload, 2 of them
/// the code).
const CLOSE_REASON_MAX: usize = 123;

/// How a host closes its WebSockets once it handed the shop over: `moved
/// DEVICE_ID ADDRESS` (`moved DEVICE_ID` when the address was not given
/// or does not fit a close frame's 123 bytes).
pub fn close_reason(successor: &Successor) -> String {
    let short = format!("moved {}", successor.device_id);
    match &successor.address {
        Some(address) => {
            let long = format!("{short} {address}");
            if long.len() <= CLOSE_REASON_MAX {
                long
            } else {
                short
            }
        }
        None => short,
    }
}

/// The successor, when this server is a LAN host that handed the shop
/// over.
pub fn successor(state: &AppState) -> Option<&Successor> {
    state
        .lan
        .as_deref()
        .and_then(|host| host.handover.gate.moved())
}

/// The send path's hook: waits while a handover pauses writes; refused
/// once this host handed the shop over. A server that is not a LAN host
/// passes without waiting.
pub async fn enter(state: &AppState) -> Result<Option<Pass>, ApiError> {
    match state.lan.as_deref() {
        None => Ok(None),
        Some(host) => {
            let pass = host.handover.gate.enter().await?;
            // Taken over (fenced): nothing is written in this term again.
            if host.gate_closed_for_good() {
                return Err(ApiError::Unavailable(
                    "this computer no longer hosts the shop".into(),
                ));
            }
            Ok(Some(pass))
        }
    }
}

/// Whether a request on the API (`/api/v1`) writes: anything but a read,
/// and not the LAN admin's own routes (`/api/v1/lan/…`, the handover
/// itself among them, which must not wait for the gate it closes).
pub(super) fn is_api_write(method: &http::Method, path: &str) -> bool {
    let read = matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    let lan = ["/lan/", "/api/v1/lan/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
        || path == "/lan"
        || path == "/api/v1/lan";
    !read && !lan
}

/// Signing in or out (an agent's session): still answered by a host that
/// was taken over, so an admin can read its state.
pub(super) fn is_sign_in(path: &str) -> bool {
    ["/auth/", "/api/v1/auth/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// A handover waiting for its candidate.
struct Pending {
    device: DeviceId,
    /// The log's last sequence when writes paused.
    seq: u64,
    address: Option<HostAddress>,
    granted: oneshot::Sender<Result<Successor, String>>,
}

/// The host's handover state (in [`LanHost`]).
#[derive(Default)]
pub struct Handover {
    pub gate: WriteGate,
    pending: Mutex<Option<Pending>>,
    /// One handover at a time.
    running: tokio::sync::Mutex<()>,
}

/// What a finished handover says.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub successor: Successor,
    /// From the gate's closing (every earlier send durable) to the grant.
    pub pause_ms: f64,
    /// How long closing the gate waited for the sends in flight.
    pub drain_ms: f64,
}

impl Handover {
    /// The sequence `device` must reach, while a handover to it is paused.
    pub fn pending_seq(&self, device: &DeviceId) -> Option<u64> {
        self.pending
            .lock()
            .as_ref()
            .filter(|pending| pending.device == *device)
            .map(|pending| pending.seq)
    }
}

/// Hands the shop over to `device` (an approved standby), bounded by
/// `timeout`; see the module doc. On the bound, writes resume here in
/// this host's term and the answer says so.
pub async fn hand_over(
    state: &AppState,
    host: &LanHost,
    device: DeviceId,
    address: Option<HostAddress>,
    timeout: Duration,
) -> Result<Outcome, ApiError> {
    if host.gate_closed_for_good() {
        return Err(ApiError::Conflict(
            "this computer no longer hosts the shop: there is nothing to hand over".into(),
        ));
    }
    if !host.devices.is_approved(&device)
        || !super::replication::is_standby(&state.db, &device).await?
    {
        return Err(ApiError::Conflict(
            "only an approved standby can become the host: make it a standby first".into(),
        ));
    }
    if !host.standbys.is_connected(&device) {
        return Err(ApiError::Conflict(
            "the standby is not connected: start `kefu-server lan standby` on it first".into(),
        ));
    }
    let Ok(_one) = host.handover.running.try_lock() else {
        return Err(ApiError::Conflict("a handover is already under way".into()));
    };
    let asked = Instant::now();
    // The API's writes first (their sends pass the inner gate, still
    // open), then the sends that come by WebSocket.
    let api_closed = Arc::clone(&host.handover.gate.api).write_owned().await;
    let closed = Arc::clone(&host.handover.gate.lock).write_owned().await;
    let closed = (api_closed, closed);
    let paused = Instant::now();
    let seq = state.log.latest_sequence()?;
    let (granted, grant) = oneshot::channel();
    *host.handover.pending.lock() = Some(Pending {
        device,
        seq,
        address,
        granted,
    });
    tracing::warn!(
        to = %device.short(),
        seq,
        term = host.term,
        "LAN handover: writes paused, waiting for the standby"
    );
    let mut grant = grant;
    let answer = match tokio::time::timeout(timeout, &mut grant).await {
        Ok(answer) => answer,
        Err(_) => {
            let dropped = host.handover.pending.lock().take();
            if dropped.is_some() {
                drop(closed);
                tracing::warn!(
                    to = %device.short(),
                    term = host.term,
                    "LAN handover: the standby did not confirm in time; writes resumed in this term"
                );
                return Err(ApiError::Conflict(format!(
                    "the standby did not confirm within {} s: this computer resumed writes and \
                     stays the host (term {})",
                    timeout.as_secs(),
                    host.term
                )));
            }
            // The grant took the handover between the bound and now.
            grant.await
        }
    };
    let pause_ms = paused.elapsed().as_secs_f64() * 1000.0;
    match answer {
        Ok(Ok(successor)) => {
            // The gate opens on a fenced host: the sends that waited are
            // refused with the successor; the WebSockets close.
            drop(closed);
            state.hub.close_all();
            tracing::warn!(
                to = %successor.device_id.short(),
                term = successor.term,
                pause_ms,
                "LAN handover: the shop was handed over; this computer no longer writes"
            );
            Ok(Outcome {
                successor,
                pause_ms,
                drain_ms: (paused - asked).as_secs_f64() * 1000.0,
            })
        }
        other => {
            let why = match other {
                Ok(Err(why)) => why,
                _ => "no answer".to_owned(),
            };
            drop(closed);
            if host.gate_closed_for_good() {
                state.hub.close_all();
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "the handover failed after this host closed its log: {why}"
                )));
            }
            Err(ApiError::Conflict(format!(
                "the handover failed ({why}); this computer resumed writes in term {}",
                host.term
            )))
        }
    }
}

/// The candidate's ask for the grant (module doc, step 3). `term` is the
/// term it will write; `seq` what it applied.
pub async fn grant(
    state: &AppState,
    host: &LanHost,
    device: DeviceId,
    seq: u64,
    term: u64,
) -> Result<Successor, ApiError> {
    if let Some(successor) = host.handover.gate.moved() {
        // Granted already (the answer was lost): the same grant again.
        if successor.device_id == device {
            return Ok(successor.clone());
        }
        return Err(ApiError::Conflict(
            "the shop was handed over to another device".into(),
        ));
    }
    let pending = {
        let mut slot = host.handover.pending.lock();
        match slot.as_mut() {
            Some(pending) if pending.device == device => {}
            _ => {
                return Err(ApiError::Conflict(
                    "no handover to this device is under way".into(),
                ));
            }
        }
        let latest = state.log.latest_sequence()?;
        let Some(pending) = slot.as_mut() else {
            return Err(ApiError::Conflict("no handover is under way".into()));
        };
        // A line Kefu wrote by itself during the pause moves the target.
        pending.seq = pending.seq.max(latest);
        if seq != pending.seq {
            return Err(ApiError::Conflict(format!(
                "catch up to sequence {} first (at {seq})",
                pending.seq
            )));
        }
        if term <= host.term {
            return Err(ApiError::Conflict(format!(
                "the next term must be above this host's {}",
                host.term
            )));
        }
        slot.take()
    };
    let Some(pending) = pending else {
        return Err(ApiError::Conflict("no handover is under way".into()));
    };
    // The candidate fsynced its copy through `seq` before asking: sends
    // waiting for a synchronous standby (all at or below it) have theirs.
    host.sync.standby_at(seq, true);
    let result = async {
        let successor = Successor::sign(
            &host.identity,
            host.history_id,
            host.term,
            term,
            device,
            pending.address.clone(),
        )?;
        if !host.demote(term, device).await? {
            anyhow::bail!("the term {term} is below this host's");
        }
        // Nothing is written in this term from now on; the gate refuses.
        state.log.close().await;
        let _ = host.handover.gate.moved.set(successor.clone());
        anyhow::Ok(successor)
    }
    .await;
    match result {
        Ok(successor) => {
            let _ = pending.granted.send(Ok(successor.clone()));
            Ok(successor)
        }
        Err(error) => {
            let _ = pending.granted.send(Err(format!("{error:#}")));
            Err(ApiError::Internal(error))
        }
    }
}

/// A standby that took the shop over fences this host (`POST
/// /lan/v1/fence`, `lan::replication::fence`) with `term`: as a grant
/// does, behind the closed write gate, so that **no send is acknowledged
/// here once the new term is durable here**. Closing the gate waits for
/// the sends already past it (each is acknowledged in this host's term,
/// before the new one is known); then `superseded_by` is written, the log
/// closed, and the gate opens refusing every send (503 naming `device` at
/// `address`), and the WebSockets close with 4301. Returns false (nothing
/// changed) when `term` is below this host's.
pub async fn fenced(
    state: &AppState,
    host: &LanHost,
    term: u64,
    device: DeviceId,
    address: Option<HostAddress>,
) -> anyhow::Result<bool> {
    if term < host.term {
        return Ok(false);
    }
    let notice = Successor::sign(
        &host.identity,
        host.history_id,
        host.term,
        term,
        device,
        address,
    )?;
    let closed = Arc::clone(&host.handover.gate.lock).write_owned().await;
    if !host.demote(term, device).await? {
        return Ok(false);
    }
    // Nothing is written in this term from now on; the gate refuses.
    state.log.close().await;
    let _ = host.handover.gate.moved.set(notice);
    drop(closed);
    state.hub.close_all();
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_verifies_with_its_signer_only_and_any_change_breaks_it() {
        let old = tempfile::tempdir().expect("tempdir");
        let other = tempfile::tempdir().expect("tempdir");
        let (old_identity, _) = Identity::load_or_create(old.path(), &[]).expect("identity");
        let (other_identity, _) = Identity::load_or_create(other.path(), &[]).expect("identity");
        let notice = Successor::sign(
            &old_identity,
            HistoryId::random(),
            4,
            5,
            other_identity.device_id(),
            Some("192.168.1.21:5339".parse().expect("address")),
        )
        .expect("sign");
        notice.verify(&old_identity.device_id()).expect("verifies");
        assert_eq!(
            notice.verify(&other_identity.device_id()),
            Err(NoticeError::OtherSigner)
        );
        let mut moved = notice.clone();
        moved.address = Some("10.0.0.9:5339".parse().expect("address"));
        assert_eq!(
            moved.verify(&old_identity.device_id()),
            Err(NoticeError::BadSignature)
        );
        let mut later = notice.clone();
        later.term = 6;
        assert_eq!(
            later.verify(&old_identity.device_id()),
            Err(NoticeError::BadSignature)
        );
        // The other device's own signature over the same claim is not the
        // old host's.
        let forged = Successor::sign(
            &other_identity,
            notice.history_id,
            4,
            5,
            other_identity.device_id(),
            notice.address.clone(),
        )
        .expect("sign");
        assert_eq!(
            forged.verify(&old_identity.device_id()),
            Err(NoticeError::OtherSigner)
        );
    }

    #[test]
    fn the_close_reason_names_the_successor_within_a_close_frames_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (identity, _) = Identity::load_or_create(dir.path(), &[]).expect("identity");
        let notice = |address: Option<&str>| {
            Successor::sign(
                &identity,
                HistoryId::random(),
                1,
                2,
                identity.device_id(),
                address.map(|a| a.parse().expect("address")),
            )
            .expect("sign")
        };
        let id = identity.device_id();
        assert_eq!(
            close_reason(&notice(Some("192.168.1.21:5339"))),
            format!("moved {id} 192.168.1.21:5339")
        );
        let v6 = "[fe80::1c2d:3e4f:5a6b:7c8d]:5339";
        let reason = close_reason(&notice(Some(v6)));
        assert!(reason.len() <= CLOSE_REASON_MAX, "{reason}");
        assert!(reason.ends_with(v6), "{reason}");
        // A host name too long for the frame: the device ID alone.
        let long = format!("{}.local:5339", "a".repeat(60));
        assert_eq!(close_reason(&notice(Some(&long))), format!("moved {id}"));
        assert_eq!(close_reason(&notice(None)), format!("moved {id}"));
    }

    #[test]
    fn the_api_gate_holds_every_write_but_the_lan_admins_own() {
        use http::Method;
        for (method, path) in [
            (Method::POST, "/tickets"),
            (Method::PATCH, "/agents/me"),
            (Method::PUT, "/app_settings"),
            (Method::DELETE, "/routing/rules/1"),
            (Method::POST, "/api/v1/conversations/x/assign"),
            (Method::POST, "/lanterns"),
        ] {
            assert!(is_api_write(&method, path), "{method} {path}");
        }
        for (method, path) in [
            (Method::GET, "/tickets"),
            (Method::HEAD, "/tickets"),
            (Method::OPTIONS, "/tickets"),
            (Method::POST, "/lan/handover"),
            (Method::POST, "/api/v1/lan/handover"),
            (Method::PUT, "/lan/devices/x/standby"),
        ] {
            assert!(!is_api_write(&method, path), "{method} {path}");
        }
    }

    #[tokio::test]
    async fn the_gate_waits_for_sends_in_flight_holds_new_ones_and_refuses_after_a_move() {
        let gate = Arc::new(WriteGate::default());
        let in_flight = gate.enter().await.expect("open");
        let closing = tokio::spawn({
            let lock = Arc::clone(&gate.lock);
            async move { lock.write_owned().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !closing.is_finished(),
            "closing waits for the send in flight"
        );
        drop(in_flight);
        let closed = closing.await.expect("closed");
        let waiting = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.enter().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "a new send waits at the closed gate"
        );
        let old = tempfile::tempdir().expect("tempdir");
        let (identity, _) = Identity::load_or_create(old.path(), &[]).expect("identity");
        let notice = Successor::sign(
            &identity,
            HistoryId::random(),
            1,
            2,
            identity.device_id(),
            None,
        )
        .expect("sign");
        gate.moved.set(notice).expect("set");
        drop(closed);
        let refused = waiting.await.expect("joined").expect_err("refused");
        assert!(matches!(refused, ApiError::Moved { .. }), "{refused:?}");
        assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        let body = serde_json::to_value(refused.body()).expect("json");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert_eq!(
            body["error"]["successor"]["device_id"],
            identity.device_id().to_string(),
            "{body}"
        );
        assert_eq!(body["error"]["successor"]["term"], 2, "{body}");
    }
}
