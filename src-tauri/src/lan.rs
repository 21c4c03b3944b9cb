//! Settings → LAN on the desktop (docs/LAN.md, docs/DESKTOP.md): make this
//! computer the shop's host, join a shop's host as a peer (pairing, with
//! the code both screens show), leave it; and the link's state for the
//! window and the tray; the shop hosts found over mDNS while the join
//! screen is open ([`Discovery`]). Everything goes through the server library
//! (`kefu_server::lan`): identity, state file, pairing client. No SQL and
//! no protocol here; the host's device list is the page's, over the API.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kefu_server::lan::client::{self, PairingProgress};
use kefu_server::lan::config::MdnsConfig;
use kefu_server::lan::discovery::Browser;
use kefu_server::lan::discovery::table::DiscoveredHost;
use kefu_server::lan::identity::MAX_NAMES;
use kefu_server::lan::pairing::{PairingCode, PairingLink};
use kefu_server::lan::peer::link::LinkStatus;
use kefu_server::lan::state::{LanStateFile, Role};
use kefu_server::lan::{DeviceId, HostAddress, Identity, ShopName};
use parking_lot::Mutex;
use serde::Serialize;

/// How often pairing asks the host whether the admin approved.
const POLL: Duration = Duration::from_secs(1);

/// This computer's non-loopback IP addresses (at most the certificate's
/// limit of names): what peers reach a host listening on `0.0.0.0` at, so
/// the pairing links and the certificate name them.
pub fn lan_addresses() -> Vec<String> {
    let mut addresses: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|interfaces| {
            interfaces
                .into_iter()
                .map(|interface| interface.ip())
                .filter(|ip| !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast())
                // Link-local IPv6 needs a scope a link cannot carry.
                .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
                .collect()
        })
        .unwrap_or_default();
    addresses.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    addresses.dedup();
    // The identity adds `localhost` and `kefu.local` to these.
    addresses.truncate(MAX_NAMES - 2);
    addresses.iter().map(IpAddr::to_string).collect()
}

/// What the admin typed or pasted to join a host: a pairing link (which
/// pins the host's key from the first connection) or `ADDRESS:PORT`.
pub fn join_target(text: &str) -> Result<(HostAddress, Option<DeviceId>), String> {
    let text = text.trim();
    if text.len() > 512 {
        return Err("too long for an address or a pairing link".into());
    }
    if text.to_ascii_lowercase().starts_with("kefu:") {
        let link: PairingLink = text.parse().map_err(|e| format!("{e}"))?;
        return Ok((link.host, Some(link.device_id)));
    }
    let address: HostAddress = text.parse().map_err(|e| format!("{e}"))?;
    Ok((address, None))
}

/// Where joining a host stands, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Joining {
    #[default]
    Idle,
    Connecting {
        host: String,
    },
    /// The code is known: the person compares it with the host's screen,
    /// and the admin approves there.
    Waiting {
        host: String,
        host_device_id: String,
        host_short_id: String,
        code: String,
    },
    /// Approved and pinned: the embedded server restarts as a peer.
    Joined {
        host: String,
    },
    Failed {
        message: String,
    },
}

/// The pairing in progress, if any (one at a time).
#[derive(Default)]
pub struct Pairing {
    pub view: Mutex<Joining>,
    pub task: Mutex<Option<tauri::async_runtime::JoinHandle<()>>>,
}

impl Pairing {
    pub fn set(&self, view: Joining) {
        *self.view.lock() = view;
    }

    pub fn view(&self) -> Joining {
        self.view.lock().clone()
    }

    /// Stops a pairing in progress; the page shows nothing any more.
    pub fn cancel(&self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
        self.set(Joining::Idle);
    }
}

struct Progress {
    pairing: Arc<Pairing>,
    host: String,
}

impl PairingProgress for Progress {
    fn code(&mut self, host: &DeviceId, code: PairingCode) {
        self.pairing.set(Joining::Waiting {
            host: self.host.clone(),
            host_device_id: host.to_string(),
            host_short_id: host.short(),
            code: code.to_string(),
        });
    }
}

