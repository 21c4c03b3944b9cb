//! Kefu desktop: the agent workstation (ui/) in a Tauri 2 window, with the
//! kefu-server library running in this process on loopback, plus what only
//! a desktop app gives: native notifications, a tray icon with the unread
//! count and availability, the session token in the OS keyring, start at
//! login, one instance, remembered window state. See docs/DESKTOP.md.

// Tests may unwrap; the shell itself never does.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod backup;
pub mod commands;
pub mod keystore;
pub mod lan;
pub mod notify;
pub mod prefs;
pub mod server;
pub mod tray;
pub mod updates;

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tauri::{Manager, RunEvent, WebviewWindowBuilder, WindowEvent};
use tauri_plugin_opener::OpenerExt;

use crate::lan::Pairing;
use crate::notify::Unread;
use crate::prefs::Prefs;
use crate::server::{Dirs, Embedded, Status};

/// Label of the one window.
pub const MAIN: &str = "main";
/// Command-line flag (used by start at login): start hidden in the tray.
pub const HIDDEN_FLAG: &str = "--hidden";

/// Everything the shell shares between commands, tray and events.
pub struct Shell {
    pub dirs: Dirs,
    pub prefs: Mutex<Prefs>,
    pub status: Mutex<Status>,
    pub server: Mutex<Option<Embedded>>,
    /// Joining a host (Settings → LAN), one pairing at a time.
    pub pairing: Arc<Pairing>,
    /// Shop hosts found over mDNS, while the join screen is open.
    pub discovery: Arc<crate::lan::Discovery>,
    /// Role changes restart the embedded server one at a time.
    pub restarting: tokio::sync::Mutex<()>,
    /// On a peer: the task passing the link's changes to the tray and page.
    pub link_watch: Mutex<Option<tauri::async_runtime::JoinHandle<()>>>,
    pub unread: Mutex<Unread>,
    /// The agent's availability as the page last reported it.
    pub availability: Mutex<String>,
    pub started: Instant,
}

impl Shell {
    pub fn api_base(&self) -> Option<String> {
        match &*self.status.lock() {
            Status::Running { api_base } => Some(api_base.clone()),
            _ => None,
        }
    }

    /// `solo`, `host` (a LAN listener is up) or `peer`.
    pub fn role(&self) -> &'static str {
        match self.server.lock().as_ref() {
            Some(Embedded::Peer(_)) => "peer",
            Some(embedded) if embedded.lan_addr().is_some() => "host",
            _ => "solo",
        }
    }

    /// On a peer: the link to the host now.
    pub fn link(&self) -> Option<kefu_server::lan::peer::link::LinkStatus> {
        self.server
            .lock()
            .as_ref()
            .and_then(Embedded::peer)
            .map(|peer| peer.status())
    }
}

/// Stops the embedded server and starts it again in the role the
/// preferences and `lan/state.json` now say, on the same loopback port (so
/// the page's address stays). A start that fails leaves the server
/// stopped and the status failed; the caller may set things back and call
/// this again.
pub async fn restart_server(app: &tauri::AppHandle, shell: &Arc<Shell>) -> Result<(), String> {
    let _one_at_a_time = shell.restarting.lock().await;
    if let Some(watch) = shell.link_watch.lock().take() {
        watch.abort();
    }
    let running = shell.server.lock().take();
    if let Some(running) = running {
        running.shutdown().await.map_err(|e| format!("{e:#}"))?;
    }
    let prefs = shell.prefs.lock().clone();
    let (running, status) = server::start(&prefs, &shell.dirs).await;
    tracing::info!(?status, "embedded server restarted");
    *shell.status.lock() = status.clone();
    let started = running.is_some();
    *shell.server.lock() = running;
    watch_link(app, shell);
    watch_became_host(app, shell);
    tray::refresh(app);
    match status {
        Status::Running { .. } if started => Ok(()),
        Status::Failed { message } => Err(message),
        Status::PortInUse { port, .. } => Err(format!("port {port} is in use")),
        Status::Running { .. } => Err("the server did not start".into()),
    }
}

