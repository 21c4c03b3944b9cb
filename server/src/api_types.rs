//! The UI's copy of the wire types, `ui/src/lib/api-types.ts`, generated
//! from the Rust types by ts-rs. Only built with the `ts` feature, which the
//! crate's own tests turn on (a dev-dependency on itself): the release
//! binary carries no TypeScript code and does not build ts-rs.
//!
//! The objects (`Message`, `Conversation`, `Ticket`, `Agent`, the error
//! body…) derive `TS` where they are defined; the WebSocket frames, which
//! `hub::frames` writes as JSON text without a Rust type, get one here,
//! [`ServerFrame`], and a test checks it against the frames `hub::frames`
//! really builds. Another test regenerates the file and fails on any
//! difference with the checked-in copy, so CI catches a wire change the UI
//! has not seen; `KEFU_WRITE_API_TYPES=1` rewrites it instead (see the
//! test's message).

use serde::Serialize;
use ts_rs::{Config, TS};

use crate::agents::{Agent, Availability, Role};
use crate::assist::insight::{Insight, IntentGuess};
use crate::attachments::AttachmentObject;
use crate::canned::CannedReply;
use crate::conversations::{Conversation, Status, VisitorSummary};
use crate::error::{ErrorBody, ErrorDetail, MovedTo};
use crate::ids::{
    AgentId, AppId, AttachmentId, CommentId, ConversationId, MessageId, TeamId, VisitorId,
};
use crate::message::{Message, MessageKind, Sender, SenderType};
use crate::tickets::history::{EventActor, TicketEvent};
use crate::tickets::{Comment, EventKind, Priority, Requester, Ticket, TicketStatus, Via};

/// Frames the server sends over the WebSocket (docs/API.md, section 4.5).
#[derive(Debug, Serialize, TS)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    Welcome {
        #[ts(type = "\"visitor\" | \"agent\"")]
        role: String,
        id: String,
        /// [ext] The LAN host's term (docs/LAN.md, "Terms"), agents only.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        term: Option<u64>,
    },
    Message {
        message: Message,
    },
    Ack {
        client_msg_id: String,
        message: Message,
    },
    Error {
        code: String,
        message: String,
        /// The frame member at fault, when the error is about one.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        field: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        client_msg_id: Option<String>,
        /// A visitor's message rate: when the next message is accepted.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        retry_after_ms: Option<u64>,
    },
    Pong,
    Typing {
        conversation_id: ConversationId,
        on: bool,
        sender: Sender,
    },
    Read {
        conversation_id: ConversationId,
        seq: u64,
        sender: Sender,
    },
    Conversation {
        conversation: Conversation,
    },
    Ticket {
        ticket: Ticket,
    },
    Agent {
        agent: Agent,
    },
}

/// Where the generated file lives, from the server crate's directory.
pub const OUTPUT: &str = "../ui/src/lib/api-types.ts";

const HEADER: &str = "\
// Generated from the server's Rust types by ts-rs (server/src/api_types.rs):
// do not edit. A test fails when it differs from what the server sends;
// regenerate with
//   KEFU_WRITE_API_TYPES=1 cargo nextest run --workspace --all-targets -E 'test(/api_types/)'
// 64-bit integers are `number`: ids are strings, and counts, sequence
// numbers and millisecond times stay far below 2^53.
";

fn push<T: TS + ?Sized>(out: &mut String, cfg: &Config) {
    out.push('\n');
    if let Some(docs) = T::docs() {
        out.push_str(&docs);
    }
    out.push_str("export ");
    out.push_str(&pretty(&T::decl(cfg)));
    out.push('\n');
}

