//! The database file as the writer uses it: redb's [`FileBackend`], with the file's new space
//! written with zeros a chunk ahead of redb's own writes.
//!
//! redb grows its file by setting a longer length, which leaves a hole. A commit that writes
//! into a hole makes the file system allocate blocks, and the commit's `fdatasync` must then
//! also write that allocation (on ext4 the block bitmap and the inode, with a journal a journal
//! commit) after the pages themselves. While a reboot storm of new sessions grew the file, 270
//! of 309 commits did so (`ext4:ext4_allocate_blocks` against `ext4:ext4_sync_file_enter`),
//! and so does every commit of a backlog filling the bridge's queue. Written ahead in chunks of
//! [`AHEAD`] bytes, the blocks are allocated once per chunk, and the commits in between flush
//! their pages alone. The price is that filled space is written twice, zeros and then redb's
//! pages: after a commit that grew the file by [`FILL_BELOW`] or more (a burst), whose
//! allocation costs less than that, nothing is filled.
//!
//! Only space that nobody has written since the file was opened is filled: it reads as zeros,
//! so a fill changes no byte of the file, and a fill never goes past the length redb set. A
//! fill that fails (a full disk) is given up: redb's own writes there allocate as they would
//! without it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::{Bound, Range};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{BackendError, DatabaseError, StorageBackend};

/// How far ahead space is filled: a write into space not yet filled fills the rest of its
/// chunk of this many bytes (aligned to it).
const AHEAD: u64 = 1024 * 1024;

/// A commit that grew the file by this much or more is followed by no fill. Filled space is
/// written twice (zeros, then redb's pages), an allocation once per commit: on ext4 with a
/// journal, an allocating commit wrote about 23 KB more than the same commit into allocated
/// space (durable fan-in from 16 publishers, 253 messages and ~50 KB of growth a commit), so
/// a commit that grows the file by more than that writes less without the fill.
const FILL_BELOW: u64 = 32 * 1024;

/// Bytes of zeros per `pwrite` of a fill: one page, so that the page cache keeps the file in
/// pages of that size (a larger write can make larger pages, and a later write of one of
/// redb's pages would count the whole large page as written).
const ZEROS: [u8; 4096] = [0; 4096];

/// The database file, with its new space filled ahead of redb's writes.
#[derive(Debug)]
pub(super) struct FilledAhead {
    file: FileBackend,
    /// The same open file, for the fills.
    fill: File,
    space: Mutex<Space>,
}

impl FilledAhead {
    /// The file at `path`, created if absent, as redb's storage (opened as redb's own `create`
    /// opens it); what it holds now is never filled.
    pub(super) fn open(path: &Path) -> Result<FilledAhead, DatabaseError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        let fill = file.try_clone()?;
        Ok(FilledAhead {
            file: FileBackend::new(file)?,
            fill,
            space: Mutex::new(Space::new(len)),
        })
    }

    fn space(&self) -> MutexGuard<'_, Space> {
        // A panic while it is held ends the process (the release profile aborts); a test's
        // poisoned lock is taken as it is: `Space` is consistent between its calls.
        self.space
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes zeros over `range`; stops at the first failure.
    fn fill_zeros(&self, range: Range<u64>) -> io::Result<()> {
        let mut at = range.start;
        while at < range.end {
            let len = (range.end - at).min(ZEROS.len() as u64) as usize;
            self.fill.write_all_at(&ZEROS[..len], at)?;
            at += len as u64;
        }
        Ok(())
    }
}

/// The file's length, the space in it redb has not written since it was opened, and how much
/// of it the last commits wrote (the file's growth).
#[derive(Debug)]
struct Space {
    len: u64,
    /// Ranges redb has not written, as start → [`Fresh`], disjoint: holes, or zeros written
    /// ahead. Everything past `len` is in one hole (its end `u64::MAX`): bytes past the length
    /// read as zeros when it grows.
    fresh: BTreeMap<u64, Fresh>,
    /// Bytes of fresh space written since the last `sync_data` (the commit under way).
    growing: u64,
    /// The same for the last commit.
    last_growth: u64,
}

