//! Routing: which sessions a message goes to (the subscription index, `$share` groups, No
//! Local, overlapping subscriptions), the retained messages, offering deliveries to the
//! receivers' queues, handing what an ended `$share` member left on to another member, and
//! putting back subscriptions a refused SUBSCRIBE or UNSUBSCRIBE changed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use crate::codec::{QoS, SubscriptionOptions};
use crate::model::{unix_seconds, Delivery, Message, OutboundState, StoreOp};

use super::super::queue::Placement;
use super::super::session::{Session, SessionSubscription};
use super::super::subscriptions::Subscription;
use super::super::topic::{filter_matches, has_wildcard, parse_shared};
use super::{Changes, State};

/// Subscriptions of one session as they stood before a change: by filter, `None` where there
/// was none (see [`State::restore_subscriptions`]).
pub type SubscriptionsBefore = Vec<(Arc<str>, Option<SessionSubscription>)>;

/// One receiving session of a message, with what its matching subscriptions ask for.
struct Target {
    client_id: Arc<str>,
    qos: QoS,
    retain_as_published: bool,
    subscription_ids: Vec<u32>,
}

/// A message a share group gave a session that ended before it was done with it.
pub(super) struct Leftover {
    /// The group's filter, `$share/{group}/…`.
    filter: Arc<str>,
    message: Arc<Message>,
}

/// What share groups gave `session` and it had not finished with when it ended: messages sent
/// at QoS 1 or 2 and not acknowledged (a QoS 2 message it acknowledged with PUBREC is its
/// own), then those still queued in memory, oldest first. MQTT 5 §4.8.2: a Server SHOULD send
/// a message to another member when the session of the one it chose ends before
/// acknowledging it; without this, a worker of a pool that crashes loses what it was given
/// (its publishers had their PUBACKs). A delivery matching several of the session's groups
/// counts for one of them, once. Entries a persistent session kept on disk only (offline, or
/// beyond the [`WINDOW`] queued in memory) are not read back for it.
///
/// [`WINDOW`]: super::super::queue::WINDOW
pub(super) fn shared_leftovers(session: &Session) -> Vec<Leftover> {
    let groups: Vec<(&Arc<str>, &str)> = session
        .subscriptions
        .keys()
        .filter_map(|filter| parse_shared(filter).map(|(_, topics)| (filter, topics)))
        .collect();
    if groups.is_empty() {
        return Vec::new();
    }
    let unfinished = session
        .inflight
        .iter()
        .filter(|entry| entry.state != OutboundState::AwaitingPubComp)
        .map(|entry| &entry.delivery)
        .chain(session.queue.iter().map(|queued| &queued.delivery));
    let mut leftovers = Vec::new();
    // (index of the group, message id) of every leftover.
    let mut counted: HashSet<(usize, u64)> = HashSet::new();
    for delivery in unfinished {
        let message = &delivery.message;
        let group = groups.iter().enumerate().find(|(index, (_, topics))| {
            filter_matches(topics, &message.topic) && !counted.contains(&(*index, message.id))
        });
        if let Some((index, (filter, _))) = group {
            counted.insert((index, message.id));
            leftovers.push(Leftover {
                filter: Arc::clone(filter),
                message: message.clone(),
            });
        }
    }
    leftovers
}

impl Target {
    /// The member of a share group chosen for a message.
    fn member(member: &Subscription) -> Target {
        Target {
            client_id: member.client_id.clone(),
            qos: member.options.qos,
            retain_as_published: member.options.retain_as_published,
            subscription_ids: member.identifier.into_iter().collect(),
        }
    }
}

impl State {
    /// Routes `message` to every matching session's queue, updating the retained store first
    /// when it carries RETAIN, and wakes the connections of online receivers; records what it
    /// changed in `changes`.
    pub fn route_into(&mut self, message: &Arc<Message>, changes: &mut Changes) {
        if message.retain {
            self.retain(message, &mut changes.ops);
        }
        let targets = self.targets(message);
        changes.matched |= !targets.is_empty();
        let mut clock = QueueClock::default();
        for target in targets {
            self.deliver(target, message, &mut clock, changes);
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
            if sub.share_group().is_some() {
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
                targets.push(Target::member(member));
            }
        }
        targets
    }

