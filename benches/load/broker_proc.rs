//! What the kernel says about the broker process: resident memory (`/proc/<pid>/status`
//! VmRSS), bytes it caused to be written to storage (`/proc/<pid>/io` write_bytes, counted
//! when pages are dirtied: the SD-card wear) and the CPU time it used (`/proc/<pid>/stat`);
//! and about the block device under the broker's data: the bytes that reached it, which also
//! counts what the file system writes for the broker (its journal, inodes, block bitmaps).
//!
//! Reads only; the broker must run on this machine and be readable by this user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::LoadError;

/// The resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, LoadError> {
    read_field(pid, "status", "VmRSS:", "kB")
}

/// Bytes process `pid` has caused to be written to storage so far.
pub fn write_bytes(pid: u32) -> Result<u64, LoadError> {
    read_field(pid, "io", "write_bytes:", "")
}

/// Bytes written so far to the block device that holds `path` (`/sys/dev/block/<major>:<minor>/
/// stat`, sectors written, of 512 bytes whatever the device's own sector size): by every
/// process and by the file system itself.
pub fn device_written_bytes(path: &Path) -> Result<u64, LoadError> {
    let failure = |path: &Path, reason: String| LoadError::BrokerStat {
        path: path.to_owned(),
        field: "sectors written",
        reason,
    };
    let device = std::fs::metadata(path)
        .map_err(|e| failure(path, e.to_string()))?
        .dev();
    let stat = PathBuf::from(format!(
        "/sys/dev/block/{}:{}/stat",
        libc::major(device),
        libc::minor(device)
    ));
    let text = std::fs::read_to_string(&stat).map_err(|e| failure(&stat, e.to_string()))?;
    let sectors = sectors_written_of(&text)
        .ok_or_else(|| failure(&stat, format!("no sectors written in {text:?}")))?;
    Ok(sectors * 512)
}

/// The sectors written (field 7) of a block device's `stat` line.
pub fn sectors_written_of(stat: &str) -> Option<u64> {
    stat.split_whitespace().nth(6)?.parse().ok()
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times: USER_HZ, 100 on every Linux
/// architecture (the kernel converts its own tick rate for user space).
const USER_HZ: u64 = 100;

/// CPU time process `pid` has used so far, user and system, all its threads together (those
/// that ended too), in milliseconds (10 ms steps).
pub fn cpu_ms(pid: u32) -> Result<u64, LoadError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let failure = |reason: String| LoadError::BrokerStat {
        path: path.clone(),
        field: "utime, stime",
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| failure(e.to_string()))?;
    let ticks = cpu_ticks_of(&text).ok_or_else(|| failure("no fields 14 and 15".into()))?;
    Ok(ticks * 1000 / USER_HZ)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// is in parentheses and may hold spaces and parentheses itself: fields are counted from the
/// last `)`.
pub fn cpu_ticks_of(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The number after `label` (and before `unit`) in `/proc/<pid>/<file>`.
fn read_field(pid: u32, file: &str, label: &'static str, unit: &str) -> Result<u64, LoadError> {
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    let failure = |reason: String| LoadError::BrokerStat {
        path: path.clone(),
        field: label.trim_end_matches(':'),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| failure(e.to_string()))?;
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|value| value.trim().strip_suffix(unit))
        .and_then(|number| number.trim().parse().ok())
        .ok_or_else(|| failure(format!("no `{label} <n> {unit}` line")))
}
