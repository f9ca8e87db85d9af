//! Operator tools over the durable store, behind `cairn sessions …`, `cairn store stats` and
//! `cairn serve --repair`: opening the store of a data directory while no broker runs on it,
//! what it holds (pure functions over a [`Recovered`] snapshot), deleting one session, and
//! moving an unusable database file aside.
//!
//! It changes nothing unless asked to drop a session, and never deletes a database file: a
//! quarantined file keeps its bytes under a new name in the same directory.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::codec::{QoS, SubscriptionOptions, Will};
use crate::model::Delivery;
use crate::model::OutboundState;
use crate::model::{Recovered, RecoveredSession, StoreOp};
use crate::store::redb::{DurableOptions, DurableStore, OpenError};
use crate::store::{Pace, StoreError};

pub use crate::store::redb::DATABASE_FILE;

/// The Session Expiry Interval of a session that never expires.
const NEVER_EXPIRES: u32 = u32::MAX;

/// Why an operator command on the store failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("there is no store at {}: nothing was created (is `data_dir` right?)", .path.display())]
    NoStore { path: PathBuf },
    #[error("the broker is running on {} ({}); stop it first", .dir.display(), holder_text(*.pid))]
    BrokerRunning { dir: PathBuf, pid: Option<u32> },
    #[error(transparent)]
    Open(OpenError),
    #[error("no session with client id {client_id:?} is stored")]
    NoSuchSession { client_id: String },
    #[error("cannot delete session {client_id:?}: {source}")]
    Delete {
        client_id: String,
        source: StoreError,
    },
    #[error("cannot inspect {}: {source}", .path.display())]
    Inspect { path: PathBuf, source: io::Error },
    #[error("cannot read the queued messages back: {0}")]
    Read(StoreError),
}

fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => {
            format!("another process holds the lock on {DATABASE_FILE}; its pid could not be found")
        }
    }
}

/// The store of a data directory, opened for an operator command: while it is open, no broker
/// can open it.
#[derive(Debug)]
pub struct AdminStore {
    store: DurableStore,
    recovered: Recovered,
    /// Every session's queued deliveries, read back from the store, by client id.
    queues: HashMap<Arc<str>, Vec<Delivery>>,
    file: PathBuf,
    /// The file's size before it was opened.
    file_bytes: u64,
}

impl AdminStore {
    /// Opens the store in `dir`. Refuses a directory without a database (creating nothing), and
    /// one a running broker holds, naming its pid when Linux's /proc/locks tells it.
    pub fn open(dir: &Path) -> Result<AdminStore, AdminError> {
        let file = dir.join(DATABASE_FILE);
        // Measured before opening: the store's own open and close may resize the file.
        let file_bytes = match fs::metadata(&file) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(AdminError::NoStore { path: file })
            }
            Err(source) => return Err(AdminError::Inspect { path: file, source }),
        };
        match DurableStore::open(dir, DurableOptions::default()) {
            Ok((store, recovered)) => {
                let queues = read_queues(&store, &recovered)?;
                Ok(AdminStore {
                    store,
                    recovered,
                    queues,
                    file,
                    file_bytes,
                })
            }
            Err(OpenError::AlreadyOpen { path }) => Err(AdminError::BrokerRunning {
                dir: dir.to_owned(),
                pid: lock_holder(&path),
            }),
            Err(other) => Err(AdminError::Open(other)),
        }
    }

    /// Everything the store held when it was opened.
    pub fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    /// Counts and sizes of what the store holds, with the size its file had when opened.
    pub fn stats(&self) -> StoreStats {
        StoreStats::of(&self.recovered, &self.queues, &self.file, self.file_bytes)
    }

    /// Everything stored about the session `client_id`, its deadline judged at `now`.
    pub fn details(&self, client_id: &str, now: SystemTime) -> Result<SessionDetails, AdminError> {
        let session = find(&self.recovered, client_id)?;
        let queued = self.queues.get(client_id).map_or(&[][..], Vec::as_slice);
        Ok(SessionDetails::of(session, queued, now))
    }

    /// Deletes the session `client_id` with every row it owns, waits for the commit, and closes
    /// the store. Call it outside an async runtime (it blocks).
    pub fn drop_session(self, client_id: &str) -> Result<(), AdminError> {
        find(&self.recovered, client_id)?;
        let committed = self.store.submit(
            vec![StoreOp::DeleteSession {
                client_id: Arc::from(client_id),
            }],
            Pace::Now,
        );
        let outcome = committed
            .blocking_recv()
            .unwrap_or(Err(StoreError::WriterGone));
        outcome.map_err(|source| AdminError::Delete {
            client_id: client_id.to_owned(),
            source,
        })
    }
}

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
}

