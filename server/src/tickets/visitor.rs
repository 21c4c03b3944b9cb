//! The visitor's side of tickets: the offline form
//! (`POST /api/v1/visitor/tickets`) and the visitor's own tickets with their
//! public replies (`GET /api/v1/visitor/tickets[/{number}]`).
//!
//! The form's message is also a normal visitor message in the visitor's
//! conversation (as Intercom and Crisp keep it in the thread): the chat
//! shows what was asked, agents see it wherever they look, and the ticket
//! links to it (`conversation_id`, `transcript_seq`). A retried form post
//! with the same `client_msg_id` is the same message, and so finds the same
//! ticket (`tickets_source` is unique per conversation and seq).
//!
//! A visitor reads only tickets whose requester it is, never internal
//! comments, tags, priority or assignee; another visitor's ticket is 404.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Actor, Made, NewTicket, Priority, Ticket, TicketStatus, Via, check_email, check_subject,
    check_text, subject_from,
};
use crate::auth::VisitorPrincipal;
use crate::conversations::{self, Author};
use crate::error::ApiError;
use crate::ids::{CommentId, ConversationId, VisitorId};
use crate::message;
use crate::state::AppState;
use crate::time::now_ms;

/// Offline forms per visitor per hour; the next one is 429.
pub const FORMS_PER_HOUR: i64 = 5;

/// One lock per visitor with a form being submitted: a visitor's forms
/// are handled one at a time, from the hourly count to the ticket's
/// commit, so that the count each one reads includes every earlier one.
/// Without it, 20 forms posted at once all counted 0 and made 20 tickets
/// against a limit of 5; the count cannot move into one SQLite
/// transaction, since the form's message is appended to the log in
/// between (and is not undone). Process-wide, since visitor ids are
/// unique; an entry lives only while that visitor has a form in progress.
static FORM_TURNS: LazyLock<Mutex<HashMap<VisitorId, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// A visitor's turn to submit a form; the next waiter's when dropped
/// (also when the request is cancelled while waiting).
struct FormTurn {
    visitor: VisitorId,
    lock: Arc<tokio::sync::Mutex<()>>,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl FormTurn {
    async fn take(visitor: VisitorId) -> FormTurn {
        let lock = Arc::clone(FORM_TURNS.lock().entry(visitor).or_default());
        let mut turn = FormTurn {
            visitor,
            lock,
            held: None,
        };
        turn.held = Some(Arc::clone(&turn.lock).lock_owned().await);
        turn
    }
}

impl Drop for FormTurn {
    fn drop(&mut self) {
        let mut turns = FORM_TURNS.lock();
        self.held = None;
        // The map's reference and ours: nobody else waits, forget it.
        if Arc::strong_count(&self.lock) == 2 {
            turns.remove(&self.visitor);
        }
    }
}
const NAME_MAX_CHARS: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Form {
    pub email: String,
    pub content: String,
    pub name: Option<String>,
    pub subject: Option<String>,
    pub client_msg_id: Option<String>,
}

/// A ticket as its requester sees it.
#[derive(Debug, Serialize)]
pub struct VisitorTicket {
    number: u64,
    subject: String,
    /// What the visitor wrote (form tickets); `null` for tickets agents made,
    /// whose description is theirs.
    description: Option<String>,
    status: TicketStatus,
    created_at: i64,
    updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    replies: Option<Vec<Reply>>,
}

impl VisitorTicket {
    fn from_ticket(ticket: Ticket) -> Self {
        VisitorTicket {
            number: ticket.number,
            subject: ticket.subject,
            description: (ticket.via == Via::Form).then_some(ticket.description),
            status: ticket.status,
            created_at: ticket.created_at,
            updated_at: ticket.updated_at,
            replies: None,
        }
    }
}

/// A public comment, as the visitor sees it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Reply {
    id: CommentId,
    body: String,
    author_name: String,
    created_at: i64,
}

/// A form's outcome: the ticket and the form's message.
#[derive(Debug, Serialize)]
pub struct FormAnswer {
    ticket: VisitorTicket,
    /// The form's message as stored in the visitor's conversation.
    message: Value,
}

