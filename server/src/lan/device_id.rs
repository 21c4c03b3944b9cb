//! `DeviceId`: who a Kefu device is on the LAN. It is the SHA-256 of the
//! device's public key (the DER `SubjectPublicKeyInfo`), as Syncthing does,
//! so it names the key and not the certificate: re-issuing the certificate
//! (new names, new dates) keeps the ID, and a certificate that merely
//! *mentions* an ID (in its subject, its SANs, anywhere) is not that device.
//!
//! Text form: RFC 4648 base32 without padding (52 characters for 32 bytes),
//! in groups of 4 joined by `-`, e.g. `GAVW-HOZ3-54VJ-…`. Parsing accepts
//! the groups with or without dashes, in any case, and nothing else: one
//! device, one canonical text.

use std::fmt;
use std::str::FromStr;

use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Characters in the undashed text form (ceil(256 / 5)).
const TEXT_LEN: usize = 52;
/// Characters per group in the display form.
const GROUP: usize = 4;
/// Longest input `from_str` looks at: the dashed form is 64 characters; a
/// longer input is refused before any work is done on it.
const MAX_INPUT: usize = 80;

/// SHA-256 of a device's `SubjectPublicKeyInfo` DER.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId([u8; 32]);

/// Why a text is not a device ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("a device ID has 52 letters and digits (groups of 4, dashes optional)")]
    Length,
    #[error("a device ID has only the letters A–Z and the digits 2–7")]
    Alphabet,
    #[error("dashes in a device ID go between groups of 4")]
    Grouping,
    #[error("not a canonical device ID (its last character is impossible)")]
    NonCanonical,
}

