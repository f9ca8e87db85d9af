//! Opening the database file: redb's lock and format errors turned into [`OpenError`]s that say
//! what to do, and the schema check. A file that is not a cairn database of a version this build
//! reads is refused and never written to.

use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError, ReadableDatabase, StorageError};

use super::apply::Tables;
use super::file::FilledAhead;
use super::verify::open_verified;

use super::tables::{DbError, META, META_SCHEMA_VERSION, SCHEMA_VERSION};

/// The default size of redb's page cache (`store.cache_bytes`; half of it at most for a
/// commit's dirty pages). redb's own default, 1 GiB, is more than a small gateway has, and the
/// cache only saves read syscalls: the kernel's page cache holds the same pages. Every page
/// written stays in it until the cache is full, so a larger cache grows with the data: 32 MiB
/// held ~215 bytes per idle persistent session of a 10,000-client reboot storm, copies of rows
/// the broker also keeps in its own structures. 1 MiB saved those and measured no slower in
/// alternating runs (see the README's speed section): durable fan-in with an offline
/// subscriber and its drain, online fan-in at QoS 1, the bridge's drain.
pub const DEFAULT_CACHE_BYTES: u64 = 1024 * 1024;

/// Why the durable store could not open. A `cause` is part of the message, not a `source`:
/// logs print the message alone, and a chain printed in full would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is locked: another cairn is running on this data directory; \
         stop it or give this one another data directory"
    )]
    AlreadyOpen { path: PathBuf },
    #[error(
        "{path} is not a database this cairn can open ({cause}); it was left untouched: \
         move it away or give cairn another data directory"
    )]
    Unreadable {
        path: PathBuf,
        cause: UnreadableFile,
    },
    #[error(
        "{path} is damaged ({detail}); it was left untouched: move it away or give cairn \
         another data directory"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "{path} is a redb database of another program (it has no cairn `meta` table); \
         it was left untouched: give cairn another data directory"
    )]
    Foreign { path: PathBuf },
    #[error(
        "{path} has schema version {found}, newer than the version {supported} this cairn \
         reads; it was left untouched: run a newer cairn on it"
    )]
    NewerSchema {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error(
        "{path} has schema version {found}, written by a pre-release cairn; this cairn reads \
         version {supported} only. It was left untouched: move it away, or start with \
         `cairn serve --repair` to set it aside and start empty"
    )]
    OlderSchema {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read back {path}: {cause}")]
    Recovery { path: PathBuf, cause: DbError },
    #[error("I/O error while reading back {path}: {cause}; the file was not judged unusable")]
    RecoveryIo { path: PathBuf, cause: DbError },
    #[error("cannot start the store writer thread: {0}")]
    Spawn(std::io::Error),
}

impl OpenError {
    /// Wraps a failure while reading or preparing `path`: an I/O error of the operating system
    /// ([`OpenError::RecoveryIo`]) is kept apart from what the file holds
    /// ([`OpenError::Recovery`]), so an operator's `--repair` never sets a healthy file aside
    /// over a passing disk error.
    pub(super) fn recovery(path: &Path, error: impl Into<DbError>) -> OpenError {
        let cause = error.into();
        let path = path.to_owned();
        if cause.is_io() {
            OpenError::RecoveryIo { path, cause }
        } else {
            OpenError::Recovery { path, cause }
        }
    }
}

/// redb's refusal to open a file as a database, told as an operator reads it.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe_refusal(.0))]
pub struct UnreadableFile(pub DatabaseError);

fn describe_refusal(refusal: &DatabaseError) -> String {
    match refusal {
        DatabaseError::UpgradeRequired(version) => {
            format!("it uses redb file format {version}, which this build cannot read")
        }
        DatabaseError::Storage(StorageError::Io(error))
            if error.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            "it ends before its header does: cut short".to_string()
        }
        other => other.to_string(),
    }
}

/// Opens the database file at `path` for the writer, creating it if absent. Before anything
/// may write to an existing file, it is inspected without writing: a file another cairn holds,
/// one that is not a redb database, a damaged one, a foreign one or a newer one is refused
/// untouched, also after a crash (the inspection makes the repair a crash calls for in memory,
/// and the open repairs the file once it has passed).
pub fn open_checked(path: &Path, cache_bytes: usize) -> Result<Database, OpenError> {
    let had_contents = inspect(path)?;
    let opened = open_database(path, cache_bytes).and_then(|database| {
        prepare(&database, path)?;
        Ok(database)
    });
    if let Err(error) = &opened {
        // A file this open created (or found empty) holds nothing of anyone's: one left half
        // made by a failure (a full disk) would be refused at the next start.
        if !had_contents && !matches!(error, OpenError::AlreadyOpen { .. }) {
            let _ = std::fs::remove_file(path);
        }
    }
    opened
}

