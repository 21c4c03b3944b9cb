//! Apps: one integration each (a website or a mobile APP), with a public
//! `app_key`, a private `secret` for identity verification, and the origins
//! its browser visitors may come from. The HTTP doors (`/api/v1/apps`,
//! admins only) are in [`routes`].
//!
//! Follow-up actions of a change, owned here: a changed app (keys, origins,
//! messages, hours) is reread by the auth cache at once.

pub mod routes;

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::app_settings::{self, BusinessHours};
use crate::auth;
use crate::change::{After, Change};
use crate::error::ApiError;
use crate::ids::{AgentId, AppId};
use crate::state::AppState;
use crate::time::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum IdentityVerification {
    Off,
    Required,
}

#[derive(Debug, Clone, Serialize)]
pub struct App {
    pub id: AppId,
    pub app_key: String,
    pub secret: String,
    pub name: String,
    pub identity_verification: IdentityVerification,
    pub allowed_origins: Vec<String>,
    /// Shown when a visitor opens the chat; empty = none. **[ext]**
    pub welcome_message: String,
    /// Shown when the shop is unavailable (closed or nobody online). **[ext]**
    pub offline_message: String,
    /// `None` = always open. **[ext]**
    pub business_hours: Option<BusinessHours>,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct AppRow {
    id: AppId,
    app_key: String,
    secret: String,
    name: String,
    identity_verification: IdentityVerification,
    allowed_origins: String,
    welcome_message: String,
    offline_message: String,
    business_hours: Option<String>,
    created_at: i64,
}

impl From<AppRow> for App {
    fn from(row: AppRow) -> Self {
        App {
            id: row.id,
            app_key: row.app_key,
            secret: row.secret,
            name: row.name,
            identity_verification: row.identity_verification,
            allowed_origins: serde_json::from_str(&row.allowed_origins).unwrap_or_default(),
            welcome_message: row.welcome_message,
            offline_message: row.offline_message,
            business_hours: row
                .business_hours
                .and_then(|json| serde_json::from_str(&json).ok()),
            created_at: row.created_at,
        }
    }
}

impl App {
    /// Requests without an `Origin` (native APPs, servers) are not subject
    /// to the list; an empty list allows every origin.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(_) if self.allowed_origins.is_empty() => true,
            Some(origin) => {
                let origin = origin.trim_end_matches('/').to_ascii_lowercase();
                self.allowed_origins.contains(&origin)
            }
        }
    }
}

const APP_COLUMNS: &str = "id, app_key, secret, name, identity_verification, allowed_origins,
    welcome_message, offline_message, business_hours, created_at";

pub async fn find(db: impl sqlx::SqliteExecutor<'_>, id: AppId) -> Result<Option<App>, ApiError> {
    let row: Option<AppRow> =
        sqlx::query_as(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = ?"))
            .bind(id)
            .fetch_optional(db)
            .await?;
    Ok(row.map(App::from))
}

pub async fn find_by_key(db: &SqlitePool, app_key: &str) -> Result<Option<App>, ApiError> {
    if app_key.len() > 128 {
        return Ok(None);
    }
    let row: Option<AppRow> =
        sqlx::query_as(&format!("SELECT {APP_COLUMNS} FROM apps WHERE app_key = ?"))
            .bind(app_key)
            .fetch_optional(db)
            .await?;
    Ok(row.map(App::from))
}

/// An origin is `scheme://host[:port]`, lower-cased, no path, no trailing slash.
pub fn normalize_origin(origin: &str) -> Result<String, ApiError> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let bad = || {
        ApiError::bad_request(format!(
            "{origin:?} is not an origin like https://shop.example"
        ))
        .in_field("allowed_origins")
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.len() > 253 {
        return Err(bad());
    }
    let valid = rest
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    if !valid {
        return Err(bad());
    }
    // Browsers leave default ports out of `Origin`: so must we, to match.
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let origin = match origin.strip_suffix(default_port) {
        Some(stripped) => stripped.to_owned(),
        None => origin,
    };
    Ok(origin)
}

fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request("name must be 1-100 characters").in_field("name"));
    }
    Ok(name.to_owned())
}

