//! Standby replication, the host's side (issue 18; docs/LAN.md,
//! "Replication and fencing").
//!
//! A paired device that an admin made a **standby** (`PUT
//! /api/v1/lan/devices/{id}/standby`, in `lan_standbys`, migration 0013)
//! and that runs `kefu-server lan standby` (its consent) keeps a copy of
//! the shop. Over the pairing's mutual TLS, on the LAN listener:
//!
//! - `GET /lan/v1/replica/snapshot` — a **full sync**: a consistent backup
//!   made by `ops::backup::online` (SQLite by `VACUUM INTO`, then a RocksDB
//!   checkpoint, then the attachments; without `lan/`, which is this
//!   device's own), streamed as [`frames`] of files, its manifest first.
//! - `GET /lan/v1/replica/tail?after=N&term=T` — the log's **tail**: the
//!   RocksDB write batches after sequence `N`, read from the WAL
//!   (`MessageLog::wal_batches_after`), each with its first sequence.
//!   **The first batch must start at `N + 1`**: RocksDB skips ahead
//!   silently when the WAL that held it is gone, so anything else (or no
//!   batch while the log is ahead of `N`) is answered 409 and the standby
//!   syncs in full again; it never skips. `kefu-log-seq` carries the
//!   host's latest sequence, so the standby knows how far behind it is.
//! - `GET /lan/v1/replica/sqlite` — a fresh SQLite snapshot (`VACUUM
//!   INTO`), which the standby swaps in every few seconds.
//! - `GET /lan/v1/replica/attachment?name=N` — one attachment's file
//!   ([`attachments`]): those uploaded after the full sync.
//! - `POST /lan/v1/fence {"term", "address"?}` — a standby that took the shop over
//!   tells this (old) host its term; a term at least this host's own
//!   demotes it at once (durably, `LanStateFile::demote`) and closes its
//!   message log, so it never writes again in its stale term.
//!
//! Every one of these needs an approved device that is a standby; anything
//! else is 403 and changes nothing. The host keeps each standby's progress
//! in memory ([`Standbys`]) for `GET /api/v1/lan/status`.
//!
//! This file holds the operations; their HTTP doors (and the admin's `PUT
//! …/standby`) are in `replication/routes.rs`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::device_id::DeviceId;
use super::host::{LanHost, LanPeer};
use super::state::HistoryId;
use crate::error::{ApiError, ApiResult};
use crate::ids::AgentId;
use crate::state::AppState;

pub mod attachments;
pub mod routes;

/// The most WAL bytes one tail answer carries (at least one batch).
pub const TAIL_MAX_BYTES: usize = 4 << 20;
/// The header with the host's latest log sequence on a tail answer.
pub const LOG_SEQ_HEADER: &str = "kefu-log-seq";
/// The header with the host's history on replication answers.
pub const HISTORY_HEADER: &str = "kefu-history-id";

/// The framing of replication bodies. Files: for each, a big-endian u16
/// path length, the path (UTF-8, `/`-separated, relative), a u64 size and
/// the bytes; a zero path length ends the stream. Tail: for each batch, a
/// u64 first sequence, a u32 length and RocksDB's batch bytes.
pub mod frames {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// Paths longer than this are refused.
    pub const PATH_MAX: usize = 1024;
    /// A single batch larger than this is refused.
    pub const BATCH_MAX: usize = 256 << 20;

    pub async fn write_file_header(
        out: &mut (impl AsyncWrite + Unpin),
        path: &str,
        size: u64,
    ) -> std::io::Result<()> {
        let length = u16::try_from(path.len())
            .ok()
            .filter(|length| *length > 0 && usize::from(*length) <= PATH_MAX)
            .ok_or_else(|| std::io::Error::other("path too long"))?;
        out.write_u16(length).await?;
        out.write_all(path.as_bytes()).await?;
        out.write_u64(size).await
    }

    pub async fn write_end(out: &mut (impl AsyncWrite + Unpin)) -> std::io::Result<()> {
        out.write_u16(0).await
    }