/// The end of a range of fresh space, and whether it was filled with zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fresh {
    end: u64,
    filled: bool,
}

impl Space {
    /// A file of `len` bytes, all taken as written.
    fn new(len: u64) -> Space {
        Space {
            len,
            fresh: BTreeMap::from([(len, Fresh::hole(u64::MAX))]),
            growing: 0,
            last_growth: 0,
        }
    }

    /// The ranges of fresh space that overlap `range`, in order, unclipped.
    fn overlapping(&self, range: &Range<u64>) -> Vec<(u64, Fresh)> {
        let mut overlapping: Vec<(u64, Fresh)> = self
            .fresh
            .range(..range.end)
            .rev()
            .take_while(|&(_, fresh)| fresh.end > range.start)
            .map(|(&start, &fresh)| (start, fresh))
            .collect();
        overlapping.reverse();
        overlapping
    }

    /// Takes `range` out of the fresh space; returns the parts of it that were fresh, in
    /// order, with whether each was filled.
    fn take(&mut self, range: Range<u64>) -> Vec<(Range<u64>, bool)> {
        let overlapping = self.overlapping(&range);
        let mut taken = Vec::with_capacity(overlapping.len());
        for (start, fresh) in overlapping {
            self.fresh.remove(&start);
            if start < range.start {
                self.fresh.insert(
                    start,
                    Fresh {
                        end: range.start,
                        ..fresh
                    },
                );
            }
            if fresh.end > range.end {
                self.fresh.insert(range.end, fresh);
            }
            taken.push((
                start.max(range.start)..fresh.end.min(range.end),
                fresh.filled,
            ));
        }
        taken
    }

    /// redb wrote `range`: it is no longer fresh, and what was counts as growth.
    fn written(&mut self, range: Range<u64>) {
        let grown: u64 = self
            .take(range)
            .iter()
            .map(|(part, _)| part.end - part.start)
            .sum();
        self.growing += grown;
    }

    /// A commit ended (its data synced).
    fn synced(&mut self) {
        self.last_growth = std::mem::take(&mut self.growing);
    }

    /// The length becomes `len`: what a shortening cuts off is a hole again.
    fn set_len(&mut self, len: u64) {
        if len < self.len {
            self.take(len..u64::MAX);
            self.fresh.insert(len, Fresh::hole(u64::MAX));
        }
        self.len = len;
    }

    /// The holes to fill after a write that ends at `end`: those of the chunk of [`AHEAD`] it
    /// ends in, past `end` and within the length, marked filled; none if the last commit grew
    /// the file by [`FILL_BELOW`] or more.
    fn holes_ahead_of(&mut self, end: u64) -> Vec<Range<u64>> {
        let chunk_end = end.next_multiple_of(AHEAD).min(self.len);
        if chunk_end <= end || self.last_growth >= FILL_BELOW {
            return Vec::new();
        }
        let holes: Vec<Range<u64>> = self
            .overlapping(&(end..chunk_end))
            .into_iter()
            .filter(|(_, fresh)| !fresh.filled)
            .map(|(start, fresh)| start.max(end)..fresh.end.min(chunk_end))
            .collect();
        for hole in &holes {
            self.take(hole.clone());
            self.fresh.insert(
                hole.start,
                Fresh {
                    end: hole.end,
                    filled: true,
                },
            );
        }
        holes
    }
}

impl Fresh {
    fn hole(end: u64) -> Fresh {
        Fresh { end, filled: false }
    }
}

