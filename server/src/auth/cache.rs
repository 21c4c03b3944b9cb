//! What a `hello` (and every authenticated request) needs, kept in memory:
//! token hash → owner, agent id → [`Agent`], visitor id → its principal,
//! app id → [`App`] (and `app_key` → app id). A hello that hits touches no
//! SQLite; a miss reads SQLite as before and fills the cache. A new
//! visitor's session puts its token in at once, for the hello that follows.
//!
//! Bounded: each map is a `quick_cache` (S3-FIFO eviction) of at most
//! `limits.auth_cache_entries` items (apps and agents: [`SMALL_MAP_ENTRIES`]);
//! an evicted entry is read from SQLite again on its next use. Misses are
//! never cached, so a token or an app created after a miss is seen at once.
//!
//! Correctness: every write to what is cached goes through this process
//! (the CLI only *creates* agents) and calls the matching invalidation
//! **after** its transaction committed (revocations through
//! [`super::sessions`]): [`AuthCache::token_hash_revoked`],
//! [`AuthCache::agent_signed_out`] (every token of an agent: password
//! change, deactivation), [`AuthCache::agent_changed`] (role, name, status,
//! capacity), [`AuthCache::visitor_changed`], [`AuthCache::app_changed`].
//! A fill that raced with an invalidation (it read SQLite before the commit
//! and inserts after the invalidation) must not survive: every invalidation
//! bumps `generation` *before* removing, and a fill that sees the generation
//! moved since before its read removes what it inserted. So once an
//! invalidation returned, no lookup can return the old value.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::Cache;
use sqlx::SqlitePool;

use crate::agents::Agent;
use crate::apps::App;
use crate::auth::{Principal, VisitorPrincipal};
use crate::error::ApiError;
use crate::ids::{AgentId, AppId, ConversationId, VisitorId};

/// Bound of the agents and apps maps: a shop has a handful of each.
pub const SMALL_MAP_ENTRIES: usize = 1_024;

/// SHA-256 of a token.
type TokenHash = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenOwner {
    Agent(AgentId),
    Visitor(VisitorId),
}

pub struct AuthCache {
    /// Moved by every invalidation, before it removes anything.
    generation: AtomicU64,
    tokens: Cache<TokenHash, TokenOwner>,
    agents: Cache<AgentId, Agent>,
    visitors: Cache<VisitorId, VisitorPrincipal>,
    apps: Cache<AppId, Arc<App>>,
    /// `app_key` never changes and apps are never deleted: a pure index.
    app_keys: Cache<String, AppId>,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCache")
            .field("tokens", &self.tokens.len())
            .field("agents", &self.agents.len())
            .field("visitors", &self.visitors.len())
            .field("apps", &self.apps.len())
            .finish()
    }
}

impl AuthCache {
    /// `entries`: the bound of the tokens and visitors maps (at least 1).
    pub fn new(entries: usize) -> AuthCache {
        let entries = entries.max(1);
        AuthCache {
            generation: AtomicU64::new(0),
            tokens: Cache::new(entries),
            agents: Cache::new(SMALL_MAP_ENTRIES),
            visitors: Cache::new(entries),
            apps: Cache::new(SMALL_MAP_ENTRIES),
            app_keys: Cache::new(SMALL_MAP_ENTRIES),
        }
    }

    /// Looks a token up; `None` for unknown or revoked tokens.
    pub async fn resolve(
        &self,
        db: &SqlitePool,
        token: &str,
    ) -> Result<Option<Principal>, ApiError> {
        if token.is_empty() || token.len() > 256 {
            return Ok(None);
        }
        let hash = token_hash(token);
        let owner = match self.tokens.get(&hash) {
            Some(owner) => owner,
            None => {
                let seen = self.generation();
                let row: Option<(Option<AgentId>, Option<VisitorId>)> = sqlx::query_as(
                    "SELECT agent_id, visitor_id FROM tokens WHERE token_hash = ? AND revoked_at IS NULL",
                )
                .bind(&hash[..])
                .fetch_optional(db)
                .await?;
                let owner = match row {
                    Some((Some(agent), _)) => TokenOwner::Agent(agent),
                    Some((None, Some(visitor))) => TokenOwner::Visitor(visitor),
                    _ => return Ok(None),
                };
                self.fill(&self.tokens, hash, owner, seen);
                owner
            }
        };
        match owner {
            TokenOwner::Agent(id) => Ok(self.agent(db, id).await?.map(Principal::Agent)),
            TokenOwner::Visitor(id) => Ok(self.visitor(db, id).await?.map(Principal::Visitor)),
        }
    }

    async fn agent(&self, db: &SqlitePool, id: AgentId) -> Result<Option<Agent>, ApiError> {
        if let Some(agent) = self.agents.get(&id) {
            return Ok(Some(agent));
        }
        let seen = self.generation();
        let Some(agent) = crate::agents::find(db, id).await? else {
            return Ok(None);
        };
        self.fill(&self.agents, id, agent.clone(), seen);
        Ok(Some(agent))
    }

    async fn visitor(
        &self,
        db: &SqlitePool,
        visitor_id: VisitorId,
    ) -> Result<Option<VisitorPrincipal>, ApiError> {
        if let Some(visitor) = self.visitors.get(&visitor_id) {
            return Ok(Some(visitor));
        }
        let seen = self.generation();
        let row: Option<(AppId, ConversationId, Option<String>)> = sqlx::query_as(
            "SELECT v.app_id, c.id, v.name FROM visitors v JOIN conversations c ON c.visitor_id = v.id WHERE v.id = ?",
        )
        .bind(visitor_id)
        .fetch_optional(db)
        .await?;
        let Some((app_id, conversation_id, name)) = row else {
            return Ok(None);
        };
        let visitor = VisitorPrincipal {
            visitor_id,
            app_id,
            conversation_id,
            name,
        };
        self.fill(&self.visitors, visitor_id, visitor.clone(), seen);
        Ok(Some(visitor))
    }

