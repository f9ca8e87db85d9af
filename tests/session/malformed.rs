//! Malformed input and protocol errors on a connected session: each gets the exact answer
//! (v5: DISCONNECT with the reason code, then the close; 3.1.1: the close), and the broker
//! keeps serving other clients afterwards.

use std::net::SocketAddr;

use bytes::BytesMut;
use cairn::codec::{
    ConnAck, Packet, ProtocolVersion, PubResponse, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};

use crate::common::clients::{
    assert_broker_serves, client_id, connect_ok, expect_disconnect, will, with_will, BOTH,
};
use crate::common::{connect_packet, publish_packet, start_broker, start_broker_with, RawClient};
use crate::support::{encoded, expect_message, observer, PUBLISH_TOPIC, VARIABLE_HEADER};

/// Connects a client of `version`, sends `bytes` and asserts the broker's answer: DISCONNECT
/// `reason` then the close for v5, a silent close for 3.1.1.
async fn assert_rejected(
    addr: SocketAddr,
    version: ProtocolVersion,
    case: &str,
    bytes: &[u8],
    reason: ReasonCode,
) {
    let mut client = RawClient::connect(addr, version, &client_id("offender", version)).await;
    client.send_bytes(bytes).await;
    match version {
        ProtocolVersion::V5 => assert_eq!(expect_disconnect(&mut client).await, reason, "{case}"),
        ProtocolVersion::V311 => {
            let seen = client.expect_closed().await;
            assert!(
                seen.is_empty(),
                "{case}: expected a silent close, got {seen:?}"
            );
        }
    }
}

/// A named way to build offending bytes for a protocol version.
type Case = (&'static str, fn(ProtocolVersion) -> BytesMut);

/// Runs every case in both versions, then checks the broker still serves a new client.
async fn assert_all_rejected(addr: SocketAddr, cases: &[Case], reason: ReasonCode) {
    for version in BOTH {
        for (case, bytes) in cases {
            assert_rejected(
                addr,
                version,
                &format!("{version:?}: {case}"),
                &bytes(version),
                reason,
            )
            .await;
        }
    }
    assert_broker_serves(addr, ProtocolVersion::V5).await;
}

/// A PUBLISH of "x" to `topic` (packet id 1 unless QoS 0), encoded for `version`.
fn publish_bytes(version: ProtocolVersion, topic: &str, qos: QoS) -> BytesMut {
    let packet_id = (qos != QoS::AtMostOnce).then_some(1);
    encoded(
        &Packet::Publish(publish_packet(topic, qos, packet_id, b"x")),
        version,
    )
}

/// A QoS 0 PUBLISH to "a/bcd" whose topic bytes from index 2 on are replaced by `patch`.
fn publish_with_topic_bytes(version: ProtocolVersion, patch: &[u8]) -> BytesMut {
    let mut bytes = publish_bytes(version, "a/bcd", QoS::AtMostOnce);
    let start = PUBLISH_TOPIC + 2;
    bytes[start..start + patch.len()].copy_from_slice(patch);
    bytes
}

/// A SUBSCRIBE to "a/b" at QoS 0 with packet id 1, encoded for `version`.
fn subscribe_bytes(version: ProtocolVersion) -> BytesMut {
    let subscribe = Subscribe {
        packet_id: 1,
        properties: Default::default(),
        filters: vec![(
            "a/b".to_string(),
            SubscriptionOptions::with_qos(QoS::AtMostOnce),
        )],
    };
    encoded(&Packet::Subscribe(subscribe), version)
}

// Remaining Length: at most four bytes (MQTT 3.1.1 §2.2.3, 5.0 §1.5.5); a length inside the
// packet running past its end. Both are Malformed Packets (v5 0x81).
#[tokio::test]
async fn bad_lengths_are_malformed() {
    let broker = start_broker().await;
    assert_all_rejected(
        broker.addr,
        &[
            ("Remaining Length of five bytes", |_| {
                BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01][..])
            }),
            ("topic length past the packet's end", |version| {
                let mut bytes = publish_bytes(version, "a/b", QoS::AtMostOnce);
                bytes[VARIABLE_HEADER + 1] = 0x40;
                bytes
            }),
        ],
        ReasonCode::MalformedPacket,
    )
    .await;
}

