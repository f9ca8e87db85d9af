//! A fault-injecting TCP proxy on 127.0.0.1 port 0, put between a client (the bridge) and its
//! upstream broker: it forwards bytes both ways until a test cuts the connections (RST),
//! black-holes them (nothing forwarded, sockets left open), refuses new ones, or caps the
//! bandwidth. It never connects anywhere but the one upstream address it was given, and all
//! its tasks stop when it is dropped.
//!
//! A fault applies to the connections the proxy has accepted when it is called: a test that
//! wants to hit a particular connection waits for it with [`FaultProxy::wait_connections`]
//! first (a client's connect can complete in the kernel before the proxy accepts it).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::WAIT;

/// The largest piece forwarded in one write when no bandwidth cap applies.
const CHUNK: usize = 16 * 1024;
/// Under a bandwidth cap, bytes go out in this many pieces a second.
const PIECES_PER_SECOND: u64 = 20;

/// What happens to a connection accepted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission {
    /// Connect to the upstream and forward.
    Forward,
    /// Keep the socket open, connect nowhere, forward nothing.
    BlackHole,
    /// Reset it at once.
    Refuse,
}

/// The faults in force, watched by every connection.
#[derive(Clone, Copy, Debug)]
struct Faults {
    admission: Admission,
    /// Bandwidth cap in bytes per second each way, for every forwarding connection.
    bytes_per_second: Option<u64>,
    /// How many times [`FaultProxy::cut`] was called: a connection resets both of its sockets
    /// when this differs from the value it was accepted with.
    cuts: u64,
    /// How many times [`FaultProxy::black_hole`] was called: a connection stops forwarding
    /// for good when this differs from the value it was accepted with.
    black_holes: u64,
}

