//! `LanConfig`: the `[lan]` section of the server's configuration, with
//! its defaults. Defined here so the LAN core can be built and tested on
//! its own; `config::Config` takes it in as a field when the listeners are
//! wired (see docs/LAN.md, "What is not done yet").
//!
//! Everything is off by default: a Kefu with no `[lan]` section listens on
//! loopback only and sends nothing to the network.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::address::HostAddress;
use super::discovery::table::TableLimits;
use super::identity::{MAX_NAMES, normalize_names};

/// At most this many interfaces in `lan.mdns.interfaces`.
pub const MAX_INTERFACES: usize = 16;

/// `[lan]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanConfig {
    /// The host's LAN listener (TLS only), e.g. `0.0.0.0:5339`. None: this
    /// device does not host on the LAN.
    pub bind: Option<SocketAddr>,
    /// Run as a peer of the host at this address (`serve --peer-of`): the
    /// server keeps no shop data and relays `/api/*` and the WebSocket to
    /// the host pinned by `lan pair` (docs/LAN.md, "Peer mode"). Excludes
    /// `bind`.
    pub peer_of: Option<HostAddress>,
    /// Extra names for the device certificate besides `localhost` and
    /// `kefu.local`: the host's LAN IP addresses or DNS names, for
    /// browsers (Kefu devices trust the key, not the names).
    pub names: Vec<String>,
    /// Serve the workstation (UI and API, with the usual agent login) on
    /// the LAN listener to clients without a device certificate: agents'
    /// browsers, which show a certificate warning first (docs/LAN.md,
    /// "Browsers on the LAN"). Off: only paired devices are served.
    pub browsers: bool,
    pub mdns: MdnsConfig,
    /// A planned handover pauses writes for at most this long: a standby
    /// that has not confirmed by then is dropped and the host resumes
    /// writes in its own term (docs/LAN.md, "Planned handover").
    pub handover_timeout_secs: u64,
    /// The synchronous standby: with 1, a client's send is acknowledged
    /// only once a standby has it durably (or after
    /// `sync_standby_timeout_ms` without one, when the host falls back to
    /// acknowledging at once until a standby catches up); 0, the default:
    /// acknowledged once durable here (docs/LAN.md, "The synchronous
    /// standby"). Only 0 and 1: one standby is all a shop has a use for.
    pub min_standby_acks: u32,
    /// How long a send waits for a standby before the host falls back to
    /// acknowledging without one.
    pub sync_standby_timeout_ms: u64,
}

/// `[lan.mdns]`: discovery by multicast DNS. Off by default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MdnsConfig {
    /// Advertise (a host) and browse (a device looking for one).
    pub enabled: bool,
    /// Interfaces to use, by name (`eth0`) or by one of their IP addresses.
    /// Empty: every interface except loopback.
    pub interfaces: Vec<String>,
    /// Hosts kept in the list of found hosts; new ones beyond it are dropped.
    pub max_hosts: usize,
    /// New hosts admitted to the list per minute; more are dropped.
    pub max_new_per_minute: usize,
    /// A found host not heard from for this long leaves the list.
    pub entry_ttl_secs: u64,
}

impl Default for MdnsConfig {
    fn default() -> MdnsConfig {
        MdnsConfig {
            enabled: false,
            interfaces: Vec::new(),
            max_hosts: 64,
            max_new_per_minute: 16,
            entry_ttl_secs: 900,
        }
    }
}

impl MdnsConfig {
    pub fn table_limits(&self) -> TableLimits {
        TableLimits {
            max_hosts: self.max_hosts,
            max_new_per_minute: self.max_new_per_minute,
            entry_ttl: Duration::from_secs(self.entry_ttl_secs),
        }
    }
}

/// The default of `lan.handover_timeout_secs`.
pub const HANDOVER_TIMEOUT_SECS: u64 = 10;
/// The default of `lan.sync_standby_timeout_ms`.
pub const SYNC_STANDBY_TIMEOUT_MS: u64 = 1000;

impl Default for LanConfig {
    fn default() -> LanConfig {
        LanConfig {
            bind: None,
            peer_of: None,
            names: Vec::new(),
            browsers: false,
            mdns: MdnsConfig::default(),
            handover_timeout_secs: HANDOVER_TIMEOUT_SECS,
            min_standby_acks: 0,
            sync_standby_timeout_ms: SYNC_STANDBY_TIMEOUT_MS,
        }
    }
}

