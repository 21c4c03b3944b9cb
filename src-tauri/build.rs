//! Build script: tauri-build reads the app config, checks the capabilities
//! and generates the permission set of our own IPC commands (only these are
//! callable, and only where a capability grants them).
//!
//! The config lives at the repository root (docs/ARCHITECTURE.md, "Design,
//! as first planned") and tauri-build reads it from the current directory,
//! where it also writes generated schemas and permissions: so it runs in a
//! staging directory inside OUT_DIR holding a copy of the config, and
//! nothing is written into the source tree.
use std::path::{Path, PathBuf};
use std::{env, fs};

/// The shell's IPC commands: every one needs an `allow-<name>` permission in
/// src-tauri/capabilities/ to be callable at all.
const COMMANDS: &[&str] = &[
    "desktop_config",
    "setup_owner",
    "use_port",
    "token_get",
    "token_set",
    "token_clear",
    "set_prefs",
    "report_status",
    "report_unread",
    "notify",
    "open_external",
    "lan_info",
    "lan_discover",
    "lan_host",
    "lan_stop_hosting",
    "lan_join",
    "lan_join_cancel",
    "lan_leave",
    "backup_info",
    "backup_settings",
    "backup_now",
    "backup_restore",
    "backup_restore_cancel",
    "update_info",
    "update_configure",
    "update_check",
    "update_install",
];

fn main() {
    // As in server/build.rs: one static MinGW C++ runtime (RocksDB's
    // `std::call_once` breaks with libstdc++-6.dll beside a static libgcc).
    if env::var("TARGET").is_ok_and(|t| t.ends_with("-windows-gnu")) {
        println!("cargo:rustc-link-arg-bins=-static");
        println!("cargo:rustc-link-arg-bins=-static-libgcc");
        println!("cargo:rustc-link-arg-bins=-static-libstdc++");
    }
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .parent()
        .expect("src-tauri sits in the repository")
        .to_path_buf();
    let stage = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("tauri-stage");
    fs::create_dir_all(&stage).expect("OUT_DIR is writable");
    fs::copy(root.join("tauri.conf.json"), stage.join("tauri.conf.json"))
        .expect("tauri.conf.json at the repository root");
    // tauri-build checks the tauri features listed here against the config;
    // the real manifest inherits from the workspace, which it cannot read
    // from the staging directory, so it gets a bare one.
    fs::write(
        stage.join("Cargo.toml"),
        "[package]\nname = \"kefu-desktop\"\nversion = \"0.0.0\"\n",
    )
    .expect("OUT_DIR is writable");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("tauri.conf.json").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("icons").display());
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("capabilities").display()
    );
    let capabilities: &'static str =
        Box::leak(format!("{}/**/*", manifest.join("capabilities").display()).into_boxed_str());
    env::set_current_dir(&stage).expect("the staging directory exists");
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .capabilities_path_pattern(capabilities)
            .windows_attributes(
                tauri_build::WindowsAttributes::new()
                    .window_icon_path(Path::new(&root).join("icons").join("icon.ico")),
            )
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri-build failed");
}
