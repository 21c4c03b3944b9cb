//! Runs a `kefu-server` process on a temp data dir for one scenario.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

pub struct Server {
    child: Child,
    pub base: String,
    dir: Option<tempfile::TempDir>,
}

impl Server {
    pub async fn start(bin: &std::path::Path, durability: &str) -> anyhow::Result<Server> {
        let dir = Self::prepare(bin)?;
        Self::serve(bin, dir, durability).await
    }

    /// A temp data dir with the bench admin in it, for a scenario that
    /// fills the store before the server starts. It is made under `TMPDIR`
    /// (e.g. `TMPDIR=/dev/shm` when the disk is short).
    pub fn prepare(bin: &std::path::Path) -> anyhow::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        let status = Command::new(bin)
            .args(["admin", "create", "--data-dir"])
            .arg(dir.path())
            .args(["--username", "bench", "--password", "bench-password"])
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", bin.display()))?;
        if !status.success() {
            bail!("admin create failed");
        }
        Ok(dir)
    }

    /// Starts the server on a prepared data dir and waits until it is ready.
    pub async fn serve(
        bin: &std::path::Path,
        dir: tempfile::TempDir,
        durability: &str,
    ) -> anyhow::Result<Server> {
        let server = Self::spawn(bin, dir, durability)?;
        let http = reqwest::Client::new();
        for _ in 0..2400 {
            let ready = http.get(format!("{}/readyz", server.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("server did not become ready")
    }

    /// Starts the server on a prepared data dir; returns at once.
    pub fn spawn(
        bin: &std::path::Path,
        dir: tempfile::TempDir,
        durability: &str,
    ) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = crate::pin::server_command(bin)
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args([
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--durability",
                durability,
            ])
            .env("RUST_LOG", "warn")
            .env("KEFU_LIMITS__MAX_CONNECTIONS", "100000")
            // Bench visitors send far faster than a person (thousands a
            // second over one connection in `throughput`): the per-visitor
            // message rate would measure the limiter, not the server.
            .env("KEFU_LIMITS__VISITOR_MESSAGES_PER_SECOND", "0")
            .stdout(Stdio::null())
            .spawn()?;
        // Owned by `Server` at once, so it is killed and reaped on every path.
        Ok(Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir: Some(dir),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server with SIGTERM (a clean shutdown) and gives back its
    /// data dir.
    pub fn terminate(mut self) -> anyhow::Result<tempfile::TempDir> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        self.dir.take().context("data dir")
    }

    /// Kills the server with SIGKILL (no shutdown at all) and gives back
    /// its data dir.
    pub fn kill(mut self) -> anyhow::Result<tempfile::TempDir> {
        self.child.kill()?;
        self.child.wait()?;
        self.dir.take().context("data dir")
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir
            .as_ref()
            .map_or(std::path::Path::new(""), |d| d.path())
    }

    pub fn ws_url(&self) -> String {
        format!("{}/api/v1/ws", self.base.replacen("http", "ws", 1))
    }

    /// Resident memory of the server process, KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
