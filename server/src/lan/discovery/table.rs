//! The bounded list of hosts a browser has found.
//!
//! Discovery is a hint: an entry only says "someone at these addresses
//! claims to be device X of shop Y"; connecting checks the claim (the
//! device ID is pinned for the TLS handshake). So the list only has to
//! stay small and cheap whatever the LAN sends:
//!
//! - at most `max_hosts` entries; when full, a new instance is dropped
//!   (after expired entries are cleared), existing ones are still updated;
//! - at most `max_new_per_minute` new instances admitted in any 60 s
//!   (beyond: dropped until the window moves on), so a flood of made-up
//!   names cannot churn the list; updates of known instances are free;
//! - entries not seen again for `entry_ttl` expire;
//! - at most [`MAX_ADDRESSES`] addresses kept per entry, and instance
//!   names of at most [`MAX_INSTANCE_BYTES`].
//!
//! Every operation is O(entries) at worst, with no I/O; time is passed in,
//! so the limits are tested without waiting.
//!
//! What this cannot do: stop an attacker on the LAN from filling the list
//! with its own announcements or from hiding a real host (they could just
//! as well jam multicast). The manual path (address, or pairing link)
//! always remains.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::txt::{Announcement, TxtError};
use crate::lan::address::HostAddress;
use crate::lan::device_id::DeviceId;
use crate::lan::shop_name::ShopName;
use crate::lan::state::Role;

/// Addresses kept per host (an interface rarely has more).
pub const MAX_ADDRESSES: usize = 8;
/// DNS names are at most 255 bytes.
pub const MAX_INSTANCE_BYTES: usize = 255;
const WINDOW: Duration = Duration::from_secs(60);

/// The table's bounds (from `MdnsConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLimits {
    pub max_hosts: usize,
    pub max_new_per_minute: usize,
    pub entry_ttl: Duration,
}

/// One resolved announcement, as received (before any checking).
#[derive(Clone, Debug)]
pub struct Sighting {
    /// The DNS-SD instance's full name.
    pub instance: String,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
    /// TXT properties (key, value), at most `MAX_PROPERTIES + 1` of them.
    pub txt: Vec<(String, Option<Vec<u8>>)>,
}

/// A host someone announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredHost {
    pub instance: String,
    pub device_id: DeviceId,
    pub shop: Option<ShopName>,
    pub term: u64,
    /// Where it says it listens, IPv4 first.
    pub addresses: Vec<HostAddress>,
    pub last_seen: Instant,
}

/// What became of one sighting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    Admitted,
    Updated,
    /// The table is full of live entries.
    RefusedFull,
    /// Too many new instances this minute.
    RefusedRate,
    /// Not a Kefu announcement, or not one we can use.
    Malformed(TxtError),
    /// A well-formed announcement from a device that is not a host.
    NotAHost,
    /// No address or port to connect to, or an oversized name.
    Unusable,
}

/// Counters, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub admitted: u64,
    pub updated: u64,
    pub refused_full: u64,
    pub refused_rate: u64,
    pub malformed: u64,
    pub not_a_host: u64,
    pub unusable: u64,
    pub removed: u64,
    pub expired: u64,
}

/// The list (module doc).
#[derive(Debug)]
pub struct HostTable {
    limits: TableLimits,
    entries: HashMap<String, DiscoveredHost>,
    /// When the instances admitted in the last minute were admitted
    /// (at most `max_new_per_minute` instants).
    admissions: VecDeque<Instant>,
    stats: TableStats,
}

impl HostTable {
    pub fn new(limits: TableLimits) -> HostTable {
        HostTable {
            limits,
            entries: HashMap::new(),
            admissions: VecDeque::new(),
            stats: TableStats::default(),
        }
    }

