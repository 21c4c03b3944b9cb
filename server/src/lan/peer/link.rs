//! The peer's link to its pinned host: whether the host is there, proved
//! and current, as the UI and the tray show it ([`LinkStatus`]).
//!
//! A supervisor task ([`Link::supervise`]) runs the **relay handshake**
//! (`GET /lan/v1/hello` over mutual TLS, the host pinned by its device ID)
//! at start, every [`CHECK_EVERY`] while connected, at once when the relay
//! saw something wrong ([`Link::wake`]), and every [`RETRY_EVERY`] while
//! not connected. The handshake's answer is checked before the link says
//! `connected`:
//!
//! - the key: the TLS verifier refuses any key but the pinned one (a
//!   `PinMismatch` naming both device IDs) and checks the handshake
//!   signature (`lan::tls`);
//! - the device is approved on the host (else the host answers 403);
//! - the host's term is not lower than the highest this device has seen
//!   (`LanStateFile::observe_term`, persisted before it counts);
//! - the host's history is the one paired with (another history is
//!   another shop).
//!
//! **Following a planned handover.** A host that handed the shop over
//! says so in its handshake (`handed_over`); the link then reads its
//! signed successor notice (`GET /lan/v1/successor`) and follows it only
//! when it verifies ([`check_notice`]): signed by the **pinned** host's
//! key, about the paired history, from the term the host presented to a
//! higher one, not below the highest term this device has seen, naming
//! another device and an address. The new host's device ID and address
//! are persisted as the pinned host (`state.json`) before the link
//! connects there; the relay's next request goes to it (`Link::target`).
//! A notice that does not verify is refused (`refusal`
//! `bad_successor`) and the link stays with the host it has.
//!
//! States: `connecting` (since start, not reached yet), `connected`,
//! `reconnecting` (was connected, lost it less than [`UNREACHABLE_AFTER`]
//! ago), `unreachable`, `refused` (the host was reached but failed a check;
//! `refusal` says which). A refusal holds until a handshake passes.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::super::address::HostAddress;
use super::super::client::{ClientError, DeviceClient};
use super::super::device_id::DeviceId;
use super::super::handover::Successor;
use super::super::identity::Identity;
use super::super::state::{HistoryId, LanStateFile, PinnedHost, StateError};
use super::super::tls::{ConnectError, ServerTrust};

/// How often a connected link checks the host again.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);
/// How often a link that is not connected tries again.
pub const RETRY_EVERY: Duration = Duration::from_millis(500);
/// How often a link whose host was refused looks again (a host may be
/// fixed, a device approved again after deletion and pairing).
pub const REFUSED_RETRY_EVERY: Duration = Duration::from_secs(2);
/// A link lost for this long is `unreachable` rather than `reconnecting`.
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(10);

/// Where the link stands.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Connecting,
    Connected,
    Reconnecting,
    Unreachable,
    Refused,
}

/// Why a reachable host was refused.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Another key than the pinned one (a new certificate key, another
    /// device at the address, a man in the middle).
    PinMismatch,
    /// The TLS handshake failed a check other than the key's hash (a bad
    /// handshake signature: the pinned certificate replayed without its
    /// key), or the host refused this device's certificate.
    Handshake,
    /// This device is not approved on the host (pending, revoked, deleted).
    NotApproved,
    /// The host's term is lower than one already seen: an old host.
    StaleTerm,
    /// The host keeps another line of shop data than the one paired with.
    OtherHistory,
    /// The host answered something Kefu does not send.
    Protocol,
    /// The host handed the shop over, but its successor notice does not
    /// verify (another signer, a lower term, another history): not
    /// followed.
    BadSuccessor,
}

