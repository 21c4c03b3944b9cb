//! Byte layout of every key and value in the message log. Column families
//! are named after what they map; the grammar of each is below, and the tests
//! pin it byte for byte, because changing it silently would orphan data.
//!
//! | CF          | key                                         | value                        |
//! |-------------|---------------------------------------------|------------------------------|
//! | `msg`       | conversation (16) ++ seq (u64 BE)           | flags (1) ++ created_at (i64 BE) ++ Message JSON |
//! | `dedup`     | conversation (16) ++ sender (16) ++ client_msg_id (1–64 ASCII) | seq (u64 BE) |
//! | `conv_head` | conversation (16)                           | last seq (u64 BE) ++ last created_at (i64 BE) |
//! | `conv_start`| conversation (16) ++ seq (u64 BE)           | empty                        |
//!
//! A `conv_start` key marks a visitor message that starts (or reopens) its
//! conversation: written in the message's own batch, deleted once the start
//! is committed to SQLite (`conversations::start`). What is left at start-up
//! is the starts a crash interrupted.
//!
//! `msg` keys sort by conversation, then by seq, so a conversation is one
//! contiguous range and catch-up (`seq > N`) is a forward range scan.
//! `dedup` is scoped to the conversation as well as the sender: a client that
//! numbers its messages per conversation (`c1`, `c2`, …) in several
//! conversations must not see one conversation's message returned for
//! another's send.

use crate::ids::ConversationId;

pub const CF_MSG: &str = "msg";
pub const CF_DEDUP: &str = "dedup";
pub const CF_HEAD: &str = "conv_head";
pub const CF_START: &str = "conv_start";

/// Flag bit in a `msg` value: the message is a private note (never shown to
/// visitors). Lets the visitor read path skip notes without parsing JSON.
pub const FLAG_NOTE: u8 = 0b0000_0001;

pub const CONV_LEN: usize = 16;
pub const MSG_KEY_LEN: usize = CONV_LEN + 8;

pub fn msg_key(conversation: ConversationId, seq: u64) -> [u8; MSG_KEY_LEN] {
    let mut key = [0u8; MSG_KEY_LEN];
    key[..CONV_LEN].copy_from_slice(&conversation.to_bytes());
    key[CONV_LEN..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Splits a `msg` key back into its parts; `None` for a key of another shape.
pub fn parse_msg_key(key: &[u8]) -> Option<(ConversationId, u64)> {
    if key.len() != MSG_KEY_LEN {
        return None;
    }
    let conv: [u8; CONV_LEN] = key[..CONV_LEN].try_into().ok()?;
    let seq: [u8; 8] = key[CONV_LEN..].try_into().ok()?;
    Some((ConversationId::from_bytes(conv), u64::from_be_bytes(seq)))
}

/// A `msg` value: the flags and time that read paths need without parsing
/// the JSON, then the JSON.
/// A message value's header, with room for `json_capacity` more bytes: the
/// writer serializes the message straight after it.
pub fn msg_value_header(flags: u8, created_at: i64, json_capacity: usize) -> Vec<u8> {
    let mut value = Vec::with_capacity(9 + json_capacity);
    value.push(flags);
    value.extend_from_slice(&created_at.to_be_bytes());
    value
}

pub fn split_msg_value(value: &[u8]) -> Option<(u8, i64, &[u8])> {
    let (&flags, rest) = value.split_first()?;
    let at: [u8; 8] = rest.get(..8)?.try_into().ok()?;
    Some((flags, i64::from_be_bytes(at), &rest[8..]))
}

/// A `conv_start` key: the same layout as a `msg` key.
pub fn start_key(conversation: ConversationId, seq: u64) -> [u8; MSG_KEY_LEN] {
    msg_key(conversation, seq)
}

pub fn dedup_key(conversation: ConversationId, sender: [u8; 16], client_msg_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(CONV_LEN + 16 + client_msg_id.len());
    key.extend_from_slice(&conversation.to_bytes());
    key.extend_from_slice(&sender);
    key.extend_from_slice(client_msg_id.as_bytes());
    key
}

pub fn head_key(conversation: ConversationId) -> [u8; CONV_LEN] {
    conversation.to_bytes()
}

pub fn head_value(last_seq: u64, last_at: i64) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&last_seq.to_be_bytes());
    value[8..].copy_from_slice(&last_at.to_be_bytes());
    value
}

pub fn parse_head_value(value: &[u8]) -> Option<(u64, i64)> {
    let seq: [u8; 8] = value.get(..8)?.try_into().ok()?;
    let at: [u8; 8] = value.get(8..16)?.try_into().ok()?;
    Some((u64::from_be_bytes(seq), i64::from_be_bytes(at)))
}

pub fn parse_seq(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> ConversationId {
        ConversationId::from_bytes([0xAB; 16])
    }

    #[test]
    fn msg_key_is_conversation_then_big_endian_seq() {
        let key = msg_key(conv(), 0x0102_0304_0506_0708);
        let mut expected = vec![0xAB; 16];
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(key.as_slice(), expected.as_slice());
        assert_eq!(parse_msg_key(&key), Some((conv(), 0x0102_0304_0506_0708)));
        assert_eq!(parse_msg_key(&key[..20]), None);
    }

    #[test]
    fn msg_keys_sort_by_seq_within_a_conversation() {
        // Big-endian makes byte order equal numeric order: 255 < 256.
        assert!(msg_key(conv(), 255) < msg_key(conv(), 256));
        assert!(msg_key(conv(), 1) < msg_key(conv(), u64::MAX));
        let other = ConversationId::from_bytes([0xAC; 16]);
        assert!(msg_key(conv(), u64::MAX) < msg_key(other, 0));
    }

    #[test]
    fn msg_value_layout() {
        let mut value = msg_value_header(FLAG_NOTE, 258, 2);
        value.extend_from_slice(b"{}");
        assert_eq!(value, vec![1, 0, 0, 0, 0, 0, 0, 1, 2, b'{', b'}']);
        assert_eq!(split_msg_value(&value), Some((FLAG_NOTE, 258, &b"{}"[..])));
        assert_eq!(split_msg_value(&value[..5]), None);
    }

    #[test]
    fn dedup_key_layout() {
        let key = dedup_key(conv(), [0x11; 16], "c-1_x");
        let mut expected = vec![0xAB; 16];
        expected.extend_from_slice(&[0x11; 16]);
        expected.extend_from_slice(b"c-1_x");
        assert_eq!(key, expected);
    }

    #[test]
    fn start_key_is_conversation_then_big_endian_seq() {
        let key = start_key(conv(), 258);
        let mut expected = vec![0xAB; 16];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(key.as_slice(), expected.as_slice());
        assert_eq!(parse_msg_key(&key), Some((conv(), 258)));
    }

    #[test]
    fn head_value_layout() {
        let value = head_value(7, 1_700_000_000_000);
        assert_eq!(&value[..8], &[0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(&value[8..], &1_700_000_000_000i64.to_be_bytes());
        assert_eq!(parse_head_value(&value), Some((7, 1_700_000_000_000)));
        assert_eq!(parse_head_value(&value[..9]), None);
        assert_eq!(head_key(conv()), [0xAB; 16]);
    }
}
