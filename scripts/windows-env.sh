# Sourced by scripts/windows-check and scripts/package-windows: the compilers
# of the x86_64-pc-windows-gnu cross-build (Debian's MinGW-w64, POSIX
# threads), for the target dir given as $1.
kefu_win_triple=x86_64-pc-windows-gnu
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc-posix
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc-posix
export CXX_x86_64_pc_windows_gnu=x86_64-w64-mingw32-g++-posix
export AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
# No debuginfo in the cross-build: RocksDB's C++ with -g is hundreds of MB.
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_INCREMENTAL=0
# The UI is built once for the host and embedded as is (server/build.rs).
kefu_win_ui="$1/ui-dist"
if [ ! -f "$kefu_win_ui/index.html" ] || [ -n "$(find ui/src ui/widget ui/index.html -newer "$kefu_win_ui/index.html" -print -quit 2>/dev/null)" ]; then
    (cd ui && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build >&2)
    rm -rf "$kefu_win_ui" && mkdir -p "$1" && cp -a ui/dist "$kefu_win_ui"
fi
export PREBUILT_UI_DIST="$kefu_win_ui"
