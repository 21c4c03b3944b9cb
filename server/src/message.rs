//! The `Message` object of the protocol and the validation every send goes
//! through, whichever door (REST or WebSocket) it came in by; [`rate`] is
//! the per-visitor message rate both doors check.

pub mod rate;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Limits;
use crate::error::ApiError;
use crate::ids::{ConversationId, MessageId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum MessageKind {
    Text,
    Image,
    File,
    Event,
    Note,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum SenderType {
    Visitor,
    Agent,
    System,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Sender {
    #[serde(rename = "type")]
    pub kind: SenderType,
    pub id: String,
    pub name: String,
}

/// A message as stored and as sent on the wire (docs/PROTOCOL.md, "Objects").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: u64,
    pub client_msg_id: Option<String>,
    pub kind: MessageKind,
    pub sender: Sender,
    pub content: String,
    #[cfg_attr(feature = "ts", ts(type = "Record<string, unknown>"))]
    pub meta: Value,
    #[cfg_attr(feature = "ts", ts(type = "Attachment | null"))]
    pub attachment: Option<Value>,
    pub created_at: i64,
}

/// The highest `limits.meta_depth` the configuration accepts (defined
/// with the limits, so that the configuration depends on no domain).
pub use crate::config::META_DEPTH_MAX;

/// What a client asks to send, after validation.
#[derive(Debug, Clone)]
pub struct SendInput {
    pub client_msg_id: String,
    pub content: String,
    pub meta: Value,
}

/// Checks a send against the limits: a malformed `client_msg_id` is 400, an
/// oversized `content` or `meta` 413, a `meta` that is not an object or is
/// nested deeper than `limits.meta_depth` 400.
pub fn validate_send(
    limits: &Limits,
    client_msg_id: Option<&str>,
    content: Option<&str>,
    meta: Option<&Value>,
) -> Result<SendInput, ApiError> {
    validate_send_with(limits, client_msg_id, content, meta, false)
}

/// As [`validate_send`]; a send that carries an attachment may leave
/// `content` (its caption) empty.
pub fn validate_send_with(
    limits: &Limits,
    client_msg_id: Option<&str>,
    content: Option<&str>,
    meta: Option<&Value>,
    has_attachment: bool,
) -> Result<SendInput, ApiError> {
    let client_msg_id = client_msg_id.ok_or_else(|| {
        ApiError::bad_request("client_msg_id is required").in_field("client_msg_id")
    })?;
    validate_client_msg_id(client_msg_id)?;
    let content = content.unwrap_or("");
    if content.len() > limits.content_bytes {
        return Err(ApiError::too_large(format!(
            "content is {} bytes, the limit is {}",
            content.len(),
            limits.content_bytes
        ))
        .in_field("content"));
    }
    if content.trim().is_empty() && !has_attachment {
        return Err(ApiError::bad_request("content must not be empty").in_field("content"));
    }
    let meta = match meta {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(value @ Value::Object(_)) => {
            if deeper_than(value, limits.meta_depth) {
                return Err(meta_too_deep(limits));
            }
            let size = serialized_len(value);
            if size > limits.meta_bytes {
                return Err(ApiError::too_large(format!(
                    "meta is {size} bytes serialized, the limit is {}",
                    limits.meta_bytes
                ))
                .in_field("meta"));
            }
            value.clone()
        }
        Some(_) => return Err(ApiError::bad_request("meta must be a JSON object").in_field("meta")),
    };
    Ok(SendInput {
        client_msg_id: client_msg_id.to_owned(),
        content: content.to_owned(),
        meta,
    })
}

/// The error for a `meta` nested deeper than the limit (also used by the
/// WebSocket parser when the nesting is too deep to even build the value).
pub fn meta_too_deep(limits: &Limits) -> ApiError {
    ApiError::bad_request(format!(
        "meta is nested deeper than {} levels",
        limits.meta_depth
    ))
    .in_field("meta")
}

/// Whether `value` nests deeper than `max` levels of objects and arrays (a
/// scalar is level 0, `{}` level 1). Stops descending at the limit.
fn deeper_than(value: &Value, max: usize) -> bool {
    match value {
        Value::Object(map) => max == 0 || map.values().any(|v| deeper_than(v, max - 1)),
        Value::Array(items) => max == 0 || items.iter().any(|v| deeper_than(v, max - 1)),
        _ => false,
    }
}

/// The length of a value's compact JSON, counted without building it.
fn serialized_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// `client_msg_id`: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn validate_client_msg_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(
            ApiError::bad_request("client_msg_id must be 1-64 characters of A-Z a-z 0-9 _ -")
                .in_field("client_msg_id"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_msg_id_grammar() {
        for ok in ["a", "c1", "A-z_9", &"x".repeat(64)] {
            assert!(validate_client_msg_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "ünï", "a/b", &"x".repeat(65), "a.b"] {
            assert!(validate_client_msg_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_give_the_right_codes() {
        let limits = Limits {
            content_bytes: 10,
            meta_bytes: 20,
            ..Limits::default()
        };
        let ok = validate_send(&limits, Some("c1"), Some("0123456789"), None).expect("ok");
        assert_eq!(ok.meta, json!({}));
        // 10 bytes is the limit in bytes, not characters: 4 CJK chars = 12 bytes.
        let err = validate_send(&limits, Some("c1"), Some("退款退款"), None).expect_err("too big");
        assert_eq!(err.code(), "payload_too_large");
        let err = validate_send(
            &limits,
            Some("c1"),
            Some("hi"),
            Some(&json!({"k": "x".repeat(30)})),
        )
        .expect_err("meta too big");
        assert_eq!(err.code(), "payload_too_large");
        let err = validate_send(&limits, Some("c1"), Some("hi"), Some(&json!([1])))
            .expect_err("meta array");
        assert_eq!(err.code(), "bad_request");
        let err = validate_send(&limits, None, Some("hi"), None).expect_err("no id");
        assert_eq!(err.code(), "bad_request");
        let err = validate_send(&limits, Some("c1"), Some("  "), None).expect_err("blank");
        assert_eq!(err.code(), "bad_request");
        // Depth: `meta_depth` levels pass, one more is 400 (even when small).
        let shallow = Limits {
            meta_depth: 3,
            ..Limits::default()
        };
        let ok = json!({"a": {"b": [1]}});
        assert!(validate_send(&shallow, Some("c1"), Some("hi"), Some(&ok)).is_ok());
        let deep = json!({"a": {"b": [[1]]}});
        let err = validate_send(&shallow, Some("c1"), Some("hi"), Some(&deep)).expect_err("deep");
        assert_eq!(err.code(), "bad_request");
        // A caption is optional with an attachment, but still bounded.
        let ok = validate_send_with(&limits, Some("c1"), None, None, true).expect("no caption");
        assert_eq!(ok.content, "");
        let err = validate_send_with(&limits, Some("c1"), Some(&"x".repeat(11)), None, true)
            .expect_err("caption too big");
        assert_eq!(err.code(), "payload_too_large");
    }
}
