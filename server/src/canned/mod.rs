//! Canned replies: saved answers an agent inserts with a shortcut (`/refund`
//! in the composer). Shared ones belong to the shop and are managed by
//! admins (audited); personal ones belong to one agent. Bodies may hold
//! placeholders filled from the conversation, such as `{visitor.name}` or
//! `{visitor.name|there}` (with a fallback). The doors under
//! `/api/v1/canned_replies` are in [`routes`].

pub mod routes;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::SqlitePool;

use crate::agents::{Agent, Role};
use crate::change::Change;
use crate::error::ApiError;
use crate::ids::{AgentId, ConversationId};
use crate::state::AppState;
use crate::time::now_ms;

/// Most canned replies in one scope (the shop's shared set, or one agent's).
pub const PER_SCOPE_MAX: i64 = 1_000;
pub const SHORTCUT_MAX_CHARS: usize = 32;
pub const TITLE_MAX_CHARS: usize = 100;
/// Longest search query, in characters.
pub const QUERY_MAX_CHARS: usize = 100;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CannedReply {
    pub id: String,
    pub shortcut: String,
    pub title: String,
    pub body: String,
    /// `None` for a shared reply.
    pub owner_id: Option<AgentId>,
    #[sqlx(skip)]
    pub shared: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, shortcut, title, body, owner_id, created_at, updated_at";

fn finish(mut reply: CannedReply) -> CannedReply {
    reply.shared = reply.owner_id.is_none();
    reply
}

fn validate_shortcut(shortcut: &str) -> Result<String, ApiError> {
    let shortcut = shortcut.trim().trim_start_matches('/');
    let ok = (1..=SHORTCUT_MAX_CHARS).contains(&shortcut.chars().count())
        && shortcut
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(shortcut.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "shortcut must be 1-{SHORTCUT_MAX_CHARS} letters, digits, _ or - (no spaces)"
        ))
        .in_field("shortcut"))
    }
}

fn validate_title(title: &str) -> Result<String, ApiError> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > TITLE_MAX_CHARS {
        return Err(
            ApiError::bad_request(format!("title must be 1-{TITLE_MAX_CHARS} characters"))
                .in_field("title"),
        );
    }
    Ok(title.to_owned())
}

fn validate_body(state: &AppState, body: &str) -> Result<String, ApiError> {
    if body.trim().is_empty() {
        return Err(ApiError::bad_request("body must not be empty").in_field("body"));
    }
    let max = state.config.limits.content_bytes;
    if body.len() > max {
        return Err(
            ApiError::too_large(format!("body is longer than {max} bytes")).in_field("body"),
        );
    }
    Ok(body.to_owned())
}

/// A reply the agent may see: shared, or their own (else `not_found`).
pub async fn visible(db: &SqlitePool, agent: &Agent, id: &str) -> Result<CannedReply, ApiError> {
    let reply: Option<CannedReply> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM canned_replies WHERE id = ? AND (owner_id IS NULL OR owner_id = ?)"
    ))
    .bind(id)
    .bind(agent.id)
    .fetch_optional(db)
    .await?;
    reply
        .map(finish)
        .ok_or_else(|| ApiError::not_found("canned reply"))
}

/// Shared replies are the shop's: only admins change them.
fn may_change(agent: &Agent, reply: &CannedReply) -> Result<(), ApiError> {
    if reply.shared && agent.role != Role::Admin {
        return Err(ApiError::forbidden(
            "only admins change the shop's shared canned replies",
        ));
    }
    Ok(())
}

fn shortcut_taken(error: &sqlx::Error, shortcut: &str) -> Option<ApiError> {
    match error {
        sqlx::Error::Database(e) if e.is_unique_violation() => {
            Some(ApiError::Conflict(format!("shortcut /{shortcut} is taken")))
        }
        _ => None,
    }
}

/// What the list is asked for.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub q: Option<String>,
    /// `all` (default), `shared` or `mine`.
    #[serde(default)]
    pub scope: Option<String>,
}

