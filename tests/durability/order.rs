//! Per-publisher order across several restarts in a row, with many publishers at once: a
//! persistent subscriber's queue, filled by pipelined QoS 1 publishers while it is offline,
//! comes back after each graceful restart with every message, each publisher's in the order it
//! published them ([MQTT-4.6.0-5] (3.1.1) / [MQTT-4.6.0-6] (5.0): ordered topics) — promise 1
//! and 2 of design.md.

use std::collections::HashMap;
use std::net::SocketAddr;

use cairn::codec::{Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::clients::{new_session, resume, subscribe_ok, text};
use crate::common::{start_broker, RawClient, TestBroker};
use crate::support::{message, stop};

/// The topic every publisher of these tests publishes to.
const TOPIC: &str = "order/readings";

/// Publishes `count` QoS 1 messages `"{name}#{n}"` with up to `window` unacknowledged at a
/// time, and checks every PUBACK is a success in packet-id order of sending. A `window` above
/// the broker's Receive Maximum is what the outside test's clients did: the broker must slow
/// such a client down, not throw it out (its resends came after later messages).
async fn publish_pipelined(addr: SocketAddr, name: String, count: u32, window: u32) {
    let mut client = RawClient::connect(addr, ProtocolVersion::V5, &name).await;
    let mut sent = 0u32;
    let mut acked = 0u32;
    while acked < count {
        while sent < count && sent - acked < window {
            let packet_id = u16::try_from(sent % 60_000 + 1).expect("fits");
            let payload = format!("{name}#{sent}");
            client
                .send(&Packet::Publish(message(
                    TOPIC,
                    QoS::AtLeastOnce,
                    packet_id,
                    &payload,
                )))
                .await;
            sent += 1;
        }
        match client.recv().await {
            Packet::PubAck(ack) => {
                let expected = u16::try_from(acked % 60_000 + 1).expect("fits");
                assert_eq!(
                    (ack.packet_id, ack.reason),
                    (expected, ReasonCode::Success),
                    "{name}: PUBACKs come in order [MQTT-4.6.0-2], each a success"
                );
                acked += 1;
            }
            other => panic!("{name}: expected PUBACK, got {other:?}"),
        }
    }
    client.go_offline().await;
}

/// Receives `expected` QoS 1 messages, acknowledging each, and checks that each publisher's
/// messages arrive complete, without repeats, in the order it published them.
async fn receive_in_publisher_order(client: &mut RawClient, publishers: &[String], per: u32) {
    let mut next: HashMap<&str, u32> = publishers.iter().map(|p| (p.as_str(), 0)).collect();
    let total = per * u32::try_from(publishers.len()).expect("fits");
    for received in 0..total {
        let publish = client.expect_publish().await;
        client.acknowledge(&publish).await;
        let payload = text(&publish);
        let (name, number) = payload
            .rsplit_once('#')
            .unwrap_or_else(|| panic!("unexpected payload {payload:?}"));
        let number: u32 = number.parse().expect("a message number");
        let expected = next
            .get_mut(name)
            .unwrap_or_else(|| panic!("unexpected publisher in {payload:?}"));
        assert_eq!(
            number, *expected,
            "message {received} of {total}: {name}'s messages in publish order"
        );
        *expected += 1;
    }
    client.expect_nothing_pending().await;
}

/// One round: the subscriber goes offline, `publishers` publish `per` messages each at once,
/// the broker restarts, and the subscriber receives them all in order.
async fn round(mut broker: TestBroker, subscriber: &str, round: usize, per: u32) -> TestBroker {
    let publishers: Vec<String> = (0..8).map(|p| format!("pub-{round}-{p}")).collect();
    let tasks: Vec<_> = publishers
        .iter()
        .map(|name| tokio::spawn(publish_pipelined(broker.addr, name.clone(), per, 50)))
        .collect();
    for task in tasks {
        task.await.expect("publisher finished");
    }
    broker = stop(broker).await.start().await;
    let mut client = resume(broker.addr, ProtocolVersion::V5, subscriber).await;
    receive_in_publisher_order(&mut client, &publishers, per).await;
    client.go_offline().await;
    broker
}

/// Several restarts in a row, the first before the subscriber exists (the case outside testing
/// found out of order), then per round a restart with the subscriber's queue empty, eight v5
/// publishers with 50 messages in flight each (above the default Receive Maximum of 32, as
/// the outside test had) filling it while it is offline, and a restart before it returns.
#[tokio::test]
async fn per_publisher_order_holds_across_several_restarts_with_many_publishers() {
    let broker = start_broker().await;
    let broker = stop(broker).await.start().await;
    let subscriber = "order-subscriber";
    let mut client = new_session(broker.addr, ProtocolVersion::V5, subscriber).await;
    subscribe_ok(&mut client, 1, TOPIC, QoS::AtLeastOnce).await;
    client.go_offline().await;
    let mut broker = broker;
    for number in 0..3 {
        broker = stop(broker).await.start().await;
        broker = round(broker, subscriber, number, 300).await;
    }
    broker.shutdown().await;
}
