//! Parking idle connections without a task. A connection with nothing to do ends its task and
//! leaves its state inside a waker of its own ([`park`]); that waker is registered wherever the
//! connection can be woken from (its socket's readiness, the engine's signal), and the first
//! wake takes the state out and runs it again ([`Resume`]) as a new task. An idle plain TCP
//! connection then costs its state (a 208-byte struct in the waker's `Arc` and mutex) instead of a task (512 bytes on x86_64 and
//! aarch64), and between packets a client holds no task at all, as in an event loop
//! (Mosquitto's).
//!
//! Only plain TCP connections park ([`Parkable`]): a TLS or WebSocket stream keeps state of its
//! own that only a read can advance.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// A stream a connection may park with: only a plain TCP one.
pub trait Parkable {
    /// Registers `cx`'s waker for the stream's readability; `Ready` if there is something to
    /// read already (or an error), or if the stream cannot park.
    fn poll_parked(&self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
}

impl Parkable for tokio::net::TcpStream {
    fn poll_parked(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_read_ready(cx).map(|_| ())
    }
}

impl Parkable for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {}

impl<S> Parkable for super::websocket::WebSocket<S> {}

impl Parkable for tokio::io::DuplexStream {}

/// What a plain TCP connection parks with, shared by the connections of a listener: the
/// runtime it resumes on (a wake may come from any thread), and a clone of the open
/// connections' sender (see `accept`), held while a connection is parked as its task held one
/// while it ran. Cloned per connection: one word each.
#[derive(Debug, Clone)]
pub struct ParkingSpot(Arc<Lot>);

#[derive(Debug)]
struct Lot {
    runtime: Handle,
    _open: mpsc::Sender<()>,
}

impl ParkingSpot {
    pub fn new(runtime: Handle, open: mpsc::Sender<()>) -> ParkingSpot {
        ParkingSpot(Arc::new(Lot {
            runtime,
            _open: open,
        }))
    }

    /// The runtime parked connections resume on.
    pub fn runtime(&self) -> &Handle {
        &self.0.runtime
    }
}

/// A parked connection's state, run again once woken.
pub trait Resume: Send + 'static {
    /// Runs the connection again (spawning its task).
    fn resume(self);
}

/// The waker a parked state lives in: the first wake after the state is parked takes it out
/// and resumes it; later ones find it gone. A wake while the state is still being registered
/// only marks it, for [`park`] to give the state back.
struct Parked<T> {
    slot: Mutex<Slot<T>>,
}

enum Slot<T> {
    /// [`park`] is registering the waker; the state is still its caller's.
    Arming,
    /// Woken while arming: [`park`] gives the state back to run.
    WokenWhileArming,
    /// Parked: the first wake takes it out and resumes it.
    Parked(T),
    /// Resumed, or given back.
    Done,
}

impl<T> Parked<T> {
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<T: Resume> Wake for Parked<T> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let resumed = {
            let mut slot = self.lock();
            match std::mem::replace(&mut *slot, Slot::Done) {
                Slot::Parked(state) => Some(state),
                Slot::Arming | Slot::WokenWhileArming => {
                    *slot = Slot::WokenWhileArming;
                    None
                }
                Slot::Done => None,
            }
        };
        if let Some(state) = resumed {
            state.resume();
        }
    }
}

/// Parks `state`: `register` registers the context's waker wherever the state can be woken
/// from, and says `Ready` if it has something to do already. It runs with no lock held, so a
/// registration may wake the waker at once (`AtomicWaker` does when a wake races with it).
/// If it says `Ready`, or the waker was woken meanwhile, the state is given back to go on
/// running; otherwise it is parked, and the first wake resumes it.
pub fn park<T: Resume>(
    state: T,
    register: impl FnOnce(&T, &mut Context<'_>) -> Poll<()>,
) -> Result<(), T> {
    let parked = Arc::new(Parked {
        slot: Mutex::new(Slot::Arming),
    });
    let waker = Waker::from(parked.clone());
    let ready = register(&state, &mut Context::from_waker(&waker)).is_ready();
    let mut slot = parked.lock();
    if ready || matches!(*slot, Slot::WokenWhileArming) {
        *slot = Slot::Done;
        return Err(state);
    }
    *slot = Slot::Parked(state);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its resumes.
    struct Counted(Arc<AtomicUsize>);

    impl Resume for Counted {
        fn resume(self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_parked_state_is_resumed_once_by_the_first_of_its_wakes() {
        let resumed = Arc::new(AtomicUsize::new(0));
        let mut registered = Vec::new();
        let parked = park(Counted(resumed.clone()), |_, cx| {
            // Registered twice, as a connection registers with its signal and its socket.
            registered.push(cx.waker().clone());
            registered.push(cx.waker().clone());
            Poll::Pending
        });
        assert!(parked.is_ok());
        assert_eq!(resumed.load(Ordering::SeqCst), 0, "not before a wake");
        registered[1].wake_by_ref();
        assert_eq!(resumed.load(Ordering::SeqCst), 1);
        registered[0].wake_by_ref();
        registered.into_iter().for_each(Waker::wake);
        assert_eq!(
            resumed.load(Ordering::SeqCst),
            1,
            "only the first wake resumes"
        );
    }

    /// A registration that wakes at once (as `AtomicWaker::register` does when a wake races
    /// with it) neither deadlocks nor loses the wake: the state is given back to run.
    #[test]
    fn a_wake_while_registering_gives_the_state_back() {
        let resumed = Arc::new(AtomicUsize::new(0));
        let mut registered = None;
        let parked = park(Counted(resumed.clone()), |_, cx| {
            cx.waker().wake_by_ref();
            registered = Some(cx.waker().clone());
            Poll::Pending
        });
        assert!(parked.is_err(), "given back");
        registered.expect("registered").wake();
        assert_eq!(
            resumed.load(Ordering::SeqCst),
            0,
            "the caller runs it, not the waker"
        );
    }

    #[test]
    fn a_state_with_something_to_do_is_given_back_and_never_resumed() {
        let resumed = Arc::new(AtomicUsize::new(0));
        let mut registered = None;
        let parked = park(Counted(resumed.clone()), |_, cx| {
            registered = Some(cx.waker().clone());
            Poll::Ready(())
        });
        assert!(parked.is_err(), "given back");
        registered.expect("registered").wake();
        assert_eq!(
            resumed.load(Ordering::SeqCst),
            0,
            "the caller runs it, not the waker"
        );
    }
}