impl StorageBackend for FilledAhead {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut space = self.space();
        self.file.set_len(len)?;
        space.set_len(len);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut space = self.space();
        self.file.sync_data()?;
        space.synced();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut space = self.space();
        self.file.write(offset, data)?;
        let end = offset + data.len() as u64;
        space.written(offset..end);
        for range in space.holes_ahead_of(end) {
            if self.fill_zeros(range).is_err() {
                // Given up: the rest reads as zeros all the same, and redb's writes there
                // allocate as they would without the fill.
                break;
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use proptest::prelude::*;

    use super::*;

    const PAGE: u64 = 4096;

    fn open(path: &Path) -> FilledAhead {
        FilledAhead::open(path).expect("open")
    }

    /// A new file, grown by redb to `len`, its directory and its path.
    fn new_file(len: u64) -> (FilledAhead, tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("db");
        let file = open(&path);
        file.set_len(len).expect("grow");
        (file, dir, path)
    }

    /// Bytes of the file the file system has allocated.
    fn allocated(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).expect("metadata").blocks() * 512
    }

    #[test]
    fn a_write_into_new_space_fills_the_rest_of_its_chunk() {
        let (file, _dir, path) = new_file(4 * AHEAD);
        file.write(PAGE, &[7; PAGE as usize]).expect("write");
        file.sync_data().expect("sync");
        assert!(
            allocated(&path) >= AHEAD - PAGE,
            "{} bytes allocated, the chunk's {} expected",
            allocated(&path),
            AHEAD - PAGE
        );
        assert!(allocated(&path) < 2 * AHEAD, "only the first chunk");
        // A write in the next chunk fills that one past it.
        file.write(AHEAD + 3 * PAGE, &[8; 10]).expect("write");
        file.sync_data().expect("sync");
        assert!(allocated(&path) >= 2 * AHEAD - 4 * PAGE);
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len() as u64, 4 * AHEAD, "the length redb set");
        assert!(bytes[PAGE as usize..2 * PAGE as usize]
            .iter()
            .all(|&b| b == 7));
        let at = (AHEAD + 3 * PAGE) as usize;
        assert_eq!(bytes[at..at + 10], [8; 10]);
        assert_eq!(
            bytes.iter().filter(|&&b| b != 0).count(),
            PAGE as usize + 10
        );
    }

