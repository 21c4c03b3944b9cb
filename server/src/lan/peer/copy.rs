//! "Keep a copy of the shop on this computer", on a peer (issue 18; API.md
//! §2.28; docs/LAN.md "From the desktop"): the peer's own server runs the
//! standby's loop (`lan::standby::follow`) in-process when its admin
//! switches it on, and, when the host is gone, takes the shop over
//! (`lan::takeover::take_over`) and ends so that its caller starts it again
//! as the host (`serve --peer-of` does; so does the desktop).
//!
//! The switch is this device's consent, the host's `PUT
//! /api/v1/lan/devices/{id}/standby` the host's: both are needed. It is
//! kept in `DATA_DIR/lan/standby.json` and the loop starts again at the
//! peer's next start.
//!
//! These routes are answered by the peer itself, never relayed. Who may:
//! an admin of the shop, by the token they signed in with (the host's):
//! checked in the copy's SQLite when there is a copy (it is the host's, at
//! most a few seconds old), else by asking the host (`GET
//! /api/v1/lan/status`, admins only). A take-over needs the copy (the host
//! is gone), and is audited there (`lan.takeover`), in what becomes the
//! shop's SQLite.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::link::{Link, LinkState};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiJson;
use crate::lan::client::DeviceClient;
use crate::lan::fs::{self as lanfs, Visibility};
use crate::lan::identity::LAN_DIR;
use crate::lan::replication::replica_dir;
use crate::lan::standby::{self, Ended, Report};
use crate::lan::tls::ServerTrust;

/// The switch, in `DATA_DIR/lan/`.
pub const SWITCH_FILE: &str = "standby.json";

#[derive(Serialize, Deserialize, Default)]
struct Switch {
    enabled: bool,
}

fn switch_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LAN_DIR).join(SWITCH_FILE)
}

/// Whether this device's admin switched the copy on (`standby.json`).
pub fn switched_on(data_dir: &Path) -> bool {
    std::fs::read(switch_path(data_dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Switch>(&bytes).ok())
        .is_some_and(|s| s.enabled)
}

/// How a peer ended when it did not merely stop: this device is the
/// shop's host now (taken over, or granted by a planned handover) and its
/// caller serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BecameHost {
    pub term: u64,
    /// Where to host on the LAN, when the admin said (take-over's
    /// `lan_bind`).
    pub lan_bind: Option<SocketAddr>,
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The peer's copy: its switch, its loop, the take-over.
pub struct LocalCopy {
    data_dir: PathBuf,
    link: Arc<Link>,
    report: Arc<Report>,
    running: tokio::sync::Mutex<Option<Running>>,
    became_host: Arc<parking_lot::Mutex<Option<BecameHost>>>,
    /// The peer's own: cancelled once this device is the host.
    shutdown: CancellationToken,
}

impl LocalCopy {
    pub fn new(data_dir: PathBuf, link: Arc<Link>, shutdown: CancellationToken) -> Arc<LocalCopy> {
        Arc::new(LocalCopy {
            data_dir,
            link,
            report: Arc::new(Report::default()),
            running: tokio::sync::Mutex::new(None),
            became_host: Arc::new(parking_lot::Mutex::new(None)),
            shutdown,
        })
    }

    /// Set once this device is the shop's host (the peer then ends).
    pub fn became_host(&self) -> Arc<parking_lot::Mutex<Option<BecameHost>>> {
        Arc::clone(&self.became_host)
    }

    /// Starts the loop if the switch is on (at the peer's start).
    pub async fn resume(self: &Arc<Self>) {
        let dir = self.data_dir.clone();
        if tokio::task::spawn_blocking(move || switched_on(&dir))
            .await
            .unwrap_or(false)
        {
            self.start().await;
        }
    }

    async fn start(self: &Arc<Self>) {
        let mut running = self.running.lock().await;
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return;
        }
        let stop = self.shutdown.child_token();
        let copy = Arc::clone(self);
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let ended = standby::follow(
                copy.data_dir.clone(),
                Some(copy.link.state_file()),
                &copy.report,
                stopped.cancelled_owned(),
            )
            .await;
            match ended {
                Ok(Ended::Stopped) => {}
                Ok(Ended::Host { term, address }) => {
                    tracing::warn!(term, "LAN: this computer was handed the shop");
                    copy.reload_state();
                    *copy.became_host.lock() = Some(BecameHost {
                        term,
                        // The address the handover told the shop, when it
                        // is an IP (of this computer: it was handed over to).
                        lan_bind: address.as_ref().and_then(|a| a.socket_addr()),
                    });
                    copy.shutdown.cancel();
                }
                Err(error) => {
                    let error = format!("{error:#}");
                    tracing::warn!(%error, "LAN: the copy stopped");
                    copy.report_error(error);
                }
            }
        });
        *running = Some(Running { stop, task });
    }

    /// After `take_over` wrote `state.json` (the host role): the link's
    /// in-memory copy is reread so that it cannot write the peer role back.
    fn reload_state(&self) {
        let shared = self.link.state_file();
        match crate::lan::state::LanStateFile::open(&self.data_dir) {
            Ok(fresh) => *shared.lock() = fresh,
            Err(error) => tracing::error!(%error, "LAN: cannot reread state.json"),
        }
    }

    fn report_error(&self, error: String) {
        self.report.set(Some(error));
    }

    async fn stop(&self) {
        let running = self.running.lock().await.take();
        if let Some(running) = running {
            running.stop.cancel();
            let _ = running.task.await;
        }
    }

    async fn is_running(&self) -> bool {
        self.running
            .lock()
            .await
            .as_ref()
            .is_some_and(|r| !r.task.is_finished())
    }
}

