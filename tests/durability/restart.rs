//! Graceful restart of a library broker on the same data directory: persistent sessions keep
//! their subscriptions and queued QoS 1/2 messages in order, retained messages survive, the
//! outbound inflight window is resent with DUP and its packet identifiers (PUBREL for messages
//! already PUBREC'd, never the message again), and inbound QoS 2 state keeps a resent PUBLISH
//! from being routed twice (design.md promises 1 and 2).

use cairn::codec::{Packet, ProtocolVersion, PubResponse, QoS, ReasonCode};

use crate::common::clients::{client_id, new_session, resume, subscribe_ok, text, BOTH};
use crate::common::{connect_packet, publish_packet, start_broker, stop, RawClient, TestBroker};
use crate::support::{
    expect_message, expect_shutdown_close, message, publish, receive_until_marker,
};

/// Promise 2, [MQTT-3.2.2-3] (5.0) / [MQTT-3.2.2-2] (3.1.1): a v5 session (expiry 300) and a
/// 3.1.1 Clean Session 0 session, both offline, resume after a graceful restart with Session
/// Present 1, receive their queued QoS 1 and QoS 2 messages in publish order with their QoS
/// ([MQTT-4.6.0-6] (5.0) / [MQTT-4.6.0-5] (3.1.1): ordered topics), and are still subscribed.
/// Retained messages survive, the last one of a topic replacing the earlier [MQTT-3.3.1-5],
/// and are sent with RETAIN 1 to a new subscription [MQTT-3.3.1-9]. Acks given after the
/// restart survive a second restart: nothing is sent again.
#[tokio::test]
async fn sessions_queues_subscriptions_and_retained_survive_a_graceful_restart() {
    let broker = start_broker().await;
    let topic = "restart/queued";
    for version in BOTH {
        let id = client_id("keeper", version);
        let mut client = new_session(broker.addr, version, &id).await;
        subscribe_ok(&mut client, 1, topic, QoS::ExactlyOnce).await;
        client.go_offline().await;
    }
    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V5, "restart-pub").await;
    let queued = [
        ("one", QoS::AtLeastOnce),
        ("two", QoS::ExactlyOnce),
        ("three", QoS::AtLeastOnce),
        ("four", QoS::ExactlyOnce),
    ];
    for (packet_id, (payload, qos)) in (1..).zip(queued) {
        let reason = publish(&mut publisher, message(topic, qos, packet_id, payload)).await;
        assert_eq!(reason, ReasonCode::Success, "two sessions subscribe");
    }
    for (packet_id, payload) in [(10, "old reading"), (11, "last reading")] {
        let mut retained = message("restart/retained", QoS::AtLeastOnce, packet_id, payload);
        retained.retain = true;
        publish(&mut publisher, retained).await;
    }

    let broker = stop(broker).await.start().await;
    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V5, "restart-pub").await;
    let reason = publish(
        &mut publisher,
        message(topic, QoS::AtLeastOnce, 1, "after restart"),
    )
    .await;
    assert_eq!(reason, ReasonCode::Success, "the subscriptions survived");
    for version in BOTH {
        let id = client_id("keeper", version);
        let mut client = resume(broker.addr, version, &id).await;
        let received = receive_until_marker(&mut client, topic, "after restart").await;
        let received: Vec<(String, QoS, bool)> = received
            .iter()
            .map(|publish| (text(publish), publish.qos, publish.dup))
            .collect();
        let expected: Vec<(String, QoS, bool)> = queued
            .iter()
            .map(|(payload, qos)| (payload.to_string(), *qos, false))
            .collect();
        assert_eq!(received, expected, "{id}: the queued messages, in order");
        client.go_offline().await;
    }
    for version in BOTH {
        let mut watcher = RawClient::connect(
            broker.addr,
            version,
            &client_id("retained-watcher", version),
        )
        .await;
        subscribe_ok(&mut watcher, 1, "restart/retained", QoS::AtLeastOnce).await;
        let retained = expect_message(&mut watcher, "last reading", QoS::AtLeastOnce, false).await;
        assert!(retained.retain, "a retained message is sent with RETAIN 1");
        watcher.acknowledge(&retained).await;
        watcher.expect_nothing_pending().await;
    }

    let broker = stop(broker).await.start().await;
    for version in BOTH {
        let id = client_id("keeper", version);
        let mut client = resume(broker.addr, version, &id).await;
        client.expect_nothing_pending().await;
    }
    broker.shutdown().await;
}

