//! Round trips through the codec's public API: for arbitrary packets of every type and both
//! protocol versions, `decode(encode(p)) == p`, `encoded_len(p)` equals the bytes written, and a
//! stream of packets decodes the same however it is split across reads.

use bytes::{Bytes, BytesMut};
use cairn::codec::{
    decode, encode, encoded_len, property_id as id, Auth, ConnAck, Connect, Disconnect, Packet,
    Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use proptest::prelude::*;
use proptest::sample::select;

const NO_LIMIT: u32 = u32::MAX;

// ---- Properties allowed per packet (MQTT 5.0 table 2.2.2.2), written out independently. ----

const CONNECT_PROPS: &[u8] = &[
    id::SESSION_EXPIRY_INTERVAL,
    id::AUTHENTICATION_METHOD,
    id::AUTHENTICATION_DATA,
    id::REQUEST_PROBLEM_INFORMATION,
    id::REQUEST_RESPONSE_INFORMATION,
    id::RECEIVE_MAXIMUM,
    id::TOPIC_ALIAS_MAXIMUM,
    id::USER_PROPERTY,
    id::MAXIMUM_PACKET_SIZE,
];
const WILL_PROPS: &[u8] = &[
    id::PAYLOAD_FORMAT_INDICATOR,
    id::MESSAGE_EXPIRY_INTERVAL,
    id::CONTENT_TYPE,
    id::RESPONSE_TOPIC,
    id::CORRELATION_DATA,
    id::WILL_DELAY_INTERVAL,
    id::USER_PROPERTY,
];
const CONNACK_PROPS: &[u8] = &[
    id::SESSION_EXPIRY_INTERVAL,
    id::ASSIGNED_CLIENT_IDENTIFIER,
    id::SERVER_KEEP_ALIVE,
    id::AUTHENTICATION_METHOD,
    id::AUTHENTICATION_DATA,
    id::RESPONSE_INFORMATION,
    id::SERVER_REFERENCE,
    id::REASON_STRING,
    id::RECEIVE_MAXIMUM,
    id::TOPIC_ALIAS_MAXIMUM,
    id::MAXIMUM_QOS,
    id::RETAIN_AVAILABLE,
    id::USER_PROPERTY,
    id::MAXIMUM_PACKET_SIZE,
    id::WILDCARD_SUBSCRIPTION_AVAILABLE,
    id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    id::SHARED_SUBSCRIPTION_AVAILABLE,
];
const PUBLISH_PROPS: &[u8] = &[
    id::PAYLOAD_FORMAT_INDICATOR,
    id::MESSAGE_EXPIRY_INTERVAL,
    id::CONTENT_TYPE,
    id::RESPONSE_TOPIC,
    id::CORRELATION_DATA,
    id::SUBSCRIPTION_IDENTIFIER,
    id::TOPIC_ALIAS,
    id::USER_PROPERTY,
];
const ACK_PROPS: &[u8] = &[id::REASON_STRING, id::USER_PROPERTY];
const SUBSCRIBE_PROPS: &[u8] = &[id::SUBSCRIPTION_IDENTIFIER, id::USER_PROPERTY];
const UNSUBSCRIBE_PROPS: &[u8] = &[id::USER_PROPERTY];
const DISCONNECT_PROPS: &[u8] = &[
    id::SESSION_EXPIRY_INTERVAL,
    id::SERVER_REFERENCE,
    id::REASON_STRING,
    id::USER_PROPERTY,
];
const AUTH_PROPS: &[u8] = &[
    id::AUTHENTICATION_METHOD,
    id::AUTHENTICATION_DATA,
    id::REASON_STRING,
    id::USER_PROPERTY,
];

// ---- Reason codes allowed per packet (MQTT 5.0). ----

const CONNACK_REASONS: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_REASONS: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_REASONS: &[u8] = &[0x00, 0x92];
const SUBACK_REASONS: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_REASONS: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_REASONS: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_REASONS: &[u8] = &[0x00, 0x18, 0x19];

// ---- Strategies. ----

fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,12}"
}

fn binary() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn reason(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    select(codes).prop_map(|code| ReasonCode::from_u8(code).unwrap_or(ReasonCode::Success))
}

/// Up to five properties drawn from `allowed`, with values the specification permits.
fn properties(allowed: &'static [u8]) -> impl Strategy<Value = Properties> {
    let entry = (select(allowed), any::<u32>(), text(), text(), binary());
    prop::collection::vec(entry, 0..5).prop_map(|entries| {
        let mut properties = Properties::default();
        for (id, number, first, second, bytes) in entries {
            set_property(&mut properties, id, number, first, second, bytes);
        }
        properties
    })
}

