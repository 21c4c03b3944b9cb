//! CPU profiles of the live server, on demand: `GET
//! /api/v1/admin/profile?seconds=N` answers a flame graph (SVG) of what
//! every thread ran during those seconds (docs/API.md 2.21,
//! docs/OPERATIONS.md "Profiling"). `kefu-server profile` asks for one.
//!
//! Only in a build with the cargo feature `pprof` (pprof-rs: SIGPROF
//! sampling, stacks unwound in the signal handler, rendered by inferno).
//! Without it the route still checks who asks, then answers 404 saying so.
//!
//! Why it is safe to have in production:
//! - nothing runs until asked: the sampler's signal handler is installed
//!   for the request's duration only, at [`FREQUENCY`] Hz (under 1% of a
//!   core), for at most [`SECONDS_MAX`] seconds, one profile at a time
//!   (another request meanwhile: 409);
//! - only an admin or the server's local operator (`ops::Operator`) may
//!   ask, and every profile is audited (`profile.cpu`);
//! - a profile holds function names and sample counts, no data: no
//!   message, token or address is in it;
//! - frames inside libc, libgcc, pthread and the vDSO are not unwound
//!   (pprof-rs's blocklist): unwinding from a signal that landed there is
//!   what could deadlock or crash.
//!
//! The door is in `ops/routes.rs`.

use crate::error::{ApiError, ApiResult};
use crate::ops::Operator;
use crate::state::AppState;

/// Samples per second of each thread's CPU time (not a round number, so
/// that it does not beat with timers).
pub const FREQUENCY: i32 = 99;
/// The longest profile one request may take.
pub const SECONDS_MAX: u64 = 60;
const SECONDS_DEFAULT: u64 = 10;

/// A flame graph (SVG) of what every thread ran during `seconds` (1 to
/// [`SECONDS_MAX`], default 10), asked by `operator`, audited
/// (`profile.cpu`); one at a time (409). 404 in a build without the
/// profiler.
pub(crate) async fn take(
    state: &AppState,
    operator: &Operator,
    seconds: Option<u64>,
) -> ApiResult<Vec<u8>> {
    let seconds = seconds.unwrap_or(SECONDS_DEFAULT);
    if !(1..=SECONDS_MAX).contains(&seconds) {
        return Err(
            ApiError::bad_request(format!("seconds must be 1-{SECONDS_MAX}")).in_field("seconds"),
        );
    }
    sample(state, operator, seconds).await
}

#[cfg(not(all(feature = "pprof", target_os = "linux")))]
async fn sample(_state: &AppState, _operator: &Operator, _seconds: u64) -> ApiResult<Vec<u8>> {
    Err(ApiError::NotFound(
        "this build has no CPU profiler (build kefu-server with the cargo feature pprof)".into(),
    ))
}

#[cfg(all(feature = "pprof", target_os = "linux"))]
static TAKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[cfg(all(feature = "pprof", target_os = "linux"))]
async fn sample(state: &AppState, operator: &Operator, seconds: u64) -> ApiResult<Vec<u8>> {
    let Ok(_taking) = TAKING.try_lock() else {
        return Err(ApiError::Conflict(
            "a profile is already being taken".into(),
        ));
    };
    crate::audit::record(
        &state.db,
        operator.actor(),
        "profile.cpu",
        None,
        serde_json::json!({"seconds": seconds}),
    )
    .await?;
    // The guard samples until it is dropped; it is not Send, so it lives
    // on a blocking thread that sleeps for the duration.
    let svg = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(FREQUENCY)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()?;
        std::thread::sleep(std::time::Duration::from_secs(seconds));
        let report = guard.report().build()?;
        drop(guard);
        if report.data.is_empty() {
            // SIGPROF counts CPU time: an idle server gives no sample, and
            // inferno no picture. Say so rather than answer an empty body.
            return Ok(idle_svg(seconds).into_bytes());
        }
        let mut svg = Vec::new();
        report.flamegraph(&mut svg)?;
        Ok(svg)
    })
    .await
    .map_err(|e| ApiError::internal(anyhow::anyhow!("the profiler thread failed: {e}")))?
    .map_err(ApiError::internal)?;
    Ok(svg)
}

/// The answer when no thread used the CPU during the profile.
#[cfg(all(feature = "pprof", target_os = "linux"))]
fn idle_svg(seconds: u64) -> String {
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg version=\"1.1\" width=\"600\" height=\"40\" \
         xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"24\">No CPU samples in {seconds} s: \
         the server was idle.</text></svg>\n"
    )
}
