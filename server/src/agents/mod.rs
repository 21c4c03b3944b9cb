//! Agents: accounts, roles, availability, and signing in and out. The
//! HTTP doors (`/api/v1/agents…`, `/api/v1/auth/…`) are in [`routes`].
//!
//! Availability (`online|away|offline`) is what routing reads; it is set by
//! the agent and is separate from having a connection.
//!
//! Follow-up actions of a change, owned here: a changed agent is reread by
//! the auth cache and announced to every agent connection; revoked tokens
//! close their sockets; an agent who became available (or gained capacity)
//! lets routing drain the queue, and requeued chats are announced.

pub mod routes;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::auth;
use crate::auth::sessions::Revocation;
use crate::change::{After, Change};
use crate::error::ApiError;
use crate::ids::AgentId;
use crate::state::AppState;
use crate::time::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "AgentRole"))]
pub enum Role {
    Admin,
    Agent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "AgentStatus"))]
pub enum Availability {
    Online,
    Away,
    Offline,
}

/// The protocol's `Agent` object.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Agent {
    pub id: AgentId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub status: Availability,
    pub max_concurrent: i64,
    /// [ext] False once an admin deactivated the agent.
    pub active: bool,
}

/// The columns of an [`Agent`], for SELECT and RETURNING.
pub const AGENT_COLUMNS: &str =
    "id, username, display_name, role, status, max_concurrent, deactivated_at IS NULL AS active";

pub async fn find(
    db: impl sqlx::SqliteExecutor<'_>,
    id: AgentId,
) -> Result<Option<Agent>, ApiError> {
    Ok(
        sqlx::query_as(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?"))
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

#[derive(Debug, Clone)]
pub struct NewAgent {
    pub username: String,
    pub password: String,
    pub display_name: Option<String>,
    pub role: Role,
}

pub fn validate_username(username: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&username.chars().count())
        && username
            .chars()
            .all(|c| c.is_alphanumeric() || "._-@+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(
            ApiError::bad_request("username must be 1-64 letters, digits or . _ - @ +")
                .in_field("username"),
        )
    }
}

pub fn validate_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 {
        return Err(
            ApiError::bad_request("password must be at least 8 characters").in_field("password"),
        );
    }
    if password.len() > 1024 {
        return Err(ApiError::too_large("password is longer than 1024 bytes").in_field("password"));
    }
    Ok(())
}

/// A display name, trimmed: 1–100 characters.
fn valid_display_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(
            ApiError::bad_request("display_name must be 1-100 characters").in_field("display_name"),
        );
    }
    Ok(name.to_owned())
}

/// Creates an agent; a taken username (case-insensitive) is `conflict`.
/// Shared by the admin route and `kefu-server admin create`.
pub async fn create(db: &SqlitePool, new: NewAgent) -> Result<Agent, ApiError> {
    let prepared = Prepared::of(new).await?;
    let mut conn = db.acquire().await?;
    prepared.insert(&mut conn).await?;
    drop(conn);
    find(db, prepared.id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("agent vanished after insert")))
}

/// Whether the shop has no agent yet: its first start's setup (the owner
/// account) is due. The desktop's first-run screen asks this.
pub async fn needs_owner(db: &SqlitePool) -> Result<bool, ApiError> {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM agents")
        .fetch_one(db)
        .await?;
    Ok(count == 0)
}

/// Creates the shop's owner, an admin, only while there is no agent at all
/// (`conflict` after). The count and the insert share one write
/// transaction, so two first starts racing make one owner.
pub async fn create_owner(
    db: &SqlitePool,
    username: String,
    password: String,
    display_name: Option<String>,
) -> Result<Agent, ApiError> {
    let prepared = Prepared::of(NewAgent {
        username,
        password,
        display_name,
        role: Role::Admin,
    })
    .await?;
    let mut tx = crate::store::db::begin_write(db).await?;
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM agents")
        .fetch_one(&mut *tx)
        .await?;
    if count > 0 {
        return Err(ApiError::Conflict(
            "the owner account exists already".into(),
        ));
    }
    prepared.insert(&mut tx).await?;
    tx.commit().await?;
    find(db, prepared.id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("agent vanished after insert")))
}

/// A new agent, checked and its password hashed (slow, so before any
/// transaction is taken).
struct Prepared {
    id: AgentId,
    username: String,
    display_name: String,
    hash: String,
    role: Role,
}

impl Prepared {
    async fn of(new: NewAgent) -> Result<Self, ApiError> {
        validate_username(&new.username)?;
        validate_password(&new.password)?;
        let display_name =
            valid_display_name(new.display_name.as_deref().unwrap_or(&new.username))?;
        let hash = auth::hash_password(new.password)
            .await
            .map_err(ApiError::internal)?;
        Ok(Prepared {
            id: AgentId::new(),
            username: new.username,
            display_name,
            hash,
            role: new.role,
        })
    }

