//! Read markers and unread counts.
//!
//! A read marker says "this reader has seen conversation C up to seq N".
//! There is one per agent and conversation, and one for the visitor's side.
//! Set by the WebSocket `read` frame or by REST; both end in [`mark`].
//!
//! Invariants:
//! - Forward-only: a marker never moves back (the upsert only raises it).
//! - A marker never passes the conversation's head: a larger `seq` is
//!   clamped to the log's `last_seq`.
//! - A `read` frame is relayed only when a marker actually moved, with the
//!   stored value.
//! - Markers are written when someone reads, never per message: the send
//!   path stays free of SQLite writes. Unread counts are computed on demand
//!   from the message log (a range scan above the marker, bounded by
//!   [`UNREAD_CAP`]), so they are never stale and need no upkeep.
//!
//! The doors are in [`routes`].

pub mod routes;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::agents::Agent;
use crate::auth::VisitorPrincipal;
use crate::conversations::{self, Author, Conversation};
use crate::error::ApiError;
use crate::hub::{ConnId, Party, frames};
use crate::ids::{AgentId, ConversationId};
use crate::state::AppState;
use crate::time::now_ms;

/// Unread counts stop here (UIs show "99+"): counting is a scan of the log.
pub const UNREAD_CAP: u64 = 100;
/// Messages looked at per conversation when counting, at most.
const SCAN_MAX: u64 = 2_000;
/// No connection id is 0: relays of markers set over REST reach every
/// connection of the reader.
const NO_CONNECTION: ConnId = 0;

/// Whose marker.
fn reader(author: &Author) -> (String, &'static str) {
    match author {
        Author::Agent(agent) => (agent.id.to_string(), "agent"),
        Author::Visitor(visitor) => (visitor.visitor_id.to_string(), "visitor"),
    }
}

fn party(author: &Author) -> Party {
    match author {
        Author::Agent(agent) => Party::Agent(agent.id),
        Author::Visitor(visitor) => Party::Visitor {
            visitor: visitor.visitor_id,
            conversation: visitor.conversation_id,
        },
    }
}

/// A reader's marker after [`mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marked {
    /// The stored marker (0 when there is none).
    pub seq: u64,
    /// Whether this call raised it.
    pub moved: bool,
}

async fn marker(
    state: &AppState,
    conversation: ConversationId,
    reader_id: &str,
) -> Result<u64, ApiError> {
    let found: Option<(i64,)> =
        sqlx::query_as("SELECT seq FROM read_markers WHERE conversation_id = ? AND reader_id = ?")
            .bind(conversation)
            .bind(reader_id)
            .fetch_optional(&state.db)
            .await?;
    Ok(found.map_or(0, |(seq,)| u64::try_from(seq).unwrap_or(0)))
}

fn head(state: &AppState, conversation: ConversationId) -> Result<u64, ApiError> {
    Ok(state.log.head(conversation)?.map_or(0, |h| h.last_seq))
}

/// Raises `author`'s marker in `conversation` to `seq` (clamped to the
/// head); never lowers it. The caller has checked that `author` may read
/// the conversation. A conversation without messages has nothing to mark.
pub async fn mark(
    state: &AppState,
    author: &Author,
    conversation: ConversationId,
    seq: u64,
) -> Result<Marked, ApiError> {
    let (reader_id, reader_type) = reader(author);
    let seq = seq.min(head(state, conversation)?);
    if seq == 0 {
        let current = marker(state, conversation, &reader_id).await?;
        return Ok(Marked {
            seq: current,
            moved: false,
        });
    }
    let seq_i64 = i64::try_from(seq).unwrap_or(i64::MAX);
    let raised: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO read_markers (conversation_id, reader_id, reader_type, seq, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (conversation_id, reader_id) DO UPDATE
             SET seq = excluded.seq, updated_at = excluded.updated_at
             WHERE excluded.seq > read_markers.seq
         RETURNING seq",
    )
    .bind(conversation)
    .bind(&reader_id)
    .bind(reader_type)
    .bind(seq_i64)
    .bind(now_ms())
    .fetch_optional(&state.db)
    .await?;
    match raised {
        Some((stored,)) => Ok(Marked {
            seq: u64::try_from(stored).unwrap_or(0),
            moved: true,
        }),
        None => Ok(Marked {
            seq: marker(state, conversation, &reader_id).await?,
            moved: false,
        }),
    }
}

