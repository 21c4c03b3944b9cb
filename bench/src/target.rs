//! The systems under test, started the same way for every scenario: Kefu
//! (the real `kefu-server` on a temp data dir; `kefu-b`, a second binary
//! of it, for before/after runs), B0 (the tokio-tungstenite
//! relay of `b0.rs`, this binary's `b0-server` subcommand), B1 (the same
//! relay writing every send to RocksDB first, `b0-server --log`) and N (the Node.js
//! `ws` relay in `bench/baselines/node`). Each runs in its own process, on
//! the server's cores when pinned, and is killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::client::Shop;
use crate::server::Server;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Kefu,
    /// A second Kefu binary (`--server-bin-b`), measured beside the first
    /// in the same run: before vs after a change.
    #[value(name = "kefu-b")]
    #[serde(rename = "kefu-b")]
    KefuB,
    B0,
    B1,
    /// B1 with `fsync` durability (each batch synced before its acks).
    B1f,
    Node,
}

impl System {
    /// Kefu itself, either binary.
    pub fn is_kefu(self) -> bool {
        matches!(self, System::Kefu | System::KefuB)
    }

    pub fn label(self) -> &'static str {
        match self {
            System::Kefu => "Kefu",
            System::KefuB => "Kefu-B",
            System::B0 => "B0",
            System::B1 => "B1",
            System::B1f => "B1f",
            System::Node => "N",
        }
    }
}

/// A visitor as the load sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Client {
    pub token: String,
    pub conversation: String,
}

pub struct Target {
    pub ws_url: String,
    kefu: Option<Server>,
    child: Option<Child>,
    shop: Option<Shop>,
    /// B1's log, removed when the target is dropped (after the child).
    log_dir: Option<tempfile::TempDir>,
}

/// The binary of [`System::KefuB`] (`--server-bin-b`), set once at start.
static SERVER_BIN_B: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sets the binary that `kefu-b` runs.
pub fn set_server_bin_b(bin: PathBuf) {
    let _ = SERVER_BIN_B.set(bin);
}

/// Where the Node baseline lives (`KEFU_BENCH_NODE_DIR` overrides).
fn node_dir() -> PathBuf {
    std::env::var_os("KEFU_BENCH_NODE_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines/node"),
        PathBuf::from,
    )
}

impl Target {
    /// Starts `system`; `durability` applies to Kefu only.
    pub async fn start(system: System, bin: &Path, durability: &str) -> anyhow::Result<Target> {
        match system {
            System::Kefu | System::KefuB => {
                let bin = match system {
                    System::KefuB => SERVER_BIN_B
                        .get()
                        .context("the system kefu-b needs --server-bin-b")?,
                    _ => bin,
                };
                let server = Server::start(bin, durability).await?;
                let shop = Shop::setup(&server.base).await?;
                Ok(Target {
                    ws_url: server.ws_url(),
                    kefu: Some(server),
                    child: None,
                    shop: Some(shop),
                    log_dir: None,
                })
            }
            System::B0 => {
                let mut command = crate::pin::server_command(std::env::current_exe()?);
                command.args(["b0-server", "--bind", "127.0.0.1:0"]);
                Self::spawn_relay(system, command)
            }
            System::B1 | System::B1f => {
                let dir = tempfile::tempdir()?;
                let mut command = crate::pin::server_command(std::env::current_exe()?);
                command
                    .args(["b0-server", "--bind", "127.0.0.1:0", "--log"])
                    .arg(dir.path());
                if system == System::B1f {
                    command.arg("--fsync");
                }
                let mut target = Self::spawn_relay(system, command)?;
                target.log_dir = Some(dir);
                Ok(target)
            }
            System::Node => {
                let dir = node_dir();
                if !dir.join("node_modules/ws").exists() {
                    let status = std::process::Command::new("npm")
                        .args(["ci", "--no-audit", "--no-fund"])
                        .current_dir(&dir)
                        .stdout(Stdio::null())
                        .status()
                        .context("npm ci for the Node baseline")?;
                    if !status.success() {
                        bail!("npm ci failed in {}", dir.display());
                    }
                }
                let mut command = crate::pin::server_command("node");
                command.arg(dir.join("relay.js")).args(["127.0.0.1", "0"]);
                Self::spawn_relay(system, command)
            }
        }
    }

    /// Starts a relay that prints `listening HOST:PORT` once bound.
    fn spawn_relay(system: System, mut command: std::process::Command) -> anyhow::Result<Target> {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", system.label()))?;
        let stdout = child.stdout.take().context("relay stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening ") else {
            let _ = child.kill();
            bail!("{} did not start: {line:?}", system.label());
        };
        Ok(Target {
            ws_url: format!("ws://{addr}/"),
            kefu: None,
            child: Some(child),
            shop: None,
            log_dir: None,
        })
    }

    pub fn pid(&self) -> u32 {
        match (&self.kefu, &self.child) {
            (Some(server), _) => server.pid(),
            (None, Some(child)) => child.id(),
            (None, None) => 0,
        }
    }

    /// `count` visitors, each with its own conversation: created over REST
    /// on Kefu, made up on the baselines (which check no token).
    pub async fn clients(&self, count: usize) -> anyhow::Result<Vec<Client>> {
        match &self.shop {
            Some(shop) => Ok(shop
                .visitors(count)
                .await?
                .into_iter()
                .map(|v| Client {
                    token: v.token,
                    conversation: v.conversation_id,
                })
                .collect()),
            None => Ok((0..count)
                .map(|n| Client {
                    token: format!("visitor-{n}"),
                    conversation: format!("conv-{n}"),
                })
                .collect()),
        }
    }

    /// A token for an agent connection (it receives every message).
    pub fn agent_token(&self) -> String {
        match &self.shop {
            Some(shop) => shop.admin_token.clone(),
            None => "agent".into(),
        }
    }

    /// Tokens of `count` agents (at least one) who may each take
    /// `max_concurrent` chats (capped at Kefu's limit, 1,000). On the
    /// baselines, made up.
    pub async fn agent_tokens(
        &self,
        count: usize,
        max_concurrent: usize,
    ) -> anyhow::Result<Vec<String>> {
        match &self.shop {
            Some(shop) => {
                shop.agents(count.max(1), max_concurrent.clamp(1, 1_000) as u32)
                    .await
            }
            None => Ok((0..count.max(1)).map(|n| format!("agent-{n}")).collect()),
        }
    }

    /// Sets the agents of `tokens` online (Kefu only: routing gives chats
    /// to online agents). Call once they are connected.
    pub async fn agents_online(&self, tokens: &[String]) -> anyhow::Result<()> {
        if let Some(shop) = &self.shop {
            for token in tokens {
                shop.online(token).await?;
            }
        }
        Ok(())
    }

    /// Resident memory of the server process, KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        proc_rss_kib(self.pid())
    }

    /// Kefu's `/metrics` text (`None` for the baselines, which have none).
    pub async fn metrics_text(&self) -> anyhow::Result<Option<String>> {
        let Some(server) = &self.kefu else {
            return Ok(None);
        };
        let text = reqwest::get(format!("{}/metrics", server.base))
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Some(text))
    }

    /// CPU time of the server process (user + system), seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        proc_cpu_seconds(self.pid())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// VmRSS of a process, KiB.
pub fn proc_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// User + system CPU time of a process, seconds.
pub fn proc_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("utime")?.parse()?;
    let stime: f64 = fields.get(12).context("stime")?.parse()?;
    // USER_HZ is 100 on every mainstream configuration.
    Ok((utime + stime) / 100.0)
}
