//! What identifies a session outside SQLite: a token's hash, the tag the
//! hub keeps per connection, and what a revocation names. A leaf module (no
//! state, no SQL), so that the hub can hold tags without depending on the
//! sessions' operations (`auth::sessions`).

use sha2::{Digest, Sha256};

use crate::ids::AgentId;

/// A token as stored: its SHA-256 (a token is never stored or logged).
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Which token a WebSocket connection authenticated with: the first 128
/// bits of the token's SHA-256 (the token itself has 128 random bits, so
/// this is as unique as the token). Kept per connection by the hub, so
/// that a revocation finds the connections to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenTag([u8; 16]);

impl TokenTag {
    pub fn of(token: &str) -> TokenTag {
        TokenTag::of_hash(&token_hash(token))
    }

    pub(super) fn of_hash(hash: &[u8]) -> TokenTag {
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&hash[..16]);
        TokenTag(tag)
    }
}

/// What was revoked: which connections the hub closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// One token of an agent (logout).
    AgentToken { agent: AgentId, token: TokenTag },
    /// Every token of an agent but `except` (a password change keeps the
    /// session that made it; an admin's reset and a deactivation keep none).
    AgentTokens {
        agent: AgentId,
        except: Option<TokenTag>,
    },
}
