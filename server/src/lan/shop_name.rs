//! `ShopName`: the name a host announces and peers list ("Lin's Tea
//! House"). It is shown to people next to a device ID, so it must not be
//! able to pass for something else: no control characters, no invisible
//! or direction-changing characters, bounded length.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// At most this many bytes of UTF-8 (21 CJK characters): one DNS label,
/// so the name fits the mDNS instance name's label (cut only to make room
/// for the short device ID) and, with room to spare, a TXT string.
pub const MAX_BYTES: usize = 63;

/// A checked shop name: trimmed, 1–63 bytes, nothing hidden.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShopName(String);

/// Why a text is not a shop name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShopNameError {
    #[error("the shop name is empty")]
    Empty,
    #[error("the shop name is longer than {MAX_BYTES} bytes")]
    TooLong,
    #[error("the shop name contains a control or invisible character")]
    Hidden,
}

impl ShopName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that draw nothing or reorder what follows: zero-width
/// spaces and joiners, bidirectional embeddings, overrides and isolates,
/// the word joiner and the byte order mark.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}')
}

impl FromStr for ShopName {
    type Err = ShopNameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ShopNameError::Empty);
        }
        if text.len() > MAX_BYTES {
            return Err(ShopNameError::TooLong);
        }
        if text.chars().any(is_hidden) {
            return Err(ShopNameError::Hidden);
        }
        Ok(ShopName(text.to_owned()))
    }
}

impl fmt::Display for ShopName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ShopName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ShopName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        match text.parse() {
            // A name stored before the limit was 63 bytes (it was 64
            // characters) is cut at a character boundary rather than
            // making `state.json` unreadable.
            Err(ShopNameError::TooLong) => {
                let text = text.trim();
                let mut end = MAX_BYTES;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text[..end].parse().map_err(serde::de::Error::custom)
            }
            parsed => parsed.map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_people_use() {
        for name in [
            "Lin's Tea House",
            "小林茶馆",
            "Café Ümit",
            "A",
            &"字".repeat(21),
            &"x".repeat(63),
        ] {
            assert_eq!(name.parse::<ShopName>().expect(name).as_str(), name);
        }
        assert_eq!("  Tea  ".parse::<ShopName>().expect("trim").as_str(), "Tea");
    }

    #[test]
    fn refuses_hidden_or_long() {
        use ShopNameError::*;
        for (name, error) in [
            ("", Empty),
            ("   ", Empty),
            ("Tea\nHouse", Hidden),
            ("Tea\u{0}", Hidden),
            ("Tea\u{202E}esuoH", Hidden),
            ("Te\u{200B}a", Hidden),
            ("Tea\u{2067}x", Hidden),
            ("\u{FEFF}Tea", Hidden),
        ] {
            assert_eq!(name.parse::<ShopName>(), Err(error), "{name:?}");
        }
        assert_eq!("字".repeat(22).parse::<ShopName>(), Err(TooLong));
        assert_eq!("x".repeat(64).parse::<ShopName>(), Err(TooLong));
        assert_eq!("x".repeat(1_000_000).parse::<ShopName>(), Err(TooLong));
    }

    #[test]
    fn a_longer_stored_name_is_cut_not_refused() {
        let stored = serde_json::json!("字".repeat(30));
        let name: ShopName = serde_json::from_value(stored).expect("cut");
        assert_eq!(name.as_str(), "字".repeat(21));
        let hidden = serde_json::json!("Tea\u{7}");
        assert!(serde_json::from_value::<ShopName>(hidden).is_err());
        let hidden = serde_json::json!(format!("\u{7}{}", "x".repeat(70)));
        assert!(serde_json::from_value::<ShopName>(hidden).is_err());
    }
}
