//! Bridge sessions: a bridge's outbound buffer is a persistent session of the state, named
//! [`BRIDGE_SESSION_PREFIX`] + the bridge's name, whose subscriptions are the bridge's `out`
//! rules and whose queue has the bridge's own bounds. It never expires; the bridge's uplink
//! attaches to it like a client connection and drains it upstream. Its queue is bounded by
//! its own limits only, not by the byte budget clients' queues share. Messages that came in
//! through the bridge are published under the same session's name, so the No Local option
//! of its subscriptions keeps them from going back out.

use std::sync::Arc;

use crate::codec::SubscriptionOptions;
use crate::model::{OutboundState, StoreOp};

use super::super::queue::{QueueBudget, QueueLimits};
use super::super::session::Session;
use super::{Changes, SessionSlot, State};

/// The start of every bridge session's client identifier. Clients may not take it.
pub const BRIDGE_SESSION_PREFIX: &str = "$bridge/";

/// How a configured bridge's session must look.
#[derive(Debug, Clone)]
pub struct BridgeSession {
    pub client_id: Arc<str>,
    pub limits: QueueLimits,
    /// Memory its queue may hold messages in as well as in the store, uplink up or down
    /// (`bridges.queue.in_memory_bytes`, see [`crate::broker::queue::MessageQueue::hold_in_memory`]).
    pub in_memory_bytes: u64,
    /// The local filters of the `out` rules and the options they are subscribed with.
    pub subscriptions: Vec<(Arc<str>, SubscriptionOptions)>,
}

/// A bridge session's queue bounds, and how many messages they dropped since start-up.
#[derive(Debug)]
pub(super) struct BridgeQueue {
    pub limits: QueueLimits,
    pub dropped: u64,
}

/// What opening the bridge sessions changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BridgesOpened {
    /// Sessions of bridges no longer configured that were ended, with the messages they held.
    pub removed: Vec<(Arc<str>, usize)>,
}

impl State {
    /// Makes the bridge sessions exactly `bridges`: each created if absent (never expiring),
    /// given its queue bounds, and subscribed to exactly its filters (retained messages of a
    /// new filter are queued, as for a client's new subscription); the sessions of bridges no
    /// longer configured are ended.
    pub fn open_bridges(
        &mut self,
        bridges: &[BridgeSession],
        changes: &mut Changes,
    ) -> BridgesOpened {
        let mut opened = BridgesOpened::default();
        let stale: Vec<Arc<str>> = self
            .sessions
            .keys()
            .filter(|id| id.starts_with(BRIDGE_SESSION_PREFIX))
            .filter(|id| !bridges.iter().any(|bridge| bridge.client_id == **id))
            .cloned()
            .collect();
        for client_id in stale {
            let queued = self
                .session(&client_id)
                .map_or(0, |session| session.queue.len());
            self.end_session(&client_id, changes);
            self.bridge_queues.remove(&client_id);
            opened.removed.push((client_id, queued));
        }
        for bridge in bridges {
            self.open_bridge(bridge, changes);
        }
        opened
    }

    fn open_bridge(&mut self, bridge: &BridgeSession, changes: &mut Changes) {
        let client_id = &bridge.client_id;
        if !self.sessions.contains_key(client_id) {
            let session = Session::new(client_id.clone(), u32::MAX, self.budget.clone());
            let epoch = self.new_epoch();
            let slot = SessionSlot {
                session,
                link: None,
                epoch,
            };
            self.sessions.insert(client_id.clone(), Box::new(slot));
            changes.ops.push(StoreOp::PutSession {
                client_id: client_id.clone(),
                expiry_interval: u32::MAX,
            });
        }
        if let Some(slot) = self.sessions.get_mut(client_id) {
            slot.session.queue.hold_in_memory(bridge.in_memory_bytes);
            // Bounded by its own `[bridges.queue]` limits only: a bridge queue sized for a
            // long outage is not cut short by `limits.max_queued_bytes_total`, which shares
            // out what clients' queues may hold.
            slot.session
                .queue
                .move_to_budget(QueueBudget::new(u64::MAX));
        }
        let dropped = self.bridge_dropped(client_id);
        let queue = BridgeQueue {
            limits: bridge.limits,
            dropped,
        };
        self.bridge_queues.insert(client_id.clone(), queue);
        let current: Vec<Arc<str>> = self
            .session(client_id)
            .map(|session| session.subscriptions.keys().cloned().collect())
            .unwrap_or_default();
        for filter in current {
            if !bridge
                .subscriptions
                .iter()
                .any(|(wanted, _)| *wanted == filter)
            {
                self.unsubscribe_from(client_id, &filter, changes);
            }
        }
        for (filter, options) in &bridge.subscriptions {
            let unchanged = self
                .session(client_id)
                .and_then(|session| session.subscriptions.get(filter))
                .is_some_and(|existing| existing.options == *options);
            if unchanged {
                continue;
            }
            let retained = self.subscribe_to(client_id, filter, *options, None, changes);
            self.enqueue_all(client_id, retained, changes);
        }
    }

    /// How many messages the queue bounds of bridge session `client_id` dropped since start-up.
    pub fn bridge_dropped(&self, client_id: &str) -> u64 {
        self.bridge_queues
            .get(client_id)
            .map_or(0, |queue| queue.dropped)
    }

    /// A packet identifier of `client_id`'s session not used by its inflight messages, for a
    /// packet other than PUBLISH (the bridge's SUBSCRIBE upstream) [MQTT-2.2.1-3].
    pub fn fresh_packet_id(&mut self, client_id: &str) -> Option<u16> {
        let slot = self.sessions.get_mut(client_id)?;
        Some(slot.session.next_packet_id())
    }

    /// The bridge's upstream server lost the bridge's session (CONNACK Session Present 0):
    /// its packet identifiers mean nothing any more. Messages it had acknowledged with PUBREC
    /// are its own now and leave the window; the rest are sent again as new messages by the
    /// caller; the inbound QoS 2 flows it had started are forgotten, so a new message under
    /// a reused identifier is not mistaken for a repeat. Returns how many messages left the
    /// window so: sent, as the server took them.
    pub fn upstream_session_lost(&mut self, client_id: &Arc<str>, changes: &mut Changes) -> usize {
        let Some(slot) = self.sessions.get_mut(client_id) else {
            return 0;
        };
        let session = &mut slot.session;
        let released: Vec<u16> = session
            .inflight
            .iter()
            .filter(|entry| entry.state == OutboundState::AwaitingPubComp)
            .map(|entry| entry.packet_id)
            .collect();
        session
            .inflight
            .retain(|entry| entry.state != OutboundState::AwaitingPubComp);
        for &packet_id in &released {
            changes.ops.push(StoreOp::Acked {
                client_id: client_id.clone(),
                packet_id,
            });
        }
        for packet_id in std::mem::take(&mut session.inbound_qos2) {
            changes.ops.push(StoreOp::InboundQos2 {
                client_id: client_id.clone(),
                packet_id,
                awaiting: false,
            });
        }
        released.len()
    }
}
