//! Offline queues: QoS 1/2 messages routed to a persistent session while it is offline wait for
//! it and arrive in order on reconnect; QoS 0 ones are not queued; the queue is bounded by
//! `max_queued_messages` and what does not fit is dropped (and counted).

use std::sync::atomic::Ordering;

use cairn::codec::{Properties, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

use crate::common::{publish_packet, start_broker, start_broker_with, RawClient};
use crate::support::{
    acknowledge, assert_nothing_pending, client_id, fresh_persistent, go_offline, publish_qos0,
    publish_qos1, publishes_before_pingresp, resume, subscribe_granted, text, texts, BOTH,
};

/// Subscribes a new persistent session to `filter` at `qos`, then takes it offline.
async fn offline_subscriber(
    addr: std::net::SocketAddr,
    version: ProtocolVersion,
    id: &str,
    filter: &str,
    qos: QoS,
) {
    let mut sub = fresh_persistent(addr, version, id).await;
    subscribe_granted(
        &mut sub,
        1,
        filter,
        SubscriptionOptions::with_qos(qos),
        Properties::default(),
    )
    .await;
    go_offline(&mut sub).await;
}

/// [MQTT-3.1.2-23] (3.1.1: [MQTT-3.1.2-5]) [MQTT-4.5.0-1] [MQTT-4.6.0-5]: QoS 1 and 2 messages
/// for an offline session are kept and delivered in publish order on reconnect, as first
/// deliveries (DUP=0) at the published QoS; QoS 0 messages published meanwhile are not kept.
#[tokio::test]
async fn qos1_and_qos2_are_queued_in_order_and_qos0_is_not() {
    let broker = start_broker().await;
    for version in BOTH {
        let id = client_id("offline", version);
        let topic = format!("offline/{}", version.level());
        offline_subscriber(broker.addr, version, &id, &topic, QoS::ExactlyOnce).await;

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("offline-pub", version)).await;
        assert_eq!(
            publish_qos1(&mut publisher, &topic, 1, "q1").await,
            ReasonCode::Success,
            "an offline session is a subscriber"
        );
        publish_qos0(&mut publisher, &topic, "not kept").await;
        publisher
            .publish(publish_packet(&topic, QoS::ExactlyOnce, Some(2), b"q2"))
            .await;
        publish_qos1(&mut publisher, &topic, 3, "q3").await;

        let mut sub = resume(broker.addr, version, &id).await;
        let mut received = Vec::new();
        for (payload, qos) in [
            ("q1", QoS::AtLeastOnce),
            ("q2", QoS::ExactlyOnce),
            ("q3", QoS::AtLeastOnce),
        ] {
            let publish = sub.expect_publish().await;
            assert_eq!(
                (text(&publish), publish.qos, publish.dup),
                (payload.to_string(), qos, false)
            );
            received.push(publish);
        }
        for publish in &received {
            acknowledge(&mut sub, publish).await;
        }
        assert_nothing_pending(&mut sub).await;
    }
}

/// `max_queued_messages` bounds an offline session's queue: of five QoS 1 messages exactly the
/// first three arrive, and the broker counts the two it dropped.
#[tokio::test]
async fn offline_queue_keeps_exactly_max_queued_messages() {
    let broker = start_broker_with(|config| config.limits.max_queued_messages = 3).await;
    let mut dropped_so_far = 0;
    for version in BOTH {
        let id = client_id("bounded", version);
        let topic = format!("bounded/{}", version.level());
        offline_subscriber(broker.addr, version, &id, &topic, QoS::AtLeastOnce).await;

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("bounded-pub", version)).await;
        for n in 1..=5 {
            publish_qos1(&mut publisher, &topic, n, &format!("m{n}")).await;
        }
        dropped_so_far += 2;
        let dropped = broker
            .handle
            .broker()
            .metrics()
            .messages_dropped
            .load(Ordering::Relaxed);
        assert_eq!(dropped, dropped_so_far, "dropped messages are counted");

        let mut sub = resume(broker.addr, version, &id).await;
        let delivered = publishes_before_pingresp(&mut sub).await;
        assert_eq!(
            texts(&delivered),
            ["m1", "m2", "m3"],
            "exactly the bound arrives"
        );
        for publish in &delivered {
            acknowledge(&mut sub, publish).await;
        }
        assert_nothing_pending(&mut sub).await;
    }
}
