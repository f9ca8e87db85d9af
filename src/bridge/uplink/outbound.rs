//! The bridge's queue drained upstream: queued messages taken into the session's inflight
//! window as PUBLISH (renamed by the `out` rules, within the server's limits and the pacer),
//! spilled entries read back from the store, and the server's PUBACK, PUBREC and PUBCOMP
//! moving entries through the window, each change committed.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::queue::LoadRequest;
use crate::broker::state::{Gone, Prepared, TakeLimits};
use crate::codec::{publish_len, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode};
use crate::model::{Delivery, Inflight, OutboundState};
use crate::store::{Loaded, StoreError};

use super::super::status::BridgeStatus;
use super::super::topics::map_out;
use super::{expects_answer, in_flight, Ended, Uplink};

/// Most PUBLISH packets prepared per pass.
const BATCH: usize = 256;

/// What a PUBACK, PUBCOMP or refusing PUBREC did to the window.
enum Answered {
    /// Its message left the window.
    Completed,
    /// Its message was refused for the server's quota: it stays, to go again.
    RefusedForQuota,
    /// No message of the window was waiting for it.
    Unknown,
}

/// Reads the bridge's spilled queue entries back.
pub(super) struct PendingLoad {
    request: LoadRequest,
    loaded: Loaded,
}

/// A token bucket for `rate_limit`: up to a tenth of a second's worth of messages at once
/// (one at least), so that no second sends much more than the rate, even after a pause.
#[derive(Debug)]
pub(super) struct Pacer {
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl Pacer {
    pub(super) fn new(per_second: u32) -> Option<Pacer> {
        (per_second > 0).then(|| Pacer {
            per_second: f64::from(per_second),
            tokens: 1.0,
            at: Instant::now(),
        })
    }

    /// How many messages may go now.
    fn allowance(&mut self, now: Instant) -> usize {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.per_second).min((self.per_second / 10.0).max(1.0));
        self.at = now;
        self.tokens as usize
    }

    fn spend(&mut self, messages: usize) {
        self.tokens -= messages as f64;
    }

    /// When the next message may go.
    pub(super) fn next_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.at + Duration::from_secs_f64(missing / self.per_second)
    }
}

impl Uplink {
    /// PUBACKs, PUBCOMPs, or PUBRECs refusing their message, in the order they came (taken
    /// from `completions`): each message leaves the window (and the queue, once committed),
    /// except one refused for the server's quota, which waits and goes again (see
    /// [`super::quota`]). Any other refusal counts as dropped: the server will never take it.
    pub(super) fn completed(
        &mut self,
        completions: &mut Vec<(PubResponse, OutboundState)>,
    ) -> Result<(), Ended> {
        if completions.is_empty() {
            return Ok(());
        }
        let session_id = self.bridge.session_id.clone();
        let ((answers, still_in_flight), _) = self.broker.change(|state, changes| {
            let answers: Vec<Answered> = completions
                .iter()
                .map(|(response, expected)| {
                    let packet_id = response.packet_id;
                    // A QoS 2 message resent as QoS 1 to a server whose Maximum QoS fell since.
                    let states: &[OutboundState] = match expected {
                        OutboundState::AwaitingPubAck => {
                            &[OutboundState::AwaitingPubAck, OutboundState::AwaitingPubRec]
                        }
                        other => std::slice::from_ref(other),
                    };
                    let refused_for_quota = response.reason == ReasonCode::QuotaExceeded
                        && *expected != OutboundState::AwaitingPubComp;
                    let known = if refused_for_quota {
                        states.iter().any(|state_now| {
                            state
                                .outbound_in_flight(&session_id, packet_id, *state_now)
                                .is_some()
                        })
                    } else {
                        states.iter().any(|state_now| {
                            state.complete_outbound(&session_id, packet_id, *state_now, changes)
                        })
                    };
                    match (known, refused_for_quota) {
                        (false, _) => Answered::Unknown,
                        (true, true) => Answered::RefusedForQuota,
                        (true, false) => Answered::Completed,
                    }
                })
                .collect();
            (answers, in_flight(state, &session_id))
        });
        for ((response, expected), answer) in completions.drain(..).zip(answers) {
            match answer {
                Answered::Unknown => {
                    tracing::debug!(bridge = %self.bridge.config.name, packet_id = response.packet_id,
                        "acknowledgement for no message in flight");
                    continue;
                }
                Answered::RefusedForQuota => {
                    self.refused_for_quota(response.packet_id);
                    // Its place in the server's window waits for it.
                    continue;
                }
                Answered::Completed => {}
            }
            if expected == OutboundState::AwaitingPubComp {
                // A PUBCOMP answers a PUBREL, sent only after the server's PUBREC took the
                // message: whatever its reason (0x92 when the server had completed the flow
                // before our PUBREL came again after a reconnect), the message went up.
                self.taken();
            } else if response.reason.is_error() {
                self.refused_for_good(response.reason);
            } else {
                self.taken();
            }
            if !self.resend.is_empty() {
                self.resend_room += 1;
            }
        }
        self.release_resends()?;
        self.answered(still_in_flight);
        Ok(())
    }