/// A TCP proxy with faults on demand.
pub struct FaultProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    accepted: watch::Receiver<usize>,
    /// The accept loop; it owns every connection's task, so aborting it ends them all.
    accept_loop: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 port 0 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds 127.0.0.1:0");
        let addr = listener.local_addr().expect("the proxy's address");
        let (faults, _) = watch::channel(Faults {
            admission: Admission::Forward,
            bytes_per_second: None,
            cuts: 0,
            black_holes: 0,
        });
        let (accepted_sender, accepted) = watch::channel(0);
        let accept_loop = tokio::spawn(accept_loop(
            listener,
            upstream,
            faults.clone(),
            accepted_sender,
        ));
        FaultProxy {
            addr,
            faults,
            accepted,
            accept_loop,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every open connection on both sides (SO_LINGER 0, then close), black-holed ones
    /// included. New connections are still accepted.
    pub fn cut(&self) {
        self.faults.send_modify(|faults| faults.cuts += 1);
    }

    /// Stops forwarding on every open connection, both ways, leaving the sockets open (no
    /// FIN, no RST) until [`FaultProxy::cut`] or the proxy is dropped; such a connection never
    /// forwards again. New connections are accepted and black-holed too (never connected
    /// upstream) until [`FaultProxy::heal`].
    pub fn black_hole(&self) {
        self.faults.send_modify(|faults| {
            faults.black_holes += 1;
            faults.admission = Admission::BlackHole;
        });
    }

    /// Resets each new connection as soon as it is accepted (the uplink is down) until
    /// [`FaultProxy::heal`]. Open connections are left alone.
    pub fn refuse(&self) {
        self.faults
            .send_modify(|faults| faults.admission = Admission::Refuse);
    }

    /// New connections are forwarded again and the bandwidth cap is lifted. Connections that
    /// were black-holed stay dead: a client has to reconnect.
    pub fn heal(&self) {
        self.faults.send_modify(|faults| {
            faults.admission = Admission::Forward;
            faults.bytes_per_second = None;
        });
    }

    /// Caps the bandwidth of every forwarding connection, open or new, at `bytes_per_second`
    /// each way (at least 1), until [`FaultProxy::heal`].
    pub fn slow(&self, bytes_per_second: u64) {
        self.faults
            .send_modify(|faults| faults.bytes_per_second = Some(bytes_per_second.max(1)));
    }

    /// How many connections the proxy has accepted so far, whatever it did with them
    /// (forwarded, black-holed or refused).
    pub fn connections_accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Waits until `n` connections have been accepted in total; fails the test after three
    /// times [`WAIT`] (a reconnecting client may back off for a while).
    pub async fn wait_connections(&self, n: usize) {
        let mut accepted = self.accepted.clone();
        let reached = tokio::time::timeout(WAIT * 3, accepted.wait_for(|count| *count >= n)).await;
        match reached {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => panic!("the proxy's accept loop ended before {n} connections"),
            Err(_) => panic!(
                "the proxy accepted {} connections, not {n}, within {:?}",
                self.connections_accepted(),
                WAIT * 3
            ),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Accepts connections and gives each a task (owned here, so they end with this loop).
async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    accepted: watch::Sender<usize>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        // The faults are read before the count goes up, so a test that cuts or black-holes
        // right after `wait_connections` always affects this connection.
        let at_accept = *faults.borrow();
        accepted.send_modify(|count| *count += 1);
        connections.spawn(connection(client, upstream, at_accept, faults.subscribe()));
        while connections.try_join_next().is_some() {}
    }
}

/// One client's connection, from accept to close.
async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    at_accept: Faults,
    mut faults: watch::Receiver<Faults>,
) {
    match at_accept.admission {
        Admission::Refuse => {
            reset(&client, None);
            return;
        }
        Admission::BlackHole => {
            if wait_for_cut(&mut faults, at_accept).await {
                reset(&client, None);
            }
            return;
        }
        Admission::Forward => {}
    }
    let Ok(mut upstream) = TcpStream::connect(upstream).await else {
        reset(&client, None);
        return;
    };
    let forwarded = {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let up = forward(&mut client_read, &mut upstream_write, faults.clone());
        let down = forward(&mut upstream_read, &mut client_write, faults.clone());
        let fault = faults
            .wait_for(|now| now.cuts != at_accept.cuts || now.black_holes != at_accept.black_holes);
        tokio::select! {
            ended = async { tokio::try_join!(up, down) } => Some(ended.is_ok()),
            _ = fault => None,
        }
    };
    match forwarded {
        // Both sides closed cleanly (each FIN passed on): the sockets close normally.
        Some(true) => {}
        // One side failed (e.g. it was reset): the other is reset too.
        Some(false) => reset(&client, Some(&upstream)),
        None => {
            if wait_for_cut(&mut faults, at_accept).await {
                reset(&client, Some(&upstream));
            }
        }
    }
}

/// Waits, holding the connection open, until [`FaultProxy::cut`] (true) or the proxy is
/// dropped (false).
async fn wait_for_cut(faults: &mut watch::Receiver<Faults>, at_accept: Faults) -> bool {
    faults
        .wait_for(|now| now.cuts != at_accept.cuts)
        .await
        .is_ok()
}

/// Forwards bytes from `from` to `to` until `from` ends (its FIN is passed on), under the
/// bandwidth cap in force at each piece.
async fn forward(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    faults: watch::Receiver<Faults>,
) -> io::Result<()> {
    let mut buffer = vec![0; CHUNK];
    loop {
        let cap = faults.borrow().bytes_per_second;
        let piece = cap.map_or(CHUNK, |rate| {
            usize::try_from(rate / PIECES_PER_SECOND).map_or(CHUNK, |size| size.clamp(1, CHUNK))
        });
        let read = from.read(&mut buffer[..piece]).await?;
        if read == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buffer[..read]).await?;
        if let Some(rate) = cap {
            // Pacing, not synchronisation: the piece's share of a second at the cap.
            tokio::time::sleep(Duration::from_secs_f64(read as f64 / rate as f64)).await;
        }
    }
}

/// Readies the given sockets for a reset: SO_LINGER 0 makes the close that follows (when the
/// caller drops them) send RST instead of FIN.
fn reset(client: &TcpStream, upstream: Option<&TcpStream>) {
    for socket in std::iter::once(client).chain(upstream) {
        let _ = socket.set_zero_linger();
    }
}
