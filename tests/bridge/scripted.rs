//! The bridge against a scripted upstream: a test that plays the server packet by packet, so
//! what the bridge must obey (the CONNACK's limits, resends after a reconnect, acks only
//! after commit) is checked exactly. Waiting is on events: the bridge's PINGREQ (sent only
//! after half its Keep Alive with nothing else to send) says it has stopped sending.

use cairn::codec::{
    ConnAck, Disconnect, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS,
    ReasonCode, SubAck,
};
use cairn::config::{BridgeConfig, Direction};

use std::collections::HashMap;
use std::time::Duration;

use crate::common::clients::{publish_qos1, publish_qos2, subscriber, text};
use crate::common::{launch, publish_packet, RawClient, TestBroker, WAIT};
use crate::support::{bridge, gateway_with, rule, wait_for_state, FakeCloud, GatewayProcess};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Lets wall-clock time pass for a rule about time itself (Message Expiry): not
/// synchronisation, every event is awaited with the harness's timeouts.
async fn let_time_pass(duration: Duration) {
    tokio::time::sleep(duration).await;
}

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

/// The server sends PUBREC for `packet_id`; the bridge answers PUBREL.
async fn pubrec_answered(link: &mut RawClient, packet_id: u16) {
    link.send(&Packet::PubRec(PubResponse::success(packet_id)))
        .await;
    assert_eq!(
        link.recv().await,
        Packet::PubRel(PubResponse::success(packet_id))
    );
}

/// A bridge to `cloud` carrying `sensors/#` out (QoS `qos`) and `cmd/#` in, with a 4 s Keep
/// Alive so it pings 2 s after going idle.
fn bridge_to(cloud: &FakeCloud, qos: u8) -> BridgeConfig {
    let mut config = bridge(
        "cloud",
        cloud.addr(),
        vec![
            rule("sensors/#", Direction::Out, qos, "", ""),
            rule("cmd/#", Direction::In, 2, "", ""),
        ],
    );
    config.keep_alive = 4;
    config
}

/// [`bridge_to`] `cloud`, speaking MQTT 3.1.1.
fn bridge_311_to(cloud: &FakeCloud, qos: u8) -> BridgeConfig {
    let mut config = bridge_to(cloud, qos);
    config.protocol = cairn::config::BridgeProtocol::V311;
    config
}

/// A gateway running [`bridge_to`] `cloud`.
async fn gateway_to(cloud: &FakeCloud, qos: u8) -> TestBroker {
    gateway_with(vec![bridge_to(cloud, qos)], |_| {}).await
}

/// A gateway bridging to a new fake cloud, `count` QoS 1 messages queued on it (payloads "0"
/// on), and what its bridge sent them as on its first connection, to a server without a
/// session for it, once it went idle.
async fn sent_on_a_first_connection(
    count: usize,
) -> (FakeCloud, TestBroker, RawClient, Vec<Publish>) {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_to(&cloud, 1).await;
    publish_all(&gateway, count).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    (cloud, gateway, link, sent)
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

/// Publishes QoS 1 `sensors/t` messages with these payload numbers, all sent before the first
/// PUBACK is read (one at a time, each would wait for its own commit).
async fn publish_pipelined(sensor: &mut RawClient, numbers: std::ops::Range<usize>) {
    let packets: Vec<Packet> = numbers
        .clone()
        .map(|n| {
            let packet_id = (n % 60_000) as u16 + 1;
            let payload = n.to_string();
            Packet::Publish(publish_packet(
                "sensors/t",
                QoS::AtLeastOnce,
                Some(packet_id),
                payload.as_bytes(),
            ))
        })
        .collect();
    sensor.send_all(&packets).await;
    for _ in numbers {
        assert!(matches!(sensor.recv().await, Packet::PubAck(_)));
    }
}

fn packet_ids(publishes: &[Publish]) -> Vec<u16> {
    publishes
        .iter()
        .map(|publish| publish.packet_id.expect("QoS 1"))
        .collect()
}

/// Publishes messages 1,000 to 1,599 through `sensor`: the bridge sends them on `link`, in
/// order, under identifiers apart from those `in_use` holds, which then holds theirs too.
async fn more_join_the_window(
    sensor: &mut RawClient,
    link: &mut RawClient,
    in_use: &mut std::collections::BTreeSet<u16>,
) {
    publish_pipelined(sensor, 1_000..1_600).await;
    let more = publishes(&until_idle(link).await);
    let expected: Vec<String> = (1_000..1_600).map(|n| n.to_string()).collect();
    assert_eq!(payloads(&more), expected);
    for packet_id in packet_ids(&more) {
        assert!(
            in_use.insert(packet_id),
            "identifier {packet_id} handed out again while in flight"
        );
    }
}

/// A window of thousands (`max_inflight` raised, a server announcing no Receive Maximum) keeps
/// its packet identifiers apart [MQTT-2.3.1-2] while they are acknowledged out of order and
/// new messages join it, and resends what is open with DUP and the same identifiers
/// [MQTT-4.4.0-1].
#[tokio::test]
async fn a_window_of_thousands_keeps_its_packet_identifiers_apart() {
    let cloud = FakeCloud::start().await;
    let mut config = bridge_to(&cloud, 1);
    config.max_inflight = 5_000;
    let gateway = gateway_with(vec![config], |_| {}).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    publish_pipelined(&mut sensor, 0..1_000).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let first = publishes(&until_idle(&mut link).await);
    let expected: Vec<String> = (0..1_000).map(|n| n.to_string()).collect();
    assert_eq!(
        payloads(&first),
        expected,
        "all in flight at once, in order"
    );
    let mut open: std::collections::BTreeSet<u16> = packet_ids(&first).into_iter().collect();
    assert_eq!(open.len(), 1_000, "1,000 distinct identifiers");
    // Every other one acknowledged: the window is holed, not drained from the front.
    let acks: Vec<Packet> = first
        .iter()
        .step_by(2)
        .map(|publish| Packet::PubAck(PubResponse::success(publish.packet_id.unwrap())))
        .collect();
    for ack in &acks {
        if let Packet::PubAck(ack) = ack {
            open.remove(&ack.packet_id);
        }
    }
    link.send_all(&acks).await;
    more_join_the_window(&mut sensor, &mut link, &mut open).await;
    drop(link);

    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = publishes(&until_idle(&mut link).await);
    assert_eq!(
        resent.len(),
        1_100,
        "the 500 left open and the 600 new ones"
    );
    assert!(resent.iter().all(|publish| publish.dup), "resent with DUP");
    let resent_ids: std::collections::BTreeSet<u16> = packet_ids(&resent).into_iter().collect();
    assert_eq!(resent_ids, open, "under their original identifiers");
    let numbers: Vec<usize> = resent.iter().map(|p| text(p).parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]), "in order");
}

