//! Updates from the shop's own server (Settings → Updates; docs/DESKTOP.md,
//! "Updates"), with Tauri's updater plugin: a `latest.json` at the URL the
//! shop sets, artifacts signed with the shop's minisign key.
//!
//! Off by default: no URL, no request. The page may set the URL and "check
//! on start", ask for a check and, once the agent has seen the version and
//! its notes and said yes, install that version. It can never change the
//! public key the artifacts are checked against: that comes from
//! `desktop.toml` (`[updates] pubkey`) or, failing that, from the build
//! (`plugins.updater.pubkey` in tauri.conf.json). So a page that was made
//! to point the app at another server still only gets artifacts the shop
//! signed. Nothing is installed without the agent's yes, and a copy of
//! the app that was not installed from a package (a development build) is
//! never overwritten.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager, State};
use tauri_plugin_updater::{Update, UpdaterExt};

use crate::Shell;
use crate::prefs::Prefs;

/// The longest update URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// How long a check may take (fetching `latest.json`).
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long downloading an artifact may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// `[updates]` in desktop.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct UpdatePrefs {
    /// The shop's `latest.json`. None: updates are off (the default).
    pub url: Option<String>,
    /// Check once at each start (off by default).
    pub check_on_start: bool,
    /// The shop's public key, as `tauri signer generate` writes it (the
    /// base64 of the `.pub` file). Only from this file: the page cannot
    /// set it. None: the key built into the app, if any.
    pub pubkey: Option<String>,
}

/// Why a URL or key is refused, or a check or install failed: a stable
/// `code` the page words in its language, and the detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct UpdateError {
    pub code: &'static str,
    pub message: String,
}

impl UpdateError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        UpdateError {
            code,
            message: message.into(),
        }
    }
}

/// Whether plain `http://` update URLs are accepted: in development
/// builds only (the tests' local server). Release builds want `https`,
/// as the plugin does: `latest.json` itself is not signed.
pub const ALLOW_HTTP: bool = cfg!(debug_assertions);

