//! The stamp every load-tool payload starts with (publisher, sequence number, send time), and
//! the run's clock those times are measured on.
//!
//! Publishers and subscribers live in one process, so one monotonic origin serves both ends
//! and a latency is a plain subtraction.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the stamp at the front of each payload: u32 publisher, u64 sequence, u64 nanos.
pub const STAMP_LEN: usize = 4 + 8 + 8;

/// Byte that fills the payload after the stamp.
const PADDING: u8 = b'.';

/// Who sent a message, its place in that publisher's sequence, and when it was (meant to be)
/// sent, in nanoseconds since the run's [`Clock`] origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    pub sequence: u64,
    pub sent_nanos: u64,
}

impl Stamp {
    /// Writes a payload of `len` bytes (at least [`STAMP_LEN`]) starting with this stamp,
    /// reusing `scratch`'s allocation once earlier payloads have been dropped.
    pub fn payload(&self, len: usize, scratch: &mut BytesMut) -> Bytes {
        scratch.reserve(len.max(STAMP_LEN));
        scratch.put_u32_le(self.publisher);
        scratch.put_u64_le(self.sequence);
        scratch.put_u64_le(self.sent_nanos);
        scratch.put_bytes(PADDING, len.saturating_sub(STAMP_LEN));
        scratch.split().freeze()
    }

    /// Reads the stamp at the front of `payload`, or `None` if the payload is too short.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let publisher = payload.get(0..4)?.try_into().ok()?;
        let sequence = payload.get(4..12)?.try_into().ok()?;
        let sent_nanos = payload.get(12..20)?.try_into().ok()?;
        Some(Stamp {
            publisher: u32::from_le_bytes(publisher),
            sequence: u64::from_le_bytes(sequence),
            sent_nanos: u64::from_le_bytes(sent_nanos),
        })
    }
}

/// The run's monotonic time origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn start() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds from the origin to `instant` (0 for instants before it).
    pub fn nanos_at(&self, instant: Instant) -> u64 {
        duration_nanos(instant.saturating_duration_since(self.origin))
    }

    /// Nanoseconds from the origin to now.
    pub fn now_nanos(&self) -> u64 {
        self.nanos_at(Instant::now())
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (584 years).
pub fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
