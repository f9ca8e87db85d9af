//! Parking idle connections without a task. A connection with nothing to do ends its task and
//! leaves its state inside a waker of its own ([`park`]); that waker is registered wherever the
//! connection can be woken from (its socket's readability, the engine's signal), and the first
//! wake takes the state out and runs it again ([`Resume`]) as a new task. Between packets a
//! client then holds no task at all, as in an event loop (Mosquitto's).
//!
//! A parked socket also leaves the runtime's reactor, whose registration of a socket takes 256
//! bytes (tokio's `ScheduledIo`): its listener's [`ParkingSpot`] watches it in an epoll set of
//! its own, keyed by file descriptor, and one task per listener wakes the parked connections
//! whose sockets became readable. An idle plain TCP connection so costs its state (a
//! 176-byte struct in the waker's `Arc` and mutex) and an entry of that set, where a running
//! one holds a task (512 bytes on x86_64 and aarch64) and a registration.
//!
//! Plain TCP and TLS connections park ([`Parkable`]). A TLS connection parks with its session
//! (rustls' state: 1.2 KB, its keys and a 4 KiB receive buffer rustls keeps at rest) over a
//! [`ReactorTcp`], the socket that leaves the reactor underneath it: it parks only when a read
//! came back empty, so the session holds no record it has read and not yet handed on, and
//! wakes, as a plain one, for bytes on the socket. A WebSocket stream keeps framing state of
//! its own that only a read can advance, and never parks.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use mio::unix::SourceFd;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;

/// A stream a connection may park with: only a plain TCP one leaves the reactor; the others
/// never park (their listeners give them no [`ParkingSpot`]) and stay as they are.
pub trait Parkable: Sized {
    /// The stream while parked.
    type Parked: Send + 'static;

    /// The stream out of the runtime's reactor. An error loses the connection.
    fn leave_reactor(self) -> io::Result<Self::Parked>;

    /// Registers `cx`'s waker for the parked stream's readability with `spot`; `Ready` if it
    /// cannot be watched (then it goes on running).
    fn watch(parked: &Self::Parked, spot: &ParkingSpot, cx: &mut Context<'_>) -> Poll<()>;

    /// The stream back in the runtime's reactor, no longer watched by `spot`; called within
    /// the runtime's context. An error loses the connection.
    fn rejoin_reactor(parked: Self::Parked, spot: &ParkingSpot) -> io::Result<Self>;
}

impl Parkable for tokio::net::TcpStream {
    type Parked = std::net::TcpStream;

    fn leave_reactor(self) -> io::Result<std::net::TcpStream> {
        self.into_std()
    }

    fn watch(parked: &std::net::TcpStream, spot: &ParkingSpot, cx: &mut Context<'_>) -> Poll<()> {
        spot.watch_socket(parked.as_raw_fd(), cx)
    }

    fn rejoin_reactor(
        parked: std::net::TcpStream,
        spot: &ParkingSpot,
    ) -> io::Result<tokio::net::TcpStream> {
        spot.0.watch.unwatch(parked.as_raw_fd());
        tokio::net::TcpStream::from_std(parked)
    }
}

/// A TLS connection parks whole, its session over its socket; only the socket moves.
impl Parkable for TlsStream<ReactorTcp> {
    type Parked = TlsStream<ReactorTcp>;

    fn leave_reactor(mut self) -> io::Result<Self> {
        self.get_mut().0.leave_reactor()?;
        Ok(self)
    }

    fn watch(parked: &Self, spot: &ParkingSpot, cx: &mut Context<'_>) -> Poll<()> {
        match &parked.get_ref().0 {
            ReactorTcp::Parked(socket) => spot.watch_socket(socket.as_raw_fd(), cx),
            _ => Poll::Ready(()),
        }
    }