    /// The next file's path and size; `None` at the end.
    pub async fn read_file_header(
        input: &mut (impl AsyncRead + Unpin),
    ) -> std::io::Result<Option<(String, u64)>> {
        let length = usize::from(input.read_u16().await?);
        if length == 0 {
            return Ok(None);
        }
        if length > PATH_MAX {
            return Err(std::io::Error::other("path too long"));
        }
        let mut path = vec![0; length];
        input.read_exact(&mut path).await?;
        let path = String::from_utf8(path).map_err(std::io::Error::other)?;
        let size = input.read_u64().await?;
        Ok(Some((path, size)))
    }

    pub fn encode_batches(batches: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(batches.iter().map(|(_, b)| b.len() + 12).sum());
        for (seq, data) in batches {
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    /// Splits a tail body into its batches; a truncated or oversized one
    /// is an error.
    pub fn decode_batches(mut body: &[u8]) -> Result<Vec<(u64, &[u8])>, &'static str> {
        let mut batches = Vec::new();
        while !body.is_empty() {
            if body.len() < 12 {
                return Err("truncated batch header");
            }
            let seq = u64::from_be_bytes(body[..8].try_into().map_err(|_| "header")?);
            let length = u32::from_be_bytes(body[8..12].try_into().map_err(|_| "header")?) as usize;
            if length > BATCH_MAX || body.len() < 12 + length {
                return Err("truncated or oversized batch");
            }
            batches.push((seq, &body[12..12 + length]));
            body = &body[12 + length..];
        }
        Ok(batches)
    }
}

/// What the host knows of one standby's progress.
#[derive(Debug, Clone)]
struct Progress {
    /// The sequence the standby had applied at its last request.
    applied: u64,
    /// The latest moment the standby is known to have everything the host
    /// had then: the oldest write it may lack is younger than this.
    caught_up_at: Instant,
    /// (time of a request, the host's latest sequence then), oldest first,
    /// at most [`MARKS`]: a later request whose `applied` reaches a mark's
    /// sequence moves `caught_up_at` to that mark's time.
    marks: VecDeque<(Instant, u64)>,
    /// When it last asked.
    seen_at: Instant,
    full_syncs: u64,
    /// The host's latest sequence when it last answered this standby with
    /// everything it had (0: the last answer was cut at
    /// [`TAIL_MAX_BYTES`]); a request after it means caught up.
    answered_through: u64,
    /// When it last fetched a full snapshot (since this host started).
    last_full_sync: Option<Instant>,
}

/// Request marks kept per standby for its lag in seconds (one per tail
/// request; a standby keeping up is one or two requests behind).
const MARKS: usize = 64;

impl Progress {
    /// A request at `now` with `applied` when the host was at `latest`.
    /// Under steady load a standby never has *everything* at the moment it
    /// asks (the host wrote more during the round trip), so "since it last
    /// had everything" would grow without bound; instead the lag is dated
    /// by the latest earlier request whose host sequence it now has.
    fn caught_up(&mut self, now: Instant, applied: u64, latest: u64) {
        while let Some(&(at, seq)) = self.marks.front() {
            if seq > applied {
                break;
            }
            self.caught_up_at = self.caught_up_at.max(at);
            self.marks.pop_front();
        }
        if applied >= latest {
            self.caught_up_at = now;
            self.marks.clear();
        } else {
            if self.marks.len() == MARKS {
                self.marks.pop_front();
            }
            self.marks.push_back((now, latest));
        }
    }
}

/// The standbys' progress, by device (in memory: a restarted host learns
/// it again at each standby's next request).
#[derive(Default)]
pub struct Standbys {
    progress: Mutex<HashMap<DeviceId, Progress>>,
}

/// One standby as `GET /api/v1/lan/status` shows it.
#[derive(Debug, Serialize)]
pub struct StandbyStatus {
    pub device_id: DeviceId,
    pub name: String,
    /// Whether it asked in the last [`CONNECTED_WITHIN_SECS`] seconds.
    pub connected: bool,
    pub applied_seq: Option<u64>,
    /// Log sequences the host has and the standby had not at its last
    /// request plus what the host wrote since.
    pub lag_seq: Option<u64>,
    /// How old the oldest write the standby may lack is, at most: seconds
    /// since the latest moment it is known to have had everything the host
    /// had then (0 when it has everything now).
    pub lag_seconds: Option<f64>,
    pub full_syncs: u64,
    /// Seconds since its last full sync from this host (`None`: none
    /// since the host started).
    pub last_full_sync_seconds: Option<f64>,
}

/// A standby that has not asked for this long shows as not connected.
pub const CONNECTED_WITHIN_SECS: u64 = 5;

impl Standbys {
    /// A tail request from `device` that has `applied` (durably); returns
    /// whether it is caught up: it has everything the host had at the
    /// request, or at its previous, complete, answer.
    fn record(&self, device: DeviceId, applied: u64, host_latest: u64) -> bool {
        let now = Instant::now();
        let mut progress = self.progress.lock();
        let entry = progress.entry(device).or_insert(Progress {
            applied,
            caught_up_at: now,
            marks: VecDeque::new(),
            seen_at: now,
            full_syncs: 0,
            answered_through: 0,
            last_full_sync: None,
        });
        entry.applied = applied;
        entry.seen_at = now;
        entry.caught_up(now, applied, host_latest);
        applied >= host_latest || (entry.answered_through > 0 && applied >= entry.answered_through)
    }

