//! The group-commit writer: one dedicated thread owns the [`Database`], gathers every batch
//! submitted while it was busy (plus those arriving within the commit window) into ONE write
//! transaction, commits it once, then answers every waiter.
//!
//! A failed group is answered with [`StoreError::Io`] and aborted; the database is then closed
//! and reopened before the next group (redb refuses writes after a failed commit until a reopen
//! repairs it), so later batches try again and nothing committed before is lost.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, Durability};
use tokio::sync::oneshot;

use crate::store::{StoreError, StoreOp};

use super::apply::{Applied, Counters, Tables};
use super::database::OpenError;
use super::tables::DbError;

/// Most batches one commit gathers, so a flood cannot build an unbounded transaction.
const MAX_BATCHES_PER_COMMIT: usize = 4096;

/// One submitted batch and the waiter to answer once it is committed.
#[derive(Debug)]
pub struct Job {
    pub ops: Vec<StoreOp>,
    pub done: oneshot::Sender<Result<(), StoreError>>,
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
    /// Bytes the writer thread sent to storage (`/proc/thread-self/io` write_bytes; 0 where
    /// unavailable): the SD-card wear.
    pub bytes_written: AtomicU64,
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

    fn record_commit(&self, batches: usize, applied: Applied, bytes_written: u64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(batches as u64, Ordering::Relaxed);
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
    pub counters: Counters,
    pub metrics: Arc<DurableMetrics>,
}

impl Writer {
    /// Starts the writer thread; it runs until every sender of `jobs` is gone and the last
    /// group is committed.
    pub fn spawn(self, jobs: Receiver<Job>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("cairn-store".into())
            .spawn(move || self.run(jobs))
    }

    fn run(mut self, jobs: Receiver<Job>) {
        while let Some(group) = gather(&jobs, self.commit_window) {
            self.commit_group(group);
        }
        self.finish();
    }

    /// Commits one group and answers its waiters.
    fn commit_group(&mut self, group: Vec<Job>) {
        let before = thread_write_bytes();
        let result = self.write(&group);
        match &result {
            Ok(applied) => {
                let written = thread_write_bytes()
                    .zip(before)
                    .map_or(0, |(after, before)| after.saturating_sub(before));
                self.metrics.record_commit(group.len(), *applied, written);
            }
            Err(error) => {
                tracing::error!(path = %self.path.display(), "store commit failed, {} batches refused: {error}", group.len());
                self.metrics.failed_commits.fetch_add(1, Ordering::Relaxed);
                // Closing lets the next open repair whatever the failure left behind.
                self.database = None;
            }
        }
        let answer = result
            .map(|_| ())
            .map_err(|error| StoreError::Io(error.to_string()));
        for job in group {
            // A waiter that gave up (dropped its receiver) needs no answer.
            let _ = job.done.send(answer.clone());
        }
    }

    fn write(&mut self, group: &[Job]) -> Result<Applied, String> {
        let database = match &mut self.database {
            Some(database) => database,
            None => self
                .database
                .insert((self.reopen)().map_err(|error| error.to_string())?),
        };
        let durability = if self.fsync {
            Durability::Immediate
        } else {
            Durability::None
        };
        write_group(database, durability, &mut self.counters, group)
            .map_err(|error| error.to_string())
    }

    /// In no-fsync mode, makes everything committed durable before the writer stops.
    fn finish(self) {
        if self.fsync {
            return;
        }
        if let Some(database) = &self.database {
            let mut counters = self.counters;
            let flushed = write_group(database, Durability::Immediate, &mut counters, &[]);
            if let Err(error) = flushed {
                tracing::error!(path = %self.path.display(), "store: final flush failed: {error}");
            }
        }
    }
}

/// Applies every op of `group`, in order, in one write transaction, and commits it.
fn write_group(
    database: &Database,
    durability: Durability,
    counters: &mut Counters,
    group: &[Job],
) -> Result<Applied, DbError> {
    let mut txn = database.begin_write()?;
    txn.set_durability(durability)?;
    let applied = {
        let mut tables = Tables::open(&txn, counters)?;
        for op in group.iter().flat_map(|job| &job.ops) {
            tables.apply(op)?;
        }
        tables.applied()
    };
    counters.save(&txn)?;
    txn.commit()?;
    Ok(applied)
}

/// Blocks for the first job, then gathers more until the window closes (window 0: only what is
/// already queued). `None` once every sender is gone and nothing is left.
fn gather(jobs: &Receiver<Job>, window: Duration) -> Option<Vec<Job>> {
    let mut group = vec![jobs.recv().ok()?];
    let deadline = Instant::now() + window;
    while group.len() < MAX_BATCHES_PER_COMMIT {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = if left.is_zero() {
            jobs.try_recv().ok()
        } else {
            jobs.recv_timeout(left).ok()
        };
        match next {
            Some(job) => group.push(job),
            None => break,
        }
    }
    Some(group)
}

/// Bytes this thread has caused to be written to storage so far, if the kernel tells.
fn thread_write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/thread-self/io").ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|value| value.trim().parse().ok())
}
