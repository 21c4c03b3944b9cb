//! The device identity: a P-256 key made on first use and a self-signed
//! certificate for it, kept in `data_dir/lan/`:
//!
//! - `identity.key` — the PKCS#8 private key (PEM), mode 0600, written once
//!   and never replaced (losing it changes the device ID and undoes every
//!   pairing, so a damaged key file is an error, never a reason to make a
//!   new one);
//! - `identity.crt` — the certificate (PEM), re-issued with the same key
//!   when the names it must carry change or it nears its end;
//! - `identity.json` — what the certificate was issued for (its names and
//!   end date), so that deciding to re-issue needs no X.509 parser.
//!
//! The certificate's dates and names matter only to browsers (the opt-in
//! LAN workstation, docs/LAN.md); Kefu devices trust the key, by its
//! [`DeviceId`], and ignore both.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::device_id::{DeviceId, spki_of_certificate};
use super::fs::{self as lanfs, Visibility};

/// Directory of the LAN files inside the data dir.
pub const LAN_DIR: &str = "lan";
const KEY_FILE: &str = "identity.key";
const CERT_FILE: &str = "identity.crt";
const META_FILE: &str = "identity.json";

/// Names every certificate carries, besides the caller's.
pub const DEFAULT_NAMES: [&str; 2] = ["localhost", "kefu.local"];
/// At most this many names (IPs and DNS names) in a certificate.
pub const MAX_NAMES: usize = 32;
/// 397 days: within what Apple platforms accept for a TLS server
/// certificate (825 days for any, 398 for public ones), in case a browser
/// on a Mac or an iPad is pointed at the host.
const VALIDITY: Duration = Duration::from_secs(397 * 24 * 3600);
/// Re-issue when less than this is left.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Backdating covers clocks that are a little behind.
const BACKDATE: Duration = Duration::from_secs(24 * 3600);
const MAX_KEY_BYTES: u64 = 16 * 1024;
const MAX_CERT_BYTES: u64 = 64 * 1024;
const MAX_META_BYTES: u64 = 64 * 1024;

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the device key {path} is unreadable ({reason}); it is kept as it is: \
         replacing it would change this device's ID and undo every pairing \
         (restore it from a backup, or move it away to start over as a new device)"
    )]
    DamagedKey { path: PathBuf, reason: String },
    #[error("{0:?} is not an IP address or a DNS name usable in a certificate")]
    InvalidName(String),
    #[error("a certificate carries at most {MAX_NAMES} names")]
    TooManyNames,
    #[error("cannot make the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the certificate does not fit the key: {0}")]
    Mismatch(String),
    #[error("the system clock is out of range: {0}")]
    Clock(String),
}

/// What `load_or_create` had to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityOrigin {
    /// There was no key: a new device identity was made.
    Created,
    /// Key and certificate were loaded as they were.
    Loaded,
    /// The key was loaded and its certificate re-issued (names changed, it
    /// neared its end, or it was missing or damaged). Same device ID.
    Reissued,
}

/// A device's key and certificate, ready for rustls.
pub struct Identity {
    device_id: DeviceId,
    spki: Vec<u8>,
    key_der: Vec<u8>,
    cert: CertificateDer<'static>,
    cert_pem: String,
    names: Vec<String>,
    not_after: u64,
}

impl std::fmt::Debug for Identity {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("device_id", &self.device_id)
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// What the certificate was issued for (`identity.json`).
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Issued {
    names: Vec<String>,
    /// Seconds since the Unix epoch.
    not_after: u64,
}

impl Identity {
    /// Loads the identity in `data_dir/lan/`, making it on first use, and
    /// makes sure its certificate carries `localhost`, `kefu.local` and
    /// `extra_names` (IP addresses or DNS names, e.g. the host's LAN
    /// addresses), re-issuing it with the same key when they changed.
    ///
    /// Blocking file I/O (a few small files, fsynced): from async code call
    /// it in `spawn_blocking`.
    pub fn load_or_create(
        data_dir: &Path,
        extra_names: &[String],
    ) -> Result<(Identity, IdentityOrigin), IdentityError> {
        let names = normalize_names(extra_names)?;
        let dir = data_dir.join(LAN_DIR);
        lanfs::create_private_dir(&dir).map_err(io("create", &dir))?;
        lanfs::remove_stale_temporaries(&dir);
        let key_path = dir.join(KEY_FILE);

        let (key, created) = load_or_create_key(&key_path)?;
        let spki = key.subject_public_key_info();
        let device_id = DeviceId::from_spki(&spki);
        let now = unix_now();

        if !created && let Some(identity) = load_certificate(&dir, &key, &spki, &names, now) {
            return Ok((identity, IdentityOrigin::Loaded));
        }
        let identity = issue(&dir, key, spki, device_id, names, now)?;
        let origin = if created {
            IdentityOrigin::Created
        } else {
            IdentityOrigin::Reissued
        };
        Ok((identity, origin))
    }

