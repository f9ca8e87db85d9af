//! The MQTT control packets of 3.1.1 and 5.0 as plain data.
//!
//! One type per packet; fields a protocol version lacks are simply left at their defaults
//! (empty properties, `ReasonCode::Success`) and are neither written nor expected on the wire
//! for that version. This module owns no I/O and no validation beyond what types express.

use bytes::Bytes;

use super::properties::Properties;
use super::reason::ReasonCode;

/// The protocol level carried in CONNECT: 4 for MQTT 3.1.1, 5 for MQTT 5.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte written in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}

/// Quality of service of a PUBLISH or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// At most once.
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a two-bit wire value, or `None` for the reserved value 3.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Every MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Boxed: the largest packet by far (840 bytes inline, twice any other) arrives once per
    /// connection, and every packet moved or queued would otherwise be as large.
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubResponse),
    PubRec(PubResponse),
    PubRel(PubResponse),
    PubComp(PubResponse),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5.0 only.
    Auth(Auth),
}

impl Packet {
    /// The packet's name as the specification writes it, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// CONNECT: the first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// Mosquitto's bridge bit (3.1.1 only): protocol level 4 | 0x80 says the client is a
    /// bridge, whose subscriptions act as No Local and Retain As Published.
    pub bridge: bool,
    /// Clean Session (3.1.1) or Clean Start (5.0).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns the mechanism off.
    pub keep_alive: u16,
    pub client_id: String,
    pub properties: Properties,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
}

/// The Will Message carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will Properties (5.0): Will Delay Interval, Message Expiry, Content Type, …
    pub properties: Properties,
}

/// CONNACK. In 3.1.1 the reason code maps onto the connect return codes 0–5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason: ReasonCode,
    pub properties: Properties,
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in 5.0 when a Topic Alias property stands in for it.
    pub topic: String,
    /// Present exactly when `qos` is 1 or 2.
    pub packet_id: Option<u16>,
    pub properties: Properties,
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResponse {
    pub packet_id: u16,
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl PubResponse {
    /// A successful response for `packet_id` with no properties.
    pub fn success(packet_id: u16) -> PubResponse {
        PubResponse {
            packet_id,
            reason: ReasonCode::Success,
            properties: Properties::default(),
        }
    }
}

/// Subscription options byte of SUBSCRIBE (in 3.1.1 only `qos` exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained at subscribe; 1: only if the subscription is new; 2: never.
    pub retain_handling: u8,
}

impl SubscriptionOptions {
    /// Options with the given QoS and every 5.0 flag at its default.
    pub fn with_qos(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }
    }
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub properties: Properties,
    /// At least one (topic filter, options) pair.
    pub filters: Vec<(String, SubscriptionOptions)>,
}

/// SUBACK: one reason code per filter (3.1.1: 0x00–0x02 granted QoS or 0x80 failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: u16,
    pub properties: Properties,
    pub reasons: Vec<ReasonCode>,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub properties: Properties,
    pub filters: Vec<String>,
}

/// UNSUBACK: reason codes exist only in 5.0 (empty for 3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: u16,
    pub properties: Properties,
    pub reasons: Vec<ReasonCode>,
}

/// DISCONNECT (3.1.1: no body; reason is `NormalDisconnection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Disconnect {
    /// A DISCONNECT with this reason and no properties.
    pub fn new(reason: ReasonCode) -> Disconnect {
        Disconnect {
            reason,
            properties: Properties::default(),
        }
    }
}

/// AUTH (5.0 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Properties,
}
