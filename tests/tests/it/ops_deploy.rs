//! The operator's files in deploy/ checked with what runs here (issue 19
//! items 4, 5 and the tzdata part of 3): the systemd unit by
//! `systemd-analyze verify` (any stderr is a failure); the Containerfile's
//! and compose file's settings by the server's own configuration loader
//! (no container engine runs here); and business hours' time zones
//! loading with no system time zone database at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn kefu() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kefu-server-under-test"));
    command.env_remove("KEFU_CONFIG").env("RUST_LOG", "warn");
    command
}

/// `systemd-analyze verify` of the unit with ExecStart pointing at the
/// binary under test (verify checks the executable exists); stderr.
fn verify(unit_text: &str) -> Option<(bool, String)> {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|path| Path::new(path).is_file())?;
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("kefu-server.service");
    std::fs::write(&unit, unit_text).expect("write unit");
    let output = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    Some((
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[test]
fn the_systemd_unit_verifies_cleanly() {
    let text = std::fs::read_to_string(repo_file("deploy/systemd/kefu-server.service"))
        .expect("unit file");
    let binary = env!("CARGO_BIN_EXE_kefu-server-under-test");
    assert!(text.contains("ExecStart=/usr/local/bin/kefu-server serve "));
    let text = text.replace("/usr/local/bin/kefu-server", binary);
    let Some((ok, stderr)) = verify(&text) else {
        println!(
            "SKIPPED: systemd-analyze is not installed (scripts/deps.sh kefu_ensure_proxy_deps)"
        );
        return;
    };
    assert!(ok && stderr.trim().is_empty(), "systemd-analyze: {stderr}");
    for setting in [
        "User=kefu",
        "StateDirectory=kefu",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
        "LimitNOFILE=",
    ] {
        assert!(text.contains(setting), "{setting}");
    }
    // The check can fail: a misspelt value is reported on stderr.
    let broken = text.replace("ProtectSystem=strict", "ProtectSystem=stric");
    let (_, stderr) = verify(&broken).expect("ran before");
    assert!(stderr.contains("stric"), "{stderr}");
}

/// `KEY=value` settings of the Containerfile's ENV instruction.
pub(crate) fn containerfile_env(text: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut in_env = false;
    for line in text.lines() {
        let line = line.trim();
        let rest = if let Some(rest) = line.strip_prefix("ENV ") {
            rest
        } else if in_env {
            line
        } else {
            continue;
        };
        let continued = rest.ends_with('\\');
        let pair = rest.trim_end_matches('\\').trim();
        if let Some((key, value)) = pair.split_once('=') {
            env.insert(key.to_owned(), value.to_owned());
        }
        in_env = continued;
    }
    env
}

/// The `environment:` map of compose.yaml's one service (flat
/// `KEY: "value"` lines, as the file is written).
pub(crate) fn compose_env(text: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut indent = None;
    for line in text.lines() {
        if line.trim() == "environment:" {
            indent = Some(line.len() - line.trim_start().len());
            continue;
        }
        let Some(parent) = indent else { continue };
        let own = line.len() - line.trim_start().len();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if own <= parent {
            break;
        }
        let (key, value) = line.trim().split_once(": ").expect("KEY: value");
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        env.insert(key.to_owned(), value.to_owned());
    }
    env
}

#[test]
fn the_container_files_give_a_valid_configuration() {
    let containerfile =
        std::fs::read_to_string(repo_file("deploy/container/Containerfile")).expect("file");
    let compose =
        std::fs::read_to_string(repo_file("deploy/container/compose.yaml")).expect("file");
    let mut env = containerfile_env(&containerfile);
    assert_eq!(env["KEFU_DATA_DIR"], "/var/lib/kefu/data");
    env.extend(compose_env(&compose));
    assert!(env.contains_key("KEFU_HTTP__PUBLIC_BIND"), "{env:?}");
    // Not root, a health check the binary has, the data volume.
    assert!(containerfile.contains("\nUSER kefu\n"));
    assert!(
        containerfile.contains(r#"HEALTHCHECK --interval=30s --timeout=5s --start-period=30s CMD ["kefu-server", "healthcheck"]"#)
    );
    assert!(containerfile.contains(r#"VOLUME ["/var/lib/kefu"]"#));
    assert!(
        compose.contains(r#""127.0.0.1:5338:5338""#),
        "agents on loopback only"
    );
    let help = kefu()
        .args(["healthcheck", "--help"])
        .output()
        .expect("run");
    assert!(help.status.success());

    // The server's loader takes every setting (unknown keys are errors).
    let output = kefu()
        .envs(&env)
        .args(["serve", "--print-config"])
        .output()
        .expect("run");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{env:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        r#"bind = "0.0.0.0:5338""#,
        r#"data_dir = "/var/lib/kefu/data""#,
        r#"public_bind = "0.0.0.0:5340""#,
        r#"public_url = "https://chat.shop.example""#,
        r#""172.16.0.0/12""#,
        r#"dir = "/var/lib/kefu/backups""#,
        r#"log_format = "json""#,
    ] {
        assert!(printed.contains(expected), "{expected} in {printed}");
    }
}

/// Business hours need the IANA database; with none on the system (an
/// empty TZDIR) the copy built into the binary serves.
#[test]
fn time_zones_load_without_a_system_database() {
    let data = tempfile::tempdir().expect("tempdir");
    let empty = tempfile::tempdir().expect("tempdir");
    let output = kefu()
        .env("TZDIR", empty.path())
        .args(["doctor", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run doctor");
    let report = String::from_utf8_lossy(&output.stdout);
    let line = report
        .lines()
        .find(|l| l.starts_with("11. "))
        .unwrap_or_else(|| panic!("no check 11 in {report}"));
    assert!(line.contains("OK"), "{line}");
    assert!(line.contains("built into Kefu"), "{line}");
}
