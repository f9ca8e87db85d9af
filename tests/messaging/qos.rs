//! QoS 0, 1 and 2 from publisher to subscriber in both versions: the acknowledgement flows,
//! QoS downgrade to the granted QoS, packet identifiers, the v5 "No matching subscribers"
//! reason code, and the receiver's side of QoS 2 (no duplicate before PUBREL, unknown PUBREL).

use std::collections::HashSet;

use cairn::codec::{Packet, ProtocolVersion, PubResponse, QoS, ReasonCode};

use crate::common::clients::{client_id, publish_qos1, subscriber, text, BOTH};
use crate::common::{publish_packet, start_broker, RawClient};
use crate::support::{
    acknowledge, expect_ack, publish_qos0, publishes_before_marker, send_publish, Ack,
};

/// [MQTT-3.3.4-1] [MQTT-4.3.1-1] [MQTT-4.3.2-1] [MQTT-4.3.2-4] [MQTT-4.3.3-1] [MQTT-4.3.3-4]
/// [MQTT-4.3.3-8] [MQTT-4.3.3-11]: each QoS arrives at the QoS it was published with (the
/// subscription grants 2), with the right acknowledgements on both sides.
#[tokio::test]
async fn each_qos_is_delivered_with_its_acknowledgement_flow() {
    let broker = start_broker().await;
    for version in BOTH {
        let topic = format!("qos/{}", version.level());
        let mut sub = subscriber(
            broker.addr,
            version,
            &client_id("qos-sub", version),
            &topic,
            QoS::ExactlyOnce,
        )
        .await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("qos-pub", version)).await;

        publish_qos0(&mut publisher, &topic, "zero").await;
        assert_eq!(
            publish_qos1(&mut publisher, &topic, 10, "one").await,
            ReasonCode::Success
        );
        let rec = publisher
            .publish(publish_packet(&topic, QoS::ExactlyOnce, Some(11), b"two"))
            .await
            .expect("QoS 2 is acknowledged");
        assert_eq!(
            (rec.packet_id, rec.reason),
            (11, ReasonCode::Success),
            "PUBREC [MQTT-4.3.3-8]"
        );

        let zero = sub.expect_publish().await;
        assert_eq!(
            (text(&zero), zero.qos, zero.packet_id, zero.dup),
            ("zero".into(), QoS::AtMostOnce, None, false)
        );
        let one = sub.expect_publish().await;
        assert_eq!(
            (text(&one), one.qos, one.dup),
            ("one".into(), QoS::AtLeastOnce, false)
        );
        let two = sub.expect_publish().await;
        assert_eq!(
            (text(&two), two.qos, two.dup),
            ("two".into(), QoS::ExactlyOnce, false)
        );
        assert_eq!(two.topic, topic);
        assert_ne!(
            one.packet_id, two.packet_id,
            "distinct ids while both are unacknowledged"
        );
        acknowledge(&mut sub, &one).await;
        acknowledge(&mut sub, &two).await;
        sub.expect_nothing_pending().await;
    }
}

