//! `kefu-server lan standby`: the standby's side of replication
//! (`lan::replication` has the host's, docs/LAN.md "Replication and
//! fencing").
//!
//! A paired peer that runs it keeps a copy of the shop in
//! `DATA_DIR/replica/` (SQLite, the message log, attachments), apart from
//! its own solo data. It connects to the pinned host over mutual TLS and:
//!
//! 1. with no copy, or when the host says the tail it asks for is gone,
//!    **syncs in full**: the host's snapshot is received into
//!    `DATA_DIR/.replica.partial-<ulid>`, every file checked against the
//!    snapshot's manifest (size and SHA-256) and fsynced, then renamed
//!    into place; a copy is never half replaced;
//! 2. then **tails** the log (a long poll: the host answers as soon as it
//!    has something new): each answer's batches are applied in order
//!    after checking that each starts right after the last one applied
//!    and that the copy's RocksDB sequence lands exactly where the host's
//!    did (`seq + count − 1`), so the copy's log is the host's; anything
//!    else drops the copy's cursor and syncs in full. The WAL is fsynced
//!    before the next request: `after=N` means *durably* through `N`,
//!    which the host's synchronous standby counts on
//!    (`lan::sync_standby`);
//! 3. swaps in a fresh SQLite snapshot every [`SQLITE_REFRESH`], then
//!    fetches the files of attachments uploaded since ([`attachments`]).
//!
//! Every answer's `kefu-term` is checked: a host below the highest term
//! this device has seen is stale and is not followed. Progress (what was
//! applied, what the host had, when it was last heard) is written to
//! `DATA_DIR/lan/replica.json` after each answer, for `lan takeover`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::TryStreamExt;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::address::HostAddress;
use super::client::DeviceClient;
use super::device_id::DeviceId;
use super::fs::{self as lanfs, Visibility};
use super::identity::{Identity, LAN_DIR};
use super::replication::{self, HISTORY_HEADER, LOG_SEQ_HEADER, frames};
use super::state::{HistoryId, LanStateFile, Role};
use super::tls::ServerTrust;
use crate::ops::manifest;

mod attachments;

/// The least time between two tail requests that brought nothing (the
/// host's long poll makes them rarer; a quick empty answer waits this).
pub const POLL: Duration = Duration::from_millis(50);
/// How long the host may hold a tail request for the log to move (its
/// long poll, `wait_ms`): a new write is sent as soon as it is committed,
/// and the host hears from this standby at least this often.
pub const TAIL_WAIT: Duration = Duration::from_millis(1000);
/// How often the copy's SQLite is replaced by a fresh snapshot.
pub const SQLITE_REFRESH: Duration = Duration::from_secs(5);
/// Pause before reconnecting after the host could not be reached.
pub const RECONNECT: Duration = Duration::from_secs(1);
/// The progress file in `DATA_DIR/lan/`.
pub const PROGRESS_FILE: &str = "replica.json";

/// What `DATA_DIR/lan/replica.json` holds.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Progress {
    pub host_device_id: Option<DeviceId>,
    pub host_address: Option<HostAddress>,
    pub history_id: Option<HistoryId>,
    pub host_term: u64,
    /// The last log sequence the copy applied (its RocksDB sequence).
    pub applied_seq: u64,
    /// The host's latest sequence at the last answer.
    pub host_seq: u64,
    /// When the host last answered (ms since the epoch).
    pub last_contact_ms: i64,
    pub full_syncs: u64,
}

