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
            // Statements on `tokens` only: other tables (LAN devices) have
            // a `revoked_at` of their own.
            ["update tokens", "delete from tokens"]
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

/// The one send path (issue 16): every message enters a thread through
/// `conversations::send`, so that the checks, the dedup scope, the start
/// marker and the ack rule cannot differ between doors. A `Draft` built or
/// a log appended to anywhere else fails this test (the store and its own
/// tests excepted).
#[test]
fn messages_enter_a_thread_only_through_the_send_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["server/src", "src-tauri/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let allowed = [
        root.join("server/src/conversations/send.rs"),
        root.join("server/src/store/messages/mod.rs"),
    ];
    let store = root.join("server/src/store");
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !allowed.contains(f) && !f.starts_with(&store))
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).expect("read");
            let squeezed = text.split_whitespace().collect::<Vec<_>>().join(" ");
            ["Draft {", "log.append(", ".log .append("]
                .into_iter()
                .filter(|needle| squeezed.contains(needle))
                .map(|needle| format!("{}: {needle}", f.display()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "append messages through conversations::send: {offenders:?}"
    );
}

/// Domains are split from their HTTP doors (issue 16): a domain's
/// operations (plain functions that own their SQL and follow-ups) do not
/// import axum; its handlers live in a `routes.rs`. The HTTP plumbing
/// (extractors, the error's response, the WebSocket and LAN transports,
/// static files) may. Every domain is split (issue 16): there is no list
/// of exceptions any more.
#[test]
fn only_routes_and_http_plumbing_import_axum() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let plumbing = [
        "auth.rs",
        "config.rs",
        "error.rs",
        "http/",
        "lan/client.rs",
        "lan/host.rs",
        "lan/peer/",
        "lan/standby.rs",
        "ui.rs",
        "ws/socket.rs",
    ];
    let mut offenders = Vec::new();
    for file in &files {
        let name = file
            .strip_prefix(&root)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(file).expect("read");
        // Test modules may build requests with axum's types.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let imports = code.contains("axum::") || code.contains("use axum");
        let is_door = name.ends_with("routes.rs")
            || plumbing
                .iter()
                .any(|p| name == *p || (p.ends_with('/') && name.starts_with(p)));
        if imports && !is_door {
            offenders.push(name);
        }
    }
    assert!(
        offenders.is_empty(),
        "axum outside a routes.rs (move the handlers there): {offenders:?}"
    );
}

/// The SDK contract lives in the repository and keeps up with the code:
/// every error code the server can answer (`ApiError::code`) is listed in
/// docs/PROTOCOL.md (core or Extensions) and in docs/API.md.
#[test]
fn every_error_code_is_in_the_protocol_and_the_api_reference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let source = std::fs::read_to_string(root.join("server/src/error.rs")).expect("error.rs");
    let body = source
        .split("pub fn code(&self)")
        .nth(1)
        .and_then(|rest| rest.split("\n    }\n").next())
        .expect("ApiError::code in error.rs");
    let codes: Vec<&str> = body
        .split("=> \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(codes.len() >= 12, "found only {codes:?}");
    for doc in ["docs/PROTOCOL.md", "docs/API.md"] {
        let text = std::fs::read_to_string(root.join(doc)).expect(doc);
        let missing: Vec<_> = codes
            .iter()
            .filter(|code| !text.contains(&format!("`{code}`")))
            .collect();
        assert!(missing.is_empty(), "{doc} does not list {missing:?}");
    }
}

/// Docs and comments point at files in this repository: someone who
/// clones Kefu can read every contract they cite.
#[test]
fn no_doc_points_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    for dir in [
        "docs",
        "scripts",
        "server/src",
        "src-tauri/src",
        "tests",
        "bench/src",
        "ui/src",
        ".ci",
    ] {
        text_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let needles = ["../shared", "DESIGN.md", "STYLE.md"];
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("tidy.rs"))
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).ok()?;
            let hits: Vec<_> = needles.iter().filter(|n| text.contains(**n)).collect();
            (!hits.is_empty()).then(|| format!("{}: {hits:?}", f.display()))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "docs pointing outside the repository: {offenders:?}"
    );
    for doc in ["docs/PROTOCOL.md", "docs/API.md", "docs/ARCHITECTURE.md"] {
        assert!(root.join(doc).is_file(), "{doc} is missing");
    }
}

fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "node_modules" || name == "target" || name == "dist" {
            continue;
        }
        if path.is_dir() {
            text_files(&path, out);
        } else if path.extension().is_none_or(|e| {
            ["rs", "md", "ts", "svelte", "js", "mjs", "sh", "toml"]
                .iter()
                .any(|x| e == *x)
        }) {
            out.push(path);
        }
    }
}
