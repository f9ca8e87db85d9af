//! The slowdown of repeated login failures: an address that keeps failing waits longer and
//! longer before each of its next CONNACKs, so a device on the LAN cannot try passwords at
//! full speed. A few failures are free (a mistyped password), then the wait doubles with each
//! failure up to a cap; an address forgotten after a quiet spell, or whose login succeeds,
//! starts afresh. Pure bookkeeping over given instants: the caller sleeps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may have before its logins wait.
pub const FREE_FAILURES: u32 = 4;
/// The wait after the first failure past the free ones; it doubles with each further one.
pub const FIRST_WAIT: Duration = Duration::from_millis(500);
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(8);
/// A failure older than this is forgotten, with every earlier one of its address.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses tracked at once; when full, the quietest is forgotten.
const MAX_ADDRESSES: usize = 10_000;

/// Recent failures per address.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Throttle {
    /// How long a login from `addr` waits at `now`.
    pub fn wait_for(&self, addr: IpAddr, now: Instant) -> Duration {
        let failures = self.lock().get(&addr).copied();
        match failures {
            Some(failures) if now.saturating_duration_since(failures.last) < FORGET_AFTER => {
                wait_after(failures.count)
            }
            _ => Duration::ZERO,
        }
    }

    /// Counts a refused login from `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let mut table = self.lock();
        if table.len() >= MAX_ADDRESSES && !table.contains_key(&addr) {
            table.retain(|_, failures| now.saturating_duration_since(failures.last) < FORGET_AFTER);
            if table.len() >= MAX_ADDRESSES {
                if let Some(quietest) = table
                    .iter()
                    .min_by_key(|(_, failures)| failures.last)
                    .map(|(addr, _)| *addr)
                {
                    table.remove(&quietest);
                }
            }
        }
        let failures = table.entry(addr).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(failures.last) >= FORGET_AFTER {
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
    }

    /// A login from `addr` succeeded: its failures are forgotten.
    pub fn succeeded(&self, addr: IpAddr) {
        self.lock().remove(&addr);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The wait of an address with `count` recent failures.
pub fn wait_after(count: u32) -> Duration {
    match count.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(past_free) => FIRST_WAIT
            .saturating_mul(1 << past_free.min(16))
            .min(MAX_WAIT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 8));

    #[test]
    fn the_first_failures_are_free_then_the_wait_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (0..10)
            .map(|count| wait_after(count).as_millis() as u64)
            .collect();
        assert_eq!(waits, [0, 0, 0, 0, 500, 1000, 2000, 4000, 8000, 8000]);
        assert_eq!(wait_after(u32::MAX), MAX_WAIT);
    }

    #[test]
    fn failures_count_per_address_and_a_success_forgets_them() {
        let throttle = Throttle::default();
        let start = Instant::now();
        let mut attempts_waited = 0;
        for attempt in 0..6 {
            let now = start + Duration::from_secs(attempt);
            if !throttle.wait_for(ADDR, now).is_zero() {
                attempts_waited += 1;
            }
            throttle.failed(ADDR, now);
        }
        // Attempts 5 and 6 come after four and five failures.
        assert_eq!(attempts_waited, 2);
        assert_eq!(throttle.wait_for(OTHER, start), Duration::ZERO);
        throttle.succeeded(ADDR);
        assert_eq!(throttle.wait_for(ADDR, start), Duration::ZERO);
    }

    #[test]
    fn a_quiet_spell_forgets_an_address() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for _ in 0..6 {
            throttle.failed(ADDR, start);
        }
        assert!(!throttle.wait_for(ADDR, start).is_zero());
        let later = start + FORGET_AFTER;
        assert_eq!(throttle.wait_for(ADDR, later), Duration::ZERO);
        throttle.failed(ADDR, later);
        assert_eq!(
            throttle.wait_for(ADDR, later),
            Duration::ZERO,
            "counting starts afresh"
        );
    }

    #[test]
    fn a_full_table_forgets_the_quietest_address() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for index in 0..MAX_ADDRESSES as u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + index));
            throttle.failed(addr, start + Duration::from_millis(u64::from(index)));
        }
        throttle.failed(ADDR, start + Duration::from_secs(60));
        let table = throttle.lock();
        assert_eq!(table.len(), MAX_ADDRESSES);
        assert!(table.contains_key(&ADDR));
        assert!(!table.contains_key(&IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000))));
    }
}
