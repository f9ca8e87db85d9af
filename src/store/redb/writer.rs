//! The group-commit writer: one dedicated thread owns the [`Database`], gathers from its
//! [`Inbox`] every batch submitted while it was busy (plus those arriving within the commit
//! window) into ONE write transaction, commits it once, then answers every waiter.
//!
//! A failed group is answered with [`StoreError::Commit`] and aborted; the database is then closed
//! and reopened before the next group (redb refuses writes after a failed commit until a reopen
//! repairs it), so later batches try again and nothing committed before is lost.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::model::Delivery;
use crate::model::StoreOp;
use crate::store::{Pace, StoreError};
use redb::{Database, Durability};

use super::answers::{Answers, Reply};
use super::apply::{Applied, Tables};
use super::database::OpenError;
use super::elide::{self, Plan};
use super::inbox::Inbox;
use super::tables::DbError;

/// Most batches one commit gathers, so a flood cannot build an unbounded transaction.
pub(super) const MAX_BATCHES_PER_COMMIT: usize = 4096;

/// A group with this many records is worth its commit: the commit window stops waiting once a
/// group holds them. Records are queued messages and the changes a client's SUBACK or
/// UNSUBACK waits for (see [`Job::records`]; a CONNACK that waits asks for its commit at
/// once, and a SUBACK's group waits only for a pause, see [`Job::answers_a_subscription`]).
/// A busy broker then commits as if the window were 0: a publisher that keeps at least this
/// many messages in flight is not slowed to one window per round trip, and clients
/// reconnecting and subscribing together after a reboot, whose subscriptions never pause,
/// are not held for the pause. (Sends and acks do not count: waiting for them is what lets
/// a delivery to an online subscriber cancel out before it is written.)
pub(super) const WINDOW_CLOSES_AT: usize = 16;

/// Longest acknowledgements received alone wait for a commit made for another reason (see
/// [`Job::lazy`]) before they are committed by themselves.
pub(super) const LAZY_WINDOW: Duration = Duration::from_secs(1);

/// Why a group commit failed: the database could not be opened again after an earlier
/// failure, or the write transaction failed (a full disk shows here).
#[derive(Debug, thiserror::Error)]
pub enum CommitFailure {
    #[error(transparent)]
    Reopen(OpenError),
    #[error(transparent)]
    Write(DbError),
}

/// Queue entries read back: (sequence number, delivery), ascending.
pub type LoadedEntries = Vec<(u64, Delivery)>;

/// Where a load's answer goes.
pub type LoadReply = Reply<Result<LoadedEntries, StoreError>>;

/// Where a commit's or a barrier's outcome goes.
pub type DoneReply = Reply<Result<(), StoreError>>;

/// One piece of work for the writer, done in the order submitted.
#[derive(Debug)]
pub enum Job {
    /// A batch of changes, the waiter to answer once it is committed, and whether its group
    /// may wait for the commit window.
    Commit {
        ops: Vec<StoreOp>,
        done: DoneReply,
        pace: Pace,
    },
    /// Nothing to write: answered once every batch submitted before it is committed (with an
    /// error if any commit has failed by then), for an acknowledgement of state the store
    /// was handed earlier. It counts as a record (see [`Job::records`]): a client waits for it.
    Barrier { done: DoneReply },
    /// A read of queue entries `range` of a session, seeing everything submitted before it;
    /// answered once what it read is durable. (`reply` is taken when the load is answered.)
    Load {
        client_id: Arc<str>,
        range: Range<u64>,
        reply: Option<LoadReply>,
    },
}

impl Job {
    /// Whether its group must commit without waiting for the window: a batch of [`Pace::Now`],
    /// or a load (a connection waits for its entries to send them).
    pub(super) fn urgent(&self) -> bool {
        match self {
            Job::Commit { pace, .. } => *pace == Pace::Now,
            Job::Barrier { .. } => false,
            Job::Load { .. } => true,
        }
    }

