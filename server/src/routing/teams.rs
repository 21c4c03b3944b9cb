//! Teams: named groups of agents that rules and transfers route to.
//! Agents read them; admins create, rename, set members and delete
//! (`/api/v1/teams`, doors in `routing/routes.rs`), each change audited.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{SqliteExecutor, SqlitePool};

use crate::change::{After, Change};
use crate::error::ApiError;
use crate::ids::{AgentId, TeamId};
use crate::state::AppState;
use crate::time::now_ms;

/// Limits: teams in all, members per team.
pub const TEAMS_MAX: i64 = 200;
const MEMBERS_MAX: usize = 1_000;

/// The `Team` object.
#[derive(Debug, Clone, Serialize)]
pub struct Team {
    pub id: TeamId,
    pub name: String,
    /// Members, ordered by id.
    pub agent_ids: Vec<AgentId>,
    pub created_at: i64,
}

pub async fn exists(db: impl SqliteExecutor<'_>, id: TeamId) -> Result<bool, ApiError> {
    let found: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM teams WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(found.is_some())
}

pub async fn find(db: &SqlitePool, id: TeamId) -> Result<Option<Team>, ApiError> {
    let row: Option<(TeamId, String, i64)> =
        sqlx::query_as("SELECT id, name, created_at FROM teams WHERE id = ?")
            .bind(id)
            .fetch_optional(db)
            .await?;
    let Some((id, name, created_at)) = row else {
        return Ok(None);
    };
    let members: Vec<(AgentId,)> =
        sqlx::query_as("SELECT agent_id FROM team_members WHERE team_id = ? ORDER BY agent_id")
            .bind(id)
            .fetch_all(db)
            .await?;
    Ok(Some(Team {
        id,
        name,
        agent_ids: members.into_iter().map(|(id,)| id).collect(),
        created_at,
    }))
}

/// Every team (at most [`TEAMS_MAX`]), by name.
pub async fn list(db: &SqlitePool) -> Result<Vec<Team>, ApiError> {
    let ids: Vec<(TeamId,)> = sqlx::query_as(&format!(
        "SELECT id FROM teams ORDER BY name, id LIMIT {TEAMS_MAX}"
    ))
    .fetch_all(db)
    .await?;
    let mut teams = Vec::with_capacity(ids.len());
    for (id,) in ids {
        if let Some(team) = find(db, id).await? {
            teams.push(team);
        }
    }
    Ok(teams)
}

/// A new team, or a change of one: the fields given (on create, `name` is
/// required).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamInput {
    pub name: Option<String>,
    /// The whole member list (replaces it on update).
    pub agent_ids: Option<Vec<AgentId>>,
}

fn clean_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request("name must be 1-100 characters").in_field("name"));
    }
    Ok(name.to_owned())
}

/// Checks every member exists; returns them sorted without duplicates.
async fn clean_members(db: &SqlitePool, mut ids: Vec<AgentId>) -> Result<Vec<AgentId>, ApiError> {
    if ids.len() > MEMBERS_MAX {
        return Err(
            ApiError::bad_request(format!("at most {MEMBERS_MAX} members")).in_field("agent_ids"),
        );
    }
    ids.sort();
    ids.dedup();
    for id in &ids {
        if crate::agents::find(db, *id).await?.is_none() {
            return Err(ApiError::not_found("agent"));
        }
    }
    Ok(ids)
}

fn name_taken(error: sqlx::Error, name: &str) -> ApiError {
    match error {
        sqlx::Error::Database(e) if e.is_unique_violation() => {
            ApiError::Conflict(format!("a team named {name} exists"))
        }
        other => other.into(),
    }
}

