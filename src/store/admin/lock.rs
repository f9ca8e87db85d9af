//! Which process holds a store open: redb locks its file while a broker (or an operator
//! command) has it open, and Linux's /proc/locks names the pid of that lock's owner. Reads
//! only; it never takes or breaks a lock.

use std::path::Path;

use crate::store::redb::DATABASE_FILE;

/// The holder of a store's lock, for a message: its pid if known.
pub(super) fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => {
            format!("another process holds the lock on {DATABASE_FILE}; its pid could not be found")
        }
    }
}

/// The pid of the process holding a lock with an owner on `file` (redb takes a whole-file
/// `flock`, listed with its pid), read from Linux's /proc/locks.
#[cfg(target_os = "linux")]
pub(super) fn holder(file: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(file).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let wanted = LockedFile::of(metadata.dev(), metadata.ino());
    locks.lines().find_map(|line| wanted.holder_in(line))
}

/// Other systems have no /proc/locks: the pid cannot be told.
#[cfg(not(target_os = "linux"))]
pub(super) fn holder(_file: &Path) -> Option<u32> {
    None
}

/// A file as /proc/locks names it: device major and minor number, inode.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LockedFile {
    major: u64,
    minor: u64,
    inode: u64,
}

#[cfg(target_os = "linux")]
impl LockedFile {
    /// From `st_dev` and `st_ino`, splitting the device number as Linux encodes it.
    fn of(device: u64, inode: u64) -> LockedFile {
        LockedFile {
            major: ((device >> 8) & 0xfff) | ((device >> 32) & !0xfff),
            minor: (device & 0xff) | ((device >> 12) & !0xff),
            inode,
        }
    }

    /// The owner's pid if the /proc/locks `line` is a granted lock on this file with a known
    /// owner (open file description locks and waiting requests have none).
    fn holder_in(&self, line: &str) -> Option<u32> {
        // `N: KIND MODE ACCESS PID MAJ:MIN:INODE START END`; a waiter has `->` after `N:`.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, kind, _, _, pid, file, ..] = fields.as_slice() else {
            return None;
        };
        if *kind == "->" {
            return None;
        }
        let mut parts = file.split(':');
        let major = u64::from_str_radix(parts.next()?, 16).ok()?;
        let minor = u64::from_str_radix(parts.next()?, 16).ok()?;
        let inode = parts.next()?.parse().ok()?;
        let named = LockedFile {
            major,
            minor,
            inode,
        };
        if named != *self {
            return None;
        }
        pid.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn proc_locks_lines_name_the_holder_of_a_file() {
        let file = LockedFile::of(0xfe00, 10_059_781);
        let line = |text: &str| file.holder_in(text);
        assert_eq!(
            line("3: FLOCK  ADVISORY  WRITE 11731 fe:00:10059781 0 EOF"),
            Some(11731)
        );
        assert_eq!(
            line("1: OFDLCK ADVISORY  WRITE -1 fe:00:10059781 0 EOF"),
            None
        );
        assert_eq!(
            line("3: FLOCK  ADVISORY  WRITE 11731 fe:00:10059782 0 EOF"),
            None
        );
        assert_eq!(
            line("3: FLOCK  ADVISORY  WRITE 11731 08:01:10059781 0 EOF"),
            None
        );
        assert_eq!(
            line("3: -> FLOCK  ADVISORY  WRITE 11732 fe:00:10059781 0 EOF"),
            None
        );
    }
}