/// Promise 1, [MQTT-4.4.0-1]: the subscriber received a QoS 1 and a QoS 2 message without
/// acknowledging them and PUBREC'd a third; after a graceful restart (it was connected: v5 is
/// told 0x8B) it resumes and the broker resends PUBREL for the third, whose PUBLISH is never
/// sent again ([MQTT-4.3.3-6] (5.0) / [MQTT-4.3.3-1] (3.1.1)), then, in the original order
/// [MQTT-4.6.0-1], both PUBLISHes with DUP 1 [MQTT-3.3.1-1] and their packet identifiers. Once
/// the flows complete nothing is pending, even after another restart.
#[tokio::test]
async fn inflight_window_is_resent_with_dup_and_same_ids_after_restart() {
    let broker = start_broker().await;
    let mut subscribers = Vec::new();
    for version in BOTH {
        let id = client_id("inflight", version);
        let mut subscriber = new_session(broker.addr, version, &id).await;
        subscribe_ok(&mut subscriber, 1, "inflight/+", QoS::ExactlyOnce).await;
        subscribers.push(subscriber);
    }
    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V5, "inflight-pub").await;
    publish(
        &mut publisher,
        message("inflight/a", QoS::AtLeastOnce, 1, "unacked qos1"),
    )
    .await;
    publish(
        &mut publisher,
        message("inflight/b", QoS::ExactlyOnce, 2, "unacked qos2"),
    )
    .await;
    publish(
        &mut publisher,
        message("inflight/c", QoS::ExactlyOnce, 3, "received qos2"),
    )
    .await;
    let mut windows = Vec::new();
    for subscriber in &mut subscribers {
        let first = expect_message(subscriber, "unacked qos1", QoS::AtLeastOnce, false).await;
        let second = expect_message(subscriber, "unacked qos2", QoS::ExactlyOnce, false).await;
        let third = expect_message(subscriber, "received qos2", QoS::ExactlyOnce, false).await;
        let third_id = third.packet_id.expect("QoS 2 packet id");
        subscriber
            .send(&Packet::PubRec(PubResponse::success(third_id)))
            .await;
        subscriber.expect_pubrel(third_id).await;
        windows.push((first, second, third_id));
    }

    let broker = stop(broker).await.start().await;
    for (mut subscriber, (first, second, third_id)) in subscribers.into_iter().zip(windows) {
        expect_shutdown_close(&mut subscriber).await;
        let version = subscriber.version;
        let id = client_id("inflight", version);
        let mut subscriber = resume(broker.addr, version, &id).await;
        subscriber.expect_pubrel(third_id).await;
        let resent_first =
            expect_message(&mut subscriber, "unacked qos1", QoS::AtLeastOnce, true).await;
        assert_eq!(
            resent_first.packet_id, first.packet_id,
            "{id}: same packet id"
        );
        assert_eq!(resent_first.topic, "inflight/a");
        let resent_second =
            expect_message(&mut subscriber, "unacked qos2", QoS::ExactlyOnce, true).await;
        assert_eq!(
            resent_second.packet_id, second.packet_id,
            "{id}: same packet id"
        );
        subscriber.expect_nothing_pending().await;

        subscriber.acknowledge(&resent_first).await;
        subscriber.acknowledge(&resent_second).await;
        subscriber
            .send(&Packet::PubComp(PubResponse::success(third_id)))
            .await;
        subscriber.expect_nothing_pending().await;
        subscriber.go_offline().await;
    }

    nothing_pending_after_a_restart(broker, "inflight").await;
}

