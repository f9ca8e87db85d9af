//! One test per decoding rule of MQTT 3.1.1 and 5.0, named after the normative statement it
//! checks where the specification numbers one, asserting the exact `DecodeError` and the
//! reason code the engine will answer with. Packets are written out byte by byte.

use bytes::{Bytes, BytesMut};
use cairn::codec::{
    decode, encode, property_id as id, Connect, DecodeError, Disconnect, EncodeError, Packet,
    Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, RuleError, Subscribe,
    SubscriptionOptions, Unsubscribe,
};

use ProtocolVersion::{V311, V5};

const NO_LIMIT: u32 = u32::MAX;
const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
const PROTOCOL_ERROR: ReasonCode = ReasonCode::ProtocolError;

// ---- Building packets by hand. ----

/// A packet: first byte, Remaining Length (minimal variable byte integer), body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(var_int(body.len() as u32));
    out.extend_from_slice(body);
    out
}

fn var_int(mut value: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A two-byte length prefix and the bytes.
fn prefixed(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A v5 property block: Property Length then the properties.
fn props(properties: &[u8]) -> Vec<u8> {
    cat(&[&var_int(properties.len() as u32), properties])
}

/// CONNECT with the given level, flags and what follows Keep Alive.
fn connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    packet(0x10, &cat(&[&prefixed(name), &[level, flags, 0, 60], rest]))
}

fn decode_all(bytes: &[u8], version: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    decode(&mut BytesMut::from(bytes), version, NO_LIMIT)
}

/// Decoding fails with exactly `expected`, whose reason code is `reason`.
#[track_caller]
fn assert_rejected(
    bytes: &[u8],
    version: ProtocolVersion,
    expected: DecodeError,
    reason: ReasonCode,
) {
    assert_eq!(decode_all(bytes, version), Err(expected.clone()));
    assert_eq!(expected.reason_code(), reason, "reason code of {expected}");
}

#[track_caller]
fn decoded(bytes: &[u8], version: ProtocolVersion) -> Packet {
    match decode_all(bytes, version) {
        Ok(Some(packet)) => packet,
        other => panic!("expected a packet from {bytes:02x?}, got {other:?}"),
    }
}

fn publish_qos1_v5(properties: &[u8]) -> Vec<u8> {
    packet(
        0x32,
        &cat(&[&prefixed(b"t"), &[0, 1], &props(properties), b"payload"]),
    )
}

fn connect_v5(properties: &[u8]) -> Vec<u8> {
    connect(
        b"MQTT",
        5,
        0x02,
        &cat(&[&props(properties), &prefixed(b"c")]),
    )
}

// ---- Fixed header. ----

#[test]
fn packet_type_0_is_forbidden_section_2_2_1() {
    for version in [V311, V5] {
        let expected = DecodeError::InvalidPacketType { kind: 0 };
        assert_rejected(&[0x00, 0x00], version, expected, MALFORMED);
    }
}

#[test]
fn packet_type_15_is_forbidden_in_v311_and_auth_in_v5() {
    let expected = DecodeError::InvalidPacketType { kind: 15 };
    assert_rejected(&[0xF0, 0x00], V311, expected, MALFORMED);
    assert!(matches!(decoded(&[0xF0, 0x00], V5), Packet::Auth(_)));
}

#[test]
fn first_byte_is_checked_before_the_remaining_length_arrives() {
    let mut buffer = BytesMut::from(&[0x00][..]);
    assert_eq!(
        decode(&mut buffer, V311, NO_LIMIT),
        Err(DecodeError::InvalidPacketType { kind: 0 })
    );
}

#[test]
fn reserved_header_flags_must_match_mqtt_2_2_2_1_and_mqtt_2_2_2_2() {
    let cases: &[(u8, &[u8], &str, u8)] = &[
        (0x60, &[0, 1], "PUBREL", 0b0010),
        (0x80, &[0, 1, 0, 1, b'a', 0], "SUBSCRIBE", 0b0010),
        (0xA0, &[0, 1, 0, 1, b'a'], "UNSUBSCRIBE", 0b0010),
        (0x41, &[0, 1], "PUBACK", 0),
        (0x52, &[0, 1], "PUBREC", 0),
        (0x78, &[0, 1], "PUBCOMP", 0),
        (0x2F, &[0, 0], "CONNACK", 0),
        (0xC1, &[], "PINGREQ", 0),
        (0xD4, &[], "PINGRESP", 0),
        (0xE2, &[], "DISCONNECT", 0),
        (0x92, &[0, 1, 0], "SUBACK", 0),
        (0xB1, &[0, 1], "UNSUBACK", 0),
        (0x11, &[], "CONNECT", 0),
    ];
    for &(first, body, name, expected_flags) in cases {
        for version in [V311, V5] {
            let expected = DecodeError::InvalidHeaderFlags {
                packet: name,
                flags: first & 0x0F,
                expected: expected_flags,
            };
            assert_rejected(&packet(first, body), version, expected, MALFORMED);
        }
    }
}

#[test]
fn publish_qos_3_is_malformed_mqtt_3_3_1_4() {
    let bytes = packet(0x36, &cat(&[&prefixed(b"t"), &[0, 1]]));
    for version in [V311, V5] {
        let expected = DecodeError::InvalidQoS {
            packet: "PUBLISH",
            field: "QoS",
        };
        assert_rejected(&bytes, version, expected, MALFORMED);
    }
}

#[test]
fn publish_dup_with_qos_0_is_malformed_mqtt_3_3_1_2() {
    let bytes = packet(0x38, &prefixed(b"t"));
    assert_rejected(
        &bytes,
        V311,
        DecodeError::Rule(RuleError::DupWithQoS0),
        MALFORMED,
    );
}

#[test]
fn remaining_length_longer_than_4_bytes_is_malformed_section_2_2_3() {
    let bytes = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    let expected = DecodeError::VarIntTooLong {
        field: "Remaining Length",
    };
    assert_rejected(&bytes, V311, expected, MALFORMED);
}

/// Non-minimal variable byte integers are rejected, in both versions and in every place one
/// appears (Remaining Length, Property Length, Subscription Identifier).
#[test]
fn non_minimal_variable_byte_integers_are_rejected_mqtt_1_5_5_1() {
    let remaining = [0xC0, 0x80, 0x00];
    for version in [V311, V5] {
        let expected = DecodeError::VarIntNotMinimal {
            field: "Remaining Length",
        };
        assert_rejected(&remaining, version, expected, MALFORMED);
    }
    let property_length = packet(0x40, &[0, 1, 0x00, 0x80, 0x00]);
    let expected = DecodeError::VarIntNotMinimal {
        field: "property length",
    };
    assert_rejected(&property_length, V5, expected, MALFORMED);
    let subscription_id = publish_qos1_v5(&[id::SUBSCRIPTION_IDENTIFIER, 0x81, 0x00]);
    let expected = DecodeError::VarIntNotMinimal {
        field: "Subscription Identifier",
    };
    assert_rejected(&subscription_id, V5, expected, MALFORMED);
}

#[test]
fn oversized_packet_is_rejected_from_the_fixed_header_alone() {
    // Remaining Length 1000: 1003 bytes in all, only the 3 header bytes buffered.
    let mut header_only = BytesMut::from(&[0x30, 0xE8, 0x07][..]);
    let result = decode(&mut header_only, V5, 1002);
    let expected = DecodeError::PacketTooLarge {
        size: 1003,
        max: 1002,
    };
    assert_eq!(result, Err(expected.clone()));
    assert_eq!(expected.reason_code(), ReasonCode::PacketTooLarge);
    assert_eq!(header_only.len(), 3, "nothing consumed");

    let mut header_only = BytesMut::from(&[0x30, 0xE8, 0x07][..]);
    assert_eq!(
        decode(&mut header_only, V5, 1003),
        Ok(None),
        "exactly the maximum is fine"
    );
}

#[test]
fn huge_remaining_length_waits_without_allocating() {
    let mut buffer = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00][..]);
    let capacity = buffer.capacity();
    assert_eq!(decode(&mut buffer, V311, NO_LIMIT), Ok(None));
    assert_eq!((buffer.len(), buffer.capacity()), (6, capacity));
}

