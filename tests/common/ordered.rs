//! Per-publisher order, end to end: pipelined QoS 1 publishers numbering their messages
//! `"{name}#{n}"`, and a receiver that checks every publisher's messages arrive complete,
//! without repeats, in the order published ([MQTT-4.6.0-5] / [MQTT-4.6.0-6]).

use std::collections::HashMap;
use std::net::SocketAddr;

use cairn::codec::{Packet, ProtocolVersion, QoS, ReasonCode};

use super::clients::text;
use super::{publish_packet, RawClient};

/// Publishes `count` QoS 1 messages `"{name}#{n}"` to `topic` with up to `window` unacknowledged at a
/// time, and checks every PUBACK is a success in packet-id order of sending. A `window` above
/// the broker's Receive Maximum is what the outside test's clients did: the broker must slow
/// such a client down, not throw it out (its resends came after later messages).
pub async fn publish_pipelined(
    addr: SocketAddr,
    name: String,
    topic: &'static str,
    count: u32,
    window: u32,
) {
    let mut client = RawClient::connect(addr, ProtocolVersion::V5, &name).await;
    let mut sent = 0u32;
    let mut acked = 0u32;
    while acked < count {
        while sent < count && sent - acked < window {
            let packet_id = u16::try_from(sent % 60_000 + 1).expect("fits");
            let payload = format!("{name}#{sent}");
            client
                .send(&Packet::Publish(publish_packet(
                    topic,
                    QoS::AtLeastOnce,
                    Some(packet_id),
                    payload.as_bytes(),
                )))
                .await;
            sent += 1;
        }
        match client.recv().await {
            Packet::PubAck(ack) => {
                let expected = u16::try_from(acked % 60_000 + 1).expect("fits");
                assert_eq!(
                    (ack.packet_id, ack.reason),
                    (expected, ReasonCode::Success),
                    "{name}: PUBACKs come in order [MQTT-4.6.0-2], each a success"
                );
                acked += 1;
            }
            other => panic!("{name}: expected PUBACK, got {other:?}"),
        }
    }
    client.go_offline().await;
}

/// Receives `expected` QoS 1 messages, acknowledging each, and checks that each publisher's
/// messages arrive complete, without repeats, in the order it published them.
pub async fn receive_in_publisher_order(client: &mut RawClient, publishers: &[String], per: u32) {
    let mut next: HashMap<&str, u32> = publishers.iter().map(|p| (p.as_str(), 0)).collect();
    let total = per * u32::try_from(publishers.len()).expect("fits");
    for received in 0..total {
        let (name, number) = next_numbered(client).await;
        let expected = next
            .get_mut(name.as_str())
            .unwrap_or_else(|| panic!("unexpected publisher {name}"));
        assert_eq!(
            number, *expected,
            "message {received} of {total}: {name}'s messages in publish order"
        );
        *expected += 1;
    }
    client.expect_nothing_pending().await;
}

/// Receives until every one of `per` messages of each publisher has arrived, acknowledging
/// each, and checks order the way QoS 1 over a link that breaks allows it: a message may come
/// again (a resend after a reconnect), but none arrives for the first time before an earlier
/// one of the same publisher. Returns how many came more than once.
pub async fn receive_in_order_allowing_repeats(
    client: &mut RawClient,
    publishers: &[String],
    per: u32,
) -> u32 {
    let mut next: HashMap<&str, u32> = publishers.iter().map(|p| (p.as_str(), 0)).collect();
    let mut repeats = 0;
    while next.values().any(|&n| n < per) {
        let (name, number) = next_numbered(client).await;
        let expected = next
            .get_mut(name.as_str())
            .unwrap_or_else(|| panic!("unexpected publisher {name}"));
        if number < *expected {
            repeats += 1;
            continue;
        }
        assert_eq!(
            number, *expected,
            "{name}'s message {number} arrived before {expected}"
        );
        *expected += 1;
    }
    repeats
}

/// The next message, acknowledged, as its publisher's name and number (`"{name}#{n}"`).
async fn next_numbered(client: &mut RawClient) -> (String, u32) {
    let publish = client.expect_publish().await;
    client.acknowledge(&publish).await;
    let payload = text(&publish);
    let (name, number) = payload
        .rsplit_once('#')
        .unwrap_or_else(|| panic!("unexpected payload {payload:?}"));
    let number = number.parse().expect("a message number");
    (name.to_string(), number)
}
