//! The `kefu-server` CLI, built inside the test crate so that the tests can
//! run it as a separate process (`CARGO_BIN_EXE_…`) for kill -9 and CLI tests.

fn main() -> std::process::ExitCode {
    kefu_server::cli::main()
}
