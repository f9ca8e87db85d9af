//! Converts between the engine's monotonic [`Instant`]s and the wall-clock times the store
//! persists, so a message's remaining life survives a restart (an `Instant` means nothing in
//! another process).

use std::time::{Duration, Instant, SystemTime};

/// The longest a message can still live: the largest Message Expiry Interval.
const LONGEST_LIFE: Duration = Duration::from_secs(u32::MAX as u64);

/// One reading of both clocks, taken together.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub system: SystemTime,
    pub instant: Instant,
}

impl WallClock {
    /// Reads both clocks now.
    pub fn now() -> WallClock {
        WallClock {
            system: SystemTime::now(),
            instant: Instant::now(),
        }
    }

    /// The wall-clock time of `at`.
    pub fn system_time_of(&self, at: Instant) -> SystemTime {
        if at >= self.instant {
            self.system + (at - self.instant)
        } else {
            let ago = self.instant - at;
            self.system
                .checked_sub(ago)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        }
    }

    /// The instant of wall-clock time `at`; a time further ahead than any expiry interval allows
    /// (a clock set back) is capped to that interval, a past time beyond this process's start is
    /// mapped to now (already due either way).
    pub fn instant_of(&self, at: SystemTime) -> Instant {
        match at.duration_since(self.system) {
            Ok(ahead) => self.instant + ahead.min(LONGEST_LIFE),
            Err(past) => self
                .instant
                .checked_sub(past.duration())
                .unwrap_or(self.instant),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_map_to_wall_clock_and_back() {
        let clock = WallClock::now();
        let later = clock.instant + Duration::from_secs(90);
        assert_eq!(clock.instant_of(clock.system_time_of(later)), later);
        let wall = clock.system_time_of(later);
        assert_eq!(
            wall.duration_since(clock.system).ok(),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn far_future_is_capped_to_the_longest_expiry() {
        let clock = WallClock::now();
        let far = clock.system + LONGEST_LIFE * 4;
        assert_eq!(clock.instant_of(far), clock.instant + LONGEST_LIFE);
    }

    #[test]
    fn past_times_are_already_due() {
        let clock = WallClock::now();
        let past = clock.system - Duration::from_secs(10);
        assert!(clock.instant_of(past) <= clock.instant);
    }
}
