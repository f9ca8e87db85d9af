//! A second Cairn as the upstream: messages out and in with the prefix mapping, acknowledged
//! and in order; the bridge's own messages never loop back; the queue survives an outage.

use cairn::codec::{ProtocolVersion, QoS, ReasonCode};
use cairn::config::{BridgeProtocol, Direction, QueueFullPolicy};

use crate::common::clients::{new_session, publish_qos1, resume, subscribe_ok, subscriber, text};
use crate::common::ordered::receive_in_publisher_order;
use crate::common::proxy::FaultProxy;
use crate::common::{connect_packet, publish_packet, start_broker, start_broker_with, RawClient};
use crate::support::{
    bridge, gateway, no_loop_through, publish_in_groups, rule, upstream_down_with_subscriber,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

#[tokio::test]
async fn messages_go_out_renamed_and_come_in_renamed() {
    let upstream = start_broker().await;
    let mut cloud = subscriber(upstream.addr, V5, "cloud-sub", "site-7/#", QoS::AtLeastOnce).await;
    let rules = vec![
        rule("sensors/#", Direction::Out, 1, "", "site-7/"),
        rule("cmd/#", Direction::In, 1, "", "site-7/"),
    ];
    let gateway = gateway(vec![bridge("cloud", upstream.addr, rules)]).await;
    let mut local = subscriber(gateway.addr, V5, "local-sub", "cmd/#", QoS::AtLeastOnce).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    publish_qos1(&mut sensor, "sensors/t1", 1, "m1").await;

    let out = cloud.expect_publish().await;
    assert_eq!(
        (out.topic.as_str(), text(&out).as_str()),
        ("site-7/sensors/t1", "m1")
    );
    cloud.acknowledge(&out).await;

    // The bridge subscribed upstream before it sent m1 on the same connection.
    let mut operator = RawClient::connect(upstream.addr, V5, "operator").await;
    publish_qos1(&mut operator, "site-7/cmd/reboot", 1, "now").await;
    let command = local.expect_publish().await;
    assert_eq!(
        (command.topic.as_str(), text(&command).as_str()),
        ("cmd/reboot", "now")
    );
}

/// The uplink is down while 8 publishers send 10,000 QoS 1 messages and the gateway restarts
/// twice; once the upstream is back, every message arrives, each publisher's in order.
#[tokio::test]
async fn an_outage_with_two_gateway_restarts_loses_nothing_and_keeps_order() {
    let upstream_stopped =
        upstream_down_with_subscriber("cloud-sub", "site-7/#", QoS::AtLeastOnce).await;

    let rules = vec![rule("sensors/#", Direction::Out, 1, "", "site-7/")];
    let mut gateway = gateway(vec![bridge(
        "cloud",
        upstream_stopped.configured_addr(),
        rules,
    )])
    .await;
    let publishers: Vec<String> = (0..8).map(|p| format!("sensor-{p}")).collect();
    let per = 1250;
    for group in publishers.chunks(4) {
        publish_in_groups(gateway.addr, group, per).await;
        gateway = gateway.restart().await;
    }
    let upstream = upstream_stopped.start().await;
    let mut cloud = resume(upstream.addr, V5, "cloud-sub").await;
    receive_in_publisher_order(&mut cloud, &publishers, per).await;
    gateway.shutdown().await;
}

/// `both` on one topic: each side's message crosses once and never comes back (No Local on
/// both subscriptions of the bridge).
#[tokio::test]
async fn both_ways_on_one_topic_makes_no_loop() {
    let upstream = start_broker().await;
    no_loop_through(upstream.addr, BridgeProtocol::V5).await;
}

/// A Mosquitto bridge connects with the 3.1.1 bridge bit: its subscriptions then act as No
/// Local (its own messages are not sent back) and Retain As Published.
#[tokio::test]
async fn a_client_with_the_bridge_bit_gets_no_local_and_retain_as_published() {
    let broker = start_broker().await;
    let mut connect = connect_packet(ProtocolVersion::V311, "mosquitto-bridge");
    connect.bridge = true;
    let (mut peer_bridge, connack) = RawClient::connect_with(broker.addr, connect).await;
    assert_eq!(connack.reason, ReasonCode::Success);
    subscribe_ok(&mut peer_bridge, 1, "t/#", QoS::AtLeastOnce).await;
    publish_qos1(&mut peer_bridge, "t/own", 2, "own").await;

    let mut other = RawClient::connect(broker.addr, ProtocolVersion::V311, "other").await;
    let mut retained = publish_packet("t/state", QoS::AtLeastOnce, Some(1), b"on");
    retained.retain = true;
    other.publish(retained).await.expect("PUBACK");
    let delivered = peer_bridge.expect_publish().await;
    assert_eq!(
        text(&delivered),
        "on",
        "its own message did not come back first"
    );
    assert!(
        delivered.retain,
        "RETAIN as published, where 3.1.1 clears it [MQTT-3.3.1-9]"
    );
    peer_bridge.acknowledge(&delivered).await;
    peer_bridge.expect_nothing_pending().await;
}

/// The optional state topic upstream: retained "connected" once connected, "disconnected" by
/// the Will when the link breaks, and by the bridge itself at a clean shutdown (whose normal
/// DISCONNECT discards the Will).
#[tokio::test]
async fn the_state_topic_follows_the_link() {
    let upstream = start_broker().await;
    let mut watcher = subscriber(upstream.addr, V5, "watcher", "gw/state", QoS::AtMostOnce).await;
    let proxy = FaultProxy::start(upstream.addr).await;
    let mut config = bridge(
        "cloud",
        proxy.addr(),
        vec![rule("sensors/#", Direction::Out, 1, "", "")],
    );
    config.state_topic = Some("gw/state".into());
    let gateway = gateway(vec![config]).await;
    for (event, expected) in [
        ("connected", "connected"),
        ("cut", "disconnected"),
        ("redialled", "connected"),
    ] {
        if event == "cut" {
            proxy.cut();
        }
        let state = watcher.expect_publish().await;
        assert_eq!(text(&state), expected, "after {event}");
    }
    gateway.shutdown().await;
    let state = watcher.expect_publish().await;
    assert_eq!(text(&state), "disconnected", "after a clean shutdown");
}

/// An upstream whose queue for a subscriber is full answers PUBACK 0x97 Quota exceeded
/// (a Cairn with `queue_full_policy = "refuse_newest"`, as a cloud over its quota does): the
/// bridge waits and sends the refused messages again until they are taken, so once the
/// subscriber reads again every message reaches it, none dropped. (Before, the 7 refused of
/// these 12 were dropped at the bridge.)
#[tokio::test]
async fn messages_an_upstream_refuses_for_its_quota_arrive_once_it_has_room() {
    let upstream = start_broker_with(|config| {
        config.limits.max_queued_messages = 5;
        config.limits.queue_full_policy = QueueFullPolicy::RefuseNewest;
        config.sys_interval = 1;
    })
    .await;
    let mut cloud = new_session(upstream.addr, V5, "cloud-sub").await;
    subscribe_ok(&mut cloud, 1, "site-7/#", QoS::AtLeastOnce).await;
    cloud.go_offline().await;
    let mut refusals = subscriber(
        upstream.addr,
        V5,
        "watcher",
        "$SYS/broker/messages/dropped",
        QoS::AtMostOnce,
    )
    .await;

    let rules = vec![rule("sensors/#", Direction::Out, 1, "", "site-7/")];
    let gateway = gateway(vec![bridge("cloud", upstream.addr, rules)]).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    for n in 0..12u16 {
        publish_qos1(&mut sensor, "sensors/t", n + 1, &n.to_string()).await;
    }
    // The upstream refused some: its queue for the offline subscriber holds 5.
    loop {
        let dropped = refusals.expect_publish().await;
        if text(&dropped).parse::<u64>().is_ok_and(|count| count > 0) {
            break;
        }
    }

    let mut cloud = resume(upstream.addr, V5, "cloud-sub").await;
    let mut received = Vec::new();
    while received.len() < 12 {
        let publish = cloud.expect_publish().await;
        cloud.acknowledge(&publish).await;
        received.push(text(&publish).parse::<u16>().expect("a number"));
    }
    received.sort_unstable();
    assert_eq!(received, (0..12).collect::<Vec<_>>(), "every message, once");
}
