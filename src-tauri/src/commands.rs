//! The shell's IPC commands: all the page may ask of the native side. Each
//! is granted by name in src-tauri/capabilities/main-window.json to the
//! app's own window only; no core plugin API is exposed to JavaScript.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager, State};
use tauri_plugin_autostart::ManagerExt;

use crate::keystore::KeyStore;
use crate::lan::{self, Joining, LanInfo};
use crate::notify::{self, Decision, Event};
use crate::prefs::Prefs;
use crate::server::{self, Status};
use crate::{Shell, tray};

type Result<T> = std::result::Result<T, String>;

/// What the page needs to start: where the server is (or why it is not
/// running), whether the first-start setup is due, and the preferences.
#[derive(Debug, Serialize)]
pub struct DesktopConfig {
    pub status: Status,
    pub needs_setup: bool,
    pub prefs: Prefs,
    pub version: &'static str,
    pub data_dir: String,
    /// `solo`, `host` or `peer` (Settings → LAN).
    pub lan_role: &'static str,
}

#[tauri::command]
pub async fn desktop_config(shell: State<'_, Arc<Shell>>) -> Result<DesktopConfig> {
    let needs_setup = match server_of(&shell) {
        Some(running) => server::needs_setup(&running).await?,
        None => false,
    };
    Ok(DesktopConfig {
        lan_role: shell.role(),
        status: shell.status.lock().clone(),
        needs_setup,
        prefs: shell.prefs.lock().clone(),
        version: env!("CARGO_PKG_VERSION"),
        data_dir: shell.dirs.data.display().to_string(),
    })
}

