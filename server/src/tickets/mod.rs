//! Tickets: numbered (#1, #2, …) cases with status, priority, assignee,
//! tags, a requester (a visitor and/or an email) and an optional link to a
//! conversation whose transcript is attached. Comments are public replies
//! (delivered into the linked conversation) or internal. Every change is kept
//! in the ticket's history and goes to agents as a `ticket` frame.
//!
//! The doors under `/api/v1/tickets` (agents) and `/api/v1/visitor/tickets`
//! (the visitor's offline form and its own tickets) are in [`routes`]; the
//! operations are here and in the submodules: `list` (filters, sort,
//! cursor, and the indexes behind them), `comments`, `history`,
//! `transcript`, `visitor`.
//!
//! Invariants: `ticket_tags` always holds exactly the tags of
//! `tickets.tags` (both are written in one transaction); every stored change
//! has a `ticket_events` row written in the same transaction; a visitor only
//! ever reads tickets whose requester it is, and never internal comments.

mod comments;
pub(crate) mod history;
mod list;
pub mod routes;
mod transcript;
mod visitor;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::SqliteConnection;

use crate::error::{ApiError, ApiResult};
use crate::hub::frames;
use crate::ids::{AgentId, AppId, CommentId, ConversationId, VisitorId};
use crate::reports::{self, EventName};
use crate::state::AppState;
use crate::time::now_ms;

pub use history::{Actor, EventKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum TicketStatus {
    Open,
    Pending,
    Solved,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "TicketPriority"))]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

/// Where a ticket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "TicketVia"))]
pub enum Via {
    /// Made by an agent, not from a conversation.
    Agent,
    /// Made by an agent from a conversation (transcript attached).
    Chat,
    /// A visitor's offline form.
    Form,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(rename = "TicketRequester"))]
pub struct Requester {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub visitor_id: Option<VisitorId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub email: Option<String>,
}

/// The protocol's `Ticket` object, plus `via` and `transcript_seq` [ext].
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Ticket {
    pub number: u64,
    pub subject: String,
    pub description: String,
    pub status: TicketStatus,
    pub priority: Priority,
    pub assignee_id: Option<AgentId>,
    pub conversation_id: Option<ConversationId>,
    pub requester: Requester,
    pub tags: Vec<String>,
    pub via: Via,
    /// The attached transcript is the linked conversation's messages with
    /// `seq <= transcript_seq`; `null` when none is attached.
    pub transcript_seq: Option<u64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    number: i64,
    subject: String,
    description: String,
    status: TicketStatus,
    priority: Priority,
    assignee_id: Option<AgentId>,
    conversation_id: Option<ConversationId>,
    requester_visitor_id: Option<VisitorId>,
    requester_email: Option<String>,
    tags: String,
    via: Via,
    transcript_seq: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl From<TicketRow> for Ticket {
    fn from(row: TicketRow) -> Self {
        Ticket {
            number: u64::try_from(row.number).unwrap_or(0),
            subject: row.subject,
            description: row.description,
            status: row.status,
            priority: row.priority,
            assignee_id: row.assignee_id,
            conversation_id: row.conversation_id,
            requester: Requester {
                visitor_id: row.requester_visitor_id,
                email: row.requester_email,
            },
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            via: row.via,
            transcript_seq: row.transcript_seq.and_then(|s| u64::try_from(s).ok()),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The columns of a `TicketRow`, from `tickets t`.
const COLUMNS: &str = "t.number, t.subject, t.description, t.status, t.priority, t.assignee_id,
    t.conversation_id, t.requester_visitor_id, t.requester_email, t.tags, t.via, t.transcript_seq,
    t.created_at, t.updated_at";

/// A ticket comment. `client_msg_id` and `message_seq` are [ext].
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Comment {
    pub id: CommentId,
    pub ticket_number: i64,
    pub author_id: AgentId,
    pub body: String,
    pub public: bool,
    /// The author's id for this post: a retried post returns the original.
    pub client_msg_id: Option<String>,
    /// A public reply delivered into the linked conversation: its seq there.
    pub message_seq: Option<i64>,
    pub created_at: i64,
}

/// What an operation that may find an earlier result (a retried post)
/// made: `new` is false when it found one.
#[derive(Debug)]
pub struct Made<T> {
    pub new: bool,
    pub value: T,
}

impl<T> Made<T> {
    fn created(value: T) -> Self {
        Made { new: true, value }
    }

    fn found(value: T) -> Self {
        Made { new: false, value }
    }
}

async fn find_in(conn: &mut SqliteConnection, number: i64) -> Result<Option<Ticket>, ApiError> {
    let row: Option<TicketRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tickets t WHERE t.number = ?"
    ))
    .bind(number)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Ticket::from))
}