    /// The server took a message (counted in `sent`).
    fn taken(&mut self) {
        BridgeStatus::count(&self.bridge.status.sent, 1);
        self.quota.taken();
        if self.refused_in_a_row > 1 {
            tracing::warn!(bridge = %self.bridge.config.name, dropped = self.refused_in_a_row,
                "the server refused messages in a row; they were dropped");
        }
        self.refused_in_a_row = 0;
    }

    /// The server refused a message for a reason other than its quota: it is dropped and
    /// counted, the first of a run logged with its reason.
    fn refused_for_good(&mut self, reason: ReasonCode) {
        BridgeStatus::count(&self.bridge.status.dropped, 1);
        self.refused_in_a_row += 1;
        if self.refused_in_a_row == 1 {
            tracing::warn!(bridge = %self.bridge.config.name, ?reason,
                "the server refused a message; it is dropped (refusals until it takes one are counted, and logged together)");
        }
    }

    /// The server refused the message under `packet_id` for its quota: it waits, and nothing
    /// else goes meanwhile (see [`super::quota`]).
    fn refused_for_quota(&mut self, packet_id: u16) {
        if let Some(wait) = self.quota.refused(packet_id) {
            tracing::warn!(bridge = %self.bridge.config.name, ?wait,
                "the server refused a message for its quota (0x97); nothing is sent for the wait, \
                 then it goes again, ahead of newer messages (a `rate_limit` below the server's \
                 limit avoids this)");
        }
    }

    /// Moves the messages refused for the server's quota whose wait is over to the front of
    /// the resends, published again as new messages (the refusal ended their flows) under the
    /// topics they went out with. One that expired meanwhile [MQTT-3.3.2-5], or that no rule
    /// carries any more, leaves the window, dropped.
    fn release_refused(&mut self) {
        let due = self.quota.take_due();
        if due.is_empty() {
            return;
        }
        let now = std::time::Instant::now();
        let session_id = self.bridge.session_id.clone();
        let broker = self.broker.clone();
        let ((again, still_in_flight), _) = broker.change(|state, changes| {
            let mut again = Vec::with_capacity(due.len());
            for packet_id in due {
                for expected in [OutboundState::AwaitingPubAck, OutboundState::AwaitingPubRec] {
                    let Some(entry) = state.outbound_in_flight(&session_id, packet_id, expected)
                    else {
                        continue;
                    };
                    let publish = if entry.delivery.message.remaining_expiry(now) == Some(0) {
                        None
                    } else {
                        self.publish_again(entry, false, now)
                    };
                    match publish {
                        Some(publish) => again.push(Packet::Publish(publish)),
                        None => {
                            state.complete_outbound(&session_id, packet_id, expected, changes);
                            BridgeStatus::count(&self.bridge.status.dropped, 1);
                        }
                    }
                    break;
                }
            }
            (again, in_flight(state, &session_id))
        });
        // Each takes the place in the server's window its refusal freed.
        self.resend_room += again.len();
        for packet in again.into_iter().rev() {
            self.resend.push_front(packet);
        }
        // The wait for answers starts again as they go (or ends, if none is left).
        self.answered(still_in_flight);
    }

