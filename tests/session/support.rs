//! Helpers of the session tests (the ones every test binary needs are in `common::clients`):
//! a CONNECT that resumes, packets encoded to bytes that a test then breaks on purpose,
//! refused connects, the QoS 0 marker barrier that proves nothing else arrives, and waiting
//! for a session's subscriptions to go away.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use cairn::codec::{self, Connect, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode};
use tokio::time::{interval, Instant};

use crate::common::clients::{expect_silent_close, publish_qos1, subscribe_ok};
use crate::common::{publish_packet, RawClient, WAIT};

/// The variable header of a packet whose Remaining Length fits one byte starts here.
pub const VARIABLE_HEADER: usize = 2;

/// In an encoded CONNECT: the Protocol Level byte, after the fixed header and "\0\x04MQTT".
pub const CONNECT_LEVEL: usize = VARIABLE_HEADER + 6;

/// In an encoded CONNECT: the Connect Flags byte, right after the Protocol Level.
pub const CONNECT_FLAGS: usize = CONNECT_LEVEL + 1;

/// In an encoded PUBLISH: the first byte of the topic name, after its two-byte length.
pub const PUBLISH_TOPIC: usize = VARIABLE_HEADER + 2;

/// `connect` with Clean Session / Clean Start 0.
pub fn resume_connect(mut connect: Connect) -> Connect {
    connect.clean_start = false;
    connect
}

/// The packet as bytes, ready to be broken on purpose.
pub fn encoded(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut bytes = BytesMut::new();
    codec::encode(packet, version, &mut bytes).expect("test packet encodes");
    bytes
}

/// A DISCONNECT with `reason` and no properties.
pub fn disconnect_packet(reason: ReasonCode) -> Packet {
    Packet::Disconnect(Disconnect::new(reason))
}

/// Sends `connect` on a new connection and asserts it is refused: CONNACK with `reason` and
/// Session Present 0, then the close [MQTT-3.2.2-4] [MQTT-3.2.2-5] (3.1.1) [MQTT-3.2.2-6]
/// [MQTT-3.2.2-7] (5.0).
pub async fn expect_connect_refused(addr: SocketAddr, connect: Connect, reason: ReasonCode) {
    let mut client = RawClient::open(addr, connect.protocol).await;
    client.send(&Packet::Connect(Box::new(connect))).await;
    let connack = client.expect_connack().await;
    assert_eq!(connack.reason, reason, "CONNACK reason code");
    assert!(
        !connack.session_present,
        "a refusing CONNACK has Session Present 0"
    );
    expect_silent_close(&mut client).await;
}

/// Sends DISCONNECT with `reason` and waits until the broker has closed the connection (it
/// answers a client's DISCONNECT with nothing).
pub async fn disconnect(client: &mut RawClient, reason: ReasonCode) {
    client.send(&disconnect_packet(reason)).await;
    expect_silent_close(client).await;
}

/// A v5 client (clean start) subscribed to `filter` at QoS 2, to watch Will Messages and
/// other deliveries.
pub async fn observer(addr: SocketAddr, id: &str, filter: &str) -> RawClient {
    let mut client = RawClient::connect(addr, ProtocolVersion::V5, id).await;
    subscribe_ok(&mut client, 1, filter, QoS::ExactlyOnce).await;
    client
}

/// Asserts the next packet is a PUBLISH of `payload` to `topic` and returns it.
pub async fn expect_message(client: &mut RawClient, topic: &str, payload: &str) -> Publish {
    let publish = client.expect_publish().await;
    assert_eq!(publish.topic, topic, "topic of the delivered message");
    assert_eq!(
        publish.payload,
        payload.as_bytes(),
        "payload of the delivered message"
    );
    publish
}

/// Ordering barrier for "nothing arrives": `client` publishes a QoS 0 marker to `topic`,
/// which it is subscribed to, and the marker must be the next packet it receives.
pub async fn expect_only_marker(client: &mut RawClient, topic: &str) {
    client
        .send(&Packet::Publish(publish_packet(
            topic,
            QoS::AtMostOnce,
            None,
            b"marker",
        )))
        .await;
    expect_message(client, topic, "marker").await;
}

/// Waits until no session subscribes to `topic` any more: `publisher` (v5) publishes QoS 1
/// messages, paced every 100 ms, until the PUBACK says 0x10 No matching subscribers. Fails
/// after [`WAIT`]. The probe does not touch the session it watches.
pub async fn wait_until_unsubscribed(publisher: &mut RawClient, topic: &str) {
    assert_eq!(
        publisher.version,
        ProtocolVersion::V5,
        "only v5 PUBACKs carry reason codes"
    );
    let deadline = Instant::now() + WAIT;
    let mut pace = interval(Duration::from_millis(100));
    for packet_id in 1..=u16::MAX {
        pace.tick().await;
        if publish_qos1(publisher, topic, packet_id, "probe").await
            == ReasonCode::NoMatchingSubscribers
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the subscription to {topic} still exists after {WAIT:?}"
        );
    }
}