pub async fn find(state: &AppState, number: i64) -> Result<Option<Ticket>, ApiError> {
    let mut conn = state.db.acquire().await?;
    find_in(&mut conn, number).await
}

/// `{number}` in a path: a positive integer, optionally after a `#`.
fn parse_number(text: &str) -> Result<i64, ApiError> {
    text.trim_start_matches('#')
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found("ticket"))
}

const SUBJECT_MAX_CHARS: usize = 200;
const TAGS_MAX: usize = 20;
const TAG_MAX_CHARS: usize = 50;
const EMAIL_MAX_BYTES: usize = 254;

fn check_subject(subject: &str) -> Result<String, ApiError> {
    let subject = subject.trim();
    if subject.is_empty() {
        return Err(ApiError::bad_request("subject must not be empty").in_field("subject"));
    }
    if subject.chars().count() > SUBJECT_MAX_CHARS {
        return Err(ApiError::bad_request(format!(
            "subject is longer than {SUBJECT_MAX_CHARS} characters"
        ))
        .in_field("subject"));
    }
    if subject.chars().any(char::is_control) {
        return Err(ApiError::bad_request("subject has control characters").in_field("subject"));
    }
    Ok(subject.to_owned())
}

/// A description, comment body or form message: at most
/// `limits.content_bytes` UTF-8 bytes (413).
fn check_text(state: &AppState, field: &str, text: &str) -> Result<(), ApiError> {
    if text.len() > state.config.limits.content_bytes {
        return Err(ApiError::too_large(format!(
            "{field} is longer than {} bytes",
            state.config.limits.content_bytes
        ))
        .in_field(field.to_owned()));
    }
    Ok(())
}

/// Tags are trimmed and lower-cased, 1–50 characters without control
/// characters or commas (a comma separates tags in UIs and imports);
/// duplicates are dropped, order is kept; at most 20.
fn check_tags(tags: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut clean: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty()
            || tag.chars().count() > TAG_MAX_CHARS
            || tag.chars().any(|c| c.is_control() || c == ',')
        {
            return Err(ApiError::bad_request(format!(
                "tags must be 1-{TAG_MAX_CHARS} characters, without control characters or commas"
            ))
            .in_field("tags"));
        }
        if !clean.contains(&tag) {
            clean.push(tag);
        }
    }
    if clean.len() > TAGS_MAX {
        return Err(ApiError::bad_request(format!("at most {TAGS_MAX} tags")).in_field("tags"));
    }
    Ok(clean)
}

/// A plausible address: `local@domain.tld`, one `@`, no spaces, quotes or
/// brackets, a domain of letters, digits, `-` and dots with at least one dot.
/// Not RFC 5322 in full (quoted local parts are refused), as most help desks.
pub fn check_email(field: &str, email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    let bad = || {
        ApiError::bad_request(format!("{field} is not an email address")).in_field(field.to_owned())
    };
    if email.len() > EMAIL_MAX_BYTES {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[]\\,;:\"@".contains(c));
    let domain_ok = domain.contains('.')
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    if local_ok && domain_ok {
        Ok(email.to_owned())
    } else {
        Err(bad())
    }
}

async fn check_agent(state: &AppState, agent: Option<AgentId>) -> Result<(), ApiError> {
    if let Some(agent) = agent
        && crate::agents::find(&state.db, agent).await?.is_none()
    {
        return Err(ApiError::not_found("assignee"));
    }
    Ok(())
}

/// A subject made from a message: its first non-blank line, cut to 100
/// characters (with `…` when cut).
fn subject_from(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line: String = line.chars().filter(|c| !c.is_control()).collect();
    let mut chars = line.chars();
    let mut subject: String = chars.by_ref().take(100).collect();
    if chars.next().is_some() {
        subject.push('…');
    }
    (!subject.trim().is_empty()).then(|| subject.trim().to_owned())
}

