//! What the broker sends a connected client: acks released after their commit, queued
//! messages moved into the inflight window as PUBLISH (Receive Maximum, Maximum Packet Size,
//! Message Expiry and outbound Topic Aliases applied), and the inflight window resent with DUP
//! after a reconnect [MQTT-4.4.0-1].

use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::access::Rules;
use crate::auth::Access;
use crate::broker::queue::LoadRequest;
use crate::broker::state::{Gone, Prepared, TakeLimits};
use crate::codec::{
    encoded_len, publish_len, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
};
use crate::model::{Delivery, Inflight, OutboundState};
use crate::store::{Commit, Loaded, StoreError};

use super::{Client, Exit, PendingLoad};
use crate::transport::Framed;

/// Most PUBLISH packets prepared per pass, so acks and reads interleave with a long queue.
const BATCH: usize = 256;

impl Client {
    /// Sends every ack whose commit has completed, in order. A failed commit gets a failure
    /// reason code in v5; a 3.1.1 client, which has no way to hear it, is disconnected, and so
    /// is any client whose PUBREL or session could not be recorded.
    pub(super) fn release_acks<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
    ) -> Result<(), Exit> {
        while let Some((result, mut pending)) = self.acks.pop_ready() {
            let ack = match (result, pending.ack) {
                (Ok(()), ack) => ack,
                (Err(error), ack) => {
                    // The store logs the failure itself, once for a run of them.
                    tracing::debug!(client_id = %self.client_id, %error, "commit failed; refusing the request");
                    // A SUBSCRIBE or UNSUBSCRIBE refused (0x80: "not accepted") changes
                    // nothing: its subscriptions are put back and no retained messages
                    // follow. The restored rows ride the next commit; nothing is acknowledged
                    // by it, so it is not awaited (the store logs a failure itself).
                    pending.after.clear();
                    if let Some(before) = pending.undo.take() {
                        let (client_id, connection_id) = (&self.client_id, self.connection_id);
                        let ((), _) = self.broker.change(|state, changes| {
                            state.restore_subscriptions(client_id, connection_id, *before, changes)
                        });
                    }
                    // A 3.1.1 client can be told only in a SUBACK (0x80 Failure); a PUBREL
                    // sent without its record could let a crash resend a QoS 2 message that
                    // was already released; and a client whose session was not stored must
                    // reconnect to learn where it stands (v5: DISCONNECT 0x80).
                    let v5 = self.version == ProtocolVersion::V5;
                    match ack {
                        Some(ack) if v5 && !matches!(*ack, Packet::PubRel(_)) => {
                            Some(Box::new(failed(*ack)))
                        }
                        Some(ack) if matches!(*ack, Packet::SubAck(_)) => {
                            Some(Box::new(failed(*ack)))
                        }
                        _ => return Err(Exit::StoreFailed(error.to_string().into())),
                    }
                }
            };
            let Some(ack) = ack else {
                continue;
            };
            framed.queue(&ack).map_err(|error| {
                Exit::Violation(
                    ReasonCode::ImplementationSpecificError,
                    error.to_string().into(),
                )
            })?;
            if !pending.after.is_empty() {
                let client_id = &self.client_id;
                let ((), _) = self
                    .broker
                    .change(|state, changes| state.enqueue_all(client_id, pending.after, changes));
            }
        }
        Ok(())
    }

    /// One step of sending: moves queued messages into the window and writes them, and says
    /// what must happen before the next step. A QoS 2 message of a persistent session is
    /// recorded as inflight before it goes out, so a restart resends it (DUP, same packet
    /// identifier) rather than sending it again as a new message [MQTT-4.3.3-6], and a stored
    /// QoS 0 message is removed before it goes out; for QoS 1 a repeat is allowed, so its
    /// record is not awaited. As the queue's head drains, spilled entries are read back from
    /// the store.
    ///
    /// Synchronous, with the rare waits in [`Client::wait_step`]: a connection's task is as
    /// large as the largest state it can wait in, for its whole life.
    pub(super) fn send_step<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
    ) -> Result<Step, Exit> {
        self.send_held_resends(framed);
        let pass = self.take_deliverable()?;
        if pass.await_commit {
            return Ok(Step::Wait(Wait::Commit(Box::new(pass))));
        }
        let head_drained = pass.drains_into_load();
        let count = self.write_pass(framed, pass)?;
        Ok(if head_drained {
            Step::Wait(Wait::Load {
                flush_first: count > 0,
            })
        } else if count < BATCH {
            Step::Done
        } else {
            Step::BatchFull
        })
    }

    /// Waits as [`Client::send_step`] asked, and writes what was waiting.
    pub(super) async fn wait_step<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
        wait: Wait,
    ) -> Result<(), Exit> {
        let flush_first = match wait {
            Wait::Commit(mut pass) => {
                let commit = std::mem::replace(&mut pass.commit, Commit::nothing());
                if let Err(error) = commit.wait().await {
                    tracing::error!(client_id = %self.client_id, %error, "could not record inflight messages");
                    return Err(Exit::StoreFailed(error.to_string().into()));
                }
                let head_drained = pass.drains_into_load();
                let count = self.write_pass(framed, *pass)?;
                if !head_drained {
                    return Ok(());
                }
                count > 0
            }
            Wait::Load { flush_first } => flush_first,
        };
        // Nothing else to send: the entries are awaited here, so the client gets its queue
        // before anything it sends now is answered.
        if flush_first {
            framed
                .flush()
                .await
                .map_err(|error| Exit::Lost(error.to_string().into()))?;
        }
        let entries = super::load_done(&mut self.load).await;
        self.take_loaded(entries)
    }

    /// Encodes the pass's packets into the write buffer and starts its read of spilled
    /// entries, if it asked for one (otherwise the entries join the queue when the connected
    /// loop sees them arrive). Returns how many packets it wrote.
    fn write_pass<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
        pass: Pass,
    ) -> Result<usize, Exit> {
        let mut sent = [0u64; 3];
        for packet in &pass.packets {
            if let Packet::Publish(publish) = packet {
                sent[publish.qos as usize] += 1;
            }
            framed.queue(packet).map_err(|error| {
                Exit::Violation(
                    ReasonCode::ImplementationSpecificError,
                    error.to_string().into(),
                )
            })?;
        }
        self.broker.metrics().messages_sent.add_each(sent);
        let acknowledged_later = u16::try_from(sent[1] + sent[2]).unwrap_or(u16::MAX);
        self.unacknowledged = self.unacknowledged.saturating_add(acknowledged_later);
        if let Some((request, loaded)) = pass.load {
            self.load = Some(Box::new(PendingLoad { request, loaded }));
        }
        Ok(pass.packets.len())
    }

    /// Takes what the window allows from the session's queue (see
    /// [`crate::broker::state::State::take_deliverable`]), building each PUBLISH here: Message
    /// Expiry, the client's Maximum Packet Size and outbound Topic Aliases are this
    /// connection's business. Starts the read of spilled entries the state asked for.
    fn take_deliverable(&mut self) -> Result<Pass, Exit> {
        let window = usize::from(
            self.client_receive_maximum
                .min(self.config.limits.max_inflight),
        );
        let now = Instant::now();
        let broker = self.broker.clone();
        // One look at the ACL for the whole pass, outside the engine's lock.
        let acl = broker.access().acl();
        let acl = acl.as_deref();
        let client_id = self.client_id.clone();
        let connection_id = self.connection_id;
        let (taken, commit) = broker.change(|state, changes| {
            let prepare = |delivery: &Delivery, packet_id| {
                self.prepare(delivery, packet_id, acl, now)
                    .map(Prepared::under_own_topic)
            };
            let taken = state.take_deliverable(
                &client_id,
                connection_id,
                TakeLimits {
                    window,
                    batch: BATCH,
                    max_qos: &|_| QoS::ExactlyOnce,
                },
                prepare,
                changes,
            )?;
            // Asked while the state that numbered the entries is locked, and before this
            // pass's changes reach the store: a load ends every chain the writer can elide, so
            // the Inflight records submitted after it can still cancel out with their PUBACKs
            // in the same group commit instead of being written and deleted again.
            let load = taken.load.map(|request| {
                let loaded = broker.store().load(&client_id, request.from, request.to);
                (request, loaded)
            });
            Ok((taken, load))
        });
        let (taken, load) = taken.map_err(|Gone| Exit::TakenOver)?;
        Ok(Pass {
            packets: taken.packets,
            commit,
            await_commit: taken.await_commit,
            load,
            head_drained: taken.head_drained,
        })
    }

    /// The PUBLISH of `delivery` under `packet_id`, or why it is not sent: the ACL in force
    /// does not let this client read its topic (a subscription wider than what it may read
    /// gets only what it may), its Message Expiry Interval has passed [MQTT-3.3.2-5], or it
    /// is larger than the client's Maximum Packet Size, which makes it discarded as if sent
    /// [MQTT-3.1.2-24].
    fn prepare(
        &mut self,
        delivery: &Delivery,
        packet_id: Option<u16>,
        acl: Option<&Rules>,
        now: Instant,
    ) -> Result<Packet, &'static str> {
        if acl.is_some_and(|rules| !rules.allows(self.who(), &delivery.message.topic, Access::Read))
        {
            self.broker
                .metrics()
                .messages_denied
                .fetch_add(1, Ordering::Relaxed);
            return Err("the ACL forbids this client to read its topic");
        }
        let Some(mut publish) = self.publish_for(delivery, now, false) else {
            return Err("expired");
        };
        publish.packet_id = packet_id;
        // Sized as sent: a known alias makes it shorter, a new one longer (assigned only
        // where it fits).
        let (version, limit) = (self.version, self.client_max_packet_size as usize);
        let fits = |publish: &Publish| publish_len(publish, version) <= limit;
        if let Some(aliases) = &mut self.aliases {
            aliases.outbound.apply(&mut publish, fits);
        }
        if !fits(&publish) {
            return Err("larger than the client's Maximum Packet Size");
        }
        Ok(Packet::Publish(publish))
    }

    /// Moves the entries the pending load read back into the queue's head. A store failure
    /// ends the connection (the client may come back and try again).
    pub(super) fn take_loaded(
        &mut self,
        entries: Result<Vec<(u64, Delivery)>, StoreError>,
    ) -> Result<(), Exit> {
        let Some(pending) = self.load.take() else {
            return Ok(());
        };
        let entries = entries.map_err(|error| {
            tracing::error!(client_id = %self.client_id, %error, "could not read queued messages back");
            Exit::StoreFailed(error.to_string().into())
        })?;
        let request = pending.request;
        let (lost, _) = self.broker.change(|state, _| {
            state.apply_load(&self.client_id, self.connection_id, request, entries)
        });
        let lost = lost.map_err(|Gone| Exit::TakenOver)?;
        if lost > 0 {
            tracing::error!(client_id = %self.client_id, lost, "queued messages missing from the store; they cannot be delivered");
            self.broker
                .metrics()
                .messages_dropped
                .fetch_add(lost, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The PUBLISH for a delivery, or `None` if its Message Expiry Interval has passed
    /// [MQTT-3.3.2-5].
    fn publish_for(&self, delivery: &Delivery, now: Instant, dup: bool) -> Option<Publish> {
        match delivery.message.remaining_expiry(now) {
            Some(0) => None,
            remaining => Some(self.build_publish(delivery, remaining, dup)),
        }
    }

    /// The PUBLISH for a delivery, forwarding the expiry interval that remains [MQTT-3.3.2-6].
    fn build_publish(
        &self,
        delivery: &Delivery,
        remaining_expiry: Option<u32>,
        dup: bool,
    ) -> Publish {
        let message = &delivery.message;
        let mut publish = Publish {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: String::from(&*message.topic),
            packet_id: None,
            properties: Default::default(),
            payload: message.payload.clone(),
        };
        if self.version == ProtocolVersion::V5 {
            publish.properties = message.properties_to_send();
            publish.properties.message_expiry_interval = remaining_expiry;
            publish
                .properties
                .subscription_identifiers
                .clone_from(&delivery.subscription_ids);
        }
        publish
    }

    /// Resends the inflight window after CONNACK, in its original order: PUBLISH with DUP
    /// for messages awaiting PUBACK/PUBREC, PUBREL for those awaiting PUBCOMP [MQTT-4.4.0-1].
    /// No more go at once than the client's Receive Maximum allows now [MQTT-3.3.4-9] (it may
    /// have lowered it since): the rest follow as flows complete ([`Client::send_step`]). A
    /// message larger than the client's Maximum Packet Size now is not sent but completed, as
    /// if it had been [MQTT-3.1.2-25].
    pub(super) fn resend_inflight<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
    ) {
        let now = Instant::now();
        let inflight = self.broker.read(|state| state.inflight_of(&self.client_id));
        let mut resends: u16 = 0;
        for entry in &inflight {
            let packet = self.resend_of(entry, now);
            if encoded_len(&packet, self.version) > self.client_max_packet_size as usize {
                tracing::debug!(client_id = %self.client_id, packet_id = entry.packet_id,
                    "inflight message larger than the client's Maximum Packet Size now; completed unsent");
                self.complete_outbound(entry.packet_id, entry.state);
                continue;
            }
            resends = resends.saturating_add(1);
        }
        self.unacknowledged = 0;
        self.held_resends = resends;
        self.send_held_resends(framed);
    }

    /// Sends held resends while the client's Receive Maximum allows. They are the window's
    /// last entries: no new message joins it while they wait, as it holds more than the
    /// Receive Maximum until they are sent.
    fn send_held_resends<S: AsyncRead + AsyncWrite + Unpin>(&mut self, framed: &mut Framed<S>) {
        let window = self
            .client_receive_maximum
            .min(self.config.limits.max_inflight);
        let room = window
            .saturating_sub(self.unacknowledged)
            .min(self.held_resends);
        if room == 0 {
            return;
        }
        let now = Instant::now();
        let inflight = self.broker.read(|state| state.inflight_of(&self.client_id));
        let held = inflight
            .len()
            .saturating_sub(usize::from(self.held_resends));
        for entry in inflight.iter().skip(held).take(usize::from(room)) {
            if let Err(error) = framed.queue(&self.resend_of(entry, now)) {
                tracing::warn!(client_id = %self.client_id, %error, "could not resend an inflight message");
            }
        }
        self.held_resends -= room;
        self.unacknowledged += room;
    }

    /// What an inflight entry is sent again as: PUBREL if it awaits PUBCOMP, else its PUBLISH
    /// with DUP under its packet identifier.
    fn resend_of(&self, entry: &Inflight, now: Instant) -> Packet {
        match entry.state {
            OutboundState::AwaitingPubComp => Packet::PubRel(PubResponse::success(entry.packet_id)),
            _ => {
                // A message already sent keeps its place even if it has expired since: the
                // receiver must still complete the flow for its packet identifier. It says
                // what remains of its interval: nothing, 0, once expired [MQTT-3.3.2-6].
                let remaining = entry.delivery.message.remaining_expiry(now);
                let mut publish = self.build_publish(&entry.delivery, remaining, true);
                publish.packet_id = Some(entry.packet_id);
                Packet::Publish(publish)
            }
        }
    }
}

/// One pass over the queue: the packets to write, the store's record of what was taken, and
/// the read of spilled entries it started.
/// What must happen before the next [`Client::send_step`].
pub(super) enum Step {
    /// Nothing more can be written now.
    Done,
    /// A whole batch was written: flush it, then step again.
    BatchFull,
    /// Wait first, in [`Client::wait_step`].
    Wait(Wait),
}

/// A wait of [`Client::send_step`]'s.
pub(super) enum Wait {
    /// The pass's packets go out once its commit is durable (boxed: rare, and large).
    Commit(Box<Pass>),
    /// The queue's head drained: the read-back of spilled entries is awaited, after
    /// flushing what was written if `flush_first`.
    Load { flush_first: bool },
}

pub(super) struct Pass {
    packets: Vec<Packet>,
    commit: Commit,
    /// The packets may go out only once `commit` is durable (it holds a QoS 2 send, or a
    /// stored QoS 0 one).
    await_commit: bool,
    load: Option<(LoadRequest, Loaded)>,
    /// The queue holds no entry in memory any more: only the load can give more.
    head_drained: bool,
}

impl Pass {
    /// Whether it emptied the queue's head and started the read-back the connection must wait
    /// for before anything else goes out.
    fn drains_into_load(&self) -> bool {
        self.head_drained && self.load.is_some()
    }
}

/// The failure form of an ack whose commit failed (v5).
fn failed(ack: Packet) -> Packet {
    let refuse = |mut response: PubResponse| {
        response.reason = ReasonCode::UnspecifiedError;
        response
    };
    match ack {
        Packet::PubAck(response) => Packet::PubAck(refuse(response)),
        Packet::PubRec(response) => Packet::PubRec(refuse(response)),
        Packet::SubAck(mut suback) => {
            suback.reasons.fill(ReasonCode::UnspecifiedError);
            Packet::SubAck(suback)
        }
        Packet::UnsubAck(mut unsuback) => {
            unsuback.reasons.fill(ReasonCode::UnspecifiedError);
            Packet::UnsubAck(unsuback)
        }
        other => other,
    }
}
