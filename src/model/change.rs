//! The change records the engine hands the store: one [`StoreOp`] per change to durable state,
//! in the order the changes happened.

use std::sync::Arc;
use std::time::SystemTime;

use crate::codec::SubscriptionOptions;

use super::message::{Delivery, Message};
use super::will::SessionWill;

/// One change to durable state.
#[derive(Debug, Clone)]
pub enum StoreOp {
    /// A session was created, resumed by a connection, or its expiry interval changed.
    PutSession {
        client_id: Arc<str>,
        expiry_interval: u32,
    },
    /// A persistent session's connection ended at `at` (wall-clock): its expiry and Will
    /// Delay count from then, across restarts.
    Offline { client_id: Arc<str>, at: SystemTime },
    /// A session ended (clean start, expiry, or a clean session disconnecting).
    DeleteSession { client_id: Arc<str> },
    /// A subscription was added or replaced.
    Subscribe {
        client_id: Arc<str>,
        filter: Arc<str>,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    },
    /// A subscription was removed.
    Unsubscribe {
        client_id: Arc<str>,
        filter: Arc<str>,
    },
    /// A message was queued for a session as entry `seq` of its queue: its body (stored once
    /// per message id) and the per-session delivery (granted QoS, retain flag, subscription
    /// identifiers).
    Enqueue {
        client_id: Arc<str>,
        seq: u64,
        delivery: Delivery,
    },
    /// Queue entry `seq` left the queue without needing more: sent at QoS 0, expired, too large
    /// for the client's Maximum Packet Size, or dropped because the queue was full.
    Discard { client_id: Arc<str>, seq: u64 },
    /// Queue entry `seq` was sent under `packet_id` and is now inflight (awaiting PUBACK or
    /// PUBREC); `sent_topic` as in [`Inflight`](super::Inflight).
    Inflight {
        client_id: Arc<str>,
        seq: u64,
        packet_id: u16,
        sent_topic: Option<Arc<str>>,
    },
    /// PUBREC arrived for an inflight QoS 2 message; PUBREL was sent, PUBCOMP is awaited.
    /// `order` is its place among the session's released entries (see
    /// [`Inflight::release_order`](super::Inflight::release_order)).
    Released {
        client_id: Arc<str>,
        packet_id: u16,
        order: u64,
    },
    /// The receiver completed the flow (PUBACK, PUBCOMP, or an error PUBREC): the message is gone.
    Acked { client_id: Arc<str>, packet_id: u16 },
    /// An inbound QoS 2 packet identifier now awaits PUBREL (`awaiting = true`) or was released.
    InboundQos2 {
        client_id: Arc<str>,
        packet_id: u16,
        awaiting: bool,
    },
    /// The retained message of a topic was set (`Some`) or cleared (`None`).
    Retain {
        topic: Arc<str>,
        message: Option<Arc<Message>>,
    },
    /// A session's Will was set (with who set it) or cleared.
    Will {
        client_id: Arc<str>,
        will: Option<Box<SessionWill>>,
    },
}