// ---- Remaining Length against the body. ----

#[test]
fn bytes_after_the_last_field_are_malformed() {
    let cases: &[(Vec<u8>, ProtocolVersion, &str, usize)] = &[
        (packet(0x40, &[0, 1, 0]), V311, "PUBACK", 1),
        (packet(0xC0, &[0]), V5, "PINGREQ", 1),
        (packet(0xE0, &[0]), V311, "DISCONNECT", 1),
        (packet(0x20, &[0, 0, 0]), V311, "CONNACK", 1),
        (packet(0xB0, &[0, 1, 0]), V311, "UNSUBACK", 1),
        (packet(0x40, &[0, 1, 0x10, 0, 9, 9]), V5, "PUBACK", 2),
        (
            connect(b"MQTT", 4, 0x02, &cat(&[&prefixed(b"c"), b"xyz"])),
            V311,
            "CONNECT",
            3,
        ),
    ];
    for (bytes, version, name, count) in cases {
        let expected = DecodeError::TrailingBytes {
            packet: name,
            count: *count,
        };
        assert_rejected(bytes, *version, expected, MALFORMED);
    }
}

#[test]
fn fields_running_past_the_remaining_length_are_malformed() {
    let cases: &[(Vec<u8>, ProtocolVersion, &str, &str)] = &[
        (
            connect(b"MQTT", 4, 0x02, &[0, 5, b'c']),
            V311,
            "CONNECT",
            "client identifier",
        ),
        (packet(0x30, &[0, 9, b't']), V311, "PUBLISH", "topic name"),
        (
            packet(0x32, &cat(&[&prefixed(b"t"), &[0]])),
            V311,
            "PUBLISH",
            "packet identifier",
        ),
        (packet(0x40, &[0]), V5, "PUBACK", "packet identifier"),
        (packet(0x20, &[0]), V311, "CONNACK", "reason code"),
        (
            publish_qos1_v5(&[id::MESSAGE_EXPIRY_INTERVAL, 0, 0]),
            V5,
            "PUBLISH",
            "Message Expiry Interval",
        ),
    ];
    for (bytes, version, name, field) in cases {
        let expected = DecodeError::Truncated {
            packet: name,
            field,
        };
        assert_rejected(bytes, *version, expected, MALFORMED);
    }
}

