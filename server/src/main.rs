//! `kefu-server`: the headless shell; everything is in the library.

/// mimalloc rather than glibc's malloc: on the send path glibc's arenas
/// (growing and trimming heaps, consolidating, a lock per arena that the
/// writer thread and the runtime's workers meet on) were ~10 % of the
/// server's CPU under the storm load; mimalloc's thread-local free lists
/// cut that (docs/PERFORMANCE.md, "The ack path's CPU"). The binary's
/// choice, not the library's: the desktop shell keeps its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kefu_server::cli::main()
}
