//! The one send path. Every message that enters a conversation's thread is
//! appended here, and nowhere else:
//!
//! - the three doors (REST for agents, REST for visitors, the WebSocket
//!   `send` frame) take the raw request through [`check`] (the same checks,
//!   errors and quota for all three) and then [`deliver`]; REST calls both
//!   at once with [`send`]. The WebSocket calls them apart, so that a
//!   refused frame is answered at once, in order, while accepted sends are
//!   pipelined;
//! - ticket comments and the offline form checked their own text and
//!   deliver it with [`Checked::text`];
//! - lines that no client sent (routing's event lines, a transfer's note,
//!   the offline auto-reply, the assistant's answers) go through [`line`].
//!
//! Both appends hold a pass through the LAN handover's write gate
//! (`lan::handover::enter`) while they are written. With a synchronous
//! standby (`lan::sync_standby`), [`deliver`] answers only once a standby
//! has the message too (or the host fell back to async); lines do not
//! wait (no client waits for their ack, and the next send's wait covers
//! them: they are below its sequence).
//!
//! [`deliver`] authorizes (a visitor writes only into their own
//! conversation, an agent only into one that exists), attaches the
//! uploaded file, and appends to the log, answering once the message is
//! durable. A visitor writing into a conversation that is not known to be
//! going starts it: the message carries a start marker in its own log
//! batch, and the starter does the rest after the ack (see `start`).

use serde_json::Value;

use super::{Author, exists};
use crate::agents::Agent;
use crate::error::ApiError;
use crate::hub::ConnId;
use crate::ids::ConversationId;
use crate::message::{self, MessageKind, SendInput, Sender, SenderType};
use crate::state::AppState;
use crate::store::messages::{Appended, Draft};

/// A send as a door received it: nothing checked yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendRequest<'a> {
    pub client_msg_id: Option<&'a str>,
    pub content: Option<&'a str>,
    pub meta: Option<&'a Value>,
    /// An internal note (agents only).
    pub private: bool,
    /// An uploaded attachment to send (then `content` is an optional caption).
    pub attachment_id: Option<&'a str>,
}

/// A send that passed [`check`] (or a text its caller checked): what
/// [`deliver`] appends.
#[derive(Debug)]
pub struct Checked {
    input: SendInput,
    kind: MessageKind,
    attachment_id: Option<String>,
}

impl Checked {
    /// A plain text message whose content the caller checked by its own
    /// rules (a ticket comment, the offline form's message).
    pub fn text(input: SendInput) -> Self {
        Checked {
            input,
            kind: MessageKind::Text,
            attachment_id: None,
        }
    }

    pub fn client_msg_id(&self) -> &str {
        &self.input.client_msg_id
    }
}

/// Checks a send request without I/O: notes are for agents only, then the
/// protocol's rules on every field (`message::validate_send_with`), then
/// the visitor's message rate, last, so that only a send that would be
/// stored spends quota (one bucket per visitor, shared by REST and the
/// WebSocket). A refusal stores nothing.
pub fn check(
    state: &AppState,
    author: &Author,
    request: SendRequest<'_>,
) -> Result<Checked, ApiError> {
    if request.private && matches!(author, Author::Visitor(_)) {
        return Err(ApiError::forbidden("visitors cannot send notes"));
    }
    let input = message::validate_send_with(
        &state.config.limits,
        request.client_msg_id,
        request.content,
        request.meta,
        request.attachment_id.is_some(),
    )?;
    if let Author::Visitor(visitor) = author {
        state.visitor_send_rate.check(visitor.visitor_id)?;
    }
    Ok(Checked {
        input,
        kind: if request.private {
            MessageKind::Note
        } else {
            MessageKind::Text
        },
        attachment_id: request.attachment_id.map(str::to_owned),
    })
}

/// [`check`], then [`deliver`]: a REST door's whole send.
pub async fn send(
    state: &AppState,
    author: &Author,
    conversation: ConversationId,
    request: SendRequest<'_>,
    origin: Option<ConnId>,
) -> Result<Appended, ApiError> {
    let checked = check(state, author, request)?;
    deliver(state, author, conversation, checked, origin).await
}

