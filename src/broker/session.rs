//! A session as plain data: its subscriptions, its queue of messages waiting to be sent, its
//! outbound inflight window, its inbound QoS 2 state and its Will. No I/O and no locking here;
//! the shared [`super::state::State`] owns every session and the connection task drives them.
//!
//! The fields are what the store persists; everything else about a connection
//! (socket, aliases, keep-alive) lives in the connection task.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::codec::SubscriptionOptions;

use super::queue::{MessageQueue, QueueBudget};
use super::window::Window;
use crate::model::SessionWill;

/// One subscription as the session remembers it (the index holds the routing copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSubscription {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// A session's subscriptions by filter, as subscribed (`$share/…` included): a list sorted by
/// filter rather than a hash map. Most sessions have one subscription or a few, and a hash map
/// holding one costs about 150 bytes where the list takes 32 (a sensor's session among
/// thousands); lookups stay logarithmic.
#[derive(Debug, Default)]
pub struct SessionSubscriptions(Vec<(Arc<str>, SessionSubscription)>);

impl SessionSubscriptions {
    /// Adds the subscription to `filter`, or replaces the one there [MQTT-3.8.4-3].
    pub fn insert(&mut self, filter: Arc<str>, subscription: SessionSubscription) {
        match self.position(&filter) {
            Ok(index) => self.0[index].1 = subscription,
            Err(index) => {
                if self.0.len() == self.0.capacity() {
                    // Doubling from one, not from four as `Vec` does.
                    self.0.reserve_exact(self.0.len().max(1));
                }
                self.0.insert(index, (filter, subscription));
            }
        }
    }

    /// Removes the subscription to `filter`; returns it if there was one.
    pub fn remove(&mut self, filter: &str) -> Option<SessionSubscription> {
        let index = self.position(filter).ok()?;
        let (_, removed) = self.0.remove(index);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(removed)
    }

    /// The subscription to `filter`, if there is one.
    pub fn get(&self, filter: &str) -> Option<&SessionSubscription> {
        let index = self.position(filter).ok()?;
        Some(&self.0[index].1)
    }

    /// Every filter with its subscription, in filter order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &SessionSubscription)> {
        self.0
            .iter()
            .map(|(filter, subscription)| (filter, subscription))
    }

    /// The filters, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(filter, _)| filter)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where `filter` is, or where it would go.
    fn position(&self, filter: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(held, _)| (**held).cmp(filter))
    }
}

/// The state of one session.
#[derive(Debug)]
pub struct Session {
    pub client_id: Arc<str>,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires.
    pub expiry_interval: u32,
    /// A stored session resumed with a Session Expiry Interval of 0: the store keeps it (with
    /// that interval, so a restart ends it) until it ends, and records its changes meanwhile,
    /// so that a takeover asking for an interval again finds the store in step.
    pub kept_in_store: bool,
    /// Filter (as subscribed, `$share/…` included) → options.
    pub subscriptions: SessionSubscriptions,
    /// Messages waiting to be sent, oldest first, mostly on disk.
    pub queue: MessageQueue,
    /// Sent QoS 1/2 messages awaiting acknowledgement, in resend order (see [`Window`]).
    pub inflight: Window,
    /// Packet identifiers of inbound QoS 2 messages whose PUBREC was sent and PUBREL not yet
    /// received: a repeat PUBLISH with one of these is not routed again [MQTT-4.3.3-10].
    pub inbound_qos2: BTreeSet<u16>,
    /// The last packet identifier handed out.
    last_packet_id: u16,
    /// The Will of the current connection, or one waiting for its delay after a disconnect,
    /// with who set it, for the ACL check when it is sent.
    pub will: Option<Box<SessionWill>>,
}

impl Session {
    /// A new, empty session whose queue draws from `budget`.
    pub fn new(client_id: Arc<str>, expiry_interval: u32, budget: Arc<QueueBudget>) -> Session {
        Session {
            client_id,
            expiry_interval,
            kept_in_store: false,
            subscriptions: SessionSubscriptions::default(),
            queue: MessageQueue::new(budget),
            inflight: Window::default(),
            inbound_qos2: BTreeSet::new(),
            last_packet_id: 0,
            will: None,
        }
    }

