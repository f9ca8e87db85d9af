//! Retained messages: stored, replaced and deleted by RETAIN=1 publishes, sent with RETAIN=1
//! to new subscriptions (per Retain Handling in v5), and forwarded to existing subscriptions
//! with RETAIN=0 unless Retain As Published.
//!
//! Statement numbers differ between the versions; each test names both: 3.1.1 stores
//! [MQTT-3.3.1-5], sends on subscribe with RETAIN=1 [MQTT-3.3.1-6] [MQTT-3.3.1-8], forwards with
//! RETAIN=0 [MQTT-3.3.1-9], deletes on empty payload [MQTT-3.3.1-10] [MQTT-3.3.1-11], ignores
//! RETAIN=0 [MQTT-3.3.1-12]; 5.0 stores [MQTT-3.3.1-5], deletes [MQTT-3.3.1-6] [MQTT-3.3.1-7],
//! ignores RETAIN=0 [MQTT-3.3.1-8], Retain Handling [MQTT-3.3.1-9..11], Retain As Published
//! [MQTT-3.3.1-12] [MQTT-3.3.1-13].

use std::net::SocketAddr;

use cairn::codec::{Properties, ProtocolVersion, Publish, QoS, SubscriptionOptions};

use crate::common::clients::{client_id, subscribe_granted, subscriber, text, BOTH};
use crate::common::{publish_packet, start_broker, RawClient};
use crate::support::{acknowledge, texts};

fn retained(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &str) -> Publish {
    let mut publish = publish_packet(topic, qos, packet_id, payload.as_bytes());
    publish.retain = true;
    publish
}

/// A new connection that subscribes to `filter` at `qos` and returns what arrives on subscribe
/// (after the SUBACK and before a PINGRESP), acknowledged.
async fn retained_on_subscribe(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    filter: &str,
    qos: QoS,
) -> Vec<Publish> {
    let mut sub = subscriber(addr, version, id, filter, qos).await;
    let received = sub.publishes_before_pingresp().await;
    for publish in &received {
        acknowledge(&mut sub, publish).await;
    }
    received
}

/// 3.1.1 [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8]; 5.0 [MQTT-3.3.1-5] [MQTT-3.3.1-9]: a
/// retained message is stored and sent to a later subscriber with RETAIN=1, at the lower of its
/// QoS and the granted QoS [MQTT-3.8.4-8]; a wildcard subscription gets every matching one.
#[tokio::test]
async fn retained_message_reaches_later_subscribers_with_retain_set() {
    let broker = start_broker().await;
    for version in BOTH {
        let level = version.level();
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("keeper", version)).await;
        let topic_a = format!("retained/{level}/a");
        let topic_b = format!("retained/{level}/b");
        publisher
            .publish(retained(&topic_a, QoS::AtLeastOnce, Some(1), "a1"))
            .await;
        publisher
            .publish(retained(&topic_b, QoS::ExactlyOnce, Some(2), "b1"))
            .await;

        let got = retained_on_subscribe(
            broker.addr,
            version,
            &client_id("late-1", version),
            &topic_a,
            QoS::ExactlyOnce,
        )
        .await;
        assert_eq!(texts(&got), ["a1"]);
        assert!(
            got[0].retain,
            "RETAIN=1 on a delivery caused by a new subscription"
        );
        assert_eq!(
            (got[0].qos, got[0].topic.as_str(), got[0].dup),
            (QoS::AtLeastOnce, topic_a.as_str(), false)
        );

        let got = retained_on_subscribe(
            broker.addr,
            version,
            &client_id("late-0", version),
            &topic_b,
            QoS::AtMostOnce,
        )
        .await;
        assert_eq!(texts(&got), ["b1"]);
        assert_eq!(
            (got[0].qos, got[0].retain),
            (QoS::AtMostOnce, true),
            "downgraded to the granted QoS"
        );

        let wildcard = format!("retained/{level}/+");
        let got = retained_on_subscribe(
            broker.addr,
            version,
            &client_id("late-wild", version),
            &wildcard,
            QoS::AtLeastOnce,
        )
        .await;
        let mut payloads = texts(&got);
        payloads.sort();
        assert_eq!(payloads, ["a1", "b1"]);
        assert!(got.iter().all(|publish| publish.retain));
    }
}

/// 3.1.1 [MQTT-3.3.1-5] [MQTT-3.3.1-12]; 5.0 [MQTT-3.3.1-5] [MQTT-3.3.1-8]: a new retained
/// message replaces the old one; a RETAIN=0 publish neither replaces nor removes it.
#[tokio::test]
async fn retained_message_is_replaced_but_not_by_retain_0() {
    let broker = start_broker().await;
    for version in BOTH {
        let topic = format!("replaced/{}", version.level());
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("replacer", version)).await;
        publisher
            .publish(retained(&topic, QoS::AtLeastOnce, Some(1), "v1"))
            .await;
        publisher
            .publish(retained(&topic, QoS::AtMostOnce, None, "v2"))
            .await;
        publisher
            .publish(publish_packet(
                &topic,
                QoS::AtLeastOnce,
                Some(2),
                b"not retained",
            ))
            .await;

        let got = retained_on_subscribe(
            broker.addr,
            version,
            &client_id("replaced-sub", version),
            &topic,
            QoS::AtLeastOnce,
        )
        .await;
        assert_eq!(texts(&got), ["v2"]);
        assert_eq!((got[0].retain, got[0].qos), (true, QoS::AtMostOnce));
    }
}

