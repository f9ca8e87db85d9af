//! Reading everything back at open: sessions with their subscriptions, queue positions and
//! sizes (the queued deliveries stay on disk until a connection loads them), inflight windows,
//! inbound QoS 2 state and wills, the retained messages, and the next free message id.
//!
//! One read transaction, so the picture is one committed state. Message bodies are decoded once
//! per id and shared by every delivery that refers to them. Rows of a session that does not
//! exist, or entries whose body is missing, are skipped with a warning: they cannot be
//! delivered, and refusing to start over them would lose everything else.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use redb::{Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable};

use crate::model::{Delivery, Message};
use crate::model::{Inflight, OutboundState, FIRST_RELEASE_ORDER};

use super::clock::WallClock;
use super::records::{
    decode_message, decode_will, InflightRecord, QueueRecord, SessionRecord, SubscriptionRecord,
};
use super::tables::{
    DbError, INBOUND_QOS2, INFLIGHT, MESSAGES, QUEUE, RETAINED, SESSIONS, SUBSCRIPTIONS, WILLS,
};
use crate::model::{Recovered, RecoveredSession, StoredEntry};

/// Reads the whole durable state.
pub fn recover(database: &Database) -> Result<Recovered, DbError> {
    let txn = database.begin_read()?;
    let messages = txn.open_table(MESSAGES)?;
    let last_body = messages.last()?.map(|(key, _)| key.value());
    let mut recovery = Recovery {
        sessions: BTreeMap::new(),
        bodies: HashMap::new(),
        messages,
        next_message_id: last_body.map_or(1, |id| id + 1),
        clock: WallClock::now(),
    };
    recovery.read_sessions(&txn)?;
    recovery.read_subscriptions(&txn)?;
    recovery.read_queues(&txn)?;
    recovery.read_inflight(&txn)?;
    recovery.read_inbound_qos2(&txn)?;
    recovery.read_wills(&txn)?;
    let retained = recovery.read_retained(&txn)?;
    Ok(Recovered {
        sessions: recovery.sessions.into_values().collect(),
        retained,
        next_message_id: recovery.next_message_id,
    })
}

/// The state being rebuilt.
struct Recovery {
    sessions: BTreeMap<Arc<str>, RecoveredSession>,
    /// Bodies decoded so far, by message id.
    bodies: HashMap<u64, Arc<Message>>,
    messages: ReadOnlyTable<u64, &'static [u8]>,
    /// Above every message id held (bodies and retained messages).
    next_message_id: u64,
    clock: WallClock,
}

impl Recovery {
    fn read_sessions(&mut self, txn: &ReadTransaction) -> Result<(), DbError> {
        for entry in txn.open_table(SESSIONS)?.iter()? {
            let (key, value) = entry?;
            let record = SessionRecord::decode(value.value())?;
            let client_id: Arc<str> = Arc::from(key.value());
            self.sessions.insert(
                client_id.clone(),
                RecoveredSession::new(client_id, record.expiry_interval, record.offline_since),
            );
        }
        Ok(())
    }

    /// Whether the session of a row exists; warns about an orphan row.
    fn is_known(&self, client_id: &str, row: &str) -> bool {
        let known = self.sessions.contains_key(client_id);
        if !known {
            tracing::warn!(%client_id, "store: {row} of an unknown session skipped at recovery");
        }
        known
    }

    /// The session a row belongs to, or `None` (with a warning) for an orphan row.
    fn session(&mut self, client_id: &str, row: &str) -> Option<&mut RecoveredSession> {
        if self.is_known(client_id, row) {
            self.sessions.get_mut(client_id)
        } else {
            None
        }
    }

    fn read_subscriptions(&mut self, txn: &ReadTransaction) -> Result<(), DbError> {
        for entry in txn.open_table(SUBSCRIPTIONS)?.iter()? {
            let (key, value) = entry?;
            let (client_id, filter) = key.value();
            let record = SubscriptionRecord::decode(value.value())?;
            if let Some(session) = self.session(client_id, "subscription") {
                session
                    .subscriptions
                    .push((Arc::from(filter), record.options, record.identifier));
            }
        }
        Ok(())
    }

