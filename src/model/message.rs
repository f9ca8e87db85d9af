//! Application messages as the router moves them: one immutable [`Message`] shared by every
//! session it is routed to, and a per-session [`Delivery`] carrying what differs per receiver
//! (granted QoS, retain flag, subscription identifiers).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::codec::{Properties, Publish, QoS, Will};

/// One application message, stored once however many sessions it is routed to.
#[derive(Debug)]
pub struct Message {
    /// Unique and increasing for the life of the data directory: the store keeps one body per
    /// id, however many queues refer to it.
    pub id: u64,
    /// Topic name (never an alias).
    pub topic: Arc<str>,
    pub payload: Bytes,
    /// QoS the publisher sent it with.
    pub qos: QoS,
    /// RETAIN flag as published.
    pub retain: bool,
    /// The properties forwarded to receivers (Payload Format Indicator, Content Type, Response
    /// Topic, Correlation Data, User Properties), `None` if there are none. Expiry, aliases and
    /// subscription identifiers are per delivery and not kept here. Boxed: most messages carry
    /// none, and [`Properties`] held inline made every message, queued or retained, 344 bytes
    /// larger.
    pub properties: Option<Box<Properties>>,
    /// When the Message Expiry Interval runs out, if the publisher set one.
    pub expires_at: Option<Instant>,
    /// Client identifier of the publishing session (for No Local); `None` for the broker's own.
    pub publisher: Option<Arc<str>>,
}

impl Message {
    /// Builds the routed message from a client's PUBLISH (topic already resolved from any alias).
    pub fn from_publish(
        id: u64,
        publish: Publish,
        topic: Arc<str>,
        publisher: Arc<str>,
        now: Instant,
    ) -> Message {
        let mut properties = publish.properties;
        let expires_at = take_expiry(&mut properties, now);
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        Message {
            id,
            topic,
            // The decoded payload is a slice of the connection's read buffer; a copy of its
            // own lets that buffer go while the message waits in queues.
            payload: Bytes::copy_from_slice(&publish.payload),
            qos: publish.qos,
            retain: publish.retain,
            properties: boxed_unless_empty(properties),
            expires_at,
            publisher: Some(publisher),
        }
    }

    /// The message a Will becomes when it is published, as if its client had published it
    /// (so a No Local subscription of the same client id does not get it [MQTT-3.8.3-3]); the
    /// Will Delay Interval is not forwarded.
    pub fn from_will(id: u64, will: Will, client_id: Arc<str>, now: Instant) -> Message {
        let mut properties = will.properties;
        properties.will_delay_interval = None;
        let expires_at = take_expiry(&mut properties, now);
        Message {
            id,
            topic: Arc::from(will.topic),
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: boxed_unless_empty(properties),
            expires_at,
            publisher: Some(client_id),
        }
    }

    /// A message the broker itself publishes (`$SYS`).
    pub fn from_broker(id: u64, topic: &str, payload: Bytes, retain: bool) -> Message {
        Message {
            id,
            topic: Arc::from(topic),
            payload,
            qos: QoS::AtMostOnce,
            retain,
            properties: None,
            expires_at: None,
            publisher: None,
        }
    }

    /// Seconds of life left at `now`: `None` if the message never expires, `Some(0)` once expired.
    /// Forwarded messages carry this as their Message Expiry Interval [MQTT-3.3.2-6].
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            if left.is_zero() {
                0
            } else {
                // Round up so a message with 0.4 s left is still delivered with interval 1.
                u32::try_from(left.as_secs() + u64::from(left.subsec_nanos() > 0))
                    .unwrap_or(u32::MAX)
            }
        })
    }

    /// The properties to send it with (each receiver's PUBLISH gets its own copy).
    pub fn properties_to_send(&self) -> Properties {
        self.properties.as_deref().cloned().unwrap_or_default()
    }

    /// True once the Message Expiry Interval has passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.remaining_expiry(now) == Some(0)
    }
}

/// `properties` boxed, or `None` if it holds none: what [`Message::properties`] keeps.
pub fn boxed_unless_empty(properties: Properties) -> Option<Box<Properties>> {
    (properties != Properties::default()).then(|| Box::new(properties))
}

/// Removes the Message Expiry Interval from `properties`, returning when it runs out.
fn take_expiry(properties: &mut Properties, now: Instant) -> Option<Instant> {
    properties
        .message_expiry_interval
        .take()
        .map(|secs| now + Duration::from_secs(u64::from(secs)))
}

