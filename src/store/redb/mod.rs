//! The durable store: every [`StoreOp`] the engine produces, kept in one redb database file
//! (`cairn.redb` in the data directory), committed by a single group-commit writer thread, and
//! read back in full when the store opens.
//!
//! Owns the file layout ([`tables`]), the record encoding ([`records`]), the meaning of each op
//! in rows ([`apply`]), the writer ([`writer`]) and recovery ([`recovery`]). It never decides
//! anything about MQTT: the engine says what changed, the store makes it durable.

mod answers;
mod apply;
mod clock;
mod database;
mod elide;
mod file;
mod inbox;
mod overlay;
mod records;
mod recovery;
mod snapshot;
mod tables;
mod verify;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ::redb::Database;
use tokio::sync::oneshot;

use crate::model::{Recovered, StoreOp};
use crate::store::{Pace, StoreError};

pub use self::database::{OpenError, UnreadableFile, DEFAULT_CACHE_BYTES};
pub use self::records::RecordError;
pub use self::snapshot::{read_without_writing, Queues};
pub use self::tables::DbError;
/// The database file in a data directory.
pub use self::tables::FILE_NAME as DATABASE_FILE;
pub use self::writer::CommitFailure;
pub use self::writer::DurableMetrics;

use self::answers::Reply;
use self::inbox::Inbox;
use self::writer::{Job, LoadedEntries, Reopen, Writer};

/// Options of the durable store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableOptions {
    /// Longest a group commit waits to gather more work after the first batch arrives
    /// (0 = commit as soon as the writer is free; work arriving meanwhile joins the next commit).
    pub commit_window: Duration,
    /// fsync on commit (redb `Durability::Immediate`). false = no-fsync mode, for benchmarks
    /// only: a crash may lose recent commits (the writer still flushes durably when it stops).
    pub fsync: bool,
    /// Bytes of redb's page cache.
    pub cache_bytes: usize,
}

impl Default for DurableOptions {
    /// Durable commits, no added wait.
    fn default() -> DurableOptions {
        DurableOptions {
            commit_window: Duration::ZERO,
            fsync: true,
            cache_bytes: database::DEFAULT_CACHE_BYTES as usize,
        }
    }
}

/// The durable store: a handle to its writer thread.
#[derive(Debug)]
pub struct DurableStore {
    /// Batches for the writer; closed to stop it.
    inbox: Arc<Inbox>,
    writer: Option<JoinHandle<()>>,
    metrics: Arc<DurableMetrics>,
}

impl DurableStore {
    /// Opens `dir/cairn.redb`, creating dir and file if absent, reads everything back, and
    /// starts the writer. Refuses (without writing to it) a file another cairn has open, a file
    /// that is not a cairn database, and one of a newer schema version.
    pub fn open(
        dir: &Path,
        options: DurableOptions,
    ) -> Result<(DurableStore, Recovered), OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(tables::FILE_NAME);
        let database = database::open_checked(&path, options.cache_bytes)?;
        let file = path.clone();
        let cache_bytes = options.cache_bytes;
        let reopen = Box::new(move || database::open_database(&file, cache_bytes));
        DurableStore::start(database, path, reopen, options)
    }

    /// Reads everything back from a prepared database and starts the writer, which calls
    /// `reopen` to replace the database after a failed commit.
    fn start(
        database: Database,
        path: PathBuf,
        reopen: Reopen,
        options: DurableOptions,
    ) -> Result<(DurableStore, Recovered), OpenError> {
        let recovered =
            recovery::recover(&database).map_err(|error| OpenError::recovery(&path, error))?;
        let metrics = Arc::new(DurableMetrics::default());
        let inbox = Arc::new(Inbox::default());
        let writer = Writer {
            path,
            database: Some(database),
            reopen,
            fsync: options.fsync,
            commit_window: options.commit_window,
            metrics: metrics.clone(),
            failed_in_a_row: 0,
        }
        .spawn(inbox.clone())
        .map_err(OpenError::Spawn)?;
        let store = DurableStore {
            inbox,
            writer: Some(writer),
            metrics,
        };
        Ok((store, recovered))
    }

    /// Hands a batch to the single writer; the receiver yields Ok(()) once the write transaction
    /// holding it has committed, or the error. A batch of [`Pace::Now`] makes its group commit
    /// without waiting for the commit window. An empty batch completes at once.
    pub fn submit(
        &self,
        batch: Vec<StoreOp>,
        pace: Pace,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, receiver) = Reply::channel();
        if batch.is_empty() {
            done.send(Ok(()));
            return receiver;
        }
        self.send(Job::Commit {
            ops: batch,
            done,
            pace,
        });
        receiver
    }

    /// A barrier after every batch submitted so far: the receiver yields Ok(()) once they are
    /// all committed, at once if they are already and no commit has failed; an error if any
    /// commit has failed by then (what they held may be missing from the disk).
    pub fn barrier(&self) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, receiver) = Reply::channel();
        let settled = self.metrics.in_flight.load(Ordering::Acquire) == 0;
        if settled && !self.has_failed() {
            done.send(Ok(()));
            return receiver;
        }
        self.send(Job::Barrier { done });
        receiver
    }

    /// Whether a commit has failed since the store was opened: the disk may then lack
    /// changes the broker's memory holds.
    pub fn has_failed(&self) -> bool {
        self.metrics.failed_commits.load(Ordering::Acquire) > 0
    }

    /// Asks the writer for queue entries `range` of a session, read after every batch
    /// submitted before.
    pub fn load(
        &self,
        client_id: Arc<str>,
        range: Range<u64>,
    ) -> oneshot::Receiver<Result<LoadedEntries, StoreError>> {
        let (reply, receiver) = Reply::channel();
        self.send(Job::Load {
            client_id,
            range,
            reply: Some(reply),
        });
        receiver
    }

    /// Hands a job to the writer, or answers it with [`StoreError::WriterGone`].
    fn send(&self, job: Job) {
        // Counted before the writer can see it, so its answer never finds the count at 0.
        let answered_by_writer = job.answered_by_writer();
        if answered_by_writer {
            self.metrics.in_flight.fetch_add(1, Ordering::AcqRel);
        }
        let refused = self.inbox.push(job).err();
        if answered_by_writer && refused.is_some() {
            self.metrics.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        match refused {
            Some(Job::Commit { done, .. } | Job::Barrier { done }) => {
                done.send(Err(StoreError::WriterGone));
            }
            Some(Job::Load {
                reply: Some(reply), ..
            }) => {
                reply.send(Err(StoreError::WriterGone));
            }
            // Sent, or a load answered already.
            Some(Job::Load { reply: None, .. }) | None => {}
        }
    }

    /// Counters: commits, batches, ops, messages per commit, bytes written.
    pub fn metrics(&self) -> &DurableMetrics {
        &self.metrics
    }

    /// Stops the writer after committing everything submitted so far, and closes the file.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for DurableStore {
    /// Dropping the store closes it: blocks until the writer has committed what was submitted.
    fn drop(&mut self) {
        self.inbox.close();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the store writer thread panicked");
            }
        }
    }
}
