//! Operator tools over the durable store, behind `cairn sessions …`, `cairn store stats` and
//! `cairn serve --repair`: opening the store of a data directory while no broker runs on it
//! (this module), what it holds (`report`), moving an unusable database file aside
//! (`quarantine`), telling which process holds a store open (`lock`), and the UTC times they
//! print (`calendar`).
//!
//! It changes nothing unless asked to drop a session, and never deletes a database file: a
//! quarantined file keeps its bytes under a new name in the same directory.

mod calendar;
mod lock;
mod quarantine;
mod report;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::model::Delivery;
use crate::model::{Recovered, RecoveredSession, StoreOp};
use crate::store::redb::{DurableOptions, DurableStore, OpenError};
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
    #[error("cannot read the queued messages back: {0}")]
    Read(StoreError),
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
                pid: lock::holder(&path),
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

/// Reads every session's queued deliveries back. Blocks; call it outside an async runtime.
fn read_queues(
    store: &DurableStore,
    recovered: &Recovered,
) -> Result<HashMap<Arc<str>, Vec<Delivery>>, AdminError> {
    let mut queues = HashMap::new();
    for session in &recovered.sessions {
        let Some(first) = session.queue.first() else {
            continue;
        };
        let entries = store
            .load(session.client_id.clone(), first.seq..session.next_sequence)
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
