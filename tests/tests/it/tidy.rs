//! House rules that are cheap to check: every source file of the server
//! (and of the desktop shell)
//! starts with a `//!` doc saying what it is for (see docs/ARCHITECTURE.md).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_has_a_doc_comment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["server/src", "tests/src", "src-tauri/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 10, "found only {files:?}");
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .expect("read")
                .trim_start()
                .starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! module doc: {missing:?}"
    );
}

/// Every token revocation goes through `auth::sessions`, which also closes
/// the token's WebSockets (issue 23: a logout that forgot to left its
/// socket streaming). SQL that revokes or deletes tokens anywhere else
/// fails this test.
#[test]
fn tokens_are_revoked_only_through_auth_sessions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["server/src", "src-tauri/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let allowed = root.join("server/src/auth/sessions.rs");
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| **f != allowed)
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).expect("read");
            let squeezed = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let lower = squeezed.to_ascii_lowercase();
            ["update tokens", "delete from tokens", "revoked_at ="]
                .into_iter()
                .filter(|needle| lower.contains(needle))
                .map(|needle| format!("{}: {needle}", f.display()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "revoke tokens through auth::sessions::Revocation: {offenders:?}"
    );
}
