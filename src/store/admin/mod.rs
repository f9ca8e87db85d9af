//! Operator tools over the durable store, behind `cairn sessions …`, `cairn store stats` and
//! `cairn serve --repair`: reading the store of a data directory while no broker runs on it,
//! without writing to its file (this module), what it holds (`report`), moving an unusable
//! database file aside (`quarantine`), telling which process holds a store open (`lock`), and
//! the UTC times they print (`calendar`).
//!
//! It changes nothing unless asked to drop a session, and never deletes a database file: a
//! quarantined file keeps its bytes under a new name in the same directory.

mod calendar;
mod lock;
mod quarantine;
mod report;
#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::model::{Recovered, RecoveredSession, StoreOp};
use crate::store::redb::{read_without_writing, DurableOptions, DurableStore, OpenError, Queues};
use crate::store::{Pace, StoreError};

pub use self::quarantine::{quarantine, unusable_reason};
pub use self::report::{
    printable, summaries, yes_no, Deadline, Expiry, InflightLine, LastSeen, MessageLine,
    SessionDetails, SessionSummary, StoreStats, SubscriptionLine, Tally, WillLine,
};
pub use crate::store::redb::DATABASE_FILE;

/// Why an operator command on the store failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("there is no store at {}: nothing was created (is `data_dir` right?)", .path.display())]
    NoStore { path: PathBuf },
    #[error("the broker is running on {} ({}); stop it first", .dir.display(), lock::holder_text(*.pid))]
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
}

/// The store of a data directory as an operator command found it: read without writing to
/// its file ([`read_without_writing`]), so it can be inspected on read-only media too, while
/// no broker runs on it (a running broker is refused, and none can start while it is read).
#[derive(Debug)]
pub struct AdminStore {
    dir: PathBuf,
    recovered: Recovered,
    /// Every session's queued deliveries, read back from the store, by client id.
    queues: Queues,
    file: PathBuf,
    /// The file's size.
    file_bytes: u64,
}

impl AdminStore {
    /// Reads the store in `dir`, writing nothing. Refuses a directory without a database, and
    /// one a running broker holds, naming its pid when Linux's /proc/locks tells it.
    pub fn open(dir: &Path) -> Result<AdminStore, AdminError> {
        let file = dir.join(DATABASE_FILE);
        let file_bytes = match fs::metadata(&file) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(AdminError::NoStore { path: file })
            }
            Err(source) => return Err(AdminError::Inspect { path: file, source }),
        };
        let (recovered, queues) =
            read_without_writing(&file).map_err(|error| refusal(dir, error))?;
        Ok(AdminStore {
            dir: dir.to_owned(),
            recovered,
            queues,
            file,
            file_bytes,
        })
    }

    /// Everything the store held when it was read.
    pub fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    /// Counts and sizes of what the store holds, with the size of its file.
    pub fn stats(&self) -> StoreStats {
        StoreStats::of(&self.recovered, &self.queues, &self.file, self.file_bytes)
    }

    /// Everything stored about the session `client_id`, its deadline judged at `now`.
    pub fn details(&self, client_id: &str, now: SystemTime) -> Result<SessionDetails, AdminError> {
        let session = find(&self.recovered, client_id)?;
        let queued = self.queues.get(client_id).map_or(&[][..], Vec::as_slice);
        Ok(SessionDetails::of(session, queued, now))
    }

    /// Deletes the session `client_id` with every row it owns: opens the store for writing
    /// (repairing it first if a crash left it needing that), waits for the commit, and closes
    /// it. Call it outside an async runtime (it blocks).
    pub fn drop_session(self, client_id: &str) -> Result<(), AdminError> {
        find(&self.recovered, client_id)?;
        let (store, _) = DurableStore::open(&self.dir, DurableOptions::default())
            .map_err(|error| refusal(&self.dir, error))?;
        let committed = store.submit(
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

/// Why the store in `dir` could not be opened, a file a broker holds told as such.
fn refusal(dir: &Path, error: OpenError) -> AdminError {
    match error {
        OpenError::AlreadyOpen { path } => AdminError::BrokerRunning {
            dir: dir.to_owned(),
            pid: lock::holder(&path),
        },
        other => AdminError::Open(other),
    }
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