/// [`mark`], then, if the marker moved, a `read` frame with the stored seq
/// to the other side and to the reader's other connections (agents: every
/// other agent connection too, so badges clear everywhere).
pub async fn mark_and_relay(
    state: &AppState,
    author: &Author,
    conversation: ConversationId,
    seq: u64,
    origin: ConnId,
) -> Result<Marked, ApiError> {
    let marked = mark(state, author, conversation, seq).await?;
    if marked.moved {
        let frame = frames::read(conversation, marked.seq, &author.sender());
        state.hub.relay(origin, party(author), conversation, &frame);
    }
    Ok(marked)
}

/// Messages in `conversation` after `after` that `reader_id` did not send,
/// up to [`UNREAD_CAP`]. Notes count only when `include_notes` (agents);
/// `event` lines ("Bo joined the conversation") never do: nobody has to
/// answer them.
pub fn count_unread(
    state: &AppState,
    conversation: ConversationId,
    after: u64,
    last_seq: u64,
    reader_id: &str,
    include_notes: bool,
) -> Result<u64, ApiError> {
    #[derive(Deserialize)]
    struct SenderOnly {
        sender: SenderId,
        kind: String,
    }
    #[derive(Deserialize)]
    struct SenderId {
        id: String,
    }
    if after >= last_seq {
        return Ok(0);
    }
    let (mut cursor, mut count, mut scanned) = (after, 0u64, 0u64);
    loop {
        let page = state
            .log
            .page(conversation, cursor, None, 200, include_notes)?;
        for message in &page {
            cursor = message.seq;
            scanned += 1;
            let counts = serde_json::from_str::<SenderOnly>(&message.json)
                .map(|m| m.sender.id != reader_id && m.kind != "event")
                .unwrap_or(true);
            if counts {
                count += 1;
                if count >= UNREAD_CAP {
                    return Ok(UNREAD_CAP);
                }
            }
        }
        if page.len() < 200 || scanned >= SCAN_MAX {
            return Ok(count);
        }
    }
}

/// Lays `unread_count` (for `agent`) and `visitor_read_seq` over
/// conversations served to an agent.
pub async fn fill_for_agent(
    state: &AppState,
    agent: AgentId,
    conversations: &mut [Conversation],
) -> Result<(), ApiError> {
    if conversations.is_empty() {
        return Ok(());
    }
    let agent_text = agent.to_string();
    let mut markers: HashMap<(ConversationId, bool), u64> = HashMap::new();
    for chunk in conversations.chunks(200) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "SELECT conversation_id, reader_type, seq FROM read_markers
             WHERE conversation_id IN ({placeholders}) AND (reader_id = ? OR reader_type = 'visitor')"
        );
        let mut query = sqlx::query_as::<_, (ConversationId, String, i64)>(&sql);
        for conversation in chunk.iter() {
            query = query.bind(conversation.id);
        }
        for (conversation, reader_type, seq) in query.bind(&agent_text).fetch_all(&state.db).await?
        {
            let seq = u64::try_from(seq).unwrap_or(0);
            markers.insert((conversation, reader_type == "visitor"), seq);
        }
    }
    for conversation in conversations.iter_mut() {
        let read = markers.get(&(conversation.id, false)).copied().unwrap_or(0);
        conversation.unread_count = Some(count_unread(
            state,
            conversation.id,
            read,
            conversation.last_seq,
            &agent_text,
            true,
        )?);
        conversation.visitor_read_seq =
            Some(markers.get(&(conversation.id, true)).copied().unwrap_or(0));
        conversation.read_seq = Some(read);
        crate::conversations::fill_last_message(&state.log, conversation);
    }
    Ok(())
}

/// A reader's view of one conversation's read state.
#[derive(Debug, Serialize)]
pub struct ReadState {
    conversation_id: ConversationId,
    /// The reader's marker.
    read_seq: u64,
    last_seq: u64,
    /// Messages from others after `read_seq`, capped at [`UNREAD_CAP`].
    unread_count: u64,
    /// Visitors: the highest agent marker ("seen").
    #[serde(skip_serializing_if = "Option::is_none")]
    seen_seq: Option<u64>,
    /// Agents: the visitor's marker.
    #[serde(skip_serializing_if = "Option::is_none")]
    visitor_read_seq: Option<u64>,
}

