//! The start of one uplink connection: dial an address (TCP, then TLS when configured), send
//! CONNECT with the bridge's fixed client identifier and Clean Start 0, and read the CONNACK:
//! a refusal with its reason, or what the server granted (Session Present, Receive Maximum,
//! Maximum Packet Size, Maximum QoS, Retain Available, Topic Alias Maximum, Server Keep
//! Alive, Session Expiry Interval). MQTT 3.1.1 servers announce nothing, so the bridge's own
//! settings (`max_qos`, `retain`, `max_inflight`) stand in for them.

use std::time::Duration;

use bytes::Bytes;

use crate::codec::{Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, Will};
use crate::transport::client::{connect, ByteStream, ConnectError};
use crate::transport::{Framed, ReadError};

use super::Bridge;

/// Why a connection attempt ended before the bridge was connected.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No TCP connection, TLS handshake or answer: try the next address.
    #[error("{0}")]
    Unreachable(String),
    /// The server answered CONNACK with a refusal.
    #[error("refused by the server: {reason:?}{}", detail(.why))]
    Refused {
        reason: ReasonCode,
        why: Option<String>,
    },
    /// The server broke the protocol before CONNACK.
    #[error("{0}")]
    Broken(String),
}

fn detail(why: &Option<String>) -> String {
    why.as_ref()
        .map(|why| format!(" ({why})"))
        .unwrap_or_default()
}

/// What the server's CONNACK granted, with the bridge's settings standing in where it said
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// The server still had the bridge's session.
    pub session_present: bool,
    /// Most unacknowledged QoS 1/2 PUBLISHes upstream: the lower of ours and its Receive
    /// Maximum.
    pub window: u16,
    /// Largest packet the server accepts.
    pub max_packet_size: u32,
    /// Highest QoS the server accepts.
    pub max_qos: QoS,
    /// Whether RETAIN may be set.
    pub retain: bool,
    /// Topic aliases the server accepts.
    pub topic_alias_maximum: u16,
    /// Keep Alive in force (the server's Server Keep Alive wins); zero turns pings off.
    pub keep_alive: Duration,
}

/// A connected, accepted uplink.
pub struct Handshaken {
    pub framed: Framed<Box<dyn ByteStream>>,
    pub granted: Granted,
}

/// The state topic's payloads.
pub const STATE_CONNECTED: &str = "connected";
pub const STATE_DISCONNECTED: &str = "disconnected";

/// How to speak to the server: the protocol version, (3.1.1) whether to set Mosquitto's
/// bridge bit, which makes a Mosquitto server treat our subscriptions as No Local and Retain
/// As Published, and what the state topic's Will may ask for: a v5 server that keeps no
/// retained messages, or takes no QoS 1, refuses a CONNECT whose Will asks for them
/// [MQTT-3.2.2-12] [MQTT-3.2.2-13], and CONNECT comes before its CONNACK could say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub version: ProtocolVersion,
    pub bridge_bit: bool,
    pub will_retain: bool,
    pub will_qos_1: bool,
}

impl Dialect {
    /// `version`, with the bridge bit if `bridge_bit`, and a Will as configured.
    pub fn new(version: ProtocolVersion, bridge_bit: bool) -> Dialect {
        Dialect {
            version,
            bridge_bit,
            will_retain: true,
            will_qos_1: true,
        }
    }
}

/// Dials `address` and exchanges CONNECT and CONNACK in `dialect`, the dial (TCP and TLS) and
/// the CONNACK each within [`patience`].
pub async fn handshake(
    bridge: &Bridge,
    address: &str,
    dialect: Dialect,
) -> Result<Handshaken, Failure> {
    let version = dialect.version;
    let config = &bridge.config;
    let timeout = patience(config.connect_timeout, config.keep_alive);
    let stream = connect(address, bridge.tls.as_ref(), timeout)
        .await
        .map_err(|error| match error {
            ConnectError::Timeout { .. } => Failure::Unreachable(format!(
                "connecting to {address} (TCP and TLS) took longer than {}",
                patience_reason(config.connect_timeout, config.keep_alive)
            )),
            error => Failure::Unreachable(error.to_string()),
        })?;
    let mut framed = Framed::new(stream, bridge.max_packet_size);
    framed.version = version;
    framed.keep_write_buffer();
    framed
        .queue(&Packet::Connect(Box::new(connect_packet(bridge, dialect))))
        .map_err(|error| Failure::Broken(format!("cannot encode CONNECT: {error}")))?;
    let answer = tokio::time::timeout(timeout, async {
        framed.flush().await.map_err(ReadError::Io)?;
        framed.read_packet().await
    })
    .await;
    let connack = match answer {
        Err(_) => {
            return Err(Failure::Unreachable(format!(
                "no CONNACK from {address} within {}",
                patience_reason(config.connect_timeout, config.keep_alive)
            )))
        }
        Ok(Err(ReadError::Decode(error))) if version == ProtocolVersion::V5 => {
            // A server that does not speak MQTT 5 often answers in 3.1.1 form (return code 1,
            // no properties), which does not decode as a v5 CONNACK.
            return Err(Failure::Refused {
                reason: ReasonCode::UnsupportedProtocolVersion,
                why: Some(format!("the answer is not an MQTT 5 CONNACK: {error}")),
            });
        }
        Ok(Err(error)) => return Err(Failure::Unreachable(format!("{address}: {error}"))),
        Ok(Ok(None)) => {
            return Err(Failure::Unreachable(format!(
                "{address} closed the connection before CONNACK"
            )))
        }
        Ok(Ok(Some(Packet::ConnAck(connack)))) => connack,
        Ok(Ok(Some(other))) => {
            return Err(Failure::Broken(format!(
                "{address} answered CONNECT with {}",
                other.name()
            )))
        }
    };
    if connack.reason.is_error() {
        return Err(Failure::Refused {
            reason: connack.reason,
            why: connack.properties.reason_string,
        });
    }
    let granted = grant(
        bridge,
        version,
        connack.session_present,
        &connack.properties,
    );
    if let Some(expiry) = connack.properties.session_expiry_interval {
        if expiry < config.session_expiry {
            tracing::warn!(bridge = %config.name, asked = config.session_expiry, granted = expiry,
                "the server keeps the bridge's session for less than asked");
        }
    }
    Ok(Handshaken { framed, granted })
}