/// Begins a write transaction that holds SQLite's write lock from the
/// start, so a read-then-write cannot fail on a concurrent writer
/// (see `store::db::begin_write`).
async fn begin_write(
    state: &AppState,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, ApiError> {
    Ok(crate::store::db::begin_write(&state.db).await?)
}

async fn app_of(
    conn: &mut SqliteConnection,
    conversation: Option<ConversationId>,
) -> Result<Option<AppId>, ApiError> {
    let Some(conversation) = conversation else {
        return Ok(None);
    };
    let app: Option<(AppId,)> = sqlx::query_as("SELECT app_id FROM conversations WHERE id = ?")
        .bind(conversation)
        .fetch_optional(conn)
        .await?;
    Ok(app.map(|(app,)| app))
}

/// A ticket about to be stored.
struct NewTicket {
    subject: String,
    description: String,
    priority: Priority,
    assignee_id: Option<AgentId>,
    conversation_id: Option<ConversationId>,
    requester_visitor_id: Option<VisitorId>,
    requester_email: Option<String>,
    tags: Vec<String>,
    created_by: Option<AgentId>,
    via: Via,
    transcript_seq: Option<u64>,
    source_seq: Option<u64>,
}

fn seq_column(seq: Option<u64>) -> Option<i64> {
    seq.map(|s| i64::try_from(s).unwrap_or(i64::MAX))
}

/// Stores a ticket with its tags, its `created` history event and the
/// `ticket_opened` reporting event in one transaction, then tells agents.
async fn insert(state: &AppState, new: NewTicket, actor: Actor) -> Result<Ticket, ApiError> {
    let now = now_ms();
    let mut tx = begin_write(state).await?;
    let (number,): (i64,) = sqlx::query_as(
        "INSERT INTO tickets (subject, description, status, priority, assignee_id, conversation_id,
             requester_visitor_id, requester_email, tags, created_by, via, transcript_seq, source_seq,
             created_at, updated_at)
         VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING number",
    )
    .bind(&new.subject)
    .bind(&new.description)
    .bind(new.priority)
    .bind(new.assignee_id)
    .bind(new.conversation_id)
    .bind(new.requester_visitor_id)
    .bind(&new.requester_email)
    .bind(serde_json::to_string(&new.tags).map_err(ApiError::internal)?)
    .bind(new.created_by)
    .bind(new.via)
    .bind(seq_column(new.transcript_seq))
    .bind(seq_column(new.source_seq))
    .bind(now)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    write_tags(&mut tx, number, &new.tags).await?;
    history::record(
        &mut tx,
        number,
        actor,
        EventKind::Created,
        None,
        Some(json!({
            "subject": new.subject,
            "status": TicketStatus::Open,
            "priority": new.priority,
            "assignee_id": new.assignee_id,
            "tags": new.tags,
            "via": new.via,
        })),
        now,
    )
    .await?;
    let app_id = app_of(&mut tx, new.conversation_id).await?;
    reports::record(
        &mut *tx,
        EventName::TicketOpened,
        reports::Event {
            app_id,
            conversation_id: new.conversation_id,
            ticket_number: u64::try_from(number).ok(),
            agent_id: new.created_by,
            at: Some(now),
            ..Default::default()
        },
    )
    .await?;
    let ticket = find_in(&mut tx, number)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("inserted ticket vanished")))?;
    tx.commit().await?;
    state.hub.broadcast_agents(&frames::ticket(&ticket));
    Ok(ticket)
}

