//! CPU pinning: with `--pin`, the server under test runs on core 0 and the
//! load (this process and its workers) on core 1, so neither steals the
//! other's core. Pinning is done with `taskset`, and reported.

use std::process::Command;
use std::sync::OnceLock;

/// Core list of the server under test (`taskset -c`), when pinned.
static SERVER_CORES: OnceLock<Option<String>> = OnceLock::new();

/// Env var set on the re-executed, pinned load process. Not `KEFU_…`:
/// the server under test reads every `KEFU_*` variable as configuration
/// and refuses unknown keys.
const PINNED: &str = "KEFUBENCH_LOAD_CPUS";

/// What was pinned where, for the report.
pub fn describe() -> String {
    match SERVER_CORES.get().cloned().flatten() {
        Some(server) => format!(
            "server on cpu {server}, load on cpu {}",
            std::env::var(PINNED).unwrap_or_default()
        ),
        None => "not pinned: server and load share every core".into(),
    }
}

/// With `pin` = Some((server, load)): re-executes this process under
/// `taskset -c LOAD` (once) and remembers the server's cores. Returns the
/// exit code when this process only waited for its pinned copy.
pub fn setup(pin: Option<(String, String)>) -> anyhow::Result<Option<i32>> {
    let Some((server, load)) = pin else {
        let _ = SERVER_CORES.set(None);
        return Ok(None);
    };
    if std::env::var_os(PINNED).is_some() {
        let _ = SERVER_CORES.set(Some(server));
        return Ok(None);
    }
    let status = Command::new("taskset")
        .args(["-c", &load])
        .arg(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(PINNED, &load)
        .status()?;
    Ok(Some(status.code().unwrap_or(1)))
}

/// A command for a server under test: `taskset -c CORES program` when
/// pinned, else the program itself.
pub fn server_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    match SERVER_CORES.get().cloned().flatten() {
        Some(cores) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &cores]).arg(program).env_remove(PINNED);
            command
        }
        None => Command::new(program),
    }
}