impl WillLine {
    fn of(will: &Will) -> WillLine {
        WillLine {
            topic: will.topic.clone(),
            qos: will.qos,
            retain: will.retain,
            payload_bytes: will.payload.len(),
            delay: will.properties.will_delay_interval,
        }
    }
}

impl fmt::Display for WillLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  QoS {}, {} bytes, retain: {}, delay: {}s",
            printable(&self.topic),
            self.qos as u8,
            self.payload_bytes,
            yes_no(self.retain),
            self.delay.unwrap_or(0)
        )
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
    fn of(session: &RecoveredSession, queued: &[Delivery], now: SystemTime) -> SessionDetails {
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
                .map(|(packet_id, delivery, state)| InflightLine {
                    packet_id: *packet_id,
                    state: *state,
                    message: MessageLine::of(delivery),
                })
                .collect(),
            inbound_qos2: session.inbound_qos2.clone(),
            will: session.will.as_ref().map(WillLine::of),
        }
    }
}

/// Reads every session's queued deliveries back. Blocks; call it outside an async runtime.
fn read_queues(
    store: &DurableStore,
    recovered: &Recovered,
) -> Result<HashMap<Arc<str>, Vec<Delivery>>, AdminError> {
    let mut queues = HashMap::new();
    for session in &recovered.sessions {
        let Some((first, _)) = session.queue.first() else {
            continue;
        };
        let entries = store
            .load(session.client_id.clone(), *first..session.next_sequence)
            .blocking_recv()
            .unwrap_or(Err(StoreError::WriterGone))
            .map_err(AdminError::Read)?;
        let deliveries = entries.into_iter().map(|(_, delivery)| delivery).collect();
        queues.insert(session.client_id.clone(), deliveries);
    }
    Ok(queues)
}

fn find<'a>(recovered: &'a Recovered, client_id: &str) -> Result<&'a RecoveredSession, AdminError> {
    recovered
        .sessions
        .iter()
        .find(|session| &*session.client_id == client_id)
        .ok_or_else(|| AdminError::NoSuchSession {
            client_id: client_id.to_owned(),
        })
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
        for (_, delivery, _) in &session.inflight {
            self.inflight.add(note(delivery));
        }
    }
}

/// Why `error` means the database file itself cannot be used (unreadable, another program's,
/// of a newer schema, or failing recovery), or `None` when it does not: a lock held by a running
/// broker, or an I/O failure such as a denied permission, says nothing about the file's contents.
pub fn unusable_reason(error: &OpenError) -> Option<String> {
    match error {
        OpenError::Unreadable { cause, .. } => Some(format!(
            "it is not a database this cairn can open ({cause})"
        )),
        OpenError::Foreign { .. } => Some("it is a redb database of another program".into()),
        OpenError::NewerSchema {
            found, supported, ..
        } => Some(format!(
            "it has schema version {found}, newer than the version {supported} this cairn reads"
        )),
        OpenError::OlderSchema { found, .. } => Some(format!(
            "it has schema version {found}, written by a pre-release cairn"
        )),
        OpenError::Recovery { cause, .. } => Some(format!("it cannot be read back ({cause})")),
        OpenError::CreateDir { .. }
        | OpenError::AlreadyOpen { .. }
        | OpenError::Io { .. }
        | OpenError::RecoveryIo { .. }
        | OpenError::Spawn(_) => None,
    }
}

