//! Reading a store without writing to its file, for the operator commands that only look
//! (`sessions list|show`, `store stats`): the database as [`open_verified`] opens it, over an
//! overlay of the file that keeps redb's writes in memory (the repair a crash calls for
//! included). So a store on read-only media (an SD card the kernel remounted read-only after
//! errors), or one the operator may read but not write, can be inspected, crashed or not, and
//! the file never changes. A running broker, which holds its file exclusively, refuses the
//! inspection, and a broker cannot start during one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase};

use crate::model::{Delivery, Recovered};

use super::apply::read_queue_entries;
use super::clock::WallClock;
use super::database::{prepare, OpenError};
use super::recovery::recover;
use super::tables::{DbError, MESSAGES, QUEUE};
use super::verify::open_verified;

/// Every session's queued deliveries, by client id (sessions with an empty queue left out).
pub type Queues = HashMap<Arc<str>, Vec<Delivery>>;

/// The store in `path` as a broker would find it, read without writing to the file: every page
/// is checked against its checksum first (a damaged file is [`OpenError::Damaged`]), then
/// everything [`super::DurableStore::open`] reads back, and every session's queued deliveries.
pub fn read_without_writing(path: &Path) -> Result<(Recovered, Queues), OpenError> {
    let database = open_verified(path)?;
    // As `serve` prepares it, in memory: the schema checked, missing tables made (an empty file
    // has none).
    prepare(&database, path)?;
    let recovered = recover(&database).map_err(|error| OpenError::recovery(path, error))?;
    let queues = read_queues(&database, &recovered).map_err(|e| OpenError::recovery(path, e))?;
    Ok((recovered, queues))
}

/// Every queued delivery of every session of `recovered`, in one read transaction.
fn read_queues(database: &Database, recovered: &Recovered) -> Result<Queues, DbError> {
    let txn = database.begin_read()?;
    let queue = txn.open_table(QUEUE)?;
    let messages = txn.open_table(MESSAGES)?;
    let clock = WallClock::now();
    let mut queues = HashMap::new();
    for session in &recovered.sessions {
        let Some(first) = session.queue.first() else {
            continue;
        };
        let range = first.seq..session.next_sequence;
        let entries = read_queue_entries(&queue, &messages, &clock, &session.client_id, range)?;
        let deliveries = entries.into_iter().map(|(_, delivery)| delivery).collect();
        queues.insert(session.client_id.clone(), deliveries);
    }
    Ok(queues)
}
