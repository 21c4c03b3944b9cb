//! Client → server frames, read without building a JSON tree.
//!
//! Every client frame is a JSON object whose fields the connection reads
//! one by one, each with its own error (PROTOCOL.md "Client frames").
//! Parsing it into a `serde_json::Value` first cost a map, a key string per
//! field and a string per value, allocated and freed for every frame: the
//! largest part of handling a `send` before the log. This reads the object
//! once, keeps each known field as the raw JSON text it borrows from the
//! frame, and decodes a field only when it is asked for, so the checks
//! behave exactly as they did on the tree: a field that is absent or `null`
//! is `None`; a field of the wrong type reads as absent where the tree
//! returned `None` for it too (`as_str`, `as_bool`, `as_u64`); unknown
//! fields are skipped; a repeated field keeps its last value.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// The fields of a client frame that any frame type uses.
#[derive(Debug, Default)]
pub struct ClientFrame<'a> {
    kind: Option<&'a RawValue>,
    client_msg_id: Option<&'a RawValue>,
    conversation_id: Option<&'a RawValue>,
    content: Option<&'a RawValue>,
    private: Option<&'a RawValue>,
    attachment_id: Option<&'a RawValue>,
    meta: Option<&'a RawValue>,
    on: Option<&'a RawValue>,
    seq: Option<&'a RawValue>,
}

/// A field that is there but is not of the type asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct WrongType;

impl<'a> ClientFrame<'a> {
    /// Reads a frame's text; `None` unless it is one JSON object.
    pub fn parse(text: &'a str) -> Option<ClientFrame<'a>> {
        serde_json::from_str(text).ok()
    }

    /// `type`, or "" when absent or not a string.
    pub fn kind(&self) -> Cow<'a, str> {
        string(self.kind)
            .ok()
            .flatten()
            .unwrap_or(Cow::Borrowed(""))
    }

    pub fn client_msg_id(&self) -> Option<Cow<'a, str>> {
        string(self.client_msg_id).ok().flatten()
    }

    pub fn conversation_id(&self) -> Option<Cow<'a, str>> {
        string(self.conversation_id).ok().flatten()
    }

    /// `content`: `Err` when present but not a string.
    pub fn content(&self) -> Result<Option<Cow<'a, str>>, WrongType> {
        string(self.content)
    }

    /// `attachment_id`: `Err` when present but not a string.
    pub fn attachment_id(&self) -> Result<Option<Cow<'a, str>>, WrongType> {
        string(self.attachment_id)
    }

    /// `private`, false unless `true`.
    pub fn private(&self) -> bool {
        boolean(self.private)
    }

    /// `on`, false unless `true`.
    pub fn on(&self) -> bool {
        boolean(self.on)
    }

    /// `seq` when it is a non-negative integer.
    pub fn seq(&self) -> Option<u64> {
        self.seq
            .and_then(|raw| serde_json::from_str::<u64>(raw.get()).ok())
    }

    /// `meta` as a JSON value (any type: the send checks it is an object).
    pub fn meta(&self) -> Option<Value> {
        self.meta
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
    }
}

/// A JSON string field, borrowed when it has no escapes.
fn string(raw: Option<&RawValue>) -> Result<Option<Cow<'_, str>>, WrongType> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.get();
    if !text.starts_with('"') {
        return Err(WrongType);
    }
    if let Ok(plain) = serde_json::from_str::<&str>(text) {
        return Ok(Some(Cow::Borrowed(plain)));
    }
    serde_json::from_str::<String>(text)
        .map(|owned| Some(Cow::Owned(owned)))
        .map_err(|_| WrongType)
}

fn boolean(raw: Option<&RawValue>) -> bool {
    raw.is_some_and(|raw| raw.get() == "true")
}

/// The field names, read without allocating (escaped names included).
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Type,
    ClientMsgId,
    ConversationId,
    Content,
    Private,
    AttachmentId,
    Meta,
    On,
    Seq,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for ClientFrame<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FrameVisitor;

        impl<'de> Visitor<'de> for FrameVisitor {
            type Value = ClientFrame<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut frame = ClientFrame::default();
                while let Some(field) = map.next_key::<Field>()? {
                    let slot = match field {
                        Field::Type => &mut frame.kind,
                        Field::ClientMsgId => &mut frame.client_msg_id,
                        Field::ConversationId => &mut frame.conversation_id,
                        Field::Content => &mut frame.content,
                        Field::Private => &mut frame.private,
                        Field::AttachmentId => &mut frame.attachment_id,
                        Field::Meta => &mut frame.meta,
                        Field::On => &mut frame.on,
                        Field::Seq => &mut frame.seq,
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    // `null` reads as absent, as `Value::get` + `as_*` did.
                    let raw: &'de RawValue = map.next_value()?;
                    *slot = (raw.get() != "null").then_some(raw);
                }
                Ok(frame)
            }
        }

        deserializer
            .deserialize_map(FrameVisitor)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_as_they_did_from_a_tree() {
        let frame = ClientFrame::parse(
            r#"{"type":"send","client_msg_id":"c-1","content":"hi \"you\"","meta":{"t":1},
                "private":true,"seq":7,"extra":[1,{"a":2}],"on":"yes"}"#,
        )
        .expect("object");
        assert_eq!(frame.kind(), "send");
        assert_eq!(frame.client_msg_id().as_deref(), Some("c-1"));
        assert_eq!(
            frame.content().expect("string").as_deref(),
            Some("hi \"you\"")
        );
        assert!(matches!(frame.content(), Ok(Some(Cow::Owned(_)))));
        assert!(matches!(frame.client_msg_id(), Some(Cow::Borrowed(_))));
        assert_eq!(frame.meta(), Some(serde_json::json!({"t": 1})));
        assert!(frame.private());
        assert_eq!(frame.seq(), Some(7));
        // Wrong types read as absent, or as an error where the send says so.
        assert!(!frame.on());
        assert_eq!(frame.conversation_id(), None);
        assert_eq!(frame.attachment_id(), Ok(None));
        let frame = ClientFrame::parse(
            r#"{"type":5,"content":3,"attachment_id":false,"seq":-1,"conversation_id":null}"#,
        )
        .expect("object");
        assert_eq!(frame.kind(), "");
        assert_eq!(frame.content(), Err(WrongType));
        assert_eq!(frame.attachment_id(), Err(WrongType));
        assert_eq!(frame.seq(), None);
        assert_eq!(frame.conversation_id(), None);
        let frame = ClientFrame::parse(r#"{"seq":2.5,"content":null}"#).expect("object");
        assert_eq!(frame.seq(), None);
        assert_eq!(frame.content(), Ok(None));
    }

    #[test]
    fn repeated_fields_keep_the_last_and_escaped_names_count() {
        let frame =
            ClientFrame::parse(r#"{"type":"ping","\u0074ype":"send","content":"a","content":"b"}"#)
                .expect("object");
        assert_eq!(frame.kind(), "send");
        assert_eq!(frame.content().expect("string").as_deref(), Some("b"));
    }

    #[test]
    fn anything_but_one_object_is_refused() {
        for text in [
            "",
            "[]",
            "\"send\"",
            "null",
            "{\"type\":",
            "{} {}",
            "{\"a\":1,}",
        ] {
            assert!(ClientFrame::parse(text).is_none(), "{text}");
        }
        assert!(ClientFrame::parse(" {} ").is_some());
    }
}
