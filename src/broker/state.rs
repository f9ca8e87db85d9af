//! The broker's shared state: every session, the subscription index and the retained messages,
//! and the operations that change them together (routing a message, attaching and detaching a
//! connection, ending a session). One mutex guards it in [`super::Broker`]; nothing here awaits
//! or does I/O. Each operation returns the [`StoreOp`]s the caller must commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::codec::{QoS, ReasonCode, SubscriptionOptions, Will};
use crate::model::Recovered;
use crate::model::StoreOp;

use super::queue::{MessageQueue, Placement, QueueBudget, QueueLimits};
use super::session::{Inflight, Session, SessionSubscription};
use super::subscriptions::{Subscription, SubscriptionIndex};
use super::topic::{filter_matches, parse_shared};
use crate::model::{Delivery, Message};

/// How the state wakes or closes the connection task that owns a session.
#[derive(Debug, Default)]
pub struct ConnectionSignal {
    /// Woken when messages were queued or the connection must close.
    pub notify: Notify,
    /// Set when the connection must close, with the reason for its DISCONNECT.
    close: Mutex<Option<ReasonCode>>,
}

impl ConnectionSignal {
    /// Asks the connection to close with `reason` (e.g. 0x8E Session taken over).
    pub fn close(&self, reason: ReasonCode) {
        if let Ok(mut slot) = self.close.lock() {
            *slot = Some(reason);
        }
        self.notify.notify_one();
    }

    /// The reason the connection was asked to close, if it was.
    pub fn close_reason(&self) -> Option<ReasonCode> {
        self.close.lock().ok().and_then(|slot| *slot)
    }
}

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
    pub link: Link,
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

/// The outcome of routing one message.
#[derive(Debug, Default)]
pub struct Routed {
    pub ops: Vec<StoreOp>,
    /// Whether any subscription matched (v5 PUBACK 0x10 No matching subscribers otherwise).
    pub matched: bool,
    /// Messages lost to a receiving session's queue bounds (dropped or refused).
    pub dropped: u64,
    /// Receiving sessions that refused the message because their queue was full.
    pub refused: usize,
    /// Receiving sessions whose queue took the message.
    pub queued: usize,
}

impl Routed {
    /// The message matched subscriptions but every receiving queue refused it (v5: 0x97
    /// Quota exceeded to the publisher).
    pub fn refused_everywhere(&self) -> bool {
        self.refused > 0 && self.queued == 0
    }
}

/// One receiving session of a message, with what its matching subscriptions ask for.
struct Target {
    client_id: Arc<str>,
    qos: QoS,
    retain_as_published: bool,
    subscription_ids: Vec<u32>,
}

/// Everything the broker shares between connections.
#[derive(Debug)]
pub struct State {
    /// Boxed: a table of many sessions then holds pointers, not slots, in its spare buckets.
    pub sessions: HashMap<Arc<str>, Box<SessionSlot>>,
    pub subscriptions: SubscriptionIndex,
    pub retained: HashMap<Arc<str>, Arc<Message>>,
    /// Round-robin position per shared filter (`$share/{group}/{filter}`).
    share_cursors: HashMap<Arc<str>, usize>,
    /// The bounds of every session's queue.
    queue_limits: QueueLimits,
    /// The byte budget every queue draws from.
    budget: Arc<QueueBudget>,
    /// The id the next message gets.
    next_message_id: u64,
    /// The epoch the next attachment (or restored session) gets.
    next_epoch: u64,
}

impl State {
    /// An empty state whose sessions' queues hold what `queue_limits` and `budget` allow.
    pub fn new(queue_limits: QueueLimits, budget: Arc<QueueBudget>) -> State {
        State {
            sessions: HashMap::new(),
            subscriptions: SubscriptionIndex::default(),
            retained: HashMap::new(),
            share_cursors: HashMap::new(),
            queue_limits,
            budget,
            next_message_id: 1,
            next_epoch: 1,
        }
    }

