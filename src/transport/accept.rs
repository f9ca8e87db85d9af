//! Accepting connections: one loop per listener admits each accepted socket (or closes it at
//! once when too many await CONNECT), runs the TLS handshake of TLS listeners and the
//! WebSocket upgrade of WebSocket listeners (both, in that order, for `wss`) before the connect
//! deadline, and hands the stream and its [`Peer`] to the engine through [`Serve`].
//! It never decodes MQTT, and never knows the engine or the store.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;

use super::admission::{Admission, Handshake};
use super::parking::{Parkable, ParkingSpot, ReactorTcp};
use super::tcp_or_tls::TcpOrTls;
use super::tls::{self, ReloadableTls, TlsListener};
use super::websocket::{self, WebSocket, WebSocketSettings};

/// How long the accept loop pauses after a failed accept (out of file descriptors and the
/// like) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often failed accepts are warned about: out of file descriptors, every retry fails.
const ACCEPT_WARNING_EVERY: Duration = Duration::from_secs(60);

/// What the transport knows about the peer.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The position of the listener it came through among the configured listeners (their
    /// `auth` says how it must log in).
    pub listener: usize,
    /// The identity of the client certificate the TLS handshake verified (see
    /// [`tls::peer_identity`]); `None` without one, or on a listener that verifies none.
    pub certificate: Option<String>,
}

/// A connection as the transport hands it to the engine, boxed: whatever a connection's future
/// takes as arguments stays in it for the connection's whole life, however early it is moved
/// out, so the engine's future keeps 8 bytes of it instead of about 130 in every idle task.
#[derive(Debug)]
pub struct Arrival<S> {
    pub stream: S,
    pub peer: Peer,
    /// The connection's place among those awaiting CONNECT and the deadline for CONNECT;
    /// dropped once CONNECT is answered.
    pub handshake: Handshake,
    /// Where the connection may park while idle: plain TCP and TLS connections (a WebSocket
    /// stream keeps framing state of its own that only a read advances).
    pub parking: Option<ParkingSpot>,
}

impl<S> Arrival<S> {
    /// Takes the arrival out of its box and frees the box at once. (A box emptied with `*`
    /// is freed only where its variable goes out of scope: for a connection, at its end.)
    #[allow(clippy::boxed_local)] // the box is the point: it is freed here
    pub fn unbox(self: Box<Self>) -> Arrival<S> {
        *self
    }
}

/// Whoever serves accepted connections (the engine, wired up by the server).
pub trait Serve: Clone + Send + Sync + 'static {
    /// Serves one connection until it ends. The handle is the connection's own (a clone):
    /// taken by value, it lives in the connection's future once, not beside it.
    fn serve<S>(self, arrival: Box<Arrival<S>>) -> impl Future<Output = ()> + Send
    where
        S: AsyncRead + AsyncWrite + Parkable + Unpin + Send + 'static;
}

/// A bound listener and what serving its connections takes.
pub struct Listener<H> {
    /// Bound by [`super::listener::bind`].
    pub socket: TcpListener,
    /// Its position among the configured listeners.
    pub index: usize,
    /// `None` for plain TCP.
    pub tls: Option<ReloadableTls>,
    /// `Some` for MQTT over WebSockets (after the TLS handshake, with `tls`).
    pub websocket: Option<WebSocketSettings>,
    /// Shared by every listener: places for connections awaiting CONNECT.
    pub admission: Admission,
    /// Serves each connection once accepted (and through its TLS handshake and WebSocket
    /// upgrade).
    pub server: H,
}

impl<H: Serve> Listener<H> {
    /// Accepts connections until `stop` changes, one task each. Every task holds a clone of
    /// `open` until its connection ends, so the owner of the receiver learns when all have.
    /// The [`ParkingSpot`] (and its task) of a plain TCP or TLS listener is made at once.
    pub fn run(
        self,
        stop: watch::Receiver<bool>,
        open: mpsc::Sender<()>,
    ) -> impl Future<Output = ()> + Send {
        let parks = self.websocket.is_none();
        let parking = parks
            .then(|| {
                ParkingSpot::new(open.clone())
                    .inspect_err(|error| {
                        tracing::warn!(%error, "idle connections of this listener cannot park");
                    })
                    .ok()
            })
            .flatten();
        self.accept(stop, open, parking)
    }

