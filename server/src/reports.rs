//! Reports: per day and per agent — conversations, messages, first
//! response and resolution times (median, p90), tickets opened/solved.
//! Computed from `reporting_events` (one row per fact, see migration 0002)
//! and the message index. Routes under `/api/v1/reports`.

use axum::Router;
use sqlx::SqliteExecutor;

use crate::error::ApiError;
use crate::ids::{AgentId, AppId, ConversationId};
use crate::state::AppState;
use crate::time::now_ms;

/// The facts reports count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    /// A conversation started or reopened (a new session).
    ConversationOpened,
    /// The first agent reply of a session; value = time since opened.
    FirstResponse,
    /// Resolved; value = time since opened.
    ConversationResolved,
    TicketOpened,
    TicketSolved,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::ConversationOpened => "conversation_opened",
            EventName::FirstResponse => "first_response",
            EventName::ConversationResolved => "conversation_resolved",
            EventName::TicketOpened => "ticket_opened",
            EventName::TicketSolved => "ticket_solved",
        }
    }
}

/// One fact to record.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub app_id: Option<AppId>,
    pub conversation_id: Option<ConversationId>,
    pub ticket_number: Option<u64>,
    pub agent_id: Option<AgentId>,
    pub value_ms: Option<i64>,
    /// Defaults to now.
    pub at: Option<i64>,
}

pub async fn record<'e>(
    db: impl SqliteExecutor<'e>,
    name: EventName,
    event: Event,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO reporting_events (name, app_id, conversation_id, ticket_number, agent_id, value_ms, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(name.as_str())
    .bind(event.app_id)
    .bind(event.conversation_id)
    .bind(event.ticket_number.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
    .bind(event.agent_id)
    .bind(event.value_ms)
    .bind(event.at.unwrap_or_else(now_ms))
    .execute(db)
    .await?;
    Ok(())
}

pub fn routes() -> Router<AppState> {
    Router::new()
}
