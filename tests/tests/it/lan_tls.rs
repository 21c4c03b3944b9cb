//! LAN TLS between real devices over real loopback sockets: a host's
//! listener (`lan::tls::server_config`) and peers (`client_config`), with
//! identities made in temp data dirs, against impostors: a new key at the
//! host's address, a certificate that spells the pinned ID but has another
//! key, and a man in the middle that replays the host's real certificate
//! but cannot sign with its key.

use std::net::SocketAddr;
use std::sync::Arc;

use kefu_server::lan::HostAddress;
use kefu_server::lan::device_id::DeviceId;
use kefu_server::lan::identity::Identity;
use kefu_server::lan::pairing::{HostPairing, PeerPairing};
use kefu_server::lan::tls::{self, ConnectError, ServerTrust};
use kefu_tests::WAIT;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

struct Device {
    _dir: tempfile::TempDir,
    identity: Identity,
}

fn device() -> Device {
    let dir = tempfile::tempdir().expect("tempdir");
    let (identity, _) = Identity::load_or_create(dir.path(), &[]).expect("identity");
    Device {
        _dir: dir,
        identity,
    }
}

/// What the listener saw of one connection.
#[derive(Debug)]
enum Accepted {
    /// The handshake finished; the client's device ID if it had a
    /// certificate; then one line was echoed.
    Ok(Option<DeviceId>),
    Refused(String),
}

/// Accepts one TLS connection on a loopback port with `config`, echoes a
/// line if the handshake succeeds, and reports.
async fn listen_once(config: ServerConfig) -> (HostAddress, JoinHandle<Accepted>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut stream = match acceptor.accept(tcp).await {
            Ok(stream) => stream,
            Err(error) => return Accepted::Refused(error.to_string()),
        };
        let device = tls::peer_device_id(stream.get_ref().1);
        let mut buffer = [0u8; 5];
        if let Err(error) = stream.read_exact(&mut buffer).await {
            return Accepted::Refused(error.to_string());
        }
        if let Err(error) = stream.write_all(&buffer).await {
            return Accepted::Refused(error.to_string());
        }
        let _ = stream.shutdown().await;
        Accepted::Ok(device)
    });
    (HostAddress::from(addr), task)
}

/// Connects with `config`, sends a line and reads the echo.
async fn talk(config: ClientConfig, address: &HostAddress) -> Result<tls::PeerKey, ConnectError> {
    let socket = address.socket_addr().expect("ip address");
    let tcp = TcpStream::connect(socket).await.expect("connect");
    let mut stream = tls::connect(Arc::new(config), address, tcp).await?;
    let host = tls::peer_key(stream.get_ref().1).expect("the host's key");
    stream
        .write_all(b"hello")
        .await
        .map_err(ConnectError::Handshake)?;
    let mut buffer = [0u8; 5];
    stream
        .read_exact(&mut buffer)
        .await
        .map_err(ConnectError::Handshake)?;
    assert_eq!(&buffer, b"hello");
    Ok(host)
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("in time")
}

#[tokio::test]
async fn a_pinned_host_is_reached_and_sees_the_peers_device_id() {
    let (host, peer) = (device(), device());
    let (address, server) = listen_once(tls::server_config(&host.identity).expect("server")).await;
    let client = tls::client_config(
        &peer.identity,
        ServerTrust::Pinned(host.identity.device_id()),
    )
    .expect("client");
    let seen = within(talk(client, &address))
        .await
        .expect("pinned host accepted");
    assert_eq!(seen.device_id, host.identity.device_id());
    match within(server).await.expect("task") {
        Accepted::Ok(Some(id)) => assert_eq!(id, peer.identity.device_id()),
        other => panic!("server saw {other:?}"),
    }
}

#[tokio::test]
async fn a_certificate_reissued_for_new_names_is_still_the_pinned_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = Identity::load_or_create(dir.path(), &[]).expect("identity");
    let (reissued, _) =
        Identity::load_or_create(dir.path(), &["192.168.7.7".to_owned()]).expect("reissue");
    assert_ne!(first.certificate_der(), reissued.certificate_der());
    let peer = device();
    let (address, server) = listen_once(tls::server_config(&reissued).expect("server")).await;
    let client =
        tls::client_config(&peer.identity, ServerTrust::Pinned(first.device_id())).expect("client");
    within(talk(client, &address))
        .await
        .expect("same key, same device");
    assert!(matches!(
        within(server).await.expect("task"),
        Accepted::Ok(Some(_))
    ));
}