    fn rejoin_reactor(mut parked: Self, spot: &ParkingSpot) -> io::Result<Self> {
        if let ReactorTcp::Parked(socket) = &parked.get_ref().0 {
            spot.0.watch.unwatch(socket.as_raw_fd());
        }
        parked.get_mut().0.rejoin_reactor()?;
        Ok(parked)
    }
}

/// The socket under a TLS session: in the runtime's reactor while its connection runs
/// (`Registered`, the only state it reads or writes in), out of it while parked.
#[derive(Debug)]
pub enum ReactorTcp {
    Registered(tokio::net::TcpStream),
    Parked(std::net::TcpStream),
    /// Between the two, and after a move that failed (the socket is closed then).
    Moving,
}

impl ReactorTcp {
    fn leave_reactor(&mut self) -> io::Result<()> {
        *self = match std::mem::replace(self, ReactorTcp::Moving) {
            ReactorTcp::Registered(socket) => ReactorTcp::Parked(socket.into_std()?),
            other => other,
        };
        Ok(())
    }

    /// Called within the runtime's context.
    fn rejoin_reactor(&mut self) -> io::Result<()> {
        *self = match std::mem::replace(self, ReactorTcp::Moving) {
            ReactorTcp::Parked(socket) => {
                ReactorTcp::Registered(tokio::net::TcpStream::from_std(socket)?)
            }
            other => other,
        };
        Ok(())
    }

    /// The socket to read and write: only a registered one.
    fn registered(self: Pin<&mut Self>) -> io::Result<Pin<&mut tokio::net::TcpStream>> {
        match self.get_mut() {
            ReactorTcp::Registered(socket) => Ok(Pin::new(socket)),
            _ => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "a parked socket was used",
            )),
        }
    }
}

impl AsyncRead for ReactorTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.registered()?.poll_read(cx, buf)
    }
}

impl AsyncWrite for ReactorTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.registered()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.registered()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.registered()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.registered()?.poll_shutdown(cx)
    }
}

/// Streams that never park: they stay what they are.
macro_rules! never_parks {
    ($(impl$(<$generic:ident>)? for $stream:ty;)*) => {$(
        impl$(<$generic: Send + 'static>)? Parkable for $stream {
            type Parked = Self;

            fn leave_reactor(self) -> io::Result<Self> {
                Ok(self)
            }

            fn watch(_: &Self, _: &ParkingSpot, _: &mut Context<'_>) -> Poll<()> {
                Poll::Ready(())
            }

            fn rejoin_reactor(parked: Self, _: &ParkingSpot) -> io::Result<Self> {
                Ok(parked)
            }
        }
    )*};
}

never_parks! {
    impl for tokio::io::DuplexStream;
    impl<S> for super::websocket::WebSocket<S>;
}

/// What a plain TCP connection parks with, shared by the connections of a listener: the
/// runtime it resumes on (a wake may come from any thread), the epoll set that watches parked
/// sockets, and a clone of the open connections' sender (see `accept`), held while a
/// connection is parked as its task held one while it ran. Cloned per connection: one word
/// each.
#[derive(Debug, Clone)]
pub struct ParkingSpot(Arc<Lot>);

#[derive(Debug)]
struct Lot {
    runtime: Handle,
    watch: Arc<Watch>,
    /// Wakes the connections whose sockets became readable; ends with the lot.
    waking: JoinHandle<()>,
    _open: mpsc::Sender<()>,
}

impl Drop for Lot {
    fn drop(&mut self) {
        self.waking.abort();
    }
}

impl ParkingSpot {
    /// A spot on the current runtime; `Err` if its epoll set cannot be made (the listener's
    /// connections then never park).
    pub fn new(open: mpsc::Sender<()>) -> io::Result<ParkingSpot> {
        let poll = mio::Poll::new()?;
        let watch = Arc::new(Watch {
            registry: poll.registry().try_clone()?,
            wakers: Mutex::new(Watched::default()),
        });
        // Deprecated for descriptors that could change under the `AsyncFd` (tokio#8587); a
        // `mio::Poll` keeps its own for its whole life, and the crate forbids the `unsafe`
        // of its replacement.
        #[allow(deprecated)]
        let poll = AsyncFd::with_interest(poll, tokio::io::Interest::READABLE)?;
        let waking = tokio::spawn(wake_readable(poll, FailOnDrop(watch.clone())));
        Ok(ParkingSpot(Arc::new(Lot {
            runtime: Handle::current(),
            watch,
            waking,
            _open: open,
        })))
    }

