//! What a bridge's settings mean beyond their types: an address as host and port, and the
//! queue bounds with `[limits]` filling in those not given. Pure: no I/O (the password file
//! and the hostname are read by `bridge::identity`).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::types::{BridgeQueue, Limits, QueueFullPolicy};

/// One of a bridge's `addresses`, split: `mqtt.example.com:8883`, `192.0.2.7:1883` or
/// `[2001:db8::7]:8883`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeAddress {
    /// A DNS name or an IP address (an IPv6 address without its brackets).
    pub host: String,
    pub port: u16,
}

/// Why an address is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("a URL: write host:port without the scheme, e.g. mqtt.example.com:8883")]
    Url,
    #[error("no port: write host:port, e.g. mqtt.example.com:8883")]
    MissingPort,
    #[error("the port {0:?} is not a number in 1..=65535")]
    BadPort(String),
    #[error("an IPv6 address goes in brackets, e.g. [2001:db8::7]:8883")]
    UnbracketedIpv6,
    #[error("{0:?} is not an IPv6 address")]
    BadIpv6(String),
    #[error("{0:?} is not a DNS name or an IPv4 address")]
    BadHost(String),
}

/// Longest DNS name, in bytes, without a trailing dot (RFC 1035 section 2.3.4).
const MAX_DNS_NAME: usize = 253;
/// Longest label of a DNS name, in bytes.
const MAX_DNS_LABEL: usize = 63;

impl FromStr for BridgeAddress {
    type Err = AddressError;

    fn from_str(address: &str) -> Result<BridgeAddress, AddressError> {
        if address.contains("://") {
            return Err(AddressError::Url);
        }
        let (host, port) = match address.strip_prefix('[') {
            Some(bracketed) => {
                let (host, rest) = bracketed.split_once(']').ok_or(AddressError::MissingPort)?;
                host.parse::<Ipv6Addr>()
                    .map_err(|_| AddressError::BadIpv6(host.to_string()))?;
                (
                    host,
                    rest.strip_prefix(':').ok_or(AddressError::MissingPort)?,
                )
            }
            None => {
                let (host, port) = address.rsplit_once(':').ok_or(AddressError::MissingPort)?;
                if host.contains(':') {
                    return Err(AddressError::UnbracketedIpv6);
                }
                check_host(host)?;
                (host, port)
            }
        };
        let port = match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(AddressError::BadPort(port.to_string())),
        };
        Ok(BridgeAddress {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for BridgeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// An IPv4 address, or a DNS name: labels of letters, digits, `-` and `_`, neither starting
/// nor ending with `-`, and a last label that is not all digits (that would be a bad IPv4
/// address). One trailing dot is allowed.
fn check_host(host: &str) -> Result<(), AddressError> {
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let bad = || AddressError::BadHost(host.to_string());
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > MAX_DNS_NAME {
        return Err(bad());
    }
    let label_ok = |label: &str| {
        (1..=MAX_DNS_LABEL).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    };
    let last_is_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|byte| byte.is_ascii_digit()));
    match name.split('.').all(label_ok) && !last_is_numeric {
        true => Ok(()),
        false => Err(bad()),
    }
}

/// A bridge queue's bounds once `[limits]` filled in what `[bridges.queue]` left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBounds {
    pub max_messages: usize,
    pub max_bytes: u64,
    pub policy: QueueFullPolicy,
    pub in_memory_bytes: u64,
}

impl BridgeQueue {
    /// The bounds of this queue: each one given here, else `limits`' own.
    pub fn resolved(&self, limits: &Limits) -> QueueBounds {
        QueueBounds {
            max_messages: self.max_messages.unwrap_or(limits.max_queued_messages),
            max_bytes: self.max_bytes.unwrap_or(limits.max_queued_bytes),
            policy: self.policy.unwrap_or(limits.queue_full_policy),
            in_memory_bytes: self.in_memory_bytes,
        }
    }

