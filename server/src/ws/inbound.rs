//! Client → server frames, read without building a JSON tree.
//!
//! Every client frame is a JSON object whose fields the connection reads
//! one by one, each with its own error (docs/PROTOCOL.md, "WebSocket").
//! Parsing it into a `serde_json::Value` first cost a map, a key string per
//! field and a string per value, allocated and freed for every frame: the
//! largest part of handling a `send` before the log. This reads the object
//! once, keeps each known field as the raw JSON text it borrows from the
//! frame, and decodes a field only when it is asked for.
//!
//! The checks are REST's, field for field (a REST body is a serde struct of
//! `Option`s): a field that is absent or `null` is `None`; a field of the
//! wrong type is an error, never read as absent (`"conversation_id": 5`
//! must not fall back to the visitor's own conversation); a repeated field
//! is an error; unknown fields are skipped. `meta` is only built as a value
//! when asked for, and a nesting too deep to build is an error too.
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
    /// The first known field given twice, if any: the frame is refused.
    repeated: Option<&'static str>,
}

/// A field that is there but is not of the type its frame needs: 400
/// `bad_request`, as REST answers a body field of the wrong type.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub expected: &'static str,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} must be {}", self.field, self.expected)
    }
}

impl From<FieldError> for crate::error::ApiError {
    fn from(error: FieldError) -> Self {
        crate::error::ApiError::bad_request(error.to_string()).in_field(error.field)
    }
}

/// Why a frame's text is not a client frame at all.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Not one JSON object.
    NotAnObject,
    /// A known field given twice (REST refuses such a body too).
    Repeated(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NotAnObject => f.write_str("frames must be JSON objects"),
            FrameError::Repeated(field) => write!(f, "duplicate field `{field}`"),
        }
    }
}

impl From<FrameError> for crate::error::ApiError {
    fn from(error: FrameError) -> Self {
        let refused = crate::error::ApiError::bad_request(error.to_string());
        match error {
            FrameError::NotAnObject => refused,
            FrameError::Repeated(field) => refused.in_field(field),
        }
    }
}

/// `meta` nests deeper than serde_json builds (128 levels).
#[derive(Debug, PartialEq, Eq)]
pub struct TooDeep;

impl<'a> ClientFrame<'a> {
    /// Reads a frame's text: `Err` unless it is one JSON object.
    pub fn parse(text: &'a str) -> Result<ClientFrame<'a>, FrameError> {
        serde_json::from_str(text).map_err(|_| FrameError::NotAnObject)
    }

    /// `Err` when a known field was given twice (the frame is refused, as
    /// REST refuses such a body; its `client_msg_id` can still be echoed).
    pub fn check_repeated(&self) -> Result<(), FrameError> {
        match self.repeated {
            Some(field) => Err(FrameError::Repeated(field)),
            None => Ok(()),
        }
    }

    /// `type`, or "" when absent or not a string (an unknown type then).
    pub fn kind(&self) -> Cow<'a, str> {
        string(self.kind, "type")
            .ok()
            .flatten()
            .unwrap_or(Cow::Borrowed(""))
    }

    pub fn client_msg_id(&self) -> Result<Option<Cow<'a, str>>, FieldError> {
        string(self.client_msg_id, "client_msg_id")
    }

    pub fn conversation_id(&self) -> Result<Option<Cow<'a, str>>, FieldError> {
        string(self.conversation_id, "conversation_id")
    }

    pub fn content(&self) -> Result<Option<Cow<'a, str>>, FieldError> {
        string(self.content, "content")
    }

    pub fn attachment_id(&self) -> Result<Option<Cow<'a, str>>, FieldError> {
        string(self.attachment_id, "attachment_id")
    }

    /// `private`: false when absent.
    pub fn private(&self) -> Result<bool, FieldError> {
        boolean(self.private, "private")
    }

    /// `on` (typing): false when absent.
    pub fn on(&self) -> Result<bool, FieldError> {
        boolean(self.on, "on")
    }

    /// `seq`: a non-negative integer.
    pub fn seq(&self) -> Result<Option<u64>, FieldError> {
        self.seq
            .map(|raw| {
                serde_json::from_str::<u64>(raw.get()).map_err(|_| FieldError {
                    field: "seq",
                    expected: "a non-negative integer",
                })
            })
            .transpose()
    }

    /// `meta` as a JSON value, of any type (the send checks that it is an
    /// object within the limits). The frame was already read as valid
    /// JSON, so building the value fails only on serde_json's recursion
    /// limit.
    pub fn meta(&self) -> Result<Option<Value>, TooDeep> {
        self.meta
            .map(|raw| serde_json::from_str::<Value>(raw.get()).map_err(|_| TooDeep))
            .transpose()
    }
}