    /// The tail answer to `device` carried everything through `through`
    /// (0: it was cut short).
    fn answered(&self, device: &DeviceId, through: u64) {
        if let Some(entry) = self.progress.lock().get_mut(device) {
            entry.answered_through = through;
        }
    }

    /// Whether `device` asked in the last [`CONNECTED_WITHIN_SECS`].
    pub fn is_connected(&self, device: &DeviceId) -> bool {
        self.progress
            .lock()
            .get(device)
            .is_some_and(|p| p.seen_at.elapsed().as_secs() < CONNECTED_WITHIN_SECS)
    }

    fn full_sync(&self, device: DeviceId) {
        let now = Instant::now();
        let mut progress = self.progress.lock();
        let entry = progress.entry(device).or_insert(Progress {
            applied: 0,
            caught_up_at: now,
            marks: VecDeque::new(),
            seen_at: now,
            full_syncs: 0,
            answered_through: 0,
            last_full_sync: None,
        });
        entry.full_syncs += 1;
        entry.seen_at = now;
        entry.last_full_sync = Some(now);
    }

    fn status(&self, device: DeviceId, name: String, latest: u64) -> StandbyStatus {
        let progress = self.progress.lock().get(&device).cloned();
        match progress {
            None => StandbyStatus {
                device_id: device,
                name,
                connected: false,
                applied_seq: None,
                lag_seq: None,
                lag_seconds: None,
                full_syncs: 0,
                last_full_sync_seconds: None,
            },
            Some(progress) => {
                let lag_seq = latest.saturating_sub(progress.applied);
                StandbyStatus {
                    device_id: device,
                    name,
                    connected: progress.seen_at.elapsed().as_secs() < CONNECTED_WITHIN_SECS,
                    applied_seq: Some(progress.applied),
                    lag_seq: Some(lag_seq),
                    lag_seconds: Some(if lag_seq == 0 {
                        0.0
                    } else {
                        progress.caught_up_at.elapsed().as_secs_f64()
                    }),
                    full_syncs: progress.full_syncs,
                    last_full_sync_seconds: progress
                        .last_full_sync
                        .map(|at| at.elapsed().as_secs_f64()),
                }
            }
        }
    }
}

/// A replication answer before it is HTTP (`routes` shapes it): the
/// host's history, the bytes, and on a tail the host's latest sequence.
pub struct Replica {
    pub history_id: HistoryId,
    pub body: ReplicaBody,
    /// The host's latest log sequence ([`LOG_SEQ_HEADER`]), on a tail.
    pub latest_seq: Option<u64>,
}

/// The bytes of a [`Replica`].
pub enum ReplicaBody {
    /// Files as [`frames`], written by a task while they are read.
    Files(tokio::io::DuplexStream),
    /// Tail batches as [`frames`], whole.
    Batches(Vec<u8>),
}

pub(crate) fn hosting(state: &AppState) -> ApiResult<&LanHost> {
    state.lan.as_deref().ok_or_else(|| {
        ApiError::Conflict("this server is not a LAN host (start it with --lan-bind)".into())
    })
}

/// Whether an admin made `device` a standby.
pub async fn is_standby(db: &sqlx::SqlitePool, device: &DeviceId) -> ApiResult<bool> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT device_id FROM lan_standbys WHERE device_id = ?")
            .bind(device.to_string())
            .fetch_optional(db)
            .await?;
    Ok(row.is_some())
}

