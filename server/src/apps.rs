//! Apps: one integration each (a website or a mobile APP), with a public
//! `app_key`, a private `secret` for identity verification, and the origins
//! its browser visitors may come from. Routes: `/api/v1/apps` (admins).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::app_settings::{self, BusinessHours};
use crate::auth::{self, AdminAuth};
use crate::change::{After, Change};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath};
use crate::ids::AppId;
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

/// The request's `Origin` when it is another site's. A request from this
/// server's own pages (the widget's iframe at `/widget/frame.html`) is
/// same-origin: its `Origin` names the `Host` it was sent to, and it counts
/// as no `Origin`. Which sites may embed that iframe is enforced by the
/// browser instead, through the frame's `frame-ancestors` (crate::ui).
///
/// Trusting `Host` here is sound only because the edge (`http::edge`) has
/// already refused every Host this server does not answer to: a DNS
/// rebinding page sends `Origin: http://evil.example` with `Host:
/// evil.example`, and is answered 421 before any route (unless
/// `http.allowed_hosts` is `["*"]`, which the docs warn about).
pub fn cross_origin(headers: &axum::http::HeaderMap) -> Option<&str> {
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())?;
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok());
    let same = host.is_some_and(|host| {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        authority.is_some_and(|a| a.trim_end_matches('/').eq_ignore_ascii_case(host))
    });
    if same { None } else { Some(origin) }
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

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps", post(create).get(list))
        .route("/apps/{id}", get(get_one).patch(update))
        .route("/apps/{id}/rotate_secret", post(rotate_secret))
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAppBody {
    name: String,
    identity_verification: Option<IdentityVerification>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    welcome_message: String,
    #[serde(default)]
    offline_message: String,
    business_hours: Option<BusinessHours>,
}

#[derive(Debug, Serialize)]
struct AppResponse {
    app: App,
    /// Where visitors reach this server (`http.public_url`), for the embed
    /// snippet; `None`: the address the admin uses. **[ext]**
    public_url: Option<String>,
}

impl AppResponse {
    fn new(state: &AppState, app: App) -> AppResponse {
        AppResponse {
            app,
            public_url: public_url(state),
        }
    }
}

/// `http.public_url`, normalized (no trailing slash).
fn public_url(state: &AppState) -> Option<String> {
    state
        .config
        .http
        .public_url_parts()
        .ok()
        .flatten()
        .map(|(url, _)| url)
}

async fn create(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiJson(body): ApiJson<CreateAppBody>,
) -> ApiResult<(StatusCode, Json<AppResponse>)> {
    let app = App {
        id: AppId::new(),
        app_key: auth::random_key("ak_", 12),
        secret: auth::random_key("sk_", 32),
        name: validate_name(&body.name)?,
        identity_verification: body
            .identity_verification
            .unwrap_or(IdentityVerification::Off),
        allowed_origins: validate_origins(&body.allowed_origins)?,
        welcome_message: app_settings::validate_message("welcome_message", &body.welcome_message)?,
        offline_message: app_settings::validate_message("offline_message", &body.offline_message)?,
        business_hours: validate_hours(body.business_hours)?,
        created_at: now_ms(),
    };
    let mut change = Change::begin(&state.db, Some(admin.id)).await?;
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
    change.commit(&state).await?;
    tracing::info!(admin = %admin.id, app = %app.id, "app created");
    Ok((StatusCode::CREATED, Json(AppResponse::new(&state, app))))
}

#[derive(Debug, Serialize)]
struct AppsResponse {
    apps: Vec<App>,
    public_url: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
) -> ApiResult<Json<AppsResponse>> {
    let rows: Vec<AppRow> = sqlx::query_as(&format!(
        "SELECT {APP_COLUMNS} FROM apps ORDER BY created_at LIMIT 1000"
    ))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(AppsResponse {
        apps: rows.into_iter().map(App::from).collect(),
        public_url: public_url(&state),
    }))
}

async fn get_one(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    ApiPath(id): ApiPath<AppId>,
) -> ApiResult<Json<AppResponse>> {
    let app = find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))?;
    Ok(Json(AppResponse::new(&state, app)))
}

/// Every field optional; `business_hours: null` removes the hours (always open).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAppBody {
    name: Option<String>,
    identity_verification: Option<IdentityVerification>,
    allowed_origins: Option<Vec<String>>,
    welcome_message: Option<String>,
    offline_message: Option<String>,
    #[serde(default, deserialize_with = "crate::http::extract::explicit_null")]
    business_hours: Option<Option<BusinessHours>>,
}

async fn update(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<AppId>,
    ApiJson(body): ApiJson<UpdateAppBody>,
) -> ApiResult<Json<AppResponse>> {
    // Read, merged and written under the write lock (BEGIN IMMEDIATE):
    // concurrent updates of different fields do not undo each other.
    let mut change = Change::begin(&state.db, Some(admin.id)).await?;
    let mut app = find(&mut *change, id)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))?;
    // Validate everything before writing anything.
    let mut changed = serde_json::Map::new();
    if let Some(name) = &body.name {
        app.name = validate_name(name)?;
        changed.insert("name".into(), app.name.clone().into());
    }
    if let Some(mode) = body.identity_verification {
        app.identity_verification = mode;
        changed.insert("identity_verification".into(), serde_json::json!(mode));
    }
    if let Some(origins) = &body.allowed_origins {
        app.allowed_origins = validate_origins(origins)?;
        changed.insert(
            "allowed_origins".into(),
            serde_json::json!(app.allowed_origins),
        );
    }
    if let Some(text) = &body.welcome_message {
        app.welcome_message = app_settings::validate_message("welcome_message", text)?;
        changed.insert("welcome_message".into(), app.welcome_message.clone().into());
    }
    if let Some(text) = &body.offline_message {
        app.offline_message = app_settings::validate_message("offline_message", text)?;
        changed.insert("offline_message".into(), app.offline_message.clone().into());
    }
    if let Some(hours) = body.business_hours {
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
    change.commit(&state).await?;
    tracing::info!(admin = %admin.id, app = %app.id, "app updated");
    Ok(Json(AppResponse::new(&state, app)))
}

/// A new secret: the old one stops verifying `user_hash` at once, so the
/// APP's backend must switch to the new one.
async fn rotate_secret(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiPath(id): ApiPath<AppId>,
) -> ApiResult<Json<AppResponse>> {
    let secret = auth::random_key("sk_", 32);
    let mut change = Change::begin(&state.db, Some(admin.id)).await?;
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
    change.commit(&state).await?;
    let app = find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))?;
    Ok(Json(AppResponse::new(&state, app)))
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

    #[test]
    fn own_origin_is_same_origin() {
        use axum::http::{HeaderMap, HeaderValue, header};
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:5338"));
        assert_eq!(cross_origin(&headers), None);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:5338"),
        );
        assert_eq!(cross_origin(&headers), None);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:5339"),
        );
        assert_eq!(cross_origin(&headers), Some("http://127.0.0.1:5339"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert_eq!(cross_origin(&headers), Some("https://evil.example"));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert_eq!(cross_origin(&headers), Some("null"));
    }
}
