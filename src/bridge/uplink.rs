//! One connected uplink, until it ends: the bridge's session is attached to it like a client
//! connection, so its queue drains upstream as PUBLISH within the server's Receive Maximum
//! (and `rate_limit`), and the server's acks move entries through the session's inflight
//! window, each removal committed. Messages from upstream are published locally under the
//! bridge's session and acknowledged upstream only once committed. Keep-alive pings, a
//! 1.5 × Keep Alive silence (a black-holed link), an ack or SUBACK that never comes, a
//! server DISCONNECT or a socket error end it; the caller reconnects.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::broker::acks::AckQueue;
use crate::broker::aliases::OutboundAliases;
use crate::broker::queue::LoadRequest;
use crate::broker::state::{
    AttachRequest, ConnectionSignal, Gone, InboundPublish, Link, TakeLimits,
};
use crate::broker::{settle, Broker};
use crate::codec::{
    encoded_len, Disconnect, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
    SubAck, Subscribe, SubscriptionOptions,
};
use crate::model::{Delivery, OutboundState};
use crate::store::{Loaded, StoreError};
use crate::transport::client::ByteStream;
use crate::transport::{Framed, ReadError};

use super::handshake::{state_publish, Granted, Handshaken, STATE_CONNECTED, STATE_DISCONNECTED};
use super::status::BridgeStatus;
use super::topics::{map_in, map_out};
use super::Bridge;

/// Most PUBLISH packets prepared per pass.
const BATCH: usize = 256;
/// Most filters per SUBSCRIBE (AWS IoT Core accepts 8).
const FILTERS_PER_SUBSCRIBE: usize = 8;

/// How an uplink connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The broker is shutting down; DISCONNECT was sent.
    Shutdown,
    /// The link failed or went silent.
    Lost(String),
    /// The server sent DISCONNECT with this reason.
    Disconnected(ReasonCode, Option<String>),
}

/// Reads the bridge's spilled queue entries back.
struct PendingLoad {
    request: LoadRequest,
    loaded: Loaded,
}

/// A token bucket for `rate_limit`: up to one second's worth of messages at once.
#[derive(Debug)]
struct Pacer {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl Pacer {
    fn new(per_second: u32) -> Option<Pacer> {
        (per_second > 0).then(|| Pacer {
            per_second: f64::from(per_second),
            tokens: 1.0,
            at: Instant::now(),
        })
    }

    /// How many messages may go now.
    fn allowance(&mut self, now: Instant) -> usize {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second.max(1.0));
        self.at = now;
        self.tokens as usize
    }

    fn spend(&mut self, messages: usize) {
        self.tokens -= messages as f64;
    }

    /// When the next message may go.
    fn next_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.at + Duration::from_secs_f64(missing / self.per_second)
    }
}

/// A connected uplink.
pub struct Uplink {
    bridge: Arc<Bridge>,
    broker: Arc<Broker>,
    framed: Framed<Box<dyn ByteStream>>,
    version: ProtocolVersion,
    granted: Granted,
    connection_id: u64,
    signal: Arc<ConnectionSignal>,
    /// Our PUBACK, PUBREC, PUBCOMP and PUBREL, each held until its commit.
    acks: AckQueue,
    aliases: OutboundAliases,
    load: Option<PendingLoad>,
    /// Inflight messages still to resend after a reconnect, beyond the window.
    resend: VecDeque<Packet>,
    /// SUBSCRIBE packet identifiers waiting for their SUBACK.
    subscribing: Vec<u16>,
    pacer: Option<Pacer>,
    last_received: Instant,
    last_sent: Instant,
    /// When the oldest unanswered packet of ours (PUBLISH, PUBREL, SUBSCRIBE) was sent, or
    /// an answer last came while others were still open.
    waiting_since: Option<Instant>,
}

