//! Visitors: sessions (anonymous, resumed by token, or an APP user by
//! `user_id`, optionally verified by HMAC) and the visitor's own message
//! routes. A visitor token reaches only that visitor's conversation. The
//! doors are in [`routes`].

pub mod routes;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::apps::{App, IdentityVerification};
use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::ids::{ConversationId, VisitorId};
use crate::state::AppState;
use crate::time::now_ms;

/// A visitor session as a widget or an APP asks for one.
#[derive(Debug, Deserialize)]
pub struct SessionRequest {
    pub app_key: String,
    pub token: Option<String>,
    pub user_id: Option<String>,
    pub user_hash: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub attributes: Option<Value>,
}

/// A visitor's session: who, the token, their one conversation.
#[derive(Debug, Serialize)]
pub struct Session {
    pub visitor_id: VisitorId,
    pub token: String,
    pub conversation_id: ConversationId,
}

/// Profile fields, validated.
struct Profile {
    name: Option<String>,
    email: Option<String>,
    attributes: Option<serde_json::Map<String, Value>>,
}

fn profile(state: &AppState, body: &SessionRequest) -> Result<Profile, ApiError> {
    let clean =
        |value: &Option<String>, field: &str, max: usize| -> Result<Option<String>, ApiError> {
            match value.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(v) if v.chars().count() > max => Err(ApiError::bad_request(format!(
                    "{field} is longer than {max} characters"
                ))
                .in_field(field.to_owned())),
                Some(v) if v.chars().any(char::is_control) => Err(ApiError::bad_request(format!(
                    "{field} has control characters"
                ))
                .in_field(field.to_owned())),
                Some(v) => Ok(Some(v.to_owned())),
            }
        };
    let name = clean(&body.name, "name", 200)?;
    let email = clean(&body.email, "email", 320)?;
    if let Some(email) = &email
        && !email.contains('@')
    {
        return Err(ApiError::bad_request("email is not an email address").in_field("email"));
    }
    let attributes = match &body.attributes {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => {
            let size = serde_json::to_vec(map)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > state.config.limits.attributes_bytes {
                return Err(ApiError::too_large(format!(
                    "attributes are {size} bytes serialized, the limit is {}",
                    state.config.limits.attributes_bytes
                ))
                .in_field("attributes"));
            }
            Some(map.clone())
        }
        Some(_) => {
            return Err(
                ApiError::bad_request("attributes must be a JSON object").in_field("attributes")
            );
        }
    };
    Ok(Profile {
        name,
        email,
        attributes,
    })
}

/// Opens a session from `client` (its `origin` when another site's): an
/// APP user by `user_id` (verified by `user_hash` when the app requires
/// it), the holder of a valid token (its profile updated), or a new
/// anonymous visitor. New sessions spend the client's budget.
pub async fn open_session(
    state: &AppState,
    client: IpAddr,
    origin: Option<&str>,
    body: SessionRequest,
) -> Result<Session, ApiError> {
    let app = state
        .auth_cache
        .app_by_key(&state.db, &body.app_key)
        .await?
        .ok_or_else(|| ApiError::not_found("app"))?;
    if !app.origin_allowed(origin) {
        return Err(ApiError::forbidden("origin not allowed for this app"));
    }
    let profile = profile(state, &body)?;

    if let Some(user_id) = body.user_id.as_deref() {
        if user_id.is_empty() || user_id.chars().count() > 256 {
            return Err(
                ApiError::bad_request("user_id must be 1-256 characters").in_field("user_id")
            );
        }
        if app.identity_verification == IdentityVerification::Required {
            let Some(hash) = body.user_hash.as_deref() else {
                return Err(ApiError::IdentityRequired(
                    "this app requires user_hash with user_id".into(),
                ));
            };
            if !auth::verify_user_hash(&app.secret, user_id, hash) {
                return Err(ApiError::InvalidIdentity(
                    "user_hash does not match user_id".into(),
                ));
            }
        }
        let key = auth::user_key(app.id, user_id);
        state.limiters.check_visitor_session(client)?;
        // A device that still holds this user's token keeps it: no new
        // token row per APP launch.
        let held = match body.token.as_deref() {
            Some(token) => match auth::resolve_token(state, token).await? {
                Some(Principal::Visitor(visitor)) => Some((visitor.visitor_id, token.to_owned())),
                _ => None,
            },
            None => None,
        };
        return known_user_session(state, &app, &key, &profile, held).await;
    }

    if let Some(token) = body.token.as_deref()
        && let Some(Principal::Visitor(visitor)) = auth::resolve_token(state, token).await?
        && visitor.app_id == app.id
    {
        update_profile(state, visitor.visitor_id, &profile).await?;
        return Ok(Session {
            visitor_id: visitor.visitor_id,
            token: token.to_owned(),
            conversation_id: visitor.conversation_id,
        });
    }

    state.limiters.check_visitor_session(client)?;
    create_visitor(state, &app, None, &profile).await
}