    /// Takes in one sighting.
    pub fn observe(&mut self, now: Instant, sighting: &Sighting) -> Observation {
        let observation = self.classify(now, sighting);
        let counter = match &observation {
            Observation::Admitted => &mut self.stats.admitted,
            Observation::Updated => &mut self.stats.updated,
            Observation::RefusedFull => &mut self.stats.refused_full,
            Observation::RefusedRate => &mut self.stats.refused_rate,
            Observation::Malformed(_) => &mut self.stats.malformed,
            Observation::NotAHost => &mut self.stats.not_a_host,
            Observation::Unusable => &mut self.stats.unusable,
        };
        *counter = counter.saturating_add(1);
        observation
    }

    fn classify(&mut self, now: Instant, sighting: &Sighting) -> Observation {
        if sighting.instance.is_empty() || sighting.instance.len() > MAX_INSTANCE_BYTES {
            return Observation::Unusable;
        }
        let announcement = match Announcement::parse(
            sighting
                .txt
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_deref())),
        ) {
            Ok(announcement) => announcement,
            Err(error) => return Observation::Malformed(error),
        };
        if announcement.role != Role::Host {
            // A host that stepped down: forget it.
            if self.entries.remove(&sighting.instance).is_some() {
                self.stats.removed = self.stats.removed.saturating_add(1);
            }
            return Observation::NotAHost;
        }
        let addresses = usable_addresses(&sighting.addresses, sighting.port);
        if addresses.is_empty() {
            return Observation::Unusable;
        }
        let host = DiscoveredHost {
            instance: sighting.instance.clone(),
            device_id: announcement.device_id,
            shop: announcement.shop,
            term: announcement.term,
            addresses,
            last_seen: now,
        };
        if let Some(entry) = self.entries.get_mut(&sighting.instance) {
            *entry = host;
            return Observation::Updated;
        }
        if self.entries.len() >= self.limits.max_hosts {
            self.expire(now);
            if self.entries.len() >= self.limits.max_hosts {
                return Observation::RefusedFull;
            }
        }
        while self
            .admissions
            .front()
            .is_some_and(|admitted| now.saturating_duration_since(*admitted) >= WINDOW)
        {
            self.admissions.pop_front();
        }
        if self.admissions.len() >= self.limits.max_new_per_minute {
            return Observation::RefusedRate;
        }
        self.admissions.push_back(now);
        self.entries.insert(sighting.instance.clone(), host);
        Observation::Admitted
    }

    /// The instance said goodbye (or its records expired).
    pub fn remove(&mut self, instance: &str) {
        if self.entries.remove(instance).is_some() {
            self.stats.removed = self.stats.removed.saturating_add(1);
        }
    }

    /// Drops entries not seen for `entry_ttl`.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.limits.entry_ttl;
        let before = self.entries.len();
        self.entries
            .retain(|_, host| now.saturating_duration_since(host.last_seen) < ttl);
        let expired = (before - self.entries.len()) as u64;
        self.stats.expired = self.stats.expired.saturating_add(expired);
    }

    /// The live hosts, by shop name then instance.
    pub fn hosts(&self) -> Vec<DiscoveredHost> {
        let mut hosts: Vec<DiscoveredHost> = self.entries.values().cloned().collect();
        hosts.sort_by(|a, b| {
            let name = |h: &DiscoveredHost| h.shop.as_ref().map(|s| s.as_str().to_owned());
            name(a)
                .cmp(&name(b))
                .then_with(|| a.instance.cmp(&b.instance))
        });
        hosts
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn stats(&self) -> TableStats {
        self.stats
    }
}

