//! Discovery by multicast DNS (mdns-sd): a host advertises
//! `_kefu._tcp.local.` with its device ID, shop name, term and role in TXT
//! ([`Advertiser`]); a device looking for a host browses for it and keeps a
//! bounded list of what it found ([`Browser`], [`table::HostTable`]).
//!
//! A hint, never trust: whatever is found is checked by TLS against the
//! announced device ID when connecting, and the manual path (address, or
//! pairing link) always exists, because multicast is often blocked.
//!
//! Nothing is sent unless the configuration enables it
//! (`lan.mdns.enabled`), and then only on the interfaces it names (all
//! but loopback if it names none). One caveat of mdns-sd: when its daemon
//! starts it joins the mDNS multicast group on every interface before our
//! interface selection is applied; that is an IGMP membership report on
//! each, no mDNS query or answer. The daemon runs on its own thread; our
//! side never blocks on it (its commands are non-blocking sends to a
//! bounded queue, and the browser task awaits its events).

pub mod table;
pub mod txt;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::table::{DiscoveredHost, HostTable, Sighting, TableStats};
use self::txt::{Announcement, MAX_PROPERTIES};
use super::config::MdnsConfig;

/// The DNS-SD service type.
pub const SERVICE_TYPE: &str = "_kefu._tcp.local.";
/// DNS labels are at most 63 bytes; the instance name is one label.
const MAX_INSTANCE_LABEL: usize = 63;
/// How often the browser asks again (which also refreshes the entries of
/// hosts still there, so they do not expire).
const REBROWSE_EVERY: Duration = Duration::from_secs(120);
/// Wait before browsing again after the daemon ended a subscription.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Why discovery could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("mDNS discovery is off (lan.mdns.enabled = false)")]
    Disabled,
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
}

/// Starts an mDNS daemon restricted to the configured interfaces.
fn daemon(config: &MdnsConfig) -> Result<ServiceDaemon, DiscoveryError> {
    if !config.enabled {
        return Err(DiscoveryError::Disabled);
    }
    let daemon = ServiceDaemon::new()?;
    // Selections apply in order, the last match winning: everything off,
    // then what was asked for back on.
    daemon.disable_interface(IfKind::All)?;
    if config.interfaces.is_empty() {
        daemon.enable_interface(IfKind::All)?;
        daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
    } else {
        let kinds: Vec<IfKind> = config
            .interfaces
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => IfKind::Addr(ip),
                Err(_) => IfKind::Name(name.clone()),
            })
            .collect();
        daemon.enable_interface(kinds)?;
    }
    Ok(daemon)
}

/// `<shop> (<short id>)`, cut at a character boundary to fit one DNS label.
pub fn instance_name(announcement: &Announcement) -> String {
    let suffix = format!(" ({})", announcement.device_id.short());
    let shop = announcement
        .shop
        .as_ref()
        .map_or("Kefu", |shop| shop.as_str());
    let room = MAX_INSTANCE_LABEL - suffix.len();
    let mut end = shop.len().min(room);
    while !shop.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", shop[..end].trim_end())
}

/// A host's announcement, live until [`Advertiser::shutdown`].
pub struct Advertiser {
    daemon: ServiceDaemon,
    fullname: String,
    host_name: String,
    port: u16,
    addresses: Vec<IpAddr>,
}

impl std::fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertiser")
            .field("fullname", &self.fullname)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Advertiser {
    /// Announces `announcement` for the LAN listener on `port`. With no
    /// `addresses`, the addresses of the enabled interfaces are announced
    /// (and kept up to date as they change).
    pub fn start(
        config: &MdnsConfig,
        announcement: &Announcement,
        port: u16,
        addresses: &[IpAddr],
    ) -> Result<Advertiser, DiscoveryError> {
        let daemon = daemon(config)?;
        let host_name = format!(
            "kefu-{}.local.",
            announcement.device_id.short().to_ascii_lowercase()
        );
        let mut advertiser = Advertiser {
            daemon,
            fullname: String::new(),
            host_name,
            port,
            addresses: addresses.to_vec(),
        };
        advertiser.update(announcement)?;
        Ok(advertiser)
    }

    /// Announces new values (a new term, a new shop name). Registering the
    /// same instance again replaces its records.
    pub fn update(&mut self, announcement: &Announcement) -> Result<(), DiscoveryError> {
        let instance = instance_name(announcement);
        let txt = announcement.txt();
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &self.host_name,
            self.addresses.as_slice(),
            self.port,
            txt.as_slice(),
        )?;
        if self.addresses.is_empty() {
            info = info.enable_addr_auto();
        }
        let fullname = info.get_fullname().to_owned();
        if !self.fullname.is_empty() && self.fullname != fullname {
            // The shop was renamed: say goodbye under the old name.
            let _ = self.daemon.unregister(&self.fullname);
        }
        self.daemon.register(info)?;
        self.fullname = fullname;
        Ok(())
    }

    /// The instance's full DNS-SD name.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// Says goodbye (so browsers drop the host at once) and stops the
    /// daemon, waiting at most a second for each.
    pub async fn shutdown(self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(Duration::from_secs(1), done.recv_async()).await;
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = tokio::time::timeout(Duration::from_secs(1), done.recv_async()).await;
        }
    }
}