/// Moves `dir/cairn.redb` aside to `dir/cairn.redb.quarantined-<UTC time>` (with a `-N` suffix
/// if that name is taken) and returns the new path. The bytes are kept; only the name changes.
pub fn quarantine(dir: &Path) -> io::Result<PathBuf> {
    let stamp = UtcTime::from(SystemTime::now()).compact();
    let target = unused_name(dir, &format!("{DATABASE_FILE}.quarantined-{stamp}"))?;
    fs::rename(dir.join(DATABASE_FILE), &target)?;
    // The new name should survive a power cut before the new store is created.
    if let Err(error) = fs::File::open(dir).and_then(|handle| handle.sync_all()) {
        tracing::warn!(dir = %dir.display(), "cannot sync the directory after the move: {error}");
    }
    Ok(target)
}

/// `dir/base`, or `dir/base-N` with the first N not in use.
fn unused_name(dir: &Path, base: &str) -> io::Result<PathBuf> {
    for suffix in 0..u32::MAX {
        let name = match suffix {
            0 => base.to_owned(),
            n => format!("{base}-{n}"),
        };
        let candidate = dir.join(name);
        match fs::symlink_metadata(&candidate) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(candidate),
            Err(error) => return Err(error),
            Ok(_) => {}
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("every name {base}-N in {} is taken", dir.display()),
    ))
}

/// The pid of the process holding a lock with an owner on `file` (redb takes a whole-file
/// `flock`, listed with its pid), read from Linux's /proc/locks.
#[cfg(target_os = "linux")]
fn lock_holder(file: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let metadata = fs::metadata(file).ok()?;
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let wanted = LockedFile::of(metadata.dev(), metadata.ino());
    locks.lines().find_map(|line| wanted.holder_in(line))
}

/// Other systems have no /proc/locks: the pid cannot be told.
#[cfg(not(target_os = "linux"))]
fn lock_holder(_file: &Path) -> Option<u32> {
    None
}

/// A file as /proc/locks names it: device major and minor number, inode.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LockedFile {
    major: u64,
    minor: u64,
    inode: u64,
}

#[cfg(target_os = "linux")]
impl LockedFile {
    /// From `st_dev` and `st_ino`, splitting the device number as Linux encodes it.
    fn of(device: u64, inode: u64) -> LockedFile {
        LockedFile {
            major: ((device >> 8) & 0xfff) | ((device >> 32) & !0xfff),
            minor: (device & 0xff) | ((device >> 12) & !0xff),
            inode,
        }
    }

    /// The owner's pid if the /proc/locks `line` is a granted lock on this file with a known
    /// owner (open file description locks and waiting requests have none).
    fn holder_in(&self, line: &str) -> Option<u32> {
        // `N: KIND MODE ACCESS PID MAJ:MIN:INODE START END`; a waiter has `->` after `N:`.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, kind, _, _, pid, file, ..] = fields.as_slice() else {
            return None;
        };
        if *kind == "->" {
            return None;
        }
        let mut parts = file.split(':');
        let major = u64::from_str_radix(parts.next()?, 16).ok()?;
        let minor = u64::from_str_radix(parts.next()?, 16).ok()?;
        let inode = parts.next()?.parse().ok()?;
        let named = LockedFile {
            major,
            minor,
            inode,
        };
        if named != *self {
            return None;
        }
        pid.parse().ok()
    }
}

/// A wall-clock time as UTC calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UtcTime {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
}

impl From<SystemTime> for UtcTime {
    fn from(time: SystemTime) -> UtcTime {
        let seconds = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
        };
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        let in_day = seconds.rem_euclid(86_400);
        UtcTime {
            year,
            month,
            day,
            hour: in_day / 3600,
            minute: in_day % 3600 / 60,
            second: in_day % 60,
        }
    }
}

impl UtcTime {
    /// `20251125T221503Z`: ISO 8601 basic format, safe in file names.
    fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

impl fmt::Display for UtcTime {
    /// RFC 3339 in UTC, to the second: `2025-11-25T22:15:03Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// (year, month, day) of the proleptic Gregorian calendar for a count of days since
/// 1970-01-01, by Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468; // from 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
    use bytes::Bytes;
    use tempfile::TempDir;

