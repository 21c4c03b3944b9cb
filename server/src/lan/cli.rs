//! `kefu-server lan pair` and `lan check`: the peer's side on the command
//! line; `lan link` and `lan shop-name`: the host's. What to read goes to stdout (the code, the result), the running
//! commentary to stderr.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use http::Method;

use super::address::HostAddress;
use super::client::{self, ClientError, DeviceClient, PairingProgress};
use super::device_id::DeviceId;
use super::identity::Identity;
use super::pairing::PairingCode;
use super::shop_name::ShopName;
use super::state::{LanStateFile, PinnedHost, Role};
use super::tls::ServerTrust;

/// How often `lan pair` asks whether the admin approved.
const POLL: Duration = Duration::from_secs(1);

struct Console {
    waiting_said: bool,
}

impl PairingProgress for Console {
    fn code(&mut self, host: &DeviceId, code: PairingCode) {
        println!("pairing code: {code}");
        eprintln!(
            "host {host}\nCompare this code with the one the host shows for this device; if they \
             differ, stop: someone may be in the middle. An admin approves the device on the host \
             with this code."
        );
    }

    fn waiting(&mut self) {
        if !self.waiting_said {
            eprintln!("waiting for approval on the host…");
            self.waiting_said = true;
        }
    }
}

async fn open(data_dir: PathBuf) -> anyhow::Result<(Identity, LanStateFile)> {
    tokio::task::spawn_blocking(move || {
        let (identity, _) = Identity::open(&data_dir)?;
        let state = LanStateFile::open(&data_dir)?;
        anyhow::Ok((identity, state))
    })
    .await?
}

/// `lan pair --host HOST:PORT`.
pub async fn pair(
    data_dir: PathBuf,
    address: HostAddress,
    expected: Option<DeviceId>,
    name: Option<String>,
) -> anyhow::Result<()> {
    let (identity, mut state) = open(data_dir).await?;
    if state.state().role == Role::Host {
        anyhow::bail!("this device hosts the shop; a host does not pair with another host");
    }
    // Pinned already: only that key, wherever it is now.
    let pinned = state.state().host.as_ref().map(|host| host.device_id);
    if let (Some(pinned), Some(expected)) = (pinned, expected)
        && pinned != expected
    {
        anyhow::bail!(
            "this device is paired with host {pinned}, not {expected}; remove DATA_DIR/lan/state.json to pair with another host"
        );
    }
    eprintln!("this device: {}", identity.device_id());
    let mut console = Console {
        waiting_said: false,
    };
    let paired = client::pair(
        &identity,
        &address,
        pinned.or(expected),
        name.as_deref(),
        POLL,
        &mut console,
    )
    .await
    .map_err(explain)?;
    let host = paired.host.clone();
    tokio::task::spawn_blocking(move || state.become_peer(host))
        .await?
        .context("pinning the host in the LAN state")?;
    println!(
        "paired: host {} at {} is pinned",
        paired.host.device_id, paired.host.address
    );
    Ok(())
}

/// `lan link`: the host's pairing link on stdout (alone, for scripts and
/// QR code makers).
pub async fn link(
    config: &crate::config::Config,
    address: Option<HostAddress>,
) -> anyhow::Result<()> {
    let address = match (address, config.lan.bind) {
        (Some(address), _) => address,
        (None, Some(bind)) if !bind.ip().is_unspecified() => HostAddress::from(bind),
        (None, Some(_)) => anyhow::bail!(
            "lan.bind is 0.0.0.0: give the address peers reach this host at (--address IP:PORT)"
        ),
        (None, None) => anyhow::bail!(
            "this server does not host on the LAN (no lan.bind): give --address IP:PORT"
        ),
    };
    let data_dir = config.data_dir.clone();
    let (identity, _) = tokio::task::spawn_blocking(move || Identity::open(&data_dir)).await??;
    let link = super::pairing::PairingLink {
        host: address,
        device_id: identity.device_id(),
    };
    println!("{link}");
    Ok(())
}

