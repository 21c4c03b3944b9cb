//! The WebSocket transport under `ws`: the HTTP/1.1 upgrade, writes
//! with a deadline, and closes that reach the client.
//!
//! Why not axum's `WebSocket`: it hides the TCP stream, and a close needs
//! it. A server that writes its close frame and then drops a socket whose
//! receive queue still holds unread bytes (the rest of an oversized frame,
//! say) makes the kernel answer with a RST instead of a FIN, and a RST can
//! destroy the close frame before the client reads it: an oversized frame
//! got its 1009 in 12 of 78 tries. So a close is [`send_close`], then
//! [`linger`]: shut the write side (FIN, after the frame), and read and
//! discard what the client still sends until it closes too, for at most
//! [`LINGER`] and [`LINGER_BYTES`]. So this module does the upgrade itself
//! (the same checks and answer as axum's `WebSocketUpgrade`) and keeps the
//! tokio-tungstenite stream, whose inner stream it can reach.
//!
//! Writes get a deadline ([`within`]): a client that never reads fills its
//! TCP window, and a write to it would otherwise wait forever, pinning the
//! connection's task, its descriptor and its slot.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Version};
use axum::response::Response;
use futures_util::SinkExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message};

use crate::error::ApiError;

/// A connection's WebSocket stream, over the upgraded HTTP connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// How long a close waits for the client to close its side too.
pub const LINGER: Duration = Duration::from_secs(2);
/// How much a close reads and discards at most while it waits.
pub const LINGER_BYTES: usize = 1 << 20;

/// A valid WebSocket upgrade request (HTTP/1.1; the server speaks no
/// HTTP/2). Anything else is refused with 400 `bad_request`.
#[derive(Debug)]
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let refuse = |why: &str| ApiError::bad_request(format!("not a WebSocket upgrade: {why}"));
        if parts.version != Version::HTTP_11 {
            return Err(refuse("HTTP/1.1 is required"));
        }
        if parts.method != Method::GET {
            return Err(refuse("the method must be GET"));
        }
        if !header_has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(refuse("`Connection` must include `upgrade`"));
        }
        if !header_has_token(&parts.headers, header::UPGRADE, "websocket") {
            return Err(refuse("`Upgrade` must be `websocket`"));
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(refuse("`Sec-WebSocket-Version` must be 13"));
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or_else(|| refuse("`Sec-WebSocket-Key` is missing"))?
            .clone();
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| refuse("this connection cannot be upgraded"))?;
        Ok(Upgrade { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers 101 and runs `serve` with the socket once the upgrade is
    /// done, in a task of `tasks` (which shutdown waits for).
    pub fn on_upgrade<F, Fut>(
        self,
        config: WebSocketConfig,
        tasks: &TaskTracker,
        serve: F,
    ) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tasks.spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    tracing::debug!(%error, "websocket upgrade failed");
                    return;
                }
            };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            serve(socket).await;
        });
        let mut response = Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

/// Whether a comma-separated header has `token` (case-insensitive).
fn header_has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// How a write with a deadline ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Written<T> {
    Done(T),
    /// Not done within the deadline: the client is not reading.
    TimedOut,
    /// The connection was dropped meanwhile (killed, revoked).
    Ended,
}

/// Runs a write, and gives up when it is not done within `limit`. The
/// first poll runs without a timer: a write that a socket takes at once
/// (nearly all of them) arms none, so the hot path costs no timer entry.
/// `None` when the time ran out.
pub async fn within<F: Future>(limit: Duration, write: F) -> Option<F::Output> {
    match within_unless(limit, |_| false, write).await {
        Written::Done(done) => Some(done),
        Written::TimedOut | Written::Ended => None,
    }
}

/// As [`within`], and also gives up as soon as `ended` says the connection
/// is over (polled with the task's context, so it can register a waker):
/// a connection killed while a write to it is stuck ends at once.
pub async fn within_unless<F: Future>(
    limit: Duration,
    mut ended: impl FnMut(&mut Context<'_>) -> bool,
    write: F,
) -> Written<F::Output> {
    let mut write = pin!(write);
    if let Poll::Ready(done) = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
        return Written::Done(done);
    }
    let mut deadline = pin!(tokio::time::sleep(limit));
    poll_fn(|cx| {
        if let Poll::Ready(done) = write.as_mut().poll(cx) {
            return Poll::Ready(Written::Done(done));
        }
        if ended(cx) {
            return Poll::Ready(Written::Ended);
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Written::TimedOut);
        }
        Poll::Pending
    })
    .await
}

