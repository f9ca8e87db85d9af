//! [`ConnectionSignal`]: how the state reaches the task of a connection it holds a link to:
//! waking it when messages were queued, asking it to close (takeover, revoked login,
//! keep-alive timeout, shutdown), the keep-alive deadline the broker's sweep checks, and
//! whether the connection has released its session (what a takeover waits for).
//!
//! The task waits on it by polling ([`ConnectionSignal::poll_woken`]), not through a stored
//! future: an idle connection's task holds its waiting state in a few words, and there is no
//! timer per connection (the sweep looks at every deadline once a tick, as Mosquitto does).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use crate::codec::ReasonCode;

/// A deadline that never passes: Keep Alive 0, or reading paused.
const NO_DEADLINE: u64 = u64::MAX;

/// `close` while no close was asked for; otherwise it holds this bit and the reason's byte.
const NO_CLOSE: u16 = 0;
const CLOSE_ASKED: u16 = 0x100;

/// The link between the state and one connection task.
#[derive(Debug)]
pub struct ConnectionSignal {
    /// The task waiting on [`ConnectionSignal::poll_woken`].
    waker: AtomicWaker,
    /// Set by [`ConnectionSignal::wake`] until the task sees it.
    woken: AtomicBool,
    /// Set when the connection must close ([`CLOSE_ASKED`] and the reason for its DISCONNECT),
    /// [`NO_CLOSE`] until then. An atomic, not a mutex around the reason: 16 bytes less per
    /// connection.
    close: AtomicU16,
    /// The client's user name for the ACL: from its certificate or its checked password, or
    /// as it said on an anonymous listener without a password file; `None` for an anonymous
    /// client. Kept here, not in the connection: a parked connection is smaller.
    username: Option<Arc<str>>,
    /// The password file vouched for `username` at CONNECT: a reload that removes the user
    /// closes the connection.
    by_password: bool,
    /// When the connection times out unless something arrives, in milliseconds of the
    /// broker's clock ([`super::super::Broker::clock_ms`]); [`NO_DEADLINE`] when it cannot.
    deadline_ms: AtomicU64,
    /// Set once the connection has ended and released its session (see
    /// [`ConnectionSignal::released`]).
    released: AtomicBool,
}

impl Default for ConnectionSignal {
    fn default() -> Self {
        ConnectionSignal::for_user(None, false)
    }
}

impl ConnectionSignal {
    /// The signal of a connection of `username`, checked against the password file if
    /// `by_password`.
    pub fn for_user(username: Option<Arc<str>>, by_password: bool) -> ConnectionSignal {
        ConnectionSignal {
            waker: AtomicWaker::new(),
            woken: AtomicBool::new(false),
            close: AtomicU16::new(NO_CLOSE),
            username,
            by_password,
            deadline_ms: AtomicU64::new(NO_DEADLINE),
            released: AtomicBool::new(false),
        }
    }

    /// The client's user name for the ACL, if it has one.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The user name the password file vouched for at CONNECT, if it did.
    pub fn login(&self) -> Option<&str> {
        self.username().filter(|_| self.by_password)
    }

    /// Wakes the task (messages were queued for it). A wake while it is busy is kept until it
    /// next waits.
    pub fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready once woken since the task last saw a wake; otherwise `cx` is woken then. Only
    /// the one task that owns the connection may poll it.
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.woken.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Registers `cx`'s waker for the next wake, as [`ConnectionSignal::poll_woken`] does, and
    /// says whether a wake is waiting to be seen, without taking it.
    pub fn register(&self, cx: &mut Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.woken.load(Ordering::Acquire)
    }

    /// Waits until woken: [`ConnectionSignal::poll_woken`] as a future. Cancel-safe.
    pub async fn woken(&self) {
        poll_fn(|cx| self.poll_woken(cx)).await
    }

    /// Asks the connection to close with `reason` (e.g. 0x8E Session taken over).
    pub fn close(&self, reason: ReasonCode) {
        let asked = CLOSE_ASKED | u16::from(reason.to_u8());
        self.close.store(asked, Ordering::Release);
        self.wake();
    }

    /// The reason the connection was asked to close, if it was.
    pub fn close_reason(&self) -> Option<ReasonCode> {
        match self.close.load(Ordering::Acquire) {
            NO_CLOSE => None,
            asked => ReasonCode::from_u8(asked.to_le_bytes()[0]),
        }
    }

