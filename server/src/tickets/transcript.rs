//! The chat transcript attached to a ticket made from a conversation:
//! `GET /api/v1/tickets/{number}/transcript`.
//!
//! It is not copied. A ticket keeps `transcript_seq`, the conversation's last
//! seq when the ticket was made; the message log is append-only, so
//! messages `1..=transcript_seq` are exactly the chat as it was, read from the
//! log with their senders, kinds and attachments intact. Agents see internal
//! notes in it too (marked `kind: "note"`), as in the conversation itself.

use crate::error::ApiError;
use crate::state::AppState;

/// Ticket `number`'s transcript as JSON text, `{"conversation_id",
/// "transcript_seq", "messages": [Message]}`: messages with `after < seq <=
/// transcript_seq`, ascending, at most `limit`, copied from the log as
/// stored (no decode and encode per message).
pub async fn get(
    state: &AppState,
    number: i64,
    after: u64,
    limit: u32,
) -> Result<String, ApiError> {
    let ticket = super::find(state, number)
        .await?
        .ok_or_else(|| ApiError::not_found("ticket"))?;
    let (conversation, last) = match (ticket.conversation_id, ticket.transcript_seq) {
        (Some(conversation), Some(last)) => (Some(conversation), last),
        (conversation, _) => (conversation, 0),
    };
    let page = match conversation {
        // Ascending from `after`; `before` would page backwards instead.
        Some(conversation) if after < last => {
            state
                .log
                .page(conversation, after, None, limit as usize, true)?
        }
        _ => Vec::new(),
    };
    let mut body = String::with_capacity(64 + page.iter().map(|m| m.json.len() + 1).sum::<usize>());
    body.push_str(&format!(
        r#"{{"conversation_id":{},"transcript_seq":{},"messages":["#,
        serde_json::to_string(&conversation).map_err(ApiError::internal)?,
        serde_json::to_string(&ticket.transcript_seq).map_err(ApiError::internal)?,
    ));
    for (index, message) in page.iter().filter(|m| m.seq <= last).enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(&message.json);
    }
    body.push_str("]}");
    Ok(body)
}