/// The same large window through a SIGKILL and a SIGTERM of the gateway (the real binary): the
/// window comes back from the store whole each time, is resent with DUP under the identifiers
/// it had [MQTT-4.4.0-1], and messages published after the restarts get identifiers apart from
/// those still open [MQTT-2.3.1-2].
#[tokio::test]
async fn a_large_window_comes_back_whole_after_a_kill_and_a_restart() {
    let cloud = FakeCloud::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = bridge_to(&cloud, 1);
    config.max_inflight = 5_000;
    // The shortest Keep Alive the binary's configuration accepts (it pings after 2.5 s idle).
    config.keep_alive = 5;
    let gateway = GatewayProcess::new(dir.path(), vec![config]);

    let process = gateway.start().await;
    let mut sensor = RawClient::connect(process.addr, V5, "sensor").await;
    publish_pipelined(&mut sensor, 0..1_000).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(sent.len(), 1_000);
    // Idle for half the Keep Alive: every inflight record is committed by now.
    process.kill().await;
    drop(link);

    let process = gateway.start().await;
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = publishes(&until_idle(&mut link).await);
    assert_eq!(
        payloads(&resent),
        payloads(&sent),
        "the whole window, in order"
    );
    assert_eq!(
        packet_ids(&resent),
        packet_ids(&sent),
        "under the same identifiers"
    );
    assert!(resent.iter().all(|publish| publish.dup), "with DUP");
    // Every other one acknowledged, then a clean restart.
    let acks: Vec<Packet> = sent
        .iter()
        .step_by(2)
        .map(|publish| Packet::PubAck(PubResponse::success(publish.packet_id.unwrap())))
        .collect();
    link.send_all(&acks).await;
    let open: Vec<Publish> = sent.iter().skip(1).step_by(2).cloned().collect();
    // The acknowledgements are in once the bridge is idle again (its next PINGREQ).
    assert!(publishes(&until_idle(&mut link).await).is_empty());
    process.terminate().await;
    drop(link);

    let process = gateway.start().await;
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&resent), payloads(&open), "only the open half");
    assert_eq!(packet_ids(&resent), packet_ids(&open));
    let mut in_use = packet_ids(&open).into_iter().collect();
    let mut sensor = RawClient::connect(process.addr, V5, "sensor").await;
    more_join_the_window(&mut sensor, &mut link, &mut in_use).await;
}

#[tokio::test]
async fn unacknowledged_messages_are_resent_with_dup_to_a_server_that_kept_the_session() {
    let (cloud, _gateway, mut link, sent) = sent_on_a_first_connection(3).await;
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

/// [MQTT-3.3.4-7] [MQTT-4.4.0-1] The resend after a reconnect keeps to the Receive Maximum of
/// the new CONNACK, even when more was in flight before (Mosquitto 2.0.11's bridge sends its
/// whole backlog then): 8 in flight, then a server that announces 3 gets the first 3 again with
/// DUP, and each PUBACK lets one more go, the open ones first, messages queued meanwhile
/// behind them.
#[tokio::test]
async fn the_resend_after_a_reconnect_keeps_to_a_lower_receive_maximum() {
    let (cloud, gateway, link, sent) = sent_on_a_first_connection(8).await;
    assert_eq!(payloads(&sent), ["0", "1", "2", "3", "4", "5", "6", "7"]);
    drop(link);
    // Dialing again, the bridge has seen the link go: what is published now waits in the
    // queue (before, it could still go out on the dead link and come again as a resend).
    let (mut link, _) = cloud.accept_connect().await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    publish_pipelined(&mut sensor, 8..12).await;

    let properties = Properties {
        receive_maximum: Some(3),
        ..Properties::default()
    };
    link.send(&Packet::ConnAck(connack(true, properties))).await;
    let mut open = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&open), ["0", "1", "2"], "3 at most");
    let mut seen = open.clone();
    for (acknowledged, expected) in [
        (1, &["3"][..]),
        (3, &["4", "5", "6"]),
        (3, &["7", "8", "9"]),
    ] {
        let acks: Vec<Packet> = open
            .drain(..acknowledged)
            .map(|publish| Packet::PubAck(PubResponse::success(publish.packet_id.unwrap())))
            .collect();
        link.send_all(&acks).await;
        let more = publishes(&until_idle(&mut link).await);
        assert_eq!(payloads(&more), expected, "one more per PUBACK, in order");
        open.extend(more.iter().cloned());
        assert!(open.len() <= 3, "{} unacknowledged", open.len());
        seen.extend(more);
    }
    for (again, first) in seen.iter().zip(&sent) {
        assert!(again.dup, "{} is a resend", text(again));
        assert_eq!(again.packet_id, first.packet_id, "under its identifier");
    }
    assert!(
        seen[8..].iter().all(|publish| !publish.dup),
        "queued while disconnected: new"
    );
}

/// The bridge's first connection to `cloud` sends the one QoS 2 message queued ("once"), the
/// server answers PUBREC and the link drops; on the next connection (the session kept) the
/// bridge resends only PUBREL [MQTT-4.3.3-6], never the PUBLISH. The link and the packet id.
async fn pubrel_resent_after_a_reconnect(cloud: &FakeCloud) -> (RawClient, u16) {
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["once"]);
    let packet_id = sent[0].packet_id.unwrap();
    pubrec_answered(&mut link, packet_id).await;
    drop(link);
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = until_idle(&mut link).await;
    assert_eq!(resent, [Packet::PubRel(PubResponse::success(packet_id))]);
    (link, packet_id)
}

#[tokio::test]
async fn a_qos2_message_past_pubrec_is_never_published_again() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_to(&cloud, 2).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    publish_qos2(&mut sensor, "sensors/t", 1, "once").await;

    let (mut link, packet_id) = pubrel_resent_after_a_reconnect(&cloud).await;
    link.send(&Packet::PubComp(PubResponse::success(packet_id)))
        .await;
    drop(link);
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    assert_eq!(until_idle(&mut link).await, [], "the flow is complete");
}

/// A server that completed a QoS 2 flow whose PUBCOMP never reached the bridge answers the
/// PUBREL sent again after the reconnect with PUBCOMP 0x92 Packet Identifier not found: the
/// message went up (the server's PUBREC took it), so `$SYS` counts it sent, not dropped.
#[tokio::test]
async fn a_pubcomp_for_a_flow_the_server_had_completed_counts_the_message_sent() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_with(vec![bridge_to(&cloud, 2)], |config| config.sys_interval = 1).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    publish_qos2(&mut sensor, "sensors/t", 1, "once").await;

    let (mut link, packet_id) = pubrel_resent_after_a_reconnect(&cloud).await;
    let mut not_found = PubResponse::success(packet_id);
    not_found.reason = ReasonCode::PacketIdentifierNotFound;
    link.send(&Packet::PubComp(not_found)).await;

    let mut watcher = sys_watcher(&gateway, "#").await;
    let mut values = HashMap::new();
    let counted = |leaf: &str, values: &HashMap<String, String>| {
        values.get(leaf).map(String::as_str) == Some("1")
    };
    watch_until(&mut watcher, &mut values, |values| {
        counted("sent", values) || counted("dropped", values)
    })
    .await;
    assert!(
        counted("sent", &values) && !counted("dropped", &values),
        "{values:?}"
    );
}