fn set_property(p: &mut Properties, id: u8, number: u32, a: String, b: String, bytes: Bytes) {
    let flag = (number % 2) as u8;
    let two_byte = number as u16;
    match id {
        id::PAYLOAD_FORMAT_INDICATOR => p.payload_format_indicator = Some(flag),
        id::MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(number),
        id::CONTENT_TYPE => p.content_type = Some(a),
        id::RESPONSE_TOPIC => p.response_topic = Some(a),
        id::CORRELATION_DATA => p.correlation_data = Some(bytes),
        id::SUBSCRIPTION_IDENTIFIER => {
            p.subscription_identifiers = vec![number % 268_435_455 + 1];
        }
        id::SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(number),
        id::ASSIGNED_CLIENT_IDENTIFIER => p.assigned_client_identifier = Some(a),
        id::SERVER_KEEP_ALIVE => p.server_keep_alive = Some(two_byte),
        id::AUTHENTICATION_METHOD => p.authentication_method = Some(a),
        id::AUTHENTICATION_DATA => {
            p.authentication_data = Some(bytes);
            p.authentication_method.get_or_insert(a);
        }
        id::REQUEST_PROBLEM_INFORMATION => p.request_problem_information = Some(flag),
        id::WILL_DELAY_INTERVAL => p.will_delay_interval = Some(number),
        id::REQUEST_RESPONSE_INFORMATION => p.request_response_information = Some(flag),
        id::RESPONSE_INFORMATION => p.response_information = Some(a),
        id::SERVER_REFERENCE => p.server_reference = Some(a),
        id::REASON_STRING => p.reason_string = Some(a),
        id::RECEIVE_MAXIMUM => p.receive_maximum = Some(two_byte.max(1)),
        id::TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(two_byte),
        id::TOPIC_ALIAS => p.topic_alias = Some(two_byte),
        id::MAXIMUM_QOS => p.maximum_qos = Some(flag),
        id::RETAIN_AVAILABLE => p.retain_available = Some(flag),
        id::USER_PROPERTY => p.user_properties.push((a, b)),
        id::MAXIMUM_PACKET_SIZE => p.maximum_packet_size = Some(number.max(1)),
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => p.wildcard_subscription_available = Some(flag),
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => p.subscription_identifier_available = Some(flag),
        id::SHARED_SUBSCRIPTION_AVAILABLE => p.shared_subscription_available = Some(flag),
        other => panic!("test strategy has no value for property {other:#04x}"),
    }
}

/// PUBLISH may repeat Subscription Identifier; add a few more to the drawn properties.
fn publish_properties() -> impl Strategy<Value = Properties> {
    (
        properties(PUBLISH_PROPS),
        prop::collection::vec(1..=268_435_455u32, 0..3),
    )
        .prop_map(|(mut properties, extra)| {
            properties.subscription_identifiers.extend(extra);
            properties
        })
}

/// Properties in 5.0; the empty set 3.1.1 carries.
fn props_for(version: ProtocolVersion, allowed: &'static [u8]) -> BoxedStrategy<Properties> {
    match version {
        ProtocolVersion::V5 => properties(allowed).boxed(),
        ProtocolVersion::V311 => Just(Properties::default()).boxed(),
    }
}

fn reason_for(version: ProtocolVersion, codes: &'static [u8]) -> BoxedStrategy<ReasonCode> {
    match version {
        ProtocolVersion::V5 => reason(codes).boxed(),
        ProtocolVersion::V311 => Just(ReasonCode::Success).boxed(),
    }
}

fn will(version: ProtocolVersion) -> impl Strategy<Value = Will> {
    (
        text(),
        binary(),
        qos(),
        any::<bool>(),
        props_for(version, WILL_PROPS),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        (
            any::<bool>(),
            any::<u16>(),
            text(),
            props_for(version, CONNECT_PROPS),
        ),
        (
            prop::option::of(will(version)),
            prop::option::of(text()),
            prop::option::of(binary()),
            any::<bool>(),
        ),
    )
        .prop_map(
            move |((clean_start, keep_alive, client_id, properties), rest)| {
                let (will, username, password, bridge) = rest;
                // Mosquitto's bridge bit (protocol level 0x84) exists in 3.1.1 only.
                let bridge = bridge && version == ProtocolVersion::V311;
                // [MQTT-3.1.2-22]: 3.1.1 has no password without a user name.
                let password = match version {
                    ProtocolVersion::V311 if username.is_none() => None,
                    _ => password,
                };
                Packet::Connect(Box::new(Connect {
                    protocol: version,
                    clean_start,
                    bridge,
                    keep_alive,
                    client_id,
                    properties,
                    will,
                    username,
                    password,
                }))
            },
        )
}

