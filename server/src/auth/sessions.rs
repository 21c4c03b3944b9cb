//! Ending sessions: the one place a token is revoked.
//!
//! A revocation has three effects, in this order: the `tokens` rows are
//! marked revoked (in the caller's transaction when it has one), then,
//! once that committed, the in-memory cache forgets them
//! ([`AuthCache`](super::cache::AuthCache)) and the hub closes every
//! WebSocket that authenticated with them (close 4401). Forgetting the
//! last step is how a logged-out socket used to keep streaming, so every
//! revocation goes through [`Revocation::apply`]; a tidy test
//! (tests/tests/it/tidy.rs) fails if SQL that revokes or deletes tokens
//! appears anywhere else.
//!
//! A hello racing a revocation cannot slip through: the hello reads the
//! cache's generation before resolving its token and, once registered in
//! the hub, resolves it again if the generation moved (`ws`). Either
//! the hub saw the new connection when it closed the token's sockets, or
//! the connection sees the revocation when it looks again.

use sqlx::SqliteConnection;

use crate::error::ApiError;
use crate::ids::AgentId;
use crate::state::Kefu;
use crate::time::now_ms;

pub use super::tag::{Revoked, TokenTag};

/// A revocation written (perhaps in a transaction not yet committed), to
/// be applied to the cache and the hub once it is.
#[derive(Debug)]
#[must_use = "apply it once the transaction commits, or the sessions stay open"]
pub struct Revocation {
    revoked: Revoked,
    /// The SHA-256 of the one revoked token, for the cache.
    token_hash: Option<Vec<u8>>,
}

impl Revocation {
    /// Revokes one agent token (logout), at once, and applies it.
    pub async fn agent_token(state: &Kefu, agent: AgentId, token: &str) -> Result<(), ApiError> {
        let hash = super::token_hash(token);
        sqlx::query(
            "UPDATE tokens SET revoked_at = ? WHERE token_hash = ? AND agent_id = ? AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(&hash)
        .bind(agent)
        .execute(&state.db)
        .await?;
        Revocation {
            revoked: Revoked::AgentToken {
                agent,
                token: TokenTag::of_hash(&hash),
            },
            token_hash: Some(hash),
        }
        .apply(state);
        Ok(())
    }

    /// Revokes every token of `agent` but `except` (the caller's own, on a
    /// password change), in the caller's transaction: apply the result
    /// after the commit.
    pub async fn agent_tokens(
        tx: &mut SqliteConnection,
        agent: AgentId,
        except: Option<&str>,
    ) -> Result<Revocation, ApiError> {
        let keep = except.map(super::token_hash).unwrap_or_default();
        sqlx::query(
            "UPDATE tokens SET revoked_at = ? WHERE agent_id = ? AND revoked_at IS NULL AND token_hash != ?",
        )
        .bind(now_ms())
        .bind(agent)
        .bind(keep)
        .execute(tx)
        .await?;
        Ok(Revocation {
            revoked: Revoked::AgentTokens {
                agent,
                except: except.map(TokenTag::of),
            },
            token_hash: None,
        })
    }

    /// After the revocation committed: the cache forgets the tokens (so no
    /// later hello or request is let in), then their sockets are closed.
    pub fn apply(self, state: &Kefu) {
        match self.revoked {
            Revoked::AgentToken { .. } => {
                if let Some(hash) = &self.token_hash {
                    state.auth_cache.token_hash_revoked(hash);
                }
            }
            Revoked::AgentTokens { agent, .. } => state.auth_cache.agent_signed_out(agent),
        }
        let closed = state.hub.end_sessions(self.revoked);
        tracing::debug!(revoked = ?self.revoked, closed, "sessions ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_names_one_token() {
        let a = crate::auth::new_token();
        let b = crate::auth::new_token();
        assert_eq!(TokenTag::of(&a), TokenTag::of(&a));
        assert_ne!(TokenTag::of(&a), TokenTag::of(&b));
        assert_eq!(
            TokenTag::of(&a),
            TokenTag::of_hash(&crate::auth::token_hash(&a))
        );
    }
}
