//! Presence: an `online` agent without any WebSocket connection for
//! `presence.away_grace_secs` becomes `away`, so routing stops giving them
//! chats (the laptop that was closed). A connection that comes back within
//! the grace cancels it. The hub records who went dark and when
//! (`Hub::mark_dark`, `take_dark`); this task turns the overdue into `away`.
//!
//! Coming back after the grace does not make the agent `online` again:
//! availability is the agent's choice (`POST /agents/me/status`); the UI
//! offers it when it reconnects.

use std::time::{Duration, Instant};

use crate::agents::Agent;
use crate::hub::frames;
use crate::ids::AgentId;
use crate::state::AppState;

/// Runs until shutdown. At start, agents stored as `online` have no
/// connection yet: their grace starts now.
pub async fn run(state: AppState) {
    let grace = Duration::from_secs(state.config.presence.away_grace_secs);
    match sqlx::query_as::<_, (AgentId,)>("SELECT id FROM agents WHERE status = 'online'")
        .fetch_all(&state.db)
        .await
    {
        Ok(online) => {
            for (agent,) in online {
                state.hub.mark_dark(agent);
            }
        }
        Err(error) => tracing::error!(%error, "reading online agents failed"),
    }
    loop {
        let wake = state.hub.oldest_dark().map(|since| since + grace);
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = state.hub.dark_changed() => continue,
            _ = sleep_until(wake) => {}
        }
        let Some(cutoff) = Instant::now().checked_sub(grace) else {
            continue;
        };
        for agent in state.hub.take_dark(cutoff) {
            if let Err(error) = go_away(&state, agent).await {
                tracing::error!(%error, %agent, "marking an agent away failed");
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// `online` → `away` unless a connection came back meanwhile; tells agents.
async fn go_away(state: &AppState, agent: AgentId) -> Result<(), crate::error::ApiError> {
    if state.hub.is_agent_connected(agent) {
        return Ok(());
    }
    let changed: Option<Agent> = sqlx::query_as(&format!(
        "UPDATE agents SET status = 'away' WHERE id = ? AND status = 'online'
         RETURNING {}",
        crate::agents::AGENT_COLUMNS
    ))
    .bind(agent)
    .fetch_optional(&state.db)
    .await?;
    state.auth_cache.agent_changed(agent);
    if let Some(agent) = changed {
        tracing::info!(agent = %agent.id, "no connection for the grace period: away");
        state.hub.broadcast_agents(&frames::agent(&agent));
    }
    Ok(())
}
