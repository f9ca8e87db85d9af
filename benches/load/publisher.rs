//! A publishing client: sends stamped PUBLISHes as its pacing allows, keeps up to its inflight
//! window of QoS 1/2 messages unacknowledged (pipelined, like a sensor library), and completes
//! the PUBACK and PUBREC → PUBREL → PUBCOMP flows.
//!
//! When told to stop, or once it has sent its limit, it sends nothing new, waits for every
//! acknowledgement, and disconnects. It can log each message's acknowledgement latency.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use cairn::codec::{Packet, Properties, PubResponse, Publish, QoS};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::connection::MqttConnection;
use crate::error::LoadError;
use crate::progress::{stop_changed, stop_requested, Progress};
use crate::stamp::{Clock, Stamp};

/// Bytes queued before the publisher stops filling and lets the socket drain.
const BATCH_BYTES: usize = 64 * 1024;

/// What sets a publisher's pace.
#[derive(Clone)]
pub enum Pacing {
    /// As fast as the end-to-end window allows.
    Window(Arc<Progress>),
    /// Message `i` is due at `start + i / per_second`. Stamps carry the actual send time, not
    /// the due time: tokio's millisecond timer would otherwise add its own lateness.
    Rate { start: Instant, per_second: u32 },
    /// As fast as the inflight window allows, with no end-to-end window: for runs whose
    /// subscribers are offline while the broker queues.
    InflightOnly,
}

/// Everything a publisher needs besides its connection.
pub struct PublisherPlan {
    /// Index written into each stamp, 0-based.
    pub index: u32,
    pub topic: String,
    pub qos: QoS,
    pub payload_len: usize,
    /// Unacknowledged QoS 1/2 PUBLISHes allowed at once.
    pub max_inflight: u16,
    pub pacing: Pacing,
    pub clock: Clock,
    /// How long to wait for the last acknowledgements once told to stop.
    pub drain_timeout: Duration,
    /// Messages to send before finishing unasked; `None` sends until told to stop.
    pub limit: Option<u64>,
    /// Keep every message's acknowledgement latency in the report.
    pub log_acks: bool,
}

/// What a publisher did.
#[derive(Debug, Clone)]
pub struct PublisherReport {
    pub index: u32,
    /// PUBLISHes sent (all acknowledged, for QoS 1/2).
    pub sent: u64,
    /// Times the end-to-end window stayed shut for the stall timeout.
    pub stalls: u64,
    /// (send time, latency to PUBACK or PUBCOMP), nanoseconds on the run's clock, when
    /// acknowledgements were logged.
    pub acks: Vec<(u64, u64)>,
}

/// Where an outgoing QoS 1/2 message stands, per packet identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Free,
    AwaitingPubAck,
    AwaitingPubRec,
    AwaitingPubComp,
}

/// Packet identifiers in use and the state of each.
pub struct InflightTable {
    slots: Vec<Slot>,
    next_id: u16,
    pub in_use: usize,
}

impl InflightTable {
    pub fn new() -> InflightTable {
        InflightTable {
            slots: vec![Slot::Free; usize::from(u16::MAX) + 1],
            next_id: 1,
            in_use: 0,
        }
    }

    /// Takes the next free non-zero identifier and marks it `state`.
    pub fn allocate(&mut self, state: Slot) -> Option<u16> {
        for _ in 0..u16::MAX {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            let slot = &mut self.slots[usize::from(id)];
            if *slot == Slot::Free {
                *slot = state;
                self.in_use += 1;
                return Some(id);
            }
        }
        None
    }

    /// Moves `id` from `expected` to `next`; `false` if it was not in `expected`.
    pub fn advance(&mut self, id: u16, expected: Slot, next: Slot) -> bool {
        let slot = &mut self.slots[usize::from(id)];
        if *slot != expected {
            return false;
        }
        *slot = next;
        if next == Slot::Free {
            self.in_use -= 1;
        }
        true
    }
}

