//! Helpers shared by the messaging tests: connecting subscribers and persistent sessions,
//! acknowledging deliveries, ordering barriers (PINGREQ → PINGRESP) that prove nothing else
//! was pending, and checking that a broker still serves clients after throwing one out.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cairn::codec::{
    Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions,
};

use crate::common::{connect_packet, publish_packet, RawClient};

/// Both protocol versions, for rules that apply to both.
pub const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

/// Session Expiry Interval v5 persistent sessions ask for: long enough never to matter.
pub const PERSISTENT_EXPIRY: u32 = 300;

/// A client identifier unique per version, so one broker can host both versions of a test.
pub fn client_id(name: &str, version: ProtocolVersion) -> String {
    format!("{name}-v{}", version.level())
}

/// The SUBACK code granting `qos` [MQTT-3.8.4-7].
pub fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

/// Connects with clean start and subscribes to `filter`; asserts the SUBACK grants `qos`.
pub async fn subscriber(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    filter: &str,
    qos: QoS,
) -> RawClient {
    let mut client = RawClient::connect(addr, version, id).await;
    subscribe_granted(
        &mut client,
        1,
        filter,
        SubscriptionOptions::with_qos(qos),
        Properties::default(),
    )
    .await;
    client
}

/// Subscribes with full options; asserts the SUBACK echoes the packet id and grants the QoS.
pub async fn subscribe_granted(
    client: &mut RawClient,
    packet_id: u16,
    filter: &str,
    options: SubscriptionOptions,
    properties: Properties,
) {
    let suback = client
        .subscribe_with(packet_id, filter, options, properties)
        .await;
    assert_eq!(
        suback.packet_id, packet_id,
        "SUBACK packet id [MQTT-3.8.4-2]"
    );
    assert_eq!(
        suback.reasons,
        vec![granted(options.qos)],
        "SUBACK for {filter}"
    );
}

/// SUBSCRIBE properties carrying a Subscription Identifier (v5).
pub fn with_identifier(identifier: u32) -> Properties {
    Properties {
        subscription_identifiers: vec![identifier],
        ..Properties::default()
    }
}

/// A CONNECT for a session that outlives its connection: Clean Session 0 in 3.1.1, a Session
/// Expiry Interval in v5 (where `clean_start` may still start it afresh).
pub fn persistent_connect(version: ProtocolVersion, id: &str, clean_start: bool) -> Connect {
    let mut connect = connect_packet(version, id);
    connect.clean_start = match version {
        ProtocolVersion::V311 => false,
        ProtocolVersion::V5 => clean_start,
    };
    if version == ProtocolVersion::V5 {
        connect.properties.session_expiry_interval = Some(PERSISTENT_EXPIRY);
    }
    connect
}

/// Starts a new persistent session for an identifier the broker has not seen (3.1.1 has no
/// way to ask for a clean persistent session) and returns its connection.
pub async fn fresh_persistent(addr: SocketAddr, version: ProtocolVersion, id: &str) -> RawClient {
    let (client, connack) =
        RawClient::connect_with(addr, persistent_connect(version, id, true)).await;
    assert_eq!(connack.reason, ReasonCode::Success, "CONNACK for {id}");
    assert!(
        !connack.session_present,
        "a new session has no state [MQTT-3.2.2-2] [MQTT-3.2.2-3]"
    );
    client
}

/// Reconnects to an existing persistent session; asserts Session Present 1 [MQTT-3.2.2-3].
pub async fn resume(addr: SocketAddr, version: ProtocolVersion, id: &str) -> RawClient {
    let (client, connack) =
        RawClient::connect_with(addr, persistent_connect(version, id, false)).await;
    assert_eq!(connack.reason, ReasonCode::Success, "CONNACK for {id}");
    assert!(connack.session_present, "the session of {id} is resumed");
    client
}

/// Sends a PUBLISH without waiting for anything.
pub async fn send_publish(client: &mut RawClient, publish: Publish) {
    client.send(&Packet::Publish(publish)).await;
}

/// Publishes QoS 0 (no answer to wait for).
pub async fn publish_qos0(client: &mut RawClient, topic: &str, payload: &str) {
    send_publish(
        client,
        publish_packet(topic, QoS::AtMostOnce, None, payload.as_bytes()),
    )
    .await;
}

/// Publishes QoS 1 and asserts the PUBACK echoes the packet id; returns its reason code.
pub async fn publish_qos1(
    client: &mut RawClient,
    topic: &str,
    packet_id: u16,
    payload: &str,
) -> ReasonCode {
    let ack = client
        .publish(publish_packet(
            topic,
            QoS::AtLeastOnce,
            Some(packet_id),
            payload.as_bytes(),
        ))
        .await
        .expect("QoS 1 is acknowledged");
    assert_eq!(ack.packet_id, packet_id, "PUBACK packet id [MQTT-4.3.2-4]");
    ack.reason
}

/// The payload of a PUBLISH as text.
pub fn text(publish: &Publish) -> String {
    String::from_utf8_lossy(&publish.payload).into_owned()
}

/// Payloads as text, in order.
pub fn texts(publishes: &[Publish]) -> Vec<String> {
    publishes.iter().map(text).collect()
}