const V311_CONNACK_REASONS: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::UnsupportedProtocolVersion,
    ReasonCode::ClientIdentifierNotValid,
    ReasonCode::ServerUnavailable,
    ReasonCode::BadUserNameOrPassword,
    ReasonCode::NotAuthorized,
];

fn conn_ack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason = match version {
        ProtocolVersion::V5 => reason(CONNACK_REASONS).boxed(),
        ProtocolVersion::V311 => select(V311_CONNACK_REASONS).boxed(),
    };
    (any::<bool>(), reason, props_for(version, CONNACK_PROPS)).prop_map(
        |(session_present, reason, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                reason,
                properties,
            })
        },
    )
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let properties = match version {
        ProtocolVersion::V5 => publish_properties().boxed(),
        ProtocolVersion::V311 => Just(Properties::default()).boxed(),
    };
    (
        (qos(), any::<bool>(), any::<bool>(), packet_id()),
        text(),
        properties,
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|((qos, dup, retain, id), topic, properties, payload)| {
            let at_most_once = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic,
                packet_id: (!at_most_once).then_some(id),
                properties,
                payload: Bytes::from(payload),
            })
        })
}

fn pub_response(
    version: ProtocolVersion,
    reasons: &'static [u8],
) -> impl Strategy<Value = PubResponse> {
    (
        packet_id(),
        reason_for(version, reasons),
        props_for(version, ACK_PROPS),
    )
        .prop_map(|(packet_id, reason, properties)| PubResponse {
            packet_id,
            reason,
            properties,
        })
}

fn subscription_options(version: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    match version {
        ProtocolVersion::V311 => qos().prop_map(SubscriptionOptions::with_qos).boxed(),
        ProtocolVersion::V5 => (qos(), any::<bool>(), any::<bool>(), 0..=2u8)
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                },
            )
            .boxed(),
    }
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let filters = prop::collection::vec((text(), subscription_options(version)), 1..4);
    (packet_id(), props_for(version, SUBSCRIBE_PROPS), filters).prop_map(
        |(packet_id, properties, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        },
    )
}

const V311_SUBACK_REASONS: &[ReasonCode] = &[
    ReasonCode::Success,
    ReasonCode::GrantedQoS1,
    ReasonCode::GrantedQoS2,
    ReasonCode::UnspecifiedError,
];

fn sub_ack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason = match version {
        ProtocolVersion::V5 => reason(SUBACK_REASONS).boxed(),
        ProtocolVersion::V311 => select(V311_SUBACK_REASONS).boxed(),
    };
    (
        packet_id(),
        props_for(version, ACK_PROPS),
        prop::collection::vec(reason, 0..5),
    )
        .prop_map(|(packet_id, properties, reasons)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reasons,
            })
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        props_for(version, UNSUBSCRIBE_PROPS),
        prop::collection::vec(text(), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn unsub_ack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reasons = match version {
        ProtocolVersion::V5 => prop::collection::vec(reason(UNSUBACK_REASONS), 0..5).boxed(),
        ProtocolVersion::V311 => Just(Vec::new()).boxed(),
    };
    (packet_id(), props_for(version, ACK_PROPS), reasons).prop_map(
        |(packet_id, properties, reasons)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reasons,
            })
        },
    )
}

fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        reason_for(version, DISCONNECT_REASONS),
        props_for(version, DISCONNECT_PROPS),
    )
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
}

fn auth() -> impl Strategy<Value = Packet> {
    (reason(AUTH_REASONS), properties(AUTH_PROPS))
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any packet of `version`, every type equally likely (AUTH only in 5.0).
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        conn_ack(version),
        publish(version),
        pub_response(version, PUBACK_REASONS).prop_map(Packet::PubAck),
        pub_response(version, PUBACK_REASONS).prop_map(Packet::PubRec),
        pub_response(version, PUBREL_REASONS).prop_map(Packet::PubRel),
        pub_response(version, PUBREL_REASONS).prop_map(Packet::PubComp),
        subscribe(version),
        sub_ack(version),
        unsubscribe(version),
        unsub_ack(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    match version {
        ProtocolVersion::V311 => common.boxed(),
        ProtocolVersion::V5 => prop_oneof![14 => common, 1 => auth()].boxed(),
    }
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(vec![ProtocolVersion::V311, ProtocolVersion::V5])
}

fn any_version_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|version| (Just(version), packet(version)))
}

