//! The gateway killed with SIGKILL (the real binary), uplink down or up: nothing it
//! acknowledged is lost, order is kept, and a QoS 2 message reaches the upstream once.

use std::collections::HashSet;

use cairn::codec::{
    ConnAck, Packet, Properties, ProtocolVersion, PubResponse, QoS, ReasonCode, SubAck,
};
use cairn::config::Direction;

use crate::common::clients::{new_session, publish_qos2, resume, subscribe_ok, text};
use crate::common::ordered::receive_in_publisher_order;
use crate::common::{publish_packet, RawClient};
use crate::support::{
    bridge, publish_in_groups, rule, upstream_down_with_subscriber, FakeCloud, GatewayProcess,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// The outage: upstream stopped, 10,000 QoS 1 messages published on the gateway, the
/// gateway killed twice meanwhile; once the upstream is back every message arrives, each
/// publisher's in order.
#[tokio::test]
async fn an_outage_with_two_sigkills_loses_nothing_and_keeps_order() {
    let upstream = upstream_down_with_subscriber("cloud-sub", "site-7/#", QoS::AtLeastOnce).await;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = vec![rule("sensors/#", Direction::Out, 1, "", "site-7/")];
    let gateway = GatewayProcess::new(
        dir.path(),
        vec![bridge("cloud", upstream.configured_addr(), rules)],
    );
    let publishers: Vec<String> = (0..8).map(|p| format!("sensor-{p}")).collect();
    let per = 1250;
    for group in publishers.chunks(4) {
        let process = gateway.start().await;
        publish_in_groups(process.addr, group, per).await;
        process.kill().await;
    }
    let _process = gateway.start().await;
    let upstream = upstream.start().await;
    let mut cloud = resume(upstream.addr, V5, "cloud-sub").await;
    receive_in_publisher_order(&mut cloud, &publishers, per).await;
}

/// QoS 2 end to end while the gateway is killed twice as it drains (at `rate_limit` 100 msg/s):
/// every message reaches the upstream subscriber exactly once [MQTT-4.3.3-6].
#[tokio::test]
async fn qos2_through_sigkills_arrives_exactly_once() {
    let upstream = upstream_down_with_subscriber("cloud-sub", "site-7/#", QoS::ExactlyOnce).await;
    let addr = upstream.configured_addr();

    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = vec![rule("sensors/#", Direction::Out, 2, "", "site-7/")];
    let mut config = bridge("cloud", addr, rules);
    // Paced, so the kills below land while the bridge is still draining.
    config.rate_limit = 100;
    let gateway = GatewayProcess::new(dir.path(), vec![config]);
    let total = 600u16;
    let process = gateway.start().await;
    let mut sensor = RawClient::connect(process.addr, V5, "sensor").await;
    for n in 1..=total {
        publish_qos2(&mut sensor, "sensors/t", n, &n.to_string()).await;
    }
    drop(sensor);
    let upstream = upstream.start().await;
    let mut cloud = resume(upstream.addr, V5, "cloud-sub").await;
    let mut seen = HashSet::new();
    let mut process = Some(process);
    while seen.len() < usize::from(total) {
        match cloud.recv().await {
            Packet::Publish(publish) => {
                let packet_id = publish.packet_id.expect("QoS 2");
                let payload = text(&publish);
                assert!(seen.insert(payload.clone()), "{payload} arrived twice");
                cloud
                    .send(&Packet::PubRec(PubResponse::success(packet_id)))
                    .await;
            }
            Packet::PubRel(rel) => {
                cloud
                    .send(&Packet::PubComp(PubResponse::success(rel.packet_id)))
                    .await;
            }
            other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
        }
        if seen.len() == 200 || seen.len() == 400 {
            if let Some(running) = process.take() {
                running.kill().await;
                process = Some(gateway.start().await);
            }
        }
    }
    // Every flow completes, and nothing more comes (no PUBLISH again).
    loop {
        cloud.send(&Packet::PingReq).await;
        let mut released = 0;
        loop {
            match cloud.recv().await {
                Packet::PingResp => break,
                Packet::PubRel(rel) => {
                    released += 1;
                    cloud
                        .send(&Packet::PubComp(PubResponse::success(rel.packet_id)))
                        .await;
                }
                other => panic!("expected only PUBREL after every message, got {other:?}"),
            }
        }
        if released == 0 {
            break;
        }
    }
}

/// A message from upstream is acknowledged upstream only once committed: killed right after
/// that PUBACK, the gateway still delivers it to its offline persistent subscriber.
#[tokio::test]
async fn a_message_acknowledged_upstream_survives_a_sigkill_right_after() {
    let cloud = FakeCloud::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = vec![rule("cmd/#", Direction::In, 1, "", "")];
    let gateway = GatewayProcess::new(dir.path(), vec![bridge("cloud", cloud.addr(), rules)]);
    let process = gateway.start().await;
    let mut local = new_session(process.addr, V5, "valve").await;
    subscribe_ok(&mut local, 1, "cmd/#", QoS::AtLeastOnce).await;
    local.go_offline().await;

    let (mut link, _) = cloud
        .accept(ConnAck {
            session_present: false,
            reason: ReasonCode::Success,
            properties: Properties::default(),
        })
        .await;
    let Packet::Subscribe(subscribe) = link.recv().await else {
        panic!("expected SUBSCRIBE");
    };
    link.send(&Packet::SubAck(SubAck {
        packet_id: subscribe.packet_id,
        properties: Properties::default(),
        reasons: vec![ReasonCode::GrantedQoS1],
    }))
    .await;
    link.send(&Packet::Publish(publish_packet(
        "cmd/open",
        QoS::AtLeastOnce,
        Some(9),
        b"now",
    )))
    .await;
    assert_eq!(link.recv().await, Packet::PubAck(PubResponse::success(9)));
    process.kill().await;

    let process = gateway.start().await;
    let mut local = resume(process.addr, V5, "valve").await;
    let delivered = local.expect_publish().await;
    assert_eq!(
        (delivered.topic.as_str(), text(&delivered).as_str()),
        ("cmd/open", "now")
    );
}