    /// Writes the resends the server's window has room for and the pacer allows, in order.
    pub(super) fn release_resends(&mut self) -> Result<(), Ended> {
        if self.quota.holds() {
            return Ok(());
        }
        let allowance = match &mut self.pacer {
            Some(pacer) => pacer.allowance(Instant::now()),
            None => usize::MAX,
        };
        let count = self.resend.len().min(self.resend_room).min(allowance);
        for _ in 0..count {
            if let Some(packet) = self.resend.pop_front() {
                self.queue(&packet)?;
            }
        }
        self.resend_room -= count;
        if let Some(pacer) = &mut self.pacer {
            pacer.spend(count);
        }
        Ok(())
    }

    /// PUBREC: the server has the QoS 2 message; PUBREL goes once that is durable, so a crash
    /// never sends the PUBLISH again [MQTT-4.3.3-6].
    pub(super) fn received(&mut self, packet_id: u16) -> Result<(), Ended> {
        let session_id = self.bridge.session_id.clone();
        let (known, commit) = self
            .broker
            .change(|state, changes| state.outbound_received(&session_id, packet_id, changes));
        if known {
            self.quota.taken();
            self.acks.push(
                commit,
                Packet::PubRel(PubResponse::success(packet_id)),
                Vec::new(),
            );
        } else {
            // Already past PUBREC (a repeat): PUBREL again, as the server asks.
            self.queue(&Packet::PubRel(PubResponse::success(packet_id)))?;
        }
        // The flow stays open until PUBCOMP.
        self.answered(true);
        Ok(())
    }