/// A 3.1.1 server announces no Receive Maximum: by default the bridge keeps at most 20
/// messages unacknowledged, Mosquitto's own default `max_inflight_messages` (past which it
/// refuses a QoS 2 message and closes the connection), and sends the rest as acks come.
#[tokio::test]
async fn a_3_1_1_bridge_keeps_within_mosquittos_default_window() {
    let cloud = FakeCloud::start().await;
    let config = bridge_311_to(&cloud, 2);
    let gateway = gateway_with(vec![config], |_| {}).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    for n in 0..25u16 {
        publish_qos2(&mut sensor, "sensors/t", n + 1, &n.to_string()).await;
    }
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(sent.len(), 20, "the default window");
    for publish in &sent[..5] {
        pubrec_answered(&mut link, publish.packet_id.unwrap()).await;
    }
    let more = publishes(&until_idle(&mut link).await);
    assert_eq!(
        more.len(),
        0,
        "a PUBREC'd message still counts until PUBCOMP"
    );
    for publish in &sent[..5] {
        link.send(&Packet::PubComp(PubResponse::success(
            publish.packet_id.unwrap(),
        )))
        .await;
    }
    let rest = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&rest), ["20", "21", "22", "23", "24"]);
}

/// [MQTT-4.6.0-4] The bridge's resend after a reconnect: PUBRELs in the order the server's
/// PUBRECs came (the third message's, then the first's), then the PUBLISH still unanswered
/// (DUP, its identifier): a server that counts its open QoS 2 flows against its Receive
/// Maximum on a resumed session closes them before the PUBLISH arrives.
#[tokio::test]
async fn the_resend_after_a_reconnect_sends_pubrels_in_pubrec_order_first() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_to(&cloud, 2).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    for (packet_id, payload) in [(1, "first"), (2, "second"), (3, "third")] {
        publish_qos2(&mut sensor, "sensors/t", packet_id, payload).await;
    }

    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["first", "second", "third"]);
    let ids: Vec<u16> = sent
        .iter()
        .map(|publish| publish.packet_id.unwrap())
        .collect();
    for packet_id in [ids[2], ids[0]] {
        pubrec_answered(&mut link, packet_id).await;
    }
    drop(link);

    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = until_idle(&mut link).await;
    assert_eq!(
        resent[..2],
        [
            Packet::PubRel(PubResponse::success(ids[2])),
            Packet::PubRel(PubResponse::success(ids[0])),
        ],
        "PUBRELs first, in PUBREC order"
    );
    let again = publishes(&resent[2..]);
    assert_eq!(payloads(&again), ["second"]);
    assert!(again[0].dup, "a resend");
    assert_eq!(again[0].packet_id, Some(ids[1]), "under its identifier");
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

/// [MQTT-3.1.2-22] A 3.1.1 CONNECT carries a password only with a user name: a v5 bridge
/// with a password and no username, refused as unsupported, does not fall back to a 3.1.1
/// CONNECT it could not send (it retried that forever); it tries v5 again after its backoff.
#[tokio::test]
async fn a_bridge_with_a_password_and_no_username_does_not_fall_back_to_3_1_1() {
    let cloud = FakeCloud::start().await;
    let dir = tempfile::tempdir().expect("a directory for the password file");
    let password_file = dir.path().join("cloud.pass");
    std::fs::write(&password_file, "token\n").expect("write the password file");
    let mut config = bridge_to(&cloud, 1);
    config.password_file = Some(password_file);
    let _gateway = gateway_with(vec![config], |_| {}).await;
    for _ in 0..2 {
        let (mut link, connect) = cloud.accept_connect().await;
        assert_eq!(connect.protocol, ProtocolVersion::V5);
        assert_eq!(connect.password.as_deref(), Some(&b"token"[..]));
        link.send_bytes(&[0x20, 0x02, 0x00, 0x01]).await;
    }
}

#[tokio::test]
async fn a_3_1_1_bridge_sets_the_bridge_bit_and_drops_it_when_refused() {
    let cloud = FakeCloud::start().await;
    let config = bridge_311_to(&cloud, 1);
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

/// [MQTT-3.3.2-6] A queued message's Message Expiry counts down while the uplink is down, and
/// the remainder goes upstream; one that expired while queued is dropped, not sent.
#[tokio::test]
async fn message_expiry_counts_down_while_queued() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_to(&cloud, 1).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    for (packet_id, payload, expiry) in [(1, "short", 1), (2, "long", 100)] {
        let mut publish = publish_packet(
            "sensors/t",
            QoS::AtLeastOnce,
            Some(packet_id),
            payload.as_bytes(),
        );
        publish.properties.message_expiry_interval = Some(expiry);
        sensor.publish(publish).await.expect("PUBACK");
    }
    let_time_pass(Duration::from_millis(2100)).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["long"], "the expired message is not sent");
    let left = sent[0]
        .properties
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!(
        (1..=98).contains(&left),
        "2 s of 100 spent while queued, {left} left"
    );
}

/// [MQTT-4.4.0-1] [MQTT-3.3.2-6] A message sent upstream, unacknowledged, that expires before
/// the bridge reconnects is still resent (its flow must complete), saying that nothing of its
/// interval remains: 0 (it said 1, a second more of life upstream).
#[tokio::test]
async fn an_expired_message_resent_says_nothing_remains() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_to(&cloud, 1).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    let mut publish = publish_packet("sensors/t", QoS::AtLeastOnce, Some(1), b"brief");
    publish.properties.message_expiry_interval = Some(1);
    sensor.publish(publish).await.expect("PUBACK");
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["brief"]);
    drop(link);
    let_time_pass(Duration::from_millis(1500)).await;
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&resent), ["brief"]);
    assert!(resent[0].dup, "a resend");
    assert_eq!(resent[0].properties.message_expiry_interval, Some(0));
}

/// A bridge's own queue bounds: with `max_messages = 3` and `drop_oldest`, an outage keeps
/// the newest three, in order, and `$SYS/broker/bridge/<name>/dropped` counts the other three.
#[tokio::test]
async fn the_bridge_queue_keeps_its_own_bounds() {
    let cloud = FakeCloud::start().await;
    let mut config = bridge_to(&cloud, 1);
    config.queue.max_messages = Some(3);
    let gateway = gateway_with(vec![config], |config| config.sys_interval = 1).await;
    publish_all(&gateway, 6).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["3", "4", "5"]);
    let mut watcher = sys_watcher(&gateway, "dropped").await;
    let mut values = HashMap::new();
    watch_until(&mut watcher, &mut values, |values| {
        values.get("dropped").map(String::as_str) == Some("3")
    })
    .await;
}