/// How long a handshake step may take: `connect_timeout` seconds, or 1.5 × `keep_alive` when
/// that is shorter, so a link black-holed before its CONNACK is left as soon as one black-holed
/// once connected would be.
fn patience(connect_timeout: u32, keep_alive: u16) -> Duration {
    let connect_timeout = Duration::from_secs(u64::from(connect_timeout));
    if keep_alive == 0 {
        return connect_timeout;
    }
    connect_timeout.min(Duration::from_secs(u64::from(keep_alive)) * 3 / 2)
}

/// [`patience`] and which bound it is, for the log.
fn patience_reason(connect_timeout: u32, keep_alive: u16) -> String {
    let patience = patience(connect_timeout, keep_alive);
    if patience < Duration::from_secs(u64::from(connect_timeout)) {
        format!(
            "{patience:?} (1.5 × keep_alive {keep_alive} s, shorter than connect_timeout {connect_timeout} s)"
        )
    } else {
        format!("{patience:?} (connect_timeout)")
    }
}

/// The bridge's CONNECT: Clean Start 0, its fixed client identifier, credentials, and (v5)
/// the Session Expiry asked for, our Receive Maximum and Maximum Packet Size, no topic
/// aliases from the server; (3.1.1) the bridge bit when the dialect has it. The state topic, when configured, gets "disconnected" as Will.
fn connect_packet(bridge: &Bridge, dialect: Dialect) -> Connect {
    let config = &bridge.config;
    let version = dialect.version;
    let mut properties = Properties::default();
    if version == ProtocolVersion::V5 {
        properties.session_expiry_interval = Some(config.session_expiry);
        properties.receive_maximum = Some(config.max_inflight);
        properties.maximum_packet_size = Some(bridge.max_packet_size);
    }
    let will = config.state_topic.as_ref().map(|topic| Will {
        topic: topic.clone(),
        payload: Bytes::from_static(STATE_DISCONNECTED.as_bytes()),
        qos: match dialect.will_qos_1 {
            true => QoS::AtLeastOnce.min(bridge.max_qos()),
            false => QoS::AtMostOnce,
        },
        retain: config.retain && dialect.will_retain,
        properties: Properties::default(),
    });
    Connect {
        protocol: version,
        clean_start: false,
        bridge: dialect.bridge_bit && version == ProtocolVersion::V311,
        keep_alive: config.keep_alive,
        client_id: bridge.client_id.clone(),
        properties,
        will,
        username: config.username.clone(),
        password: bridge.password.clone().map(Bytes::from),
    }
}

/// What the CONNACK's properties grant, bounded by the bridge's own settings.
fn grant(
    bridge: &Bridge,
    version: ProtocolVersion,
    session_present: bool,
    properties: &Properties,
) -> Granted {
    let config = &bridge.config;
    let (window, max_packet_size, max_qos, retain, aliases, keep_alive) = match version {
        ProtocolVersion::V5 => (
            properties.receive_maximum.unwrap_or(u16::MAX),
            properties.maximum_packet_size.unwrap_or(u32::MAX),
            match properties.maximum_qos {
                Some(0) => QoS::AtMostOnce,
                Some(1) => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            },
            properties.retain_available != Some(0),
            properties.topic_alias_maximum.unwrap_or(0),
            properties.server_keep_alive.unwrap_or(config.keep_alive),
        ),
        ProtocolVersion::V311 => (
            u16::MAX,
            u32::MAX, // announced by nobody: the bridge's own setting below decides
            QoS::ExactlyOnce,
            true,
            0,
            config.keep_alive,
        ),
    };
    Granted {
        session_present,
        window: window.min(config.max_inflight).max(1),
        max_packet_size: max_packet_size.min(config.max_packet_size),
        max_qos: max_qos.min(bridge.max_qos()),
        retain: retain && config.retain,
        topic_alias_maximum: aliases,
        keep_alive: Duration::from_secs(u64::from(keep_alive)),
    }
}

/// The retained state message `state` ([`STATE_CONNECTED`] once connected,
/// [`STATE_DISCONNECTED`] before a DISCONNECT of ours), at QoS 0; `None` without a state topic.
pub fn state_publish(bridge: &Bridge, granted: &Granted, state: &'static str) -> Option<Packet> {
    let topic = bridge.config.state_topic.as_ref()?;
    Some(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: granted.retain,
        topic: topic.clone(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::from_static(state.as_bytes()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_waits_the_shorter_of_connect_timeout_and_one_and_a_half_keep_alives() {
        assert_eq!(patience(30, 5), Duration::from_millis(7_500));
        assert_eq!(patience(30, 60), Duration::from_secs(30));
        assert_eq!(patience(30, 0), Duration::from_secs(30), "no keep-alive");
        assert_eq!(
            patience_reason(30, 5),
            "7.5s (1.5 × keep_alive 5 s, shorter than connect_timeout 30 s)"
        );
        assert_eq!(patience_reason(30, 60), "30s (connect_timeout)");
    }
}
