//! The `cairn` binary's memory allocator: the system's `malloc` (glibc's), except that a block
//! aligned beyond what `malloc` guarantees is carved out of a plain `malloc` block instead of
//! coming from `posix_memalign`; and [`FreeMemory`], which gives the heap's free pages back
//! to the kernel after a burst.
//!
//! tokio aligns every task and every socket's reactor registration to 128 bytes on x86_64 and
//! arm64 (32 on armhf), and a reboot storm makes and frees one of each per connecting client
//! (an idle connection parks and keeps neither). glibc's `posix_memalign` carves each from a
//! larger chunk, giving the pieces around it back to the heap, and a freed aligned block goes
//! to glibc's per-thread cache, where only a plain `malloc` of the same size finds it again:
//! the next aligned block is carved anew, and the pieces end up between the small blocks the
//! idle sessions keep. In the storm of `benches/storm.sh` (10,000 clients) that cost about 85
//! bytes of RSS per idle connection. A block carved here lies in an ordinary `malloc` block of
//! its size plus its alignment, which glibc reuses whole for the next one; while it lives, up
//! to its alignment in bytes is unused.
//!
//! glibc gives freed memory back to the kernel only from the top of the heap. A burst (every
//! connection woken at once by a command to each, with its task, buffers and message) leaves
//! megabytes free in the middle of it, held as RSS until the next burst; `malloc_trim` hands
//! the free pages back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::mem::size_of;
use std::ptr;

/// The alignment of every `malloc` block: two words (glibc's `MALLOC_ALIGNMENT` on the 64-bit
/// and the 32-bit ARM targets alike).
const MALLOC_ALIGN: usize = 2 * size_of::<usize>();

/// How much more of the heap must be free than at its lowest since the last give-back before
/// [`FreeMemory::give_back_if_grown`] gives it back: a burst's worth, not the churn of a
/// steady load (whose pages would only be faulted in again).
const GIVE_BACK_AT: usize = 1024 * 1024;

/// The system allocator, with over-aligned blocks carved out of plain ones.
pub struct CarvingAllocator;

/// Whether `layout` asks for more alignment than `malloc` gives.
fn over_aligned(layout: Layout) -> bool {
    layout.align() > MALLOC_ALIGN
}

/// The plain block an over-aligned `layout` is carved from: its size plus its alignment, room
/// for the block at whatever offset the alignment puts it (see [`carve`]).
fn plain_layout(layout: Layout) -> Option<Layout> {
    let size = layout.size().checked_add(layout.align())?;
    Layout::from_size_align(size, MALLOC_ALIGN).ok()
}

/// The block of `align` at the first multiple of `align` after the start of `plain`. `plain`
/// is `MALLOC_ALIGN`-aligned, so the offset is between `MALLOC_ALIGN` and `align`: the block
/// ends within the plain block of [`plain_layout`], and the word before it, where the plain
/// block's address is kept, lies within it too.
///
/// # Safety
/// `plain` must be a `MALLOC_ALIGN`-aligned block of `plain_layout` for a layout of `align`.
unsafe fn carve(plain: *mut u8, align: usize) -> *mut u8 {
    let offset = align - plain as usize % align;
    let block = plain.add(offset);
    block.cast::<*mut u8>().sub(1).write(plain);
    block
}

/// The plain block that `block`, returned by [`carve`], was carved from.
///
/// # Safety
/// `block` must come from [`carve`] and not have been freed.
unsafe fn plain_of(block: *mut u8) -> *mut u8 {
    block.cast::<*mut u8>().sub(1).read()
}

// SAFETY: a layout `malloc`'s alignment serves goes to `System` unchanged. An over-aligned
// block lies within a plain `System` block of `plain_layout`, which `dealloc` frees with that
// same layout, found from the address `carve` keeps in the word before the block.
unsafe impl GlobalAlloc for CarvingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !over_aligned(layout) {
            return System.alloc(layout);
        }
        let Some(plain_layout) = plain_layout(layout) else {
            return ptr::null_mut();
        };
        let plain = System.alloc(plain_layout);
        if plain.is_null() {
            return plain;
        }
        carve(plain, layout.align())
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if !over_aligned(layout) {
            return System.dealloc(block, layout);
        }
        // The layout had a plain layout when the block was allocated.
        if let Some(plain_layout) = plain_layout(layout) {
            System.dealloc(plain_of(block), plain_layout);
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !over_aligned(layout) {
            return System.alloc_zeroed(layout);
        }
        let block = self.alloc(layout);
        if !block.is_null() {
            block.write_bytes(0, layout.size());
        }
        block
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !over_aligned(layout) {
            return System.realloc(block, layout, new_size);
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        let moved = self.alloc(new_layout);
        if !moved.is_null() {
            ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
            self.dealloc(block, layout);
        }
        moved
    }
}

/// Watches how much of the heap is free, to give it back to the kernel after a burst.
pub struct FreeMemory {
    /// The least free heap seen since the last give-back (or since the start).
    low: usize,
}

impl FreeMemory {
    /// Starts watching from the heap as it is now.
    pub fn new() -> FreeMemory {
        FreeMemory { low: free_bytes() }
    }