/// A JSON string field, borrowed when it has no escapes.
fn string<'a>(
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Option<Cow<'a, str>>, FieldError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let wrong = FieldError {
        field,
        expected: "a string",
    };
    let text = raw.get();
    if !text.starts_with('"') {
        return Err(wrong);
    }
    if let Ok(plain) = serde_json::from_str::<&str>(text) {
        return Ok(Some(Cow::Borrowed(plain)));
    }
    serde_json::from_str::<String>(text)
        .map(|owned| Some(Cow::Owned(owned)))
        .map_err(|_| wrong)
}

fn boolean(raw: Option<&RawValue>, field: &'static str) -> Result<bool, FieldError> {
    match raw.map(RawValue::get) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(FieldError {
            field,
            expected: "true or false",
        }),
    }
}

/// The field names, read without allocating (escaped names included).
#[derive(Deserialize, Clone, Copy)]
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
                // One bit per known field seen, to refuse a repeat.
                let mut seen = 0u16;
                while let Some(field) = map.next_key::<Field>()? {
                    let (slot, name) = match field {
                        Field::Type => (&mut frame.kind, "type"),
                        Field::ClientMsgId => (&mut frame.client_msg_id, "client_msg_id"),
                        Field::ConversationId => (&mut frame.conversation_id, "conversation_id"),
                        Field::Content => (&mut frame.content, "content"),
                        Field::Private => (&mut frame.private, "private"),
                        Field::AttachmentId => (&mut frame.attachment_id, "attachment_id"),
                        Field::Meta => (&mut frame.meta, "meta"),
                        Field::On => (&mut frame.on, "on"),
                        Field::Seq => (&mut frame.seq, "seq"),
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let bit = 1u16 << (field as u16);
                    if seen & bit != 0 {
                        frame.repeated.get_or_insert(name);
                    }
                    seen |= bit;
                    // `null` reads as absent, as an `Option` field of a
                    // REST body does.
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

    fn wrong(field: &'static str, expected: &'static str) -> FieldError {
        FieldError { field, expected }
    }

    #[test]
    fn fields_read_as_a_rest_body_reads_them() {
        let frame = ClientFrame::parse(
            r#"{"type":"send","client_msg_id":"c-1","content":"hi \"you\"","meta":{"t":1},
                "private":true,"seq":7,"extra":[1,{"a":2}],"on":false}"#,
        )
        .expect("object");
        assert_eq!(frame.kind(), "send");
        assert_eq!(
            frame.client_msg_id().expect("string").as_deref(),
            Some("c-1")
        );
        assert_eq!(
            frame.content().expect("string").as_deref(),
            Some("hi \"you\"")
        );
        assert!(matches!(frame.content(), Ok(Some(Cow::Owned(_)))));
        assert!(matches!(frame.client_msg_id(), Ok(Some(Cow::Borrowed(_)))));
        assert_eq!(frame.meta(), Ok(Some(serde_json::json!({"t": 1}))));
        assert_eq!(frame.private(), Ok(true));
        assert_eq!(frame.seq(), Ok(Some(7)));
        assert_eq!(frame.on(), Ok(false));
        // Absent and null are absent.
        assert_eq!(frame.conversation_id(), Ok(None));
        assert_eq!(frame.attachment_id(), Ok(None));
        let frame = ClientFrame::parse(r#"{"seq":null,"content":null,"on":null,"meta":null}"#)
            .expect("object");
        assert_eq!(frame.seq(), Ok(None));
        assert_eq!(frame.content(), Ok(None));
        assert_eq!(frame.on(), Ok(false));
        assert_eq!(frame.meta(), Ok(None));
    }

    #[test]
    fn a_wrong_type_is_an_error_never_absent() {
        for value in ["5", "true", "[]", "{}", "\"\"x"] {
            let text = format!(
                r#"{{"conversation_id":{value},"client_msg_id":{value},"content":{value},"attachment_id":{value}}}"#
            );
            let Ok(frame) = ClientFrame::parse(&text) else {
                // `""x` is not JSON at all.
                continue;
            };
            let string = "a string";
            assert_eq!(
                frame.conversation_id(),
                Err(wrong("conversation_id", string))
            );
            assert_eq!(frame.client_msg_id(), Err(wrong("client_msg_id", string)));
            assert_eq!(frame.content(), Err(wrong("content", string)));
            assert_eq!(frame.attachment_id(), Err(wrong("attachment_id", string)));
        }
        for value in ["1", "\"yes\"", "[]", "{}", "0"] {
            let text = format!(r#"{{"on":{value},"private":{value}}}"#);
            let frame = ClientFrame::parse(&text).expect("object");
            assert_eq!(frame.on(), Err(wrong("on", "true or false")), "{value}");
            assert_eq!(frame.private(), Err(wrong("private", "true or false")));
        }
        for value in ["-1", "2.5", "\"7\"", "true", "[]", "18446744073709551616"] {
            let text = format!(r#"{{"seq":{value}}}"#);
            let frame = ClientFrame::parse(&text).expect("object");
            assert_eq!(
                frame.seq(),
                Err(wrong("seq", "a non-negative integer")),
                "{value}"
            );
        }
        // A `type` that is not a string is an unknown type.
        let frame = ClientFrame::parse(r#"{"type":5}"#).expect("object");
        assert_eq!(frame.kind(), "");
    }

    #[test]
    fn meta_too_deep_to_build_is_an_error() {
        let deep = |levels: usize| {
            format!(
                r#"{{"meta":{}{}}}"#,
                "{\"a\":".repeat(levels - 1) + "{",
                "}".repeat(levels)
            )
        };
        let text = deep(100);
        let frame = ClientFrame::parse(&text).expect("object");
        assert!(matches!(frame.meta(), Ok(Some(Value::Object(_)))));
        let text = deep(200);
        let frame = ClientFrame::parse(&text).expect("the frame itself is read");
        assert_eq!(frame.meta(), Err(TooDeep));
        // Not an object is for the send to refuse, as REST does.
        let frame = ClientFrame::parse(r#"{"meta":[1]}"#).expect("object");
        assert_eq!(frame.meta(), Ok(Some(serde_json::json!([1]))));
    }

    #[test]
    fn a_repeated_field_is_refused_and_escaped_names_count() {
        let repeated = |text| {
            ClientFrame::parse(text)
                .expect("object")
                .check_repeated()
                .err()
        };
        assert_eq!(
            repeated(r#"{"type":"ping","\u0074ype":"send"}"#),
            Some(FrameError::Repeated("type"))
        );
        assert_eq!(
            repeated(r#"{"content":null,"client_msg_id":"c","content":"b"}"#),
            Some(FrameError::Repeated("content"))
        );
        // Unknown fields may repeat: they are skipped.
        assert_eq!(repeated(r#"{"x":1,"x":2}"#), None);
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
            assert_eq!(
                ClientFrame::parse(text).err(),
                Some(FrameError::NotAnObject),
                "{text}"
            );
        }
        assert!(ClientFrame::parse(" {} ").is_ok());
    }
}
