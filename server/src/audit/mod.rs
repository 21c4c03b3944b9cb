//! The audit log: what admins did to agents, apps, routing and settings.
//! Append only; readable by admins at `GET /api/v1/audit`.
//!
//! Every admin action calls [`record`] after it succeeded, with a short
//! dotted action (`agent.create`, `app.update`, `routing.update`…) and the
//! changed fields in `details`. Secrets and passwords never go in. The
//! door is in [`routes`].

pub mod routes;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{SqliteExecutor, SqlitePool};

use crate::error::ApiError;
use crate::ids::AgentId;
use crate::time::now_ms;

/// One audit record.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub actor_id: Option<AgentId>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    #[sqlx(json)]
    pub details: Value,
    pub created_at: i64,
}

/// Appends a record. `actor` is `None` for the command line.
pub async fn record<'e>(
    db: impl SqliteExecutor<'e>,
    actor: Option<AgentId>,
    action: &str,
    target: Option<(&str, &str)>,
    details: Value,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO audit_log (actor_id, action, target_type, target_id, details, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(actor)
    .bind(action)
    .bind(target.map(|(kind, _)| kind))
    .bind(target.map(|(_, id)| id))
    .bind(details.to_string())
    .bind(now_ms())
    .execute(db)
    .await?;
    Ok(())
}

/// Longest `action` filter: far above any action name (`routing.rule.reorder`).
const ACTION_MAX_CHARS: usize = 100;

/// What the audit log is searched for.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub actor_id: Option<AgentId>,
    #[serde(default)]
    pub cursor: Option<i64>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Newest first, at most `limit`; `action` matches exactly or as a prefix
/// ending in `.` (`agent.` gives every agent action); the cursor is the
/// last id served.
pub async fn list(
    db: &SqlitePool,
    query: ListQuery,
    limit: u32,
) -> Result<(Vec<AuditEntry>, Option<String>), ApiError> {
    if let Some(action) = query.action.as_deref() {
        // A long pattern is an SQL error in `LIKE` ("pattern too complex"):
        // refuse what no action name can be.
        if action.chars().count() > ACTION_MAX_CHARS {
            return Err(ApiError::bad_request(format!(
                "action is longer than {ACTION_MAX_CHARS} characters"
            ))
            .in_field("action"));
        }
        crate::search::check_text("action", action)?;
    }
    let (exact, prefix) = match query.action.as_deref() {
        Some(action) if action.ends_with('.') => (None, Some(format!("{action}%"))),
        Some(action) => (Some(action.to_owned()), None),
        None => (None, None),
    };
    let mut rows: Vec<AuditEntry> = sqlx::query_as(
        "SELECT id, actor_id, action, target_type, target_id, details, created_at FROM audit_log
         WHERE (?1 IS NULL OR action = ?1) AND (?2 IS NULL OR action LIKE ?2)
           AND (?3 IS NULL OR actor_id = ?3) AND (?4 IS NULL OR id < ?4)
         ORDER BY id DESC LIMIT ?5",
    )
    .bind(exact)
    .bind(prefix)
    .bind(query.actor_id)
    .bind(query.cursor)
    .bind(i64::from(limit) + 1)
    .fetch_all(db)
    .await?;
    let next_cursor =
        crate::http::extract::cut_page(&mut rows, limit, |entry| entry.id.to_string());
    Ok((rows, next_cursor))
}
