//! Packets from a connected client: PUBLISH and its QoS 1/2 flows, the client's acks of our
//! PUBLISHes, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT, and every packet a client must not
//! send. Acks of durable changes go to the [`crate::broker::acks::AckQueue`], never straight out.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::codec::{
    Disconnect, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, SubAck, Subscribe,
    UnsubAck, Unsubscribe,
};

use super::{Client, Exit};
use crate::auth::Access;
use crate::broker::state::{Changes, Gone, InboundPublish, Published, State};
use crate::broker::topic::{parse_shared, validate_topic_filter, validate_topic_name, TopicLimits};
use crate::model::OutboundState;
use crate::transport::Framed;

/// What became of a client's PUBLISH under the state lock.
enum Fate {
    /// It repeats an inbound QoS 2 message awaiting PUBREL: acknowledged, not routed.
    Repeat,
    /// It is for a `$SYS` topic, which clients may not publish to: refused, not routed.
    System,
    /// The ACL forbids its client to publish to its topic: refused (v5; a 3.1.1 client cannot
    /// be told and is acknowledged as usual), not routed, counted.
    Denied,
    /// Routed.
    Routed(Published),
}

/// A protocol violation ending the connection.
fn violation(reason: ReasonCode, why: impl Into<String>) -> Exit {
    Exit::Violation(reason, why.into().into())
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
        let limits = &self.config.limits;
        TopicLimits {
            max_length: limits.max_topic_length,
            max_levels: limits.max_topic_levels,
        }
    }

    /// The topic a PUBLISH is for, resolving and recording Topic Aliases (v5) [MQTT-3.3.2-12].
    fn resolve_topic(&mut self, publish: &Publish) -> Result<Arc<str>, Exit> {
        let alias = publish.properties.topic_alias;
        if let Some(alias) = alias {
            let maximum = self.config.limits.topic_alias_maximum;
            if alias == 0 || alias > maximum {
                // [MQTT-3.3.2-9] [MQTT-3.3.2-10]
                return Err(violation(
                    ReasonCode::TopicAliasInvalid,
                    format!("topic alias {alias} outside 1..={maximum}"),
                ));
            }
        }
        if publish.topic.is_empty() {
            let known = self.aliases.as_ref().map(|aliases| &aliases.inbound);
            return match alias.and_then(|alias| known?.get(&alias)) {
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
            self.aliases
                .get_or_insert_with(Box::default)
                .inbound
                .insert(alias, topic.clone());
        }
        Ok(topic)
    }

    /// PUBLISH from the client: route it, then ack after the commit (QoS 1: PUBACK, QoS 2:
    /// PUBREC). One change of the state checks the flows and routes.
    fn on_publish(&mut self, publish: Publish) -> Result<(), Exit> {
        let topic = self.resolve_topic(&publish)?;
        if let Some(response_topic) = &publish.properties.response_topic {
            // A Topic Name, so without wildcards [MQTT-3.3.2-14].
            validate_topic_name(response_topic, self.topic_limits()).map_err(|error| {
                violation(
                    ReasonCode::ProtocolError,
                    format!("response topic: {error}"),
                )
            })?;
        }
        let broker = self.broker.clone();
        let qos = publish.qos;
        broker.metrics().messages_received.add(qos, 1);
        let packet_id = publish.packet_id.unwrap_or(0);
        let allowed = self.may(&topic, Access::Write);
        let inbound = InboundPublish {
            publish,
            topic,
            refusal_ends_flow: self.version == ProtocolVersion::V5,
            received: Instant::now(),
        };
        let (fate, commit) =
            broker.change(|state, changes| self.take(state, inbound, allowed, changes));
        let reason = match fate? {
            // [MQTT-4.3.3-10] A resent QoS 2 PUBLISH is acknowledged, not routed again.
            Fate::Repeat => ReasonCode::Success,
            Fate::System | Fate::Denied => ReasonCode::NotAuthorized,
            // A v5 publisher hears when every queue refused its message (refuse_newest
            // policy); a 3.1.1 publisher cannot, and the loss is counted and logged only.
            Fate::Routed(published)
                if published.refused_everywhere && self.version == ProtocolVersion::V5 =>
            {
                ReasonCode::QuotaExceeded
            }
            Fate::Routed(published) if published.matched => ReasonCode::Success,
            Fate::Routed(_) => ReasonCode::NoMatchingSubscribers,
        };
        if qos != QoS::AtMostOnce {
            let ack = self.publish_ack(qos, packet_id, reason);
            self.acks.push(commit, ack, Vec::new());
        }
        Ok(())
    }

    /// Under the state lock: checks a PUBLISH against the session's flows and the Receive
    /// Maximum, and routes it unless it repeats a QoS 2 message, is for `$SYS`, or is not
    /// `allowed` by the ACL.
    fn take(
        &self,
        state: &mut State,
        inbound: InboundPublish,
        allowed: bool,
        changes: &mut Changes,
    ) -> Result<Fate, Exit> {
        let qos = inbound.publish.qos;
        if qos != QoS::AtMostOnce {
            let packet_id = inbound.publish.packet_id.unwrap_or(0);
            let flows = state
                .inbound_flows(&self.client_id, packet_id)
                .map_err(|Gone| Exit::TakenOver)?;
            if qos == QoS::ExactlyOnce && flows.repeat {
                return Ok(Fate::Repeat);
            }
            // QoS 2 messages count until PUBREL (their PUBREC, pending or sent, is in the
            // session's inbound flows), QoS 1 messages until their PUBACK leaves.
            let inflight = flows.awaiting_release + self.acks.pending_pubacks();
            self.check_receive_maximum(inflight, self.acks.publish_acks_awaiting_commit())?;
        }
        if inbound.topic.starts_with("$SYS") {
            tracing::debug!(client_id = %self.client_id, topic = %inbound.topic, "client PUBLISH to $SYS ignored");
            return Ok(Fate::System);
        }
        if !allowed {
            self.broker
                .metrics()
                .messages_denied
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client_id = %self.client_id, username = ?self.signal.username(), topic = %inbound.topic, "the ACL forbids this PUBLISH; dropped");
            return Ok(Fate::Denied);
        }
        let published = state
            .publish(&self.client_id, inbound, changes)
            .map_err(|Gone| Exit::TakenOver)?;
        Ok(Fate::Routed(published))
    }

    /// [MQTT-3.3.4-7] A v5 client may not have more unacknowledged QoS 1/2 PUBLISHes than our
    /// Receive Maximum; `inflight` counts them before this one. It is disconnected with 0x93
    /// only when the excess is its own doing: none of the PUBACKs and PUBRECs we owe it waits
    /// for the store (an answer already queued with nothing to commit, a clean session's, is
    /// as good as sent). While some of our answers still wait for their commit (`held_back`),
    /// a client that did not wait for them is not thrown out:
    /// its message is taken, and the connection stops reading until acks leave (see
    /// [`Client::reading`]), so nothing is resent, repeated or reordered. A 3.1.1 client is
    /// never told a Receive Maximum, so it is not held to one.
    fn check_receive_maximum(&self, inflight: usize, held_back: usize) -> Result<(), Exit> {
        if self.version == ProtocolVersion::V311 {
            return Ok(());
        }
        let maximum = self.config.limits.max_inflight;
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

    /// PUBREL: the inbound QoS 2 flow ends; PUBCOMP after the commit [MQTT-4.3.3-11].
    fn on_pubrel(&mut self, rel: PubResponse) {
        let (known, commit) = self.broker.change(|state, changes| {
            state.release_inbound(&self.client_id, rel.packet_id, changes)
        });
        let mut response = PubResponse::success(rel.packet_id);
        if !known && self.version == ProtocolVersion::V5 {
            response.reason = ReasonCode::PacketIdentifierNotFound;
        }
        self.acks
            .push(commit, Packet::PubComp(response), Vec::new());
    }

    /// PUBACK or PUBCOMP from the client (or a PUBREC refusing the message): the outbound
    /// message is done and leaves the window.
    pub(super) fn complete_outbound(&mut self, packet_id: u16, expected: OutboundState) {
        let (done, _) = self.broker.change(|state, changes| {
            state.complete_outbound(&self.client_id, packet_id, expected, changes)
        });
        if done {
            self.unacknowledged = self.unacknowledged.saturating_sub(1);
        } else {
            tracing::debug!(client_id = %self.client_id, packet_id, ?expected, "ack for an unknown packet identifier ignored");
        }
    }

    /// PUBREC from the client: answer PUBREL [MQTT-4.3.3-4] once the store knows, or drop the
    /// message if the client refused it with an error reason.
    fn on_pubrec(&mut self, rec: PubResponse) {
        if rec.reason.is_error() {
            self.complete_outbound(rec.packet_id, OutboundState::AwaitingPubRec);
            return;
        }
        let (known, commit) = self.broker.change(|state, changes| {
            state.outbound_received(&self.client_id, rec.packet_id, changes)
        });
        let mut response = PubResponse::success(rec.packet_id);
        if !known && self.version == ProtocolVersion::V5 {
            response.reason = ReasonCode::PacketIdentifierNotFound;
        }
        self.acks.push(commit, Packet::PubRel(response), Vec::new());
    }

    /// SUBSCRIBE: validate each filter, add the subscriptions, SUBACK after the commit, then
    /// the retained messages per Retain Handling.
    fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), Exit> {
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let limits = self.topic_limits();
        let mut valid = Vec::with_capacity(subscribe.filters.len());
        for (filter, mut options) in subscribe.filters {
            if self.bridge {
                // A Mosquitto bridge (the 3.1.1 bridge bit) wants its own messages kept from
                // it and RETAIN as published, as v5 bridges ask with these options.
                options.no_local = parse_shared(&filter).is_none();
                options.retain_as_published = true;
            }
            match validate_topic_filter(&filter, limits) {
                Err(error) => {
                    tracing::debug!(client_id = %self.client_id, %filter, "subscription refused: {error}");
                    valid.push(Err(self.filter_refusal()));
                }
                Ok(()) if !self.may_subscribe(&filter) => {
                    tracing::info!(client_id = %self.client_id, username = ?self.signal.username(), %filter, "the ACL forbids this subscription");
                    valid.push(Err(self.denied_filter()));
                }
                Ok(()) if parse_shared(&filter).is_some() && options.no_local => {
                    return Err(violation(
                        ReasonCode::ProtocolError,
                        "No Local on a shared subscription [MQTT-3.8.3-4]",
                    ));
                }
                Ok(()) => valid.push(Ok((Arc::<str>::from(filter), options))),
            }
        }
        let ((reasons, retained, before), commit) = self.broker.change(|state, changes| {
            let filters = valid.iter().flatten().map(|(filter, _)| filter.clone());
            let before = state.subscriptions_before(&self.client_id, filters);
            let mut reasons = Vec::with_capacity(valid.len());
            let mut retained = Vec::new();
            for filter in valid {
                let (filter, options) = match filter {
                    Ok(subscription) => subscription,
                    Err(refusal) => {
                        reasons.push(refusal);
                        continue;
                    }
                };
                retained.extend(state.subscribe_to(
                    &self.client_id,
                    &filter,
                    options,
                    identifier,
                    changes,
                ));
                reasons.push(ReasonCode::granted(options.qos));
            }
            (reasons, retained, before)
        });
        let ack = Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            properties: Default::default(),
            reasons,
        });
        self.acks
            .push_subscription_change(commit, ack, retained, before);
        Ok(())
    }

    /// The SUBACK code for a filter we refuse: 0x8F in v5, 0x80 in 3.1.1.
    fn filter_refusal(&self) -> ReasonCode {
        match self.version {
            ProtocolVersion::V5 => ReasonCode::TopicFilterInvalid,
            ProtocolVersion::V311 => ReasonCode::UnspecifiedError,
        }
    }

    /// The SUBACK code for a filter the ACL forbids: 0x87 in v5, 0x80 in 3.1.1.
    fn denied_filter(&self) -> ReasonCode {
        match self.version {
            ProtocolVersion::V5 => ReasonCode::NotAuthorized,
            ProtocolVersion::V311 => ReasonCode::UnspecifiedError,
        }
    }

    /// Whether the ACL lets this client subscribe to `filter` (`Acl::may_subscribe` judges a
    /// shared subscription by its topic filter). Each message is still checked when delivered.
    fn may_subscribe(&self, filter: &str) -> bool {
        self.broker
            .access()
            .rules()
            .may_subscribe(self.who(), filter)
    }

    /// UNSUBSCRIBE: remove each subscription, UNSUBACK after the commit [MQTT-3.10.4-4].
    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), Exit> {
        let limits = self.topic_limits();
        let ((mut reasons, before), commit) = self.broker.change(|state, changes| {
            let filters = unsubscribe
                .filters
                .iter()
                .map(|filter| Arc::from(filter.as_str()));
            let before = state.subscriptions_before(&self.client_id, filters);
            let reasons = unsubscribe
                .filters
                .iter()
                .map(|filter| {
                    if validate_topic_filter(filter, limits).is_err() {
                        ReasonCode::TopicFilterInvalid
                    } else if state.unsubscribe_from(&self.client_id, filter, changes) {
                        ReasonCode::Success
                    } else {
                        ReasonCode::NoSubscriptionExisted
                    }
                })
                .collect::<Vec<_>>();
            (reasons, before)
        });
        if self.version == ProtocolVersion::V311 {
            reasons.clear();
        }
        let ack = Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: Default::default(),
            reasons,
        });
        self.acks
            .push_subscription_change(commit, ack, Vec::new(), before);
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
            let expiry = expiry.min(self.config.limits.max_session_expiry);
            let ((), _) = self
                .broker
                .change(|state, changes| state.set_expiry(&self.client_id, expiry, changes));
        }
        // Only a normal disconnection (0x00) discards the Will [MQTT-3.14.4-3]; 0x04 asks
        // for it, and an error reason (0x80 and above) ends the connection abnormally
        // [MQTT-3.1.2-8] [MQTT-3.1.2-10].
        Exit::Disconnected {
            keep_will: disconnect.reason != ReasonCode::Success,
        }
    }
}
