//! Settings → Backup: the embedded server's backups, made and restored by
//! the server library's operations (`kefu_server::ops`), never by code of
//! the shell's own (docs/DESKTOP.md, "Backups").
//!
//! - **Back up now** writes `kefu-backup-<UTC time>` into the chosen
//!   folder through `ops::backup_into` (consistent while serving, one at a
//!   time, in the metrics and the audit log); a **schedule** is the
//!   server's own scheduler (`[backup]` of its configuration, from the
//!   preferences), so the two name, count and prune backups alike.
//! - **Restore on next start**: the backup is verified now
//!   (`ops::verify`, and its versions against this binary), and
//!   `restore-pending.json` in the config dir names it. At the next start,
//!   before the embedded server opens the data dir, [`apply_pending`] runs
//!   `ops::restore::restore`: the data dir is replaced by a copy of the
//!   backup and the old one is kept beside it as
//!   `DIR.before-restore-<UTC time>` (never deleted by Kefu). The outcome
//!   goes to `restore-last.json`, which the tab shows.
//! - Admin-only: every command takes the page's session token and refuses
//!   anyone but an active admin of the shop whose data is here.
//!
//! Invariants: a pending restore is tried once (its file is removed before
//! the restore starts, so a restore that crashes the app is not retried at
//! every start); a failed restore leaves the data dir as it was (the
//! library's guarantee) and says why.

use std::path::{Path, PathBuf};

use kefu_server::auth::{Principal, resolve_token};
use kefu_server::ids::AgentId;
use kefu_server::ops::{self, manifest, restore, schedule};
use kefu_server::state::AppState;
use serde::{Deserialize, Serialize};

use crate::server::Dirs;

/// In the config dir: the restore to do at the next start.
pub const PENDING_FILE: &str = "restore-pending.json";
/// In the config dir: how the last restore at start went.
pub const OUTCOME_FILE: &str = "restore-last.json";
/// Larger files here are not ours.
const MAX_FILE_BYTES: u64 = 64 << 10;

/// A restore waiting for the next start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRestore {
    /// The backup directory (absolute).
    pub from: PathBuf,
    /// When the backup was made (its manifest).
    pub backup_created_at: String,
    /// When the restore was asked for (Unix ms).
    pub requested_at_ms: i64,
}

/// How the restore at a start went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    pub from: PathBuf,
    pub backup_created_at: String,
    /// When it ran (Unix ms).
    pub at_ms: i64,
    pub ok: bool,
    /// Where the data dir that was there before went (kept, never deleted).
    pub previous: Option<PathBuf>,
    /// Why it failed (the data dir was not changed).
    pub error: Option<String>,
}

/// One backup in the folder, as the tab lists it.
#[derive(Debug, Clone, Serialize)]
pub struct BackupEntry {
    pub path: PathBuf,
    pub name: String,
    pub created_at: String,
    pub created_at_ms: i64,
    pub bytes: u64,
    pub conversations: u64,
    pub messages: u64,
    pub kefu_version: String,
}

/// The signed-in agent behind the page's token, if an active admin.
pub async fn require_admin(state: &AppState, token: &str) -> Result<AgentId, String> {
    match resolve_token(state, token).await {
        Ok(Some(Principal::Agent(agent)))
            if agent.active && agent.role == kefu_server::agents::Role::Admin =>
        {
            Ok(agent.id)
        }
        Ok(Some(Principal::Agent(_))) => Err("only an admin may manage backups".into()),
        Ok(_) => Err("sign in again: the session is not valid".into()),
        Err(error) => Err(error.to_string()),
    }
}

