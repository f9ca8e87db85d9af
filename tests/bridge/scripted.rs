//! The bridge against a scripted upstream: a test that plays the server packet by packet, so
//! what the bridge must obey (the CONNACK's limits, resends after a reconnect, acks only
//! after commit) is checked exactly. Waiting is on events: the bridge's PINGREQ (sent only
//! after half its Keep Alive with nothing else to send) says it has stopped sending.

use cairn::codec::{
    ConnAck, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, SubAck,
};
use cairn::config::Direction;

use crate::common::clients::{publish_qos1, subscriber, text};
use crate::common::{publish_packet, RawClient, TestBroker};
use crate::support::{bridge, gateway_with, rule, FakeCloud};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn connack(session_present: bool, properties: Properties) -> ConnAck {
    ConnAck {
        session_present,
        reason: ReasonCode::Success,
        properties,
    }
}

/// Packets from the bridge until its PINGREQ: what it sent before going idle (SUBSCRIBE
/// answered and left out).
async fn until_idle(link: &mut RawClient) -> Vec<Packet> {
    let mut seen = Vec::new();
    loop {
        match link.recv().await {
            Packet::PingReq => {
                link.send(&Packet::PingResp).await;
                return seen;
            }
            Packet::Subscribe(subscribe) => {
                let reasons = vec![ReasonCode::GrantedQoS2; subscribe.filters.len()];
                link.send(&Packet::SubAck(SubAck {
                    packet_id: subscribe.packet_id,
                    properties: Properties::default(),
                    reasons,
                }))
                .await;
            }
            packet => seen.push(packet),
        }
    }
}

fn publishes(packets: &[Packet]) -> Vec<Publish> {
    packets
        .iter()
        .filter_map(|packet| match packet {
            Packet::Publish(publish) => Some(publish.clone()),
            _ => None,
        })
        .collect()
}

fn payloads(publishes: &[Publish]) -> Vec<String> {
    publishes.iter().map(text).collect()
}

/// A gateway bridging `sensors/#` out (QoS `qos`) to `cloud`, with a 4 s Keep Alive so it
/// pings 2 s after going idle.
async fn gateway_to(cloud: &FakeCloud, qos: u8) -> TestBroker {
    let mut config = bridge(
        "cloud",
        cloud.addr(),
        vec![
            rule("sensors/#", Direction::Out, qos, "", ""),
            rule("cmd/#", Direction::In, 2, "", ""),
        ],
    );
    config.keep_alive = 4;
    gateway_with(vec![config], |_| {}).await
}

async fn publish_all(gateway: &TestBroker, count: usize) {
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    for n in 0..count {
        publish_qos1(&mut sensor, "sensors/t", n as u16 + 1, &n.to_string()).await;
    }
}

#[tokio::test]
async fn the_bridge_connects_with_a_fixed_identity_and_keeps_its_session() {
    let cloud = FakeCloud::start().await;
    let _gateway = gateway_to(&cloud, 1).await;
    let (mut link, connect) = cloud.accept(connack(false, Properties::default())).await;
    assert_eq!(connect.client_id, "gw-cloud");
    assert!(
        !connect.clean_start,
        "Clean Start 0: the session upstream is kept"
    );
    assert_eq!(connect.properties.session_expiry_interval, Some(604_800));
    assert_eq!(connect.keep_alive, 4);
    match link.recv().await {
        Packet::Subscribe(subscribe) => {
            let (filter, options) = &subscribe.filters[0];
            assert_eq!(filter, "cmd/#");
            assert!(
                options.no_local && options.retain_as_published,
                "{options:?}"
            );
            assert_eq!(options.qos, QoS::ExactlyOnce);
        }
        other => panic!("expected SUBSCRIBE, got {other:?}"),
    }
}

#[tokio::test]
async fn the_servers_receive_maximum_and_limits_are_obeyed() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_to(&cloud, 2).await;
    // Queued while the uplink is not answered yet: QoS 2, one retained, one too large.
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    for n in 0..8u16 {
        let payload = if n == 2 {
            "x".repeat(400)
        } else {
            n.to_string()
        };
        let mut publish = publish_packet(
            "sensors/t",
            QoS::ExactlyOnce,
            Some(n + 1),
            payload.as_bytes(),
        );
        publish.retain = n == 0;
        let ack = sensor.publish(publish).await.expect("PUBREC");
        sensor
            .send(&Packet::PubRel(PubResponse::success(ack.packet_id)))
            .await;
        assert!(matches!(sensor.recv().await, Packet::PubComp(_)));
    }
    let properties = Properties {
        receive_maximum: Some(3),
        maximum_qos: Some(1),
        retain_available: Some(0),
        maximum_packet_size: Some(300),
        ..Properties::default()
    };
    let (mut link, _) = cloud.accept(connack(false, properties)).await;
    let first = publishes(&until_idle(&mut link).await);
    assert_eq!(
        payloads(&first),
        ["0", "1", "3"],
        "3 in flight at most; the 400-byte one skipped"
    );
    for publish in &first {
        assert_eq!(
            publish.qos,
            QoS::AtLeastOnce,
            "Maximum QoS 1: QoS 2 sent as 1"
        );
        assert!(!publish.retain, "Retain Available 0: RETAIN cleared");
    }
    // One acknowledged: exactly one more goes.
    link.send(&Packet::PubAck(PubResponse::success(
        first[0].packet_id.unwrap(),
    )))
    .await;
    let next = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&next), ["4"]);
}

