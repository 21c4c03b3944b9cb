//! The edge of every request, before any route: the `Host` check against
//! DNS rebinding, and the client's IP (through trusted proxies), which every
//! per-IP limit and every log line that names a client reads
//! ([`ClientIp`]). One middleware on the router, so every listener gets it.
//!
//! **Host.** A page on `http://evil.example` whose name an attacker points
//! at 127.0.0.1 (DNS rebinding) reaches a server on loopback as a
//! same-origin site: the browser sends `Host: evil.example`. So a request is
//! served only when its `Host` (and the authority of an absolute-form
//! target) is one this server answers to: `localhost`, a loopback address,
//! the bind address, the address the client connected to (an IP literal
//! needs no DNS, so it cannot be rebound), or an entry of
//! `http.allowed_hosts`; on a LAN host (`lan.bind`) also the LAN address,
//! `kefu.local` and `lan.names` (the names on its certificate); with a
//! public listener also its address and the host of `http.public_url`. Other
//! hosts get 421 `misdirected_request`. Requests
//! without any Host (HTTP/1.0 tools) pass: a browser always sends one.
//!
//! **Client IP.** The TCP peer, unless the peer is in `http.trusted_proxies`:
//! then the right-most address of `X-Forwarded-For` that is not a trusted
//! proxy (each proxy appends the address it saw, so that entry was written
//! by a proxy we trust; anything left of it may be forged).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use crate::config::Config;
use crate::error::ApiError;

/// The request's `Origin` when it is another site's. A request from this
/// server's own pages (the widget's iframe at `/widget/frame.html`) is
/// same-origin: its `Origin` names the `Host` it was sent to, and it counts
/// as no `Origin`. Which sites may embed that iframe is enforced by the
/// browser instead, through the frame's `frame-ancestors` (`crate::ui`).
///
/// Trusting `Host` here is sound only because the edge (this module) has
/// already refused every Host this server does not answer to: a DNS
/// rebinding page sends `Origin: http://evil.example` with `Host:
/// evil.example`, and is answered 421 before any route (unless
/// `http.allowed_hosts` is `["*"]`, which the docs warn about).
pub fn cross_origin(headers: &HeaderMap) -> Option<&str> {
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())?;
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok());
    let same = host.is_some_and(|host| {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        authority.is_some_and(|a| a.trim_end_matches('/').eq_ignore_ascii_case(host))
    });
    if same { None } else { Some(origin) }
}

/// The address of the client a request comes from: the TCP peer, or what a
/// trusted proxy says (see the module doc). Per-IP limits and logs use this,
/// never `ConnectInfo` directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The local address of the connection a request came in on (which of the
/// listener's addresses the client reached), set by the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(client) = parts.extensions.get::<ClientIp>() {
            return Ok(*client);
        }
        // Only when served without the edge middleware (never by `start`).
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| ClientIp(info.0.ip().to_canonical()))
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no client address")))
    }
}

/// What the edge checks, parsed once from the configuration.
#[derive(Debug, Default)]
pub struct Edge {
    any_host: bool,
    /// Exact host names, lower case, without a trailing dot.
    names: Vec<String>,
    /// `*.shop.example` entries, kept as `.shop.example`.
    suffixes: Vec<String>,
    addresses: Vec<IpAddr>,
    bind: Option<IpAddr>,
    /// `lan.bind`'s address, when it is one.
    lan: Option<IpAddr>,
    /// `http.public_bind`'s address, when it is one.
    public: Option<IpAddr>,
    trusted_proxies: Vec<IpNet>,
}