// [MQTT-2.2.2-1] [MQTT-2.2.2-2] (3.1.1) [MQTT-2.1.3-1] (5.0) Reserved fixed-header flags
// must have their listed values; packet type 0 is reserved. Malformed (v5 0x81).
#[tokio::test]
async fn reserved_header_bits_are_malformed() {
    let broker = start_broker().await;
    assert_all_rejected(
        broker.addr,
        &[
            ("SUBSCRIBE flags 0000", |version| {
                let mut bytes = subscribe_bytes(version);
                bytes[0] = 0x80;
                bytes
            }),
            ("PUBREL flags 0000", |version| {
                let mut bytes = encoded(&Packet::PubRel(PubResponse::success(1)), version);
                bytes[0] = 0x60;
                bytes
            }),
            ("PINGREQ flags 0001", |_| BytesMut::from(&[0xC1, 0x00][..])),
            ("packet type 0", |_| BytesMut::from(&[0x00, 0x00][..])),
        ],
        ReasonCode::MalformedPacket,
    )
    .await;
}

// [MQTT-3.3.1-4] A PUBLISH must not have both QoS bits set. Malformed (v5 0x81).
#[tokio::test]
async fn publish_with_qos_3_is_malformed() {
    let broker = start_broker().await;
    assert_all_rejected(
        broker.addr,
        &[("PUBLISH QoS 3", |version| {
            let mut bytes = publish_bytes(version, "a/b", QoS::AtLeastOnce);
            bytes[0] |= 0b0110;
            bytes
        })],
        ReasonCode::MalformedPacket,
    )
    .await;
}

// [MQTT-2.3.1-1] (3.1.1) [MQTT-2.2.1-3] (5.0) PUBLISH with QoS > 0 and SUBSCRIBE need a
// non-zero Packet Identifier. v5: 0x82 Protocol Error.
#[tokio::test]
async fn zero_packet_identifier_is_a_protocol_error() {
    let broker = start_broker().await;
    assert_all_rejected(
        broker.addr,
        &[
            ("PUBLISH QoS 1 with packet id 0", |version| {
                let mut bytes = publish_bytes(version, "a/b", QoS::AtLeastOnce);
                let packet_id = PUBLISH_TOPIC + "a/b".len();
                bytes[packet_id..packet_id + 2].copy_from_slice(&[0, 0]);
                bytes
            }),
            ("SUBSCRIBE with packet id 0", |version| {
                let mut bytes = subscribe_bytes(version);
                bytes[VARIABLE_HEADER..VARIABLE_HEADER + 2].copy_from_slice(&[0, 0]);
                bytes
            }),
        ],
        ReasonCode::ProtocolError,
    )
    .await;
}

// [MQTT-1.5.3-1] [MQTT-1.5.3-2] (3.1.1) [MQTT-1.5.4-1] [MQTT-1.5.4-2] (5.0) A topic name must
// be well-formed UTF-8 without surrogates and without U+0000. Malformed (v5 0x81).
#[tokio::test]
async fn invalid_utf8_in_topic_is_malformed() {
    let broker = start_broker().await;
    assert_all_rejected(
        broker.addr,
        &[
            ("byte 0xFF in topic", |version| {
                publish_with_topic_bytes(version, &[0xFF])
            }),
            ("surrogate U+D800 in topic", |version| {
                publish_with_topic_bytes(version, &[0xED, 0xA0, 0x80])
            }),
            ("U+0000 in topic", |version| {
                publish_with_topic_bytes(version, &[0x00])
            }),
        ],
        ReasonCode::MalformedPacket,
    )
    .await;
}

// [MQTT-3.3.2-2] A PUBLISH Topic Name must not contain wildcards [MQTT-4.7.0-1]. v5: 0x90
// Topic Name invalid.
#[tokio::test]
async fn wildcard_in_publish_topic_is_refused() {
    let broker = start_broker().await;
    assert_all_rejected(
        broker.addr,
        &[
            ("'+' in topic", |version| {
                publish_with_topic_bytes(version, b"+")
            }),
            ("'#' in topic", |version| {
                publish_with_topic_bytes(version, b"#")
            }),
        ],
        ReasonCode::TopicNameInvalid,
    )
    .await;
}

