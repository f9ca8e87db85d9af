//! Helpers of the messaging tests (the ones every test binary needs are in `common::clients`):
//! publishing without waiting, Subscription Identifiers and PUBLISH properties, payloads as
//! text, the marker barrier, QoS 2 acknowledgements, and acknowledging any delivery.

use std::time::Duration;

use bytes::Bytes;
use cairn::codec::{Packet, Properties, Publish, QoS, ReasonCode};

use crate::common::clients::text;
use crate::common::{publish_packet, RawClient};

/// SUBSCRIBE properties carrying a Subscription Identifier (v5).
pub fn with_identifier(identifier: u32) -> Properties {
    Properties {
        subscription_identifiers: vec![identifier],
        ..Properties::default()
    }
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

/// Payloads as text, in order.
pub fn texts(publishes: &[Publish]) -> Vec<String> {
    publishes.iter().map(text).collect()
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