fn encoded(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut bytes = BytesMut::new();
    encode(packet, version, &mut bytes).expect("generated packets are encodable");
    bytes
}

// ---- Properties. ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_decode_gives_the_packet_back((version, packet) in any_version_packet()) {
        let mut bytes = encoded(&packet, version);
        prop_assert_eq!(encoded_len(&packet, version), bytes.len());
        let decoded = decode(&mut bytes, version, NO_LIMIT);
        prop_assert_eq!(decoded, Ok(Some(packet)));
        prop_assert!(bytes.is_empty(), "decode left {} bytes", bytes.len());
    }

    #[test]
    fn every_strict_prefix_asks_for_more_bytes((version, packet) in any_version_packet()) {
        let bytes = encoded(&packet, version);
        for len in 0..bytes.len() {
            let mut prefix = BytesMut::from(&bytes[..len]);
            prop_assert_eq!(decode(&mut prefix, version, NO_LIMIT), Ok(None));
            prop_assert_eq!(prefix.len(), len, "Ok(None) must leave the buffer untouched");
        }
    }

    #[test]
    fn a_stream_split_anywhere_decodes_to_the_same_packets(
        (version, packets) in version().prop_flat_map(|version| {
            (Just(version), prop::collection::vec(packet(version), 1..8))
        }),
        chunk_sizes in prop::collection::vec(1usize..48, 1..32),
    ) {
        let mut stream = BytesMut::new();
        for packet in &packets {
            encode(packet, version, &mut stream).expect("generated packets are encodable");
        }
        let mut buffer = BytesMut::new();
        let mut decoded = Vec::new();
        let mut chunks = chunk_sizes.iter().cycle();
        while !stream.is_empty() {
            let size = chunks.next().copied().unwrap_or(1).min(stream.len());
            buffer.extend_from_slice(&stream.split_to(size));
            while let Some(packet) = decode(&mut buffer, version, NO_LIMIT)
                .map_err(|error| TestCaseError::fail(error.to_string()))?
            {
                decoded.push(packet);
            }
        }
        prop_assert_eq!(decoded, packets);
        prop_assert!(buffer.is_empty());
    }
}

// ---- Fixed expectations about the encoder's choices. ----

fn bytes_of(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    encoded(packet, version).to_vec()
}

#[test]
fn successful_acknowledgements_use_the_two_byte_short_form() {
    let ack = Packet::PubAck(PubResponse::success(7));
    assert_eq!(
        bytes_of(&ack, ProtocolVersion::V5),
        [0x40, 0x02, 0x00, 0x07]
    );
    assert_eq!(
        bytes_of(&ack, ProtocolVersion::V311),
        [0x40, 0x02, 0x00, 0x07]
    );
    let rel = Packet::PubRel(PubResponse::success(0x0102));
    assert_eq!(
        bytes_of(&rel, ProtocolVersion::V5),
        [0x62, 0x02, 0x01, 0x02]
    );
}

#[test]
fn failed_acknowledgement_carries_reason_and_property_length() {
    let ack = Packet::PubAck(PubResponse {
        packet_id: 7,
        reason: ReasonCode::NotAuthorized,
        properties: Properties::default(),
    });
    assert_eq!(
        bytes_of(&ack, ProtocolVersion::V5),
        [0x40, 0x04, 0x00, 0x07, 0x87, 0x00]
    );
}

#[test]
fn normal_disconnect_and_success_auth_use_remaining_length_zero() {
    let normal = Packet::Disconnect(Disconnect::new(ReasonCode::Success));
    assert_eq!(bytes_of(&normal, ProtocolVersion::V5), [0xE0, 0x00]);
    assert_eq!(bytes_of(&normal, ProtocolVersion::V311), [0xE0, 0x00]);
    let auth = Packet::Auth(Auth {
        reason: ReasonCode::Success,
        properties: Properties::default(),
    });
    assert_eq!(bytes_of(&auth, ProtocolVersion::V5), [0xF0, 0x00]);
}