    /// This queue with every bound it does not give taken from `limits`, as `check-config`
    /// prints it: the bounds in force, written out.
    pub fn filled_in(&self, limits: &Limits) -> BridgeQueue {
        let bounds = self.resolved(limits);
        BridgeQueue {
            max_messages: Some(bounds.max_messages),
            max_bytes: Some(bounds.max_bytes),
            policy: Some(bounds.policy),
            in_memory_bytes: bounds.in_memory_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::DEFAULT_IN_MEMORY_BYTES;

    fn parsed(address: &str) -> Result<(String, u16), AddressError> {
        address
            .parse::<BridgeAddress>()
            .map(|parsed| (parsed.host, parsed.port))
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        for (address, host, port) in [
            ("mqtt.example.com:8883", "mqtt.example.com", 8883),
            ("localhost:1883", "localhost", 1883),
            ("mqtt.example.com.:8883", "mqtt.example.com.", 8883),
            ("my_gw-7.lan:1", "my_gw-7.lan", 1),
            ("192.0.2.7:1883", "192.0.2.7", 1883),
            ("[2001:db8::7]:8883", "2001:db8::7", 8883),
            ("[::1]:65535", "::1", 65535),
        ] {
            assert_eq!(parsed(address), Ok((host.to_string(), port)), "{address}");
            let displayed = address.parse::<BridgeAddress>().expect("valid").to_string();
            assert_eq!(displayed, address);
        }
    }

    #[test]
    fn addresses_that_are_not_host_and_port_are_refused() {
        let bad_host = |host: &str| AddressError::BadHost(host.to_string());
        let bad_port = |port: &str| AddressError::BadPort(port.to_string());
        for (address, error) in [
            ("mqtt.example.com", AddressError::MissingPort),
            ("[::1]", AddressError::MissingPort),
            ("[::1]8883", AddressError::MissingPort),
            ("2001:db8::7:8883", AddressError::UnbracketedIpv6),
            (
                "[2001:db8::zz]:8883",
                AddressError::BadIpv6("2001:db8::zz".to_string()),
            ),
            ("host:0", bad_port("0")),
            ("host:65536", bad_port("65536")),
            ("host:", bad_port("")),
            ("host:https", bad_port("https")),
            (":1883", bad_host("")),
            ("300.1.1.1:1883", bad_host("300.1.1.1")),
            ("-gw.lan:1883", bad_host("-gw.lan")),
            ("gw-.lan:1883", bad_host("gw-.lan")),
            ("a..b:1883", bad_host("a..b")),
            ("mqtt example:1883", bad_host("mqtt example")),
            ("tcp://mqtt.example.com:1883", AddressError::Url),
            ("mqtts://[::1]:8883", AddressError::Url),
        ] {
            assert_eq!(parsed(address), Err(error), "{address}");
        }
        let long_label = format!("{}.com:1883", "a".repeat(64));
        assert!(parsed(&long_label).is_err());
        let long_name = format!("{}a:1883", "a.".repeat(127));
        assert!(parsed(&long_name).is_err());
        assert!(parsed(&format!("{}a:1883", "a.".repeat(126))).is_ok());
    }

    #[test]
    fn queue_bounds_not_given_come_from_the_limits() {
        let limits = Limits::default();
        let inherited = BridgeQueue::default().resolved(&limits);
        assert_eq!(
            inherited,
            QueueBounds {
                max_messages: limits.max_queued_messages,
                max_bytes: limits.max_queued_bytes,
                policy: limits.queue_full_policy,
                in_memory_bytes: DEFAULT_IN_MEMORY_BYTES,
            }
        );
        let own = BridgeQueue {
            max_messages: Some(1_000_000),
            max_bytes: None,
            policy: Some(QueueFullPolicy::RefuseNewest),
            in_memory_bytes: 500,
        }
        .resolved(&limits);
        assert_eq!(own.max_messages, 1_000_000);
        assert_eq!(own.max_bytes, limits.max_queued_bytes);
        assert_eq!(own.policy, QueueFullPolicy::RefuseNewest);
        assert_eq!(own.in_memory_bytes, 500);
    }
}