/// [MQTT-4.6.0-4]: a subscriber got three QoS 2 messages and PUBREC'd the third, then the
/// first. When it resumes its session, and again after a graceful restart, the broker resends
/// the PUBRELs in the order their PUBRECs came, the third's, then the first's, and then the
/// second's PUBLISH (DUP, same identifier). Once the flows complete, nothing is pending, even
/// after another restart.
#[tokio::test]
async fn pubrels_are_resent_in_the_order_their_pubrecs_came() {
    let broker = start_broker().await;
    let mut subscribers = Vec::new();
    for version in BOTH {
        let id = client_id("pubrec-order", version);
        let subscriber = new_session(broker.addr, version, &id).await;
        subscribers.push(subscriber);
    }
    let windows = pubrec_out_of_order(broker.addr, "pubrec-order", &mut subscribers).await;

    let mut resumed = Vec::new();
    for (mut subscriber, ids) in subscribers.into_iter().zip(&windows) {
        subscriber.go_offline().await;
        let (version, id) = (
            subscriber.version,
            client_id("pubrec-order", subscriber.version),
        );
        let mut subscriber = resume(broker.addr, version, &id).await;
        expect_pubrec_order(&mut subscriber, ids, "after resuming").await;
        resumed.push(subscriber);
    }
    restart_and_complete(broker, "pubrec-order", resumed, &windows).await;
}

/// Subscribes each of `subscribers` to `<prefix>/t` at QoS 2, publishes "first", "second"
/// and "third" there, and has each subscriber PUBREC the third, then the first (each PUBREL
/// comes at once). Returns each subscriber's three packet identifiers.
async fn pubrec_out_of_order(
    addr: std::net::SocketAddr,
    prefix: &str,
    subscribers: &mut [RawClient],
) -> Vec<Vec<u16>> {
    let topic = format!("{prefix}/t");
    for subscriber in subscribers.iter_mut() {
        subscribe_ok(subscriber, 1, &topic, QoS::ExactlyOnce).await;
    }
    let mut publisher =
        RawClient::connect(addr, ProtocolVersion::V5, &format!("{prefix}-pub")).await;
    for (packet_id, payload) in [(1, "first"), (2, "second"), (3, "third")] {
        publish(
            &mut publisher,
            message(&topic, QoS::ExactlyOnce, packet_id, payload),
        )
        .await;
    }
    let mut windows = Vec::new();
    for subscriber in subscribers.iter_mut() {
        let mut ids = Vec::new();
        for payload in ["first", "second", "third"] {
            let received = expect_message(subscriber, payload, QoS::ExactlyOnce, false).await;
            ids.push(received.packet_id.expect("QoS 2 packet id"));
        }
        for packet_id in [ids[2], ids[0]] {
            subscriber
                .send(&Packet::PubRec(PubResponse::success(packet_id)))
                .await;
            subscriber.expect_pubrel(packet_id).await;
        }
        windows.push(ids);
    }
    windows
}

/// What a subscriber of [`pubrec_out_of_order`] gets when its session resumes: PUBREL for the
/// third, then for the first, then the second message again.
async fn expect_pubrec_order(subscriber: &mut RawClient, ids: &[u16], when: &str) {
    subscriber.expect_pubrel(ids[2]).await;
    subscriber.expect_pubrel(ids[0]).await;
    let resent = expect_message(subscriber, "second", QoS::ExactlyOnce, true).await;
    assert_eq!(resent.packet_id, Some(ids[1]), "{when}: same packet id");
    subscriber.expect_nothing_pending().await;
}

/// Restarts `broker` under the connected `subscribers` of [`pubrec_out_of_order`]: each
/// resumes and gets the same order again, then completes its three flows; after another
/// restart nothing is pending.
async fn restart_and_complete(
    broker: TestBroker,
    prefix: &str,
    subscribers: Vec<RawClient>,
    windows: &[Vec<u16>],
) {
    let broker = stop(broker).await.start().await;
    for (mut subscriber, ids) in subscribers.into_iter().zip(windows) {
        expect_shutdown_close(&mut subscriber).await;
        let (version, id) = (subscriber.version, client_id(prefix, subscriber.version));
        let mut subscriber = resume(broker.addr, version, &id).await;
        expect_pubrec_order(&mut subscriber, ids, "after a restart").await;
        subscriber
            .send(&Packet::PubRec(PubResponse::success(ids[1])))
            .await;
        subscriber.expect_pubrel(ids[1]).await;
        for &packet_id in ids {
            subscriber
                .send(&Packet::PubComp(PubResponse::success(packet_id)))
                .await;
        }
        subscriber.expect_nothing_pending().await;
        subscriber.go_offline().await;
    }

    nothing_pending_after_a_restart(broker, prefix).await;
}

