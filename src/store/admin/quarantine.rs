//! `cairn serve --repair`: telling a database file that cannot be used from a failure that
//! says nothing about the file, and moving an unusable file aside under a new name. It never
//! deletes or rewrites a file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::store::redb::{OpenError, DATABASE_FILE};

use super::calendar::UtcTime;

/// Why `error` means the database file itself cannot be used (unreadable, another program's,
/// of a newer schema, or failing recovery), or `None` when it does not: a lock held by a running
/// broker, or an I/O failure such as a denied permission, says nothing about the file's contents.
pub fn unusable_reason(error: &OpenError) -> Option<String> {
    match error {
        OpenError::Unreadable { cause, .. } => Some(format!(
            "it is not a database this cairn can open ({cause})"
        )),
        OpenError::Damaged { detail, .. } => Some(format!("it is damaged ({detail})")),
        OpenError::Foreign { .. } => Some("it is a redb database of another program".into()),
        OpenError::NewerSchema {
            found, supported, ..
        } => Some(format!(
            "it has schema version {found}, newer than the version {supported} this cairn reads"
        )),
        OpenError::OlderSchema { found, .. } => Some(format!(
            "it has schema version {found}, written by a pre-release cairn"
        )),
        OpenError::Recovery { cause, .. } => Some(format!("it cannot be read back ({cause})")),
        OpenError::CreateDir { .. }
        | OpenError::AlreadyOpen { .. }
        | OpenError::Io { .. }
        | OpenError::RecoveryIo { .. }
        | OpenError::Spawn(_) => None,
    }
}

/// Moves `dir/cairn.redb` aside to `dir/cairn.redb.quarantined-<UTC time>` (with a `-N` suffix
/// if that name is taken) and returns the new path. The bytes are kept; only the name changes.
pub fn quarantine(dir: &Path) -> io::Result<PathBuf> {
    let stamp = UtcTime::from(SystemTime::now()).compact();
    let target = unused_name(dir, &format!("{DATABASE_FILE}.quarantined-{stamp}"))?;
    fs::rename(dir.join(DATABASE_FILE), &target)?;
    // The new name should survive a power cut before the new store is created.
    if let Err(error) = fs::File::open(dir).and_then(|handle| handle.sync_all()) {
        tracing::warn!(dir = %dir.display(), "cannot sync the directory after the move: {error}");
    }
    Ok(target)
}

/// `dir/base`, or `dir/base-N` with the first N not in use.
fn unused_name(dir: &Path, base: &str) -> io::Result<PathBuf> {
    for suffix in 0..u32::MAX {
        let name = match suffix {
            0 => base.to_owned(),
            n => format!("{base}-{n}"),
        };
        let candidate = dir.join(name);
        match fs::symlink_metadata(&candidate) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(candidate),
            Err(error) => return Err(error),
            Ok(_) => {}
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("every name {base}-N in {} is taken", dir.display()),
    ))
}

#[cfg(test)]
mod tests {
    use ::redb::{DatabaseError, StorageError};

    use super::*;
    use crate::store::redb::{DbError, DurableOptions, DurableStore, RecordError, UnreadableFile};

    #[test]
    fn quarantine_keeps_the_bytes_under_a_new_name() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let original = dir.path().join(DATABASE_FILE);
        fs::write(&original, b"not a database").expect("write");
        let moved = quarantine(dir.path()).expect("moved");
        assert_eq!(moved.parent(), Some(dir.path()));
        let name = moved
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("");
        assert!(name.starts_with("cairn.redb.quarantined-"), "{name}");
        assert!(name.ends_with('Z'), "{name}");
        assert_eq!(fs::read(&moved).expect("read"), b"not a database");
        assert!(!original.exists());
    }

    #[test]
    fn quarantine_never_overwrites_an_earlier_one() {
        let dir = tempfile::tempdir().expect("temporary directory");
        fs::write(dir.path().join("taken"), b"first").expect("write");
        fs::write(dir.path().join("taken-1"), b"second").expect("write");
        let free = unused_name(dir.path(), "taken").expect("a free name");
        assert_eq!(free, dir.path().join("taken-2"));
    }

    #[test]
    fn only_unusable_files_are_repairable() {
        let path = PathBuf::from("/data/cairn.redb");
        let unusable = [
            OpenError::Unreadable {
                path: path.clone(),
                cause: UnreadableFile(DatabaseError::Storage(StorageError::Corrupted(
                    "bad magic number".into(),
                ))),
            },
            OpenError::Damaged {
                path: path.clone(),
                detail: "Primary is corrupted despite 2-phase commit".into(),
            },
            OpenError::Foreign { path: path.clone() },
            OpenError::NewerSchema {
                path: path.clone(),
                found: 9,
                supported: 1,
            },
            OpenError::Recovery {
                path: path.clone(),
                cause: DbError::Record(RecordError::Invalid {
                    record: "session",
                    field: "state",
                }),
            },
        ];
        for error in &unusable {
            assert!(unusable_reason(error).is_some(), "{error}");
        }
        let usable = [
            OpenError::AlreadyOpen { path: path.clone() },
            OpenError::Io {
                path: path.clone(),
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            },
            OpenError::RecoveryIo {
                path,
                cause: DbError::Storage(StorageError::Io(io::Error::from(
                    io::ErrorKind::PermissionDenied,
                ))),
            },
        ];
        for error in &usable {
            assert_eq!(unusable_reason(error), None, "{error}");
        }
    }

    #[test]
    fn a_garbage_file_is_unusable() {
        let dir = tempfile::tempdir().expect("temporary directory");
        fs::write(dir.path().join(DATABASE_FILE), [0x5a_u8; 4096]).expect("write");
        let error = DurableStore::open(dir.path(), DurableOptions::default())
            .map(drop)
            .expect_err("garbage is refused");
        assert!(unusable_reason(&error).is_some(), "{error}");
    }
}
