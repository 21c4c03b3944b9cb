//! A connection's outbound queue.
//!
//! The hub pushes frames without ever waiting; the connection's task takes
//! them. Bounded: a push that finds the queue full kills the connection
//! instead (the client reconnects and resumes by seq). A kill is seen
//! before any frame still queued, and so are a revocation of the
//! connection's session (close 4401) and the server's shutdown, which the hub tells every connection this way (the
//! served loop then polls no shared token per wake-up).
//!
//! Why not `tokio::sync::mpsc` plus a `CancellationToken`, as before: an
//! idle connection is what a server holds most of, and that pair costs
//! ≈ 900 bytes per connection while empty (the channel's cache-padded
//! shared state, its first 32-slot block allocated up front, the token's
//! tree node). This is one small allocation (a mutex, an empty `VecDeque`
//! that allocates on first use and is freed again when drained, one waker),
//! with only one consumer to wake. The hub is the only producer side that
//! matters for contention, and it holds the lock for a push.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use super::frames::Frame;

/// What the connection's task takes next.
#[derive(Debug)]
pub enum Next {
    Frame(Frame),
    /// Dropped by the hub: too slow.
    Killed,
    /// The token the connection authenticated with was revoked.
    Revoked,
    /// The server is shutting down: close as "going away".
    Closing,
}

#[derive(Debug)]
pub enum Push {
    Queued,
    /// The queue was full: the connection has been killed (now).
    Overflowed,
    /// Already killed; the frame was dropped.
    Dead,
}

#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Frame>,
    killed: bool,
    revoked: bool,
    closing: bool,
    waker: Option<Waker>,
}

/// A drained queue keeps a buffer this big (in frames) for the next burst;
/// a bigger one is freed, so a burst does not pin memory for an idle
/// connection's life.
const KEEP_CAPACITY: usize = 16;

impl Outbox {
    /// Queues a frame unless the queue holds `bound` already; never waits.
    pub fn push(&self, frame: Frame, bound: usize) -> Push {
        let mut state = self.state.lock();
        if state.killed || state.revoked || state.closing {
            return Push::Dead;
        }
        let result = if state.frames.len() >= bound {
            state.killed = true;
            state.frames = VecDeque::new();
            Push::Overflowed
        } else {
            state.frames.push_back(frame);
            Push::Queued
        };
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        result
    }

    /// Kills the connection: its task sees [`Next::Killed`] next.
    pub fn kill(&self) {
        self.end(|state| state.killed = true);
    }

    /// Ends the connection's session: its task sees [`Next::Revoked`] next.
    pub fn revoke(&self) {
        self.end(|state| state.revoked = true);
    }

    /// Tells the connection the server is shutting down: its task sees
    /// [`Next::Closing`] next (after a kill, before any queued frame).
    pub fn close(&self) {
        self.end(|state| state.closing = true);
    }

    /// Sets an ending flag, drops what is queued and wakes the task.
    fn end(&self, mark: impl FnOnce(&mut State)) {
        let mut state = self.state.lock();
        mark(&mut state);
        state.frames = VecDeque::new();
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub fn is_killed(&self) -> bool {
        self.state.lock().killed
    }

    /// The next frame or the kill, without waiting.
    pub fn try_next(&self) -> Option<Next> {
        let mut state = self.state.lock();
        Self::take(&mut state)
    }

    /// Waits for the next frame or the kill. Cancel-safe: nothing is taken
    /// until it is returned.
    pub async fn next(&self) -> Next {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Ready once the connection is killed or revoked; else registers the
    /// task's waker. Lets a write that the client does not take end as
    /// soon as the connection is dropped. (The shutdown does not cut a
    /// write short: the write finishes, within its deadline, and the
    /// connection then closes with 1001.)
    pub fn poll_ended(&self, cx: &Context<'_>) -> Poll<()> {
        let mut state = self.state.lock();
        if state.killed || state.revoked {
            return Poll::Ready(());
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn poll_next(&self, cx: &Context<'_>) -> Poll<Next> {
        let mut state = self.state.lock();
        if let Some(next) = Self::take(&mut state) {
            return Poll::Ready(next);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn take(state: &mut State) -> Option<Next> {
        // A revoked session wins: its client must not reconnect with it.
        if state.revoked {
            return Some(Next::Revoked);
        }
        if state.killed {
            return Some(Next::Killed);
        }
        if state.closing {
            return Some(Next::Closing);
        }
        let frame = state.frames.pop_front()?;
        if state.frames.is_empty() && state.frames.capacity() > KEEP_CAPACITY {
            state.frames = VecDeque::new();
        }
        Some(Next::Frame(frame))
    }

    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.state.lock().frames.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::hub::frames;

    fn frame(n: u64) -> Frame {
        frames::welcome("visitor", &n.to_string(), None)
    }

    #[test]
    fn bounded_and_killed_on_overflow() {
        let outbox = Outbox::default();
        assert!(matches!(outbox.push(frame(1), 2), Push::Queued));
        assert!(matches!(outbox.push(frame(2), 2), Push::Queued));
        assert!(matches!(outbox.push(frame(3), 2), Push::Overflowed));
        assert!(outbox.is_killed());
        assert!(matches!(outbox.push(frame(4), 2), Push::Dead));
        // The kill comes before anything that was queued.
        assert!(matches!(outbox.try_next(), Some(Next::Killed)));
        assert_eq!(outbox.queued(), 0);
    }

    #[test]
    fn frames_come_out_in_order_and_a_burst_is_freed() {
        let outbox = Outbox::default();
        assert!(outbox.try_next().is_none());
        for n in 0..100 {
            outbox.push(frame(n), 4_096);
        }
        for n in 0..100 {
            match outbox.try_next() {
                Some(Next::Frame(f)) => assert!(f.text().contains(&format!("\"{n}\""))),
                other => panic!("frame {n}: {other:?}"),
            }
        }
        assert!(outbox.try_next().is_none());
        assert_eq!(outbox.state.lock().frames.capacity(), 0);
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_a_push_and_by_a_kill() {
        let outbox = Arc::new(Outbox::default());
        let waiter = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.next().await }
        });
        tokio::task::yield_now().await;
        outbox.push(frame(7), 8);
        assert!(matches!(waiter.await.expect("join"), Next::Frame(_)));

        let waiter = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.next().await }
        });
        tokio::task::yield_now().await;
        outbox.kill();
        assert!(matches!(waiter.await.expect("join"), Next::Killed));
    }

    #[tokio::test]
    async fn closing_wakes_the_task_and_comes_before_queued_frames() {
        let outbox = Arc::new(Outbox::default());
        outbox.push(frame(1), 8);
        outbox.close();
        assert!(matches!(outbox.try_next(), Some(Next::Closing)));
        // It stays: the task sees it however often it looks.
        assert!(matches!(outbox.try_next(), Some(Next::Closing)));

        let outbox = Arc::new(Outbox::default());
        let waiter = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.next().await }
        });
        tokio::task::yield_now().await;
        outbox.close();
        assert!(matches!(waiter.await.expect("join"), Next::Closing));
        // A kill still wins over closing, and a revocation over both.
        outbox.kill();
        assert!(matches!(outbox.try_next(), Some(Next::Killed)));
        outbox.revoke();
        assert!(matches!(outbox.try_next(), Some(Next::Revoked)));
        assert!(matches!(outbox.push(frame(2), 8), Push::Dead));
    }
}
