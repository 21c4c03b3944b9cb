//! The shared state every handler gets: stores, hub, caches, limits.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sqlx::SqlitePool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

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
    /// Serializes routing passes (see `routing`).
    pub routing: crate::routing::Routing,
    pub limiters: Limiters,
    /// Cancelled to stop the server: listeners stop, sockets close.
    pub shutdown: CancellationToken,
    pub connection_slots: Arc<Semaphore>,
    /// Tokens, agents, visitors and apps in memory, so that a `hello`
    /// touches no SQLite (see `auth::cache` for its invalidation rules).
    pub auth_cache: crate::auth::cache::AuthCache,
    /// Verified against when a username does not exist, so that a login
    /// takes as long either way.
    pub dummy_password_hash: tokio::sync::OnceCell<String>,
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

/// Per-client-IP rate limits (governor's GCRA, keyed by IP).
///
/// Logins: only failed attempts spend the quota, so a shop whose agents
/// share one address can sign in all day; once an address has spent it,
/// every attempt from it is refused (429) until the quota refills, so a
/// guesser learns nothing more, right password or not.
pub struct Limiters {
    login_failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    login_blocked: parking_lot::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>,
    visitor_sessions: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Limiters {
    pub fn new(config: &Config) -> Limiters {
        let keyed = |per_minute: u32| {
            NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
        };
        Limiters {
            login_failures: keyed(config.limits.login_per_minute),
            login_blocked: Default::default(),
            visitor_sessions: keyed(config.limits.visitor_sessions_per_minute),
        }
    }

    /// Before verifying a password: refuses an address that failed too often.
    pub fn check_login(&self, ip: IpAddr) -> Result<(), ApiError> {
        let blocked = self
            .login_blocked
            .lock()
            .get(&ip)
            .is_some_and(|until| *until > std::time::Instant::now());
        if blocked {
            Err(ApiError::RateLimited)
        } else {
            Ok(())
        }
    }

    /// After a failed login: spends quota; an address out of quota is
    /// blocked until it refills. Returns the error to answer with.
    pub fn login_failed(&self, ip: IpAddr) -> ApiError {
        let Some(limiter) = &self.login_failures else {
            return ApiError::Unauthorized("wrong username or password".into());
        };
        match limiter.check_key(&ip) {
            Ok(()) => ApiError::Unauthorized("wrong username or password".into()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                self.login_blocked
                    .lock()
                    .insert(ip, std::time::Instant::now() + wait);
                ApiError::RateLimited
            }
        }
    }

    /// Loopback is exempt: a reverse proxy or a load tool on the same box.
    pub fn check_visitor_session(&self, ip: IpAddr) -> Result<(), ApiError> {
        if ip.is_loopback() {
            return Ok(());
        }
        check(self.visitor_sessions.as_ref(), ip)
    }

    /// Forgets keys that are back to full quota, so the maps stay bounded.
    pub fn housekeeping(&self) {
        let now = std::time::Instant::now();
        self.login_blocked.lock().retain(|_, until| *until > now);
        for limiter in [&self.login_failures, &self.visitor_sessions]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn check(limiter: Option<&DefaultKeyedRateLimiter<IpAddr>>, ip: IpAddr) -> Result<(), ApiError> {
    match limiter {
        Some(limiter) if limiter.check_key(&ip).is_err() => Err(ApiError::RateLimited),
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
    fn only_failed_logins_spend_the_quota_and_then_all_are_refused() {
        let limiters = Limiters::new(&config(2, 0));
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        for _ in 0..10 {
            assert!(limiters.check_login(ip).is_ok(), "successes spend nothing");
        }
        assert!(matches!(
            limiters.login_failed(ip),
            ApiError::Unauthorized(_)
        ));
        assert!(matches!(
            limiters.login_failed(ip),
            ApiError::Unauthorized(_)
        ));
        assert!(matches!(limiters.login_failed(ip), ApiError::RateLimited));
        assert!(matches!(
            limiters.check_login(ip),
            Err(ApiError::RateLimited)
        ));
        let other: IpAddr = "198.51.100.2".parse().expect("ip");
        assert!(limiters.check_login(other).is_ok());
    }
}
