//! The errors of the codec: what `decode` found wrong in bytes from the wire, and what `encode`
//! refused to write. A rule of MQTT that both sides check (packet identifier 0, a property the
//! packet may not carry, …) is one [`RuleError`] that both wrap. Each message names the packet,
//! the field and the problem; `DecodeError` also says which reason code the engine should
//! answer with.

use thiserror::Error;

use super::reason::ReasonCode;

/// Why bytes from the wire are not a valid MQTT packet.
///
/// After any of these the connection must be closed (with [`DecodeError::reason_code`] in a
/// v5 DISCONNECT or CONNACK where the specification asks for one).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A rule that `encode` checks too.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// Packet type 0, or 15 (AUTH) on an MQTT 3.1.1 connection.
    #[error("packet type {kind} is reserved in this protocol version")]
    InvalidPacketType { kind: u8 },
    /// The low nibble of the first byte differs from what the packet type requires
    /// [MQTT-2.2.2-1] [MQTT-2.2.2-2].
    #[error(
        "{packet} fixed header flags are {flags:#06b}, the specification requires {expected:#06b}"
    )]
    InvalidHeaderFlags {
        packet: &'static str,
        flags: u8,
        expected: u8,
    },
    /// A QoS field holds the reserved value 3 where the specification calls that malformed.
    #[error("{packet} {field} is 3, a reserved QoS value")]
    InvalidQoS {
        packet: &'static str,
        field: &'static str,
    },
    /// A variable byte integer with a continuation bit in its fourth byte.
    #[error("{field} is a variable byte integer longer than 4 bytes")]
    VarIntTooLong { field: &'static str },
    /// A variable byte integer using more bytes than its value needs [MQTT-1.5.5-1].
    #[error("{field} is a variable byte integer that is not minimally encoded")]
    VarIntNotMinimal { field: &'static str },
    /// The packet ends (by its Remaining Length, or a length inside it) in the middle of a field.
    #[error("{packet} ends inside its {field}")]
    Truncated {
        packet: &'static str,
        field: &'static str,
    },
    /// Bytes left over inside the Remaining Length after the packet's last field.
    #[error("{packet} has {count} bytes after its last field")]
    TrailingBytes { packet: &'static str, count: usize },
    /// A UTF-8 Encoded String that is not valid UTF-8.
    #[error("{packet} {field} is not valid UTF-8")]
    InvalidUtf8 {
        packet: &'static str,
        field: &'static str,
    },
    /// A packet larger (fixed header included) than the maximum the receiver accepts.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: u32 },
    /// CONNECT with a protocol name / level other than "MQTT" 4 (3.1.1) or "MQTT" 5 (5.0).
    #[error("CONNECT asks for protocol {name:?} level {level}, only \"MQTT\" levels 4 and 5 are supported")]
    UnsupportedProtocol { name: String, level: u8 },
    /// CONNECT flags with the reserved bit 0 set [MQTT-3.1.2-3].
    #[error("CONNECT flags have the reserved bit 0 set")]
    ConnectReservedFlag,
    /// CONNECT with Will QoS or Will Retain set but no Will Flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]
    /// [MQTT-3.1.2-15].
    #[error("CONNECT sets Will QoS {will_qos} / Will Retain {will_retain} without the Will Flag")]
    WillFieldsWithoutWillFlag { will_qos: u8, will_retain: bool },
    /// CONNACK acknowledge flags with any of bits 7–1 set.
    #[error("CONNACK acknowledge flags {flags:#04x} set reserved bits")]
    ConnAckReservedFlags { flags: u8 },
    /// Subscription options (v5) or requested QoS byte (3.1.1) with reserved bits set
    /// [MQTT-3.8.3-4] (3.1.1) [MQTT-3.8.3-5] (5.0).
    #[error("SUBSCRIBE subscription options {options:#04x} set reserved bits")]
    SubscriptionOptionsReserved { options: u8 },
    /// A reason code (or 3.1.1 return code) that the packet type does not define.
    #[error("{packet} reason code {code:#04x} is not defined for this packet")]
    InvalidReasonCode { packet: &'static str, code: u8 },
    /// A property identifier MQTT 5.0 does not define.
    #[error("{packet} has unknown property identifier {id:#04x}")]
    UnknownProperty { packet: &'static str, id: u8 },
    /// v5 subscription option with the value 3, which the specification calls a Protocol Error
    /// (Maximum QoS, Retain Handling).
    #[error("SUBSCRIBE {option} is 3, a reserved value")]
    ReservedSubscriptionOption { option: &'static str },
}

impl DecodeError {
    /// The reason code that reports this error to the peer: 0x81 Malformed Packet, 0x82
    /// Protocol Error, 0x95 Packet Too Large or 0x84 Unsupported Protocol Version.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::UnsupportedProtocol { .. } => ReasonCode::UnsupportedProtocolVersion,
            DecodeError::Rule(rule) => rule.reason_code(),
            DecodeError::ReservedSubscriptionOption { .. } => ReasonCode::ProtocolError,
            DecodeError::InvalidPacketType { .. }
            | DecodeError::InvalidHeaderFlags { .. }
            | DecodeError::InvalidQoS { .. }
            | DecodeError::VarIntTooLong { .. }
            | DecodeError::VarIntNotMinimal { .. }
            | DecodeError::Truncated { .. }
            | DecodeError::TrailingBytes { .. }
            | DecodeError::InvalidUtf8 { .. }
            | DecodeError::ConnectReservedFlag
            | DecodeError::WillFieldsWithoutWillFlag { .. }
            | DecodeError::ConnAckReservedFlags { .. }
            | DecodeError::SubscriptionOptionsReserved { .. }
            | DecodeError::InvalidReasonCode { .. }
            | DecodeError::UnknownProperty { .. } => ReasonCode::MalformedPacket,
        }
    }
}

/// A rule of MQTT that a packet breaks, found alike by `decode` in bytes from the wire and by
/// `encode` in a packet it was asked to write.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    /// PUBLISH with QoS 0 and DUP set [MQTT-3.3.1-2].
    #[error("PUBLISH has DUP set with QoS 0")]
    DupWithQoS0,
    /// A UTF-8 Encoded String containing the null character [MQTT-1.5.3-2] [MQTT-1.5.4-2].
    #[error("{packet} {field} contains U+0000")]
    NullCharacter {
        packet: &'static str,
        field: &'static str,
    },
    /// MQTT 3.1.1 CONNECT with a password but no user name (the Password Flag without the
    /// User Name Flag) [MQTT-3.1.2-22].
    #[error("MQTT 3.1.1 CONNECT has a password but no user name")]
    PasswordWithoutUsername,
    /// Packet identifier 0 [MQTT-2.3.1-1] (3.1.1) [MQTT-2.2.1-3] (5.0).
    #[error("{packet} has packet identifier 0")]
    ZeroPacketId { packet: &'static str },
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter [MQTT-3.8.3-3] [MQTT-3.10.3-2].
    #[error("{packet} carries no topic filter")]
    NoTopicFilters { packet: &'static str },
    /// A property the packet type may not carry (MQTT 5.0 section 2.2.2.2).
    #[error("{packet} may not carry the {property} property")]
    PropertyNotAllowed {
        packet: &'static str,
        property: &'static str,
    },
    /// A single-valued property given more than once (Subscription Identifier repeats in
    /// PUBLISH only).
    #[error("{packet} carries the {property} property more than once")]
    DuplicateProperty {
        packet: &'static str,
        property: &'static str,
    },
    /// A property value the specification forbids (0 where non-zero is required, a flag other
    /// than 0 or 1, Subscription Identifier 0).
    #[error("{packet} {property} property has the invalid value {value}")]
    InvalidPropertyValue {
        packet: &'static str,
        property: &'static str,
        value: u32,
    },
    /// Authentication Data without Authentication Method.
    #[error("{packet} carries Authentication Data without an Authentication Method")]
    AuthDataWithoutMethod { packet: &'static str },
}

impl RuleError {
    /// The reason code that reports this error to the peer: 0x81 Malformed Packet for the
    /// rules of the wire format, 0x82 Protocol Error for the rest.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            RuleError::DupWithQoS0
            | RuleError::NullCharacter { .. }
            | RuleError::PasswordWithoutUsername => ReasonCode::MalformedPacket,
            RuleError::ZeroPacketId { .. }
            | RuleError::NoTopicFilters { .. }
            | RuleError::PropertyNotAllowed { .. }
            | RuleError::DuplicateProperty { .. }
            | RuleError::InvalidPropertyValue { .. }
            | RuleError::AuthDataWithoutMethod { .. } => ReasonCode::ProtocolError,
        }
    }
}

/// Why a packet cannot be written: a value the wire cannot carry, or one the receiving decoder
/// would reject. A packet that encodes decodes back to itself, except for what MQTT 3.1.1
/// cannot express (properties, v5 options and reasons), which `encode` leaves out or maps.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A rule that `decode` checks too: the receiver would reject the packet.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A UTF-8 string longer than the 65,535 bytes its length prefix can count.
    #[error("{packet} {field} is {len} bytes, longer than the 65535 a UTF-8 string can carry")]
    StringTooLong {
        packet: &'static str,
        field: &'static str,
        len: usize,
    },
    /// Binary data longer than the 65,535 bytes its length prefix can count.
    #[error("{packet} {field} is {len} bytes, longer than the 65535 binary data can carry")]
    BinaryTooLong {
        packet: &'static str,
        field: &'static str,
        len: usize,
    },
    /// A body longer than the largest Remaining Length, 268,435,455 bytes.
    #[error("{packet} body is {len} bytes, more than the largest Remaining Length 268435455")]
    PacketTooLarge { packet: &'static str, len: usize },
    /// PUBLISH with QoS 1 or 2 but no packet identifier.
    #[error("PUBLISH with QoS {qos} has no packet identifier")]
    MissingPacketId { qos: u8 },
    /// PUBLISH with QoS 0 but a packet identifier.
    #[error("PUBLISH with QoS 0 has a packet identifier")]
    UnexpectedPacketId,
    /// Subscription option Retain Handling outside 0..=2.
    #[error("SUBSCRIBE Retain Handling is {value}, only 0, 1 and 2 exist")]
    InvalidRetainHandling { value: u8 },
    /// A reason code the packet type does not define (in the protocol version written).
    #[error("{packet} cannot carry reason code {reason:?}")]
    ReasonNotAllowed {
        packet: &'static str,
        reason: ReasonCode,
    },
    /// A packet type the protocol version does not have (AUTH in MQTT 3.1.1).
    #[error("{packet} does not exist in MQTT 3.1.1")]
    NotInProtocolVersion { packet: &'static str },
}
