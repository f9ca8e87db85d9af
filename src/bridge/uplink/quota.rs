//! Messages the server refused for its quota (PUBACK or PUBREC 0x97 Quota exceeded): a cloud
//! that limits publishes per second (AWS IoT Core, EMQX Serverless) refuses what a draining
//! backlog sends too fast. The refusal ends the message's flow upstream (its packet
//! identifier is free again, MQTT 5 §4.3.2, §4.3.3), not its place in the bridge's window:
//! nothing is sent while it waits (a server over its quota refuses what comes next too), then
//! it is published again, ahead of anything newer. The wait is the bridge's `reconnect_min`
//! and doubles each time a wait begins again with no message taken since, up to
//! `reconnect_max`. Without a wait under way nothing here reads the clock: the drain's every
//! pass asks whether one is.

use std::time::Duration;

use tokio::time::Instant;

/// The refused messages waiting, and the wait before they go again.
#[derive(Debug)]
pub(super) struct QuotaHold {
    /// Packet identifiers of the refused messages, in the order refused.
    refused: Vec<u16>,
    /// When the wait under way ends (`None` once its messages are released).
    until: Option<Instant>,
    /// The next wait.
    next: Duration,
    shortest: Duration,
    longest: Duration,
}

impl QuotaHold {
    pub(super) fn new(shortest: Duration, longest: Duration) -> QuotaHold {
        QuotaHold {
            refused: Vec::new(),
            until: None,
            next: shortest,
            shortest,
            longest: longest.max(shortest),
        }
    }

    /// The message under `packet_id` was refused. Returns the wait it began, if it began one:
    /// a refusal during a wait joins it.
    pub(super) fn refused(&mut self, packet_id: u16) -> Option<Duration> {
        self.refused.push(packet_id);
        if self.holds() {
            return None;
        }
        let wait = self.next;
        self.until = Some(Instant::now() + wait);
        self.next = (wait * 2).min(self.longest);
        Some(wait)
    }

    /// The server took a message: the next wait is the shortest again.
    pub(super) fn taken(&mut self) {
        self.next = self.shortest;
    }

    /// Whether nothing may be sent now.
    pub(super) fn holds(&self) -> bool {
        self.ends_at().is_some()
    }

    /// When the wait under way ends.
    pub(super) fn ends_at(&self) -> Option<Instant> {
        self.until.filter(|until| *until > Instant::now())
    }

    /// The refused messages, in the order refused, once their wait is over; the wait ends
    /// with them.
    pub(super) fn take_due(&mut self) -> Vec<u16> {
        if self.until.is_none() || self.holds() {
            return Vec::new();
        }
        self.until = None;
        std::mem::take(&mut self.refused)
    }

    /// When an acknowledgement wait that began at `since` counts from: not before the wait
    /// under way ends, as nothing goes out during it.
    pub(super) fn wait_start(&self, since: Instant) -> Instant {
        self.until.map_or(since, |until| since.max(until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn refusals_during_a_wait_join_it_and_go_again_together_in_order() {
        let mut hold = QuotaHold::new(SECOND, 8 * SECOND);
        assert!(!hold.holds());
        let start = Instant::now();
        assert_eq!(hold.refused(7), Some(SECOND));
        tokio::time::advance(SECOND / 2).await;
        assert_eq!(hold.refused(3), None, "joins the wait");
        assert!(hold.holds());
        assert_eq!(hold.ends_at(), Some(start + SECOND));
        assert!(hold.take_due().is_empty(), "still waiting");
        tokio::time::advance(SECOND / 2).await;
        assert!(!hold.holds());
        assert_eq!(hold.ends_at(), None);
        assert_eq!(hold.take_due(), [7, 3]);
        assert!(hold.take_due().is_empty(), "taken once");
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_doubles_up_to_the_longest_until_a_message_is_taken() {
        let mut hold = QuotaHold::new(SECOND, 3 * SECOND);
        let mut waits = Vec::new();
        for packet_id in 1..=4 {
            let wait = hold.refused(packet_id).expect("a new wait");
            waits.push(wait);
            tokio::time::advance(wait).await;
            assert_eq!(hold.take_due(), [packet_id]);
        }
        assert_eq!(waits, [SECOND, 2 * SECOND, 3 * SECOND, 3 * SECOND]);
        hold.taken();
        assert_eq!(hold.refused(5), Some(SECOND));
    }

    #[tokio::test(start_paused = true)]
    async fn an_acknowledgement_wait_counts_from_the_end_of_the_quota_wait() {
        let mut hold = QuotaHold::new(2 * SECOND, 2 * SECOND);
        let before = Instant::now();
        assert_eq!(hold.wait_start(before), before, "no quota wait");
        hold.refused(1);
        assert_eq!(hold.wait_start(before), before + 2 * SECOND);
        let later = before + 5 * SECOND;
        assert_eq!(hold.wait_start(later), later);
        tokio::time::advance(2 * SECOND).await;
        hold.take_due();
        assert_eq!(
            hold.wait_start(before),
            before,
            "released: no wait under way"
        );
    }
}
