//! The optional **synchronous standby** (`lan.min_standby_acks = 1`;
//! docs/LAN.md, "The synchronous standby"): a client's send is
//! acknowledged only once a standby has it durably, so that a host killed
//! at any moment loses no acknowledged message to a `lan takeover`.
//!
//! - **What the host knows.** A standby asks for the log's tail `after=N`
//!   only once it has applied *and fsynced* everything through `N`
//!   (`lan::standby`), so each tail request tells the host a durable
//!   position. [`SyncStandby::standby_at`] keeps the highest one.
//! - **The wait.** The send path (`conversations::send::deliver`), after
//!   the log's answer and with nothing held (the handover's pass is
//!   dropped first), waits in [`SyncStandby::replicated`] for the durable
//!   position to reach the send's RocksDB sequence
//!   (`Appended::log_seq`). Every waiting send watches one
//!   `tokio::sync::watch` value (position, mode): a standby's answer moves
//!   it once and wakes them all, each compares; no thread is blocked and
//!   nothing is allocated per send but the boxed wait itself.
//! - **Round trip, not poll.** The standby's tail request is a long poll:
//!   the host answers as soon as the log has something after `N`
//!   ([`SyncStandby::log_advanced`], signalled by the log's commit hook),
//!   so a send waits for one round trip and one fsync on the standby.
//! - **Fallback.** A send that waits `lan.sync_standby_timeout_ms` for no
//!   standby turns the host **asynchronous**: that send and every one
//!   waiting are acknowledged at once, as are the next ones, so a dead
//!   standby never stalls the shop. It says so (`/metrics`,
//!   `GET /api/v1/lan/status`, the log). A standby that catches up (it
//!   asks for the tail after everything the host had at its request, or
//!   after all of the previous answer) turns it synchronous again.
//! - With `min_standby_acks = 0` the send path checks one `bool` and
//!   does nothing else.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, watch};

/// What waiting sends watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// The highest sequence a standby has durably.
    durable: u64,
    /// Whether sends wait for a standby (false: fell back to async).
    synchronous: bool,
}

/// The synchronous standby's state on a host (module doc).
pub struct SyncStandby {
    required: bool,
    timeout: Duration,
    position: watch::Sender<Position>,
    /// When it last fell back (ms since the epoch; 0 while synchronous).
    fell_back_at_ms: AtomicI64,
    fallbacks: AtomicU64,
    /// Sends acknowledged, while required, without a standby having them.
    async_acks: AtomicU64,
    log_advanced: Notify,
}

/// The state as `GET /api/v1/lan/status` shows it (`sync_standby`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SyncStatus {
    /// `lan.min_standby_acks`.
    pub min_standby_acks: u32,
    /// `synchronous` (sends wait for a standby), `async_fallback` (a
    /// standby was missing for the timeout: sends are acknowledged
    /// without one until it catches up) or `off` (not required).
    pub mode: &'static str,
    /// Since when it is asynchronous (ms since the epoch), in fallback.
    pub fell_back_at_ms: Option<i64>,
    pub fallbacks: u64,
    pub async_acks: u64,
    /// The highest log sequence a standby reported durable.
    pub standby_durable_seq: u64,
    pub timeout_ms: u64,
}

impl SyncStandby {
    /// `min_standby_acks` is 0 or 1 (`LanConfig::validate`). It starts
    /// synchronous: until a standby reports, sends wait (up to `timeout`).
    pub fn new(min_standby_acks: u32, timeout: Duration) -> SyncStandby {
        let required = min_standby_acks > 0;
        SyncStandby {
            required,
            timeout,
            position: watch::Sender::new(Position {
                durable: 0,
                synchronous: required,
            }),
            fell_back_at_ms: AtomicI64::new(0),
            fallbacks: AtomicU64::new(0),
            async_acks: AtomicU64::new(0),
            log_advanced: Notify::new(),
        }
    }

    /// Whether sends wait for a standby (`lan.min_standby_acks = 1`).
    #[inline]
    pub fn required(&self) -> bool {
        self.required
    }

