//! The relay: a request to the peer's loopback listener under `/api/`
//! goes to the pinned host over mutual TLS, and its answer comes back.
//!
//! What it forwards, and nothing else:
//!
//! - **Only `/api/…` paths**, checked before anything is sent: no `.` or
//!   `..` segment, no empty segment, no backslash, no percent-encoded dot,
//!   slash or backslash, so no spelling of a path reaches the host's
//!   non-API routes (pairing, metrics, the UI) through this device's key.
//!   Methods: the API's (GET, POST, PUT, PATCH, DELETE, and OPTIONS for
//!   CORS preflights); anything else is 405.
//! - **Only to the pinned host**: the upstream URI is built from the
//!   link's address, the connector ignores it anyway and connects to that
//!   address only, checking the host's key (`connector`). Never an open
//!   proxy: the request's `Host`, an absolute-form URI or a CONNECT cannot
//!   steer it.
//! - **Only an allowlist of request headers** (authorization, content
//!   type and length, accept…, origin, the WebSocket handshake's); nothing
//!   that claims a client address (`X-Forwarded-For`, `Forwarded`), no
//!   cookies. Hop-by-hop headers and the host's `kefu-term` are dropped
//!   from the answer.
//! - **The WebSocket** (`/api/v1/ws`) as a byte tunnel: the upgrade is
//!   forwarded, the host's `101` returned, then bytes are copied both ways
//!   until either side closes (the host restarting, a revocation), and the
//!   client reconnects and resumes by seq as after any drop. At most
//!   `limits.max_connections` tunnels.
//!
//! When the link follows a planned handover to a new host, the next
//! request builds a new pooled client for it (`Upstream`): nothing pooled
//! to the old host is reused.
//!
//! Nothing is relayed while the link (`link`) is not `connected`: such a
//! request has the link checked at once and waits up to 3 s for it, else
//! 503. Every answer's `kefu-term` is checked against the highest term seen: a
//! lower one is refused (503, the link turns `refused`); a higher one
//! wakes the link, which persists it. Nothing of a request is logged (no
//! path, query or header): tokens stay out of logs.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connector::PinnedConnector;
use super::link::{Link, LinkState, Refusal};
use crate::error::ApiError;
use crate::lan::host::TERM_HEADER;
use crate::lan::tls::pin_mismatch;