/// Connectable addresses: no unspecified, multicast or broadcast ones, no
/// IPv6 link-local ones (unusable without the receiver's own interface
/// scope, which an address from the LAN cannot carry), and no port 0; IPv4 first, sorted, deduplicated, at most [`MAX_ADDRESSES`].
fn usable_addresses(addresses: &[IpAddr], port: u16) -> Vec<HostAddress> {
    if port == 0 {
        return Vec::new();
    }
    let mut ips: Vec<IpAddr> = addresses
        .iter()
        .copied()
        .filter(|ip| {
            !ip.is_unspecified()
                && !ip.is_multicast()
                && !matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
                && !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
        })
        .collect();
    ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    ips.dedup();
    ips.truncate(MAX_ADDRESSES);
    ips.into_iter()
        .map(|ip| HostAddress::from(SocketAddr::new(ip, port)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TableLimits {
        TableLimits {
            max_hosts: 4,
            max_new_per_minute: 3,
            entry_ttl: Duration::from_secs(600),
        }
    }

    fn sighting(instance: &str, seed: u8) -> Sighting {
        let announcement = Announcement {
            device_id: DeviceId::from_bytes([seed; 32]),
            shop: Some(format!("Shop {seed}").parse().expect("shop")),
            term: u64::from(seed),
            role: Role::Host,
        };
        Sighting {
            instance: instance.to_owned(),
            port: 5339,
            addresses: vec![IpAddr::from([10, 231, 0, seed])],
            txt: announcement
                .txt()
                .into_iter()
                .map(|(k, v)| (k, Some(v.into_bytes())))
                .collect(),
        }
    }

    #[test]
    fn admits_updates_and_removes() {
        let mut table = HostTable::new(limits());
        let t0 = Instant::now();
        assert_eq!(table.observe(t0, &sighting("a", 1)), Observation::Admitted);
        let mut newer = sighting("a", 1);
        newer.txt.retain(|(k, _)| k != "term");
        newer.txt.push(("term".to_owned(), Some(b"9".to_vec())));
        assert_eq!(table.observe(t0, &newer), Observation::Updated);
        let hosts = table.hosts();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].term, 9);
        assert_eq!(hosts[0].addresses[0].to_string(), "10.231.0.1:5339");
        table.remove("a");
        assert!(table.is_empty());
        assert_eq!(table.stats().removed, 1);
    }

    #[test]
    fn new_instances_are_rate_limited_per_minute() {
        let mut table = HostTable::new(TableLimits {
            max_hosts: 100,
            ..limits()
        });
        let t0 = Instant::now();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(
                table.observe(t0, &sighting(name, i as u8 + 1)),
                Observation::Admitted
            );
        }
        assert_eq!(
            table.observe(t0, &sighting("d", 4)),
            Observation::RefusedRate
        );
        // Known instances still update within the limit.
        assert_eq!(table.observe(t0, &sighting("a", 1)), Observation::Updated);
        let later = t0 + Duration::from_secs(59);
        assert_eq!(
            table.observe(later, &sighting("d", 4)),
            Observation::RefusedRate
        );
        let next_minute = t0 + Duration::from_secs(60);
        assert_eq!(
            table.observe(next_minute, &sighting("d", 4)),
            Observation::Admitted
        );
        assert_eq!(table.stats().refused_rate, 2);
        assert!(table.admissions.len() <= 3);
    }

    #[test]
    fn the_table_is_bounded_and_expired_entries_make_room() {
        let mut table = HostTable::new(TableLimits {
            max_new_per_minute: 100,
            ..limits()
        });
        let t0 = Instant::now();
        for i in 0..4u8 {
            assert_eq!(
                table.observe(t0, &sighting(&format!("h{i}"), i + 1)),
                Observation::Admitted
            );
        }
        assert_eq!(
            table.observe(t0, &sighting("h4", 5)),
            Observation::RefusedFull
        );
        assert_eq!(table.len(), 4);
        // Three refresh, one goes quiet; after the TTL it makes room.
        let t1 = t0 + Duration::from_secs(300);
        for i in 0..3u8 {
            assert_eq!(
                table.observe(t1, &sighting(&format!("h{i}"), i + 1)),
                Observation::Updated
            );
        }
        let t2 = t0 + Duration::from_secs(600);
        assert_eq!(table.observe(t2, &sighting("h4", 5)), Observation::Admitted);
        assert_eq!(table.len(), 4);
        assert!(table.hosts().iter().all(|h| h.instance != "h3"));
        assert_eq!(table.stats().expired, 1);
        // Everything expires if no one speaks again.
        table.expire(t2 + Duration::from_secs(600));
        assert!(table.is_empty());
    }

    #[test]
    fn a_flood_of_junk_never_grows_the_table() {
        // 100,000 sightings: malformed, oversized, non-hosts and fresh names
        // with valid records. The table stays within its bounds and every
        // call returns.
        let mut table = HostTable::new(TableLimits {
            max_hosts: 64,
            max_new_per_minute: 16,
            entry_ttl: Duration::from_secs(900),
        });
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            let mut s = sighting(&format!("flood-{i}"), (i % 250) as u8 + 1);
            match i % 5 {
                0 => s.txt = vec![("v".to_owned(), Some(vec![0xff; 300]))],
                1 => s.instance = "x".repeat(1000),
                2 => {
                    s.txt.retain(|(k, _)| k != "role");
                    s.txt.push(("role".to_owned(), Some(b"peer".to_vec())));
                }
                3 => s.txt.extend((0..40).map(|j| (format!("junk{j}"), None))),
                _ => {}
            }
            table.observe(now, &s);
            assert!(table.len() <= 64);
            assert!(table.admissions.len() <= 16);
        }
        let stats = table.stats();
        // 100 s of flood: at most 16 per started minute got in.
        assert!(stats.admitted <= 32, "{stats:?}");
        assert!(stats.refused_rate > 0);
        assert!(stats.malformed >= 40_000);
        assert_eq!(stats.unusable, 20_000);
        assert_eq!(stats.not_a_host, 20_000);
    }

    #[test]
    fn addresses_are_filtered_sorted_and_bounded() {
        let mut s = sighting("a", 1);
        s.addresses = vec![
            "fe80::1".parse().expect("ip"),
            "0.0.0.0".parse().expect("ip"),
            "224.0.0.251".parse().expect("ip"),
            "255.255.255.255".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        ];
        s.addresses
            .extend((10..30u8).map(|i| IpAddr::from([192, 168, 0, i])));
        let mut table = HostTable::new(limits());
        assert_eq!(table.observe(Instant::now(), &s), Observation::Admitted);
        let host = &table.hosts()[0];
        assert_eq!(host.addresses.len(), MAX_ADDRESSES);
        assert_eq!(host.addresses[0].to_string(), "10.0.0.2:5339");
        assert!(
            host.addresses
                .iter()
                .all(|a| !a.to_string().contains("fe80"))
        );
        let mut v6 = sighting("v6", 4);
        v6.addresses = vec![
            "fe80::1".parse().expect("ip"),
            "fd00::5".parse().expect("ip"),
        ];
        assert_eq!(table.observe(Instant::now(), &v6), Observation::Admitted);
        let found = table
            .hosts()
            .into_iter()
            .find(|h| h.instance == "v6")
            .expect("v6");
        assert_eq!(found.addresses.len(), 1);
        assert_eq!(found.addresses[0].to_string(), "[fd00::5]:5339");

        let mut nothing = sighting("b", 2);
        nothing.addresses = vec!["0.0.0.0".parse().expect("ip")];
        assert_eq!(
            table.observe(Instant::now(), &nothing),
            Observation::Unusable
        );
        let mut no_port = sighting("c", 3);
        no_port.port = 0;
        assert_eq!(
            table.observe(Instant::now(), &no_port),
            Observation::Unusable
        );
    }

    #[test]
    fn a_host_that_steps_down_is_forgotten() {
        let mut table = HostTable::new(limits());
        let t0 = Instant::now();
        table.observe(t0, &sighting("a", 1));
        let mut solo = sighting("a", 1);
        solo.txt.retain(|(k, _)| k != "role");
        solo.txt.push(("role".to_owned(), Some(b"solo".to_vec())));
        assert_eq!(table.observe(t0, &solo), Observation::NotAHost);
        assert!(table.is_empty());
    }
}