    /// Loads the identity with the names its certificate already carries,
    /// making it (with the default names) on first use. For readers such as
    /// `kefu-server lan identity`, which must not drop the names the server
    /// asked for by re-issuing without them.
    pub fn open(data_dir: &Path) -> Result<(Identity, IdentityOrigin), IdentityError> {
        let meta = data_dir.join(LAN_DIR).join(META_FILE);
        let mut names: Vec<String> = lanfs::read_bounded(&meta, MAX_META_BYTES)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Issued>(&bytes).ok())
            .map(|issued| issued.names)
            .unwrap_or_default();
        // A hand-edited file must not stop a reader: keep the valid names.
        names.retain(|name| {
            !DEFAULT_NAMES.contains(&name.as_str())
                && normalize_names(std::slice::from_ref(name)).is_ok()
        });
        names.truncate(MAX_NAMES - DEFAULT_NAMES.len());
        Identity::load_or_create(data_dir, &names)
    }

    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The public key as DER `SubjectPublicKeyInfo` (what pairing codes and
    /// the device ID are computed from).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The certificate as PEM, e.g. for a browser to import.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the certificate DER: the "fingerprint" browsers show.
    /// Unlike the device ID it changes when the certificate is re-issued.
    pub fn certificate_sha256(&self) -> [u8; 32] {
        Sha256::digest(self.cert.as_ref()).into()
    }

    /// Every name in the certificate, normalized (lower case, sorted).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The certificate's end, in seconds since the Unix epoch.
    pub fn not_after_unix(&self) -> u64 {
        self.not_after
    }

    /// The PKCS#8 private key (for [`super::tls`]; never logged or sent).
    pub(crate) fn private_key_der(&self) -> &[u8] {
        &self.key_der
    }

    /// Key and certificate for a rustls config. Checks that they match.
    pub fn certified_key(
        &self,
        provider: &CryptoProvider,
    ) -> Result<Arc<CertifiedKey>, IdentityError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let certified = CertifiedKey::from_der(vec![self.cert.clone()], key, provider)
            .map_err(|e| IdentityError::Mismatch(e.to_string()))?;
        Ok(Arc::new(certified))
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError {
    let path = path.to_path_buf();
    move |source| IdentityError::Io {
        action,
        path,
        source,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn load_or_create_key(path: &Path) -> Result<(KeyPair, bool), IdentityError> {
    // Two rounds at most: if another process creates the key between our
    // "absent" and our create, the second round loads theirs.
    for _ in 0..2 {
        match lanfs::read_bounded(path, MAX_KEY_BYTES) {
            Ok(bytes) => return parse_key(path, &bytes).map(|key| (key, false)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
                return Err(IdentityError::DamagedKey {
                    path: path.to_path_buf(),
                    reason: error.to_string(),
                });
            }
            Err(error) => return Err(io("read", path)(error)),
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let pem = key.serialize_pem();
        if lanfs::create_atomic(path, pem.as_bytes(), Visibility::Private)
            .map_err(io("write", path))?
        {
            return Ok((key, true));
        }
    }
    Err(IdentityError::DamagedKey {
        path: path.to_path_buf(),
        reason: "it appeared and vanished while being created".to_owned(),
    })
}

fn parse_key(path: &Path, bytes: &[u8]) -> Result<KeyPair, IdentityError> {
    let damaged = |reason: String| IdentityError::DamagedKey {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| damaged("not PEM text".to_owned()))?;
    let key = KeyPair::from_pem(text).map_err(|e| damaged(e.to_string()))?;
    if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(damaged("not a P-256 key".to_owned()));
    }
    match lanfs::ensure_private(path) {
        Ok(true) => {
            tracing::warn!(path = %path.display(), "the device key was readable by others; set it back to 0600")
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot check the device key's permissions")
        }
    }
    Ok(key)
}

/// The stored certificate, if it is for this key, carries exactly `names`
/// and is not near its end; `None` means "re-issue".
fn load_certificate(
    dir: &Path,
    key: &KeyPair,
    spki: &[u8],
    names: &[String],
    now: u64,
) -> Option<Identity> {
    let issued: Issued =
        serde_json::from_slice(&lanfs::read_bounded(&dir.join(META_FILE), MAX_META_BYTES).ok()?)
            .ok()?;
    if issued.names != names || issued.not_after < now.saturating_add(RENEW_BEFORE.as_secs()) {
        return None;
    }
    let pem = lanfs::read_bounded(&dir.join(CERT_FILE), MAX_CERT_BYTES).ok()?;
    let pem = String::from_utf8(pem).ok()?;
    let cert = parse_certificate_pem(&pem)?;
    // A certificate for another key (a key restored from a backup beside a
    // newer certificate) is re-issued, never served.
    if spki_of_certificate(&cert).ok()? != spki {
        return None;
    }
    Some(Identity {
        device_id: DeviceId::from_spki(spki),
        spki: spki.to_vec(),
        key_der: key.serialize_der(),
        cert,
        cert_pem: pem,
        names: issued.names,
        not_after: issued.not_after,
    })
}

fn parse_certificate_pem(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

fn issue(
    dir: &Path,
    key: KeyPair,
    spki: Vec<u8>,
    device_id: DeviceId,
    names: Vec<String>,
    now: u64,
) -> Result<Identity, IdentityError> {
    let not_before = now.saturating_sub(BACKDATE.as_secs());
    let not_after = now.saturating_add(VALIDITY.as_secs());
    let mut params = CertificateParams::default();
    params.not_before = datetime(not_before)?;
    params.not_after = datetime(not_after)?;
    let mut subject = DistinguishedName::new();
    // For people reading the certificate in a browser; never read by Kefu.
    subject.push(DnType::CommonName, format!("Kefu {}", device_id.short()));
    params.distinguished_name = subject;
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(name.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // The same certificate serves the LAN listener and, on a peer, the
    // client side of mutual TLS.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key)?;
    let cert_pem = cert.pem();
    let cert = cert.der().clone();

    let cert_path = dir.join(CERT_FILE);
    lanfs::write_atomic(&cert_path, cert_pem.as_bytes(), Visibility::Public)
        .map_err(io("write", &cert_path))?;
    // Written after the certificate: a crash between the two leaves old
    // metadata beside a new certificate, which only causes one more re-issue.
    let issued = Issued {
        names: names.clone(),
        not_after,
    };
    let meta_path = dir.join(META_FILE);
    let meta = serde_json::to_vec_pretty(&issued).map_err(|e| IdentityError::Io {
        action: "encode",
        path: meta_path.clone(),
        source: e.into(),
    })?;
    lanfs::write_atomic(&meta_path, &meta, Visibility::Public).map_err(io("write", &meta_path))?;
    Ok(Identity {
        device_id,
        spki,
        key_der: key.serialize_der(),
        cert,
        cert_pem,
        names,
        not_after,
    })
}

fn datetime(unix: u64) -> Result<time::OffsetDateTime, IdentityError> {
    let seconds = i64::try_from(unix).map_err(|e| IdentityError::Clock(e.to_string()))?;
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|e| IdentityError::Clock(e.to_string()))
}

/// `localhost`, `kefu.local` and the caller's names: checked (IP addresses,
/// or DNS names of letters, digits, hyphens and dots), lower case, sorted,
/// without duplicates, at most [`MAX_NAMES`].
pub fn normalize_names(extra: &[String]) -> Result<Vec<String>, IdentityError> {
    if extra.len() > MAX_NAMES {
        return Err(IdentityError::TooManyNames);
    }
    let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|n| (*n).to_owned()).collect();
    for name in extra {
        let name = name.trim();
        let normal = match name.parse::<IpAddr>() {
            // The canonical text, so `::0:1` and `::1` are one name.
            Ok(ip) => ip.to_string(),
            Err(_) if is_dns_name(name) => name.to_ascii_lowercase(),
            Err(_) => return Err(IdentityError::InvalidName(name.to_owned())),
        };
        names.push(normal);
    }
    names.sort();
    names.dedup();
    if names.len() > MAX_NAMES {
        return Err(IdentityError::TooManyNames);
    }
    Ok(names)
}

/// RFC 1123 host names: 1–253 characters, labels of 1–63 letters, digits
/// and inner hyphens; a trailing dot is not accepted, nor an all-digit last
/// label (so `300.1.1.1` is a bad IP address, not a name).
pub(crate) fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_meta(dir: &Path) -> Issued {
        let bytes = std::fs::read(dir.join(LAN_DIR).join(META_FILE)).expect("meta");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn first_use_creates_then_loads_the_same_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, origin) = Identity::load_or_create(dir.path(), &[]).expect("create");
        assert_eq!(origin, IdentityOrigin::Created);
        assert_eq!(first.names(), ["kefu.local", "localhost"]);
        let (second, origin) = Identity::load_or_create(dir.path(), &[]).expect("load");
        assert_eq!(origin, IdentityOrigin::Loaded);
        assert_eq!(second.device_id(), first.device_id());
        assert_eq!(second.certificate_der(), first.certificate_der());
        assert_eq!(
            DeviceId::from_certificate(second.certificate_der()).expect("id"),
            first.device_id()
        );
        assert_eq!(DeviceId::from_spki(first.spki_der()), first.device_id());
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        Identity::load_or_create(dir.path(), &[]).expect("create");
        let key = dir.path().join(LAN_DIR).join(KEY_FILE);
        let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let lan = dir.path().join(LAN_DIR);
        let mode = std::fs::metadata(&lan).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Loosened by hand: tightened again on load.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        Identity::load_or_create(dir.path(), &[]).expect("load");
        let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn new_names_reissue_the_certificate_and_keep_the_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, _) = Identity::load_or_create(dir.path(), &[]).expect("create");
        let names = vec!["192.168.1.20".to_owned(), "Shop-PC.local".to_owned()];
        let (second, origin) = Identity::load_or_create(dir.path(), &names).expect("reissue");
        assert_eq!(origin, IdentityOrigin::Reissued);
        assert_eq!(second.device_id(), first.device_id());
        assert_ne!(second.certificate_der(), first.certificate_der());
        assert_ne!(second.certificate_sha256(), first.certificate_sha256());
        assert_eq!(
            DeviceId::from_certificate(second.certificate_der()).expect("id"),
            first.device_id()
        );
        assert_eq!(
            second.names(),
            ["192.168.1.20", "kefu.local", "localhost", "shop-pc.local"]
        );
        assert_eq!(read_meta(dir.path()).names, second.names());
        // The same names in another order and case: nothing to do.
        let again = vec!["shop-pc.LOCAL".to_owned(), "192.168.1.20".to_owned()];
        let (_, origin) = Identity::load_or_create(dir.path(), &again).expect("load");
        assert_eq!(origin, IdentityOrigin::Loaded);
    }

    #[test]
    fn the_certificate_carries_the_names() {
        // The SAN bytes are in the DER: an IP as its 4 octets, a name as text.
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["10.1.2.3".to_owned(), "front-desk.local".to_owned()];
        let (identity, _) = Identity::load_or_create(dir.path(), &names).expect("create");
        let der = identity.certificate_der().as_ref();
        let contains = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(contains(&[0x87, 4, 10, 1, 2, 3]), "IP SAN");
        assert!(contains(b"front-desk.local"));
        assert!(contains(b"kefu.local"));
        assert!(contains(b"localhost"));
    }

    #[test]
    fn a_certificate_near_its_end_is_reissued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, _) = Identity::load_or_create(dir.path(), &[]).expect("create");
        let meta_path = dir.path().join(LAN_DIR).join(META_FILE);
        let soon = Issued {
            names: first.names().to_vec(),
            not_after: unix_now() + 24 * 3600,
        };
        std::fs::write(&meta_path, serde_json::to_vec(&soon).expect("json")).expect("write");
        let (second, origin) = Identity::load_or_create(dir.path(), &[]).expect("load");
        assert_eq!(origin, IdentityOrigin::Reissued);
        assert_eq!(second.device_id(), first.device_id());
        assert!(second.not_after_unix() > unix_now() + 300 * 24 * 3600);
    }

    #[test]
    fn a_missing_damaged_or_foreign_certificate_is_reissued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, _) = Identity::load_or_create(dir.path(), &[]).expect("create");
        let cert_path = dir.path().join(LAN_DIR).join(CERT_FILE);

        std::fs::remove_file(&cert_path).expect("rm");
        let (_, origin) = Identity::load_or_create(dir.path(), &[]).expect("load");
        assert_eq!(origin, IdentityOrigin::Reissued);

        std::fs::write(
            &cert_path,
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let (_, origin) = Identity::load_or_create(dir.path(), &[]).expect("load");
        assert_eq!(origin, IdentityOrigin::Reissued);

        // Another device's certificate next to this key.
        let other = tempfile::tempdir().expect("tempdir");
        Identity::load_or_create(other.path(), &[]).expect("other");
        std::fs::copy(other.path().join(LAN_DIR).join(CERT_FILE), &cert_path).expect("copy");
        std::fs::copy(
            other.path().join(LAN_DIR).join(META_FILE),
            dir.path().join(LAN_DIR).join(META_FILE),
        )
        .expect("copy");
        let (again, origin) = Identity::load_or_create(dir.path(), &[]).expect("load");
        assert_eq!(origin, IdentityOrigin::Reissued);
        assert_eq!(again.device_id(), first.device_id());
    }

    #[test]
    fn a_damaged_key_is_an_error_and_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        Identity::load_or_create(dir.path(), &[]).expect("create");
        let key_path = dir.path().join(LAN_DIR).join(KEY_FILE);
        std::fs::write(&key_path, b"not a key").expect("write");
        let error = Identity::load_or_create(dir.path(), &[]).expect_err("damaged");
        assert!(matches!(error, IdentityError::DamagedKey { .. }), "{error}");
        assert!(error.to_string().contains("undo every pairing"), "{error}");
        assert_eq!(std::fs::read(&key_path).expect("kept"), b"not a key");

        std::fs::write(&key_path, vec![b'A'; 20_000]).expect("write");
        let error = Identity::load_or_create(dir.path(), &[]).expect_err("too large");
        assert!(matches!(error, IdentityError::DamagedKey { .. }), "{error}");
    }

    #[test]
    fn the_fixture_key_gives_the_fixture_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lan = dir.path().join(LAN_DIR);
        std::fs::create_dir_all(&lan).expect("mkdir");
        std::fs::write(
            lan.join(KEY_FILE),
            crate::lan::device_id::tests::FIXTURE_KEY_PEM,
        )
        .expect("write");
        let (identity, origin) = Identity::load_or_create(dir.path(), &[]).expect("load");
        assert_eq!(origin, IdentityOrigin::Reissued);
        assert_eq!(
            identity.device_id().to_string(),
            crate::lan::device_id::tests::FIXTURE_ID
        );
    }

    #[test]
    fn names_are_checked() {
        for bad in [
            "",
            "has space",
            "-lead.local",
            "trail-.local",
            "a..b",
            "ünï.local",
            "x.local.",
            "a_b",
            "300.1.1.1",
            "10.0.0",
        ] {
            assert!(
                matches!(
                    normalize_names(&[bad.to_owned()]),
                    Err(IdentityError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
        let long_label = format!("{}.local", "a".repeat(64));
        assert!(normalize_names(&[long_label]).is_err());
        let too_many: Vec<String> = (0..MAX_NAMES + 1).map(|i| format!("10.0.0.{i}")).collect();
        assert!(matches!(
            normalize_names(&too_many),
            Err(IdentityError::TooManyNames)
        ));
        let just_too_many: Vec<String> =
            (0..MAX_NAMES - 1).map(|i| format!("10.0.0.{i}")).collect();
        assert!(matches!(
            normalize_names(&just_too_many),
            Err(IdentityError::TooManyNames)
        ));
        let fits: Vec<String> = (0..MAX_NAMES - 2).map(|i| format!("10.0.0.{i}")).collect();
        assert_eq!(normalize_names(&fits).expect("fits").len(), MAX_NAMES);
        assert_eq!(
            normalize_names(&["::0:1".to_owned(), "::1".to_owned()]).expect("ok"),
            ["::1", "kefu.local", "localhost"]
        );
    }

    #[test]
    fn open_keeps_the_issued_names_and_skips_invalid_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["192.168.1.20".to_owned()];
        let (first, _) = Identity::load_or_create(dir.path(), &names).expect("create");
        let (opened, origin) = Identity::open(dir.path()).expect("open");
        assert_eq!(origin, IdentityOrigin::Loaded);
        assert_eq!(opened.certificate_der(), first.certificate_der());
        // A hand-edited identity.json with a bad name: the good ones stay.
        let meta_path = dir.path().join(LAN_DIR).join(META_FILE);
        let edited = Issued {
            names: vec![
                "192.168.1.20".to_owned(),
                "not a name".to_owned(),
                "kefu.local".to_owned(),
            ],
            not_after: first.not_after_unix(),
        };
        std::fs::write(&meta_path, serde_json::to_vec(&edited).expect("json")).expect("write");
        let (reopened, origin) = Identity::open(dir.path()).expect("open");
        assert_eq!(origin, IdentityOrigin::Reissued);
        assert_eq!(
            reopened.names(),
            ["192.168.1.20", "kefu.local", "localhost"]
        );
        assert_eq!(reopened.device_id(), first.device_id());
    }

    #[test]
    fn the_certified_key_is_usable_by_rustls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (identity, _) = Identity::load_or_create(dir.path(), &[]).expect("create");
        let provider = crate::lan::tls::provider();
        let certified = identity.certified_key(&provider).expect("certified");
        assert!(certified.keys_match().is_ok());
    }
}
