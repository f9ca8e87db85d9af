//! Helpers shared by the session tests: CONNECT and Will builders, packets encoded to bytes
//! that a test then breaks on purpose, ordering barriers that prove nothing else was pending,
//! and the checks most tests end with (how the broker closed a connection, whether it still
//! serves other clients).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn::codec::{
    self, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, Will,
};
use tokio::time::{interval, Instant};

use crate::common::{connect_packet, publish_packet, RawClient, WAIT};

/// Both protocol versions, for rules that apply to both.
pub const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

/// Session Expiry Interval v5 persistent sessions ask for: long enough never to matter.
pub const LONG_EXPIRY: u32 = 3600;

/// The variable header of a packet whose Remaining Length fits one byte starts here.
pub const VARIABLE_HEADER: usize = 2;

/// In an encoded CONNECT: the Protocol Level byte, after the fixed header and "\0\x04MQTT".
pub const CONNECT_LEVEL: usize = VARIABLE_HEADER + 6;

/// In an encoded CONNECT: the Connect Flags byte, right after the Protocol Level.
pub const CONNECT_FLAGS: usize = CONNECT_LEVEL + 1;

/// In an encoded PUBLISH: the first byte of the topic name, after its two-byte length.
pub const PUBLISH_TOPIC: usize = VARIABLE_HEADER + 2;

/// A client identifier unique per version, so one broker can host both versions of a test.
pub fn client_id(name: &str, version: ProtocolVersion) -> String {
    format!("{name}-v{}", version.level())
}

/// A CONNECT for a session that outlives its connection: Clean Session 0 in 3.1.1; Clean
/// Start 0 and a long Session Expiry Interval in v5.
pub fn persistent_connect(version: ProtocolVersion, id: &str) -> Connect {
    let connect = resume_connect(connect_packet(version, id));
    match version {
        ProtocolVersion::V311 => connect,
        ProtocolVersion::V5 => with_expiry(connect, LONG_EXPIRY),
    }
}

/// `connect` with Clean Session / Clean Start 0.
pub fn resume_connect(mut connect: Connect) -> Connect {
    connect.clean_start = false;
    connect
}

/// `connect` asking for a Session Expiry Interval (v5).
pub fn with_expiry(mut connect: Connect, seconds: u32) -> Connect {
    connect.properties.session_expiry_interval = Some(seconds);
    connect
}

/// `connect` carrying `will`.
pub fn with_will(mut connect: Connect, will: Will) -> Connect {
    connect.will = Some(will);
    connect
}

/// A QoS 1, non-retained Will with no properties.
pub fn will(topic: &str, payload: &str) -> Will {
    Will {
        topic: topic.to_string(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    }
}

/// `will` with a Will Delay Interval (v5).
pub fn delayed(mut will: Will, seconds: u32) -> Will {
    will.properties.will_delay_interval = Some(seconds);
    will
}

/// Connects with `connect` and asserts the CONNACK is a success.
pub async fn connect_ok(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
    let id = connect.client_id.clone();
    let (client, connack) = RawClient::connect_with(addr, connect).await;
    assert_eq!(connack.reason, ReasonCode::Success, "CONNACK for {id:?}");
    (client, connack)
}

/// Connects with `connect`, asserts success and the Session Present flag.
pub async fn connect_expecting_session(
    addr: SocketAddr,
    connect: Connect,
    session_present: bool,
) -> RawClient {
    let (client, connack) = connect_ok(addr, connect).await;
    assert_eq!(
        connack.session_present, session_present,
        "Session Present in CONNACK"
    );
    client
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

/// Reads until the broker closes the connection and returns the reason of the one DISCONNECT
/// it sent first.
pub async fn expect_disconnect(client: &mut RawClient) -> ReasonCode {
    match client.expect_closed().await.as_slice() {
        [Packet::Disconnect(disconnect)] => disconnect.reason,
        other => panic!("expected one DISCONNECT and then the close, got {other:?}"),
    }
}

/// Asserts the broker closes the connection without sending anything more.
pub async fn expect_silent_close(client: &mut RawClient) {
    let seen = client.expect_closed().await;
    assert!(
        seen.is_empty(),
        "expected the connection closed without a packet, got {seen:?}"
    );
}

/// Asserts how the broker ends a connection on its own initiative (protocol violation,
/// takeover, keep-alive, shutdown): DISCONNECT with `reason` for a v5 client, a close without
/// a packet for a 3.1.1 client.
pub async fn expect_server_close(client: &mut RawClient, reason: ReasonCode) {
    match client.version {
        ProtocolVersion::V5 => assert_eq!(
            expect_disconnect(client).await,
            reason,
            "DISCONNECT reason code"
        ),
        ProtocolVersion::V311 => expect_silent_close(client).await,
    }
}

/// Sends `connect` on a new connection and asserts it is refused: CONNACK with `reason` and
/// Session Present 0, then the close [MQTT-3.2.2-4] [MQTT-3.2.2-5] (3.1.1) [MQTT-3.2.2-6]
/// [MQTT-3.2.2-7] (5.0).
pub async fn expect_connect_refused(addr: SocketAddr, connect: Connect, reason: ReasonCode) {
    let mut client = RawClient::open(addr, connect.protocol).await;
    client.send(&Packet::Connect(connect)).await;
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

/// PINGREQ → PINGRESP: the broker handled everything the client sent before, and sent
/// nothing else in between.
pub async fn ping(client: &mut RawClient) {
    client.send(&Packet::PingReq).await;
    match client.recv().await {
        Packet::PingResp => {}
        other => panic!("expected PINGRESP, got {other:?}"),
    }
}

/// A v5 client (clean start) subscribed to `filter` at QoS 2, to watch Will Messages and
/// other deliveries.
pub async fn observer(addr: SocketAddr, id: &str, filter: &str) -> RawClient {
    let mut client = RawClient::connect(addr, ProtocolVersion::V5, id).await;
    subscribe_ok(&mut client, filter, QoS::ExactlyOnce).await;
    client
}

/// Subscribes with packet id 1 and asserts the SUBACK grants `qos`.
pub async fn subscribe_ok(client: &mut RawClient, filter: &str, qos: QoS) {
    let suback = client.subscribe(1, filter, qos).await;
    let granted = match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    };
    assert_eq!(suback.reasons, vec![granted], "SUBACK for {filter}");
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

/// Publishes a QoS 1 message with packet id 1 and returns the PUBACK's reason code.
pub async fn publish_qos1(client: &mut RawClient, topic: &str, payload: &str) -> ReasonCode {
    publish_qos1_with_id(client, 1, topic, payload).await
}

async fn publish_qos1_with_id(
    client: &mut RawClient,
    packet_id: u16,
    topic: &str,
    payload: &str,
) -> ReasonCode {
    let publish = publish_packet(topic, QoS::AtLeastOnce, Some(packet_id), payload.as_bytes());
    let ack = client
        .publish(publish)
        .await
        .expect("QoS 1 is acknowledged");
    assert_eq!(ack.packet_id, packet_id, "PUBACK packet id");
    ack.reason
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
        if publish_qos1_with_id(publisher, packet_id, topic, "probe").await
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

/// Asserts the broker still serves a new client end to end: connect, subscribe, publish,
/// receive its own message.
pub async fn assert_broker_serves(addr: SocketAddr) {
    let mut client = RawClient::connect(addr, ProtocolVersion::V5, "still-serving").await;
    subscribe_ok(&mut client, "health/check", QoS::AtLeastOnce).await;
    expect_only_marker(&mut client, "health/check").await;
}
