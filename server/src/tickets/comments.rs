//! Ticket comments: internal notes and public replies.
//!
//! A public reply on a ticket linked to a conversation is also sent into
//! that conversation as the agent's message, through the one send path
//! (`conversations::send`): durable, live to the visitor, and deduplicated by
//! `client_msg_id = "tc-" + comment id`, so delivering the same comment again
//! (a retried post) never makes a second message. A ticket with only an
//! email requester keeps the reply on the ticket: Kefu has no mail transport.
//! Internal comments never leave the ticket.

use serde::Deserialize;
use serde_json::json;

use super::{Actor, Comment, EventKind, Made, begin_write, check_text, find_in, history};
use crate::agents::Agent;
use crate::conversations::{self, Author};
use crate::error::ApiError;
use crate::ids::{CommentId, ConversationId};
use crate::message::{SendInput, validate_client_msg_id};
use crate::state::AppState;
use crate::time::now_ms;

const COMMENT_COLUMNS: &str =
    "id, ticket_number, author_id, body, public, client_msg_id, message_seq, created_at";

/// At most this many comments are listed (the list is not paged).
const COMMENTS_MAX: i64 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    pub body: String,
    /// Internal unless said otherwise: a forgotten flag must never leak a
    /// note to the customer.
    #[serde(default)]
    pub public: bool,
    pub client_msg_id: Option<String>,
}

/// Adds `agent`'s comment to ticket `number` and delivers a public one;
/// the same `client_msg_id` again finds (and delivers) the first one.
pub async fn add(
    state: &AppState,
    agent: &Agent,
    number: i64,
    body: NewComment,
) -> Result<Made<Comment>, ApiError> {
    let text = body.body.trim();
    check_text(state, "body", text)?;
    if text.is_empty() {
        return Err(ApiError::bad_request("body must not be empty").in_field("body"));
    }
    if let Some(id) = &body.client_msg_id {
        validate_client_msg_id(id)?;
    }

    let mut tx = begin_write(state).await?;
    let ticket = find_in(&mut tx, number)
        .await?
        .ok_or_else(|| ApiError::not_found("ticket"))?;
    if let Some(client_msg_id) = &body.client_msg_id {
        let existing: Option<Comment> = sqlx::query_as(&format!(
            "SELECT {COMMENT_COLUMNS} FROM ticket_comments
             WHERE ticket_number = ? AND author_id = ? AND client_msg_id = ?"
        ))
        .bind(number)
        .bind(agent.id)
        .bind(client_msg_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = existing {
            tx.rollback().await?;
            // The first attempt may have stopped before delivering.
            let comment = deliver(state, agent, existing, ticket.conversation_id).await?;
            return Ok(Made::found(comment));
        }
    }
    let now = now_ms();
    let comment = Comment {
        id: CommentId::new(),
        ticket_number: number,
        author_id: agent.id,
        body: text.to_owned(),
        public: body.public,
        client_msg_id: body.client_msg_id.clone(),
        message_seq: None,
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO ticket_comments (id, ticket_number, author_id, body, public, client_msg_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(comment.id)
    .bind(number)
    .bind(comment.author_id)
    .bind(&comment.body)
    .bind(comment.public)
    .bind(&comment.client_msg_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE tickets SET updated_at = ? WHERE number = ?")
        .bind(now)
        .bind(number)
        .execute(&mut *tx)
        .await?;
    history::record(
        &mut tx,
        number,
        Actor::Agent(agent.id),
        EventKind::Comment,
        None,
        Some(json!({"comment_id": comment.id, "public": comment.public})),
        now,
    )
    .await?;
    tx.commit().await?;
    // Agents hear of the comment even if its delivery fails below (the
    // client then retries with the same client_msg_id).
    super::announce(state, number).await?;
    let comment = deliver(state, agent, comment, ticket.conversation_id).await?;
    Ok(Made::created(comment))
}

/// Sends a public comment into the ticket's conversation (idempotent) and
/// records where it landed. Internal comments and tickets without a
/// conversation are left as they are.
async fn deliver(
    state: &AppState,
    agent: &Agent,
    mut comment: Comment,
    conversation: Option<ConversationId>,
) -> Result<Comment, ApiError> {
    let Some(conversation) = conversation.filter(|_| comment.public) else {
        return Ok(comment);
    };
    let input = SendInput {
        client_msg_id: format!("tc-{}", comment.id),
        content: comment.body.clone(),
        meta: json!({"ticket_number": comment.ticket_number, "comment_id": comment.id}),
    };
    let appended = conversations::send::deliver(
        state,
        &Author::Agent(agent.clone()),
        conversation,
        conversations::Checked::text(input),
        None,
    )
    .await?;
    let seq = i64::try_from(appended.message.seq).unwrap_or(i64::MAX);
    if comment.message_seq != Some(seq) {
        sqlx::query("UPDATE ticket_comments SET message_seq = ? WHERE id = ?")
            .bind(seq)
            .bind(comment.id)
            .execute(&state.db)
            .await?;
        comment.message_seq = Some(seq);
    }
    Ok(comment)
}

/// Ticket `number`'s comments, oldest first (at most 1,000).
pub async fn list(state: &AppState, number: i64) -> Result<Vec<Comment>, ApiError> {
    if super::find(state, number).await?.is_none() {
        return Err(ApiError::not_found("ticket"));
    }
    Ok(sqlx::query_as(&format!(
        "SELECT {COMMENT_COLUMNS} FROM ticket_comments
         WHERE ticket_number = ? ORDER BY created_at, id LIMIT ?"
    ))
    .bind(number)
    .bind(COMMENTS_MAX)
    .fetch_all(&state.db)
    .await?)
}
