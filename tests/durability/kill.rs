//! `kill -9` of the real binary in the middle of a QoS 1 stream (design.md promise 1): every
//! message whose PUBACK reached the publisher before the kill is delivered after the restart,
//! in order and once, to persistent subscribers that were offline throughout.

use std::collections::BTreeSet;
use std::time::Duration;

use cairn::codec::{Packet, Properties, ProtocolVersion, QoS, Subscribe, SubscriptionOptions};

use crate::common::clients::{
    client_id, granted, new_session, publish_qos1, resume, subscribe_ok, text, BOTH,
};
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

/// [MQTT-3.8.4-3] with [MQTT-3.2.2-3] (5.0) / [MQTT-3.2.2-2] (3.1.1): a SUBSCRIBE that repeats
/// a subscription (most clients subscribe again on every connect) vouches for it across
/// `kill -9` in every order a client may send it: twice in a row before the first SUBACK, and
/// again on resuming the session after a restart, twice. After each SUBACK `cairn` is killed,
/// started again, and a message published to the topic reaches the resumed session.
#[tokio::test]
async fn a_repeated_subscription_survives_sigkill_right_after_its_suback() {
    const FILTER: &str = "kill9/again";
    let data_dir = tempfile::tempdir().expect("a data directory");
    let mut cairn = process::start(data_dir.path()).await;
    for version in BOTH {
        let id = client_id("kill9-again", version);
        let mut client = new_session(cairn.addr, version, &id).await;
        let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
        for packet_id in [1, 2] {
            client
                .send(&Packet::Subscribe(Subscribe {
                    packet_id,
                    properties: Properties::default(),
                    filters: vec![(FILTER.to_string(), options)],
                }))
                .await;
        }
        for packet_id in [1, 2] {
            match client.recv().await {
                Packet::SubAck(suback) => {
                    assert_eq!(suback.packet_id, packet_id, "SUBACKs in order");
                    assert_eq!(suback.reasons, vec![granted(QoS::AtLeastOnce)]);
                }
                other => panic!("expected SUBACK {packet_id}, got {other:?}"),
            }
        }
    }
    for round in 1..=2 {
        cairn.kill().await;
        cairn = process::start(data_dir.path()).await;
        let mut publisher =
            RawClient::connect(cairn.addr, ProtocolVersion::V5, "kill9-again-pub").await;
        let payload = format!("after kill {round}");
        publish(
            &mut publisher,
            publish_packet(FILTER, QoS::AtLeastOnce, Some(1), payload.as_bytes()),
        )
        .await;
        for version in BOTH {
            let id = client_id("kill9-again", version);
            let mut client = resume(cairn.addr, version, &id).await;
            let message = client.expect_publish().await;
            client.acknowledge(&message).await;
            assert_eq!(text(&message), payload, "{version:?}, round {round}");
            // Subscribing again, unchanged, on the resumed session: the next kill comes right
            // after this SUBACK.
            subscribe_ok(&mut client, 3, FILTER, QoS::AtLeastOnce).await;
        }
    }
    cairn.kill().await;
}

/// The README's "an acknowledgement received … is written with the next commit made for
/// another reason, or a second after it came": a subscriber's PUBACKs that reach an idle
/// broker after their messages' commit are on disk a second later, so a SIGKILL after that
/// sends none of those messages again. (The idle writer slept until the next commit made for
/// another reason, however long that took: after the kill all three came again.)
#[tokio::test]
async fn acknowledgements_reaching_an_idle_broker_survive_a_later_sigkill() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let cairn = process::start(data_dir.path()).await;
    let version = ProtocolVersion::V5;
    let mut subscriber = new_session(cairn.addr, version, "acked-sub").await;
    subscribe_ok(&mut subscriber, 1, "acked/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(cairn.addr, version, "acked-pub").await;
    let mut delivered = Vec::new();
    for n in 1..=3u16 {
        // Acknowledged to the publisher: committed, with the subscriber's copy.
        publish_qos1(&mut publisher, "acked/t", n, &n.to_string()).await;
        delivered.push(subscriber.expect_publish().await);
    }
    for publish in &delivered {
        subscriber.acknowledge(publish).await;
    }
    // The rule is about time: a second after the acknowledgements came, and a margin for a
    // loaded machine.
    tokio::time::sleep(Duration::from_secs(4)).await;
    cairn.kill().await;

    let cairn = process::start(data_dir.path()).await;
    let mut subscriber = resume(cairn.addr, version, "acked-sub").await;
    let mut marker = RawClient::connect(cairn.addr, version, "acked-marker").await;
    publish_qos1(&mut marker, "acked/t", 1, MARKER).await;
    let first = subscriber.expect_publish().await;
    assert_eq!(text(&first), MARKER, "nothing acknowledged came again");
}