/// `text` with `\\` escaping `LIKE`'s wildcards.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Shared and own replies; `q` matches the shortcut (with or without the
/// leading `/`), the title or the body. Shortcut-prefix matches first.
pub async fn list(
    db: &SqlitePool,
    agent: &Agent,
    query: ListQuery,
) -> Result<Vec<CannedReply>, ApiError> {
    let (shared, mine) = match query.scope.as_deref() {
        None | Some("all") => (true, true),
        Some("shared") => (true, false),
        Some("mine") => (false, true),
        Some(_) => {
            return Err(
                ApiError::bad_request("scope must be all, shared or mine").in_field("scope")
            );
        }
    };
    let q = query.q.as_deref().map(|q| q.trim().trim_start_matches('/'));
    if q.is_some_and(|q| q.chars().count() > QUERY_MAX_CHARS) {
        return Err(ApiError::bad_request(format!(
            "q must be at most {QUERY_MAX_CHARS} characters"
        ))
        .in_field("q"));
    }
    let q = q.filter(|q| !q.is_empty());
    let rows: Vec<CannedReply> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM canned_replies
         WHERE ((?1 AND owner_id IS NULL) OR (?2 AND owner_id = ?3))
           AND (?4 IS NULL OR shortcut LIKE ?5 ESCAPE '\\' OR title LIKE ?4 ESCAPE '\\' OR body LIKE ?4 ESCAPE '\\')
         ORDER BY (?5 IS NOT NULL AND shortcut LIKE ?5 ESCAPE '\\') DESC, shortcut COLLATE NOCASE, id
         LIMIT ?6"
    ))
    .bind(shared)
    .bind(mine)
    .bind(agent.id)
    .bind(q.map(|q| format!("%{}%", escape_like(q))))
    .bind(q.map(|q| format!("{}%", escape_like(q))))
    .bind(PER_SCOPE_MAX * 2)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(finish).collect())
}

/// A new canned reply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReply {
    pub shortcut: String,
    pub title: String,
    pub body: String,
    /// A shared (shop-wide) reply; admins only.
    #[serde(default)]
    pub shared: bool,
}

/// Creates `agent`'s reply (a shared one: admins only, audited); at most
/// [`PER_SCOPE_MAX`] per scope, a taken shortcut is `conflict`.
pub async fn create(
    state: &AppState,
    agent: &Agent,
    input: NewReply,
) -> Result<CannedReply, ApiError> {
    if input.shared && agent.role != Role::Admin {
        return Err(ApiError::forbidden(
            "only admins create shared canned replies",
        ));
    }
    let shortcut = validate_shortcut(&input.shortcut)?;
    let title = validate_title(&input.title)?;
    let body = validate_body(state, &input.body)?;
    let owner = (!input.shared).then_some(agent.id);
    let id = ulid::Ulid::new().to_string();
    let now = now_ms();
    // The count and the insert in one statement: the limit holds under races.
    let mut change = Change::begin(&state.db, Some(agent.id)).await?;
    let inserted = sqlx::query(
        "INSERT INTO canned_replies (id, owner_id, shortcut, title, body, created_by, created_at, updated_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7
         WHERE (SELECT COUNT(*) FROM canned_replies WHERE owner_id IS ?2) < ?8",
    )
    .bind(&id)
    .bind(owner)
    .bind(&shortcut)
    .bind(&title)
    .bind(&body)
    .bind(agent.id)
    .bind(now)
    .bind(PER_SCOPE_MAX)
    .execute(&mut *change)
    .await;
    match inserted {
        Ok(result) if result.rows_affected() == 0 => {
            return Err(ApiError::bad_request(format!(
                "at most {PER_SCOPE_MAX} canned replies per scope: delete some first"
            )));
        }
        Ok(_) => {}
        Err(error) => return Err(shortcut_taken(&error, &shortcut).unwrap_or(error.into())),
    }
    if input.shared {
        change
            .audit(
                "canned.create",
                ("canned_reply", id.as_str()),
                serde_json::json!({"shortcut": shortcut, "title": title}),
            )
            .await?;
    }
    change.commit(state).await?;
    visible(&state.db, agent, &id).await
}

/// A change to a canned reply: the given fields only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyUpdate {
    pub shortcut: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
}

