//! The persisted LAN state, `data_dir/lan/state.json`: this device's role,
//! its history and term, the host it is pinned to, the shop's name.
//!
//! **Terms** (groundwork for host handover, issue 18). `term` is a
//! monotonic u64 a host writes durably before its first write as host
//! ([`LanStateFile::bump_term`]) and carries in mDNS, the relay handshake
//! and the WebSocket `welcome`. Every device keeps the highest term it has
//! seen and refuses a lower one ([`LanStateFile::observe_term`]), so an old
//! host that comes back after another took over is recognised as stale.
//! `history_id` names the line of data the terms count in: a host promoted
//! with an empty store starts a new history.
//!
//! **Durability.** Every change goes through one atomic, fsynced write
//! (`lan::fs::write_atomic`: temporary file, fsync, rename, fsync of the
//! directory), and the in-memory copy changes only after that write
//! succeeded, so memory never runs ahead of disk, and after a crash at any
//! instant the file holds either the state before the change or after it,
//! never a mix (a kill -9 test, tests/tests/it/lan_state.rs, checks that).
//!
//! One process writes it (the server); inside the process, share a
//! `LanStateFile` behind a mutex and call it from blocking code
//! (`spawn_blocking`): each change is an fsync.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::address::HostAddress;
use super::device_id::DeviceId;
use super::fs::{self as lanfs, Visibility};
use super::identity::LAN_DIR;
use super::shop_name::ShopName;

const STATE_FILE: &str = "state.json";
const STATE_VERSION: u32 = 1;
const MAX_STATE_BYTES: u64 = 64 * 1024;

/// What this device is in the shop.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Loopback only, as Kefu was before LAN hosting (the default).
    #[default]
    Solo,
    /// Serves the shop to its peers on the LAN.
    Host,
    /// Relays to a pinned host; keeps no shop data.
    Peer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Solo => "solo",
            Role::Host => "host",
            Role::Peer => "peer",
        })
    }
}

/// A random 128-bit name for a line of shop data, 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistoryId([u8; 16]);

impl HistoryId {
    pub fn random() -> HistoryId {
        HistoryId(rand::random())
    }
}

impl fmt::Display for HistoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for HistoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HistoryId({self})")
    }
}

/// Why a text is not a history ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a history ID is 32 hexadecimal digits")]
pub struct HistoryIdError;

impl FromStr for HistoryId {
    type Err = HistoryIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 32 {
            return Err(HistoryIdError);
        }
        let bytes = hex::decode(text).map_err(|_| HistoryIdError)?;
        bytes.try_into().map(HistoryId).map_err(|_| HistoryIdError)
    }
}

impl Serialize for HistoryId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HistoryId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The host a peer trusts: where it was found and which key it has.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PinnedHost {
    /// Where to connect (the last address that worked).
    pub address: HostAddress,
    /// Whom to accept there.
    pub device_id: DeviceId,
    /// The host's history when paired; the relay handshake refuses a host
    /// with another one (until issue 18 defines handover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_id: Option<HistoryId>,
}

/// The contents of `state.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LanState {
    /// The file format; a newer one is refused, not misread.
    pub version: u32,
    pub role: Role,
    pub history_id: HistoryId,
    /// This device's term as host (0: never hosted).
    pub term: u64,
    /// The highest term this device has seen, its own included.
    pub highest_term_seen: u64,
    /// Set exactly when `role` is `peer`.
    pub host: Option<PinnedHost>,
    pub shop_name: Option<ShopName>,
    /// Set when this device hosted and learnt that another device took
    /// the shop over in a term at least as high as its own
    /// ([`LanStateFile::demote`]): it never hosts this history again
    /// (`lan::host` refuses to start), it may only join as a peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<Superseded>,
}

/// Who took the shop over from this device, and in which term.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Superseded {
    pub term: u64,
    pub device_id: DeviceId,
    /// Marked by `kefu-server restore` on a restored backup (`lan::restored`):
    /// such a copy does not even serve the new host's reconciliation.
    /// Otherwise (fenced or handed over here) a restart serves it
    /// (`lan::host`, "retired").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restored: bool,
}