/// Splits `text` at `separator` where it is outside brackets, strings and
/// comments (ts-rs writes its declarations on one line).
fn split_top(text: &str, separator: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut in_string = false;
    let mut in_comment = false;
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if in_comment {
            if rest.starts_with("*/") {
                in_comment = false;
                i += 1;
            }
        } else if in_string {
            if bytes[i] == b'"' {
                in_string = false;
            }
        } else if rest.starts_with("/*") {
            in_comment = true;
        } else if bytes[i] == b'"' {
            in_string = true;
        } else if matches!(bytes[i], b'{' | b'[' | b'(' | b'<') {
            depth += 1;
        } else if matches!(bytes[i], b'}' | b']' | b')' | b'>') {
            depth -= 1;
        } else if depth == 0 && rest.starts_with(separator) {
            parts.push(text[start..i].to_owned());
            i += separator.len();
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(text[start..].to_owned());
    parts
}

/// An object type `{ a: T, b: U, }` with one member a line, each line
/// (doc comments included) indented by `indent` plus two spaces.
fn pretty_object(object: &str, indent: &str) -> String {
    let inner = &object[1..object.len() - 1];
    let mut out = String::from("{\n");
    for field in split_top(inner, ",") {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        for line in field.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            out.push_str(indent);
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        // The comma ends the member's last line.
        out.pop();
        out.push_str(",\n");
    }
    out.push_str(indent);
    out.push('}');
    out
}

/// `type X = { … };` with one member a line, and a union of objects (the
/// frames) with one variant a block; other declarations as they are.
fn pretty(decl: &str) -> String {
    let Some((head, body)) = decl.split_once(" = ") else {
        return decl.to_owned();
    };
    let body = body.strip_suffix(';').unwrap_or(body);
    let variants = split_top(body, " | ");
    let is_object = |v: &str| v.starts_with('{') && v.ends_with('}');
    if !variants.iter().any(|v| is_object(v)) {
        return decl.to_owned();
    }
    if variants.len() == 1 {
        return format!("{head} = {};", pretty_object(body, ""));
    }
    let mut out = format!("{head} =");
    for variant in &variants {
        out.push_str("\n  | ");
        if is_object(variant) {
            out.push_str(&pretty_object(variant, "    "));
        } else {
            out.push_str(variant);
        }
    }
    out.push(';');
    out
}

/// The whole TypeScript file: every wire type, one declaration each.
pub fn typescript() -> String {
    let cfg = Config::new().with_large_int("number");
    let mut out = String::from(HEADER);
    let out = &mut out;
    push::<AgentId>(out, &cfg);
    push::<AppId>(out, &cfg);
    push::<AttachmentId>(out, &cfg);
    push::<CommentId>(out, &cfg);
    push::<ConversationId>(out, &cfg);
    push::<MessageId>(out, &cfg);
    push::<TeamId>(out, &cfg);
    push::<VisitorId>(out, &cfg);
    push::<SenderType>(out, &cfg);
    push::<Sender>(out, &cfg);
    push::<AttachmentObject>(out, &cfg);
    push::<MessageKind>(out, &cfg);
    push::<Message>(out, &cfg);
    push::<Status>(out, &cfg);
    push::<VisitorSummary>(out, &cfg);
    push::<IntentGuess>(out, &cfg);
    push::<Insight>(out, &cfg);
    push::<Conversation>(out, &cfg);
    push::<Role>(out, &cfg);
    push::<Availability>(out, &cfg);
    push::<Agent>(out, &cfg);
    push::<TicketStatus>(out, &cfg);
    push::<Priority>(out, &cfg);
    push::<Via>(out, &cfg);
    push::<Requester>(out, &cfg);
    push::<Ticket>(out, &cfg);
    push::<Comment>(out, &cfg);
    push::<EventKind>(out, &cfg);
    push::<EventActor>(out, &cfg);
    push::<TicketEvent>(out, &cfg);
    push::<CannedReply>(out, &cfg);
    push::<MovedTo>(out, &cfg);
    push::<ErrorDetail>(out, &cfg);
    push::<ErrorBody>(out, &cfg);
    push::<ServerFrame>(out, &cfg);
    std::mem::take(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::error::ApiError;
    use crate::hub::frames::{self, Frame};
    use crate::store::messages::StoredMessage;

    fn output() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(OUTPUT)
    }

    #[test]
    fn api_types_file_is_current() {
        let fresh = typescript();
        let path = output();
        if std::env::var_os("KEFU_WRITE_API_TYPES").is_some() {
            std::fs::write(&path, &fresh).expect("write api-types.ts");
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        if checked_in != fresh {
            let dir = tempfile::Builder::new()
                .prefix("kefu-api-types-")
                .tempdir()
                .expect("temp dir")
                .keep();
            let generated = dir.join("api-types.ts");
            std::fs::write(&generated, &fresh).expect("write generated copy");
            panic!(
                "{} is not what the Rust types generate (a wire type changed).\n\
                 The generated file: {}\n\
                 `diff -u {} {}` shows the change; to take it, run\n  \
                 KEFU_WRITE_API_TYPES=1 cargo nextest run --workspace --all-targets -E 'test(/api_types/)'\n\
                 then fix what `npm run check` (in ui/) finds and commit both.",
                path.display(),
                generated.display(),
                path.display(),
                generated.display(),
            );
        }
    }

    fn parse(frame: &Frame) -> Value {
        serde_json::from_str(frame.text().as_str()).expect("a frame is JSON")
    }

    fn same(frame: Frame, mirror: ServerFrame) {
        assert_eq!(
            parse(&frame),
            serde_json::to_value(&mirror).expect("serialize"),
            "{mirror:?}"
        );
    }

    fn sender() -> Sender {
        Sender {
            kind: SenderType::Agent,
            id: "01J00000000000000000000001".to_owned(),
            name: "Amy".to_owned(),
        }
    }

    fn message(conversation_id: ConversationId) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id,
            seq: 7,
            client_msg_id: Some("c-1".to_owned()),
            kind: MessageKind::Text,
            sender: sender(),
            content: "hi".to_owned(),
            meta: json!({"a": 1}),
            attachment: None,
            created_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn api_types_server_frame_matches_the_hub_frames() {
        same(
            frames::welcome("agent", "A1", Some(4)),
            ServerFrame::Welcome {
                role: "agent".to_owned(),
                id: "A1".to_owned(),
                term: Some(4),
            },
        );
        same(
            frames::welcome("visitor", "V1", None),
            ServerFrame::Welcome {
                role: "visitor".to_owned(),
                id: "V1".to_owned(),
                term: None,
            },
        );
        same(frames::pong(), ServerFrame::Pong);

        let conversation_id = ConversationId::new();
        same(
            frames::typing(conversation_id, true, &sender()),
            ServerFrame::Typing {
                conversation_id,
                on: true,
                sender: sender(),
            },
        );
        same(
            frames::read(conversation_id, 9, &sender()),
            ServerFrame::Read {
                conversation_id,
                seq: 9,
                sender: sender(),
            },
        );

        let message = message(conversation_id);
        let stored = StoredMessage {
            conversation_id,
            seq: message.seq,
            note: false,
            created_at: message.created_at,
            json: Arc::from(serde_json::to_string(&message).expect("serialize")),
            start: false,
        };
        same(
            frames::message(&stored),
            ServerFrame::Message {
                message: message.clone(),
            },
        );
        same(
            frames::ack("c-1", &stored),
            ServerFrame::Ack {
                client_msg_id: "c-1".to_owned(),
                message,
            },
        );

        let error = ApiError::BadRequest("content is empty".to_owned()).in_field("content");
        same(
            frames::api_error(&error, Some("c-2")),
            ServerFrame::Error {
                code: error.code().to_owned(),
                message: error.to_string(),
                field: Some("content".to_owned()),
                client_msg_id: Some("c-2".to_owned()),
                retry_after_ms: None,
            },
        );
        let limited = ApiError::MessageRateLimited(Duration::from_millis(1500));
        same(
            frames::api_error(&limited, None),
            ServerFrame::Error {
                code: "rate_limited".to_owned(),
                message: limited.to_string(),
                field: None,
                client_msg_id: None,
                retry_after_ms: Some(1500),
            },
        );

        let agent = Agent {
            id: AgentId::new(),
            username: "amy".to_owned(),
            display_name: "Amy".to_owned(),
            role: Role::Agent,
            status: Availability::Online,
            max_concurrent: 5,
            active: true,
        };
        same(frames::agent(&agent), ServerFrame::Agent { agent });
    }
}