    /// The app with this id, as `apps::find` would return it.
    pub async fn app(&self, db: &SqlitePool, id: AppId) -> Result<Option<Arc<App>>, ApiError> {
        if let Some(app) = self.apps.get(&id) {
            return Ok(Some(app));
        }
        let seen = self.generation();
        let Some(app) = crate::apps::find(db, id).await? else {
            return Ok(None);
        };
        let app = Arc::new(app);
        self.fill(&self.apps, id, Arc::clone(&app), seen);
        Ok(Some(app))
    }

    /// The app with this `app_key`, as `apps::find_by_key` would return it.
    pub async fn app_by_key(
        &self,
        db: &SqlitePool,
        app_key: &str,
    ) -> Result<Option<Arc<App>>, ApiError> {
        if let Some(id) = self.app_keys.get(app_key) {
            return self.app(db, id).await;
        }
        let seen = self.generation();
        let Some(app) = crate::apps::find_by_key(db, app_key).await? else {
            return Ok(None);
        };
        let app = Arc::new(app);
        self.app_keys.insert(app.app_key.clone(), app.id);
        self.fill(&self.apps, app.id, Arc::clone(&app), seen);
        Ok(Some(app))
    }

    /// Tokens held now (for tests and diagnostics).
    pub fn tokens_len(&self) -> usize {
        self.tokens.len()
    }

    /// A visitor and its first token were just committed, read at
    /// generation `seen` (taken before the transaction began): the hello
    /// that usually follows finds them here.
    pub fn visitor_created(&self, token: &str, visitor: VisitorPrincipal, seen: u64) {
        let id = visitor.visitor_id;
        self.fill(
            &self.tokens,
            token_hash(token),
            TokenOwner::Visitor(id),
            seen,
        );
        self.fill(&self.visitors, id, visitor, seen);
    }

    /// One token, by its SHA-256, was revoked (logout).
    pub fn token_hash_revoked(&self, hash: &[u8]) {
        self.bump();
        if let Ok(hash) = TokenHash::try_from(hash) {
            self.tokens.remove(&hash);
        }
    }

    /// Every token of this agent was revoked, perhaps but one (password
    /// change, deactivation); the agent's row changed too. Walks the tokens
    /// map once: rare, and bounded by the map's size.
    pub fn agent_signed_out(&self, id: AgentId) {
        self.bump();
        self.tokens
            .retain(|_, owner| *owner != TokenOwner::Agent(id));
        self.agents.remove(&id);
    }

    /// The agent's row changed (name, role, status, capacity, activation).
    pub fn agent_changed(&self, id: AgentId) {
        self.bump();
        self.agents.remove(&id);
    }

    /// The visitor's row changed (name).
    pub fn visitor_changed(&self, id: VisitorId) {
        self.bump();
        self.visitors.remove(&id);
    }

    /// The app's row changed (origins, identity verification, secret, …).
    pub fn app_changed(&self, id: AppId) {
        self.bump();
        self.apps.remove(&id);
    }

    /// Read before a database read whose result may be cached.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Inserts what a read made at generation `seen` found, unless an
    /// invalidation ran meanwhile (then the value may be stale: drop it).
    fn fill<K: Eq + Hash + Clone, V: Clone>(
        &self,
        cache: &Cache<K, V>,
        key: K,
        value: V,
        seen: u64,
    ) {
        if self.generation() != seen {
            return;
        }
        cache.insert(key.clone(), value);
        if self.generation() != seen {
            cache.remove(&key);
        }
    }
}

fn token_hash(token: &str) -> TokenHash {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded() {
        let cache = AuthCache::new(100);
        for i in 0..10_000u32 {
            let mut hash = [0u8; 32];
            hash[..4].copy_from_slice(&i.to_be_bytes());
            cache.fill(&cache.tokens, hash, TokenOwner::Agent(AgentId::new()), 0);
        }
        assert!(cache.tokens.len() <= 100, "{}", cache.tokens.len());
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_dropped() {
        let cache = AuthCache::new(100);
        let agent = AgentId::new();
        let hash = token_hash("kf_a");
        let seen = cache.generation();
        // The read happened before a revocation committed…
        cache.token_hash_revoked(&hash);
        // …and its fill comes after the invalidation: not kept.
        cache.fill(&cache.tokens, hash, TokenOwner::Agent(agent), seen);
        assert!(cache.tokens.get(&hash).is_none());
        // A fill after the invalidation, read after it, is kept.
        let seen = cache.generation();
        cache.fill(&cache.tokens, hash, TokenOwner::Agent(agent), seen);
        assert_eq!(cache.tokens.get(&hash), Some(TokenOwner::Agent(agent)));
    }

    #[test]
    fn signing_an_agent_out_drops_all_its_tokens() {
        let cache = AuthCache::new(100);
        let (amy, bob) = (AgentId::new(), AgentId::new());
        let seen = cache.generation();
        for (token, owner) in [("kf_1", amy), ("kf_2", amy), ("kf_3", bob)] {
            cache.fill(
                &cache.tokens,
                token_hash(token),
                TokenOwner::Agent(owner),
                seen,
            );
        }
        cache.agent_signed_out(amy);
        assert!(cache.tokens.get(&token_hash("kf_1")).is_none());
        assert!(cache.tokens.get(&token_hash("kf_2")).is_none());
        assert_eq!(
            cache.tokens.get(&token_hash("kf_3")),
            Some(TokenOwner::Agent(bob))
        );
    }
}
