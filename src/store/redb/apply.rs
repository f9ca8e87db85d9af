//! Applies [`StoreOp`]s to the tables inside one write transaction: the meaning of every op in
//! rows. An op naming a session or entry that does not exist is ignored (logged at debug): the
//! engine may, for example, ack a message of a session deleted earlier in the same group.
//!
//! Owns message-body reference counting: a body is written with the first entry that refers to
//! it and deleted with the last. Consecutive entries of a session discarded one after another (a
//! queue draining in order) are removed together, in one pass over the queue and one over their
//! bodies. Never commits; the writer does.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use redb::{ReadableTable, Table, WriteTransaction};

use crate::codec::{QoS, SubscriptionOptions};
use crate::model::entry_size;
use crate::model::OutboundState;
use crate::model::{Delivery, Message};
use crate::model::{SessionWill, StoreOp};

use super::clock::WallClock;
use super::records::{
    decode_message, encode_message, encode_will, InflightRecord, QueueRecord, SessionRecord,
    SubscriptionRecord,
};
use super::tables::{
    after_client, DbError, INBOUND_QOS2, INFLIGHT, MESSAGES, MESSAGE_REFS, QUEUE, RETAINED,
    SESSIONS, SUBSCRIPTIONS, WILLS,
};
use super::writer::LoadedEntries;

/// What one transaction did, for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Applied {
    /// Ops applied (cancelled ones not counted).
    pub ops: u64,
    /// Queue entries written.
    pub enqueued: u64,
    /// Queue entries that cancelled out within the group and were never written.
    pub elided: u64,
}

/// Queue entries discarded but not removed yet: consecutive entries of one session, removed
/// together in one pass over the queue table before any other op is applied.
struct DiscardRun {
    client_id: Arc<str>,
    seqs: Range<u64>,
}

/// Every table, opened for one write transaction.
pub struct Tables<'txn> {
    sessions: Table<'txn, &'static str, &'static [u8]>,
    subscriptions: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    queue: Table<'txn, (&'static str, u64), &'static [u8]>,
    inflight: Table<'txn, (&'static str, u16), &'static [u8]>,
    inbound_qos2: Table<'txn, (&'static str, u16), ()>,
    wills: Table<'txn, &'static str, &'static [u8]>,
    messages: Table<'txn, u64, &'static [u8]>,
    message_refs: Table<'txn, u64, u32>,
    retained: Table<'txn, &'static str, &'static [u8]>,
    clock: WallClock,
    applied: Applied,
    discarding: Option<DiscardRun>,
}

impl<'txn> Tables<'txn> {
    /// Opens (creating if absent) every table in `txn`.
    pub fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, DbError> {
        Ok(Tables {
            sessions: txn.open_table(SESSIONS)?,
            subscriptions: txn.open_table(SUBSCRIPTIONS)?,
            queue: txn.open_table(QUEUE)?,
            inflight: txn.open_table(INFLIGHT)?,
            inbound_qos2: txn.open_table(INBOUND_QOS2)?,
            wills: txn.open_table(WILLS)?,
            messages: txn.open_table(MESSAGES)?,
            message_refs: txn.open_table(MESSAGE_REFS)?,
            retained: txn.open_table(RETAINED)?,
            clock: WallClock::now(),
            applied: Applied::default(),
            discarding: None,
        })
    }

    /// Applies what is still pending; what was applied, for the metrics.
    pub fn finish(&mut self) -> Result<Applied, DbError> {
        self.remove_discarded()?;
        Ok(self.applied)
    }

    /// Counts an op that cancelled out within its group instead of applying it.
    pub fn skip(&mut self, op: &StoreOp) {
        if matches!(op, StoreOp::Enqueue { .. }) {
            self.applied.elided += 1;
        }
    }

    /// Applies an acknowledgement whose send was in the same group as discarding queue entry
    /// `seq` of its session (the send itself skipped).
    pub fn discard_instead(&mut self, acked: &StoreOp, seq: u64) -> Result<(), DbError> {
        if let StoreOp::Acked { client_id, .. } = acked {
            self.applied.ops += 1;
            self.discard(client_id, seq)?;
        }
        Ok(())
    }

