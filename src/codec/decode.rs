//! Decoding: from the bytes buffered off a connection to whole `Packet`s.
//!
//! `decode` frames one packet from the fixed header (checking the first byte and the maximum
//! packet size before the body is buffered), splits it off the buffer without copying, and
//! parses the body. Payloads and binary fields share the read buffer (`Bytes` slices). Any
//! malformed input is a `DecodeError`; nothing here panics or allocates beyond what the
//! buffered packet holds.

use bytes::{Buf, BytesMut};

use super::error::{DecodeError, RuleError};
use super::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, ProtocolVersion, PubResponse, Publish, QoS, SubAck,
    Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use super::primitives::{parse_var_int, Reader};
use super::properties::Properties;
use super::property_wire::read_properties;
use super::reason::ReasonCode;
use super::rules::{self, Context};

/// Decodes one packet from the front of `src` if a whole one is buffered, advancing `src` past
/// it; `Ok(None)` if more bytes are needed (`src` untouched). `version` is the connection's
/// protocol version (CONNECT ignores it: it carries its own level). A packet whose Remaining
/// Length makes it larger than `max_packet_size` (total size incl. fixed header) is an error
/// as soon as the fixed header is read, before the body is buffered.
///
/// On an error found in the first byte or the Remaining Length, or `PacketTooLarge`, `src` is
/// untouched; on an error in the body, `src` has been advanced past the offending packet. Either
/// way the connection must be closed.
pub fn decode(
    src: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = FixedHeader::parse(src, version)? else {
        return Ok(None);
    };
    let size = header.packet_size();
    if size > usize::try_from(max_packet_size).unwrap_or(usize::MAX) {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if src.len() < size {
        return Ok(None);
    }
    let mut frame = src.split_to(size).freeze();
    frame.advance(header.header_len);
    let body = Reader::new(frame, packet_name(header.kind));
    decode_body(&header, body, version).map(Some)
}

/// The head of a PUBLISH (fixed header, topic name, packet identifier): enough to acknowledge
/// it and to say what it was, without its properties or payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishHead {
    pub qos: QoS,
    pub topic: String,
    pub packet_id: Option<u16>,
    /// The whole packet's size in bytes, fixed header included.
    pub size: usize,
}

/// What [`decode_publish_head`] found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// More bytes are needed before the head can be read.
    Incomplete,
    /// The packet there is not a PUBLISH (its name).
    Other(&'static str),
    Publish(PublishHead),
}

/// Reads the head of the packet at the front of `src` if it is a PUBLISH, leaving `src` as it
/// is: for a receiver that skips a PUBLISH too large to take (reading it whole would defeat
/// the maximum packet size). Needs at most the fixed header, the topic and the packet
/// identifier buffered (under 64 KiB). A malformed head is an error, as in [`decode`].
pub fn decode_publish_head(src: &[u8], version: ProtocolVersion) -> Result<Head, DecodeError> {
    let Some(header) = FixedHeader::parse(src, version)? else {
        return Ok(Head::Incomplete);
    };
    if header.kind != kind::PUBLISH {
        return Ok(Head::Other(packet_name(header.kind)));
    }
    let qos = QoS::from_u8((header.flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS {
        packet: "PUBLISH",
        field: "QoS",
    })?;
    let body = &src[header.header_len..];
    let Some(&[high, low]) = body.get(..2) else {
        return Ok(Head::Incomplete);
    };
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    let head_len = 2 + usize::from(u16::from_be_bytes([high, low])) + id_len;
    if head_len > header.remaining_len {
        return Err(DecodeError::Truncated {
            packet: "PUBLISH",
            field: "topic name",
        });
    }
    let Some(head) = body.get(..head_len) else {
        return Ok(Head::Incomplete);
    };
    let mut r = Reader::new(bytes::Bytes::copy_from_slice(head), "PUBLISH");
    let topic = r.string("topic name")?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(packet_id(&mut r)?),
    };
    Ok(Head::Publish(PublishHead {
        qos,
        topic,
        packet_id,
        size: header.packet_size(),
    }))
}

