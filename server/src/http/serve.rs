//! The accept loop: hyper's HTTP/1 server under the axum router, with the
//! bounds `axum::serve` does not offer (docs/ARCHITECTURE.md, "Decisions").
//!
//! - **Headers within `http.header_read_timeout_secs`** (hyper's
//!   `header_read_timeout`), which also closes idle keep-alive connections;
//!   a request body that goes `http.body_idle_timeout_secs` without a byte
//!   fails (tower-http's `TimeoutBody`).
//! - **At most `http.max_connections` HTTP connections** at once (a
//!   semaphore; a connection that upgrades to a WebSocket gives its slot
//!   back, `limits.max_connections` caps those). Over it a connection is
//!   answered 503 and closed, without being read.
//! - **Graceful shutdown with a deadline:** when the shutdown token is
//!   cancelled the listener closes, idle connections close, requests in
//!   flight may finish; whatever is still open `http.shutdown_timeout_secs`
//!   later is dropped.
//!
//! Every connection gets `TCP_NODELAY`, and its requests carry
//! `ConnectInfo<SocketAddr>` (the peer) and [`LocalAddr`].
//!
//! The same loop serves plain TCP ([`Plain`], the loopback listener) and
//! the LAN listener's TLS (`lan::listener`): a [`Handshake`] turns the
//! accepted TCP stream into the stream HTTP is spoken on, inside the
//! connection's task and its slot, within `http.header_read_timeout_secs`,
//! and may add request extensions (the client's device ID). Both listeners
//! share one set of slots, so `http.max_connections` counts them together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutBody;

use super::edge::LocalAddr;
use crate::config::HttpConfig;

/// Connections over the cap being answered 503 at once; past this many
/// they are closed without an answer.
const REFUSING_MAX: usize = 64;
/// How long a refused connection is given to take its 503.
const REFUSE_LINGER: Duration = Duration::from_secs(1);

const BUSY_BODY: &str =
    r#"{"error":{"code":"unavailable","message":"too many connections, try again"}}"#;

/// Turns an accepted TCP connection into the stream HTTP is spoken on.
pub trait Handshake: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Whether a connection over the cap is answered a plain-text 503
    /// (on TLS it would be garbage: those are just closed).
    const ANSWERS_BUSY_IN_CLEAR: bool;

    /// Runs in the connection's task, after it got a slot, under the
    /// header read timeout. `None` drops the connection. The extensions
    /// are added to every request of the connection.
    fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> impl Future<Output = Option<(Self::Stream, http::Extensions)>> + Send;
}

/// Plain TCP: HTTP as it comes (the loopback listener).
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl Handshake for Plain {
    type Stream = TcpStream;
    const ANSWERS_BUSY_IN_CLEAR: bool = true;

    async fn handshake(
        &self,
        tcp: TcpStream,
        _peer: SocketAddr,
    ) -> Option<(TcpStream, http::Extensions)> {
        Some((tcp, http::Extensions::new()))
    }
}

/// Connection slots shared by every listener (`http.max_connections`).
pub fn slots(config: &HttpConfig) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(
        config.max_connections.min(Semaphore::MAX_PERMITS),
    ))
}

/// Serves `router` on `listener` in plain HTTP until `shutdown` is
/// cancelled, then drains (see the module doc). Returns the shutdown's
/// deadline, which the caller also holds WebSockets to.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &HttpConfig,
    shutdown: CancellationToken,
) -> Instant {
    serve_with(
        listener,
        Arc::new(Plain),
        router,
        config,
        shutdown,
        slots(config),
    )
    .await
}

/// As [`serve`], with a handshake step and slots shared with other
/// listeners (from [`slots`]).
pub async fn serve_with<H: Handshake>(
    listener: TcpListener,
    handshake: Arc<H>,
    router: Router,
    config: &HttpConfig,
    shutdown: CancellationToken,
    slots: Arc<Semaphore>,
) -> Instant {
    let max = config.max_connections.min(Semaphore::MAX_PERMITS);
    let refusing = Arc::new(Semaphore::new(REFUSING_MAX));
    let hard_stop = CancellationToken::new();
    let body_timeout = Duration::from_secs(config.body_idle_timeout_secs);
    let header_timeout = Duration::from_secs(config.header_read_timeout_secs);
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let mut refused_logged: Option<Instant> = None;

    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            if refused_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    max,
                    "HTTP connection limit reached: refusing connections (http.max_connections)"
                );
                refused_logged = Some(Instant::now());
            }
            if H::ANSWERS_BUSY_IN_CLEAR {
                refuse(tcp, &refusing);
            }
            continue;
        };
        // Chat frames are small and latency matters: no Nagle delay.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let local = tcp.local_addr().unwrap_or(peer);
        let router = router.clone();
        let http1 = http1.clone();
        let handshake = Arc::clone(&handshake);
        let shutdown = shutdown.clone();
        let hard_stop = hard_stop.clone();
        tokio::spawn(async move {
            let shaken = tokio::select! {
                shaken = tokio::time::timeout(header_timeout, handshake.handshake(tcp, peer)) => Some(shaken),
                _ = shutdown.cancelled() => None,
            };
            let Some(Ok(Some((stream, extensions)))) = shaken else {
                tracing::debug!(%peer, "handshake failed, timed out or cut by shutdown");
                drop(permit);
                return;
            };
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut request =
                    request.map(|body| axum::body::Body::new(TimeoutBody::new(body_timeout, body)));
                request.extensions_mut().extend(extensions.clone());
                request.extensions_mut().insert(ConnectInfo(peer));
                request.extensions_mut().insert(LocalAddr(local));
                tower::ServiceExt::oneshot(router.clone(), request)
            });
            let connection = http1
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => Some(result),
                _ = shutdown.cancelled() => {
                    // Closes it now if idle, else after the request in flight.
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        result = connection.as_mut() => Some(result),
                        _ = hard_stop.cancelled() => None,
                    }
                }
            };
            if let Some(Err(error)) = result {
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);

    let timeout = Duration::from_secs(config.shutdown_timeout_secs);
    let deadline = Instant::now() + timeout;
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout_at(deadline, slots.acquire_many(all))
        .await
        .is_err()
    {
        let open = max - slots.available_permits();
        tracing::warn!(
            open,
            ?timeout,
            "HTTP connections still open at the shutdown deadline: dropping them"
        );
        hard_stop.cancel();
        // Each task drops its connection the next time it runs.
        let _ = tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(all)).await;
    }
    deadline
}

/// Answers 503 to a connection over the cap and closes it, from a task of
/// its own, at most [`REFUSING_MAX`] at a time; beyond that, or when it
/// cannot be written at once, the connection is just closed.
fn refuse(mut tcp: TcpStream, refusing: &Arc<Semaphore>) {
    let Ok(permit) = Arc::clone(refusing).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n{BUSY_BODY}",
            BUSY_BODY.len()
        );
        let _ = tokio::time::timeout(REFUSE_LINGER, async {
            tcp.write_all(response.as_bytes()).await?;
            tcp.shutdown().await?;
            // Read what the client sent until it closes, so that closing
            // does not reset the connection before it read the answer.
            let mut sink = [0u8; 1024];
            while tcp.read(&mut sink).await? > 0 {}
            Ok::<(), std::io::Error>(())
        })
        .await;
        drop(permit);
    });
}

/// As `axum::serve`: errors of one connection are skipped; others (such as
/// running out of file descriptors) are logged and retried after a pause,
/// so that the loop does not spin.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
