//! Takeover: a second connection with a client identifier already connected closes the first
//! (v5 with DISCONNECT 0x8E) and carries on with the session; what the client sent on the first
//! before it opened the second (a DISCONNECT) is acted on first.

use std::net::SocketAddr;

use cairn::codec::{Connect, Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::clients::{
    client_id, connect_expecting_session, expect_server_close, persistent_connect, publish_qos1,
    subscribe_ok, text, will, with_will, BOTH,
};
use crate::common::{connect_packet, publish_packet, start_broker, start_broker_with, RawClient};
use crate::support::{
    disconnect_packet, expect_connect_refused, expect_message, expect_only_marker, observer,
};

/// Rounds of a reconnect race: each lost about one time in four before the takeover waited
/// for the connection it replaces.
const RACE_ROUNDS: usize = 25;

// [MQTT-3.1.4-2] (3.1.1) [MQTT-3.1.4-3] (5.0) The existing connection is closed (v5:
// DISCONNECT 0x8E Session taken over first); the new one resumes the session with Session
// Present 1 and its subscriptions keep delivering.
#[tokio::test]
async fn second_connection_takes_the_session_over() {
    let broker = start_broker().await;
    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V5, "publisher").await;
    for version in BOTH {
        let id = client_id("twin", version);
        let topic = format!("takeover/{}", version.level());
        let mut first =
            connect_expecting_session(broker.addr, persistent_connect(version, &id), false).await;
        subscribe_ok(&mut first, 1, &topic, QoS::AtLeastOnce).await;

        let mut second =
            connect_expecting_session(broker.addr, persistent_connect(version, &id), true).await;
        expect_server_close(&mut first, ReasonCode::SessionTakenOver).await;

        assert_eq!(
            publish_qos1(&mut publisher, &topic, 1, "to the new one").await,
            ReasonCode::Success
        );
        let delivered = expect_message(&mut second, &topic, "to the new one").await;
        assert_eq!(delivered.qos, QoS::AtLeastOnce);
    }
}

// [MQTT-3.1.4-2] (3.1.1) [MQTT-3.1.4-3] (5.0) with [MQTT-3.1.2-6] (3.1.1) [MQTT-3.1.2-4]
// (5.0): a takeover with clean start 1 closes the old connection and starts a new session
// (Session Present 0, old subscriptions gone).
#[tokio::test]
async fn takeover_with_clean_start_starts_a_new_session() {
    takeover_into_a_new_session("replaced", persistent_connect, connect_packet).await;
}

// [MQTT-3.1.2-6] (3.1.1: a Clean Session 1 session's state "MUST NOT be reused in any
// subsequent Session") and MQTT 5 §3.1.2.11.2 (an interval of 0 ends the session with its
// connection): a takeover asking to resume (Clean Start 0) finds no session to resume when
// the one it replaces ended with its connection: Session Present 0, the old subscription gone.
#[tokio::test]
async fn a_takeover_does_not_resume_a_session_that_ends_with_its_connection() {
    // 3.1.1 Clean Session 1; v5 Clean Start 1 without a Session Expiry Interval (0).
    takeover_into_a_new_session("fleeting", connect_packet, persistent_connect).await;
}

/// A first connection made by `first` subscribes; a second made by `second` with the same
/// client identifier takes over and must get Session Present 0, the old connection closed
/// (v5 DISCONNECT 0x8E) and its subscription gone, for both protocol versions.
async fn takeover_into_a_new_session(
    name: &str,
    first: fn(ProtocolVersion, &str) -> Connect,
    second: fn(ProtocolVersion, &str) -> Connect,
) {
    let broker = start_broker().await;
    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V5, "publisher").await;
    for version in BOTH {
        let id = client_id(name, version);
        let topic = format!("{name}/{}", version.level());
        let mut old = connect_expecting_session(broker.addr, first(version, &id), false).await;
        subscribe_ok(&mut old, 1, &topic, QoS::AtLeastOnce).await;

        let mut new = connect_expecting_session(broker.addr, second(version, &id), false).await;
        expect_server_close(&mut old, ReasonCode::SessionTakenOver).await;
        assert_eq!(
            publish_qos1(&mut publisher, &topic, 1, "nobody").await,
            ReasonCode::NoMatchingSubscribers,
            "the old session's subscription is gone"
        );
        let marker = format!("{name}/marker");
        subscribe_ok(&mut new, 1, &marker, QoS::AtLeastOnce).await;
        expect_only_marker(&mut new, &marker).await;
    }
}

// [MQTT-3.1.4-3] (5.0: "If the existing Client has a Will Message, that Will Message is
// published") and [MQTT-3.1.2-8]: the taken-over connection ended without DISCONNECT, so its
// Will (no delay) is published; the new connection's Will is not.
#[tokio::test]
async fn takeover_publishes_the_old_connections_will() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "takeover-will/#").await;
    // The new connections stay open to the end: dropping one would publish its Will.
    let mut new_connections = Vec::new();
    for version in BOTH {
        let id = client_id("willing", version);
        let old_will = format!("takeover-will/old/{}", version.level());
        let new_will = format!("takeover-will/new/{}", version.level());
        let first = with_will(persistent_connect(version, &id), will(&old_will, "old"));
        let mut first = connect_expecting_session(broker.addr, first, false).await;
        let second = with_will(persistent_connect(version, &id), will(&new_will, "new"));
        new_connections.push(connect_expecting_session(broker.addr, second, true).await);
        expect_server_close(&mut first, ReasonCode::SessionTakenOver).await;
        expect_message(&mut watcher, &old_will, "old").await;
    }
    expect_only_marker(&mut watcher, "takeover-will/marker").await;
}

