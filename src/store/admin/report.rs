//! What a store holds, as the operator commands print it: one line per session
//! (`cairn sessions list`), everything about one session (`cairn sessions show`) and counts and
//! sizes (`cairn store stats`). Pure functions over a [`Recovered`] snapshot and the queued
//! deliveries read back; they never touch the database.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::codec::{QoS, SubscriptionOptions};
use crate::model::{Delivery, Recovered, RecoveredSession};
use crate::model::{OutboundState, SessionWill, WillSender};

use super::calendar::UtcTime;

/// The Session Expiry Interval of a session that never expires.
pub(super) const NEVER_EXPIRES: u32 = u32::MAX;

/// Whether a session's Session Expiry Interval ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    /// Seconds after its connection ends.
    After(u32),
}

impl Expiry {
    fn of(interval: u32) -> Expiry {
        match interval {
            NEVER_EXPIRES => Expiry::Never,
            seconds => Expiry::After(seconds),
        }
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expiry::Never => f.write_str("never"),
            Expiry::After(seconds) => write!(f, "{seconds}s"),
        }
    }
}

/// Where a session's connection stood when the store last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastSeen {
    /// Connected when the broker stopped: at the next start it counts as offline from then.
    ConnectedAtLastStop,
    OfflineSince(SystemTime),
}

impl fmt::Display for LastSeen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastSeen::ConnectedAtLastStop => f.write_str("connected at last stop"),
            LastSeen::OfflineSince(since) => write!(f, "{}", UtcTime::from(*since)),
        }
    }
}

/// One stored session in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub client_id: Arc<str>,
    pub expiry: Expiry,
    pub last_seen: LastSeen,
    pub subscriptions: usize,
    pub queued: usize,
    pub inflight: usize,
    pub has_will: bool,
}

impl SessionSummary {
    fn of(session: &RecoveredSession) -> SessionSummary {
        SessionSummary {
            client_id: session.client_id.clone(),
            expiry: Expiry::of(session.expiry_interval),
            last_seen: session
                .offline_since
                .map_or(LastSeen::ConnectedAtLastStop, LastSeen::OfflineSince),
            subscriptions: session.subscriptions.len(),
            queued: session.queue.len(),
            inflight: session.inflight.len(),
            has_will: session.will.is_some(),
        }
    }
}

/// Every stored session, by client identifier.
pub fn summaries(recovered: &Recovered) -> Vec<SessionSummary> {
    recovered.sessions.iter().map(SessionSummary::of).collect()
}

/// When a session ends if no client resumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    Never,
    At(SystemTime),
    /// Already passed: the broker deletes the session when it next starts.
    Passed(SystemTime),
    /// Its connection was open at the last stop: the interval counts from the next start.
    AfterNextStart(u32),
}

impl Deadline {
    fn of(expiry: Expiry, last_seen: LastSeen, now: SystemTime) -> Deadline {
        let Expiry::After(seconds) = expiry else {
            return Deadline::Never;
        };
        let LastSeen::OfflineSince(since) = last_seen else {
            return Deadline::AfterNextStart(seconds);
        };
        match since.checked_add(Duration::from_secs(u64::from(seconds))) {
            Some(at) if at <= now => Deadline::Passed(at),
            Some(at) => Deadline::At(at),
            None => Deadline::Never,
        }
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Deadline::Never => f.write_str("never"),
            Deadline::At(at) => write!(f, "{}", UtcTime::from(*at)),
            Deadline::Passed(at) => write!(
                f,
                "{} (passed: the broker deletes the session when it next starts)",
                UtcTime::from(*at)
            ),
            Deadline::AfterNextStart(seconds) => {
                write!(f, "{seconds}s after the broker next starts")
            }
        }
    }
}

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionLine {
    pub filter: Arc<str>,
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

impl fmt::Display for SubscriptionLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = &self.options;
        write!(
            f,
            "{}  QoS {}, no local: {}, retain as published: {}, retain handling: {}",
            printable(&self.filter),
            options.qos as u8,
            yes_no(options.no_local),
            yes_no(options.retain_as_published),
            options.retain_handling
        )?;
        match self.identifier {
            Some(identifier) => write!(f, ", identifier: {identifier}"),
            None => Ok(()),
        }
    }
}