    use super::*;
    use crate::codec::Properties;
    use crate::model::Message;
    use crate::store::redb::tests::message;
    use crate::store::redb::{DbError, RecordError, UnreadableFile};
    use ::redb::{DatabaseError, StorageError};

    /// The moment the test sessions went offline: 2023-11-14T22:13:20Z.
    fn offline_at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn enqueue(client_id: &str, message: Arc<Message>, subscription_ids: Vec<u32>) -> StoreOp {
        StoreOp::Enqueue {
            client_id: Arc::from(client_id),
            seq: message.id,
            delivery: Delivery {
                message,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids,
            },
        }
    }

    fn will() -> Will {
        Will {
            topic: "status/beta".into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                will_delay_interval: Some(30),
                ..Properties::default()
            },
        }
    }

    /// A store with two sessions: `alpha` (offline, expiry 3600 s, one subscription, one queued
    /// and one inflight message) and `beta` (connected at the last stop, never expires, a
    /// Will); and one retained message.
    fn populated() -> TempDir {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (store, _) = DurableStore::open(dir.path(), DurableOptions::default()).expect("open");
        let alpha: Arc<str> = Arc::from("alpha");
        let ops = vec![
            StoreOp::PutSession {
                client_id: alpha.clone(),
                expiry_interval: 3600,
            },
            StoreOp::Subscribe {
                client_id: alpha.clone(),
                filter: Arc::from("sensors/#"),
                options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                identifier: Some(7),
            },
            enqueue("alpha", message(1, "sensors/a", b"12345"), vec![7]),
            enqueue("alpha", message(2, "sensors/b", b"123"), vec![7]),
            StoreOp::Inflight {
                client_id: alpha.clone(),
                seq: 1,
                packet_id: 9,
            },
            StoreOp::Offline {
                client_id: alpha,
                at: offline_at(),
            },
            StoreOp::PutSession {
                client_id: Arc::from("beta"),
                expiry_interval: NEVER_EXPIRES,
            },
            StoreOp::Will {
                client_id: Arc::from("beta"),
                will: Some(Box::new(will())),
            },
            StoreOp::Retain {
                topic: Arc::from("config/mode"),
                message: Some(message(3, "config/mode", b"on")),
            },
        ];
        let committed = store
            .submit(ops, Pace::Window)
            .blocking_recv()
            .expect("writer answers");
        assert!(committed.is_ok(), "{committed:?}");
        store.close();
        dir
    }

    fn open(dir: &TempDir) -> AdminStore {
        AdminStore::open(dir.path()).unwrap_or_else(|error| panic!("admin open: {error}"))
    }

