//! The public listener (`http.public_bind`): what a shop exposes to the
//! internet, through a tunnel, a port forward or a reverse proxy, so that
//! visitors on its website and in its APPs reach the host (docs/LAN.md,
//! "Visitors").
//!
//! Invariants:
//! - It serves **only** the routes visitors need, listed in
//!   [`PUBLIC_ROUTES`] by their route template: the widget (loader script,
//!   frame and its assets), the visitor REST routes, the WebSocket,
//!   visitor uploads and attachment downloads (by their URL key), and the
//!   health checks. Every other route, agent, admin, ops, metrics, LAN and
//!   the workstation, answers exactly as a path that does not exist: 404
//!   `not_found` "no such route", whatever the method, so nothing there is
//!   visible. A route added later is hidden until it is listed here.
//! - On the WebSocket, only visitors may say `hello`: an agent's token is
//!   refused as an invalid one (4401), so a stolen agent token is no use
//!   there and the listener does not reveal that agents exist.
//! - Everything else is the loopback listener's: the same router, `Host`
//!   check (421), client IP through `http.trusted_proxies`, auth, limits,
//!   origin rules, timeouts and connection slots (`http::serve`).
//! - TLS is optional, with the certificate chain and key the shop
//!   provides (PEM files, e.g. from Let's Encrypt): for a port forward or
//!   a TCP tunnel that does not end TLS itself. Behind a reverse proxy
//!   that ends TLS, plain HTTP on loopback is enough. The files are read
//!   at start; a renewed certificate needs a restart.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::ApiError;

/// The route templates the public listener serves (see the module doc).
pub const PUBLIC_ROUTES: [&str; 15] = [
    "/healthz",
    "/readyz",
    "/widget.js",
    "/widget/frame.html",
    "/widget/assets/{*file}",
    "/api/v1/ws",
    "/api/v1/visitor/sessions",
    "/api/v1/visitor/messages",
    "/api/v1/visitor/read",
    "/api/v1/visitor/config",
    "/api/v1/visitor/tickets",
    "/api/v1/visitor/tickets/{number}",
    "/api/v1/visitor/attachments",
    "/api/v1/visitor/assist/rating",
    "/api/v1/attachments/{id}/{key}",
];

/// Set on every request that came in on the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicListener;

/// Whether the route template `route` is served on the public listener.
pub fn is_public(route: &str) -> bool {
    PUBLIC_ROUTES.contains(&route)
}

/// The middleware of the public router: a matched route not in
/// [`PUBLIC_ROUTES`] is answered as if it did not exist. Unmatched paths
/// go on to the router's own 404.
pub async fn gate(mut request: Request, next: Next) -> Response {
    let hidden = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|route| !is_public(route.as_str()));
    if hidden {
        return ApiError::NotFound("no such route".into()).into_response();
    }
    request.extensions_mut().insert(PublicListener);
    next.run(request).await
}

/// TLS on the public listener, with the shop's certificate.
pub struct PublicTls {
    acceptor: TlsAcceptor,
}

impl PublicTls {
    /// Reads the PEM certificate chain (leaf first) and private key
    /// (PKCS#8, PKCS#1 or SEC1). TLS 1.2 and 1.3, ALPN `http/1.1`.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<PublicTls> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| {
                format!(
                    "cannot read the certificate chain {} (http.public_tls_cert)",
                    cert.display()
                )
            })?;
        if chain.is_empty() {
            anyhow::bail!(
                "{} holds no certificate (http.public_tls_cert)",
                cert.display()
            );
        }
        let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
            format!(
                "cannot read the private key {} (http.public_tls_key)",
                key.display()
            )
        })?;
        let mut config = ServerConfig::builder_with_provider(crate::lan::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("the public certificate and key do not fit together")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(PublicTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

impl super::serve::Handshake for PublicTls {
    type Stream = TlsStream<TcpStream>;
    const ANSWERS_BUSY_IN_CLEAR: bool = false;

    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: std::net::SocketAddr,
    ) -> Option<(Self::Stream, http::Extensions)> {
        match self.acceptor.accept(tcp).await {
            Ok(stream) => Some((stream, http::Extensions::new())),
            Err(error) => {
                tracing::debug!(%peer, %error, "public TLS handshake failed");
                None
            }
        }
    }
}

/// Binds `http.public_bind` and loads its TLS files, if set: a port in
/// use or a bad certificate stops start-up before anything changed.
pub async fn bind(
    config: &crate::Config,
) -> anyhow::Result<Option<(tokio::net::TcpListener, Option<Arc<PublicTls>>)>> {
    let Some(address) = config.http.public_bind else {
        return Ok(None);
    };
    let tls = match (&config.http.public_tls_cert, &config.http.public_tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(PublicTls::load(cert, key)?)),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (http.public_bind)"))?;
    Ok(Some((listener, tls)))
}

/// Serves the public router on `listener` (TLS when `tls` is set) until
/// shutdown; returns the shutdown's deadline (`serve::serve_with`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<PublicTls>>,
    router: axum::Router,
    config: &crate::config::HttpConfig,
    shutdown: tokio_util::sync::CancellationToken,
    slots: Arc<tokio::sync::Semaphore>,
) -> tokio::time::Instant {
    match tls {
        Some(tls) => super::serve::serve_with(listener, tls, router, config, shutdown, slots).await,
        None => {
            let plain = Arc::new(super::serve::Plain);
            super::serve::serve_with(listener, plain, router, config, shutdown, slots).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visitor_routes_are_public() {
        for route in [
            "/api/v1/visitor/sessions",
            "/api/v1/visitor/assist/rating",
            "/api/v1/ws",
            "/widget.js",
            "/api/v1/attachments/{id}/{key}",
        ] {
            assert!(is_public(route), "{route}");
        }
        for route in [
            "/",
            "/index.html",
            "/assets/{*file}",
            "/metrics",
            "/api/v1/auth/login",
            "/api/v1/attachments",
            "/api/v1/conversations",
            "/api/v1/admin/backup",
            "/api/v1/lan/devices",
            "/lan/v1/pair",
            "/api/v1/visitor",
        ] {
            assert!(!is_public(route), "{route}");
        }
    }
}