    /// Whether it may wait for the next group that commits for another reason, up to
    /// [`LAZY_WINDOW`]: a batch of acknowledgements received (a receiver's PUBACK or PUBCOMP,
    /// a refusing PUBREC) and nothing else. Nobody waits for it, and a crash before it is
    /// written costs at most a repeat, never a loss or a second QoS 2 delivery: the QoS 1 or
    /// refused message goes again (DUP), a PUBREL is answered again. An acknowledgement that
    /// comes a round trip after its message's commit (an upstream over a WAN, a slow
    /// subscriber) so rides with the next message's commit instead of making one of its own.
    pub(super) fn lazy(&self) -> bool {
        match self {
            Job::Commit { ops, pace, .. } => {
                *pace == Pace::Window
                    && !ops.is_empty()
                    && ops.iter().all(|op| matches!(op, StoreOp::Acked { .. }))
            }
            Job::Barrier { .. } | Job::Load { .. } => false,
        }
    }

    /// Whether a client's SUBACK or UNSUBACK waits for it: a subscription added or removed, or
    /// a barrier (the SUBACK of an unchanged one). Its group waits for its work to pause, not
    /// for the whole window (see [`super::inbox`]): a client waits for that answer once per
    /// connection, not per message, and nothing in it cancels out with what comes later.
    /// Held for the window, clients that connect and subscribe a few at a time got through
    /// one per window each.
    pub(super) fn answers_a_subscription(&self) -> bool {
        match self {
            Job::Commit { ops, .. } => ops
                .iter()
                .any(|op| matches!(op, StoreOp::Subscribe { .. } | StoreOp::Unsubscribe { .. })),
            Job::Barrier { .. } => true,
            Job::Load { .. } => false,
        }
    }

    /// Whether it counts as in flight until its group is answered (see
    /// [`DurableMetrics::in_flight`]): a commit or a barrier, not a load.
    pub(super) fn answered_by_writer(&self) -> bool {
        matches!(self, Job::Commit { .. } | Job::Barrier { .. })
    }

    /// The records of this job that count towards [`WINDOW_CLOSES_AT`]: messages stored (queue
    /// entries and retained messages), subscriptions added or removed (a SUBACK or UNSUBACK
    /// waits for them), and a barrier (the SUBACK of an unchanged subscription waits for it).
    /// A session stored at CONNECT is none: its CONNACK either waits and asked for
    /// [`Pace::Now`], or does not wait, and then it rides with the next group (the client's
    /// later acks wait for it there), so a storm of reconnecting clients commits one group per
    /// 16 subscriptions rather than per 8 clients.
    pub(super) fn records(&self) -> usize {
        match self {
            Job::Commit { ops, .. } => ops.iter().filter(|op| counts_as_record(op)).count(),
            Job::Barrier { .. } => 1,
            Job::Load { .. } => 0,
        }
    }
}

/// Whether `op` counts towards [`WINDOW_CLOSES_AT`] (see [`Job::records`]).
fn counts_as_record(op: &StoreOp) -> bool {
    matches!(
        op,
        StoreOp::Enqueue { .. }
            | StoreOp::Retain { .. }
            | StoreOp::Subscribe { .. }
            | StoreOp::Unsubscribe { .. }
    )
}

/// What one group did: its changes, and the entries its loads read that wait for the commit.
struct Written {
    applied: Applied,
    /// Whether a transaction was committed (a group of loads only commits nothing).
    committed: bool,
    /// Per load, in group order: `None` if it was answered already.
    loads: Vec<Option<Result<LoadedEntries, DbError>>>,
}

/// Counters of the writer's work.
#[derive(Debug, Default)]
pub struct DurableMetrics {
    /// Write transactions committed.
    pub commits: AtomicU64,
    /// Groups whose transaction failed (their waiters got an error).
    pub failed_commits: AtomicU64,
    /// Submitted batches committed.
    pub batches: AtomicU64,
    /// Operations committed.
    pub ops: AtomicU64,
    /// Queue entries committed (one per message per receiving session).
    pub messages: AtomicU64,
    /// Queue entries never written: sent and acknowledged (or discarded) before their group
    /// reached the disk.
    pub elided: AtomicU64,
    /// Bytes the writer thread sent to storage (`/proc/thread-self/io` write_bytes; 0 where
    /// unavailable): the SD-card wear.
    pub bytes_written: AtomicU64,
    /// Batches and barriers handed to the writer whose group is not committed (or failed)
    /// yet: 0 means everything submitted so far is settled.
    pub in_flight: AtomicU64,
}