/// The calling device, when it is approved and a standby; 403 otherwise.
async fn standby_device(state: &AppState, host: &LanHost, peer: &LanPeer) -> ApiResult<DeviceId> {
    let key = peer
        .key
        .as_ref()
        .ok_or_else(|| ApiError::forbidden("replication needs a Kefu device certificate"))?;
    if !host.devices.is_approved(&key.device_id) || !is_standby(&state.db, &key.device_id).await? {
        return Err(ApiError::forbidden(
            "this device is not a standby of the host: an admin makes it one (Settings → LAN)",
        ));
    }
    if host.superseded.load(std::sync::atomic::Ordering::Acquire) {
        return Err(ApiError::Conflict(
            "this host was taken over by another device: it serves no replica".into(),
        ));
    }
    Ok(key.device_id)
}

/// A directory for a snapshot, outside the data dir (a backup is refused
/// inside it), removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        Scratch(std::env::temp_dir().join(format!("kefu-replica-{}", ulid::Ulid::new())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Streams `files` (relative to `root`) as [`frames`]; `scratch` lives
/// until the last byte is written.
fn stream_files(root: PathBuf, files: Vec<String>, scratch: Scratch) -> ReplicaBody {
    let (mut writer, reader) = tokio::io::duplex(256 << 10);
    tokio::spawn(async move {
        let _scratch = scratch;
        let result = async {
            for path in files {
                let full = crate::ops::manifest::resolve(&root, &path)
                    .ok_or_else(|| std::io::Error::other(format!("unexpected file {path}")))?;
                let mut file = tokio::fs::File::open(&full).await?;
                let size = file.metadata().await?.len();
                frames::write_file_header(&mut writer, &path, size).await?;
                let mut limited = tokio::io::AsyncReadExt::take(&mut file, size);
                let copied = tokio::io::copy(&mut limited, &mut writer).await?;
                if copied != size {
                    return Err(std::io::Error::other("file changed while sent"));
                }
            }
            frames::write_end(&mut writer).await?;
            writer.shutdown().await
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "replica snapshot stream ended early");
        }
    });
    ReplicaBody::Files(reader)
}

/// `GET /lan/v1/replica/snapshot`: a full sync for a standby (module doc).
pub async fn snapshot(state: &AppState, host: &LanHost, peer: &LanPeer) -> ApiResult<Replica> {
    let device = standby_device(state, host, peer).await?;
    let scratch = Scratch::new();
    let summary = crate::ops::backup::online(state, &scratch.0)
        .await
        .map_err(ApiError::Internal)?;
    let manifest = crate::ops::manifest::Manifest::read(&scratch.0).map_err(ApiError::Internal)?;
    let lan_prefix = format!("{}/", super::identity::LAN_DIR);
    let mut files = vec![crate::ops::manifest::FILE.to_owned()];
    files.extend(
        manifest
            .files
            .iter()
            .map(|entry| entry.path.clone())
            .filter(|path| !path.starts_with(&lan_prefix)),
    );
    host.standbys.full_sync(device);
    tracing::info!(
        device = %device.short(),
        bytes = summary.bytes,
        messages = summary.messages,
        "LAN standby: full sync sent"
    );
    let root = scratch.0.clone();
    Ok(Replica {
        history_id: host.history_id,
        body: stream_files(root, files, scratch),
        latest_seq: None,
    })
}