async fn read_state(
    state: &AppState,
    author: &Author,
    conversation: ConversationId,
    read_seq: u64,
) -> Result<ReadState, ApiError> {
    let last_seq = head(state, conversation)?;
    let (reader_id, _) = reader(author);
    let is_agent = matches!(author, Author::Agent(_));
    let unread_count = count_unread(
        state,
        conversation,
        read_seq,
        last_seq,
        &reader_id,
        is_agent,
    )?;
    let (seen_seq, visitor_read_seq) = if is_agent {
        let visitor: Option<(i64,)> = sqlx::query_as(
            "SELECT seq FROM read_markers WHERE conversation_id = ? AND reader_type = 'visitor'",
        )
        .bind(conversation)
        .fetch_optional(&state.db)
        .await?;
        (
            None,
            Some(visitor.map_or(0, |(s,)| u64::try_from(s).unwrap_or(0))),
        )
    } else {
        let (seen,): (Option<i64>,) = sqlx::query_as(
            "SELECT MAX(seq) FROM read_markers WHERE conversation_id = ? AND reader_type = 'agent'",
        )
        .bind(conversation)
        .fetch_one(&state.db)
        .await?;
        (
            Some(seen.map_or(0, |s| u64::try_from(s).unwrap_or(0))),
            None,
        )
    };
    Ok(ReadState {
        conversation_id: conversation,
        read_seq,
        last_seq,
        unread_count,
        seen_seq,
        visitor_read_seq,
    })
}

/// An agent read conversation `id` up to `seq` (over REST: every
/// connection of theirs hears of it).
pub async fn agent_read(
    state: &AppState,
    agent: Agent,
    id: ConversationId,
    seq: u64,
) -> Result<ReadState, ApiError> {
    if conversations::find(state, id).await?.is_none() {
        return Err(ApiError::not_found("conversation"));
    }
    let author = Author::Agent(agent);
    let marked = mark_and_relay(state, &author, id, seq, NO_CONNECTION).await?;
    read_state(state, &author, id, marked.seq).await
}

/// The visitor read their conversation up to `seq`.
pub async fn visitor_read(
    state: &AppState,
    visitor: VisitorPrincipal,
    seq: u64,
) -> Result<ReadState, ApiError> {
    let conversation = visitor.conversation_id;
    let author = Author::Visitor(visitor);
    let marked = mark_and_relay(state, &author, conversation, seq, NO_CONNECTION).await?;
    read_state(state, &author, conversation, marked.seq).await
}

/// The visitor's read state, unchanged.
pub async fn visitor_state(
    state: &AppState,
    visitor: VisitorPrincipal,
) -> Result<ReadState, ApiError> {
    let conversation = visitor.conversation_id;
    let read_seq = marker(state, conversation, &visitor.visitor_id.to_string()).await?;
    read_state(state, &Author::Visitor(visitor), conversation, read_seq).await
}

#[derive(Debug, Serialize)]
pub struct ConversationUnread {
    pub conversation_id: ConversationId,
    pub unread_count: u64,
}

/// An agent's badge.
#[derive(Debug, Serialize)]
pub struct AgentUnread {
    /// Sum over `conversations` (each capped at [`UNREAD_CAP`]).
    pub total: u64,
    /// The agent's conversations with something unread.
    pub conversations: Vec<ConversationUnread>,
}

/// The badge: unread messages in the conversations assigned to the agent
/// that are not resolved (the most recently active `limits.page_max`).
pub async fn agent_unread(state: &AppState, agent: AgentId) -> Result<AgentUnread, ApiError> {
    let rows: Vec<(ConversationId, Option<i64>)> = sqlx::query_as(
        "SELECT c.id, m.seq FROM conversations c
         LEFT JOIN read_markers m ON m.conversation_id = c.id AND m.reader_id = ?1
         WHERE c.assignee_id = ?1 AND c.status IN ('open', 'pending') AND c.started_at IS NOT NULL
         ORDER BY c.activity_at DESC, c.id DESC LIMIT ?2",
    )
    .bind(agent)
    .bind(i64::from(state.config.limits.page_max))
    .fetch_all(&state.db)
    .await?;
    let agent_text = agent.to_string();
    let mut out = AgentUnread {
        total: 0,
        conversations: Vec::new(),
    };
    for (conversation, read) in rows {
        // The log's head, not the derived column, which lags a little.
        let last_seq = head(state, conversation)?;
        let read = read.map_or(0, |s| u64::try_from(s).unwrap_or(0));
        let unread_count = count_unread(state, conversation, read, last_seq, &agent_text, true)?;
        if unread_count > 0 {
            out.total += unread_count;
            out.conversations.push(ConversationUnread {
                conversation_id: conversation,
                unread_count,
            });
        }
    }
    Ok(out)
}