/// On a peer, passes each change of the link to the tray and the page.
fn watch_link(app: &tauri::AppHandle, shell: &Arc<Shell>) {
    let Some(mut changes) = shell
        .server
        .lock()
        .as_ref()
        .and_then(Embedded::peer)
        .map(|peer| peer.link().subscribe())
    else {
        return;
    };
    let app = app.clone();
    let weak = Arc::downgrade(shell);
    let task = tauri::async_runtime::spawn(async move {
        loop {
            tray::refresh(&app);
            if let Some(link) = weak.upgrade().and_then(|shell| shell.link()) {
                let arg = serde_json::to_value(link).unwrap_or(serde_json::Value::Null);
                call_page(&app, "link", &arg);
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    *shell.link_watch.lock() = Some(task);
}

/// On a peer: when this computer becomes the shop's host from Settings →
/// LAN (its admin took the shop over, or the host handed the shop to this
/// computer's copy), the peer stops by itself; the preferences then say to
/// host (on the address the take-over named, else the one they had, else
/// the default) and the server starts again as the host on the same
/// loopback port. The page waits for it and reloads (`LanThisCopy`).
fn watch_became_host(app: &tauri::AppHandle, shell: &Arc<Shell>) {
    let Some((stopped, became_host)) = shell
        .server
        .lock()
        .as_ref()
        .and_then(Embedded::peer)
        .map(|peer| (peer.shutdown_token(), peer.became_host()))
    else {
        return;
    };
    let app = app.clone();
    let weak = Arc::downgrade(shell);
    tauri::async_runtime::spawn(async move {
        stopped.cancelled().await;
        let Some(host) = became_host.lock().clone() else {
            return;
        };
        let Some(shell) = weak.upgrade() else {
            return;
        };
        tracing::warn!(term = host.term, "this computer is now the shop's host");
        let prefs = {
            let mut prefs = shell.prefs.lock();
            let default = crate::prefs::DEFAULT_LAN_BIND.parse().ok();
            prefs.lan.host_bind = host.lan_bind.or(prefs.lan.host_bind).or(default);
            prefs.clone()
        };
        if let Err(error) = prefs.save(&shell.dirs.config) {
            tracing::error!(%error, "cannot save the preferences to host");
        }
        if let Err(error) = restart_server(&app, &shell).await {
            tracing::error!(%error, "the server did not start as the shop's host");
        }
    });
}

/// Runs the app until the agent quits.
pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    init_tracing();
    // Lives as long as the app: Tauri's async runtime and the server's.
    let _runtime = desktop_runtime()?;
    let hidden = std::env::args().any(|a| a == HIDDEN_FLAG);
    tauri::Builder::default()
        // First: a second launch only focuses the running one.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            show_main(app);
        }))
        .plugin(
            tauri_plugin_window_state::Builder::default()
                .with_state_flags(
                    tauri_plugin_window_state::StateFlags::all()
                        - tauri_plugin_window_state::StateFlags::VISIBLE,
                )
                .build(),
        )
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec![HIDDEN_FLAG]),
        ))
        .plugin(tauri_plugin_opener::init())
        // Checks and installs only through our update_* commands (no
        // `updater:` permission for the page), with the shop's key.
        .plugin(tauri_plugin_updater::Builder::new().build())
        .invoke_handler(tauri::generate_handler![
            commands::desktop_config,
            commands::setup_owner,
            commands::use_port,
            commands::token_get,
            commands::token_set,
            commands::token_clear,
            commands::set_prefs,
            commands::report_status,
            commands::report_unread,
            commands::notify,
            commands::open_external,
            commands::lan_info,
            commands::lan_discover,
            commands::lan_host,
            commands::lan_stop_hosting,
            commands::lan_join,
            commands::lan_join_cancel,
            commands::lan_leave,
            commands::backup_info,
            commands::backup_settings,
            commands::backup_now,
            commands::backup_restore,
            commands::backup_restore_cancel,
            updates::update_info,
            updates::update_configure,
            updates::update_check,
            updates::update_install,
        ])
        .setup(move |app| {
            let dirs = Dirs::resolve(app.path().app_data_dir()?, app.path().app_config_dir()?);
            let prefs = Prefs::load(&dirs.config).unwrap_or_else(|error| {
                tracing::error!(%error, "bad desktop.toml: using the defaults");
                Prefs::default()
            });
            let prefs = match std::env::var("KEFU_DESKTOP_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
            {
                Some(port) => Prefs { port, ..prefs },
                None => prefs,
            };
            // A restore asked for in Settings → Backup happens here, before
            // the embedded server opens the data dir.
            tauri::async_runtime::block_on(backup::apply_pending(&dirs));
            let (running, status) = tauri::async_runtime::block_on(server::start(&prefs, &dirs));
            tracing::info!(
                ?status,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "embedded server"
            );
            let shell = Arc::new(Shell {
                dirs,
                prefs: Mutex::new(prefs),
                status: Mutex::new(status),
                server: Mutex::new(running),
                pairing: Arc::new(Pairing::default()),
                discovery: Arc::new(crate::lan::Discovery::default()),
                restarting: tokio::sync::Mutex::new(()),
                link_watch: Mutex::new(None),
                unread: Mutex::new(Unread::default()),
                availability: Mutex::new("online".into()),
                started,
            });
            app.manage(Arc::clone(&shell));
            app.manage(updates::Pending::default());
            tray::create(app.handle())?;
            create_window(app.handle(), &shell, !hidden)?;
            watch_link(app.handle(), &shell);
            watch_became_host(app.handle(), &shell);
            quit_on_signals(app.handle());
            updates::check_on_start(app.handle(), &shell);
            Ok(())
        })
        .build(tauri::generate_context!("../tauri.conf.json"))?
        .run(|app, event| match event {
            // Closing the last window does not quit: the tray stays.
            RunEvent::ExitRequested { api, code, .. } if code.is_none() && close_to_tray(app) => {
                api.prevent_exit();
            }
            RunEvent::Exit => stop_server(app),
            _ => {}
        });
    Ok(())
}

