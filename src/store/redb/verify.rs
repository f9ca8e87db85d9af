//! Checking an existing database file page by page before anything reads it. A plain redb open
//! trusts every page it reads, and a page changed outside redb (a flipped bit on a worn SD card,
//! a stray write) can make a read panic: the broker would abort on every start, and `--repair`
//! and the operator commands with it. redb's integrity check verifies the checksum of every page
//! the last commit reaches and reports a damaged one as an error, but it runs as a writable open
//! that commits at its end. Here it runs over an [`Overlay`] of the file opened read-only, which
//! keeps what redb writes (the record of the check, the repair a crash calls for) in memory:
//! the file is verified without being written to.

use std::fs::File;
use std::path::Path;

use redb::backends::FileBackend;
use redb::{Database, DatabaseError, StorageError};

use super::database::{open_error, OpenError, DEFAULT_CACHE_BYTES};
use super::overlay::Overlay;

/// The database file at `path` with the checksum of every page reachable from its last commit
/// (or, after a crash, from the commit redb would recover) verified, opened over an [`Overlay`]
/// of the file read-only: it reads the file as a broker would find it, and writes nothing. A
/// file another cairn holds is [`OpenError::AlreadyOpen`]; a damaged one is
/// [`OpenError::Damaged`], which `--repair` sets aside.
pub(super) fn open_verified(path: &Path) -> Result<Database, OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let length = file.metadata().map_err(io)?;
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
