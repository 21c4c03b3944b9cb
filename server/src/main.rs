//! `kefu-server`: the headless shell; everything is in the library.

fn main() -> std::process::ExitCode {
    kefu_server::cli::main()
}