#[tokio::test]
async fn a_new_key_at_the_hosts_address_is_refused_naming_both_ids() {
    let (host, impostor, peer) = (device(), device(), device());
    let (address, server) =
        listen_once(tls::server_config(&impostor.identity).expect("server")).await;
    let client = tls::client_config(
        &peer.identity,
        ServerTrust::Pinned(host.identity.device_id()),
    )
    .expect("client");
    let error = within(talk(client, &address)).await.expect_err("refused");
    let ConnectError::PinMismatch(mismatch) = &error else {
        panic!("expected a pin mismatch, got {error:?}");
    };
    assert_eq!(mismatch.expected, host.identity.device_id());
    assert_eq!(mismatch.presented, impostor.identity.device_id());
    let message = error.to_string();
    assert!(
        message.contains(&host.identity.device_id().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&impostor.identity.device_id().to_string()),
        "{message}"
    );
    // The impostor never got a working connection.
    assert!(matches!(
        within(server).await.expect("task"),
        Accepted::Refused(_)
    ));
}

/// A server config for a certificate and key made by hand (rcgen).
pub(crate) fn server_config_for(
    cert: CertificateDer<'static>,
    key: &rcgen::KeyPair,
) -> ServerConfig {
    ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("config")
}

#[tokio::test]
async fn a_certificate_that_spells_the_pinned_id_but_has_another_key_is_refused() {
    let (host, peer) = (device(), device());
    let pinned = host.identity.device_id();
    // The pinned ID everywhere a careless verifier might look: subject CN,
    // a DNS SAN (lower case, no dashes, a valid label) and the org name.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let undashed = pinned.to_string().replace('-', "").to_lowercase();
    let mut params =
        rcgen::CertificateParams::new(vec![format!("{undashed}.local"), "kefu.local".to_owned()])
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, pinned.to_string());
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, pinned.to_string());
    let lookalike = params.self_signed(&key).expect("cert");
    let der = lookalike.der().clone();
    assert!(
        der.windows(undashed.len())
            .any(|w| w == undashed.as_bytes()),
        "the ID text is in the certificate"
    );

    let (address, _server) = listen_once(server_config_for(der, &key)).await;
    let client = tls::client_config(&peer.identity, ServerTrust::Pinned(pinned)).expect("client");
    match within(talk(client, &address)).await {
        Err(ConnectError::PinMismatch(mismatch)) => {
            assert_eq!(mismatch.expected, pinned);
            assert_ne!(mismatch.presented, pinned);
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
}

/// Presents a fixed certificate with a fixed signing key, whether or not
/// they match: `CertifiedKey::new` does not check (unlike
/// `with_single_cert`), which is how a man in the middle that copied the
/// host's certificate would look.
#[derive(Debug)]
struct Replay(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Replay {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

impl rustls::client::ResolvesClientCert for Replay {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// The host's real certificate with another key.
pub(crate) fn replayed(certificate: &CertificateDer<'static>) -> Arc<CertifiedKey> {
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let signing = tls::provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            other.serialize_der(),
        )))
        .expect("signing key");
    let certified = CertifiedKey::new(vec![certificate.clone()], signing);
    assert!(
        certified.keys_match().is_err(),
        "a mismatched pair, on purpose"
    );
    Arc::new(certified)
}

pub(crate) fn mitm_server_config(certified: Arc<CertifiedKey>) -> ServerConfig {
    ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Replay(certified)))
}

/// The defect the issue warns about: a verifier that compares the
/// certificate's key hash and skips the handshake signature. Used only to
/// prove the man in the middle below would fool it.
#[derive(Debug)]
pub(crate) struct HashOnly(pub(crate) DeviceId);

