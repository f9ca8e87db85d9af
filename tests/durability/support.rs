//! Helpers of the durability tests (the ones every test binary needs are in `common`): what a
//! client sees of a graceful shutdown, publishing and receiving with the acks checked, and
//! receiving everything up to a marker.

use std::collections::HashSet;

use cairn::codec::{Disconnect, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode};

use crate::common::clients::text;
use crate::common::{publish_packet, RawClient};

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
    client.expect_nothing_pending().await;
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
