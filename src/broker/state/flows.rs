//! The QoS 1/2 flows of a connected session, both ways: a client's PUBLISH routed (and its
//! inbound QoS 2 state), the client's acks of our PUBLISHes moving entries through the
//! inflight window, queued messages taken into the window to be sent, and spilled queue
//! entries read back. A session's own changes reach the store only if it outlives its
//! connection.

use std::sync::Arc;
use std::time::Instant;

use crate::codec::{Packet, Publish, QoS};
use crate::model::{Delivery, Inflight, Message, OutboundState, StoreOp};

use super::super::queue::{LoadRequest, Queued};
use super::super::session::Session;
use super::{Changes, State};

/// The connection's session is gone, or another connection took it over: the connection
/// must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// Where a client's QoS 1/2 flows stand when its next PUBLISH arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundFlows {
    /// The PUBLISH repeats an inbound QoS 2 message awaiting PUBREL [MQTT-4.3.3-10].
    pub repeat: bool,
    /// Inbound QoS 2 messages awaiting PUBREL.
    pub awaiting_release: usize,
}

/// What routing a client's PUBLISH did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Some subscription matched.
    pub matched: bool,
    /// Every receiving queue refused it (queue_full_policy = refuse_newest), and it is not
    /// retained either.
    pub refused_everywhere: bool,
}

/// A client's PUBLISH, its topic resolved from any alias.
#[derive(Debug)]
pub struct InboundPublish {
    pub publish: Publish,
    pub topic: Arc<str>,
    /// A refusal ends a QoS 2 flow at the PUBREC (v5 tells it with 0x97; 3.1.1 cannot, so
    /// its flow goes on).
    pub refusal_ends_flow: bool,
    pub received: Instant,
}

/// How much one pass over the queue may take.
#[derive(Clone, Copy)]
pub struct TakeLimits<'a> {
    /// The receiver's Receive Maximum (and our own cap): most messages in flight.
    pub window: usize,
    /// Most messages taken in this pass.
    pub batch: usize,
    /// The highest QoS a delivery may go out at: a bridge's upstream may accept less than was
    /// subscribed, and the bridge's `out` rule for its topic may carry less now than when it
    /// was queued.
    pub max_qos: &'a dyn Fn(&Delivery) -> QoS,
}

/// A queued message made ready to go out, by the `prepare` of [`State::take_deliverable`].
#[derive(Debug)]
pub struct Prepared {
    pub packet: Packet,
    /// The topic it goes out under where something other than the message's own topic
    /// decides it (see [`Inflight::sent_topic`]).
    pub sent_topic: Option<Arc<str>>,
}

impl Prepared {
    /// `packet`, which carries the message under its own topic.
    pub fn under_own_topic(packet: Packet) -> Prepared {
        Prepared {
            packet,
            sent_topic: None,
        }
    }
}

/// What one pass over the queue took into the window.
#[derive(Debug)]
pub struct Taken {
    /// The PUBLISH packets to write, in order.
    pub packets: Vec<Packet>,
    /// The packets may go out only once the pass's changes are durable (a QoS 2 send, or a
    /// stored QoS 0 one).
    pub await_commit: bool,
    /// Spilled entries to read back from the store now.
    pub load: Option<LoadRequest>,
    /// The queue holds no entry in memory any more: only the load can give more.
    pub head_drained: bool,
}

impl State {
    /// The session `connection_id` is attached to.
    pub(super) fn attached(
        &mut self,
        client_id: &str,
        connection_id: u64,
    ) -> Result<&mut Session, Gone> {
        match self.sessions.get_mut(client_id) {
            Some(slot)
                if slot.link.as_ref().map(|link| link.connection_id) == Some(connection_id) =>
            {
                Ok(&mut slot.session)
            }
            _ => Err(Gone),
        }
    }

    /// The session of `client_id` and the position in its window of the message sent under
    /// `packet_id`, if that message is in state `expected`.
    fn inflight_entry(
        &mut self,
        client_id: &str,
        packet_id: u16,
        expected: OutboundState,
    ) -> Option<(&mut Session, usize)> {
        let session = &mut self.sessions.get_mut(client_id)?.session;
        let position = session.inflight.position(packet_id, expected)?;
        Some((session, position))
    }

    /// The inbound QoS 2 state a PUBLISH with `packet_id` meets.
    pub fn inbound_flows(&self, client_id: &str, packet_id: u16) -> Result<InboundFlows, Gone> {
        let session = &self.sessions.get(client_id).ok_or(Gone)?.session;
        Ok(InboundFlows {
            repeat: session.inbound_qos2.contains(&packet_id),
            awaiting_release: session.inbound_qos2.len(),
        })
    }