fn validate_origins(origins: &[String]) -> Result<Vec<String>, ApiError> {
    if origins.len() > 50 {
        return Err(ApiError::bad_request("at most 50 allowed_origins").in_field("allowed_origins"));
    }
    let mut normalized: Vec<String> = Vec::new();
    for origin in origins {
        let origin = normalize_origin(origin)?;
        if !normalized.contains(&origin) {
            normalized.push(origin);
        }
    }
    Ok(normalized)
}

fn validate_hours(hours: Option<BusinessHours>) -> Result<Option<BusinessHours>, ApiError> {
    if let Some(hours) = &hours {
        hours.validate()?;
    }
    Ok(hours)
}

fn hours_json(hours: &Option<BusinessHours>) -> Result<Option<String>, ApiError> {
    hours
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(ApiError::internal)
}

/// A new app, as an admin describes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    pub name: String,
    pub identity_verification: Option<IdentityVerification>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub welcome_message: String,
    #[serde(default)]
    pub offline_message: String,
    pub business_hours: Option<BusinessHours>,
}

/// Creates an app with a fresh `app_key` and `secret`, audited by `admin`.
pub async fn create(state: &AppState, admin: AgentId, new: NewApp) -> Result<App, ApiError> {
    let app = App {
        id: AppId::new(),
        app_key: auth::random_key("ak_", 12),
        secret: auth::random_key("sk_", 32),
        name: validate_name(&new.name)?,
        identity_verification: new
            .identity_verification
            .unwrap_or(IdentityVerification::Off),
        allowed_origins: validate_origins(&new.allowed_origins)?,
        welcome_message: app_settings::validate_message("welcome_message", &new.welcome_message)?,
        offline_message: app_settings::validate_message("offline_message", &new.offline_message)?,
        business_hours: validate_hours(new.business_hours)?,
        created_at: now_ms(),
    };
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    sqlx::query(
        "INSERT INTO apps (id, app_key, secret, name, identity_verification, allowed_origins,
             welcome_message, offline_message, business_hours, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    )
    .bind(app.id)
    .bind(&app.app_key)
    .bind(&app.secret)
    .bind(&app.name)
    .bind(app.identity_verification)
    .bind(serde_json::to_string(&app.allowed_origins).map_err(ApiError::internal)?)
    .bind(&app.welcome_message)
    .bind(&app.offline_message)
    .bind(hours_json(&app.business_hours)?)
    .bind(app.created_at)
    .execute(&mut *change)
    .await?;
    change
        .audit(
            "app.create",
            ("app", &app.id.to_string()),
            serde_json::json!({
                "name": app.name,
                "identity_verification": app.identity_verification,
                "allowed_origins": app.allowed_origins,
            }),
        )
        .await?;
    change.commit(state).await?;
    tracing::info!(%admin, app = %app.id, "app created");
    Ok(app)
}

/// Every app, oldest first (at most 1,000).
pub async fn list(db: &SqlitePool) -> Result<Vec<App>, ApiError> {
    let rows: Vec<AppRow> = sqlx::query_as(&format!(
        "SELECT {APP_COLUMNS} FROM apps ORDER BY created_at LIMIT 1000"
    ))
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(App::from).collect())
}

/// A change to an app: every field optional; `business_hours: null`
/// removes the hours (always open).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppUpdate {
    pub name: Option<String>,
    pub identity_verification: Option<IdentityVerification>,
    pub allowed_origins: Option<Vec<String>>,
    pub welcome_message: Option<String>,
    pub offline_message: Option<String>,
    #[serde(default, deserialize_with = "crate::http::extract::explicit_null")]
    pub business_hours: Option<Option<BusinessHours>>,
}

