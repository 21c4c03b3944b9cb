//! The TXT record of a Kefu announcement, written and read defensively.
//!
//! `v=1`, `id=<device ID>`, `term=<u64>`, `role=host|peer|solo` and, if
//! the shop has a name, `shop=<name>`. Anyone on the LAN can announce
//! anything, so the reader checks every value, looks at no more than
//! [`MAX_PROPERTIES`] properties and no value longer than a TXT string can
//! be, takes the first of repeated keys (RFC 6763 §6.4, keys compared
//! without case), ignores keys it does not know (later versions may add
//! some), and turns every problem into a [`TxtError`], never a panic.

use crate::lan::device_id::DeviceId;
use crate::lan::shop_name::ShopName;
use crate::lan::state::Role;

/// The TXT format this code writes and reads.
pub const TXT_VERSION: &str = "1";
/// Properties looked at; an announcement with more is refused (Kefu's
/// has five).
pub const MAX_PROPERTIES: usize = 16;
/// A TXT string is at most 255 bytes, key included.
const MAX_VALUE_BYTES: usize = 255;
/// 20 digits hold any u64.
const MAX_TERM_DIGITS: usize = 20;

/// What a Kefu device announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub device_id: DeviceId,
    pub shop: Option<ShopName>,
    pub term: u64,
    pub role: Role,
}

/// Why a TXT record is not a Kefu announcement.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxtError {
    #[error("more than {MAX_PROPERTIES} TXT properties")]
    TooManyProperties,
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("unsupported version")]
    UnsupportedVersion,
    #[error("{0} is not valid")]
    Invalid(&'static str),
}

impl Announcement {
    /// The TXT properties, in a fixed order.
    pub fn txt(&self) -> Vec<(String, String)> {
        let mut txt = vec![
            ("v".to_owned(), TXT_VERSION.to_owned()),
            ("id".to_owned(), self.device_id.to_string()),
            ("term".to_owned(), self.term.to_string()),
            ("role".to_owned(), self.role.to_string()),
        ];
        if let Some(shop) = &self.shop {
            txt.push(("shop".to_owned(), shop.as_str().to_owned()));
        }
        txt
    }

    /// Reads an announcement from TXT properties (key, value; a key without
    /// `=` has no value). See the module doc for the rules.
    pub fn parse<'a, I>(properties: I) -> Result<Announcement, TxtError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let mut version = None;
        let mut id = None;
        let mut term = None;
        let mut role = None;
        let mut shop = None;
        for (index, (key, value)) in properties.into_iter().enumerate() {
            if index >= MAX_PROPERTIES {
                return Err(TxtError::TooManyProperties);
            }
            let slot = if key.eq_ignore_ascii_case("v") {
                &mut version
            } else if key.eq_ignore_ascii_case("id") {
                &mut id
            } else if key.eq_ignore_ascii_case("term") {
                &mut term
            } else if key.eq_ignore_ascii_case("role") {
                &mut role
            } else if key.eq_ignore_ascii_case("shop") {
                &mut shop
            } else {
                continue;
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }

        let version = text(version, "v")?;
        if version != TXT_VERSION {
            return Err(TxtError::UnsupportedVersion);
        }
        let device_id = text(id, "id")?
            .parse::<DeviceId>()
            .map_err(|_| TxtError::Invalid("id"))?;
        let term_text = text(term, "term")?;
        if term_text.is_empty()
            || term_text.len() > MAX_TERM_DIGITS
            || !term_text.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(TxtError::Invalid("term"));
        }
        let term = term_text
            .parse::<u64>()
            .map_err(|_| TxtError::Invalid("term"))?;
        let role = match text(role, "role")? {
            "host" => Role::Host,
            "peer" => Role::Peer,
            "solo" => Role::Solo,
            _ => return Err(TxtError::Invalid("role")),
        };
        let shop = match shop {
            None => None,
            Some(value) => Some(
                text(Some(value), "shop")?
                    .parse::<ShopName>()
                    .map_err(|_| TxtError::Invalid("shop"))?,
            ),
        };
        Ok(Announcement {
            device_id,
            shop,
            term,
            role,
        })
    }
}

