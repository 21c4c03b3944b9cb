//! TLS between Kefu devices (rustls 0.23, `ring` provider, TLS 1.3 only).
//!
//! Trust is in keys, not in certificate authorities: every device has a
//! self-signed certificate ([`Identity`]) and is known by its
//! [`DeviceId`], the hash of its public key.
//!
//! - The **host** presents its identity and asks for a client certificate
//!   without requiring one ([`server_config`]). At the TLS layer it accepts
//!   any well-formed self-signed client certificate whose key signed the
//!   handshake; *which* devices may do what is the application's decision,
//!   made on [`peer_device_id`] against the allowlist (approved, not
//!   revoked). A client without a certificate (a browser) gets through TLS
//!   with no device ID.
//! - A **peer** presents its identity ([`client_config`]) and checks the
//!   host's: either against a pinned device ID ([`ServerTrust::Pinned`]),
//!   refusing any other key with a [`PinMismatch`] that names both IDs, or,
//!   on the very first pairing contact only, accepting the key it is shown
//!   ([`ServerTrust::FirstContact`]) so that pairing can compare codes and
//!   pin it (read it with [`peer_key`] after the handshake).
//!
//! Both verifiers check the handshake signature with the certificate's key
//! (`rustls::crypto::verify_tls13_signature` with the provider's
//! algorithms). Comparing only the hash of a certificate is not enough:
//! anyone can copy a host's certificate, and only its key's signature on
//! this handshake proves the other end holds the key. Host names and
//! validity dates are not checked: the key is the identity (addresses
//! change, clocks drift), as in Syncthing.
//!
//! Session resumption is off on both sides: every connection proves its key
//! again, so a session made under one trust decision (first contact) can
//! never be resumed under another, and revocation never meets a cached
//! session. A P-256 handshake costs well under a millisecond.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    OtherError, ServerConfig, SignatureScheme,
};
use tokio::net::TcpStream;

use super::address::{Host, HostAddress};
use super::device_id::{DeviceId, spki_of_certificate};
use super::identity::{Identity, IdentityError};

/// The crypto provider for everything LAN: `ring` (no cmake or NASM, cross-
/// compiles to Windows with mingw), the same one rcgen uses.
///
/// rustls 0.23.48 marks it deprecated because ring has no post-quantum key
/// exchange (X25519MLKEM768 needs aws-lc-rs): the key exchange is X25519
/// or P-256, so a LAN session recorded today could be read by a future
/// quantum computer. Accepted for now (docs/LAN.md, threat model); moving
/// to aws-lc-rs is the remedy once the Windows build can take it.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How a peer decides whether the host it reached is the right one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerTrust {
    /// Only the device with this ID (its key signed the handshake).
    Pinned(DeviceId),
    /// Any device whose key signed the handshake: the first pairing contact,
    /// before the codes were compared. Never for anything else.
    FirstContact,
}

/// The host presented another key than the pinned one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the host's key has changed: expected device {expected}, but it presented device {presented}; \
     if the host was reinstalled or replaced, pair again, otherwise someone may be impersonating it"
)]
pub struct PinMismatch {
    pub expected: DeviceId,
    pub presented: DeviceId,
}

/// A certificate chain Kefu does not make.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a Kefu device presents one self-signed certificate, without a chain")]
pub struct UnexpectedChain;

/// Why a TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

/// Why `connect` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The host is not the pinned device (see [`PinMismatch`]).
    #[error(transparent)]
    PinMismatch(PinMismatch),
    /// Anything else: the network, a TLS alert, a bad certificate.
    #[error("TLS handshake with the host failed: {0}")]
    Handshake(#[source] io::Error),
}

/// The config for a host's LAN listener: presents `identity`, offers client
/// authentication without requiring it, TLS 1.3 only. ALPN is left empty
/// for the caller to set.
pub fn server_config(identity: &Identity) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let verifier = AnyDeviceClientVerifier {
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(
            vec![identity.certificate_der().clone()],
            private_key(identity),
        )?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The config for a peer connecting to a host: presents `identity` as its
/// client certificate and checks the host by `trust`.
pub fn client_config(identity: &Identity, trust: ServerTrust) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let verifier = DeviceServerVerifier {
        trust,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(
            vec![identity.certificate_der().clone()],
            private_key(identity),
        )?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

fn private_key(identity: &Identity) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        identity.private_key_der().to_vec(),
    ))
}

/// A device's public key as the other end of a connection showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerKey {
    pub device_id: DeviceId,
    /// DER `SubjectPublicKeyInfo`, for [`super::pairing`].
    pub spki: Vec<u8>,
}