/// Authorizes, attaches, and appends a checked send, answering once it is
/// durable (or with the original message when its `client_msg_id` was
/// already stored). `origin` is the WebSocket connection that sent it, which
/// gets an `ack` instead of the message frame.
pub async fn deliver(
    state: &AppState,
    author: &Author,
    conversation: ConversationId,
    checked: Checked,
    origin: Option<ConnId>,
) -> Result<Appended, ApiError> {
    match author {
        Author::Visitor(visitor) if visitor.conversation_id != conversation => {
            return Err(ApiError::forbidden("not your conversation"));
        }
        Author::Visitor(_) => {}
        Author::Agent(_) => {
            // Boxed, like the rare paths below: a query's state would
            // otherwise enlarge every send's future.
            if !Box::pin(exists(state, conversation)).await? {
                return Err(ApiError::not_found("conversation"));
            }
        }
    }
    let Checked {
        input,
        kind,
        attachment_id,
    } = checked;
    let (kind, attachment) = match attachment_id.as_deref() {
        None => (kind, None),
        Some(id) => Box::pin(crate::attachments::attach(state, author, Some(id), kind)).await?,
    };
    // A conversation whose start is still being committed: wait for it, so
    // that the thread keeps its order (the first message, its "joined" line
    // or auto-reply, then this one) and the start is not asked for twice.
    state.starts.settled(conversation).await;
    // A visitor writing into a conversation that is not known to be going
    // (checked without I/O) starts it (see the module's doc).
    let start =
        matches!(author, Author::Visitor(_)) && !state.conversations.is_active(conversation);
    if start {
        state.starts.room().await;
    }
    let draft = Draft {
        conversation_id: conversation,
        sender: author.sender(),
        sender_key: author.key(),
        client_msg_id: Some(input.client_msg_id),
        kind,
        content: input.content,
        meta: input.meta,
        attachment,
        start,
    };
    // A planned LAN handover pauses sends here (lan::handover).
    let pass = crate::lan::handover::enter(state).await?;
    let appended = state.log.append(draft, origin).await?;
    drop(pass);
    // A synchronous standby (`lan.min_standby_acks = 1`): acknowledged
    // once a standby has it, or after the fallback's timeout, with nothing
    // held. Boxed: the wait's state stays out of every send's future; off,
    // this is one check.
    if let Some(host) = state.lan.as_deref()
        && host.sync.required()
    {
        Box::pin(host.sync.replicated(appended.log_seq)).await;
    }
    Ok(appended)
}

/// A line no client sent: written by Kefu itself, or by an agent through
/// another action (a transfer's note).
#[derive(Debug)]
pub struct Line {
    sender: Sender,
    sender_key: [u8; 16],
    /// Makes the line idempotent when it is set (an auto-reply per
    /// session, an answer per visitor message).
    client_msg_id: Option<String>,
    kind: MessageKind,
    content: String,
    meta: Value,
}

impl Line {
    /// A text message from Kefu itself, shown under `name` (the app's
    /// name): `id` is `system` or a feature's own id (`assist`).
    pub fn system(id: &str, name: String, content: String, meta: Value) -> Self {
        Line {
            sender: Sender {
                kind: SenderType::System,
                id: id.to_owned(),
                name,
            },
            sender_key: [0; 16],
            client_msg_id: None,
            kind: MessageKind::Text,
            content,
            meta,
        }
    }

    /// A system `event` line ("boss joined the conversation"); visitors see
    /// it, so its text must not carry anything internal.
    pub fn event(content: String, meta: Value) -> Self {
        Line {
            kind: MessageKind::Event,
            ..Line::system("system", "Kefu".to_owned(), content, meta)
        }
    }

    /// An internal note by `agent`, written as part of another action.
    pub fn note_by(agent: &Agent, content: String, meta: Value) -> Self {
        Line {
            sender: Author::Agent(agent.clone()).sender(),
            sender_key: agent.id.to_bytes(),
            client_msg_id: None,
            kind: MessageKind::Note,
            content,
            meta,
        }
    }

    /// Stored once per `client_msg_id` (in the sender's dedup scope).
    pub fn once(mut self, client_msg_id: String) -> Self {
        self.client_msg_id = Some(client_msg_id);
        self
    }
}

/// Appends a [`Line`], answering once it is durable. It never waits for the
/// conversation's start, since the starter itself writes lines.
pub async fn line(
    state: &AppState,
    conversation: ConversationId,
    line: Line,
) -> Result<Appended, ApiError> {
    let draft = Draft {
        conversation_id: conversation,
        sender: line.sender,
        sender_key: line.sender_key,
        client_msg_id: line.client_msg_id,
        kind: line.kind,
        content: line.content,
        meta: line.meta,
        attachment: None,
        start: false,
    };
    // Lines pass the LAN handover's gate as sends do: none is written
    // between the grant's check and the log's closing (lan::handover).
    let _pass = crate::lan::handover::enter(state).await?;
    Ok(state.log.append(draft, None).await?)
}

/// A message another host of the shop acknowledged after a fork, sent
/// again here as an ordinary send of its author (`lan::fork`): the same
/// conversation, sender (`sender_key`, its dedup scope) and
/// `client_msg_id`, so the log's dedup makes it exactly once; it gets a
/// new seq. It keeps the thread's order and starts a conversation not
/// going here as [`deliver`] does, and waits at the handover gate.
pub async fn resend(
    state: &AppState,
    message: crate::message::Message,
    sender_key: [u8; 16],
    client_msg_id: String,
) -> Result<Appended, ApiError> {
    let conversation = message.conversation_id;
    state.starts.settled(conversation).await;
    let start =
        message.sender.kind == SenderType::Visitor && !state.conversations.is_active(conversation);
    if start {
        state.starts.room().await;
    }
    let draft = Draft {
        conversation_id: conversation,
        sender: message.sender,
        sender_key,
        client_msg_id: Some(client_msg_id),
        kind: message.kind,
        content: message.content,
        meta: message.meta,
        attachment: message.attachment,
        start,
    };
    let _pass = crate::lan::handover::enter(state).await?;
    Ok(state.log.append(draft, None).await?)
}