/// `$SYS/broker/bridge/<name>/…` tells the link's state and the queue.
#[tokio::test]
async fn sys_topics_show_the_bridge() {
    let cloud = FakeCloud::start().await;
    let config = bridge_to(&cloud, 1);
    let gateway = gateway_with(vec![config], |config| config.sys_interval = 1).await;
    publish_all(&gateway, 2).await;
    let mut watcher = sys_watcher(&gateway, "#").await;
    let mut values = HashMap::new();
    let every = [
        "state",
        "queued",
        "queued_bytes",
        "sent",
        "received",
        "dropped",
        "reconnects",
        "last_error",
    ];
    watch_until(&mut watcher, &mut values, |values| {
        values.get("queued").map(String::as_str) == Some("2")
            && every.iter().all(|leaf| values.contains_key(*leaf))
    })
    .await;
    assert!(
        values["state"].starts_with("connecting to 127.0.0.1:"),
        "{values:?}"
    );

    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    // Sent, not yet acknowledged: still queued, and their bytes ("sensors/t" and "0", "1").
    watch_until(&mut watcher, &mut values, |values| {
        values["state"].starts_with("connected to")
            && values.get("queued").map(String::as_str) == Some("2")
            && values.get("queued_bytes").map(String::as_str) == Some("20")
    })
    .await;
    for publish in &sent {
        link.send(&Packet::PubAck(PubResponse::success(
            publish.packet_id.unwrap(),
        )))
        .await;
    }
    watch_until(&mut watcher, &mut values, |values| {
        values["state"].starts_with("connected to")
            && values.get("sent").map(String::as_str) == Some("2")
            && values.get("queued").map(String::as_str) == Some("0")
    })
    .await;
}

/// A QoS 2 message the server took (PUBREC) before it lost the bridge's session (Session
/// Present 0) is its own: it is not sent again, and `$SYS/broker/bridge/<name>/sent` counts it
/// with the one sent again and completed (it counted only the latter).
#[tokio::test]
async fn a_message_the_server_took_before_losing_the_session_counts_as_sent() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_with(vec![bridge_to(&cloud, 2)], |config| config.sys_interval = 1).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    for (packet_id, payload) in [(1, "taken"), (2, "open")] {
        publish_qos2(&mut sensor, "sensors/t", packet_id, payload).await;
    }
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["taken", "open"]);
    pubrec_answered(&mut link, sent[0].packet_id.unwrap()).await;
    drop(link);

    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let again = publishes(&until_idle(&mut link).await);
    assert_eq!(
        payloads(&again),
        ["open"],
        "the taken one is not sent again"
    );
    let packet_id = again[0].packet_id.unwrap();
    pubrec_answered(&mut link, packet_id).await;
    link.send(&Packet::PubComp(PubResponse::success(packet_id)))
        .await;
    let mut watcher = sys_watcher(&gateway, "#").await;
    let mut values = HashMap::new();
    watch_until(&mut watcher, &mut values, |values| {
        values.get("queued").map(String::as_str) == Some("0")
            && values.get("sent").map(String::as_str) == Some("2")
    })
    .await;
    assert_eq!(values.get("dropped").map(String::as_str), Some("0"));
}

/// A rule's QoS lowered by a reload applies to the messages queued before it too: they go up
/// at no more than the rule now says (`qos`, "the highest QoS used on the way"), not at the
/// QoS they were queued with.
#[tokio::test]
async fn a_rule_lowered_by_a_reload_applies_to_messages_already_queued() {
    let cloud = FakeCloud::start().await;
    let mut config = bridge_to(&cloud, 2);
    // Refused once, the bridge waits (longer than the test) until the reload restarts it.
    config.reconnect_min = 600;
    config.reconnect_max = 600;
    let mut gateway = gateway_with(vec![config], |config| config.sys_interval = 1).await;
    let (mut link, _) = cloud.accept_connect().await;
    link.send(&Packet::ConnAck(ConnAck {
        session_present: false,
        reason: ReasonCode::ServerUnavailable,
        properties: Properties::default(),
    }))
    .await;
    wait_for_state(gateway.addr, "cloud", "backoff").await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    publish_qos2(&mut sensor, "sensors/t", 1, "queued at 2").await;

    let mut config = gateway.config.clone();
    config.bridges[0].topics[0].qos = 1;
    let reloaded = gateway.handle.reload(config).await.expect("reload");
    assert_eq!(reloaded.bridges.restarted, ["cloud"]);
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["queued at 2"]);
    assert_eq!(sent[0].qos, QoS::AtLeastOnce, "the rule's QoS now");
}

/// A reload that restarts a bridge keeps its figures: the connection it then makes counts in
/// `$SYS/broker/bridge/<name>/reconnects` (it read 0 after any number of such restarts, while
/// `sent` went on counting).
#[tokio::test]
async fn a_reconnect_after_a_reload_counts() {
    let cloud = FakeCloud::start().await;
    let mut gateway =
        gateway_with(vec![bridge_to(&cloud, 1)], |config| config.sys_interval = 1).await;
    let (_first, _) = cloud.accept(connack(false, Properties::default())).await;
    // Restarted before it took that CONNACK, the bridge would count its next connection as
    // its first.
    wait_for_state(gateway.addr, "cloud", "connected to").await;
    let mut config = gateway.config.clone();
    config.bridges[0].keep_alive = 5;
    let reloaded = gateway.handle.reload(config).await.expect("reload");
    assert_eq!(reloaded.bridges.restarted, ["cloud"]);
    let (_second, connect) = cloud.accept(connack(true, Properties::default())).await;
    assert_eq!(connect.keep_alive, 5, "the restarted bridge's connection");
    let mut watcher = sys_watcher(&gateway, "#").await;
    let mut values = HashMap::new();
    watch_until(&mut watcher, &mut values, |values| {
        values.get("reconnects").map(String::as_str) == Some("1")
            && values
                .get("state")
                .is_some_and(|state| state.starts_with("connected to"))
    })
    .await;
}

/// A client of `gateway` subscribed to `$SYS/broker/bridge/cloud/<leaf>`.
async fn sys_watcher(gateway: &TestBroker, leaf: &str) -> RawClient {
    let topic = format!("$SYS/broker/bridge/cloud/{leaf}");
    subscriber(gateway.addr, V5, "watcher", &topic, QoS::AtMostOnce).await
}