/// A present, valued, bounded, UTF-8 property.
fn text<'a>(value: Option<Option<&'a [u8]>>, name: &'static str) -> Result<&'a str, TxtError> {
    let bytes = value.flatten().ok_or(TxtError::Missing(name))?;
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(TxtError::Invalid(name));
    }
    std::str::from_utf8(bytes).map_err(|_| TxtError::Invalid(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement() -> Announcement {
        Announcement {
            device_id: DeviceId::from_bytes([3; 32]),
            shop: Some("小林茶馆".parse().expect("shop")),
            term: 7,
            role: Role::Host,
        }
    }

    type Properties = Vec<(String, Option<Vec<u8>>)>;

    fn owned(txt: &[(String, String)]) -> Properties {
        txt.iter()
            .map(|(k, v)| (k.clone(), Some(v.as_bytes().to_vec())))
            .collect()
    }

    fn parse(props: &[(String, Option<Vec<u8>>)]) -> Result<Announcement, TxtError> {
        Announcement::parse(props.iter().map(|(k, v)| (k.as_str(), v.as_deref())))
    }

    fn with(key: &str, value: Option<&[u8]>) -> Properties {
        let mut props: Vec<_> = owned(&announcement().txt())
            .into_iter()
            .filter(|(k, _)| k != key)
            .collect();
        props.insert(0, (key.to_owned(), value.map(<[u8]>::to_vec)));
        props
    }

    #[test]
    fn round_trip() {
        let txt = announcement().txt();
        assert_eq!(txt[0], ("v".to_owned(), "1".to_owned()));
        assert_eq!(parse(&owned(&txt)), Ok(announcement()));
        let mut nameless = announcement();
        nameless.shop = None;
        assert_eq!(parse(&owned(&nameless.txt())), Ok(nameless));
        // Every TXT string fits in 255 bytes even with the longest name.
        let mut long = announcement();
        long.shop = Some("字".repeat(21).parse().expect("shop"));
        long.term = u64::MAX;
        for (key, value) in long.txt() {
            assert!(key.len() + 1 + value.len() <= 255);
        }
        assert_eq!(parse(&owned(&long.txt())), Ok(long));
    }

    #[test]
    fn keys_without_case_first_wins_unknown_ignored() {
        let mut props = owned(&announcement().txt());
        props.push(("TERM".to_owned(), Some(b"99".to_vec())));
        props.push(("future".to_owned(), Some(b"x".to_vec())));
        props.push(("flag".to_owned(), None));
        assert_eq!(parse(&props).expect("parse").term, 7);
        let upper: Vec<_> = props
            .into_iter()
            .map(|(k, v)| (k.to_uppercase(), v))
            .collect();
        assert_eq!(parse(&upper).expect("upper").term, 7);
    }

    #[test]
    fn malformed_announcements_are_refused() {
        use TxtError::*;
        let cases: Vec<(Properties, TxtError)> = vec![
            (with("v", Some(b"2")), UnsupportedVersion),
            (with("v", Some(b"")), UnsupportedVersion),
            (with("v", None), Missing("v")),
            (with("id", Some(b"AAAA")), Invalid("id")),
            (with("id", Some(&[0xff, 0xfe])), Invalid("id")),
            (with("id", Some(&[b'A'; 300])), Invalid("id")),
            (with("term", Some(b"-1")), Invalid("term")),
            (with("term", Some(b"+1")), Invalid("term")),
            (with("term", Some(b"")), Invalid("term")),
            (with("term", Some(b"18446744073709551616")), Invalid("term")),
            (
                with("term", Some(b"000000000000000000001")),
                Invalid("term"),
            ),
            (with("term", Some(b"1e3")), Invalid("term")),
            (with("role", Some(b"HOST")), Invalid("role")),
            (with("role", Some(b"admin")), Invalid("role")),
            (with("shop", Some(b"")), Invalid("shop")),
            (with("shop", Some(b"Tea\x00")), Invalid("shop")),
            (
                with("shop", Some("Tea\u{202E}".as_bytes())),
                Invalid("shop"),
            ),
            (with("shop", Some(&[0xe5, 0xb0])), Invalid("shop")),
            (with("shop", None), Missing("shop")),
        ];
        for (props, error) in cases {
            assert_eq!(parse(&props), Err(error.clone()), "{props:?}");
        }
        for key in ["v", "id", "term", "role"] {
            let props: Vec<_> = owned(&announcement().txt())
                .into_iter()
                .filter(|(k, _)| k != key)
                .collect();
            assert!(matches!(parse(&props), Err(Missing(_))), "{key}");
        }
        assert_eq!(parse(&[]), Err(Missing("v")));
    }

    #[test]
    fn too_many_properties_stop_the_reading() {
        let mut props = owned(&announcement().txt());
        props.extend((0..MAX_PROPERTIES).map(|i| (format!("k{i}"), None)));
        assert_eq!(parse(&props), Err(TxtError::TooManyProperties));
        // An endless iterator is read no further than the bound.
        let endless = std::iter::repeat(("x", None));
        assert_eq!(
            Announcement::parse(endless),
            Err(TxtError::TooManyProperties)
        );
    }
}
