//! `kefu-server lan takeover`: a standby becomes the shop's host after the
//! host vanished (docs/LAN.md, "Replication and fencing"). No automatic
//! election: with two desktops there is no majority, so a person decides.
//!
//! On a stopped standby (no `lan standby`, no server on its data dir):
//!
//! 1. the copy's log is opened (which fails while `lan standby` holds it)
//!    and its last sequence read; with `lan/replica.json` (what the host
//!    had when last heard) that says **how far behind** the copy was;
//! 2. this device's own solo data, if any, is moved aside to
//!    `DATA_DIR/before-takeover-<UTC time>/` (kept), and the copy is moved
//!    into place;
//! 3. `lan/takeover.json` records the old host (address, device ID);
//! 4. the state becomes host of the old host's history in term `highest
//!    seen + 1`, in one durable write (`LanStateFile::take_over`).
//!
//! **Resumable.** `lan/takeover.json` is written first, with the fork
//! point and [`Pending`] (how far the steps got), and rewritten as each
//! step ends; a takeover interrupted anywhere (a crash, a power cut) is
//! finished by running `lan takeover` again, which goes on from the step
//! recorded and never opens the copy twice (the fork point was read
//! before anything moved). Until it is finished, `serve` and `lan
//! standby` refuse the data dir ([`refuse_unfinished`]): the data dir may
//! hold half of the copy and half of this device's own data.
//!
//! Then `serve --lan-bind` serves the shop (its start opens the next term,
//! as every start as host does) and, while `takeover.json` says the old
//! host was not fenced yet, [`spawn_fencer`] keeps telling the old host's
//! address the new term (`POST /lan/v1/fence`) until it answers: the old
//! host then demotes and closes its log for good.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::DeviceClient;
use super::fork::{ForkPoint, Reconciled};
use super::fs::{self as lanfs, Visibility};
use super::identity::{Identity, LAN_DIR};
use super::replication::replica_dir;
use super::standby::{open_copy, read_progress};
use super::state::{HistoryId, LanStateFile, PinnedHost, Role};
use super::tls::ServerTrust;

/// The record in `DATA_DIR/lan/`.
pub const TAKEOVER_FILE: &str = "takeover.json";
/// How often the new host tries the old host's address until it answers.
pub const FENCE_RETRY: Duration = Duration::from_secs(1);

/// What `lan/takeover.json` holds.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TakenOver {
    pub old_host: PinnedHost,
    /// The term `lan takeover` wrote.
    pub term: u64,
    pub at_ms: i64,
    /// The copy's last log sequence, and the host's when last heard.
    pub applied_seq: u64,
    pub host_seq: u64,
    pub last_contact_ms: i64,
    /// When the old host acknowledged the new term (it demoted).
    #[serde(default)]
    pub fenced_at_ms: Option<i64>,
    /// The copy's heads when it was taken over: where the old host's
    /// writes stop being part of this history (`lan::fork`).
    #[serde(default)]
    pub fork: Option<ForkPoint>,
    /// When the old host's writes past the fork were re-sent here.
    #[serde(default)]
    pub reconciled: Option<Reconciled>,
    /// The history taken over (written at the first step, for a resumed
    /// takeover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_id: Option<HistoryId>,
    /// Where this device's own data goes (`before-takeover-<UTC time>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aside: Option<String>,
    /// Set while the takeover is not finished: the step it is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// The step an unfinished takeover is at (module doc, "Resumable").
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    /// This device's own data is being moved aside (every entry still in
    /// the data dir is its own).
    MovingAside,
    /// Its own data is aside; the copy is being moved into place (every
    /// entry still in `replica/` goes in), then the term is written.
    MovingIn,
}

/// The data dir's entries a takeover moves: its own aside, the copy's in.
fn store_entries() -> [String; 5] {
    [
        crate::store::db::FILE_NAME.to_owned(),
        format!("{}-wal", crate::store::db::FILE_NAME),
        format!("{}-shm", crate::store::db::FILE_NAME),
        crate::LOG_DIR.to_owned(),
        crate::attachments::DIR.to_owned(),
    ]
}

/// Refuses a data dir whose `lan takeover` was interrupted: it may hold
/// half of the copy and half of this device's own data until `lan
/// takeover` is run again and finishes.
pub fn refuse_unfinished(data_dir: &Path) -> anyhow::Result<()> {
    match read(data_dir) {
        Some(record) if record.pending.is_some() => anyhow::bail!(
            "a takeover of the shop was interrupted on {}: run kefu-server lan takeover --data-dir \
             {} again to finish it, then serve",
            data_dir.display(),
            data_dir.display()
        ),
        _ => Ok(()),
    }
}

