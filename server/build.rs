//! Builds the web UI (`ui/`: the agent workstation and the visitor widget)
//! so that every `kefu-server` binary embeds it (crate::ui, rust-embed):
//! nobody ships a server without its UI.
//!
//! Cargo reruns this script only when a file under `ui/` that the build
//! reads has changed. It runs `npm ci` when `node_modules` is missing or
//! older than the lock file, then `npm run build` (into `ui/dist`, as a
//! developer's own build would), copies the result to `OUT_DIR/ui`, and
//! gzips the text files there so the server can send them compressed
//! without compressing per request.
//!
//! `PREBUILT_UI_DIST=/path/to/dist` embeds an already built UI instead (for
//! packagers that build `ui/` in a separate step). Neither variable starts
//! with `KEFU_`: cargo also sets `rustc-env` variables when it runs the
//! binary or its tests, and the server reads every `KEFU_*` variable as
//! configuration (unknown keys are errors).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs, io};

fn main() {
    static_mingw_runtime();
    println!("cargo:rerun-if-env-changed=PREBUILT_UI_DIST");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("ui");
    let dist = match env::var_os("PREBUILT_UI_DIST") {
        Some(dist) => {
            let dist = PathBuf::from(dist);
            println!("cargo:rerun-if-changed={}", dist.display());
            copy_dir(&dist, &out)
                .unwrap_or_else(|e| fail(&format!("PREBUILT_UI_DIST={}: {e}", dist.display())));
            out
        }
        None => {
            let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
            let ui = manifest.join("..").join("ui");
            if !ui.join("package.json").is_file() {
                fail(&format!(
                    "the web UI sources are not at {} (build from the repository, or set PREBUILT_UI_DIST)",
                    ui.display()
                ));
            }
            // Only paths that exist: cargo reruns a build script on every
            // build while a path it watches is missing.
            for input in [
                "src",
                "index.html",
                "widget",
                "scripts",
                "package.json",
                "package-lock.json",
                "vite.config.ts",
                "vite.frame.config.ts",
                "vite.loader.config.ts",
                "svelte.config.js",
                "tsconfig.json",
            ] {
                println!("cargo:rerun-if-changed={}", ui.join(input).display());
            }
            build_ui(&ui, &out);
            out
        }
    };
    for required in ["index.html", "widget.js", "widget/frame.html"] {
        if !dist.join(required).is_file() {
            fail(&format!(
                "the UI build has no {required} in {}",
                dist.display()
            ));
        }
    }
    gzip_tree(&dist).unwrap_or_else(|e| fail(&format!("gzip of the UI failed: {e}")));
    println!("cargo:rustc-env=EMBEDDED_UI_DIR={}", dist.display());
}

fn build_ui(ui: &Path, out: &Path) {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let stale_modules = match (
        fs::metadata(ui.join("node_modules/.package-lock.json")).and_then(|m| m.modified()),
        fs::metadata(ui.join("package-lock.json")).and_then(|m| m.modified()),
    ) {
        (Ok(installed), Ok(lock)) => installed < lock,
        _ => true,
    };
    if stale_modules {
        run(
            Command::new(npm)
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(ui),
            "npm ci",
        );
    }
    run(
        Command::new(npm).args(["run", "build"]).current_dir(ui),
        "npm run build",
    );
    copy_dir(&ui.join("dist"), out)
        .unwrap_or_else(|e| fail(&format!("copying ui/dist to {}: {e}", out.display())));
}

fn run(command: &mut Command, what: &str) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!(
            "`{what}` in ui/ failed ({status}); see the output above"
        )),
        Err(e) => fail(&format!(
            "could not run `{what}` ({e}). kefu-server embeds its web UI, and building it \
             needs Node.js >= 20.19 with npm on PATH (or set PREBUILT_UI_DIST to a built ui/dist)"
        )),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    panic!("{message}");
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    if to.exists() {
        fs::remove_dir_all(to)?;
    }
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Writes `name.gz` beside each text file worth compressing.
fn gzip_tree(dir: &Path) -> io::Result<()> {
    use std::io::Write;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            gzip_tree(&path)?;
            continue;
        }
        let compressible = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("js" | "css" | "html" | "svg" | "json" | "txt")
        );
        if !compressible {
            continue;
        }
        let raw = fs::read(&path)?;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&raw)?;
        let zipped = encoder.finish()?;
        let mut gz = path.clone().into_os_string();
        gz.push(".gz");
        fs::write(gz, zipped)?;
    }
    Ok(())
}

/// The Windows GNU target (MinGW-w64): link libstdc++, libgcc and
/// winpthreads statically into the binaries. Rust links libgcc statically
/// but RocksDB's C++ would take libstdc++ from `libstdc++-6.dll`, and the
/// two then keep separate emulated-TLS copies of `std::call_once`'s state:
/// the DLL's `__once_proxy` calls a null `__once_call` and the server dies
/// at its first `call_once` (seen under Wine; the same code runs on
/// Windows). One static runtime also means no MinGW DLLs beside the `.exe`.
///
/// librocksdb-sys asks for `-lstdc++`, which rustc passes as a dynamic
/// library, so `-static` alone does not reach it: a directory holding only
/// MinGW's `libstdc++.a`, searched before the compiler's own (which also
/// holds `libstdc++.dll.a`), makes the linker take the static archive.
fn static_mingw_runtime() {
    let target = env::var("TARGET").unwrap_or_default();
    if !target.ends_with("-windows-gnu") {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-static");
    println!("cargo:rustc-link-arg-bins=-static-libgcc");
    println!("cargo:rustc-link-arg-bins=-static-libstdc++");
    let cxx_var = format!("CXX_{}", target.replace('-', "_"));
    println!("cargo:rerun-if-env-changed={cxx_var}");
    let cxx = env::var(&cxx_var).unwrap_or_else(|_| "x86_64-w64-mingw32-g++".to_owned());
    let found = Command::new(&cxx)
        .arg("-print-file-name=libstdc++.a")
        .output()
        .unwrap_or_else(|e| fail(&format!("{cxx} -print-file-name=libstdc++.a: {e}")));
    let archive = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    if !archive.is_absolute() || !archive.is_file() {
        fail(&format!(
            "{cxx} does not know a static libstdc++.a (got {archive:?}): install MinGW-w64's g++"
        ));
    }
    let dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("static-cxx");
    fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    fs::copy(&archive, dir.join("libstdc++.a"))
        .unwrap_or_else(|e| fail(&format!("copying {}: {e}", archive.display())));
    println!("cargo:rustc-link-search=native={}", dir.display());
}