// ---- Data representations. ----

#[test]
fn invalid_utf8_is_malformed_mqtt_1_5_3_1() {
    // 0xFF never appears in UTF-8; ED A0 80 encodes the surrogate U+D800.
    for bad in [&b"a\xFFb"[..], &b"\xED\xA0\x80"[..]] {
        let bytes = packet(0x30, &prefixed(bad));
        let expected = DecodeError::InvalidUtf8 {
            packet: "PUBLISH",
            field: "topic name",
        };
        assert_rejected(&bytes, V311, expected, MALFORMED);
    }
}

#[test]
fn null_character_in_a_string_is_malformed_mqtt_1_5_3_2() {
    let bytes = packet(0x30, &prefixed(b"a\0b"));
    let expected = DecodeError::Rule(RuleError::NullCharacter {
        packet: "PUBLISH",
        field: "topic name",
    });
    assert_eq!(expected.to_string(), "PUBLISH topic name contains U+0000");
    for version in [V311, V5] {
        assert_rejected(&bytes, version, expected.clone(), MALFORMED);
    }
    let user_property = publish_qos1_v5(&cat(&[
        &[id::USER_PROPERTY],
        &prefixed(b"k\0"),
        &prefixed(b"v"),
    ]));
    let expected = DecodeError::Rule(RuleError::NullCharacter {
        packet: "PUBLISH",
        field: "User Property name",
    });
    assert_rejected(&user_property, V5, expected, MALFORMED);
}

// ---- CONNECT. ----

#[test]
fn unsupported_protocol_name_or_level_mqtt_3_1_2_2() {
    let cases: &[(&[u8], u8)] = &[(b"MQIsdp", 3), (b"MQTT", 3), (b"MQTT", 6), (b"HTTP", 4)];
    for &(name, level) in cases {
        let bytes = connect(name, level, 0x02, &prefixed(b"c"));
        let expected = DecodeError::UnsupportedProtocol {
            name: String::from_utf8_lossy(name).into_owned(),
            level,
        };
        // CONNECT ignores the connection's version: it carries its own.
        for version in [V311, V5] {
            assert_rejected(
                &bytes,
                version,
                expected.clone(),
                ReasonCode::UnsupportedProtocolVersion,
            );
        }
    }
}

#[test]
fn connect_carries_its_own_level() {
    let v311 = connect(b"MQTT", 4, 0x02, &prefixed(b"c"));
    let Packet::Connect(connect) = decoded(&v311, V5) else {
        panic!("expected CONNECT");
    };
    assert_eq!(connect.protocol, V311);
}

#[test]
fn connect_reserved_flag_must_be_zero_mqtt_3_1_2_3() {
    for (level, version) in [(4, V311), (5, V5)] {
        let bytes = connect(b"MQTT", level, 0x03, &prefixed(b"c"));
        assert_rejected(&bytes, version, DecodeError::ConnectReservedFlag, MALFORMED);
    }
}

#[test]
fn will_qos_and_retain_need_the_will_flag_mqtt_3_1_2_11() {
    let rest = prefixed(b"c");
    let qos_without_will = connect(b"MQTT", 4, 0x02 | 0x08, &rest);
    let expected = DecodeError::WillFieldsWithoutWillFlag {
        will_qos: 1,
        will_retain: false,
    };
    assert_rejected(&qos_without_will, V311, expected, MALFORMED);
}

#[test]
fn will_qos_must_be_0_without_will_flag_mqtt_3_1_2_13() {
    let bytes = connect(
        b"MQTT",
        5,
        0x02 | 0x10,
        &cat(&[&props(&[]), &prefixed(b"c")]),
    );
    let expected = DecodeError::WillFieldsWithoutWillFlag {
        will_qos: 2,
        will_retain: false,
    };
    assert_rejected(&bytes, V5, expected, MALFORMED);
}