/// A connected publisher.
pub struct Publisher {
    connection: MqttConnection,
    plan: PublisherPlan,
    inflight: InflightTable,
    sent: u64,
    stalls: u64,
    /// Send time of the message under each packet identifier, when acknowledgements are logged.
    sent_at: Vec<u64>,
    acks: Vec<(u64, u64)>,
    /// Allocation reused for payloads.
    scratch: BytesMut,
}

impl Publisher {
    /// A publisher over an open connection.
    pub fn new(connection: MqttConnection, plan: PublisherPlan) -> Publisher {
        let sent_at = if plan.log_acks {
            vec![0; usize::from(u16::MAX) + 1]
        } else {
            Vec::new()
        };
        Publisher {
            connection,
            plan,
            inflight: InflightTable::new(),
            sent: 0,
            stalls: 0,
            sent_at,
            acks: Vec::new(),
            scratch: BytesMut::new(),
        }
    }

    /// Publishes until `stop` turns true or the limit is sent, then drains acknowledgements
    /// and disconnects.
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
    ) -> Result<PublisherReport, LoadError> {
        let mut drain_deadline = None;
        loop {
            self.handle_inbound()?;
            if drain_deadline.is_none() && (stop_requested(&mut stop) || self.reached_limit()) {
                drain_deadline = Some(Instant::now() + self.plan.drain_timeout);
            }
            match drain_deadline {
                None => self.fill()?,
                Some(_) if self.is_drained() => break,
                Some(deadline) if Instant::now() >= deadline => return Err(self.unacknowledged()),
                Some(_) => {}
            }
            self.step(&mut stop, drain_deadline).await?;
        }
        let report = PublisherReport {
            index: self.plan.index,
            sent: self.sent,
            stalls: self.stalls,
            acks: std::mem::take(&mut self.acks),
        };
        self.connection.disconnect().await?;
        Ok(report)
    }

    /// One I/O step, waking early when the pace, a stop or the drain deadline calls for it.
    async fn step(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        drain_deadline: Option<Instant>,
    ) -> Result<(), LoadError> {
        let may_queue_more = self.may_queue_more();
        let Publisher {
            connection,
            plan,
            stalls,
            sent,
            ..
        } = self;
        if let Some(deadline) = drain_deadline {
            return connection.pump(sleep_until(deadline)).await;
        }
        if !may_queue_more {
            return connection.pump(stop_changed(stop)).await;
        }
        let pace = wait_for_pace(&plan.pacing, *sent, stalls);
        connection.pump(first_of(stop_changed(stop), pace)).await
    }

    /// Queues PUBLISHes while the pace, the inflight window and the batch size allow.
    fn fill(&mut self) -> Result<(), LoadError> {
        while self.may_queue_more() {
            let Some(sent_nanos) = self.next_stamp_time() else {
                break;
            };
            self.publish(sent_nanos)?;
        }
        Ok(())
    }

    /// The stamp time (now) if the pace allows sending the next message now.
    fn next_stamp_time(&self) -> Option<u64> {
        let allowed = match &self.plan.pacing {
            Pacing::Window(progress) => progress.try_reserve(),
            Pacing::Rate { start, per_second } => {
                due_time(*start, *per_second, self.sent) <= Instant::now()
            }
            Pacing::InflightOnly => true,
        };
        allowed.then(|| self.plan.clock.now_nanos())
    }

    /// Queues one stamped PUBLISH, taking a packet identifier for QoS 1/2.
    fn publish(&mut self, sent_nanos: u64) -> Result<(), LoadError> {
        let packet_id = match self.plan.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => self.inflight.allocate(Slot::AwaitingPubAck),
            QoS::ExactlyOnce => self.inflight.allocate(Slot::AwaitingPubRec),
        };
        let stamp = Stamp {
            publisher: self.plan.index,
            sequence: self.sent,
            sent_nanos,
        };
        let payload = stamp.payload(self.plan.payload_len, &mut self.scratch);
        self.connection.queue(&Packet::Publish(Publish {
            dup: false,
            qos: self.plan.qos,
            retain: false,
            topic: self.plan.topic.clone(),
            packet_id,
            properties: Properties::default(),
            payload,
        }))?;
        if let (Some(id), true) = (packet_id, self.plan.log_acks) {
            self.sent_at[usize::from(id)] = sent_nanos;
        }
        self.sent += 1;
        Ok(())
    }

    /// Handles every acknowledgement already read.
    fn handle_inbound(&mut self) -> Result<(), LoadError> {
        while let Some(packet) = self.connection.next_packet()? {
            match &packet {
                Packet::PubAck(ack) => self.acknowledged(ack, "PUBACK", Slot::AwaitingPubAck)?,
                Packet::PubRec(rec) => {
                    self.acknowledged(rec, "PUBREC", Slot::AwaitingPubRec)?;
                    self.connection
                        .queue(&Packet::PubRel(PubResponse::success(rec.packet_id)))?;
                }
                Packet::PubComp(comp) => {
                    self.acknowledged(comp, "PUBCOMP", Slot::AwaitingPubComp)?
                }
                Packet::PingResp => {}
                _ => return Err(self.connection.unexpected(&packet, "publishing")),
            }
        }
        Ok(())
    }

    /// Advances the flow of `response.packet_id`, which must be in `expected`.
    fn acknowledged(
        &mut self,
        response: &PubResponse,
        name: &'static str,
        expected: Slot,
    ) -> Result<(), LoadError> {
        let who = || self.connection.who().to_owned();
        if response.reason.is_error() {
            return Err(LoadError::AckFailed {
                who: who(),
                packet: name,
                packet_id: response.packet_id,
                reason: response.reason,
            });
        }
        let next = match expected {
            Slot::AwaitingPubRec => Slot::AwaitingPubComp,
            _ => Slot::Free,
        };
        if !self.inflight.advance(response.packet_id, expected, next) {
            return Err(LoadError::UnknownPacketId {
                who: who(),
                packet: name,
                packet_id: response.packet_id,
            });
        }
        if next == Slot::Free && self.plan.log_acks {
            self.log_ack(response.packet_id);
        }
        Ok(())
    }

    /// Books the acknowledgement latency of the message that held `packet_id`.
    fn log_ack(&mut self, packet_id: u16) {
        let sent = self.sent_at[usize::from(packet_id)];
        let latency = self.plan.clock.now_nanos().saturating_sub(sent);
        self.acks.push((sent, latency));
    }

    /// True while the limit is not reached and neither the batch nor the inflight window is
    /// full.
    fn may_queue_more(&self) -> bool {
        !self.reached_limit()
            && self.connection.unsent_len() < BATCH_BYTES
            && self.inflight.in_use < usize::from(self.plan.max_inflight)
    }

    fn reached_limit(&self) -> bool {
        self.plan.limit.is_some_and(|limit| self.sent >= limit)
    }

    fn is_drained(&self) -> bool {
        self.inflight.in_use == 0 && self.connection.unsent_len() == 0
    }

    fn unacknowledged(&self) -> LoadError {
        LoadError::Unacknowledged {
            who: self.connection.who().to_owned(),
            inflight: self.inflight.in_use,
            timeout: self.plan.drain_timeout,
        }
    }
}

/// Resolves when either future does.
pub async fn first_of(a: impl Future<Output = ()>, b: impl Future<Output = ()>) {
    tokio::select! {
        () = a => {}
        () = b => {}
    }
}

/// Resolves when the pace lets message number `sent` go, counting window stalls.
async fn wait_for_pace(pacing: &Pacing, sent: u64, stalls: &mut u64) {
    match pacing {
        Pacing::Window(progress) => {
            if !progress.wait_for_window().await {
                *stalls += 1;
            }
        }
        Pacing::Rate { start, per_second } => {
            sleep_until(due_time(*start, *per_second, sent)).await;
        }
        // The inflight window holds it back, and an acknowledgement wakes the pump anyway.
        Pacing::InflightOnly => std::future::pending().await,
    }
}

/// When message number `index` is due at `per_second` messages per second from `start`.
pub fn due_time(start: Instant, per_second: u32, index: u64) -> Instant {
    let nanos = u128::from(index) * 1_000_000_000 / u128::from(per_second);
    start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}