/// One queued (or inflight) delivery of a message to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageLine {
    pub message_id: u64,
    pub topic: Arc<str>,
    /// The QoS it is delivered with.
    pub qos: QoS,
    pub payload_bytes: usize,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
}

impl MessageLine {
    fn of(delivery: &Delivery) -> MessageLine {
        MessageLine {
            message_id: delivery.message.id,
            topic: delivery.message.topic.clone(),
            qos: delivery.qos,
            payload_bytes: delivery.message.payload.len(),
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
        }
    }
}

impl fmt::Display for MessageLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  QoS {}, {} bytes, retain: {}, message {}",
            printable(&self.topic),
            self.qos as u8,
            self.payload_bytes,
            yes_no(self.retain),
            self.message_id
        )?;
        if !self.subscription_ids.is_empty() {
            let ids: Vec<String> = self.subscription_ids.iter().map(u32::to_string).collect();
            write!(f, ", subscription identifiers: {}", ids.join(" "))?;
        }
        Ok(())
    }
}

/// One message of the inflight window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InflightLine {
    pub packet_id: u16,
    pub state: OutboundState,
    pub message: MessageLine,
}

impl fmt::Display for InflightLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            OutboundState::AwaitingPubAck => "awaiting PUBACK",
            OutboundState::AwaitingPubRec => "awaiting PUBREC",
            OutboundState::AwaitingPubComp => "awaiting PUBCOMP",
        };
        write!(f, "packet {}, {state}: {}", self.packet_id, self.message)
    }
}

/// A session's stored Will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillLine {
    pub topic: String,
    pub qos: QoS,
    pub retain: bool,
    pub payload_bytes: usize,
    /// Will Delay Interval in seconds (5.0).
    pub delay: Option<u32>,
    /// Who set it: the ACL in force when it is sent must let them write its topic.
    pub sender: WillSender,
}

impl WillLine {
    fn of(stored: &SessionWill) -> WillLine {
        let will = &stored.will;
        WillLine {
            topic: will.topic.clone(),
            qos: will.qos,
            retain: will.retain,
            payload_bytes: will.payload.len(),
            delay: will.properties.will_delay_interval,
            sender: stored.sender.clone(),
        }
    }
}

impl fmt::Display for WillLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  QoS {}, {} bytes, retain: {}, delay: {}s, set by: ",
            printable(&self.topic),
            self.qos as u8,
            self.payload_bytes,
            yes_no(self.retain),
            self.delay.unwrap_or(0)
        )?;
        match &self.sender {
            WillSender::Client(Some(user)) => write!(f, "user {}", printable(user)),
            WillSender::Client(None) => f.write_str("a client without a user name"),
            WillSender::Unknown => {
                f.write_str("unknown (stored by an older release; sent without an ACL check)")
            }
        }
    }
}

/// Everything stored about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDetails {
    pub summary: SessionSummary,
    pub deadline: Deadline,
    /// By filter.
    pub subscriptions: Vec<SubscriptionLine>,
    /// Oldest first.
    pub queued: Vec<MessageLine>,
    /// In send order.
    pub inflight: Vec<InflightLine>,
    /// Inbound QoS 2 packet identifiers awaiting PUBREL, ascending.
    pub inbound_qos2: Vec<u16>,
    pub will: Option<WillLine>,
}

impl SessionDetails {
    pub(super) fn of(
        session: &RecoveredSession,
        queued: &[Delivery],
        now: SystemTime,
    ) -> SessionDetails {
        let summary = SessionSummary::of(session);
        SessionDetails {
            deadline: Deadline::of(summary.expiry, summary.last_seen, now),
            summary,
            subscriptions: session
                .subscriptions
                .iter()
                .map(|(filter, options, identifier)| SubscriptionLine {
                    filter: filter.clone(),
                    options: *options,
                    identifier: *identifier,
                })
                .collect(),
            queued: queued.iter().map(MessageLine::of).collect(),
            inflight: session
                .inflight
                .iter()
                .map(|entry| InflightLine {
                    packet_id: entry.packet_id,
                    state: entry.state,
                    message: MessageLine::of(&entry.delivery),
                })
                .collect(),
            inbound_qos2: session.inbound_qos2.clone(),
            will: session.will.as_ref().map(WillLine::of),
        }
    }
}