    /// Bytes queued in every session together.
    pub fn queued_bytes(&self) -> u64 {
        self.budget.used()
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

    /// Rebuilds the state from what the store read back at start-up, and returns the timers
    /// to arm. Each session's expiry and Will Delay continue from the wall-clock time its
    /// connection ended; sessions that were connected when the broker stopped count as offline
    /// from `now` (and are recorded so, should the broker stop again before they return).
    pub fn restore(
        &mut self,
        recovered: Recovered,
        now: SystemTime,
        routed: &mut Routed,
    ) -> Vec<(Arc<str>, Detached)> {
        self.next_message_id = self.next_message_id.max(recovered.next_message_id);
        for message in recovered.retained {
            self.retained.insert(message.topic.clone(), message);
        }
        let mut offline = Vec::with_capacity(recovered.sessions.len());
        for stored in recovered.sessions {
            let client_id = stored.client_id;
            let offline_for = match stored.offline_since {
                Some(since) => now.duration_since(since).map_or(0, |elapsed| {
                    u32::try_from(elapsed.as_secs()).unwrap_or(u32::MAX)
                }),
                None => {
                    routed.ops.push(StoreOp::Offline {
                        client_id: client_id.clone(),
                        at: now,
                    });
                    0
                }
            };
            let mut session = Session::new(
                client_id.clone(),
                stored.expiry_interval,
                self.budget.clone(),
            );
            session.queue =
                MessageQueue::restored(self.budget.clone(), &stored.queue, stored.next_sequence);
            session.inflight = stored
                .inflight
                .into_iter()
                .map(|(packet_id, delivery, state)| Inflight {
                    packet_id,
                    delivery,
                    state,
                })
                .collect();
            session.inbound_qos2 = stored.inbound_qos2.into_iter().collect();
            session.will = stored.will.map(Box::new);
            let slot = SessionSlot {
                session,
                link: None,
                epoch: self.new_epoch(),
            };
            self.sessions.insert(client_id.clone(), Box::new(slot));
            for (filter, options, identifier) in stored.subscriptions {
                self.subscribe(&client_id, &filter, options, identifier);
            }
            offline.push((client_id, offline_for));
        }
        // Only once every session and subscription is back may a Will be routed: a Will
        // published at start-up must reach every subscriber, whatever the store's order.
        let mut timers = Vec::with_capacity(offline.len());
        for (client_id, offline_for) in offline {
            let mut detached = Detached::default();
            self.schedule_offline(&client_id, offline_for, routed, &mut detached);
            timers.push((client_id, detached));
        }
        timers
    }

    /// Attaches a connection to the session `client_id`, creating, resuming or replacing it.
    /// A connection already attached is told to close with 0x8E [MQTT-3.1.4-3]; its Will is
    /// published now if it has no delay or the old session ends, else cancelled because the
    /// session continues [MQTT-3.1.3-9]. Returns whether an existing session was resumed
    /// (Session Present) [MQTT-3.2.2-2].
    pub fn attach(&mut self, request: AttachRequest, routed: &mut Routed) -> bool {
        let AttachRequest {
            client_id,
            clean_start,
            expiry_interval,
            will,
            link,
        } = request;
        let client_id = &client_id;
        if let Some(slot) = self.sessions.get_mut(client_id) {
            if let Some(old) = slot.link.take() {
                old.signal.close(ReasonCode::SessionTakenOver);
            }
            if let Some(old_will) = slot.session.will.take() {
                if clean_start || will_delay(&old_will) == 0 {
                    self.publish_will(old_will, routed);
                }
            }
        }
        let resumed = !clean_start && self.sessions.contains_key(client_id);
        if !resumed {
            self.end_session(client_id, routed);
        }
        let epoch = self.new_epoch();
        let slot = self.sessions.entry(client_id.clone()).or_insert_with(|| {
            Box::new(SessionSlot {
                session: Session::new(client_id.clone(), expiry_interval, self.budget.clone()),
                link: None,
                epoch,
            })
        });
        slot.session.queue.forget_load();
        slot.session.expiry_interval = expiry_interval;
        slot.session.will = will.clone();
        slot.link = Some(link);
        slot.epoch = epoch;
        // A session that ends with its connection is stored only for its Will, which must
        // still go out if the broker stops uncleanly while the client is connected.
        if expiry_interval > 0 || will.is_some() {
            routed.ops.push(StoreOp::PutSession {
                client_id: client_id.clone(),
                expiry_interval,
            });
            routed.ops.push(StoreOp::Will {
                client_id: client_id.clone(),
                will,
            });
        }
        resumed
    }

    /// Detaches connection `connection_id` from its session. Does nothing if another
    /// connection took the session over. With `keep_will` false the Will is discarded (normal
    /// DISCONNECT [MQTT-3.1.2-10]); otherwise it is published now or after its delay.
    pub fn detach(
        &mut self,
        client_id: &Arc<str>,
        connection_id: u64,
        keep_will: bool,
        routed: &mut Routed,
    ) -> Detached {
        let mut detached = Detached::default();
        let Some(slot) = self.sessions.get_mut(client_id) else {
            return detached;
        };
        if slot.link.as_ref().map(|link| link.connection_id) != Some(connection_id) {
            return detached;
        }
        slot.link = None;
        slot.session.queue.release_memory();
        if !keep_will && slot.session.will.take().is_some() {
            routed.ops.push(StoreOp::Will {
                client_id: client_id.clone(),
                will: None,
            });
        }
        if slot.session.is_persistent() {
            routed.ops.push(StoreOp::Offline {
                client_id: client_id.clone(),
                at: SystemTime::now(),
            });
        }
        self.schedule_offline(client_id, 0, routed, &mut detached);
        detached
    }

    /// Settles an offline session that has been offline for `offline_for` seconds: ends it if
    /// its expiry has passed, publishes its Will if the delay has, and otherwise says which
    /// timers to arm for what remains. Used at disconnect (0 s) and at start-up.
    fn schedule_offline(
        &mut self,
        client_id: &Arc<str>,
        offline_for: u32,
        routed: &mut Routed,
        detached: &mut Detached,
    ) {
        let Some(slot) = self.sessions.get_mut(client_id) else {
            return;
        };
        detached.epoch = slot.epoch;
        let expiry = slot.session.expiry_interval;
        if expiry != u32::MAX && offline_for >= expiry {
            self.end_session(client_id, routed);
            return;
        }
        if let Some(delay) = slot.session.will.as_deref().map(will_delay) {
            if delay <= offline_for {
                if let Some(will) = slot.session.will.take() {
                    routed.ops.push(StoreOp::Will {
                        client_id: client_id.clone(),
                        will: None,
                    });
                    self.publish_will(will, routed);
                }
            } else if delay < expiry {
                detached.will_delay = Some(delay - offline_for);
            }
            // A delay at or beyond the expiry: the Will goes out when the session ends.
        }
        if expiry != u32::MAX {
            detached.expiry = Some(expiry - offline_for);
        }
    }

    /// Publishes a session's delayed Will if the session is still offline in `epoch`.
    pub fn will_due(&mut self, client_id: &Arc<str>, epoch: u64, routed: &mut Routed) {
        let Some(slot) = self.sessions.get_mut(client_id) else {
            return;
        };
        if slot.epoch != epoch || slot.link.is_some() {
            return;
        }
        if let Some(will) = slot.session.will.take() {
            routed.ops.push(StoreOp::Will {
                client_id: client_id.clone(),
                will: None,
            });
            self.publish_will(will, routed);
        }
    }

    /// Ends a session whose expiry interval passed while offline in `epoch`.
    pub fn expire(&mut self, client_id: &Arc<str>, epoch: u64, routed: &mut Routed) {
        let Some(slot) = self.sessions.get(client_id) else {
            return;
        };
        if slot.epoch != epoch || slot.link.is_some() {
            return;
        }
        self.end_session(client_id, routed);
    }

    /// Removes a session and its subscriptions; publishes its Will if one is pending
    /// (a session's end sends a delayed Will at once).
    fn end_session(&mut self, client_id: &Arc<str>, routed: &mut Routed) {
        let Some(slot) = self.sessions.remove(client_id) else {
            return;
        };
        for filter in slot.session.subscriptions.keys() {
            self.subscriptions.remove(client_id, filter);
        }
        routed.ops.push(StoreOp::DeleteSession {
            client_id: client_id.clone(),
        });
        if let Some(will) = slot.session.will {
            self.publish_will(will, routed);
        }
    }

    /// Routes a Will Message as if its client had published it.
    fn publish_will(&mut self, will: Box<Will>, routed: &mut Routed) {
        let id = self.next_message_id();
        let message = Arc::new(Message::from_will(id, *will, std::time::Instant::now()));
        self.route_into(&message, routed);
    }

    /// Routes `message` to every matching session's queue, updating the retained store first
    /// when it carries RETAIN, and wakes the connections of online receivers.
    pub fn route(&mut self, message: &Arc<Message>) -> Routed {
        let mut routed = Routed::default();
        self.route_into(message, &mut routed);
        routed
    }

    /// Routes `message` like [`State::route`], adding to an outcome already under way.
    pub fn route_into(&mut self, message: &Arc<Message>, routed: &mut Routed) {
        if message.retain {
            self.retain(message, &mut routed.ops);
        }
        let targets = self.targets(message);
        routed.matched |= !targets.is_empty();
        for target in targets {
            self.deliver(target, message, routed);
        }
    }

    /// Stores, replaces or (empty payload) deletes the retained message of a topic
    /// [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-7].
    fn retain(&mut self, message: &Arc<Message>, ops: &mut Vec<StoreOp>) {
        let kept = if message.payload.is_empty() {
            self.retained.remove(&message.topic);
            None
        } else {
            self.retained.insert(message.topic.clone(), message.clone());
            Some(message.clone())
        };
        ops.push(StoreOp::Retain {
            topic: message.topic.clone(),
            message: kept,
        });
    }

    /// The sessions a message goes to: one entry per client for its non-shared subscriptions
    /// (highest QoS, every identifier) [MQTT-3.3.5-1], plus one member per shared subscription.
    fn targets(&mut self, message: &Message) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        let mut shared: Vec<(Arc<str>, Vec<Subscription>)> = Vec::new();
        self.subscriptions.for_each_match(&message.topic, |sub| {
            if sub.share_group.is_some() {
                match shared.iter_mut().find(|(filter, _)| *filter == sub.filter) {
                    Some((_, members)) => members.push(sub.clone()),
                    None => shared.push((sub.filter.clone(), vec![sub.clone()])),
                }
                return;
            }
            if sub.options.no_local && message.publisher.as_deref() == Some(&*sub.client_id) {
                return; // [MQTT-3.8.3-3]
            }
            merge_target(&mut targets, &sub.client_id, sub.options, sub.identifier);
        });
        for (filter, members) in shared {
            if let Some(member) = self.pick_share_member(&filter, &members) {
                targets.push(Target {
                    client_id: member.client_id.clone(),
                    qos: member.options.qos,
                    retain_as_published: member.options.retain_as_published,
                    subscription_ids: member.identifier.into_iter().collect(),
                });
            }
        }
        targets
    }

