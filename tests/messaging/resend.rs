//! Outbound QoS 1/2 with a persistent session: what the broker sent and the subscriber did not
//! acknowledge is sent again, after a reconnect and only then, with DUP=1 and the original
//! packet identifiers, in the original order; a message awaiting PUBCOMP gets PUBREL again.

use cairn::codec::{
    Packet, Properties, ProtocolVersion, PubResponse, QoS, ReasonCode, SubscriptionOptions,
};

use crate::common::clients::{
    client_id, connect_expecting_session, new_session, persistent_connect, publish_qos1, resume,
    subscribe_granted, subscribe_ok, text, BOTH,
};
use crate::common::{publish_packet, start_broker, RawClient};
use crate::support::acknowledge;

/// [MQTT-4.4.0-1] [MQTT-3.3.1-1] (order: section 4.6): unacknowledged QoS 1 deliveries are resent on
/// reconnect (Clean Start 0 / Clean Session 0) with DUP=1, their original packet ids and order;
/// once acknowledged they are not sent again.
#[tokio::test]
async fn unacknowledged_qos1_is_resent_with_dup_after_reconnect() {
    let broker = start_broker().await;
    for version in BOTH {
        let id = client_id("resend-1", version);
        let topic = format!("resend/qos1/{}", version.level());
        let mut sub = new_session(broker.addr, version, &id).await;
        subscribe_granted(
            &mut sub,
            1,
            &topic,
            SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            Properties::default(),
        )
        .await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("resend-1-pub", version)).await;
        for (n, payload) in ["r1", "r2", "r3"].into_iter().enumerate() {
            publish_qos1(&mut publisher, &topic, n as u16 + 1, payload).await;
        }
        let mut first_sends = Vec::new();
        for _ in 0..3 {
            let publish = sub.expect_publish().await;
            assert!(!publish.dup, "a first delivery has DUP=0 [MQTT-3.3.1-3]");
            first_sends.push(publish);
        }
        drop(sub); // network failure: no DISCONNECT, no PUBACK

        let mut sub = resume(broker.addr, version, &id).await;
        for original in &first_sends {
            let again = sub.expect_publish().await;
            assert!(again.dup, "a resend has DUP=1 [MQTT-3.3.1-1]");
            assert_eq!(
                again.packet_id, original.packet_id,
                "original packet id [MQTT-4.4.0-1]"
            );
            assert_eq!(
                (again.qos, text(&again), &again.topic),
                (QoS::AtLeastOnce, text(original), &original.topic)
            );
        }
        for original in &first_sends {
            acknowledge(&mut sub, original).await;
        }
        sub.expect_nothing_pending().await;
        drop(sub);

        let mut sub = resume(broker.addr, version, &id).await;
        sub.expect_nothing_pending().await;
    }
}

/// [MQTT-4.4.0-1] [MQTT-4.3.3-6]: a QoS 2 delivery is resent as PUBLISH with DUP=1 while it
/// awaits PUBREC; once PUBREC arrived, a reconnect resends PUBREL (never the PUBLISH again) and
/// PUBCOMP ends the flow.
#[tokio::test]
async fn qos2_resends_publish_before_pubrec_and_pubrel_after() {
    let broker = start_broker().await;
    for version in BOTH {
        let id = client_id("resend-2", version);
        let topic = format!("resend/qos2/{}", version.level());
        let mut sub = new_session(broker.addr, version, &id).await;
        subscribe_granted(
            &mut sub,
            1,
            &topic,
            SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            Properties::default(),
        )
        .await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("resend-2-pub", version)).await;
        publisher
            .publish(publish_packet(
                &topic,
                QoS::ExactlyOnce,
                Some(1),
                b"exactly",
            ))
            .await;
        let first = sub.expect_publish().await;
        let packet_id = first.packet_id.expect("QoS 2 has a packet id");
        assert!(!first.dup);
        drop(sub); // lost before PUBREC

        let mut sub = resume(broker.addr, version, &id).await;
        let again = sub.expect_publish().await;
        assert_eq!(
            (again.dup, again.packet_id, again.qos),
            (true, Some(packet_id), QoS::ExactlyOnce)
        );
        assert_eq!(text(&again), "exactly");
        sub.send(&Packet::PubRec(PubResponse::success(packet_id)))
            .await;
        sub.expect_pubrel(packet_id).await;
        drop(sub); // lost before PUBCOMP

        let mut sub = resume(broker.addr, version, &id).await;
        sub.expect_pubrel(packet_id).await;
        sub.send(&Packet::PubComp(PubResponse::success(packet_id)))
            .await;
        sub.expect_nothing_pending().await;
        drop(sub);

        let mut sub = resume(broker.addr, version, &id).await;
        sub.expect_nothing_pending().await;
    }
}