/// `GET /lan/v1/replica/sqlite`: a fresh SQLite snapshot for a standby.
pub async fn sqlite(state: &AppState, host: &LanHost, peer: &LanPeer) -> ApiResult<Replica> {
    standby_device(state, host, peer).await?;
    let scratch = Scratch::new();
    std::fs::create_dir(&scratch.0).map_err(|e| ApiError::Internal(e.into()))?;
    let target = scratch.0.join(crate::store::db::FILE_NAME);
    let text = target
        .to_str()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("temporary path is not UTF-8")))?
        .to_owned();
    sqlx::query("VACUUM INTO ?")
        .bind(text)
        .execute(&state.db)
        .await?;
    let root = scratch.0.clone();
    Ok(Replica {
        history_id: host.history_id,
        body: stream_files(root, vec![crate::store::db::FILE_NAME.to_owned()], scratch),
        latest_seq: None,
    })
}

/// The longest a tail request waits for the log to move (`wait_ms`).
pub const TAIL_WAIT_MAX: Duration = Duration::from_secs(5);
/// While a tail request waits, it looks this often for what the log's
/// commit hook does not signal: writes that carry no message (the
/// starter's clearing of its markers), a handover asking for this standby,
/// a shutdown.
const TAIL_WAIT_SLICE: Duration = Duration::from_millis(50);

/// `GET /lan/v1/replica/tail`: the log's batches after `after` for a
/// standby that has seen `term` (module doc). A request `after=N` says the
/// standby has everything through `N` durably (`lan::standby`), which the
/// synchronous standby counts on (`lan::sync_standby`). With `wait`, a
/// **long poll**: when the log has nothing after `after`, the answer waits
/// until it has (or `wait`, at most [`TAIL_WAIT_MAX`], passed).
pub async fn tail(
    state: &AppState,
    host: &LanHost,
    peer: &LanPeer,
    after: u64,
    term: u64,
    wait: Duration,
) -> ApiResult<Replica> {
    let device = standby_device(state, host, peer).await?;
    if term > host.term {
        return Err(ApiError::Conflict(format!(
            "the standby has seen term {}, above this host's {}: this host is stale",
            term, host.term
        )));
    }
    let latest = state.log.latest_sequence()?;
    if after > latest {
        return Err(ApiError::Conflict(
            "the standby is ahead of this host's log: sync in full".into(),
        ));
    }
    let caught_up = host.standbys.record(device, after, latest);
    host.sync.standby_at(after, caught_up);
    let latest = if after == latest && !wait.is_zero() {
        wait_for_log(state, host, &device, after, wait.min(TAIL_WAIT_MAX)).await?
    } else {
        latest
    };
    let log_state = state.clone();
    let batches =
        tokio::task::spawn_blocking(move || log_state.log.wal_batches_after(after, TAIL_MAX_BYTES))
            .await
            .map_err(|e| ApiError::Internal(e.into()))??;
    match batches.first() {
        Some((first, _)) if *first != after + 1 => {
            return Err(gap(after, Some(*first)));
        }
        None if after < latest => return Err(gap(after, None)),
        _ => {}
    }
    let bytes: usize = batches.iter().map(|(_, data)| data.len()).sum();
    let complete = bytes < TAIL_MAX_BYTES;
    host.standbys
        .answered(&device, if complete { latest.max(1) } else { 0 });
    Ok(Replica {
        history_id: host.history_id,
        body: ReplicaBody::Batches(frames::encode_batches(&batches)),
        latest_seq: Some(latest),
    })
}

