//! `kill -9` of the real binary in the middle of a QoS 1 stream (design.md promise 1): every
//! message whose PUBACK reached the publisher before the kill is delivered after the restart,
//! in order and once, to persistent subscribers that were offline throughout.

use std::collections::BTreeSet;

use cairn::codec::{Packet, ProtocolVersion, QoS};

use crate::common::clients::{client_id, new_session, resume, subscribe_ok, text, BOTH};
use crate::common::{publish_packet, RawClient};
use crate::process;
use crate::support::publish;

/// Messages the publisher pipelines.
const SENT: u16 = 400;
/// PUBACKs the publisher waits for before the kill.
const ACKED_BEFORE_KILL: usize = 150;
/// The topic of the stream.
const TOPIC: &str = "kill9/readings";
/// Published after the restart, last: everything delivered before it is the whole stream.
const MARKER: &str = "marker";

/// The payload of reading `n`.
fn reading(n: u16) -> String {
    format!("reading {n}")
}

/// Promise 1, [MQTT-4.6.0-6] (5.0) / [MQTT-4.6.0-5] (3.1.1): a 3.1.1 publisher (which has no
/// Receive Maximum to respect) pipelines 400 QoS 1 messages; after 150 PUBACKs `cairn` is
/// killed with SIGKILL, and the PUBACKs still in the socket are read too. After the restart a
/// 3.1.1 and a v5 persistent subscriber, both offline since before the stream, resume
/// (Session Present 1) and receive every acknowledged message, in publish order, each once;
/// the messages received are a subset of those sent (unacknowledged ones may or may not have
/// been kept).
#[tokio::test]
async fn qos1_messages_acknowledged_before_sigkill_are_delivered_after_restart() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let cairn = process::start(data_dir.path()).await;
    for version in BOTH {
        let mut subscriber =
            new_session(cairn.addr, version, &client_id("kill9-sub", version)).await;
        subscribe_ok(&mut subscriber, 1, TOPIC, QoS::AtLeastOnce).await;
        subscriber.go_offline().await;
    }
    let mut publisher = RawClient::connect(cairn.addr, ProtocolVersion::V311, "kill9-pub").await;
    for n in 1..=SENT {
        let payload = reading(n);
        publisher
            .send(&Packet::Publish(publish_packet(
                TOPIC,
                QoS::AtLeastOnce,
                Some(n),
                payload.as_bytes(),
            )))
            .await;
    }
    let mut acked = BTreeSet::new();
    while acked.len() < ACKED_BEFORE_KILL {
        match publisher.recv().await {
            Packet::PubAck(ack) => assert!(acked.insert(ack.packet_id), "one PUBACK per message"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    cairn.kill().await;
    while let Some(packet) = publisher.next().await {
        match packet {
            Packet::PubAck(ack) => assert!(acked.insert(ack.packet_id), "one PUBACK per message"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    let cairn = process::start(data_dir.path()).await;
    let mut subscribers = Vec::new();
    for version in BOTH {
        subscribers.push(resume(cairn.addr, version, &client_id("kill9-sub", version)).await);
    }
    let mut marker = RawClient::connect(cairn.addr, ProtocolVersion::V5, "kill9-marker").await;
    publish(
        &mut marker,
        publish_packet(TOPIC, QoS::AtLeastOnce, Some(1), MARKER.as_bytes()),
    )
    .await;
    for mut subscriber in subscribers {
        let mut delivered = Vec::new();
        loop {
            let message = subscriber.expect_publish().await;
            subscriber.acknowledge(&message).await;
            let payload = text(&message);
            if payload == MARKER {
                break;
            }
            let n = payload
                .strip_prefix("reading ")
                .and_then(|n| n.parse::<u16>().ok())
                .unwrap_or_else(|| panic!("unexpected payload {payload:?}"));
            delivered.push(n);
        }
        let version = subscriber.version;
        assert!(
            delivered.windows(2).all(|pair| pair[0] < pair[1]),
            "v{}: delivered in publish order, each once: {delivered:?}",
            version.level()
        );
        let delivered: BTreeSet<u16> = delivered.into_iter().collect();
        let lost: Vec<u16> = acked.difference(&delivered).copied().collect();
        assert!(
            lost.is_empty(),
            "v{}: acknowledged but lost across kill -9: {lost:?} ({} acknowledged)",
            version.level(),
            acked.len()
        );
        assert!(delivered.iter().all(|n| (1..=SENT).contains(n)));
    }
    cairn.kill().await;
}