    /// redb writes near the end of new space early (its allocator's state), then fills the
    /// space from below: the fills below must leave that write alone.
    #[test]
    fn a_fill_never_covers_what_was_written_ahead_of_it() {
        let (file, _dir, path) = new_file(AHEAD / 2);
        file.write(AHEAD / 2 - PAGE, &[9; PAGE as usize])
            .expect("write at the end");
        file.write(0, &[1; 100]).expect("write at the start");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len() as u64, AHEAD / 2);
        assert_eq!(bytes[..100], [1; 100]);
        assert!(bytes[(AHEAD / 2 - PAGE) as usize..].iter().all(|&b| b == 9));
    }

    /// What the file held when it was opened is never filled, even where it reads as zeros.
    #[test]
    fn the_contents_found_at_open_are_never_written() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("db");
        let mut old = vec![0; 3 * PAGE as usize];
        old[PAGE as usize * 2..].fill(5);
        std::fs::write(&path, &old).expect("write the old file");
        let file = open(&path);
        file.write(0, &[1; 10]).expect("write");
        file.sync_data().expect("sync");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes[..10], [1; 10]);
        assert_eq!(bytes[10..], old[10..]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        SetLen(u64),
        Write(u64, Vec<u8>),
        Sync,
    }

    fn op() -> impl Strategy<Value = Op> {
        let limit = 3 * AHEAD;
        prop_oneof![
            (0..limit).prop_map(Op::SetLen),
            // Up to 12 pages: more than FILL_BELOW, so that a sync is followed by no fill.
            (
                0..limit,
                prop::collection::vec(1..=255u8, 1..12 * PAGE as usize)
            )
                .prop_map(|(offset, data)| Op::Write(offset, data)),
            Just(Op::Sync),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Whatever redb does, the file holds exactly what it wrote, zeros elsewhere, and has
        /// the length it set: the fills change no byte.
        #[test]
        fn the_file_holds_what_was_written_and_zeros_elsewhere(
            initial in prop::collection::vec(any::<u8>(), 0..2 * PAGE as usize),
            ops in prop::collection::vec(op(), 1..16),
        ) {
            let dir = tempfile::tempdir().expect("temporary directory");
            let path = dir.path().join("db");
            std::fs::write(&path, &initial).expect("write the initial file");
            let file = open(&path);
            let mut model = initial;
            for op in ops {
                match op {
                    Op::SetLen(len) => {
                        file.set_len(len).expect("set_len");
                        model.resize(len as usize, 0);
                    }
                    Op::Write(offset, data) => {
                        let len = model.len() as u64;
                        // redb writes within the length it set.
                        let offset = if len == 0 { continue } else { offset % len };
                        let data = &data[..data.len().min((len - offset) as usize)];
                        file.write(offset, data).expect("write");
                        model[offset as usize..offset as usize + data.len()].copy_from_slice(data);
                    }
                    Op::Sync => file.sync_data().expect("sync"),
                }
                prop_assert_eq!(file.len().expect("len"), model.len() as u64);
                let bytes = std::fs::read(&path).expect("read");
                prop_assert!(bytes == model, "the file differs from what was written");
            }
        }
    }

    #[test]
    fn take_splits_the_ranges_it_cuts() {
        let mut space = Space::new(10);
        assert_eq!(space.take(20..30), vec![(20..30, false)]);
        assert_eq!(space.take(15..25), vec![(15..20, false)]);
        assert_eq!(space.take(0..12), vec![(10..12, false)]);
        assert_eq!(space.take(0..40), vec![(12..15, false), (30..40, false)]);
        assert_eq!(
            space.fresh,
            BTreeMap::from([(40, Fresh::hole(u64::MAX))]),
            "what is left"
        );
        space.set_len(50);
        space.set_len(20);
        assert_eq!(
            space.fresh,
            BTreeMap::from([(20, Fresh::hole(u64::MAX))]),
            "a shortening cuts off the rest"
        );
    }

    /// Space filled ahead is fresh until redb writes it: writing it counts as growth, and a
    /// shortening makes what it cuts off a hole again.
    #[test]
    fn filled_space_stays_fresh_until_written() {
        let mut space = Space::new(0);
        space.set_len(3 * AHEAD);
        assert_eq!(space.holes_ahead_of(100), vec![100..AHEAD]);
        assert_eq!(space.holes_ahead_of(200), vec![], "filled already");
        space.written(0..100);
        space.written(AHEAD - 10..AHEAD + 10);
        assert_eq!(space.growing, 120, "holes and filled space alike");
        space.synced();
        assert_eq!((space.growing, space.last_growth), (0, 120));
        space.set_len(AHEAD / 2);
        assert_eq!(
            space.fresh,
            BTreeMap::from([
                (
                    100,
                    Fresh {
                        end: AHEAD / 2,
                        filled: true
                    }
                ),
                (AHEAD / 2, Fresh::hole(u64::MAX))
            ])
        );
    }

    /// A commit that grew the file by [`FILL_BELOW`] or more (a burst of messages: its pages
    /// written twice would cost more than its allocation) is followed by no fill; a commit that
    /// grew it less is followed by fills again.
    #[test]
    fn a_commit_that_grew_the_file_much_is_followed_by_no_fill() {
        let (file, _dir, path) = new_file(4 * AHEAD);
        file.write(0, &[1; PAGE as usize]).expect("write");
        // Written into the space just filled: growth all the same.
        file.write(PAGE, &vec![2; FILL_BELOW as usize])
            .expect("write");
        file.sync_data()
            .expect("a commit that grew the file by more than FILL_BELOW");
        let after_first = allocated(&path);
        assert!(
            after_first >= AHEAD,
            "the first chunk filled: {after_first}"
        );
        file.write(AHEAD, &[3; PAGE as usize]).expect("write");
        file.sync_data()
            .expect("a commit that grew the file by one page");
        assert!(
            allocated(&path) < after_first + AHEAD / 2,
            "no fill after a commit that grew the file much: {}",
            allocated(&path)
        );
        file.write(2 * AHEAD, &[4; PAGE as usize]).expect("write");
        file.sync_data().expect("sync");
        assert!(
            allocated(&path) >= after_first + AHEAD - PAGE,
            "a fill after a commit that grew it by a page: {}",
            allocated(&path)
        );
    }
}
