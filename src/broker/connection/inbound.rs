//! Packets from a connected client: PUBLISH and its QoS 1/2 flows, the client's acks of our
//! PUBLISHes, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT, and every packet a client must not
//! send. Acks of durable changes go to the [`super::acks::AckQueue`], never straight out.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::codec::{
    Disconnect, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, SubAck, Subscribe,
    UnsubAck, Unsubscribe,
};
use crate::model::StoreOp;
use crate::store::{Commit, Pace};

use super::framed::Framed;
use super::{Client, Exit};
use crate::broker::topic::{parse_shared, validate_topic_filter, validate_topic_name, TopicLimits};
use crate::model::Message;
use crate::model::OutboundState;

/// A protocol violation ending the connection.
fn violation(reason: ReasonCode, why: impl Into<String>) -> Exit {
    Exit::Violation(reason, why.into())
}

impl Client {
    /// Handles one packet from the client.
    pub(super) fn handle<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
        packet: Packet,
    ) -> Result<(), Exit> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish),
            Packet::PubAck(ack) => {
                self.complete_outbound(ack.packet_id, OutboundState::AwaitingPubAck);
                Ok(())
            }
            Packet::PubRec(rec) => {
                self.on_pubrec(rec);
                Ok(())
            }
            Packet::PubRel(rel) => {
                self.on_pubrel(rel);
                Ok(())
            }
            Packet::PubComp(comp) => {
                self.complete_outbound(comp.packet_id, OutboundState::AwaitingPubComp);
                Ok(())
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe),
            Packet::PingReq => self.send(framed, &Packet::PingResp),
            Packet::Disconnect(disconnect) => Err(self.on_disconnect(disconnect)),
            Packet::Connect(_) => Err(violation(
                ReasonCode::ProtocolError,
                "second CONNECT [MQTT-3.1.0-2]",
            )),
            Packet::Auth(_) => Err(violation(
                ReasonCode::ProtocolError,
                "AUTH without an Authentication Method in CONNECT",
            )),
            other @ (Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => Err(violation(
                ReasonCode::ProtocolError,
                format!("{} may only be sent by a server", other.name()),
            )),
        }
        .map(|_| ())
    }

    /// Commits changes to this connection's own session.
    fn commit_own(&self, ops: Vec<StoreOp>) -> Commit {
        self.broker.commit(self.own_ops(ops), Pace::Window)
    }

    /// The changes to this connection's own session the store keeps: none for a session that
    /// ends with its connection.
    fn own_ops(&self, ops: Vec<StoreOp>) -> Vec<StoreOp> {
        if self.persistent {
            ops
        } else {
            Vec::new()
        }
    }

    /// Queues a packet that needs no commit (PINGRESP, PUBREL).
    fn send<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        framed: &mut Framed<S>,
        packet: &Packet,
    ) -> Result<(), Exit> {
        framed
            .queue(packet)
            .map_err(|error| violation(ReasonCode::ImplementationSpecificError, error.to_string()))
    }

    fn topic_limits(&self) -> TopicLimits {
        let limits = &self.broker.config().limits;
        TopicLimits {
            max_length: limits.max_topic_length,
            max_levels: limits.max_topic_levels,
        }
    }

    /// The topic a PUBLISH is for, resolving and recording Topic Aliases (v5) [MQTT-3.3.2-12].
    fn resolve_topic(&mut self, publish: &Publish) -> Result<Arc<str>, Exit> {
        let alias = publish.properties.topic_alias;
        if let Some(alias) = alias {
            let maximum = self.broker.config().limits.topic_alias_maximum;
            if alias == 0 || alias > maximum {
                // [MQTT-3.3.2-9] [MQTT-3.3.2-10]
                return Err(violation(
                    ReasonCode::TopicAliasInvalid,
                    format!("topic alias {alias} outside 1..={maximum}"),
                ));
            }
        }
        if publish.topic.is_empty() {
            return match alias.and_then(|alias| self.inbound_aliases.get(&alias)) {
                Some(topic) => Ok(topic.clone()),
                None => Err(violation(
                    ReasonCode::ProtocolError,
                    "empty topic name without a known topic alias",
                )),
            };
        }
        validate_topic_name(&publish.topic, self.topic_limits())
            .map_err(|error| violation(ReasonCode::TopicNameInvalid, error.to_string()))?;
        let topic: Arc<str> = Arc::from(publish.topic.as_str());
        if let Some(alias) = alias {
            self.inbound_aliases.insert(alias, topic.clone());
        }
        Ok(topic)
    }

    /// PUBLISH from the client: route it, then ack after the commit (QoS 1: PUBACK, QoS 2: PUBREC).
    fn on_publish(&mut self, publish: Publish) -> Result<(), Exit> {
        let topic = self.resolve_topic(&publish)?;
        let broker = self.broker.clone();
        broker
            .metrics()
            .messages_received
            .fetch_add(1, Ordering::Relaxed);
        let qos = publish.qos;
        let packet_id = publish.packet_id.unwrap_or(0);
        let mut state = broker.state();
        if qos != QoS::AtMostOnce {
            let Some(slot) = state.sessions.get(&self.client_id) else {
                return Err(Exit::TakenOver);
            };
            if qos == QoS::ExactlyOnce && slot.session.inbound_qos2.contains(&packet_id) {
                // [MQTT-4.3.3-10] A resent QoS 2 PUBLISH is acknowledged, not routed again.
                drop(state);
                return self.ack_unrouted(qos, packet_id, ReasonCode::Success);
            }
            // QoS 2 messages count until PUBREL (their PUBREC, pending or sent, is in
            // `inbound_qos2`), QoS 1 messages until their PUBACK leaves.
            let inflight = slot.session.inbound_qos2.len() + self.acks.pending_pubacks();
            self.check_receive_maximum(inflight, self.acks.pending_publish_acks())?;
        }
        if topic.starts_with("$SYS") {
            drop(state);
            tracing::debug!(client_id = %self.client_id, %topic, "client PUBLISH to $SYS ignored");
            return self.ack_unrouted(qos, packet_id, ReasonCode::NotAuthorized);
        }
        let message = Arc::new(Message::from_publish(
            state.next_message_id(),
            publish,
            topic,
            self.client_id.clone(),
            Instant::now(),
        ));
        let mut routed = state.route(&message);
        // A v5 publisher hears when every queue refused its message (refuse_newest policy);
        // a 3.1.1 publisher cannot, and the loss is counted and logged only.
        let reason = if routed.refused_everywhere() && self.version == ProtocolVersion::V5 {
            ReasonCode::QuotaExceeded
        } else if routed.matched {
            ReasonCode::Success
        } else {
            ReasonCode::NoMatchingSubscribers
        };
        // A PUBREC with a failure reason code ends the QoS 2 flow: no PUBREL follows.
        if qos == QoS::ExactlyOnce && reason != ReasonCode::QuotaExceeded {
            if let Some(slot) = state.sessions.get_mut(&self.client_id) {
                slot.session.inbound_qos2.insert(packet_id);
            }
            if self.persistent {
                routed.ops.push(StoreOp::InboundQos2 {
                    client_id: self.client_id.clone(),
                    packet_id,
                    awaiting: true,
                });
            }
        }
        // Handed to the store before the lock is released: a receiver's connection may take
        // the message from its queue at once, and its Inflight op must reach the store after
        // this Enqueue, or the store keeps the queue entry and repeats the message after a
        // restart.
        let commit = broker.commit_routed(routed);
        drop(state);
        match qos {
            QoS::AtMostOnce => Ok(()),
            _ => {
                let ack = self.publish_ack(qos, packet_id, reason);
                self.acks.push(commit, ack, Vec::new());
                Ok(())
            }
        }
    }

    /// [MQTT-3.3.4-7] A v5 client may not have more unacknowledged QoS 1/2 PUBLISHes than our
    /// Receive Maximum; `inflight` counts them before this one. It is disconnected with 0x93
    /// only when the excess is its own doing: every PUBACK and PUBREC we owe it has been sent,
    /// so the flows still open wait for its PUBREL. While some of our answers still wait for
    /// their commit (`held_back`), a client that did not wait for them is not thrown out:
    /// its message is taken, and the connection stops reading until acks leave (see
    /// [`Client::reading`]), so nothing is resent, repeated or reordered. A 3.1.1 client is
    /// never told a Receive Maximum, so it is not held to one.
    fn check_receive_maximum(&self, inflight: usize, held_back: usize) -> Result<(), Exit> {
        if self.version == ProtocolVersion::V311 {
            return Ok(());
        }
        let maximum = self.broker.config().limits.max_inflight;
        if inflight >= usize::from(maximum) && held_back == 0 {
            return Err(violation(
                ReasonCode::ReceiveMaximumExceeded,
                format!("more than {maximum} unacknowledged QoS 1/2 messages"),
            ));
        }
        Ok(())
    }

    /// The PUBACK or PUBREC for an inbound message; reason codes exist only in v5.
    fn publish_ack(&self, qos: QoS, packet_id: u16, reason: ReasonCode) -> Packet {
        let mut response = PubResponse::success(packet_id);
        if self.version == ProtocolVersion::V5 {
            response.reason = reason;
        }
        if qos == QoS::ExactlyOnce {
            Packet::PubRec(response)
        } else {
            Packet::PubAck(response)
        }
    }

    /// Acks a PUBLISH that was not routed (QoS 0: nothing to send); it still waits its turn
    /// behind earlier acks.
    fn ack_unrouted(&mut self, qos: QoS, packet_id: u16, reason: ReasonCode) -> Result<(), Exit> {
        if qos != QoS::AtMostOnce {
            let ack = self.publish_ack(qos, packet_id, reason);
            let commit = self.broker.commit(Vec::new(), Pace::Window);
            self.acks.push(commit, ack, Vec::new());
        }
        Ok(())
    }

    /// PUBREL: the inbound QoS 2 flow ends; PUBCOMP after the commit [MQTT-4.3.3-11].
    fn on_pubrel(&mut self, rel: PubResponse) {
        let known = {
            let mut state = self.broker.state();
            state
                .sessions
                .get_mut(&self.client_id)
                .is_some_and(|slot| slot.session.inbound_qos2.remove(&rel.packet_id))
        };
        let mut response = PubResponse::success(rel.packet_id);
        let mut ops = Vec::new();
        if known {
            ops.push(StoreOp::InboundQos2 {
                client_id: self.client_id.clone(),
                packet_id: rel.packet_id,
                awaiting: false,
            });
        } else if self.version == ProtocolVersion::V5 {
            response.reason = ReasonCode::PacketIdentifierNotFound;
        }
        let commit = self.commit_own(ops);
        self.acks
            .push(commit, Packet::PubComp(response), Vec::new());
    }

    /// PUBACK or PUBCOMP from the client: the outbound message is done and leaves the window.
    fn complete_outbound(&mut self, packet_id: u16, expected: OutboundState) {
        let done = {
            let mut state = self.broker.state();
            state.sessions.get_mut(&self.client_id).and_then(|slot| {
                let position = slot.session.find_inflight(packet_id, expected)?;
                slot.session.inflight.remove(position)
            })
        };
        match done {
            Some(_) => {
                let _ = self.commit_own(vec![StoreOp::Acked {
                    client_id: self.client_id.clone(),
                    packet_id,
                }]);
            }
            None => {
                tracing::debug!(client_id = %self.client_id, packet_id, ?expected, "ack for an unknown packet identifier ignored")
            }
        }
    }

    /// PUBREC from the client: answer PUBREL [MQTT-4.3.3-4], or drop the message if the
    /// client refused it with an error reason.
    fn on_pubrec(&mut self, rec: crate::codec::PubResponse) {
        if rec.reason.is_error() {
            self.complete_outbound(rec.packet_id, OutboundState::AwaitingPubRec);
            return;
        }
        let known = {
            let mut state = self.broker.state();
            state
                .sessions
                .get_mut(&self.client_id)
                .and_then(|slot| {
                    let position = slot
                        .session
                        .find_inflight(rec.packet_id, OutboundState::AwaitingPubRec)?;
                    slot.session.inflight[position].state = OutboundState::AwaitingPubComp;
                    Some(())
                })
                .is_some()
        };
        let mut response = PubResponse::success(rec.packet_id);
        let mut ops = Vec::new();
        if known {
            ops.push(StoreOp::Released {
                client_id: self.client_id.clone(),
                packet_id: rec.packet_id,
            });
        } else if self.version == ProtocolVersion::V5 {
            response.reason = ReasonCode::PacketIdentifierNotFound;
        }
        // Once PUBREL is out the PUBLISH must never be sent again [MQTT-4.3.3-6], not even
        // after a crash: PUBREL waits, like an ack, until the store knows, and without waiting
        // for the commit window (this is the broker's own flow, not a client's ack).
        let commit = self.broker.commit(self.own_ops(ops), Pace::Now);
        self.acks.push(commit, Packet::PubRel(response), Vec::new());
    }

    /// SUBSCRIBE: validate each filter, add the subscriptions, SUBACK after the commit, then
    /// the retained messages per Retain Handling [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11].
    fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), Exit> {
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let limits = self.topic_limits();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut ops = Vec::new();
        let mut retained = Vec::new();
        let now = Instant::now();
        let broker = self.broker.clone();
        let mut state = broker.state();
        for (filter, options) in subscribe.filters {
            if let Err(error) = validate_topic_filter(&filter, limits) {
                tracing::debug!(client_id = %self.client_id, %filter, "subscription refused: {error}");
                reasons.push(self.filter_refusal());
                continue;
            }
            let shared = parse_shared(&filter).is_some();
            if shared && options.no_local {
                drop(state);
                return Err(violation(
                    ReasonCode::ProtocolError,
                    "No Local on a shared subscription [MQTT-3.8.3-4]",
                ));
            }
            let filter: Arc<str> = Arc::from(filter);
            let is_new = state.subscribe(&self.client_id, &filter, options, identifier);
            ops.push(StoreOp::Subscribe {
                client_id: self.client_id.clone(),
                filter: filter.clone(),
                options,
                identifier,
            });
            let wants_retained = match options.retain_handling {
                0 => true,
                1 => is_new,
                _ => false,
            };
            if wants_retained && !shared {
                retained.extend(state.retained_for(&filter, options, identifier, now));
            }
            reasons.push(granted(options.qos));
        }
        drop(state);
        let ack = Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            properties: Default::default(),
            reasons,
        });
        let commit = self.commit_own(ops);
        self.acks.push(commit, ack, retained);
        Ok(())
    }

    /// The SUBACK code for a filter we refuse: 0x8F in v5, 0x80 in 3.1.1.
    fn filter_refusal(&self) -> ReasonCode {
        match self.version {
            ProtocolVersion::V5 => ReasonCode::TopicFilterInvalid,
            ProtocolVersion::V311 => ReasonCode::UnspecifiedError,
        }
    }

    /// UNSUBSCRIBE: remove each subscription, UNSUBACK after the commit [MQTT-3.10.4-4].
    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), Exit> {
        let limits = self.topic_limits();
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        let mut ops = Vec::new();
        let broker = self.broker.clone();
        let mut state = broker.state();
        for filter in unsubscribe.filters {
            if validate_topic_filter(&filter, limits).is_err() {
                reasons.push(ReasonCode::TopicFilterInvalid);
                continue;
            }
            if state.unsubscribe(&self.client_id, &filter) {
                ops.push(StoreOp::Unsubscribe {
                    client_id: self.client_id.clone(),
                    filter: Arc::from(filter),
                });
                reasons.push(ReasonCode::Success);
            } else {
                reasons.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        drop(state);
        if self.version == ProtocolVersion::V311 {
            reasons.clear();
        }
        let ack = Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: Default::default(),
            reasons,
        });
        let commit = self.commit_own(ops);
        self.acks.push(commit, ack, Vec::new());
        Ok(())
    }

    /// DISCONNECT from the client: applies a new Session Expiry Interval (v5), and keeps the
    /// Will only for reason 0x04.
    fn on_disconnect(&mut self, disconnect: Disconnect) -> Exit {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            if !self.persistent && expiry != 0 {
                // [MQTT-3.14.2-2]
                return violation(
                    ReasonCode::ProtocolError,
                    "DISCONNECT raised a Session Expiry Interval of 0",
                );
            }
            let expiry = expiry.min(self.broker.config().limits.max_session_expiry);
            let mut state = self.broker.state();
            if let Some(slot) = state.sessions.get_mut(&self.client_id) {
                slot.session.expiry_interval = expiry;
            }
            drop(state);
            let _ = self.broker.commit(
                vec![StoreOp::PutSession {
                    client_id: self.client_id.clone(),
                    expiry_interval: expiry,
                }],
                Pace::Window,
            );
        }
        Exit::Disconnected {
            keep_will: disconnect.reason == ReasonCode::DisconnectWithWillMessage,
        }
    }
}

/// The SUBACK code granting `qos` [MQTT-3.9.3-1].
fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}