/// Packet type numbers of the first byte's high nibble.
mod kind {
    pub(super) const CONNECT: u8 = 1;
    pub(super) const CONNACK: u8 = 2;
    pub(super) const PUBLISH: u8 = 3;
    pub(super) const PUBACK: u8 = 4;
    pub(super) const PUBREC: u8 = 5;
    pub(super) const PUBREL: u8 = 6;
    pub(super) const PUBCOMP: u8 = 7;
    pub(super) const SUBSCRIBE: u8 = 8;
    pub(super) const SUBACK: u8 = 9;
    pub(super) const UNSUBSCRIBE: u8 = 10;
    pub(super) const UNSUBACK: u8 = 11;
    pub(super) const PINGREQ: u8 = 12;
    pub(super) const PINGRESP: u8 = 13;
    pub(super) const DISCONNECT: u8 = 14;
    pub(super) const AUTH: u8 = 15;
}

fn packet_name(kind: u8) -> &'static str {
    const NAMES: [&str; 16] = [
        "reserved packet type",
        "CONNECT",
        "CONNACK",
        "PUBLISH",
        "PUBACK",
        "PUBREC",
        "PUBREL",
        "PUBCOMP",
        "SUBSCRIBE",
        "SUBACK",
        "UNSUBSCRIBE",
        "UNSUBACK",
        "PINGREQ",
        "PINGRESP",
        "DISCONNECT",
        "AUTH",
    ];
    NAMES[usize::from(kind & 0x0F)]
}

/// The fixed header: packet type, flags, and how long the packet is.
struct FixedHeader {
    kind: u8,
    flags: u8,
    /// Bytes of the fixed header itself (first byte and Remaining Length).
    header_len: usize,
    remaining_len: usize,
}

impl FixedHeader {
    /// Reads the fixed header at the front of `src` without consuming it; `Ok(None)` if its
    /// Remaining Length is not complete yet. The first byte is checked as soon as it arrives.
    fn parse(src: &[u8], version: ProtocolVersion) -> Result<Option<FixedHeader>, DecodeError> {
        let Some((&first, rest)) = src.split_first() else {
            return Ok(None);
        };
        let kind = first >> 4;
        let flags = first & 0x0F;
        check_type_and_flags(kind, flags, version)?;
        let Some((remaining, len)) = parse_var_int(rest, "Remaining Length")? else {
            return Ok(None);
        };
        Ok(Some(FixedHeader {
            kind,
            flags,
            header_len: 1 + len,
            remaining_len: usize::try_from(remaining).unwrap_or(usize::MAX),
        }))
    }

    fn packet_size(&self) -> usize {
        self.header_len.saturating_add(self.remaining_len)
    }
}

/// The first byte's rules: types 0 (and 15 in 3.1.1) are reserved; the flags are 0b0010 for
/// PUBREL, SUBSCRIBE and UNSUBSCRIBE and 0 for the rest [MQTT-2.2.2-1] [MQTT-2.2.2-2]; PUBLISH
/// flags are DUP, QoS (not 3 [MQTT-3.3.1-4]) and RETAIN, with DUP 0 for QoS 0 [MQTT-3.3.1-2].
fn check_type_and_flags(kind: u8, flags: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    let expected = match kind {
        0 => return Err(DecodeError::InvalidPacketType { kind }),
        kind::AUTH if version == ProtocolVersion::V311 => {
            return Err(DecodeError::InvalidPacketType { kind })
        }
        kind::PUBLISH => return check_publish_flags(flags),
        kind::PUBREL | kind::SUBSCRIBE | kind::UNSUBSCRIBE => 0b0010,
        _ => 0,
    };
    if flags == expected {
        Ok(())
    } else {
        Err(DecodeError::InvalidHeaderFlags {
            packet: packet_name(kind),
            flags,
            expected,
        })
    }
}

fn check_publish_flags(flags: u8) -> Result<(), DecodeError> {
    let qos = (flags >> 1) & 0b11;
    if qos == 3 {
        return Err(DecodeError::InvalidQoS {
            packet: "PUBLISH",
            field: "QoS",
        });
    }
    if qos == 0 && flags & 0b1000 != 0 {
        return Err(RuleError::DupWithQoS0.into());
    }
    Ok(())
}