/// Changes reply `id` (shared ones: admins only, audited).
pub async fn update(
    state: &AppState,
    agent: &Agent,
    id: &str,
    input: ReplyUpdate,
) -> Result<CannedReply, ApiError> {
    let mut reply = visible(&state.db, agent, id).await?;
    may_change(agent, &reply)?;
    if input.shortcut.is_none() && input.title.is_none() && input.body.is_none() {
        return Err(ApiError::bad_request("nothing to update"));
    }
    if let Some(shortcut) = &input.shortcut {
        reply.shortcut = validate_shortcut(shortcut)?;
    }
    if let Some(title) = &input.title {
        reply.title = validate_title(title)?;
    }
    if let Some(body) = &input.body {
        reply.body = validate_body(state, body)?;
    }
    // Only the given fields, in one statement: concurrent updates of
    // different fields do not undo each other.
    let mut change = Change::begin(&state.db, Some(agent.id)).await?;
    let result = sqlx::query(
        "UPDATE canned_replies SET shortcut = COALESCE(?, shortcut), title = COALESCE(?, title),
             body = COALESCE(?, body), updated_at = ? WHERE id = ?",
    )
    .bind(input.shortcut.is_some().then_some(&reply.shortcut))
    .bind(input.title.is_some().then_some(&reply.title))
    .bind(input.body.is_some().then_some(&reply.body))
    .bind(now_ms())
    .bind(&reply.id)
    .execute(&mut *change)
    .await;
    if let Err(error) = result {
        return Err(shortcut_taken(&error, &reply.shortcut).unwrap_or(error.into()));
    }
    if reply.shared {
        change
            .audit(
                "canned.update",
                ("canned_reply", reply.id.as_str()),
                serde_json::json!({"shortcut": input.shortcut.is_some().then_some(&reply.shortcut),
                    "title": input.title.is_some().then_some(&reply.title),
                    "body_changed": input.body.is_some()}),
            )
            .await?;
    }
    change.commit(state).await?;
    visible(&state.db, agent, id).await
}

/// Deletes reply `id` (shared ones: admins only, audited).
pub async fn delete(state: &AppState, agent: &Agent, id: &str) -> Result<(), ApiError> {
    let reply = visible(&state.db, agent, id).await?;
    may_change(agent, &reply)?;
    let mut change = Change::begin(&state.db, Some(agent.id)).await?;
    sqlx::query("DELETE FROM canned_replies WHERE id = ?")
        .bind(&reply.id)
        .execute(&mut *change)
        .await?;
    if reply.shared {
        change
            .audit(
                "canned.delete",
                ("canned_reply", reply.id.as_str()),
                serde_json::json!({"shortcut": reply.shortcut}),
            )
            .await?;
    }
    change.commit(state).await
}

/// Values placeholders are filled from.
pub struct Context<'a> {
    pub visitor_name: Option<&'a str>,
    pub visitor_email: Option<&'a str>,
    pub visitor_attributes: &'a Value,
    pub agent_name: &'a str,
    pub app_name: &'a str,
    pub conversation_id: Option<ConversationId>,
}

/// What [`render`] made of a body.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rendered {
    pub content: String,
    /// Known placeholders that had no value and no fallback (left empty).
    pub missing: Vec<String>,
    /// `{…}` that are not placeholders, left as they were.
    pub unknown: Vec<String>,
}

/// Fills `{name}` and `{name|fallback}` placeholders: `visitor.name`,
/// `visitor.first_name`, `visitor.email`, `visitor.attributes.KEY`,
/// `agent.name`, `app.name`, `conversation.id`. Anything else in braces is
/// left as it was, so prices like `{5 USD}` survive.
pub fn render(body: &str, context: &Context<'_>) -> Rendered {
    let mut out = Rendered::default();
    let mut rest = body;
    while let Some(open) = rest.find('{') {
        out.content.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after
            .find('}')
            .filter(|close| !after[..*close].contains('{'))
        else {
            out.content.push('{');
            rest = after;
            continue;
        };
        let inner = &after[..close];
        let (name, fallback) = match inner.split_once('|') {
            Some((name, fallback)) => (name.trim(), Some(fallback.trim())),
            None => (inner.trim(), None),
        };
        match lookup(name, context) {
            Some(value) => {
                let value = value.filter(|v| !v.trim().is_empty());
                match (value, fallback) {
                    (Some(value), _) => out.content.push_str(&value),
                    (None, Some(fallback)) => out.content.push_str(fallback),
                    (None, None) => out.missing.push(name.to_owned()),
                }
            }
            None => {
                out.content.push('{');
                out.content.push_str(inner);
                out.content.push('}');
                out.unknown.push(inner.to_owned());
            }
        }
        rest = &after[close + 1..];
    }
    out.content.push_str(rest);
    out
}