/// `lan check`: the pinned host, reached and proved, and this device's
/// status there.
pub async fn check(data_dir: PathBuf) -> anyhow::Result<()> {
    let (host, mut client) = connect_to_host(data_dir).await?;
    let status = client
        .call(Method::GET, "/lan/v1/pair", None)
        .await
        .map_err(explain)?;
    println!(
        "host {} at {}: this device is {}",
        host.device_id,
        host.address,
        status["status"].as_str().unwrap_or("unknown")
    );
    Ok(())
}

/// `lan shop-name NAME`: through the running server when there is one
/// (`PUT /api/v1/lan/shop` with the operator token, so it is announced at
/// once), else straight into `state.json` for the next start. Audited
/// either way.
pub async fn shop_name(config: crate::config::Config, name: String) -> anyhow::Result<()> {
    let name: ShopName = name.parse()?;
    let data_dir = config.data_dir.clone();
    if crate::ops::runtime::server_running(&data_dir)? {
        let server = crate::ops::runtime::running_server(&data_dir)?;
        let answer = crate::ops::client::rename_shop(&server, name.as_str()).await?;
        let announced = answer["announced"].as_bool().unwrap_or(false);
        println!(
            "shop name set to {name}{}",
            if announced {
                " (announced over mDNS now)"
            } else {
                " (this server does not announce over mDNS)"
            }
        );
        return Ok(());
    }
    let stored = name.clone();
    let dir = data_dir.clone();
    let before = tokio::task::spawn_blocking(move || {
        let mut state = LanStateFile::open(&dir)?;
        let before = state.state().shop_name.clone();
        state.update(|s| s.shop_name = Some(stored))?;
        anyhow::Ok(before)
    })
    .await??;
    let db = crate::store::db::open(&data_dir).await?;
    let audited = crate::audit::record(
        &db,
        None,
        "lan.shop.rename",
        None,
        serde_json::json!({"from": before, "to": name, "via": "cli"}),
    )
    .await;
    db.close().await;
    if let Err(error) = audited {
        eprintln!("warning: could not write the audit log: {error}");
    }
    println!("shop name set to {name} (no server is running: announced at its next start)");
    Ok(())
}

/// The pinned host, reached over the pairing's mutual TLS and proved to
/// be the device this one paired with.
async fn connect_to_host(data_dir: PathBuf) -> anyhow::Result<(PinnedHost, DeviceClient)> {
    let (identity, state) = open(data_dir).await?;
    let Some(host) = state.state().host.clone() else {
        anyhow::bail!("this device is not paired with a host (kefu-server lan pair)");
    };
    let client = DeviceClient::connect(
        &identity,
        ServerTrust::Pinned(host.device_id),
        &host.address,
    )
    .await
    .map_err(explain)?;
    Ok((host, client))
}

fn explain(error: ClientError) -> anyhow::Error {
    anyhow::Error::new(error)
}

/// `lan handover` on a standby ("make this computer the host"): asks the
/// pinned host for a planned handover to this device, over the pairing's
/// mutual TLS, and waits for its outcome. The standby's `lan standby`
/// must be running: it catches up, takes the grant and ends as the new
/// host (docs/LAN.md, "Planned handover").
pub async fn handover(data_dir: PathBuf, address: Option<HostAddress>) -> anyhow::Result<()> {
    let (_, mut client) = connect_to_host(data_dir).await?;
    let (status, body) = client
        .request(
            Method::POST,
            "/lan/v1/handover",
            Some(&serde_json::json!({"address": address})),
            None,
        )
        .await
        .map_err(explain)?;
    if !status.is_success() {
        anyhow::bail!(
            "the host did not hand the shop over ({status}): {}",
            body["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    println!(
        "the host handed the shop over to this computer in term {} (writes paused {:.0} ms)",
        body["successor"]["term"],
        body["pause_ms"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}