fn decode_body(
    header: &FixedHeader,
    mut r: Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let r = &mut r;
    match header.kind {
        kind::CONNECT => connect(r).map(|connect| Packet::Connect(Box::new(connect))),
        kind::CONNACK => conn_ack(r, version).map(Packet::ConnAck),
        kind::PUBLISH => publish(header.flags, r, version).map(Packet::Publish),
        kind::PUBACK => pub_response(r, version, Context::PubAck).map(Packet::PubAck),
        kind::PUBREC => pub_response(r, version, Context::PubRec).map(Packet::PubRec),
        kind::PUBREL => pub_response(r, version, Context::PubRel).map(Packet::PubRel),
        kind::PUBCOMP => pub_response(r, version, Context::PubComp).map(Packet::PubComp),
        kind::SUBSCRIBE => subscribe(r, version).map(Packet::Subscribe),
        kind::SUBACK => sub_ack(r, version).map(Packet::SubAck),
        kind::UNSUBSCRIBE => unsubscribe(r, version).map(Packet::Unsubscribe),
        kind::UNSUBACK => unsub_ack(r, version).map(Packet::UnsubAck),
        kind::PINGREQ => r.finish().map(|()| Packet::PingReq),
        kind::PINGRESP => r.finish().map(|()| Packet::PingResp),
        kind::DISCONNECT => disconnect(r, version).map(Packet::Disconnect),
        kind::AUTH => auth(r).map(Packet::Auth),
        other => Err(DecodeError::InvalidPacketType { kind: other }),
    }
}

/// A Packet Identifier, which must be non-zero.
fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    let packet_id = r.u16("packet identifier")?;
    Ok(rules::check_packet_id(r.packet(), packet_id)?)
}

/// The property block in 5.0; nothing (empty properties) in 3.1.1.
fn properties_of(
    r: &mut Reader,
    version: ProtocolVersion,
    context: Context,
) -> Result<Properties, DecodeError> {
    match version {
        ProtocolVersion::V5 => read_properties(r, context),
        ProtocolVersion::V311 => Ok(Properties::default()),
    }
}

/// A 5.0 reason code byte that `context` defines.
fn reason_code(byte: u8, context: Context) -> Result<ReasonCode, DecodeError> {
    ReasonCode::from_u8(byte)
        .filter(|&reason| context.allows_reason(reason))
        .ok_or(DecodeError::InvalidReasonCode {
            packet: context.name(),
            code: byte,
        })
}

/// The optional end of PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT and AUTH in 5.0: a Reason
/// Code, then a property block. A packet ending before the reason code means Success, one
/// ending after it means no properties.
fn reason_and_properties(
    r: &mut Reader,
    context: Context,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::Success, Properties::default()));
    }
    let reason = reason_code(r.u8("reason code")?, context)?;
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        read_properties(r, context)?
    };
    r.finish()?;
    Ok((reason, properties))
}

/// Protocol level 4 with Mosquitto's bridge bit (0x80).
const BRIDGE_V311_LEVEL: u8 = 4 | 0x80;

/// Connect Flags bits.
mod connect_flag {
    pub(super) const RESERVED: u8 = 0b0000_0001;
    pub(super) const CLEAN_START: u8 = 0b0000_0010;
    pub(super) const WILL: u8 = 0b0000_0100;
    pub(super) const WILL_RETAIN: u8 = 0b0010_0000;
    pub(super) const PASSWORD: u8 = 0b0100_0000;
    pub(super) const USER_NAME: u8 = 0b1000_0000;
}

fn connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let (protocol, bridge) = protocol_version(r)?;
    let flags = r.u8("connect flags")?;
    let will_qos = check_connect_flags(flags, protocol)?;
    let keep_alive = r.u16("keep alive")?;
    let properties = properties_of(r, protocol, Context::Connect)?;
    let client_id = r.string("client identifier")?;
    let will = match will_qos {
        Some(qos) => Some(will(
            r,
            protocol,
            qos,
            flags & connect_flag::WILL_RETAIN != 0,
        )?),
        None => None,
    };
    let username = match flags & connect_flag::USER_NAME {
        0 => None,
        _ => Some(r.string("user name")?),
    };
    let password = match flags & connect_flag::PASSWORD {
        0 => None,
        _ => Some(r.binary("password")?),
    };
    r.finish()?;
    Ok(Connect {
        protocol,
        bridge,
        clean_start: flags & connect_flag::CLEAN_START != 0,
        keep_alive,
        client_id,
        properties,
        will,
        username,
        password,
    })
}