    /// The connection has ended and handed its session back to the state: a CONNECT taking
    /// the session over may go on.
    pub fn release(&self) {
        self.released.store(true, Ordering::Release);
    }

    /// Whether the connection has ended and handed its session back.
    pub fn released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// Something arrived at `now_ms`: the connection times out `timeout` later unless
    /// something else arrives. A zero `timeout` (Keep Alive 0) never times out.
    pub fn heard_at(&self, now_ms: u64, timeout: Duration) {
        let deadline = if timeout.is_zero() {
            NO_DEADLINE
        } else {
            now_ms.saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(NO_DEADLINE))
        };
        self.deadline_ms.store(deadline, Ordering::Relaxed);
    }

    /// The connection stopped reading (it waits for its own commits): no deadline until
    /// [`ConnectionSignal::heard_at`] sets one again.
    pub fn pause_deadline(&self) {
        self.deadline_ms.store(NO_DEADLINE, Ordering::Relaxed);
    }

    /// Whether the connection has no deadline now (paused, or Keep Alive 0).
    pub fn deadline_paused(&self) -> bool {
        self.deadline_ms.load(Ordering::Relaxed) == NO_DEADLINE
    }

    /// Whether the deadline has passed at `now_ms`.
    pub fn deadline_passed(&self, now_ms: u64) -> bool {
        let deadline = self.deadline_ms.load(Ordering::Relaxed);
        deadline != NO_DEADLINE && now_ms > deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn a_wake_before_the_wait_is_kept_and_seen_once() {
        let signal = ConnectionSignal::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(signal.poll_woken(&mut cx).is_pending());
        signal.wake();
        assert!(signal.poll_woken(&mut cx).is_ready());
        assert!(
            signal.poll_woken(&mut cx).is_pending(),
            "one wake, one event"
        );
    }

    #[test]
    fn registering_sees_a_waiting_wake_and_leaves_it() {
        let signal = ConnectionSignal::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(!signal.register(&mut cx));
        signal.wake();
        assert!(signal.register(&mut cx), "a wake is waiting");
        assert!(
            signal.poll_woken(&mut cx).is_ready(),
            "and still there to see"
        );
    }

    #[test]
    fn a_close_wakes_and_says_why() {
        let signal = ConnectionSignal::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(signal.close_reason(), None);
        signal.close(ReasonCode::SessionTakenOver);
        assert!(signal.poll_woken(&mut cx).is_ready());
        assert_eq!(signal.close_reason(), Some(ReasonCode::SessionTakenOver));
    }

    /// Every reason code comes back as it was asked for (the last one asked wins), and the
    /// signal stays within 56 bytes: one 80-byte allocation with its `Arc` counts.
    #[test]
    fn every_close_reason_is_kept_exactly() {
        for byte in 0..=u8::MAX {
            let Some(reason) = ReasonCode::from_u8(byte) else {
                continue;
            };
            let signal = ConnectionSignal::default();
            signal.close(ReasonCode::ServerShuttingDown);
            signal.close(reason);
            assert_eq!(signal.close_reason(), Some(reason), "{byte:#04x}");
        }
        assert!(size_of::<ConnectionSignal>() <= 56);
    }

    /// [MQTT-3.1.2-24] The deadline is 1.5 × Keep Alive after the last arrival; Keep Alive 0
    /// and a paused connection have none.
    #[test]
    fn the_deadline_follows_what_arrives() {
        let signal = ConnectionSignal::default();
        assert!(!signal.deadline_passed(u64::MAX - 1), "none before CONNECT");
        signal.heard_at(1_000, Duration::from_millis(1_500));
        assert!(
            !signal.deadline_passed(2_500),
            "not before 1.5 x Keep Alive"
        );
        assert!(signal.deadline_passed(2_501));
        signal.heard_at(2_000, Duration::from_millis(1_500));
        assert!(!signal.deadline_passed(2_501), "an arrival moves it");
        signal.pause_deadline();
        assert!(signal.deadline_paused());
        assert!(!signal.deadline_passed(1_000_000), "paused");
        signal.heard_at(5_000, Duration::ZERO);
        assert!(
            !signal.deadline_passed(1_000_000),
            "Keep Alive 0 never times out"
        );
    }
}