#[test]
fn will_retain_must_be_0_without_will_flag_mqtt_3_1_2_15() {
    let bytes = connect(b"MQTT", 4, 0x02 | 0x20, &prefixed(b"c"));
    let expected = DecodeError::WillFieldsWithoutWillFlag {
        will_qos: 0,
        will_retain: true,
    };
    assert_rejected(&bytes, V311, expected, MALFORMED);
}

#[test]
fn will_qos_3_is_malformed_mqtt_3_1_2_14() {
    let will = cat(&[&prefixed(b"c"), &prefixed(b"will/topic"), &prefixed(b"bye")]);
    let bytes = connect(b"MQTT", 4, 0x02 | 0x04 | 0x18, &will);
    let expected = DecodeError::InvalidQoS {
        packet: "CONNECT",
        field: "Will QoS",
    };
    assert_rejected(&bytes, V311, expected, MALFORMED);
}

#[test]
fn password_without_user_name_is_malformed_in_v311_mqtt_3_1_2_22() {
    let rest = cat(&[&prefixed(b"c"), &prefixed(b"secret")]);
    let bytes = connect(b"MQTT", 4, 0x02 | 0x40, &rest);
    assert_rejected(
        &bytes,
        V311,
        DecodeError::Rule(RuleError::PasswordWithoutUsername),
        MALFORMED,
    );

    // MQTT 5.0 allows a password without a user name.
    let rest = cat(&[&props(&[]), &prefixed(b"c"), &prefixed(b"secret")]);
    let Packet::Connect(connect) = decoded(&connect(b"MQTT", 5, 0x02 | 0x40, &rest), V5) else {
        panic!("expected CONNECT");
    };
    assert_eq!(connect.username, None);
    assert_eq!(connect.password, Some(Bytes::from_static(b"secret")));
}

#[test]
fn v5_connect_and_will_properties_are_decoded() {
    let connect_props = cat(&[
        &[id::SESSION_EXPIRY_INTERVAL, 0, 0, 0x0E, 0x10],
        &[id::RECEIVE_MAXIMUM, 0, 20],
    ]);
    let will_props = [id::WILL_DELAY_INTERVAL, 0, 0, 0, 30];
    let rest = cat(&[
        &props(&connect_props),
        &prefixed(b"c"),
        &props(&will_props),
        &prefixed(b"will/t"),
        &prefixed(b"bye"),
        &prefixed(b"user"),
    ]);
    let bytes = connect(b"MQTT", 5, 0x02 | 0x04 | 0x08 | 0x20 | 0x80, &rest);
    let Packet::Connect(connect) = decoded(&bytes, V5) else {
        panic!("expected CONNECT");
    };
    assert_eq!(connect.properties.session_expiry_interval, Some(3600));
    assert_eq!(connect.properties.receive_maximum, Some(20));
    let will = connect.will.expect("will");
    assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, true));
    assert_eq!(will.properties.will_delay_interval, Some(30));
    assert_eq!(will.topic, "will/t");
    assert_eq!(connect.username.as_deref(), Some("user"));
}

// ---- Packet identifiers and SUBSCRIBE / UNSUBSCRIBE payloads. ----

#[test]
fn packet_identifier_must_be_non_zero_mqtt_2_3_1_1() {
    let cases: &[(Vec<u8>, &str)] = &[
        (packet(0x32, &cat(&[&prefixed(b"t"), &[0, 0]])), "PUBLISH"),
        (
            packet(0x82, &cat(&[&[0, 0], &prefixed(b"a"), &[0]])),
            "SUBSCRIBE",
        ),
        (
            packet(0xA2, &cat(&[&[0, 0], &prefixed(b"a")])),
            "UNSUBSCRIBE",
        ),
        (packet(0x40, &[0, 0]), "PUBACK"),
        (packet(0x62, &[0, 0]), "PUBREL"),
    ];
    for (bytes, name) in cases {
        let expected = DecodeError::Rule(RuleError::ZeroPacketId { packet: name });
        assert_rejected(bytes, V311, expected, PROTOCOL_ERROR);
    }
}

#[test]
fn subscribe_without_filters_is_a_protocol_error_mqtt_3_8_3_3() {
    let expected = DecodeError::Rule(RuleError::NoTopicFilters {
        packet: "SUBSCRIBE",
    });
    assert_rejected(
        &packet(0x82, &[0, 1]),
        V311,
        expected.clone(),
        PROTOCOL_ERROR,
    );
    assert_rejected(&packet(0x82, &[0, 1, 0]), V5, expected, PROTOCOL_ERROR);
}

