//! Subscriptions as a session holds them: overlapping filters give one copy at the highest QoS
//! with every Subscription Identifier, subscribing again replaces, UNSUBSCRIBE stops delivery,
//! invalid filters are refused one by one, and No Local keeps a client's own messages away.

use cairn::codec::{
    Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions,
    Unsubscribe,
};

use crate::common::clients::{
    client_id, granted, publish_qos1, subscribe_granted, subscriber, text, BOTH,
};
use crate::common::{publish_packet, start_broker, RawClient};
use crate::support::{acknowledge, publish_qos0, publishes_before_marker, texts, with_identifier};

/// A Subscription Identifier in v5; 3.1.1 has no properties.
fn identifier_for(version: ProtocolVersion, identifier: u32) -> Properties {
    match version {
        ProtocolVersion::V5 => with_identifier(identifier),
        ProtocolVersion::V311 => Properties::default(),
    }
}

/// [MQTT-3.3.4-2] (3.1.1: [MQTT-3.3.5-1]) [MQTT-3.3.4-3] [MQTT-3.3.4-4]: a message matching
/// three of a client's subscriptions arrives once, at the highest granted QoS, carrying the
/// identifiers of the subscriptions that have one (v5).
#[tokio::test]
async fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    let broker = start_broker().await;
    for version in BOTH {
        let level = version.level();
        let mut sub =
            RawClient::connect(broker.addr, version, &client_id("overlap", version)).await;
        let plus = format!("overlap/{level}/+");
        let hash = format!("overlap/{level}/#");
        let exact = format!("overlap/{level}/a");
        subscribe_granted(
            &mut sub,
            1,
            &plus,
            SubscriptionOptions::with_qos(QoS::AtMostOnce),
            identifier_for(version, 1),
        )
        .await;
        subscribe_granted(
            &mut sub,
            2,
            &hash,
            SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            identifier_for(version, 2),
        )
        .await;
        subscribe_granted(
            &mut sub,
            3,
            &exact,
            SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            Properties::default(),
        )
        .await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("overlap-pub", version)).await;

        publisher
            .publish(publish_packet(
                &exact,
                QoS::ExactlyOnce,
                Some(1),
                b"three matches",
            ))
            .await;
        let publish = sub.expect_publish().await;
        assert_eq!(
            (text(&publish), publish.qos),
            ("three matches".into(), QoS::ExactlyOnce)
        );
        let mut ids = publish.properties.subscription_identifiers.clone();
        ids.sort_unstable();
        let expected_ids = match version {
            ProtocolVersion::V5 => vec![1, 2],
            ProtocolVersion::V311 => vec![],
        };
        assert_eq!(
            ids, expected_ids,
            "every matching subscription's identifier [MQTT-3.3.4-3]"
        );
        acknowledge(&mut sub, &publish).await;
        sub.expect_nothing_pending().await; // one copy only

        let sibling = format!("overlap/{level}/b");
        publish_qos1(&mut publisher, &sibling, 2, "two matches").await;
        let publish = sub.expect_publish().await;
        assert_eq!(
            (text(&publish), publish.qos),
            ("two matches".into(), QoS::AtLeastOnce),
            "min(1, max(0, 2))"
        );
        acknowledge(&mut sub, &publish).await;
        sub.expect_nothing_pending().await;
    }
}

/// [MQTT-3.8.4-3]: subscribing again to an identical filter replaces the subscription — its QoS
/// and (v5) its Subscription Identifier — rather than adding a second one.
#[tokio::test]
async fn subscribing_again_replaces_the_subscription() {
    let broker = start_broker().await;
    for version in BOTH {
        let topic = format!("replace/{}", version.level());
        let mut sub =
            RawClient::connect(broker.addr, version, &client_id("replace", version)).await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("replace-pub", version)).await;
        for (packet_id, qos) in [
            (1, QoS::AtMostOnce),
            (2, QoS::AtLeastOnce),
            (3, QoS::AtMostOnce),
        ] {
            subscribe_granted(
                &mut sub,
                packet_id,
                &topic,
                SubscriptionOptions::with_qos(qos),
                identifier_for(version, u32::from(packet_id)),
            )
            .await;
            publisher
                .publish(publish_packet(
                    &topic,
                    QoS::ExactlyOnce,
                    Some(packet_id),
                    b"after replace",
                ))
                .await;
            let publish = sub.expect_publish().await;
            assert_eq!(publish.qos, qos, "the replacing subscription's QoS");
            if version == ProtocolVersion::V5 {
                assert_eq!(
                    publish.properties.subscription_identifiers,
                    vec![u32::from(packet_id)]
                );
            }
            acknowledge(&mut sub, &publish).await;
            sub.expect_nothing_pending().await;
        }
    }
}

