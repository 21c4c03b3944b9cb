//! The relay's connections to the host: a connector for hyper-util's
//! pooling client that opens mutual-TLS connections to the **pinned host
//! only**. It ignores the URI it is given (the relay always builds it from
//! the link's address anyway): no request can steer a connection elsewhere,
//! so the relay is never an open proxy.
//!
//! hyper-util's client (`client::legacy`, the one reqwest is built on)
//! keeps idle connections for reuse, retries a request that met a pooled
//! connection the host had closed, and supports HTTP upgrades (the
//! WebSocket); writing that again here would only add bugs.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use super::super::address::HostAddress;
use super::super::client::CONNECT_TIMEOUT;
use super::super::identity::Identity;
use super::super::tls::{self, ConnectError, ServerTrust};

/// Connects to one host, pinned (module doc).
#[derive(Clone)]
pub struct PinnedConnector {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<ClientConfig>,
    address: HostAddress,
    socket: SocketAddr,
    local: Option<IpAddr>,
}

/// Why a connection to the host failed; a pin mismatch stays findable
/// (`lan::tls::pin_mismatch`) through hyper-util's error.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error(transparent)]
    Tls(#[from] ConnectError),
    #[error("cannot reach the host: {0}")]
    Io(#[from] io::Error),
    #[error("the host did not answer in time")]
    Timeout,
}

impl PinnedConnector {
    /// A connector presenting `identity` and accepting only the device
    /// `trust` pins, at `address` (an IP address and port).
    pub fn new(
        identity: &Identity,
        trust: ServerTrust,
        address: HostAddress,
        local: Option<IpAddr>,
    ) -> Result<PinnedConnector, String> {
        let socket = address
            .socket_addr()
            .ok_or_else(|| format!("{address} is a host name; give the host's IP address"))?;
        let mut config = tls::client_config(identity, trust).map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(PinnedConnector {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                address,
                socket,
                local,
            }),
        })
    }

    async fn connect(inner: Arc<Inner>) -> Result<TokioIo<HostStream>, ConnectorError> {
        let connecting = async {
            let tcp = match inner.local {
                Some(local) => {
                    let socket = if inner.socket.is_ipv4() {
                        TcpSocket::new_v4()?
                    } else {
                        TcpSocket::new_v6()?
                    };
                    socket.bind(SocketAddr::new(local, 0))?;
                    socket.connect(inner.socket).await?
                }
                None => TcpStream::connect(inner.socket).await?,
            };
            let _ = tcp.set_nodelay(true);
            let tls = tls::connect(Arc::clone(&inner.config), &inner.address, tcp).await?;
            Ok::<_, ConnectorError>(tls)
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| ConnectorError::Timeout)??;
        Ok(TokioIo::new(HostStream(tls)))
    }
}

impl tower::Service<http::Uri> for PinnedConnector {
    type Response = TokioIo<HostStream>;
    type Error = ConnectorError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _ignored: http::Uri) -> Self::Future {
        Box::pin(Self::connect(Arc::clone(&self.inner)))
    }
}

/// A mutual-TLS stream to the host.
pub struct HostStream(TlsStream<TcpStream>);

impl Connection for HostStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for HostStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for HostStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