/// The running server's state (an `Arc`), held for the duration of a call
/// without holding the lock. None on a peer: the shop's data is on the
/// host.
fn server_of(shell: &Shell) -> Option<kefu_server::state::AppState> {
    shell
        .server
        .lock()
        .as_ref()
        .and_then(|r| r.state().cloned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    username: String,
    password: String,
    display_name: Option<String>,
}

/// First start: creates the owner (admin) account; refused once any
/// agent exists.
#[tauri::command]
pub async fn setup_owner(shell: State<'_, Arc<Shell>>, owner: Owner) -> Result<()> {
    let running = server_of(&shell).ok_or("the server is not running")?;
    server::create_owner(&running, owner.username, owner.password, owner.display_name).await
}

/// The port was taken: saves another and restarts the app on it.
#[tauri::command]
pub fn use_port(app: AppHandle, shell: State<'_, Arc<Shell>>, port: u16) -> Result<()> {
    let prefs = Prefs {
        port,
        ..shell.prefs.lock().clone()
    };
    prefs.save(&shell.dirs.config).map_err(|e| e.to_string())?;
    app.restart()
}

fn keystore(shell: &Shell) -> Result<KeyStore> {
    shell
        .api_base()
        .map(|base| KeyStore::for_server(&base))
        .ok_or_else(|| "the server is not running".into())
}

/// The remembered session token, if "remember me" is on and there is one.
#[tauri::command]
pub async fn token_get(shell: State<'_, Arc<Shell>>) -> Result<Option<String>> {
    if !shell.prefs.lock().remember_me {
        return Ok(None);
    }
    let store = keystore(&shell)?;
    tauri::async_runtime::spawn_blocking(move || store.get())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

#[tauri::command]
pub async fn token_set(shell: State<'_, Arc<Shell>>, token: String) -> Result<()> {
    if !shell.prefs.lock().remember_me {
        return Ok(());
    }
    let store = keystore(&shell)?;
    tauri::async_runtime::spawn_blocking(move || store.set(&token))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

#[tauri::command]
pub async fn token_clear(shell: State<'_, Arc<Shell>>) -> Result<()> {
    let store = keystore(&shell)?;
    tauri::async_runtime::spawn_blocking(move || store.clear())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Saves the preferences the settings panel edits. The port and the
/// durability take effect at the next start.
#[tauri::command]
pub async fn set_prefs(app: AppHandle, shell: State<'_, Arc<Shell>>, prefs: Prefs) -> Result<()> {
    // The LAN settings change only through Settings → LAN (lan_host…),
    // which restarts the server: a panel opened before keeps them. So do
    // the backup settings (Settings → Backup, backup_settings) and the
    // updates (Settings → Updates, update_configure).
    let prefs = {
        let current = shell.prefs.lock();
        Prefs {
            lan: current.lan.clone(),
            backup: current.backup.clone(),
            updates: current.updates.clone(),
            ..prefs
        }
    };
    prefs.save(&shell.dirs.config).map_err(|e| e.to_string())?;
    let was = std::mem::replace(&mut *shell.prefs.lock(), prefs.clone());
    if was.autostart != prefs.autostart {
        let autostart = app.autolaunch();
        let result = if prefs.autostart {
            autostart.enable()
        } else {
            autostart.disable()
        };
        result.map_err(|e| e.to_string())?;
    }
    if was.remember_me && !prefs.remember_me {
        let store = keystore(&shell)?;
        tauri::async_runtime::spawn_blocking(move || store.clear())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The agent's availability changed in the page: the tray shows it.
#[tauri::command]
pub fn report_status(app: AppHandle, shell: State<'_, Arc<Shell>>, status: String) -> Result<()> {
    if !matches!(status.as_str(), "online" | "away" | "offline") {
        return Err("unknown status".into());
    }
    *shell.availability.lock() = status;
    tray::refresh(&app);
    Ok(())
}

/// The workstation's unread total changed: the tray, the window title and
/// the launcher badge show it.
#[tauri::command]
pub fn report_unread(app: AppHandle, shell: State<'_, Arc<Shell>>, count: u32) -> Result<()> {
    if shell.unread.lock().set(count) {
        tray::refresh(&app);
    }
    Ok(())
}

/// An event from the live connection: maybe a notification.
#[tauri::command]
pub fn notify(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
    event: Event,
    zh: bool,
) -> Result<Decision> {
    let focused = app
        .get_webview_window(crate::MAIN)
        .and_then(|w| Some(w.is_focused().ok()? && w.is_visible().ok()?))
        .unwrap_or(false);
    let decision = notify::decide(&event, &shell.prefs.lock().notify, focused);
    if decision == Decision::Show {
        let summary = notify::summary(event.kind, &event.title, zh);
        let route = notify::route(event.kind, &event.target);
        let click = app.clone();
        let shown = notify::show(&summary, &event.body, move || {
            crate::show_main(&click);
            crate::call_page(&click, "open", &serde_json::Value::String(route));
        });
        if let Err(error) = shown {
            tracing::warn!(%error, "cannot show a notification");
        }
    }
    Ok(decision)
}

/// Opens a link from a message in the system browser (web and mail only).
#[tauri::command]
pub fn open_external(app: AppHandle, url: String) -> Result<()> {
    use tauri_plugin_opener::OpenerExt;
    let parsed = tauri::Url::parse(&url).map_err(|e| e.to_string())?;
    if !crate::is_external_url(&parsed) {
        return Err("only http, https and mailto links open outside".into());
    }
    app.opener()
        .open_url(parsed.as_str(), None::<&str>)
        .map_err(|e| e.to_string())
}

/// Settings → LAN: this computer's role, device ID, LAN address, the link
/// to the host (on a peer) and the pairing in progress.
#[tauri::command]
pub async fn lan_info(shell: State<'_, Arc<Shell>>) -> Result<LanInfo> {
    let (device_id, _, shop_name) = lan::identity_and_state(&shell.dirs.data).await?;
    let prefs = shell.prefs.lock().lan.clone();
    let listening = shell
        .server
        .lock()
        .as_ref()
        .and_then(|s| s.lan_addr())
        .map(|a| a.to_string());
    Ok(LanInfo {
        role: shell.role(),
        short_id: device_id.short(),
        device_id: device_id.to_string(),
        host_bind: prefs.host_bind.map(|b| b.to_string()),
        listening,
        mdns: prefs.mdns,
        shop_name: shop_name.map(|n| n.to_string()),
        link: shell.link(),
        joining: shell.pairing.view(),
        default_bind: crate::prefs::DEFAULT_LAN_BIND,
    })
}

/// The join screen: the shop hosts found over mDNS (a hint; pairing still
/// goes through the code). `active: false` stops looking (the screen
/// closed); the browser also stops by itself when no longer asked.
#[tauri::command]
pub async fn lan_discover(
    shell: State<'_, Arc<Shell>>,
    active: bool,
) -> Result<Vec<lan::FoundHost>> {
    if !active {
        shell.discovery.stop().await;
        return Ok(Vec::new());
    }
    let (device_id, _, _) = lan::identity_and_state(&shell.dirs.data).await?;
    shell.discovery.found(&device_id)
}

/// Saves the LAN preferences and restarts the server; on failure the
/// previous ones are put back (and the server restarted with them).
async fn apply_lan(app: &AppHandle, shell: &Arc<Shell>, lan: crate::prefs::LanPrefs) -> Result<()> {
    let before = shell.prefs.lock().clone();
    let prefs = Prefs {
        lan,
        ..before.clone()
    };
    prefs.save(&shell.dirs.config).map_err(|e| e.to_string())?;
    *shell.prefs.lock() = prefs;
    if let Err(error) = crate::restart_server(app, shell).await {
        tracing::warn!(%error, "the server did not start with the new LAN settings");
        before.save(&shell.dirs.config).map_err(|e| e.to_string())?;
        *shell.prefs.lock() = before;
        crate::restart_server(app, shell).await?;
        return Err(error);
    }
    Ok(())
}

/// "Make this computer the shop's host": a LAN listener (TLS) on `bind`,
/// kept in the preferences; the server restarts at once. `shop_name` is
/// what mDNS announces and peers show.
#[tauri::command]
pub async fn lan_host(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
    bind: String,
    mdns: bool,
    shop_name: Option<String>,
) -> Result<()> {
    let shell = Arc::clone(&shell);
    if shell.role() == "peer" {
        return Err("this computer has joined a shop's host: leave it first".into());
    }
    let bind: std::net::SocketAddr = bind
        .trim()
        .parse()
        .map_err(|_| format!("{bind:?} is not an address and port (e.g. 0.0.0.0:5339)"))?;
    lan::set_shop_name(&shell.dirs.data, shop_name).await?;
    let lan = crate::prefs::LanPrefs {
        host_bind: Some(bind),
        mdns,
    };
    let probe = Prefs {
        lan: lan.clone(),
        ..shell.prefs.lock().clone()
    };
    probe.validate().map_err(|e| e.to_string())?;
    apply_lan(&app, &shell, lan).await
}

/// Stops hosting: back to solo (the shop's data stays here; paired
/// devices stay approved for when it hosts again).
#[tauri::command]
pub async fn lan_stop_hosting(app: AppHandle, shell: State<'_, Arc<Shell>>) -> Result<()> {
    let shell = Arc::clone(&shell);
    let mdns = shell.prefs.lock().lan.mdns;
    lan::become_solo(&shell.dirs.data).await?;
    apply_lan(
        &app,
        &shell,
        crate::prefs::LanPrefs {
            host_bind: None,
            mdns,
        },
    )
    .await
}

/// "Join a shop's host": `target` is `ADDRESS:PORT` or a pairing link.
/// Pairing runs in the background (`lan_info` shows its phase and the
/// code); once the admin approved on the host, the server restarts as a
/// peer and the agent signs in with their account on the host.
#[tauri::command]
pub async fn lan_join(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
    target: String,
    name: Option<String>,
) -> Result<Joining> {
    let shell = Arc::clone(&shell);
    if shell.role() != "solo" {
        return Err(match shell.role() {
            "host" => "this computer hosts the shop: stop hosting first",
            _ => "this computer has joined a shop's host already",
        }
        .into());
    }
    let (address, expected) = lan::join_target(&target)?;
    let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    shell.pairing.cancel();
    let view = Joining::Connecting {
        host: address.to_string(),
    };
    shell.pairing.set(view.clone());
    let task_shell = Arc::clone(&shell);
    let task = tauri::async_runtime::spawn(async move {
        let shell = task_shell;
        let host = address.to_string();
        let paired = lan::pair(
            &shell.dirs.data,
            address,
            expected,
            name,
            Arc::clone(&shell.pairing),
        )
        .await;
        if let Err(message) = paired {
            shell.pairing.set(Joining::Failed { message });
            return;
        }
        // The solo store's sign-in means nothing on the host.
        forget_token(&shell).await;
        match crate::restart_server(&app, &shell).await {
            Ok(()) => shell.pairing.set(Joining::Joined { host }),
            Err(message) => shell.pairing.set(Joining::Failed { message }),
        }
    });
    *shell.pairing.task.lock() = Some(task);
    Ok(view)
}

#[tauri::command]
pub fn lan_join_cancel(shell: State<'_, Arc<Shell>>) -> Result<()> {
    shell.pairing.cancel();
    Ok(())
}

/// Leaves the shop's host: this computer is solo again, with its own
/// store as it was before joining.
#[tauri::command]
pub async fn lan_leave(app: AppHandle, shell: State<'_, Arc<Shell>>) -> Result<()> {
    let shell = Arc::clone(&shell);
    if shell.role() != "peer" {
        return Err("this computer has not joined a shop's host".into());
    }
    shell.pairing.cancel();
    lan::become_solo(&shell.dirs.data).await?;
    forget_token(&shell).await;
    crate::restart_server(&app, &shell).await
}

/// The remembered sign-in belongs to the store it was made on: after
/// joining or leaving a host it is worth nothing.
async fn forget_token(shell: &Shell) {
    if !shell.prefs.lock().remember_me {
        return;
    }
    if let Ok(store) = keystore(shell) {
        let cleared = tauri::async_runtime::spawn_blocking(move || store.clear()).await;
        if !matches!(cleared, Ok(Ok(()))) {
            tracing::warn!("cannot forget the remembered sign-in");
        }
    }
}

/// Settings → Backup: the folder and schedule, the backups in the folder,
/// how the latest backup went, and any restore pending or done at start.
#[derive(Debug, Serialize)]
pub struct BackupInfo {
    pub prefs: crate::prefs::BackupPrefs,
    pub data_dir: String,
    pub backups: Vec<crate::backup::BackupEntry>,
    /// The latest backup the running server attempted (None since start).
    pub last: Option<kefu_server::ops::LastBackup>,
    pub pending: Option<crate::backup::PendingRestore>,
    pub restored: Option<crate::backup::RestoreOutcome>,
}

/// The running shop's state, for an admin only (Settings → Backup).
async fn admin_server(
    shell: &Shell,
    token: &str,
) -> Result<(kefu_server::state::AppState, kefu_server::ids::AgentId)> {
    let state = server_of(shell).ok_or(
        "backups are made where the shop's data is: on the shop's host, or here once the server runs",
    )?;
    let admin = crate::backup::require_admin(&state, token).await?;
    Ok((state, admin))
}

#[tauri::command]
pub async fn backup_info(shell: State<'_, Arc<Shell>>, token: String) -> Result<BackupInfo> {
    let (state, _) = admin_server(&shell, &token).await?;
    let prefs = shell.prefs.lock().backup.clone();
    let backups = match &prefs.dir {
        Some(dir) => {
            let dir = dir.clone();
            tauri::async_runtime::spawn_blocking(move || crate::backup::list(&dir))
                .await
                .map_err(|e| e.to_string())?
        }
        None => Vec::new(),
    };
    Ok(BackupInfo {
        prefs,
        data_dir: shell.dirs.data.display().to_string(),
        backups,
        last: state.ops.last_backup(),
        pending: crate::backup::pending(&shell.dirs.config),
        restored: crate::backup::last_outcome(&shell.dirs.config),
    })
}

/// Saves the folder and schedule. The schedule is the embedded server's
/// own: when it changes, the server restarts with it (the page reloads);
/// if it does not start so, the previous settings are put back. Returns
/// whether the server restarted.
#[tauri::command]
pub async fn backup_settings(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
    token: String,
    dir: String,
    scheduled: bool,
    interval_minutes: u64,
    keep: usize,
) -> Result<bool> {
    let shell = Arc::clone(&shell);
    admin_server(&shell, &token).await?;
    let dir = match dir.trim() {
        "" => None,
        typed => {
            let typed = typed.to_owned();
            let data = shell.dirs.data.clone();
            Some(
                tauri::async_runtime::spawn_blocking(move || {
                    crate::backup::check_folder(&typed, &data)
                })
                .await
                .map_err(|e| e.to_string())??,
            )
        }
    };
    let backup = crate::prefs::BackupPrefs {
        dir,
        scheduled,
        interval_minutes,
        keep,
    };
    let before = shell.prefs.lock().clone();
    let prefs = Prefs {
        backup: backup.clone(),
        ..before.clone()
    };
    prefs.validate().map_err(|e| e.to_string())?;
    prefs.save(&shell.dirs.config).map_err(|e| e.to_string())?;
    *shell.prefs.lock() = prefs;
    let schedule = |b: &crate::prefs::BackupPrefs| {
        b.scheduled
            .then(|| (b.dir.clone(), b.interval_minutes, b.keep))
    };
    if schedule(&before.backup) == schedule(&backup) {
        return Ok(false);
    }
    if let Err(error) = crate::restart_server(&app, &shell).await {
        tracing::warn!(%error, "the server did not start with the new backup schedule");
        before.save(&shell.dirs.config).map_err(|e| e.to_string())?;
        *shell.prefs.lock() = before;
        crate::restart_server(&app, &shell).await?;
        return Err(error);
    }
    Ok(true)
}

/// "Back up now" into the chosen folder.
#[tauri::command]
pub async fn backup_now(
    shell: State<'_, Arc<Shell>>,
    token: String,
) -> Result<kefu_server::ops::backup::Summary> {
    let (state, admin) = admin_server(&shell, &token).await?;
    let dir = shell
        .prefs
        .lock()
        .backup
        .dir
        .clone()
        .ok_or("choose a backup folder first")?;
    crate::backup::back_up_now(&state, &dir, admin).await
}

/// "Restore on next start": `from` is verified now; the restore happens
/// when the app starts next, before the embedded server opens the data.
#[tauri::command]
pub async fn backup_restore(
    shell: State<'_, Arc<Shell>>,
    token: String,
    from: String,
) -> Result<crate::backup::PendingRestore> {
    admin_server(&shell, &token).await?;
    crate::backup::schedule_restore(&shell.dirs.config, &from).await
}

#[tauri::command]
pub async fn backup_restore_cancel(shell: State<'_, Arc<Shell>>, token: String) -> Result<()> {
    admin_server(&shell, &token).await?;
    crate::backup::cancel_pending(&shell.dirs.config)
}
