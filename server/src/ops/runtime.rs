//! How the command line finds the server running on a data dir.
//!
//! - **Is one running?** The message log's RocksDB holds an `fcntl` lock on
//!   `messages/LOCK` while open. [`server_running`] tries to take that lock
//!   itself (and lets go at once): refused means a process has the log
//!   open. A POSIX lock is per process and released when *any* descriptor
//!   of the file closes, so servers started in this very process are looked
//!   up in [`SERVING`] instead of being probed: the probe would drop their
//!   lock. On Windows RocksDB opens `LOCK` without sharing, so a refused
//!   open (a sharing violation) is the same answer.
//! - **Where is it, and may I ask it?** A running server writes
//!   `DATA_DIR/server.json` (mode 0600: only its OS user, who can read the
//!   whole data dir anyway, can read it) with its pid, the address it
//!   listens on and the operator token, new at every start. The command
//!   line sends the token in an `Authorization` header to that address on
//!   loopback ([`super::client`]). The file is removed at a clean stop; a
//!   stale one (after `kill -9`) is harmless: its token died with the
//!   process, and nothing trusts the file without the lock being held.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The running server's file in the data dir.
pub const FILE: &str = "server.json";

/// Data dirs served by this process (canonical paths).
static SERVING: parking_lot::Mutex<Option<HashSet<PathBuf>>> = parking_lot::Mutex::new(None);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub pid: u32,
    /// The address the server listens on (as bound: may be unspecified).
    pub addr: SocketAddr,
    pub started_at: i64,
    pub ops_token: String,
}

impl RuntimeInfo {
    /// Where this machine reaches the server: an unspecified bind address
    /// (`0.0.0.0`, `::`) is reached on loopback.
    pub fn local_addr(&self) -> SocketAddr {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.addr.port())
    }
}

fn key(data_dir: &Path) -> PathBuf {
    std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf())
}

/// Called by a server once it listens: registers the data dir as served
/// here and writes `server.json`.
pub fn started(data_dir: &Path, addr: SocketAddr, token: &str) -> io::Result<()> {
    SERVING
        .lock()
        .get_or_insert_with(HashSet::new)
        .insert(key(data_dir));
    let info = RuntimeInfo {
        pid: std::process::id(),
        addr,
        started_at: crate::time::now_ms(),
        ops_token: token.to_owned(),
    };
    let bytes = serde_json::to_vec_pretty(&info).map_err(io::Error::other)?;
    super::manifest::write_private_atomic(&data_dir.join(FILE), &bytes)
}

/// Called by a server when it stopped: removes `server.json` if it is
/// still its own (same token), and the registration.
pub fn stopped(data_dir: &Path, token: &str) {
    if let Ok(info) = read(data_dir)
        && info.ops_token == token
        && let Err(error) = std::fs::remove_file(data_dir.join(FILE))
    {
        tracing::warn!(%error, "cannot remove server.json");
    }
    if let Some(set) = SERVING.lock().as_mut() {
        set.remove(&key(data_dir));
    }
}

/// Reads `server.json`.
pub fn read(data_dir: &Path) -> io::Result<RuntimeInfo> {
    let bytes = super::manifest::read_bounded(&data_dir.join(FILE), 64 * 1024)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Whether a process has the data dir's message log open (module doc).
pub fn server_running(data_dir: &Path) -> io::Result<bool> {
    if SERVING
        .lock()
        .as_ref()
        .is_some_and(|set| set.contains(&key(data_dir)))
    {
        return Ok(true);
    }
    let lock = data_dir.join(crate::LOG_DIR).join("LOCK");
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock)
    {
        Ok(file) => file,
        // No log yet: nothing has ever opened it.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        // RocksDB on Windows holds LOCK open without sharing: the open
        // itself is the probe (ERROR_SHARING_VIOLATION).
        #[cfg(windows)]
        Err(error) if error.raw_os_error() == Some(32) => return Ok(true),
        Err(error) => return Err(error),
    };
    probe(&file, data_dir)
}

#[cfg(unix)]
fn probe(file: &std::fs::File, _data_dir: &Path) -> io::Result<bool> {
    use rustix::fs::{FlockOperation, fcntl_lock};
    match fcntl_lock(file, FlockOperation::NonBlockingLockExclusive) {
        // Ours for a moment: nobody else had it. Closing the file lets go.
        Ok(()) => Ok(false),
        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::ACCESS) => Ok(true),
        Err(error) => Err(error.into()),
    }
}

/// On Windows the file opened, so no process holds it (see above).
#[cfg(windows)]
fn probe(_file: &std::fs::File, _data_dir: &Path) -> io::Result<bool> {
    Ok(false)
}

/// Elsewhere the LOCK file cannot be probed without RocksDB: a
/// `server.json` is taken as a running server.
#[cfg(not(any(unix, windows)))]
fn probe(_file: &std::fs::File, data_dir: &Path) -> io::Result<bool> {
    Ok(data_dir.join(FILE).exists())
}

/// The running server's file, for a data dir whose log is locked. An error
/// says what to do when it is missing (a server starting, or a process
/// that is not a Kefu server holding the lock).
pub fn running_server(data_dir: &Path) -> anyhow::Result<RuntimeInfo> {
    read(data_dir).map_err(|error| {
        anyhow::anyhow!(
            "a process holds the message log in {} but its {FILE} cannot be read ({error}); \
             if a server is starting, try again in a moment",
            data_dir.display()
        )
    })
}