impl DurableMetrics {
    /// Average queue entries per commit so far.
    pub fn messages_per_commit(&self) -> f64 {
        per_commit(&self.messages, &self.commits)
    }

    /// Average batches per commit so far: how much group commit gathers.
    pub fn batches_per_commit(&self) -> f64 {
        per_commit(&self.batches, &self.commits)
    }

    /// Counts a group that was written: committed, or left uncommitted because nothing in it
    /// needed the disk.
    fn record_group(&self, group: &[Job], written: &Written, bytes_written: u64) {
        let batches = group
            .iter()
            .filter(|job| matches!(job, Job::Commit { .. }))
            .count();
        let applied = written.applied;
        self.commits
            .fetch_add(u64::from(written.committed), Ordering::Relaxed);
        self.batches.fetch_add(batches as u64, Ordering::Relaxed);
        self.elided.fetch_add(applied.elided, Ordering::Relaxed);
        self.ops.fetch_add(applied.ops, Ordering::Relaxed);
        self.messages.fetch_add(applied.enqueued, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(bytes_written, Ordering::Relaxed);
    }
}

fn per_commit(count: &AtomicU64, commits: &AtomicU64) -> f64 {
    let commits = commits.load(Ordering::Relaxed);
    if commits == 0 {
        0.0
    } else {
        count.load(Ordering::Relaxed) as f64 / commits as f64
    }
}

/// Opens the database again after a failed commit.
pub type Reopen = Box<dyn FnMut() -> Result<Database, OpenError> + Send>;

/// The writer thread's state.
pub struct Writer {
    /// The database file, for logs.
    pub path: PathBuf,
    /// `None` after a failed group, until reopened.
    pub database: Option<Database>,
    pub reopen: Reopen,
    /// Commit with fsync ([`Durability::Immediate`]); false only for benchmarks.
    pub fsync: bool,
    pub commit_window: Duration,
    pub metrics: Arc<DurableMetrics>,
    /// Groups failed since the last commit that succeeded: a full disk fails every commit,
    /// and only the first of a run is logged as an error.
    pub failed_in_a_row: u64,
}

impl Writer {
    /// Starts the writer thread; it runs until every sender of `jobs` is gone and the last
    /// group is committed.
    pub fn spawn(self, inbox: Arc<Inbox>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("cairn-store".into())
            .spawn(move || self.run(&inbox))
    }

    fn run(mut self, inbox: &Inbox) {
        let _abandon_on_panic = AbandonOnPanic(inbox);
        let io = ThreadIo::open();
        while let Some(group) = inbox.gather(self.commit_window) {
            self.commit_group(group, &io);
        }
        self.finish();
    }

    /// Commits one group and answers its waiters.
    fn commit_group(&mut self, mut group: Vec<Job>, io: &ThreadIo) {
        let before = io.write_bytes();
        let mut replies: Vec<Option<LoadReply>> = group
            .iter_mut()
            .filter_map(|job| match job {
                Job::Load { reply, .. } => Some(reply.take()),
                Job::Commit { .. } | Job::Barrier { .. } => None,
            })
            .collect();
        let result = self.write(&group, &mut replies);
        match &result {
            Ok(written) => {
                let bytes = io
                    .write_bytes()
                    .zip(before)
                    .map_or(0, |(after, before)| after.saturating_sub(before));
                self.metrics.record_group(&group, written, bytes);
                if self.failed_in_a_row > 0 {
                    tracing::warn!(path = %self.path.display(), failed = self.failed_in_a_row,
                        "the store commits again, after {} failed commits", self.failed_in_a_row);
                    self.failed_in_a_row = 0;
                }
            }
            Err(error) => {
                if self.failed_in_a_row == 0 {
                    tracing::error!(path = %self.path.display(),
                        "store commit failed, {} batches refused: {error} (the commits that fail \
                         after it are logged at debug level, until one succeeds)", group.len());
                } else {
                    tracing::debug!(path = %self.path.display(), "store commit failed again, {} batches refused: {error}", group.len());
                }
                self.failed_in_a_row += 1;
                self.metrics.failed_commits.fetch_add(1, Ordering::Relaxed);
                // Closing lets the next open repair whatever the failure left behind.
                self.database = None;
            }
        }
        answer(group, replies, result, &self.metrics);
    }

