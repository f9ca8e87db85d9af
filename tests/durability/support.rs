//! Helpers shared by the durability tests: stopping a library broker and starting it again on
//! the same data directory later, persistent sessions (connect, resume, go offline),
//! acknowledging deliveries, and the PINGREQ barrier that proves nothing else was pending.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use cairn::codec::{
    Connect, Disconnect, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
};
use cairn::config::Config;

use crate::common::{connect_packet, launch, publish_packet, RawClient, TestBroker};

/// Both protocol versions, for rules that apply to both.
pub const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

/// Session Expiry Interval of the v5 persistent sessions: long enough never to matter.
pub const LONG_EXPIRY: u32 = 300;

/// A client identifier unique per version, so one broker can host both versions of a test.
pub fn client_id(name: &str, version: ProtocolVersion) -> String {
    format!("{name}-v{}", version.level())
}

/// A library broker that was shut down gracefully; its data directory lives on.
pub struct Stopped {
    config: Config,
    data_dir: Arc<tempfile::TempDir>,
}

/// Shuts `broker` down gracefully, keeping its configuration and data directory.
pub async fn stop(broker: TestBroker) -> Stopped {
    let TestBroker {
        handle,
        config,
        data_dir,
        ..
    } = broker;
    handle.shutdown().await;
    Stopped { config, data_dir }
}

impl Stopped {
    /// Starts the broker again on the same data directory (on a new port).
    pub async fn start(self) -> TestBroker {
        let Stopped { config, data_dir } = self;
        launch(config, data_dir).await
    }
}

/// A CONNECT for a session that outlives its connection: Clean Session 0 (3.1.1), or Clean
/// Start 0 with a Session Expiry Interval of `expiry` (v5).
pub fn persistent_connect(version: ProtocolVersion, id: &str, expiry: u32) -> Connect {
    let mut connect = connect_packet(version, id);
    connect.clean_start = false;
    if version == ProtocolVersion::V5 {
        connect.properties.session_expiry_interval = Some(expiry);
    }
    connect
}

/// Connects with `connect`; asserts success and the Session Present flag
/// [MQTT-3.2.2-2] [MQTT-3.2.2-3] (the same numbers in 3.1.1 and 5.0 for Clean Session/Start 0).
pub async fn connect_expecting(
    addr: SocketAddr,
    connect: Connect,
    session_present: bool,
) -> RawClient {
    let id = connect.client_id.clone();
    let (client, connack) = RawClient::connect_with(addr, connect).await;
    assert_eq!(connack.reason, ReasonCode::Success, "CONNACK for {id}");
    assert_eq!(
        connack.session_present, session_present,
        "Session Present for {id}"
    );
    client
}

/// Starts a new persistent session (long expiry in v5) for an identifier the broker has not seen.
pub async fn new_session(addr: SocketAddr, version: ProtocolVersion, id: &str) -> RawClient {
    connect_expecting(addr, persistent_connect(version, id, LONG_EXPIRY), false).await
}

/// Resumes an existing persistent session; asserts Session Present 1.
pub async fn resume(addr: SocketAddr, version: ProtocolVersion, id: &str) -> RawClient {
    connect_expecting(addr, persistent_connect(version, id, LONG_EXPIRY), true).await
}

/// Asserts a connected client was closed by a graceful shutdown: v5 clients are told
/// DISCONNECT 0x8B Server shutting down, 3.1.1 clients are closed without a packet.
pub async fn expect_shutdown_close(client: &mut RawClient) {
    let seen = client.expect_closed().await;
    let expected = match client.version {
        ProtocolVersion::V5 => vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::ServerShuttingDown,
        ))],
        ProtocolVersion::V311 => Vec::new(),
    };
    assert_eq!(seen, expected, "what a client sees of a graceful shutdown");
}

/// Subscribes to one filter; asserts the SUBACK grants `qos`.
pub async fn subscribe(client: &mut RawClient, packet_id: u16, filter: &str, qos: QoS) {
    let suback = client.subscribe(packet_id, filter, qos).await;
    assert_eq!(suback.packet_id, packet_id, "SUBACK packet id");
    let granted = match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    };
    assert_eq!(suback.reasons, vec![granted], "SUBACK for {filter}");
}

