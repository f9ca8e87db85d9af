//! The snapshot the store reads back at start-up and the engine rebuilds its state from.

use std::sync::Arc;
use std::time::SystemTime;

use crate::codec::SubscriptionOptions;

use super::message::{Inflight, Message};
use super::will::SessionWill;

/// Everything read back at open.
#[derive(Debug)]
pub struct Recovered {
    /// By client identifier.
    pub sessions: Vec<RecoveredSession>,
    pub retained: Vec<Arc<Message>>,
    /// Greater than every message id in the database (and every id it ever held).
    pub next_message_id: u64,
}

/// One session as it was last committed.
#[derive(Debug)]
pub struct RecoveredSession {
    pub client_id: Arc<str>,
    pub expiry_interval: u32,
    /// When its connection ended (wall clock), from the last Offline op; None if it was
    /// connected when the broker stopped (the engine treats that as "offline since start-up").
    pub offline_since: Option<SystemTime>,
    /// (filter, options, subscription identifier), by filter.
    pub subscriptions: Vec<(Arc<str>, SubscriptionOptions, Option<u32>)>,
    /// Queue entries, oldest first; their deliveries stay on disk until the store's load reads
    /// them.
    pub queue: Vec<StoredEntry>,
    /// Above every sequence number the session's queue and inflight entries use.
    pub next_sequence: u64,
    /// Inflight window in resend order: the entries awaiting PUBCOMP in the order their
    /// PUBRECs came, then those awaiting PUBACK or PUBREC in the order they were sent.
    pub inflight: Vec<Inflight>,
    /// Inbound QoS 2 packet identifiers awaiting PUBREL, ascending.
    pub inbound_qos2: Vec<u16>,
    /// Its Will and who set it.
    pub will: Option<SessionWill>,
}

/// What recovery reads of one queue entry: where it is, what it weighs, and its age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredEntry {
    /// Its sequence number in the session's queue.
    pub seq: u64,
    /// Bytes it counts for in the queue bounds.
    pub size: u32,
    /// When it was queued ([`super::unix_seconds`]).
    pub queued_at: u32,
}

impl RecoveredSession {
    /// A session with nothing in it yet but its record: the rest is read after it.
    pub fn new(
        client_id: Arc<str>,
        expiry_interval: u32,
        offline_since: Option<SystemTime>,
    ) -> RecoveredSession {
        RecoveredSession {
            client_id,
            expiry_interval,
            offline_since,
            subscriptions: Vec::new(),
            queue: Vec::new(),
            next_sequence: 0,
            inflight: Vec::new(),
            inbound_qos2: Vec::new(),
            will: None,
        }
    }
}