    fn write(
        &mut self,
        group: &[Job],
        replies: &mut [Option<LoadReply>],
    ) -> Result<Written, CommitFailure> {
        let database = match &mut self.database {
            Some(database) => database,
            None => self
                .database
                .insert((self.reopen)().map_err(CommitFailure::Reopen)?),
        };
        let durability = if self.fsync {
            Durability::Immediate
        } else {
            Durability::None
        };
        write_group(database, durability, group, replies).map_err(CommitFailure::Write)
    }

    /// In no-fsync mode, makes everything committed durable before the writer stops.
    fn finish(self) {
        if self.fsync {
            return;
        }
        if let Some(database) = &self.database {
            if let Err(error) = flush(database) {
                tracing::error!(path = %self.path.display(), "store: final flush failed: {error}");
            }
        }
    }
}

/// Abandons the inbox if the writer thread unwinds from a panic, so that no batch waits
/// forever for a writer that is gone (they get [`StoreError::WriterGone`]).
struct AbandonOnPanic<'a>(&'a Inbox);

impl Drop for AbandonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abandon();
        }
    }
}

/// Answers every job of a group: commits with the group's outcome, barriers with it too unless
/// an earlier group failed, loads not answered yet with their entries (or the group's failure:
/// entries read in a transaction that did not commit may not exist). The answers go to each
/// waiter's runtime together ([`Answers`]).
fn answer(
    group: Vec<Job>,
    replies: Vec<Option<LoadReply>>,
    result: Result<Written, CommitFailure>,
    metrics: &DurableMetrics,
) {
    let (outcome, loads) = match result {
        Ok(written) => (Ok(()), written.loads),
        Err(failure) => (Err(StoreError::Commit(Arc::new(failure))), Vec::new()),
    };
    let barrier_outcome = match &outcome {
        Ok(()) if metrics.failed_commits.load(Ordering::Acquire) > 0 => {
            Err(StoreError::EarlierCommitFailed)
        }
        outcome => outcome.clone(),
    };
    // Settled before anyone hears of it: a barrier asked by a waiter just answered finds
    // nothing on its way.
    let settled = group.iter().filter(|job| job.answered_by_writer()).count();
    metrics
        .in_flight
        .fetch_sub(settled as u64, Ordering::AcqRel);
    let mut answers = Answers::default();
    for job in group {
        match job {
            Job::Commit { done, .. } => answers.done(done, outcome.clone()),
            Job::Barrier { done } => answers.done(done, barrier_outcome.clone()),
            Job::Load { .. } => {}
        }
    }
    let mut loads = loads.into_iter();
    for reply in replies {
        let loaded = loads.next().flatten();
        let Some(reply) = reply else {
            continue;
        };
        let entries = match (&outcome, loaded) {
            (Ok(()), Some(Ok(entries))) => Ok(entries),
            (Ok(()), Some(Err(error))) => Err(StoreError::Read(Arc::new(error))),
            (Ok(()), None) => Err(StoreError::WriterGone),
            (Err(error), _) => Err(error.clone()),
        };
        answers.entries(reply, entries);
    }
    answers.send();
}