impl LanState {
    fn new() -> LanState {
        LanState {
            version: STATE_VERSION,
            role: Role::Solo,
            history_id: HistoryId::random(),
            term: 0,
            highest_term_seen: 0,
            host: None,
            shop_name: None,
            superseded_by: None,
        }
    }

    /// The rules every stored state keeps.
    fn check(&self) -> Result<(), &'static str> {
        if self.version != STATE_VERSION {
            return Err("unknown version");
        }
        if self.term > self.highest_term_seen {
            return Err("term is above highest_term_seen");
        }
        if (self.role == Role::Peer) != self.host.is_some() {
            return Err("a peer, and only a peer, has a pinned host");
        }
        Ok(())
    }
}

/// Why the state could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is damaged ({reason}); fix or remove it (removing it makes this device solo again)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} was written by a newer Kefu (format {version}); upgrade this one")]
    NewerVersion { path: PathBuf, version: u32 },
    /// A term below the highest one this device has seen: an old host.
    #[error("term {presented} is older than term {highest_seen}, already seen: refused")]
    StaleTerm { presented: u64, highest_seen: u64 },
    #[error("the term cannot go higher")]
    TermExhausted,
    /// A change that would break a rule of [`LanState`]; nothing was written.
    #[error("refused change to the LAN state: {0}")]
    Invalid(&'static str),
}

/// `state.json` and its current contents.
#[derive(Debug)]
pub struct LanStateFile {
    path: PathBuf,
    state: LanState,
}