/// The visitor of `(app, user_id)`, created on first sight; a new token
/// each time (one per device).
async fn known_user_session(
    state: &AppState,
    app: &App,
    key: &[u8],
    profile: &Profile,
    held: Option<(VisitorId, String)>,
) -> Result<Session, ApiError> {
    for _ in 0..2 {
        let existing: Option<(VisitorId, ConversationId)> = sqlx::query_as(
            "SELECT v.id, c.id FROM visitors v JOIN conversations c ON c.visitor_id = v.id WHERE v.user_key = ?",
        )
        .bind(key)
        .fetch_optional(&state.db)
        .await?;
        if let Some((visitor_id, conversation_id)) = existing {
            update_profile(state, visitor_id, profile).await?;
            let token = match &held {
                Some((holder, token)) if *holder == visitor_id => token.clone(),
                _ => {
                    let mut conn = state.db.acquire().await?;
                    auth::issue_visitor_token(&mut conn, visitor_id).await?
                }
            };
            return Ok(Session {
                visitor_id,
                token,
                conversation_id,
            });
        }
        match create_visitor(state, app, Some(key), profile).await {
            Ok(session) => return Ok(session),
            // Two first sessions of one user at once: the other insert won.
            Err(ApiError::Conflict(_)) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(ApiError::Conflict(
        "could not create the visitor, retry".into(),
    ))
}

async fn create_visitor(
    state: &AppState,
    app: &App,
    user_key: Option<&[u8]>,
    profile: &Profile,
) -> Result<Session, ApiError> {
    let visitor_id = VisitorId::new();
    let conversation_id = ConversationId::new();
    let now = now_ms();
    let attributes = Value::Object(profile.attributes.clone().unwrap_or_default()).to_string();
    let seen = state.auth_cache.generation();
    let mut tx = state.db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO visitors (id, app_id, user_key, name, email, attributes, created_at, last_seen_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(visitor_id)
    .bind(app.id)
    .bind(user_key)
    .bind(&profile.name)
    .bind(&profile.email)
    .bind(attributes)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(ApiError::Conflict("visitor exists".into()));
        }
        other => {
            other?;
        }
    }
    sqlx::query(
        "INSERT INTO conversations (id, app_id, visitor_id, status, activity_at, created_at) VALUES (?, ?, ?, 'open', ?, ?)",
    )
    .bind(conversation_id)
    .bind(app.id)
    .bind(visitor_id)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let token = auth::issue_visitor_token(&mut tx, visitor_id).await?;
    tx.commit().await?;
    state.auth_cache.visitor_created(
        &token,
        auth::VisitorPrincipal {
            visitor_id,
            app_id: app.id,
            conversation_id,
            name: profile.name.clone(),
        },
        seen,
    );
    Ok(Session {
        visitor_id,
        token,
        conversation_id,
    })
}

/// Sets the given fields; attributes are merged key by key.
async fn update_profile(
    state: &AppState,
    visitor: VisitorId,
    profile: &Profile,
) -> Result<(), ApiError> {
    // Reads the attributes, then writes them merged: BEGIN IMMEDIATE.
    let mut tx = crate::store::db::begin_write(&state.db).await?;
    let current: Option<(String,)> = sqlx::query_as("SELECT attributes FROM visitors WHERE id = ?")
        .bind(visitor)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((current,)) = current else {
        return Err(ApiError::not_found("visitor"));
    };
    let attributes = match &profile.attributes {
        None => current,
        Some(new) => {
            let mut merged: serde_json::Map<String, Value> =
                serde_json::from_str(&current).unwrap_or_default();
            merged.extend(new.clone());
            let merged = Value::Object(merged).to_string();
            if merged.len() > state.config.limits.attributes_bytes {
                return Err(ApiError::too_large("merged attributes exceed the limit")
                    .in_field("attributes"));
            }
            merged
        }
    };
    sqlx::query(
        "UPDATE visitors SET name = COALESCE(?, name), email = COALESCE(?, email), attributes = ?, last_seen_at = ? WHERE id = ?",
    )
    .bind(&profile.name)
    .bind(&profile.email)
    .bind(attributes)
    .bind(now_ms())
    .bind(visitor)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    state.auth_cache.visitor_changed(visitor);
    Ok(())
}