/// The key of the other end of a finished handshake: on a host, the
/// client's (None for a client without a certificate); on a peer, the
/// host's. Works on `rustls::ServerConnection` and `ClientConnection`
/// (`tls_stream.get_ref().1`).
pub fn peer_key(connection: &CommonState) -> Option<PeerKey> {
    let cert = connection.peer_certificates()?.first()?;
    let spki = spki_of_certificate(cert).ok()?;
    Some(PeerKey {
        device_id: DeviceId::from_spki(&spki),
        spki,
    })
}

/// The device ID of the other end (see [`peer_key`]): what the host's
/// application layer checks against its allowlist.
pub fn peer_device_id(connection: &CommonState) -> Option<DeviceId> {
    peer_key(connection).map(|key| key.device_id)
}

/// Finds a [`PinMismatch`] in an error as tokio-rustls or rustls report
/// it (an `io::Error` wrapping a `rustls::Error` wrapping it), so callers
/// match on the type, never on message text.
pub fn pin_mismatch<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a PinMismatch> {
    let mut current: Option<&'a (dyn StdError + 'static)> = Some(error);
    // Bounded walk: error chains are short, a cyclic one must not hang us.
    for _ in 0..16 {
        let error = current?;
        if let Some(found) = error.downcast_ref::<PinMismatch>() {
            return Some(found);
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner)))) =
            error.downcast_ref::<rustls::Error>()
        {
            let inner: &(dyn StdError + 'static) = inner.as_ref();
            if let Some(found) = inner.downcast_ref::<PinMismatch>() {
                return Some(found);
            }
        }
        // `io::Error::source` skips the error it wraps; `get_ref` does not.
        current = match error.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => error.source(),
        };
    }
    None
}

/// The TLS server name for an address. Not checked by Kefu's verifiers
/// (the key is the identity); an IP address sends no SNI at all.
pub fn server_name(address: &HostAddress) -> ServerName<'static> {
    match address.host() {
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        // A checked host name is a valid DNS name, so this never falls
        // back; if it did, the name is not used for trust anyway.
        Host::Name(name) => ServerName::try_from(name.clone())
            .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())),
    }
}

/// TLS handshake as a peer over a connected TCP stream, with errors a
/// caller can match on. No timeout of its own: wrap it in
/// `tokio::time::timeout`.
pub async fn connect(
    config: Arc<ClientConfig>,
    address: &HostAddress,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
    tokio_rustls::TlsConnector::from(config)
        .connect(server_name(address), tcp)
        .await
        .map_err(|error| match pin_mismatch(&error) {
            Some(mismatch) => ConnectError::PinMismatch(mismatch.clone()),
            None => ConnectError::Handshake(error),
        })
}

fn other_certificate_error(error: impl StdError + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

/// Parses the certificate far enough to read its key; a chain is refused.
fn check_single_certificate(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<DeviceId, rustls::Error> {
    if !intermediates.is_empty() {
        return Err(other_certificate_error(UnexpectedChain));
    }
    DeviceId::from_certificate(end_entity).map_err(|error| error.0)
}

/// The host's client verifier (module doc).
#[derive(Debug)]
struct AnyDeviceClientVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyDeviceClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_single_certificate(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The peer's server verifier (module doc).
#[derive(Debug)]
struct DeviceServerVerifier {
    trust: ServerTrust,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for DeviceServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = check_single_certificate(end_entity, intermediates)?;
        match self.trust {
            ServerTrust::Pinned(expected) if expected != presented => {
                Err(other_certificate_error(PinMismatch {
                    expected,
                    presented,
                }))
            }
            ServerTrust::Pinned(_) | ServerTrust::FirstContact => {
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_mismatch_is_found_through_io_and_rustls_errors() {
        let mismatch = PinMismatch {
            expected: DeviceId::from_bytes([1; 32]),
            presented: DeviceId::from_bytes([2; 32]),
        };
        let rustls_error = other_certificate_error(mismatch.clone());
        assert_eq!(pin_mismatch(&rustls_error), Some(&mismatch));
        let io_error = io::Error::new(io::ErrorKind::InvalidData, rustls_error);
        assert_eq!(pin_mismatch(&io_error), Some(&mismatch));
        let message = mismatch.to_string();
        assert!(
            message.contains(&mismatch.expected.to_string()),
            "{message}"
        );
        assert!(
            message.contains(&mismatch.presented.to_string()),
            "{message}"
        );
        // Text that merely looks like one is not one.
        let lookalike = io::Error::other(message);
        assert_eq!(pin_mismatch(&lookalike), None);
        let other = other_certificate_error(UnexpectedChain);
        assert_eq!(pin_mismatch(&other), None);
    }

    #[test]
    fn server_names_for_addresses() {
        let ip: HostAddress = "10.0.0.1:5339".parse().expect("ip");
        assert!(matches!(server_name(&ip), ServerName::IpAddress(_)));
        let name: HostAddress = "shop.local:5339".parse().expect("name");
        assert_eq!(server_name(&name).to_str(), "shop.local");
    }
}