/// A bridge a reload removes leaves no retained `$SYS/broker/bridge/<name>/…` behind: its
/// values are cleared (an empty retained message) at the next `$SYS` round, and a subscriber
/// after that finds none of them (they kept describing a queue that no longer existed).
#[tokio::test]
async fn a_removed_bridge_leaves_no_sys_values() {
    let cloud = FakeCloud::start().await;
    let config = bridge_to(&cloud, 1);
    let mut gateway = gateway_with(vec![config], |config| config.sys_interval = 1).await;
    let mut watcher = sys_watcher(&gateway, "#").await;
    let mut values = HashMap::new();
    watch_until(&mut watcher, &mut values, |values| {
        values.get("state").is_some_and(|state| !state.is_empty())
    })
    .await;
    let mut config = gateway.config.clone();
    config.bridges.clear();
    let reloaded = gateway.handle.reload(config).await.expect("reload");
    assert_eq!(reloaded.bridges.removed, ["cloud"]);
    watch_until(&mut watcher, &mut values, |values| {
        ["state", "queued", "queued_bytes"]
            .iter()
            .all(|leaf| values.get(*leaf).is_some_and(String::is_empty))
    })
    .await;
    let mut late = subscriber(
        gateway.addr,
        V5,
        "late-watcher",
        "$SYS/broker/bridge/#",
        QoS::AtMostOnce,
    )
    .await;
    late.expect_nothing_pending().await;
}

/// Reads `$SYS` values (last topic level → value) into `values` until `done` holds.
async fn watch_until(
    watcher: &mut RawClient,
    values: &mut HashMap<String, String>,
    done: impl Fn(&HashMap<String, String>) -> bool,
) {
    while !done(values) {
        let publish = watcher.expect_publish().await;
        let leaf = publish.topic.rsplit('/').next().unwrap_or_default();
        values.insert(leaf.to_string(), text(&publish));
    }
}

/// Bad credentials: an error, and the longest backoff before the next try, never a tight
/// loop; the state topic says so.
#[tokio::test]
async fn refused_credentials_wait_the_longest_backoff() {
    let cloud = FakeCloud::start().await;
    let mut config = bridge_to(&cloud, 1);
    config.reconnect_max = 600;
    let gateway = gateway_with(vec![config], |config| config.sys_interval = 1).await;
    let (mut link, _) = cloud.accept_connect().await;
    link.send(&Packet::ConnAck(ConnAck {
        session_present: false,
        reason: ReasonCode::BadUserNameOrPassword,
        properties: Properties::default(),
    }))
    .await;
    let state = wait_for_state(gateway.addr, "cloud", "backoff").await;
    assert!(
        state.starts_with("backoff 600 s: refused by the server: BadUserNameOrPassword"),
        "{state}"
    );
}

/// A server that sends DISCONNECT 0x9C Use another server: the bridge dials its next address.
#[tokio::test]
async fn use_another_server_moves_to_the_next_address() {
    let primary = FakeCloud::start().await;
    let fallback = FakeCloud::start().await;
    let mut config = bridge(
        "cloud",
        primary.addr(),
        vec![rule("sensors/#", Direction::Out, 1, "", "")],
    );
    config.addresses.push(fallback.addr().to_string());
    let _gateway = gateway_with(vec![config], |_| {}).await;
    let (mut link, _) = primary.accept(connack(false, Properties::default())).await;
    link.send(&Packet::Disconnect(Disconnect::new(
        ReasonCode::UseAnotherServer,
    )))
    .await;
    let (_link, connect) = fallback.accept(connack(false, Properties::default())).await;
    assert_eq!(connect.client_id, "gw-cloud");
}

/// A server with messages queued for the bridge's session sends them right behind its CONNACK,
/// often in the same segment: they are handled at once, not left in the read buffer.
#[tokio::test]
async fn a_publish_right_behind_the_connack_is_delivered() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_to(&cloud, 1).await;
    let mut local = subscriber(gateway.addr, V5, "local", "cmd/#", QoS::AtLeastOnce).await;
    let (mut link, _) = cloud.accept_connect().await;
    link.send_all(&[
        Packet::ConnAck(connack(true, Properties::default())),
        Packet::Publish(publish_packet(
            "cmd/queued",
            QoS::AtLeastOnce,
            Some(3),
            b"while away",
        )),
    ])
    .await;
    let delivered = local.expect_publish().await;
    assert_eq!(text(&delivered), "while away");
}

/// [MQTT-3.3.2-11] Topic aliases upstream (uplink bytes cost money), within the server's
/// Topic Alias Maximum: a topic's first PUBLISH carries name and alias, later ones the alias
/// alone.
#[tokio::test]
async fn topic_aliases_are_used_upstream_within_the_servers_maximum() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_to(&cloud, 1).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    for (n, topic) in ["sensors/a", "sensors/a", "sensors/b", "sensors/a"]
        .iter()
        .enumerate()
    {
        publish_qos1(&mut sensor, topic, n as u16 + 1, &n.to_string()).await;
    }
    let properties = Properties {
        topic_alias_maximum: Some(1),
        ..Properties::default()
    };
    let (mut link, _) = cloud.accept(connack(false, properties)).await;
    let sent = publishes(&until_idle(&mut link).await);
    let seen: Vec<(&str, Option<u16>)> = sent
        .iter()
        .map(|publish| (publish.topic.as_str(), publish.properties.topic_alias))
        .collect();
    assert_eq!(
        seen,
        [
            ("sensors/a", Some(1)),
            ("", Some(1)),
            ("sensors/b", None),
            ("", Some(1))
        ],
        "one alias allowed: sensors/a keeps it, sensors/b goes by name"
    );
}

/// Reads `$SYS` values into `values` until `done` holds, within `limit` in all (the values
/// come every second whatever they say, so [`watch_until`] alone could wait for ever).
async fn watch_within(
    limit: Duration,
    watcher: &mut RawClient,
    values: &mut HashMap<String, String>,
    done: impl Fn(&HashMap<String, String>) -> bool,
) {
    tokio::time::timeout(limit, watch_until(watcher, values, done))
        .await
        .unwrap_or_else(|_| panic!("the $SYS values never got there: {values:?}"));
}

fn age(values: &HashMap<String, String>) -> Option<u64> {
    values.get("oldest_queued_age")?.parse().ok()
}

/// `$SYS/broker/bridge/<name>/oldest_queued_age`: the seconds the oldest message the bridge
/// still holds has waited. It grows while the upstream does not answer, keeps growing while
/// the message is in flight unacknowledged, and is 0 once the queue has drained.
#[tokio::test]
async fn the_age_of_the_oldest_queued_message_grows_until_it_is_acknowledged() {
    let limit = Duration::from_secs(60);
    let cloud = FakeCloud::start().await;
    let gateway = gateway_with(vec![bridge_to(&cloud, 1)], |config| config.sys_interval = 1).await;
    let mut watcher = sys_watcher(&gateway, "#").await;
    let mut values = HashMap::new();
    watch_within(limit, &mut watcher, &mut values, |values| {
        age(values) == Some(0) && values.get("queued").map(String::as_str) == Some("0")
    })
    .await;

    publish_all(&gateway, 1).await;
    watch_within(limit, &mut watcher, &mut values, |values| {
        values.get("queued").map(String::as_str) == Some("1")
    })
    .await;
    watch_within(limit, &mut watcher, &mut values, |values| {
        age(values) >= Some(2)
    })
    .await;

    // Sent, never acknowledged: it is still waiting.
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["0"]);
    let waited = age(&values).unwrap_or_default();
    watch_within(limit, &mut watcher, &mut values, |values| {
        age(values) > Some(waited + 1) && values.get("queued").map(String::as_str) == Some("1")
    })
    .await;

    link.send(&Packet::PubAck(PubResponse::success(
        sent[0].packet_id.unwrap(),
    )))
    .await;
    watch_within(limit, &mut watcher, &mut values, |values| {
        values.get("queued").map(String::as_str) == Some("0") && age(values) == Some(0)
    })
    .await;
}

