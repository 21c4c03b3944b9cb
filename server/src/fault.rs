//! Test-only crash points: a process that reaches the named point while
//! `KEFU_TEST_CRASH_AT` names it kills itself with SIGKILL there, as a
//! `kill -9` (or a power cut after the last fsync) at exactly that instant
//! would. The black-box tests use it to crash a real process between two
//! steps that must be crash-safe (docs/LAN.md, "Crash-safety of handover
//! and takeover"), which no outside signal can hit reliably.
//!
//! **Debug builds only.** The check is compiled in only with
//! `debug_assertions` (the tests' builds); in a release build
//! [`crash_point`] is an empty function and the variable is ignored, so
//! nothing in a shipped binary can be made to crash by its environment.
//!
//! A point is named `area.step`, and documented where it is placed; the
//! list is in docs/ARCHITECTURE.md ("Fault injection").

/// The environment variable naming the one point to crash at.
pub const CRASH_AT_ENV: &str = "KEFU_TEST_CRASH_AT";

/// Crashes the process here when `KEFU_TEST_CRASH_AT` is `name` (debug
/// builds only; see the module doc). It says so on stderr first, so a test
/// can tell the crash it asked for from any other.
#[inline]
pub fn crash_point(name: &'static str) {
    #[cfg(debug_assertions)]
    if std::env::var_os(CRASH_AT_ENV).is_some_and(|wanted| wanted == name) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{CRASH_AT_ENV}: crashing at {name}");
        crash();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// SIGKILL to itself: no destructor, no flush, no atexit handler runs, as
/// with `kill -9` from outside.
#[cfg(all(debug_assertions, target_os = "linux"))]
fn crash() -> ! {
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    std::process::abort()
}

/// Elsewhere SIGABRT (or the platform's abort): as abrupt, no destructor
/// runs either.
#[cfg(all(debug_assertions, not(target_os = "linux")))]
fn crash() -> ! {
    std::process::abort()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_point_not_named_does_nothing() {
        // The variable is unset in unit tests, or names another point.
        super::crash_point("fault.never_named_by_any_test");
    }
}
