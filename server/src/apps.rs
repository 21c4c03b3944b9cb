//! Apps: one integration each (a website or a mobile APP), with a public
//! `app_key`, a private `secret` for identity verification, and the origins
//! its browser visitors may come from. Routes: `/api/v1/apps` (admins).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::auth::{self, AdminAuth};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::ApiJson;
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

const APP_COLUMNS: &str =
    "id, app_key, secret, name, identity_verification, allowed_origins, created_at";

pub async fn find(db: &SqlitePool, id: AppId) -> Result<Option<App>, ApiError> {
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
    Router::new().route("/apps", post(create).get(list))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAppBody {
    name: String,
    identity_verification: Option<IdentityVerification>,
    #[serde(default)]
    allowed_origins: Vec<String>,
}

#[derive(Debug, Serialize)]
struct AppResponse {
    app: App,
}

async fn create(
    State(state): State<AppState>,
    AdminAuth(admin): AdminAuth,
    ApiJson(body): ApiJson<CreateAppBody>,
) -> ApiResult<(StatusCode, Json<AppResponse>)> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request("name must be 1-100 characters"));
    }
    if body.allowed_origins.len() > 50 {
        return Err(ApiError::bad_request("at most 50 allowed_origins"));
    }
    let mut origins: Vec<String> = Vec::new();
    for origin in &body.allowed_origins {
        let origin = normalize_origin(origin)?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    let id = AppId::new();
    let app = App {
        id,
        app_key: auth::random_key("ak_", 12),
        secret: auth::random_key("sk_", 32),
        name: name.to_owned(),
        identity_verification: body
            .identity_verification
            .unwrap_or(IdentityVerification::Off),
        allowed_origins: origins,
        created_at: now_ms(),
    };
    sqlx::query(
        "INSERT INTO apps (id, app_key, secret, name, identity_verification, allowed_origins, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(app.id)
    .bind(&app.app_key)
    .bind(&app.secret)
    .bind(&app.name)
    .bind(app.identity_verification)
    .bind(serde_json::to_string(&app.allowed_origins).map_err(ApiError::internal)?)
    .bind(app.created_at)
    .execute(&state.db)
    .await?;
    crate::audit::record(
        &state.db,
        Some(admin.id),
        "app.create",
        Some(("app", &app.id.to_string())),
        serde_json::json!({"name": app.name, "identity_verification": app.identity_verification, "allowed_origins": app.allowed_origins}),
    )
    .await?;
    tracing::info!(admin = %admin.id, app = %app.id, "app created");
    Ok((StatusCode::CREATED, Json(AppResponse { app })))
}

#[derive(Debug, Serialize)]
struct AppsResponse {
    apps: Vec<App>,
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
    }))
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