/// Replaces the `ticket_tags` rows of a ticket.
async fn write_tags(conn: &mut SqliteConnection, number: i64, tags: &[String]) -> ApiResult<()> {
    sqlx::query("DELETE FROM ticket_tags WHERE number = ?")
        .bind(number)
        .execute(&mut *conn)
        .await?;
    for tag in tags {
        sqlx::query("INSERT INTO ticket_tags (tag, number) VALUES (?, ?)")
            .bind(tag)
            .bind(number)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A ticket as an agent asks for it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketCreate {
    /// Required, unless `conversation_id` is given (then it defaults to the
    /// visitor's first message).
    pub subject: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub conversation_id: Option<ConversationId>,
    pub assignee_id: Option<AgentId>,
    pub requester_email: Option<String>,
    pub tags: Option<Vec<String>>,
}

/// Agent `agent` makes a ticket; one made from a conversation takes its
/// visitor as requester and the chat so far as its transcript.
pub async fn create(
    state: &AppState,
    agent: AgentId,
    body: TicketCreate,
) -> Result<Ticket, ApiError> {
    let subject = body.subject.as_deref().map(check_subject).transpose()?;
    if subject.is_none() && body.conversation_id.is_none() {
        return Err(ApiError::bad_request(
            "subject is required (it may only be left out with conversation_id)",
        )
        .in_field("subject"));
    }
    let description = body.description.unwrap_or_default();
    check_text(state, "description", &description)?;
    let tags = check_tags(body.tags.unwrap_or_default())?;
    check_agent(state, body.assignee_id).await?;
    let mut requester_email = match body.requester_email.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(email) => Some(check_email("requester_email", email)?),
    };
    let mut requester_visitor = None;
    let mut transcript_seq = None;
    let mut subject = subject;
    if let Some(conversation) = body.conversation_id {
        let row: Option<(VisitorId, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT v.id, v.email, v.name FROM conversations c JOIN visitors v ON v.id = c.visitor_id WHERE c.id = ?",
        )
        .bind(conversation)
        .fetch_optional(&state.db)
        .await?;
        let (visitor, email, name) = row.ok_or_else(|| ApiError::not_found("conversation"))?;
        requester_visitor = Some(visitor);
        requester_email = requester_email.or(email);
        transcript_seq = state
            .log
            .head(conversation)?
            .map(|head| head.last_seq)
            .filter(|seq| *seq > 0);
        if subject.is_none() {
            subject = Some(chat_subject(state, conversation, name.as_deref())?);
        }
    }
    let via = if body.conversation_id.is_some() {
        Via::Chat
    } else {
        Via::Agent
    };
    insert(
        state,
        NewTicket {
            subject: subject.unwrap_or_default(),
            description: description.trim().to_owned(),
            priority: body.priority.unwrap_or(Priority::Normal),
            assignee_id: body.assignee_id,
            conversation_id: body.conversation_id,
            requester_visitor_id: requester_visitor,
            requester_email,
            tags,
            created_by: Some(agent),
            via,
            transcript_seq,
            source_seq: None,
        },
        Actor::Agent(agent),
    )
    .await
}

/// The default subject of a ticket made from a chat: the first line of the
/// visitor's first text message, else "Chat with NAME".
fn chat_subject(
    state: &AppState,
    conversation: ConversationId,
    visitor_name: Option<&str>,
) -> Result<String, ApiError> {
    let first = state.log.page(conversation, 0, None, 50, false)?;
    let from_message = first
        .iter()
        .filter_map(|stored| stored.decode().ok())
        .find(|m| {
            m.sender.kind == crate::message::SenderType::Visitor
                && m.kind == crate::message::MessageKind::Text
        })
        .and_then(|m| subject_from(&m.content));
    Ok(from_message.unwrap_or_else(|| {
        let name = visitor_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or("visitor");
        let name: String = name.chars().take(100).collect();
        format!("Chat with {name}")
    }))
}

/// A change to a ticket: every field optional; `assignee_id: null`
/// unassigns.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketUpdate {
    pub subject: Option<String>,
    pub description: Option<String>,
    pub status: Option<TicketStatus>,
    pub priority: Option<Priority>,
    #[serde(default, deserialize_with = "crate::http::extract::explicit_null")]
    pub assignee_id: Option<Option<AgentId>>,
    pub tags: Option<Vec<String>>,
}

/// One field's change, for the history.
struct Change {
    kind: EventKind,
    from: Value,
    to: Value,
}

fn change<T: Serialize + PartialEq>(
    changes: &mut Vec<Change>,
    kind: EventKind,
    current: &T,
    new: Option<&T>,
) -> Result<(), ApiError> {
    if let Some(new) = new
        && new != current
    {
        changes.push(Change {
            kind,
            from: serde_json::to_value(current).map_err(ApiError::internal)?,
            to: serde_json::to_value(new).map_err(ApiError::internal)?,
        });
    }
    Ok(())
}