/// Protocol Name and Level: "MQTT" 4 or "MQTT" 5, and whether a 3.1.1 level carries
/// Mosquitto's bridge bit (0x84); anything else (e.g. "MQIsdp" 3) is `UnsupportedProtocol`,
/// which the engine answers with return code 0x01 / reason 0x84.
fn protocol_version(r: &mut Reader) -> Result<(ProtocolVersion, bool), DecodeError> {
    let name = r.string("protocol name")?;
    let level = r.u8("protocol level")?;
    match (name.as_str(), level) {
        ("MQTT", 4) => Ok((ProtocolVersion::V311, false)),
        ("MQTT", BRIDGE_V311_LEVEL) => Ok((ProtocolVersion::V311, true)),
        ("MQTT", 5) => Ok((ProtocolVersion::V5, false)),
        _ => Err(DecodeError::UnsupportedProtocol { name, level }),
    }
}

/// Checks the Connect Flags and returns the Will QoS if the Will Flag is set: reserved bit 0
/// [MQTT-3.1.2-3], Will QoS and Retain only with the Will Flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]
/// [MQTT-3.1.2-15], Will QoS not 3 [MQTT-3.1.2-14], and in 3.1.1 a password only with a user
/// name [MQTT-3.1.2-22].
fn check_connect_flags(flags: u8, protocol: ProtocolVersion) -> Result<Option<QoS>, DecodeError> {
    if flags & connect_flag::RESERVED != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & connect_flag::WILL_RETAIN != 0;
    if protocol == ProtocolVersion::V311
        && flags & connect_flag::PASSWORD != 0
        && flags & connect_flag::USER_NAME == 0
    {
        return Err(RuleError::PasswordWithoutUsername.into());
    }
    if flags & connect_flag::WILL == 0 {
        if will_qos != 0 || will_retain {
            return Err(DecodeError::WillFieldsWithoutWillFlag {
                will_qos,
                will_retain,
            });
        }
        return Ok(None);
    }
    QoS::from_u8(will_qos)
        .map(Some)
        .ok_or(DecodeError::InvalidQoS {
            packet: "CONNECT",
            field: "Will QoS",
        })
}

fn will(
    r: &mut Reader,
    protocol: ProtocolVersion,
    qos: QoS,
    retain: bool,
) -> Result<Will, DecodeError> {
    let properties = properties_of(r, protocol, Context::Will)?;
    let topic = r.string("Will Topic")?;
    let payload = r.binary("Will Payload")?;
    Ok(Will {
        topic,
        payload,
        qos,
        retain,
        properties,
    })
}

fn conn_ack(r: &mut Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = r.u8("acknowledge flags")?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::ConnAckReservedFlags { flags });
    }
    let code = r.u8("reason code")?;
    let (reason, properties) = match version {
        ProtocolVersion::V311 => {
            let reason =
                ReasonCode::from_v311_connack(code).ok_or(DecodeError::InvalidReasonCode {
                    packet: "CONNACK",
                    code,
                })?;
            (reason, Properties::default())
        }
        ProtocolVersion::V5 => (
            reason_code(code, Context::ConnAck)?,
            read_properties(r, Context::ConnAck)?,
        ),
    };
    r.finish()?;
    Ok(ConnAck {
        session_present: flags & 1 != 0,
        reason,
        properties,
    })
}

fn publish(flags: u8, r: &mut Reader, version: ProtocolVersion) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS {
        packet: "PUBLISH",
        field: "QoS",
    })?;
    let topic = r.string("topic name")?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce | QoS::ExactlyOnce => Some(packet_id(r)?),
    };
    let properties = properties_of(r, version, Context::Publish)?;
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 0b0001 != 0,
        topic,
        packet_id,
        properties,
        payload: r.rest(),
    })
}

fn pub_response(
    r: &mut Reader,
    version: ProtocolVersion,
    context: Context,
) -> Result<PubResponse, DecodeError> {
    let packet_id = packet_id(r)?;
    let (reason, properties) = match version {
        ProtocolVersion::V311 => {
            r.finish()?;
            (ReasonCode::Success, Properties::default())
        }
        ProtocolVersion::V5 => reason_and_properties(r, context)?,
    };
    Ok(PubResponse {
        packet_id,
        reason,
        properties,
    })
}