/// The visitor's offline form: its message into the visitor's
/// conversation and a ticket that links to it. A retry with the same
/// `client_msg_id` finds the first answer; more than [`FORMS_PER_HOUR`] is
/// `rate_limited`.
pub async fn submit_form(
    state: &AppState,
    mut visitor: VisitorPrincipal,
    body: Form,
) -> Result<Made<FormAnswer>, ApiError> {
    // Validate everything before storing anything.
    let email = check_email("email", &body.email)?;
    let name = match body.name.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) if name.chars().count() > NAME_MAX_CHARS => {
            return Err(ApiError::bad_request(format!(
                "name is longer than {NAME_MAX_CHARS} characters"
            ))
            .in_field("name"));
        }
        Some(name) if name.chars().any(char::is_control) => {
            return Err(ApiError::bad_request("name has control characters").in_field("name"));
        }
        Some(name) => Some(name.to_owned()),
    };
    check_text(state, "content", &body.content)?;
    let client_msg_id = body
        .client_msg_id
        .clone()
        .unwrap_or_else(|| format!("form-{}", ulid::Ulid::new()));
    let meta = serde_json::json!({"offline_form": true});
    let input = message::validate_send(
        &state.config.limits,
        Some(&client_msg_id),
        Some(&body.content),
        Some(&meta),
    )?;
    let subject = match body.subject.as_deref() {
        Some(subject) => check_subject(subject)?,
        None => subject_from(&body.content).ok_or_else(|| {
            ApiError::bad_request("content must not be empty").in_field("content")
        })?,
    };

    let conversation = visitor.conversation_id;
    // From here to the ticket's commit, one form of this visitor at a time.
    let _turn = FormTurn::take(visitor.visitor_id).await;
    if body.client_msg_id.is_some()
        && let Some(found) = by_client_msg_id(state, &visitor, &client_msg_id).await?
    {
        // A retry of a form that was stored: answer as the first time.
        return Ok(Made::found(found));
    }
    let hour_ago = now_ms() - 3_600_000;
    let (recent,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM tickets WHERE requester_visitor_id = ? AND via = 'form' AND created_at > ?",
    )
    .bind(visitor.visitor_id)
    .bind(hour_ago)
    .fetch_one(&state.db)
    .await?;
    if recent >= FORMS_PER_HOUR {
        return Err(ApiError::RateLimited);
    }

    sqlx::query(
        "UPDATE visitors SET email = COALESCE(email, ?), name = COALESCE(name, ?) WHERE id = ?",
    )
    .bind(&email)
    .bind(&name)
    .bind(visitor.visitor_id)
    .execute(&state.db)
    .await?;
    state.auth_cache.visitor_changed(visitor.visitor_id);
    visitor.name = visitor.name.or(name);
    let appended = conversations::send::deliver(
        state,
        &Author::Visitor(visitor.clone()),
        conversation,
        conversations::Checked::text(input),
        None,
    )
    .await?;
    let seq = appended.message.seq;
    let message: Value =
        serde_json::from_str(&appended.message.json).map_err(ApiError::internal)?;
    if let Some(ticket) = by_source(state, conversation, seq).await? {
        return Ok(Made::found(FormAnswer {
            ticket: VisitorTicket::from_ticket(ticket),
            message,
        }));
    }
    let inserted = super::insert(
        state,
        NewTicket {
            subject,
            description: body.content.trim().to_owned(),
            priority: Priority::Normal,
            assignee_id: None,
            conversation_id: Some(conversation),
            requester_visitor_id: Some(visitor.visitor_id),
            requester_email: Some(email),
            tags: Vec::new(),
            created_by: None,
            via: Via::Form,
            transcript_seq: Some(seq),
            source_seq: Some(seq),
        },
        Actor::Visitor(visitor.visitor_id),
    )
    .await;
    let (new, ticket) = match inserted {
        Ok(ticket) => (true, ticket),
        Err(ApiError::Internal(error)) if is_unique_violation(&error) => {
            // A concurrent retry of the same form made it first.
            let ticket = by_source(state, conversation, seq)
                .await?
                .ok_or_else(|| ApiError::internal(error))?;
            (false, ticket)
        }
        Err(other) => return Err(other),
    };
    let answer = FormAnswer {
        ticket: VisitorTicket::from_ticket(ticket),
        message,
    };
    Ok(Made { new, value: answer })
}