    /// Routes a client's PUBLISH; a QoS 2 one then awaits PUBREL unless refused with a reason
    /// that ends its flow.
    pub fn publish(
        &mut self,
        client_id: &Arc<str>,
        inbound: InboundPublish,
        changes: &mut Changes,
    ) -> Result<Published, Gone> {
        let InboundPublish {
            publish,
            topic,
            refusal_ends_flow,
            received,
        } = inbound;
        let qos = publish.qos;
        let packet_id = publish.packet_id.unwrap_or(0);
        if qos != QoS::AtMostOnce && !self.sessions.contains_key(client_id) {
            return Err(Gone);
        }
        let id = self.next_message_id();
        let message = Arc::new(Message::from_publish(
            id,
            publish,
            topic,
            client_id.clone(),
            received,
        ));
        self.route_into(&message, changes);
        let published = Published {
            matched: changes.matched,
            // A retained message was taken all the same: it is the topic's retained message
            // now, which the publisher is told (0x97 would say it was not).
            refused_everywhere: changes.refused_everywhere() && !message.retain,
        };
        let flow_ends = published.refused_everywhere && refusal_ends_flow;
        if qos == QoS::ExactlyOnce && !flow_ends {
            if let Some(slot) = self.sessions.get_mut(client_id) {
                slot.session.inbound_qos2.insert(packet_id);
                if slot.session.is_stored() {
                    changes.ops.push(StoreOp::InboundQos2 {
                        client_id: client_id.clone(),
                        packet_id,
                        awaiting: true,
                    });
                }
            }
        }
        Ok(published)
    }

    /// PUBREL from the client: its inbound QoS 2 flow ends. Whether the flow was known.
    pub fn release_inbound(
        &mut self,
        client_id: &Arc<str>,
        packet_id: u16,
        changes: &mut Changes,
    ) -> bool {
        let Some(slot) = self.sessions.get_mut(client_id) else {
            return false;
        };
        let known = slot.session.inbound_qos2.remove(&packet_id);
        if known && slot.session.is_stored() {
            changes.ops.push(StoreOp::InboundQos2 {
                client_id: client_id.clone(),
                packet_id,
                awaiting: false,
            });
        }
        known
    }

    /// PUBACK, PUBCOMP, or a PUBREC with an error reason from the client: the message in
    /// state `expected` under `packet_id` leaves the window. Whether it was there.
    pub fn complete_outbound(
        &mut self,
        client_id: &Arc<str>,
        packet_id: u16,
        expected: OutboundState,
        changes: &mut Changes,
    ) -> bool {
        let Some((session, position)) = self.inflight_entry(client_id, packet_id, expected) else {
            return false;
        };
        session.inflight.remove(position);
        if session.is_stored() {
            changes.ops.push(StoreOp::Acked {
                client_id: client_id.clone(),
                packet_id,
            });
        }
        true
    }

    /// The message in the window under `packet_id` in state `expected`. One the server refused
    /// for its quota stays there, to be published again.
    pub fn outbound_in_flight(
        &self,
        client_id: &str,
        packet_id: u16,
        expected: OutboundState,
    ) -> Option<&Inflight> {
        let session = &self.sessions.get(client_id)?.session;
        session
            .inflight
            .iter()
            .find(|entry| entry.packet_id == packet_id && entry.state == expected)
    }

    /// PUBREC from the client: the message awaits PUBCOMP, and PUBREL may go out once that is
    /// durable: after a crash the PUBLISH must never be sent again [MQTT-4.3.3-6], so the
    /// commit does not wait for the window. Whether the message was awaiting PUBREC.
    pub fn outbound_received(
        &mut self,
        client_id: &Arc<str>,
        packet_id: u16,
        changes: &mut Changes,
    ) -> bool {
        let awaiting = OutboundState::AwaitingPubRec;
        let Some((session, position)) = self.inflight_entry(client_id, packet_id, awaiting) else {
            return false;
        };
        let Some(order) = session.inflight.release(position) else {
            return false;
        };
        if session.is_stored() {
            changes.ops.push(StoreOp::Released {
                client_id: client_id.clone(),
                packet_id,
                order,
            });
        }
        changes.urgent();
        true
    }

