//! MQTT 5 Topic Aliases both ways: a client sets an alias with a topic and then publishes with
//! an empty topic; invalid or unknown aliases end the connection; the broker assigns its own
//! aliases only within the Topic Alias Maximum the client announced.

use cairn::codec::{ProtocolVersion, Publish, QoS, ReasonCode};

use crate::common::clients::{assert_broker_serves, expect_server_close, subscriber, text};
use crate::common::{connect_packet, publish_packet, start_broker, start_broker_with, RawClient};
use crate::support::{publishes_before_marker, send_publish, texts};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A QoS 0 PUBLISH that sets or uses a Topic Alias.
fn aliased(topic: &str, alias: u16, payload: &str) -> Publish {
    let mut publish = publish_packet(topic, QoS::AtMostOnce, None, payload.as_bytes());
    publish.properties.topic_alias = Some(alias);
    publish
}

/// A v5 QoS 0 PUBLISH with a Topic Alias property, encoded by hand: the codec may rightly
/// refuse to encode alias 0, which is exactly what a misbehaving client sends.
fn raw_aliased_publish(topic: &str, alias: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(
        &u16::try_from(topic.len())
            .expect("short topic")
            .to_be_bytes(),
    );
    body.extend_from_slice(topic.as_bytes());
    body.push(3); // property length: one Topic Alias
    body.push(cairn::codec::property_id::TOPIC_ALIAS);
    body.extend_from_slice(&alias.to_be_bytes());
    body.extend_from_slice(payload);
    let mut packet = vec![0x30, u8::try_from(body.len()).expect("under 128 bytes")];
    packet.extend_from_slice(&body);
    packet
}

/// [MQTT-3.3.2-12] [MQTT-3.2.2-17]: the broker announces Topic Alias Maximum 16 (the default)
/// and accepts an alias set with a topic, then used with an empty topic, then remapped.
/// Receivers get the real topic and, having announced no Topic Alias Maximum, no alias
/// [MQTT-3.1.2-27].
#[tokio::test]
async fn inbound_topic_alias_is_set_then_used_and_remapped() {
    let broker = start_broker().await;
    let mut sub = subscriber(broker.addr, V5, "alias-sub", "alias/+", QoS::AtMostOnce).await;
    let (mut publisher, connack) =
        RawClient::connect_with(broker.addr, connect_packet(V5, "alias-pub")).await;
    assert_eq!(connack.properties.topic_alias_maximum, Some(16));

    send_publish(&mut publisher, aliased("alias/a", 3, "set")).await;
    send_publish(&mut publisher, aliased("", 3, "use")).await;
    send_publish(&mut publisher, aliased("alias/b", 3, "remap")).await;
    send_publish(&mut publisher, aliased("", 3, "use again")).await;

    let mut received = Vec::new();
    for _ in 0..4 {
        received.push(sub.expect_publish().await);
    }
    assert_eq!(texts(&received), ["set", "use", "remap", "use again"]);
    let topics: Vec<&str> = received
        .iter()
        .map(|publish| publish.topic.as_str())
        .collect();
    assert_eq!(topics, ["alias/a", "alias/a", "alias/b", "alias/b"]);
    assert!(received
        .iter()
        .all(|publish| publish.properties.topic_alias.is_none()));
}

/// [MQTT-3.3.2-8] [MQTT-3.3.2-9]: Topic Alias 0, or one above the announced maximum, gets
/// DISCONNECT 0x94 Topic Alias invalid; the broker goes on serving.
#[tokio::test]
async fn topic_alias_zero_or_above_maximum_is_invalid() {
    let broker = start_broker().await;
    for (name, alias) in [("alias-zero", 0), ("alias-too-big", 17)] {
        let mut client = RawClient::connect(broker.addr, V5, name).await;
        client
            .send_bytes(&raw_aliased_publish("t", alias, b"x"))
            .await;
        expect_server_close(&mut client, ReasonCode::TopicAliasInvalid).await;
    }
    assert_broker_serves(broker.addr, V5).await;
}

/// [MQTT-3.2.2-18]: with `topic_alias_maximum = 0` the broker announces none and any alias is
/// invalid.
#[tokio::test]
async fn topic_aliases_can_be_disabled() {
    let broker = start_broker_with(|config| config.limits.topic_alias_maximum = 0).await;
    let (mut client, connack) =
        RawClient::connect_with(broker.addr, connect_packet(V5, "no-aliases")).await;
    assert_eq!(connack.properties.topic_alias_maximum, None);
    client.send_bytes(&raw_aliased_publish("t", 1, b"x")).await;
    expect_server_close(&mut client, ReasonCode::TopicAliasInvalid).await;
}

/// Section 3.3.2.3.4 and [MQTT-3.3.2-7]: an empty topic with an alias the broker has no mapping
/// for is a Protocol Error (0x82) — including an alias set on a previous connection, since
/// mappings do not outlive their connection.
#[tokio::test]
async fn unknown_alias_with_empty_topic_is_a_protocol_error() {
    let broker = start_broker().await;
    let mut sub = subscriber(broker.addr, V5, "carry-sub", "carry/t", QoS::AtMostOnce).await;
    let mut first = RawClient::connect(broker.addr, V5, "carry").await;
    send_publish(&mut first, aliased("carry/t", 1, "mapped")).await;
    assert_eq!(text(&sub.expect_publish().await), "mapped");
    drop(first);

    let mut second = RawClient::connect(broker.addr, V5, "carry-again").await;
    send_publish(&mut second, aliased("", 1, "stale alias")).await;
    expect_server_close(&mut second, ReasonCode::ProtocolError).await;
    assert_broker_serves(broker.addr, V5).await;
}

/// [MQTT-3.3.2-11] [MQTT-3.1.2-26]: a subscriber announcing Topic Alias Maximum 2 gets alias 1
/// with the topic the first time, then an empty topic with the same alias; a second topic gets
/// alias 2; a third topic, with no alias left, goes out with its name and no alias.
#[tokio::test]
async fn broker_assigns_outbound_aliases_within_the_client_maximum() {
    let broker = start_broker().await;
    let mut connect = connect_packet(V5, "alias-receiver");
    connect.properties.topic_alias_maximum = Some(2);
    let (mut sub, _) = RawClient::connect_with(broker.addr, connect).await;
    let suback = sub.subscribe(1, "out/#", QoS::AtMostOnce).await;
    assert_eq!(suback.reasons, vec![ReasonCode::Success]);
    let mut publisher = RawClient::connect(broker.addr, V5, "alias-sender").await;
    let sends = ["out/x", "out/x", "out/y", "out/z", "out/y", "out/z"];
    for (n, topic) in sends.iter().enumerate() {
        send_publish(
            &mut publisher,
            publish_packet(topic, QoS::AtMostOnce, None, n.to_string().as_bytes()),
        )
        .await;
    }
    send_publish(
        &mut publisher,
        publish_packet("out/x", QoS::AtMostOnce, None, b"marker"),
    )
    .await;

    let received = publishes_before_marker(&mut sub, "marker").await;
    let seen: Vec<(&str, Option<u16>)> = received
        .iter()
        .map(|publish| (publish.topic.as_str(), publish.properties.topic_alias))
        .collect();
    assert_eq!(
        seen,
        [
            ("out/x", Some(1)),
            ("", Some(1)),
            ("out/y", Some(2)),
            ("out/z", None),
            ("", Some(2)),
            ("out/z", None),
        ]
    );
    assert_eq!(texts(&received), ["0", "1", "2", "3", "4", "5"]);
}
