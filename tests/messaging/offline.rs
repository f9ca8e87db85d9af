//! Offline queues: QoS 1/2 messages routed to a persistent session while it is offline wait for
//! it and arrive in order on reconnect; QoS 0 ones are not queued. The queues' bounds and
//! spilling are tested in `queues.rs`.

use cairn::codec::{Properties, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

use crate::common::clients::{
    client_id, new_session, publish_qos1, resume, subscribe_granted, text, BOTH,
};
use crate::common::{publish_packet, start_broker, RawClient};
use crate::support::{acknowledge, publish_qos0};

/// Subscribes a new persistent session to `filter` at `qos`, then takes it offline.
pub(crate) async fn offline_subscriber(
    addr: std::net::SocketAddr,
    version: ProtocolVersion,
    id: &str,
    filter: &str,
    qos: QoS,
) {
    let mut sub = new_session(addr, version, id).await;
    subscribe_granted(
        &mut sub,
        1,
        filter,
        SubscriptionOptions::with_qos(qos),
        Properties::default(),
    )
    .await;
    sub.go_offline().await;
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
        sub.expect_nothing_pending().await;
    }
}