    /// Moves queued messages into the window (within the pacer's allowance) and writes them.
    pub(super) async fn send_queued(&mut self) -> Result<(), Ended> {
        // The resends go first, messages refused for the server's quota first of all: nothing
        // new overtakes them.
        self.release_refused();
        self.release_resends()?;
        loop {
            let allowance = match &mut self.pacer {
                Some(pacer) => pacer.allowance(Instant::now()).min(BATCH),
                None => BATCH,
            };
            if allowance == 0 || !self.resend.is_empty() || self.quota.holds() {
                return Ok(());
            }
            let session_id = self.bridge.session_id.clone();
            let connection_id = self.connection_id;
            let window = usize::from(self.granted.window);
            let (bridge, granted_qos) = (self.bridge.clone(), self.granted.max_qos);
            let max_qos =
                |delivery: &Delivery| bridge.max_qos_out(&delivery.message.topic).min(granted_qos);
            let now = std::time::Instant::now();
            let broker = self.broker.clone();
            let (taken, commit) = broker.change(|state, changes| {
                let prepare =
                    |delivery: &Delivery, packet_id| self.prepare(delivery, packet_id, now);
                let taken = state.take_deliverable(
                    &session_id,
                    connection_id,
                    TakeLimits {
                        window,
                        batch: allowance,
                        max_qos: &max_qos,
                    },
                    prepare,
                    changes,
                )?;
                // Asked before this pass's changes reach the store, as a client connection
                // does: its Inflight records can then still cancel out with their PUBACKs in
                // one group commit.
                let load = taken.load.map(|request| PendingLoad {
                    request,
                    loaded: broker.store().load(&session_id, request.from, request.to),
                });
                Ok((taken, load))
            });
            let (taken, load) =
                taken.map_err(|Gone| Ended::Lost("the bridge's session was taken over".into()))?;
            if taken.await_commit {
                commit
                    .wait()
                    .await
                    .map_err(|error| Ended::Lost(format!("store failure: {error}")))?;
            }
            let count = taken.packets.len();
            let mut answer_expected = false;
            for packet in &taken.packets {
                self.encode(packet)?;
                answer_expected |= expects_answer(packet);
                if let Packet::Publish(publish) = packet {
                    if publish.qos == QoS::AtMostOnce {
                        BridgeStatus::count(&self.bridge.status.sent, 1);
                    }
                }
            }
            if count > 0 {
                self.sent(Instant::now(), answer_expected);
            }
            if let Some(pacer) = &mut self.pacer {
                pacer.spend(count);
            }
            if let Some(pending) = load {
                self.load = Some(pending);
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
            // A full batch, and the window may take more: the local clients served by this
            // worker go first. Through a window of thousands the drain would otherwise hold
            // the worker for as long (each write completes at once on a fast link), and local
            // publishers would wait that long for their acknowledgements.
            tokio::task::yield_now().await;
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
    ) -> Result<Prepared, &'static str> {
        if delivery.message.remaining_expiry(now) == Some(0) {
            BridgeStatus::count(&self.bridge.status.dropped, 1);
            return Err("expired while queued");
        }
        let Some(mut publish) = self.publish_of(delivery, packet_id, false, now) else {
            BridgeStatus::count(&self.bridge.status.dropped, 1);
            return Err("no out rule carries it any more");
        };
        // Before an alias takes the topic's place; kept with the inflight entry for a resend
        // (the message's own, shared, when the rule keeps the name).
        let sent_topic = packet_id.map(|_| match &delivery.message.topic {
            own if **own == *publish.topic => own.clone(),
            _ => Arc::from(publish.topic.as_str()),
        });
        // Sized as sent: a known alias makes it shorter, a new one longer (assigned only
        // where it fits).
        let (version, limit) = (self.version, self.granted.max_packet_size as usize);
        self.aliases.apply(&mut publish, |publish| {
            publish_len(publish, version) <= limit
        });
        let size = publish_len(&publish, version);
        if size > limit {
            BridgeStatus::count(&self.bridge.status.dropped, 1);
            tracing::warn!(bridge = %self.bridge.config.name, topic = %delivery.message.topic, size,
                limit = self.granted.max_packet_size, "message larger than the server accepts; dropped");
            return Err("larger than the server's Maximum Packet Size");
        }
        Ok(Prepared {
            packet: Packet::Publish(publish),
            sent_topic,
        })
    }

    /// The PUBLISH of a message in the window again, under the topic it went out with, kept
    /// with its entry: a reload or a restart may have changed the rules since (an entry stored
    /// by a build before that has none, and goes under the rules in force; `None` if none
    /// carries it). On its packet identifier, with DUP if `dup`.
    pub(super) fn publish_again(
        &self,
        entry: &Inflight,
        dup: bool,
        now: std::time::Instant,
    ) -> Option<Publish> {
        let id = Some(entry.packet_id);
        match &entry.sent_topic {
            Some(topic) => Some(self.publish_as(&entry.delivery, topic.to_string(), id, dup, now)),
            None => self.publish_of(&entry.delivery, id, dup, now),
        }
    }

    /// The upstream PUBLISH of a delivery: the topic renamed by the first `out` rule that
    /// carries it, RETAIN only where the server has it, the message's properties with the
    /// expiry that remains [MQTT-3.3.2-6] (v5). `None` when no rule carries the topic.
    pub(super) fn publish_of(
        &self,
        delivery: &Delivery,
        packet_id: Option<u16>,
        dup: bool,
        now: std::time::Instant,
    ) -> Option<Publish> {
        let (_, topic) = map_out(&self.bridge.config.topics, &delivery.message.topic)?;
        Some(self.publish_as(delivery, topic, packet_id, dup, now))
    }

    /// The upstream PUBLISH of a delivery under `topic`, as [`Uplink::publish_of`] makes it.
    pub(super) fn publish_as(
        &self,
        delivery: &Delivery,
        topic: String,
        packet_id: Option<u16>,
        dup: bool,
        now: std::time::Instant,
    ) -> Publish {
        let message = &delivery.message;
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
            publish.properties = message.properties_to_send();
            publish.properties.message_expiry_interval = message.remaining_expiry(now);
        }
        publish
    }

    pub(super) fn take_loaded(
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
}

/// Waits for the pending load's entries (forever if there is none). Cancel-safe.
pub(super) async fn load_done(
    load: &mut Option<PendingLoad>,
) -> Result<Vec<(u64, Delivery)>, StoreError> {
    match load {
        Some(pending) => pending.loaded.entries().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a pause the pacer lets a tenth of a second's worth go at once (one at least),
    /// then keeps to the rate: a pause never buys a second sending twice the rate.
    #[tokio::test(start_paused = true)]
    async fn a_pause_saves_up_a_tenth_of_a_second_at_most() {
        for (rate, burst) in [(100, 10), (5, 1)] {
            let mut pacer = Pacer::new(rate).expect("a rate");
            tokio::time::advance(Duration::from_secs(5)).await;
            let allowed = pacer.allowance(Instant::now());
            assert_eq!(allowed, burst, "rate {rate}");
            pacer.spend(allowed);
            assert_eq!(pacer.allowance(Instant::now()), 0, "rate {rate}");
            tokio::time::advance(Duration::from_secs(1) / rate).await;
            assert_eq!(pacer.allowance(Instant::now()), 1, "rate {rate}");
        }
    }
}
