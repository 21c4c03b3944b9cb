//! `HostAddress`: where a host listens, as a person types it or a pairing
//! link carries it: an IP address or a host name, and a port
//! (`192.168.1.20:5339`, `[fe80::1]:5339`, `shop-pc.local:5339`).
//!
//! It says where to connect, never whom to trust: the device ID does that.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::identity::is_dns_name;

/// Longest text `from_str` accepts (a 253-character name, brackets, port).
const MAX_TEXT: usize = 300;

/// The host part of a [`HostAddress`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    /// An RFC 1123 name, lower case.
    Name(String),
}

/// A host and a port (not 0).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostAddress {
    host: Host,
    port: u16,
}

/// Why a text is not a host address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostAddressError {
    #[error("an address is HOST:PORT, e.g. 192.168.1.20:5339 or [fe80::1]:5339")]
    Shape,
    #[error("the port must be a number from 1 to 65535")]
    Port,
    #[error("the host must be an IP address or a host name (letters, digits, hyphens, dots)")]
    Host,
}

impl HostAddress {
    pub fn new(host: Host, port: u16) -> Result<HostAddress, HostAddressError> {
        if port == 0 {
            return Err(HostAddressError::Port);
        }
        let host = match host {
            Host::Name(name) if is_dns_name(&name) => Host::Name(name.to_ascii_lowercase()),
            Host::Name(_) => return Err(HostAddressError::Host),
            ip => ip,
        };
        Ok(HostAddress { host, port })
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address, when the host is an IP address (a name must be
    /// resolved by the caller, e.g. `tokio::net::lookup_host`).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }
}

impl From<SocketAddr> for HostAddress {
    /// A socket address with port 0 is kept as it is; `FromStr` refuses one.
    fn from(addr: SocketAddr) -> HostAddress {
        HostAddress {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }
}

impl fmt::Display for HostAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl FromStr for HostAddress {
    type Err = HostAddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_TEXT {
            return Err(HostAddressError::Shape);
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (ip, port) = rest.split_once("]:").ok_or(HostAddressError::Shape)?;
            // Zone IDs (`fe80::1%eth0`) name an interface of *this* machine;
            // `Ipv6Addr` refuses them, and so do we.
            let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| HostAddressError::Host)?;
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or(HostAddressError::Shape)?;
            if host.contains(':') {
                // An IPv6 address without brackets: its port is ambiguous.
                return Err(HostAddressError::Shape);
            }
            let host = match host.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => Host::Ip(IpAddr::V4(ip)),
                Err(_) => Host::Name(host.to_owned()),
            };
            (host, port)
        };
        // Digits only: `u16::from_str` would take a leading `+`.
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HostAddressError::Port);
        }
        let port: u16 = port.parse().map_err(|_| HostAddressError::Port)?;
        HostAddress::new(host, port)
    }
}

impl Serialize for HostAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, printed) in [
            ("192.168.1.20:5339", "192.168.1.20:5339"),
            ("[fe80::1]:5339", "[fe80::1]:5339"),
            ("[::ffff:10.0.0.1]:1", "[::ffff:10.0.0.1]:1"),
            ("Shop-PC.local:65535", "shop-pc.local:65535"),
            ("kefu.local:5339", "kefu.local:5339"),
        ] {
            let address: HostAddress = text.parse().expect(text);
            assert_eq!(address.to_string(), printed);
            assert_eq!(printed.parse::<HostAddress>().expect("again"), address);
        }
        let address: HostAddress = "10.0.0.2:80".parse().expect("ip");
        assert_eq!(
            address.socket_addr(),
            Some("10.0.0.2:80".parse().expect("sa"))
        );
        let named: HostAddress = "a.local:80".parse().expect("name");
        assert_eq!(named.socket_addr(), None);
    }

    #[test]
    fn refuses_the_rest() {
        use HostAddressError::*;
        for (text, error) in [
            ("", Shape),
            ("192.168.1.20", Shape),
            ("fe80::1:5339", Shape),
            ("[fe80::1]", Shape),
            ("[fe80::1%eth0]:5339", Host),
            ("[10.0.0.1]:80", Host),
            ("10.0.0.1:0", Port),
            ("10.0.0.1:65536", Port),
            ("10.0.0.1:+80", Port),
            ("10.0.0.1:", Port),
            ("10.0.0.1:0080a", Port),
            ("10.0.0.1:000080", Port),
            ("bad_name:80", Host),
            ("a b:80", Host),
            ("evil.com/x:80", Host),
            ("user@host:80", Host),
            (":80", Host),
            ("300.1.1.1:80", Host),
        ] {
            assert_eq!(text.parse::<HostAddress>(), Err(error), "{text:?}");
        }
        assert_eq!(
            format!("{}:80", "a".repeat(400)).parse::<HostAddress>(),
            Err(Shape)
        );
    }
}