// [MQTT-3.2.2-15] (5.0) A packet larger than the Maximum Packet Size the server announced is
// refused from its fixed header alone, with DISCONNECT 0x95 Packet too large; 3.1.1 clients are
// closed.
#[tokio::test]
async fn packet_beyond_max_packet_size_is_refused() {
    let broker = start_broker_with(|config| config.limits.max_packet_size = 128).await;
    let (_client, connack) =
        connect_ok(broker.addr, connect_packet(ProtocolVersion::V5, "sizer")).await;
    assert_eq!(connack.properties.maximum_packet_size, Some(128));
    assert_all_rejected(
        broker.addr,
        &[("PUBLISH of 203 bytes", |_| {
            BytesMut::from(&[0x30, 0xC8, 0x01][..])
        })],
        ReasonCode::PacketTooLarge,
    )
    .await;
}

// A client that closes its connection in the middle of a packet sent no DISCONNECT: the
// broker treats it as a network failure, without a panic or a stuck task, and publishes the
// Will [MQTT-3.1.2-8].
#[tokio::test]
async fn truncated_packet_at_eof_is_a_lost_connection() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "truncated/#").await;
    for version in BOTH {
        let topic = format!("truncated/{}", version.level());
        let connect = with_will(
            connect_packet(version, &client_id("truncator", version)),
            will(&topic, "cut"),
        );
        let (mut client, _) = connect_ok(broker.addr, connect).await;
        let whole = publish_bytes(version, "a/long/topic/name", QoS::AtLeastOnce);
        client.send_bytes(&whole[..whole.len() / 2]).await;
        drop(client);
        expect_message(&mut watcher, &topic, "cut").await;
    }
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

// Packets only a server sends (MQTT 3.1.1 §2.2.1, 5.0 §2.1.2 direction column): a client
// sending PINGRESP or CONNACK breaks the protocol; v5 0x82 Protocol Error.
#[tokio::test]
async fn server_only_packets_from_a_client_are_a_protocol_error() {
    let broker = start_broker().await;
    assert_all_rejected(
        broker.addr,
        &[
            ("PINGRESP from a client", |version| {
                encoded(&Packet::PingResp, version)
            }),
            ("CONNACK from a client", |version| {
                let connack = ConnAck {
                    session_present: false,
                    reason: ReasonCode::Success,
                    properties: Default::default(),
                };
                encoded(&Packet::ConnAck(connack), version)
            }),
        ],
        ReasonCode::ProtocolError,
    )
    .await;
}

/// [MQTT-3.3.2-14] A Response Topic is a Topic Name: without wildcards. A PUBLISH whose
/// Response Topic has one is a protocol error (DISCONNECT 0x82) and reaches no subscriber; a
/// Will whose Response Topic has one refuses the CONNECT (CONNACK 0x82).
#[tokio::test]
async fn a_response_topic_with_a_wildcard_is_a_protocol_error() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "response-watcher", "asks/#").await;
    for response_topic in ["replies/+", "replies/#"] {
        let mut asker = RawClient::connect(broker.addr, ProtocolVersion::V5, "asker").await;
        let mut publish = publish_packet("asks/1", QoS::AtLeastOnce, Some(1), b"question");
        publish.properties.response_topic = Some(response_topic.into());
        asker.send(&Packet::Publish(publish)).await;
        assert_eq!(
            expect_disconnect(&mut asker).await,
            ReasonCode::ProtocolError,
            "{response_topic}"
        );

        let mut wish = will("asks/gone", "bye");
        wish.properties.response_topic = Some(response_topic.into());
        let connect = with_will(connect_packet(ProtocolVersion::V5, "will-asker"), wish);
        let (_refused, connack) = RawClient::connect_with(broker.addr, connect).await;
        assert_eq!(
            connack.reason,
            ReasonCode::ProtocolError,
            "{response_topic}"
        );
    }
    watcher.expect_nothing_pending().await;
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}
