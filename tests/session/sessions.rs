//! Session lifetime: Clean Session (3.1.1), Clean Start and Session Expiry Interval (5.0),
//! Session Present, the configured maximum expiry, and the DISCONNECT override.

use std::net::SocketAddr;

use cairn::codec::{Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::clients::{
    client_id, connect_expecting_session, connect_ok, expect_server_close, expect_silent_close,
    persistent_connect, publish_qos1, subscribe_ok, with_expiry, LONG_EXPIRY,
};
use crate::common::{connect_packet, start_broker, start_broker_with, RawClient};
use crate::support::{
    disconnect, expect_message, expect_only_marker, resume_connect, wait_until_unsubscribed,
};

/// A v5 publisher whose PUBACK reason codes say whether anyone subscribes.
async fn publisher(addr: SocketAddr) -> RawClient {
    RawClient::connect(addr, ProtocolVersion::V5, "publisher").await
}

/// Resumes a persistent session: Session Present 0 the first time, 1 after a disconnect, and
/// the QoS 1 message published while it was offline is delivered.
async fn persistent_session_resumes(version: ProtocolVersion) {
    let broker = start_broker().await;
    let id = client_id("keeper", version);
    let mut client =
        connect_expecting_session(broker.addr, persistent_connect(version, &id), false).await;
    subscribe_ok(&mut client, 1, "kept/topic", QoS::AtLeastOnce).await;
    disconnect(&mut client, ReasonCode::Success).await;

    let mut publisher = publisher(broker.addr).await;
    assert_eq!(
        publish_qos1(&mut publisher, "kept/topic", 1, "while away").await,
        ReasonCode::Success
    );

    let mut client =
        connect_expecting_session(broker.addr, persistent_connect(version, &id), true).await;
    let delivered = expect_message(&mut client, "kept/topic", "while away").await;
    assert_eq!(delivered.qos, QoS::AtLeastOnce);
}

// (3.1.1) [MQTT-3.2.2-3] no session yet: Session Present 0; [MQTT-3.1.2-4] [MQTT-3.2.2-2]
// Clean Session 0 resumes with Session Present 1; [MQTT-3.1.2-5] QoS 1 messages for its
// subscriptions are stored while it is offline.
#[tokio::test]
async fn v311_clean_session_0_resumes_with_session_present() {
    persistent_session_resumes(ProtocolVersion::V311).await;
}

// (5.0) [MQTT-3.2.2-3] Session Present 0 then 1; [MQTT-3.1.2-5] Clean Start 0 resumes the
// session; [MQTT-3.1.2-23] a Session Expiry Interval > 0 keeps it after the close.
#[tokio::test]
async fn v5_clean_start_0_with_expiry_resumes_with_session_present() {
    persistent_session_resumes(ProtocolVersion::V5).await;
}

/// Clean start 1 discards a persistent session: Session Present 0, old subscriptions gone
/// (a v5 publisher hears 0x10 No matching subscribers), queued messages gone (a marker is the
/// first delivery).
async fn clean_start_discards_session(version: ProtocolVersion) {
    let broker = start_broker().await;
    let id = client_id("cleaned", version);
    let mut client =
        connect_expecting_session(broker.addr, persistent_connect(version, &id), false).await;
    subscribe_ok(&mut client, 1, "old/topic", QoS::AtLeastOnce).await;
    disconnect(&mut client, ReasonCode::Success).await;
    let mut publisher = publisher(broker.addr).await;
    assert_eq!(
        publish_qos1(&mut publisher, "old/topic", 1, "queued").await,
        ReasonCode::Success
    );

    let mut client =
        connect_expecting_session(broker.addr, connect_packet(version, &id), false).await;
    assert_eq!(
        publish_qos1(&mut publisher, "old/topic", 1, "after clean start").await,
        ReasonCode::NoMatchingSubscribers,
        "the old subscription is gone"
    );
    subscribe_ok(&mut client, 1, "new/topic", QoS::AtLeastOnce).await;
    expect_only_marker(&mut client, "new/topic").await;
}

// (3.1.1) [MQTT-3.1.2-6] Clean Session 1 discards the previous session; [MQTT-3.2.2-1]
// Session Present 0.
#[tokio::test]
async fn v311_clean_session_1_discards_the_session() {
    clean_start_discards_session(ProtocolVersion::V311).await;
}

// (5.0) [MQTT-3.1.2-4] Clean Start 1 discards the existing session; [MQTT-3.2.2-2] Session
// Present 0.
#[tokio::test]
async fn v5_clean_start_1_discards_the_session() {
    clean_start_discards_session(ProtocolVersion::V5).await;
}

/// A session that must end with its connection: after `ending` disconnects normally, a
/// `probe` with clean start 0 right after the close finds no session. Repeated because the
/// reconnect races the broker's handling of the close.
async fn session_ends_at_disconnect(addr: SocketAddr, ending: Connect, probe: Connect) {
    for _ in 0..10 {
        let (mut client, _) = connect_ok(addr, ending.clone()).await;
        subscribe_ok(&mut client, 1, "short/topic", QoS::AtLeastOnce).await;
        disconnect(&mut client, ReasonCode::Success).await;
        let mut prober = connect_expecting_session(addr, probe.clone(), false).await;
        disconnect(&mut prober, ReasonCode::Success).await;
    }
}

// (3.1.1) [MQTT-3.1.2-6] A Clean Session 1 session lasts as long as the connection: Clean
// Session 0 right after the close gets Session Present 0 [MQTT-3.2.2-3].
#[tokio::test]
async fn v311_clean_session_1_ends_at_disconnect() {
    let broker = start_broker().await;
    let clean = connect_packet(ProtocolVersion::V311, "brief");
    session_ends_at_disconnect(broker.addr, clean.clone(), resume_connect(clean)).await;
}

// (5.0) MQTT 5.0 §3.1.2.11.2: Session Expiry Interval 0 (absent) ends the session when the
// connection closes, so Clean Start 0 right after gets Session Present 0 [MQTT-3.2.2-3].
#[tokio::test]
async fn v5_session_expiry_0_ends_at_disconnect() {
    let broker = start_broker().await;
    let connect = resume_connect(connect_packet(ProtocolVersion::V5, "expiry-zero"));
    session_ends_at_disconnect(broker.addr, connect.clone(), connect).await;
}

/// Waits until the offline session that subscribed to `topic` has expired (its subscription
/// stops matching), then asserts that `connect` (clean start 0) finds no session.
async fn assert_session_expires(addr: SocketAddr, connect: Connect, topic: &str) {
    let mut publisher = publisher(addr).await;
    wait_until_unsubscribed(&mut publisher, topic).await;
    connect_expecting_session(addr, connect, false).await;
}

// (5.0) [MQTT-3.1.2-23] A session with Session Expiry Interval 1 s is kept after the close,
// then ends when the interval passes: its subscriptions stop matching and Clean Start 0 gets
// Session Present 0.
#[tokio::test]
async fn v5_session_ends_when_expiry_interval_passes() {
    let broker = start_broker().await;
    let connect = resume_connect(with_expiry(
        connect_packet(ProtocolVersion::V5, "expiring"),
        1,
    ));
    let mut client = connect_expecting_session(broker.addr, connect.clone(), false).await;
    subscribe_ok(&mut client, 1, "expiring/topic", QoS::AtLeastOnce).await;
    disconnect(&mut client, ReasonCode::Success).await;

    assert_session_expires(broker.addr, connect, "expiring/topic").await;
}

// (5.0) MQTT 5.0 §3.2.2.3.2: with max_session_expiry = 1 a client asking for 300 s is told
// Session Expiry Interval 1 in CONNACK, and its session ends 1 s after the close.
#[tokio::test]
async fn v5_session_expiry_is_capped_by_the_server() {
    let broker = start_broker_with(|config| config.limits.max_session_expiry = 1).await;
    let connect = resume_connect(with_expiry(
        connect_packet(ProtocolVersion::V5, "capped"),
        LONG_EXPIRY,
    ));
    let (mut client, connack) = connect_ok(broker.addr, connect.clone()).await;
    assert_eq!(
        connack.properties.session_expiry_interval,
        Some(1),
        "granted expiry"
    );
    subscribe_ok(&mut client, 1, "capped/topic", QoS::AtLeastOnce).await;
    disconnect(&mut client, ReasonCode::Success).await;

    assert_session_expires(broker.addr, connect, "capped/topic").await;

    let within = resume_connect(with_expiry(
        connect_packet(ProtocolVersion::V5, "within-cap"),
        1,
    ));
    let (_client, connack) = connect_ok(broker.addr, within).await;
    assert_eq!(
        connack.properties.session_expiry_interval, None,
        "granted as asked: no property"
    );
}

// (3.1.1) A Clean Session 0 session has no expiry in 3.1.1, but the configured
// max_session_expiry caps it: with 1 s it ends 1 s after the close, and Clean Session 0 then
// gets Session Present 0 [MQTT-3.2.2-3].
#[tokio::test]
async fn v311_persistent_session_is_capped_by_the_server() {
    let broker = start_broker_with(|config| config.limits.max_session_expiry = 1).await;
    let connect = persistent_connect(ProtocolVersion::V311, "capped-v311");
    let mut client = connect_expecting_session(broker.addr, connect.clone(), false).await;
    subscribe_ok(&mut client, 1, "capped/v311", QoS::AtLeastOnce).await;
    disconnect(&mut client, ReasonCode::Success).await;

    assert_session_expires(broker.addr, connect, "capped/v311").await;
}

/// A DISCONNECT carrying a Session Expiry Interval.
fn disconnect_with_expiry(seconds: u32) -> Packet {
    let mut disconnect = Disconnect::new(ReasonCode::Success);
    disconnect.properties.session_expiry_interval = Some(seconds);
    Packet::Disconnect(disconnect)
}

// (5.0) MQTT 5.0 §3.14.2.2.2: a Session Expiry Interval in DISCONNECT replaces the one from
// CONNECT; 0 ends the session with the connection.
#[tokio::test]
async fn v5_disconnect_with_expiry_0_ends_the_session() {
    let broker = start_broker().await;
    let connect = persistent_connect(ProtocolVersion::V5, "override-zero");
    let mut client = connect_expecting_session(broker.addr, connect.clone(), false).await;
    subscribe_ok(&mut client, 1, "override/topic", QoS::AtLeastOnce).await;
    client.send(&disconnect_with_expiry(0)).await;
    expect_silent_close(&mut client).await;
    connect_expecting_session(broker.addr, connect, false).await;
}

// (5.0) MQTT 5.0 §3.14.2.2.2: lowering the interval in DISCONNECT (300 → 1) makes the
// session end 1 s after the close.
#[tokio::test]
async fn v5_disconnect_can_shorten_the_expiry() {
    let broker = start_broker().await;
    let connect = persistent_connect(ProtocolVersion::V5, "override-short");
    let mut client = connect_expecting_session(broker.addr, connect.clone(), false).await;
    subscribe_ok(&mut client, 1, "shortened/topic", QoS::AtLeastOnce).await;
    client.send(&disconnect_with_expiry(1)).await;
    expect_silent_close(&mut client).await;

    assert_session_expires(broker.addr, connect, "shortened/topic").await;
}

// (5.0) [MQTT-3.14.2-2] A session that connected with Session Expiry Interval 0 may not set a
// non-zero one in DISCONNECT: the server answers DISCONNECT 0x82 Protocol Error, and the
// session still ends with the connection.
#[tokio::test]
async fn v5_disconnect_raising_zero_expiry_is_a_protocol_error() {
    let broker = start_broker().await;
    let connect = resume_connect(connect_packet(ProtocolVersion::V5, "override-raise"));
    let mut client = connect_expecting_session(broker.addr, connect.clone(), false).await;
    client.send(&disconnect_with_expiry(60)).await;
    expect_server_close(&mut client, ReasonCode::ProtocolError).await;
    connect_expecting_session(broker.addr, connect, false).await;
}