impl LanConfig {
    /// Checks the values a file or the environment may have set; the
    /// message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.bind.is_some() && self.peer_of.is_some() {
            return Err(
                "lan.bind and lan.peer_of exclude each other: a device hosts the shop or joins it"
                    .to_owned(),
            );
        }
        if self.names.len() > MAX_NAMES {
            return Err(format!("lan.names: at most {MAX_NAMES} names"));
        }
        normalize_names(&self.names).map_err(|e| format!("lan.names: {e}"))?;
        let mdns = &self.mdns;
        if mdns.interfaces.len() > MAX_INTERFACES {
            return Err(format!("lan.mdns.interfaces: at most {MAX_INTERFACES}"));
        }
        if let Some(bad) = mdns
            .interfaces
            .iter()
            .find(|name| name.is_empty() || name.len() > 64 || name.chars().any(char::is_control))
        {
            return Err(format!(
                "lan.mdns.interfaces: {bad:?} is not an interface name or address"
            ));
        }
        if !(1..=1024).contains(&mdns.max_hosts) {
            return Err("lan.mdns.max_hosts must be 1–1024".to_owned());
        }
        if !(1..=1024).contains(&mdns.max_new_per_minute) {
            return Err("lan.mdns.max_new_per_minute must be 1–1024".to_owned());
        }
        if !(60..=86_400).contains(&mdns.entry_ttl_secs) {
            return Err("lan.mdns.entry_ttl_secs must be 60–86400".to_owned());
        }
        if !(1..=300).contains(&self.handover_timeout_secs) {
            return Err("lan.handover_timeout_secs must be 1–300".to_owned());
        }
        if self.min_standby_acks > 1 {
            return Err(format!(
                "lan.min_standby_acks must be 0 (acknowledge once durable on the host) or 1 (once \
                 a standby has it too), not {}",
                self.min_standby_acks
            ));
        }
        if !(1..=60_000).contains(&self.sync_standby_timeout_ms) {
            return Err("lan.sync_standby_timeout_ms must be 1–60000".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_off_and_an_empty_section_is_the_default() {
        let config: LanConfig = toml::from_str("").expect("empty");
        assert_eq!(config, LanConfig::default());
        assert!(config.bind.is_none());
        assert!(!config.mdns.enabled);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_full_section_parses() {
        let config: LanConfig = toml::from_str(
            "bind = \"0.0.0.0:5339\"\nnames = [\"192.168.1.20\"]\n[mdns]\nenabled = true\ninterfaces = [\"eth0\"]\nmax_hosts = 8\n",
        )
        .expect("parse");
        assert_eq!(config.bind, Some("0.0.0.0:5339".parse().expect("addr")));
        assert!(config.mdns.enabled);
        assert_eq!(config.mdns.max_hosts, 8);
        assert_eq!(config.mdns.max_new_per_minute, 16);
        assert!(config.validate().is_ok());
        let peer: LanConfig = toml::from_str("peer_of = \"192.168.1.20:5339\"").expect("peer");
        assert_eq!(
            peer.peer_of,
            Some("192.168.1.20:5339".parse().expect("address"))
        );
        assert!(peer.validate().is_ok());
        let both = LanConfig {
            bind: config.bind,
            ..peer
        };
        assert!(both.validate().expect_err("both").contains("peer_of"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<LanConfig>("bnd = \"0.0.0.0:1\"").is_err());
        assert!(toml::from_str::<LanConfig>("[mdns]\nenable = true").is_err());
        let with_mdns = |change: fn(&mut MdnsConfig)| {
            let mut mdns = MdnsConfig::default();
            change(&mut mdns);
            LanConfig {
                mdns,
                ..LanConfig::default()
            }
        };
        let bad_names = LanConfig {
            names: vec!["not a name".to_owned()],
            ..LanConfig::default()
        };
        assert!(
            bad_names
                .validate()
                .expect_err("names")
                .contains("lan.names")
        );
        let no_hosts = with_mdns(|m| m.max_hosts = 0);
        assert!(
            no_hosts
                .validate()
                .expect_err("max_hosts")
                .contains("max_hosts")
        );
        assert!(with_mdns(|m| m.entry_ttl_secs = 5).validate().is_err());
        assert!(with_mdns(|m| m.max_new_per_minute = 0).validate().is_err());
        assert!(
            with_mdns(|m| m.interfaces = vec![String::new()])
                .validate()
                .is_err()
        );
        assert!(
            with_mdns(|m| m.interfaces = vec!["eth0".to_owned(); MAX_INTERFACES + 1])
                .validate()
                .is_err()
        );
        assert!(
            with_mdns(|m| m.interfaces = vec!["eth0".to_owned(); MAX_INTERFACES])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn min_standby_acks_is_zero_or_one_and_its_timeout_bounded() {
        let sync: LanConfig =
            toml::from_str("min_standby_acks = 1\nsync_standby_timeout_ms = 250").expect("parse");
        assert_eq!(sync.min_standby_acks, 1);
        assert_eq!(sync.sync_standby_timeout_ms, 250);
        assert!(sync.validate().is_ok());
        assert_eq!(LanConfig::default().min_standby_acks, 0);
        let two = LanConfig {
            min_standby_acks: 2,
            ..LanConfig::default()
        };
        assert!(
            two.validate()
                .expect_err("2")
                .contains("lan.min_standby_acks must be 0")
        );
        assert!(toml::from_str::<LanConfig>("min_standby_acks = -1").is_err());
        let zero_timeout = LanConfig {
            sync_standby_timeout_ms: 0,
            ..LanConfig::default()
        };
        assert!(
            zero_timeout
                .validate()
                .expect_err("0 ms")
                .contains("sync_standby_timeout_ms")
        );
    }
}
