//! `kefu-server lan identity`: prints this device's ID, making the identity
//! on first use (and saying so on stderr), the same ID every time after.

use std::process::Command;

use kefu_server::lan::device_id::DeviceId;

fn kefu() -> Command {
    Command::new(kefu_tests::server_bin(env!(
        "CARGO_BIN_EXE_kefu-server-under-test"
    )))
}

fn identity(dir: &std::path::Path) -> std::process::Output {
    kefu()
        .args(["lan", "identity", "--data-dir"])
        .arg(dir)
        .output()
        .expect("run")
}

#[test]
fn lan_identity_creates_once_then_prints_the_same_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = identity(dir.path());
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(stderr.contains("created a new device identity"), "{stderr}");
    let printed = String::from_utf8(first.stdout).expect("utf8");
    let id: DeviceId = printed.trim().parse().expect("a device ID on stdout");
    assert_eq!(printed, format!("{id}\n"), "only the ID on stdout");

    // The ID is the hash of the key in the certificate written to disk.
    let pem = std::fs::read(dir.path().join("lan/identity.crt")).expect("certificate");
    let der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(&pem).expect("pem")
    };
    assert_eq!(DeviceId::from_certificate(&der).expect("id"), id);
    // File modes are Unix's (a Windows build keeps the key in the user's
    // profile, whose ACL is the user's).
    #[cfg(unix)]
    if !kefu_tests::server_is_windows() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("lan/identity.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let second = identity(dir.path());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(!stderr.contains("created"), "{stderr}");
    assert_eq!(String::from_utf8(second.stdout).expect("utf8"), printed);
}

#[test]
fn lan_identity_keeps_the_names_the_server_issued() {
    // The server re-issues the certificate for its LAN names; the CLI only
    // reads the ID and must not re-issue it without them.
    let dir = tempfile::tempdir().expect("tempdir");
    let names = vec!["192.168.9.9".to_owned()];
    let (identity_before, _) =
        kefu_server::lan::Identity::load_or_create(dir.path(), &names).expect("identity");
    let output = identity(dir.path());
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("utf8");
    assert_eq!(printed.trim(), identity_before.device_id().to_string());
    let (after, origin) =
        kefu_server::lan::Identity::load_or_create(dir.path(), &names).expect("identity");
    assert_eq!(origin, kefu_server::lan::identity::IdentityOrigin::Loaded);
    assert_eq!(after.certificate_der(), identity_before.certificate_der());
}

#[test]
fn lan_identity_refuses_a_damaged_key_and_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(identity(dir.path()).status.success());
    let key = dir.path().join("lan/identity.key");
    std::fs::write(&key, b"garbage").expect("damage");
    let output = identity(dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("identity.key"), "{stderr}");
    assert!(stderr.contains("undo every pairing"), "{stderr}");
    assert!(output.stdout.is_empty());
    assert_eq!(std::fs::read(&key).expect("kept"), b"garbage");
}

#[test]
fn lan_identity_with_an_unusable_data_dir_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let output = identity(&file);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot create"), "{stderr}");
}
