//! Flow control and ordering: the broker never has more unacknowledged QoS 1/2 deliveries out
//! than the client's Receive Maximum (3.1.1: the configured window); a v5 client that exceeds
//! the broker's Receive Maximum by flows it holds open itself is disconnected with 0x93, one
//! that is only ahead of the broker's commits is slowed down instead; per-topic order holds
//! over a long stream.

use cairn::codec::{
    Packet, Properties, ProtocolVersion, PubResponse, QoS, ReasonCode, SubscriptionOptions,
};

use crate::common::clients::{
    assert_broker_serves, client_id, expect_server_close, new_session, publish_qos1, resume,
    subscribe_granted, subscriber, text, BOTH,
};
use crate::common::{connect_packet, publish_packet, start_broker, start_broker_with, RawClient};
use crate::support::{acknowledge, expect_ack, send_publish, Ack};

/// [MQTT-3.3.4-9] [MQTT-4.9.0-2] [MQTT-3.3.4-10]: with a client Receive Maximum of 2 the broker
/// sends two QoS 1 messages, holds the third (still answering PINGREQ), and sends it once one
/// is acknowledged.
#[tokio::test]
async fn broker_sends_at_most_client_receive_maximum_unacknowledged() {
    let broker = start_broker().await;
    let mut connect = connect_packet(ProtocolVersion::V5, "small-window");
    connect.properties.receive_maximum = Some(2);
    let (mut sub, _) = RawClient::connect_with(broker.addr, connect).await;
    subscribe_granted(
        &mut sub,
        1,
        "window/v5",
        SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        Properties::default(),
    )
    .await;
    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V5, "window-pub").await;
    assert_window_of_two(&mut sub, &mut publisher, "window/v5").await;
}

/// 3.1.1 has no Receive Maximum: the broker's own window (`max_inflight`) bounds what it sends.
#[tokio::test]
async fn v311_deliveries_are_bounded_by_the_configured_window() {
    let broker = start_broker_with(|config| config.limits.max_inflight = 2).await;
    let version = ProtocolVersion::V311;
    let mut sub = subscriber(
        broker.addr,
        version,
        "window-311",
        "window/311",
        QoS::AtLeastOnce,
    )
    .await;
    let mut publisher = RawClient::connect(broker.addr, version, "window-311-pub").await;
    assert_window_of_two(&mut sub, &mut publisher, "window/311").await;
}

/// Publishes three QoS 1 messages; asserts the subscriber gets two, then the third only after
/// acknowledging the first.
async fn assert_window_of_two(sub: &mut RawClient, publisher: &mut RawClient, topic: &str) {
    for (n, payload) in ["w1", "w2", "w3"].into_iter().enumerate() {
        publish_qos1(publisher, topic, n as u16 + 1, payload).await;
    }
    let first = sub.expect_publish().await;
    let second = sub.expect_publish().await;
    assert_eq!((text(&first), text(&second)), ("w1".into(), "w2".into()));
    sub.expect_nothing_pending().await; // the window is full: w3 waits, PINGRESP does not
    acknowledge(sub, &first).await;
    let third = sub.expect_publish().await;
    assert_eq!(text(&third), "w3");
    assert_ne!(
        third.packet_id, second.packet_id,
        "ids of inflight messages are distinct"
    );
    acknowledge(sub, &second).await;
    acknowledge(sub, &third).await;
    sub.expect_nothing_pending().await;
}

fn qos2(topic: &str, packet_id: u16) -> Packet {
    Packet::Publish(publish_packet(
        topic,
        QoS::ExactlyOnce,
        Some(packet_id),
        b"unreleased",
    ))
}

/// Asserts the next packet is the `kind` acknowledgement of `packet_id` and accepts it.
async fn expect_accepted(client: &mut RawClient, kind: Ack, packet_id: u16) {
    let reason = expect_ack(client, kind, packet_id).await;
    assert!(
        !reason.is_error(),
        "{kind:?} {packet_id} refused with {reason:?}"
    );
}

