//! What most integration tests do with a [`RawClient`], written once: client identifiers per
//! protocol version, CONNECTs for sessions that outlive their connection and carry Wills,
//! connecting and
//! subscribing with the broker's answer checked, QoS 1 publishing, how the broker closes a
//! connection, and whether it still serves clients afterwards.

use std::net::SocketAddr;

use bytes::Bytes;
use cairn::codec::{
    ConnAck, Connect, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
    SubscriptionOptions, Will,
};

use super::{connect_packet, publish_packet, RawClient};

/// Both protocol versions, for rules that apply to both.
pub const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

/// Session Expiry Interval v5 persistent sessions ask for: long enough never to matter.
pub const LONG_EXPIRY: u32 = 300;

/// A client identifier unique per version, so one broker can host both versions of a test.
pub fn client_id(name: &str, version: ProtocolVersion) -> String {
    format!("{name}-v{}", version.level())
}

/// A CONNECT for a session that outlives its connection: Clean Session 0 in 3.1.1; Clean
/// Start 0 and a Session Expiry Interval of [`LONG_EXPIRY`] in v5.
pub fn persistent_connect(version: ProtocolVersion, id: &str) -> Connect {
    let mut connect = connect_packet(version, id);
    connect.clean_start = false;
    match version {
        ProtocolVersion::V311 => connect,
        ProtocolVersion::V5 => with_expiry(connect, LONG_EXPIRY),
    }
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

/// Connects with `connect`; asserts success and the Session Present flag [MQTT-3.2.2-2]
/// [MQTT-3.2.2-3] (the same numbers in 3.1.1 and 5.0 for Clean Session/Start 0).
pub async fn connect_expecting_session(
    addr: SocketAddr,
    connect: Connect,
    session_present: bool,
) -> RawClient {
    let id = connect.client_id.clone();
    let (client, connack) = connect_ok(addr, connect).await;
    assert_eq!(
        connack.session_present, session_present,
        "Session Present in the CONNACK for {id:?}"
    );
    client
}

/// Starts a new persistent session for an identifier the broker has not seen; asserts Session
/// Present 0.
pub async fn new_session(addr: SocketAddr, version: ProtocolVersion, id: &str) -> RawClient {
    connect_expecting_session(addr, persistent_connect(version, id), false).await
}

/// Resumes an existing persistent session; asserts Session Present 1.
pub async fn resume(addr: SocketAddr, version: ProtocolVersion, id: &str) -> RawClient {
    connect_expecting_session(addr, persistent_connect(version, id), true).await
}

/// The SUBACK code granting `qos` [MQTT-3.8.4-7].
pub fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

/// Subscribes to one filter at `qos`; asserts the SUBACK echoes the packet id and grants `qos`.
pub async fn subscribe_ok(client: &mut RawClient, packet_id: u16, filter: &str, qos: QoS) {
    subscribe_granted(
        client,
        packet_id,
        filter,
        SubscriptionOptions::with_qos(qos),
        Properties::default(),
    )
    .await;
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

/// Connects with clean start and subscribes to `filter`; asserts the SUBACK grants `qos`.
pub async fn subscriber(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    filter: &str,
    qos: QoS,
) -> RawClient {
    let mut client = RawClient::connect(addr, version, id).await;
    subscribe_ok(&mut client, 1, filter, qos).await;
    client
}

/// Publishes QoS 1 and asserts the PUBACK echoes the packet id [MQTT-4.3.2-4]; returns its
/// reason code.
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

/// Publishes QoS 2 and completes the flow (PUBREC, PUBREL, PUBCOMP), asserting each step.
pub async fn publish_qos2(client: &mut RawClient, topic: &str, packet_id: u16, payload: &str) {
    let rec = client
        .publish(publish_packet(
            topic,
            QoS::ExactlyOnce,
            Some(packet_id),
            payload.as_bytes(),
        ))
        .await
        .expect("QoS 2 is answered with PUBREC");
    assert_eq!(rec.packet_id, packet_id, "PUBREC packet id");
    client
        .send(&Packet::PubRel(PubResponse::success(packet_id)))
        .await;
    match client.recv().await {
        Packet::PubComp(comp) => assert_eq!(comp.packet_id, packet_id, "PUBCOMP packet id"),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
}

/// The payload of a PUBLISH as text.
pub fn text(publish: &Publish) -> String {
    String::from_utf8_lossy(&publish.payload).into_owned()
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

/// Asserts the broker still serves a new client end to end: a fresh `version` client
/// subscribes, publishes QoS 1 to itself, gets the PUBACK and receives its own message.
pub async fn assert_broker_serves(addr: SocketAddr, version: ProtocolVersion) {
    let id = client_id("still-serving", version);
    let topic = format!("alive/{id}");
    let mut client = subscriber(addr, version, &id, &topic, QoS::AtLeastOnce).await;
    client
        .send(&Packet::Publish(publish_packet(
            &topic,
            QoS::AtLeastOnce,
            Some(1),
            b"alive",
        )))
        .await;
    let mut got_ack = false;
    let mut got_message = false;
    while !(got_ack && got_message) {
        match client.recv().await {
            Packet::PubAck(ack) if ack.packet_id == 1 => got_ack = true,
            Packet::Publish(publish) if publish.payload == "alive" => {
                client.acknowledge(&publish).await;
                got_message = true;
            }
            other => panic!("unexpected {other:?} while checking the broker still serves"),
        }
    }
}