impl Uplink {
    /// Attaches the bridge's session to a new connection and sends what must go first: the
    /// inflight window again (DUP, PUBREL) if the server kept the session, or as new
    /// PUBLISHes if it lost it; the `in` subscriptions; the state message.
    pub fn attach(bridge: Arc<Bridge>, broker: Arc<Broker>, handshaken: Handshaken) -> Uplink {
        let Handshaken { framed, granted } = handshaken;
        let signal = Arc::new(ConnectionSignal::default());
        let connection_id = broker.next_connection_id();
        let session_id = bridge.session_id.clone();
        let link = Link {
            connection_id,
            signal: signal.clone(),
        };
        let (inflight, commit) = broker.change(|state, changes| {
            let request = AttachRequest {
                client_id: session_id.clone(),
                clean_start: false,
                expiry_interval: u32::MAX,
                will: None,
                link,
            };
            state.attach(request, changes);
            if !granted.session_present {
                state.upstream_session_lost(&session_id, changes);
            }
            state.inflight_of(&session_id)
        });
        let now = Instant::now();
        let mut uplink = Uplink {
            version: framed.version,
            bridge,
            broker,
            framed,
            granted,
            connection_id,
            signal,
            acks: AckQueue::default(),
            aliases: OutboundAliases::new(granted.topic_alias_maximum),
            load: None,
            resend: VecDeque::new(),
            subscribing: Vec::new(),
            pacer: None,
            last_received: now,
            last_sent: now,
            waiting_since: None,
        };
        uplink.pacer = Pacer::new(uplink.bridge.config.rate_limit);
        uplink.acks.push_unacknowledged(commit);
        let std_now = std::time::Instant::now();
        for entry in inflight {
            let packet = match entry.state {
                OutboundState::AwaitingPubComp => {
                    Packet::PubRel(PubResponse::success(entry.packet_id))
                }
                _ => {
                    // Resent with DUP to a server that kept the session [MQTT-4.4.0-1]; to one
                    // that lost it, the message is new. One that expired since it was first
                    // sent still completes its flow.
                    let dup = granted.session_present;
                    match uplink.publish_of(&entry.delivery, Some(entry.packet_id), dup, std_now) {
                        Some(mut publish) => {
                            publish.properties.message_expiry_interval = publish
                                .properties
                                .message_expiry_interval
                                .map(|left| left.max(1));
                            Packet::Publish(publish)
                        }
                        None => continue,
                    }
                }
            };
            uplink.resend.push_back(packet);
        }
        uplink
    }