impl Edge {
    /// Invalid entries were refused by `Config::validate`; they are skipped
    /// here (so a config that skipped validation only loses them).
    pub fn new(config: &Config) -> Edge {
        let mut edge = Edge {
            bind: Some(config.bind.ip().to_canonical()).filter(|ip| !ip.is_unspecified()),
            trusted_proxies: config.http.trusted_proxy_nets().unwrap_or_default(),
            ..Edge::default()
        };
        // The LAN listener's address and the names on its certificate.
        let mut entries = config.http.allowed_host_names().unwrap_or_default();
        // The public listener's address and the host visitors use.
        edge.public = config
            .http
            .public_bind
            .map(|public| public.ip().to_canonical())
            .filter(|ip| !ip.is_unspecified());
        if let Ok(Some((_, host))) = config.http.public_url_parts() {
            entries.push(host);
        }
        if let Some(lan) = config.lan.bind {
            edge.lan = Some(lan.ip().to_canonical()).filter(|ip| !ip.is_unspecified());
            entries.push("kefu.local".to_owned());
            entries.extend(
                config
                    .lan
                    .names
                    .iter()
                    .map(|name| name.trim().trim_end_matches('.').to_ascii_lowercase()),
            );
        }
        for entry in entries {
            if entry == "*" {
                edge.any_host = true;
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                edge.addresses.push(ip.to_canonical());
            } else if let Some(domain) = entry.strip_prefix('*') {
                edge.suffixes.push(domain.to_owned());
            } else {
                edge.names.push(entry);
            }
        }
        if edge.any_host {
            tracing::warn!(
                "http.allowed_hosts contains \"*\": any Host header is served, so browsers can reach this server through DNS rebinding"
            );
        }
        edge
    }