/// A tail's long poll: waits until the log is past `after`, `wait`
/// passed, a handover waits for this standby, or the server stops; returns
/// the log's latest sequence then.
async fn wait_for_log(
    state: &AppState,
    host: &LanHost,
    device: &DeviceId,
    after: u64,
    wait: Duration,
) -> ApiResult<u64> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Enabled before the log is read: a commit in between is not missed.
        let advanced = host.sync.next_advance();
        tokio::pin!(advanced);
        advanced.as_mut().enable();
        let latest = state.log.latest_sequence()?;
        let now = tokio::time::Instant::now();
        if latest > after
            || now >= deadline
            || host.handover.pending_seq(device).is_some()
            || state.shutdown.is_cancelled()
        {
            return Ok(latest);
        }
        let _ = tokio::time::timeout((deadline - now).min(TAIL_WAIT_SLICE), advanced).await;
    }
}

fn gap(after: u64, first: Option<u64>) -> ApiError {
    tracing::info!(
        after,
        ?first,
        "LAN standby asked for a tail the WAL no longer holds"
    );
    ApiError::Conflict(format!(
        "the host's WAL no longer holds sequence {}: sync in full",
        after + 1
    ))
}

/// `POST /lan/v1/fence`: a standby that took the shop over with `term`
/// (and serves at `address`, when it said) fences this host (module doc;
/// `lan::handover::fenced`: no send is acknowledged once the new term is
/// durable here). Returns this host's own term.
pub async fn fence(
    state: &AppState,
    host: &LanHost,
    peer: &LanPeer,
    term: u64,
    address: Option<super::address::HostAddress>,
) -> ApiResult<u64> {
    let key = peer
        .key
        .as_ref()
        .ok_or_else(|| ApiError::forbidden("fencing needs a Kefu device certificate"))?;
    if !host.devices.is_approved(&key.device_id) || !is_standby(&state.db, &key.device_id).await? {
        return Err(ApiError::forbidden(
            "only a standby of this host can take the shop over",
        ));
    }
    if key.device_id == host.identity.device_id() {
        return Err(ApiError::bad_request("a host does not fence itself"));
    }
    let demoted = super::handover::fenced(state, host, term, key.device_id, address)
        .await
        .map_err(ApiError::Internal)?;
    if !demoted {
        return Err(ApiError::Conflict(format!(
            "term {} is below this host's term {}: refused",
            term, host.term
        )));
    }
    tracing::warn!(
        by = %key.device_id.short(),
        term,
        own_term = host.term,
        "LAN host superseded: another device took the shop over; the message log is closed"
    );
    Ok(host.term)
}