#[test]
fn unsubscribe_without_filters_is_a_protocol_error_mqtt_3_10_3_2() {
    let expected = DecodeError::Rule(RuleError::NoTopicFilters {
        packet: "UNSUBSCRIBE",
    });
    assert_rejected(
        &packet(0xA2, &[0, 1]),
        V311,
        expected.clone(),
        PROTOCOL_ERROR,
    );
    assert_rejected(&packet(0xA2, &[0, 1, 0]), V5, expected, PROTOCOL_ERROR);
}

fn subscribe_v311(options: u8) -> Vec<u8> {
    packet(0x82, &cat(&[&[0, 1], &prefixed(b"a/b"), &[options]]))
}

fn subscribe_v5(options: u8) -> Vec<u8> {
    packet(0x82, &cat(&[&[0, 1, 0], &prefixed(b"a/b"), &[options]]))
}

#[test]
fn v311_requested_qos_reserved_bits_must_be_zero_mqtt_3_8_3_4() {
    let expected = DecodeError::SubscriptionOptionsReserved { options: 0x05 };
    assert_rejected(&subscribe_v311(0x05), V311, expected, MALFORMED);
    let expected = DecodeError::InvalidQoS {
        packet: "SUBSCRIBE",
        field: "requested QoS",
    };
    assert_rejected(&subscribe_v311(0x03), V311, expected, MALFORMED);
}

#[test]
fn v5_subscription_options_bits_6_and_7_must_be_zero_mqtt_3_8_3_5() {
    for options in [0x40, 0x80] {
        let expected = DecodeError::SubscriptionOptionsReserved { options };
        assert_rejected(&subscribe_v5(options), V5, expected, MALFORMED);
    }
}

#[test]
fn v5_retain_handling_3_and_maximum_qos_3_are_protocol_errors() {
    let expected = DecodeError::ReservedSubscriptionOption {
        option: "Retain Handling",
    };
    assert_rejected(&subscribe_v5(0x30), V5, expected, PROTOCOL_ERROR);
    let expected = DecodeError::ReservedSubscriptionOption {
        option: "Maximum QoS",
    };
    assert_rejected(&subscribe_v5(0x03), V5, expected, PROTOCOL_ERROR);
}

#[test]
fn v5_subscription_options_are_decoded() {
    let Packet::Subscribe(subscribe) = decoded(&subscribe_v5(0x2E), V5) else {
        panic!("expected SUBSCRIBE");
    };
    let options = subscribe.filters[0].1;
    assert_eq!(options.qos, QoS::ExactlyOnce);
    assert!(options.no_local && options.retain_as_published);
    assert_eq!(options.retain_handling, 2);
}

// ---- v5 properties. ----

#[test]
fn property_not_allowed_in_the_packet_is_a_protocol_error() {
    let topic_alias_in_connect = connect_v5(&[id::TOPIC_ALIAS, 0, 1]);
    let expected = DecodeError::Rule(RuleError::PropertyNotAllowed {
        packet: "CONNECT",
        property: "Topic Alias",
    });
    assert_rejected(&topic_alias_in_connect, V5, expected, PROTOCOL_ERROR);

    let session_expiry_in_publish = publish_qos1_v5(&[id::SESSION_EXPIRY_INTERVAL, 0, 0, 0, 1]);
    let expected = DecodeError::Rule(RuleError::PropertyNotAllowed {
        packet: "PUBLISH",
        property: "Session Expiry Interval",
    });
    assert_rejected(&session_expiry_in_publish, V5, expected, PROTOCOL_ERROR);

    let will = cat(&[
        &props(&[]),
        &prefixed(b"c"),
        &props(&[id::TOPIC_ALIAS, 0, 1]),
        &prefixed(b"w"),
        &prefixed(b""),
    ]);
    let expected = DecodeError::Rule(RuleError::PropertyNotAllowed {
        packet: "CONNECT Will",
        property: "Topic Alias",
    });
    assert_rejected(
        &connect(b"MQTT", 5, 0x06, &will),
        V5,
        expected,
        PROTOCOL_ERROR,
    );
}

#[test]
fn duplicate_single_valued_property_is_a_protocol_error() {
    let content_type = cat(&[&[id::CONTENT_TYPE], &prefixed(b"a")]);
    let twice = publish_qos1_v5(&cat(&[&content_type, &content_type]));
    let expected = DecodeError::Rule(RuleError::DuplicateProperty {
        packet: "PUBLISH",
        property: "Content Type",
    });
    assert_rejected(&twice, V5, expected, PROTOCOL_ERROR);
}