/// How long the host may take to answer a request's head.
const RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request waits for a link that is not connected (at start,
/// after the host restarted) before it is answered 503.
const LINK_WAIT: Duration = Duration::from_secs(3);
/// Idle connections to the host kept for reuse.
const MAX_IDLE_CONNECTIONS: usize = 16;
/// How long an idle connection to the host is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Request headers the relay passes on (module doc).
const REQUEST_HEADERS: &[HeaderName] = &[
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
    header::IF_NONE_MATCH,
    header::ORIGIN,
    header::USER_AGENT,
    header::ACCESS_CONTROL_REQUEST_METHOD,
    header::ACCESS_CONTROL_REQUEST_HEADERS,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

/// Response headers that describe one hop, never passed back.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

/// The relay (module doc).
pub struct Relay {
    link: Arc<Link>,
    upstream: parking_lot::Mutex<Upstream>,
    tunnels: Arc<Semaphore>,
    tunnel_tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// The pooled client to the link's target of one generation: rebuilt (its
/// pooled connections to the old host dropped) when the link follows a
/// handover to a new host.
#[derive(Clone)]
struct Upstream {
    client: Client<PinnedConnector, Body>,
    base: String,
    generation: u64,
}

impl Upstream {
    fn new(connector: PinnedConnector, address: &crate::lan::HostAddress, generation: u64) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        Upstream {
            client,
            base: format!("https://{address}"),
            generation,
        }
    }
}

impl Relay {
    pub fn new(
        link: Arc<Link>,
        connector: PinnedConnector,
        max_tunnels: usize,
        shutdown: CancellationToken,
    ) -> Relay {
        let target = link.target();
        Relay {
            upstream: parking_lot::Mutex::new(Upstream::new(
                connector,
                &target.address,
                target.generation,
            )),
            link,
            tunnels: Arc::new(Semaphore::new(max_tunnels)),
            tunnel_tasks: TaskTracker::new(),
            shutdown,
        }
    }

    /// The client for the link's current target (module doc).
    fn upstream(&self) -> Result<Upstream, String> {
        let target = self.link.target();
        let mut upstream = self.upstream.lock();
        if upstream.generation != target.generation {
            let connector = PinnedConnector::new(
                self.link.identity(),
                crate::lan::tls::ServerTrust::Pinned(target.pinned),
                target.address.clone(),
                self.link.local(),
            )?;
            *upstream = Upstream::new(connector, &target.address, target.generation);
        }
        Ok(upstream.clone())
    }

    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// WebSocket tunnels open now.
    pub fn tunnels_open(&self) -> usize {
        self.tunnel_tasks.len()
    }

    /// Waits until every tunnel has ended (after the shutdown token).
    pub async fn tunnels_closed(&self) {
        self.tunnel_tasks.close();
        self.tunnel_tasks.wait().await;
    }
}

/// Whether `path` may be relayed (module doc).
pub fn relayable(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/") else {
        return false;
    };
    if path.contains('\\') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|encoded| lower.contains(encoded))
    {
        return false;
    }
    rest.split('/')
        .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

fn is_websocket(request: &Request) -> bool {
    request
        .headers()
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// The handler for everything under `/api/` but the peer's own routes.
pub async fn forward(State(relay): State<Arc<Relay>>, mut request: Request) -> Response {
    let path = request.uri().path();
    if !relayable(path) {
        return ApiError::NotFound("no such route".into()).into_response();
    }
    if !matches!(
        *request.method(),
        Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::OPTIONS
    ) {
        return ApiError::MethodNotAllowed.into_response();
    }
    let websocket = is_websocket(&request);
    if request.headers().contains_key(header::UPGRADE) && !websocket {
        return ApiError::bad_request("only the WebSocket upgrade is relayed").into_response();
    }
    // Only to a host that passed the relay handshake: while the link is
    // not connected, have it checked now and wait a little for it.
    if relay.link.state() != LinkState::Connected {
        relay.link.wake();
        if !relay.link.wait_connected(LINK_WAIT).await {
            let status = relay.link.status();
            let message = match status.state {
                LinkState::Refused => format!(
                    "the shop's host is refused: {}",
                    status.message.unwrap_or_default()
                ),
                _ => "the shop's host is unreachable; retry shortly".to_owned(),
            };
            return ApiError::Unavailable(message).into_response();
        }
    }
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.to_owned(), |pq| pq.as_str().to_owned());
    let upstream = match relay.upstream() {
        Ok(upstream) => upstream,
        Err(message) => return ApiError::Unavailable(message).into_response(),
    };
    let Ok(uri) = format!("{}{path_and_query}", upstream.base).parse::<http::Uri>() else {
        return ApiError::bad_request("this request target cannot be relayed").into_response();
    };
    let permit = if websocket {
        match Arc::clone(&relay.tunnels).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                return ApiError::Unavailable("too many connections".into()).into_response();
            }
        }
    } else {
        None
    };
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut request));
    let mut builder = http::Request::builder()
        .method(request.method().clone())
        .uri(uri);
    if let Some(headers) = builder.headers_mut() {
        copy_request_headers(request.headers(), headers, &relay.link.address());
        if websocket {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
    }
    let Ok(request_upstream) = builder.body(request.into_body()) else {
        return ApiError::bad_request("this request cannot be relayed").into_response();
    };
    let sent = tokio::time::timeout(
        RESPONSE_HEAD_TIMEOUT,
        upstream.client.request(request_upstream),
    )
    .await;
    let mut response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => return upstream_failed(&relay.link, &error),
        Err(_) => {
            relay.link.wake();
            return ApiError::Unavailable("the shop's host did not answer in time".into())
                .into_response();
        }
    };
    if let Some(refused) = check_term(&relay.link, response.headers()) {
        return refused;
    }
    let status = response.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // The host may have handed the shop over: look now.
        relay.link.wake();
    }
    let mut headers = response.headers().clone();
    strip_response_headers(&mut headers, status == StatusCode::SWITCHING_PROTOCOLS);
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(client_upgrade), Some(permit)) = (client_upgrade, permit) else {
            return ApiError::Unavailable("the host switched protocols unasked".into())
                .into_response();
        };
        let host_upgrade = hyper::upgrade::on(&mut response);
        let link = Arc::clone(&relay.link);
        let shutdown = relay.shutdown.clone();
        relay.tunnel_tasks.spawn(async move {
            let _permit = permit;
            let (client, host) = tokio::join!(client_upgrade, host_upgrade);
            if let (Ok(client), Ok(host)) = (client, host) {
                let mut client = TokioIo::new(client);
                let mut host = TokioIo::new(host);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut host) => {}
                    () = shutdown.cancelled() => {}
                }
            }
            // The host may have gone (a restart, a revocation): look now.
            link.wake();
        });
        let mut answer = Response::new(Body::empty());
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        answer
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        answer
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return answer;
    }
    let mut answer = Response::new(Body::new(response.into_body()));
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    answer
}

fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap, host: &crate::lan::HostAddress) {
    for name in REQUEST_HEADERS {
        for value in from.get_all(name) {
            to.append(name.clone(), value.clone());
        }
    }
    if let Ok(host) = HeaderValue::from_str(&host.to_string()) {
        to.insert(header::HOST, host);
    }
}

fn strip_response_headers(headers: &mut HeaderMap, upgrade: bool) {
    for name in HOP_BY_HOP {
        if upgrade && (name == header::CONNECTION || name == header::UPGRADE) {
            continue;
        }
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    headers.remove(TERM_HEADER);
}

/// Checks the term an answer carries (module doc); `Some` refuses it.
fn check_term(link: &Link, headers: &HeaderMap) -> Option<Response> {
    let term = headers
        .get(TERM_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let Some(term) = term else {
        link.refuse(
            Refusal::Protocol,
            "the host's answer carries no term".to_owned(),
        );
        return Some(
            ApiError::Unavailable("the shop's host answered without its term".into())
                .into_response(),
        );
    };
    let seen = link.highest_term_seen();
    if term < seen {
        let message = format!(
            "the host is at term {term}, but this device has seen term {seen}: it is an old host, refused"
        );
        link.refuse(Refusal::StaleTerm, message.clone());
        return Some(ApiError::Unavailable(message).into_response());
    }
    if term > seen {
        link.wake();
    }
    None
}

fn upstream_failed(link: &Link, error: &hyper_util::client::legacy::Error) -> Response {
    if let Some(mismatch) = pin_mismatch(error) {
        let message = mismatch.to_string();
        link.refuse(Refusal::PinMismatch, message.clone());
        return ApiError::Unavailable(message).into_response();
    }
    link.wake();
    let message = if error.is_connect() {
        "the shop's host is unreachable; retry shortly"
    } else {
        "the connection to the shop's host failed; retry"
    };
    tracing::debug!(error = %error, "relay: upstream failed");
    ApiError::Unavailable(message.into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_api_paths_are_relayable() {
        for ok in [
            "/api/v1/agents",
            "/api/v1/ws",
            "/api/v1/conversations/01J/messages",
            "/api/v1/lan/devices/GAVW-HOZ3",
        ] {
            assert!(relayable(ok), "{ok}");
        }
        for refused in [
            "/",
            "/api",
            "/api/",
            "/lan/v1/pair",
            "/metrics",
            "/api/v1/../../lan/v1/pair",
            "/api/./v1/agents",
            "/api/v1//agents",
            "/api/v1/%2e%2e/%2e%2e/metrics",
            "/api/v1/%2E%2E/x",
            "/api/v1%2f..%2fmetrics",
            "/api/v1/a\\..\\metrics",
            "/api/v1/a%5c..",
            "/api/v1/x%00",
            "/apis/v1",
            "//api/v1/agents",
        ] {
            assert!(!relayable(refused), "{refused}");
        }
    }

    #[test]
    fn response_headers_lose_hops_and_the_term() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(TERM_HEADER, HeaderValue::from_static("4"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("x/y"));
        strip_response_headers(&mut headers, false);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn request_headers_are_an_allowlist() {
        let mut from = HeaderMap::new();
        from.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        from.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        from.insert(header::FORWARDED, HeaderValue::from_static("for=10.0.0.1"));
        from.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        from.insert(header::HOST, HeaderValue::from_static("evil.example"));
        let mut to = HeaderMap::new();
        let host: crate::lan::HostAddress = "10.1.2.3:5339".parse().expect("address");
        copy_request_headers(&from, &mut to, &host);
        assert_eq!(to.len(), 2);
        assert_eq!(to[header::HOST], "10.1.2.3:5339");
        assert_eq!(to[header::AUTHORIZATION], "Bearer t");
    }
}