/// Applies every op of `group`, in order, in one write transaction, reading each load's entries
/// where it stands; commits if the group changed anything. A load that read no entry queued
/// in this same group reads only what earlier commits made durable, so it is answered at once
/// (its reply taken from `replies`) instead of after this group's commit.
fn write_group(
    database: &Database,
    durability: Durability,
    group: &[Job],
    replies: &mut [Option<LoadReply>],
) -> Result<Written, DbError> {
    let mut txn = database.begin_write()?;
    txn.set_durability(durability)?;
    let steps: Vec<Option<&StoreOp>> = group
        .iter()
        .flat_map(|job| match job {
            Job::Commit { ops, .. } => ops.iter().map(Some).collect(),
            Job::Barrier { .. } => Vec::new(),
            Job::Load { .. } => vec![None],
        })
        .collect();
    let plan = elide::plan(&steps);
    let mut loads = group
        .iter()
        .filter_map(|job| match job {
            Job::Load {
                client_id, range, ..
            } => Some((client_id, range)),
            Job::Commit { .. } | Job::Barrier { .. } => None,
        })
        .zip(replies.iter_mut());
    let mut loaded = Vec::new();
    // Queue entries written by this group so far.
    let mut enqueued: Vec<(&Arc<str>, u64)> = Vec::new();
    let applied = {
        let mut tables = Tables::open(&txn)?;
        for (step, plan) in steps.iter().zip(plan) {
            match (step, plan) {
                (Some(op), Plan::Apply) => {
                    if let StoreOp::Enqueue { client_id, seq, .. } = op {
                        enqueued.push((client_id, *seq));
                    }
                    tables.apply(op)?;
                }
                (Some(op), Plan::Skip) => tables.skip(op),
                (Some(op), Plan::DiscardInstead { seq }) => tables.discard_instead(op, seq)?,
                (None, _) => {
                    let Some(((client_id, range), slot)) = loads.next() else {
                        continue;
                    };
                    let durable_already = !enqueued
                        .iter()
                        .any(|(client, seq)| *client == client_id && range.contains(seq));
                    match tables.load(client_id, range.clone()) {
                        Ok(entries) if durable_already => {
                            if let Some(reply) = slot.take() {
                                // Not held back for the commit: sent now.
                                let mut answers = Answers::default();
                                answers.entries(reply, Ok(entries));
                                answers.send();
                            }
                            loaded.push(None);
                        }
                        entries => loaded.push(Some(entries)),
                    }
                }
            }
        }
        tables.finish()?
    };
    let committed = applied.ops > 0;
    if committed {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(Written {
        applied,
        committed,
        loads: loaded,
    })
}

/// Commits an empty transaction durably: everything committed before reaches the disk.
fn flush(database: &Database) -> Result<(), DbError> {
    let mut txn = database.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.commit()?;
    Ok(())
}

/// The I/O counters of the thread that opened it (`/proc/thread-self/io`), kept open so that
/// each reading is one `pread` instead of an open, a read and a close.
struct ThreadIo {
    file: Option<std::fs::File>,
}

impl ThreadIo {
    fn open() -> ThreadIo {
        ThreadIo {
            file: std::fs::File::open("/proc/thread-self/io").ok(),
        }
    }

    /// Bytes the thread has caused to be written to storage so far, if the kernel tells.
    fn write_bytes(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 512];
        let read = self.file.as_ref()?.read_at(&mut buf, 0).ok()?;
        let io = std::str::from_utf8(&buf[..read]).ok()?;
        io.lines()
            .find_map(|line| line.strip_prefix("write_bytes:"))
            .and_then(|value| value.trim().parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_thread_that_panics_abandons_its_inbox() {
        let inbox = Arc::new(Inbox::default());
        let writer = inbox.clone();
        let ended = std::thread::spawn(move || {
            let _abandon_on_panic = AbandonOnPanic(&writer);
            panic!("a writer bug");
        })
        .join();
        assert!(ended.is_err(), "the thread panicked");
        let (done, _) = Reply::channel();
        let job = Job::Commit {
            ops: Vec::new(),
            done,
            pace: Pace::Now,
        };
        assert!(
            inbox.push(job).is_err(),
            "a batch is refused, not left waiting"
        );
    }

    #[test]
    fn thread_io_reads_the_counter_again_on_each_call() {
        let io = ThreadIo::open();
        let before = io
            .write_bytes()
            .expect("the kernel counts this thread's writes");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("written");
        let mut file = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut file, &vec![7u8; 1 << 20]).unwrap();
        file.sync_all().unwrap();
        let after = io.write_bytes().expect("still readable");
        assert!(
            after >= before + (1 << 20),
            "{before} then {after} bytes: the second reading must see the fsynced megabyte"
        );
    }
}
