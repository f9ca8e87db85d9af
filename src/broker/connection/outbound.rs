//! What the broker sends a connected client: acks released after their commit, queued
//! messages moved into the inflight window as PUBLISH (Receive Maximum, Maximum Packet Size,
//! Message Expiry and outbound Topic Aliases applied), and the inflight window resent with DUP
//! after a reconnect [MQTT-4.4.0-1].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::codec::{encoded_len, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode};
use crate::store::StoreOp;

use super::framed::Framed;
use super::{Client, Exit};
use crate::broker::message::Delivery;
use crate::broker::session::{Inflight, OutboundState};

/// Most PUBLISH packets prepared per pass, so acks and reads interleave with a long queue.
const BATCH: usize = 256;

impl Client {
    /// Sends every ack whose commit has completed, in order. A failed commit gets a failure
    /// reason code in v5; a 3.1.1 client, which has no way to hear it, is disconnected, and so
    /// is any client whose PUBREL could not be recorded.
    pub(super) fn release_acks<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
    ) -> Result<(), Exit> {
        while let Some((result, pending)) = self.acks.pop_ready() {
            let ack = match result {
                Ok(()) => pending.ack,
                Err(error) => {
                    tracing::error!(client_id = %self.client_id, %error, "commit failed; refusing the request");
                    // A 3.1.1 client cannot be told; and a PUBREL sent without its record could
                    // let a crash resend a QoS 2 message that was already released.
                    if self.version == ProtocolVersion::V311
                        || matches!(pending.ack, Packet::PubRel(_))
                    {
                        return Err(Exit::Lost(format!("store failure: {error}")));
                    }
                    failed(pending.ack)
                }
            };
            framed.queue(&ack).map_err(|error| {
                Exit::Violation(ReasonCode::ImplementationSpecificError, error.to_string())
            })?;
            if !pending.after.is_empty() {
                let client_id = &self.client_id;
                let ((), _) = self
                    .broker
                    .change(|state, routed| state.enqueue_all(client_id, pending.after, routed));
            }
        }
        Ok(())
    }

    /// Moves queued messages into the window and writes them. Messages for persistent sessions
    /// are recorded as inflight before they go out, so a restart resends rather than re-sends.
    pub(super) async fn send_queued<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
    ) -> Result<(), Exit> {
        loop {
            let (packets, ops) = self.take_deliverable()?;
            if packets.is_empty() {
                if !ops.is_empty() {
                    let _ = self.broker.commit(ops);
                }
                return Ok(());
            }
            if let Err(error) = self.broker.commit(ops).wait().await {
                tracing::error!(client_id = %self.client_id, %error, "could not record inflight messages");
                return Err(Exit::Lost(format!("store failure: {error}")));
            }
            let count = packets.len();
            for packet in &packets {
                framed.queue(packet).map_err(|error| {
                    Exit::Violation(ReasonCode::ImplementationSpecificError, error.to_string())
                })?;
            }
            self.broker
                .metrics()
                .messages_sent
                .fetch_add(count as u64, Ordering::Relaxed);
            if count < BATCH {
                return Ok(());
            }
            if let Err(error) = framed.flush().await {
                return Err(Exit::Lost(error.to_string()));
            }
        }
    }

    /// Under the state lock: takes what the window allows from the session queue, assigns
    /// packet identifiers and builds the PUBLISH packets.
    fn take_deliverable(&mut self) -> Result<(Vec<Packet>, Vec<StoreOp>), Exit> {
        let window = usize::from(
            self.client_receive_maximum
                .min(self.broker.config().limits.max_inflight),
        );
        let now = Instant::now();
        let broker = self.broker.clone();
        let mut state = broker.state();
        let Some(slot) = state.sessions.get_mut(&self.client_id) else {
            return Err(Exit::TakenOver);
        };
        if slot.link.as_ref().map(|link| link.connection_id) != Some(self.connection_id) {
            return Err(Exit::TakenOver);
        }
        let session = &mut slot.session;
        let persistent = session.is_persistent();
        let mut packets = Vec::new();
        let mut ops = Vec::new();
        while packets.len() < BATCH {
            let Some(front) = session.queue.front() else {
                break;
            };
            if front.qos != QoS::AtMostOnce && session.inflight.len() >= window {
                break; // [MQTT-4.9.0-2] the window is full; order is kept by waiting.
            }
            let Some(delivery) = session.queue.pop_front() else {
                break;
            };
            let Some(mut publish) = self.publish_for(&delivery, now, false) else {
                self.discard(&delivery, persistent, &mut ops, "expired");
                continue;
            };
            let packet_id = (delivery.qos != QoS::AtMostOnce).then(|| session.next_packet_id());
            publish.packet_id = packet_id;
            let mut packet = Packet::Publish(publish);
            if encoded_len(&packet, self.version) > self.client_max_packet_size as usize {
                // [MQTT-3.1.2-24] Too large for the client: discarded as if sent.
                self.discard(
                    &delivery,
                    persistent,
                    &mut ops,
                    "larger than the client's Maximum Packet Size",
                );
                continue;
            }
            if let Packet::Publish(publish) = &mut packet {
                self.apply_outbound_alias(publish);
            }
            if let Some(packet_id) = packet_id {
                if persistent {
                    ops.push(StoreOp::Inflight {
                        client_id: self.client_id.clone(),
                        packet_id,
                        message_id: delivery.message.id,
                    });
                }
                let state = if delivery.qos == QoS::AtLeastOnce {
                    OutboundState::AwaitingPubAck
                } else {
                    OutboundState::AwaitingPubRec
                };
                session.inflight.push_back(Inflight {
                    packet_id,
                    delivery,
                    state,
                });
            }
            packets.push(packet);
        }
        Ok((packets, ops))
    }

    /// Records that a queued delivery left without being sent.
    fn discard(&self, delivery: &Delivery, persistent: bool, ops: &mut Vec<StoreOp>, why: &str) {
        tracing::debug!(client_id = %self.client_id, topic = %delivery.message.topic, "message not sent: {why}");
        if persistent && delivery.qos != QoS::AtMostOnce {
            ops.push(StoreOp::Discard {
                client_id: self.client_id.clone(),
                message_id: delivery.message.id,
            });
        }
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
            topic: message.topic.to_string(),
            packet_id: None,
            properties: Default::default(),
            payload: message.payload.clone(),
        };
        if self.version == ProtocolVersion::V5 {
            publish.properties = message.properties.clone();
            publish.properties.message_expiry_interval = remaining_expiry;
            publish
                .properties
                .subscription_identifiers
                .clone_from(&delivery.subscription_ids);
        }
        publish
    }

    /// Replaces the topic with a Topic Alias the client already knows, or assigns a new one
    /// while the client's Topic Alias Maximum allows [MQTT-3.3.2-11].
    fn apply_outbound_alias(&mut self, publish: &mut Publish) {
        if self.client_topic_alias_maximum == 0 {
            return;
        }
        if let Some(alias) = self.outbound_aliases.get(publish.topic.as_str()) {
            publish.properties.topic_alias = Some(*alias);
            publish.topic.clear();
            return;
        }
        let used = self.outbound_aliases.len();
        if used < usize::from(self.client_topic_alias_maximum) {
            let alias = (used + 1) as u16;
            self.outbound_aliases
                .insert(Arc::from(publish.topic.as_str()), alias);
            publish.properties.topic_alias = Some(alias);
        }
    }

    /// Resends the inflight window after CONNACK: PUBLISH with DUP for messages awaiting
    /// PUBACK/PUBREC, PUBREL for those awaiting PUBCOMP, in their original order.
    pub(super) fn resend_inflight<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        framed: &mut Framed<S>,
    ) {
        let now = Instant::now();
        let packets: Vec<Packet> = {
            let state = self.broker.state();
            let Some(slot) = state.sessions.get(&self.client_id) else {
                return;
            };
            slot.session
                .inflight
                .iter()
                .map(|entry| match entry.state {
                    OutboundState::AwaitingPubComp => {
                        Packet::PubRel(PubResponse::success(entry.packet_id))
                    }
                    _ => {
                        // A message already sent keeps its place even if it has expired since:
                        // the receiver must still complete the flow for its packet identifier.
                        let remaining = entry
                            .delivery
                            .message
                            .remaining_expiry(now)
                            .map(|left| left.max(1));
                        let mut publish = self.build_publish(&entry.delivery, remaining, true);
                        publish.packet_id = Some(entry.packet_id);
                        Packet::Publish(publish)
                    }
                })
                .collect()
        };
        for packet in &packets {
            if let Err(error) = framed.queue(packet) {
                tracing::warn!(client_id = %self.client_id, %error, "could not resend an inflight message");
            }
        }
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
