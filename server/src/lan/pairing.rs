//! Pairing: the short code both screens show, and the pairing link.
//!
//! **The code.** A peer meets a host over TLS whose certificate it cannot
//! check yet, so an attacker on the LAN could sit in the middle. Both sides
//! therefore show a 6-digit code computed from both public keys (KDE
//! Connect's verification key) and a person compares them: a
//! man-in-the-middle has a different key towards each side, so the codes
//! differ.
//!
//! A code from the keys alone is not enough, because 6 digits are only
//! 20 bits and the keys are known in advance (the host's is in every
//! handshake; the peer's once it has tried to connect once): the attacker
//! can try about a million keys of its own offline until
//! `code(peer, attacker₁) == code(attacker₂, host)`, which takes seconds.
//! So the code also covers two fresh random nonces, exchanged with a
//! commitment (as Bluetooth's numeric comparison does): the host first
//! sends `commitment = H(host key, host nonce)`, the peer then sends its
//! nonce, and only then does the host reveal its nonce, which the peer
//! checks against the commitment. Whoever sits in the middle must fix its
//! nonce towards one side before it learns the value that decides the
//! other side's code, so its chance per attempt is one in a million, and
//! the host limits attempts. The types enforce the order: a
//! [`HostPairing`] reveals its nonce once, consuming itself, so a peer
//! cannot try several nonces against one commitment.
//!
//! **The link** `kefu://pair?host=ADDR:PORT&id=DEVICE_ID` (shown as a QR
//! code by the host) carries the host's full device ID: a peer that opened
//! it pins the host's key from the first connection, and a different key at
//! that address is refused. The host still approves the peer, and the
//! codes still tell the admin which pending device is which.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::address::HostAddress;
use super::device_id::DeviceId;

const CODE_DOMAIN: &[u8] = b"kefu-pair-code-v1\0";
const COMMIT_DOMAIN: &[u8] = b"kefu-pair-commit-v1\0";
/// The code's range: 6 decimal digits.
const CODE_MODULUS: u64 = 1_000_000;

/// A 256-bit random value, sent as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Nonce([u8; 32]);

/// `SHA-256(domain ‖ host SPKI ‖ host nonce)`, sent as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Commitment([u8; 32]);

/// The 6-digit code, shown as `123 456`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PairingCode(u32);

/// Why pairing stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    #[error(
        "the host's revealed nonce does not match its commitment: someone may be \
         intercepting this pairing; start again"
    )]
    CommitmentMismatch,
    #[error("expected 64 hexadecimal digits")]
    Hex,
}

/// The host's side of one pairing attempt. Made when a peer asks to pair;
/// [`HostPairing::reveal`] consumes it.
pub struct HostPairing {
    nonce: Nonce,
    commitment: Commitment,
}

/// The peer's side of one pairing attempt, made when the host's
/// commitment arrives; [`PeerPairing::finish`] consumes it.
pub struct PeerPairing {
    nonce: Nonce,
    commitment: Commitment,
}

impl HostPairing {
    /// Step 1 (host): a fresh nonce and the commitment to send the peer.
    pub fn new(host_spki: &[u8]) -> HostPairing {
        let nonce = Nonce(rand::random());
        HostPairing {
            commitment: commit(host_spki, &nonce),
            nonce,
        }
    }

    pub fn commitment(&self) -> Commitment {
        self.commitment
    }

    /// Step 3 (host), after the peer's nonce arrived: the nonce to reveal
    /// and the code to show. Once only.
    pub fn reveal(
        self,
        host_spki: &[u8],
        peer_spki: &[u8],
        peer_nonce: Nonce,
    ) -> (Nonce, PairingCode) {
        let code = pairing_code(host_spki, peer_spki, &self.nonce, &peer_nonce);
        (self.nonce, code)
    }
}

impl PeerPairing {
    /// Step 2 (peer), on receiving the host's commitment: a fresh nonce to
    /// send back.
    pub fn new(commitment: Commitment) -> PeerPairing {
        PeerPairing {
            nonce: Nonce(rand::random()),
            commitment,
        }
    }

    pub fn nonce(&self) -> Nonce {
        self.nonce
    }

    /// Step 4 (peer), on receiving the host's nonce: checks it against the
    /// commitment and computes the code to show.
    pub fn finish(
        self,
        host_spki: &[u8],
        peer_spki: &[u8],
        host_nonce: Nonce,
    ) -> Result<PairingCode, PairingError> {
        let expected = commit(host_spki, &host_nonce);
        if !bool::from(expected.0.ct_eq(&self.commitment.0)) {
            return Err(PairingError::CommitmentMismatch);
        }
        Ok(pairing_code(host_spki, peer_spki, &host_nonce, &self.nonce))
    }
}

