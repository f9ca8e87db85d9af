//! The store boundary: every change to durable state (sessions, subscriptions, queued and
//! inflight messages, inbound QoS 2 state, retained messages, wills) is handed to the [`Store`]
//! as a batch of [`StoreOp`]s, and the engine releases the matching acknowledgement only when
//! the batch's [`Commit`] completes.
//!
//! The store is the redb database of [`redb`]: one writer thread gathers every pending batch
//! into one write transaction (group commit), so no message pays for its own fsync.

pub mod admin;
pub mod redb;

use std::future::{poll_fn, Future};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::sync::oneshot;

use crate::model::{Delivery, Recovered, StoreOp};

/// How soon a batch must reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pace {
    /// Nothing waits on it but acks: its commit may wait up to the commit window to gather
    /// more work.
    #[default]
    Window,
    /// Something is held back until it is durable (a load, a QoS 2 send, a PUBREL): its group
    /// commits without waiting for the window.
    Now,
}

/// Why a commit or a load failed. One failed group commit answers every batch in it, so the
/// causes are shared. A cause is part of the message, not a `source`: logs print the message
/// alone, and a chain printed in full would say it twice.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The write transaction holding the batch failed (e.g. disk full); whether any of it
    /// reached the disk is unknown.
    #[error("the store could not commit the batch: {0}")]
    Commit(Arc<redb::CommitFailure>),
    /// A commit handed over before a barrier failed: what it held may be missing from the
    /// disk, so the acknowledgement waiting on the barrier must not go out.
    #[error("an earlier commit of the store failed")]
    EarlierCommitFailed,
    /// The store's writer stopped before answering.
    #[error("the store writer stopped before committing")]
    WriterGone,
    /// Queue entries could not be read back.
    #[error("the store could not read: {0}")]
    Read(Arc<redb::DbError>),
}

/// The completion of one committed batch, awaited before an ack is released.
#[derive(Debug)]
pub struct Commit {
    /// The writer's answer, until it arrives.
    pending: Option<oneshot::Receiver<Result<(), StoreError>>>,
    /// The outcome once known, until it is taken.
    outcome: Option<Result<(), StoreError>>,
}

impl Commit {
    /// The commit of nothing: already durable.
    pub fn nothing() -> Commit {
        Commit::finished(Ok(()))
    }

    /// A commit whose outcome is already known.
    fn finished(result: Result<(), StoreError>) -> Commit {
        Commit {
            pending: None,
            outcome: Some(result),
        }
    }

    /// Takes the outcome if the batch has been committed (or has failed), without waiting.
    pub fn try_result(&mut self) -> Option<Result<(), StoreError>> {
        if let Some(pending) = &mut self.pending {
            let result = match pending.try_recv() {
                Ok(result) => result,
                Err(oneshot::error::TryRecvError::Empty) => return None,
                Err(oneshot::error::TryRecvError::Closed) => Err(StoreError::WriterGone),
            };
            self.pending = None;
            self.outcome = Some(result);
        }
        self.outcome.take()
    }

    /// Whether the batch is already known to be durable (a batch with nothing to write is).
    /// The outcome, success or failure, stays for [`Commit::try_result`] to take.
    pub fn is_durable(&mut self) -> bool {
        match self.try_result() {
            Some(result) => {
                let durable = result.is_ok();
                self.outcome = Some(result);
                durable
            }
            None => false,
        }
    }

    /// Waits until the outcome is known, keeping it for [`Commit::try_result`]. Cancel-safe.
    pub async fn ready(&mut self) {
        poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// [`Commit::ready`] as a poll: ready once the outcome is known, which is then kept for
    /// [`Commit::try_result`]; otherwise `cx` is woken when it is.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(pending) = &mut self.pending {
            let result = ready!(Pin::new(pending).poll(cx)).unwrap_or(Err(StoreError::WriterGone));
            self.pending = None;
            self.outcome = Some(result);
        }
        Poll::Ready(())
    }

    /// Waits until the batch is durable or has failed.
    pub async fn wait(mut self) -> Result<(), StoreError> {
        self.ready().await;
        self.outcome.take().unwrap_or(Err(StoreError::WriterGone))
    }
}

