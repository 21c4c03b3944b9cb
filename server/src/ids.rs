//! Newtypes for identifiers. Every id is a ULID on the inside (16 bytes, time
//! ordered) and its 26-character Crockford base32 text on the wire; the 16
//! bytes are what the message log uses in its fixed-width keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "ts", derive(ts_rs::TS))]
        pub struct $name(#[cfg_attr(feature = "ts", ts(type = "string"))] Ulid);

        impl $name {
            pub fn new() -> Self {
                $name(Ulid::new())
            }
            pub fn to_bytes(self) -> [u8; 16] {
                self.0.to_bytes()
            }
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(Ulid::from_bytes(bytes))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = ulid::DecodeError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ulid::from_string(s).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(|_| serde::de::Error::custom(concat!("invalid ", stringify!($name))))
            }
        }

        impl sqlx::Type<sqlx::Sqlite> for $name {
            fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
                <String as sqlx::Type<sqlx::Sqlite>>::type_info()
            }
            fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Sqlite>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, sqlx::Sqlite>>::encode(self.0.to_string(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for $name {
            fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'r, sqlx::Sqlite>>::decode(value)?;
                Ok(text.parse()?)
            }
        }
    };
}

id_type!(
    /// An app: one website or mobile APP integration.
    AppId
);
id_type!(AgentId);
id_type!(VisitorId);
id_type!(
    /// A conversation; its 16 bytes prefix every key of it in the message log.
    ConversationId
);
id_type!(MessageId);
id_type!(CommentId);
id_type!(AttachmentId);
id_type!(TeamId);
id_type!(
    /// A routing rule.
    RuleId
);
id_type!(
    /// A FAQ entry of Kefu Assist (`assist::faq`).
    FaqEntryId
);
id_type!(
    /// An intent of Kefu Assist (`assist::intents`).
    IntentId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_bytes_round_trip() {
        let id = ConversationId::new();
        let text = id.to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(text.parse::<ConversationId>().expect("parse"), id);
        assert_eq!(ConversationId::from_bytes(id.to_bytes()), id);
        assert!("not-an-id".parse::<ConversationId>().is_err());
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(
            serde_json::from_str::<ConversationId>(&json).expect("back"),
            id
        );
    }
}
