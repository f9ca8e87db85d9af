//! A subscribing client: receives stamped PUBLISHes, acknowledges QoS 1 (PUBACK) and QoS 2
//! (PUBREC, then PUBCOMP on PUBREL), checks each publisher's sequence for gaps, duplicates and
//! reordering, and optionally logs one-way latencies.
//!
//! A QoS 2 PUBLISH re-sent before its PUBREL is acknowledged again but counted once. With
//! `count_duplicates`, a message seen before (a QoS 1 re-send, e.g. by a bridge after a
//! reconnect) is counted as a duplicate and not again as received, so the received count is
//! the distinct messages and a duplicate is told apart from a reordered message.

use std::collections::HashSet;
use std::sync::Arc;

use cairn::codec::{Packet, PubResponse, Publish, QoS};
use tokio::sync::watch;

use crate::connection::MqttConnection;
use crate::error::LoadError;
use crate::progress::{stop_changed, stop_requested, Progress};
use crate::stamp::{Clock, Stamp};

/// Everything a subscriber needs besides its connection.
pub struct SubscriberPlan {
    /// This subscriber's counter in `progress`.
    pub index: usize,
    /// Publishers of the run; stamps name one of `0..publishers`.
    pub publishers: usize,
    pub progress: Arc<Progress>,
    pub clock: Clock,
    /// Keep a (send time, latency) pair per message.
    pub log_latency: bool,
    /// Remember every (publisher, sequence) received, to count repeats as duplicates.
    pub count_duplicates: bool,
}

/// One publisher's messages as one subscriber saw them.
#[derive(Debug, Clone, Copy, Default)]
pub struct SequenceCheck {
    /// The sequence number expected next.
    next: u64,
    /// Messages that arrived at or beyond the expected number (each counted once).
    pub received: u64,
    /// Messages with a number below the expected one (duplicates or reordered).
    pub behind: u64,
}

impl SequenceCheck {
    /// Books one arrival of `sequence`.
    pub fn observe(&mut self, sequence: u64) {
        if sequence < self.next {
            self.behind += 1;
            return;
        }
        self.received += 1;
        self.next = sequence + 1;
    }
}

/// What a subscriber saw.
#[derive(Debug, Clone)]
pub struct SubscriberReport {
    pub index: usize,
    /// Per publisher, indexed by the stamp's publisher number.
    pub sequences: Vec<SequenceCheck>,
    /// (send time, latency), nanoseconds on the run's clock, when latency was logged.
    pub latencies: Vec<(u64, u64)>,
    /// Messages received again after an earlier copy (only with `count_duplicates`).
    pub duplicates: u64,
}

/// A connected, subscribed subscriber.
pub struct Subscriber {
    connection: MqttConnection,
    plan: SubscriberPlan,
    received: u64,
    sequences: Vec<SequenceCheck>,
    latencies: Vec<(u64, u64)>,
    /// (publisher, sequence) of every message received, with `count_duplicates`.
    seen: Option<HashSet<(u32, u64)>>,
    duplicates: u64,
    /// QoS 2 packet identifiers received and awaiting PUBREL.
    awaiting_release: Vec<bool>,
}

impl Subscriber {
    /// A subscriber over a connection that has already subscribed.
    pub fn new(connection: MqttConnection, plan: SubscriberPlan) -> Subscriber {
        Subscriber {
            connection,
            sequences: vec![SequenceCheck::default(); plan.publishers],
            seen: plan.count_duplicates.then(HashSet::new),
            plan,
            received: 0,
            latencies: Vec::new(),
            duplicates: 0,
            awaiting_release: vec![false; usize::from(u16::MAX) + 1],
        }
    }

    /// Receives until `stop` turns true, then flushes pending acknowledgements and disconnects.
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
    ) -> Result<SubscriberReport, LoadError> {
        loop {
            self.handle_inbound()?;
            if stop_requested(&mut stop) && self.connection.unsent_len() == 0 {
                break;
            }
            self.connection.pump(stop_changed(&mut stop)).await?;
        }
        self.connection.disconnect().await?;
        Ok(SubscriberReport {
            index: self.plan.index,
            sequences: self.sequences,
            latencies: self.latencies,
            duplicates: self.duplicates,
        })
    }

    /// Handles every packet already read and publishes the new received count.
    fn handle_inbound(&mut self) -> Result<(), LoadError> {
        let before = self.received;
        while let Some(packet) = self.connection.next_packet()? {
            match packet {
                Packet::Publish(publish) => self.on_publish(&publish)?,
                Packet::PubRel(release) => self.on_release(release.packet_id)?,
                Packet::PingResp => {}
                other => return Err(self.connection.unexpected(&other, "subscribed")),
            }
        }
        if self.received != before {
            self.plan
                .progress
                .set_received(self.plan.index, self.received);
        }
        Ok(())
    }

    /// Acknowledges a PUBLISH as its QoS requires and books it unless it is a QoS 2 re-send.
    fn on_publish(&mut self, publish: &Publish) -> Result<(), LoadError> {
        let first_delivery = match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => true,
            (QoS::AtLeastOnce, Some(id)) => {
                self.connection
                    .queue(&Packet::PubAck(PubResponse::success(id)))?;
                true
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let slot = &mut self.awaiting_release[usize::from(id)];
                let first = !*slot;
                *slot = true;
                self.connection
                    .queue(&Packet::PubRec(PubResponse::success(id)))?;
                first
            }
        };
        if first_delivery {
            self.book(publish)?;
        }
        Ok(())
    }

    /// Completes a QoS 2 delivery.
    fn on_release(&mut self, packet_id: u16) -> Result<(), LoadError> {
        let slot = &mut self.awaiting_release[usize::from(packet_id)];
        if !*slot {
            return Err(LoadError::UnknownPacketId {
                who: self.connection.who().to_owned(),
                packet: "PUBREL",
                packet_id,
            });
        }
        *slot = false;
        self.connection
            .queue(&Packet::PubComp(PubResponse::success(packet_id)))
    }

    /// Counts a message (a duplicate only as such), checks its sequence and logs its latency.
    fn book(&mut self, publish: &Publish) -> Result<(), LoadError> {
        let who = || self.connection.who().to_owned();
        let stamp = Stamp::read(&publish.payload).ok_or_else(|| LoadError::ForeignMessage {
            who: who(),
            topic: publish.topic.clone(),
            len: publish.payload.len(),
        })?;
        let publishers = self.sequences.len();
        let check = usize::try_from(stamp.publisher)
            .ok()
            .and_then(|index| self.sequences.get_mut(index))
            .ok_or_else(|| LoadError::UnknownPublisher {
                who: who(),
                publisher: stamp.publisher,
                publishers,
            })?;
        if let Some(seen) = &mut self.seen {
            if !seen.insert((stamp.publisher, stamp.sequence)) {
                self.duplicates += 1;
                return Ok(());
            }
        }
        check.observe(stamp.sequence);
        self.received += 1;
        if self.plan.log_latency {
            let latency = self.plan.clock.now_nanos().saturating_sub(stamp.sent_nanos);
            self.latencies.push((stamp.sent_nanos, latency));
        }
        Ok(())
    }
}