    async fn insert(&self, conn: &mut sqlx::SqliteConnection) -> Result<(), ApiError> {
        let result = sqlx::query(
            "INSERT INTO agents (id, username, password_hash, display_name, role, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(self.id)
        .bind(&self.username)
        .bind(&self.hash)
        .bind(&self.display_name)
        .bind(self.role)
        .bind(now_ms())
        .execute(conn)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(ApiError::Conflict(
                format!("username {} is taken", self.username),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// Creates an agent for `actor` (an admin; `None`: the command line), its
/// audit row in the same transaction.
pub async fn create_by(
    db: &SqlitePool,
    actor: Option<AgentId>,
    new: NewAgent,
) -> Result<Agent, ApiError> {
    let prepared = Prepared::of(new).await?;
    let mut tx = crate::store::db::begin_write(db).await?;
    prepared.insert(&mut tx).await?;
    let mut details = serde_json::json!({"username": prepared.username, "role": prepared.role});
    if actor.is_none() {
        details["via"] = "cli".into();
    }
    crate::audit::record(
        &mut *tx,
        actor,
        "agent.create",
        Some(("agent", &prepared.id.to_string())),
        details,
    )
    .await?;
    tx.commit().await?;
    let agent = find(db, prepared.id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("agent vanished after insert")))?;
    tracing::info!(actor = ?actor, agent = %agent.id, "agent created");
    Ok(agent)
}

/// Every agent, by username (at most 1,000: a shop, not a directory).
pub async fn list(db: &SqlitePool) -> Result<Vec<Agent>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents ORDER BY username LIMIT 1000"
    ))
    .fetch_all(db)
    .await?)
}

/// Signs an agent in from `client`: a new token and the agent. Password
/// attempts are budgeted per address and per username (`state::Limiters`),
/// spent before the password is looked at; an unknown username costs the
/// same time as a wrong password.
pub async fn login(
    state: &AppState,
    client: IpAddr,
    username: &str,
    password: String,
) -> Result<(String, Agent), ApiError> {
    if let Err(error) = state.limiters.password_attempt(client, username) {
        tracing::warn!(%client, "login refused: too many password attempts");
        return Err(error);
    }
    let row: Option<(AgentId, String)> = sqlx::query_as(
        "SELECT id, password_hash FROM agents WHERE username = ? AND deactivated_at IS NULL",
    )
    .bind(username)
    .fetch_optional(&state.db)
    .await?;
    // Verify against a dummy hash for unknown users too, so response time
    // does not tell which usernames exist.
    let (id, hash) = match row {
        Some((id, hash)) => (Some(id), hash),
        None => (None, state.dummy_password_hash().await),
    };
    let valid = auth::verify_password(password, hash).await;
    let Some(id) = id.filter(|_| valid) else {
        tracing::info!(%client, "login failed: wrong username or password");
        return Err(ApiError::Unauthorized("wrong username or password".into()));
    };
    let token = auth::issue_agent_token(&state.db, id).await?;
    let agent = find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    tracing::info!(agent = %agent.id, %client, "agent signed in");
    Ok((token, agent))
}

/// Ends the session of `token` (and closes the WebSockets that said hello
/// with it).
pub async fn logout(state: &AppState, agent: AgentId, token: Option<&str>) -> Result<(), ApiError> {
    if let Some(token) = token {
        Revocation::agent_token(state, agent, token).await?;
    }
    tracing::info!(%agent, "agent signed out");
    Ok(())
}

/// What an agent may change about themselves (role, capacity and
/// activation stay with admins).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfUpdate {
    pub display_name: Option<String>,
    /// A new password; needs `current_password`. The agent's other tokens
    /// are revoked, the one making the call (`keep`) stays valid.
    pub password: Option<String>,
    pub current_password: Option<String>,
}