/// One message on its way to one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// min(published QoS, granted QoS) [MQTT-3.8.4-8].
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// Subscription Identifiers of every matching subscription (v5) [MQTT-3.3.4-3].
    pub subscription_ids: Vec<u32>,
    /// When it entered the receiver's queue, in [`unix_seconds`]: how long a bridge has held
    /// it. 0 for a session that ends with its connection (no one asks how old its queue is).
    /// Four bytes that fit in the struct's padding, so a delivery is no larger for it.
    pub queued_at: u32,
}

/// A wall-clock time as whole seconds since the Unix epoch, the resolution queue ages are
/// shown in (`u32` lasts until 2106; earlier than the epoch clamps to 0).
pub fn unix_seconds(at: SystemTime) -> u32 {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// Where an outgoing QoS 1/2 message stands in its acknowledgement flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundState {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitingPubAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitingPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitingPubComp,
}

/// The first release order (see [`Inflight::release_order`]). The store keeps one number per
/// inflight entry to restore the window's order: below this, the entry's queue sequence number
/// (its PUBLISH's place); from it, its place among the released entries.
pub const FIRST_RELEASE_ORDER: u64 = 1 << 63;

/// One message in a session's outbound inflight window.
#[derive(Debug, Clone)]
pub struct Inflight {
    pub packet_id: u16,
    pub delivery: Delivery,
    pub state: OutboundState,
    /// Awaiting PUBCOMP: its place among the window's released entries, whose PUBRELs are
    /// resent in the order their PUBRECs came [MQTT-4.6.0-4] (from [`FIRST_RELEASE_ORDER`],
    /// or a queue sequence number for one released before there were release orders).
    /// Otherwise 0.
    pub release_order: u64,
    /// The topic its PUBLISH went out under where something other than the message's own
    /// topic decides it: a bridge's `out` rules, which may change before a resend, so it is
    /// kept even where they left the topic as it was. A resend must be the PUBLISH first sent
    /// [MQTT-4.4.0-1], whatever the rules say by then. Stored with the entry; `None` for a
    /// client's delivery, which goes under the message's own topic.
    pub sent_topic: Option<Arc<str>>,
}

/// The bytes an entry counts for in the queue bounds: its topic and payload.
pub fn entry_size(delivery: &Delivery) -> u32 {
    let message = &delivery.message;
    u32::try_from(message.topic.len() + message.payload.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn queue_time_costs_a_delivery_no_memory() {
        // Arc (8) + Vec (24) + QoS and retain (2) leave 6 bytes of padding: `queued_at` uses 4.
        assert_eq!(std::mem::size_of::<Delivery>(), 40);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_message_without_properties_does_not_carry_their_room() {
        // id 8, topic 16, payload 32, expiry 16, publisher 16, properties 8, QoS and retain 2.
        assert_eq!(std::mem::size_of::<Message>(), 104);
    }

    fn publish(properties: Properties) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t".into(),
            packet_id: Some(1),
            properties,
            payload: Bytes::from_static(b"p"),
        }
    }

    #[test]
    fn only_forwarded_properties_are_kept_and_none_is_kept_as_none() {
        let now = Instant::now();
        let per_delivery = Properties {
            message_expiry_interval: Some(60),
            topic_alias: Some(3),
            subscription_identifiers: vec![7],
            ..Properties::default()
        };
        let message = Message::from_publish(1, publish(per_delivery), "t".into(), "c".into(), now);
        assert_eq!(
            message.properties, None,
            "expiry, alias and ids are not forwarded as such"
        );
        assert_eq!(message.expires_at, Some(now + Duration::from_secs(60)));
        assert_eq!(message.properties_to_send(), Properties::default());

        let forwarded = Properties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        };
        let message =
            Message::from_publish(2, publish(forwarded.clone()), "t".into(), "c".into(), now);
        assert_eq!(message.properties.as_deref(), Some(&forwarded));
        assert_eq!(message.properties_to_send(), forwarded);
    }

    #[test]
    fn unix_seconds_clamp_at_both_ends() {
        assert_eq!(
            unix_seconds(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            1_700_000_000
        );
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(
            unix_seconds(UNIX_EPOCH + Duration::from_secs(1 << 40)),
            u32::MAX
        );
    }
}