async fn set_members(
    tx: &mut sqlx::SqliteConnection,
    team: TeamId,
    members: &[AgentId],
) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM team_members WHERE team_id = ?")
        .bind(team)
        .execute(&mut *tx)
        .await?;
    for agent in members {
        sqlx::query("INSERT INTO team_members (team_id, agent_id) VALUES (?, ?)")
            .bind(team)
            .bind(agent)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// `admin` creates a team, audited (`team.create`).
pub async fn create(state: &AppState, admin: AgentId, body: TeamInput) -> Result<Team, ApiError> {
    let name = clean_name(
        body.name
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("name is required").in_field("name"))?,
    )?;
    let members = clean_members(&state.db, body.agent_ids.unwrap_or_default()).await?;
    let id = TeamId::new();
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM teams")
        .fetch_one(&mut *change)
        .await?;
    if count >= TEAMS_MAX {
        return Err(ApiError::Conflict(format!("at most {TEAMS_MAX} teams")));
    }
    sqlx::query("INSERT INTO teams (id, name, created_at) VALUES (?, ?, ?)")
        .bind(id)
        .bind(&name)
        .bind(now_ms())
        .execute(&mut *change)
        .await
        .map_err(|e| name_taken(e, &name))?;
    set_members(&mut change, id, &members).await?;
    change
        .audit(
            "team.create",
            ("team", &id.to_string()),
            json!({"name": name, "agent_ids": members}),
        )
        .await?;
    change.commit(state).await?;
    find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("team"))
}

/// `admin` renames team `id` or sets its members, audited
/// (`team.update`); new members may take the team's queue.
pub async fn update(
    state: &AppState,
    admin: AgentId,
    id: TeamId,
    body: TeamInput,
) -> Result<Team, ApiError> {
    let name = body.name.as_deref().map(clean_name).transpose()?;
    let members = match body.agent_ids {
        Some(ids) => Some(clean_members(&state.db, ids).await?),
        None => None,
    };
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    // Checked under the write lock: a concurrent delete cannot slip in
    // between (members of a deleted team would break its foreign key).
    if !exists(&mut *change, id).await? {
        return Err(ApiError::not_found("team"));
    }
    let mut details = serde_json::Map::new();
    if let Some(name) = &name {
        sqlx::query("UPDATE teams SET name = ? WHERE id = ?")
            .bind(name)
            .bind(id)
            .execute(&mut *change)
            .await
            .map_err(|e| name_taken(e, name))?;
        details.insert("name".into(), json!(name));
    }
    if let Some(members) = &members {
        set_members(&mut change, id, members).await?;
        details.insert("agent_ids".into(), json!(members));
        // New members may be free for the team's queue.
        change.then(After::Drain);
    }
    change
        .audit(
            "team.update",
            ("team", &id.to_string()),
            Value::Object(details),
        )
        .await?;
    change.commit(state).await?;
    find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("team"))
}

/// `admin` deletes team `id`, audited (`team.delete`). A team a rule
/// routes to cannot be deleted (409): change the rule first. Conversations
/// routed to it go back to everyone.
pub async fn delete(state: &AppState, admin: AgentId, id: TeamId) -> Result<(), ApiError> {
    let mut change = Change::begin(&state.db, Some(admin)).await?;
    let used: Option<(String,)> =
        sqlx::query_as("SELECT name FROM routing_rules WHERE team_id = ? LIMIT 1")
            .bind(id)
            .fetch_optional(&mut *change)
            .await?;
    if let Some((rule,)) = used {
        return Err(ApiError::Conflict(format!(
            "routing rule {rule} sends chats to this team"
        )));
    }
    let touched: Vec<(crate::ids::ConversationId,)> =
        sqlx::query_as("UPDATE conversations SET team_id = NULL WHERE team_id = ? RETURNING id")
            .bind(id)
            .fetch_all(&mut *change)
            .await?;
    sqlx::query("DELETE FROM team_members WHERE team_id = ?")
        .bind(id)
        .execute(&mut *change)
        .await?;
    let removed = sqlx::query("DELETE FROM teams WHERE id = ?")
        .bind(id)
        .execute(&mut *change)
        .await?
        .rows_affected();
    if removed == 0 {
        return Err(ApiError::not_found("team"));
    }
    change
        .audit("team.delete", ("team", &id.to_string()), json!({}))
        .await?;
    for (conversation,) in touched {
        change.then(After::Conversation(conversation));
    }
    change.then(After::Drain);
    change.commit(state).await
}