/// The link as `GET /api/v1/lan/link` shows it.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    pub role: &'static str,
    pub state: LinkState,
    /// The host's address (where the relay connects).
    pub host: String,
    pub host_device_id: DeviceId,
    pub host_short_id: String,
    /// The host's term at the last handshake that passed.
    pub term: Option<u64>,
    /// The highest term this device has seen (persisted).
    pub highest_term_seen: u64,
    pub refusal: Option<Refusal>,
    /// For people: why the link is not connected (names both device IDs
    /// on a pin mismatch). Never a token or a URL.
    pub message: Option<String>,
    /// Milliseconds since the state last changed.
    pub for_ms: u64,
}

/// What one handshake found.
#[derive(Debug)]
enum Outcome {
    Passed {
        term: u64,
    },
    Down(String),
    Refused(Refusal, String),
    /// The host handed the shop over to a verified successor: follow it.
    Moved(Box<Successor>),
}

/// Where the link connects, and whom it accepts there. Changes only when
/// a verified successor notice is followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub address: HostAddress,
    pub pinned: DeviceId,
    pub history: Option<HistoryId>,
    /// Bumped at each change, so the relay knows to reconnect.
    pub generation: u64,
}

/// Checks a successor notice read from the pinned host (module doc):
/// `presented` is the term the host presented in its handshake.
pub fn check_notice(
    notice: &Successor,
    target: &Target,
    presented: u64,
    highest_seen: u64,
) -> Result<HostAddress, String> {
    notice
        .verify(&target.pinned)
        .map_err(|error| format!("the successor notice is refused: {error}"))?;
    if let Some(paired) = target.history
        && paired != notice.history_id
    {
        return Err(format!(
            "the successor notice is about another shop (history {}, paired with {paired})",
            notice.history_id
        ));
    }
    if notice.old_term != presented || notice.term <= notice.old_term {
        return Err(format!(
            "the successor notice's terms ({} to {}) do not follow the host's term {presented}",
            notice.old_term, notice.term
        ));
    }
    if notice.term < highest_seen {
        return Err(format!(
            "the successor notice's term {} is below term {highest_seen}, already seen",
            notice.term
        ));
    }
    if notice.device_id == target.pinned {
        return Err("the successor notice names the host itself".to_owned());
    }
    notice.address.clone().ok_or_else(|| {
        format!(
            "the shop was handed over to {} without an address: restart this peer with \
             --peer-of the new host's address",
            notice.device_id
        )
    })
}

struct Current {
    state: LinkState,
    since: Instant,
    term: Option<u64>,
    refusal: Option<Refusal>,
    message: Option<String>,
}

/// The link (module doc). Shared by the supervisor, the relay and the
/// status route.
pub struct Link {
    identity: Arc<Identity>,
    target: Mutex<Target>,
    /// The source address of connections to the host, when one is needed
    /// (loopback tests with several addresses).
    local: Option<IpAddr>,
    state_file: Arc<Mutex<LanStateFile>>,
    highest_term: AtomicU64,
    current: Mutex<Current>,
    changed: watch::Sender<LinkState>,
    wake: Notify,
}

