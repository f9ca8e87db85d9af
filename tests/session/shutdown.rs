//! Graceful shutdown: every connection is closed (v5 clients first get DISCONNECT 0x8B Server
//! shutting down) once what the broker stored is acknowledged, shutdown returns, and the
//! listener no longer accepts connections.

use std::collections::BTreeSet;

use bytes::BytesMut;
use cairn::codec::{self, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::net::TcpStream;

use crate::common::clients::{
    connect_expecting_session, expect_server_close, persistent_connect, subscribe_ok,
};
use crate::common::{
    publish_packet, start_broker, start_broker_with, stop, RawClient, TestBroker, WAIT,
};
use crate::support::disconnect;

// MQTT 5.0 §3.14.2.1 (0x8B Server shutting down) and MQTT 3.1.1 §3.14 (a server closes the
// connection without DISCONNECT): shutdown says goodbye to each client in its own version.
#[tokio::test]
async fn shutdown_disconnects_every_client() {
    let broker = start_broker().await;
    let addr = broker.addr;
    let mut v5 = RawClient::connect(addr, ProtocolVersion::V5, "staying-v5").await;
    let mut v311 = RawClient::connect(addr, ProtocolVersion::V311, "staying-v311").await;
    v5.expect_nothing_pending().await;
    v311.expect_nothing_pending().await;

    let shutdown = tokio::spawn(broker.shutdown());
    expect_server_close(&mut v5, ReasonCode::ServerShuttingDown).await;
    expect_server_close(&mut v311, ReasonCode::ServerShuttingDown).await;
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown returns once every connection is closed")
        .expect("shutdown task");

    let refused = TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "the listener is closed after shutdown, got {refused:?}"
    );
}

// A publisher's QoS 1 messages that the broker stored before it shut down are all acknowledged
// before its goodbye: one stored and not acknowledged is sent again after the restart, and
// every subscriber gets it twice. A burst (within the Receive Maximum) is cut by the shutdown
// once its first PUBACK came; after the restart a persistent subscriber receives exactly the
// messages the publisher saw acknowledged.
#[tokio::test]
async fn shutdown_acknowledges_every_message_it_stored() {
    shutdown_cuts_a_burst(start_broker().await).await;
}

// The same with the longest commit window allowed (a second): the goodbye waits for it.
#[tokio::test]
async fn shutdown_acknowledges_every_message_it_stored_with_a_long_commit_window() {
    shutdown_cuts_a_burst(start_broker_with(|config| config.store.commit_window_ms = 1000).await)
        .await;
}

async fn shutdown_cuts_a_burst(broker: TestBroker) {
    const BURST: u16 = 30;
    let keeper = persistent_connect(ProtocolVersion::V5, "keeper");
    let mut offline = connect_expecting_session(broker.addr, keeper.clone(), false).await;
    subscribe_ok(&mut offline, 1, "stored/#", QoS::AtLeastOnce).await;
    disconnect(&mut offline, ReasonCode::Success).await;

    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V5, "hasty").await;
    let mut burst = BytesMut::new();
    for n in 1..=BURST {
        let publish = publish_packet(
            "stored/n",
            QoS::AtLeastOnce,
            Some(n),
            n.to_string().as_bytes(),
        );
        codec::encode(&Packet::Publish(publish), ProtocolVersion::V5, &mut burst)
            .expect("PUBLISH encodes");
    }
    publisher.send_bytes(&burst).await;
    let mut acknowledged = BTreeSet::new();
    match publisher.recv().await {
        Packet::PubAck(ack) => acknowledged.insert(ack.packet_id),
        other => panic!("expected PUBACK, got {other:?}"),
    };
    let stopping = tokio::spawn(stop(broker));
    for packet in publisher.expect_closed().await {
        match packet {
            Packet::PubAck(ack) => {
                acknowledged.insert(ack.packet_id);
            }
            Packet::Disconnect(disconnect) => {
                assert_eq!(disconnect.reason, ReasonCode::ServerShuttingDown);
            }
            other => panic!("expected PUBACKs and DISCONNECT, got {other:?}"),
        }
    }
    let broker = tokio::time::timeout(WAIT, stopping)
        .await
        .expect("shutdown returns")
        .expect("shutdown task")
        .start()
        .await;

    let mut keeper = connect_expecting_session(broker.addr, keeper, true).await;
    // Its subscription covers the marker, queued behind what the store gave back.
    let marker = publish_packet("stored/marker", QoS::AtMostOnce, None, b"end");
    keeper.send(&Packet::Publish(marker)).await;
    let mut stored = BTreeSet::new();
    loop {
        let publish = keeper.expect_publish().await;
        if publish.topic == "stored/marker" {
            break;
        }
        keeper.acknowledge(&publish).await;
        let number = std::str::from_utf8(&publish.payload).expect("a number");
        stored.insert(number.parse::<u16>().expect("a number"));
    }
    assert_eq!(
        stored, acknowledged,
        "what the restarted broker delivers is what the publisher saw acknowledged"
    );
}