fn takeover_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LAN_DIR).join(TAKEOVER_FILE)
}

pub fn read(data_dir: &Path) -> Option<TakenOver> {
    let bytes = std::fs::read(takeover_path(data_dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write(data_dir: &Path, record: &TakenOver) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(record)?;
    lanfs::write_atomic(&takeover_path(data_dir), &bytes, Visibility::Public)?;
    Ok(())
}

/// `lan takeover`.
pub async fn takeover(data_dir: PathBuf) -> anyhow::Result<()> {
    let record = tokio::task::spawn_blocking(move || take_over(&data_dir, false)).await??;
    let behind = record.host_seq.saturating_sub(record.applied_seq);
    let heard = (crate::time::now_ms() - record.last_contact_ms).max(0) / 1000;
    println!("took over the shop in term {}", record.term);
    println!(
        "behind: {behind} log entries at least, when the host was last heard ({heard} s ago; \
         copy at sequence {}, host at {})",
        record.applied_seq, record.host_seq
    );
    eprintln!(
        "What the old host wrote after it was last heard is not here either. Start serving with kefu-server serve \
         --lan-bind ADDRESS; the old host is told the new term as soon as it is reachable, and \
         then writes nothing more."
    );
    Ok(())
}

/// A standby's planned takeover, after the old host granted it
/// (`lan::handover`): the old host demoted before granting, so it is
/// recorded as fenced and no fencer runs.
pub fn take_over_granted(
    data_dir: &Path,
    granted: &super::handover::Successor,
) -> anyhow::Result<TakenOver> {
    let record = take_over(data_dir, true)?;
    if record.term != granted.term {
        tracing::warn!(
            granted = granted.term,
            written = record.term,
            "LAN handover: wrote a higher term than the one granted"
        );
    }
    Ok(record)
}

/// Records that the old host's writes past the fork were re-sent here
/// (`lan::fork::run`).
pub fn record_reconciled(data_dir: &Path, done: Reconciled) -> anyhow::Result<()> {
    let mut record = read(data_dir).context("no takeover record")?;
    record.reconciled = Some(done);
    write(data_dir, &record)
}

/// `lan takeover`'s steps (module doc), resumed from the step recorded
/// when an earlier run was interrupted; also the peer's "take over"
/// (`lan::peer::copy`): the copy becomes the shop in term `highest seen +
/// 1`. `granted`: a planned handover's grant (the old host demoted before
/// granting and wrote nothing past the copy's end: it is recorded as
/// fenced and reconciled from the first write on, so a resumed takeover
/// keeps that).
pub fn take_over(data_dir: &Path, granted: bool) -> anyhow::Result<TakenOver> {
    if crate::ops::runtime::server_running(data_dir)? {
        anyhow::bail!(
            "a server is running on {}: stop it first (the peer), then take over",
            data_dir.display()
        );
    }
    let mut state = LanStateFile::open(data_dir)?;
    let mut record = match read(data_dir).filter(|record| record.pending.is_some()) {
        Some(record) => {
            tracing::warn!(step = ?record.pending, "LAN: finishing an interrupted takeover");
            eprintln!("finishing the takeover that was interrupted");
            record
        }
        None => {
            let record = first_step(data_dir, &state, granted)?;
            crate::fault::crash_point("takeover.recorded");
            record
        }
    };
    let replica = replica_dir(data_dir);
    if record.pending == Some(Pending::MovingAside) {
        let aside = data_dir.join(
            record
                .aside
                .as_deref()
                .context("no aside directory recorded")?,
        );
        for name in store_entries() {
            let path = data_dir.join(&name);
            if path.exists() {
                std::fs::create_dir_all(&aside)?;
                std::fs::rename(&path, aside.join(&name))
                    .with_context(|| format!("moving {} aside", path.display()))?;
                crate::fault::crash_point("takeover.moving_aside");
            }
        }
        crate::ops::manifest::sync_dir(data_dir)?;
        if aside.exists() {
            crate::ops::manifest::sync_dir(&aside)?;
        }
        record.pending = Some(Pending::MovingIn);
        write(data_dir, &record)?;
    }
    if record.pending == Some(Pending::MovingIn) {
        for name in store_entries() {
            let path = replica.join(&name);
            if path.exists() {
                let target = data_dir.join(&name);
                if target.exists() {
                    anyhow::bail!(
                        "{} is in the way of the copy's {name}: move it out of the data dir, then \
                         run lan takeover again",
                        target.display()
                    );
                }
                std::fs::rename(&path, &target)
                    .with_context(|| format!("moving the copy's {name} into place"))?;
                crate::fault::crash_point("takeover.moving_in");
            }
        }
        crate::ops::manifest::sync_dir(data_dir)?;
        let _ = std::fs::remove_dir_all(&replica);
        crate::fault::crash_point("takeover.copy_in_place");
    }
    let history = record
        .history_id
        .or(state.state().host.as_ref().and_then(|host| host.history_id))
        .context("the takeover record does not say which history it is")?;
    // A run interrupted after the term's write finds this device the host
    // of that history already (nothing else makes it one: `serve` refuses
    // an unfinished takeover): that term is the takeover's.
    record.term = if state.state().role == Role::Host && state.state().history_id == history {
        state.state().term
    } else {
        state.take_over(history)?
    };
    crate::fault::crash_point("takeover.term_written");
    record.pending = None;
    write(data_dir, &record)?;
    tracing::info!(
        term = record.term,
        applied_seq = record.applied_seq,
        "LAN: took the shop over"
    );
    Ok(record)
}

/// The first step of a takeover: checks this device can take over, reads
/// the copy's last sequence and heads (the fork point), and records all of
/// it durably before anything moves.
fn first_step(data_dir: &Path, state: &LanStateFile, granted: bool) -> anyhow::Result<TakenOver> {
    let old_host = state
        .state()
        .host
        .clone()
        .context("this device is not a peer of a host: there is nothing to take over")?;
    let replica = replica_dir(data_dir);
    let progress = read_progress(data_dir)
        .filter(|_| replica.join(crate::LOG_DIR).is_dir())
        .context("this device keeps no copy of the shop (kefu-server lan standby)")?;
    let (applied_seq, heads) = {
        let db = open_copy(&replica)
            .context("is `kefu-server lan standby` still running? stop it first")?;
        (db.latest_sequence_number(), super::fork::heads_of(&db)?)
    };
    let history = progress
        .history_id
        .or(old_host.history_id)
        .context("the copy does not say which history it is")?;
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let now = crate::time::now_ms();
    let record = TakenOver {
        old_host,
        term: 0,
        at_ms: now,
        applied_seq,
        host_seq: progress.host_seq.max(applied_seq),
        last_contact_ms: progress.last_contact_ms,
        fenced_at_ms: granted.then_some(now),
        fork: Some(ForkPoint {
            seq: applied_seq,
            heads,
        }),
        // The old host closed its log before granting: it wrote nothing
        // past the copy's end, there is nothing to reconcile.
        reconciled: granted.then(|| Reconciled {
            at_ms: now,
            ..Reconciled::default()
        }),
        history_id: Some(history),
        aside: Some(format!("before-takeover-{stamp}")),
        pending: Some(Pending::MovingAside),
    };
    write(data_dir, &record)?;
    Ok(record)
}

/// On a host that took the shop over and has not fenced the old host yet:
/// tells the old host `term` (and where this host serves, `address`, for
/// the successor notice it then gives its clients) every [`FENCE_RETRY`]
/// until it answers.
pub fn spawn_fencer(data_dir: PathBuf, term: u64, address: Option<super::HostAddress>) {
    let Some(record) = read(&data_dir) else {
        return;
    };
    if record.fenced_at_ms.is_some() {
        return;
    }
    tokio::spawn(async move {
        let identity = match Identity::open(&data_dir) {
            Ok((identity, _)) => identity,
            Err(error) => {
                tracing::warn!(%error, "LAN fencer: no identity");
                return;
            }
        };
        let old = record.old_host.clone();
        loop {
            let attempt = async {
                let mut client = DeviceClient::connect(
                    &identity,
                    ServerTrust::Pinned(old.device_id),
                    &old.address,
                )
                .await?;
                let (status, body) = client
                    .request(
                        Method::POST,
                        "/lan/v1/fence",
                        Some(&json!({"term": term, "address": address.as_ref().map(ToString::to_string)})),
                        None,
                    )
                    .await?;
                anyhow::Ok((status, body))
            };
            match attempt.await {
                Ok((status, _)) if status.is_success() => {
                    tracing::warn!(old_host = %old.device_id.short(), term, "LAN: the old host demoted");
                    let mut done = record.clone();
                    done.fenced_at_ms = Some(crate::time::now_ms());
                    let dir = data_dir.clone();
                    let _ = tokio::task::spawn_blocking(move || write(&dir, &done)).await;
                    return;
                }
                Ok((status, body)) => {
                    tracing::warn!(%status, %body, "LAN fencer: the old host refused the new term");
                }
                Err(error) => {
                    tracing::debug!(error = %format!("{error:#}"), "LAN fencer: old host not reached");
                }
            }
            tokio::time::sleep(FENCE_RETRY).await;
        }
    });
}