/// The routes, answered by the peer itself (merged before the relay's).
pub fn routes(copy: Arc<LocalCopy>) -> Router {
    Router::new()
        .route("/api/v1/lan/copy", get(status).put(set))
        .route("/api/v1/lan/copy/takeover", post(take_over))
        .with_state(copy)
}

/// Who asks: an admin of the shop, by their token.
async fn admin(copy: &LocalCopy, headers: &HeaderMap, host_allowed: bool) -> ApiResult<String> {
    let token = crate::auth::bearer(headers)
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?
        .to_owned();
    let replica = replica_dir(&copy.data_dir);
    if replica.join(crate::store::db::FILE_NAME).is_file() {
        match admin_in_copy(&replica, &token).await {
            Ok(Some((id, true))) => return Ok(id),
            Ok(Some((_, false))) => {
                return Err(ApiError::forbidden("this needs an admin of the shop"));
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "LAN copy: cannot read the copy's accounts"),
        }
    }
    if !host_allowed {
        return Err(ApiError::Unauthorized(
            "invalid or revoked token (this computer's copy does not know it)".into(),
        ));
    }
    let link = &copy.link;
    let asked = async {
        let mut client = DeviceClient::connect_from(
            link.identity(),
            ServerTrust::Pinned(link.pinned()),
            &link.address(),
            link.local(),
        )
        .await?;
        client
            .request(http::Method::GET, "/api/v1/lan/status", None, Some(&token))
            .await
    };
    match tokio::time::timeout(Duration::from_secs(5), asked).await {
        Ok(Ok((status, _))) if status.is_success() => Ok(String::new()),
        Ok(Ok((status, _))) if status == http::StatusCode::FORBIDDEN => {
            Err(ApiError::forbidden("this needs an admin of the shop"))
        }
        Ok(Ok(_)) => Err(ApiError::Unauthorized("invalid or revoked token".into())),
        _ => Err(ApiError::Unavailable(
            "the shop's host is not reachable to check who you are".into(),
        )),
    }
}

/// The token's agent in the copy's SQLite (read-only): `(id, is_admin)`.
async fn admin_in_copy(replica: &Path, token: &str) -> anyhow::Result<Option<(String, bool)>> {
    use sqlx::ConnectOptions;
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(replica.join(crate::store::db::FILE_NAME))
        .read_only(true)
        .connect()
        .await?;
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT a.id, a.role FROM tokens t JOIN agents a ON a.id = t.agent_id
         WHERE t.token_hash = ? AND t.revoked_at IS NULL AND a.deactivated_at IS NULL",
    )
    .bind(crate::auth::tag::token_hash(token))
    .fetch_optional(&mut connection)
    .await?;
    let _ = sqlx::Connection::close(connection).await;
    Ok(row.map(|(id, role)| (id, role == "admin")))
}

