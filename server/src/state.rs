//! The shared state every handler gets: stores, hub, caches, limits.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::conversations::{ConversationCache, Derived};
use crate::error::ApiError;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::store::messages::MessageLog;

pub type AppState = Arc<Kefu>;

pub struct Kefu {
    pub config: Config,
    pub db: SqlitePool,
    pub log: MessageLog,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub conversations: ConversationCache,
    pub derived: Arc<Derived>,
    /// Conversation starts acked and not yet committed to SQLite (see
    /// `conversations::start`).
    pub starts: Arc<crate::conversations::start::Starts>,
    /// Serializes routing passes (see `routing`).
    pub routing: crate::routing::Routing,
    pub limiters: Limiters,
    /// Cancelled to stop the server: listeners stop, sockets close.
    pub shutdown: CancellationToken,
    pub connection_slots: Arc<Semaphore>,
    /// Every WebSocket task (the upgrade and hello, then the served loop
    /// and its closing linger): shutdown waits for all of them before it
    /// closes the message log (`Running::shutdown`).
    pub websocket_tasks: TaskTracker,
    /// Tokens, agents, visitors and apps in memory, so that a `hello`
    /// touches no SQLite (see `auth::cache` for its invalidation rules).
    pub auth_cache: crate::auth::cache::AuthCache,
    /// Verified against when a username does not exist, so that a login
    /// takes as long either way.
    pub dummy_password_hash: tokio::sync::OnceCell<String>,
    /// How fast each visitor may send messages (REST and WebSocket alike).
    pub visitor_send_rate: crate::message::rate::VisitorSendRate,
    /// The operator token and the backup in progress (`ops`).
    pub ops: crate::ops::Ops,
    /// The LAN host, when `lan.bind` is set (see `lan::host`).
    pub lan: Option<Arc<crate::lan::host::LanHost>>,
    /// Kefu Assist: the FAQ bot's settings, indexes and queue (`assist`).
    pub assist: Arc<crate::assist::Assist>,
    /// The search indexer's backlog, for `/metrics` (see `search`).
    pub indexer: Arc<crate::search::Indexer>,
}

impl Kefu {
    pub async fn dummy_password_hash(&self) -> String {
        self.dummy_password_hash
            .get_or_init(|| async {
                crate::auth::hash_password(crate::auth::new_token())
                    .await
                    .unwrap_or_default()
            })
            .await
            .clone()
    }
}

/// Rate limits, keyed by the client IP (`http::ClientIp`: the TCP peer,
/// or what a trusted proxy says) or by account (governor's GCRA).
///
/// Password attempts (logins and `current_password` checks share them):
/// every well-formed attempt spends one unit of the client IP's budget and
/// one of the account's, right password or wrong, and is spent *before*
/// the password is verified. So concurrent guesses cannot overrun a budget,
/// and once either budget is spent every attempt is refused (429) without
/// looking at the password: a 429 tells nothing about it.
pub struct Limiters {
    password_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    password_per_account: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    visitor_sessions: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Limiters {
    pub fn new(config: &Config) -> Limiters {
        let per_minute =
            |n: u32| NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        let per_hour = |n: u32| NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_hour(n)));
        Limiters {
            password_per_ip: per_minute(config.limits.login_per_minute),
            password_per_account: per_hour(config.limits.password_attempts_per_account_per_hour),
            visitor_sessions: per_minute(config.limits.visitor_sessions_per_minute),
        }
    }

    /// Before verifying a password for `username` (matched
    /// case-insensitively, existing or not, so that a 429 does not tell
    /// which names exist): spends an attempt of the IP's and of the
    /// account's budget, or refuses. An IP out of budget spends nothing of
    /// the account's, so one client cannot lock an account out faster
    /// than its own budget allows.
    pub fn password_attempt(&self, ip: IpAddr, username: &str) -> Result<(), ApiError> {
        check(self.password_per_ip.as_ref(), &ip)?;
        let account: [u8; 32] = Sha256::digest(username.to_ascii_lowercase().as_bytes()).into();
        check(self.password_per_account.as_ref(), &account)
    }

    /// Loopback is exempt: a load tool on the same box. The IP is the
    /// resolved client IP, so behind a trusted proxy on loopback the real
    /// clients are still counted.
    pub fn check_visitor_session(&self, ip: IpAddr) -> Result<(), ApiError> {
        if ip.is_loopback() {
            return Ok(());
        }
        check(self.visitor_sessions.as_ref(), &ip)
    }

    /// Forgets keys that are back to full quota, so the maps stay bounded.
    pub fn housekeeping(&self) {
        if let Some(limiter) = &self.password_per_account {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in [&self.password_per_ip, &self.visitor_sessions]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn check<K>(limiter: Option<&DefaultKeyedRateLimiter<K>>, key: &K) -> Result<(), ApiError>
where
    K: std::hash::Hash + Eq + Clone,
{
    match limiter {
        Some(limiter) if limiter.check_key(key).is_err() => Err(ApiError::RateLimited),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(login: u32, sessions: u32) -> Config {
        let mut config = Config::default();
        config.limits.login_per_minute = login;
        config.limits.visitor_sessions_per_minute = sessions;
        config
    }

    #[test]
    fn visitor_sessions_are_limited_per_ip_but_not_for_loopback() {
        let limiters = Limiters::new(&config(5, 2));
        let remote: IpAddr = "203.0.113.9".parse().expect("ip");
        let other: IpAddr = "203.0.113.10".parse().expect("ip");
        assert!(limiters.check_visitor_session(remote).is_ok());
        assert!(limiters.check_visitor_session(remote).is_ok());
        assert!(matches!(
            limiters.check_visitor_session(remote),
            Err(ApiError::RateLimited)
        ));
        assert!(limiters.check_visitor_session(other).is_ok());
        let loopback: IpAddr = "127.0.0.7".parse().expect("ip");
        for _ in 0..10 {
            assert!(limiters.check_visitor_session(loopback).is_ok());
        }
        let unlimited = Limiters::new(&config(5, 0));
        for _ in 0..10 {
            assert!(unlimited.check_visitor_session(remote).is_ok());
        }
    }

    #[test]
    fn every_password_attempt_spends_the_ip_and_the_account_budget() {
        let mut config = config(3, 0);
        config.limits.password_attempts_per_account_per_hour = 5;
        let limiters = Limiters::new(&config);
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        for _ in 0..3 {
            assert!(limiters.password_attempt(ip, "amy").is_ok());
        }
        assert!(matches!(
            limiters.password_attempt(ip, "someone-else"),
            Err(ApiError::RateLimited)
        ));
        // The account's budget is shared by every IP, case-insensitively.
        let other: IpAddr = "198.51.100.2".parse().expect("ip");
        assert!(limiters.password_attempt(other, "AMY").is_ok());
        assert!(limiters.password_attempt(other, "Amy").is_ok());
        let third: IpAddr = "198.51.100.3".parse().expect("ip");
        assert!(matches!(
            limiters.password_attempt(third, "amy"),
            Err(ApiError::RateLimited)
        ));
        assert!(limiters.password_attempt(third, "bob").is_ok());
        let mut unlimited = config.clone();
        unlimited.limits.login_per_minute = 0;
        unlimited.limits.password_attempts_per_account_per_hour = 0;
        let unlimited = Limiters::new(&unlimited);
        for _ in 0..50 {
            assert!(unlimited.password_attempt(ip, "amy").is_ok());
        }
    }
}
