//! A small seeded PRNG (SplitMix64) for tests that need repeatable randomness: the same seed
//! gives the same sequence, so a failing run can be repeated from its printed seed. Not for
//! anything that needs unpredictability.
//!
//! Test binaries that do not use the broker harness include this file alone with
//! `#[path = "common/prng.rs"] mod prng;`.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::ops::Range;

/// SplitMix64: small, fast, and good enough to drive mutations and timings reproducibly.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator that `seed` starts.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `range` (not empty).
    pub fn within(&mut self, range: Range<u64>) -> u64 {
        range.start + self.next_u64() % (range.end - range.start)
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