    /// Gives the heap's free pages back to the kernel if at least [`GIVE_BACK_AT`] more of it
    /// is free than at its lowest since the last time; returns the free bytes if it did.
    pub fn give_back_if_grown(&mut self) -> Option<usize> {
        let free = free_bytes();
        if free < self.low.saturating_add(GIVE_BACK_AT) {
            self.low = self.low.min(free);
            return None;
        }
        // SAFETY: malloc_trim takes no pointers and is safe to call from any thread.
        unsafe { libc::malloc_trim(0) };
        // The given-back pages still count as free: the next give-back waits for more.
        self.low = free;
        Some(free)
    }
}

/// Bytes free in the heap, over all of glibc's arenas (free chunks and the top of each).
fn free_bytes() -> usize {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
    unsafe { libc::mallinfo2() }.fordblks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Layouts of the sizes and alignments the runtime asks for, and the extremes around them.
    fn layouts() -> Vec<Layout> {
        let mut layouts = Vec::new();
        for align in [1, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 16, 100, 128, 256, 1000, 5000] {
                layouts.push(Layout::from_size_align(size, align).unwrap());
            }
        }
        layouts
    }

    #[test]
    fn blocks_are_aligned_distinct_and_writable_to_their_last_byte() {
        let allocator = CarvingAllocator;
        for layout in layouts() {
            // Several at once, so that they must not overlap or share a kept address.
            let blocks: Vec<*mut u8> = (0..8u8)
                .map(|fill| unsafe {
                    let block = allocator.alloc(layout);
                    assert!(!block.is_null(), "{layout:?}");
                    assert_eq!(block as usize % layout.align(), 0, "{layout:?}");
                    block.write_bytes(fill, layout.size());
                    block
                })
                .collect();
            for (fill, &block) in (0..8u8).zip(&blocks) {
                let bytes = unsafe { std::slice::from_raw_parts(block, layout.size()) };
                assert!(bytes.iter().all(|&byte| byte == fill), "{layout:?}");
                unsafe { allocator.dealloc(block, layout) };
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero() {
        let allocator = CarvingAllocator;
        for layout in layouts() {
            unsafe {
                // A block freed dirty first, so that the zeroing is not the heap's doing.
                let dirty = allocator.alloc(layout);
                dirty.write_bytes(0xa5, layout.size());
                allocator.dealloc(dirty, layout);
                let block = allocator.alloc_zeroed(layout);
                assert_eq!(block as usize % layout.align(), 0, "{layout:?}");
                let bytes = std::slice::from_raw_parts(block, layout.size());
                assert!(bytes.iter().all(|&byte| byte == 0), "{layout:?}");
                allocator.dealloc(block, layout);
            }
        }
    }

    #[test]
    fn realloc_keeps_the_contents_and_the_alignment() {
        let allocator = CarvingAllocator;
        for layout in layouts() {
            for new_size in [layout.size() / 2 + 1, layout.size() * 3] {
                unsafe {
                    let block = allocator.alloc(layout);
                    for index in 0..layout.size() {
                        block.add(index).write(index as u8);
                    }
                    let moved = allocator.realloc(block, layout, new_size);
                    assert!(!moved.is_null(), "{layout:?} to {new_size}");
                    assert_eq!(moved as usize % layout.align(), 0, "{layout:?}");
                    let kept = layout.size().min(new_size);
                    let bytes = std::slice::from_raw_parts(moved, kept);
                    assert!(
                        bytes
                            .iter()
                            .enumerate()
                            .all(|(index, &byte)| byte == index as u8),
                        "{layout:?} to {new_size}"
                    );
                    moved.add(new_size - 1).write(0xff);
                    let new_layout = Layout::from_size_align(new_size, layout.align()).unwrap();
                    allocator.dealloc(moved, new_layout);
                }
            }
        }
    }

    #[test]
    fn an_over_aligned_block_lies_within_its_plain_block() {
        let allocator = CarvingAllocator;
        for layout in layouts().into_iter().filter(|&layout| over_aligned(layout)) {
            unsafe {
                let block = allocator.alloc(layout);
                let plain = plain_of(block) as usize;
                let plain_size = plain_layout(layout).unwrap().size();
                let block = block as usize;
                assert!(block - size_of::<usize>() >= plain, "{layout:?}");
                assert!(block + layout.size() <= plain + plain_size, "{layout:?}");
                allocator.dealloc(block as *mut u8, layout);
            }
        }
    }

    #[test]
    fn a_burst_freed_is_given_back_once() {
        let mut free_memory = FreeMemory::new();
        // 4 MiB in blocks below glibc's mmap threshold, with a block after them that stays,
        // so that freeing them leaves free heap in the middle rather than at its top. Seen by
        // `black_box`: an optimised build would otherwise leave out allocations never read.
        let burst: Vec<Vec<u8>> = (0..4096)
            .map(|_| std::hint::black_box(vec![1u8; 1024]))
            .collect();
        let fence = std::hint::black_box(vec![2u8; 1024]);
        assert_eq!(free_memory.give_back_if_grown(), None, "nothing freed yet");
        drop(burst);
        let given_back = free_memory.give_back_if_grown();
        assert!(
            given_back.is_some_and(|free| free >= 4 * 1024 * 1024),
            "{given_back:?}"
        );
        assert_eq!(free_memory.give_back_if_grown(), None, "given back already");
        drop(fence);
    }

    #[test]
    fn a_layout_too_large_to_carve_gets_no_block() {
        // Valid (a multiple of its alignment, at most isize::MAX), but not with 128 more.
        let layout = Layout::from_size_align(isize::MAX as usize - 127, 128).unwrap();
        assert!(unsafe { CarvingAllocator.alloc(layout) }.is_null());
    }
}