    /// Waits until a standby has log sequence `seq` durably; falls back to
    /// async when none has after the timeout (module doc). Never fails: it
    /// only decides when the caller acknowledges.
    pub async fn replicated(&self, seq: u64) {
        let mut watching = self.position.subscribe();
        let waited = tokio::time::timeout(
            self.timeout,
            watching.wait_for(|p| !p.synchronous || p.durable >= seq),
        )
        .await;
        let reached = match waited {
            Ok(Ok(position)) => position.durable >= seq,
            // The sender lives in `self`: not reached.
            Ok(Err(_)) => false,
            Err(_) => {
                self.fall_back(seq);
                false
            }
        };
        if !reached {
            self.async_acks.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn fall_back(&self, seq: u64) {
        let mut durable = 0;
        let changed = self.position.send_if_modified(|p| {
            durable = p.durable;
            std::mem::replace(&mut p.synchronous, false)
        });
        if changed {
            self.fell_back_at_ms
                .store(crate::time::now_ms(), Ordering::Relaxed);
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                seq,
                standby_durable_seq = durable,
                timeout_ms = self.timeout.as_millis() as u64,
                "LAN synchronous standby: no standby had the send within the timeout; \
                 acknowledging without one (async) until a standby catches up"
            );
        }
    }

    /// A standby has everything through `durable` on disk (its tail
    /// request's `after`); `caught_up`: it has everything the host had at
    /// its request or at the previous answer, which turns a fallen-back
    /// host synchronous again.
    pub fn standby_at(&self, durable: u64, caught_up: bool) {
        let required = self.required;
        let mut resumed = false;
        self.position.send_if_modified(|p| {
            let mut changed = false;
            if durable > p.durable {
                p.durable = durable;
                changed = true;
            }
            if required && caught_up && !p.synchronous {
                p.synchronous = true;
                resumed = true;
                changed = true;
            }
            changed
        });
        if resumed {
            let since = self.fell_back_at_ms.swap(0, Ordering::Relaxed);
            tracing::info!(
                standby_durable_seq = durable,
                async_ms = crate::time::now_ms().saturating_sub(since),
                "LAN synchronous standby: a standby caught up; sends wait for it again"
            );
        }
    }

    /// The log committed a batch (the log's commit hook): wakes the
    /// standbys' long polls.
    pub fn log_advanced(&self) {
        self.log_advanced.notify_waiters();
    }

    /// Resolves at the next [`SyncStandby::log_advanced`] after it was
    /// enabled (`Notified::enable`), for a tail's long poll.
    pub fn next_advance(&self) -> tokio::sync::futures::Notified<'_> {
        self.log_advanced.notified()
    }

    /// Whether sends currently wait for a standby.
    pub fn synchronous(&self) -> bool {
        self.position.borrow().synchronous
    }

    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    pub fn async_acks(&self) -> u64 {
        self.async_acks.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> SyncStatus {
        let position = *self.position.borrow();
        let fell_back_at = self.fell_back_at_ms.load(Ordering::Relaxed);
        SyncStatus {
            min_standby_acks: u32::from(self.required),
            mode: match (self.required, position.synchronous) {
                (false, _) => "off",
                (true, true) => "synchronous",
                (true, false) => "async_fallback",
            },
            fell_back_at_ms: (self.required && !position.synchronous && fell_back_at > 0)
                .then_some(fell_back_at),
            fallbacks: self.fallbacks(),
            async_acks: self.async_acks(),
            standby_durable_seq: position.durable,
            timeout_ms: self.timeout.as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_send_waits_for_the_standby_and_is_released_by_its_position() {
        let sync = Arc::new(SyncStandby::new(1, Duration::from_secs(30)));
        let waiting = tokio::spawn({
            let sync = Arc::clone(&sync);
            async move { sync.replicated(10).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        sync.standby_at(9, false);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "released below its sequence");
        sync.standby_at(10, false);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released at its sequence")
            .expect("task");
        assert_eq!(sync.async_acks(), 0);
        assert_eq!(sync.status().mode, "synchronous");
    }

    #[tokio::test]
    async fn a_timeout_falls_back_releases_every_waiter_and_a_caught_up_standby_resumes() {
        let sync = Arc::new(SyncStandby::new(1, Duration::from_millis(100)));
        let other = tokio::spawn({
            let sync = Arc::clone(&sync);
            async move { sync.replicated(50).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        sync.replicated(40).await;
        tokio::time::timeout(Duration::from_secs(5), other)
            .await
            .expect("the other waiter released by the fallback")
            .expect("task");
        let status = sync.status();
        assert_eq!(status.mode, "async_fallback");
        assert!(status.fell_back_at_ms.is_some());
        assert_eq!((status.fallbacks, status.async_acks), (1, 2));
        // In fallback a send does not wait at all.
        tokio::time::timeout(Duration::from_millis(50), sync.replicated(1000))
            .await
            .expect("no wait in fallback");
        // A standby that is not caught up does not resume it.
        sync.standby_at(60, false);
        assert!(!sync.synchronous());
        sync.standby_at(70, true);
        let status = sync.status();
        assert_eq!(status.mode, "synchronous");
        assert_eq!(status.fell_back_at_ms, None);
        assert_eq!(status.standby_durable_seq, 70);
        assert_eq!(status.fallbacks, 1);
    }

    #[tokio::test]
    async fn not_required_means_off() {
        let sync = SyncStandby::new(0, Duration::from_millis(10));
        assert!(!sync.required());
        sync.standby_at(5, true);
        assert_eq!(sync.status().mode, "off");
        assert_eq!(sync.status().min_standby_acks, 0);
    }
}