/// A server that takes the connection and never answers CONNECT (a link black-holed during
/// the handshake) is left within 1.5 × the Keep Alive, not after the far longer
/// `connect_timeout`: the bridge closes it and dials again, and says why.
#[tokio::test]
async fn a_server_silent_before_connack_is_left_within_one_and_a_half_keep_alives() {
    let cloud = FakeCloud::start().await;
    let mut config = bridge_to(&cloud, 1);
    config.keep_alive = 5;
    config.connect_timeout = 3600;
    let gateway = gateway_with(vec![config], |config| config.sys_interval = 1).await;
    let (mut link, connect) = cloud.accept_connect().await;
    assert_eq!(connect.keep_alive, 5);
    let closed = tokio::time::timeout(WAIT * 3, link.read_packet()).await;
    assert_eq!(
        closed,
        Ok(None),
        "the bridge closed the silent link in time"
    );
    let state = wait_for_state(gateway.addr, "cloud", "backoff").await;
    assert!(
        state.contains("no CONNACK") && state.contains("1.5 × keep_alive 5 s"),
        "{state}"
    );
    let (_link, connect) = cloud.accept_connect().await;
    assert_eq!(connect.client_id, "gw-cloud", "dialled again");
}

/// A 3.1.1 server cannot be told our maximum packet size: a PUBLISH larger than
/// `limits.max_packet_size` is skipped (read off the wire, never held whole), acknowledged as
/// any other would be (PUBACK; PUBREC, then PUBCOMP on PUBREL) so the server moves on instead
/// of sending it again on every connection, and counted in `dropped`. The connection and the
/// messages behind it go on.
#[tokio::test]
async fn an_oversized_publish_from_a_3_1_1_server_is_skipped_and_acknowledged() {
    let cloud = FakeCloud::start().await;
    let config = bridge_311_to(&cloud, 1);
    let gateway = gateway_with(vec![config], |config| {
        config.limits.max_packet_size = 4096;
        config.sys_interval = 1;
    })
    .await;
    let mut local = subscriber(gateway.addr, V5, "local", "cmd/#", QoS::ExactlyOnce).await;
    let (mut link, connect) = cloud.accept(connack(false, Properties::default())).await;
    assert_eq!(connect.protocol, ProtocolVersion::V311);
    let big = vec![b'x'; 1_000_000];
    link.send_all(&[
        Packet::Publish(publish_packet("cmd/big", QoS::AtLeastOnce, Some(5), &big)),
        Packet::Publish(publish_packet("cmd/big", QoS::ExactlyOnce, Some(6), &big)),
        Packet::Publish(publish_packet(
            "cmd/small",
            QoS::AtLeastOnce,
            Some(7),
            b"fits",
        )),
    ])
    .await;
    assert_eq!(
        until_idle(&mut link).await,
        [
            Packet::PubAck(PubResponse::success(5)),
            Packet::PubRec(PubResponse::success(6)),
            Packet::PubAck(PubResponse::success(7)),
        ]
    );
    link.send(&Packet::PubRel(PubResponse::success(6))).await;
    assert_eq!(
        until_idle(&mut link).await,
        [Packet::PubComp(PubResponse::success(6))],
        "the same connection goes on"
    );
    let delivered = local.expect_publish().await;
    assert_eq!(
        (delivered.topic.as_str(), text(&delivered).as_str()),
        ("cmd/small", "fits")
    );
    local.acknowledge(&delivered).await;
    local.expect_nothing_pending().await;

    let mut watcher = sys_watcher(&gateway, "dropped").await;
    let mut values = HashMap::new();
    watch_within(
        Duration::from_secs(60),
        &mut watcher,
        &mut values,
        |values| values.get("dropped").map(String::as_str) == Some("2"),
    )
    .await;
}

/// [MQTT-3.1.2-24] A v5 server was told our Maximum Packet Size in CONNECT and may not send
/// more; one that does breaks the protocol, and the bridge answers DISCONNECT 0x95 Packet too
/// large (MQTT 5.0 section 3.1.2.11.4), from the fixed header alone, and connects again.
#[tokio::test]
async fn an_oversized_publish_from_a_v5_server_gets_disconnect_packet_too_large() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_with(vec![bridge_to(&cloud, 1)], |config| {
        config.limits.max_packet_size = 4096;
    })
    .await;
    let (mut link, connect) = cloud.accept(connack(false, Properties::default())).await;
    assert_eq!(connect.properties.maximum_packet_size, Some(4096));
    // The fixed header of a QoS 1 PUBLISH of 10,000 bytes: nothing more needs to be read.
    link.send_bytes(&[0x32, 0x90, 0x4E]).await;
    let seen = link.expect_closed().await;
    assert!(
        seen.contains(&Packet::Disconnect(Disconnect::new(
            ReasonCode::PacketTooLarge
        ))),
        "{seen:?}"
    );
    let (_link, connect) = cloud.accept_connect().await;
    assert_eq!(connect.client_id, "gw-cloud", "connected again");
    drop(gateway);
}

/// [MQTT-4.4.0-1] A message resent after a reconnect is the PUBLISH first sent, DUP set: a
/// reload that changes a rule's `remote_prefix` while a QoS 2 message awaits its PUBREC (the
/// server may hold it already) restarts the bridge, which resends it under the topic it went
/// out with, on its packet identifier; messages sent from then on take the new prefix. (It was
/// resent under the new topic: Mosquitto takes that for a reused packet identifier, clears the
/// message it held, and later refused messages with 0x97, which were dropped.)
#[tokio::test]
async fn a_message_resent_after_a_reload_keeps_the_topic_it_went_out_with() {
    let cloud = FakeCloud::start().await;
    let mut gateway = gateway_with(vec![bridge_to(&cloud, 2)], |_| {}).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    publish_qos2(&mut sensor, "sensors/t", 1, "first").await;
    let first = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&first), ["first"]);
    assert_eq!(first[0].topic, "sensors/t");
    let packet_id = first[0].packet_id.expect("QoS 2");

    let mut config = gateway.config.clone();
    config.bridges[0].topics[0].remote_prefix = "site-7/".to_string();
    let reloaded = gateway.handle.reload(config).await.expect("reload");
    assert_eq!(reloaded.bridges.restarted, ["cloud"]);
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = publishes(&until_idle(&mut link).await);
    assert_eq!(resent.len(), 1, "{resent:?}");
    assert_eq!(
        (resent[0].topic.as_str(), resent[0].packet_id, resent[0].dup),
        ("sensors/t", Some(packet_id), true),
        "the resend is the PUBLISH first sent"
    );
    pubrec_answered(&mut link, packet_id).await;
    link.send(&Packet::PubComp(PubResponse::success(packet_id)))
        .await;

    publish_qos2(&mut sensor, "sensors/t", 2, "second").await;
    let later = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&later), ["second"]);
    assert_eq!(
        later[0].topic, "site-7/sensors/t",
        "sent under the new rule"
    );
}