pub fn read_progress(data_dir: &Path) -> Option<Progress> {
    let bytes = std::fs::read(data_dir.join(LAN_DIR).join(PROGRESS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_progress(data_dir: &Path, progress: &Progress) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(progress)?;
    lanfs::write_atomic(
        &data_dir.join(LAN_DIR).join(PROGRESS_FILE),
        &bytes,
        Visibility::Public,
    )?;
    Ok(())
}

/// Writes `replica.json` off the tail's path: each answer's progress is
/// handed to a task that writes the latest one while the next request is
/// under way. Its two fsyncs would otherwise be in every round trip, and
/// so in every send a synchronous standby acknowledges. What it holds is
/// for `lan takeover`'s report (the host's sequence when last heard): the
/// copy's own sequence is read from the copy, so a write that lags one
/// answer behind loses nothing.
struct ProgressWriter {
    latest: tokio::sync::watch::Sender<Progress>,
    /// When the newest progress written was heard (never goes back).
    written_ms: Arc<parking_lot::Mutex<i64>>,
    data_dir: PathBuf,
}

impl ProgressWriter {
    fn start(data_dir: &Path, progress: Progress) -> ProgressWriter {
        let (latest, mut rx) = tokio::sync::watch::channel(progress);
        let written_ms = Arc::new(parking_lot::Mutex::new(0));
        let (dir, written) = (data_dir.to_path_buf(), Arc::clone(&written_ms));
        // Ends once the sender is dropped and the last value written.
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let progress = rx.borrow_and_update().clone();
                let (dir, written) = (dir.clone(), Arc::clone(&written));
                let done =
                    tokio::task::spawn_blocking(move || write_newer(&dir, &progress, &written))
                        .await;
                if let Ok(Err(error)) = done {
                    tracing::warn!(error = %format!("{error:#}"), "standby: writing replica.json");
                }
            }
        });
        ProgressWriter {
            latest,
            written_ms,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Hands `progress` over to be written soon.
    fn later(&self, progress: &Progress) {
        self.latest.send_replace(progress.clone());
    }

    /// Writes `progress` now (before a handover's grant is asked for).
    fn now(&self, progress: &Progress) -> anyhow::Result<()> {
        write_newer(&self.data_dir, progress, &self.written_ms)
    }
}

/// Writes `progress` unless a newer one was written.
fn write_newer(
    data_dir: &Path,
    progress: &Progress,
    written_ms: &parking_lot::Mutex<i64>,
) -> anyhow::Result<()> {
    let mut written = written_ms.lock();
    if progress.last_contact_ms < *written {
        return Ok(());
    }
    write_progress(data_dir, progress)?;
    *written = progress.last_contact_ms;
    Ok(())
}

/// Opens the copy's message log (RocksDB, the server's options).
pub fn open_copy(replica: &Path) -> anyhow::Result<rocksdb::DB> {
    let mut options = crate::store::messages::db_options();
    options.create_if_missing(false);
    rocksdb::DB::open_cf_descriptors(
        &options,
        replica.join(crate::LOG_DIR),
        crate::store::messages::column_families(),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the copy's message log: {e}"))
}

/// Why a session with the host ended.
enum End {
    /// Sync in full, then go on.
    Resync(String),
    /// The host granted this device the shop (a planned handover): the
    /// copy is at the host's last sequence and the host writes no more.
    Granted(super::handover::Successor),
}

/// How `lan standby` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Stopped (Ctrl-C).
    Stopped,
    /// Granted the shop by a planned handover: the copy is the shop's data
    /// now, in `term`; the caller serves it (or says how to), at
    /// `address` (the one the handover named) when it is an IP of its own.
    Host {
        term: u64,
        address: Option<HostAddress>,
    },
}

/// `lan standby`: runs until stopped (Ctrl-C; SIGTERM ends the process:
/// the copy is consistent after any batch) or granted the shop.
pub async fn run(data_dir: PathBuf) -> anyhow::Result<Ended> {
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("standby stopped");
    };
    follow(data_dir, None, &Report::default(), stop).await
}

/// What an in-process standby (a peer's "keep a copy of the shop",
/// `lan::peer::copy`) shows besides `replica.json`: why the last session
/// with the host ended, while it retries.
#[derive(Default)]
pub struct Report {
    last_error: parking_lot::Mutex<Option<String>>,
}

impl Report {
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    pub fn set(&self, error: Option<String>) {
        *self.last_error.lock() = error;
    }
}