/// Browses for hosts into a bounded list, until [`Browser::shutdown`].
pub struct Browser {
    table: Arc<Mutex<HostTable>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts browsing (needs a tokio runtime).
    pub fn start(config: &MdnsConfig) -> Result<Browser, DiscoveryError> {
        let daemon = daemon(config)?;
        let receiver = daemon.browse(SERVICE_TYPE)?;
        let table = Arc::new(Mutex::new(HostTable::new(config.table_limits())));
        let stop = CancellationToken::new();
        let task = tokio::spawn(browse(daemon, receiver, Arc::clone(&table), stop.clone()));
        Ok(Browser { table, stop, task })
    }

    /// The hosts found and still live.
    pub fn hosts(&self) -> Vec<DiscoveredHost> {
        let mut table = self.table.lock();
        table.expire(Instant::now());
        table.hosts()
    }

    pub fn stats(&self) -> TableStats {
        self.table.lock().stats()
    }

    /// Stops browsing and the daemon.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn browse(
    daemon: ServiceDaemon,
    mut receiver: mdns_sd::Receiver<ServiceEvent>,
    table: Arc<Mutex<HostTable>>,
    stop: CancellationToken,
) {
    let mut rebrowse = tokio::time::interval(REBROWSE_EVERY);
    rebrowse.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = rebrowse.tick() => {
                receiver = match rebrowse_now(&daemon) {
                    Some(receiver) => receiver,
                    None => continue,
                };
            }
            event = receiver.recv_async() => match event {
                Ok(event) => handle(&table, event),
                Err(_) => {
                    // The daemon ends a subscription whose queue overflowed
                    // (we were too slow) or when it stops: ask again.
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(RESUBSCRIBE_AFTER) => {}
                    }
                    match rebrowse_now(&daemon) {
                        Some(fresh) => receiver = fresh,
                        None => {
                            // The daemon is gone: stop rather than spin.
                            tracing::warn!("mDNS: the browser stops, its daemon is gone");
                            break;
                        }
                    }
                }
            },
        }
    }
    if let Ok(done) = daemon.shutdown() {
        let _ = tokio::time::timeout(Duration::from_secs(1), done.recv_async()).await;
    }
}

fn rebrowse_now(daemon: &ServiceDaemon) -> Option<mdns_sd::Receiver<ServiceEvent>> {
    let _ = daemon.stop_browse(SERVICE_TYPE);
    match daemon.browse(SERVICE_TYPE) {
        Ok(receiver) => Some(receiver),
        Err(error) => {
            tracing::warn!(%error, "mDNS: cannot browse again");
            None
        }
    }
}

fn handle(table: &Mutex<HostTable>, event: ServiceEvent) {
    match event {
        ServiceEvent::ServiceResolved(resolved) => {
            let sighting = sighting(&resolved);
            let observation = table.lock().observe(Instant::now(), &sighting);
            tracing::debug!(instance = %sighting.instance, ?observation, "mDNS announcement");
        }
        ServiceEvent::ServiceRemoved(_, fullname) => table.lock().remove(&fullname),
        _ => {}
    }
}

/// Copies what the table needs, no more than it will look at.
fn sighting(resolved: &mdns_sd::ResolvedService) -> Sighting {
    Sighting {
        instance: resolved.get_fullname().to_owned(),
        port: resolved.get_port(),
        addresses: resolved
            .get_addresses()
            .iter()
            .take(4 * table::MAX_ADDRESSES)
            .map(|ip| ip.to_ip_addr())
            .collect(),
        txt: resolved
            .get_properties()
            .iter()
            .take(MAX_PROPERTIES + 1)
            .map(|property| {
                (
                    property.key().to_owned(),
                    property.val().map(<[u8]>::to_vec),
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lan::device_id::DeviceId;
    use crate::lan::state::Role;

    fn announcement(shop: Option<&str>) -> Announcement {
        Announcement {
            device_id: DeviceId::from_bytes([5; 32]),
            shop: shop.map(|s| s.parse().expect("shop")),
            term: 1,
            role: Role::Host,
        }
    }

    #[test]
    fn instance_names_fit_a_label() {
        let short = DeviceId::from_bytes([5; 32]).short();
        assert_eq!(
            instance_name(&announcement(None)),
            format!("Kefu ({short})")
        );
        assert_eq!(
            instance_name(&announcement(Some("Tea House"))),
            format!("Tea House ({short})")
        );
        let long = instance_name(&announcement(Some(&"茶".repeat(21))));
        assert!(long.len() <= 63, "{}", long.len());
        assert!(long.ends_with(&format!("({short})")));
        assert!(long.starts_with("茶茶"));
    }

    #[test]
    fn a_disabled_config_starts_nothing() {
        // No daemon is made (and so nothing is sent) unless enabled.
        let config = MdnsConfig::default();
        assert!(matches!(
            Advertiser::start(&config, &announcement(None), 5339, &[]),
            Err(DiscoveryError::Disabled)
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        assert!(matches!(
            Browser::start(&config),
            Err(DiscoveryError::Disabled)
        ));
    }
}