/// 3.1.1 [MQTT-3.3.1-10] [MQTT-3.3.1-11]; 5.0 [MQTT-3.3.1-6] [MQTT-3.3.1-7]: a RETAIN=1 publish
/// with an empty payload is forwarded normally (RETAIN=0) to existing subscribers and removes
/// the retained message; it is not stored itself.
#[tokio::test]
async fn empty_retained_payload_deletes_the_retained_message() {
    let broker = start_broker().await;
    for version in BOTH {
        let topic = format!("deleted/{}", version.level());
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("deleter", version)).await;
        publisher
            .publish(retained(&topic, QoS::AtLeastOnce, Some(1), "soon gone"))
            .await;
        let mut existing = subscriber(
            broker.addr,
            version,
            &client_id("existing", version),
            &topic,
            QoS::AtMostOnce,
        )
        .await;
        assert_eq!(
            texts(&existing.publishes_before_pingresp().await),
            ["soon gone"]
        );

        publisher
            .publish(retained(&topic, QoS::AtLeastOnce, Some(2), ""))
            .await;
        let forwarded = existing.expect_publish().await;
        assert_eq!(
            (forwarded.payload.len(), forwarded.retain),
            (0, false),
            "processed normally"
        );

        let got = retained_on_subscribe(
            broker.addr,
            version,
            &client_id("after-delete", version),
            &topic,
            QoS::AtLeastOnce,
        )
        .await;
        assert!(
            got.is_empty(),
            "nothing retained after the delete, got {got:?}"
        );
    }
}

/// 3.1.1 [MQTT-3.3.1-9]; 5.0 [MQTT-3.3.1-12] [MQTT-3.3.1-13]: existing subscriptions receive a
/// retained publish with RETAIN=0, except v5 subscriptions with Retain As Published, which see
/// the flag as published.
#[tokio::test]
async fn live_deliveries_clear_retain_unless_retain_as_published() {
    let broker = start_broker().await;
    for version in BOTH {
        let topic = format!("live/{}", version.level());
        let mut plain = subscriber(
            broker.addr,
            version,
            &client_id("plain", version),
            &topic,
            QoS::AtMostOnce,
        )
        .await;
        let mut as_published =
            RawClient::connect(broker.addr, version, &client_id("as-published", version)).await;
        let rap = SubscriptionOptions {
            retain_as_published: version == ProtocolVersion::V5,
            ..SubscriptionOptions::with_qos(QoS::AtMostOnce)
        };
        subscribe_granted(&mut as_published, 1, &topic, rap, Properties::default()).await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("live-pub", version)).await;
        publisher
            .publish(retained(&topic, QoS::AtMostOnce, None, "flagged"))
            .await;
        publisher
            .publish(publish_packet(&topic, QoS::AtMostOnce, None, b"unflagged"))
            .await;

        let got = plain.expect_publish().await;
        assert_eq!((text(&got), got.retain), ("flagged".into(), false));
        let got = as_published.expect_publish().await;
        assert_eq!(
            (text(&got), got.retain),
            ("flagged".into(), version == ProtocolVersion::V5)
        );
        let got = as_published.expect_publish().await;
        assert_eq!((text(&got), got.retain), ("unflagged".into(), false));
    }
}

/// [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] [MQTT-3.8.4-4] (v5 Retain Handling): 0 sends
/// retained messages at every subscribe, re-subscribes included; 1 only when the subscription
/// is new; 2 never.
#[tokio::test]
async fn retain_handling_chooses_when_retained_messages_are_sent() {
    let broker = start_broker().await;
    let version = ProtocolVersion::V5;
    let mut publisher = RawClient::connect(broker.addr, version, "handling-pub").await;
    publisher
        .publish(retained("handling/t", QoS::AtLeastOnce, Some(1), "state"))
        .await;
    let mut sub = RawClient::connect(broker.addr, version, "handling-sub").await;
    let handling = |retain_handling| SubscriptionOptions {
        retain_handling,
        ..SubscriptionOptions::with_qos(QoS::AtMostOnce)
    };
    let cases = [
        ("handling/t", 0, true, "0: at subscribe"),
        (
            "handling/t",
            0,
            true,
            "0: again when the subscription exists",
        ),
        ("handling/+", 1, true, "1: the subscription is new"),
        ("handling/+", 1, false, "1: the subscription exists"),
        (
            "handling/#",
            2,
            false,
            "2: never, even for a new subscription",
        ),
        ("handling/#", 0, true, "back to 0 on the same filter"),
    ];
    for (packet_id, (filter, retain_handling, sent, why)) in (1..).zip(cases) {
        subscribe_granted(
            &mut sub,
            packet_id,
            filter,
            handling(retain_handling),
            Properties::default(),
        )
        .await;
        let got = sub.publishes_before_pingresp().await;
        let expected: &[&str] = if sent { &["state"] } else { &[] };
        assert_eq!(texts(&got), expected, "Retain Handling {why}");
        assert!(got.iter().all(|publish| publish.retain));
    }
}