/// Changes app `id` (`bad_request` when nothing would change); every field
/// is validated before anything is written.
pub async fn update(
    state: &AppState,
    admin: AgentId,
    id: AppId,
    update: AppUpdate,
) -> Result<App, ApiError> {
    // Read, merged and written under the write lock (BEGIN IMMEDIATE):
    // concurrent updates of different fields do not undo each other.
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let mut app = find(&mut *change, id)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))?;
    let mut changed = serde_json::Map::new();
    if let Some(name) = &update.name {
        app.name = validate_name(name)?;
        changed.insert("name".into(), app.name.clone().into());
    }
    if let Some(mode) = update.identity_verification {
        app.identity_verification = mode;
        changed.insert("identity_verification".into(), serde_json::json!(mode));
    }
    if let Some(origins) = &update.allowed_origins {
        app.allowed_origins = validate_origins(origins)?;
        changed.insert(
            "allowed_origins".into(),
            serde_json::json!(app.allowed_origins),
        );
    }
    if let Some(text) = &update.welcome_message {
        app.welcome_message = app_settings::validate_message("welcome_message", text)?;
        changed.insert("welcome_message".into(), app.welcome_message.clone().into());
    }
    if let Some(text) = &update.offline_message {
        app.offline_message = app_settings::validate_message("offline_message", text)?;
        changed.insert("offline_message".into(), app.offline_message.clone().into());
    }
    if let Some(hours) = update.business_hours {
        app.business_hours = validate_hours(hours)?;
        changed.insert(
            "business_hours".into(),
            serde_json::json!(app.business_hours),
        );
    }
    if changed.is_empty() {
        return Err(ApiError::bad_request("nothing to update"));
    }
    sqlx::query(
        "UPDATE apps SET name = ?, identity_verification = ?, allowed_origins = ?,
             welcome_message = ?, offline_message = ?, business_hours = ?, updated_at = ?
         WHERE id = ?",
    )
    .bind(&app.name)
    .bind(app.identity_verification)
    .bind(serde_json::to_string(&app.allowed_origins).map_err(ApiError::internal)?)
    .bind(&app.welcome_message)
    .bind(&app.offline_message)
    .bind(hours_json(&app.business_hours)?)
    .bind(now_ms())
    .bind(app.id)
    .execute(&mut *change)
    .await?;
    change
        .audit(
            "app.update",
            ("app", &app.id.to_string()),
            serde_json::Value::Object(changed),
        )
        .await?;
    change.then(After::App(app.id));
    change.commit(state).await?;
    tracing::info!(%admin, app = %app.id, "app updated");
    Ok(app)
}

/// A new secret: the old one stops verifying `user_hash` at once, so the
/// APP's backend must switch to the new one.
pub async fn rotate_secret(state: &AppState, admin: AgentId, id: AppId) -> Result<App, ApiError> {
    let secret = auth::random_key("sk_", 32);
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let updated = sqlx::query("UPDATE apps SET secret = ?, updated_at = ? WHERE id = ?")
        .bind(&secret)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *change)
        .await?
        .rows_affected();
    if updated == 0 {
        return Err(ApiError::not_found("app"));
    }
    change
        .audit(
            "app.rotate_secret",
            ("app", &id.to_string()),
            serde_json::json!({}),
        )
        .await?;
    change.then(After::App(id));
    change.commit(state).await?;
    find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(origins: &[&str]) -> App {
        App {
            id: AppId::new(),
            app_key: "ak".into(),
            secret: "sk".into(),
            name: "n".into(),
            identity_verification: IdentityVerification::Off,
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            welcome_message: String::new(),
            offline_message: String::new(),
            business_hours: None,
            created_at: 0,
        }
    }

    #[test]
    fn origins() {
        assert_eq!(
            normalize_origin("HTTPS://Shop.Example/").expect("ok"),
            "https://shop.example"
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8080").expect("ok"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            normalize_origin("https://shop.example:443").expect("ok"),
            "https://shop.example"
        );
        assert_eq!(
            normalize_origin("http://shop.example:80").expect("ok"),
            "http://shop.example"
        );
        assert!(normalize_origin("shop.example").is_err());
        assert!(normalize_origin("ftp://shop.example").is_err());
        assert!(normalize_origin("https://shop.example/path").is_err());
        let open = app(&[]);
        assert!(open.origin_allowed(Some("https://evil.example")));
        let strict = app(&["https://shop.example"]);
        assert!(strict.origin_allowed(None));
        assert!(strict.origin_allowed(Some("https://shop.example")));
        assert!(strict.origin_allowed(Some("https://SHOP.example/")));
        assert!(!strict.origin_allowed(Some("https://evil.example")));
        assert!(!strict.origin_allowed(Some("null")));
    }
}