/// The standby's loop: keeps the copy in step with the pinned host until
/// `stop` completes (then [`Ended::Stopped`]; the copy is consistent
/// after any batch) or the host grants this device the shop.
///
/// `shared`: the process's own `state.json` when something else in it
/// writes the file too (a peer's link), else it is opened here.
pub async fn follow(
    data_dir: PathBuf,
    shared: Option<Arc<parking_lot::Mutex<LanStateFile>>>,
    report: &Report,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Ended> {
    let dir = data_dir.clone();
    let (identity, state) = tokio::task::spawn_blocking(move || {
        super::takeover::refuse_unfinished(&dir)?;
        let (identity, _) = Identity::open(&dir)?;
        let state = match shared {
            Some(shared) => shared,
            None => Arc::new(parking_lot::Mutex::new(LanStateFile::open(&dir)?)),
        };
        anyhow::Ok((identity, state))
    })
    .await??;
    if state.lock().state().role != Role::Peer {
        anyhow::bail!(
            "this device is not a peer of a host: pair it first (kefu-server lan pair), then an \
             admin makes it a standby on the host"
        );
    }
    eprintln!(
        "standby of host {}: keeping a copy in {}",
        state
            .lock()
            .state()
            .host
            .as_ref()
            .map(|h| h.device_id.to_string())
            .unwrap_or_default(),
        replication::replica_dir(&data_dir).display()
    );
    let mut force_full = false;
    let work = async {
        loop {
            match session(&identity, &data_dir, &state, force_full, report).await {
                Ok(End::Granted(successor)) => return become_host(&data_dir, successor).await,
                Ok(End::Resync(why)) => {
                    tracing::info!(%why, "standby: syncing in full");
                    eprintln!("syncing in full: {why}");
                    force_full = true;
                }
                Err(error) => {
                    let error = format!("{error:#}");
                    tracing::warn!(%error, "standby: host not reached");
                    eprintln!("host not reached: {error}");
                    report.set(Some(error));
                    tokio::time::sleep(RECONNECT).await;
                }
            }
        }
    };
    tokio::select! {
        done = work => done,
        () = stop => Ok(Ended::Stopped),
    }
}

/// Checks and records the host's term from an answer's headers.
fn check_term(
    state: &parking_lot::Mutex<LanStateFile>,
    headers: &http::HeaderMap,
) -> anyhow::Result<u64> {
    let term: u64 = headers
        .get(super::host::TERM_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("the host's answer carries no term")?;
    state.lock().observe_term(term).context("the host's term")?;
    Ok(term)
}

async fn session(
    identity: &Identity,
    data_dir: &Path,
    state: &parking_lot::Mutex<LanStateFile>,
    force_full: bool,
    report: &Report,
) -> anyhow::Result<End> {
    let host = state
        .lock()
        .state()
        .host
        .clone()
        .context("no pinned host")?;
    let mut client =
        DeviceClient::connect(identity, ServerTrust::Pinned(host.device_id), &host.address).await?;
    let replica = replication::replica_dir(data_dir);
    let mut progress = read_progress(data_dir).unwrap_or_default();
    progress.host_device_id = Some(host.device_id);
    progress.host_address = Some(host.address.clone());
    if force_full || !replica.join(crate::LOG_DIR).is_dir() {
        full_sync(&mut client, data_dir, state, &mut progress).await?;
    }
    let db = {
        let replica = replica.clone();
        tokio::task::spawn_blocking(move || open_copy(&replica)).await??
    };
    // A request `after=N` tells the host that everything through N is on
    // this disk (a synchronous standby's acks count on it): sync what an
    // earlier session may have applied without syncing.
    db.flush_wal(true)?;
    let mut applied = db.latest_sequence_number();
    let mut sqlite_at = Instant::now();
    // The attachments rows looked at: none yet this session.
    let mut attachments_after: attachments::Cursor = None;
    // What the copy holds from the start (a full sync's or an earlier
    // session's last batch), written now: the first tail request may wait
    // a while for the host's log to move.
    progress.applied_seq = applied;
    progress.host_seq = progress.host_seq.max(applied);
    let progress_file = ProgressWriter::start(data_dir, progress.clone());
    progress_file.now(&progress)?;
    loop {
        let highest = state.lock().state().highest_term_seen;
        let request = client.get_request(&format!(
            "/lan/v1/replica/tail?after={applied}&term={highest}&wait_ms={}",
            TAIL_WAIT.as_millis()
        ))?;
        let asked = Instant::now();
        let response = client.send_streaming(request).await?;
        let term = check_term(state, response.headers())?;
        let status = response.status();
        let host_seq = response
            .headers()
            .get(LOG_SEQ_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let handover_seq = response
            .headers()
            .get(super::handover::SEQ_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = axum::body::to_bytes(
            axum::body::Body::new(response.into_body()),
            replication::TAIL_MAX_BYTES + frames::BATCH_MAX,
        )
        .await
        .map_err(|e| anyhow::anyhow!("reading the tail: {e}"))?;
        if status == StatusCode::CONFLICT {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Ok(End::Resync(message));
        }
        if !status.is_success() {
            anyhow::bail!("the host refused the tail ({status})");
        }
        let host_seq = host_seq.context("the tail answer carries no log sequence")?;
        let batches = frames::decode_batches(&body).map_err(anyhow::Error::msg)?;
        let count = batches.len();
        for (seq, data) in batches {
            if seq != applied + 1 {
                return Ok(End::Resync(format!(
                    "batch at {seq}, expected {}",
                    applied + 1
                )));
            }
            let batch = rocksdb::WriteBatch::from_data(data);
            let ops = batch.len() as u64;
            db.write(batch)?;
            let now = db.latest_sequence_number();
            if ops == 0 || now != seq + ops - 1 {
                return Ok(End::Resync(format!(
                    "the copy's sequence is {now} after a batch at {seq} of {ops}"
                )));
            }
            applied = now;
        }
        // Durable before the next request says so (`after`).
        if count > 0 {
            db.flush_wal(true)?;
        }
        progress.applied_seq = applied;
        progress.host_seq = host_seq;
        progress.host_term = term;
        progress.last_contact_ms = crate::time::now_ms();
        if handover_seq.is_some() {
            progress_file.now(&progress)?;
        } else {
            progress_file.later(&progress);
        }
        report.set(None);
        if let Some(target) = handover_seq
            && applied >= target
        {
            // A handover to this device paused the host's writes: with a
            // fresh SQLite snapshot, ask for the grant.
            refresh_sqlite(&mut client, &replica, state).await?;
            attachments::fetch_new(&mut client, &replica, state, &mut attachments_after).await?;
            db.flush_wal(true)?;
            let term = state
                .lock()
                .state()
                .highest_term_seen
                .checked_add(1)
                .context("the term cannot go higher")?;
            let (status, body) = client
                .request(
                    http::Method::POST,
                    "/lan/v1/handover/commit",
                    Some(&serde_json::json!({"seq": applied, "term": term})),
                    None,
                )
                .await?;
            if status.is_success() {
                let successor: super::handover::Successor = serde_json::from_value(body)
                    .context("the host's grant is not a successor notice")?;
                successor
                    .verify(&host.device_id)
                    .context("the host's grant")?;
                return Ok(End::Granted(successor));
            }
            tracing::info!(%status, %body, "standby: the host did not grant the handover yet");
            tokio::time::sleep(POLL).await;
            continue;
        }
        if sqlite_at.elapsed() >= SQLITE_REFRESH {
            refresh_sqlite(&mut client, &replica, state).await?;
            attachments::fetch_new(&mut client, &replica, state, &mut attachments_after).await?;
            sqlite_at = Instant::now();
        }
        if count == 0 && asked.elapsed() < POLL {
            tokio::time::sleep(POLL).await;
        }
    }
}

/// After the grant: the copy becomes the shop (`lan takeover`'s steps,
/// which write the term the host granted) and the old host is recorded as
/// fenced (it demoted before granting). The caller serves it.
async fn become_host(
    data_dir: &Path,
    successor: super::handover::Successor,
) -> anyhow::Result<Ended> {
    let dir = data_dir.to_path_buf();
    let address = successor.address.clone();
    let record =
        tokio::task::spawn_blocking(move || super::takeover::take_over_granted(&dir, &successor))
            .await??;
    // The new term is durable; nothing has announced it yet (no listener
    // bound, no answer, no mDNS): a crash here must leave one writer per
    // term (docs/LAN.md, "Crash-safety of handover and takeover").
    crate::fault::crash_point("handover.term_written");
    println!(
        "this computer is now the shop's host, in term {}",
        record.term
    );
    eprintln!("The old host wrote nothing after this copy's last entry.");
    Ok(Ended::Host {
        term: record.term,
        address,
    })
}

/// Reads a [`frames`] file stream into `root`, fsyncing each file.
async fn receive_files(
    mut input: impl AsyncRead + Unpin,
    root: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    while let Some((path, size)) = frames::read_file_header(&mut input).await? {
        let target = manifest::resolve(root, &path)
            .with_context(|| format!("the host sent a file named {path:?}"))?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut file = tokio::fs::File::create(&target).await?;
        let mut limited = (&mut input).take(size);
        let copied = tokio::io::copy(&mut limited, &mut file).await?;
        if copied != size {
            anyhow::bail!("{path} ended after {copied} of {size} bytes");
        }
        file.sync_all().await?;
        file.shutdown().await?;
        names.push(path);
    }
    Ok(names)
}

fn body_reader(response: hyper::Response<hyper::body::Incoming>) -> impl AsyncRead + Unpin + Send {
    let stream = axum::body::Body::new(response.into_body())
        .into_data_stream()
        .map_err(std::io::Error::other);
    tokio_util::io::StreamReader::new(stream)
}

async fn full_sync(
    client: &mut DeviceClient,
    data_dir: &Path,
    state: &parking_lot::Mutex<LanStateFile>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let request = client.get_request("/lan/v1/replica/snapshot")?;
    let response = client.send_streaming(request).await?;
    let term = check_term(state, response.headers())?;
    if !response.status().is_success() {
        let status = response.status();
        let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 64 << 10)
            .await
            .unwrap_or_default();
        anyhow::bail!(
            "the host refused the snapshot ({status}): {}",
            String::from_utf8_lossy(&body)
        );
    }
    let history: Option<HistoryId> = response
        .headers()
        .get(HISTORY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let partial = data_dir.join(format!(".replica.partial-{}", ulid::Ulid::new()));
    tokio::fs::create_dir_all(&partial).await?;
    let received = async {
        receive_files(body_reader(response), &partial).await?;
        let root = partial.clone();
        tokio::task::spawn_blocking(move || check_snapshot(&root)).await?
    }
    .await;
    if let Err(error) = received {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(error.context("receiving the host's snapshot"));
    }
    let replica = replication::replica_dir(data_dir);
    let old = data_dir.join(format!(".replica.old-{}", ulid::Ulid::new()));
    if replica.exists() {
        std::fs::rename(&replica, &old)?;
    }
    std::fs::rename(&partial, &replica)?;
    manifest::sync_dir(data_dir)?;
    let _ = std::fs::remove_dir_all(&old);
    progress.full_syncs += 1;
    progress.history_id = history;
    progress.host_term = term;
    progress.last_contact_ms = crate::time::now_ms();
    write_progress(data_dir, progress)?;
    tracing::info!("standby: full sync done");
    eprintln!("full sync done");
    Ok(())
}

/// Every file of the snapshot's manifest (but `lan/`, which the host
/// keeps) is there with its size and SHA-256; the manifest then goes
/// (the copy changes from here on: it is no backup).
fn check_snapshot(root: &Path) -> anyhow::Result<()> {
    let manifest = manifest::Manifest::read(root)?;
    let lan_prefix = format!("{LAN_DIR}/");
    for entry in manifest
        .files
        .iter()
        .filter(|e| !e.path.starts_with(&lan_prefix))
    {
        let path = manifest::resolve(root, &entry.path)
            .with_context(|| format!("unexpected file {}", entry.path))?;
        let (size, sha256) = manifest::hash_file(&path, true)
            .with_context(|| format!("{} is missing from the snapshot", entry.path))?;
        if size != entry.size || sha256 != entry.sha256 {
            anyhow::bail!("{} does not match the snapshot's manifest", entry.path);
        }
    }
    std::fs::remove_file(root.join(manifest::FILE))?;
    manifest::sync_dirs(root)?;
    Ok(())
}

async fn refresh_sqlite(
    client: &mut DeviceClient,
    replica: &Path,
    state: &parking_lot::Mutex<LanStateFile>,
) -> anyhow::Result<()> {
    let request = client.get_request("/lan/v1/replica/sqlite")?;
    let response = client.send_streaming(request).await?;
    check_term(state, response.headers())?;
    if !response.status().is_success() {
        anyhow::bail!(
            "the host refused the SQLite snapshot ({})",
            response.status()
        );
    }
    let partial = replica.join(format!(".sqlite.partial-{}", ulid::Ulid::new()));
    let received = receive_files(body_reader(response), &partial).await;
    let result = received.and_then(|names| {
        if names != [crate::store::db::FILE_NAME] {
            anyhow::bail!("the SQLite snapshot holds {names:?}");
        }
        std::fs::rename(
            partial.join(crate::store::db::FILE_NAME),
            replica.join(crate::store::db::FILE_NAME),
        )?;
        manifest::sync_dir(replica)?;
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&partial);
    result
}
