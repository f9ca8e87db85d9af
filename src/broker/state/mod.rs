//! The broker's shared state: every session, the subscription index and the retained messages,
//! and the only operations that change them. Nothing here awaits or does I/O.
//!
//! Every operation records what it changed in a [`Changes`]: the [`StoreOp`]s, in the order
//! the changes happened, and what routing found. The fields are private: the one way to
//! change the state is [`super::Broker::change`], which locks it, runs operations, and hands
//! their store operations to the store before unlocking, so the store sees every change in
//! the order it happened.
//!
//! - [`lifecycle`]: sessions coming and going, and their timers;
//! - [`routing`]: subscriptions, retained messages, routing into queues;
//! - [`flows`]: an attached session's QoS 1/2 flows both ways;
//! - [`bridges`]: the sessions that hold the bridges' outbound queues.

use std::collections::HashMap;
use std::sync::Arc;

use crate::access::Rules;
use crate::codec::{ReasonCode, Will};
use crate::model::{Message, StoreOp};
use crate::store::Pace;

use super::queue::{QueueBudget, QueueLimits};
use super::session::Session;
use super::subscriptions::SubscriptionIndex;
use super::ClientKeyed;

/// The connection currently attached to a session.
#[derive(Debug, Clone)]
pub struct Link {
    pub connection_id: u64,
    pub signal: Arc<ConnectionSignal>,
}

/// A session and the connection attached to it, if any.
#[derive(Debug)]
pub struct SessionSlot {
    pub session: Session,
    pub link: Option<Link>,
    /// Set anew at every attach, from a counter of the whole state: no two attachments of any
    /// session share it, so a timer armed at a detach acts only on that same attachment, never
    /// on a session created later under the same client id (Clean Start) or resumed since.
    pub epoch: u64,
}

/// A CONNECT as the session table sees it.
#[derive(Debug)]
pub struct AttachRequest {
    pub client_id: Arc<str>,
    /// Clean Session (3.1.1) or Clean Start (5.0).
    pub clean_start: bool,
    /// The Session Expiry Interval granted.
    pub expiry_interval: u32,
    pub will: Option<Box<Will>>,
    /// The client's user name, for the ACL check of its Will when it is sent.
    pub username: Option<Arc<str>>,
    pub link: Link,
}

/// What attaching a connection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    /// An existing session was resumed (Session Present) [MQTT-3.2.2-2].
    pub session_present: bool,
    /// The CONNACK must wait until the attach is durable: it discarded a stored session
    /// (Clean Start), which a crash must not bring back to a client told Session Present 0,
    /// or it stored a Will, which must go out even if the broker then stops uncleanly.
    /// Otherwise the CONNACK promises nothing a crash could take back: a new session lost
    /// before its commit is found absent again (Session Present 0), a resumed one is still
    /// there, and every later ack of the connection waits for a commit that includes it.
    pub connack_waits: bool,
}

/// What a connection's end did, and which timers the caller must arm.
#[derive(Debug, Default)]
pub struct Detached {
    /// Arm a timer to publish the Will after this many seconds (Will Delay Interval).
    pub will_delay: Option<u32>,
    /// Arm a timer to end the session after this many seconds (Session Expiry Interval).
    pub expiry: Option<u32>,
    /// The session's epoch the timers belong to.
    pub epoch: u64,
}

/// What operations on the state changed, for [`super::Broker::change`] to commit.
#[derive(Debug, Default)]
pub struct Changes {
    /// The store operations, in the order the changes happened.
    pub ops: Vec<StoreOp>,
    /// How soon they must be committed: [`Pace::Now`] when something is held back until
    /// they are (a QoS 2 send, a PUBREL, a stored QoS 0 send).
    pub pace: Pace,
    /// Whether any subscription matched (v5 PUBACK 0x10 No matching subscribers otherwise).
    pub matched: bool,
    /// Messages lost to a receiving session's queue bounds (dropped or refused).
    pub dropped: u64,
    /// Receiving sessions that refused the message because their queue was full.
    pub refused: usize,
    /// Receiving sessions whose queue took the message.
    pub queued: usize,
    /// Write again what the store holds already (see [`Changes::restated`]): set after a
    /// failed commit, when the disk may lack what memory holds.
    pub restate: bool,
    /// An acknowledgement of the change confirms state handed to the store earlier and not
    /// written again: with no operations of its own, the change's commit is a barrier behind
    /// everything submitted before ([`crate::store::Store::barrier`]).
    pub rests_on_earlier: bool,
}

impl Changes {
    /// Asks for the commit without waiting for the commit window.
    pub fn urgent(&mut self) {
        self.pace = Pace::Now;
    }

    /// `op` restates what the store holds or was handed earlier (a client subscribing again
    /// with the same options, as most do on every connect): written only when
    /// [`Changes::restate`] says so; otherwise the change's acknowledgement waits for the
    /// earlier commit instead, and the SD card is spared a page per client.
    pub fn restated(&mut self, op: StoreOp) {
        if self.restate {
            self.ops.push(op);
        } else {
            self.rests_on_earlier = true;
        }
    }

    /// The message matched subscriptions but every receiving queue refused it (v5: 0x97
    /// Quota exceeded to the publisher).
    pub fn refused_everywhere(&self) -> bool {
        self.refused > 0 && self.queued == 0
    }
}

