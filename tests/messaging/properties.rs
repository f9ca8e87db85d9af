//! MQTT 5 message properties on the way through the broker: the client's Maximum Packet Size
//! caps what it is sent, Message Expiry drops stale queued messages and counts down on the
//! forwarded ones, and the application properties arrive unchanged.

use std::time::Duration;

use bytes::Bytes;
use cairn::codec::{encoded_len, Packet, Properties, ProtocolVersion, QoS, SubscriptionOptions};

use crate::common::clients::{new_session, resume, subscribe_granted, subscriber, text};
use crate::common::{connect_packet, start_broker, RawClient};
use crate::support::{acknowledge, let_time_pass, payload_of, publish_with, texts};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// [MQTT-3.1.2-24] [MQTT-3.1.2-25]: a message that would make a PUBLISH larger than the
/// client's Maximum Packet Size is not sent (and treated as delivered: it does not block the
/// QoS 1 flow); a later small one is.
#[tokio::test]
async fn messages_above_the_client_maximum_packet_size_are_not_sent() {
    let broker = start_broker().await;
    let mut connect = connect_packet(V5, "small-packets");
    connect.properties.maximum_packet_size = Some(64);
    connect.properties.receive_maximum = Some(1);
    let (mut sub, _) = RawClient::connect_with(broker.addr, connect).await;
    subscribe_granted(
        &mut sub,
        1,
        "sized/t",
        SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        Properties::default(),
    )
    .await;
    let mut publisher = RawClient::connect(broker.addr, V5, "big-sender").await;
    publisher
        .publish(publish_with(
            "sized/t",
            QoS::AtLeastOnce,
            Some(1),
            &payload_of(200),
            |_| {},
        ))
        .await;
    publisher
        .publish(publish_with(
            "sized/t",
            QoS::AtLeastOnce,
            Some(2),
            b"small",
            |_| {},
        ))
        .await;

    let publish = sub.expect_publish().await;
    assert_eq!(text(&publish), "small", "the oversized message was skipped");
    acknowledge(&mut sub, &publish).await;
    sub.expect_nothing_pending().await;
}

/// [MQTT-3.1.2-24] A PUBLISH is sized as it is sent, Topic Alias included: a message that fits
/// the client's Maximum Packet Size (100 bytes here) only without a new alias goes without one
/// (it went with one, 103 bytes); one that fits only with the alias the client already knows
/// goes with it (it was dropped).
#[tokio::test]
async fn a_topic_alias_is_counted_in_the_maximum_packet_size() {
    const LIMIT: usize = 100;
    let broker = start_broker().await;
    let mut connect = connect_packet(V5, "alias-sized");
    connect.properties.maximum_packet_size = Some(LIMIT as u32);
    connect.properties.topic_alias_maximum = Some(5);
    let (mut sub, _) = RawClient::connect_with(broker.addr, connect).await;
    let options = SubscriptionOptions::with_qos(QoS::AtMostOnce);
    subscribe_granted(&mut sub, 1, "mb/#", options, Properties::default()).await;
    let mut publisher = RawClient::connect(broker.addr, V5, "alias-sender").await;
    // QoS 0 to "mb/x": 1 + 1 + (2 + 4) + 1 bytes and the payload, 3 more with an alias.
    let sizes = [(91, "mb/x", None), (10, "mb/x", Some(1)), (92, "", Some(1))];
    for (payload, topic, alias) in sizes {
        let message = publish_with("mb/x", QoS::AtMostOnce, None, &payload_of(payload), |_| {});
        publisher.publish(message).await;
        let got = sub.expect_publish().await;
        assert_eq!(
            (got.topic.as_str(), got.properties.topic_alias),
            (topic, alias),
            "payload of {payload} bytes"
        );
        let size = encoded_len(&Packet::Publish(got), V5);
        assert!(size <= LIMIT, "{size} bytes sent, the limit is {LIMIT}");
    }
}

