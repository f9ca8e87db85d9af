//! What comes down from upstream: the `in` rules subscribed with No Local and Retain As
//! Published, messages published locally under the bridge's session and acknowledged upstream
//! only once committed, and the server's SUBACKs.

use std::sync::Arc;

use crate::broker::state::{Gone, InboundPublish};
use crate::codec::{
    decode_publish_head, Head, Packet, ProtocolVersion, PubResponse, Publish, QoS, SubAck,
    Subscribe, SubscriptionOptions,
};
use crate::store::Commit;

use super::super::status::BridgeStatus;
use super::super::topics::map_in;
use super::{in_flight, Ended, Uplink};

/// Most filters per SUBSCRIBE (AWS IoT Core accepts 8).
const FILTERS_PER_SUBSCRIBE: usize = 8;

impl Uplink {
    /// SUBSCRIBE to the remote filters of the `in` rules, with No Local and Retain As
    /// Published (v5) so the bridge's own messages do not come back and RETAIN keeps its
    /// meaning; retained messages only for a subscription the session did not have.
    pub(super) fn subscribe_in(&mut self) -> Result<(), Ended> {
        let filters: Vec<(String, SubscriptionOptions)> = self
            .bridge
            .config
            .topics
            .iter()
            .filter(|rule| rule.direction.carries_in())
            .map(|rule| {
                let qos = QoS::from_u8(rule.qos).unwrap_or(QoS::AtLeastOnce);
                let options = SubscriptionOptions {
                    qos: qos.min(self.granted.max_qos),
                    no_local: self.version == ProtocolVersion::V5,
                    retain_as_published: self.version == ProtocolVersion::V5,
                    retain_handling: if self.version == ProtocolVersion::V5 {
                        1
                    } else {
                        0
                    },
                };
                (rule.remote_filter(), options)
            })
            .collect();
        for chunk in filters.chunks(FILTERS_PER_SUBSCRIBE) {
            let session_id = self.bridge.session_id.clone();
            let (packet_id, _) = self
                .broker
                .change(|state, _| state.fresh_packet_id(&session_id));
            let packet_id =
                packet_id.ok_or_else(|| Ended::Lost("the bridge's session is gone".into()))?;
            self.subscribing.push(packet_id);
            self.queue(&Packet::Subscribe(Subscribe {
                packet_id,
                properties: Default::default(),
                filters: chunk.to_vec(),
            }))?;
        }
        Ok(())
    }

    /// A message from upstream: published locally under the bridge's session (so its No
    /// Local subscriptions never send it back out), acknowledged upstream once committed.
    pub(super) fn on_publish(&mut self, publish: Publish) -> Result<(), Ended> {
        if publish.topic.is_empty() {
            return Err(Ended::Lost(
                "the server used a topic alias though we allow none".into(),
            ));
        }
        let qos = publish.qos;
        let packet_id = publish.packet_id.unwrap_or(0);
        let local = map_in(&self.bridge.config.topics, &publish.topic).map(|(_, local)| local);
        let session_id = self.bridge.session_id.clone();
        let local = local.filter(|local| !local.starts_with("$SYS"));
        let Some(local) = local else {
            tracing::debug!(bridge = %self.bridge.config.name, topic = %publish.topic,
                "message from upstream matches no in rule (or would land in $SYS); acknowledged and dropped");
            self.push_publish_ack(qos, packet_id, Commit::nothing());
            return Ok(());
        };
        BridgeStatus::count(&self.bridge.status.received, 1);
        let topic: Arc<str> = Arc::from(local.as_str());
        let mut publish = publish;
        publish.topic = local;
        let inbound = InboundPublish {
            publish,
            topic,
            refusal_ends_flow: false,
            received: std::time::Instant::now(),
        };
        let (routed, commit) = self.broker.change(|state, changes| {
            if qos == QoS::ExactlyOnce && state.inbound_flows(&session_id, packet_id)?.repeat {
                return Ok(()); // [MQTT-4.3.3-10] not routed again
            }
            state.publish(&session_id, inbound, changes).map(|_| ())
        });
        routed.map_err(|Gone| Ended::Lost("the bridge's session is gone".into()))?;
        self.push_publish_ack(qos, packet_id, commit);
        Ok(())
    }

    /// The packet at the front of the read buffer is larger than `max`, the most we take. A
    /// 3.1.1 server could not be told so: a PUBLISH is skipped as it streams in (never held
    /// whole), counted as dropped, logged, and acknowledged like any other so the server moves
    /// on instead of sending it again on every connection. `Ok(false)` while its head (topic,
    /// packet identifier) has not all arrived; any other packet that large ends the connection.
    pub(super) fn skip_oversized(&mut self, max: u32) -> Result<bool, Ended> {
        let head = match decode_publish_head(self.framed.buffered(), self.version) {
            Ok(Head::Incomplete) => return Ok(false),
            Ok(Head::Publish(head)) => head,
            Ok(Head::Other(name)) => {
                return Err(Ended::Lost(format!(
                    "the server sent a {name} larger than the maximum packet size of {max} bytes"
                )))
            }
            Err(error) => {
                return Err(Ended::Lost(format!(
                    "malformed packet from the server: {error}"
                )))
            }
        };
        self.framed.discard(head.size);
        tracing::warn!(bridge = %self.bridge.config.name, topic = %head.topic, size = head.size, max,
            "message from upstream larger than limits.max_packet_size: acknowledged and dropped");
        BridgeStatus::count(&self.bridge.status.dropped, 1);
        let packet_id = head.packet_id.unwrap_or(0);
        self.push_publish_ack(head.qos, packet_id, Commit::nothing());
        Ok(true)
    }

    fn push_publish_ack(&mut self, qos: QoS, packet_id: u16, commit: Commit) {
        let response = PubResponse::success(packet_id);
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.acks.push(commit, Packet::PubAck(response), Vec::new()),
            QoS::ExactlyOnce => self.acks.push(commit, Packet::PubRec(response), Vec::new()),
        }
    }

    /// PUBREL from upstream: PUBCOMP once the end of the flow is committed.
    pub(super) fn on_pubrel(&mut self, packet_id: u16) {
        let session_id = self.bridge.session_id.clone();
        let (_, commit) = self
            .broker
            .change(|state, changes| state.release_inbound(&session_id, packet_id, changes));
        self.acks.push(
            commit,
            Packet::PubComp(PubResponse::success(packet_id)),
            Vec::new(),
        );
    }

    pub(super) fn on_suback(&mut self, suback: SubAck) {
        self.subscribing.retain(|id| *id != suback.packet_id);
        for reason in suback.reasons.iter().filter(|reason| reason.is_error()) {
            tracing::error!(bridge = %self.bridge.config.name, ?reason,
                "the server refused an in subscription");
            self.bridge.status.error(&format!(
                "the server refused an in subscription: {reason:?}"
            ));
        }
        let session_id = &self.bridge.session_id;
        let window = self.broker.read(|state| in_flight(state, session_id));
        self.answered(window);
    }
}