/// Checks an update URL typed by the shop: http(s) with a host, no
/// credentials in it (they would land in logs), not too long.
pub fn validate_url(url: &str) -> Result<tauri::Url, UpdateError> {
    let bad = |why: &str| UpdateError::new("bad_url", why);
    if url.len() > MAX_URL_LEN {
        return Err(bad("the address is too long"));
    }
    let parsed = tauri::Url::parse(url.trim()).map_err(|e| bad(&e.to_string()))?;
    match parsed.scheme() {
        "https" => {}
        "http" if ALLOW_HTTP => {}
        "http" => return Err(bad("the address must start with https://")),
        _ => return Err(bad("the address must start with https://")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("the address has no server name"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("the address must not carry a user name or password"));
    }
    Ok(parsed)
}

/// The key ID (as minisign prints it) of a public key in the plugin's
/// format: the base64 of a minisign `.pub` file. Refuses anything else.
pub fn key_id(pubkey: &str) -> Result<String, UpdateError> {
    use base64::Engine as _;
    let bad = || UpdateError::new("bad_key", "the public key is not a minisign public key");
    let text = base64::engine::general_purpose::STANDARD
        .decode(pubkey.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(bad)?;
    minisign_verify::PublicKey::decode(&text).map_err(|_| bad())?;
    // The key line: "Ed" + key ID (8 bytes, little endian) + 32 bytes.
    let line = text.lines().nth(1).ok_or_else(bad)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .map_err(|_| bad())?;
    let id = raw.get(2..10).ok_or_else(bad)?;
    Ok(id.iter().rev().map(|b| format!("{b:02X}")).collect())
}

/// The key the artifacts are checked against: desktop.toml's, else the
/// build's (`plugins.updater.pubkey`), else none.
pub fn effective_key(prefs: &UpdatePrefs, built_in: Option<&str>) -> Option<(String, KeySource)> {
    let usable = |k: &&str| !k.trim().is_empty();
    if let Some(key) = prefs.pubkey.as_deref().filter(usable) {
        return Some((key.trim().to_owned(), KeySource::Settings));
    }
    built_in
        .filter(usable)
        .map(|k| (k.trim().to_owned(), KeySource::Build))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// `[updates] pubkey` in desktop.toml.
    Settings,
    /// tauri.conf.json, `plugins.updater.pubkey`, at build time.
    Build,
}

fn built_in_key(app: &AppHandle) -> Option<String> {
    app.config()
        .plugins
        .0
        .get("updater")
        .and_then(|u| u.get("pubkey"))
        .and_then(|k| k.as_str())
        .map(str::to_owned)
}

/// An update found and not yet installed: what the page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    pub version: String,
    pub current_version: String,
    pub notes: Option<String>,
    pub date: Option<String>,
}

impl Found {
    fn of(update: &Update) -> Self {
        Found {
            version: update.version.clone(),
            current_version: update.current_version.clone(),
            notes: update.body.clone(),
            date: update.date.map(|d| d.to_string()),
        }
    }
}

/// The update the last check found, kept for the agent's yes.
#[derive(Default)]
pub struct Pending(Mutex<Option<Update>>);

/// What Settings → Updates shows.
#[derive(Debug, Serialize)]
pub struct UpdateInfo {
    pub url: Option<String>,
    pub check_on_start: bool,
    /// The key ID of the public key in use, and where it comes from.
    pub key_id: Option<String>,
    pub key_source: Option<KeySource>,
    /// Why the configured key cannot be used, if it cannot.
    pub key_error: Option<String>,
    pub current_version: String,
    pub pending: Option<Found>,
    /// Whether this copy of the app can install an update itself (not a
    /// development build run from its build directory).
    pub installable: bool,
    pub allow_http: bool,
}

/// Whether this copy was installed in a way the updater can replace:
/// on Linux an AppImage or a .deb/.rpm (Tauri marks the binary when it
/// bundles), elsewhere the installer's. A bare binary (development build)
/// is never overwritten.
pub fn installable(app: &AppHandle) -> bool {
    #[cfg(target_os = "linux")]
    {
        use tauri::utils::config::BundleType;
        app.env().appimage.is_some()
            || matches!(
                tauri::utils::platform::bundle_type(),
                Some(BundleType::Deb | BundleType::Rpm | BundleType::AppImage)
            )
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = app;
        tauri::utils::platform::bundle_type().is_some()
    }
}

fn info(app: &AppHandle, shell: &Shell) -> UpdateInfo {
    let prefs = shell.prefs.lock().updates.clone();
    let built_in = built_in_key(app);
    let key = effective_key(&prefs, built_in.as_deref());
    let (key_id, key_error) = match &key {
        Some((k, _)) => match key_id(k) {
            Ok(id) => (Some(id), None),
            Err(e) => (None, Some(e.message)),
        },
        None => (None, None),
    };
    let pending = app.state::<Pending>().0.lock().as_ref().map(Found::of);
    UpdateInfo {
        url: prefs.url,
        check_on_start: prefs.check_on_start,
        key_id,
        key_source: key.map(|(_, source)| source),
        key_error,
        current_version: app.package_info().version.to_string(),
        pending,
        installable: installable(app),
        allow_http: ALLOW_HTTP,
    }
}

/// Names a failure of the plugin for the page.
pub fn classify(error: &tauri_plugin_updater::Error) -> UpdateError {
    use tauri_plugin_updater::Error as E;
    let code = match error {
        E::Minisign(_) | E::Base64(_) | E::SignatureUtf8(_) => "bad_signature",
        E::SignedVersionMismatch { .. } | E::MissingSignedVersion => "bad_signature",
        E::Reqwest(_) | E::Network(_) => "unreachable",
        E::Serialization(_) | E::ReleaseNotFound | E::Semver(_) | E::UrlParse(_) => "bad_manifest",
        E::TargetNotFound(_) | E::TargetsNotFound(_) => "no_platform",
        E::InsecureTransportProtocol => "bad_url",
        _ => "failed",
    };
    UpdateError::new(code, error.to_string())
}

/// Fetches `latest.json` from the shop's URL. `Ok(None)`: up to date.
async fn check(app: &AppHandle, prefs: &UpdatePrefs) -> Result<Option<Update>, UpdateError> {
    let url = prefs
        .url
        .as_deref()
        .ok_or_else(|| UpdateError::new("off", "no update address is set"))?;
    let url = validate_url(url)?;
    let built_in = built_in_key(app);
    let (key, _) = effective_key(prefs, built_in.as_deref()).ok_or_else(|| {
        UpdateError::new("no_key", "this app has no public key to check updates with")
    })?;
    key_id(&key)?;
    let updater = app
        .updater_builder()
        .endpoints(vec![url])
        .map_err(|e| classify(&e))?
        .pubkey(key)
        .timeout(CHECK_TIMEOUT)
        .build()
        .map_err(|e| classify(&e))?;
    updater.check().await.map_err(|e| classify(&e))
}

/// Checks now and remembers what was found (for `update_install`).
pub async fn check_and_keep(app: &AppHandle, shell: &Shell) -> Result<Option<Found>, UpdateError> {
    let prefs = shell.prefs.lock().updates.clone();
    let found = check(app, &prefs).await;
    let pending = app.state::<Pending>();
    match found {
        Ok(Some(update)) => {
            let view = Found::of(&update);
            tracing::info!(version = %view.version, "an update is available");
            *pending.0.lock() = Some(update);
            Ok(Some(view))
        }
        Ok(None) => {
            *pending.0.lock() = None;
            Ok(None)
        }
        Err(error) => {
            tracing::warn!(code = error.code, message = %error.message, "update check failed");
            Err(error)
        }
    }
}

/// At start, when the shop turned "check on start" on: one check in the
/// background; a found update is passed to the page (the `update` hook),
/// which only shows it.
pub fn check_on_start(app: &AppHandle, shell: &Arc<Shell>) {
    let prefs = shell.prefs.lock().updates.clone();
    if !prefs.check_on_start || prefs.url.is_none() {
        return;
    }
    let app = app.clone();
    let shell = Arc::clone(shell);
    tauri::async_runtime::spawn(async move {
        if let Ok(Some(found)) = check_and_keep(&app, &shell).await {
            let arg = serde_json::to_value(found).unwrap_or(serde_json::Value::Null);
            crate::call_page(&app, "update", &arg);
        }
    });
}

/// Settings → Updates: the settings, the key in use, a found update.
#[tauri::command]
pub fn update_info(app: AppHandle, shell: State<'_, Arc<Shell>>) -> UpdateInfo {
    info(&app, &shell)
}

/// Saves the update URL (None or empty: updates off) and "check on
/// start". The public key is not the page's to set.
#[tauri::command]
pub fn update_configure(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
    url: Option<String>,
    check_on_start: bool,
) -> Result<UpdateInfo, UpdateError> {
    let url = match url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) => Some(validate_url(url)?.to_string()),
    };
    let prefs = {
        let now = shell.prefs.lock();
        Prefs {
            updates: UpdatePrefs {
                url,
                check_on_start,
                pubkey: now.updates.pubkey.clone(),
            },
            ..now.clone()
        }
    };
    prefs
        .save(&shell.dirs.config)
        .map_err(|e| UpdateError::new("failed", e.to_string()))?;
    *shell.prefs.lock() = prefs;
    *app.state::<Pending>().0.lock() = None;
    Ok(info(&app, &shell))
}