/// Restarts `broker`; the sessions of `prefix` (both versions) resume with nothing pending.
async fn nothing_pending_after_a_restart(broker: TestBroker, prefix: &str) {
    let broker = stop(broker).await.start().await;
    for version in BOTH {
        let mut subscriber = resume(broker.addr, version, &client_id(prefix, version)).await;
        subscriber.expect_nothing_pending().await;
    }
    broker.shutdown().await;
}

/// Promise 1, [MQTT-4.3.3-10] (5.0) / [MQTT-4.3.3-2] (3.1.1): a publisher with a persistent
/// session got PUBREC for a QoS 2 message; after a graceful restart it resumes (Session
/// Present 1) and resends the PUBLISH with DUP 1 [MQTT-4.4.0-1]: the broker answers PUBREC
/// again but does not route it a second time, and the PUBREL gets PUBCOMP Success (v5: not
/// 0x92, the identifier is still known) [MQTT-4.3.3-11]. The subscriber gets it exactly once:
/// the next message it receives is the marker published afterwards.
#[tokio::test]
async fn inbound_qos2_survives_restart_and_is_not_routed_twice() {
    let broker = start_broker().await;
    for version in BOTH {
        let mut subscriber =
            new_session(broker.addr, version, &client_id("once-sub", version)).await;
        subscribe_ok(&mut subscriber, 1, "once/+", QoS::ExactlyOnce).await;
        subscriber.go_offline().await;
    }
    for version in BOTH {
        let mut publisher =
            new_session(broker.addr, version, &client_id("once-pub", version)).await;
        publisher
            .send(&Packet::Publish(message(
                &format!("once/{}", version.level()),
                QoS::ExactlyOnce,
                7,
                "exactly once",
            )))
            .await;
        match publisher.recv().await {
            Packet::PubRec(rec) => {
                assert_eq!((rec.packet_id, rec.reason), (7, ReasonCode::Success))
            }
            other => panic!("expected PUBREC 7, got {other:?}"),
        }
    }

    let broker = stop(broker).await.start().await;
    for version in BOTH {
        let id = client_id("once-pub", version);
        let mut publisher = resume(broker.addr, version, &id).await;
        let mut resent = message(
            &format!("once/{}", version.level()),
            QoS::ExactlyOnce,
            7,
            "exactly once",
        );
        resent.dup = true;
        publisher.send(&Packet::Publish(resent)).await;
        match publisher.recv().await {
            Packet::PubRec(rec) => assert_eq!(
                (rec.packet_id, rec.reason),
                (7, ReasonCode::Success),
                "{id}: PUBREC for the resent PUBLISH"
            ),
            other => panic!("{id}: expected PUBREC 7, got {other:?}"),
        }
        publisher
            .send(&Packet::PubRel(PubResponse::success(7)))
            .await;
        match publisher.recv().await {
            Packet::PubComp(comp) => assert_eq!(
                (comp.packet_id, comp.reason),
                (7, ReasonCode::Success),
                "{id}: PUBCOMP"
            ),
            other => panic!("{id}: expected PUBCOMP 7, got {other:?}"),
        }
        publish(
            &mut publisher,
            message(
                &format!("once/{}", version.level()),
                QoS::AtLeastOnce,
                8,
                "marker",
            ),
        )
        .await;
    }
    for version in BOTH {
        let id = client_id("once-sub", version);
        let mut subscriber = resume(broker.addr, version, &id).await;
        let mut seen: Vec<(String, String)> =
            receive_until_marker(&mut subscriber, "once/5", "marker")
                .await
                .iter()
                .map(|publish| (publish.topic.clone(), text(publish)))
                .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                ("once/4".to_string(), "exactly once".to_string()),
                ("once/4".to_string(), "marker".to_string()),
                ("once/5".to_string(), "exactly once".to_string()),
            ],
            "{id}: each QoS 2 message exactly once, before the last marker"
        );
    }
    broker.shutdown().await;
}