    /// Applies one op.
    pub fn apply(&mut self, op: &StoreOp) -> Result<(), DbError> {
        self.applied.ops += 1;
        if !matches!(op, StoreOp::Discard { .. }) {
            self.remove_discarded()?;
        }
        match op {
            StoreOp::PutSession {
                client_id,
                expiry_interval,
            } => self.put_session(client_id, *expiry_interval),
            StoreOp::Offline { client_id, at } => self.offline(client_id, *at),
            StoreOp::DeleteSession { client_id } => self.delete_session(client_id),
            StoreOp::Subscribe {
                client_id,
                filter,
                options,
                identifier,
            } => self.subscribe(client_id, filter, *options, *identifier),
            StoreOp::Unsubscribe { client_id, filter } => self.unsubscribe(client_id, filter),
            StoreOp::Enqueue {
                client_id,
                seq,
                delivery,
            } => self.enqueue(client_id, *seq, delivery),
            StoreOp::Discard { client_id, seq } => self.discard(client_id, *seq),
            StoreOp::Inflight {
                client_id,
                seq,
                packet_id,
                sent_topic,
            } => self.send(client_id, *seq, *packet_id, sent_topic.as_deref()),
            StoreOp::Released {
                client_id,
                packet_id,
                order,
            } => self.released(client_id, *packet_id, *order),
            StoreOp::Acked {
                client_id,
                packet_id,
            } => self.acked(client_id, *packet_id),
            StoreOp::InboundQos2 {
                client_id,
                packet_id,
                awaiting,
            } => self.inbound_qos2(client_id, *packet_id, *awaiting),
            StoreOp::Retain { topic, message } => self.retain(topic, message.as_deref()),
            StoreOp::Will { client_id, will } => self.will(client_id, will.as_deref()),
        }
    }

    /// Whether the session exists; logs the ignored op if not.
    fn session_exists(&self, client_id: &str, op: &str) -> Result<bool, DbError> {
        let exists = self.sessions.get(client_id)?.is_some();
        if !exists {
            tracing::debug!(%client_id, "store: {op} for an unknown session ignored");
        }
        Ok(exists)
    }

    fn put_session(&mut self, client_id: &str, expiry_interval: u32) -> Result<(), DbError> {
        let record = SessionRecord {
            expiry_interval,
            offline_since: None,
        };
        self.sessions
            .insert(client_id, record.encode().as_slice())?;
        Ok(())
    }

    fn offline(&mut self, client_id: &str, at: SystemTime) -> Result<(), DbError> {
        let Some(mut record) = self.read_session(client_id)? else {
            tracing::debug!(%client_id, "store: Offline for an unknown session ignored");
            return Ok(());
        };
        record.offline_since = Some(at);
        self.sessions
            .insert(client_id, record.encode().as_slice())?;
        Ok(())
    }

    fn read_session(&self, client_id: &str) -> Result<Option<SessionRecord>, DbError> {
        match self.sessions.get(client_id)? {
            Some(guard) => Ok(Some(SessionRecord::decode(guard.value())?)),
            None => Ok(None),
        }
    }

    /// Removes the session and every row of it, releasing the bodies its entries held.
    fn delete_session(&mut self, client_id: &str) -> Result<(), DbError> {
        if self.sessions.remove(client_id)?.is_none() {
            tracing::debug!(%client_id, "store: DeleteSession for an unknown session");
        }
        self.wills.remove(client_id)?;
        let after = after_client(client_id);
        self.subscriptions
            .retain_in((client_id, "")..(after.as_str(), ""), |_, _| false)?;
        self.inbound_qos2
            .retain_in((client_id, 0)..=(client_id, u16::MAX), |_, _| false)?;
        let mut released = Vec::new();
        for entry in self
            .queue
            .extract_from_if((client_id, 0)..=(client_id, u64::MAX), |_, _| true)?
        {
            let (_, value) = entry?;
            released.push(QueueRecord::decode(value.value(), &self.clock)?.message_id);
        }
        for entry in self
            .inflight
            .extract_from_if((client_id, 0)..=(client_id, u16::MAX), |_, _| true)?
        {
            let (_, value) = entry?;
            released.push(
                InflightRecord::decode(value.value(), &self.clock)?
                    .delivery
                    .message_id,
            );
        }
        for message_id in released {
            self.release_body(message_id)?;
        }
        Ok(())
    }