    /// Round-robin over a share group's members, preferring ones that are connected.
    fn pick_share_member<'m>(
        &mut self,
        filter: &Arc<str>,
        members: &'m [Subscription],
    ) -> Option<&'m Subscription> {
        let cursor = self.share_cursors.entry(filter.clone()).or_insert(0);
        let start = *cursor;
        let online = |sub: &Subscription| {
            self.sessions
                .get(&sub.client_id)
                .is_some_and(|slot| slot.link.is_some())
        };
        let count = members.len();
        let chosen = (0..count)
            .map(|step| (start + step) % count)
            .find(|&index| online(&members[index]))
            .unwrap_or(start % count.max(1));
        *cursor = chosen + 1;
        members.get(chosen)
    }

    /// Offers one delivery to `target`'s queue and wakes its connection.
    fn deliver(&mut self, target: Target, message: &Arc<Message>, routed: &mut Routed) {
        let Some(slot) = self.sessions.get_mut(&target.client_id) else {
            return;
        };
        let delivery = Delivery {
            message: message.clone(),
            qos: message.qos.min(target.qos),
            retain: target.retain_as_published && message.retain,
            subscription_ids: target.subscription_ids,
        };
        let placement = Placement {
            persistent: slot.session.is_persistent(),
            online: slot.link.is_some(),
        };
        let offered = slot.session.queue.offer(
            delivery,
            &target.client_id,
            placement,
            &self.queue_limits,
            &mut routed.ops,
        );
        routed.dropped += offered.dropped;
        if offered.queued {
            routed.queued += 1;
            if let Some(link) = &slot.link {
                link.signal.notify.notify_one();
            }
        } else if offered.dropped > 0 {
            routed.refused += 1;
        }
    }

    /// Adds or replaces a subscription of an existing session. Returns whether it is new.
    pub fn subscribe(
        &mut self,
        client_id: &Arc<str>,
        filter: &Arc<str>,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> bool {
        let Some(slot) = self.sessions.get_mut(client_id) else {
            return false;
        };
        slot.session.subscriptions.insert(
            filter.clone(),
            SessionSubscription {
                options,
                identifier,
            },
        );
        self.subscriptions.insert(Subscription {
            client_id: client_id.clone(),
            filter: filter.clone(),
            share_group: parse_shared(filter).map(|(group, _)| Arc::from(group)),
            options,
            identifier,
        })
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, client_id: &Arc<str>, filter: &str) -> bool {
        if let Some(slot) = self.sessions.get_mut(client_id) {
            slot.session.subscriptions.remove(filter);
        }
        self.subscriptions.remove(client_id, filter)
    }

    /// The retained messages a new subscription receives, RETAIN set [MQTT-3.3.1-8].
    pub fn retained_for(
        &self,
        filter: &str,
        options: SubscriptionOptions,
        identifier: Option<u32>,
        now: std::time::Instant,
    ) -> Vec<Delivery> {
        self.retained
            .values()
            .filter(|message| filter_matches(filter, &message.topic) && !message.is_expired(now))
            .map(|message| Delivery {
                message: message.clone(),
                qos: message.qos.min(options.qos),
                retain: true,
                subscription_ids: identifier.into_iter().collect(),
            })
            .collect()
    }

    /// Queues deliveries for a session (retained messages after a SUBACK) and wakes it.
    pub fn enqueue_all(
        &mut self,
        client_id: &Arc<str>,
        deliveries: Vec<Delivery>,
        routed: &mut Routed,
    ) {
        for delivery in deliveries {
            let target = Target {
                client_id: client_id.clone(),
                qos: delivery.qos,
                retain_as_published: true,
                subscription_ids: delivery.subscription_ids,
            };
            self.deliver(target, &delivery.message, routed);
        }
    }
}

/// The Will Delay Interval of a Will, 0 if absent.
fn will_delay(will: &Will) -> u32 {
    will.properties.will_delay_interval.unwrap_or(0)
}

/// Folds one matching non-shared subscription into the per-client targets.
fn merge_target(
    targets: &mut Vec<Target>,
    client_id: &Arc<str>,
    options: SubscriptionOptions,
    identifier: Option<u32>,
) {
    let target = match targets.iter_mut().find(|t| t.client_id == *client_id) {
        Some(target) => target,
        None => {
            targets.push(Target {
                client_id: client_id.clone(),
                qos: options.qos,
                retain_as_published: options.retain_as_published,
                subscription_ids: Vec::new(),
            });
            let last = targets.len() - 1;
            &mut targets[last]
        }
    };
    target.qos = target.qos.max(options.qos);
    target.retain_as_published |= options.retain_as_published;
    if let Some(id) = identifier {
        target.subscription_ids.push(id);
    }
}

#[cfg(test)]
mod tests;