/// Writes a close frame within `limit`; true when it was written (then
/// [`linger`] before dropping the socket).
pub async fn send_close(
    socket: &mut Socket,
    code: u16,
    reason: impl Into<tungstenite::Utf8Bytes>,
    limit: Duration,
) -> bool {
    let frame = Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }));
    // `ConnectionClosed`: written, and tungstenite is done with the socket.
    matches!(
        within(limit, socket.send(frame)).await,
        Some(Ok(()) | Err(WsError::ConnectionClosed))
    )
}

/// After the client's own close: writes tungstenite's reply (queued when
/// the close was read) within `limit`; true when it was written (then
/// [`linger`]).
pub async fn answer_close(socket: &mut Socket, limit: Duration) -> bool {
    matches!(
        within(limit, socket.flush()).await,
        Some(Ok(()) | Err(WsError::ConnectionClosed))
    )
}

/// After the close frame: shuts the write side (a FIN after the frame) and
/// reads and discards what the client still sends until it closes its side
/// too, for at most [`LINGER`] and [`LINGER_BYTES`]. Dropping the socket
/// with bytes unread instead would make the kernel send a RST, which can
/// destroy the close frame before the client reads it.
pub async fn linger(socket: &mut Socket) {
    let io = socket.get_mut();
    let _ = tokio::time::timeout(LINGER, async {
        if io.shutdown().await.is_err() {
            return;
        }
        let mut buffer = [0u8; 2048];
        let mut read = 0;
        while read < LINGER_BYTES {
            match io.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

/// The close code for an error reading a client's frame, when one is due:
/// 1009 over the size limit, 1007 for a text frame that is not UTF-8, 1002
/// for any other breach of the protocol. `None` when the connection is
/// simply gone.
pub fn close_code_for(error: &WsError) -> Option<(u16, &'static str)> {
    use tungstenite::error::ProtocolError;
    match error {
        WsError::Capacity(_) => Some((CLOSE_TOO_BIG, "frame too large")),
        WsError::Utf8(_) => Some((CLOSE_INVALID_DATA, "text frame is not UTF-8")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some((CLOSE_PROTOCOL, "protocol error")),
        _ => None,
    }
}

/// Close codes. 4401/4403 mirror HTTP 401/403.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
pub const CLOSE_FORBIDDEN: u16 = 4403;
pub const CLOSE_IDLE: u16 = 4408;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_INTERNAL: u16 = 1011;
pub const CLOSE_SLOW: u16 = 1013;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stuck_write_ends_when_the_connection_does() {
        let outbox = std::sync::Arc::new(crate::hub::outbox::Outbox::default());
        let killer = tokio::spawn({
            let outbox = std::sync::Arc::clone(&outbox);
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                outbox.kill();
            }
        });
        let written = within_unless(
            Duration::from_secs(60),
            |cx| outbox.poll_ended(cx).is_ready(),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(written, Written::Ended);
        killer.await.expect("killer");
    }

    #[tokio::test]
    async fn a_ready_write_needs_no_timer_and_a_stuck_one_times_out() {
        assert_eq!(within(Duration::from_millis(1), async { 7 }).await, Some(7));
        let stuck = within(Duration::from_millis(20), std::future::pending::<()>()).await;
        assert_eq!(stuck, None);
        let late = within(Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            8
        })
        .await;
        assert_eq!(late, Some(8));
    }

    #[test]
    fn read_errors_map_to_close_codes() {
        use tungstenite::error::{CapacityError, ProtocolError};
        let too_big = WsError::Capacity(CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        });
        assert_eq!(close_code_for(&too_big).map(|c| c.0), Some(1009));
        let masked = WsError::Protocol(ProtocolError::UnmaskedFrameFromClient);
        assert_eq!(close_code_for(&masked).map(|c| c.0), Some(1002));
        let reset = WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(close_code_for(&reset), None);
        assert_eq!(close_code_for(&WsError::ConnectionClosed), None);
    }

    #[test]
    fn upgrade_headers_are_token_lists() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(header_has_token(&headers, header::CONNECTION, "upgrade"));
        assert!(!header_has_token(&headers, header::UPGRADE, "websocket"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(header_has_token(&headers, header::UPGRADE, "websocket"));
    }
}