/// The peer's side of pairing, run as a task: connect, show the code,
/// wait for the admin's approval on the host, then pin the host in
/// `lan/state.json`. Returns once pinned (the caller restarts the server).
pub async fn pair(
    data_dir: &Path,
    address: HostAddress,
    expected: Option<DeviceId>,
    name: Option<String>,
    pairing: Arc<Pairing>,
) -> Result<(), String> {
    let dir = data_dir.to_path_buf();
    let (identity, state) = tokio::task::spawn_blocking(move || {
        let (identity, _) = Identity::open(&dir).map_err(|e| e.to_string())?;
        let state = LanStateFile::open(&dir).map_err(|e| e.to_string())?;
        Ok::<_, String>((identity, state))
    })
    .await
    .map_err(|e| e.to_string())??;
    if let Some(pinned) = state.state().host.as_ref().map(|h| h.device_id)
        && expected.is_some_and(|expected| expected != pinned)
    {
        return Err(format!(
            "this computer is paired with host {pinned}; leave it first"
        ));
    }
    let mut progress = Progress {
        pairing: Arc::clone(&pairing),
        host: address.to_string(),
    };
    let paired = client::pair(
        &identity,
        &address,
        expected,
        name.as_deref(),
        POLL,
        &mut progress,
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut state = state;
    tokio::task::spawn_blocking(move || state.become_peer(paired.host))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot pin the host: {e}"))?;
    Ok(())
}

/// What Settings → LAN shows about this computer.
#[derive(Debug, Clone, Serialize)]
pub struct LanInfo {
    /// `solo`, `host` (hosting now) or `peer`.
    pub role: &'static str,
    pub device_id: String,
    pub short_id: String,
    /// The LAN address from the preferences (hosting, or about to).
    pub host_bind: Option<String>,
    /// Where the LAN listener listens now.
    pub listening: Option<String>,
    pub mdns: bool,
    pub shop_name: Option<String>,
    /// On a peer: the link to the host.
    pub link: Option<LinkStatus>,
    pub joining: Joining,
    /// The address a host should listen on unless told otherwise.
    pub default_bind: &'static str,
}

/// This device's ID (making the identity on first use) and its LAN state.
pub async fn identity_and_state(
    data_dir: &Path,
) -> Result<(DeviceId, Role, Option<ShopName>), String> {
    let dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (identity, _) = Identity::open(&dir).map_err(|e| e.to_string())?;
        let state = LanStateFile::open(&dir).map_err(|e| e.to_string())?;
        Ok((
            identity.device_id(),
            state.state().role,
            state.state().shop_name.clone(),
        ))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Before hosting: the shop name announced over mDNS (and shown to
/// peers), kept in `lan/state.json`; a solo device with no name leaves it.
pub async fn set_shop_name(data_dir: &Path, name: Option<String>) -> Result<(), String> {
    let name = match name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) {
        Some(name) => Some(name.parse::<ShopName>().map_err(|e| e.to_string())?),
        None => None,
    };
    let dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut state = LanStateFile::open(&dir).map_err(|e| e.to_string())?;
        state
            .update(|s| s.shop_name = name)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Back to solo (leaving the host, or no longer hosting): forgets the
/// pinned host, keeps history and terms.
pub async fn become_solo(data_dir: &Path) -> Result<(), String> {
    let dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut state = LanStateFile::open(&dir).map_err(|e| e.to_string())?;
        state.become_solo().map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// How long the mDNS browser keeps running after the page last asked for
/// the list (the join screen asks every few seconds while it is open).
const DISCOVERY_IDLE: Duration = Duration::from_secs(30);
/// How often the idle check runs.
const DISCOVERY_CHECK: Duration = Duration::from_secs(5);

/// A shop host found over mDNS, as the join screen lists it. A hint, never
/// trust: picking one fills in its pairing link (address and announced
/// device ID), and pairing still goes through the code both screens show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundHost {
    pub shop: Option<String>,
    /// The first announced address (IPv4 first), `IP:PORT`.
    pub address: String,
    pub addresses: Vec<String>,
    /// Grouped for people (`7QK4-…`).
    pub device_id: String,
    pub short_id: String,
    pub term: u64,
    /// `kefu://pair?host=ADDRESS&id=DEVICE_ID`, what picking it fills in.
    pub link: String,
}

/// The list the page shows: usable entries only (an address to reach),
/// never this computer itself, by shop name then device ID.
pub fn found_hosts(hosts: Vec<DiscoveredHost>, own: &DeviceId) -> Vec<FoundHost> {
    let mut found: Vec<FoundHost> = hosts
        .into_iter()
        .filter(|host| host.device_id != *own)
        .filter_map(|host| {
            let first = host.addresses.first()?.clone();
            Some(FoundHost {
                shop: host.shop.map(|shop| shop.to_string()),
                address: first.to_string(),
                addresses: host.addresses.iter().map(ToString::to_string).collect(),
                device_id: host.device_id.to_string(),
                short_id: host.device_id.short(),
                term: host.term,
                link: PairingLink {
                    host: first,
                    device_id: host.device_id,
                }
                .to_string(),
            })
        })
        .collect();
    found.sort_by(|a, b| (&a.shop, &a.device_id).cmp(&(&b.shop, &b.device_id)));
    found
}

/// Browsing for shop hosts (`_kefu._tcp`, the library's bounded browser),
/// only while the join screen asks: started on the first ask, stopped when
/// the page says so or has not asked for [`DISCOVERY_IDLE`].
#[derive(Default)]
pub struct Discovery {
    running: Mutex<Option<Browsing>>,
}

struct Browsing {
    browser: Browser,
    last_asked: std::time::Instant,
}

impl Discovery {
    /// The hosts found so far, starting the browser on first use (on every
    /// interface but loopback, whatever the hosting preferences say: the
    /// person asked to look).
    /// `KEFU_DESKTOP_MDNS_BROWSE=off` (the desktop e2e: no mDNS on the
    /// machine's interfaces from a test) lists nothing and sends nothing.
    pub fn found(self: &Arc<Self>, own: &DeviceId) -> Result<Vec<FoundHost>, String> {
        if std::env::var("KEFU_DESKTOP_MDNS_BROWSE").is_ok_and(|v| v == "off") {
            return Ok(Vec::new());
        }
        let mut running = self.running.lock();
        if running.is_none() {
            let config = MdnsConfig {
                enabled: true,
                ..MdnsConfig::default()
            };
            let browser = Browser::start(&config).map_err(|e| e.to_string())?;
            *running = Some(Browsing {
                browser,
                last_asked: std::time::Instant::now(),
            });
            tauri::async_runtime::spawn(Arc::clone(self).stop_when_idle());
        }
        let browsing = running.as_mut().expect("started above");
        browsing.last_asked = std::time::Instant::now();
        Ok(found_hosts(browsing.browser.hosts(), own))
    }

    /// Stops browsing (the daemon says nothing more on the LAN).
    pub async fn stop(&self) {
        let browsing = self.running.lock().take();
        if let Some(browsing) = browsing {
            browsing.browser.shutdown().await;
        }
    }

    async fn stop_when_idle(self: Arc<Self>) {
        loop {
            tokio::time::sleep(DISCOVERY_CHECK).await;
            let idle = {
                let mut running = self.running.lock();
                match running.as_ref() {
                    None => return,
                    Some(b) if b.last_asked.elapsed() >= DISCOVERY_IDLE => running.take(),
                    Some(_) => None,
                }
            };
            if let Some(browsing) = idle {
                browsing.browser.shutdown().await;
                return;
            }
        }
    }
}

/// The tray's line about the LAN (en or zh-CN).
pub fn tray_line(role: &str, link: Option<&LinkStatus>, zh: bool) -> String {
    use kefu_server::lan::peer::link::LinkState;
    match (role, link) {
        ("host", _) => if zh {
            "本机是店铺主机"
        } else {
            "Hosting the shop on the LAN"
        }
        .into(),
        ("peer", Some(link)) => match link.state {
            LinkState::Connected if zh => format!("已连接主机 {}", link.host),
            LinkState::Connected => format!("Connected to {}", link.host),
            LinkState::Connecting | LinkState::Reconnecting if zh => {
                format!("正在重新连接 {}…", link.host)
            }
            LinkState::Connecting | LinkState::Reconnecting => {
                format!("Reconnecting to {}…", link.host)
            }
            LinkState::Unreachable if zh => format!("主机 {} 无法访问", link.host),
            LinkState::Unreachable => format!("Host {} unreachable", link.host),
            LinkState::Refused if zh => format!("主机 {} 拒绝连接", link.host),
            LinkState::Refused => format!("Host {} refused this computer", link.host),
        },
        _ => if zh {
            "本机单独使用"
        } else {
            "This computer only"
        }
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_target_is_a_link_or_an_address() {
        let id = "GAVW-HOZ3-54VJ-I6D3-LGKS-RMIV-XE4G-JUP2-GD3O-AEK6-675A-IYEH-PHIQ";
        let (address, pinned) =
            join_target(&format!(" kefu://pair?host=192.168.1.20:5339&id={id} ")).unwrap();
        assert_eq!(address.to_string(), "192.168.1.20:5339");
        assert_eq!(pinned.unwrap().to_string(), id);
        let (address, pinned) = join_target("127.0.0.2:5339").unwrap();
        assert_eq!(address.to_string(), "127.0.0.2:5339");
        assert!(pinned.is_none());
        assert!(join_target("").is_err());
        assert!(join_target("192.168.1.20").is_err(), "a port is needed");
        assert!(join_target("kefu://pair?host=192.168.1.20:5339").is_err());
        assert!(join_target(&format!("kefu://pair?host=1.2.3.4:1&id={id}&x=1")).is_err());
        assert!(join_target(&"a".repeat(600)).is_err());
    }

    #[test]
    fn the_tray_line_says_where_the_link_stands() {
        use kefu_server::lan::peer::link::LinkState;
        let link = |state| LinkStatus {
            role: "peer",
            state,
            host: "192.168.1.20:5339".into(),
            host_device_id: DeviceId::from_bytes([7; 32]),
            host_short_id: "A4DQ-OBYH".into(),
            term: Some(2),
            highest_term_seen: 2,
            refusal: None,
            message: None,
            for_ms: 0,
        };
        assert_eq!(
            tray_line("peer", Some(&link(LinkState::Connected)), false),
            "Connected to 192.168.1.20:5339"
        );
        assert_eq!(
            tray_line("peer", Some(&link(LinkState::Reconnecting)), false),
            "Reconnecting to 192.168.1.20:5339…"
        );
        assert_eq!(
            tray_line("peer", Some(&link(LinkState::Unreachable)), false),
            "Host 192.168.1.20:5339 unreachable"
        );
        assert_eq!(
            tray_line("peer", Some(&link(LinkState::Unreachable)), true),
            "主机 192.168.1.20:5339 无法访问"
        );
        assert_eq!(
            tray_line("host", None, false),
            "Hosting the shop on the LAN"
        );
        assert_eq!(tray_line("solo", None, true), "本机单独使用");
    }

    #[test]
    fn found_hosts_are_listed_with_their_link_never_this_computer() {
        let own = DeviceId::from_bytes([1; 32]);
        let other = DeviceId::from_bytes([2; 32]);
        let third = DeviceId::from_bytes([3; 32]);
        let host = |id: DeviceId, shop: Option<&str>, addresses: &[&str]| DiscoveredHost {
            instance: format!(
                "{} ({})._kefu._tcp.local.",
                shop.unwrap_or("Kefu"),
                id.short()
            ),
            device_id: id,
            shop: shop.map(|s| s.parse().unwrap()),
            term: 3,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            last_seen: std::time::Instant::now(),
        };
        let found = found_hosts(
            vec![
                host(third, Some("茶馆"), &["192.168.1.30:5339"]),
                host(own, Some("Mine"), &["192.168.1.10:5339"]),
                host(
                    other,
                    Some("Bakery"),
                    &["192.168.1.20:5339", "[fd00::20]:5339"],
                ),
                host(DeviceId::from_bytes([4; 32]), None, &[]),
            ],
            &own,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].shop.as_deref(), Some("Bakery"));
        assert_eq!(found[0].address, "192.168.1.20:5339");
        assert_eq!(found[0].addresses.len(), 2);
        assert_eq!(found[0].device_id, other.to_string());
        assert!(found[0].device_id.contains('-'), "grouped for people");
        assert_eq!(found[0].short_id, other.short());
        assert_eq!(found[0].term, 3);
        // Picking it fills in a link the join command takes, pinning the
        // announced ID (pairing still shows the code on both screens).
        let (address, pinned) = join_target(&found[0].link).unwrap();
        assert_eq!(address.to_string(), "192.168.1.20:5339");
        assert_eq!(pinned, Some(other));
        assert_eq!(found[1].shop.as_deref(), Some("茶馆"));
    }

    #[test]
    fn lan_addresses_are_never_loopback() {
        let addresses = lan_addresses();
        assert!(addresses.len() <= MAX_NAMES - 2);
        for address in addresses {
            let ip: IpAddr = address.parse().unwrap();
            assert!(!ip.is_loopback(), "{ip}");
        }
    }

    #[tokio::test]
    async fn the_shop_name_is_checked_and_kept_and_leaving_forgets_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let (id, role, name) = identity_and_state(dir.path()).await.unwrap();
        assert_eq!(role, Role::Solo);
        assert!(name.is_none());
        set_shop_name(dir.path(), Some(" 小林茶馆 ".into()))
            .await
            .unwrap();
        assert!(
            set_shop_name(dir.path(), Some("bad\u{7}name".into()))
                .await
                .is_err()
        );
        let (again, _, name) = identity_and_state(dir.path()).await.unwrap();
        assert_eq!(again, id, "the identity is made once");
        assert_eq!(name.unwrap().as_str(), "小林茶馆");
        become_solo(dir.path()).await.unwrap();
    }
}