fn subscribe(r: &mut Reader, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_of(r, version, Context::Subscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("topic filter")?;
        let options = subscription_options(r.u8("subscription options")?, version)?;
        filters.push((filter, options));
    }
    rules::check_filters_present("SUBSCRIBE", filters.len())?;
    Ok(Subscribe {
        packet_id,
        properties,
        filters,
    })
}

/// The options byte after a topic filter: in 3.1.1 the requested QoS with bits 2–7 zero
/// [MQTT-3.8.3-4]; in 5.0 QoS, No Local, Retain As Published, Retain Handling with bits 6–7
/// zero [MQTT-3.8.3-5], and neither QoS nor Retain Handling 3 (Protocol Errors).
fn subscription_options(
    byte: u8,
    version: ProtocolVersion,
) -> Result<SubscriptionOptions, DecodeError> {
    let reserved_mask = match version {
        ProtocolVersion::V311 => 0b1111_1100,
        ProtocolVersion::V5 => 0b1100_0000,
    };
    if byte & reserved_mask != 0 {
        return Err(DecodeError::SubscriptionOptionsReserved { options: byte });
    }
    let qos = QoS::from_u8(byte & 0b11);
    if version == ProtocolVersion::V311 {
        return qos
            .map(SubscriptionOptions::with_qos)
            .ok_or(DecodeError::InvalidQoS {
                packet: "SUBSCRIBE",
                field: "requested QoS",
            });
    }
    let qos = qos.ok_or(DecodeError::ReservedSubscriptionOption {
        option: "Maximum QoS",
    })?;
    let retain_handling = (byte >> 4) & 0b11;
    if retain_handling == 3 {
        return Err(DecodeError::ReservedSubscriptionOption {
            option: "Retain Handling",
        });
    }
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0b0100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}

fn sub_ack(r: &mut Reader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_of(r, version, Context::SubAck)?;
    let mut reasons = Vec::new();
    while !r.is_empty() {
        let code = r.u8("reason code")?;
        let reason = match version {
            ProtocolVersion::V311 => v311_suback_code(code)?,
            ProtocolVersion::V5 => reason_code(code, Context::SubAck)?,
        };
        reasons.push(reason);
    }
    Ok(SubAck {
        packet_id,
        properties,
        reasons,
    })
}

/// MQTT 3.1.1 SUBACK return codes: granted QoS 0–2 or 0x80 failure.
fn v311_suback_code(code: u8) -> Result<ReasonCode, DecodeError> {
    match code {
        0x00 => Ok(ReasonCode::Success),
        0x01 => Ok(ReasonCode::GrantedQoS1),
        0x02 => Ok(ReasonCode::GrantedQoS2),
        0x80 => Ok(ReasonCode::UnspecifiedError),
        _ => Err(DecodeError::InvalidReasonCode {
            packet: "SUBACK",
            code,
        }),
    }
}

fn unsubscribe(r: &mut Reader, version: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_of(r, version, Context::Unsubscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string("topic filter")?);
    }
    rules::check_filters_present("UNSUBSCRIBE", filters.len())?;
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

fn unsub_ack(r: &mut Reader, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_of(r, version, Context::UnsubAck)?;
    let mut reasons = Vec::new();
    if version == ProtocolVersion::V5 {
        while !r.is_empty() {
            reasons.push(reason_code(r.u8("reason code")?, Context::UnsubAck)?);
        }
    }
    r.finish()?;
    Ok(UnsubAck {
        packet_id,
        properties,
        reasons,
    })
}

fn disconnect(r: &mut Reader, version: ProtocolVersion) -> Result<Disconnect, DecodeError> {
    let (reason, properties) = match version {
        ProtocolVersion::V311 => {
            r.finish()?;
            (ReasonCode::Success, Properties::default())
        }
        ProtocolVersion::V5 => reason_and_properties(r, Context::Disconnect)?,
    };
    Ok(Disconnect { reason, properties })
}

fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let (reason, properties) = reason_and_properties(r, Context::Auth)?;
    Ok(Auth { reason, properties })
}