/// How many of something, and the payload bytes they carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: usize,
    pub payload_bytes: u64,
}

impl Tally {
    fn add(&mut self, payload_bytes: usize) {
        self.count += 1;
        self.payload_bytes += u64::try_from(payload_bytes).unwrap_or(u64::MAX);
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} payload bytes)", self.count, self.payload_bytes)
    }
}

/// Counts and sizes of what a store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    pub file: PathBuf,
    pub file_bytes: u64,
    pub sessions: usize,
    pub connected_at_last_stop: usize,
    pub subscriptions: usize,
    pub wills: usize,
    /// Queue entries of every session: a message queued for two sessions counts twice.
    pub queued: Tally,
    /// Inflight entries of every session.
    pub inflight: Tally,
    /// Message bodies behind the queue and inflight entries, each stored once.
    pub bodies: Tally,
    pub retained: Tally,
}

impl StoreStats {
    /// The counts of `recovered` and its `queues`, kept in `file` of `file_bytes` bytes.
    pub fn of(
        recovered: &Recovered,
        queues: &HashMap<Arc<str>, Vec<Delivery>>,
        file: &Path,
        file_bytes: u64,
    ) -> StoreStats {
        let mut stats = StoreStats {
            file: file.to_owned(),
            file_bytes,
            sessions: recovered.sessions.len(),
            connected_at_last_stop: 0,
            subscriptions: 0,
            wills: 0,
            queued: Tally::default(),
            inflight: Tally::default(),
            bodies: Tally::default(),
            retained: Tally::default(),
        };
        let mut bodies = HashMap::new();
        for session in &recovered.sessions {
            let queued = queues
                .get(&session.client_id)
                .map_or(&[][..], Vec::as_slice);
            stats.count_session(session, queued, &mut bodies);
        }
        for payload_bytes in bodies.into_values() {
            stats.bodies.add(payload_bytes);
        }
        for message in &recovered.retained {
            stats.retained.add(message.payload.len());
        }
        stats
    }

    /// Adds one session's rows; notes the payload size of each message body by id.
    fn count_session(
        &mut self,
        session: &RecoveredSession,
        queued: &[Delivery],
        bodies: &mut HashMap<u64, usize>,
    ) {
        self.connected_at_last_stop += usize::from(session.offline_since.is_none());
        self.subscriptions += session.subscriptions.len();
        self.wills += usize::from(session.will.is_some());
        let mut note = |delivery: &Delivery| {
            let payload_bytes = delivery.message.payload.len();
            bodies.insert(delivery.message.id, payload_bytes);
            payload_bytes
        };
        for delivery in queued {
            self.queued.add(note(delivery));
        }
        for entry in &session.inflight {
            self.inflight.add(note(&entry.delivery));
        }
    }
}

/// `yes` or `no`.
pub fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

/// `text` with control characters escaped, so a client id or topic cannot garble a terminal.
pub fn printable(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::admin::tests::offline_at;

    #[test]
    fn deadline_passes_after_the_expiry_interval() {
        let offline = LastSeen::OfflineSince(offline_at());
        let later = offline_at() + Duration::from_secs(4000);
        let deadline = Deadline::of(Expiry::After(3600), offline, later);
        assert_eq!(
            deadline,
            Deadline::Passed(offline_at() + Duration::from_secs(3600))
        );
        assert!(deadline.to_string().contains("passed"), "{deadline}");
        assert_eq!(
            Deadline::of(Expiry::After(60), LastSeen::ConnectedAtLastStop, later),
            Deadline::AfterNextStart(60)
        );
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(printable("sensor-1"), "sensor-1");
        assert_eq!(printable("evil\n\u{1b}[2J"), "evil\\n\\u{1b}[2J");
    }
}
