//! An agent takes a chat from the queue (claim) or hands one on (transfer).
//! Doors (in `routing/routes.rs`): `POST /api/v1/conversations/{id}/claim`
//! and `…/transfer`.
//!
//! Both leave a visitor-visible `event` message whose `meta` carries the
//! names a client needs to word it in its reader's language (docs/API.md,
//! event lines); a transfer's note is a `note` message (agents only).

use serde::Deserialize;
use serde_json::json;

use crate::agents::Agent;
use crate::conversations::{self, Conversation};
use crate::error::ApiError;
use crate::ids::{AgentId, ConversationId, TeamId};
use crate::state::AppState;
use crate::time::now_ms;

async fn exists(state: &AppState, id: ConversationId) -> Result<bool, ApiError> {
    let found: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM conversations WHERE id = ?")
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    Ok(found.is_some())
}

/// `agent` takes chat `id` from the queue: the one claimer that wins gets
/// the conversation; anyone else 409 `conflict` (the chat is no longer
/// queued). A claim ignores capacity: it is the agent's own choice.
pub async fn claim(
    state: &AppState,
    agent: &Agent,
    id: ConversationId,
) -> Result<Conversation, ApiError> {
    // A start acked before this request is committed first (see `start`).
    state.starts.settled(id).await;
    // One conditional statement: of concurrent claims (and the router), one wins.
    let won = sqlx::query(
        "UPDATE conversations SET assignee_id = ?1, status = 'open'
         WHERE id = ?2 AND status = 'queued' AND assignee_id IS NULL AND started_at IS NOT NULL",
    )
    .bind(agent.id)
    .bind(id)
    .execute(&state.db)
    .await?
    .rows_affected();
    if won == 0 {
        return Err(if exists(state, id).await? {
            ApiError::Conflict("the conversation is not in the queue".into())
        } else {
            ApiError::not_found("conversation")
        });
    }
    sqlx::query("UPDATE agents SET last_assigned_at = ? WHERE id = ?")
        .bind(now_ms())
        .bind(agent.id)
        .execute(&state.db)
        .await?;
    state.conversations.forget_active(id);
    super::joined(state, id, agent.id, &agent.display_name, "claim").await?;
    conversations::announce(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))
}

/// Where a chat is transferred: exactly one of an agent and a team.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub agent_id: Option<AgentId>,
    pub team_id: Option<TeamId>,
    /// An internal note for the colleague; never shown to the visitor.
    pub note: Option<String>,
}

/// `actor` hands chat `id` on. To an agent: assigned to them at once
/// (whatever their load or availability: a person chose them). To a team:
/// unassigned and queued for that team, then routed among its free
/// members. Returns the conversation after.
pub async fn transfer(
    state: &AppState,
    actor: &Agent,
    id: ConversationId,
    body: Transfer,
) -> Result<Conversation, ApiError> {
    // A start acked before this request is committed first (see `start`).
    state.starts.settled(id).await;
    let note = match body.note.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(note) if note.len() > state.config.limits.content_bytes => {
            return Err(ApiError::too_large(format!(
                "note is {} bytes, the limit is {}",
                note.len(),
                state.config.limits.content_bytes
            ))
            .in_field("note"));
        }
        Some(note) => Some(note.to_owned()),
    };
    enum To {
        Agent(AgentId, String),
        Team(TeamId, String),
    }
    let to = match (body.agent_id, body.team_id) {
        (Some(agent), None) => {
            let agent = crate::agents::find(&state.db, agent)
                .await?
                .ok_or_else(|| ApiError::not_found("agent"))?;
            if !agent.active {
                return Err(ApiError::Conflict("that agent is deactivated".into()));
            }
            To::Agent(agent.id, agent.display_name)
        }
        (None, Some(team)) => {
            let team = super::teams::find(&state.db, team)
                .await?
                .ok_or_else(|| ApiError::not_found("team"))?;
            To::Team(team.id, team.name)
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of agent_id and team_id",
            ));
        }
    };
    let updated = match &to {
        To::Agent(agent, _) => sqlx::query(
            "UPDATE conversations SET assignee_id = ?1,
                 status = CASE WHEN status = 'queued' THEN 'open' ELSE status END
             WHERE id = ?2 AND started_at IS NOT NULL AND status <> 'resolved'
               AND (assignee_id IS NULL OR assignee_id <> ?1)",
        )
        .bind(agent)
        .bind(id)
        .execute(&state.db)
        .await?
        .rows_affected(),
        To::Team(team, _) => sqlx::query(
            "UPDATE conversations SET team_id = ?1, assignee_id = NULL, status = 'queued', queued_at = ?3
             WHERE id = ?2 AND started_at IS NOT NULL AND status <> 'resolved'",
        )
        .bind(team)
        .bind(id)
        .bind(now_ms())
        .execute(&state.db)
        .await?
        .rows_affected(),
    };
    if updated == 0 {
        return Err(if exists(state, id).await? {
            ApiError::Conflict(
                "only an active conversation can be transferred, and not to its assignee".into(),
            )
        } else {
            ApiError::not_found("conversation")
        });
    }
    state.conversations.forget_active(id);
    let (content, meta) = match &to {
        To::Agent(agent, name) => (
            format!(
                "{} transferred the conversation to {name}",
                actor.display_name
            ),
            json!({
                "event": "transferred",
                "by_agent_id": actor.id,
                "by_agent_name": actor.display_name,
                "to_agent_id": agent,
                "to_agent_name": name,
            }),
        ),
        To::Team(team, name) => (
            format!(
                "{} transferred the conversation to the {name} team",
                actor.display_name
            ),
            json!({
                "event": "transferred",
                "by_agent_id": actor.id,
                "by_agent_name": actor.display_name,
                "to_team_id": team,
                "to_team_name": name,
            }),
        ),
    };
    super::event(state, id, content, meta).await?;
    if let Some(note) = note {
        conversations::send::line(
            state,
            id,
            conversations::Line::note_by(actor, note, json!({"transfer": true})),
        )
        .await?;
    }
    conversations::announce(state, id).await?;
    // The previous assignee has room again; a team transfer waits for a member.
    super::drain_logged(state).await;
    conversations::find(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))
}