/// Agent `agent` changes ticket `number`: only what differs is stored,
/// each field's change in the history, `ticket_solved` reported once; an
/// update that changes nothing stores nothing and tells nobody.
pub async fn update(
    state: &AppState,
    agent: AgentId,
    number: i64,
    body: TicketUpdate,
) -> Result<Ticket, ApiError> {
    let subject = body.subject.as_deref().map(check_subject).transpose()?;
    let description = body.description.as_deref().map(str::trim);
    if let Some(description) = description {
        check_text(state, "description", description)?;
    }
    let tags = body.tags.map(check_tags).transpose()?;
    if let Some(assignee) = body.assignee_id {
        check_agent(state, assignee).await?;
    }

    let mut tx = begin_write(state).await?;
    let current = find_in(&mut tx, number)
        .await?
        .ok_or_else(|| ApiError::not_found("ticket"))?;
    let mut changes = Vec::new();
    change(
        &mut changes,
        EventKind::Subject,
        &current.subject,
        subject.as_ref(),
    )?;
    change(
        &mut changes,
        EventKind::Description,
        &current.description.as_str(),
        description.as_ref(),
    )?;
    change(
        &mut changes,
        EventKind::Status,
        &current.status,
        body.status.as_ref(),
    )?;
    change(
        &mut changes,
        EventKind::Priority,
        &current.priority,
        body.priority.as_ref(),
    )?;
    change(
        &mut changes,
        EventKind::Assignee,
        &current.assignee_id,
        body.assignee_id.as_ref(),
    )?;
    change(&mut changes, EventKind::Tags, &current.tags, tags.as_ref())?;
    if changes.is_empty() {
        // Nothing changed: nothing stored, no history, no frame.
        tx.rollback().await?;
        return Ok(current);
    }

    let now = now_ms();
    let assignee = body.assignee_id.unwrap_or(current.assignee_id);
    let status = body.status.unwrap_or(current.status);
    // Only the changed columns are set: column triggers (the search index
    // over subject and description) fire only for real changes.
    let mut sql = String::from("UPDATE tickets SET updated_at = ?");
    for change in &changes {
        sql.push_str(match change.kind {
            EventKind::Subject => ", subject = ?",
            EventKind::Description => ", description = ?",
            EventKind::Status => ", status = ?",
            EventKind::Priority => ", priority = ?",
            EventKind::Assignee => ", assignee_id = ?",
            EventKind::Tags => ", tags = ?",
            EventKind::Created | EventKind::Comment => "",
        });
    }
    sql.push_str(" WHERE number = ?");
    let mut query = sqlx::query(&sql).bind(now);
    for change in &changes {
        query = match (change.kind, &change.to) {
            (EventKind::Created | EventKind::Comment, _) => query,
            (EventKind::Tags, tags) => query.bind(tags.to_string()),
            (_, Value::String(text)) => query.bind(text.clone()),
            (_, _) => query.bind(None::<String>),
        };
    }
    query.bind(number).execute(&mut *tx).await?;
    if let Some(tags) = &tags
        && *tags != current.tags
    {
        write_tags(&mut tx, number, tags).await?;
    }
    for change in &changes {
        history::record(
            &mut tx,
            number,
            Actor::Agent(agent),
            change.kind,
            Some(change.from.clone()),
            Some(change.to.clone()),
            now,
        )
        .await?;
    }
    if status == TicketStatus::Solved && current.status != TicketStatus::Solved {
        let app_id = app_of(&mut tx, current.conversation_id).await?;
        reports::record(
            &mut *tx,
            EventName::TicketSolved,
            reports::Event {
                app_id,
                conversation_id: current.conversation_id,
                ticket_number: u64::try_from(number).ok(),
                agent_id: Some(assignee.unwrap_or(agent)),
                value_ms: Some(now - current.created_at),
                at: Some(now),
            },
        )
        .await?;
    }
    let ticket = find_in(&mut tx, number)
        .await?
        .ok_or_else(|| ApiError::not_found("ticket"))?;
    tx.commit().await?;
    state.hub.broadcast_agents(&frames::ticket(&ticket));
    Ok(ticket)
}

