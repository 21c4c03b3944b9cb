//! The metrics listener (`http.metrics_bind`): `/metrics` on an address of
//! its own, so that Prometheus scrapes it without reaching the API, and
//! the main listener stops serving `/metrics` (404).
//!
//! Invariants:
//! - It serves `/metrics`, `/healthz` and `/readyz` and nothing else
//!   (every other path: 404 `not_found`); no token is accepted or needed
//!   there, so none can leak to a scraper's configuration.
//! - `PORT` alone binds loopback (`127.0.0.1:PORT`): exposing it beyond
//!   the machine takes an explicit address.
//! - Its connections have slots of their own ([`SLOTS`]), so a flood on
//!   the main listener cannot stop the scrape that would show it, and a
//!   flood here cannot take the main listener's.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::state::AppState;

/// Concurrent connections on the metrics listener (a few scrapers).
pub const SLOTS: usize = 16;

/// Binds `http.metrics_bind` when set (before anything else starts, so a
/// port in use stops start-up).
pub async fn bind(config: &crate::Config) -> anyhow::Result<Option<TcpListener>> {
    let Some(crate::config::MetricsBind(address)) = config.http.metrics_bind else {
        return Ok(None);
    };
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (http.metrics_bind)"))?;
    Ok(Some(listener))
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(super::metrics))
        .route("/healthz", get(super::healthz))
        .route("/readyz", get(super::readyz))
        .fallback(super::not_found)
        .method_not_allowed_fallback(super::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(super::edge::Edge::new(&state.config)),
            super::edge::edge,
        ))
        .with_state(state)
}

/// Serves until shutdown; returns the shutdown's deadline.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::time::Instant {
    // The slot count is this listener's own (it is also what a graceful
    // shutdown waits to get back).
    let mut config = state.config.http.clone();
    config.max_connections = SLOTS;
    let router = router(state);
    super::serve::serve_with(
        listener,
        Arc::new(super::serve::Plain),
        router,
        &config,
        shutdown,
        super::serve::slots(&config),
    )
    .await
}
