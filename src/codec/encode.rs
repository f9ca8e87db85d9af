//! Encoding: from a `Packet` to its bytes, appended straight to the caller's `BytesMut`.
//!
//! `encode` first checks the packet against everything `decode` enforces (so a packet that
//! encodes decodes back to itself), then writes it. The layout is written once, generic over a
//! `Sink`: run on a `ByteCounter` it gives the Remaining Length, Property Lengths and
//! `encoded_len`; run on the `BytesMut` it writes the bytes. Sizes and bytes cannot disagree.
//!
//! For MQTT 3.1.1 what the version lacks is left out: properties, v5 subscription options and
//! the reason codes of PUBACK/PUBREC/PUBREL/PUBCOMP, UNSUBACK and DISCONNECT. A CONNACK
//! reason becomes its nearest 3.1.1 return code, a failed SUBACK entry becomes 0x80.

use bytes::BytesMut;

use super::error::{EncodeError, RuleError};
use super::packet::{
    Connect, Packet, ProtocolVersion, PubResponse, Publish, QoS, Subscribe, SubscriptionOptions,
};
use super::primitives::{var_int_len, ByteCounter, Sink, MAX_PREFIXED_LEN, MAX_VAR_INT};
use super::properties::{id, Properties};
use super::property_wire::{for_each_property, PropertyValue};
use super::reason::ReasonCode;
use super::rules::{self, Context};

/// Appends the encoding of `packet` for `version` to `dst`. Fails on values the wire cannot
/// carry (string > 65535 bytes, remaining length > 268,435,455, QoS>0 publish without packet
/// id…) and on values `decode` would reject (packet identifier 0, a property or reason code the
/// packet type does not allow…); on failure `dst` is unchanged.
///
/// CONNECT is written for the protocol level it carries (`Connect::protocol`), whatever
/// `version` says.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let version = wire_version(packet, version);
    validate(packet, version)?;
    let body_len = body_len(packet, version);
    let remaining = u32::try_from(body_len)
        .ok()
        .filter(|&len| len <= MAX_VAR_INT)
        .ok_or(EncodeError::PacketTooLarge {
            packet: packet.name(),
            len: body_len,
        })?;
    dst.reserve(1 + var_int_len(remaining) + body_len);
    Sink::put_u8(dst, first_byte(packet));
    dst.put_var_int(remaining);
    write_body(packet, version, dst);
    Ok(())
}

/// The total encoded size of `packet` (fixed header included), without encoding it; the engine
/// uses it to honour a client's Maximum Packet Size. Equal to what `encode` writes; for a
/// packet `encode` rejects the value has no meaning (but is computed without panicking).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let version = wire_version(packet, version);
    let body_len = body_len(packet, version);
    let remaining = u32::try_from(body_len).unwrap_or(u32::MAX);
    1 + var_int_len(remaining) + body_len
}

/// Bytes the PUBLISH `publish` takes on the wire in `version`: [`encoded_len`] of it, without
/// making it a [`Packet`].
pub fn publish_len(publish: &Publish, version: ProtocolVersion) -> usize {
    let mut counter = ByteCounter::default();
    write_publish(publish, version == ProtocolVersion::V5, &mut counter);
    let remaining = u32::try_from(counter.0).unwrap_or(u32::MAX);
    1 + var_int_len(remaining) + counter.0
}

/// The version whose layout the packet is written in: CONNECT carries its own.
fn wire_version(packet: &Packet, version: ProtocolVersion) -> ProtocolVersion {
    match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => version,
    }
}

fn body_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let mut counter = ByteCounter::default();
    write_body(packet, version, &mut counter);
    counter.0
}

fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(publish) => {
            0x30 | u8::from(publish.dup) << 3 | (publish.qos as u8) << 1 | u8::from(publish.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

// ---------------------------------------------------------------------------------------------
// Layout: written once, for any Sink.

fn write_body<S: Sink>(packet: &Packet, version: ProtocolVersion, s: &mut S) {
    let v5 = version == ProtocolVersion::V5;
    match packet {
        Packet::Connect(connect) => write_connect(connect, s),
        Packet::ConnAck(ack) => {
            s.put_u8(u8::from(ack.session_present));
            if v5 {
                s.put_u8(ack.reason.to_u8());
                write_properties(&ack.properties, s);
            } else {
                s.put_u8(ack.reason.to_v311_connack());
            }
        }
        Packet::Publish(publish) => write_publish(publish, v5, s),
        Packet::PubAck(response)
        | Packet::PubRec(response)
        | Packet::PubRel(response)
        | Packet::PubComp(response) => {
            s.put_u16(response.packet_id);
            if v5 {
                write_reason_and_properties(response.reason, &response.properties, s);
            }
        }
        Packet::Subscribe(subscribe) => write_subscribe(subscribe, v5, s),
        Packet::SubAck(ack) => {
            s.put_u16(ack.packet_id);
            if v5 {
                write_properties(&ack.properties, s);
            }
            for &reason in &ack.reasons {
                let code = if v5 {
                    Some(reason.to_u8())
                } else {
                    v311_suback_code(reason)
                };
                s.put_u8(code.unwrap_or(0x80));
            }
        }
        Packet::Unsubscribe(unsubscribe) => {
            s.put_u16(unsubscribe.packet_id);
            if v5 {
                write_properties(&unsubscribe.properties, s);
            }
            for filter in &unsubscribe.filters {
                s.put_prefixed(filter.as_bytes());
            }
        }
        Packet::UnsubAck(ack) => {
            s.put_u16(ack.packet_id);
            if v5 {
                write_properties(&ack.properties, s);
                for reason in &ack.reasons {
                    s.put_u8(reason.to_u8());
                }
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(disconnect) => {
            if v5 {
                write_reason_and_properties(disconnect.reason, &disconnect.properties, s);
            }
        }
        Packet::Auth(auth) => write_reason_and_properties(auth.reason, &auth.properties, s),
    }
}

fn write_connect<S: Sink>(connect: &Connect, s: &mut S) {
    let v5 = connect.protocol == ProtocolVersion::V5;
    s.put_prefixed(b"MQTT");
    let bridge_bit = if connect.bridge && !v5 { 0x80 } else { 0 };
    s.put_u8(connect.protocol.level() | bridge_bit);
    s.put_u8(connect_flags(connect));
    s.put_u16(connect.keep_alive);
    if v5 {
        write_properties(&connect.properties, s);
    }
    s.put_prefixed(connect.client_id.as_bytes());
    if let Some(will) = &connect.will {
        if v5 {
            write_properties(&will.properties, s);
        }
        s.put_prefixed(will.topic.as_bytes());
        s.put_prefixed(&will.payload);
    }
    if let Some(username) = &connect.username {
        s.put_prefixed(username.as_bytes());
    }
    if let Some(password) = &connect.password {
        s.put_prefixed(password);
    }
}

fn connect_flags(connect: &Connect) -> u8 {
    let mut flags = u8::from(connect.clean_start) << 1;
    if let Some(will) = &connect.will {
        flags |= 0b0000_0100 | (will.qos as u8) << 3 | u8::from(will.retain) << 5;
    }
    flags |= u8::from(connect.password.is_some()) << 6;
    flags | u8::from(connect.username.is_some()) << 7
}

fn write_publish<S: Sink>(publish: &Publish, v5: bool, s: &mut S) {
    s.put_prefixed(publish.topic.as_bytes());
    if let Some(packet_id) = publish.packet_id {
        s.put_u16(packet_id);
    }
    if v5 {
        write_properties(&publish.properties, s);
    }
    s.put_slice(&publish.payload);
}

fn write_subscribe<S: Sink>(subscribe: &Subscribe, v5: bool, s: &mut S) {
    s.put_u16(subscribe.packet_id);
    if v5 {
        write_properties(&subscribe.properties, s);
    }
    for (filter, options) in &subscribe.filters {
        s.put_prefixed(filter.as_bytes());
        s.put_u8(options_byte(options, v5));
    }
}

fn options_byte(options: &SubscriptionOptions, v5: bool) -> u8 {
    let qos = options.qos as u8;
    if !v5 {
        return qos;
    }
    qos | u8::from(options.no_local) << 2
        | u8::from(options.retain_as_published) << 3
        | (options.retain_handling & 0b11) << 4
}

/// The 5.0 tail of acknowledgements, DISCONNECT and AUTH: nothing at all for Success without
/// properties (the short form), else the reason code and the property block.
fn write_reason_and_properties<S: Sink>(reason: ReasonCode, properties: &Properties, s: &mut S) {
    if reason == ReasonCode::Success && properties.is_empty() {
        return;
    }
    s.put_u8(reason.to_u8());
    write_properties(properties, s);
}

/// A Property Length and the properties.
fn write_properties<S: Sink>(properties: &Properties, s: &mut S) {
    let mut counter = ByteCounter::default();
    write_property_values(properties, &mut counter);
    s.put_var_int(u32::try_from(counter.0).unwrap_or(u32::MAX));
    write_property_values(properties, s);
}

fn write_property_values<S: Sink>(properties: &Properties, s: &mut S) {
    let Ok(()) = for_each_property::<std::convert::Infallible>(properties, |id, value| {
        s.put_u8(id);
        match value {
            PropertyValue::Byte(v) => s.put_u8(v),
            PropertyValue::TwoByte(v) => s.put_u16(v),
            PropertyValue::FourByte(v) => s.put_u32(v),
            PropertyValue::VarInt(v) => s.put_var_int(v),
            PropertyValue::Utf8(text) => s.put_prefixed(text.as_bytes()),
            PropertyValue::Binary(bytes) => s.put_prefixed(bytes),
            PropertyValue::Utf8Pair(name, value) => {
                s.put_prefixed(name.as_bytes());
                s.put_prefixed(value.as_bytes());
            }
        }
        Ok(())
    });
}

/// The MQTT 3.1.1 SUBACK return code for a reason: granted QoS 0–2, or 0x80 for any failure;
/// `None` for reasons that are neither.
fn v311_suback_code(reason: ReasonCode) -> Option<u8> {
    match reason {
        ReasonCode::Success => Some(0x00),
        ReasonCode::GrantedQoS1 => Some(0x01),
        ReasonCode::GrantedQoS2 => Some(0x02),
        failure if failure.is_error() => Some(0x80),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Validation: everything the decoder would reject, refused before a byte is written.

fn validate(packet: &Packet, version: ProtocolVersion) -> Result<(), EncodeError> {
    let v5 = version == ProtocolVersion::V5;
    match packet {
        Packet::Connect(connect) => validate_connect(connect),
        Packet::ConnAck(ack) => {
            check_reason_and_properties(v5, Context::ConnAck, ack.reason, &ack.properties)
        }
        Packet::Publish(publish) => validate_publish(publish, v5),
        Packet::PubAck(response) => validate_pub_response(response, v5, Context::PubAck),
        Packet::PubRec(response) => validate_pub_response(response, v5, Context::PubRec),
        Packet::PubRel(response) => validate_pub_response(response, v5, Context::PubRel),
        Packet::PubComp(response) => validate_pub_response(response, v5, Context::PubComp),
        Packet::Subscribe(subscribe) => validate_subscribe(subscribe, v5),
        Packet::SubAck(ack) => {
            rules::check_packet_id("SUBACK", ack.packet_id)?;
            for &reason in &ack.reasons {
                check_suback_reason(reason, v5)?;
            }
            check_properties_in(v5, &ack.properties, Context::SubAck)
        }
        Packet::Unsubscribe(unsubscribe) => {
            rules::check_packet_id("UNSUBSCRIBE", unsubscribe.packet_id)?;
            rules::check_filters_present("UNSUBSCRIBE", unsubscribe.filters.len())?;
            for filter in &unsubscribe.filters {
                check_string("UNSUBSCRIBE", "topic filter", filter)?;
            }
            check_properties_in(v5, &unsubscribe.properties, Context::Unsubscribe)
        }
        Packet::UnsubAck(ack) => {
            rules::check_packet_id("UNSUBACK", ack.packet_id)?;
            if v5 {
                for &reason in &ack.reasons {
                    check_reason(Context::UnsubAck, reason)?;
                }
            }
            check_properties_in(v5, &ack.properties, Context::UnsubAck)
        }
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(disconnect) => check_reason_and_properties(
            v5,
            Context::Disconnect,
            disconnect.reason,
            &disconnect.properties,
        ),
        Packet::Auth(auth) => {
            if !v5 {
                return Err(EncodeError::NotInProtocolVersion { packet: "AUTH" });
            }
            check_reason_and_properties(v5, Context::Auth, auth.reason, &auth.properties)
        }
    }
}

fn validate_connect(connect: &Connect) -> Result<(), EncodeError> {
    let v5 = connect.protocol == ProtocolVersion::V5;
    check_string("CONNECT", "client identifier", &connect.client_id)?;
    check_properties_in(v5, &connect.properties, Context::Connect)?;
    if let Some(will) = &connect.will {
        check_string("CONNECT", "Will Topic", &will.topic)?;
        check_binary("CONNECT", "Will Payload", &will.payload)?;
        check_properties_in(v5, &will.properties, Context::Will)?;
    }
    if let Some(username) = &connect.username {
        check_string("CONNECT", "user name", username)?;
    }
    if let Some(password) = &connect.password {
        check_binary("CONNECT", "password", password)?;
        if !v5 && connect.username.is_none() {
            return Err(RuleError::PasswordWithoutUsername.into());
        }
    }
    Ok(())
}

fn validate_publish(publish: &Publish, v5: bool) -> Result<(), EncodeError> {
    check_string("PUBLISH", "topic name", &publish.topic)?;
    match (publish.qos, publish.packet_id) {
        (QoS::AtMostOnce, Some(_)) => return Err(EncodeError::UnexpectedPacketId),
        (QoS::AtMostOnce, None) if publish.dup => return Err(RuleError::DupWithQoS0.into()),
        (QoS::AtMostOnce, None) => {}
        (qos, None) => return Err(EncodeError::MissingPacketId { qos: qos as u8 }),
        (_, Some(packet_id)) => {
            rules::check_packet_id("PUBLISH", packet_id)?;
        }
    }
    check_properties_in(v5, &publish.properties, Context::Publish)
}

fn validate_pub_response(
    response: &PubResponse,
    v5: bool,
    context: Context,
) -> Result<(), EncodeError> {
    rules::check_packet_id(context.name(), response.packet_id)?;
    check_reason_and_properties(v5, context, response.reason, &response.properties)
}

fn validate_subscribe(subscribe: &Subscribe, v5: bool) -> Result<(), EncodeError> {
    rules::check_packet_id("SUBSCRIBE", subscribe.packet_id)?;
    rules::check_filters_present("SUBSCRIBE", subscribe.filters.len())?;
    for (filter, options) in &subscribe.filters {
        check_string("SUBSCRIBE", "topic filter", filter)?;
        if v5 && options.retain_handling > 2 {
            return Err(EncodeError::InvalidRetainHandling {
                value: options.retain_handling,
            });
        }
    }
    check_properties_in(v5, &subscribe.properties, Context::Subscribe)
}

fn check_string(packet: &'static str, field: &'static str, text: &str) -> Result<(), EncodeError> {
    if text.len() > MAX_PREFIXED_LEN {
        return Err(EncodeError::StringTooLong {
            packet,
            field,
            len: text.len(),
        });
    }
    if text.contains('\0') {
        return Err(RuleError::NullCharacter { packet, field }.into());
    }
    Ok(())
}

fn check_binary(
    packet: &'static str,
    field: &'static str,
    bytes: &[u8],
) -> Result<(), EncodeError> {
    if bytes.len() > MAX_PREFIXED_LEN {
        return Err(EncodeError::BinaryTooLong {
            packet,
            field,
            len: bytes.len(),
        });
    }
    Ok(())
}

fn check_reason(context: Context, reason: ReasonCode) -> Result<(), EncodeError> {
    if context.allows_reason(reason) {
        Ok(())
    } else {
        Err(EncodeError::ReasonNotAllowed {
            packet: context.name(),
            reason,
        })
    }
}

fn check_suback_reason(reason: ReasonCode, v5: bool) -> Result<(), EncodeError> {
    if v5 {
        return check_reason(Context::SubAck, reason);
    }
    match v311_suback_code(reason) {
        Some(_) => Ok(()),
        None => Err(EncodeError::ReasonNotAllowed {
            packet: "SUBACK",
            reason,
        }),
    }
}

/// In 5.0, the reason code and the properties; 3.1.1 writes neither (CONNACK maps its reason).
fn check_reason_and_properties(
    v5: bool,
    context: Context,
    reason: ReasonCode,
    properties: &Properties,
) -> Result<(), EncodeError> {
    if !v5 {
        return Ok(());
    }
    check_reason(context, reason)?;
    check_properties(properties, context)
}

/// The properties, when the version writes them (5.0).
fn check_properties_in(
    v5: bool,
    properties: &Properties,
    context: Context,
) -> Result<(), EncodeError> {
    if v5 {
        check_properties(properties, context)
    } else {
        Ok(())
    }
}

/// Each property is allowed in `context`, has an allowed value and fits its length prefix;
/// Subscription Identifier repeats only in PUBLISH; Authentication Data has a method.
fn check_properties(properties: &Properties, context: Context) -> Result<(), EncodeError> {
    let packet = context.name();
    for_each_property(properties, |id, value| {
        let property = rules::property_name(id);
        rules::check_property_allowed(id, context)?;
        match value {
            PropertyValue::Utf8(text) => check_string(packet, property, text),
            PropertyValue::Binary(bytes) => check_binary(packet, property, bytes),
            PropertyValue::Utf8Pair(name, value) => {
                check_string(packet, property, name)?;
                check_string(packet, property, value)
            }
            integer => match integer.as_integer() {
                Some(v) => Ok(rules::check_integer_value(id, v, context)?),
                None => Ok(()),
            },
        }
    })?;
    if context != Context::Publish && properties.subscription_identifiers.len() > 1 {
        return Err(rules::duplicate_property(id::SUBSCRIPTION_IDENTIFIER, context).into());
    }
    Ok(rules::check_auth_data(properties, context)?)
}