/// Sends the ticket as it is now to every agent connection.
async fn announce(state: &AppState, number: i64) -> Result<(), ApiError> {
    if let Some(ticket) = find(state, number).await? {
        state.hub.broadcast_agents(&frames::ticket(&ticket));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "li@example.com",
            "a.b+c@mail.example.co.uk",
            "王@例子.中国",
            " x@y.io ",
        ] {
            assert!(check_email("email", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "li",
            "li@",
            "@example.com",
            "li@localhost",
            "li@@example.com",
            "li@exa mple.com",
            "l i@example.com",
            "li@example..com",
            "li@.example.com",
            "li@example.com.",
            ".li@example.com",
            "<li>@example.com",
            "li@exa\tmple.com",
            &format!("{}@example.com", "a".repeat(65)),
            &format!("a@{}.com", "b".repeat(260)),
        ] {
            assert!(check_email("email", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_are_normalized_and_bounded() {
        let tags = check_tags(vec![" VIP ".into(), "vip".into(), "退款".into()]).expect("ok");
        assert_eq!(tags, vec!["vip", "退款"]);
        assert!(check_tags(vec!["".into()]).is_err());
        assert!(check_tags(vec!["a,b".into()]).is_err());
        assert!(check_tags(vec!["x".repeat(51)]).is_err());
        assert!(check_tags(vec!["x".repeat(50)]).is_ok());
        assert!(check_tags((0..21).map(|i| format!("t{i}")).collect()).is_err());
        assert!(check_tags((0..20).map(|i| format!("t{i}")).collect()).is_ok());
    }

    /// ticket_number, actor_type, kind, to_value, created_at
    type EventRow = (i64, String, String, Option<String>, i64);

    /// A store made before migration 0004 keeps its tickets' tags (now rows
    /// too) and gets a `created` event for each old ticket.
    #[tokio::test]
    async fn migration_0004_carries_old_tickets_over() {
        let db = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("db");
        for sql in [
            include_str!("../../migrations/0001_init.sql"),
            include_str!("../../migrations/0002_workflow_base.sql"),
            "INSERT INTO tickets (subject, status, priority, tags, created_at, updated_at)
                 VALUES ('old', 'pending', 'high', '[\"vip\",\"退款\"]', 5, 6),
                        ('bare', 'open', 'low', 'not json', 7, 7)",
            include_str!("../../migrations/0004_tickets.sql"),
        ] {
            sqlx::raw_sql(sql).execute(&db).await.expect("migrate");
        }
        let tags: Vec<(String, i64)> =
            sqlx::query_as("SELECT tag, number FROM ticket_tags ORDER BY tag")
                .fetch_all(&db)
                .await
                .expect("tags");
        assert_eq!(tags, vec![("vip".into(), 1), ("退款".into(), 1)]);
        let events: Vec<EventRow> = sqlx::query_as(
            "SELECT ticket_number, actor_type, kind, to_value, created_at FROM ticket_events ORDER BY id",
        )
        .fetch_all(&db)
        .await
        .expect("events");
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].0, events[0].1.as_str(), events[0].2.as_str()),
            (1, "system", "created")
        );
        let to: Value = serde_json::from_str(events[0].3.as_deref().expect("to")).expect("json");
        assert_eq!(
            to,
            json!({"subject": "old", "status": "pending", "priority": "high",
                   "assignee_id": null, "tags": ["vip", "退款"], "via": "agent"})
        );
        assert_eq!(events[0].4, 5);
        let to: Value = serde_json::from_str(events[1].3.as_deref().expect("to")).expect("json");
        assert_eq!(to["tags"], json!([]));
    }

    #[test]
    fn subjects_from_messages() {
        assert_eq!(
            subject_from("\n  my parcel  \nsecond").as_deref(),
            Some("my parcel")
        );
        assert_eq!(subject_from("  \n ").as_deref(), None);
        let long = "退".repeat(150);
        let subject = subject_from(&long).expect("subject");
        assert_eq!(subject.chars().count(), 101);
        assert!(subject.ends_with('…'));
        assert!(check_subject(&subject).is_ok());
    }
}