#[test]
fn subscription_identifier_repeats_in_publish_but_not_in_subscribe() {
    let two_ids = [
        id::SUBSCRIPTION_IDENTIFIER,
        1,
        id::SUBSCRIPTION_IDENTIFIER,
        0x80,
        0x01,
    ];
    let Packet::Publish(publish) = decoded(&publish_qos1_v5(&two_ids), V5) else {
        panic!("expected PUBLISH");
    };
    assert_eq!(publish.properties.subscription_identifiers, vec![1, 128]);

    let subscribe = packet(
        0x82,
        &cat(&[&[0, 1], &props(&two_ids), &prefixed(b"a"), &[0]]),
    );
    let expected = DecodeError::Rule(RuleError::DuplicateProperty {
        packet: "SUBSCRIBE",
        property: "Subscription Identifier",
    });
    assert_rejected(&subscribe, V5, expected, PROTOCOL_ERROR);
}

#[test]
fn subscription_identifier_0_is_a_protocol_error() {
    let bytes = publish_qos1_v5(&[id::SUBSCRIPTION_IDENTIFIER, 0]);
    let expected = DecodeError::Rule(RuleError::InvalidPropertyValue {
        packet: "PUBLISH",
        property: "Subscription Identifier",
        value: 0,
    });
    assert_rejected(&bytes, V5, expected, PROTOCOL_ERROR);
}

#[test]
fn receive_maximum_0_and_maximum_packet_size_0_are_protocol_errors() {
    let expected = DecodeError::Rule(RuleError::InvalidPropertyValue {
        packet: "CONNECT",
        property: "Receive Maximum",
        value: 0,
    });
    assert_rejected(
        &connect_v5(&[id::RECEIVE_MAXIMUM, 0, 0]),
        V5,
        expected,
        PROTOCOL_ERROR,
    );
    let expected = DecodeError::Rule(RuleError::InvalidPropertyValue {
        packet: "CONNECT",
        property: "Maximum Packet Size",
        value: 0,
    });
    let bytes = connect_v5(&[id::MAXIMUM_PACKET_SIZE, 0, 0, 0, 0]);
    assert_rejected(&bytes, V5, expected, PROTOCOL_ERROR);
}

#[test]
fn flag_properties_other_than_0_or_1_are_protocol_errors() {
    let expected = DecodeError::Rule(RuleError::InvalidPropertyValue {
        packet: "CONNECT",
        property: "Request Problem Information",
        value: 2,
    });
    let bytes = connect_v5(&[id::REQUEST_PROBLEM_INFORMATION, 2]);
    assert_rejected(&bytes, V5, expected, PROTOCOL_ERROR);
}

#[test]
fn topic_alias_0_is_decoded_for_the_engine_to_answer() {
    let Packet::Publish(publish) = decoded(&publish_qos1_v5(&[id::TOPIC_ALIAS, 0, 0]), V5) else {
        panic!("expected PUBLISH");
    };
    assert_eq!(publish.properties.topic_alias, Some(0));
    assert_eq!(publish.payload, Bytes::from_static(b"payload"));
}

#[test]
fn unknown_property_identifier_is_malformed() {
    let expected = DecodeError::UnknownProperty {
        packet: "PUBLISH",
        id: 0x05,
    };
    assert_rejected(&publish_qos1_v5(&[0x05, 0]), V5, expected, MALFORMED);
}

#[test]
fn property_length_beyond_the_packet_is_malformed() {
    // Property Length 9 but only 7 bytes follow (the payload is counted as properties).
    let bytes = packet(0x32, &cat(&[&prefixed(b"t"), &[0, 1], &[9], b"payload"]));
    let expected = DecodeError::Truncated {
        packet: "PUBLISH",
        field: "properties",
    };
    assert_rejected(&bytes, V5, expected, MALFORMED);
}

#[test]
fn authentication_data_without_method_is_a_protocol_error() {
    let bytes = connect_v5(&cat(&[&[id::AUTHENTICATION_DATA], &prefixed(b"x")]));
    let expected = DecodeError::Rule(RuleError::AuthDataWithoutMethod { packet: "CONNECT" });
    assert_rejected(&bytes, V5, expected, PROTOCOL_ERROR);
}

// ---- v5 reason codes and short forms. ----

/// [MQTT-3.2.2-8] [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1] [MQTT-3.9.3-2]
/// [MQTT-3.11.3-2] [MQTT-3.14.2-1] [MQTT-3.15.2-1]: each packet uses only its own reason codes.
#[test]
fn v5_reason_codes_must_be_defined_for_the_packet() {
    let cases: &[(u8, &[u8], &str, u8)] = &[
        (0x40, &[0, 1], "PUBACK", 0x92),
        (0x50, &[0, 1], "PUBREC", 0x04),
        (0x62, &[0, 1], "PUBREL", 0x10),
        (0x70, &[0, 1], "PUBCOMP", 0x80),
        (0x20, &[0], "CONNACK", 0x04),
        (0xE0, &[], "DISCONNECT", 0x10),
        (0xF0, &[], "AUTH", 0x01),
        (0x90, &[0, 1, 0], "SUBACK", 0x10),
        (0xB0, &[0, 1, 0], "UNSUBACK", 0x02),
        (0x40, &[0, 1], "PUBACK", 0x03),
    ];
    for &(first, before, name, code) in cases {
        let bytes = packet(first, &cat(&[before, &[code]]));
        let expected = DecodeError::InvalidReasonCode { packet: name, code };
        assert_rejected(&bytes, V5, expected, MALFORMED);
    }
}