    /// Runs the connection until it ends.
    pub async fn run(&mut self) -> Ended {
        // The server may have sent more right behind its CONNACK (queued messages, a
        // DISCONNECT): it is in the read buffer already.
        if let Err(ended) = self.start().and_then(|()| self.handle_buffered()) {
            return ended;
        }
        let mut shutdown = self.broker.shutdown_signal();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Err(ended) = self.release_acks() {
                return ended;
            }
            if let Err(ended) = self.send_queued().await {
                return ended;
            }
            if let Err(ended) = self.flush().await {
                return ended;
            }
            let reading = self.acks.len() < usize::from(self.bridge.config.max_inflight);
            let paced = self.pacer.as_ref().map(Pacer::next_at);
            tokio::select! {
                biased;
                _ = shutdown.changed() => return self.goodbye().await,
                _ = self.signal.notify.notified() => {
                    if self.signal.close_reason().is_some() {
                        return Ended::Lost("the bridge's session was taken over".into());
                    }
                }
                _ = self.acks.front_committed() => {}
                entries = load_done(&mut self.load) => {
                    if let Err(ended) = self.take_loaded(entries) {
                        return ended;
                    }
                }
                filled = self.framed.fill(), if reading => {
                    if let Err(ended) = self.read_packets(filled) {
                        return ended;
                    }
                }
                _ = tick.tick() => {
                    if let Err(ended) = self.check_timers() {
                        return ended;
                    }
                }
                _ = sleep_until(paced.unwrap_or_else(Instant::now)), if paced.is_some_and(|at| at > Instant::now()) => {}
            }
        }
    }

    /// Hands the session back (it stays, queue and window, for the next connection) and
    /// closes the socket.
    pub async fn finish(&mut self) {
        let session_id = self.bridge.session_id.clone();
        let connection_id = self.connection_id;
        let (_, commit) = self
            .broker
            .change(|state, changes| state.detach(&session_id, connection_id, false, changes));
        settle(commit).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.framed.close()).await;
    }

    /// What goes out first: the resends the window allows, SUBSCRIBE for the `in` rules, the
    /// state message.
    fn start(&mut self) -> Result<(), Ended> {
        let room = usize::from(self.granted.window);
        let resend_now: Vec<Packet> = {
            let take = self.resend.len().min(room);
            self.resend.drain(..take).collect()
        };
        for packet in &resend_now {
            self.queue(packet)?;
        }
        self.subscribe_in()?;
        if let Some(packet) = state_publish(&self.bridge, &self.granted, STATE_CONNECTED) {
            self.queue(&packet)?;
        }
        Ok(())
    }

    /// SUBSCRIBE to the remote filters of the `in` rules, with No Local and Retain As
    /// Published (v5) so the bridge's own messages do not come back and RETAIN keeps its
    /// meaning; retained messages only for a subscription the session did not have.
    fn subscribe_in(&mut self) -> Result<(), Ended> {
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

    fn queue(&mut self, packet: &Packet) -> Result<(), Ended> {
        self.framed
            .queue(packet)
            .map_err(|error| Ended::Lost(format!("cannot encode {}: {error}", packet.name())))?;
        let now = Instant::now();
        self.last_sent = now;
        if expects_answer(packet) && self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
        Ok(())
    }

    /// Writes what is queued; a link that takes nothing for 1.5 × Keep Alive is dead.
    async fn flush(&mut self) -> Result<(), Ended> {
        let limit = self.silence_limit();
        match tokio::time::timeout(limit, self.framed.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Ended::Lost(format!("write failed: {error}"))),
            Err(_) => Err(Ended::Lost(format!("the link took nothing for {limit:?}"))),
        }
    }

    /// 1.5 × Keep Alive, or the connect timeout when there is no keep-alive.
    fn silence_limit(&self) -> Duration {
        if self.granted.keep_alive.is_zero() {
            Duration::from_secs(u64::from(self.bridge.config.connect_timeout))
        } else {
            self.granted.keep_alive * 3 / 2
        }
    }

    /// Pings when nothing was sent for half the Keep Alive; gives up on a server silent for
    /// 1.5 × Keep Alive, or one that leaves a packet of ours unanswered for the connect
    /// timeout (MQTT 5 allows a resend only on a new connection [MQTT-4.4.0-1]).
    fn check_timers(&mut self) -> Result<(), Ended> {
        let now = Instant::now();
        let keep_alive = self.granted.keep_alive;
        if !keep_alive.is_zero() {
            if now.duration_since(self.last_received) >= keep_alive * 3 / 2 {
                return Err(Ended::Lost(format!(
                    "nothing from the server for {:?} (keep alive {keep_alive:?})",
                    keep_alive * 3 / 2
                )));
            }
            if now.duration_since(self.last_sent) >= keep_alive / 2 {
                self.queue(&Packet::PingReq)?;
            }
        }
        let timeout = Duration::from_secs(u64::from(self.bridge.config.connect_timeout));
        if let Some(since) = self.waiting_since {
            if now.duration_since(since) >= timeout {
                return Err(Ended::Lost(format!(
                    "no acknowledgement from the server for {timeout:?}"
                )));
            }
        }
        Ok(())
    }

    /// Something of ours was answered: the wait starts again if more is open.
    fn answered(&mut self) {
        let open = !self.subscribing.is_empty() || {
            let session_id = &self.bridge.session_id;
            self.broker.read(|state| {
                state
                    .session(session_id)
                    .is_some_and(|session| !session.inflight.is_empty())
            })
        };
        self.waiting_since = open.then(Instant::now);
    }

    fn read_packets(&mut self, filled: Result<bool, ReadError>) -> Result<(), Ended> {
        match filled {
            Ok(true) => {}
            Ok(false) => return Err(Ended::Lost("the server closed the connection".into())),
            Err(error) => return Err(Ended::Lost(format!("read failed: {error}"))),
        }
        self.last_received = Instant::now();
        self.handle_buffered()
    }

    /// Handles every whole packet already read.
    fn handle_buffered(&mut self) -> Result<(), Ended> {
        loop {
            match self.framed.next_buffered() {
                Ok(Some(packet)) => self.handle(packet)?,
                Ok(None) => break,
                Err(error) => {
                    return Err(Ended::Lost(format!(
                        "malformed packet from the server: {error}"
                    )))
                }
            }
        }
        self.framed.release_read_buffer();
        Ok(())
    }

    fn handle(&mut self, packet: Packet) -> Result<(), Ended> {
        match packet {
            Packet::PubAck(ack) => self.completed(ack, OutboundState::AwaitingPubAck),
            Packet::PubRec(rec) if rec.reason.is_error() => {
                self.completed(rec, OutboundState::AwaitingPubRec)
            }
            Packet::PubRec(rec) => self.received(rec.packet_id),
            Packet::PubComp(comp) => self.completed(comp, OutboundState::AwaitingPubComp),
            Packet::Publish(publish) => self.on_publish(publish),
            Packet::PubRel(rel) => {
                self.on_pubrel(rel.packet_id);
                Ok(())
            }
            Packet::SubAck(suback) => {
                self.on_suback(suback);
                Ok(())
            }
            Packet::PingResp | Packet::UnsubAck(_) => Ok(()),
            Packet::Disconnect(disconnect) => Err(Ended::Disconnected(
                disconnect.reason,
                disconnect.properties.reason_string,
            )),
            other => Err(Ended::Lost(format!(
                "the server sent {}, which a server may not send here",
                other.name()
            ))),
        }
    }

    /// PUBACK, PUBCOMP, or a PUBREC refusing the message: it leaves the window (and the queue,
    /// once committed). A refusal counts as dropped: the server will never take it.
    fn completed(&mut self, response: PubResponse, expected: OutboundState) -> Result<(), Ended> {
        let session_id = self.bridge.session_id.clone();
        let packet_id = response.packet_id;
        let (done, _) = self.broker.change(|state, changes| {
            state.complete_outbound(&session_id, packet_id, expected, changes)
                // A QoS 2 message resent as QoS 1 to a server whose Maximum QoS fell since.
                || (expected == OutboundState::AwaitingPubAck
                    && state.complete_outbound(
                        &session_id,
                        packet_id,
                        OutboundState::AwaitingPubRec,
                        changes,
                    ))
        });
        if done {
            if response.reason.is_error() {
                BridgeStatus::count(&self.bridge.status.dropped, 1);
                tracing::warn!(bridge = %self.bridge.config.name, reason = ?response.reason,
                    "the server refused a message; it is dropped");
            } else {
                BridgeStatus::count(&self.bridge.status.sent, 1);
            }
            if let Some(next) = self.resend.pop_front() {
                self.queue(&next)?;
            }
        } else {
            tracing::debug!(bridge = %self.bridge.config.name, packet_id = response.packet_id,
                "acknowledgement for no message in flight");
        }
        self.answered();
        Ok(())
    }

    /// PUBREC: the server has the QoS 2 message; PUBREL goes once that is durable, so a crash
    /// never sends the PUBLISH again [MQTT-4.3.3-6].
    fn received(&mut self, packet_id: u16) -> Result<(), Ended> {
        let session_id = self.bridge.session_id.clone();
        let (known, commit) = self
            .broker
            .change(|state, changes| state.outbound_received(&session_id, packet_id, changes));
        if known {
            self.acks.push(
                commit,
                Packet::PubRel(PubResponse::success(packet_id)),
                Vec::new(),
            );
        } else {
            // Already past PUBREC (a repeat): PUBREL again, as the server asks.
            self.queue(&Packet::PubRel(PubResponse::success(packet_id)))?;
        }
        self.answered();
        Ok(())
    }

    /// A message from upstream: published locally under the bridge's session (so its No
    /// Local subscriptions never send it back out), acknowledged upstream once committed.
    fn on_publish(&mut self, publish: Publish) -> Result<(), Ended> {
        if publish.topic.is_empty() {
            return Err(Ended::Lost(
                "the server used a topic alias though we allow none".into(),
            ));
        }
        let qos = publish.qos;
        let packet_id = publish.packet_id.unwrap_or(0);
        let local = map_in(&self.bridge.config.topics, &publish.topic).map(|(_, local)| local);
        let session_id = self.bridge.session_id.clone();
        let Some(local) = local else {
            tracing::debug!(bridge = %self.bridge.config.name, topic = %publish.topic,
                "message from upstream matches no in rule; acknowledged and dropped");
            let (_, commit) = self.broker.change(|_, _| ());
            self.push_publish_ack(qos, packet_id, commit);
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

    fn push_publish_ack(&mut self, qos: QoS, packet_id: u16, commit: crate::store::Commit) {
        let response = PubResponse::success(packet_id);
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.acks.push(commit, Packet::PubAck(response), Vec::new()),
            QoS::ExactlyOnce => self.acks.push(commit, Packet::PubRec(response), Vec::new()),
        }
    }

    /// PUBREL from upstream: PUBCOMP once the end of the flow is committed.
    fn on_pubrel(&mut self, packet_id: u16) {
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

    fn on_suback(&mut self, suback: SubAck) {
        self.subscribing.retain(|id| *id != suback.packet_id);
        for reason in suback.reasons.iter().filter(|reason| reason.is_error()) {
            tracing::error!(bridge = %self.bridge.config.name, ?reason,
                "the server refused an in subscription");
            self.bridge.status.error(&format!(
                "the server refused an in subscription: {reason:?}"
            ));
        }
        self.answered();
    }

    /// Sends every ack whose commit completed, in order. A failed commit ends the connection
    /// unacknowledged: the server sends the message again on the next one.
    fn release_acks(&mut self) -> Result<(), Ended> {
        while let Some((result, pending)) = self.acks.pop_ready() {
            if let Err(error) = result {
                return Err(Ended::Lost(format!("store failure: {error}")));
            }
            if let Some(ack) = pending.ack {
                self.queue(&ack)?;
            }
        }
        Ok(())
    }

    /// Moves queued messages into the window (within the pacer's allowance) and writes them.
    async fn send_queued(&mut self) -> Result<(), Ended> {
        loop {
            let allowance = match &mut self.pacer {
                Some(pacer) => pacer.allowance(Instant::now()).min(BATCH),
                None => BATCH,
            };
            if allowance == 0 || !self.resend.is_empty() {
                return Ok(());
            }
            let session_id = self.bridge.session_id.clone();
            let connection_id = self.connection_id;
            let window = usize::from(self.granted.window);
            let max_qos = self.granted.max_qos;
            let now = std::time::Instant::now();
            let broker = self.broker.clone();
            let (taken, commit) = broker.change(|state, changes| {
                let prepare =
                    |delivery: &Delivery, packet_id| self.prepare(delivery, packet_id, now);
                state.take_deliverable(
                    &session_id,
                    connection_id,
                    TakeLimits {
                        window,
                        batch: allowance,
                        max_qos,
                    },
                    prepare,
                    changes,
                )
            });
            let taken =
                taken.map_err(|Gone| Ended::Lost("the bridge's session was taken over".into()))?;
            if taken.await_commit {
                commit
                    .wait()
                    .await
                    .map_err(|error| Ended::Lost(format!("store failure: {error}")))?;
            }
            let count = taken.packets.len();
            for packet in &taken.packets {
                self.queue(packet)?;
                if let Packet::Publish(publish) = packet {
                    if publish.qos == QoS::AtMostOnce {
                        BridgeStatus::count(&self.bridge.status.sent, 1);
                    }
                }
            }
            if let Some(pacer) = &mut self.pacer {
                pacer.spend(count);
            }
            if let Some(request) = taken.load {
                let loaded = self
                    .broker
                    .store()
                    .load(&session_id, request.from, request.to);
                self.load = Some(PendingLoad { request, loaded });
                if taken.head_drained {
                    self.flush().await?;
                    let entries = load_done(&mut self.load).await;
                    self.take_loaded(entries)?;
                    continue;
                }
            }
            if count < allowance {
                return Ok(());
            }
            self.flush().await?;
        }
    }

    /// The PUBLISH upstream for `delivery`, or why it is not sent (it then leaves the queue):
    /// expired [MQTT-3.3.2-5], no `out` rule carries it any more, or larger than the server's
    /// Maximum Packet Size.
    fn prepare(
        &mut self,
        delivery: &Delivery,
        packet_id: Option<u16>,
        now: std::time::Instant,
    ) -> Result<Packet, &'static str> {
        if delivery.message.remaining_expiry(now) == Some(0) {
            BridgeStatus::count(&self.bridge.status.dropped, 1);
            return Err("expired while queued");
        }
        let Some(mut publish) = self.publish_of(delivery, packet_id, false, now) else {
            BridgeStatus::count(&self.bridge.status.dropped, 1);
            return Err("no out rule carries it any more");
        };
        let size = encoded_len(&Packet::Publish(publish.clone()), self.version);
        if size > self.granted.max_packet_size as usize {
            BridgeStatus::count(&self.bridge.status.dropped, 1);
            tracing::warn!(bridge = %self.bridge.config.name, topic = %delivery.message.topic, size,
                limit = self.granted.max_packet_size, "message larger than the server accepts; dropped");
            return Err("larger than the server's Maximum Packet Size");
        }
        self.aliases.apply(&mut publish);
        Ok(Packet::Publish(publish))
    }

    /// The upstream PUBLISH of a delivery: the topic renamed by the first `out` rule that
    /// carries it, RETAIN only where the server has it, the message's properties with the
    /// expiry that remains [MQTT-3.3.2-6] (v5). `None` when no rule carries the topic.
    fn publish_of(
        &self,
        delivery: &Delivery,
        packet_id: Option<u16>,
        dup: bool,
        now: std::time::Instant,
    ) -> Option<Publish> {
        let message = &delivery.message;
        let (_, topic) = map_out(&self.bridge.config.topics, &message.topic)?;
        let mut publish = Publish {
            dup,
            qos: delivery.qos.min(self.granted.max_qos),
            retain: delivery.retain && self.granted.retain,
            topic,
            packet_id,
            properties: Default::default(),
            payload: message.payload.clone(),
        };
        if self.version == ProtocolVersion::V5 {
            publish.properties = message.properties.clone();
            publish.properties.message_expiry_interval = message.remaining_expiry(now);
        }
        Some(publish)
    }

    fn take_loaded(
        &mut self,
        entries: Result<Vec<(u64, Delivery)>, StoreError>,
    ) -> Result<(), Ended> {
        let Some(pending) = self.load.take() else {
            return Ok(());
        };
        let entries = entries.map_err(|error| Ended::Lost(format!("store failure: {error}")))?;
        let session_id = self.bridge.session_id.clone();
        let connection_id = self.connection_id;
        let (lost, _) = self.broker.change(|state, _| {
            state.apply_load(&session_id, connection_id, pending.request, entries)
        });
        let lost =
            lost.map_err(|Gone| Ended::Lost("the bridge's session was taken over".into()))?;
        if lost > 0 {
            tracing::error!(bridge = %self.bridge.config.name, lost, "queued messages missing from the store");
            BridgeStatus::count(&self.bridge.status.dropped, lost);
        }
        Ok(())
    }

    /// DISCONNECT at shutdown (the session stays upstream for the next start).
    /// The state topic says "disconnected" first: a normal DISCONNECT discards the Will
    /// that would have said it.
    async fn goodbye(&mut self) -> Ended {
        if let Some(state) = state_publish(&self.bridge, &self.granted, STATE_DISCONNECTED) {
            let _ = self.framed.queue(&state);
        }
        let _ = self
            .framed
            .queue(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)));
        let _ = tokio::time::timeout(Duration::from_secs(1), self.framed.flush()).await;
        Ended::Shutdown
    }
}

/// Waits for the pending load's entries (forever if there is none). Cancel-safe.
async fn load_done(load: &mut Option<PendingLoad>) -> Result<Vec<(u64, Delivery)>, StoreError> {
    match load {
        Some(pending) => pending.loaded.entries().await,
        None => std::future::pending().await,
    }
}

/// Whether the server owes an answer to `packet`.
fn expects_answer(packet: &Packet) -> bool {
    match packet {
        Packet::Publish(publish) => publish.qos != QoS::AtMostOnce,
        Packet::PubRel(_) | Packet::Subscribe(_) => true,
        _ => false,
    }
}
