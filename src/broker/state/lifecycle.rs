//! Sessions coming and going: rebuilding them at start-up, attaching and detaching
//! connections (Clean Start, takeover, the DISCONNECT override), and the Will Delay and Session
//! Expiry timers that end them, each tied to the one attachment it was armed for.

use std::sync::Arc;
use std::time::SystemTime;

use crate::codec::ReasonCode;
use crate::model::{Message, Recovered, SessionWill, StoreOp, WillSender};

use super::super::queue::MessageQueue;
use super::super::session::Session;
use super::super::window::Window;
use super::routing::shared_leftovers;
use super::{AttachRequest, Attached, Changes, Detached, SessionSlot, State};
use crate::auth::{Access, Who};

impl State {
    /// Rebuilds the state from what the store read back at start-up, and returns the timers
    /// to arm. Each session's expiry and Will Delay continue from the wall-clock time its
    /// connection ended; sessions that were connected when the broker stopped count as offline
    /// from `now` (and are recorded so, should the broker stop again before they return).
    pub fn restore(
        &mut self,
        recovered: Recovered,
        now: SystemTime,
        changes: &mut Changes,
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
                    changes.ops.push(StoreOp::Offline {
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
            session.inflight = Window::restored(stored.inflight);
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
            self.schedule_offline(&client_id, offline_for, changes, &mut detached);
            timers.push((client_id, detached));
        }
        timers
    }

    /// Attaches a connection to the session `client_id`, creating, resuming or replacing it.
    /// A connection already attached is told to close with 0x8E [MQTT-3.1.4-3]; its Will is
    /// published now if it has no delay or the old session ends, else cancelled because the
    /// session continues [MQTT-3.1.3-9]. Returns whether an existing session was resumed
    /// (Session Present) [MQTT-3.2.2-2], and whether the CONNACK must wait for the commit.
    pub fn attach(&mut self, request: AttachRequest, changes: &mut Changes) -> Attached {
        let AttachRequest {
            client_id,
            clean_start,
            expiry_interval,
            will,
            username,
            link,
        } = request;
        let client_id = &client_id;
        // What the store's row of the session says: its interval, and whether it has a Will.
        let mut stored_row = None;
        // A session with an interval of 0 (3.1.1 Clean Session 1 among them) ends with its
        // connection: one taken over is not resumed, whatever the new CONNECT asks
        // [MQTT-3.1.2-6] (3.1.1), MQTT 5 §3.1.2.11.2.
        let mut ends_with_its_connection = false;
        if let Some(slot) = self.sessions.get_mut(client_id) {
            stored_row = Some((slot.session.expiry_interval, slot.session.will.is_some()));
            ends_with_its_connection = slot.session.expiry_interval == 0;
            if let Some(old) = slot.link.take() {
                old.signal.close(ReasonCode::SessionTakenOver);
            }
            if let Some(old_will) = slot.session.will.take() {
                if clean_start || ends_with_its_connection || will_delay(&old_will) == 0 {
                    self.publish_will(client_id, old_will, changes);
                }
            }
        }
        let existed = self.sessions.contains_key(client_id) && !ends_with_its_connection;
        // Resumed, a session had an interval above 0: the store holds its state.
        let resumed = !clean_start && existed;
        if !resumed {
            self.end_session(client_id, changes);
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
        // MQTT 5 §3.1.2.11.2: with an interval of 0 the session ends with this connection. The
        // store keeps a stored one until then, with that interval, so a restart ends it.
        slot.session.kept_in_store = resumed && expiry_interval == 0;
        let kept_in_store = slot.session.kept_in_store;
        let will = will.map(|will| {
            Box::new(SessionWill {
                will: *will,
                sender: WillSender::Client(username),
            })
        });
        slot.session.will = will.clone();
        slot.link = Some(link);
        slot.epoch = epoch;
        // A session that ends with its connection is stored only for its Will, which must
        // still go out if the broker stops uncleanly while the client is connected, or when
        // the store kept it: its row is rewritten with the interval of 0 and without the old
        // Will, else a restart would bring back the session the client ended, and say Session
        // Present to its next CONNECT.
        let has_will = will.is_some();
        // A session that never expires and has no Will, resumed as stored, would only have its
        // row marked connected, for an offline time nothing reads for it (no expiry, no Will
        // Delay): nothing is written, and the sensors of a gateway resuming after its reboot
        // write no page each. (`cairn sessions list` then shows its last recorded disconnect.)
        // After a failed commit the disk may lack the row: it is written again then.
        let row_unchanged = resumed
            && !changes.restate
            && !has_will
            && expiry_interval == u32::MAX
            && stored_row == Some((u32::MAX, false));
        if !row_unchanged && (expiry_interval > 0 || has_will || kept_in_store) {
            changes.ops.push(StoreOp::PutSession {
                client_id: client_id.clone(),
                expiry_interval,
            });
            changes.ops.push(StoreOp::Will {
                client_id: client_id.clone(),
                will,
            });
        }
        let connack_waits = has_will || (existed && !resumed) || kept_in_store;
        if connack_waits {
            // A client waits for this commit before anything else: no window.
            changes.urgent();
        }
        Attached {
            session_present: resumed,
            connack_waits,
        }
    }

    /// Detaches connection `connection_id` from its session. Does nothing if another
    /// connection took the session over. With `keep_will` false the Will is discarded (normal
    /// DISCONNECT [MQTT-3.1.2-10]); otherwise it is published now or after its delay.
    pub fn detach(
        &mut self,
        client_id: &Arc<str>,
        connection_id: u64,
        keep_will: bool,
        changes: &mut Changes,
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
            changes.ops.push(StoreOp::Will {
                client_id: client_id.clone(),
                will: None,
            });
        }
        if slot.session.is_stored() {
            changes.ops.push(StoreOp::Offline {
                client_id: client_id.clone(),
                at: SystemTime::now(),
            });
        }
        self.schedule_offline(client_id, 0, changes, &mut detached);
        detached
    }

    /// The DISCONNECT override: the Session Expiry Interval the session ends its connection
    /// with [MQTT-3.14.2-2] (the caller refuses raising an interval of 0).
    pub fn set_expiry(
        &mut self,
        client_id: &Arc<str>,
        expiry_interval: u32,
        changes: &mut Changes,
    ) {
        let Some(slot) = self.sessions.get_mut(client_id) else {
            return;
        };
        let was_stored = slot.session.is_stored();
        slot.session.expiry_interval = expiry_interval;
        if was_stored {
            changes.ops.push(StoreOp::PutSession {
                client_id: client_id.clone(),
                expiry_interval,
            });
        }
    }

    /// The broker shuts down while `connection_id` is attached to a persistent session: its
    /// expiry counts from now, across the restart, not from the next start-up
    /// [MQTT-3.1.2-23]. The session itself stays as it is for the next start.
    pub fn closed_by_shutdown(
        &mut self,
        client_id: &Arc<str>,
        connection_id: u64,
        changes: &mut Changes,
    ) {
        let Some(slot) = self.sessions.get(client_id) else {
            return;
        };
        let attached = slot.link.as_ref().map(|link| link.connection_id) == Some(connection_id);
        if attached && slot.session.is_stored() {
            changes.ops.push(StoreOp::Offline {
                client_id: client_id.clone(),
                at: SystemTime::now(),
            });
        }
    }

    /// Settles an offline session that has been offline for `offline_for` seconds: ends it if
    /// its expiry has passed, publishes its Will if the delay has, and otherwise says which
    /// timers to arm for what remains. Used at disconnect (0 s) and at start-up.
    fn schedule_offline(
        &mut self,
        client_id: &Arc<str>,
        offline_for: u32,
        changes: &mut Changes,
        detached: &mut Detached,
    ) {
        let Some(slot) = self.sessions.get_mut(client_id) else {
            return;
        };
        detached.epoch = slot.epoch;
        let expiry = slot.session.expiry_interval;
        if expiry != u32::MAX && offline_for >= expiry {
            self.end_session(client_id, changes);
            return;
        }
        if let Some(delay) = slot.session.will.as_deref().map(will_delay) {
            if delay <= offline_for {
                if let Some(will) = slot.session.will.take() {
                    changes.ops.push(StoreOp::Will {
                        client_id: client_id.clone(),
                        will: None,
                    });
                    self.publish_will(client_id, will, changes);
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
    pub fn will_due(&mut self, client_id: &Arc<str>, epoch: u64, changes: &mut Changes) {
        let Some(slot) = self.sessions.get_mut(client_id) else {
            return;
        };
        if slot.epoch != epoch || slot.link.is_some() {
            return;
        }
        if let Some(will) = slot.session.will.take() {
            changes.ops.push(StoreOp::Will {
                client_id: client_id.clone(),
                will: None,
            });
            self.publish_will(client_id, will, changes);
        }
    }

    /// Ends a session whose expiry interval passed while offline in `epoch`.
    pub fn expire(&mut self, client_id: &Arc<str>, epoch: u64, changes: &mut Changes) {
        let Some(slot) = self.sessions.get(client_id) else {
            return;
        };
        if slot.epoch != epoch || slot.link.is_some() {
            return;
        }
        self.end_session(client_id, changes);
    }

    /// Removes a session and its subscriptions; publishes its Will if one is pending
    /// (a session's end sends a delayed Will at once).
    pub(super) fn end_session(&mut self, client_id: &Arc<str>, changes: &mut Changes) {
        let Some(slot) = self.sessions.remove(client_id) else {
            return;
        };
        for filter in slot.session.subscriptions.keys() {
            self.subscriptions.remove(client_id, filter);
        }
        changes.ops.push(StoreOp::DeleteSession {
            client_id: client_id.clone(),
        });
        let mut session = slot.session;
        let leftovers = shared_leftovers(&session);
        let will = session.will.take();
        // Its queue gives its bytes back to the shared budget before its leftovers are queued
        // again for other members.
        drop(session);
        self.pass_on_shared(leftovers, changes);
        if let Some(will) = will {
            self.publish_will(client_id, will, changes);
        }
    }

    /// Routes a Will Message as if its client had published it, unless the ACL in force (see
    /// [`State::set_will_acl`]) does not let its sender write its topic: then it is dropped,
    /// as a PUBLISH of the client's would be. This holds after a restart too: the sender is
    /// stored with the Will. Only a Will read back from a record of an older build, which did
    /// not store the sender ([`WillSender::Unknown`]), goes out unchecked: it was checked when
    /// its CONNECT was accepted.
    fn publish_will(
        &mut self,
        client_id: &Arc<str>,
        will: Box<SessionWill>,
        changes: &mut Changes,
    ) {
        let SessionWill { will, sender } = *will;
        if let (Some(acl), WillSender::Client(username)) = (&self.will_acl, &sender) {
            let who = Who {
                username: username.as_deref(),
                client_id,
            };
            if !acl.allows(who, &will.topic, Access::Write) {
                tracing::info!(%client_id, topic = %will.topic, "the ACL forbids this Will topic now; the Will is dropped");
                return;
            }
        }
        let id = self.next_message_id();
        let now = std::time::Instant::now();
        let message = Arc::new(Message::from_will(id, will, client_id.clone(), now));
        self.route_into(&message, changes);
    }
}

/// The Will Delay Interval of a session's Will, 0 if absent.
fn will_delay(will: &SessionWill) -> u32 {
    will.will.properties.will_delay_interval.unwrap_or(0)
}