async fn describe(copy: &LocalCopy) -> ApiResult<Value> {
    let dir = copy.data_dir.clone();
    let (enabled, progress, has_copy) = tokio::task::spawn_blocking(move || {
        (
            switched_on(&dir),
            standby::read_progress(&dir),
            replica_dir(&dir).join(crate::LOG_DIR).is_dir(),
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    let link = copy.link.state();
    let now = crate::time::now_ms();
    let progress = progress.filter(|_| has_copy);
    let behind = progress
        .as_ref()
        .map(|p| p.host_seq.saturating_sub(p.applied_seq));
    Ok(json!({
        "enabled": enabled,
        "running": copy.is_running().await,
        "copy": has_copy,
        "applied_seq": progress.as_ref().map(|p| p.applied_seq),
        "host_seq": progress.as_ref().map(|p| p.host_seq),
        "behind_seq": behind,
        "last_contact_ms": progress.as_ref().map(|p| p.last_contact_ms),
        "seconds_since_contact": progress.as_ref().map(|p| ((now - p.last_contact_ms).max(0) as f64) / 1000.0),
        "full_syncs": progress.as_ref().map(|p| p.full_syncs),
        "host_term": progress.as_ref().map(|p| p.host_term),
        "last_error": copy.report.last_error(),
        "host_reachable": link == LinkState::Connected,
        "can_take_over": has_copy && link != LinkState::Connected,
    }))
}

async fn status(State(copy): State<Arc<LocalCopy>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&copy, &headers, true).await?;
    Ok(Json(describe(&copy).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    enabled: bool,
}

async fn set(
    State(copy): State<Arc<LocalCopy>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetBody>,
) -> ApiResult<Json<Value>> {
    let actor = admin(&copy, &headers, true).await?;
    let dir = copy.data_dir.clone();
    let enabled = body.enabled;
    tokio::task::spawn_blocking(move || {
        let bytes = serde_json::to_vec_pretty(&Switch { enabled })?;
        lanfs::write_atomic(&switch_path(&dir), &bytes, Visibility::Public)?;
        anyhow::Ok(())
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(ApiError::Internal)?;
    tracing::info!(enabled, actor = %actor, "LAN: this computer's copy of the shop switched");
    if enabled {
        copy.start().await;
    } else {
        copy.stop().await;
    }
    Ok(Json(describe(&copy).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TakeOverBody {
    /// Must be `true`: the admin read how far behind the copy is.
    confirm: bool,
    /// Where to host on the LAN once taken over.
    #[serde(default)]
    lan_bind: Option<SocketAddr>,
}

async fn take_over(
    State(copy): State<Arc<LocalCopy>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TakeOverBody>,
) -> ApiResult<Json<Value>> {
    let actor = admin(&copy, &headers, false).await?;
    if !body.confirm {
        return Err(ApiError::bad_request(
            "confirm must be true: taking over cannot be undone",
        ));
    }
    if copy.link.state() == LinkState::Connected {
        return Err(ApiError::Conflict(
            "the shop's host answers: hand the shop over from its Settings → LAN instead".into(),
        ));
    }
    if copy.became_host.lock().is_some() {
        return Err(ApiError::Conflict(
            "this computer is the shop's host already".into(),
        ));
    }
    copy.stop().await;
    let dir = copy.data_dir.clone();
    let record = tokio::task::spawn_blocking(move || crate::lan::takeover::take_over(&dir, false))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Conflict(format!("{e:#}")))?;
    copy.reload_state();
    let behind = record.host_seq.saturating_sub(record.applied_seq);
    let details = json!({
        "term": record.term,
        "applied_seq": record.applied_seq,
        "host_seq": record.host_seq,
        "behind_seq": behind,
        "last_contact_ms": record.last_contact_ms,
        "lan_bind": body.lan_bind,
    });
    // Audited in what is now the shop's SQLite.
    if let Err(error) = audit(&copy.data_dir, &actor, &details).await {
        tracing::warn!(%error, "LAN takeover: could not write the audit log");
    }
    tracing::warn!(
        term = record.term,
        behind,
        "LAN: this computer took the shop over"
    );
    *copy.became_host.lock() = Some(BecameHost {
        term: record.term,
        lan_bind: body.lan_bind,
    });
    // Answer first, then end the peer: its caller serves the shop.
    let shutdown = copy.shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        shutdown.cancel();
    });
    let mut answer = details;
    answer["took_over"] = json!(true);
    answer["seconds_since_contact"] =
        json!(((crate::time::now_ms() - record.last_contact_ms).max(0) as f64) / 1000.0);
    Ok(Json(answer))
}

async fn audit(data_dir: &Path, actor: &str, details: &Value) -> anyhow::Result<()> {
    use sqlx::ConnectOptions;
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join(crate::store::db::FILE_NAME))
        .connect()
        .await?;
    let actor: Option<crate::ids::AgentId> = actor.parse().ok();
    crate::audit::record(
        &mut connection,
        actor,
        "lan.takeover",
        None,
        details.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = sqlx::Connection::close(connection).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_is_off_unless_the_file_says_on() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join(LAN_DIR)).expect("lan dir");
        assert!(!switched_on(dir.path()), "no file: off");
        std::fs::write(switch_path(dir.path()), b"not json").expect("write");
        assert!(!switched_on(dir.path()), "unreadable: off");
        let on = serde_json::to_vec(&Switch { enabled: true }).expect("json");
        lanfs::write_atomic(&switch_path(dir.path()), &on, Visibility::Public).expect("write");
        assert!(switched_on(dir.path()));
        let off = serde_json::to_vec(&Switch { enabled: false }).expect("json");
        lanfs::write_atomic(&switch_path(dir.path()), &off, Visibility::Public).expect("write");
        assert!(!switched_on(dir.path()));
    }
}
