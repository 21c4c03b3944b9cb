/* Wine 8.0 (Debian 12) lacks bcryptprimitives.dll!ProcessPrng, which Rust's
 * standard library calls since 1.78 (Windows 10+ has it). For running
 * kefu-server.exe under Wine only; never shipped. Build:
 *   x86_64-w64-mingw32-gcc-posix -O2 -shared -o bcryptprimitives.dll \
 *       bcryptprimitives-shim.c -ladvapi32 -Wl,--kill-at
 * and load it with WINEDLLOVERRIDES=bcryptprimitives=n (docs/DESKTOP.md). */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) return FALSE;
        data += chunk; len -= chunk;
    }
    return TRUE;
}