/// [MQTT-3.8.4-8] (3.1.1: [MQTT-3.8.4-6]): a delivery's QoS is the lower of the published QoS
/// and the granted QoS — never upgraded, always downgraded.
#[tokio::test]
async fn delivery_qos_is_the_minimum_of_published_and_granted() {
    let broker = start_broker().await;
    for version in BOTH {
        let topic = format!("downgrade/{}", version.level());
        let mut granted_0 = subscriber(
            broker.addr,
            version,
            &client_id("granted-0", version),
            &topic,
            QoS::AtMostOnce,
        )
        .await;
        let mut granted_1 = subscriber(
            broker.addr,
            version,
            &client_id("granted-1", version),
            &topic,
            QoS::AtLeastOnce,
        )
        .await;
        let mut granted_2 = subscriber(
            broker.addr,
            version,
            &client_id("granted-2", version),
            &topic,
            QoS::ExactlyOnce,
        )
        .await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("downgrade-pub", version)).await;
        for (packet_id, qos) in [
            (None, QoS::AtMostOnce),
            (Some(1), QoS::AtLeastOnce),
            (Some(2), QoS::ExactlyOnce),
        ] {
            let payload = format!("published at {qos:?}");
            publisher
                .publish(publish_packet(&topic, qos, packet_id, payload.as_bytes()))
                .await;
            for (sub, granted) in [
                (&mut granted_0, QoS::AtMostOnce),
                (&mut granted_1, QoS::AtLeastOnce),
                (&mut granted_2, QoS::ExactlyOnce),
            ] {
                let publish = sub.expect_publish().await;
                assert_eq!(text(&publish), payload);
                assert_eq!(
                    publish.qos,
                    qos.min(granted),
                    "published {qos:?}, granted {granted:?}"
                );
                assert_eq!(publish.packet_id.is_some(), publish.qos != QoS::AtMostOnce);
                acknowledge(sub, &publish).await;
            }
        }
    }
}

/// [MQTT-2.2.1-4] (3.1.1: [MQTT-2.3.1-1] [MQTT-2.3.1-2]): the broker gives every unacknowledged
/// QoS 1 delivery its own non-zero packet identifier.
#[tokio::test]
async fn inflight_packet_ids_are_non_zero_and_distinct() {
    let broker = start_broker().await;
    for version in BOTH {
        let topic = format!("ids/{}", version.level());
        let mut sub = subscriber(
            broker.addr,
            version,
            &client_id("ids-sub", version),
            &topic,
            QoS::AtLeastOnce,
        )
        .await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("ids-pub", version)).await;
        for n in 1..=10 {
            publish_qos1(&mut publisher, &topic, n, &n.to_string()).await;
        }
        let mut received = Vec::new();
        for _ in 0..10 {
            received.push(sub.expect_publish().await);
        }
        let ids: HashSet<u16> = received
            .iter()
            .filter_map(|publish| publish.packet_id)
            .collect();
        assert_eq!(ids.len(), 10, "ten distinct ids, got {received:?}");
        assert!(!ids.contains(&0), "no packet id 0");
        for publish in &received {
            acknowledge(&mut sub, publish).await;
        }
        sub.expect_nothing_pending().await;
    }
}

/// v5 PUBACK/PUBREC say 0x10 No matching subscribers when nobody receives the message and 0x00
/// when someone does; 3.1.1 acknowledgements carry no reason (decoded as Success).
#[tokio::test]
async fn acks_report_no_matching_subscribers_in_v5_only() {
    let broker = start_broker().await;
    for version in BOTH {
        let level = version.level();
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("nomatch-pub", version)).await;
        let unmatched_reason = match version {
            ProtocolVersion::V5 => ReasonCode::NoMatchingSubscribers,
            ProtocolVersion::V311 => ReasonCode::Success,
        };
        let lonely = format!("nobody/listens/{level}");
        assert_eq!(
            publish_qos1(&mut publisher, &lonely, 1, "a").await,
            unmatched_reason,
            "PUBACK"
        );
        let rec = publisher
            .publish(publish_packet(&lonely, QoS::ExactlyOnce, Some(2), b"b"))
            .await
            .expect("PUBREC");
        assert_eq!((rec.packet_id, rec.reason), (2, unmatched_reason), "PUBREC");

        let heard = format!("somebody/listens/{level}");
        let _sub = subscriber(
            broker.addr,
            version,
            &client_id("nomatch-sub", version),
            &heard,
            QoS::AtMostOnce,
        )
        .await;
        assert_eq!(
            publish_qos1(&mut publisher, &heard, 3, "c").await,
            ReasonCode::Success
        );
        let rec = publisher
            .publish(publish_packet(&heard, QoS::ExactlyOnce, Some(4), b"d"))
            .await
            .expect("PUBREC");
        assert_eq!(rec.reason, ReasonCode::Success);
    }
}