    /// The runtime parked connections resume on.
    pub fn runtime(&self) -> &Handle {
        &self.0.runtime
    }

    /// Watches the parked socket `fd` for `cx`'s waker; `Ready` if it cannot be watched.
    fn watch_socket(&self, fd: RawFd, cx: &mut Context<'_>) -> Poll<()> {
        match self.0.watch.watch(fd, cx.waker()) {
            Ok(()) => Poll::Pending,
            Err(error) => {
                tracing::debug!(%error, "a parked socket could not be watched; it stays awake");
                Poll::Ready(())
            }
        }
    }

    /// How many parked sockets the spot watches.
    #[cfg(test)]
    fn watched(&self) -> usize {
        self.0.watch.lock().wakers.len()
    }
}

/// The parked sockets of a spot: its epoll set, and the waker of each socket in it.
#[derive(Debug)]
struct Watch {
    registry: mio::Registry,
    wakers: Mutex<Watched>,
}

#[derive(Debug, Default)]
struct Watched {
    /// File descriptor → the waker of the connection parked with it. A descriptor is unique
    /// among open sockets; one closed and reused meanwhile can at worst wake its new owner
    /// once for nothing (a stale event), which then parks again.
    wakers: HashMap<RawFd, Waker>,
    /// The epoll set failed: every parked connection was woken, and none parks any more.
    failed: bool,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, Watched> {
        self.wakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes `waker` once `fd` is readable (or closed, or failed). The waker is in place
    /// before the descriptor joins the set: the set reports a socket that is readable already
    /// at once, from another thread.
    fn watch(&self, fd: RawFd, waker: &Waker) -> io::Result<()> {
        {
            let mut watched = self.lock();
            if watched.failed {
                return Err(io::Error::other("the parked sockets' epoll set failed"));
            }
            watched.wakers.insert(fd, waker.clone());
        }
        let registered = self.registry.register(
            &mut SourceFd(&fd),
            mio::Token(fd as usize),
            mio::Interest::READABLE,
        );
        if registered.is_err() {
            self.lock().wakers.remove(&fd);
        }
        registered
    }

    /// Stops watching `fd`.
    fn unwatch(&self, fd: RawFd) {
        self.lock().wakers.remove(&fd);
        // Fails only if it was never in the set (its registration failed); nothing to undo.
        let _ = self.registry.deregister(&mut SourceFd(&fd));
    }

    /// Wakes the connection parked with `fd`, if any.
    fn wake(&self, fd: RawFd) {
        let waker = self.lock().wakers.remove(&fd);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Wakes every parked connection and refuses new ones.
    fn fail(&self) {
        let wakers = {
            let mut watched = self.lock();
            watched.failed = true;
            std::mem::take(&mut watched.wakers)
        };
        wakers.into_values().for_each(Waker::wake);
    }
}

/// Events taken from the epoll set at a time.
const EVENTS_PER_TURN: usize = 256;

/// Wakes the connections whose parked sockets became readable, until the spot is dropped. The
/// epoll set is itself a descriptor in the runtime's reactor, readable while it holds events.
async fn wake_readable(mut poll: AsyncFd<mio::Poll>, watch: FailOnDrop) {
    let mut events = mio::Events::with_capacity(EVENTS_PER_TURN);
    let failure = loop {
        let mut ready = match poll.readable_mut().await {
            Ok(ready) => ready,
            Err(error) => break error,
        };
        events.clear();
        match ready
            .get_inner_mut()
            .poll(&mut events, Some(Duration::ZERO))
        {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => break error,
        }
        if events.is_empty() {
            // Drained: wait for the next event (one since the last look keeps it ready).
            ready.clear_ready();
            continue;
        }
        for event in events.iter() {
            watch.0.wake(event.token().0 as RawFd);
        }
    };
    tracing::error!(error = %failure, "the parked connections' epoll set failed; connections no longer park");
}

/// However [`wake_readable`] ends (its epoll set failed, the runtime shut down, even before it
/// first ran), no connection stays parked in the set: each is woken, and none parks there
/// again.
struct FailOnDrop(Arc<Watch>);

impl Drop for FailOnDrop {
    fn drop(&mut self) {
        self.0.fail();
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

    /// Watches a parked socket for `waker`.
    fn watch(parked: &std::net::TcpStream, spot: &ParkingSpot, waker: &Waker) -> Poll<()> {
        <tokio::net::TcpStream as Parkable>::watch(parked, spot, &mut Context::from_waker(waker))
    }

    /// A socket out of the reactor, its peer, and a spot on the current runtime.
    async fn parked_socket() -> (std::net::TcpStream, std::net::TcpStream, ParkingSpot) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let (open, _all_closed) = mpsc::channel(1);
        let spot = ParkingSpot::new(open).expect("an epoll set");
        (
            stream.leave_reactor().expect("out of the reactor"),
            peer,
            spot,
        )
    }

    /// Counts its wakes and wakes a test waiting for one.
    #[derive(Default)]
    struct TestWaker {
        wakes: AtomicUsize,
        woken: tokio::sync::Notify,
    }

    impl Wake for TestWaker {
        fn wake(self: Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            self.woken.notify_one();
        }
    }

    /// A parked socket leaves the reactor, wakes its connection once the peer writes (once:
    /// the wake ends its watch), and rejoins the reactor with the bytes still there to read.
    #[tokio::test]
    async fn a_parked_socket_wakes_its_connection_once_readable() {
        use std::io::Write;
        use tokio::io::AsyncReadExt;

        let (parked, mut peer, spot) = parked_socket().await;
        let test_waker = Arc::new(TestWaker::default());
        let waker = Waker::from(test_waker.clone());
        assert!(watch(&parked, &spot, &waker).is_pending());
        assert_eq!(spot.watched(), 1);

        peer.write_all(b"x").unwrap();
        tokio::time::timeout(Duration::from_secs(30), test_waker.woken.notified())
            .await
            .expect("woken once the peer wrote");
        assert_eq!(spot.watched(), 0, "a wake ends the watch");

        let mut stream = tokio::net::TcpStream::rejoin_reactor(parked, &spot).expect("back");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut byte));
        read.await.expect("readable").expect("read");
        assert_eq!(&byte, b"x");
    }