fn length_prefixed(hasher: &mut Sha256, bytes: &[u8]) {
    // SPKIs are a few hundred bytes; a u32 length cannot overflow for any
    // key a certificate parser accepted, and saturating keeps this total.
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    hasher.update(length.to_be_bytes());
    hasher.update(bytes);
}

fn commit(host_spki: &[u8], nonce: &Nonce) -> Commitment {
    let mut hasher = Sha256::new();
    hasher.update(COMMIT_DOMAIN);
    length_prefixed(&mut hasher, host_spki);
    hasher.update(nonce.0);
    Commitment(hasher.finalize().into())
}

/// The code for two keys (DER SPKIs, in either order: they are sorted, so
/// both sides may pass "mine, theirs") and the two nonces (by role).
/// `SHA-256("kefu-pair-code-v1\0" ‖ len‖lower key ‖ len‖higher key ‖ host
/// nonce ‖ peer nonce)`, lengths as u32 big-endian, first 8 bytes as a
/// big-endian integer modulo 10⁶ (the bias of 2⁶⁴ mod 10⁶ is ~10⁻¹³).
pub fn pairing_code(
    spki_a: &[u8],
    spki_b: &[u8],
    host_nonce: &Nonce,
    peer_nonce: &Nonce,
) -> PairingCode {
    let (low, high) = if spki_a <= spki_b {
        (spki_a, spki_b)
    } else {
        (spki_b, spki_a)
    };
    let mut hasher = Sha256::new();
    hasher.update(CODE_DOMAIN);
    length_prefixed(&mut hasher, low);
    length_prefixed(&mut hasher, high);
    hasher.update(host_nonce.0);
    hasher.update(peer_nonce.0);
    let digest: [u8; 32] = hasher.finalize().into();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let value = u64::from_be_bytes(first) % CODE_MODULUS;
    // < 10⁶, so it fits.
    PairingCode(u32::try_from(value).unwrap_or(0))
}

impl PairingCode {
    /// The code as a number below 1,000,000.
    pub fn value(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03} {:03}", self.0 / 1000, self.0 % 1000)
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PairingCode({self})")
    }
}

fn parse_hex32(text: &str) -> Result<[u8; 32], PairingError> {
    if text.len() != 64 {
        return Err(PairingError::Hex);
    }
    let bytes = hex::decode(text).map_err(|_| PairingError::Hex)?;
    bytes.try_into().map_err(|_| PairingError::Hex)
}

