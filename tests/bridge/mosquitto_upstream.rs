//! Mosquitto 2.0 as the upstream (skipped when it is not installed, failed under `CI=true`):
//! no loop both ways (v5 No Local, 3.1.1 bridge bit), a cloud-like profile's limits obeyed
//! without being disconnected, and a restarted Mosquitto that forgot the bridge's session
//! still gets every message the bridge had not seen acknowledged.

use cairn::codec::{ProtocolVersion, QoS};
use cairn::config::{BridgeProtocol, Direction};

use crate::common::clients::{publish_qos1, publish_qos2, subscriber, text};
use crate::common::ordered::receive_in_order_allowing_repeats;
use crate::common::proxy::FaultProxy;
use crate::common::upstream::{MosquittoProfile, MosquittoUpstream};
use crate::common::{publish_packet, RawClient};
use crate::support::{bridge, gateway, no_loop_through, publish_in_groups, rule};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Messages per publisher of the forgotten-session test.
const PER_PUBLISHER: u32 = 200;

#[tokio::test]
async fn v5_both_ways_through_mosquitto_makes_no_loop() {
    let test = "v5_both_ways_through_mosquitto_makes_no_loop";
    let Some(upstream) = MosquittoUpstream::start(MosquittoProfile::Plain, test).await else {
        return;
    };
    no_loop_through(upstream.addr(), BridgeProtocol::V5).await;
}

/// A 3.1.1 bridge has no No Local: Mosquitto keeps the bridge's own messages from it because
/// of the bridge bit.
#[tokio::test]
async fn a_3_1_1_bridge_with_the_bridge_bit_makes_no_loop_through_mosquitto() {
    let test = "a_3_1_1_bridge_with_the_bridge_bit_makes_no_loop_through_mosquitto";
    let Some(upstream) = MosquittoUpstream::start(MosquittoProfile::Plain, test).await else {
        return;
    };
    no_loop_through(upstream.addr(), BridgeProtocol::V311).await;
}

/// A cloud-like Mosquitto (Maximum QoS 1, no RETAIN, 128 KiB packets, Receive Maximum 10): a
/// QoS 2 message goes as QoS 1, a retained one without RETAIN (Mosquitto would disconnect
/// otherwise), a 200 KiB one is dropped, and the rest arrive in order. For v5 from the
/// CONNACK; for 3.1.1, which announces nothing, from `max_qos` and `retain`.
#[tokio::test]
async fn a_cloud_like_mosquittos_limits_are_obeyed() {
    let test = "a_cloud_like_mosquittos_limits_are_obeyed";
    for protocol in [BridgeProtocol::V5, BridgeProtocol::V311] {
        let Some(upstream) = MosquittoUpstream::start(MosquittoProfile::CloudLike, test).await
        else {
            return;
        };
        let mut cloud = subscriber(upstream.addr(), V5, "cloud-sub", "#", QoS::AtLeastOnce).await;
        let mut config = bridge(
            "cloud",
            upstream.addr(),
            vec![rule("sensors/#", Direction::Out, 2, "", "")],
        );
        config.protocol = protocol;
        if protocol == BridgeProtocol::V311 {
            config.max_qos = 1;
            config.max_packet_size = 131_072;
            config.retain = false;
        }
        let gateway = gateway(vec![config]).await;
        let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
        publish_qos2(&mut sensor, "sensors/a", 1, "a").await;
        let mut retained = publish_packet("sensors/b", QoS::AtLeastOnce, Some(2), b"b");
        retained.retain = true;
        sensor.publish(retained).await.expect("PUBACK");
        let big = "x".repeat(200 * 1024);
        publish_qos1(&mut sensor, "sensors/big", 3, &big).await;
        publish_qos1(&mut sensor, "sensors/c", 4, "c").await;
        for expected in ["a", "b", "c"] {
            let publish = cloud.expect_publish().await;
            assert_eq!(
                text(&publish),
                expected,
                "{protocol:?}: in order, the big one skipped"
            );
            assert_eq!(publish.qos, QoS::AtLeastOnce);
            cloud.acknowledge(&publish).await;
        }
        cloud.expect_nothing_pending().await;
        assert!(
            !upstream
                .log()
                .contains("Client gw-cloud disconnected due to protocol error"),
            "{protocol:?}: {}",
            upstream.log()
        );
        gateway.shutdown().await;
    }
}

/// Mosquitto without persistence restarted: the cloud forgot the bridge's session (CONNACK
/// Session Present 0). Messages queued meanwhile, and any the bridge had sent without seeing
/// the PUBACK, are sent again as new messages: the subscriber gets every one, in order.
#[tokio::test]
async fn a_cloud_that_forgot_the_session_loses_nothing_queued() {
    let test = "a_cloud_that_forgot_the_session_loses_nothing_queued";
    let Some(mut upstream) = MosquittoUpstream::start(MosquittoProfile::Plain, test).await else {
        return;
    };
    let proxy = FaultProxy::start(upstream.addr()).await;
    let gateway = gateway(vec![bridge(
        "cloud",
        proxy.addr(),
        vec![rule("sensors/#", Direction::Out, 1, "", "")],
    )])
    .await;
    let publishers: Vec<String> = (0..4).map(|p| format!("sensor-{p}")).collect();

    // The uplink goes down, messages queue, the cloud restarts without its sessions.
    proxy.wait_connections(1).await;
    proxy.refuse();
    proxy.cut();
    // 800 in all: Mosquitto keeps at most 1,000 messages for a subscriber by default
    // (`max_queued_messages`), and the bridge may drain faster than this subscriber reads.
    publish_in_groups(gateway.addr, &publishers, PER_PUBLISHER).await;
    upstream.stop().await;
    upstream.start_again().await;
    let mut cloud = subscriber(
        upstream.addr(),
        V5,
        "cloud-sub",
        "sensors/#",
        QoS::AtLeastOnce,
    )
    .await;
    proxy.heal();
    let repeats = receive_in_order_allowing_repeats(&mut cloud, &publishers, PER_PUBLISHER).await;
    assert_eq!(repeats, 0, "nothing was in flight at the cut");
}
