//! The `kefu-desktop` binary: the agent workstation with its embedded
//! server. All of it is in the library (`kefu_desktop::run`).
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    match kefu_desktop::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kefu-desktop: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