/// [MQTT-4.3.3-10]: until PUBREL, a resent QoS 2 PUBLISH (DUP=1, same packet id) is answered
/// with PUBREC again but not delivered again; [MQTT-4.3.3-12]: after PUBCOMP the same packet
/// id starts a new message.
#[tokio::test]
async fn resent_qos2_publish_before_pubrel_is_delivered_once() {
    let broker = start_broker().await;
    for version in BOTH {
        let topic = format!("exactly-once/{}", version.level());
        let mut sub = subscriber(
            broker.addr,
            version,
            &client_id("once-sub", version),
            &topic,
            QoS::AtMostOnce,
        )
        .await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("once-pub", version)).await;

        let first = publish_packet(&topic, QoS::ExactlyOnce, Some(7), b"once");
        send_publish(&mut publisher, first.clone()).await;
        assert_eq!(
            expect_ack(&mut publisher, Ack::Received, 7).await,
            ReasonCode::Success
        );
        let mut resent = first;
        resent.dup = true;
        send_publish(&mut publisher, resent).await;
        assert_eq!(
            expect_ack(&mut publisher, Ack::Received, 7).await,
            ReasonCode::Success
        );
        publisher
            .send(&Packet::PubRel(PubResponse::success(7)))
            .await;
        assert_eq!(
            expect_ack(&mut publisher, Ack::Completed, 7).await,
            ReasonCode::Success
        );
        publish_qos0(&mut publisher, &topic, "marker").await;

        let before_marker = publishes_before_marker(&mut sub, "marker").await;
        assert_eq!(
            before_marker.len(),
            1,
            "delivered exactly once, got {before_marker:?}"
        );
        assert_eq!(text(&before_marker[0]), "once");

        // The flow is complete: packet id 7 now carries a new message.
        publisher
            .publish(publish_packet(&topic, QoS::ExactlyOnce, Some(7), b"again"))
            .await;
        assert_eq!(text(&sub.expect_publish().await), "again");
    }
}

/// [MQTT-4.3.3-11]: PUBREL for a packet id the broker does not know is still answered with
/// PUBCOMP — v5 with 0x92 Packet Identifier not found — and the connection stays up.
#[tokio::test]
async fn pubrel_for_an_unknown_packet_id_gets_pubcomp() {
    let broker = start_broker().await;
    for version in BOTH {
        let mut client =
            RawClient::connect(broker.addr, version, &client_id("unknown-pubrel", version)).await;
        client
            .send(&Packet::PubRel(PubResponse::success(4242)))
            .await;
        let expected = match version {
            ProtocolVersion::V5 => ReasonCode::PacketIdentifierNotFound,
            ProtocolVersion::V311 => ReasonCode::Success,
        };
        assert_eq!(
            expect_ack(&mut client, Ack::Completed, 4242).await,
            expected
        );
        client.expect_nothing_pending().await;
    }
}

/// [MQTT-4.3.2-5]: after PUBACK, a PUBLISH reusing the packet id is a new message, DUP or not.
#[tokio::test]
async fn qos1_packet_id_reused_after_puback_is_a_new_message() {
    let broker = start_broker().await;
    for version in BOTH {
        let topic = format!("reuse/{}", version.level());
        let mut sub = subscriber(
            broker.addr,
            version,
            &client_id("reuse-sub", version),
            &topic,
            QoS::AtMostOnce,
        )
        .await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("reuse-pub", version)).await;
        publish_qos1(&mut publisher, &topic, 5, "first").await;
        let mut second = publish_packet(&topic, QoS::AtLeastOnce, Some(5), b"second");
        second.dup = true;
        publisher.publish(second).await;
        assert_eq!(text(&sub.expect_publish().await), "first");
        assert_eq!(text(&sub.expect_publish().await), "second");
    }
}
