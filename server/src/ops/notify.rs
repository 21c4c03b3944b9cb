//! systemd's `Type=notify` (deploy/systemd/kefu-server.service): the server
//! says `READY=1` once its listeners are bound and its stores open (so
//! units ordered after it start against a server that answers),
//! `STOPPING=1` when a graceful shutdown begins, and, when the unit sets
//! `WatchdogSec=`, `WATCHDOG=1` at half that interval while it is alive.
//!
//! Invariants:
//! - Without `NOTIFY_SOCKET` (not under systemd, the desktop app, tests)
//!   nothing is sent and nothing fails; a notification that cannot be sent
//!   is logged, never fatal.
//! - The watchdog is fed only while the runtime runs tasks and SQLite
//!   answers `SELECT 1` within the half interval: a wedged process is
//!   restarted by systemd (`Restart=on-failure`). A message log that
//!   cannot write (a full disk) still feeds it: the server recovers from
//!   that by itself, and a restart would not free the disk.
//!
//! The `sd-notify` crate speaks the protocol (a datagram to a Unix socket,
//! abstract or path): no libsystemd to link.

use std::time::Duration;

use crate::state::AppState;

#[cfg(unix)]
fn send(states: &[sd_notify::NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "sd_notify failed");
    }
}

/// `READY=1` with a status line naming the address.
pub fn ready(addr: std::net::SocketAddr) {
    #[cfg(unix)]
    {
        let status = format!("serving on {addr}");
        send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
    }
    #[cfg(not(unix))]
    let _ = addr;
}

/// `STOPPING=1`: a graceful shutdown has begun.
pub fn stopping() {
    #[cfg(unix)]
    send(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("shutting down"),
    ]);
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC` for this pid).
pub fn watchdog_interval() -> Option<Duration> {
    #[cfg(unix)]
    return sd_notify::watchdog_enabled().filter(|interval| !interval.is_zero());
    #[cfg(not(unix))]
    None
}

/// Feeds the watchdog until shutdown while the server is alive (see the
/// module doc); `state` is `None` for a LAN peer, which has no store.
pub fn spawn_watchdog(state: Option<AppState>, shutdown: tokio_util::sync::CancellationToken) {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let period = interval / 2;
    tracing::info!(?interval, "systemd watchdog on");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Some(state) = &state {
                let probe = sqlx::query("SELECT 1").execute(&state.db);
                match tokio::time::timeout(period, probe).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        tracing::error!(%error, "watchdog: SQLite does not answer; not feeding systemd's watchdog");
                        continue;
                    }
                    Err(_) => {
                        tracing::error!(
                            "watchdog: SQLite took over half the watchdog interval; not feeding it"
                        );
                        continue;
                    }
                }
            }
            #[cfg(unix)]
            send(&[sd_notify::NotifyState::Watchdog]);
        }
    });
}