    fn subscribe(
        &mut self,
        client_id: &str,
        filter: &str,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> Result<(), DbError> {
        if self.session_exists(client_id, "Subscribe")? {
            let record = SubscriptionRecord {
                options,
                identifier,
            };
            self.subscriptions
                .insert((client_id, filter), record.encode().as_slice())?;
        }
        Ok(())
    }

    fn unsubscribe(&mut self, client_id: &str, filter: &str) -> Result<(), DbError> {
        if self.subscriptions.remove((client_id, filter))?.is_none() {
            tracing::debug!(%client_id, %filter, "store: Unsubscribe of an unknown subscription ignored");
        }
        Ok(())
    }

    /// Adds queue entry `seq`, storing the body if no other entry holds it yet.
    fn enqueue(&mut self, client_id: &str, seq: u64, delivery: &Delivery) -> Result<(), DbError> {
        if !self.session_exists(client_id, "Enqueue")? {
            return Ok(());
        }
        self.hold_body(&delivery.message)?;
        let record = QueueRecord {
            message_id: delivery.message.id,
            size: entry_size(delivery),
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
            queued_at: delivery.queued_at,
        };
        let replaced = self
            .queue
            .insert((client_id, seq), record.encode().as_slice())?
            .map(|old| QueueRecord::decode(old.value(), &self.clock))
            .transpose()?;
        if let Some(old) = replaced {
            tracing::warn!(%client_id, seq, "store: queue entry replaced by a new one with its number");
            self.release_body(old.message_id)?;
        }
        self.applied.enqueued += 1;
        Ok(())
    }

    /// Removes and returns queue entry `seq` of the session.
    fn take_queued(&mut self, client_id: &str, seq: u64) -> Result<Option<QueueRecord>, DbError> {
        let Some(removed) = self.queue.remove((client_id, seq))? else {
            tracing::debug!(%client_id, seq, "store: no such queue entry; op ignored");
            return Ok(None);
        };
        Ok(Some(QueueRecord::decode(removed.value(), &self.clock)?))
    }

    /// Discards queue entry `seq`: it joins the run of entries to remove if it follows it,
    /// else the run is removed and a new one starts with it. A draining queue discards its
    /// entries in order, so a group removes them in a few passes instead of one by one.
    fn discard(&mut self, client_id: &Arc<str>, seq: u64) -> Result<(), DbError> {
        if let Some(run) = &mut self.discarding {
            if run.client_id == *client_id && run.seqs.end == seq {
                run.seqs.end += 1;
                return Ok(());
            }
        }
        self.remove_discarded()?;
        self.discarding = Some(DiscardRun {
            client_id: client_id.clone(),
            seqs: seq..seq + 1,
        });
        Ok(())
    }

    /// Removes the run of discarded entries, releasing their bodies.
    fn remove_discarded(&mut self) -> Result<(), DbError> {
        let Some(DiscardRun { client_id, seqs }) = self.discarding.take() else {
            return Ok(());
        };
        let mut released = Vec::with_capacity((seqs.end - seqs.start) as usize);
        let mut unreadable = None;
        let clock = &self.clock;
        let client = &*client_id;
        self.queue
            .retain_in((client, seqs.start)..(client, seqs.end), |_, value| {
                match QueueRecord::decode(value, clock) {
                    Ok(record) => {
                        released.push(record.message_id);
                        false
                    }
                    Err(error) => {
                        unreadable.get_or_insert(error);
                        true
                    }
                }
            })?;
        if let Some(error) = unreadable {
            return Err(error.into());
        }
        let missing = seqs.end - seqs.start - released.len() as u64;
        if missing > 0 {
            tracing::debug!(%client_id, ?seqs, missing, "store: discarded queue entries not stored; ignored");
        }
        self.release_bodies(&released)
    }

    /// Moves queue entry `seq` into the inflight window under `packet_id`.
    fn send(
        &mut self,
        client_id: &str,
        seq: u64,
        packet_id: u16,
        sent_topic: Option<&str>,
    ) -> Result<(), DbError> {
        let Some(delivery) = self.take_queued(client_id, seq)? else {
            return Ok(());
        };
        let state = match delivery.qos {
            QoS::AtLeastOnce => OutboundState::AwaitingPubAck,
            QoS::ExactlyOnce => OutboundState::AwaitingPubRec,
            // A QoS 0 delivery is done once sent: nothing to keep.
            QoS::AtMostOnce => return self.release_body(delivery.message_id),
        };
        let record = InflightRecord {
            order: seq,
            state,
            delivery,
            sent_topic: sent_topic.map(Box::from),
        };
        let replaced = self
            .inflight
            .insert((client_id, packet_id), record.encode().as_slice())?
            .map(|old| InflightRecord::decode(old.value(), &self.clock))
            .transpose()?;
        if let Some(old) = replaced {
            tracing::debug!(%client_id, packet_id, "store: inflight entry replaced by a new send");
            self.release_body(old.delivery.message_id)?;
        }
        Ok(())
    }

    /// Reads queue entries `range` of a session with their bodies, in order (see
    /// [`read_queue_entries`]).
    pub fn load(&mut self, client_id: &str, range: Range<u64>) -> Result<LoadedEntries, DbError> {
        self.remove_discarded()?;
        read_queue_entries(&self.queue, &self.messages, &self.clock, client_id, range)
    }

    fn read_inflight(
        &self,
        client_id: &str,
        packet_id: u16,
    ) -> Result<Option<InflightRecord>, DbError> {
        match self.inflight.get((client_id, packet_id))? {
            Some(guard) => Ok(Some(InflightRecord::decode(guard.value(), &self.clock)?)),
            None => {
                tracing::debug!(%client_id, packet_id, "store: no inflight entry; op ignored");
                Ok(None)
            }
        }
    }

    fn released(&mut self, client_id: &str, packet_id: u16, order: u64) -> Result<(), DbError> {
        if let Some(mut record) = self.read_inflight(client_id, packet_id)? {
            record.state = OutboundState::AwaitingPubComp;
            record.order = order;
            self.inflight
                .insert((client_id, packet_id), record.encode().as_slice())?;
        }
        Ok(())
    }

    fn acked(&mut self, client_id: &str, packet_id: u16) -> Result<(), DbError> {
        if let Some(record) = self.read_inflight(client_id, packet_id)? {
            self.inflight.remove((client_id, packet_id))?;
            self.release_body(record.delivery.message_id)?;
        }
        Ok(())
    }

    fn inbound_qos2(
        &mut self,
        client_id: &str,
        packet_id: u16,
        awaiting: bool,
    ) -> Result<(), DbError> {
        if !awaiting {
            self.inbound_qos2.remove((client_id, packet_id))?;
        } else if self.session_exists(client_id, "InboundQos2")? {
            self.inbound_qos2.insert((client_id, packet_id), ())?;
        }
        Ok(())
    }

    fn retain(&mut self, topic: &str, message: Option<&Message>) -> Result<(), DbError> {
        match message {
            Some(message) => {
                let record = encode_message(message, &self.clock);
                self.retained.insert(topic, record.as_slice())?;
            }
            None => {
                self.retained.remove(topic)?;
            }
        }
        Ok(())
    }

    fn will(&mut self, client_id: &str, will: Option<&SessionWill>) -> Result<(), DbError> {
        match will {
            Some(will) => {
                if self.session_exists(client_id, "Will")? {
                    self.wills.insert(client_id, encode_will(will).as_slice())?;
                }
            }
            None => {
                self.wills.remove(client_id)?;
            }
        }
        Ok(())
    }

    /// Counts one more entry referring to the message's body, writing the body if it is new.
    /// A body with one reference has no `message_refs` row: a message for one session (the
    /// common case) writes one table fewer per commit.
    fn hold_body(&mut self, message: &Message) -> Result<(), DbError> {
        if self.messages.get(message.id)?.is_none() {
            let record = encode_message(message, &self.clock);
            self.messages.insert(message.id, record.as_slice())?;
            return Ok(());
        }
        let refs = self.counted_refs(message.id)?.unwrap_or(1);
        self.message_refs
            .insert(message.id, refs.saturating_add(1))?;
        Ok(())
    }

    /// Counts one entry fewer referring to a body; deletes the body with its last reference.
    fn release_body(&mut self, message_id: u64) -> Result<(), DbError> {
        match self.counted_refs(message_id)? {
            Some(refs) if refs > 2 => {
                self.message_refs.insert(message_id, refs - 1)?;
            }
            // One reference left: that is what no row says.
            Some(2) => {
                self.message_refs.remove(message_id)?;
            }
            counted => {
                if counted.is_some() {
                    self.message_refs.remove(message_id)?;
                }
                if self.messages.remove(message_id)?.is_none() {
                    tracing::debug!(message_id, "store: released a body that is not stored");
                }
            }
        }
        Ok(())
    }

    /// Releases the bodies of several entries, in order. A run of consecutive message ids
    /// none of which has a counted reference (each body held by its entry alone: a queue that
    /// only this session fills, draining in order) is removed in one pass over the bodies;
    /// the others one by one.
    fn release_bodies(&mut self, message_ids: &[u64]) -> Result<(), DbError> {
        let mut rest = message_ids;
        while let Some(&first) = rest.first() {
            let consecutive = rest
                .iter()
                .zip(first..)
                .take_while(|(id, expected)| **id == *expected)
                .count();
            let (run, after) = rest.split_at(consecutive);
            rest = after;
            let ids = first..first + consecutive as u64;
            if consecutive > 1 && self.message_refs.range(ids.clone())?.next().is_none() {
                let mut removed = 0;
                self.messages.retain_in(ids, |_, _| {
                    removed += 1;
                    false
                })?;
                if removed < consecutive {
                    tracing::debug!(
                        first,
                        consecutive,
                        removed,
                        "store: released bodies that are not stored"
                    );
                }
            } else {
                for &message_id in run {
                    self.release_body(message_id)?;
                }
            }
        }
        Ok(())
    }

    /// The references counted in `message_refs` (a body with one reference has no row).
    fn counted_refs(&self, message_id: u64) -> Result<Option<u32>, DbError> {
        Ok(self
            .message_refs
            .get(message_id)?
            .map(|guard| guard.value()))
    }
}

/// Reads queue entries `range` of session `client_id` from `queue`, with their bodies from
/// `messages`, in order, in any transaction. An entry whose body is missing is left out (with
/// a warning): it cannot be delivered.
pub(super) fn read_queue_entries(
    queue: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    messages: &impl ReadableTable<u64, &'static [u8]>,
    clock: &WallClock,
    client_id: &str,
    range: Range<u64>,
) -> Result<LoadedEntries, DbError> {
    let mut entries = Vec::new();
    // Bodies read so far, by message id: an entry shares the body of an earlier one.
    let mut bodies: HashMap<u64, Arc<Message>> = HashMap::new();
    for entry in queue.range((client_id, range.start)..(client_id, range.end))? {
        let (key, value) = entry?;
        let record = QueueRecord::decode(value.value(), clock)?;
        let body = match bodies.entry(record.message_id) {
            Entry::Occupied(body) => body.get().clone(),
            Entry::Vacant(slot) => match messages.get(record.message_id)? {
                Some(guard) => {
                    let body = Arc::new(decode_message(guard.value(), clock)?);
                    slot.insert(body).clone()
                }
                None => {
                    tracing::warn!(%client_id, message_id = record.message_id, "store: queued message without a body skipped");
                    continue;
                }
            },
        };
        entries.push((key.value().1, record.into_delivery(body)));
    }
    Ok(entries)
}