impl LanStateFile {
    /// Reads `data_dir/lan/state.json`, or creates it (solo, a new history,
    /// term 0) if there is none.
    pub fn open(data_dir: &Path) -> Result<LanStateFile, StateError> {
        let dir = data_dir.join(LAN_DIR);
        lanfs::create_private_dir(&dir).map_err(io("create", &dir))?;
        lanfs::remove_stale_temporaries(&dir);
        let path = dir.join(STATE_FILE);
        match lanfs::read_bounded(&path, MAX_STATE_BYTES) {
            Ok(bytes) => {
                let state = parse(&path, &bytes)?;
                Ok(LanStateFile { path, state })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let state = LanState::new();
                write(&path, &state)?;
                Ok(LanStateFile { path, state })
            }
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                Err(StateError::Corrupt {
                    path,
                    reason: error.to_string(),
                })
            }
            Err(error) => Err(io("read", &path)(error)),
        }
    }

    pub fn state(&self) -> &LanState {
        &self.state
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `change` to a copy, checks the rules, writes it durably, and
    /// only then makes it the current state. On any error nothing changed,
    /// on disk or in memory. A change to `term` or `highest_term_seen` that
    /// lowers either is refused: use the term methods.
    pub fn update(&mut self, change: impl FnOnce(&mut LanState)) -> Result<(), StateError> {
        let mut next = self.state.clone();
        change(&mut next);
        if next.highest_term_seen < self.state.highest_term_seen || next.term < self.state.term {
            return Err(StateError::Invalid("terms only go up"));
        }
        self.commit(next)
    }

    /// Starts a new term as host: `term = max(term, highest seen) + 1`,
    /// written (fsynced) before returning it. Call it before the first
    /// write a host makes in its term.
    pub fn bump_term(&mut self) -> Result<u64, StateError> {
        let next_term = self
            .state
            .term
            .max(self.state.highest_term_seen)
            .checked_add(1)
            .ok_or(StateError::TermExhausted)?;
        let mut next = self.state.clone();
        next.term = next_term;
        next.highest_term_seen = next_term;
        self.commit(next)?;
        Ok(next_term)
    }

    /// Records a term another device presented. Lower than the highest seen:
    /// [`StateError::StaleTerm`], nothing changes. Higher: persisted before
    /// returning `true`. Equal: `false`, no write.
    pub fn observe_term(&mut self, presented: u64) -> Result<bool, StateError> {
        let highest_seen = self.state.highest_term_seen;
        if presented < highest_seen {
            return Err(StateError::StaleTerm {
                presented,
                highest_seen,
            });
        }
        if presented == highest_seen {
            return Ok(false);
        }
        let mut next = self.state.clone();
        next.highest_term_seen = presented;
        self.commit(next)?;
        Ok(true)
    }

    /// Becomes the shop's host in a new term, in one write. With
    /// `new_history` (a host promoted with an empty store) the history
    /// starts afresh. Returns the new term.
    pub fn promote_to_host(&mut self, new_history: bool) -> Result<u64, StateError> {
        let history = if new_history {
            HistoryId::random()
        } else {
            self.state.history_id
        };
        self.become_host(history, false)
    }

    /// Host of `history` in term `max(term, highest seen) + 1`, in one
    /// durable write; `end_fence` clears `superseded_by` (a takeover only:
    /// a superseded host's own start never lifts its fence). Returns the
    /// new term.
    fn become_host(&mut self, history: HistoryId, end_fence: bool) -> Result<u64, StateError> {
        let term = self
            .state
            .term
            .max(self.state.highest_term_seen)
            .checked_add(1)
            .ok_or(StateError::TermExhausted)?;
        let mut next = self.state.clone();
        next.role = Role::Host;
        next.host = None;
        next.term = term;
        next.highest_term_seen = term;
        next.history_id = history;
        if end_fence {
            next.superseded_by = None;
        }
        self.commit(next)?;
        Ok(term)
    }

    /// Becomes a peer of `host` (a superseded host that joins the new
    /// one is no longer superseded: it keeps no shop data as a peer).
    pub fn become_peer(&mut self, host: PinnedHost) -> Result<(), StateError> {
        self.update(|state| {
            state.role = Role::Peer;
            state.host = Some(host);
            state.superseded_by = None;
        })
    }

    /// A standby takes the shop over (`lan takeover`): host of `history`
    /// (the old host's, whose copy it kept) in term `max(term, highest
    /// seen) + 1`, in one durable write. Returns the new term.
    pub fn take_over(&mut self, history: HistoryId) -> Result<u64, StateError> {
        self.become_host(history, true)
    }

    /// This host learnt that `by` took the shop over in `term` (at least
    /// its own): records it durably, with the term, before returning;
    /// from then on this device refuses to host (see [`Superseded`]).
    /// Returns false (nothing written) when `term` is below this
    /// device's own term: a stale claim, refused by the caller.
    pub fn demote(&mut self, term: u64, by: DeviceId) -> Result<bool, StateError> {
        if term < self.state.term {
            return Ok(false);
        }
        let mut next = self.state.clone();
        next.highest_term_seen = next.highest_term_seen.max(term);
        next.superseded_by = Some(Superseded {
            term,
            device_id: by,
            restored: false,
        });
        self.commit(next)?;
        Ok(true)
    }

    /// Back to solo: forgets the pinned host; keeps history and terms.
    pub fn become_solo(&mut self) -> Result<(), StateError> {
        self.update(|state| {
            state.role = Role::Solo;
            state.host = None;
        })
    }

    fn commit(&mut self, next: LanState) -> Result<(), StateError> {
        next.check().map_err(StateError::Invalid)?;
        if next == self.state {
            return Ok(());
        }
        write(&self.path, &next)?;
        self.state = next;
        Ok(())
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<LanState, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    // The version first, so a newer format is named as such rather than
    // reported as damaged because of a field this version does not know.
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let version: Version = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if version.version > STATE_VERSION {
        return Err(StateError::NewerVersion {
            path: path.to_path_buf(),
            version: version.version,
        });
    }
    let state: LanState = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    state.check().map_err(|reason| corrupt(reason.to_owned()))?;
    Ok(state)
}

fn write(path: &Path, state: &LanState) -> Result<(), StateError> {
    let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| io("encode", path)(e.into()))?;
    bytes.push(b'\n');
    lanfs::write_atomic(path, &bytes, Visibility::Public).map_err(io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned() -> PinnedHost {
        PinnedHost {
            address: "192.168.1.20:5339".parse().expect("address"),
            device_id: DeviceId::from_bytes([7; 32]),
            history_id: Some(HistoryId([9; 16])),
        }
    }

    fn on_disk(dir: &Path) -> LanState {
        let bytes = std::fs::read(dir.join(LAN_DIR).join(STATE_FILE)).expect("read");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn first_open_writes_a_solo_state_and_reopens_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = LanStateFile::open(dir.path()).expect("open");
        assert_eq!(file.state().role, Role::Solo);
        assert_eq!(file.state().term, 0);
        assert_eq!(on_disk(dir.path()), *file.state());
        let again = LanStateFile::open(dir.path()).expect("reopen");
        assert_eq!(again.state(), file.state());
    }

    #[test]
    fn the_file_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = LanStateFile::open(dir.path()).expect("open");
        file.update(|s| {
            s.history_id = HistoryId([0xab; 16]);
            s.shop_name = Some("小林茶馆".parse().expect("name"));
        })
        .expect("update");
        file.become_peer(pinned()).expect("peer");
        let text = std::fs::read_to_string(file.path()).expect("read");
        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "version": 1,
                "role": "peer",
                "history_id": "ab".repeat(16),
                "term": 0,
                "highest_term_seen": 0,
                "host": {
                    "address": "192.168.1.20:5339",
                    "device_id": DeviceId::from_bytes([7; 32]).to_string(),
                    "history_id": "09".repeat(16),
                },
                "shop_name": "小林茶馆",
            })
        );
    }

    #[test]
    fn bump_term_is_durable_and_monotonic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = LanStateFile::open(dir.path()).expect("open");
        assert_eq!(file.bump_term().expect("bump"), 1);
        assert_eq!(on_disk(dir.path()).term, 1);
        assert_eq!(file.bump_term().expect("bump"), 2);
        assert_eq!(on_disk(dir.path()).term, 2);
        // Having seen term 10 elsewhere, the next own term is 11.
        assert!(file.observe_term(10).expect("observe"));
        assert_eq!(file.bump_term().expect("bump"), 11);
        let disk = on_disk(dir.path());
        assert_eq!((disk.term, disk.highest_term_seen), (11, 11));
        let reopened = LanStateFile::open(dir.path()).expect("reopen");
        assert_eq!(reopened.state().term, 11);
    }

    #[test]
    fn observe_term_refuses_lower_and_persists_higher() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = LanStateFile::open(dir.path()).expect("open");
        assert!(file.observe_term(5).expect("higher"));
        assert_eq!(on_disk(dir.path()).highest_term_seen, 5);
        assert!(!file.observe_term(5).expect("equal"));
        let error = file.observe_term(4).expect_err("lower");
        assert!(
            matches!(
                error,
                StateError::StaleTerm {
                    presented: 4,
                    highest_seen: 5
                }
            ),
            "{error}"
        );
        assert_eq!(on_disk(dir.path()).highest_term_seen, 5);
        assert_eq!(file.state().highest_term_seen, 5);
    }

    #[test]
    fn the_term_never_wraps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = LanStateFile::open(dir.path()).expect("open");
        file.observe_term(u64::MAX).expect("observe");
        assert!(matches!(file.bump_term(), Err(StateError::TermExhausted)));
        assert!(matches!(
            file.promote_to_host(false),
            Err(StateError::TermExhausted)
        ));
        assert_eq!(on_disk(dir.path()).term, 0);
    }

    #[test]
    fn roles_and_their_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = LanStateFile::open(dir.path()).expect("open");
        let history = file.state().history_id;
        assert_eq!(file.promote_to_host(false).expect("host"), 1);
        assert_eq!(file.state().role, Role::Host);
        assert_eq!(file.state().history_id, history);
        assert_eq!(file.promote_to_host(true).expect("new history"), 2);
        assert_ne!(file.state().history_id, history);

        file.become_peer(pinned()).expect("peer");
        assert_eq!(on_disk(dir.path()).host, Some(pinned()));
        // A peer without a host, or a solo device with one: refused, and
        // nothing is written.
        let before = on_disk(dir.path());
        assert!(matches!(
            file.update(|s| s.host = None),
            Err(StateError::Invalid(_))
        ));
        assert!(matches!(
            file.update(|s| s.term = 0),
            Err(StateError::Invalid(_))
        ));
        assert_eq!(on_disk(dir.path()), before);
        assert_eq!(*file.state(), before);
        file.become_solo().expect("solo");
        assert_eq!(on_disk(dir.path()).host, None);
        assert_eq!(on_disk(dir.path()).term, 2);
    }

    #[test]
    fn damaged_newer_or_inconsistent_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = LanStateFile::open(dir.path()).expect("open");
        let path = file.path().to_path_buf();
        let good = std::fs::read_to_string(&path).expect("read");

        std::fs::write(&path, &good[..good.len() / 2]).expect("truncate");
        assert!(matches!(
            LanStateFile::open(dir.path()),
            Err(StateError::Corrupt { .. })
        ));

        let newer = good.replace("\"version\": 1", "\"version\": 2");
        std::fs::write(&path, newer).expect("write");
        assert!(matches!(
            LanStateFile::open(dir.path()),
            Err(StateError::NewerVersion { version: 2, .. })
        ));

        let inconsistent = good.replace("\"term\": 0", "\"term\": 3");
        std::fs::write(&path, inconsistent).expect("write");
        let error = LanStateFile::open(dir.path()).expect_err("term > highest");
        assert!(error.to_string().contains("highest_term_seen"), "{error}");

        let unknown = good.replacen('{', "{\"extra\": 1,", 1);
        std::fs::write(&path, unknown).expect("write");
        assert!(matches!(
            LanStateFile::open(dir.path()),
            Err(StateError::Corrupt { .. })
        ));

        std::fs::write(&path, vec![b' '; 70_000]).expect("write");
        assert!(matches!(
            LanStateFile::open(dir.path()),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_old_state() {
        // What a writer killed between "temporary written" and "renamed"
        // leaves: the old file and a temporary with the new (here even
        // half-written) contents. Readers see the old state.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = LanStateFile::open(dir.path()).expect("open");
        file.bump_term().expect("bump");
        let old = file.state().clone();
        let stray = dir
            .path()
            .join(LAN_DIR)
            .join(".state.json.tmp-999-0000000000000000");
        std::fs::write(&stray, b"{\"version\": 1, \"role\": \"ho").expect("write");
        let reopened = LanStateFile::open(dir.path()).expect("reopen");
        assert_eq!(*reopened.state(), old);
    }

    #[test]
    fn a_takeover_keeps_the_history_and_writes_the_next_term() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = LanStateFile::open(dir.path()).expect("open");
        file.become_peer(pinned()).expect("peer");
        file.observe_term(4).expect("seen");
        let term = file.take_over(HistoryId([9; 16])).expect("take over");
        assert_eq!(term, 5);
        let stored = on_disk(dir.path());
        assert_eq!(stored.role, Role::Host);
        assert_eq!(stored.term, 5);
        assert_eq!(stored.highest_term_seen, 5);
        assert_eq!(stored.history_id, HistoryId([9; 16]));
        assert_eq!(stored.host, None);
    }

    #[test]
    fn a_demoted_host_records_who_took_over_and_a_lower_term_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = LanStateFile::open(dir.path()).expect("open");
        file.promote_to_host(false).expect("host");
        file.bump_term().expect("term 2");
        let before = on_disk(dir.path());
        let by = DeviceId::from_bytes([3; 32]);
        assert!(!file.demote(1, by).expect("lower"));
        assert_eq!(on_disk(dir.path()), before);
        assert!(file.demote(2, by).expect("equal"));
        let stored = on_disk(dir.path());
        assert_eq!(
            stored.superseded_by,
            Some(Superseded {
                term: 2,
                device_id: by,
                restored: false,
            })
        );
        assert!(file.demote(7, by).expect("higher"));
        assert_eq!(on_disk(dir.path()).highest_term_seen, 7);
        // Joining the new host as a peer clears it.
        file.become_peer(pinned()).expect("peer");
        assert_eq!(on_disk(dir.path()).superseded_by, None);
    }
}