/// Queue entries read back by [`Store::load`], once they arrive.
#[derive(Debug)]
pub struct Loaded {
    reply: oneshot::Receiver<Result<Vec<(u64, Delivery)>, StoreError>>,
}

impl Loaded {
    /// Waits for the entries. Cancel-safe; once it has returned, call it no more.
    pub async fn entries(&mut self) -> Result<Vec<(u64, Delivery)>, StoreError> {
        poll_fn(|cx| self.poll_entries(cx)).await
    }

    /// [`Loaded::entries`] as a poll; once it is ready, poll it no more.
    pub fn poll_entries(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Vec<(u64, Delivery)>, StoreError>> {
        Pin::new(&mut self.reply)
            .poll(cx)
            .map(|reply| reply.unwrap_or(Err(StoreError::WriterGone)))
    }
}

/// The session store: a front for the durable store's single writer.
#[derive(Debug)]
pub struct Store {
    durable: redb::DurableStore,
}

impl Store {
    /// Opens the store under `dir` and reads back everything it holds.
    pub fn open(
        dir: &Path,
        options: redb::DurableOptions,
    ) -> Result<(Store, Recovered), redb::OpenError> {
        let (durable, recovered) = redb::DurableStore::open(dir, options)?;
        Ok((Store { durable }, recovered))
    }

    /// Hands a batch of changes to the writer; the returned [`Commit`] completes once the batch
    /// is durable. `pace` says whether its commit may wait for the commit window. An empty batch
    /// completes at once.
    pub fn commit(&self, batch: Vec<StoreOp>, pace: Pace) -> Commit {
        if batch.is_empty() {
            return Commit::nothing();
        }
        Commit {
            pending: Some(self.durable.submit(batch, pace)),
            outcome: None,
        }
    }

    /// Completes once every batch handed over before it is durable: for an acknowledgement of
    /// state that needs no write of its own (an unchanged subscription) but must not overtake
    /// the batch that wrote it. At once when nothing is on its way to the disk; fails if a
    /// commit has failed by then.
    pub fn barrier(&self) -> Commit {
        Commit {
            pending: Some(self.durable.barrier()),
            outcome: None,
        }
    }

    /// Whether a commit has failed since the store was opened: the disk may then lack
    /// changes the broker's memory holds, so unchanged state is written again rather than
    /// relied on.
    pub fn has_failed(&self) -> bool {
        self.durable.has_failed()
    }

    /// Reads queue entries `from..to` of a session back, after every batch committed before
    /// it (so it must be asked while the state that numbered them is locked): (sequence
    /// number, delivery), ascending. Entries the store does not have are missing from the
    /// answer.
    pub fn load(&self, client_id: &Arc<str>, from: u64, to: u64) -> Loaded {
        Loaded {
            reply: self.durable.load(client_id.clone(), from..to),
        }
    }

    /// A round trip through the writer, for a watchdog: the returned future completes once
    /// the writer thread has taken up a job submitted now (after everything submitted before
    /// it) and opened a write transaction for it. The job is a read of no entries: it changes
    /// nothing and commits nothing, and an idle writer answers it at once. The future does not
    /// borrow the store.
    pub fn probe(&self) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let mut answer = self.load(&Arc::from(""), 0, 0);
        async move { answer.entries().await.map(drop) }
    }

    /// The writer's counters: commits, messages per commit, bytes written.
    pub fn metrics(&self) -> &redb::DurableMetrics {
        self.durable.metrics()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::store::redb::DurableOptions;

    #[tokio::test]
    async fn a_probe_round_trips_through_the_writer_and_commits_nothing() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (store, _) = Store::open(dir.path(), DurableOptions::default()).expect("open");
        let metrics = store.metrics();
        let commits = metrics.commits.load(Ordering::Relaxed);
        store.probe().await.expect("an idle writer answers");
        store.probe().await.expect("and again");
        assert_eq!(
            metrics.commits.load(Ordering::Relaxed),
            commits,
            "a probe writes nothing"
        );
        assert_eq!(metrics.batches.load(Ordering::Relaxed), 0);
    }
}