/// `None` = not a placeholder; `Some(None)` = a placeholder without a value.
fn lookup(name: &str, context: &Context<'_>) -> Option<Option<String>> {
    let owned = |v: Option<&str>| v.map(str::to_owned);
    match name {
        "visitor.name" => Some(owned(context.visitor_name)),
        "visitor.first_name" => Some(
            context
                .visitor_name
                .and_then(|name| name.split_whitespace().next())
                .map(str::to_owned),
        ),
        "visitor.email" => Some(owned(context.visitor_email)),
        "agent.name" => Some(Some(context.agent_name.to_owned())),
        "app.name" => Some(Some(context.app_name.to_owned())),
        "conversation.id" => Some(context.conversation_id.map(|id| id.to_string())),
        _ => {
            let key = name.strip_prefix("visitor.attributes.")?;
            if key.is_empty() {
                return None;
            }
            Some(
                context
                    .visitor_attributes
                    .get(key)
                    .and_then(|value| match value {
                        Value::String(text) => Some(text.clone()),
                        Value::Null => None,
                        other => Some(other.to_string()),
                    }),
            )
        }
    }
}

/// Reply `id`'s body with placeholders filled for a conversation (or only
/// the agent's and app-less ones without one).
pub async fn render_for(
    state: &AppState,
    agent: &Agent,
    id: &str,
    conversation: Option<ConversationId>,
) -> Result<Rendered, ApiError> {
    let reply = visible(&state.db, agent, id).await?;
    let empty = Value::Object(Default::default());
    let (conversation, app_name) = match conversation {
        Some(id) => {
            let conversation = crate::conversations::find(state, id)
                .await?
                .ok_or_else(|| ApiError::not_found("conversation"))?;
            let app = crate::apps::find(&state.db, conversation.app_id).await?;
            (
                Some(conversation),
                app.map(|app| app.name).unwrap_or_default(),
            )
        }
        None => (None, String::new()),
    };
    let visitor = conversation.as_ref().map(|c| &c.visitor);
    let context = Context {
        visitor_name: visitor.and_then(|v| v.name.as_deref()),
        visitor_email: visitor.and_then(|v| v.email.as_deref()),
        visitor_attributes: visitor.map_or(&empty, |v| &v.attributes),
        agent_name: &agent.display_name,
        app_name: &app_name,
        conversation_id: conversation.as_ref().map(|c| c.id),
    };
    Ok(render(&reply.body, &context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_fall_back_and_leave_the_rest() {
        let attributes = serde_json::json!({"plan": "pro", "orders": 3});
        let context = Context {
            visitor_name: Some("Li Lei"),
            visitor_email: None,
            visitor_attributes: &attributes,
            agent_name: "Amy",
            app_name: "Shop",
            conversation_id: None,
        };
        let rendered = render(
            "Hi {visitor.first_name}, {agent.name} of {app.name} here. Plan {visitor.attributes.plan}, \
             {visitor.attributes.orders} orders. Mail: {visitor.email|not given}. {visitor.email} {price} {{x}",
            &context,
        );
        assert_eq!(
            rendered.content,
            "Hi Li, Amy of Shop here. Plan pro, 3 orders. Mail: not given.  {price} {{x}"
        );
        assert_eq!(rendered.missing, vec!["visitor.email".to_owned()]);
        assert_eq!(rendered.unknown, vec!["price".to_owned(), "x".to_owned()]);
        let anonymous = Context {
            visitor_name: None,
            ..context
        };
        assert_eq!(
            render("您好，{visitor.name|顾客}！", &anonymous).content,
            "您好，顾客！"
        );
    }
}
