//! The series read at each scrape (see the module doc): the gauges that
//! look at the running server (the writer's queue, the indexers' backlogs,
//! the routing queue, agents by availability) rather than being counted as
//! things happen. Apart from the registry so that what counts (the hub,
//! the log) depends on the registry alone, not on the server's state.

use super::{AGENT_STATUSES, Metrics, StatusLabel};
use crate::agents::Availability;
use crate::ids::AgentId;
use crate::state::Kefu;

impl Metrics {
    /// Reads the series that are read at each scrape (see the module doc).
    pub async fn refresh(&self, state: &Kefu) {
        let scraped = &self.scraped;
        let uptime = self.started.elapsed().as_secs_f64();
        scraped.uptime.set(uptime);
        scraped
            .writer_queue
            .set(i64::try_from(state.log.queue_depth()).unwrap_or(i64::MAX));
        scraped
            .search_backlog
            .set(i64::try_from(state.indexer.backlog()).unwrap_or(i64::MAX));
        scraped
            .derived_backlog
            .set(i64::try_from(state.derived.backlog()).unwrap_or(i64::MAX));
        let last_backup = self.backup.last_success.get();
        let now_ms = crate::time::now_ms();
        scraped.backup_age.set(if last_backup > 0 {
            (now_ms as f64 / 1000.0 - last_backup as f64).max(0.0)
        } else {
            uptime
        });
        let interval = match state.config.backup.dir {
            Some(_) => state.config.backup.interval_minutes.saturating_mul(60),
            None => 0,
        };
        scraped
            .backup_interval
            .set(i64::try_from(interval).unwrap_or(i64::MAX));
        if let Some(lan) = state.lan.as_deref() {
            let sync = lan.sync.status();
            scraped
                .sync_standby_required
                .set(i64::from(sync.min_standby_acks));
            scraped
                .sync_standby_synchronous
                .set(i64::from(sync.mode == "synchronous"));
            scraped
                .sync_standby_durable_seq
                .set(i64::try_from(sync.standby_durable_seq).unwrap_or(i64::MAX));
            // Counted by the host; a counter only goes up, as these do.
            scraped
                .sync_standby_fallbacks
                .inner()
                .store(sync.fallbacks, std::sync::atomic::Ordering::Relaxed);
            scraped
                .sync_standby_async_acks
                .inner()
                .store(sync.async_acks, std::sync::atomic::Ordering::Relaxed);
        }
        // Served by the partial index `conversations_queue`.
        let queue: Result<(i64, Option<i64>), sqlx::Error> = sqlx::query_as(
            "SELECT COUNT(*), MIN(queued_at) FROM conversations WHERE status = 'queued'",
        )
        .fetch_one(&state.db)
        .await;
        match queue {
            Ok((length, oldest)) => {
                scraped.routing_queue.set(length);
                scraped
                    .routing_oldest
                    .set(oldest.map_or(0.0, |at| ((now_ms - at) as f64 / 1000.0).max(0.0)));
            }
            Err(error) => tracing::warn!(%error, "metrics: reading the routing queue failed"),
        }
        let connected = state.hub.connected_agents();
        let agents: Result<Vec<(AgentId, Availability)>, _> =
            sqlx::query_as("SELECT id, status FROM agents WHERE deactivated_at IS NULL")
                .fetch_all(&state.db)
                .await;
        match agents {
            Ok(agents) => {
                let mut counts = [0i64; AGENT_STATUSES.len()];
                for (id, status) in agents {
                    if connected.contains(&id) {
                        counts[match status {
                            Availability::Online => 0,
                            Availability::Away => 1,
                            Availability::Offline => 2,
                        }] += 1;
                    }
                }
                for (status, count) in AGENT_STATUSES.into_iter().zip(counts) {
                    scraped
                        .agents
                        .get_or_create(&StatusLabel { status })
                        .set(count);
                }
            }
            Err(error) => tracing::warn!(%error, "metrics: reading agents failed"),
        }
    }
}