    /// A socket resumed by its signal before it was readable leaves the epoll set for good.
    #[tokio::test]
    async fn a_socket_rejoining_the_reactor_is_no_longer_watched() {
        let (parked, _peer, spot) = parked_socket().await;
        let waker = Waker::from(Arc::new(TestWaker::default()));
        assert!(watch(&parked, &spot, &waker).is_pending());
        let _stream = tokio::net::TcpStream::rejoin_reactor(parked, &spot).expect("back");
        assert_eq!(spot.watched(), 0);
    }

    /// The runtime shutting down ends the spot's task: every connection parked with it is
    /// woken (to end), none left behind in the set, and none parks there again.
    #[test]
    fn the_spots_task_ending_wakes_every_parked_connection() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (parked, _peer, spot) = runtime.block_on(parked_socket());
        let test_waker = Arc::new(TestWaker::default());
        let waker = Waker::from(test_waker.clone());
        assert!(watch(&parked, &spot, &waker).is_pending());
        drop(runtime);
        assert_eq!(
            test_waker.wakes.load(Ordering::SeqCst),
            1,
            "woken by the task's end"
        );
        assert_eq!(spot.watched(), 0);
        let again = watch(&parked, &spot, &waker);
        assert!(again.is_ready(), "no parking in a set nobody watches");
    }
}
