//! One connected uplink, until it ends: the bridge's session is attached to it like a client
//! connection, so its queue drains upstream ([`outbound`]) and what comes from upstream is
//! published locally ([`inbound`]). Keep-alive pings, a 1.5 × Keep Alive silence (a
//! black-holed link), an ack or SUBACK that never comes, a server DISCONNECT or a socket error
//! end it; the caller reconnects.
//!
//! - [`outbound`]: the queue drained as PUBLISH within the server's Receive Maximum (and
//!   `rate_limit`), the server's acks moving entries through the session's inflight window;
//! - [`inbound`]: the `in` subscriptions, and messages from upstream acknowledged only once
//!   committed.

mod inbound;
mod outbound;
mod quota;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::broker::acks::AckQueue;
use crate::broker::aliases::OutboundAliases;
use crate::broker::state::{AttachRequest, ConnectionSignal, Link, State};
use crate::broker::{settle, Broker};
use crate::codec::{
    DecodeError, Disconnect, Packet, ProtocolVersion, PubResponse, QoS, ReasonCode,
};
use crate::model::OutboundState;
use crate::transport::client::ByteStream;
use crate::transport::{Framed, ReadError};

use self::outbound::{load_done, Pacer, PendingLoad};
use self::quota::QuotaHold;
use super::handshake::{state_publish, Granted, Handshaken, STATE_CONNECTED, STATE_DISCONNECTED};
use super::status::BridgeStatus;
use super::Bridge;