/// Why a certificate has no device ID.
#[derive(Debug, thiserror::Error)]
#[error("not a usable certificate: {0}")]
pub struct CertificateParseError(#[source] pub rustls::Error);

impl DeviceId {
    /// The ID of a public key given as DER `SubjectPublicKeyInfo`.
    pub fn from_spki(spki_der: &[u8]) -> DeviceId {
        DeviceId(Sha256::digest(spki_der).into())
    }

    /// The ID of the key a certificate carries (its SPKI, parsed by webpki;
    /// nothing else in the certificate is read).
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Result<DeviceId, CertificateParseError> {
        spki_of_certificate(cert).map(|spki| DeviceId::from_spki(&spki))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> DeviceId {
        DeviceId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first two groups (`GAVW-HOZ3`, 40 bits): enough for a person to
    /// tell devices apart in a list, never enough to trust one.
    pub fn short(&self) -> String {
        let text = self.undashed();
        format!("{}-{}", &text[..GROUP], &text[GROUP..2 * GROUP])
    }

    fn undashed(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }
}

/// The DER `SubjectPublicKeyInfo` of a certificate's key (with its outer
/// SEQUENCE, exactly the bytes rcgen and OpenSSL hash).
pub fn spki_of_certificate(cert: &CertificateDer<'_>) -> Result<Vec<u8>, CertificateParseError> {
    let parsed =
        rustls::server::ParsedCertificate::try_from(cert).map_err(CertificateParseError)?;
    Ok(parsed.subject_public_key_info().as_ref().to_vec())
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.undashed();
        for (index, group) in text.as_bytes().chunks(GROUP).enumerate() {
            if index > 0 {
                f.write_str("-")?;
            }
            // Base32 output is ASCII, so every chunk is valid UTF-8.
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_INPUT {
            return Err(DeviceIdError::Length);
        }
        let mut compact = String::with_capacity(TEXT_LEN);
        for c in text.chars() {
            match c {
                '-' => {}
                'a'..='z' | 'A'..='Z' | '2'..='7' => compact.push(c.to_ascii_uppercase()),
                _ => return Err(DeviceIdError::Alphabet),
            }
        }
        if compact.len() != TEXT_LEN {
            return Err(DeviceIdError::Length);
        }
        // Dashes, when present, must sit exactly between the groups: a
        // mistyped ID with a dash in the middle of a group is refused rather
        // than silently read another way.
        if text.contains('-') && text.len() != TEXT_LEN + TEXT_LEN.div_ceil(GROUP) - 1 {
            return Err(DeviceIdError::Length);
        }
        if text.contains('-')
            && !text
                .as_bytes()
                .iter()
                .enumerate()
                .all(|(i, b)| (*b == b'-') == (i % (GROUP + 1) == GROUP))
        {
            return Err(DeviceIdError::Grouping);
        }
        // BASE32_NOPAD checks the trailing bits: of the last character only
        // one bit carries data, so 15 of 16 spellings of it are refused.
        let bytes = data_encoding::BASE32_NOPAD
            .decode(compact.as_bytes())
            .map_err(|_| DeviceIdError::NonCanonical)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| DeviceIdError::Length)?;
        Ok(DeviceId(bytes))
    }
}

impl Serialize for DeviceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixed P-256 key made with OpenSSL; the expected values were computed
    /// with OpenSSL and Python, not with this code:
    /// `openssl pkey -pubout -outform DER | sha256sum`, then base32.
    pub(crate) const FIXTURE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVoX7PoH0eQcj4TQS
AuBpV33IXAD4k/NmS85fNHXYKKGhRANCAAT/1P1hgt//0zsFJxBpARHpEGcalbql
SfWpWU1vKwwZYoGGr5Z4naYyBQ+OlVtwybolGtBH1bC0H0oJ4zS/etOL
-----END PRIVATE KEY-----
";
    const FIXTURE_SPKI_HEX: &str = "3059301306072a8648ce3d020106082a8648ce3d03010703420004ffd4fd6182dfffd33b052710690111e910671a95baa549f5a9594d6f2b0c19628186af96789da632050f8e955b70c9ba251ad047d5b0b41f4a09e334bf7ad38b";
    const FIXTURE_SHA256_HEX: &str =
        "302b63bb3bef2a94787b599528b115b93864d1fa30f6e0115ef7fa04608779d1";
    pub(crate) const FIXTURE_ID: &str =
        "GAVW-HOZ3-54VJ-I6D3-LGKS-RMIV-XE4G-JUP2-GD3O-AEK6-675A-IYEH-PHIQ";

    fn fixture_spki() -> Vec<u8> {
        hex::decode(FIXTURE_SPKI_HEX).expect("hex")
    }

    #[test]
    fn known_key_gives_known_id() {
        let id = DeviceId::from_spki(&fixture_spki());
        assert_eq!(hex::encode(id.as_bytes()), FIXTURE_SHA256_HEX);
        assert_eq!(id.to_string(), FIXTURE_ID);
        assert_eq!(id.to_string().len(), 64);
        assert_eq!(id.short(), "GAVW-HOZ3");
    }

    #[test]
    fn rcgen_spki_of_the_fixture_key_is_openssls() {
        use rcgen::PublicKeyData;
        let key = rcgen::KeyPair::from_pem(FIXTURE_KEY_PEM).expect("key");
        assert_eq!(hex::encode(key.subject_public_key_info()), FIXTURE_SPKI_HEX);
    }

    #[test]
    fn the_id_of_a_certificate_is_the_id_of_its_key() {
        use rcgen::PublicKeyData;
        let key = rcgen::KeyPair::from_pem(FIXTURE_KEY_PEM).expect("key");
        let params = rcgen::CertificateParams::new(vec!["kefu.local".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(
            spki_of_certificate(cert.der()).expect("spki"),
            key.subject_public_key_info()
        );
        assert_eq!(
            DeviceId::from_certificate(cert.der())
                .expect("id")
                .to_string(),
            FIXTURE_ID
        );
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(DeviceId::from_certificate(&junk).is_err());
        assert!(DeviceId::from_certificate(&CertificateDer::from(Vec::new())).is_err());
    }

    #[test]
    fn parses_with_or_without_dashes_in_any_case() {
        let id: DeviceId = FIXTURE_ID.parse().expect("dashed");
        assert_eq!(id.to_string(), FIXTURE_ID);
        let undashed = FIXTURE_ID.replace('-', "");
        assert_eq!(undashed.parse::<DeviceId>(), Ok(id));
        assert_eq!(undashed.to_lowercase().parse::<DeviceId>(), Ok(id));
        assert_eq!(FIXTURE_ID.to_lowercase().parse::<DeviceId>(), Ok(id));
    }

    #[test]
    fn refuses_everything_else() {
        let undashed = FIXTURE_ID.replace('-', "");
        let cases: Vec<(String, DeviceIdError)> = vec![
            (String::new(), DeviceIdError::Length),
            (undashed[..51].to_owned(), DeviceIdError::Length),
            (format!("{undashed}A"), DeviceIdError::Length),
            (format!("{FIXTURE_ID}-AAAA"), DeviceIdError::Length),
            ("A".repeat(10_000), DeviceIdError::Length),
            (undashed.replacen('G', "0", 1), DeviceIdError::Alphabet),
            (undashed.replacen('G', "1", 1), DeviceIdError::Alphabet),
            (format!(" {}", &undashed[1..]), DeviceIdError::Alphabet),
            (undashed.replacen('G', "=", 1), DeviceIdError::Alphabet),
            (undashed.replacen('G', "Ǵ", 1), DeviceIdError::Alphabet),
            // A dash moved into a group: the right letters, misplaced.
            (
                format!("GAV-W{}", &FIXTURE_ID[5..]),
                DeviceIdError::Grouping,
            ),
            // Dashes of the right count in the wrong places.
            (
                format!("{}-{}", &undashed[..3], &undashed[3..]) + &"-".repeat(11),
                DeviceIdError::Grouping,
            ),
            // A dash too many.
            (
                format!("{}-", &FIXTURE_ID[..63]) + "Q",
                DeviceIdError::Length,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<DeviceId>(), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn refuses_non_canonical_last_character() {
        // 52 × 5 = 260 bits for 256: the last character's 4 low bits must be
        // zero. The fixture ends in Q (16 = 0b10000); R (17) encodes the same
        // bytes with a trailing bit set.
        let undashed = FIXTURE_ID.replace('-', "");
        assert!(undashed.ends_with('Q'));
        let other = format!("{}R", &undashed[..51]);
        assert_eq!(other.parse::<DeviceId>(), Err(DeviceIdError::NonCanonical));
    }

    #[test]
    fn serde_round_trip_is_the_text() {
        let id: DeviceId = FIXTURE_ID.parse().expect("id");
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(json, format!("\"{FIXTURE_ID}\""));
        assert_eq!(serde_json::from_str::<DeviceId>(&json).expect("back"), id);
        assert!(serde_json::from_str::<DeviceId>("\"AAAA\"").is_err());
    }
}