/// "Check now".
#[tauri::command]
pub async fn update_check(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
) -> Result<Option<Found>, UpdateError> {
    check_and_keep(&app, &shell).await
}

/// Installs the update the last check found, after the agent said yes to
/// that `version` (a newer one found meanwhile is not installed by an
/// answer given for another). Downloads it, checks its signature with the
/// shop's key and hands it to the plugin's installer; the new version runs
/// from the next start.
#[tauri::command]
pub async fn update_install(app: AppHandle, version: String) -> Result<(), UpdateError> {
    if !installable(&app) {
        return Err(UpdateError::new(
            "not_installable",
            "this copy of Kefu was not installed from a package, so it cannot update itself",
        ));
    }
    let mut update = app
        .state::<Pending>()
        .0
        .lock()
        .clone()
        .filter(|u| u.version == version)
        .ok_or_else(|| UpdateError::new("none", "check for updates again"))?;
    update.timeout = Some(DOWNLOAD_TIMEOUT);
    tracing::info!(%version, "downloading the update");
    let bytes = update
        .download(|_, _| {}, || {})
        .await
        .map_err(|e| classify(&e))?;
    tracing::info!(%version, bytes = bytes.len(), "signature good; installing");
    update.install(bytes).map_err(|e| {
        let mut error = classify(&e);
        if error.code == "failed" {
            error.code = "install_failed";
        }
        error
    })?;
    *app.state::<Pending>().0.lock() = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A key made with `tauri signer generate` (its public half only).
    const KEY: &str = "dW50cnVzdGVkIGNvbW1lbnQ6IG1pbmlzaWduIHB1YmxpYyBrZXk6IDJGMzZDODQ2NjU1OTYwMDgKUldRSVlGbGxSc2cyTHkwbGp4WUNodERweVpaYWtoeVA0d2tBVGZTdzUrTkVmZzk2T3BsMDcwNlIK";

    #[test]
    fn urls_must_be_web_addresses_without_credentials() {
        assert!(validate_url("https://updates.shop.example/kefu/latest.json").is_ok());
        assert_eq!(
            validate_url("http://127.0.0.1:8080/latest.json").is_ok(),
            ALLOW_HTTP
        );
        for bad in [
            "ftp://shop.example/latest.json",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://user:secret@shop.example/latest.json",
            "https://token@shop.example/latest.json",
            "not a url",
            "",
        ] {
            assert_eq!(validate_url(bad).unwrap_err().code, "bad_url", "{bad}");
        }
        let long = format!("https://shop.example/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(validate_url(&long).unwrap_err().code, "bad_url");
    }

    #[test]
    fn a_minisign_public_key_gives_its_key_id_and_anything_else_is_refused() {
        assert_eq!(key_id(KEY).unwrap(), "2F36C84665596008");
        assert_eq!(key_id("not base64!").unwrap_err().code, "bad_key");
        // base64 of text that is not a key
        assert_eq!(key_id("aGVsbG8gd29ybGQK").unwrap_err().code, "bad_key");
    }

    #[test]
    fn desktop_toml_key_wins_over_the_built_in_one_and_blank_is_none() {
        let mut prefs = UpdatePrefs::default();
        assert_eq!(effective_key(&prefs, None), None);
        assert_eq!(effective_key(&prefs, Some("  ")), None);
        assert_eq!(
            effective_key(&prefs, Some("B")),
            Some(("B".into(), KeySource::Build))
        );
        prefs.pubkey = Some(" A ".into());
        assert_eq!(
            effective_key(&prefs, Some("B")),
            Some(("A".into(), KeySource::Settings))
        );
    }

    #[test]
    fn updates_are_off_by_default_and_round_trip_in_desktop_toml() {
        let prefs = Prefs::default();
        assert_eq!(prefs.updates, UpdatePrefs::default());
        assert!(prefs.updates.url.is_none() && !prefs.updates.check_on_start);
        let dir = tempfile::tempdir().unwrap();
        let prefs = Prefs {
            updates: UpdatePrefs {
                url: Some("https://shop.example/latest.json".into()),
                check_on_start: true,
                pubkey: Some(KEY.into()),
            },
            ..Prefs::default()
        };
        prefs.save(dir.path()).unwrap();
        assert_eq!(Prefs::load(dir.path()).unwrap(), prefs);
    }
}