    /// Whether `host` (a Host header's or a URI's authority, with or
    /// without a port) names this server; `local` is the address the
    /// client connected to.
    pub fn host_allowed(&self, authority: &str, local: Option<IpAddr>) -> bool {
        if self.any_host {
            return true;
        }
        let Some(host) = host_of(authority) else {
            return false;
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            return ip.is_loopback()
                || Some(ip) == self.bind
                || Some(ip) == self.lan
                || Some(ip) == self.public
                || Some(ip) == local.map(|local| local.to_canonical())
                || self.addresses.contains(&ip);
        }
        host == "localhost"
            || self.names.contains(&host)
            || self
                .suffixes
                .iter()
                .any(|suffix| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
    }

    /// The client's address for a request from `peer` (see the module doc).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusted(client) {
            return client;
        }
        // Several headers count as one list, in order (RFC 9110, 5.3).
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.into_iter().rev() {
            // What a trusted proxy wrote is an address; anything else means
            // the header cannot be followed further: stop at the last
            // address a trusted proxy vouched for.
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.trusted(ip) {
                break;
            }
        }
        client
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// The host of an authority, lower case, without port, brackets or a
/// trailing dot; `None` if it is not an authority.
fn host_of(authority: &str) -> Option<String> {
    let authority: axum::http::uri::Authority = authority.trim().parse().ok()?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`1.2.3.4:5678`, `[v6]:5678`), as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The middleware: refuses a foreign Host, then records the [`ClientIp`].
pub async fn edge(State(edge): State<Arc<Edge>>, mut request: Request, next: Next) -> Response {
    let local = request
        .extensions()
        .get::<LocalAddr>()
        .map(|local| local.0.ip());
    let mut authorities = request
        .headers()
        .get_all(header::HOST)
        .iter()
        .map(|value| value.to_str().unwrap_or(""))
        .chain(request.uri().authority().map(|a| a.as_str()));
    if !authorities.all(|authority| edge.host_allowed(authority, local)) {
        return misdirected();
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(peer) = peer {
        let client = edge.client_ip(peer, request.headers());
        request.extensions_mut().insert(ClientIp(client));
    }
    next.run(request).await
}

fn misdirected() -> Response {
    let body = serde_json::json!({"error": {
        "code": "misdirected_request",
        "message": "this server does not answer to that Host (see http.allowed_hosts)",
    }});
    (StatusCode::MISDIRECTED_REQUEST, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_origin_is_same_origin() {
        use super::cross_origin;
        use axum::http::{HeaderMap, HeaderValue, header};
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:5338"));
        assert_eq!(cross_origin(&headers), None);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:5338"),
        );
        assert_eq!(cross_origin(&headers), None);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:5339"),
        );
        assert_eq!(cross_origin(&headers), Some("http://127.0.0.1:5339"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert_eq!(cross_origin(&headers), Some("https://evil.example"));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert_eq!(cross_origin(&headers), Some("null"));
    }

    use super::*;

    fn edge(allowed: &[&str], proxies: &[&str]) -> Edge {
        let mut config = Config {
            bind: "192.0.2.7:5338".parse().expect("addr"),
            ..Config::default()
        };
        config.http.allowed_hosts = allowed.iter().map(|s| (*s).to_owned()).collect();
        config.http.trusted_proxies = proxies.iter().map(|s| (*s).to_owned()).collect();
        config.validate().expect("valid");
        Edge::new(&config)
    }

    #[test]
    fn hosts_always_allowed_and_configured() {
        let edge = edge(&["shop.example", "*.kefu.example", "203.0.113.5"], &[]);
        for host in [
            "localhost",
            "LOCALHOST:5338",
            "localhost.",
            "127.0.0.1",
            "127.3.2.1:80",
            "[::1]:5338",
            "192.0.2.7:5338",
            "shop.example",
            "Shop.Example.:443",
            "chat.kefu.example",
            "203.0.113.5:5338",
        ] {
            assert!(edge.host_allowed(host, None), "{host}");
        }
        for host in [
            "evil.example",
            "shop.example.evil.example",
            "kefu.example",
            "localhost.evil.example",
            "evilkefu.example",
            "198.51.100.1",
            "",
            "a b",
        ] {
            assert!(!edge.host_allowed(host, None), "{host}");
        }
        let local: IpAddr = "198.51.100.1".parse().expect("ip");
        assert!(edge.host_allowed("198.51.100.1:5338", Some(local)));
        let any = self::edge(&["*"], &[]);
        assert!(any.host_allowed("evil.example", None));
    }

    #[test]
    fn a_lan_host_also_answers_to_its_lan_address_and_certificate_names() {
        let mut config = Config {
            bind: "127.0.0.1:5338".parse().expect("addr"),
            ..Config::default()
        };
        let solo = Edge::new(&config);
        assert!(!solo.host_allowed("kefu.local", None));
        assert!(!solo.host_allowed("192.0.2.50:5339", None));
        config.lan.bind = Some("192.0.2.50:5339".parse().expect("addr"));
        config.lan.names = vec!["Shop-PC.lan".to_owned(), "192.0.2.51".to_owned()];
        config.validate().expect("valid");
        let host = Edge::new(&config);
        for name in [
            "kefu.local",
            "shop-pc.lan",
            "192.0.2.50:5339",
            "192.0.2.51",
            "localhost",
        ] {
            assert!(host.host_allowed(name, None), "{name}");
        }
        for name in ["evil.example", "kefu.local.evil.example", "192.0.2.52"] {
            assert!(!host.host_allowed(name, None), "{name}");
        }
    }

    #[test]
    fn client_ip_is_the_rightmost_untrusted_hop_from_trusted_peers_only() {
        let edge = edge(&[], &["10.0.0.0/8", "127.0.0.2"]);
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9".parse().expect("v"),
        );
        headers.append("x-forwarded-for", "10.1.1.1".parse().expect("v"));
        let proxy: IpAddr = "127.0.0.2".parse().expect("ip");
        let stranger: IpAddr = "127.0.0.3".parse().expect("ip");
        assert_eq!(
            edge.client_ip(proxy, &headers),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(edge.client_ip(stranger, &headers), stranger);
        // No header: the proxy itself; all hops trusted: the left-most.
        assert_eq!(edge.client_ip(proxy, &HeaderMap::new()), proxy);
        let mut inner = HeaderMap::new();
        inner.insert("x-forwarded-for", "10.9.9.9, 10.1.1.1".parse().expect("v"));
        assert_eq!(
            edge.client_ip(proxy, &inner),
            "10.9.9.9".parse::<IpAddr>().expect("ip")
        );
        // Garbage stops the walk at the last address a proxy vouched for.
        let mut garbage = HeaderMap::new();
        garbage.insert("x-forwarded-for", "127.0.0.1, nonsense".parse().expect("v"));
        assert_eq!(edge.client_ip(proxy, &garbage), proxy);
        let mut ported = HeaderMap::new();
        ported.insert("x-forwarded-for", "[2001:db8::1]:4711".parse().expect("v"));
        assert_eq!(
            edge.client_ip(proxy, &ported),
            "2001:db8::1".parse::<IpAddr>().expect("ip")
        );
        // IPv4-mapped peers (a dual-stack listener) match IPv4 CIDRs.
        let mapped: IpAddr = "::ffff:10.2.3.4".parse().expect("ip");
        assert_eq!(
            edge.client_ip(mapped, &headers),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
    }
}