/// [MQTT-4.4.0-1] The same across a restart, the usual way to change a configuration: the
/// topic a message went out under is stored with its inflight entry, so a broker started
/// again with a changed `remote_prefix` resends its QoS 1 and QoS 2 messages under the topics
/// they went out with, DUP set, on their packet identifiers; messages sent from then on take
/// the new prefix. (Before, the rules in force at start named the resends.)
#[tokio::test]
async fn a_message_resent_after_a_restart_keeps_the_topic_it_went_out_with() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_with(vec![bridge_to(&cloud, 2)], |_| {}).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    publish_qos1(&mut sensor, "sensors/a", 1, "first").await;
    publish_qos2(&mut sensor, "sensors/b", 2, "second").await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["first", "second"]);
    let sent_as = |publishes: &[Publish]| -> Vec<(String, Option<u16>, bool, QoS)> {
        publishes
            .iter()
            .map(|publish| {
                let Publish {
                    topic,
                    packet_id,
                    dup,
                    qos,
                    ..
                } = publish;
                (topic.clone(), *packet_id, *dup, *qos)
            })
            .collect()
    };
    let first = sent_as(&sent);
    assert_eq!(
        (first[0].0.as_str(), first[1].0.as_str()),
        ("sensors/a", "sensors/b")
    );

    let TestBroker {
        handle,
        mut config,
        data_dir,
        ..
    } = gateway;
    handle.shutdown().await;
    config.bridges[0].topics[0].remote_prefix = "site-7/".to_string();
    let gateway = launch(config, data_dir).await;
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = publishes(&until_idle(&mut link).await);
    let again: Vec<_> = first
        .iter()
        .map(|(topic, packet_id, _, qos)| (topic.clone(), *packet_id, true, *qos))
        .collect();
    assert_eq!(
        sent_as(&resent),
        again,
        "the resends are the PUBLISHes first sent"
    );
    assert_eq!(payloads(&resent), ["first", "second"]);
    let (qos1_id, qos2_id) = (first[0].1.expect("QoS 1"), first[1].1.expect("QoS 2"));
    link.send(&Packet::PubAck(PubResponse::success(qos1_id)))
        .await;
    pubrec_answered(&mut link, qos2_id).await;
    link.send(&Packet::PubComp(PubResponse::success(qos2_id)))
        .await;

    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    publish_qos1(&mut sensor, "sensors/a", 3, "third").await;
    let later = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&later), ["third"]);
    assert_eq!(
        later[0].topic, "site-7/sensors/a",
        "sent under the new rule"
    );
}

/// The server's answer to `packet_id` with `reason`.
fn answered_with(packet_id: u16, reason: ReasonCode) -> PubResponse {
    let mut response = PubResponse::success(packet_id);
    response.reason = reason;
    response
}

/// A sensor on `gateway` publishes "a", "b" and "c" at QoS 1; the bridge sends them on
/// `link`. The sensor and their packet identifiers upstream.
async fn sensor_sends_three(gateway: &TestBroker, link: &mut RawClient) -> (RawClient, Vec<u16>) {
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    for (n, payload) in ["a", "b", "c"].into_iter().enumerate() {
        publish_qos1(&mut sensor, "sensors/t", n as u16 + 1, payload).await;
    }
    let sent = publishes(&until_idle(link).await);
    assert_eq!(payloads(&sent), ["a", "b", "c"]);
    (sensor, packet_ids(&sent))
}

/// Watches `$SYS/broker/bridge/cloud/…` until `sent` and `dropped` read as given.
async fn counted_sent_and_dropped(gateway: &TestBroker, sent: &str, dropped: &str) {
    let mut watcher = sys_watcher(gateway, "#").await;
    let mut values = HashMap::new();
    watch_within(
        Duration::from_secs(60),
        &mut watcher,
        &mut values,
        |values| {
            values.get("sent").map(String::as_str) == Some(sent)
                && values.get("dropped").map(String::as_str) == Some(dropped)
        },
    )
    .await;
}

/// A message the server refuses for its quota (PUBACK 0x97, as a cloud limiting publishes per
/// second answers a draining backlog) is not lost: nothing is sent for `reconnect_min` (3 s
/// here), then it goes again as a new PUBLISH (DUP 0: the refusal ended its flow) on its
/// packet identifier, ahead of a message published during the wait. The messages the server
/// took stay taken; all four count as sent, none as dropped. (Before, it was dropped.)
#[tokio::test]
async fn a_message_refused_for_the_servers_quota_waits_and_goes_again() {
    let cloud = FakeCloud::start().await;
    let mut config = bridge_to(&cloud, 1);
    config.reconnect_min = 3;
    // Idle pings (which end `until_idle`) come 5 s after the last packet, after the wait.
    config.keep_alive = 10;
    let gateway = gateway_with(vec![config], |config| config.sys_interval = 1).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let (mut sensor, ids) = sensor_sends_three(&gateway, &mut link).await;

    let refused_at = std::time::Instant::now();
    link.send_all(&[
        Packet::PubAck(PubResponse::success(ids[0])),
        Packet::PubAck(answered_with(ids[1], ReasonCode::QuotaExceeded)),
        Packet::PubAck(PubResponse::success(ids[2])),
    ])
    .await;
    // Both acknowledgements around the refusal counted: the bridge has read it.
    let mut watcher = sys_watcher(&gateway, "sent").await;
    watch_within(
        Duration::from_secs(60),
        &mut watcher,
        &mut HashMap::new(),
        |values| values.get("sent").map(String::as_str) == Some("2"),
    )
    .await;
    publish_qos1(&mut sensor, "sensors/t", 4, "d").await;
    let again = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&again), ["b", "d"], "the refused message first");
    assert!(
        refused_at.elapsed() >= Duration::from_millis(2900),
        "nothing went before the wait was over"
    );
    assert_eq!(again[0].packet_id, Some(ids[1]));
    assert!(!again[0].dup, "a new PUBLISH: the refusal ended its flow");
    for publish in &again {
        link.send(&Packet::PubAck(PubResponse::success(
            publish.packet_id.expect("QoS 1"),
        )))
        .await;
    }
    counted_sent_and_dropped(&gateway, "4", "0").await;
}