impl Link {
    pub fn new(
        identity: Arc<Identity>,
        address: HostAddress,
        local: Option<IpAddr>,
        state_file: LanStateFile,
    ) -> Result<Link, String> {
        let state = state_file.state().clone();
        let Some(host) = state.host.clone() else {
            return Err("this device is not paired with a host: run `kefu-server lan pair --host HOST:PORT` (or --link) first".to_owned());
        };
        Ok(Link {
            identity,
            target: Mutex::new(Target {
                address,
                pinned: host.device_id,
                history: host.history_id,
                generation: 0,
            }),
            local,
            highest_term: AtomicU64::new(state.highest_term_seen),
            state_file: Arc::new(Mutex::new(state_file)),
            current: Mutex::new(Current {
                state: LinkState::Connecting,
                since: Instant::now(),
                term: None,
                refusal: None,
                message: None,
            }),
            changed: watch::channel(LinkState::Connecting).0,
            wake: Notify::new(),
        })
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The device's `state.json`, shared with whatever else in this
    /// process writes it (the copy's loop, `peer::copy`): one in-memory
    /// copy, so that no writer puts back a term another one raised.
    pub fn state_file(&self) -> Arc<Mutex<LanStateFile>> {
        Arc::clone(&self.state_file)
    }

    pub fn address(&self) -> HostAddress {
        self.target.lock().address.clone()
    }

    pub fn pinned(&self) -> DeviceId {
        self.target.lock().pinned
    }

    /// Where the link connects now (the relay reconnects when its
    /// generation changes).
    pub fn target(&self) -> Target {
        self.target.lock().clone()
    }

    pub fn local(&self) -> Option<IpAddr> {
        self.local
    }

    pub fn highest_term_seen(&self) -> u64 {
        self.highest_term.load(Ordering::Acquire)
    }

    pub fn status(&self) -> LinkStatus {
        let target = self.target();
        let current = self.current.lock();
        LinkStatus {
            role: "peer",
            state: current.state,
            host: target.address.to_string(),
            host_device_id: target.pinned,
            host_short_id: target.pinned.short(),
            term: current.term,
            highest_term_seen: self.highest_term_seen(),
            refusal: current.refusal,
            message: current.message.clone(),
            for_ms: u64::try_from(current.since.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    pub fn state(&self) -> LinkState {
        self.current.lock().state
    }

    /// Follows state changes (for the desktop's tray).
    pub fn subscribe(&self) -> watch::Receiver<LinkState> {
        self.changed.subscribe()
    }

    /// Waits until the link is `connected` (true) or `refused`, or for
    /// `wait` at most (false unless connected).
    pub async fn wait_connected(&self, wait: Duration) -> bool {
        let mut changes = self.changed.subscribe();
        let waiting = async {
            loop {
                match *changes.borrow_and_update() {
                    LinkState::Connected => return true,
                    LinkState::Refused => return false,
                    _ => {}
                }
                if changes.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(wait, waiting).await.unwrap_or(false)
    }

    /// Asks the supervisor to check the host now (the relay saw an error,
    /// a higher term, or a tunnel end).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The relay met a refusal it can name itself (a pin mismatch at
    /// connect, a stale term on a response).
    pub fn refuse(&self, refusal: Refusal, message: String) {
        self.set(LinkState::Refused, None, Some(refusal), Some(message));
    }

    fn set(
        &self,
        state: LinkState,
        term: Option<u64>,
        refusal: Option<Refusal>,
        message: Option<String>,
    ) {
        let mut current = self.current.lock();
        if current.state != state {
            current.since = Instant::now();
            match &message {
                Some(message) => {
                    tracing::warn!(from = ?current.state, to = ?state, %message, "LAN link changed")
                }
                None => tracing::info!(from = ?current.state, to = ?state, "LAN link changed"),
            }
        }
        current.state = state;
        if term.is_some() || state != LinkState::Connected {
            current.term = term.or(current.term);
        }
        current.refusal = refusal;
        current.message = message;
        drop(current);
        self.changed.send_replace(state);
    }

    /// Runs until `shutdown`: the handshake now, then on schedule or when
    /// woken (module doc).
    pub async fn supervise(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let outcome = tokio::select! {
                outcome = self.handshake() => outcome,
                () = shutdown.cancelled() => return,
            };
            if let Outcome::Moved(notice) = outcome {
                // Follow at once: the next handshake is with the new host.
                let outcome = match self.follow(*notice).await {
                    Ok(()) => continue,
                    Err(message) => Outcome::Refused(Refusal::BadSuccessor, message),
                };
                self.apply(outcome);
            } else {
                self.apply(outcome);
            }
            let wait = match self.state() {
                LinkState::Connected => CHECK_EVERY,
                LinkState::Refused => REFUSED_RETRY_EVERY,
                _ => RETRY_EVERY,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    fn apply(&self, outcome: Outcome) {
        match outcome {
            Outcome::Passed { term } => self.set(LinkState::Connected, Some(term), None, None),
            Outcome::Refused(refusal, message) => {
                self.set(LinkState::Refused, None, Some(refusal), Some(message));
            }
            Outcome::Moved(notice) => {
                // Only `supervise` follows; here it is news.
                self.set(
                    LinkState::Reconnecting,
                    None,
                    None,
                    Some(format!("the shop moved to {}", notice.device_id)),
                );
            }
            Outcome::Down(message) => {
                let (state, since) = {
                    let current = self.current.lock();
                    (current.state, current.since)
                };
                let next = match state {
                    LinkState::Connected => LinkState::Reconnecting,
                    LinkState::Reconnecting if since.elapsed() < UNREACHABLE_AFTER => {
                        LinkState::Reconnecting
                    }
                    _ => LinkState::Unreachable,
                };
                self.set(next, None, None, Some(message));
            }
        }
    }

    /// Follows a verified successor notice: persists the new host as the
    /// pinned one (and the notice's term as seen), then retargets.
    async fn follow(&self, notice: Successor) -> Result<(), String> {
        let target = self.target();
        let address = check_notice(&notice, &target, notice.old_term, self.highest_term_seen())?;
        let state_file = Arc::clone(&self.state_file);
        let (device, history, term) = (notice.device_id, notice.history_id, notice.term);
        let pinned = address.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut file = state_file.lock();
            file.update(|state| {
                state.host = Some(PinnedHost {
                    address: pinned,
                    device_id: device,
                    history_id: Some(history),
                });
            })?;
            file.observe_term(term)?;
            Ok::<_, StateError>(file.state().highest_term_seen)
        })
        .await
        .map_err(|_| "the state writer panicked".to_owned())?
        .map_err(|error| format!("cannot record the new host: {error}"))?;
        self.highest_term.fetch_max(written, Ordering::AcqRel);
        {
            let mut current = self.target.lock();
            current.address = address.clone();
            current.pinned = device;
            current.history = Some(history);
            current.generation += 1;
        }
        tracing::warn!(
            from = %target.pinned.short(),
            to = %device.short(),
            %address,
            term,
            "LAN link: the shop was handed over; following the new host"
        );
        self.set(
            LinkState::Reconnecting,
            None,
            None,
            Some(format!(
                "the shop moved to {} at {address}; connecting",
                device.short()
            )),
        );
        Ok(())
    }

    /// One relay handshake (module doc).
    async fn handshake(&self) -> Outcome {
        let target = self.target();
        let connected = DeviceClient::connect_from(
            &self.identity,
            ServerTrust::Pinned(target.pinned),
            &target.address,
            self.local,
        )
        .await;
        let mut client = match connected {
            Ok(client) => client,
            Err(error) => return classify(error, target.pinned),
        };
        let hello = match client
            .request(Method::GET, "/lan/v1/hello", None, None)
            .await
        {
            Ok((status, body)) if status.is_success() => body,
            Ok((StatusCode::FORBIDDEN, body)) => {
                return Outcome::Refused(
                    Refusal::NotApproved,
                    body["error"]["message"]
                        .as_str()
                        .unwrap_or("this device is not approved on the host")
                        .to_owned(),
                );
            }
            Ok((status, _)) => {
                return Outcome::Refused(
                    Refusal::Protocol,
                    format!("the host answered the relay handshake with {status}"),
                );
            }
            Err(error) => return classify(error, target.pinned),
        };
        let announced = hello["host_device_id"]
            .as_str()
            .and_then(|id| id.parse::<DeviceId>().ok());
        let term = hello["term"].as_u64();
        let history = hello["history_id"]
            .as_str()
            .and_then(|id| id.parse::<HistoryId>().ok());
        let (Some(announced), Some(term), Some(history)) = (announced, term, history) else {
            return Outcome::Refused(
                Refusal::Protocol,
                "the host's handshake lacks its device ID, term or history".to_owned(),
            );
        };
        if announced != target.pinned {
            return Outcome::Refused(
                Refusal::Protocol,
                format!(
                    "the host says it is {announced} but its key is {}",
                    target.pinned
                ),
            );
        }
        if hello["handed_over"] == true {
            return self.read_successor(&mut client, &target, term).await;
        }
        if let Some(paired) = target.history
            && paired != history
        {
            return Outcome::Refused(
                Refusal::OtherHistory,
                format!(
                    "the host keeps another shop's data (history {history}, paired with {paired}); pair again if the shop was set up anew"
                ),
            );
        }
        match self.observe_term(term).await {
            Ok(()) => Outcome::Passed { term },
            Err(StateError::StaleTerm {
                presented,
                highest_seen,
            }) => Outcome::Refused(
                Refusal::StaleTerm,
                format!(
                    "the host is at term {presented}, but this device has seen term {highest_seen}: it is an old host, refused"
                ),
            ),
            Err(error) => Outcome::Down(format!("cannot record the host's term: {error}")),
        }
    }

    /// The notice of a host that handed the shop over (module doc).
    async fn read_successor(
        &self,
        client: &mut DeviceClient,
        target: &Target,
        presented: u64,
    ) -> Outcome {
        let notice = match client
            .request(Method::GET, "/lan/v1/successor", None, None)
            .await
        {
            Ok((status, body)) if status.is_success() => body,
            Ok((status, _)) => {
                return Outcome::Refused(
                    Refusal::Protocol,
                    format!("the host handed the shop over but answered {status} for its notice"),
                );
            }
            Err(error) => return classify(error, target.pinned),
        };
        let Ok(notice) = serde_json::from_value::<Successor>(notice) else {
            return Outcome::Refused(
                Refusal::BadSuccessor,
                "the host's successor notice is malformed".to_owned(),
            );
        };
        match check_notice(&notice, target, presented, self.highest_term_seen()) {
            Ok(_) => Outcome::Moved(Box::new(notice)),
            Err(message) => Outcome::Refused(Refusal::BadSuccessor, message),
        }
    }

    /// Checks `term` against the highest seen, persisting a higher one
    /// before it counts.
    async fn observe_term(&self, term: u64) -> Result<(), StateError> {
        let seen = self.highest_term_seen();
        if term < seen {
            return Err(StateError::StaleTerm {
                presented: term,
                highest_seen: seen,
            });
        }
        if term == seen {
            return Ok(());
        }
        let state_file = Arc::clone(&self.state_file);
        let address = self.address();
        let written = tokio::task::spawn_blocking(move || {
            let mut file = state_file.lock();
            file.observe_term(term)?;
            // The last address that worked is where to look next time.
            if file
                .state()
                .host
                .as_ref()
                .is_some_and(|host| host.address != address)
            {
                file.update(|state| {
                    if let Some(host) = state.host.as_mut() {
                        host.address = address;
                    }
                })?;
            }
            Ok::<_, StateError>(file.state().highest_term_seen)
        })
        .await
        .map_err(|_| StateError::Invalid("the state writer panicked"))??;
        self.highest_term.fetch_max(written, Ordering::AcqRel);
        Ok(())
    }
}

fn classify(error: ClientError, pinned: DeviceId) -> Outcome {
    match error {
        ClientError::Connect(ConnectError::PinMismatch(mismatch)) => {
            Outcome::Refused(Refusal::PinMismatch, mismatch.to_string())
        }
        ClientError::Connect(ConnectError::Handshake(io))
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
            Outcome::Refused(
                Refusal::Handshake,
                format!(
                    "the TLS handshake with the host failed a check ({io}): it did not prove it holds the key of device {pinned}; someone may be impersonating it"
                ),
            )
        }
        ClientError::Refused { status, message } if status == StatusCode::FORBIDDEN => {
            Outcome::Refused(Refusal::NotApproved, message)
        }
        other => Outcome::Down(format!("the host is unreachable: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lan::state::PinnedHost;

    fn link() -> (tempfile::TempDir, Link) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (identity, _) = Identity::load_or_create(dir.path(), &[]).expect("identity");
        let mut state = LanStateFile::open(dir.path()).expect("state");
        let address: HostAddress = "127.0.0.2:5339".parse().expect("address");
        state
            .become_peer(PinnedHost {
                address: address.clone(),
                device_id: DeviceId::from_bytes([9; 32]),
                history_id: None,
            })
            .expect("pin");
        let link = Link::new(Arc::new(identity), address, None, state).expect("link");
        (dir, link)
    }

    #[test]
    fn states_follow_what_the_handshakes_found() {
        let (_dir, link) = link();
        assert_eq!(link.state(), LinkState::Connecting);
        // Never reached since start: unreachable, not reconnecting.
        link.apply(Outcome::Down("refused".into()));
        assert_eq!(link.state(), LinkState::Unreachable);
        link.apply(Outcome::Passed { term: 3 });
        let status = link.status();
        assert_eq!(status.state, LinkState::Connected);
        assert_eq!(status.term, Some(3));
        assert_eq!(status.message, None);
        // Lost after being connected: reconnecting, with the reason.
        link.apply(Outcome::Down("reset".into()));
        assert_eq!(link.state(), LinkState::Reconnecting);
        assert_eq!(link.status().message.as_deref(), Some("reset"));
        link.apply(Outcome::Down("reset".into()));
        assert_eq!(link.state(), LinkState::Reconnecting);
        // A refusal holds its reason until a handshake passes.
        link.apply(Outcome::Refused(Refusal::PinMismatch, "other key".into()));
        assert_eq!(link.status().refusal, Some(Refusal::PinMismatch));
        link.apply(Outcome::Passed { term: 4 });
        assert_eq!(link.status().refusal, None);
        assert_eq!(link.status().term, Some(4));
    }

    #[tokio::test]
    async fn terms_are_persisted_before_they_count_and_never_go_down() {
        let (dir, link) = link();
        link.observe_term(5).await.expect("higher");
        assert_eq!(link.highest_term_seen(), 5);
        let on_disk = LanStateFile::open(dir.path()).expect("state");
        assert_eq!(on_disk.state().highest_term_seen, 5);
        link.observe_term(5).await.expect("equal");
        assert!(matches!(
            link.observe_term(4).await,
            Err(StateError::StaleTerm {
                presented: 4,
                highest_seen: 5
            })
        ));
        assert_eq!(link.highest_term_seen(), 5);
    }

    /// An old host's identity, its notice about `successor`, and the
    /// link's target (pinning the old host, paired with `history`).
    fn notice_setup() -> (tempfile::TempDir, Identity, Identity, Target) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, _) = Identity::load_or_create(&dir.path().join("old"), &[]).expect("identity");
        let (new, _) = Identity::load_or_create(&dir.path().join("new"), &[]).expect("identity");
        let target = Target {
            address: "127.0.0.2:5339".parse().expect("address"),
            pinned: old.device_id(),
            history: Some(HistoryId::random()),
            generation: 0,
        };
        (dir, old, new, target)
    }

    fn sign(
        by: &Identity,
        target: &Target,
        old_term: u64,
        term: u64,
        to: DeviceId,
        address: Option<&str>,
    ) -> Successor {
        Successor::sign(
            by,
            target.history.expect("history"),
            old_term,
            term,
            to,
            address.map(|a| a.parse().expect("address")),
        )
        .expect("sign")
    }

    #[test]
    fn a_successor_notice_is_followed_only_when_the_pinned_host_signed_it_for_this_shop() {
        let (_dir, old, new, target) = notice_setup();
        let to = new.device_id();
        let good = sign(&old, &target, 4, 5, to, Some("127.0.0.3:5339"));
        assert_eq!(
            check_notice(&good, &target, 4, 4)
                .expect("verifies")
                .to_string(),
            "127.0.0.3:5339"
        );
        // An impostor: the new device signing its own promotion.
        let impostor = sign(&new, &target, 4, 5, to, Some("127.0.0.3:5339"));
        assert!(check_notice(&impostor, &target, 4, 4).is_err());
        // Tampered: another address under the old host's signature.
        let mut moved = good.clone();
        moved.address = Some("10.0.0.9:5339".parse().expect("address"));
        assert!(check_notice(&moved, &target, 4, 4).is_err());
        // Another shop's history.
        let mut elsewhere = target.clone();
        elsewhere.history = Some(HistoryId::random());
        let other_shop = sign(&old, &elsewhere, 4, 5, to, Some("127.0.0.3:5339"));
        assert!(check_notice(&other_shop, &target, 4, 4).is_err());
        // Terms: from another term than the host presented, not upwards,
        // or below what this device has seen.
        assert!(check_notice(&good, &target, 3, 4).is_err());
        let backwards = sign(&old, &target, 4, 4, to, Some("127.0.0.3:5339"));
        assert!(check_notice(&backwards, &target, 4, 4).is_err());
        assert!(check_notice(&good, &target, 4, 6).is_err());
        // To the host itself, or without an address: nothing to follow.
        let itself = sign(&old, &target, 4, 5, old.device_id(), Some("127.0.0.3:5339"));
        assert!(check_notice(&itself, &target, 4, 4).is_err());
        let nowhere = sign(&old, &target, 4, 5, to, None);
        assert!(check_notice(&nowhere, &target, 4, 4).is_err());
    }

    #[tokio::test]
    async fn following_a_notice_pins_the_new_host_durably_and_a_bad_one_changes_nothing() {
        let (keys, old, new, target) = notice_setup();
        let dir = keys.path().join("peer");
        let (identity, _) = Identity::load_or_create(&dir, &[]).expect("identity");
        let mut state = LanStateFile::open(&dir).expect("state");
        state
            .become_peer(PinnedHost {
                address: target.address.clone(),
                device_id: old.device_id(),
                history_id: target.history,
            })
            .expect("pin");
        let link =
            Link::new(Arc::new(identity), target.address.clone(), None, state).expect("link");
        link.observe_term(4).await.expect("term");
        let before = link.target();
        let impostor = sign(&new, &target, 4, 5, new.device_id(), Some("127.0.0.3:5339"));
        assert!(link.follow(impostor).await.is_err());
        assert_eq!(link.target(), before);
        let on_disk = LanStateFile::open(&dir).expect("state");
        assert_eq!(
            on_disk.state().host.as_ref().expect("host").device_id,
            old.device_id()
        );

        let good = sign(&old, &target, 4, 5, new.device_id(), Some("127.0.0.3:5339"));
        link.follow(good).await.expect("followed");
        let after = link.target();
        assert_eq!(after.pinned, new.device_id());
        assert_eq!(after.address.to_string(), "127.0.0.3:5339");
        assert_eq!(after.generation, before.generation + 1);
        assert_eq!(link.highest_term_seen(), 5);
        let on_disk = LanStateFile::open(&dir).expect("state");
        let host = on_disk.state().host.clone().expect("host");
        assert_eq!(host.device_id, new.device_id());
        assert_eq!(host.address.to_string(), "127.0.0.3:5339");
        assert_eq!(host.history_id, target.history);
        assert_eq!(on_disk.state().highest_term_seen, 5);
    }

    #[tokio::test]
    async fn waiting_for_the_link_ends_on_connected_refused_or_time() {
        let (_dir, link) = link();
        assert!(!link.wait_connected(Duration::from_millis(20)).await);
        link.apply(Outcome::Passed { term: 1 });
        assert!(link.wait_connected(Duration::from_millis(20)).await);
        link.refuse(Refusal::StaleTerm, "old".into());
        assert!(!link.wait_connected(Duration::from_secs(5)).await);
    }
}