#[test]
fn every_puback_reason_code_is_accepted() {
    for code in [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99] {
        let Packet::PubAck(ack) = decoded(&packet(0x40, &[0, 1, code, 0]), V5) else {
            panic!("expected PUBACK");
        };
        assert_eq!(ack.reason.to_u8(), code);
    }
}

#[test]
fn ack_with_remaining_length_2_means_success_without_properties() {
    let expected = Packet::PubAck(PubResponse::success(1));
    assert_eq!(decoded(&packet(0x40, &[0, 1]), V5), expected);
    let reason_only = decoded(&packet(0x50, &[0, 1, 0x10]), V5);
    let Packet::PubRec(rec) = reason_only else {
        panic!("expected PUBREC");
    };
    assert_eq!(rec.reason, ReasonCode::NoMatchingSubscribers);
    assert!(rec.properties.is_empty());
}

#[test]
fn disconnect_with_remaining_length_0_means_normal_disconnection() {
    let normal = Packet::Disconnect(Disconnect::new(ReasonCode::Success));
    assert_eq!(decoded(&[0xE0, 0x00], V5), normal);
    let with_will = Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage));
    assert_eq!(decoded(&[0xE0, 0x01, 0x04], V5), with_will);
}

#[test]
fn auth_with_remaining_length_0_means_success() {
    let Packet::Auth(auth) = decoded(&[0xF0, 0x00], V5) else {
        panic!("expected AUTH");
    };
    assert_eq!(auth.reason, ReasonCode::Success);
    assert!(auth.properties.is_empty());
}

// ---- MQTT 3.1.1 acknowledgements. ----

#[test]
fn v311_unsuback_has_no_reason_codes() {
    let Packet::UnsubAck(ack) = decoded(&packet(0xB0, &[0, 1]), V311) else {
        panic!("expected UNSUBACK");
    };
    assert!(ack.reasons.is_empty());
}

#[test]
fn v311_suback_return_codes_are_0_1_2_or_0x80_mqtt_3_9_3_2() {
    let Packet::SubAck(ack) = decoded(&packet(0x90, &[0, 1, 0, 1, 2, 0x80]), V311) else {
        panic!("expected SUBACK");
    };
    let expected = [
        ReasonCode::Success,
        ReasonCode::GrantedQoS1,
        ReasonCode::GrantedQoS2,
        ReasonCode::UnspecifiedError,
    ];
    assert_eq!(ack.reasons, expected);
    for code in [0x03, 0x87] {
        let expected = DecodeError::InvalidReasonCode {
            packet: "SUBACK",
            code,
        };
        assert_rejected(&packet(0x90, &[0, 1, code]), V311, expected, MALFORMED);
    }
}

#[test]
fn v311_connack_return_codes_0_to_5_map_to_reason_codes() {
    for code in 0..=5u8 {
        let Packet::ConnAck(ack) = decoded(&packet(0x20, &[1, code]), V311) else {
            panic!("expected CONNACK");
        };
        assert_eq!(ack.reason.to_v311_connack(), code);
        assert!(ack.session_present);
    }
    let expected = DecodeError::InvalidReasonCode {
        packet: "CONNACK",
        code: 6,
    };
    assert_rejected(&packet(0x20, &[0, 6]), V311, expected, MALFORMED);
}

#[test]
fn connack_acknowledge_flags_bits_7_to_1_are_reserved() {
    let expected = DecodeError::ConnAckReservedFlags { flags: 0x02 };
    assert_rejected(&packet(0x20, &[0x02, 0]), V311, expected.clone(), MALFORMED);
    assert_rejected(&packet(0x20, &[0x02, 0, 0]), V5, expected, MALFORMED);
}

// ---- The rules `encode` checks too. ----

/// A packet `encode` must refuse, the bytes `decode` must reject, and the one rule both name.
struct SharedRule {
    packet: Packet,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    rule: RuleError,
}

fn subscribe_packet(packet_id: u16, properties: Properties) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        properties,
        filters: vec![(
            "a".to_string(),
            SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        )],
    })
}

fn publish_packet(topic: &str, dup: bool) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: topic.to_string(),
        packet_id: None,
        properties: Properties::default(),
        payload: Bytes::new(),
    })
}

