//! Checking an existing database file page by page before anything reads it. A plain redb open
//! trusts every page it reads, and a page changed outside redb (a flipped bit on a worn SD card,
//! a stray write) can make a read panic: the broker would abort on every start, and `--repair`
//! and the operator commands with it. redb's integrity check verifies the checksum of every page
//! the last commit reaches and reports a damaged one as an error, but it runs as a writable open
//! that commits at its end. Here it runs over a file handle that refuses every write, so a file
//! is verified without being written to; the first write redb attempts comes after the check
//! has passed, and is where the check stops.

use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{BackendError, Database, DatabaseError, StorageBackend, StorageError};

use super::database::{open_error, OpenError};

/// Verifies the checksums of every page reachable from the last commit of the database file at
/// `path` (or, after a crash, from the commit redb would recover), writing nothing. A file
/// another cairn holds is [`OpenError::AlreadyOpen`]; a damaged one is [`OpenError::Damaged`],
/// which `--repair` sets aside.
pub fn verify_pages(path: &Path) -> Result<(), OpenError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| OpenError::Io {
            path: path.to_owned(),
            source,
        })?;
    let write_refused = Arc::new(AtomicBool::new(false));
    let backend = NoWrites {
        file: FileBackend::new(file).map_err(|error| open_error(path, error))?,
        write_refused: write_refused.clone(),
    };
    let opened = Database::builder()
        .set_check_integrity_on_open(true)
        .create_with_backend(backend);
    match opened {
        // Never committed: there was nothing to verify and nothing to write.
        Ok(database) => {
            drop(database);
            Ok(())
        }
        // Every page verified; redb then tried to record the check, which was refused.
        Err(_) if write_refused.load(Ordering::Acquire) => Ok(()),
        Err(DatabaseError::Storage(StorageError::Corrupted(detail))) => Err(OpenError::Damaged {
            path: path.to_owned(),
            detail,
        }),
        Err(error) => Err(open_error(path, error)),
    }
}

/// A database file that can be read and locked but not written: every write, resize and sync
/// fails, and is noted in `write_refused`.
#[derive(Debug)]
struct NoWrites {
    file: FileBackend,
    write_refused: Arc<AtomicBool>,
}

impl NoWrites {
    fn refuse(&self) -> io::Result<()> {
        self.write_refused.store(true, Ordering::Release);
        Err(io::Error::other("the integrity check writes nothing"))
    }
}

impl StorageBackend for NoWrites {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read(offset, out)
    }

    fn set_len(&self, _len: u64) -> io::Result<()> {
        self.refuse()
    }

    fn sync_data(&self) -> io::Result<()> {
        self.refuse()
    }

    fn write(&self, _offset: u64, _data: &[u8]) -> io::Result<()> {
        self.refuse()
    }

    fn close(&self) -> io::Result<()> {
        self.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(start, end)
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