    /// The shared body of a message, or `None` (with a warning) if it is missing.
    fn body(&mut self, message_id: u64) -> Result<Option<Arc<Message>>, DbError> {
        if let Some(body) = self.bodies.get(&message_id) {
            return Ok(Some(body.clone()));
        }
        let Some(guard) = self.messages.get(message_id)? else {
            tracing::warn!(
                message_id,
                "store: queued message without a body skipped at recovery"
            );
            return Ok(None);
        };
        let body = Arc::new(decode_message(guard.value(), &self.clock)?);
        self.bodies.insert(message_id, body.clone());
        Ok(Some(body))
    }

    fn delivery(&mut self, record: QueueRecord) -> Result<Option<Delivery>, DbError> {
        Ok(self
            .body(record.message_id)?
            .map(|body| record.into_delivery(body)))
    }

    /// Queues come out oldest first (the key orders by client id, then sequence number), as
    /// positions and sizes only: recovery reads no queued body.
    fn read_queues(&mut self, txn: &ReadTransaction) -> Result<(), DbError> {
        for entry in txn.open_table(QUEUE)?.iter()? {
            let (key, value) = entry?;
            let (client_id, seq) = key.value();
            let record = QueueRecord::decode(value.value(), &self.clock)?;
            if let Some(session) = self.session(client_id, "queue entry") {
                session.queue.push(StoredEntry {
                    seq,
                    size: record.size,
                    queued_at: record.queued_at,
                });
                session.next_sequence = session.next_sequence.max(seq + 1);
            }
        }
        Ok(())
    }

    /// Inflight entries are keyed by packet id; their resend order is restored from `order`:
    /// the entries awaiting PUBCOMP by release order (see [`Inflight::release_order`]), then
    /// those awaiting PUBACK or PUBREC by queue sequence number.
    fn read_inflight(&mut self, txn: &ReadTransaction) -> Result<(), DbError> {
        let mut window: Vec<(bool, u64, Arc<str>, Inflight)> = Vec::new();
        for entry in txn.open_table(INFLIGHT)?.iter()? {
            let (key, value) = entry?;
            let (client_id, packet_id) = key.value();
            let record = InflightRecord::decode(value.value(), &self.clock)?;
            let Some(session) = self.session(client_id, "inflight entry") else {
                continue;
            };
            if record.order < FIRST_RELEASE_ORDER {
                session.next_sequence = session.next_sequence.max(record.order + 1);
            }
            if let Some(delivery) = self.delivery(record.delivery)? {
                let released = record.state == OutboundState::AwaitingPubComp;
                let entry = Inflight {
                    packet_id,
                    delivery,
                    state: record.state,
                    release_order: if released { record.order } else { 0 },
                    sent_topic: record.sent_topic.map(Arc::from),
                };
                window.push((!released, record.order, Arc::from(client_id), entry));
            }
        }
        window.sort_by_key(|(not_released, order, ..)| (*not_released, *order));
        for (_, _, client_id, entry) in window {
            if let Some(session) = self.sessions.get_mut(&client_id) {
                session.inflight.push(entry);
            }
        }
        Ok(())
    }

    fn read_inbound_qos2(&mut self, txn: &ReadTransaction) -> Result<(), DbError> {
        for entry in txn.open_table(INBOUND_QOS2)?.iter()? {
            let (key, _) = entry?;
            let (client_id, packet_id) = key.value();
            if let Some(session) = self.session(client_id, "inbound QoS 2 id") {
                session.inbound_qos2.push(packet_id);
            }
        }
        Ok(())
    }

    fn read_wills(&mut self, txn: &ReadTransaction) -> Result<(), DbError> {
        for entry in txn.open_table(WILLS)?.iter()? {
            let (key, value) = entry?;
            let will = decode_will(value.value())?;
            if let Some(session) = self.session(key.value(), "will") {
                session.will = Some(will);
            }
        }
        Ok(())
    }

    fn read_retained(&mut self, txn: &ReadTransaction) -> Result<Vec<Arc<Message>>, DbError> {
        let mut retained = Vec::new();
        for entry in txn.open_table(RETAINED)?.iter()? {
            let (_, value) = entry?;
            let message = decode_message(value.value(), &self.clock)?;
            self.next_message_id = self.next_message_id.max(message.id + 1);
            let shared = self
                .bodies
                .entry(message.id)
                .or_insert_with(|| Arc::new(message))
                .clone();
            retained.push(shared);
        }
        Ok(retained)
    }
}