/// Ordering barrier: PINGREQ, and the next packet must be PINGRESP. Everything the broker had
/// queued for this client before the PINGREQ arrived would have come first, so this proves
/// that no PUBLISH was pending.
pub async fn assert_nothing_pending(client: &mut RawClient) {
    client.send(&Packet::PingReq).await;
    match client.recv().await {
        Packet::PingResp => {}
        other => panic!("expected nothing pending before PINGRESP, got {other:?}"),
    }
}

/// Sends PINGREQ and gathers every PUBLISH that arrives before the PINGRESP.
pub async fn publishes_before_pingresp(client: &mut RawClient) -> Vec<Publish> {
    client.send(&Packet::PingReq).await;
    let mut seen = Vec::new();
    loop {
        match client.recv().await {
            Packet::PingResp => return seen,
            Packet::Publish(publish) => seen.push(publish),
            other => panic!("expected PUBLISH or PINGRESP, got {other:?}"),
        }
    }
}

/// Reads PUBLISH packets until one carries `marker` as payload; returns those before it.
pub async fn publishes_before_marker(client: &mut RawClient, marker: &str) -> Vec<Publish> {
    let mut seen = Vec::new();
    loop {
        let publish = client.expect_publish().await;
        if publish.payload == marker.as_bytes() {
            return seen;
        }
        seen.push(publish);
    }
}

/// The QoS 2 acknowledgement packets a test waits for (PUBREL: [`RawClient::expect_pubrel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// PUBREC
    Received,
    /// PUBCOMP
    Completed,
}

/// Asserts the next packet is the `kind` acknowledgement of `packet_id` (same packet id as the
/// PUBLISH [MQTT-2.2.1-5]); returns its reason code.
pub async fn expect_ack(client: &mut RawClient, kind: Ack, packet_id: u16) -> ReasonCode {
    let response = match (kind, client.recv().await) {
        (Ack::Received, Packet::PubRec(response)) | (Ack::Completed, Packet::PubComp(response)) => {
            response
        }
        (_, other) => panic!("expected {kind:?} {packet_id}, got {other:?}"),
    };
    assert_eq!(response.packet_id, packet_id, "{kind:?} packet id");
    response.reason
}

/// Asserts the broker closes the connection because of `reason`: v5 clients get DISCONNECT
/// with it first, 3.1.1 clients are closed without a word.
pub async fn expect_thrown_out(client: &mut RawClient, reason: ReasonCode) {
    let seen = client.expect_closed().await;
    match client.version {
        ProtocolVersion::V5 => match seen.as_slice() {
            [Packet::Disconnect(disconnect)] => {
                assert_eq!(disconnect.reason, reason, "DISCONNECT reason")
            }
            other => panic!("expected one DISCONNECT {reason:?} then close, got {other:?}"),
        },
        ProtocolVersion::V311 => assert!(
            seen.is_empty(),
            "3.1.1 clients are closed without a packet, got {seen:?}"
        ),
    }
}

/// After a client was thrown out, the broker still serves others: a fresh client subscribes,
/// publishes QoS 1 to itself and receives it.
pub async fn assert_broker_serves(addr: SocketAddr, version: ProtocolVersion) {
    let id = client_id("still-serving", version);
    let topic = format!("alive/{id}");
    let mut client = subscriber(addr, version, &id, &topic, QoS::AtLeastOnce).await;
    send_publish(
        &mut client,
        publish_packet(&topic, QoS::AtLeastOnce, Some(1), b"alive"),
    )
    .await;
    let mut got_ack = false;
    let mut got_message = false;
    while !(got_ack && got_message) {
        match client.recv().await {
            Packet::PubAck(ack) if ack.packet_id == 1 => got_ack = true,
            Packet::Publish(publish) if publish.payload == "alive" => {
                acknowledge(&mut client, &publish).await;
                got_message = true;
            }
            other => panic!("unexpected {other:?} while checking the broker still serves"),
        }
    }
}

/// A v5 PUBLISH with properties set by `adjust`.
pub fn publish_with(
    topic: &str,
    qos: QoS,
    packet_id: Option<u16>,
    payload: &[u8],
    adjust: impl FnOnce(&mut Properties),
) -> Publish {
    let mut publish = publish_packet(topic, qos, packet_id, payload);
    adjust(&mut publish.properties);
    publish
}

/// Payload bytes of `len` bytes.
pub fn payload_of(len: usize) -> Bytes {
    Bytes::from(vec![b'x'; len])
}

/// Lets wall-clock time pass for a rule that is about time itself (Message Expiry): the
/// broker's clock must move on. This is not synchronisation — every event the tests wait for
/// is awaited with the harness's timeouts.
pub async fn let_time_pass(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// Completes the receiver's side of a delivery (nothing for QoS 0): see
/// [`RawClient::acknowledge`].
pub async fn acknowledge(client: &mut RawClient, publish: &Publish) {
    if publish.packet_id.is_none() {
        assert_eq!(publish.qos, QoS::AtMostOnce, "only QoS 0 has no packet id");
        return;
    }
    client.acknowledge(publish).await;
}
