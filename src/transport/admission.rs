//! Admission of accepted sockets: how many connections may be in their handshake (TLS, then
//! waiting for CONNECT) at once, and the instant by which each must have sent CONNECT.
//!
//! A socket is counted from the moment it is accepted, so a flood of connections that never
//! send anything holds at most `max_handshakes` sockets; further ones are closed at once rather
//! than left unaccepted, where no timeout could reach them. It never reads or writes a socket.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Hands out places to accepted sockets; cloned into every accept loop, shared by them all.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The places and the timeout in force; [`Admission::set_limits`] replaces them.
    current: Arc<RwLock<Places>>,
}

/// One set of limits: the places handed out under them, and their timeout.
#[derive(Debug)]
struct Places {
    /// One permit per connection allowed in its handshake at once.
    handshakes: Arc<Semaphore>,
    /// How long a connection may take from accept to CONNECT (TLS handshake included).
    connect_timeout: Duration,
}

impl Places {
    fn new(max_handshakes: usize, connect_timeout: Duration) -> Places {
        Places {
            handshakes: Arc::new(Semaphore::new(max_handshakes.min(Semaphore::MAX_PERMITS))),
            connect_timeout,
        }
    }
}

/// A connection in its handshake: holds its place among the connections awaiting CONNECT
/// until dropped, which its server does once CONNECT is answered.
#[derive(Debug)]
pub struct Handshake {
    deadline: Instant,
    _place: OwnedSemaphorePermit,
}

impl Admission {
    /// At most `max_handshakes` connections awaiting CONNECT, each for `connect_timeout`.
    pub fn new(max_handshakes: usize, connect_timeout: Duration) -> Admission {
        Admission {
            current: Arc::new(RwLock::new(Places::new(max_handshakes, connect_timeout))),
        }
    }

    /// New limits for the sockets accepted from now on (a reload). Sockets admitted before
    /// keep their deadline and hold their place among the old limit's until they are done,
    /// so for at most one connect timeout the two together may exceed a lowered limit.
    pub fn set_limits(&self, max_handshakes: usize, connect_timeout: Duration) {
        *self.write() = Places::new(max_handshakes, connect_timeout);
    }

    /// A place for a socket accepted now, or `None` when every place is taken.
    pub fn admit(&self) -> Option<Handshake> {
        let (handshakes, connect_timeout) = {
            let places = self.read();
            (places.handshakes.clone(), places.connect_timeout)
        };
        let place = handshakes.try_acquire_owned().ok()?;
        Some(Handshake {
            deadline: Instant::now() + connect_timeout,
            _place: place,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Places> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Places> {
        self.current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Handshake {
    /// When the connection is closed if CONNECT has not arrived.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_are_limited_and_given_back() {
        let admission = Admission::new(2, Duration::from_secs(5));
        let first = admission.admit().expect("first place");
        let _second = admission.admit().expect("second place");
        assert!(admission.admit().is_none(), "a third socket is refused");
        drop(first);
        assert!(admission.admit().is_some(), "a freed place is given again");
    }

    #[tokio::test]
    async fn new_limits_hold_for_sockets_admitted_after_them() {
        let admission = Admission::new(1, Duration::from_secs(5));
        let old = admission.admit().expect("a place under the old limit");
        admission.set_limits(2, Duration::from_secs(60));
        let first = admission.admit().expect("first place under the new limit");
        let _second = admission.admit().expect("second place under the new limit");
        assert!(admission.admit().is_none(), "the new limit is 2");
        assert!(
            first.deadline() > old.deadline() + Duration::from_secs(30),
            "the new timeout applies to sockets admitted after the change"
        );
        admission.set_limits(0, Duration::from_secs(5));
        assert!(admission.admit().is_none(), "a lowered limit holds at once");
    }

    #[tokio::test]
    async fn the_deadline_counts_from_admission() {
        let timeout = Duration::from_secs(5);
        let admission = Admission::new(1, timeout);
        let before = Instant::now();
        let handshake = admission.admit().expect("a place");
        let after = Instant::now();
        assert!(handshake.deadline() >= before + timeout);
        assert!(handshake.deadline() <= after + timeout);
    }
}