/// An agent changes their own display name or password from `client`;
/// `keep` is the token making the call, which outlives a password change.
pub async fn update_self(
    state: &AppState,
    client: IpAddr,
    agent: &Agent,
    keep: Option<&str>,
    update: SelfUpdate,
) -> Result<Agent, ApiError> {
    let display_name = update
        .display_name
        .as_deref()
        .map(valid_display_name)
        .transpose()?;
    let hash = match update.password {
        Some(password) => {
            validate_password(&password)?;
            let Some(current) = update.current_password else {
                return Err(ApiError::bad_request(
                    "current_password is required to change the password",
                )
                .in_field("current_password"));
            };
            // A token holder must not get unlimited guesses at the
            // password: the same budgets as logins, spent before checking.
            if let Err(error) = state.limiters.password_attempt(client, &agent.username) {
                tracing::warn!(agent = %agent.id, %client, "password change refused: too many password attempts");
                return Err(error);
            }
            let (stored,): (String,) =
                sqlx::query_as("SELECT password_hash FROM agents WHERE id = ?")
                    .bind(agent.id)
                    .fetch_one(&state.db)
                    .await?;
            if !auth::verify_password(current, stored).await {
                return Err(ApiError::forbidden("current_password is wrong"));
            }
            Some(
                auth::hash_password(password)
                    .await
                    .map_err(ApiError::internal)?,
            )
        }
        None => None,
    };
    let mut change = Change::begin(&state.db, Some(agent.id)).await?;
    sqlx::query(
        "UPDATE agents SET display_name = COALESCE(?, display_name),
             password_hash = COALESCE(?, password_hash) WHERE id = ?",
    )
    .bind(&display_name)
    .bind(&hash)
    .bind(agent.id)
    .execute(&mut *change)
    .await?;
    // The agent's other sessions end (and their WebSockets close); the one
    // that made the change stays.
    if hash.is_some() {
        let revocation = Revocation::agent_tokens(&mut change, agent.id, keep).await?;
        change.then(After::Revoke(revocation));
    }
    change
        .audit(
            "agent.update_self",
            ("agent", &agent.id.to_string()),
            serde_json::json!({"display_name": display_name, "password_changed": hash.is_some()}),
        )
        .await?;
    change.then(After::Agent(agent.id));
    change.commit(state).await?;
    find(&state.db, agent.id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))
}

/// An agent sets their own availability; routing hears of it.
pub async fn set_status(
    state: &AppState,
    agent: AgentId,
    status: Availability,
) -> Result<Agent, ApiError> {
    sqlx::query("UPDATE agents SET status = ? WHERE id = ?")
        .bind(status)
        .bind(agent)
        .execute(&state.db)
        .await?;
    state.auth_cache.agent_changed(agent);
    let agent = find(&state.db, agent)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    state
        .hub
        .broadcast_agents(&crate::hub::frames::agent(&agent));
    availability_changed(state, &agent, true).await;
    Ok(agent)
}

/// Routing's side of a change to an online agent: when set online
/// (`status_set`) without a connection their grace period starts; they may
/// take from the queue.
async fn availability_changed(state: &AppState, agent: &Agent, status_set: bool) {
    if agent.status == Availability::Online {
        if status_set {
            state.hub.mark_dark(agent.id);
        }
        crate::routing::drain_logged(state).await;
    }
}

/// Highest `max_concurrent` an admin may set.
pub const MAX_CONCURRENT_LIMIT: i64 = 1_000;

/// What an admin may change about an agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUpdate {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub status: Option<Availability>,
    pub max_concurrent: Option<i64>,
    /// A new password; the agent's tokens are revoked.
    pub password: Option<String>,
    /// False: deactivate (signed out everywhere, offline, chats back to the
    /// queue, cannot sign in); true: reactivate.
    pub active: Option<bool>,
}