#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_to_a_server_that_kept_the_session() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_to(&cloud, 1).await;
    publish_all(&gateway, 3).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["0", "1", "2"]);
    link.send(&Packet::PubAck(PubResponse::success(
        sent[0].packet_id.unwrap(),
    )))
    .await;
    drop(link);

    // [MQTT-4.4.0-1] Resent on the new connection with DUP and the same packet identifiers.
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&resent), ["1", "2"]);
    for (again, first) in resent.iter().zip(&sent[1..]) {
        assert!(again.dup);
        assert_eq!(again.packet_id, first.packet_id);
    }
    drop(link);

    // A server that lost the session gets them as new messages, nothing skipped.
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let renewed = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&renewed), ["1", "2"]);
    assert!(renewed.iter().all(|publish| !publish.dup));
}

#[tokio::test]
async fn a_qos2_message_past_pubrec_is_never_published_again() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_to(&cloud, 2).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    let ack = sensor
        .publish(publish_packet(
            "sensors/t",
            QoS::ExactlyOnce,
            Some(1),
            b"once",
        ))
        .await
        .expect("PUBREC");
    sensor
        .send(&Packet::PubRel(PubResponse::success(ack.packet_id)))
        .await;
    assert!(matches!(sensor.recv().await, Packet::PubComp(_)));

    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["once"]);
    let packet_id = sent[0].packet_id.unwrap();
    link.send(&Packet::PubRec(PubResponse::success(packet_id)))
        .await;
    assert_eq!(
        link.recv().await,
        Packet::PubRel(PubResponse::success(packet_id))
    );
    drop(link);

    // [MQTT-4.3.3-6] After PUBREL only PUBREL is resent, never the PUBLISH.
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = until_idle(&mut link).await;
    assert_eq!(resent, [Packet::PubRel(PubResponse::success(packet_id))]);
    link.send(&Packet::PubComp(PubResponse::success(packet_id)))
        .await;
    drop(link);
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    assert_eq!(until_idle(&mut link).await, [], "the flow is complete");
}

#[tokio::test]
async fn a_message_from_upstream_is_acknowledged_and_delivered_once() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_to(&cloud, 1).await;
    let mut local = subscriber(gateway.addr, V5, "local", "cmd/#", QoS::ExactlyOnce).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    assert!(matches!(link.recv().await, Packet::Subscribe(_)));
    let mut command = publish_packet("cmd/open", QoS::ExactlyOnce, Some(7), b"valve");
    link.send(&Packet::Publish(command.clone())).await;
    assert_eq!(link.recv().await, Packet::PubRec(PubResponse::success(7)));
    // [MQTT-4.3.3-10] The same PUBLISH again before PUBREL is not a new message.
    command.dup = true;
    link.send(&Packet::Publish(command)).await;
    assert_eq!(link.recv().await, Packet::PubRec(PubResponse::success(7)));
    link.send(&Packet::PubRel(PubResponse::success(7))).await;
    assert_eq!(link.recv().await, Packet::PubComp(PubResponse::success(7)));

    let delivered = local.expect_publish().await;
    assert_eq!(text(&delivered), "valve");
    local.acknowledge(&delivered).await;
    local.expect_nothing_pending().await;
}

#[tokio::test]
async fn a_v5_refusal_with_unsupported_protocol_falls_back_to_3_1_1() {
    let cloud = FakeCloud::start().await;
    let _gateway = gateway_to(&cloud, 1).await;
    let (mut link, connect) = cloud.accept_connect().await;
    assert_eq!(connect.protocol, ProtocolVersion::V5);
    // What a 3.1.1-only server answers: CONNACK return code 1, in 3.1.1 form.
    link.send_bytes(&[0x20, 0x02, 0x00, 0x01]).await;
    let (_link, connect) = cloud
        .accept(ConnAck {
            session_present: false,
            reason: ReasonCode::Success,
            properties: Properties::default(),
        })
        .await;
    assert_eq!(connect.protocol, ProtocolVersion::V311);
    assert!(!connect.clean_start);
}

#[tokio::test]
async fn a_silent_server_is_left_within_one_and_a_half_keep_alives() {
    let cloud = FakeCloud::start().await;
    let _gateway = gateway_to(&cloud, 1).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    // Never answer: not the SUBSCRIBE, not the PINGREQ. The bridge must give up and dial
    // again (it is reconnecting when the next accept succeeds).
    let mut seen = Vec::new();
    while let Some(packet) = link.read_packet().await {
        seen.push(packet);
    }
    assert!(seen.contains(&Packet::PingReq), "{seen:?}");
    let _ = cloud.accept_connect().await;
}

#[tokio::test]
async fn a_3_1_1_bridge_sets_the_bridge_bit_and_drops_it_when_refused() {
    let cloud = FakeCloud::start().await;
    let mut config = bridge(
        "cloud",
        cloud.addr(),
        vec![rule("sensors/#", Direction::Out, 1, "", "")],
    );
    config.protocol = cairn::config::BridgeProtocol::V311;
    let _gateway = gateway_with(vec![config], |_| {}).await;
    let (mut link, connect) = cloud.accept_connect().await;
    assert_eq!(connect.protocol, ProtocolVersion::V311);
    assert!(
        connect.bridge,
        "Mosquitto's bridge bit (protocol level 0x84)"
    );
    // "Unacceptable protocol version": the server does not take the bit.
    link.send_bytes(&[0x20, 0x02, 0x00, 0x01]).await;
    let (_link, connect) = cloud.accept_connect().await;
    assert_eq!(connect.protocol, ProtocolVersion::V311);
    assert!(!connect.bridge, "the bit is dropped after the refusal");
}