    /// Hands each of an ended session's `leftovers` (see [`shared_leftovers`]) to another
    /// member of its share group, if one is left.
    pub(super) fn pass_on_shared(&mut self, leftovers: Vec<Leftover>, changes: &mut Changes) {
        let mut clock = QueueClock::default();
        for Leftover { filter, message } in leftovers {
            let mut members = Vec::new();
            self.subscriptions.for_each_match(&message.topic, |sub| {
                if sub.filter == filter {
                    members.push(sub.clone());
                }
            });
            if let Some(member) = self.pick_share_member(&filter, &members) {
                self.deliver(Target::member(member), &message, &mut clock, changes);
            }
        }
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

    /// Offers one delivery to `target`'s queue, as queued at the pass's `clock`, and wakes its
    /// connection.
    fn deliver(
        &mut self,
        target: Target,
        message: &Arc<Message>,
        clock: &mut QueueClock,
        changes: &mut Changes,
    ) {
        let Some(slot) = self.sessions.get_mut(&target.client_id) else {
            return;
        };
        let delivery = Delivery {
            message: message.clone(),
            qos: message.qos.min(target.qos),
            retain: target.retain_as_published && message.retain,
            subscription_ids: target.subscription_ids,
            queued_at: if slot.session.is_stored() {
                clock.now()
            } else {
                0
            },
        };
        let placement = Placement {
            persistent: slot.session.is_stored(),
            online: slot.link.is_some(),
        };
        let bridge_queue = self.bridge_queues.get_mut(&target.client_id);
        let limits = bridge_queue
            .as_ref()
            .map_or(&self.queue_limits, |queue| &queue.limits);
        let offered = slot.session.queue.offer(
            delivery,
            &target.client_id,
            placement,
            limits,
            &mut changes.ops,
        );
        if let Some(queue) = bridge_queue {
            queue.dropped += offered.dropped;
        }
        changes.dropped += offered.dropped;
        if offered.queued {
            changes.queued += 1;
            if let Some(link) = &slot.link {
                link.signal.wake();
            }
        } else if offered.dropped > 0 {
            changes.refused += 1;
        }
    }

    /// SUBSCRIBE of one (validated) filter: adds or replaces the subscription and returns the
    /// retained messages it receives per Retain Handling [MQTT-3.3.1-9] [MQTT-3.3.1-10]
    /// [MQTT-3.3.1-11] (none for a shared subscription).
    pub fn subscribe_to(
        &mut self,
        client_id: &Arc<str>,
        filter: &Arc<str>,
        options: SubscriptionOptions,
        identifier: Option<u32>,
        changes: &mut Changes,
    ) -> Vec<Delivery> {
        let wanted = SessionSubscription {
            options,
            identifier,
        };
        let is_new = self.record_subscription(client_id, filter, wanted, changes);
        let wants_retained = match options.retain_handling {
            0 => true,
            1 => is_new,
            _ => false,
        };
        if !wants_retained || parse_shared(filter).is_some() {
            return Vec::new();
        }
        self.retained_for(filter, options, identifier, std::time::Instant::now())
    }

    /// Adds or replaces a subscription of `client_id`, handing the store its row; returns
    /// whether it is new.
    fn record_subscription(
        &mut self,
        client_id: &Arc<str>,
        filter: &Arc<str>,
        wanted: SessionSubscription,
        changes: &mut Changes,
    ) -> bool {
        let SessionSubscription {
            options,
            identifier,
        } = wanted;
        let unchanged = self
            .session(client_id)
            .and_then(|session| session.subscriptions.get(filter))
            == Some(&wanted);
        let is_new = self.subscribe(client_id, filter, options, identifier);
        if self.is_stored(client_id) {
            let op = StoreOp::Subscribe {
                client_id: client_id.clone(),
                filter: filter.clone(),
                options,
                identifier,
            };
            if unchanged {
                changes.restated(op);
            } else {
                changes.ops.push(op);
            }
        }
        is_new
    }

    /// UNSUBSCRIBE of one filter; returns whether the subscription existed [MQTT-3.10.4-4].
    pub fn unsubscribe_from(
        &mut self,
        client_id: &Arc<str>,
        filter: &str,
        changes: &mut Changes,
    ) -> bool {
        let existed = self.unsubscribe(client_id, filter);
        if existed && self.is_stored(client_id) {
            changes.ops.push(StoreOp::Unsubscribe {
                client_id: client_id.clone(),
                filter: Arc::from(filter),
            });
        }
        existed
    }

    /// The subscriptions of `client_id` to `filters` as they stand, for
    /// [`State::restore_subscriptions`] should the change about to be made fail to commit.
    pub fn subscriptions_before(
        &self,
        client_id: &str,
        filters: impl IntoIterator<Item = Arc<str>>,
    ) -> SubscriptionsBefore {
        let subscriptions = self
            .session(client_id)
            .map(|session| &session.subscriptions);
        filters
            .into_iter()
            .map(|filter| {
                let before = subscriptions.and_then(|subscriptions| subscriptions.get(&filter));
                (filter, before.copied())
            })
            .collect()
    }

    /// Puts the subscriptions of `client_id` back as they stood before a SUBSCRIBE or
    /// UNSUBSCRIBE whose commit failed: its client was told the request failed, so neither
    /// the routing nor the store may keep what it asked for. The store is handed the
    /// restored rows too, as the failed commit may have reached the disk. Does nothing if
    /// connection `connection_id` no longer holds the session (it was taken over or ended:
    /// its subscriptions are another session's business now).
    pub fn restore_subscriptions(
        &mut self,
        client_id: &Arc<str>,
        connection_id: u64,
        before: SubscriptionsBefore,
        changes: &mut Changes,
    ) {
        if self.attached(client_id, connection_id).is_err() {
            return;
        }
        for (filter, subscription) in before {
            match subscription {
                Some(subscription) => {
                    self.record_subscription(client_id, &filter, subscription, changes);
                }
                None => {
                    self.unsubscribe_from(client_id, &filter, changes);
                }
            }
        }
    }

    /// Whether the session `client_id` exists and the store keeps its state.
    fn is_stored(&self, client_id: &str) -> bool {
        self.sessions
            .get(client_id)
            .is_some_and(|slot| slot.session.is_stored())
    }

    /// Adds or replaces a subscription of an existing session, recording no store operation
    /// (for the restore, and for [`State::subscribe_to`]). Returns whether it is new.
    pub(super) fn subscribe(
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
            options,
            identifier,
        })
    }

    /// Removes a subscription; returns whether it existed.
    pub(super) fn unsubscribe(&mut self, client_id: &Arc<str>, filter: &str) -> bool {
        if let Some(slot) = self.sessions.get_mut(client_id) {
            slot.session.subscriptions.remove(filter);
        }
        self.subscriptions.remove(client_id, filter)
    }

    /// The retained messages a new subscription receives, RETAIN set [MQTT-3.3.1-8].
    pub(super) fn retained_for(
        &self,
        filter: &str,
        options: SubscriptionOptions,
        identifier: Option<u32>,
        now: std::time::Instant,
    ) -> Vec<Delivery> {
        let wanted = |message: &&Arc<Message>| {
            filter_matches(filter, &message.topic) && !message.is_expired(now)
        };
        let to_delivery = |message: &Arc<Message>| Delivery {
            message: message.clone(),
            qos: message.qos.min(options.qos),
            retain: true,
            subscription_ids: identifier.into_iter().collect(),
            // Set when they are queued, after the SUBACK (`enqueue_all`).
            queued_at: 0,
        };
        if !has_wildcard(filter) {
            // A plain filter names its one topic: looked up, not compared with every retained
            // topic (a reboot storm of sensors each subscribing to its own).
            let found = self.retained.get(filter).filter(wanted);
            return found.map(to_delivery).into_iter().collect();
        }
        let matching = self.retained.values().filter(wanted);
        matching.map(to_delivery).collect()
    }

    /// Queues deliveries for a session (retained messages after a SUBACK) and wakes it.
    pub fn enqueue_all(
        &mut self,
        client_id: &Arc<str>,
        deliveries: Vec<Delivery>,
        changes: &mut Changes,
    ) {
        let mut clock = QueueClock::default();
        for delivery in deliveries {
            let target = Target {
                client_id: client_id.clone(),
                qos: delivery.qos,
                retain_as_published: true,
                subscription_ids: delivery.subscription_ids,
            };
            self.deliver(target, &delivery.message, &mut clock, changes);
        }
    }
}

/// The wall-clock second of one routing pass ([`unix_seconds`]), read at most once and only for
/// a session that keeps its queue beyond its connection, the only queues whose age is
/// reported: a clock read per message is measurable on the QoS 0 path.
#[derive(Debug, Default)]
struct QueueClock(Option<u32>);

impl QueueClock {
    fn now(&mut self) -> u32 {
        *self
            .0
            .get_or_insert_with(|| unix_seconds(SystemTime::now()))
    }
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
