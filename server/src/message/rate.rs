//! How fast one visitor may send messages: one token bucket per visitor
//! (governor's GCRA, keyed by `VisitorId`), shared by REST and WebSocket,
//! so that one visitor token cannot flood a shop's agents.
//!
//! The defaults (`limits.visitor_messages_per_second` 5, burst
//! `limits.visitor_message_burst` 20) are far above what a person types (a
//! fast typist sends a short line every second or two) and let a client
//! flush a backlog of 20 queued messages after a reconnect at once; a script
//! is held to 5 a second, 300 a minute. Agents are not limited here: they
//! may bulk-send (canned replies, tools), and their tokens are the shop's.
//!
//! A refused send stores nothing and is answered 429 `rate_limited` with
//! `Retry-After` (REST) or an `error` frame with that code (WebSocket, the
//! connection stays open). The map is bounded: [`TRACKED_MAX`] visitors;
//! housekeeping drops visitors whose bucket is full again, and a map that is
//! still full after that is cleared (every visitor then gets a fresh burst,
//! which only happens if more than [`TRACKED_MAX`] visitors all sent within
//! the last few seconds).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::RwLock;

use crate::config::Limits;
use crate::error::ApiError;
use crate::ids::VisitorId;

/// Visitors whose buckets are kept at most (≈ 50 bytes each).
pub const TRACKED_MAX: usize = 100_000;

/// The bound is checked on every this many sends (counting a DashMap's
/// entries visits every shard), so the map may pass it by this much.
const CHECK_EVERY: u64 = 1_024;

pub struct VisitorSendRate {
    /// The quota, and the limiter behind a lock only so that it can be
    /// replaced by an empty one (governor's map has no `clear`); checks
    /// take the read side, which is one atomic operation.
    limiter: Option<(Quota, RwLock<DefaultKeyedRateLimiter<VisitorId>>)>,
    sends: AtomicU64,
}

impl std::fmt::Debug for VisitorSendRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisitorSendRate")
            .field("enabled", &self.limiter.is_some())
            .field("tracked", &self.tracked())
            .finish()
    }
}

impl VisitorSendRate {
    pub fn new(limits: &Limits) -> VisitorSendRate {
        let limiter = NonZeroU32::new(limits.visitor_messages_per_second).map(|rate| {
            let burst = NonZeroU32::new(limits.visitor_message_burst).unwrap_or(rate);
            let quota = Quota::per_second(rate).allow_burst(burst);
            (quota, RwLock::new(RateLimiter::keyed(quota)))
        });
        VisitorSendRate {
            limiter,
            sends: AtomicU64::new(0),
        }
    }

    /// Spends one message of this visitor's quota, or says how long to wait.
    pub fn check(&self, visitor: VisitorId) -> Result<(), ApiError> {
        let Some((quota, limiter)) = &self.limiter else {
            return Ok(());
        };
        if self.sends.fetch_add(1, Ordering::Relaxed) % CHECK_EVERY == CHECK_EVERY - 1 {
            bound(*quota, limiter);
        }
        limiter.read().check_key(&visitor).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::MessageRateLimited(wait.max(Duration::from_millis(1)))
        })
    }

    /// Forgets visitors whose bucket is full again (they would start from
    /// a full bucket anyway). Called every minute.
    pub fn housekeeping(&self) {
        if let Some((_, limiter)) = &self.limiter {
            let limiter = limiter.read();
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Visitors tracked now (for tests and diagnostics).
    pub fn tracked(&self) -> usize {
        self.limiter
            .as_ref()
            .map_or(0, |(_, limiter)| limiter.read().len())
    }
}

/// Keeps the map under [`TRACKED_MAX`]: drops full buckets, and replaces a
/// map that is still full with an empty one.
fn bound(quota: Quota, limiter: &RwLock<DefaultKeyedRateLimiter<VisitorId>>) {
    {
        let limiter = limiter.read();
        if limiter.len() < TRACKED_MAX {
            return;
        }
        limiter.retain_recent();
        if limiter.len() < TRACKED_MAX {
            limiter.shrink_to_fit();
            return;
        }
    }
    tracing::warn!(
        max = TRACKED_MAX,
        "every tracked visitor sent within seconds: visitor message rates reset"
    );
    *limiter.write() = RateLimiter::keyed(quota);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, burst: u32) -> Limits {
        Limits {
            visitor_messages_per_second: rate,
            visitor_message_burst: burst,
            ..Limits::default()
        }
    }

    #[test]
    fn a_burst_then_the_rate_per_visitor() {
        let rate = VisitorSendRate::new(&limits(1, 3));
        let (amy, bob) = (VisitorId::new(), VisitorId::new());
        for _ in 0..3 {
            assert!(rate.check(amy).is_ok());
        }
        match rate.check(amy) {
            Err(ApiError::MessageRateLimited(wait)) => {
                assert!(
                    wait > Duration::ZERO && wait <= Duration::from_secs(1),
                    "{wait:?}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Another visitor has a bucket of its own.
        assert!(rate.check(bob).is_ok());
        assert_eq!(rate.tracked(), 2);
    }

    #[test]
    fn zero_is_unlimited() {
        let rate = VisitorSendRate::new(&limits(0, 0));
        let amy = VisitorId::new();
        for _ in 0..1_000 {
            assert!(rate.check(amy).is_ok());
        }
        assert_eq!(rate.tracked(), 0);
    }

    #[test]
    fn the_map_stays_bounded() {
        let rate = VisitorSendRate::new(&limits(1, 1));
        // Every visitor spends its only token: none is back to full, so
        // housekeeping cannot drop them and the bound clears the map.
        for _ in 0..(TRACKED_MAX + 2 * CHECK_EVERY as usize) {
            let _ = rate.check(VisitorId::new());
        }
        assert!(
            rate.tracked() < TRACKED_MAX + CHECK_EVERY as usize,
            "{}",
            rate.tracked()
        );
    }
}
