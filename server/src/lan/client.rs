//! A Kefu device talking to a host over mutual TLS: one HTTP/1.1
//! connection (hyper's client over `lan::tls::connect`), and the peer's
//! side of pairing ([`pair`]), which `kefu-server lan pair` runs.
//!
//! Every connection checks the host's key: pinned (the device ID from the
//! LAN state, refused otherwise with a `PinMismatch` naming both IDs) or,
//! for the very first pairing contact only, whatever key signs the
//! handshake, which pairing then pins once an admin approved the device.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::address::HostAddress;
use super::device_id::DeviceId;
use super::identity::Identity;
use super::pairing::{Commitment, Nonce, PairingCode, PairingError, PeerPairing};
use super::state::{HistoryId, PinnedHost};
use super::tls::{self, ConnectError, PeerKey, ServerTrust};

/// Largest response body read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// How long a connection (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why talking to the host failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot reach {address}: {source}")]
    Unreachable {
        address: HostAddress,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is a host name; give the host's IP address and port")]
    NotAnAddress(HostAddress),
    #[error("the host did not answer in time")]
    Timeout,
    #[error("HTTP with the host failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("the host answered {status}: {message}")]
    Refused { status: StatusCode, message: String },
    #[error("the host's answer is not what Kefu sends: {0}")]
    Protocol(String),
    #[error(transparent)]
    Pairing(#[from] PairingError),
    #[error(
        "the host revoked this device; an admin must delete it on the host before it can pair again"
    )]
    Revoked,
}

/// One mutual-TLS HTTP connection to a host.
pub struct DeviceClient {
    address: HostAddress,
    host_key: PeerKey,
    sender: hyper::client::conn::http1::SendRequest<Body>,
    connection: JoinHandle<()>,
}

impl std::fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceClient")
            .field("address", &self.address)
            .field("host", &self.host_key.device_id)
            .finish_non_exhaustive()
    }
}

impl DeviceClient {
    /// Connects to `address` as `identity`, checking the host by `trust`.
    pub async fn connect(
        identity: &Identity,
        trust: ServerTrust,
        address: &HostAddress,
    ) -> Result<DeviceClient, ClientError> {
        Self::connect_from(identity, trust, address, None).await
    }

    /// As [`DeviceClient::connect`], from a given local address (a
    /// multi-homed device, or tests with several loopback addresses).
    pub async fn connect_from(
        identity: &Identity,
        trust: ServerTrust,
        address: &HostAddress,
        local: Option<std::net::IpAddr>,
    ) -> Result<DeviceClient, ClientError> {
        let socket = address
            .socket_addr()
            .ok_or_else(|| ClientError::NotAnAddress(address.clone()))?;
        let mut config = tls::client_config(identity, trust)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connecting = async {
            let unreachable = |source| ClientError::Unreachable {
                address: address.clone(),
                source,
            };
            let tcp = match local {
                Some(local) => {
                    let tcp = if socket.is_ipv4() {
                        tokio::net::TcpSocket::new_v4()
                    } else {
                        tokio::net::TcpSocket::new_v6()
                    }
                    .map_err(unreachable)?;
                    tcp.bind(std::net::SocketAddr::new(local, 0))
                        .map_err(unreachable)?;
                    tcp.connect(socket).await.map_err(unreachable)?
                }
                None => TcpStream::connect(socket).await.map_err(unreachable)?,
            };
            let _ = tcp.set_nodelay(true);
            Ok::<_, ClientError>(tls::connect(Arc::new(config), address, tcp).await?)
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| ClientError::Timeout)??;
        let host_key = tls::peer_key(stream.get_ref().1)
            .ok_or_else(|| ClientError::Protocol("the host sent no certificate".into()))?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let connection = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection to the host ended");
            }
        });
        Ok(DeviceClient {
            address: address.clone(),
            host_key,
            sender,
            connection,
        })
    }

    /// The host's key as its handshake proved it.
    pub fn host_key(&self) -> &PeerKey {
        &self.host_key
    }

    /// Whether the connection has ended (closed by the host, or failed).
    pub fn is_closed(&self) -> bool {
        self.connection.is_finished() || self.sender.is_closed()
    }

    /// Waits until the connection ends.
    pub async fn closed(&mut self) {
        let _ = (&mut self.connection).await;
    }

    /// Sends one request; the answer's status and JSON body (`null` when
    /// empty or not JSON).
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.address.to_string());
        if let Some(token) = bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        }
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.send(request).await
    }

    /// Sends a request made by the caller (its `Host` header included).
    pub async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status();
            let bytes = axum::body::to_bytes(Body::new(response.into_body()), MAX_RESPONSE_BYTES)
                .await
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Ok::<_, ClientError>((status, value))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Sends a request and returns the answer as it arrives, its body not
    /// read (replication's large bodies: the caller bounds what it reads).
    pub async fn send_streaming(
        &mut self,
        request: Request<Body>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let exchange = async {
            self.sender.ready().await?;
            Ok::<_, ClientError>(self.sender.send_request(request).await?)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// A GET request for this connection (its `Host` header set).
    pub fn get_request(&self, path: &str) -> Result<Request<Body>, ClientError> {
        Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, self.address.to_string())
            .body(Body::empty())
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// As [`DeviceClient::request`], but a non-2xx answer is an error.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (status, value) = self.request(method, path, body, None).await?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(ClientError::Refused {
                status,
                message: value["error"]["message"]
                    .as_str()
                    .unwrap_or("no message")
                    .to_owned(),
            })
        }
    }
}