impl ServerCertVerifier for HashOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if DeviceId::from_certificate(end_entity).map_err(|e| e.0)? == self.0 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("other key".to_owned()))
        }
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn a_man_in_the_middle_with_the_hosts_certificate_but_not_its_key_is_refused() {
    let (host, peer) = (device(), device());
    let pinned = host.identity.device_id();

    // Control: the impostor does fool a hash-only verifier, so the refusal
    // below is the signature check's doing, not an accident of the setup.
    let (address, server) = listen_once(mitm_server_config(replayed(
        host.identity.certificate_der(),
    )))
    .await;
    let naive = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(HashOnly(pinned)))
        .with_no_client_auth();
    let fooled = within(talk(naive, &address))
        .await
        .expect("a hash-only check is fooled");
    assert_eq!(fooled.device_id, pinned);
    assert!(matches!(
        within(server).await.expect("task"),
        Accepted::Ok(None)
    ));

    // Kefu's verifier: refused, and not as a pin mismatch (the hash does
    // match): as a bad handshake signature.
    let (address, server) = listen_once(mitm_server_config(replayed(
        host.identity.certificate_der(),
    )))
    .await;
    let client = tls::client_config(&peer.identity, ServerTrust::Pinned(pinned)).expect("client");
    match within(talk(client, &address)).await {
        Err(ConnectError::Handshake(error)) => {
            let message = error.to_string().to_lowercase();
            assert!(message.contains("signature"), "{message}");
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    assert!(matches!(
        within(server).await.expect("task"),
        Accepted::Refused(_)
    ));

    // First contact accepts any key, but not a signature by another key.
    let (address, _server) = listen_once(mitm_server_config(replayed(
        host.identity.certificate_der(),
    )))
    .await;
    let client = tls::client_config(&peer.identity, ServerTrust::FirstContact).expect("client");
    assert!(matches!(
        within(talk(client, &address)).await,
        Err(ConnectError::Handshake(_))
    ));
}

#[tokio::test]
async fn a_client_replaying_a_peers_certificate_without_its_key_is_refused() {
    let (host, peer) = (device(), device());
    let (address, server) = listen_once(tls::server_config(&host.identity).expect("server")).await;
    let impostor = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(HashOnly(host.identity.device_id())))
        .with_client_cert_resolver(Arc::new(Replay(replayed(peer.identity.certificate_der()))));
    let result = within(talk(impostor, &address)).await;
    assert!(result.is_err(), "{result:?}");
    match within(server).await.expect("task") {
        Accepted::Refused(message) => {
            assert!(message.to_lowercase().contains("signature"), "{message}")
        }
        Accepted::Ok(device) => panic!("accepted as {device:?}"),
    }
}

#[tokio::test]
async fn a_client_without_a_certificate_is_accepted_without_a_device_id() {
    let host = device();
    let (address, server) = listen_once(tls::server_config(&host.identity).expect("server")).await;
    // A browser-like client: no certificate (it trusts the host by hash
    // here, to get through; what matters is the server's side).
    let browser = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(HashOnly(host.identity.device_id())))
        .with_no_client_auth();
    within(talk(browser, &address)).await.expect("accepted");
    assert!(matches!(
        within(server).await.expect("task"),
        Accepted::Ok(None)
    ));
}

#[tokio::test]
async fn first_contact_records_the_host_and_both_sides_compute_the_same_code() {
    let (host, peer) = (device(), device());
    let (address, server) = listen_once(tls::server_config(&host.identity).expect("server")).await;
    let client = tls::client_config(&peer.identity, ServerTrust::FirstContact).expect("client");
    let seen_host = within(talk(client, &address)).await.expect("first contact");
    assert_eq!(seen_host.device_id, host.identity.device_id());
    assert_eq!(seen_host.spki, host.identity.spki_der());
    let Accepted::Ok(Some(seen_peer)) = within(server).await.expect("task") else {
        panic!("no client certificate seen");
    };
    assert_eq!(seen_peer, peer.identity.device_id());

    // Each side computes the code from the keys it saw over TLS.
    let host_side = HostPairing::new(host.identity.spki_der());
    let peer_side = PeerPairing::new(host_side.commitment());
    let (host_nonce, host_code) = host_side.reveal(
        host.identity.spki_der(),
        peer.identity.spki_der(),
        peer_side.nonce(),
    );
    let peer_code = peer_side
        .finish(&seen_host.spki, peer.identity.spki_der(), host_nonce)
        .expect("commitment holds");
    assert_eq!(host_code, peer_code);
}
