//! A database file read as it is, with every write redb makes kept in memory: redb runs over
//! it to verify a file, or to read one that a crash left needing a repair, without writing to
//! the file. The file is opened for reading only, so the locks are shared ones (a write lock
//! needs a writable file): a running broker, which holds its file exclusively, refuses it, and
//! a broker cannot start while one is open.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Bytes per block of the overlay.
const BLOCK: u64 = 4096;

/// A file read as it is, with every write kept in memory in blocks of [`BLOCK`] bytes, which
/// reads see instead of the file's bytes.
#[derive(Debug)]
pub(super) struct Overlay {
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
    /// `file`, of `len` bytes, with nothing written yet.
    pub(super) fn new(file: FileBackend, len: u64) -> Overlay {
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
        // A panic while it is held ends the process (the release profile aborts); a test's
        // poisoned lock is taken as it is.
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
    use std::fs::File;

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