/// [MQTT-3.3.2-5] [MQTT-3.3.2-6]: while a persistent session is offline, a queued message whose
/// Message Expiry Interval passes is dropped; one still alive is delivered with the interval
/// reduced by the time it waited; one without an interval is delivered without one.
#[tokio::test]
async fn message_expiry_drops_stale_queued_messages_and_counts_down() {
    let broker = start_broker().await;
    let mut sub = new_session(broker.addr, V5, "expiring").await;
    subscribe_granted(
        &mut sub,
        1,
        "expiry/t",
        SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        Properties::default(),
    )
    .await;
    sub.go_offline().await;

    let mut publisher = RawClient::connect(broker.addr, V5, "expiry-pub").await;
    let expiring = |interval| {
        move |properties: &mut Properties| properties.message_expiry_interval = Some(interval)
    };
    publisher
        .publish(publish_with(
            "expiry/t",
            QoS::AtLeastOnce,
            Some(1),
            b"short-lived",
            expiring(1),
        ))
        .await;
    publisher
        .publish(publish_with(
            "expiry/t",
            QoS::AtLeastOnce,
            Some(2),
            b"long-lived",
            expiring(60),
        ))
        .await;
    publisher
        .publish(publish_with(
            "expiry/t",
            QoS::AtLeastOnce,
            Some(3),
            b"immortal",
            |_| {},
        ))
        .await;
    let_time_pass(Duration::from_millis(2100)).await;

    let mut sub = resume(broker.addr, V5, "expiring").await;
    let delivered = sub.publishes_before_pingresp().await;
    assert_eq!(texts(&delivered), ["long-lived", "immortal"]);
    let remaining = delivered[0].properties.message_expiry_interval;
    assert!(
        matches!(remaining, Some(1..=58)),
        "60 s minus the 2.1 s it waited, got {remaining:?}"
    );
    assert_eq!(delivered[1].properties.message_expiry_interval, None);
    for publish in &delivered {
        acknowledge(&mut sub, publish).await;
    }
}

/// [MQTT-3.3.2-6]: a message forwarded at once carries its interval, less any time waited.
#[tokio::test]
async fn forwarded_message_carries_its_expiry_interval() {
    let broker = start_broker().await;
    let mut sub = subscriber(
        broker.addr,
        V5,
        "expiry-live",
        "expiry/live",
        QoS::AtMostOnce,
    )
    .await;
    let mut publisher = RawClient::connect(broker.addr, V5, "expiry-live-pub").await;
    publisher
        .publish(publish_with(
            "expiry/live",
            QoS::AtMostOnce,
            None,
            b"now",
            |properties| {
                properties.message_expiry_interval = Some(30);
            },
        ))
        .await;
    let publish = sub.expect_publish().await;
    let remaining = publish.properties.message_expiry_interval;
    assert!(matches!(remaining, Some(1..=30)), "got {remaining:?}");
}

/// [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]:
/// Payload Format Indicator, Response Topic, Correlation Data, User Properties (in order,
/// repeated names included) and Content Type arrive unchanged — live and from the retained store.
#[tokio::test]
async fn application_properties_arrive_unchanged() {
    let broker = start_broker().await;
    let mut live = subscriber(broker.addr, V5, "props-live", "props/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(broker.addr, V5, "props-pub").await;
    let sent = Properties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json; charset=utf-8".into()),
        response_topic: Some("props/replies/42".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2, 0xff])),
        user_properties: vec![
            ("zone".into(), "north".into()),
            ("unit".into(), "°C".into()),
            ("zone".into(), "south".into()),
        ],
        ..Properties::default()
    };
    let mut publish = publish_with(
        "props/t",
        QoS::AtLeastOnce,
        Some(1),
        br#"{"t":21.5}"#,
        |_| {},
    );
    publish.properties = sent.clone();
    publish.retain = true;
    publisher.publish(publish).await;

    let got = live.expect_publish().await;
    assert_eq!(got.properties, sent, "live delivery");
    acknowledge(&mut live, &got).await;

    let mut late = subscriber(broker.addr, V5, "props-late", "props/t", QoS::AtLeastOnce).await;
    let from_store = late.publishes_before_pingresp().await;
    assert_eq!(from_store.len(), 1);
    assert_eq!(from_store[0].properties, sent, "retained delivery");
}