    /// A packet identifier not used by any inflight message [MQTT-2.3.1-2]. The caller keeps
    /// the window below 65,535 entries, so one is always free.
    pub fn next_packet_id(&mut self) -> u16 {
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if self.last_packet_id == 0 {
                continue;
            }
            let id = self.last_packet_id;
            if !self.inflight.holds(id) {
                return id;
            }
        }
    }

    /// When the oldest message it still holds for delivery, inflight or queued, was queued
    /// ([`crate::model::unix_seconds`]); `None` when it holds none.
    pub fn oldest_queued_at(&self) -> Option<u32> {
        let inflight = self.inflight.iter().map(|entry| entry.delivery.queued_at);
        inflight.chain(self.queue.oldest_queued_at()).min()
    }

    /// Gives back what an idle session's empty queue and window keep in memory: the queue's
    /// box, and a window's buffer sized for its last burst. Both come back with the next
    /// message; a connected sensor that once received a command would otherwise hold them
    /// (a few hundred bytes) for as long as it stays connected.
    pub fn shed_idle_memory(&mut self) {
        self.queue.box_only_if_used();
        self.inflight.shed_idle_memory();
    }

    /// Whether the store keeps this session's state (its subscriptions, queue and flows): it
    /// outlives its connection, or it was stored and then resumed to end with its connection
    /// ([`Session::kept_in_store`]).
    pub fn is_stored(&self) -> bool {
        self.expiry_interval > 0 || self.kept_in_store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use crate::model::Inflight;
    use crate::model::{Delivery, Message, OutboundState};
    use bytes::Bytes;

    fn delivery(qos: QoS) -> Delivery {
        Delivery {
            message: Arc::new(Message::from_broker(1, "t", Bytes::new(), false)),
            qos,
            retain: false,
            subscription_ids: Vec::new(),
            queued_at: 0,
        }
    }

    fn at_qos(qos: QoS) -> SessionSubscription {
        SessionSubscription {
            options: SubscriptionOptions::with_qos(qos),
            identifier: None,
        }
    }

    /// [MQTT-3.8.4-3] A second subscription to the same filter replaces the first; filters
    /// are found whatever order they came in; the last one out gives the memory back.
    #[test]
    fn subscriptions_are_kept_by_filter() {
        let mut subscriptions = SessionSubscriptions::default();
        for filter in ["b/#", "a/+", "c", "a/+"] {
            subscriptions.insert(Arc::from(filter), at_qos(QoS::AtMostOnce));
        }
        subscriptions.insert(Arc::from("c"), at_qos(QoS::ExactlyOnce));
        assert_eq!(subscriptions.len(), 3);
        let filters: Vec<&str> = subscriptions.keys().map(|filter| &**filter).collect();
        assert_eq!(filters, ["a/+", "b/#", "c"]);
        assert_eq!(subscriptions.get("c"), Some(&at_qos(QoS::ExactlyOnce)));
        assert_eq!(subscriptions.get("d"), None);
        assert_eq!(subscriptions.remove("a/+"), Some(at_qos(QoS::AtMostOnce)));
        assert_eq!(subscriptions.remove("a/+"), None);
        subscriptions.remove("b/#");
        subscriptions.remove("c");
        assert!(subscriptions.is_empty());
        assert_eq!(
            subscriptions.0.capacity(),
            0,
            "memory kept by an empty list"
        );
    }

    /// One subscription takes one slot, not the four a `Vec` starts with.
    #[test]
    fn one_subscription_takes_one_slot() {
        let mut subscriptions = SessionSubscriptions::default();
        subscriptions.insert(Arc::from("sensors/7"), at_qos(QoS::AtLeastOnce));
        assert_eq!(subscriptions.0.capacity(), 1);
    }

    #[test]
    fn packet_ids_skip_zero_and_ids_in_use() {
        let mut session = Session::new(Arc::from("c"), 10, QueueBudget::new(u64::MAX));
        session.last_packet_id = u16::MAX - 1;
        let first = session.next_packet_id();
        assert_eq!(first, u16::MAX);
        session.inflight.push(Inflight {
            packet_id: 1,
            delivery: delivery(QoS::AtLeastOnce),
            state: OutboundState::AwaitingPubAck,
            release_order: 0,
            sent_topic: None,
        });
        assert_eq!(
            session.next_packet_id(),
            2,
            "0 is never used and 1 is inflight"
        );
    }

    /// [MQTT-2.3.1-2] Through a window of thousands (a bridge to a server that announces no
    /// Receive Maximum), acknowledged out of order and wrapping past 65,535, no identifier in
    /// use is handed out again.
    #[test]
    fn packet_ids_stay_unique_in_a_large_window() {
        let mut session = Session::new(Arc::from("c"), 10, QueueBudget::new(u64::MAX));
        session.last_packet_id = u16::MAX - 1_000;
        let mut in_use = std::collections::BTreeSet::new();
        for round in 0..6u32 {
            while session.inflight.len() < 5_000 {
                let packet_id = session.next_packet_id();
                assert!(
                    packet_id != 0 && in_use.insert(packet_id),
                    "{packet_id} in round {round}"
                );
                session.inflight.push(Inflight {
                    packet_id,
                    delivery: delivery(QoS::AtLeastOnce),
                    state: OutboundState::AwaitingPubAck,
                    release_order: 0,
                    sent_topic: None,
                });
            }
            // Every third entry acknowledged, from the newest back.
            for position in (0..session.inflight.len()).rev().step_by(3) {
                let gone = session.inflight.remove(position).expect("in the window");
                in_use.remove(&gone.packet_id);
            }
        }
        assert!(
            session.last_packet_id < u16::MAX - 1_000,
            "the identifiers wrapped"
        );
    }

    #[test]
    fn the_oldest_held_message_is_in_flight_or_queued() {
        let mut session = Session::new(Arc::from("c"), 10, QueueBudget::new(u64::MAX));
        assert_eq!(session.oldest_queued_at(), None);
        let limits = crate::broker::queue::QueueLimits {
            max_messages: 10,
            max_bytes: u64::MAX,
            policy: crate::config::QueueFullPolicy::DropOldest,
            queue_qos0_offline: false,
        };
        let placement = crate::broker::queue::Placement {
            persistent: true,
            online: true,
        };
        let queued = Delivery {
            queued_at: 200,
            ..delivery(QoS::AtLeastOnce)
        };
        let client = Arc::from("c");
        session
            .queue
            .offer(queued, &client, placement, &limits, &mut Vec::new());
        assert_eq!(session.oldest_queued_at(), Some(200));
        session.inflight.push(Inflight {
            packet_id: 1,
            delivery: Delivery {
                queued_at: 100,
                ..delivery(QoS::AtLeastOnce)
            },
            state: OutboundState::AwaitingPubRec,
            release_order: 0,
            sent_topic: None,
        });
        session.inflight.release(0);
        assert_eq!(
            session.oldest_queued_at(),
            Some(100),
            "released, still inflight"
        );
    }
}
