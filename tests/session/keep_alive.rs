//! Keep-alive: a silent client is closed after 1.5 × Keep Alive, PINGREQ keeps it alive, and
//! the configured maximum is granted to v5 clients as Server Keep Alive.

use std::net::SocketAddr;
use std::time::Duration;

use cairn::codec::{Connect, ProtocolVersion, ReasonCode};
use tokio::time::interval;

use crate::common::clients::{
    assert_broker_serves, client_id, connect_ok, expect_server_close, will, with_will, BOTH,
};
use crate::common::{connect_packet, start_broker, start_broker_with, RawClient};
use crate::support::{expect_message, observer};

/// Connects with `connect` changed to Keep Alive 1 s.
async fn connect_keep_alive_1(addr: SocketAddr, mut connect: Connect) -> RawClient {
    connect.keep_alive = 1;
    connect_ok(addr, connect).await.0
}

// [MQTT-3.1.2-24] (3.1.1) [MQTT-3.1.2-22] (5.0) No packet within 1.5 × Keep Alive: the
// server closes the connection (v5 with DISCONNECT 0x8D Keep alive timeout) as if the network
// had failed, so the Will is published [MQTT-3.1.2-8].
#[tokio::test]
async fn silent_client_is_closed_after_keep_alive() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "silent/#").await;
    for version in BOTH {
        let will_topic = format!("silent/{}", version.level());
        let id = client_id("silent", version);
        let connect = with_will(connect_packet(version, &id), will(&will_topic, "timed out"));
        let mut client = connect_keep_alive_1(broker.addr, connect).await;
        expect_server_close(&mut client, ReasonCode::KeepAliveTimeout).await;
        expect_message(&mut watcher, &will_topic, "timed out").await;
    }
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

/// Sends PINGREQ every 0.5 s for 3 s (twice the 1.5 s timeout) and checks each PINGRESP.
/// The interval paces the client; it synchronises nothing.
async fn keep_pinging(client: &mut RawClient) {
    let mut pace = interval(Duration::from_millis(500));
    for _ in 0..=6 {
        pace.tick().await;
        client.expect_nothing_pending().await;
    }
}

// [MQTT-3.1.2-24] (3.1.1) [MQTT-3.1.2-22] (5.0) A client that sends PINGREQ within the
// Keep Alive stays connected well past 1.5 × Keep Alive [MQTT-3.12.4-1] (PINGRESP answers).
#[tokio::test]
async fn pingreq_keeps_the_connection_alive() {
    let broker = start_broker().await;
    let v311 = connect_packet(ProtocolVersion::V311, "pinger-v311");
    let mut v311 = connect_keep_alive_1(broker.addr, v311).await;
    let v5 = connect_packet(ProtocolVersion::V5, "pinger-v5");
    let mut v5 = connect_keep_alive_1(broker.addr, v5).await;
    tokio::join!(keep_pinging(&mut v311), keep_pinging(&mut v5));
}

// [MQTT-3.2.2-21] (5.0) With max_keep_alive = 5, a client asking for 60 s or for none (0)
// is told Server Keep Alive 5; one asking for less keeps its value and gets no property.
// A 3.1.1 CONNACK cannot carry it.
#[tokio::test]
async fn v5_server_keep_alive_caps_the_request() {
    let broker = start_broker_with(|config| config.limits.max_keep_alive = 5).await;
    for (asked, granted) in [(60, Some(5)), (0, Some(5)), (3, None), (5, None)] {
        let mut connect = connect_packet(ProtocolVersion::V5, &format!("asks-{asked}"));
        connect.keep_alive = asked;
        let (_client, connack) = connect_ok(broker.addr, connect).await;
        assert_eq!(
            connack.properties.server_keep_alive, granted,
            "client asked for {asked} s"
        );
    }
    let mut connect = connect_packet(ProtocolVersion::V311, "asks-60-v311");
    connect.keep_alive = 60;
    let (_client, connack) = connect_ok(broker.addr, connect).await;
    assert_eq!(connack.properties.server_keep_alive, None);
}

// [MQTT-3.2.2-21] [MQTT-3.1.2-22] (5.0) The Server Keep Alive is the one enforced: a client
// asking for no keep-alive under max_keep_alive = 1 is closed with 0x8D when silent.
#[tokio::test]
async fn v5_server_keep_alive_is_enforced() {
    let broker = start_broker_with(|config| config.limits.max_keep_alive = 1).await;
    let mut connect = connect_packet(ProtocolVersion::V5, "no-keep-alive");
    connect.keep_alive = 0;
    let (mut client, connack) = connect_ok(broker.addr, connect).await;
    assert_eq!(connack.properties.server_keep_alive, Some(1));
    expect_server_close(&mut client, ReasonCode::KeepAliveTimeout).await;
}