#[test]
fn v311_leaves_out_properties_and_v5_subscription_options() {
    let mut properties = Properties::default();
    properties.user_properties.push(("k".into(), "v".into()));
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties,
        filters: vec![(
            "a".into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
            },
        )],
    });
    assert_eq!(
        bytes_of(&subscribe, ProtocolVersion::V311),
        [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01]
    );
}

#[test]
fn v311_suback_writes_any_failure_as_0x80() {
    let ack = Packet::SubAck(SubAck {
        packet_id: 1,
        properties: Properties::default(),
        reasons: vec![ReasonCode::GrantedQoS2, ReasonCode::NotAuthorized],
    });
    assert_eq!(
        bytes_of(&ack, ProtocolVersion::V311),
        [0x90, 0x04, 0x00, 0x01, 0x02, 0x80]
    );
}

#[test]
fn v311_connack_writes_the_nearest_return_code() {
    let ack = Packet::ConnAck(ConnAck {
        session_present: false,
        reason: ReasonCode::Banned,
        properties: Properties::default(),
    });
    assert_eq!(
        bytes_of(&ack, ProtocolVersion::V311),
        [0x20, 0x02, 0x00, 0x05]
    );
}

#[test]
fn connect_is_written_for_its_own_protocol_level() {
    let connect = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        bridge: false,
        keep_alive: 60,
        client_id: "c".into(),
        properties: Properties::default(),
        will: None,
        username: None,
        password: None,
    }));
    let expected = [
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x01, b'c',
    ];
    assert_eq!(bytes_of(&connect, ProtocolVersion::V5), expected);
    let mut bytes = BytesMut::from(&expected[..]);
    assert_eq!(
        decode(&mut bytes, ProtocolVersion::V5, NO_LIMIT),
        Ok(Some(connect))
    );
}

#[test]
fn publish_payload_is_shared_with_the_read_buffer() {
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "t".into(),
        packet_id: Some(1),
        properties: Properties::default(),
        payload: Bytes::from(vec![7u8; 256]),
    });
    let mut bytes = encoded(&publish, ProtocolVersion::V311);
    let start = bytes.as_ptr() as usize;
    let end = start + bytes.len();
    let Ok(Some(Packet::Publish(decoded))) = decode(&mut bytes, ProtocolVersion::V311, NO_LIMIT)
    else {
        panic!("expected a PUBLISH");
    };
    let payload_at = decoded.payload.as_ptr() as usize;
    assert!((start..end).contains(&payload_at), "payload was copied");
}

/// The head of a PUBLISH (for skipping one too large to take) reads from any prefix that holds
/// the fixed header, topic and packet identifier, and not before; its size is the whole
/// packet's; a packet of another type is named, not read.
#[test]
fn publish_head_reads_from_a_prefix_without_the_payload() {
    use cairn::codec::{decode_publish_head, Head, PublishHead};
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for (qos, packet_id) in [(QoS::AtMostOnce, None), (QoS::ExactlyOnce, Some(9))] {
            let publish = Publish {
                dup: false,
                qos,
                retain: false,
                topic: "big/one".to_string(),
                packet_id,
                properties: Properties::default(),
                payload: Bytes::from(vec![7u8; 1000]),
            };
            let mut wire = BytesMut::new();
            encode(&Packet::Publish(publish), version, &mut wire).unwrap();
            let head_len = 3 + 2 + "big/one".len() + if packet_id.is_some() { 2 } else { 0 };
            for len in 0..head_len {
                assert_eq!(
                    decode_publish_head(&wire[..len], version),
                    Ok(Head::Incomplete),
                    "{len} bytes"
                );
            }
            let expected = Head::Publish(PublishHead {
                qos,
                topic: "big/one".to_string(),
                packet_id,
                size: wire.len(),
            });
            for len in [head_len, wire.len()] {
                assert_eq!(
                    decode_publish_head(&wire[..len], version),
                    Ok(expected.clone())
                );
            }
        }
    }
    let mut wire = BytesMut::new();
    encode(&Packet::PingResp, ProtocolVersion::V311, &mut wire).unwrap();
    assert_eq!(
        decode_publish_head(&wire, ProtocolVersion::V311),
        Ok(Head::Other("PINGRESP"))
    );
    // A topic length beyond the packet's Remaining Length is malformed.
    let broken = [0x30, 0x03, 0x00, 0x05, b'a'];
    assert!(decode_publish_head(&broken, ProtocolVersion::V311).is_err());
}