    /// Takes up to `limits.batch` queued messages into the inflight window of `limits.window`
    /// entries [MQTT-4.9.0-2], each sent at no more than `limits.max_qos` gives it and made a
    /// packet by `prepare` with the packet identifier it gets (QoS 1/2), or refused by it with
    /// the reason it is not sent (expired, larger than the client accepts: it leaves the queue
    /// all the same), and starts reading spilled entries back when the queue's head runs low.
    /// A QoS 2 message of a persistent session is recorded as inflight, and a stored QoS 0
    /// message removed, before it goes out (`await_commit`); for QoS 1 a repeat after a crash
    /// is allowed, so its record is not awaited.
    pub fn take_deliverable(
        &mut self,
        client_id: &Arc<str>,
        connection_id: u64,
        limits: TakeLimits<'_>,
        mut prepare: impl FnMut(&Delivery, Option<u16>) -> Result<Prepared, &'static str>,
        changes: &mut Changes,
    ) -> Result<Taken, Gone> {
        let TakeLimits {
            window,
            batch,
            max_qos,
        } = limits;
        let session = self.attached(client_id, connection_id)?;
        // Room for what the window likely takes, so a pass does not grow it step by step (a
        // window full of QoS 1 still lets QoS 0 messages by: they grow it then).
        let likely = batch
            .min(session.queue.len())
            .min(window.saturating_sub(session.inflight.len()));
        let mut packets = Vec::with_capacity(likely);
        let mut await_commit = false;
        while packets.len() < batch {
            let Some(front) = session.queue.front() else {
                break;
            };
            if front.delivery.qos != QoS::AtMostOnce && session.inflight.len() >= window {
                break; // The window is full: order is kept by waiting.
            }
            let Some(Queued {
                seq, mut delivery, ..
            }) = session.queue.pop_front(client_id)
            else {
                break;
            };
            delivery.qos = delivery.qos.min(max_qos(&delivery));
            let packet_id = (delivery.qos != QoS::AtMostOnce).then(|| session.next_packet_id());
            let Prepared { packet, sent_topic } = match prepare(&delivery, packet_id) {
                Ok(prepared) => prepared,
                Err(why) => {
                    tracing::debug!(%client_id, topic = %delivery.message.topic, "message not sent: {why}");
                    if let Some(seq) = seq {
                        changes.ops.push(StoreOp::Discard {
                            client_id: client_id.clone(),
                            seq,
                        });
                    }
                    continue;
                }
            };
            match (packet_id, seq) {
                (Some(packet_id), seq) => {
                    if let Some(seq) = seq {
                        changes.ops.push(StoreOp::Inflight {
                            client_id: client_id.clone(),
                            seq,
                            packet_id,
                            sent_topic: sent_topic.clone(),
                        });
                        await_commit |= delivery.qos == QoS::ExactlyOnce;
                    }
                    let state = if delivery.qos == QoS::AtLeastOnce {
                        OutboundState::AwaitingPubAck
                    } else {
                        OutboundState::AwaitingPubRec
                    };
                    session.inflight.push(Inflight {
                        packet_id,
                        delivery,
                        state,
                        release_order: 0,
                        sent_topic,
                    });
                }
                (None, Some(seq)) => {
                    // A stored QoS 0 message goes out once its removal is durable: after a
                    // crash it must not come again (QoS 0 is at most once).
                    changes.ops.push(StoreOp::Discard {
                        client_id: client_id.clone(),
                        seq,
                    });
                    await_commit = true;
                }
                (None, None) => {}
            }
            packets.push(packet);
        }
        if await_commit {
            changes.urgent();
        }
        Ok(Taken {
            packets,
            await_commit,
            load: session.queue.load_request(),
            head_drained: session.queue.in_memory() == 0,
        })
    }

    /// Moves the entries a load read back into the queue's head; returns how many of the
    /// requested entries the store did not have (they cannot be delivered).
    pub fn apply_load(
        &mut self,
        client_id: &Arc<str>,
        connection_id: u64,
        request: LoadRequest,
        entries: Vec<(u64, Delivery)>,
    ) -> Result<u64, Gone> {
        let session = self.attached(client_id, connection_id)?;
        Ok(session.queue.apply_load(request, entries))
    }

    /// The inflight window of a session, to resend after a reconnect in this order (PUBRELs as
    /// their PUBRECs came, then PUBLISHes as sent).
    pub fn inflight_of(&self, client_id: &str) -> Vec<Inflight> {
        self.sessions
            .get(client_id)
            .map(|slot| slot.session.inflight.iter().cloned().collect())
            .unwrap_or_default()
    }
}
