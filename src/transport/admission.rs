//! Admission of accepted sockets: how many connections may be in their handshake (TLS, then
//! waiting for CONNECT) at once, and the instant by which each must have sent CONNECT.
//!
//! A socket is counted from the moment it is accepted, so a flood of connections that never
//! send anything holds at most `max_handshakes` sockets; further ones are closed at once rather
//! than left unaccepted, where no timeout could reach them. It never reads or writes a socket.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Hands out places to accepted sockets; cloned into every accept loop, shared by them all.
#[derive(Debug, Clone)]
pub struct Admission {
    /// One permit per connection allowed in its handshake at once.
    handshakes: Arc<Semaphore>,
    /// How long a connection may take from accept to CONNECT (TLS handshake included).
    connect_timeout: Duration,
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
            handshakes: Arc::new(Semaphore::new(max_handshakes.min(Semaphore::MAX_PERMITS))),
            connect_timeout,
        }
    }

    /// A place for a socket accepted now, or `None` when every place is taken.
    pub fn admit(&self) -> Option<Handshake> {
        let place = self.handshakes.clone().try_acquire_owned().ok()?;
        Some(Handshake {
            deadline: Instant::now() + self.connect_timeout,
            _place: place,
        })
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