/// Totals over every session, for `$SYS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub sessions: usize,
    /// Messages queued, in memory and on disk.
    pub queued: usize,
    /// Messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Bytes queued in every session together.
    pub queued_bytes: u64,
}

/// Everything the broker shares between connections.
#[derive(Debug)]
pub struct State {
    /// Boxed: a table of many sessions then holds pointers, not slots, in its spare buckets.
    sessions: ClientKeyed<Arc<str>, Box<SessionSlot>>,
    subscriptions: SubscriptionIndex,
    retained: ClientKeyed<Arc<str>, Arc<Message>>,
    /// Round-robin position per shared filter (`$share/{group}/{filter}`).
    share_cursors: HashMap<Arc<str>, usize>,
    /// The bounds of every session's queue, but the bridges'.
    queue_limits: QueueLimits,
    /// The bridges' sessions: their queue bounds, and what those bounds dropped.
    bridge_queues: HashMap<Arc<str>, BridgeQueue>,
    /// The byte budget every queue draws from.
    budget: Arc<QueueBudget>,
    /// The id the next message gets.
    next_message_id: u64,
    /// The epoch the next attachment (or restored session) gets.
    next_epoch: u64,
    /// The rules a Will is checked against when it is sent, when they include an ACL.
    will_acl: Option<Arc<Rules>>,
}

impl State {
    /// An empty state whose sessions' queues hold what `queue_limits` and `budget` allow.
    pub fn new(queue_limits: QueueLimits, budget: Arc<QueueBudget>) -> State {
        State {
            sessions: ClientKeyed::default(),
            subscriptions: SubscriptionIndex::default(),
            retained: ClientKeyed::default(),
            share_cursors: HashMap::new(),
            queue_limits,
            bridge_queues: HashMap::new(),
            budget,
            next_message_id: 1,
            next_epoch: 1,
            will_acl: None,
        }
    }

    /// The rules Wills are checked against from now on (`None`: no ACL, every Will goes out).
    pub fn set_will_acl(&mut self, acl: Option<Arc<Rules>>) {
        self.will_acl = acl;
    }

    /// The session of `client_id`, to look at.
    pub fn session(&self, client_id: &str) -> Option<&Session> {
        self.sessions.get(client_id).map(|slot| &slot.session)
    }

    /// The signal of the connection attached to `client_id`'s session, if one is.
    pub fn attached_signal(&self, client_id: &str) -> Option<Arc<ConnectionSignal>> {
        let slot = self.sessions.get(client_id)?;
        slot.link.as_ref().map(|link| link.signal.clone())
    }

    /// The connection of `client_id` goes idle (it parks): its session gives back the memory
    /// its empty queue and window keep ([`Session::shed_idle_memory`]).
    pub fn connection_idle(&mut self, client_id: &str) {
        if let Some(slot) = self.sessions.get_mut(client_id) {
            slot.session.shed_idle_memory();
        }
    }

    /// Sessions, queued and inflight messages and queued bytes, for `$SYS`.
    pub fn counts(&self) -> Counts {
        let slots = self.sessions.values();
        Counts {
            sessions: self.sessions.len(),
            queued: slots.clone().map(|slot| slot.session.queue.len()).sum(),
            inflight: slots.clone().map(|slot| slot.session.inflight.len()).sum(),
            // Bridges' queues included, though they do not draw on the shared budget.
            queued_bytes: slots.map(|slot| slot.session.queue.bytes()).sum(),
        }
    }

    /// New bounds for every queue but the bridges' (whose bounds [`State::open_bridges`]
    /// sets) and a new limit for the byte budget they share. They hold from the next message
    /// on, as they would after a restart: a queue above a lowered bound keeps its entries
    /// until it is offered a message, which then follows the queue's policy (`drop_oldest`
    /// drops its oldest entries, counted, until the new one fits).
    pub fn set_queue_limits(&mut self, queue_limits: QueueLimits, budget_limit: u64) {
        self.queue_limits = queue_limits;
        self.budget.set_limit(budget_limit);
    }

    /// Asks every attached connection to close for which `reason_for` names a reason, with
    /// that reason. Returns how many were asked.
    pub fn close_connections(
        &self,
        reason_for: impl Fn(&ConnectionSignal) -> Option<ReasonCode>,
    ) -> usize {
        let mut closed = 0;
        for link in self.sessions.values().filter_map(|slot| slot.link.as_ref()) {
            if let Some(reason) = reason_for(&link.signal) {
                link.signal.close(reason);
                closed += 1;
            }
        }
        closed
    }

    /// A fresh message id.
    pub fn next_message_id(&mut self) -> u64 {
        let id = self.next_message_id;
        self.next_message_id += 1;
        id
    }

    /// A fresh epoch for a session slot: see [`SessionSlot::epoch`].
    fn new_epoch(&mut self) -> u64 {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        epoch
    }
}

mod bridges;
mod flows;
mod lifecycle;
mod routing;
mod signal;

use bridges::BridgeQueue;
pub use bridges::{BridgeSession, BridgesOpened, BRIDGE_SESSION_PREFIX};
pub use flows::{Gone, InboundFlows, InboundPublish, Prepared, Published, TakeLimits, Taken};
pub use routing::SubscriptionsBefore;
pub use signal::ConnectionSignal;
#[cfg(test)]
mod tests;