/// How an uplink connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The broker is shutting down, or a reload stopped the bridge; DISCONNECT was sent.
    Shutdown,
    /// The link failed or went silent.
    Lost(String),
    /// The server sent DISCONNECT with this reason.
    Disconnected(ReasonCode, Option<String>),
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
    /// Inflight messages still to resend after a reconnect: beyond the window, or waiting
    /// for the pacer (`rate_limit`).
    resend: VecDeque<Packet>,
    /// Resends the server's window has room for now: its Receive Maximum at first, one more
    /// per flow completed while resends are left.
    resend_room: usize,
    /// SUBSCRIBE packet identifiers waiting for their SUBACK.
    subscribing: Vec<u16>,
    pacer: Option<Pacer>,
    /// Messages the server refused for its quota, waiting to go again.
    quota: QuotaHold,
    /// Messages the server refused for good since it last took one: the first is logged, the
    /// rest counted and logged together when it takes one again.
    refused_in_a_row: u64,
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
        let ((inflight, taken_by_server), commit) = broker.change(|state, changes| {
            let request = AttachRequest {
                client_id: session_id.clone(),
                clean_start: false,
                expiry_interval: u32::MAX,
                will: None,
                username: None,
                link,
            };
            state.attach(request, changes);
            let taken_by_server = if granted.session_present {
                0
            } else {
                state.upstream_session_lost(&session_id, changes)
            };
            (state.inflight_of(&session_id), taken_by_server)
        });
        // Messages the server had taken (PUBREC) before it lost the session went up.
        BridgeStatus::count(&bridge.status.sent, taken_by_server as u64);
        let now = Instant::now();
        let pacer = Pacer::new(bridge.config.rate_limit);
        let quota = QuotaHold::new(
            Duration::from_secs(u64::from(bridge.config.reconnect_min)),
            Duration::from_secs(u64::from(bridge.config.reconnect_max)),
        );
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
            resend_room: usize::from(granted.window),
            subscribing: Vec::new(),
            pacer,
            quota,
            refused_in_a_row: 0,
            last_received: now,
            last_sent: now,
            waiting_since: None,
        };
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
                    // sent still completes its flow, with the interval that remains: none, 0
                    // [MQTT-3.3.2-6].
                    match uplink.publish_again(&entry, granted.session_present, std_now) {
                        Some(publish) => Packet::Publish(publish),
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
        let mut stop = self.bridge.stop_signal();
        // One timer for the whole connection: its deadlines only move later as packets come
        // and go, so it is moved earlier when one must be, and otherwise set again when it
        // fires (a timer made afresh on every turn of the loop cost the drain a timer-wheel
        // entry per PUBACK).
        let timers = sleep_until(self.next_timer());
        tokio::pin!(timers);
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
            let due = self.next_timer();
            if due < timers.deadline() {
                timers.as_mut().reset(due);
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => return self.goodbye().await,
                _ = stop.changed() => return self.goodbye().await,
                _ = self.signal.woken() => {
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
                () = &mut timers => {
                    if let Err(ended) = self.check_timers() {
                        return ended;
                    }
                    timers.as_mut().reset(self.next_timer());
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
        self.release_resends()?;
        self.subscribe_in()?;
        if let Some(packet) = state_publish(&self.bridge, &self.granted, STATE_CONNECTED) {
            self.queue(&packet)?;
        }
        Ok(())
    }

    fn queue(&mut self, packet: &Packet) -> Result<(), Ended> {
        self.encode(packet)?;
        self.sent(Instant::now(), expects_answer(packet));
        Ok(())
    }

    /// Queues `packet` for the next flush; the caller records it as [`Uplink::sent`].
    fn encode(&mut self, packet: &Packet) -> Result<(), Ended> {
        self.framed
            .queue(packet)
            .map_err(|error| Ended::Lost(format!("cannot encode {}: {error}", packet.name())))
    }

    /// Something was queued `now`; if `answer_expected`, an answer is owed from then on.
    fn sent(&mut self, now: Instant, answer_expected: bool) {
        self.last_sent = now;
        if answer_expected && self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
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

    /// When [`Uplink::check_timers`] has something to do next: a ping due, the server silent
    /// for too long, an acknowledgement overdue (an hour away when none is).
    fn next_timer(&self) -> Instant {
        let keep_alive = self.granted.keep_alive;
        let timeout = Duration::from_secs(u64::from(self.bridge.config.connect_timeout));
        let keep_alive_timers = (!keep_alive.is_zero()).then(|| {
            [
                self.last_received + keep_alive * 3 / 2,
                self.last_sent + keep_alive / 2,
            ]
        });
        keep_alive_timers
            .into_iter()
            .flatten()
            .chain(self.ack_wait_start().map(|since| since + timeout))
            .chain(self.quota.ends_at())
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    /// Since when an answer is owed: from when the oldest unanswered packet went (see
    /// [`Uplink::waiting_since`]), and no earlier than the end of the last wait for the
    /// server's quota, which sent nothing.
    fn ack_wait_start(&self) -> Option<Instant> {
        self.waiting_since.map(|since| self.quota.wait_start(since))
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
        if let Some(since) = self.ack_wait_start() {
            if now.saturating_duration_since(since) >= timeout {
                return Err(Ended::Lost(format!(
                    "no acknowledgement from the server for {timeout:?}"
                )));
            }
        }
        Ok(())
    }

    /// Something of ours was answered: the wait starts again if more is open (`in_flight`:
    /// the session's window still holds messages the server has not completed).
    fn answered(&mut self, in_flight: bool) {
        let open = in_flight || !self.subscribing.is_empty();
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

    /// Handles every whole packet already read. The acks that end flows (a run of them is
    /// what a draining window reads) are applied together, in order, in one change. A packet
    /// we cannot take ends the connection, with a DISCONNECT saying why to a v5 server (sent
    /// as the socket closes) — except a PUBLISH too large from a 3.1.1 server, which could not
    /// be told our maximum: skipped.
    fn handle_buffered(&mut self) -> Result<(), Ended> {
        let mut completions = Vec::new();
        loop {
            let packet = match self.framed.next_buffered() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(DecodeError::PacketTooLarge { max, .. })
                    if self.version == ProtocolVersion::V311 =>
                {
                    self.completed(&mut completions)?;
                    if !self.skip_oversized(max)? {
                        break; // its head is not all here yet
                    }
                    continue;
                }
                Err(error) => {
                    if self.version == ProtocolVersion::V5 {
                        let disconnect = Disconnect::new(error.reason_code());
                        let _ = self.framed.queue(&Packet::Disconnect(disconnect));
                    }
                    return Err(Ended::Lost(format!(
                        "malformed packet from the server: {error}"
                    )));
                }
            };
            match packet {
                Packet::PubAck(ack) => completions.push((ack, OutboundState::AwaitingPubAck)),
                Packet::PubRec(rec) if rec.reason.is_error() => {
                    completions.push((rec, OutboundState::AwaitingPubRec));
                }
                Packet::PubComp(comp) => {
                    completions.push((comp, OutboundState::AwaitingPubComp));
                }
                other => {
                    self.completed(&mut completions)?;
                    self.handle(other)?;
                }
            }
        }
        self.completed(&mut completions)?;
        self.framed.release_read_buffer();
        Ok(())
    }

    /// Handles a packet other than an ack that ends a flow.
    fn handle(&mut self, packet: Packet) -> Result<(), Ended> {
        match packet {
            Packet::PubRec(rec) => self.received(rec.packet_id),
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

    /// DISCONNECT at shutdown, or when a reload stops the bridge (the session stays upstream
    /// for the next start).
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

/// Whether the server owes an answer to `packet`.
fn expects_answer(packet: &Packet) -> bool {
    match packet {
        Packet::Publish(publish) => publish.qos != QoS::AtMostOnce,
        Packet::PubRel(_) | Packet::Subscribe(_) => true,
        _ => false,
    }
}

/// Whether the window of session `session_id` holds messages not yet completed upstream.
fn in_flight(state: &State, session_id: &str) -> bool {
    state
        .session(session_id)
        .is_some_and(|session| !session.inflight.is_empty())
}
