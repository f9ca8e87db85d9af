//! The counters publishers and subscribers share during a run, and the end-to-end window
//! built on them: a publisher may send only while the slowest subscriber is fewer than
//! `window` messages behind, so no broker is measured while queueing without bound.
//!
//! The run's stop switches are `watch` channels of `bool`; the helpers at the end read them.
//!
//! A broker may drop QoS 0 messages; the received count then never catches up, so a publisher
//! that waits longer than [`STALL_TIMEOUT`] writes the missing messages off and counts a stall.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// How long a publisher waits for the window to open before presuming messages lost.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Shared sent/received counters of one run.
pub struct Progress {
    /// Messages the slowest subscriber may lag behind all publishers together.
    window: u64,
    /// Messages publishers have reserved (and then sent), all publishers together.
    sent: AtomicU64,
    /// Messages written off as lost after a stall, so the window reopens.
    written_off: AtomicU64,
    /// Messages received so far, one counter per subscriber.
    received: Box<[AtomicU64]>,
    /// Woken whenever a subscriber's count moves.
    received_moved: Notify,
}

impl Progress {
    /// Counters for `subscribers` subscribers, all at zero.
    pub fn new(subscribers: usize, window: u64) -> Progress {
        Progress {
            window,
            sent: AtomicU64::new(0),
            written_off: AtomicU64::new(0),
            received: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            received_moved: Notify::new(),
        }
    }

    /// Reserves one message if the window allows it.
    pub fn try_reserve(&self) -> bool {
        let limit = self.send_limit();
        self.sent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sent| {
                (sent < limit).then_some(sent + 1)
            })
            .is_ok()
    }

    /// Waits until the window allows another message; `false` after [`STALL_TIMEOUT`] without
    /// progress, having written the outstanding messages off.
    pub async fn wait_for_window(&self) -> bool {
        let opened = tokio::time::timeout(STALL_TIMEOUT, self.wait_until(|p| p.has_room())).await;
        if opened.is_err() {
            let outstanding = self
                .sent
                .load(Ordering::Relaxed)
                .saturating_sub(self.slowest_received());
            self.written_off.fetch_max(outstanding, Ordering::Relaxed);
        }
        opened.is_ok()
    }

    /// Publishes subscriber `index`'s running total and wakes whoever waits on it.
    pub fn set_received(&self, index: usize, total: u64) {
        if let Some(counter) = self.received.get(index) {
            counter.store(total, Ordering::Relaxed);
            self.received_moved.notify_waiters();
        }
    }

    /// Messages received by all subscribers together.
    pub fn total_received(&self) -> u64 {
        self.received
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Messages received by the subscriber furthest behind.
    pub fn slowest_received(&self) -> u64 {
        self.received
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Resolves once `condition` holds, re-checking whenever a subscriber's count moves.
    pub async fn wait_until(&self, condition: impl Fn(&Progress) -> bool) {
        loop {
            let moved = self.received_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if condition(self) {
                return;
            }
            moved.await;
        }
    }

    fn has_room(&self) -> bool {
        self.sent.load(Ordering::Relaxed) < self.send_limit()
    }

    /// The total sent count the window allows right now.
    fn send_limit(&self) -> u64 {
        self.slowest_received() + self.written_off.load(Ordering::Relaxed) + self.window
    }
}

/// True once the run asked to stop (or can no longer ask).
pub fn stop_requested(stop: &mut watch::Receiver<bool>) -> bool {
    *stop.borrow_and_update() || stop.has_changed().is_err()
}

/// Resolves when the stop flag changes (or its sender is gone).
pub async fn stop_changed(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which stops the run as well.
    let _ = stop.changed().await;
}
