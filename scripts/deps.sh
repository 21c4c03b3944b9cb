# Sourced by scripts/run and scripts/test: makes sure this Debian/Ubuntu
# machine has what building Kefu needs, installing what is missing.
# RocksDB is C++ and its bindings are generated with libclang.

# iproute2: the mDNS tests make network namespaces with `ip netns`.
kefu_apt_packages=(build-essential clang libclang-dev pkg-config iproute2)

kefu_have_package() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

kefu_install_packages() {
    local missing=()
    for package in "$@"; do
        kefu_have_package "$package" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "kefu: please install: ${missing[*]} (no apt-get here)" >&2
        return 1
    fi
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "kefu: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

kefu_ensure_rust() {
    if [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    if command -v cargo >/dev/null 2>&1; then
        return 0
    fi
    echo "kefu: no Rust toolchain; installing one with rustup (https://rustup.rs)" >&2
    kefu_install_packages curl ca-certificates
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
}

kefu_ensure_build_deps() {
    kefu_ensure_rust
    kefu_install_packages "${kefu_apt_packages[@]}"
    kefu_ensure_node
}

# The web UI (ui/, built into kefu-server by server/build.rs) needs Node.js
# >= 20.19 and npm. Debian 13 and Ubuntu 24.10+ ship one; older releases
# ship Node 18, for which we print how to get a newer one.
kefu_node_ok() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'
}

kefu_ensure_node() {
    kefu_node_ok && return 0
    kefu_install_packages nodejs npm || true
    if ! kefu_node_ok; then
        echo "kefu: building the web UI needs Node.js >= 20.19 with npm (found: $(node --version 2>/dev/null || echo none))." >&2
        echo "kefu: install it from https://nodejs.org or your distribution's backports, then run this again." >&2
        return 1
    fi
}

# The browser the UI's end-to-end tests drive (Debian's Chromium; no
# downloaded browsers), and CJK fonts so Chinese screens render.
kefu_ensure_test_browser() {
    kefu_install_packages chromium fonts-noto-cjk
}

# The desktop app (src-tauri/, Tauri 2 on WebKitGTK): its build dependencies
# on Debian, and what its tests run against: Xvfb, Debian's WebKitWebDriver
# (webkit2gtk-driver) behind tauri-driver, a private D-Bus session with the
# dunst notification daemon and gnome-keyring's Secret Service.
kefu_desktop_packages=(
    libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev
    libssl-dev libsoup-3.0-dev libxdo-dev patchelf file
    xvfb xauth webkit2gtk-driver dbus dbus-x11 dunst gnome-keyring libsecret-tools
    squashfs-tools x11-utils fonts-noto-cjk
)

kefu_ensure_desktop_deps() {
    kefu_ensure_build_deps
    kefu_install_packages "${kefu_desktop_packages[@]}"
}

# tauri-driver (the WebDriver proxy of Tauri apps) from crates.io, built
# once into "$1/bin" (a persistent dir such as the cargo target dir).
kefu_ensure_tauri_driver() {
    local root="$1"
    if [ -x "$root/bin/tauri-driver" ]; then
        return 0
    fi
    echo "kefu: building tauri-driver from crates.io into $root" >&2
    cargo install tauri-driver@2.1.0 --locked --root "$root" >&2
}

# A cargo subcommand CI runs (cargo-machete, cargo-deny), at the version
# given, built from crates.io once into "$1/bin" (a persistent dir such as
# the cargo target dir) and put on PATH. Each is built in release mode from
# source: measured on the 2-core CI machine while other builds ran,
# cargo-machete 0.9.2 took 2.5 min and cargo-deny 0.20.2 7 min (2 and 4 min
# of CPU); later runs find them and skip this.
kefu_ensure_cargo_tool() {
    local root="$1" name="$2" version="$3"
    export PATH="$root/bin:$PATH"
    if "$name" --version 2>/dev/null | grep -qwF "$version"; then
        return 0
    fi
    echo "kefu: building $name $version from crates.io into $root" >&2
    cargo install "$name@$version" --locked --root "$root" >&2
}

# The AppImage runtime: the executable part of every type-2 AppImage
# (AppImageKit's runtime.c: mounts the appended squashfs with FUSE, or
# extracts it with --appimage-extract[-and-run], then runs AppRun). Tauri's
# own AppImage bundler downloads it, with linuxdeploy, from GitHub, which our
# build machines cannot reach; the same runtime ships in the crates.io
# package `appimage` 0.4.0 (assets/runtime-x86_64). It is fetched from the
# registry once, checked against the registry index's checksum (what Cargo
# checks), and kept in "$1". Prints the runtime's path.
kefu_appimage_crate_sha256=567a4da6b94a2ac20a27620933c80fc14cf475b5fe7d7b137d20eb237d6b1920
kefu_ensure_appimage_runtime() {
    local root="$1" runtime="$1/appimage-runtime-x86_64"
    if [ ! -x "$runtime" ]; then
        [ "$(uname -m)" = "x86_64" ] || { echo "kefu: the AppImage runtime is fetched for x86_64 only" >&2; return 1; }
        kefu_install_packages curl ca-certificates >&2
        mkdir -p "$root"
        local tmp
        tmp="$(mktemp -d)"
        curl -sSfL -o "$tmp/appimage.crate" https://static.crates.io/crates/appimage/appimage-0.4.0.crate
        echo "$kefu_appimage_crate_sha256  $tmp/appimage.crate" | sha256sum -c --quiet - >&2
        tar -xzf "$tmp/appimage.crate" -C "$tmp" appimage-0.4.0/assets/runtime-x86_64
        install -m 0755 "$tmp/appimage-0.4.0/assets/runtime-x86_64" "$runtime"
        rm -rf "$tmp"
    fi
    echo "$runtime"
}

# What the operator-side tests run against (tests/tests/it/public_proxy.rs
# and the deploy/ checks): Debian's nginx and Caddy, started on loopback with the
# configs in deploy/; systemd-analyze for the unit file. Each test prints
# SKIPPED when its program is missing, so a failed install does not stop CI.
kefu_ensure_proxy_deps() {
    kefu_install_packages nginx caddy systemd || echo "kefu: nginx/caddy/systemd not installed; their tests will say SKIPPED" >&2
}

# The Windows cross-build (scripts/windows-check): the Rust target, MinGW-w64
# with POSIX threads (RocksDB's C++ uses std::thread and std::mutex, which the
# win32-threads variant of libstdc++ lacks), Wine to run the result, and NSIS
# for the installer.
kefu_ensure_windows_cross() {
    kefu_install_packages gcc-mingw-w64-x86-64-posix g++-mingw-w64-x86-64-posix \
        binutils-mingw-w64-x86-64 wine wine64 nsis
    rustup target list --installed | grep -qx x86_64-pc-windows-gnu ||
        rustup target add x86_64-pc-windows-gnu
}

# promtool (Debian's prometheus package) for tests/tests/it/metrics_lint.rs:
# `promtool check rules` of deploy/prometheus/kefu-alerts.yml. The test
# says SKIPPED when it is missing, so a failed install does not stop CI.
# The package's service is not started by this (no systemd in CI); where it
# is, `systemctl disable --now prometheus` if this machine should not run one.
kefu_ensure_monitoring_deps() {
    command -v promtool >/dev/null 2>&1 && return 0
    kefu_install_packages prometheus || echo "kefu: promtool not installed; its test will say SKIPPED" >&2
}

# PostgreSQL for cluster mode's tests and bench (server/tests/store_seam.rs,
# `kefu-bench store-seam`, docs/CLUSTER.md): Debian's server binaries; the
# tests start throwaway servers with initdb on 127.0.0.1
# (server/src/cluster/throwaway.rs), so the package's own cluster is not
# used (where the package started it under systemd: `systemctl disable
# --now postgresql`). In CI a missing PostgreSQL fails those tests; locally
# they say SKIPPED.
kefu_ensure_postgres() {
    kefu_install_packages postgresql
}