/// `first` sends DISCONNECT and closes its socket without waiting for the broker; at once
/// `again` connects on a new one and must see `session_present`; then it closes too.
async fn disconnect_and_reconnect_at_once(
    addr: SocketAddr,
    mut first: RawClient,
    again: Connect,
    session_present: bool,
) {
    first.send(&disconnect_packet(ReasonCode::Success)).await;
    drop(first);
    drop(connect_expecting_session(addr, again, session_present).await);
}

// [MQTT-3.14.4-3] A client that sends DISCONNECT, closes its socket and at once connects again
// with the same identifier: the DISCONNECT came first, so its Will is discarded, not published
// as a taken-over connection's would be [MQTT-3.1.4-3]; the session continues (Session
// Present 1). Sequenced: the old connection's DISCONNECT is in its socket, not yet read, when
// the new CONNECT arrives.
#[tokio::test]
async fn a_disconnect_sent_before_reconnecting_is_acted_on_before_the_takeover() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "hasty-will/#").await;
    for version in BOTH {
        let id = client_id("hasty", version);
        let topic = format!("hasty-will/{}", version.level());
        drop(connect_expecting_session(broker.addr, persistent_connect(version, &id), false).await);
        for _ in 0..RACE_ROUNDS {
            let connect = with_will(persistent_connect(version, &id), will(&topic, "gone"));
            let first = connect_expecting_session(broker.addr, connect, true).await;
            let again = persistent_connect(version, &id);
            disconnect_and_reconnect_at_once(broker.addr, first, again, true).await;
        }
    }
    expect_only_marker(&mut watcher, "hasty-will/marker").await;
}

// A session that ends with its connection (v5 Session Expiry 0; 3.1.1 Clean Session 1) and
// whose client sends DISCONNECT, closes and at once connects again with Clean Start 0: the
// session ended with the first connection, so the second gets Session Present 0 and none of
// its subscriptions [MQTT-3.2.2-2] [MQTT-3.1.2-6].
#[tokio::test]
async fn a_session_ended_by_disconnect_is_not_resumed_by_a_reconnect_at_once() {
    let broker = start_broker().await;
    for version in BOTH {
        let id = client_id("fleeting", version);
        for _ in 0..RACE_ROUNDS {
            let mut first =
                connect_expecting_session(broker.addr, connect_packet(version, &id), false).await;
            subscribe_ok(&mut first, 1, "fleeting/topic", QoS::AtLeastOnce).await;
            let again = persistent_connect(version, &id);
            disconnect_and_reconnect_at_once(broker.addr, first, again, false).await;
            // Clean Start 1 next round: the persistent session the second one made goes.
        }
    }
}

/// What a connection's client wrote before another connection took its session over is acted
/// on first (README: the connection it replaces first acts on what its client sent): 20 QoS 1
/// PUBLISHes written in one go, then at once a CONNECT on a second connection resuming the
/// session. The first connection gets a PUBACK for each of them before DISCONNECT 0x8E (v5),
/// and a subscriber gets all 20, in order.
#[tokio::test]
async fn publishes_written_before_a_takeover_are_acted_on_first() {
    const SENT: u16 = 20;
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "before-takeover-watcher", "before/#").await;
    let version = ProtocolVersion::V5;
    let id = client_id("before-takeover", version);
    let mut first =
        connect_expecting_session(broker.addr, persistent_connect(version, &id), false).await;
    let publishes: Vec<Packet> = (1..=SENT)
        .map(|n| {
            let payload = n.to_string();
            Packet::Publish(publish_packet(
                "before/t",
                QoS::AtLeastOnce,
                Some(n),
                payload.as_bytes(),
            ))
        })
        .collect();
    first.send_all(&publishes).await;
    let second =
        connect_expecting_session(broker.addr, persistent_connect(version, &id), true).await;
    let acked: Vec<u16> = first
        .expect_closed()
        .await
        .iter()
        .filter_map(|packet| match packet {
            Packet::PubAck(ack) => Some(ack.packet_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        acked,
        (1..=SENT).collect::<Vec<_>>(),
        "PUBACKs on the replaced connection"
    );
    let mut delivered = Vec::new();
    for _ in 1..=SENT {
        delivered.push(text(&watcher.expect_publish().await));
    }
    let sent: Vec<String> = (1..=SENT).map(|n| n.to_string()).collect();
    assert_eq!(delivered, sent);
    drop(second);
}

// [MQTT-3.1.4-3] A takeover replaces a connection, it adds none: with `limits.max_connections`
// clients connected, a client connecting again under its own identifier (its old connection
// half-open after a Wi-Fi drop, say) takes its session over, where another client is still
// refused (v5 0x89 Server busy, 3.1.1 0x03 Server unavailable). (It was refused too, until its
// old connection's Keep Alive ran out.)
#[tokio::test]
async fn a_takeover_at_the_connection_limit_is_accepted() {
    for (version, busy) in [
        (ProtocolVersion::V5, ReasonCode::ServerBusy),
        (ProtocolVersion::V311, ReasonCode::ServerUnavailable),
    ] {
        let broker = start_broker_with(|config| config.limits.max_connections = 1).await;
        let id = client_id("full", version);
        let mut first =
            connect_expecting_session(broker.addr, persistent_connect(version, &id), false).await;
        let mut second =
            connect_expecting_session(broker.addr, persistent_connect(version, &id), true).await;
        expect_server_close(&mut first, ReasonCode::SessionTakenOver).await;
        let other = connect_packet(version, &client_id("other", version));
        expect_connect_refused(broker.addr, other, busy).await;
        second.expect_nothing_pending().await;
    }
}