/// [MQTT-4.4.0-2] [MQTT-4.3.3-4]: a PUBREC with a reason of 0x80 or more acknowledges the
/// PUBLISH for good: no PUBREL follows and nothing is resent after a reconnect.
#[tokio::test]
async fn pubrec_with_an_error_reason_ends_the_flow() {
    let broker = start_broker().await;
    let version = ProtocolVersion::V5;
    let mut sub = new_session(broker.addr, version, "refuser").await;
    subscribe_granted(
        &mut sub,
        1,
        "refused/t",
        SubscriptionOptions::with_qos(QoS::ExactlyOnce),
        Properties::default(),
    )
    .await;
    let mut publisher = RawClient::connect(broker.addr, version, "refused-pub").await;
    publisher
        .publish(publish_packet(
            "refused/t",
            QoS::ExactlyOnce,
            Some(1),
            b"unwanted",
        ))
        .await;
    let publish = sub.expect_publish().await;
    let packet_id = publish.packet_id.expect("QoS 2 has a packet id");
    let refusal = PubResponse {
        reason: ReasonCode::UnspecifiedError,
        ..PubResponse::success(packet_id)
    };
    sub.send(&Packet::PubRec(refusal)).await;
    sub.expect_nothing_pending().await; // no PUBREL
    drop(sub);

    let mut sub = resume(broker.addr, version, "refuser").await;
    sub.expect_nothing_pending().await; // no resend
}

/// A subscriber that leaves 5 QoS 1 deliveries unacknowledged, for the resend tests below: its
/// identifier, topic and the 5 payloads "m0".."m4" as first sent (64 bytes each).
async fn five_unacknowledged(addr: std::net::SocketAddr, name: &str) -> (String, Vec<String>) {
    let version = ProtocolVersion::V5;
    let id = client_id(name, version);
    let topic = format!("resend/{name}");
    let mut sub = new_session(addr, version, &id).await;
    subscribe_ok(&mut sub, 1, &topic, QoS::AtLeastOnce).await;
    let mut publisher =
        RawClient::connect(addr, version, &client_id(&format!("{name}-pub"), version)).await;
    let payloads: Vec<String> = (0..5).map(|n| format!("m{n}{}", "x".repeat(62))).collect();
    for (n, payload) in payloads.iter().enumerate() {
        publish_qos1(&mut publisher, &topic, n as u16 + 1, payload).await;
    }
    for _ in 0..5 {
        sub.expect_publish().await;
    }
    drop(sub); // no PUBACK, no DISCONNECT
    (id, payloads)
}

/// [MQTT-3.3.4-9] [MQTT-4.4.0-1] A client that comes back with a lower Receive Maximum gets no
/// more resends at once than it allows now; each PUBACK lets the next go, in the original
/// order, and a new message waits behind them all.
#[tokio::test]
async fn resends_after_a_reconnect_keep_to_the_new_receive_maximum() {
    let broker = start_broker().await;
    let (id, payloads) = five_unacknowledged(broker.addr, "resend-rm").await;
    let mut connect = persistent_connect(ProtocolVersion::V5, &id);
    connect.properties.receive_maximum = Some(2);
    let mut sub = connect_expecting_session(broker.addr, connect, true).await;
    let mut open = vec![sub.expect_publish().await, sub.expect_publish().await];
    sub.expect_nothing_pending().await;
    let mut seen = Vec::new();
    while !open.is_empty() {
        let oldest = open.remove(0);
        acknowledge(&mut sub, &oldest).await;
        seen.push(text(&oldest));
        if seen.len() + open.len() < payloads.len() {
            open.push(sub.expect_publish().await);
        }
        sub.expect_nothing_pending().await;
        assert!(open.len() <= 2, "{} unacknowledged", open.len());
    }
    assert_eq!(seen, payloads, "all resent, in order");
}

/// [MQTT-3.1.2-24] [MQTT-3.1.2-25] A client that comes back with a Maximum Packet Size too
/// small for a message it left unacknowledged does not get it: the message is completed as if
/// sent, the others are resent, and it is not sent on the next connection either.
#[tokio::test]
async fn a_resend_larger_than_the_new_maximum_packet_size_is_completed_unsent() {
    let broker = start_broker().await;
    let (id, _) = five_unacknowledged(broker.addr, "resend-mps").await;
    let mut connect = persistent_connect(ProtocolVersion::V5, &id);
    // Each resend is about 90 bytes: none fits in 60.
    connect.properties.maximum_packet_size = Some(60);
    let mut sub = connect_expecting_session(broker.addr, connect, true).await;
    sub.expect_nothing_pending().await;
    drop(sub);
    let mut sub = resume(broker.addr, ProtocolVersion::V5, &id).await;
    sub.expect_nothing_pending().await;
}