fn connect_packet(
    version: ProtocolVersion,
    properties: Properties,
    password: Option<&'static [u8]>,
) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        bridge: false,
        keep_alive: 60,
        client_id: "c".to_string(),
        properties,
        will: None,
        username: None,
        password: password.map(Bytes::from_static),
    }))
}

fn shared_rules() -> Vec<SharedRule> {
    let subscribe_bytes = |packet_id: [u8; 2], properties: &[u8]| -> Vec<u8> {
        packet(
            0x82,
            &cat(&[&packet_id, &props(properties), &prefixed(b"a"), &[1]]),
        )
    };
    let content_type = cat(&[&[id::CONTENT_TYPE], &prefixed(b"a")]);
    vec![
        SharedRule {
            packet: subscribe_packet(0, Properties::default()),
            version: V5,
            bytes: subscribe_bytes([0, 0], &[]),
            rule: RuleError::ZeroPacketId {
                packet: "SUBSCRIBE",
            },
        },
        SharedRule {
            packet: Packet::Unsubscribe(Unsubscribe {
                packet_id: 1,
                properties: Properties::default(),
                filters: Vec::new(),
            }),
            version: V311,
            bytes: packet(0xA2, &[0, 1]),
            rule: RuleError::NoTopicFilters {
                packet: "UNSUBSCRIBE",
            },
        },
        SharedRule {
            packet: publish_packet("t", true),
            version: V311,
            bytes: packet(0x38, &prefixed(b"t")),
            rule: RuleError::DupWithQoS0,
        },
        SharedRule {
            packet: publish_packet("a\0b", false),
            version: V311,
            bytes: packet(0x30, &prefixed(b"a\0b")),
            rule: RuleError::NullCharacter {
                packet: "PUBLISH",
                field: "topic name",
            },
        },
        SharedRule {
            packet: connect_packet(V311, Properties::default(), Some(b"secret")),
            version: V311,
            bytes: connect(
                b"MQTT",
                4,
                0x02 | 0x40,
                &cat(&[&prefixed(b"c"), &prefixed(b"secret")]),
            ),
            rule: RuleError::PasswordWithoutUsername,
        },
        SharedRule {
            packet: subscribe_packet(
                1,
                Properties {
                    content_type: Some("a".to_string()),
                    ..Properties::default()
                },
            ),
            version: V5,
            bytes: subscribe_bytes([0, 1], &content_type),
            rule: RuleError::PropertyNotAllowed {
                packet: "SUBSCRIBE",
                property: "Content Type",
            },
        },
        SharedRule {
            packet: subscribe_packet(
                1,
                Properties {
                    subscription_identifiers: vec![1, 128],
                    ..Properties::default()
                },
            ),
            version: V5,
            bytes: subscribe_bytes(
                [0, 1],
                &[
                    id::SUBSCRIPTION_IDENTIFIER,
                    1,
                    id::SUBSCRIPTION_IDENTIFIER,
                    0x80,
                    0x01,
                ],
            ),
            rule: RuleError::DuplicateProperty {
                packet: "SUBSCRIBE",
                property: "Subscription Identifier",
            },
        },
        SharedRule {
            packet: connect_packet(
                V5,
                Properties {
                    receive_maximum: Some(0),
                    ..Properties::default()
                },
                None,
            ),
            version: V5,
            bytes: connect_v5(&[id::RECEIVE_MAXIMUM, 0, 0]),
            rule: RuleError::InvalidPropertyValue {
                packet: "CONNECT",
                property: "Receive Maximum",
                value: 0,
            },
        },
        SharedRule {
            packet: connect_packet(
                V5,
                Properties {
                    authentication_data: Some(Bytes::from_static(b"x")),
                    ..Properties::default()
                },
                None,
            ),
            version: V5,
            bytes: connect_v5(&cat(&[&[id::AUTHENTICATION_DATA], &prefixed(b"x")])),
            rule: RuleError::AuthDataWithoutMethod { packet: "CONNECT" },
        },
    ]
}

/// Whatever `encode` writes, `decode` accepts: a packet breaking a rule `decode` enforces is
/// refused by `encode` with the same `RuleError`, and nothing is written.
#[test]
fn encode_refuses_what_decode_rejects_with_the_same_rule_error() {
    for SharedRule {
        packet,
        version,
        bytes,
        rule,
    } in shared_rules()
    {
        let reason = rule.reason_code();
        assert_rejected(&bytes, version, DecodeError::Rule(rule.clone()), reason);
        let mut written = BytesMut::new();
        assert_eq!(
            encode(&packet, version, &mut written),
            Err(EncodeError::Rule(rule.clone())),
            "encoding {packet:?}"
        );
        assert!(written.is_empty(), "nothing written for {rule}");
    }
}