/// [MQTT-3.10.4-1] [MQTT-3.10.4-2] [MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.11.3-1]: UNSUBSCRIBE
/// removes exactly the named filter and delivery stops; UNSUBACK echoes the packet id and, in v5,
/// reports 0x00 per removed filter, 0x11 for one that did not exist and 0x8F for an invalid one.
#[tokio::test]
async fn unsubscribe_stops_delivery_and_reports_per_filter() {
    let broker = start_broker().await;
    for version in BOTH {
        let level = version.level();
        let gone = format!("unsub/{level}/gone");
        let kept = format!("unsub/{level}/kept");
        let mut sub = subscriber(
            broker.addr,
            version,
            &client_id("unsub", version),
            &gone,
            QoS::AtLeastOnce,
        )
        .await;
        subscribe_granted(
            &mut sub,
            2,
            &kept,
            SubscriptionOptions::with_qos(QoS::AtMostOnce),
            Properties::default(),
        )
        .await;

        sub.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: 7,
            properties: Properties::default(),
            filters: vec![
                gone.clone(),
                format!("unsub/{level}/never"),
                format!("unsub/{level}/#/bad"),
            ],
        }))
        .await;
        let unsuback = match sub.recv().await {
            Packet::UnsubAck(unsuback) => unsuback,
            other => panic!("expected UNSUBACK, got {other:?}"),
        };
        assert_eq!(unsuback.packet_id, 7, "UNSUBACK packet id [MQTT-3.10.4-5]");
        let expected = match version {
            ProtocolVersion::V5 => vec![
                ReasonCode::Success,
                ReasonCode::NoSubscriptionExisted,
                ReasonCode::TopicFilterInvalid,
            ],
            ProtocolVersion::V311 => vec![],
        };
        assert_eq!(unsuback.reasons, expected);

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("unsub-pub", version)).await;
        publish_qos1(&mut publisher, &gone, 1, "after unsubscribe").await;
        publish_qos0(&mut publisher, &kept, "marker").await;
        let before = publishes_before_marker(&mut sub, "marker").await;
        assert!(before.is_empty(), "delivered after UNSUBSCRIBE: {before:?}");
    }
}

/// [MQTT-3.8.4-5] [MQTT-3.8.4-6] [MQTT-3.9.3-1] (3.1.1: [MQTT-3.8.4-4] [MQTT-3.8.4-5]): in one
/// SUBSCRIBE, invalid filters [MQTT-4.7.1-2] [MQTT-4.7.1-3] are refused — 0x8F in v5, 0x80 in
/// 3.1.1 — and the valid one between them is granted and delivers.
#[tokio::test]
async fn invalid_filters_are_refused_and_valid_ones_granted() {
    let broker = start_broker().await;
    for version in BOTH {
        let level = version.level();
        let valid = format!("mixed/{level}/+");
        let mut sub =
            RawClient::connect(broker.addr, version, &client_id("mixed-filters", version)).await;
        let filters = [
            format!("mixed/{level}/#/x"),
            valid.clone(),
            format!("mixed/{level}/sp+rt"),
        ];
        sub.send(&Packet::Subscribe(Subscribe {
            packet_id: 9,
            properties: Properties::default(),
            filters: filters
                .iter()
                .map(|filter| {
                    (
                        filter.clone(),
                        SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                    )
                })
                .collect(),
        }))
        .await;
        let suback = match sub.recv().await {
            Packet::SubAck(suback) => suback,
            other => panic!("expected SUBACK, got {other:?}"),
        };
        let refused = match version {
            ProtocolVersion::V5 => ReasonCode::TopicFilterInvalid,
            ProtocolVersion::V311 => ReasonCode::UnspecifiedError,
        };
        assert_eq!(suback.packet_id, 9);
        assert_eq!(
            suback.reasons,
            vec![refused, granted(QoS::AtLeastOnce), refused]
        );

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("mixed-pub", version)).await;
        publish_qos1(&mut publisher, &format!("mixed/{level}/ok"), 1, "granted").await;
        let publish = sub.expect_publish().await;
        assert_eq!(
            (text(&publish), publish.qos),
            ("granted".into(), QoS::AtLeastOnce)
        );
        acknowledge(&mut sub, &publish).await;
        sub.expect_nothing_pending().await;
    }
}

/// [MQTT-3.8.3-3]: with No Local, a client's own messages are not sent back to it; other
/// clients' messages are, and other subscribers still get the client's own.
#[tokio::test]
async fn no_local_keeps_a_clients_own_messages_away() {
    let broker = start_broker().await;
    let version = ProtocolVersion::V5;
    let mut talker = RawClient::connect(broker.addr, version, "no-local").await;
    let options = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    };
    subscribe_granted(&mut talker, 1, "no-local/t", options, Properties::default()).await;
    let mut listener = subscriber(
        broker.addr,
        version,
        "listener",
        "no-local/t",
        QoS::AtMostOnce,
    )
    .await;
    let mut other = RawClient::connect(broker.addr, version, "other").await;

    // QoS 1: its PUBACK says it was routed before "other" is sent (two clients' messages have
    // no order of their own, and "other" marks the end of what each receiver looks at).
    publish_qos1(&mut talker, "no-local/t", 2, "own").await;
    publish_qos0(&mut other, "no-local/t", "other").await;

    assert!(
        publishes_before_marker(&mut talker, "other")
            .await
            .is_empty(),
        "own message came back"
    );
    let heard = publishes_before_marker(&mut listener, "other").await;
    assert_eq!(texts(&heard), ["own"]);
}