/// An admin changes agent `id`. The last admin cannot be demoted or
/// deactivated (`conflict`), nobody deactivates themselves. Audited
/// without the password.
pub async fn update(
    state: &AppState,
    admin: AgentId,
    id: AgentId,
    update: AdminUpdate,
) -> Result<Agent, ApiError> {
    // An early 404, before a password is hashed; read again below.
    if find(&state.db, id).await?.is_none() {
        return Err(ApiError::not_found("agent"));
    }
    let display_name = update
        .display_name
        .as_deref()
        .map(valid_display_name)
        .transpose()?;
    if let Some(max) = update.max_concurrent
        && !(0..=MAX_CONCURRENT_LIMIT).contains(&max)
    {
        return Err(ApiError::bad_request(format!(
            "max_concurrent must be 0-{MAX_CONCURRENT_LIMIT}"
        ))
        .in_field("max_concurrent"));
    }
    let hash = match update.password {
        Some(password) => {
            validate_password(&password)?;
            Some(
                auth::hash_password(password)
                    .await
                    .map_err(ApiError::internal)?,
            )
        }
        None => None,
    };
    // Everything the checks below read is read again under the write lock
    // (BEGIN IMMEDIATE), so that they hold against concurrent updates: of
    // two admins demoting each other at once, the second finds itself no
    // longer an admin (403) or its target the last admin (409).
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let acting: Option<(i64,)> = sqlx::query_as(
        "SELECT 1 FROM agents WHERE id = ? AND role = 'admin' AND deactivated_at IS NULL",
    )
    .bind(admin)
    .fetch_optional(&mut *change)
    .await?;
    if acting.is_none() {
        return Err(ApiError::forbidden("admins only"));
    }
    let current = find(&mut *change, id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let deactivate = update.active == Some(false) && current.active;
    if deactivate && id == admin {
        return Err(ApiError::Conflict("you cannot deactivate yourself".into()));
    }
    if current.role == Role::Admin && (update.role == Some(Role::Agent) || deactivate) {
        let (admins,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM agents WHERE role = 'admin' AND deactivated_at IS NULL",
        )
        .fetch_one(&mut *change)
        .await?;
        if admins <= 1 {
            return Err(ApiError::Conflict(
                "the last admin cannot be demoted or deactivated".into(),
            ));
        }
    }
    sqlx::query(
        "UPDATE agents SET display_name = COALESCE(?, display_name), role = COALESCE(?, role),
             status = COALESCE(?, status), max_concurrent = COALESCE(?, max_concurrent),
             password_hash = COALESCE(?, password_hash)
         WHERE id = ?",
    )
    .bind(&display_name)
    .bind(update.role)
    .bind(update.status)
    .bind(update.max_concurrent)
    .bind(&hash)
    .bind(id)
    .execute(&mut *change)
    .await?;
    let now = now_ms();
    match update.active {
        Some(false) => {
            sqlx::query(
                "UPDATE agents SET deactivated_at = COALESCE(deactivated_at, ?), status = 'offline' WHERE id = ?",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *change)
            .await?;
        }
        Some(true) => {
            sqlx::query("UPDATE agents SET deactivated_at = NULL WHERE id = ?")
                .bind(id)
                .execute(&mut *change)
                .await?;
        }
        None => {}
    }
    // Their active chats go back to the queue (at its tail).
    let requeued: Vec<(crate::ids::ConversationId,)> = if deactivate {
        sqlx::query_as(
            "UPDATE conversations SET assignee_id = NULL, status = 'queued', queued_at = ?
             WHERE assignee_id = ? AND status IN ('open', 'pending') RETURNING id",
        )
        .bind(now)
        .bind(id)
        .fetch_all(&mut *change)
        .await?
    } else {
        Vec::new()
    };
    // A reset password or a deactivation ends every session of the agent.
    if hash.is_some() || deactivate {
        let revocation = Revocation::agent_tokens(&mut change, id, None).await?;
        change.then(After::Revoke(revocation));
    }
    change
        .audit(
            "agent.update",
            ("agent", &id.to_string()),
            serde_json::json!({
                "display_name": display_name, "role": update.role, "status": update.status,
                "max_concurrent": update.max_concurrent, "password_reset": hash.is_some(),
                "active": update.active,
            }),
        )
        .await?;
    change.then(After::Agent(id));
    for (conversation,) in &requeued {
        change.then(After::Conversation(*conversation));
    }
    if !requeued.is_empty() {
        change.then(After::Drain);
    }
    change.commit(state).await?;
    let agent = find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    tracing::info!(%admin, agent = %agent.id, "agent updated");
    if update.status.is_some() || update.max_concurrent.is_some() {
        availability_changed(state, &agent, update.status.is_some()).await;
    }
    Ok(agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two first starts racing (the desktop's setup screen open twice):
    /// exactly one owner is made, the other is told it exists; a bad
    /// password changes nothing.
    #[tokio::test]
    async fn one_owner_however_many_ask_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = crate::store::db::open(dir.path()).await.expect("open");
        assert!(needs_owner(&db).await.expect("needs"));
        let short = create_owner(&db, "owner".into(), "short".into(), None).await;
        assert_eq!(short.expect_err("short password").field(), Some("password"));
        assert!(needs_owner(&db).await.expect("still needs"));

        let (a, b) = tokio::join!(
            create_owner(&db, "ann".into(), "correct horse 1".into(), None),
            create_owner(&db, "bob".into(), "correct horse 2".into(), None),
        );
        let made: Vec<Agent> = [a, b].into_iter().filter_map(Result::ok).collect();
        assert_eq!(made.len(), 1, "exactly one owner");
        assert_eq!(made[0].role, Role::Admin);
        assert!(!needs_owner(&db).await.expect("needs"));
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM agents")
            .fetch_one(&db)
            .await
            .expect("count");
        assert_eq!(count, 1);
        let late = create_owner(&db, "cat".into(), "correct horse 3".into(), None).await;
        assert!(matches!(late, Err(ApiError::Conflict(_))), "{late:?}");
    }
}