/// Section 3.3.4 / [MQTT-3.3.4-7]: with the broker's Receive Maximum at 2, two unreleased QoS 2
/// messages (sent in one burst) are accepted, PUBREL frees a slot, and one more than the
/// maximum gets DISCONNECT 0x93 Receive Maximum exceeded. The broker then serves others.
#[tokio::test]
async fn v5_client_exceeding_receive_maximum_is_disconnected() {
    let broker = start_broker_with(|config| config.limits.max_inflight = 2).await;
    let (mut publisher, connack) =
        RawClient::connect_with(broker.addr, connect_packet(ProtocolVersion::V5, "greedy")).await;
    assert_eq!(
        connack.properties.receive_maximum,
        Some(2),
        "CONNACK announces the Receive Maximum"
    );

    publisher
        .send_all(&[qos2("greedy/t", 1), qos2("greedy/t", 2)])
        .await;
    expect_accepted(&mut publisher, Ack::Received, 1).await;
    expect_accepted(&mut publisher, Ack::Received, 2).await;
    publisher
        .send(&Packet::PubRel(PubResponse::success(1)))
        .await;
    expect_accepted(&mut publisher, Ack::Completed, 1).await; // PUBCOMP: one slot free again
    send_publish(
        &mut publisher,
        publish_packet("greedy/t", QoS::ExactlyOnce, Some(3), b"fits"),
    )
    .await;
    expect_accepted(&mut publisher, Ack::Received, 3).await;

    send_publish(
        &mut publisher,
        publish_packet("greedy/t", QoS::ExactlyOnce, Some(4), b"too many"),
    )
    .await;
    expect_server_close(&mut publisher, ReasonCode::ReceiveMaximumExceeded).await;
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

/// [MQTT-3.3.4-7] with the broker's Receive Maximum at 2: three QoS 2 messages of a clean
/// session sent in one write are read together, and the third exceeds the maximum although the
/// PUBRECs of the first two are still queued: they wait for no commit (nothing of a clean
/// session is stored), so the excess is the client's own doing. DISCONNECT 0x93 follows the
/// two PUBRECs. (Counting those PUBRECs as held back by the store took the third in silently,
/// and Paho's `test_flow_control2`, 33 messages against 32, waited for its DISCONNECT.)
#[tokio::test]
async fn a_burst_over_the_receive_maximum_of_a_clean_session_is_disconnected() {
    let broker = start_broker_with(|config| config.limits.max_inflight = 2).await;
    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V5, "burst").await;
    // Small enough for one read of an idle connection (64 bytes).
    let burst: Vec<Packet> = (1..=3)
        .map(|packet_id| {
            Packet::Publish(publish_packet("b", QoS::ExactlyOnce, Some(packet_id), b"x"))
        })
        .collect();
    publisher.send_all(&burst).await;
    expect_accepted(&mut publisher, Ack::Received, 1).await;
    expect_accepted(&mut publisher, Ack::Received, 2).await;
    expect_server_close(&mut publisher, ReasonCode::ReceiveMaximumExceeded).await;
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

/// A v5 publisher that sends without waiting for its acks while they wait for the store's
/// commit (here: 64 QoS 1 messages in one write, Receive Maximum 4, a persistent subscriber
/// offline so every message is stored) is not thrown out: the broker stops reading until its
/// acks leave, every PUBACK comes in order and is a success, and the subscriber gets every
/// message once, in order [MQTT-4.6.0-6]. (Disconnecting it made the client resend
/// unacknowledged messages after messages published later: repeats out of order.)
#[tokio::test]
async fn publisher_ahead_of_its_commits_is_slowed_not_disconnected() {
    let broker = start_broker_with(|config| {
        config.limits.max_inflight = 4;
        config.store.commit_window_ms = 200;
    })
    .await;
    let version = ProtocolVersion::V5;
    let mut sub = new_session(broker.addr, version, "ahead-sub").await;
    subscribe_granted(
        &mut sub,
        1,
        "ahead/t",
        SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        Properties::default(),
    )
    .await;
    sub.go_offline().await;
    let mut publisher = RawClient::connect(broker.addr, version, "ahead-pub").await;
    let burst: Vec<Packet> = (1..=64u16)
        .map(|n| {
            Packet::Publish(publish_packet(
                "ahead/t",
                QoS::AtLeastOnce,
                Some(n),
                n.to_string().as_bytes(),
            ))
        })
        .collect();
    publisher.send_all(&burst).await;
    for n in 1..=64u16 {
        match publisher.recv().await {
            Packet::PubAck(ack) => assert_eq!(
                (ack.packet_id, ack.reason),
                (n, ReasonCode::Success),
                "PUBACKs in order [MQTT-4.6.0-2], each a success"
            ),
            other => panic!("expected PUBACK {n}, got {other:?}"),
        }
    }
    publisher.expect_nothing_pending().await;

    let mut sub = resume(broker.addr, version, "ahead-sub").await;
    for n in 1..=64u16 {
        let publish = sub.expect_publish().await;
        assert_eq!(
            text(&publish),
            n.to_string(),
            "delivery {n} in publish order"
        );
        acknowledge(&mut sub, &publish).await;
    }
    sub.expect_nothing_pending().await;
}

/// The Receive Maximum counts QoS 1 and QoS 2 together [MQTT-3.3.4-7]: a QoS 1 PUBLISH on top of
/// two unreleased QoS 2 ones exceeds a maximum of 2.
#[tokio::test]
async fn receive_maximum_counts_qos1_and_qos2_together() {
    let broker = start_broker_with(|config| config.limits.max_inflight = 2).await;
    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V5, "mixed").await;
    publisher
        .send_all(&[qos2("mixed/t", 1), qos2("mixed/t", 2)])
        .await;
    expect_accepted(&mut publisher, Ack::Received, 1).await;
    expect_accepted(&mut publisher, Ack::Received, 2).await;
    send_publish(
        &mut publisher,
        publish_packet("mixed/t", QoS::AtLeastOnce, Some(3), b"one more"),
    )
    .await;
    expect_server_close(&mut publisher, ReasonCode::ReceiveMaximumExceeded).await;
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

/// A 3.1.1 client is never told a Receive Maximum, so it is not held to one: more unreleased
/// QoS 2 messages than `max_inflight` are all acknowledged and the connection stays up.
#[tokio::test]
async fn v311_client_is_not_held_to_a_receive_maximum() {
    let broker = start_broker_with(|config| config.limits.max_inflight = 2).await;
    let mut publisher =
        RawClient::connect(broker.addr, ProtocolVersion::V311, "unbounded-311").await;
    let burst: Vec<Packet> = (1..=4).map(|id| qos2("burst/t", id)).collect();
    publisher.send_all(&burst).await;
    for id in 1..=4 {
        expect_accepted(&mut publisher, Ack::Received, id).await;
    }
    for id in 1..=4 {
        publisher
            .send(&Packet::PubRel(PubResponse::success(id)))
            .await;
        expect_accepted(&mut publisher, Ack::Completed, id).await;
    }
    publisher.expect_nothing_pending().await;
}

/// [MQTT-4.6.0-5] [MQTT-4.6.0-6]: 200 QoS 1 messages from one publisher to one topic arrive in
/// the order they were published, while the subscriber acknowledges as it goes.
#[tokio::test]
async fn order_is_kept_over_200_qos1_messages() {
    const COUNT: u16 = 200;
    let broker = start_broker().await;
    for version in BOTH {
        let topic = format!("ordered/{}", version.level());
        let mut sub = subscriber(
            broker.addr,
            version,
            &client_id("ordered-sub", version),
            &topic,
            QoS::AtLeastOnce,
        )
        .await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("ordered-pub", version)).await;
        let publishing_topic = topic.clone();
        let publishing = tokio::spawn(async move {
            for n in 0..COUNT {
                let reason =
                    publish_qos1(&mut publisher, &publishing_topic, n + 1, &n.to_string()).await;
                assert_eq!(reason, ReasonCode::Success);
            }
        });
        for n in 0..COUNT {
            let publish = sub.expect_publish().await;
            assert_eq!(
                text(&publish),
                n.to_string(),
                "message {n} in publish order"
            );
            assert_eq!(publish.qos, QoS::AtLeastOnce);
            acknowledge(&mut sub, &publish).await;
        }
        publishing.await.expect("the publisher finished");
        sub.expect_nothing_pending().await;
    }
}