    async fn accept(
        self,
        mut stop: watch::Receiver<bool>,
        open: mpsc::Sender<()>,
        parking: Option<ParkingSpot>,
    ) {
        // Out of file descriptors, every retry fails until one frees: one warning a minute
        // says so, with how many failed since the last one.
        let mut failed_since_warning: u64 = 0;
        let mut warned_at: Option<tokio::time::Instant> = None;
        loop {
            let accepted = tokio::select! {
                _ = stop.changed() => return,
                accepted = self.socket.accept() => accepted,
            };
            match accepted {
                Ok((stream, addr)) => {
                    let Some(handshake) = self.admission.admit() else {
                        // Closed at once, not left unaccepted where no timeout reaches it.
                        tracing::debug!(peer = %addr, "too many connections awaiting CONNECT; closing");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    match &self.tls {
                        None => {
                            // `None` for WebSockets: their framing is state of their own.
                            let parking = parking.clone();
                            let arrival = Arrival {
                                stream,
                                peer: Peer {
                                    addr,
                                    listener: self.index,
                                    certificate: None,
                                },
                                handshake,
                                parking,
                            };
                            let (server, arrival) = (self.server.clone(), Box::new(arrival));
                            match &self.websocket {
                                None => tokio::spawn(serve_plain(open.clone(), server, arrival)),
                                Some(settings) => {
                                    let settings = settings.clone();
                                    tokio::spawn(serve_ws(open.clone(), server, arrival, settings))
                                }
                            };
                        }
                        Some(tls) => {
                            let accepted = Accepted {
                                stream,
                                addr,
                                listener: self.index,
                                tls: tls.current(),
                                handshake,
                                parking: parking.clone(),
                            };
                            let (server, accepted) = (self.server.clone(), Box::new(accepted));
                            match &self.websocket {
                                None => tokio::spawn(serve_tls(open.clone(), server, accepted)),
                                Some(settings) => {
                                    let settings = settings.clone();
                                    tokio::spawn(serve_wss(
                                        open.clone(),
                                        server,
                                        accepted,
                                        settings,
                                    ))
                                }
                            };
                        }
                    }
                }
                Err(error) => {
                    failed_since_warning += 1;
                    if warned_at.is_none_or(|at| at.elapsed() >= ACCEPT_WARNING_EVERY) {
                        tracing::warn!(%error, failed = failed_since_warning,
                            "accept failed; retried every {ACCEPT_BACKOFF:?}, warned about once a minute");
                        warned_at = Some(tokio::time::Instant::now());
                        failed_since_warning = 0;
                    } else {
                        tracing::debug!(%error, "accept failed again");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// Serves one plain TCP connection; `open` is dropped when it ends — last, after the engine's
/// handle: the server closes the store once every connection is closed, and the store cannot
/// close while a task still holds the engine.
///
/// This future is the connection's whole task, spawned as it is. It is a [`Serving`], not an
/// `async fn`: an `async fn` keeps room for every argument for its whole life, even one it
/// hands on at once (the engine's handle and the arrival here), and an `async` block awaiting the
/// engine's future would hold it twice (captured, and being awaited). Either took an idle
/// connection's task over tokio's next size step (tasks are rounded to 128 bytes).
fn serve_plain<H: Serve>(
    open: mpsc::Sender<()>,
    server: H,
    arrival: Box<Arrival<TcpStream>>,
) -> Serving<impl Future<Output = ()> + Send> {
    Serving {
        connection: server.serve(arrival),
        open: Some(open),
    }
}

pin_project_lite::pin_project! {
    /// A connection's future and its place among the open connections, given back once the
    /// future has completed (and with it dropped everything it held, the engine's handle
    /// included).
    struct Serving<F> {
        #[pin]
        connection: F,
        open: Option<mpsc::Sender<()>>,
    }
}

impl<F: Future<Output = ()>> Future for Serving<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        ready!(this.connection.poll(cx));
        this.open.take();
        Poll::Ready(())
    }
}

/// An accepted TLS socket and what its handshake takes, boxed as an [`Arrival`] is.
struct Accepted {
    stream: TcpStream,
    addr: SocketAddr,
    listener: usize,
    tls: TlsListener,
    handshake: Handshake,
    /// `None` for WebSockets over TLS.
    parking: Option<ParkingSpot>,
}

impl Accepted {
    /// Takes it out of its box and frees the box at once, as [`Arrival::unbox`] does.
    #[allow(clippy::boxed_local)] // the box is the point: it is freed here
    fn unbox(self: Box<Self>) -> Accepted {
        *self
    }
}

/// Runs the TLS handshake before the connect deadline, then the MQTT connection over it;
/// `_open` is dropped when the connection ends, last (as in [`serve_plain`]).
async fn serve_tls<H: Serve>(_open: mpsc::Sender<()>, server: H, accepted: Box<Accepted>) {
    if let Some(arrival) = tls_handshake(accepted).await {
        server.serve(arrival).await;
    }
}

/// Upgrades a plain TCP connection to WebSocket before the connect deadline, then serves MQTT
/// over it; `_open` is dropped when the connection ends, last (as in [`serve_plain`]).
async fn serve_ws<H: Serve>(
    _open: mpsc::Sender<()>,
    server: H,
    arrival: Box<Arrival<TcpStream>>,
    settings: WebSocketSettings,
) {
    if let Some(arrival) = websocket_upgrade(arrival, &settings).await {
        server.serve(arrival).await;
    }
}

/// Runs the TLS handshake, then the WebSocket upgrade over it, both before the connect
/// deadline, then serves MQTT over them; `_open` is dropped when the connection ends, last
/// (as in [`serve_plain`]).
async fn serve_wss<H: Serve>(
    _open: mpsc::Sender<()>,
    server: H,
    accepted: Box<Accepted>,
    settings: WebSocketSettings,
) {
    let Some(arrival) = tls_handshake(accepted).await else {
        return;
    };
    if let Some(arrival) = websocket_upgrade(arrival, &settings).await {
        server.serve(arrival).await;
    }
}

/// The TLS handshake of an accepted socket, before its connect deadline; `None` (logged) when
/// it fails or times out.
async fn tls_handshake(accepted: Box<Accepted>) -> Option<Box<Arrival<TlsStream<ReactorTcp>>>> {
    let Accepted {
        stream,
        addr,
        listener,
        tls,
        handshake,
        parking,
    } = accepted.unbox();
    let accepting = tls.acceptor.accept(ReactorTcp::Registered(stream));
    let stream = match tokio::time::timeout_at(handshake.deadline(), accepting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::info!(peer = %addr, %error, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::info!(peer = %addr, "TLS handshake timed out");
            return None;
        }
    };
    let certificate = tls
        .identity
        .and_then(|identity| tls::peer_identity(stream.get_ref().1, identity));
    let arrival = Arrival {
        stream,
        peer: Peer {
            addr,
            listener,
            certificate,
        },
        handshake,
        parking,
    };
    Some(Box::new(arrival))
}

/// The WebSocket upgrade of an arrival, before its connect deadline; `None` (logged) when it
/// is refused, fails or times out. `ws` and `wss` connections alike reach the engine as a
/// [`WebSocket`] over [`TcpOrTls`], one type (see there why).
async fn websocket_upgrade<S: Into<TcpOrTls>>(
    arrival: Box<Arrival<S>>,
    settings: &WebSocketSettings,
) -> Option<Box<Arrival<WebSocket<TcpOrTls>>>> {
    let Arrival {
        stream,
        peer,
        handshake,
        ..
    } = arrival.unbox();
    let upgrading = websocket::accept(stream.into(), settings);
    let stream = match tokio::time::timeout_at(handshake.deadline(), upgrading).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::info!(peer = %peer.addr, %error, "WebSocket upgrade refused");
            return None;
        }
        Err(_) => {
            tracing::info!(peer = %peer.addr, "WebSocket upgrade timed out");
            return None;
        }
    };
    Some(Box::new(Arrival {
        stream,
        peer,
        handshake,
        parking: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of state the stand-in engine keeps per connection.
    const ENGINE_STATE: usize = 4096;

    /// An engine whose connection future holds [`ENGINE_STATE`] bytes across an await.
    #[derive(Clone)]
    struct HeavyEngine;

    impl Serve for HeavyEngine {
        async fn serve<S>(self, arrival: Box<Arrival<S>>)
        where
            S: AsyncRead + AsyncWrite + Parkable + Unpin + Send + 'static,
        {
            let state = [0u8; ENGINE_STATE];
            tokio::task::yield_now().await;
            drop((state, arrival));
        }
    }

    /// An accepted plain connection as the engine gets it, and the client socket (to be
    /// closed after).
    async fn arrival() -> (Box<Arrival<TcpStream>>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let handshake = Admission::new(1, Duration::from_secs(60))
            .admit()
            .expect("a place");
        let arrival = Arrival {
            stream,
            peer: Peer {
                addr: peer,
                listener: 0,
                certificate: None,
            },
            handshake,
            parking: None,
        };
        (Box::new(arrival), client)
    }

    /// The size of a plain connection's task serving [`HeavyEngine`] (and the client socket,
    /// to be closed after).
    async fn heavy_task_size() -> (usize, TcpStream) {
        let (arrival, client) = arrival().await;
        let (open, _closed) = mpsc::channel(1);
        let task = serve_plain(open, HeavyEngine, arrival);
        (std::mem::size_of_val(&task), client)
    }

    /// An engine handle that records, as it is dropped, whether its connection still counts
    /// as open.
    #[derive(Clone)]
    struct WatchedEngine {
        open: mpsc::WeakSender<()>,
        dropped_while_open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl Drop for WatchedEngine {
        fn drop(&mut self) {
            let open = self.open.upgrade().is_some();
            self.dropped_while_open
                .store(open, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Serve for WatchedEngine {
        async fn serve<S>(self, arrival: Box<Arrival<S>>)
        where
            S: AsyncRead + AsyncWrite + Parkable + Unpin + Send + 'static,
        {
            drop(arrival);
        }
    }

    /// A connection counts as closed only once its task holds nothing of the engine: the
    /// server closes the store when the last one is closed, and the store cannot close while
    /// anything holds the engine.
    #[tokio::test]
    async fn a_connection_lets_go_of_the_engine_before_it_counts_as_closed() {
        let (arrival, _client) = arrival().await;
        let (open, mut closed) = mpsc::channel(1);
        let dropped_while_open = std::sync::Arc::default();
        let engine = WatchedEngine {
            open: open.downgrade(),
            dropped_while_open: std::sync::Arc::clone(&dropped_while_open),
        };
        serve_plain(open, engine, arrival).await;
        assert!(
            closed.recv().await.is_none(),
            "the connection counts as closed"
        );
        assert!(
            dropped_while_open.load(std::sync::atomic::Ordering::SeqCst),
            "the connection counted as closed while its task still held the engine"
        );
    }

    /// A connection's task stores the engine's state once: its size is the engine's future
    /// plus the accepted socket's bookkeeping, not twice the engine's future.
    #[tokio::test]
    async fn a_connection_task_holds_the_engine_state_once() {
        let (size, _client) = heavy_task_size().await;
        assert!(
            size < ENGINE_STATE + 1024,
            "a connection task of {size} bytes for {ENGINE_STATE} bytes of engine state"
        );
    }

    /// Nor does it keep what it handed to the engine (socket, peer, handshake) beside the
    /// engine's state: it goes boxed, so the task holds less than one more [`Arrival`].
    #[tokio::test]
    async fn a_connection_task_keeps_none_of_its_arguments() {
        let (size, _client) = heavy_task_size().await;
        assert!(
            size < ENGINE_STATE + std::mem::size_of::<Arrival<TcpStream>>(),
            "a connection task of {size} bytes for {ENGINE_STATE} bytes of engine state"
        );
    }

    /// Nor room for the arguments it handed on: the task's future is the engine's and its
    /// place among the open connections (one word). As an `async fn` it kept three words more,
    /// which took a plain connection's task over tokio's next 128-byte step.
    #[tokio::test]
    async fn a_connection_task_is_the_engines_future_and_one_word() {
        let (arrival, _client) = arrival().await;
        let engine_future = std::mem::size_of_val(&HeavyEngine.serve(arrival));
        let (size, _client) = heavy_task_size().await;
        assert!(
            size <= engine_future + std::mem::size_of::<usize>(),
            "a connection task of {size} bytes for an engine future of {engine_future}"
        );
    }
}