/// A backup folder the admin typed: absolute, not the data dir nor inside
/// it (nor holding it: a restore renames the data dir beside itself),
/// created if missing, and writable. Returns it as given (trimmed).
pub fn check_folder(dir: &str, data_dir: &Path) -> Result<PathBuf, String> {
    let dir = PathBuf::from(dir.trim());
    if dir.as_os_str().is_empty() || !dir.is_absolute() {
        return Err("the backup folder must be a full path (e.g. /home/me/kefu-backups)".into());
    }
    let data_dir = std::path::absolute(data_dir).map_err(|e| e.to_string())?;
    let canonical_data = std::fs::canonicalize(&data_dir).unwrap_or_else(|_| data_dir.clone());
    let inside = |candidate: &Path| {
        candidate.starts_with(&data_dir)
            || candidate.starts_with(&canonical_data)
            || data_dir.starts_with(candidate)
            || canonical_data.starts_with(candidate)
    };
    if inside(&dir) {
        return Err(format!(
            "{} is, holds or is inside Kefu's data folder ({}): choose a folder apart from it",
            dir.display(),
            data_dir.display()
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let canonical = std::fs::canonicalize(&dir).map_err(|e| e.to_string())?;
    if inside(&canonical) {
        return Err(format!(
            "{} leads into Kefu's data folder: choose a folder apart from it",
            dir.display()
        ));
    }
    if !canonical.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    let probe = canonical.join(format!(".kefu-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("cannot write into {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(dir)
}

/// The backups in `dir` (the names the scheduler and "Back up now" give),
/// newest first.
pub fn list(dir: &Path) -> Vec<BackupEntry> {
    let mut entries: Vec<BackupEntry> = schedule::backups(dir)
        .into_iter()
        .map(|(path, manifest)| BackupEntry {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bytes: manifest.total_bytes(),
            created_at: manifest.created_at,
            created_at_ms: manifest.created_at_ms,
            conversations: manifest.conversations,
            messages: manifest.messages,
            kefu_version: manifest.kefu_version,
            path,
        })
        .collect();
    entries.reverse();
    entries
}

/// "Back up now": a backup into `dir` by the running server.
pub async fn back_up_now(
    state: &AppState,
    dir: &Path,
    actor: AgentId,
) -> Result<ops::backup::Summary, String> {
    let to = dir.join(schedule::backup_name(kefu_server::time::now_ms()));
    ops::backup_into(state, &to, Some(actor))
        .await
        .map_err(|e| e.to_string())
}

/// "Restore on next start": verifies the backup now (so a damaged one is
/// refused at once, not at the start) and records it in the config dir.
pub async fn schedule_restore(config_dir: &Path, from: &str) -> Result<PendingRestore, String> {
    let from = PathBuf::from(from.trim());
    if !from.is_absolute() {
        return Err("name the backup by its full path".into());
    }
    if let Ok(manifest) = manifest::Manifest::read(&from) {
        restore::check_versions(&manifest).map_err(|e| format!("{e:#}"))?;
    }
    let verified = ops::verify::verify(&from)
        .await
        .map_err(|e| format!("the backup does not verify: {e:#}"))?;
    restore::check_versions(&verified.manifest).map_err(|e| format!("{e:#}"))?;
    let pending = PendingRestore {
        from,
        backup_created_at: verified.manifest.created_at,
        requested_at_ms: kefu_server::time::now_ms(),
    };
    write_json(config_dir, PENDING_FILE, &pending)?;
    Ok(pending)
}

/// The restore waiting for the next start, if any.
pub fn pending(config_dir: &Path) -> Option<PendingRestore> {
    read_json(config_dir, PENDING_FILE)
}

/// Cancels the restore waiting for the next start.
pub fn cancel_pending(config_dir: &Path) -> Result<(), String> {
    match std::fs::remove_file(config_dir.join(PENDING_FILE)) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

/// How the last restore at start went, if one ran.
pub fn last_outcome(config_dir: &Path) -> Option<RestoreOutcome> {
    read_json(config_dir, OUTCOME_FILE)
}

/// At start, before the embedded server opens the data dir: does the
/// restore asked for last time, if any (module doc). Returns its outcome,
/// also written to `restore-last.json`.
pub async fn apply_pending(dirs: &Dirs) -> Option<RestoreOutcome> {
    let path = dirs.config.join(PENDING_FILE);
    if !path.exists() {
        return None;
    }
    let pending: Option<PendingRestore> = read_json(&dirs.config, PENDING_FILE);
    // Tried once, whatever happens next.
    if let Err(error) = std::fs::remove_file(&path) {
        tracing::error!(%error, "cannot remove {PENDING_FILE}: the restore is not done");
        return None;
    }
    let Some(pending) = pending else {
        tracing::error!("{PENDING_FILE} is not readable: no restore");
        return None;
    };
    tracing::info!(from = %pending.from.display(), "restoring a backup before the server starts");
    let result = restore::restore(&pending.from, &dirs.data).await;
    let outcome = RestoreOutcome {
        from: pending.from.clone(),
        backup_created_at: pending.backup_created_at.clone(),
        at_ms: kefu_server::time::now_ms(),
        ok: result.is_ok(),
        previous: result.as_ref().ok().and_then(|r| r.previous.clone()),
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    match &outcome.error {
        None => tracing::info!(previous = ?outcome.previous, "backup restored"),
        Some(error) => tracing::error!(%error, "the restore failed; the data is as it was"),
    }
    if let Err(error) = write_json(&dirs.config, OUTCOME_FILE, &outcome) {
        tracing::warn!(%error, "cannot record how the restore went");
    }
    Some(outcome)
}

fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Option<T> {
    let bytes = manifest::read_bounded(&dir.join(name), MAX_FILE_BYTES).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    manifest::write_private_atomic(&dir.join(name), &bytes)
        .map_err(|e| format!("cannot write {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefs::Prefs;
    use crate::server::tests::prefs_on_free_port;

    /// A desktop's home in a temp dir, its preferences on a free port, and
    /// the embedded server started on them.
    async fn started() -> (
        tempfile::TempDir,
        Dirs,
        Prefs,
        crate::server::Embedded,
        AppState,
    ) {
        let home = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            data: home.path().join("data"),
            config: home.path().join("config"),
        };
        let prefs = prefs_on_free_port();
        let (running, _) = crate::server::start(&prefs, &dirs).await;
        let running = running.unwrap();
        let state = running.state().unwrap().clone();
        (home, dirs, prefs, running, state)
    }

    async fn agent_count(state: &AppState, username: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE username = ?")
            .bind(username)
            .fetch_one(&state.db)
            .await
            .unwrap()
    }

    /// The desktop's start-up path with a real data dir: a backup made by
    /// the running server, data written after it, a restore scheduled,
    /// the app stopped; at the next start `apply_pending` (what `run`
    /// calls before `server::start`) puts the backup in place, the data
    /// written after it is gone, the old data dir is kept beside, and the
    /// request is used up.
    #[tokio::test]
    async fn a_restore_scheduled_for_next_start_happens_at_the_next_start() {
        let (home, dirs, prefs, running, state) = started().await;
        let backups = home.path().join("backups");
        crate::server::create_owner(&state, "owner".into(), "correct horse 1".into(), None)
            .await
            .unwrap();
        let owner: AgentId = sqlx::query_scalar("SELECT id FROM agents WHERE username = 'owner'")
            .fetch_one(&state.db)
            .await
            .unwrap();
        let folder = check_folder(backups.to_str().unwrap(), &dirs.data).unwrap();
        let summary = back_up_now(&state, &folder, owner).await.unwrap();
        assert!(summary.bytes > 0);
        let listed = list(&folder);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, summary.path);
        let last = state.ops.last_backup().unwrap();
        assert!(last.ok && last.bytes == summary.bytes);
        // Written after the backup: must be gone after the restore.
        kefu_server::agents::create(
            &state.db,
            kefu_server::agents::NewAgent {
                username: "later".into(),
                password: "correct horse 2".into(),
                display_name: None,
                role: kefu_server::agents::Role::Agent,
            },
        )
        .await
        .unwrap();
        let pending = schedule_restore(&dirs.config, summary.path.to_str().unwrap())
            .await
            .unwrap();
        assert_eq!(super::pending(&dirs.config), Some(pending));
        drop(state);
        running.shutdown().await.unwrap();

        let outcome = apply_pending(&dirs).await.unwrap();
        assert!(outcome.ok, "{outcome:?}");
        assert_eq!(last_outcome(&dirs.config), Some(outcome.clone()));
        assert!(super::pending(&dirs.config).is_none(), "used up");
        let previous = outcome.previous.unwrap();
        assert!(
            previous
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("data.before-restore-")
        );
        assert!(previous.join("kefu.sqlite3").is_file(), "old data kept");
        let (running, _) = crate::server::start(&prefs, &dirs).await;
        let running = running.unwrap();
        let state = running.state().unwrap().clone();
        assert_eq!(agent_count(&state, "owner").await, 1);
        assert_eq!(
            agent_count(&state, "later").await,
            0,
            "after the backup: gone"
        );
        drop(state);
        running.shutdown().await.unwrap();
        // Nothing pending: the next start restores nothing.
        assert!(apply_pending(&dirs).await.is_none());
    }

    /// Only an active admin's token opens the tab's commands.
    #[tokio::test]
    async fn only_an_admin_token_is_accepted() {
        let (_home, _dirs, _prefs, running, state) = started().await;
        let new = |username: &str, role| kefu_server::agents::NewAgent {
            username: username.into(),
            password: "correct horse 1".into(),
            display_name: None,
            role,
        };
        let admin =
            kefu_server::agents::create(&state.db, new("boss", kefu_server::agents::Role::Admin))
                .await
                .unwrap();
        let agent =
            kefu_server::agents::create(&state.db, new("clerk", kefu_server::agents::Role::Agent))
                .await
                .unwrap();
        let admin_token = kefu_server::auth::issue_agent_token(&state.db, admin.id)
            .await
            .unwrap();
        let agent_token = kefu_server::auth::issue_agent_token(&state.db, agent.id)
            .await
            .unwrap();
        assert_eq!(require_admin(&state, &admin_token).await, Ok(admin.id));
        let refused = require_admin(&state, &agent_token).await.unwrap_err();
        assert!(refused.contains("only an admin"), "{refused}");
        for bad in ["", "kfa_not-a-token", &"x".repeat(300)] {
            assert!(require_admin(&state, bad).await.is_err());
        }
        drop(state);
        running.shutdown().await.unwrap();
    }

    /// A backup that fails is the tab's latest result, with why; no
    /// backup is listed for it.
    #[tokio::test]
    async fn a_failed_backup_is_the_latest_result() {
        let (home, _dirs, _prefs, running, state) = started().await;
        assert!(state.ops.last_backup().is_none());
        let taken = home.path().join("taken");
        std::fs::create_dir(&taken).unwrap();
        let error = ops::backup_into(&state, &taken, None).await.unwrap_err();
        assert!(error.to_string().contains("already exists"), "{error}");
        let last = state.ops.last_backup().unwrap();
        assert!(!last.ok && last.bytes == 0);
        assert!(last.error.unwrap().contains("already exists"));
        assert!(list(home.path()).is_empty());
        drop(state);
        running.shutdown().await.unwrap();
    }

    /// A backup damaged after it was scheduled: the start does not
    /// restore it, the data stays, and the outcome says why.
    #[tokio::test]
    async fn a_backup_damaged_before_the_start_is_not_restored_and_the_data_stays() {
        let (home, dirs, _prefs, running, state) = started().await;
        crate::server::create_owner(&state, "owner".into(), "correct horse 1".into(), None)
            .await
            .unwrap();
        let owner: AgentId = sqlx::query_scalar("SELECT id FROM agents WHERE username = 'owner'")
            .fetch_one(&state.db)
            .await
            .unwrap();
        let folder = check_folder(home.path().join("b").to_str().unwrap(), &dirs.data).unwrap();
        let summary = back_up_now(&state, &folder, owner).await.unwrap();
        // Verified when asked for.
        schedule_restore(&dirs.config, summary.path.to_str().unwrap())
            .await
            .unwrap();
        drop(state);
        running.shutdown().await.unwrap();
        // Then a byte flips.
        let sqlite = summary.path.join("kefu.sqlite3");
        let mut bytes = std::fs::read(&sqlite).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&sqlite, bytes).unwrap();

        let outcome = apply_pending(&dirs).await.unwrap();
        assert!(!outcome.ok && outcome.previous.is_none());
        assert!(outcome.error.unwrap().contains("does not verify"));
        assert!(dirs.data.join("kefu.sqlite3").is_file(), "data in place");
        let siblings: Vec<String> = std::fs::read_dir(home.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !siblings.iter().any(|n| n.contains("before-restore")),
            "{siblings:?}"
        );
        assert!(apply_pending(&dirs).await.is_none(), "tried once");
    }

    #[tokio::test]
    async fn a_damaged_or_foreign_backup_cannot_be_scheduled() {
        let home = tempfile::tempdir().unwrap();
        let config = home.path().join("config");
        let err = schedule_restore(&config, "relative/backup")
            .await
            .unwrap_err();
        assert!(err.contains("full path"), "{err}");
        let empty = home.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = schedule_restore(&config, empty.to_str().unwrap())
            .await
            .unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        assert!(pending(&config).is_none());
        // A backup from a newer Kefu is refused for that.
        std::fs::write(
            empty.join("manifest.json"),
            serde_json::json!({
                "format": 1, "kefu_version": "999.0.0", "schema_version": 1,
                "created_at": "x", "created_at_ms": 0, "source": "offline",
                "conversations": 0, "messages": 0, "attachments": 0, "files": []
            })
            .to_string(),
        )
        .unwrap();
        let err = schedule_restore(&config, empty.to_str().unwrap())
            .await
            .unwrap_err();
        assert!(err.contains("newer"), "{err}");
        assert!(pending(&config).is_none());
        cancel_pending(&config).unwrap();
    }

    #[test]
    fn the_folder_is_absolute_apart_from_the_data_and_writable() {
        let home = tempfile::tempdir().unwrap();
        let data = home.path().join("data");
        std::fs::create_dir(&data).unwrap();
        for bad in ["", "  ", "relative/x"] {
            assert!(check_folder(bad, &data).is_err(), "{bad:?}");
        }
        let inside = data.join("backups");
        assert!(check_folder(inside.to_str().unwrap(), &data).is_err());
        assert!(check_folder(data.to_str().unwrap(), &data).is_err());
        assert!(check_folder(home.path().to_str().unwrap(), &data).is_err());
        let file = home.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        assert!(check_folder(file.to_str().unwrap(), &data).is_err());
        // A link into the data dir is seen through.
        #[cfg(unix)]
        {
            let link = home.path().join("link");
            std::os::unix::fs::symlink(&data, &link).unwrap();
            assert!(check_folder(link.to_str().unwrap(), &data).is_err());
        }
        let good = home.path().join("nested/backups");
        assert_eq!(check_folder(good.to_str().unwrap(), &data).unwrap(), good);
        assert!(good.is_dir(), "created");
    }
}