fn is_unique_violation(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .is_some_and(|e| e.is_unique_violation())
}

async fn by_source(
    state: &AppState,
    conversation: ConversationId,
    seq: u64,
) -> Result<Option<Ticket>, ApiError> {
    let number: Option<(i64,)> = sqlx::query_as(
        "SELECT number FROM tickets WHERE conversation_id = ? AND source_seq = ? AND source_seq IS NOT NULL",
    )
    .bind(conversation)
    .bind(i64::try_from(seq).unwrap_or(i64::MAX))
    .fetch_optional(&state.db)
    .await?;
    match number {
        Some((number,)) => super::find(state, number).await,
        None => Ok(None),
    }
}

/// The earlier answer to a form post with this `client_msg_id`, if its
/// message and ticket were both stored. Reads the message's dedup entry
/// without writing anything, so a retry is answered even over the hourly
/// limit.
async fn by_client_msg_id(
    state: &AppState,
    visitor: &VisitorPrincipal,
    client_msg_id: &str,
) -> Result<Option<FormAnswer>, ApiError> {
    let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT number, source_seq FROM tickets
         WHERE requester_visitor_id = ? AND via = 'form' AND conversation_id = ?
         ORDER BY number DESC LIMIT ?",
    )
    .bind(visitor.visitor_id)
    .bind(visitor.conversation_id)
    .bind(FORMS_PER_HOUR * 4)
    .fetch_all(&state.db)
    .await?;
    for (number, seq) in rows {
        let Some(seq) = seq.and_then(|s| u64::try_from(s).ok()) else {
            continue;
        };
        let Some(stored) = state.log.get(visitor.conversation_id, seq)? else {
            continue;
        };
        let message = stored.decode()?;
        if message.client_msg_id.as_deref() == Some(client_msg_id)
            && message.sender.id == visitor.visitor_id.to_string()
            && let Some(ticket) = super::find(state, number).await?
        {
            return Ok(Some(FormAnswer {
                ticket: VisitorTicket::from_ticket(ticket),
                message: serde_json::from_str(&stored.json).map_err(ApiError::internal)?,
            }));
        }
    }
    Ok(None)
}

/// The visitor's tickets with a number below `before`, newest first, at
/// most `limit`, and the cursor of the next page.
pub async fn list(
    state: &AppState,
    visitor: VisitorId,
    before: i64,
    limit: u32,
) -> Result<(Vec<VisitorTicket>, Option<String>), ApiError> {
    let mut rows: Vec<super::TicketRow> = sqlx::query_as(&format!(
        "SELECT {} FROM tickets t WHERE t.requester_visitor_id = ? AND t.number < ?
         ORDER BY t.number DESC LIMIT ?",
        super::COLUMNS
    ))
    .bind(visitor)
    .bind(before)
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.db)
    .await?;
    let next_cursor =
        crate::http::extract::cut_page(&mut rows, limit, |row| row.number.to_string());
    let tickets = rows
        .into_iter()
        .map(|row| VisitorTicket::from_ticket(Ticket::from(row)))
        .collect();
    Ok((tickets, next_cursor))
}

/// One of the visitor's tickets with its public replies, oldest first;
/// another visitor's ticket is `not_found`.
pub async fn get_one(
    state: &AppState,
    visitor: VisitorId,
    number: i64,
) -> Result<VisitorTicket, ApiError> {
    let ticket = super::find(state, number)
        .await?
        .filter(|t| is_requester(t, visitor))
        .ok_or_else(|| ApiError::not_found("ticket"))?;
    let replies: Vec<Reply> = sqlx::query_as(
        "SELECT c.id, c.body, a.display_name AS author_name, c.created_at
         FROM ticket_comments c JOIN agents a ON a.id = c.author_id
         WHERE c.ticket_number = ? AND c.public = 1 ORDER BY c.created_at, c.id LIMIT 1000",
    )
    .bind(number)
    .fetch_all(&state.db)
    .await?;
    let mut ticket = VisitorTicket::from_ticket(ticket);
    ticket.replies = Some(replies);
    Ok(ticket)
}

fn is_requester(ticket: &Ticket, visitor: VisitorId) -> bool {
    ticket.requester.visitor_id == Some(visitor)
}