    #[test]
    fn database_file_is_the_one_the_store_opens() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let opened = DurableStore::open(dir.path(), DurableOptions::default()).expect("open");
        assert!(dir.path().join(DATABASE_FILE).is_file());
        drop(opened);
    }

    #[test]
    fn summaries_give_one_line_per_session() {
        let dir = populated();
        let summaries = summaries(open(&dir).recovered());
        assert_eq!(
            summaries,
            [
                SessionSummary {
                    client_id: Arc::from("alpha"),
                    expiry: Expiry::After(3600),
                    last_seen: LastSeen::OfflineSince(offline_at()),
                    subscriptions: 1,
                    queued: 1,
                    inflight: 1,
                    has_will: false,
                },
                SessionSummary {
                    client_id: Arc::from("beta"),
                    expiry: Expiry::Never,
                    last_seen: LastSeen::ConnectedAtLastStop,
                    subscriptions: 0,
                    queued: 0,
                    inflight: 0,
                    has_will: true,
                },
            ]
        );
        assert_eq!(summaries[0].last_seen.to_string(), "2023-11-14T22:13:20Z");
        assert_eq!(summaries[1].last_seen.to_string(), "connected at last stop");
        assert_eq!(summaries[1].expiry.to_string(), "never");
    }

    #[test]
    fn details_show_subscriptions_messages_and_will() {
        let dir = populated();
        let store = open(&dir);
        let soon = offline_at() + Duration::from_secs(10);
        let alpha = store.details("alpha", soon).expect("alpha is stored");
        assert_eq!(
            alpha.deadline,
            Deadline::At(offline_at() + Duration::from_secs(3600))
        );
        assert_eq!(
            alpha.subscriptions[0].to_string(),
            "sensors/#  QoS 1, no local: no, retain as published: no, retain handling: 0, \
             identifier: 7"
        );
        assert_eq!(
            alpha.queued[0].to_string(),
            "sensors/b  QoS 1, 3 bytes, retain: no, message 2, subscription identifiers: 7"
        );
        assert_eq!(
            alpha.inflight[0].to_string(),
            "packet 9, awaiting PUBACK: sensors/a  QoS 1, 5 bytes, retain: no, message 1, \
             subscription identifiers: 7"
        );
        assert_eq!(alpha.will, None);
        let beta = store.details("beta", soon).expect("beta is stored");
        assert_eq!(beta.deadline, Deadline::Never);
        assert_eq!(
            beta.will.map(|will| will.to_string()).as_deref(),
            Some("status/beta  QoS 1, 4 bytes, retain: yes, delay: 30s")
        );
    }

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
    fn unknown_session_is_an_error_naming_it() {
        let dir = populated();
        let store = open(&dir);
        let error = store
            .details("gamma", SystemTime::now())
            .expect_err("absent");
        assert!(error.to_string().contains("\"gamma\""), "{error}");
        let error = store.drop_session("gamma").expect_err("absent");
        assert!(matches!(error, AdminError::NoSuchSession { .. }), "{error}");
    }

    #[test]
    fn stats_count_rows_and_payload_bytes() {
        let dir = populated();
        let stats = open(&dir).stats();
        assert_eq!(stats.file, dir.path().join(DATABASE_FILE));
        assert!(stats.file_bytes > 0);
        assert_eq!((stats.sessions, stats.connected_at_last_stop), (2, 1));
        assert_eq!((stats.subscriptions, stats.wills), (1, 1));
        let tally = |count, payload_bytes| Tally {
            count,
            payload_bytes,
        };
        assert_eq!(stats.queued, tally(1, 3));
        assert_eq!(stats.inflight, tally(1, 5));
        assert_eq!(stats.bodies, tally(2, 8));
        assert_eq!(stats.retained, tally(1, 2));
    }

    #[test]
    fn dropping_a_session_deletes_it_and_nothing_else() {
        let dir = populated();
        open(&dir).drop_session("alpha").expect("alpha dropped");
        let store = open(&dir);
        let left: Vec<&str> = store
            .recovered()
            .sessions
            .iter()
            .map(|session| &*session.client_id)
            .collect();
        assert_eq!(left, ["beta"]);
        assert_eq!(store.recovered().retained.len(), 1);
    }

    #[test]
    fn a_directory_without_a_store_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let missing = dir.path().join("absent");
        let error = AdminStore::open(&missing).expect_err("no store");
        assert!(matches!(error, AdminError::NoStore { .. }), "{error}");
        assert!(!missing.exists(), "nothing is created");
    }

    #[test]
    fn an_open_store_is_reported_as_a_running_broker_with_its_pid() {
        let dir = populated();
        let running = DurableStore::open(dir.path(), DurableOptions::default()).expect("open");
        let error = AdminStore::open(dir.path()).expect_err("locked");
        let AdminError::BrokerRunning { pid, .. } = &error else {
            panic!("expected BrokerRunning, got {error}");
        };
        if cfg!(target_os = "linux") {
            assert_eq!(*pid, Some(std::process::id()), "{error}");
        }
        assert!(error.to_string().contains("stop it first"), "{error}");
        drop(running);
    }

    #[test]
    fn quarantine_keeps_the_bytes_under_a_new_name() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let original = dir.path().join(DATABASE_FILE);
        fs::write(&original, b"not a database").expect("write");
        let moved = quarantine(dir.path()).expect("moved");
        assert_eq!(moved.parent(), Some(dir.path()));
        let name = moved
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        assert!(name.starts_with("cairn.redb.quarantined-"), "{name}");
        assert!(name.ends_with('Z'), "{name}");
        assert_eq!(fs::read(&moved).expect("read"), b"not a database");
        assert!(!original.exists());
    }

    #[test]
    fn quarantine_never_overwrites_an_earlier_one() {
        let dir = tempfile::tempdir().expect("temporary directory");
        fs::write(dir.path().join("taken"), b"first").expect("write");
        fs::write(dir.path().join("taken-1"), b"second").expect("write");
        let free = unused_name(dir.path(), "taken").expect("a free name");
        assert_eq!(free, dir.path().join("taken-2"));
    }

    #[test]
    fn only_unusable_files_are_repairable() {
        let path = PathBuf::from("/data/cairn.redb");
        let unusable = [
            OpenError::Unreadable {
                path: path.clone(),
                cause: UnreadableFile(DatabaseError::Storage(StorageError::Corrupted(
                    "bad magic number".into(),
                ))),
            },
            OpenError::Foreign { path: path.clone() },
            OpenError::NewerSchema {
                path: path.clone(),
                found: 9,
                supported: 1,
            },
            OpenError::Recovery {
                path: path.clone(),
                cause: DbError::Record(RecordError::Invalid {
                    record: "session",
                    field: "state",
                }),
            },
        ];
        for error in &unusable {
            assert!(unusable_reason(error).is_some(), "{error}");
        }
        let usable = [
            OpenError::AlreadyOpen { path: path.clone() },
            OpenError::Io {
                path: path.clone(),
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            },
            OpenError::RecoveryIo {
                path,
                cause: DbError::Storage(StorageError::Io(io::Error::from(
                    io::ErrorKind::PermissionDenied,
                ))),
            },
        ];
        for error in &usable {
            assert_eq!(unusable_reason(error), None, "{error}");
        }
    }

    #[test]
    fn a_garbage_file_is_unusable() {
        let dir = tempfile::tempdir().expect("temporary directory");
        fs::write(dir.path().join(DATABASE_FILE), [0x5a_u8; 4096]).expect("write");
        let error = DurableStore::open(dir.path(), DurableOptions::default())
            .map(drop)
            .expect_err("garbage is refused");
        assert!(unusable_reason(&error).is_some(), "{error}");
    }

    #[test]
    fn times_print_as_rfc3339_utc() {
        let at = |seconds: u64| UtcTime::from(UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(at(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000).to_string(), "2023-11-14T22:13:20Z");
        assert_eq!(at(4_107_542_399).to_string(), "2100-02-28T23:59:59Z");
        assert_eq!(at(1_700_000_000).compact(), "20231114T221320Z");
        let before = UtcTime::from(UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(before.to_string(), "1969-12-31T23:59:59Z");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn proc_locks_lines_name_the_holder_of_a_file() {
        let file = LockedFile::of(0xfe00, 10_059_781);
        let line = |text: &str| file.holder_in(text);
        assert_eq!(
            line("3: FLOCK  ADVISORY  WRITE 11731 fe:00:10059781 0 EOF"),
            Some(11731)
        );
        assert_eq!(
            line("1: OFDLCK ADVISORY  WRITE -1 fe:00:10059781 0 EOF"),
            None
        );
        assert_eq!(
            line("3: FLOCK  ADVISORY  WRITE 11731 fe:00:10059782 0 EOF"),
            None
        );
        assert_eq!(
            line("3: FLOCK  ADVISORY  WRITE 11731 08:01:10059781 0 EOF"),
            None
        );
        assert_eq!(
            line("3: -> FLOCK  ADVISORY  WRITE 11732 fe:00:10059781 0 EOF"),
            None
        );
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(printable("sensor-1"), "sensor-1");
        assert_eq!(printable("evil\n\u{1b}[2J"), "evil\\n\\u{1b}[2J");
    }
}
