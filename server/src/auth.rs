//! Who is calling: passwords (argon2id), bearer tokens (128-bit random,
//! stored as SHA-256, revocable), the extractors that guard every route, and
//! HMAC identity verification for APP users.
//!
//! Tokens are only ever read from the `Authorization` header (REST) or the
//! `hello` frame (WebSocket): never from a URL, never logged. Every
//! revocation goes through [`sessions`], which also closes the token's
//! WebSockets.

pub mod cache;
pub mod sessions;
pub mod tag;

pub use tag::token_hash;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use crate::agents::{Agent, Role};
use crate::error::ApiError;
use crate::ids::{AgentId, AppId, ConversationId, VisitorId};
use crate::state::{AppState, Kefu};
use crate::time::now_ms;

pub async fn hash_password(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let salt = SaltString::encode_b64(&bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await?
}

pub async fn verify_password(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// A fresh bearer token: `kf_` and 128 random bits in hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("kf_{}", hex::encode(bytes))
}

/// A random secret with a readable prefix, `bits` of entropy.
pub fn random_key(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    format!("{prefix}{}", hex::encode(buf))
}

pub async fn issue_agent_token(db: &SqlitePool, agent: AgentId) -> Result<String, ApiError> {
    let token = new_token();
    sqlx::query("INSERT INTO tokens (token_hash, agent_id, created_at) VALUES (?, ?, ?)")
        .bind(token_hash(&token))
        .bind(agent)
        .bind(now_ms())
        .execute(db)
        .await?;
    Ok(token)
}

pub async fn issue_visitor_token(
    tx: &mut sqlx::SqliteConnection,
    visitor: VisitorId,
) -> Result<String, ApiError> {
    let token = new_token();
    sqlx::query("INSERT INTO tokens (token_hash, visitor_id, created_at) VALUES (?, ?, ?)")
        .bind(token_hash(&token))
        .bind(visitor)
        .bind(now_ms())
        .execute(tx)
        .await?;
    Ok(token)
}

/// The visitor behind a visitor token.
#[derive(Debug, Clone)]
pub struct VisitorPrincipal {
    pub visitor_id: VisitorId,
    pub app_id: AppId,
    pub conversation_id: ConversationId,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Principal {
    Agent(Agent),
    Visitor(VisitorPrincipal),
}

/// Looks a token up; `None` for unknown or revoked tokens. Served from
/// memory when it can be (see [`cache`]).
pub async fn resolve_token(state: &Kefu, token: &str) -> Result<Option<Principal>, ApiError> {
    state.auth_cache.resolve(&state.db, token).await
}

/// The token of the `Authorization: Bearer …` header, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let token = bearer(&parts.headers)
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    resolve_token(state, token)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("invalid or revoked token".into()))
}

/// Any signed-in agent.
#[derive(Debug, Clone)]
pub struct AgentAuth(pub Agent);

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match principal(parts, state).await? {
            Principal::Agent(agent) => Ok(AgentAuth(agent)),
            Principal::Visitor(_) => Err(ApiError::forbidden("this route needs an agent token")),
        }
    }
}

/// A signed-in agent with role `admin`.
#[derive(Debug, Clone)]
pub struct AdminAuth(pub Agent);

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AgentAuth(agent) = AgentAuth::from_request_parts(parts, state).await?;
        if agent.role == Role::Admin {
            Ok(AdminAuth(agent))
        } else {
            Err(ApiError::forbidden("this route is for admins"))
        }
    }
}

/// A visitor; its requests are also held to its app's allowed origins.
#[derive(Debug, Clone)]
pub struct VisitorAuth(pub VisitorPrincipal);

impl FromRequestParts<AppState> for VisitorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match principal(parts, state).await? {
            Principal::Visitor(visitor) => {
                let origin = crate::http::cross_origin(&parts.headers);
                let app = state
                    .auth_cache
                    .app(&state.db, visitor.app_id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::Unauthorized("the visitor's app no longer exists".into())
                    })?;
                if !app.origin_allowed(origin) {
                    return Err(ApiError::forbidden("origin not allowed for this app"));
                }
                Ok(VisitorAuth(visitor))
            }
            // On the public listener an agent's token is as unknown as on
            // its WebSocket (http::public).
            Principal::Agent(_)
                if parts
                    .extensions
                    .get::<crate::http::public::PublicListener>()
                    .is_some() =>
            {
                Err(ApiError::Unauthorized("invalid or revoked token".into()))
            }
            Principal::Agent(_) => Err(ApiError::forbidden("this route needs a visitor token")),
        }
    }
}

/// `hex(HMAC-SHA256(secret, user_id))`, compared in constant time.
pub fn verify_user_hash(secret: &str, user_id: &str, user_hash: &str) -> bool {
    let Ok(expected) = hex::decode(user_hash.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(user_id.as_bytes());
    mac.verify_slice(&expected).is_ok()
}

/// How an APP user id is keyed: never stored raw.
pub fn user_key(app: AppId, user_id: &str) -> Vec<u8> {
    Sha256::digest(format!("{app}:{user_id}").as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_hash_verification() {
        let secret = "sk_test";
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(b"user-42");
        let good = hex::encode(mac.finalize().into_bytes());
        assert!(verify_user_hash(secret, "user-42", &good));
        assert!(verify_user_hash(secret, "user-42", &good.to_uppercase()));
        assert!(!verify_user_hash(secret, "user-43", &good));
        assert!(!verify_user_hash("other", "user-42", &good));
        assert!(!verify_user_hash(secret, "user-42", "zz"));
        assert!(!verify_user_hash(secret, "user-42", &good[..10]));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 32);
        assert_eq!(token_hash(&a).len(), 32);
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[tokio::test]
    async fn passwords() {
        let hash = hash_password("correct horse".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), hash.clone()).await);
        assert!(!verify_password("wrong".into(), hash).await);
        assert!(!verify_password("x".into(), "not a hash".into()).await);
    }
}