macro_rules! hex_value {
    ($name:ident) => {
        impl $name {
            pub fn from_bytes(bytes: [u8; 32]) -> $name {
                $name(bytes)
            }
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
        impl FromStr for $name {
            type Err = PairingError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_hex32(text).map($name)
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
hex_value!(Nonce);
hex_value!(Commitment);

/// `kefu://pair?host=ADDR:PORT&id=DEVICE_ID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairingLink {
    pub host: HostAddress,
    pub device_id: DeviceId,
}

/// Why a text is not a pairing link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingLinkError {
    #[error("a pairing link starts with kefu://pair?")]
    Prefix,
    #[error("a pairing link is longer than {MAX_LINK} characters")]
    TooLong,
    #[error("a pairing link has exactly the parameters host and id, once each")]
    Parameters,
    #[error("the link's host: {0}")]
    Host(#[from] super::address::HostAddressError),
    #[error("the link's id: {0}")]
    DeviceId(#[from] super::device_id::DeviceIdError),
}

const LINK_PREFIX: &str = "kefu://pair?";
/// Longest link accepted; a real one is under 350 characters.
pub const MAX_LINK: usize = 512;

impl fmt::Display for PairingLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither an address nor a device ID has a character that needs
        // percent-encoding in a query (`[`, `]` and `:` are allowed there
        // by browsers and QR readers alike).
        write!(f, "{LINK_PREFIX}host={}&id={}", self.host, self.device_id)
    }
}

impl FromStr for PairingLink {
    type Err = PairingLinkError;

    /// Strict: the scheme and path exactly (case-insensitively for the
    /// scheme, as URLs go), no fragment, no percent-encoding, no other
    /// parameter, no repeats. A link is made by Kefu, so anything else
    /// was made by someone else.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_LINK {
            return Err(PairingLinkError::TooLong);
        }
        let prefix = text
            .get(..LINK_PREFIX.len())
            .ok_or(PairingLinkError::Prefix)?;
        if !prefix.eq_ignore_ascii_case(LINK_PREFIX) {
            return Err(PairingLinkError::Prefix);
        }
        let query = &text[LINK_PREFIX.len()..];
        if query.contains(['#', '%', '+', ' ']) {
            return Err(PairingLinkError::Parameters);
        }
        let mut host = None;
        let mut id = None;
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').ok_or(PairingLinkError::Parameters)?;
            let slot = match key {
                "host" => &mut host,
                "id" => &mut id,
                _ => return Err(PairingLinkError::Parameters),
            };
            if slot.replace(value).is_some() {
                return Err(PairingLinkError::Parameters);
            }
        }
        let (Some(host), Some(id)) = (host, id) else {
            return Err(PairingLinkError::Parameters);
        };
        Ok(PairingLink {
            host: host.parse()?,
            device_id: id.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "GAVW-HOZ3-54VJ-I6D3-LGKS-RMIV-XE4G-JUP2-GD3O-AEK6-675A-IYEH-PHIQ";

    #[test]
    fn known_answer() {
        // Computed independently with Python's hashlib:
        //   d = b"kefu-pair-code-v1\0" + (3).to_bytes(4,"big") + b"abc"
        //       + (3).to_bytes(4,"big") + b"abd" + bytes([1])*32 + bytes([2])*32
        //   int.from_bytes(sha256(d).digest()[:8], "big") % 10**6
        let code = pairing_code(b"abd", b"abc", &Nonce([1; 32]), &Nonce([2; 32]));
        assert_eq!(code.value(), KNOWN_CODE);
        assert_eq!(code.to_string(), KNOWN_TEXT);
        // And the commitment: sha256(b"kefu-pair-commit-v1\0" + (3).to_bytes(4,"big") + b"abc" + bytes([1])*32)
        assert_eq!(
            commit(b"abc", &Nonce([1; 32])).to_string(),
            KNOWN_COMMITMENT
        );
    }
    const KNOWN_CODE: u32 = 725_828;
    const KNOWN_TEXT: &str = "725 828";
    const KNOWN_COMMITMENT: &str =
        "826c384509b432441886b034848294a5842b60ad892c9b0e4ad7d8f308fc6ddf";

    #[test]
    fn shown_with_a_space_and_leading_zeros() {
        assert_eq!(PairingCode(42).to_string(), "000 042");
        assert_eq!(PairingCode(123_456).to_string(), "123 456");
        assert_eq!(PairingCode(999_999).to_string(), "999 999");
    }

    #[test]
    fn the_key_order_does_not_matter_the_inputs_do() {
        let (a, b) = (b"key-a".as_slice(), b"key-b".as_slice());
        let (n1, n2) = (Nonce([1; 32]), Nonce([2; 32]));
        let code = pairing_code(a, b, &n1, &n2);
        assert_eq!(pairing_code(b, a, &n1, &n2), code);
        // Any change is (with these inputs) another code.
        assert_ne!(pairing_code(a, b"key-c", &n1, &n2), code);
        assert_ne!(pairing_code(a, b, &n2, &n1), code);
        assert_ne!(pairing_code(a, b, &n1, &Nonce([3; 32])), code);
        // Lengths are framed: moving a byte between the keys changes it.
        assert_ne!(
            pairing_code(b"key-", b"ab", &n1, &n2),
            pairing_code(b"key-a", b"b", &n1, &n2)
        );
    }

    #[test]
    fn host_and_peer_agree() {
        let (host_key, peer_key) = (b"host-spki".as_slice(), b"peer-spki".as_slice());
        let host = HostPairing::new(host_key);
        let peer = PeerPairing::new(host.commitment());
        let peer_nonce = peer.nonce();
        let (host_nonce, host_code) = host.reveal(host_key, peer_key, peer_nonce);
        let peer_code = peer
            .finish(host_key, peer_key, host_nonce)
            .expect("commitment");
        assert_eq!(host_code, peer_code);
    }

    #[test]
    fn a_nonce_that_does_not_match_the_commitment_is_refused() {
        let (host_key, peer_key) = (b"host-spki".as_slice(), b"peer-spki".as_slice());
        let host = HostPairing::new(host_key);
        let commitment = host.commitment();
        let peer = PeerPairing::new(commitment);
        let (host_nonce, _) = host.reveal(host_key, peer_key, peer.nonce());
        let mut other = *host_nonce.as_bytes();
        other[0] ^= 1;
        assert_eq!(
            PeerPairing::new(commitment).finish(host_key, peer_key, Nonce(other)),
            Err(PairingError::CommitmentMismatch)
        );
        // The right nonce committed for another key: refused too.
        assert_eq!(
            peer.finish(b"mitm-spki", peer_key, host_nonce),
            Err(PairingError::CommitmentMismatch)
        );
    }

    #[test]
    fn a_man_in_the_middle_gets_two_independent_codes() {
        // Not a proof, a sanity check of the construction: with the
        // commitment, the attacker's two codes depend on nonces it cannot
        // pick after seeing the other. Over many attempts they match about
        // once in a million; in 2,000 runs they (almost surely) never do,
        // while without nonces a fixed pair of keys would give the same
        // codes every time.
        let (host_key, peer_key, mitm_key) = (b"H".as_slice(), b"P".as_slice(), b"M".as_slice());
        let mut matches = 0;
        let mut codes = std::collections::HashSet::new();
        for _ in 0..2_000 {
            // Peer ↔ attacker (posing as host).
            let fake_host = HostPairing::new(mitm_key);
            let peer = PeerPairing::new(fake_host.commitment());
            let (n, code_at_peer) = fake_host.reveal(mitm_key, peer_key, peer.nonce());
            assert_eq!(
                peer.finish(mitm_key, peer_key, n).expect("ok"),
                code_at_peer
            );
            // Attacker (posing as peer) ↔ host.
            let host = HostPairing::new(host_key);
            let fake_peer = PeerPairing::new(host.commitment());
            let (_, code_at_host) = host.reveal(host_key, mitm_key, fake_peer.nonce());
            matches += usize::from(code_at_peer == code_at_host);
            codes.insert(code_at_host.value());
        }
        assert_eq!(matches, 0);
        assert!(codes.len() > 1_990, "codes spread: {}", codes.len());
    }

    #[test]
    fn nonces_and_commitments_are_64_hex_digits() {
        let nonce = Nonce([0xab; 32]);
        let text = nonce.to_string();
        assert_eq!(text, "ab".repeat(32));
        assert_eq!(text.parse::<Nonce>(), Ok(nonce));
        assert_eq!(text.to_uppercase().parse::<Nonce>(), Ok(nonce));
        assert_eq!(text[..62].parse::<Nonce>(), Err(PairingError::Hex));
        assert_eq!(format!("{text}00").parse::<Nonce>(), Err(PairingError::Hex));
        assert_eq!(
            "zz".repeat(32).parse::<Commitment>(),
            Err(PairingError::Hex)
        );
        let json = serde_json::to_string(&nonce).expect("json");
        assert_eq!(serde_json::from_str::<Nonce>(&json).expect("back"), nonce);
    }

    #[test]
    fn link_round_trip() {
        let link = PairingLink {
            host: "192.168.1.20:5339".parse().expect("host"),
            device_id: ID.parse().expect("id"),
        };
        let text = link.to_string();
        assert_eq!(text, format!("kefu://pair?host=192.168.1.20:5339&id={ID}"));
        assert_eq!(text.parse::<PairingLink>(), Ok(link.clone()));
        // Parameter order and letter case of the ID do not matter.
        let swapped = format!(
            "kefu://pair?id={}&host=192.168.1.20:5339",
            ID.to_lowercase()
        );
        assert_eq!(swapped.parse::<PairingLink>(), Ok(link.clone()));
        let v6 = PairingLink {
            host: "[fe80::1]:5339".parse().expect("v6"),
            device_id: link.device_id,
        };
        assert_eq!(v6.to_string().parse::<PairingLink>(), Ok(v6));
        assert_eq!(
            format!("KEFU://PAIR?host=192.168.1.20:5339&id={ID}").parse::<PairingLink>(),
            Ok(link)
        );
    }

    #[test]
    fn link_parsing_is_strict() {
        use PairingLinkError::*;
        let host = "host=192.168.1.20:5339";
        let id = format!("id={ID}");
        let cases: Vec<(String, PairingLinkError)> = vec![
            (String::new(), Prefix),
            (format!("https://pair?{host}&{id}"), Prefix),
            (format!("kefu://pairing?{host}&{id}"), Prefix),
            (format!("kefu://pair/?{host}&{id}"), Prefix),
            (format!("kefu:pair?{host}&{id}"), Prefix),
            (format!("kefu://pair?{host}"), Parameters),
            (format!("kefu://pair?{id}"), Parameters),
            (format!("kefu://pair?{host}&{id}&{id}"), Parameters),
            (format!("kefu://pair?{host}&{host}&{id}"), Parameters),
            (format!("kefu://pair?{host}&{id}&x=1"), Parameters),
            (format!("kefu://pair?{host}&{id}&"), Parameters),
            (format!("kefu://pair?{host}&{id}#frag"), Parameters),
            (
                format!("kefu://pair?host=192.168.1.20%3A5339&{id}"),
                Parameters,
            ),
            (
                format!("kefu://pair?Host=192.168.1.20:5339&{id}"),
                Parameters,
            ),
            (format!("kefu://pair?{host}&id"), Parameters),
            (
                format!("kefu://pair?host=192.168.1.20&{id}"),
                Host(super::super::address::HostAddressError::Shape),
            ),
            (
                format!("kefu://pair?{host}&id=AAAA"),
                DeviceId(super::super::device_id::DeviceIdError::Length),
            ),
            (
                format!("kefu://pair?{host}&{id}&pad={}", "x".repeat(600)),
                TooLong,
            ),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<PairingLink>(), Err(error), "{text:?}");
        }
    }
}
