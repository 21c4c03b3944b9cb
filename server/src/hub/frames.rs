//! Server → client frames, serialized once and shared by every recipient.
//! Message frames embed the stored JSON as is.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use tungstenite::Utf8Bytes;

use crate::error::ApiError;
use crate::ids::ConversationId;
use crate::message::Sender;
use crate::store::messages::StoredMessage;

/// One outbound frame, shared by all its recipients: a clone is a pointer
/// copy, so a connection's queue slot costs 8 bytes whatever the frame.
#[derive(Debug, Clone)]
pub struct Frame(Arc<FrameInner>);

#[derive(Debug)]
struct FrameInner {
    text: Utf8Bytes,
    /// Marks message frames so a connection can drop live copies of what
    /// its catch-up already delivered.
    seq: Option<(ConversationId, u64)>,
}

impl Frame {
    fn new(text: String, seq: Option<(ConversationId, u64)>) -> Frame {
        Frame(Arc::new(FrameInner {
            text: Utf8Bytes::from(text),
            seq,
        }))
    }

    fn plain(text: String) -> Frame {
        Frame::new(text, None)
    }

    pub fn text(&self) -> Utf8Bytes {
        self.0.text.clone()
    }

    pub fn seq(&self) -> Option<(ConversationId, u64)> {
        self.0.seq
    }
}

pub fn message(stored: &StoredMessage) -> Frame {
    let mut text = String::with_capacity(stored.json.len() + 32);
    text.push_str(r#"{"type":"message","message":"#);
    text.push_str(&stored.json);
    text.push('}');
    Frame::new(text, Some((stored.conversation_id, stored.seq)))
}

pub fn ack(client_msg_id: &str, stored: &StoredMessage) -> Frame {
    // client_msg_id is [A-Za-z0-9_-]: safe inside quotes without escaping.
    let mut text = String::with_capacity(stored.json.len() + 64 + client_msg_id.len());
    text.push_str(r#"{"type":"ack","client_msg_id":""#);
    text.push_str(client_msg_id);
    text.push_str(r#"","message":"#);
    text.push_str(&stored.json);
    text.push('}');
    Frame::plain(text)
}

/// The `error` frame for an API error: the REST body's `code`, `message`
/// and `field`, with `client_msg_id` when the frame had one and
/// `retry_after_ms` when it is a visitor's message rate (the REST answer's
/// `Retry-After`, finer).
pub fn api_error(error: &ApiError, client_msg_id: Option<&str>) -> Frame {
    let mut value = json!({"type": "error", "code": error.code(), "message": error.to_string()});
    if let Some(field) = error.field() {
        value["field"] = json!(field);
    }
    if let Some(id) = client_msg_id {
        value["client_msg_id"] = json!(id);
    }
    if let ApiError::MessageRateLimited(wait) = error.kind() {
        let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        value["retry_after_ms"] = json!(millis.max(1));
    }
    Frame::plain(value.to_string())
}

/// `term` **[ext]**: the LAN host's term (docs/LAN.md, "Terms"), sent to
/// agents only and only by a server hosting the shop on the LAN.
pub fn welcome(role: &str, id: &str, term: Option<u64>) -> Frame {
    let mut value = json!({"type": "welcome", "role": role, "id": id});
    if let Some(term) = term {
        value["term"] = json!(term);
    }
    Frame::plain(value.to_string())
}

/// `welcome` on a LAN host: [`welcome`] with the line of seqs served
/// (`history_id`) and, when the client's cursors came from another line,
/// the resumed conversations whose cursor lay past the fork (`forked`:
/// conversation → the last seq both lines share; the catch-up starts
/// after it). docs/PROTOCOL.md, "LAN hosting".
pub fn welcome_on_lan(
    role: &str,
    id: &str,
    term: Option<u64>,
    history_id: &str,
    forked: &std::collections::BTreeMap<ConversationId, u64>,
) -> Frame {
    let mut value = json!({"type": "welcome", "role": role, "id": id, "history_id": history_id});
    if let Some(term) = term {
        value["term"] = json!(term);
    }
    if !forked.is_empty() {
        value["forked"] = json!(forked);
    }
    Frame::plain(value.to_string())
}

pub fn pong() -> Frame {
    Frame::plain(r#"{"type":"pong"}"#.to_owned())
}

pub fn typing(conversation: ConversationId, on: bool, sender: &Sender) -> Frame {
    Frame::plain(
        json!({"type": "typing", "conversation_id": conversation, "on": on, "sender": sender})
            .to_string(),
    )
}

pub fn read(conversation: ConversationId, seq: u64, sender: &Sender) -> Frame {
    Frame::plain(
        json!({"type": "read", "conversation_id": conversation, "seq": seq, "sender": sender})
            .to_string(),
    )
}

fn wrap<T: Serialize>(kind: &str, field: &str, value: &T) -> Frame {
    let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    Frame::plain(json!({"type": kind, field: value}).to_string())
}

pub fn conversation<T: Serialize>(conversation: &T) -> Frame {
    wrap("conversation", "conversation", conversation)
}

pub fn ticket<T: Serialize>(ticket: &T) -> Frame {
    wrap("ticket", "ticket", ticket)
}

pub fn agent<T: Serialize>(agent: &T) -> Frame {
    wrap("agent", "agent", agent)
}
