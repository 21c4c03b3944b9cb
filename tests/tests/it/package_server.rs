//! The release binary's packaging (issue 19 item 9), scripts/package-server
//! run on this build's binary: the shipped binary has no symbols and no
//! debug info, still runs, and names the separate debug file through its
//! `.gnu_debuglink`, from which binutils resolves an address of the
//! stripped binary to a Kefu function and its source line.

use std::path::Path;
use std::process::Command;

fn sections(file: &Path) -> String {
    let output = Command::new("readelf")
        .arg("-S")
        .arg("-W")
        .arg(file)
        .output()
        .expect("readelf");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn package_server_splits_the_debug_info_out() {
    if Command::new("objcopy").arg("--version").output().is_err() {
        println!("SKIPPED: binutils (objcopy) is not installed");
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/package-server");
    let output = Command::new("bash")
        .arg(&script)
        .arg("--no-build")
        .arg(out.path())
        .env(
            "KEFU_PACKAGE_BINARY",
            env!("CARGO_BIN_EXE_kefu-server-under-test"),
        )
        .output()
        .expect("run package-server");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("(stripped)"), "{report}");
    let binary = out.path().join("kefu-server");
    let debug = out.path().join("kefu-server.debug");

    let shipped = sections(&binary);
    assert!(shipped.contains(".gnu_debuglink"), "{shipped}");
    for absent in [".debug_info", ".debug_line", ".symtab"] {
        assert!(!shipped.contains(absent), "{absent} left in:\n{shipped}");
    }
    let kept = sections(&debug);
    for present in [".debug_line", ".symtab"] {
        assert!(kept.contains(present), "{present} missing:\n{kept}");
    }
    let built = std::fs::metadata(env!("CARGO_BIN_EXE_kefu-server-under-test"))
        .expect("binary")
        .len();
    let stripped = std::fs::metadata(&binary).expect("stripped").len();
    assert!(stripped < built, "{stripped} < {built}");

    // An address of a Kefu function, resolved from the stripped binary
    // through the debug link.
    let symbols = Command::new("nm").arg(&debug).output().expect("nm");
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    let address = symbols
        .lines()
        .find(|l| l.contains(" T ") && l.contains("binary_schema_version"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no binary_schema_version in the debug file's symbols"))
        .to_owned();
    let resolved = Command::new("addr2line")
        .args(["-f", "-C", "-e"])
        .arg(&binary)
        .arg(format!("0x{address}"))
        .output()
        .expect("addr2line");
    let resolved = String::from_utf8_lossy(&resolved.stdout);
    assert!(
        resolved.contains("kefu_server::ops::binary_schema_version")
            && resolved.contains("ops/mod.rs:"),
        "{resolved}"
    );

    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .expect("run the stripped binary");
    assert!(version.status.success());
    let sums = std::fs::read_to_string(out.path().join("SHA256SUMS")).expect("sums");
    assert_eq!(sums.lines().count(), 2, "{sums}");
}
