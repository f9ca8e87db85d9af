//! Reconnect delays of a bridge: "decorrelated jitter" (each delay drawn between the base and
//! three times the previous one, never above the cap), as Mosquitto's `restart_timeout base cap`
//! does, so many gateways cut off together do not come back in lockstep. A connection that
//! stayed up for the configured stable period starts again from the base.

use std::time::Duration;

/// The delays before the next attempts.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    previous: Duration,
    /// State of a small xorshift generator: jitter needs no cryptographic randomness.
    random: u64,
}

impl Backoff {
    /// Delays from `base` up to `cap` (a cap below the base is taken as the base), jittered
    /// from `seed`.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            previous: base,
            random: seed | 1,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let low = self.base.as_millis() as u64;
        let high = (self.previous.as_millis() as u64)
            .saturating_mul(3)
            .max(low + 1);
        let drawn = low + self.next_random() % (high - low);
        let delay = Duration::from_millis(drawn).min(self.cap);
        self.previous = delay;
        delay
    }

    /// The longest delay, for refusals retrying soon cannot cure (bad credentials, a banned
    /// client identifier).
    pub fn longest(&mut self) -> Duration {
        self.previous = self.cap;
        self.cap
    }

    /// Starts again from the base (after a stable connection).
    pub fn reset(&mut self) {
        self.previous = self.base;
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn delays_stay_between_base_and_cap_and_grow() {
        let mut backoff = Backoff::new(seconds(1), seconds(30), 7);
        let delays: Vec<Duration> = (0..50).map(|_| backoff.next_delay()).collect();
        assert!(
            delays.iter().all(|d| *d >= seconds(1) && *d <= seconds(30)),
            "{delays:?}"
        );
        assert!(
            delays.iter().any(|d| *d > seconds(10)),
            "never grew: {delays:?}"
        );
    }

    #[test]
    fn each_delay_is_at_most_three_times_the_previous() {
        let mut backoff = Backoff::new(Duration::from_millis(100), seconds(3600), 99);
        let mut previous = Duration::from_millis(100);
        for _ in 0..40 {
            let delay = backoff.next_delay();
            assert!(delay <= previous * 3, "{delay:?} after {previous:?}");
            previous = delay;
        }
    }

    #[test]
    fn reset_returns_to_the_base_range_and_longest_is_the_cap() {
        let mut backoff = Backoff::new(seconds(1), seconds(120), 3);
        assert_eq!(backoff.longest(), seconds(120));
        backoff.reset();
        assert!(backoff.next_delay() < seconds(3));
    }

    #[test]
    fn two_seeds_give_different_delays() {
        let mut a = Backoff::new(seconds(1), seconds(60), 1);
        let mut b = Backoff::new(seconds(1), seconds(60), 2);
        let a: Vec<Duration> = (0..5).map(|_| a.next_delay()).collect();
        let b: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        assert_ne!(a, b);
    }
}