/// Checks the schema of an open database, then records this build's version and creates every
/// missing table.
pub fn prepare(database: &Database, path: &Path) -> Result<(), OpenError> {
    check_schema(database, path)?;
    write_schema(database).map_err(|error| OpenError::recovery(path, error))
}

/// Checks an existing file, writing nothing: every page against its checksum, then the schema
/// ([`open_verified`]). Returns whether there was a file with contents.
fn inspect(path: &Path) -> Result<bool, OpenError> {
    let length = std::fs::metadata(path).map(|meta| meta.len()).ok();
    if length == Some(0) {
        tracing::warn!(path = %path.display(), "the database file is empty (0 bytes): starting with an empty store");
    }
    if length.unwrap_or(0) == 0 {
        return Ok(false);
    }
    check_schema(&open_verified(path)?, path)?;
    Ok(true)
}

/// Opens (or creates) the database file at `path` with a page cache of `cache_bytes`, its new
/// space filled ahead of redb's writes ([`FilledAhead`]).
pub fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, OpenError> {
    let file = FilledAhead::open(path).map_err(|error| open_error(path, error))?;
    Database::builder()
        .set_cache_size(cache_bytes)
        .create_with_backend(file)
        .map_err(|error| open_error(path, error))
}

pub(super) fn open_error(path: &Path, error: DatabaseError) -> OpenError {
    let path = path.to_owned();
    match error {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            OpenError::AlreadyOpen { path }
        }
        // A file that ends before its header does (UnexpectedEof) or holds nonsense
        // (InvalidData) is the file's fault, not the disk's.
        DatabaseError::Storage(StorageError::Io(source))
            if !matches!(
                source.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            OpenError::Io { path, source }
        }
        other => OpenError::Unreadable {
            path,
            cause: UnreadableFile(other),
        },
    }
}

/// Checks that the database is cairn's (or empty) and not newer than this build.
fn check_schema(database: &impl ReadableDatabase, path: &Path) -> Result<(), OpenError> {
    match schema_version(database, path)? {
        Some(found) if found > SCHEMA_VERSION => {
            return Err(OpenError::NewerSchema {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            })
        }
        Some(found) if found < SCHEMA_VERSION => {
            return Err(OpenError::OlderSchema {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            })
        }
        Some(_) => {}
        None if has_tables(database, path)? => {
            return Err(OpenError::Foreign {
                path: path.to_owned(),
            })
        }
        None => {}
    }
    Ok(())
}

/// The schema version recorded in `meta`, or `None` if there is no `meta` table or version.
fn schema_version(database: &impl ReadableDatabase, path: &Path) -> Result<Option<u64>, OpenError> {
    let txn = database
        .begin_read()
        .map_err(|e| OpenError::recovery(path, e))?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(redb::TableError::TableTypeMismatch { .. }) => {
            return Err(OpenError::Foreign {
                path: path.to_owned(),
            })
        }
        Err(error) => return Err(OpenError::recovery(path, error)),
    };
    let version = meta
        .get(META_SCHEMA_VERSION)
        .map_err(|e| OpenError::recovery(path, e))?;
    Ok(version.map(|guard| guard.value()))
}

fn has_tables(database: &impl ReadableDatabase, path: &Path) -> Result<bool, OpenError> {
    let fail = |error: redb::StorageError| OpenError::recovery(path, error);
    let txn = database
        .begin_read()
        .map_err(|e| OpenError::recovery(path, e))?;
    let tables = txn.list_tables().map_err(fail)?;
    let multimaps = txn.list_multimap_tables().map_err(fail)?;
    Ok(tables.count() + multimaps.count() > 0)
}

/// Records this build's schema version and creates every table (so readers find them all).
fn write_schema(database: &Database) -> Result<(), DbError> {
    let txn = database.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION)?;
        // Opening the tables creates the missing ones.
        Tables::open(&txn)?;
    }
    txn.commit()?;
    Ok(())
}
