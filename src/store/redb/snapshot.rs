//! Reading a store without writing to its file, for the operator commands that only look
//! (`sessions list|show`, `store stats`). The file is opened read-only, and redb runs over an
//! [`Overlay`] that keeps every write redb makes in memory: the repair a file needs after a
//! crash, the record of the integrity check, the state it saves at close. So a store on
//! read-only media (an SD card the kernel remounted read-only after errors), or one the
//! operator may read but not write, can be inspected, crashed or not, and the file never
//! changes.
//!
//! Its locks are shared ones (a write lock needs a writable file): a running broker, which
//! holds its file exclusively, refuses the inspection, and a broker cannot start during one.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{BackendError, Database, DatabaseError, ReadableDatabase, StorageBackend, StorageError};

use crate::model::{Delivery, Recovered};

use super::apply::read_queue_entries;
use super::clock::WallClock;
use super::database::{check_schema, open_error, OpenError, DEFAULT_CACHE_BYTES};
use super::recovery::recover;
use super::tables::{DbError, MESSAGES, QUEUE};

/// Every session's queued deliveries, by client id (sessions with an empty queue left out).
pub type Queues = HashMap<Arc<str>, Vec<Delivery>>;

/// The store in `path` as a broker would find it, read without writing to the file: every page
/// is checked against its checksum first (a damaged file is [`OpenError::Damaged`]), then
/// everything [`super::DurableStore::open`] reads back, and every session's queued deliveries.
pub fn read_without_writing(path: &Path) -> Result<(Recovered, Queues), OpenError> {
    let database = open_overlaid(path)?;
    check_schema(&database, path)?;
    let recovered = recover(&database).map_err(|error| OpenError::recovery(path, error))?;
    let queues = read_queues(&database, &recovered).map_err(|e| OpenError::recovery(path, e))?;
    Ok((recovered, queues))
}