/// Tauri's async runtime, which the embedded server runs on: two worker
/// threads rather than one per core (a shop's few agents keep one busy at
/// most; each worker is a stack and an allocator arena), blocking threads
/// capped at 16 (SQLite through sqlx, file I/O). Not with
/// `KEFU_DESKTOP_MEMORY=server`: then Tauri's own default, one worker per core.
fn desktop_runtime() -> anyhow::Result<Option<tokio::runtime::Runtime>> {
    if server::memory_profile() == kefu_server::store::memory::MemoryProfile::Server {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_name("kefu-rt")
        .enable_all()
        .build()?;
    tauri::async_runtime::set(runtime.handle().clone());
    Ok(Some(runtime))
}

/// The webview's memory, where the OS webview lets us set it. WebKitGTK:
/// the "document viewer" cache model (one page that never navigates: no
/// page cache, the smallest memory caches) and no back/forward cache.
/// `KEFU_DESKTOP_ACCELERATION=0` also turns accelerated compositing off
/// (the page drawn by the CPU): the web process's RSS falls by about a
/// quarter under Xvfb, but with it the desktop end-to-end tests hung now
/// and then while typing, so it is not the default yet (docs/DESKTOP.md,
/// "Memory").
/// WebView2 (Windows) and WKWebView (macOS) are left as they are (see
/// docs/DESKTOP.md, "Memory").
fn tune_webview(window: &tauri::WebviewWindow) {
    if server::memory_profile() == kefu_server::store::memory::MemoryProfile::Server {
        return;
    }
    #[cfg(target_os = "linux")]
    let _ = window.with_webview(|webview| {
        use webkit2gtk::{
            CacheModel, HardwareAccelerationPolicy, SettingsExt, WebContextExt, WebViewExt,
        };
        let view = webview.inner();
        if let Some(context) = view.context() {
            context.set_cache_model(CacheModel::DocumentViewer);
        }
        if let Some(settings) = WebViewExt::settings(&view) {
            settings.set_enable_page_cache(false);
            if std::env::var_os("KEFU_DESKTOP_ACCELERATION").is_some_and(|v| v == "0") {
                settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
            }
        }
    });
    #[cfg(not(target_os = "linux"))]
    let _ = window;
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEFU_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second init (tests) is harmless.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// SIGTERM (logout, `kill`) and Ctrl+C quit like the tray's Quit: the
/// embedded server is stopped cleanly, not cut off.
fn quit_on_signals(app: &tauri::AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        tracing::info!("quit by signal");
        app.exit(0);
    });
}

fn close_to_tray(app: &tauri::AppHandle) -> bool {
    app.try_state::<Arc<Shell>>()
        .is_some_and(|shell| shell.prefs.lock().close_to_tray)
}

/// Quit: stop the embedded server cleanly (drain the log, flush, close).
fn stop_server(app: &tauri::AppHandle) {
    let Some(shell) = app.try_state::<Arc<Shell>>() else {
        return;
    };
    let running = shell.server.lock().take();
    if let Some(running) = running {
        match tauri::async_runtime::block_on(running.shutdown()) {
            Ok(()) => tracing::info!("embedded server stopped"),
            Err(error) => tracing::error!(%error, "embedded server stopped with an error"),
        }
    }
}

