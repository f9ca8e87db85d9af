//! Per-publisher order across several restarts in a row, with many publishers at once: a
//! persistent subscriber's queue, filled by pipelined QoS 1 publishers while it is offline,
//! comes back after each graceful restart with every message, each publisher's in the order it
//! published them ([MQTT-4.6.0-5] (3.1.1) / [MQTT-4.6.0-6] (5.0): ordered topics) — promise 1
//! and 2 of design.md.

use cairn::codec::{ProtocolVersion, QoS};

use crate::common::clients::{new_session, resume, subscribe_ok};
use crate::common::ordered::{publish_pipelined, receive_in_publisher_order};
use crate::common::stop;
use crate::common::{start_broker, TestBroker};

/// The topic every publisher of these tests publishes to.
const TOPIC: &str = "order/readings";

/// One round: the subscriber goes offline, `publishers` publish `per` messages each at once,
/// the broker restarts, and the subscriber receives them all in order.
async fn round(mut broker: TestBroker, subscriber: &str, round: usize, per: u32) -> TestBroker {
    let publishers: Vec<String> = (0..8).map(|p| format!("pub-{round}-{p}")).collect();
    let tasks: Vec<_> = publishers
        .iter()
        .map(|name| tokio::spawn(publish_pipelined(broker.addr, name.clone(), TOPIC, per, 50)))
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
    restarts_with_many_publishers().await;
}

/// The same with the broker on tokio's multi-thread scheduler with three workers (the
/// default on a four-core gateway): the connections of one publisher's stream and of the
/// subscriber run on whichever worker is free, and the store's answers reach each of them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn per_publisher_order_holds_across_several_restarts_on_three_workers() {
    restarts_with_many_publishers().await;
}

/// The sequence of both tests above.
async fn restarts_with_many_publishers() {
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