/// The same for QoS 2: a PUBREC 0x97 ends the flow before the server took the message, so it
/// is published again (DUP 0, QoS 2) after the wait, and completes as any other.
#[tokio::test]
async fn a_qos2_message_refused_for_the_servers_quota_goes_again() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_with(vec![bridge_to(&cloud, 2)], |config| config.sys_interval = 1).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    publish_qos2(&mut sensor, "sensors/t", 1, "twice").await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["twice"]);
    let packet_id = sent[0].packet_id.expect("QoS 2");
    link.send(&Packet::PubRec(answered_with(
        packet_id,
        ReasonCode::QuotaExceeded,
    )))
    .await;
    let again = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&again), ["twice"]);
    assert_eq!(
        (again[0].qos, again[0].packet_id, again[0].dup),
        (QoS::ExactlyOnce, Some(packet_id), false)
    );
    pubrec_answered(&mut link, packet_id).await;
    link.send(&Packet::PubComp(PubResponse::success(packet_id)))
        .await;
    counted_sent_and_dropped(&gateway, "1", "0").await;
}

/// A message waiting out the server's quota when the link drops is still in the window: the
/// next connection resends it first, DUP set, on its packet identifier [MQTT-4.4.0-1].
#[tokio::test]
async fn a_message_refused_for_quota_is_resent_after_a_reconnect() {
    let cloud = FakeCloud::start().await;
    let mut config = bridge_to(&cloud, 1);
    // A wait longer than the test: only the reconnect sends it again.
    config.reconnect_min = 2;
    config.reconnect_max = 3600;
    let gateway = gateway_with(vec![config], |_| {}).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    publish_qos1(&mut sensor, "sensors/t", 1, "kept").await;
    let sent = publishes(&until_idle(&mut link).await);
    let packet_id = sent[0].packet_id.expect("QoS 1");
    link.send(&Packet::PubAck(answered_with(
        packet_id,
        ReasonCode::QuotaExceeded,
    )))
    .await;
    drop(link);
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&resent), ["kept"]);
    assert_eq!(
        (resent[0].packet_id, resent[0].dup),
        (Some(packet_id), true)
    );
    drop(gateway);
}

/// Any other refusal (0x87 Not authorized, 0x90 Topic Name invalid…) is for good: the
/// message is dropped and counted in `dropped`, and the messages behind it go on.
#[tokio::test]
async fn a_message_refused_for_good_is_dropped_and_counted() {
    let cloud = FakeCloud::start().await;
    let gateway = gateway_with(vec![bridge_to(&cloud, 1)], |config| config.sys_interval = 1).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let (mut sensor, ids) = sensor_sends_three(&gateway, &mut link).await;
    link.send_all(&[
        Packet::PubAck(answered_with(ids[0], ReasonCode::NotAuthorized)),
        Packet::PubAck(answered_with(ids[1], ReasonCode::TopicNameInvalid)),
        Packet::PubAck(PubResponse::success(ids[2])),
    ])
    .await;
    publish_qos1(&mut sensor, "sensors/t", 4, "d").await;
    let later = publishes(&until_idle(&mut link).await);
    assert_eq!(
        payloads(&later),
        ["d"],
        "nothing refused for good goes again"
    );
    link.send(&Packet::PubAck(PubResponse::success(
        later[0].packet_id.expect("QoS 1"),
    )))
    .await;
    counted_sent_and_dropped(&gateway, "2", "2").await;
}

/// Whether the bridge sent no PUBLISH until its second PINGREQ from now.
async fn quiet_for_two_pings(link: &mut RawClient) -> bool {
    publishes(&until_idle(link).await).is_empty() && publishes(&until_idle(link).await).is_empty()
}

/// The same through a SIGKILL and a SIGTERM of the gateway (the real binary), with a wait
/// longer than the test: messages refused for the quota stay in the stored window, so each
/// restart resends them first (DUP, their identifiers, in order), and those the server took
/// are not sent again; refused again after a restart, a message still comes back after the
/// next one, and once taken it is gone.
#[tokio::test]
async fn messages_refused_for_quota_come_back_after_a_kill_and_a_restart() {
    let cloud = FakeCloud::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = bridge_to(&cloud, 1);
    // The shortest Keep Alive the binary's configuration accepts (it pings after 2.5 s idle).
    config.keep_alive = 5;
    config.reconnect_min = 600;
    config.reconnect_max = 600;
    let gateway = GatewayProcess::new(dir.path(), vec![config]);

    let process = gateway.start().await;
    let mut sensor = RawClient::connect(process.addr, V5, "sensor").await;
    publish_pipelined(&mut sensor, 0..6).await;
    let (mut link, _) = cloud.accept(connack(false, Properties::default())).await;
    let sent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&sent), ["0", "1", "2", "3", "4", "5"]);
    let ids = packet_ids(&sent);
    let answers: Vec<Packet> = ids
        .iter()
        .enumerate()
        .map(|(n, &id)| match n % 2 {
            0 => Packet::PubAck(PubResponse::success(id)),
            _ => Packet::PubAck(answered_with(id, ReasonCode::QuotaExceeded)),
        })
        .collect();
    link.send_all(&answers).await;
    // Nothing goes during the wait. Idle for two Keep Alive halves (its PINGREQs): the
    // acknowledgements, committed a second after they came (`LAZY_WINDOW`), are on disk.
    assert!(quiet_for_two_pings(&mut link).await);
    process.kill().await;
    drop(link);

    let process = gateway.start().await;
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = publishes(&until_idle(&mut link).await);
    assert_eq!(
        payloads(&resent),
        ["1", "3", "5"],
        "the refused ones, in order"
    );
    assert_eq!(packet_ids(&resent), [ids[1], ids[3], ids[5]]);
    assert!(resent.iter().all(|publish| publish.dup), "with DUP");
    link.send_all(&[
        Packet::PubAck(PubResponse::success(ids[1])),
        Packet::PubAck(answered_with(ids[3], ReasonCode::QuotaExceeded)),
        Packet::PubAck(PubResponse::success(ids[5])),
    ])
    .await;
    assert!(quiet_for_two_pings(&mut link).await);
    process.terminate().await;
    drop(link);

    let process = gateway.start().await;
    let (mut link, _) = cloud.accept(connack(true, Properties::default())).await;
    let resent = publishes(&until_idle(&mut link).await);
    assert_eq!(payloads(&resent), ["3"], "only the one refused again");
    link.send(&Packet::PubAck(PubResponse::success(ids[3])))
        .await;
    let mut sensor = RawClient::connect(process.addr, V5, "sensor").await;
    publish_qos1(&mut sensor, "sensors/t", 1, "6").await;
    let later = publishes(&until_idle(&mut link).await);
    assert_eq!(
        payloads(&later),
        ["6"],
        "new messages go once nothing waits"
    );
}