/// The page learns where its server is before any of its scripts runs.
fn init_script(status: &Status) -> String {
    let base = match status {
        Status::Running { api_base } => serde_json::Value::String(api_base.clone()),
        _ => serde_json::Value::Null,
    };
    format!("window.__KEFU_API_BASE__ = {base}; window.__KEFU_DESKTOP__ = true;")
}

/// Whether a URL is the app's own assets (the only place with IPC).
pub fn is_app_url(url: &tauri::Url) -> bool {
    match url.scheme() {
        "tauri" => url.host_str() == Some("localhost"),
        "http" | "https" => url.host_str() == Some("tauri.localhost"),
        _ => false,
    }
}

/// Links the page may hand to the system: web and mail, nothing else.
pub fn is_external_url(url: &tauri::Url) -> bool {
    matches!(url.scheme(), "http" | "https" | "mailto")
}

fn create_window(app: &tauri::AppHandle, shell: &Shell, visible: bool) -> tauri::Result<()> {
    let config = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == MAIN)
        .cloned()
        .ok_or(tauri::Error::WindowNotFound)?;
    let nav_app = app.clone();
    let new_window_app = app.clone();
    let started = shell.started;
    let window = WebviewWindowBuilder::from_config(app, &config)?
        .initialization_script(init_script(&shell.status.lock()))
        // The window never leaves the app's assets: other links open in the
        // system browser, so no remote page ever runs with IPC.
        .on_navigation(move |url| {
            if is_app_url(url) {
                return true;
            }
            if is_external_url(url) {
                open_outside(&nav_app, url.as_str());
            }
            false
        })
        .on_new_window(move |url, _features| {
            if is_external_url(&url) {
                open_outside(&new_window_app, url.as_str());
            }
            tauri::webview::NewWindowResponse::Deny
        })
        .on_page_load(move |window, payload| {
            if matches!(payload.event(), tauri::webview::PageLoadEvent::Finished) {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "window loaded"
                );
                if visible {
                    let _ = window.show();
                }
            }
        })
        .build()?;
    tune_webview(&window);
    let events = window.clone();
    window.on_window_event(move |event| match event {
        WindowEvent::CloseRequested { api, .. } if close_to_tray(events.app_handle()) => {
            api.prevent_close();
            let _ = events.hide();
        }
        _ => {}
    });
    Ok(())
}

fn open_outside(app: &tauri::AppHandle, url: &str) {
    if let Err(error) = app.opener().open_url(url, None::<&str>) {
        tracing::warn!(%error, "cannot open a link in the system browser");
    }
}

/// Shows, unminimizes and focuses the window.
pub fn show_main(app: &tauri::AppHandle) {
    if let Some(window) = app.get_webview_window(MAIN) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
}

/// Calls one of the page's desktop hooks (ui/src/desktop/boot.ts) with a
/// JSON argument: the only way the shell speaks to the page.
pub fn call_page(app: &tauri::AppHandle, hook: &str, arg: &serde_json::Value) {
    if let Some(window) = app.get_webview_window(MAIN) {
        let hook = serde_json::Value::String(hook.into());
        let script = format!("window.__kefuDesktop && window.__kefuDesktop.call({hook}, {arg});");
        if let Err(error) = window.eval(script) {
            tracing::warn!(%error, "cannot reach the page");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_app_assets_are_app_urls() {
        let app = |s: &str| is_app_url(&tauri::Url::parse(s).unwrap());
        assert!(app("tauri://localhost/index.html"));
        assert!(app("http://tauri.localhost/#/chats"));
        assert!(!app("http://127.0.0.1:5338/"));
        assert!(!app("https://evil.example/"));
        assert!(!app("tauri://evil/"));
        let ext = |s: &str| is_external_url(&tauri::Url::parse(s).unwrap());
        assert!(ext("https://shop.example/p/1") && ext("mailto:a@b.c"));
        assert!(!ext("file:///etc/passwd") && !ext("javascript:alert(1)"));
    }

    #[test]
    fn init_script_sets_the_api_base_as_json() {
        let s = init_script(&Status::Running {
            api_base: "http://127.0.0.1:5338".into(),
        });
        assert!(s.starts_with("window.__KEFU_API_BASE__ = \"http://127.0.0.1:5338\";"));
        let s = init_script(&Status::Failed {
            message: "x\"</script>".into(),
        });
        assert!(s.starts_with("window.__KEFU_API_BASE__ = null;"));
    }
}