/// Promise 1: a 3.1.1 Clean Session 1 client and a v5 client with Session Expiry 0 keep
/// nothing across a restart: with Clean Session/Start 0 they start with Session Present 0
/// [MQTT-3.2.2-3], and a PUBREL for their old identifier is answered PUBCOMP (v5: 0x92
/// Packet Identifier not found), proving no QoS 2 state was kept.
#[tokio::test]
async fn sessions_that_end_with_their_connection_keep_nothing_across_restart() {
    let broker = start_broker().await;
    for version in BOTH {
        let id = client_id("transient", version);
        let mut client = RawClient::connect(broker.addr, version, &id).await;
        client
            .send(&Packet::Publish(publish_packet(
                "transient/topic",
                QoS::ExactlyOnce,
                Some(9),
                b"unreleased",
            )))
            .await;
        assert!(
            matches!(client.recv().await, Packet::PubRec(rec) if rec.packet_id == 9),
            "PUBREC 9"
        );
    }
    let broker = stop(broker).await.start().await;
    for version in BOTH {
        let id = client_id("transient", version);
        let mut connect = connect_packet(version, &id);
        connect.clean_start = false;
        let (mut client, connack) = RawClient::connect_with(broker.addr, connect).await;
        assert_eq!(connack.reason, ReasonCode::Success);
        assert!(!connack.session_present, "{id}: no session was kept");
        client.send(&Packet::PubRel(PubResponse::success(9))).await;
        let expected = match version {
            ProtocolVersion::V5 => ReasonCode::PacketIdentifierNotFound,
            ProtocolVersion::V311 => ReasonCode::Success,
        };
        match client.recv().await {
            Packet::PubComp(comp) => {
                assert_eq!(
                    (comp.packet_id, comp.reason),
                    (9, expected),
                    "{id}: PUBCOMP"
                )
            }
            other => panic!("{id}: expected PUBCOMP 9, got {other:?}"),
        }
    }
    broker.shutdown().await;
}

/// Messages in the stream of the test below.
const STREAM: u16 = 1000;

/// Promise 1, [MQTT-4.3.3-6] (5.0) / [MQTT-4.3.3-1] (3.1.1): while a 3.1.1 publisher pipelines
/// 1000 QoS 2 messages, an online persistent v5 subscriber takes each from its queue as soon as
/// it is routed and completes every flow, receiving each exactly once. After a graceful restart
/// it resumes with nothing to receive: no completed delivery is repeated.
#[tokio::test]
async fn deliveries_completed_while_routing_are_not_repeated_after_restart() {
    let broker = start_broker().await;
    let mut subscriber = new_session(broker.addr, ProtocolVersion::V5, "busy-sub").await;
    subscribe_ok(&mut subscriber, 1, "busy/+", QoS::ExactlyOnce).await;
    let receiving = tokio::spawn(async move {
        let received = receive_until_marker(&mut subscriber, "busy/end", "end").await;
        (subscriber, received)
    });
    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V311, "busy-pub").await;
    for n in 1..=STREAM {
        publisher
            .send(&Packet::Publish(message(
                "busy/stream",
                QoS::ExactlyOnce,
                n,
                &n.to_string(),
            )))
            .await;
    }
    let mut completed = 0;
    while completed < STREAM {
        match publisher.recv().await {
            Packet::PubRec(rec) => {
                publisher
                    .send(&Packet::PubRel(PubResponse::success(rec.packet_id)))
                    .await
            }
            Packet::PubComp(_) => completed += 1,
            other => panic!("expected PUBREC or PUBCOMP, got {other:?}"),
        }
    }
    publish(
        &mut publisher,
        message("busy/end", QoS::AtLeastOnce, 1, "end"),
    )
    .await;
    let (mut subscriber, received) = receiving.await.expect("the subscriber task");
    let sequence: Vec<String> = received.iter().map(text).collect();
    let expected: Vec<String> = (1..=STREAM).map(|n| n.to_string()).collect();
    assert_eq!(sequence, expected, "each message once, in order");
    subscriber.go_offline().await;

    let broker = stop(broker).await.start().await;
    let mut subscriber = resume(broker.addr, ProtocolVersion::V5, "busy-sub").await;
    subscriber.expect_nothing_pending().await;
    broker.shutdown().await;
}
