//! A ticket's history: one `ticket_events` row per change (who, when, what,
//! the value before and after), written in the transaction of the change
//! itself, and `GET /api/v1/tickets/{number}/history` to read it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::SqliteConnection;

use crate::error::ApiError;
use crate::ids::{AgentId, VisitorId};
use crate::state::AppState;

/// Who made a change.
#[derive(Debug, Clone, Copy)]
pub enum Actor {
    Agent(AgentId),
    Visitor(VisitorId),
}

impl Actor {
    fn columns(self) -> (&'static str, String) {
        match self {
            Actor::Agent(id) => ("agent", id.to_string()),
            Actor::Visitor(id) => ("visitor", id.to_string()),
        }
    }
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "TicketEventKind"))]
pub enum EventKind {
    Created,
    Subject,
    Description,
    Status,
    Priority,
    Assignee,
    Tags,
    Comment,
}

pub(super) async fn record(
    conn: &mut SqliteConnection,
    number: i64,
    actor: Actor,
    kind: EventKind,
    from: Option<Value>,
    to: Option<Value>,
    at: i64,
) -> Result<(), ApiError> {
    let (actor_type, actor_id) = actor.columns();
    sqlx::query(
        "INSERT INTO ticket_events (ticket_number, actor_type, actor_id, kind, from_value, to_value, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(number)
    .bind(actor_type)
    .bind(actor_id)
    .bind(kind)
    .bind(from.map(|v| v.to_string()))
    .bind(to.map(|v| v.to_string()))
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    ticket_number: i64,
    actor_type: String,
    actor_id: Option<String>,
    kind: EventKind,
    from_value: Option<String>,
    to_value: Option<String>,
    created_at: i64,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "TicketEventActor"))]
pub struct EventActor {
    #[serde(rename = "type")]
    #[cfg_attr(feature = "ts", ts(type = "\"agent\" | \"visitor\" | \"system\""))]
    kind: String,
    id: Option<String>,
}

/// One change, as served.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TicketEvent {
    id: i64,
    ticket_number: i64,
    actor: EventActor,
    kind: EventKind,
    #[cfg_attr(feature = "ts", ts(type = "unknown"))]
    from: Value,
    #[cfg_attr(feature = "ts", ts(type = "unknown"))]
    to: Value,
    created_at: i64,
}

fn json_or_null(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

impl From<EventRow> for TicketEvent {
    fn from(row: EventRow) -> Self {
        TicketEvent {
            id: row.id,
            ticket_number: row.ticket_number,
            actor: EventActor {
                kind: row.actor_type,
                id: row.actor_id,
            },
            kind: row.kind,
            from: json_or_null(row.from_value),
            to: json_or_null(row.to_value),
            created_at: row.created_at,
        }
    }
}

/// Ticket `number`'s history after event id `after`, oldest first, at
/// most `limit`; the cursor is the last event id served.
pub async fn list(
    state: &AppState,
    number: i64,
    after: i64,
    limit: u32,
) -> Result<(Vec<TicketEvent>, Option<String>), ApiError> {
    if super::find(state, number).await?.is_none() {
        return Err(ApiError::not_found("ticket"));
    }
    let mut rows: Vec<EventRow> = sqlx::query_as(
        "SELECT id, ticket_number, actor_type, actor_id, kind, from_value, to_value, created_at
         FROM ticket_events WHERE ticket_number = ? AND id > ? ORDER BY id LIMIT ?",
    )
    .bind(number)
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.db)
    .await?;
    let next_cursor = crate::http::extract::cut_page(&mut rows, limit, |row| row.id.to_string());
    Ok((
        rows.into_iter().map(TicketEvent::from).collect(),
        next_cursor,
    ))
}