impl Drop for DeviceClient {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// What pairing learnt, for the caller to show and to pin.
#[derive(Debug, Clone)]
pub struct Paired {
    pub host: PinnedHost,
    pub code: PairingCode,
}

/// How [`pair`] reports progress.
pub trait PairingProgress {
    /// The codes are known: show this one and ask to compare it with the
    /// host's screen.
    fn code(&mut self, host: &DeviceId, code: PairingCode);
    /// Still waiting for an admin to approve.
    fn waiting(&mut self) {}
}

fn field<T: std::str::FromStr>(value: &Value, name: &str) -> Result<T, ClientError> {
    value[name]
        .as_str()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("missing or invalid {name}")))
}

/// The peer's side of pairing with the host at `address` (docs/LAN.md,
/// "Pairing"): first contact (or `expected`, a device ID known from a
/// pairing link or mDNS), the commitment, the nonces, the code, then
/// waiting (polling every `poll`) until an admin approved the device.
/// Returns the host to pin; nothing is written here.
pub async fn pair(
    identity: &Identity,
    address: &HostAddress,
    expected: Option<DeviceId>,
    name: Option<&str>,
    poll: Duration,
    progress: &mut impl PairingProgress,
) -> Result<Paired, ClientError> {
    let trust = expected.map_or(ServerTrust::FirstContact, ServerTrust::Pinned);
    let mut client = DeviceClient::connect(identity, trust, address).await?;
    let host = client.host_key().clone();
    let started = client
        .call(Method::POST, "/lan/v1/pair", Some(&json!({"name": name})))
        .await?;
    let commitment: Commitment = field(&started, "commitment")?;
    let announced: DeviceId = field(&started, "host_device_id")?;
    if announced != host.device_id {
        return Err(ClientError::Protocol(format!(
            "the host says it is {announced} but its key is {}",
            host.device_id
        )));
    }
    let peer = PeerPairing::new(commitment);
    let revealed = client
        .call(
            Method::POST,
            "/lan/v1/pair/nonce",
            Some(&json!({"nonce": peer.nonce()})),
        )
        .await?;
    let host_nonce: Nonce = field(&revealed, "nonce")?;
    let code = peer.finish(&host.spki, identity.spki_der(), host_nonce)?;
    progress.code(&host.device_id, code);
    // From now on only this host: a reconnection is pinned to its key.
    let pinned = ServerTrust::Pinned(host.device_id);
    loop {
        if client.is_closed() {
            client = DeviceClient::connect(identity, pinned, address).await?;
        }
        let status = match client.call(Method::GET, "/lan/v1/pair", None).await {
            Ok(status) => status,
            // The host closed an idle connection: connect again.
            Err(ClientError::Http(_)) if client.is_closed() => continue,
            Err(error) => return Err(error),
        };
        match status["status"].as_str() {
            Some("approved") => {
                let history_id: HistoryId = field(&status, "history_id")?;
                return Ok(Paired {
                    host: PinnedHost {
                        address: address.clone(),
                        device_id: host.device_id,
                        history_id: Some(history_id),
                    },
                    code,
                });
            }
            Some("revoked") => return Err(ClientError::Revoked),
            Some("pending") => progress.waiting(),
            Some("none") => {
                return Err(ClientError::Protocol(
                    "the host forgot this pairing (an admin deleted it?); start again".into(),
                ));
            }
            _ => return Err(ClientError::Protocol("unknown pairing status".into())),
        }
        tokio::time::sleep(poll).await;
    }
}
