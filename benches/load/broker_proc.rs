//! What the kernel says about the broker process: resident memory (`/proc/<pid>/status`
//! VmRSS) and bytes it caused to be written to storage (`/proc/<pid>/io` write_bytes, counted
//! when pages are dirtied: the SD-card wear).
//!
//! Reads only; the broker must run on this machine and be readable by this user.

use std::path::PathBuf;

use crate::error::LoadError;

/// The resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, LoadError> {
    read_field(pid, "status", "VmRSS:", "kB")
}

/// Bytes process `pid` has caused to be written to storage so far.
pub fn write_bytes(pid: u32) -> Result<u64, LoadError> {
    read_field(pid, "io", "write_bytes:", "")
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
