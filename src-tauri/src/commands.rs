//! The shell's IPC commands: all the page may ask of the native side. Each
//! is granted by name in src-tauri/capabilities/main-window.json to the
//! app's own window only; no core plugin API is exposed to JavaScript.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager, State};
use tauri_plugin_autostart::ManagerExt;

use crate::keystore::KeyStore;
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
}

#[tauri::command]
pub async fn desktop_config(shell: State<'_, Arc<Shell>>) -> Result<DesktopConfig> {
    let needs_setup = match server_of(&shell) {
        Some(running) => server::needs_setup(&running).await?,
        None => false,
    };
    Ok(DesktopConfig {
        status: shell.status.clone(),
        needs_setup,
        prefs: shell.prefs.lock().clone(),
        version: env!("CARGO_PKG_VERSION"),
        data_dir: shell.dirs.data.display().to_string(),
    })
}

/// The running server's state (an `Arc`), held for the duration of a call
/// without holding the lock.
fn server_of(shell: &Shell) -> Option<kefu_server::state::AppState> {
    shell.server.lock().as_ref().map(|r| r.state().clone())
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