/// The database in `path` over an [`Overlay`] of the file opened read-only, its pages verified.
fn open_overlaid(path: &Path) -> Result<Database, OpenError> {
    let file = File::open(path).map_err(|source| OpenError::Io {
        path: path.to_owned(),
        source,
    })?;
    let length = file.metadata().map_err(|source| OpenError::Io {
        path: path.to_owned(),
        source,
    })?;
    let file = FileBackend::new(file).map_err(|error| open_error(path, error))?;
    Database::builder()
        .set_cache_size(DEFAULT_CACHE_BYTES as usize)
        .set_check_integrity_on_open(true)
        .create_with_backend(Overlay::new(file, length.len()))
        .map_err(|error| match error {
            DatabaseError::Storage(StorageError::Corrupted(detail)) => OpenError::Damaged {
                path: path.to_owned(),
                detail,
            },
            other => open_error(path, other),
        })
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

/// Bytes per block of the overlay.
const BLOCK: u64 = 4096;

/// A file read as it is, with every write kept in memory in blocks of [`BLOCK`] bytes, which
/// reads see instead of the file's bytes.
#[derive(Debug)]
struct Overlay {
    file: FileBackend,
    written: Mutex<Written>,
}

#[derive(Debug)]
struct Written {
    /// The length redb sees.
    len: u64,
    /// The file's bytes below this still count: its length when opened, lowered by every
    /// shortening since (bytes past a shortening read as zeros if the length grows again).
    file_valid: u64,
    /// Blocks written, by index.
    blocks: BTreeMap<u64, Box<[u8]>>,
}

impl Overlay {
    fn new(file: FileBackend, len: u64) -> Overlay {
        Overlay {
            file,
            written: Mutex::new(Written {
                len,
                file_valid: len,
                blocks: BTreeMap::new(),
            }),
        }
    }

    fn written(&self) -> MutexGuard<'_, Written> {
        // The overlay's state is whole after every operation; a panic cannot leave it half done.
        self.written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads block `index`'s bytes `within` from the file (zeros past `file_valid`) into `out`.
    fn read_file(
        &self,
        file_valid: u64,
        index: u64,
        within: std::ops::Range<usize>,
        out: &mut [u8],
    ) -> io::Result<()> {
        let start = index * BLOCK + within.start as u64;
        let from_file = file_valid.saturating_sub(start).min(out.len() as u64) as usize;
        if from_file > 0 {
            self.file.read(start, &mut out[..from_file])?;
        }
        out[from_file..].fill(0);
        Ok(())
    }
}

/// The blocks that bytes `offset..offset + len` touch: (block index, range within the block,
/// range within the bytes).
fn pieces(
    offset: u64,
    len: usize,
) -> impl Iterator<Item = (u64, std::ops::Range<usize>, std::ops::Range<usize>)> {
    let end = offset + len as u64;
    let first = offset / BLOCK;
    let last = end.div_ceil(BLOCK);
    (first..last).map(move |index| {
        let block_start = index * BLOCK;
        let from = offset.max(block_start);
        let to = end.min(block_start + BLOCK);
        let within = (from - block_start) as usize..(to - block_start) as usize;
        let bytes = (from - offset) as usize..(to - offset) as usize;
        (index, within, bytes)
    })
}

impl StorageBackend for Overlay {
    fn len(&self) -> io::Result<u64> {
        Ok(self.written().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let written = self.written();
        for (index, within, bytes) in pieces(offset, out.len()) {
            match written.blocks.get(&index) {
                Some(block) => out[bytes].copy_from_slice(&block[within]),
                None => self.read_file(written.file_valid, index, within, &mut out[bytes])?,
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut written = self.written();
        if len < written.len {
            let partial = len / BLOCK;
            written.blocks.retain(|&index, _| index <= partial);
            if let Some(block) = written.blocks.get_mut(&partial) {
                block[(len - partial * BLOCK) as usize..].fill(0);
            }
            written.file_valid = written.file_valid.min(len);
        }
        written.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut written = self.written();
        let file_valid = written.file_valid;
        for (index, within, bytes) in pieces(offset, data.len()) {
            let block = match written.blocks.entry(index) {
                Entry::Occupied(block) => block.into_mut(),
                Entry::Vacant(slot) => {
                    let mut block = vec![0; BLOCK as usize].into_boxed_slice();
                    self.read_file(file_valid, index, 0..BLOCK as usize, &mut block)?;
                    slot.insert(block)
                }
            };
            block[within].copy_from_slice(&data[bytes]);
        }
        written.len = written.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        self.file.close()
    }

    // Shared locks for the exclusive ones redb asks for: the file is open for reading only.

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An overlay over a file of `len` bytes, byte `i` being `i % 251`, and the file.
    fn overlay(len: usize) -> (Overlay, tempfile::NamedTempFile) {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let file = tempfile::NamedTempFile::new().expect("temporary file");
        std::fs::write(file.path(), &bytes).expect("write");
        let read_only = File::open(file.path()).expect("open");
        let backend = FileBackend::new(read_only).expect("backend");
        (Overlay::new(backend, len as u64), file)
    }

    fn read(overlay: &Overlay, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0xAA; len];
        overlay.read(offset, &mut out).expect("read");
        out
    }

    fn pattern(range: std::ops::Range<usize>) -> Vec<u8> {
        range.map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn reads_come_from_the_file_until_written_and_the_file_never_changes() {
        let (overlay, file) = overlay(3 * BLOCK as usize);
        assert_eq!(read(&overlay, 100, 5000), pattern(100..5100));
        // A write across a block boundary.
        overlay.write(4090, &[1; 10]).expect("write");
        let mut expected = pattern(4000..4200);
        expected[90..100].fill(1);
        assert_eq!(read(&overlay, 4000, 200), expected);
        // Beyond the end: the length grows, the gap reads as zeros.
        overlay.write(5 * BLOCK + 1, &[2; 3]).expect("write");
        assert_eq!(overlay.len().expect("len"), 5 * BLOCK + 4);
        let tail = read(&overlay, 3 * BLOCK, 2 * BLOCK as usize + 4);
        assert!(tail[..BLOCK as usize * 2 + 1].iter().all(|&b| b == 0));
        assert_eq!(tail[BLOCK as usize * 2 + 1..], [2, 2, 2]);
        overlay.sync_data().expect("sync");
        let on_disk = std::fs::read(file.path()).expect("read the file");
        assert_eq!(
            on_disk,
            pattern(0..3 * BLOCK as usize),
            "the file is untouched"
        );
    }

    /// Bytes cut off by a shortening read as zeros when the length grows again, whether they
    /// were written or came from the file.
    #[test]
    fn a_shortening_forgets_what_it_cut_off() {
        let (overlay, _file) = overlay(3 * BLOCK as usize);
        overlay.write(BLOCK + 10, &[7; 20]).expect("write");
        overlay.set_len(BLOCK + 15).expect("shorten");
        assert_eq!(overlay.len().expect("len"), BLOCK + 15);
        overlay.set_len(3 * BLOCK).expect("grow");
        let block = read(&overlay, BLOCK, BLOCK as usize);
        assert_eq!(block[10..15], [7; 5]);
        assert!(block[15..].iter().all(|&b| b == 0), "written bytes cut off");
        assert!(
            read(&overlay, 2 * BLOCK, BLOCK as usize)
                .iter()
                .all(|&b| b == 0),
            "file bytes cut off"
        );
        assert_eq!(read(&overlay, 0, 100), pattern(0..100));
    }
}