/// Publishes with QoS 1 or 2, completes the flow and asserts the ack echoes the packet id and
/// is not a refusal; returns its reason code (v5: 0x10 when nobody subscribes).
pub async fn publish(client: &mut RawClient, publish: Publish) -> ReasonCode {
    let packet_id = publish.packet_id;
    let ack = client
        .publish(publish)
        .await
        .expect("QoS 1 and 2 are acknowledged");
    assert_eq!(Some(ack.packet_id), packet_id, "ack packet id");
    assert!(!ack.reason.is_error(), "ack reason {:?}", ack.reason);
    ack.reason
}

/// A PUBLISH of text `payload`.
pub fn message(topic: &str, qos: QoS, packet_id: u16, payload: &str) -> Publish {
    publish_packet(topic, qos, Some(packet_id), payload.as_bytes())
}

/// The payload of a PUBLISH as text.
pub fn text(publish: &Publish) -> String {
    String::from_utf8_lossy(&publish.payload).into_owned()
}

/// Receives a PUBLISH and asserts its payload, QoS and DUP flag; returns it.
pub async fn expect_message(client: &mut RawClient, payload: &str, qos: QoS, dup: bool) -> Publish {
    let publish = client.expect_publish().await;
    assert_eq!(
        (text(&publish).as_str(), publish.qos, publish.dup),
        (payload, qos, dup),
        "payload, QoS and DUP of {publish:?}"
    );
    publish
}

/// Receives PUBLISHes, acknowledging each as it comes (QoS 2: PUBREC, and PUBCOMP for each
/// PUBREL, which may arrive after later PUBLISHes), until one has `marker` as payload on
/// `marker_topic`; then waits for the PUBRELs still due and ends with a PINGREQ barrier, before
/// which no further PUBLISH may arrive. Returns the PUBLISHes before the marker, in order.
pub async fn receive_until_marker(
    client: &mut RawClient,
    marker_topic: &str,
    marker: &str,
) -> Vec<Publish> {
    let mut seen = Vec::new();
    let mut awaiting_release = HashSet::new();
    let mut marker_seen = false;
    while !marker_seen || !awaiting_release.is_empty() {
        match client.recv().await {
            Packet::Publish(publish) if !marker_seen => {
                answer_publish(client, &publish).await;
                if publish.qos == QoS::ExactlyOnce {
                    awaiting_release.extend(publish.packet_id);
                }
                marker_seen = publish.topic == marker_topic && text(&publish) == marker;
                if !marker_seen {
                    seen.push(publish);
                }
            }
            Packet::PubRel(rel) => {
                awaiting_release.remove(&rel.packet_id);
                client
                    .send(&Packet::PubComp(PubResponse::success(rel.packet_id)))
                    .await;
            }
            other => panic!("expected PUBLISH (until the marker) or PUBREL, got {other:?}"),
        }
    }
    expect_nothing_pending(client).await;
    seen
}

/// The receiver's first answer to a PUBLISH: PUBACK (QoS 1) or PUBREC (QoS 2).
async fn answer_publish(client: &mut RawClient, publish: &Publish) {
    let packet_id = publish.packet_id.expect("QoS 1 and 2 have a packet id");
    let answer = PubResponse::success(packet_id);
    match publish.qos {
        QoS::AtMostOnce => panic!("QoS 0 PUBLISH with packet id {packet_id}"),
        QoS::AtLeastOnce => client.send(&Packet::PubAck(answer)).await,
        QoS::ExactlyOnce => client.send(&Packet::PubRec(answer)).await,
    }
}

/// Ordering barrier: PINGREQ, and the next packet must be PINGRESP. Anything the broker had
/// for this client before the PINGREQ was handled would have come first, and every packet the
/// client sent before it has been handled.
pub async fn expect_nothing_pending(client: &mut RawClient) {
    client.send(&Packet::PingReq).await;
    match client.recv().await {
        Packet::PingResp => {}
        other => panic!("expected nothing pending before PINGRESP, got {other:?}"),
    }
}
