//! A throwaway PostgreSQL server for tests and the bench: `initdb` into a
//! temporary directory, `postgres` on 127.0.0.1 on a free port, trust
//! authentication for the one user `kefu`, removed when dropped. The
//! binaries are Debian's (`postgresql` package, scripts/deps.sh
//! `kefu_ensure_postgres`); nothing is downloaded.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: there the
//! server runs as the `postgres` system user (the package makes it), or
//! `nobody`, and its directory is handed to that user.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long the server may take to accept connections after its start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running throwaway server; stopped (immediate shutdown) and deleted on drop.
pub struct ThrowawayPostgres {
    url: String,
    bin: PathBuf,
    data: PathBuf,
    child: Option<Child>,
    // Last: removed after the server has stopped.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for ThrowawayPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrowawayPostgres")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Where `initdb` and `postgres` are: on PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian does not put them on PATH).
pub fn binaries() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

impl ThrowawayPostgres {
    /// Starts one. `fsync: false` trades durability for speed (tests);
    /// the bench keeps PostgreSQL's defaults (`fsync = on`,
    /// `synchronous_commit = on`). `Ok(None)` when the binaries are not
    /// installed.
    pub fn start(fsync: bool) -> anyhow::Result<Option<ThrowawayPostgres>> {
        let Some(bin) = binaries() else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new().prefix("kefu-pg-").tempdir()?;
        let data = dir.path().join("data");
        let user = run_as()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("giving the throwaway PostgreSQL its directory")?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "--auth=trust",
                "--username=kefu",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_user(&mut initdb, user);
        let output = initdb.output().context("running initdb")?;
        if !output.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let mut last_error = None;
        // A free port can be taken between the probe and the bind: retry.
        for _ in 0..3 {
            let port = free_port()?;
            match start_server(&bin, &data, dir.path(), port, fsync, user) {
                Ok(child) => {
                    return Ok(Some(ThrowawayPostgres {
                        url: format!("postgres://kefu@127.0.0.1:{port}/postgres"),
                        bin,
                        data,
                        child: Some(child),
                        _dir: dir,
                    }));
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("postgres did not start")))
    }

    /// `postgres://kefu@127.0.0.1:<port>/postgres` (no password: trust on
    /// loopback, for a throwaway server only).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A fresh database in this server, for one test; its URL.
    pub async fn database(&self, name: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            bail!("database name {name:?}: lowercase letters and _ only");
        }
        let mut connection = sqlx::PgConnection::connect(&self.url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await?;
        connection.close().await?;
        Ok(self.url.replace("/postgres", &format!("/{name}")))
    }

    /// Stops the server at once (SIGQUIT, PostgreSQL's immediate shutdown)
    /// and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The directory of the server's binaries.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        &self.data
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn start_server(
    bin: &Path,
    data: &Path,
    dir: &Path,
    port: u16,
    fsync: bool,
    user: Option<(u32, u32)>,
) -> anyhow::Result<Child> {
    let log_path = dir.join(format!("postgres-{port}.log"));
    let log = fs::File::create(&log_path)?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&log_path, Some(uid), Some(gid))?;
    }
    let mut command = Command::new(bin.join("postgres"));
    command
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        // No Unix socket: nothing outside this test can reach it.
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "max_connections=200"])
        .args(["-c", if fsync { "fsync=on" } else { "fsync=off" }])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    as_user(&mut command, user);
    let mut child = command.spawn().context("starting postgres")?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            bail!("postgres exited ({status}) before it was ready: {log}");
        }
        if std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
            && fs::read_to_string(&log_path)
                .unwrap_or_default()
                .contains("ready to accept connections")
        {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("postgres not ready after {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The user to run PostgreSQL as when this process is root: `postgres`,
/// else `nobody` (from /etc/passwd). `None` when not root.
fn run_as() -> anyhow::Result<Option<(u32, u32)>> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut root = false;
    let mut found = None;
    for wanted in ["postgres", "nobody"] {
        found = found.or_else(|| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                if fields.len() > 3 && fields[0] == wanted {
                    Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
                } else {
                    None
                }
            })
        });
    }
    // The effective uid, from /proc (no libc call: unsafe is forbidden).
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            root = rest.split_whitespace().nth(1) == Some("0");
        }
    }
    if !root {
        return Ok(None);
    }
    found.map(Some).ok_or_else(|| {
        anyhow::anyhow!("running as root and no postgres or nobody user to run PostgreSQL as")
    })
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
        // HOME of root is not readable to it; PostgreSQL does not need one.
        command.env_remove("HOME");
    }
}