/// `PUT /api/v1/lan/devices/{id}/standby`: `admin` makes an approved
/// device a standby (`enabled`) or no longer one, audited.
pub async fn set_standby(
    db: &sqlx::SqlitePool,
    host: &LanHost,
    admin: AgentId,
    device: DeviceId,
    enabled: bool,
) -> ApiResult<()> {
    let current = host.devices.get(db, &device).await?;
    if enabled && current.status != super::devices::DeviceStatus::Approved {
        return Err(ApiError::Conflict(
            "only an approved device can be a standby".into(),
        ));
    }
    let mut tx = db.begin().await?;
    if enabled {
        sqlx::query(
            "INSERT INTO lan_standbys (device_id, enabled_at, enabled_by) VALUES (?, ?, ?)
             ON CONFLICT (device_id) DO NOTHING",
        )
        .bind(device.to_string())
        .bind(crate::time::now_ms())
        .bind(admin.to_string())
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query("DELETE FROM lan_standbys WHERE device_id = ?")
            .bind(device.to_string())
            .execute(&mut *tx)
            .await?;
    }
    let device_text = device.to_string();
    crate::audit::record(
        &mut *tx,
        Some(admin),
        "lan.device.standby",
        Some(("lan_device", &device_text)),
        json!({"enabled": enabled}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The standbys for `GET /api/v1/lan/status`.
pub async fn status(state: &AppState, host: &LanHost) -> ApiResult<Vec<StandbyStatus>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT s.device_id, d.name FROM lan_standbys s
         JOIN lan_devices d ON d.device_id = s.device_id
         WHERE d.status = 'approved' ORDER BY s.enabled_at",
    )
    .fetch_all(&state.db)
    .await?;
    let latest = if state.log.is_open() {
        state.log.latest_sequence().unwrap_or(0)
    } else {
        0
    };
    Ok(rows
        .into_iter()
        .filter_map(|(id, name)| id.parse().ok().map(|id| (id, name)))
        .map(|(id, name)| host.standbys.status(id, name, latest))
        .collect())
}

/// Where a data dir keeps its standby copy (`lan standby`).
pub fn replica_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("replica")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_in_seconds_dates_from_the_latest_request_whose_sequence_the_standby_has() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut progress = Progress {
            applied: 0,
            caught_up_at: start,
            marks: VecDeque::new(),
            seen_at: start,
            full_syncs: 0,
            answered_through: 0,
            last_full_sync: None,
        };
        // Steady load: each request has what the host had at the one before.
        progress.caught_up(at(10), 90, 100);
        assert_eq!(progress.caught_up_at, start, "it lacked 91..=100 at 10 ms");
        progress.caught_up(at(20), 100, 110);
        assert_eq!(
            progress.caught_up_at,
            at(10),
            "it had the host's 100 of 10 ms"
        );
        progress.caught_up(at(30), 105, 120);
        assert_eq!(
            progress.caught_up_at,
            at(10),
            "110 of 20 ms is not reached yet"
        );
        progress.caught_up(at(40), 120, 130);
        assert_eq!(progress.caught_up_at, at(30), "120 of 30 ms is reached");
        // Everything the host has: caught up now, nothing left to date.
        progress.caught_up(at(50), 130, 130);
        assert_eq!(progress.caught_up_at, at(50));
        assert!(progress.marks.is_empty());
        // A long way behind: the marks stay bounded.
        for i in 0..200 {
            progress.caught_up(at(60 + i), 130, 1_000 + i);
        }
        assert_eq!(progress.marks.len(), MARKS);
        assert_eq!(progress.caught_up_at, at(50));
    }

    #[test]
    fn batches_round_trip_and_a_truncated_body_is_refused() {
        let batches = vec![(7, vec![1, 2, 3]), (10, vec![]), (11, vec![9; 300])];
        let body = frames::encode_batches(&batches);
        let decoded = frames::decode_batches(&body).expect("decode");
        let decoded: Vec<(u64, Vec<u8>)> =
            decoded.into_iter().map(|(s, d)| (s, d.to_vec())).collect();
        assert_eq!(decoded, batches);
        assert!(frames::decode_batches(&body[..body.len() - 1]).is_err());
        assert!(frames::decode_batches(&body[..5]).is_err());
    }

    #[tokio::test]
    async fn file_frames_round_trip_and_refuse_long_paths() {
        let mut out = Vec::new();
        frames::write_file_header(&mut out, "messages/000004.log", 3)
            .await
            .expect("header");
        out.extend_from_slice(b"abc");
        frames::write_end(&mut out).await.expect("end");
        let mut input = &out[..];
        let (path, size) = frames::read_file_header(&mut input)
            .await
            .expect("read")
            .expect("a file");
        assert_eq!((path.as_str(), size), ("messages/000004.log", 3));
        let mut bytes = [0; 3];
        tokio::io::AsyncReadExt::read_exact(&mut input, &mut bytes)
            .await
            .expect("bytes");
        assert_eq!(&bytes, b"abc");
        assert!(
            frames::read_file_header(&mut input)
                .await
                .expect("end")
                .is_none()
        );
        let long = "a".repeat(frames::PATH_MAX + 1);
        assert!(
            frames::write_file_header(&mut Vec::new(), &long, 0)
                .await
                .is_err()
        );
        assert!(
            frames::write_file_header(&mut Vec::new(), "", 0)
                .await
                .is_err()
        );
    }
}
