//! The fault-injecting proxy between a client and a TCP echo upstream that reports how each of
//! its connections ended: it forwards, cuts with RST on both sides, black-holes without
//! closing anything, refuses new connections, and caps the bandwidth.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::common::proxy::FaultProxy;
use crate::common::upstream::wait_until_refused;
use crate::common::WAIT;

/// How long a test watches for bytes that must not arrive. A short window can only miss a
/// fault, never invent one.
const SILENCE: Duration = Duration::from_secs(1);

/// How one upstream connection ended: the bytes it echoed, and `None` for a clean close or the
/// error that ended it.
#[derive(Debug, PartialEq, Eq)]
struct Ended {
    echoed: usize,
    error: Option<ErrorKind>,
}

/// A TCP server on 127.0.0.1 port 0 that sends back every byte it receives.
struct EchoUpstream {
    addr: SocketAddr,
    accepted: watch::Receiver<usize>,
    ended: mpsc::UnboundedReceiver<Ended>,
    accept_loop: JoinHandle<()>,
}

impl EchoUpstream {
    async fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (accepted_sender, accepted) = watch::channel(0);
        let (ended_sender, ended) = mpsc::unbounded_channel();
        let accept_loop = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted_sender.send_modify(|count| *count += 1);
                tokio::spawn(echo(stream, ended_sender.clone()));
            }
        });
        EchoUpstream {
            addr,
            accepted,
            ended,
            accept_loop,
        }
    }

    fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// How the next upstream connection to end ended.
    async fn next_end(&mut self) -> Ended {
        tokio::time::timeout(WAIT, self.ended.recv())
            .await
            .expect("an upstream connection ended within the wait")
            .expect("the echo server runs")
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn echo(mut stream: TcpStream, ended: mpsc::UnboundedSender<Ended>) {
    let mut buffer = [0; 4096];
    let mut echoed = 0;
    let error = loop {
        match stream.read(&mut buffer).await {
            Ok(0) => break None,
            Ok(read) => {
                if let Err(error) = stream.write_all(&buffer[..read]).await {
                    break Some(error.kind());
                }
                echoed += read;
            }
            Err(error) => break Some(error.kind()),
        }
    };
    let _ = ended.send(Ended { echoed, error });
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    tokio::time::timeout(WAIT, TcpStream::connect(proxy.addr()))
        .await
        .expect("connect in time")
        .expect("connect to the proxy")
}

/// An echo upstream, a proxy in front of it, and a connection through the proxy that has
/// carried one round trip (so the proxy has accepted it and forwards it).
async fn forwarding() -> (EchoUpstream, FaultProxy, TcpStream) {
    let upstream = EchoUpstream::start().await;
    let proxy = FaultProxy::start(upstream.addr).await;
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"before").await;
    (upstream, proxy, client)
}

/// Sends `message` and reads it back (reading while writing, so no buffer fills up).
async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    let (mut reader, mut writer) = stream.split();
    let mut back = vec![0; message.len()];
    let (written, read) = tokio::time::timeout(WAIT, async {
        tokio::join!(writer.write_all(message), reader.read_exact(&mut back))
    })
    .await
    .expect("the echo came back within the wait");
    written.expect("write");
    read.expect("read the echo");
    assert_eq!(back, message, "the echo");
}

/// The error the next read fails with; fails the test on data or a clean close.
async fn read_error(stream: &mut TcpStream) -> ErrorKind {
    let mut buffer = [0; 64];
    match tokio::time::timeout(WAIT, stream.read(&mut buffer))
        .await
        .expect("the read ended within the wait")
    {
        Ok(0) => panic!("a clean close (FIN), not an error"),
        Ok(read) => panic!("{read} bytes, not an error"),
        Err(error) => error.kind(),
    }
}

/// Asserts nothing arrives on `stream` (no byte, no close, no error) for [`SILENCE`].
async fn assert_silent(stream: &mut TcpStream, what: &str) {
    let mut buffer = [0; 64];
    if let Ok(read) = tokio::time::timeout(SILENCE, stream.read(&mut buffer)).await {
        panic!("{what}: expected silence, the read returned {read:?}");
    }
}

#[tokio::test]
async fn forwards_both_ways_and_passes_a_close_on() {
    let (mut upstream, proxy, mut client) = forwarding().await;
    round_trip(&mut client, &[7; 100_000]).await;

    client.shutdown().await.expect("send FIN");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut rest))
        .await
        .expect("the close came back within the wait")
        .expect("a clean close");
    assert!(rest.is_empty(), "nothing after the echoes: {rest:?}");
    assert_eq!(
        upstream.next_end().await,
        Ended {
            echoed: 100_006,
            error: None
        },
        "the client's FIN reached the upstream"
    );
    assert_eq!(proxy.connections_accepted(), 1);
    assert_eq!(upstream.accepted(), 1);
}

#[tokio::test]
async fn cut_resets_both_sides_and_new_connections_still_pass() {
    let (mut upstream, proxy, mut client) = forwarding().await;

    proxy.cut();
    assert_eq!(
        read_error(&mut client).await,
        ErrorKind::ConnectionReset,
        "the client side is reset"
    );
    assert_eq!(
        upstream.next_end().await,
        Ended {
            echoed: 6,
            error: Some(ErrorKind::ConnectionReset)
        },
        "the upstream side is reset"
    );

    let mut again = connect(&proxy).await;
    round_trip(&mut again, b"after the cut").await;
    proxy.wait_connections(2).await;
    assert_eq!(upstream.accepted(), 2);
}

#[tokio::test]
async fn black_hole_forwards_nothing_and_keeps_the_sockets_open() {
    let (mut upstream, proxy, mut open) = forwarding().await;

    proxy.black_hole();
    open.write_all(b"lost").await.expect("the socket is open");
    let mut new = connect(&proxy).await;
    proxy.wait_connections(2).await;
    new.write_all(b"lost too")
        .await
        .expect("the socket is open");
    assert_silent(&mut open, "an open connection in the black hole").await;
    assert_silent(&mut new, "a new connection in the black hole").await;
    assert_eq!(
        upstream.accepted(),
        1,
        "a black-holed connection goes nowhere"
    );

    // Reset, not a clean close: neither socket had been closed by the black hole.
    proxy.cut();
    assert_eq!(read_error(&mut open).await, ErrorKind::ConnectionReset);
    assert_eq!(read_error(&mut new).await, ErrorKind::ConnectionReset);
    assert_eq!(
        upstream.next_end().await,
        Ended {
            echoed: 6,
            error: Some(ErrorKind::ConnectionReset)
        },
        "the upstream side stayed open, and got nothing after the black hole"
    );

    proxy.heal();
    let mut healed = connect(&proxy).await;
    round_trip(&mut healed, b"after heal").await;
}

#[tokio::test]
async fn heal_leaves_a_black_holed_connection_dead() {
    let (_upstream, proxy, mut open) = forwarding().await;

    proxy.black_hole();
    proxy.heal();
    open.write_all(b"lost").await.expect("the socket is open");
    assert_silent(&mut open, "a black-holed connection after heal").await;
    let mut healed = connect(&proxy).await;
    round_trip(&mut healed, b"a new connection passes").await;
}

#[tokio::test]
async fn refuse_resets_new_connections_until_heal() {
    let (upstream, proxy, mut open) = forwarding().await;

    proxy.refuse();
    // The reset may come before the client's connect completes, or on its first read.
    match tokio::time::timeout(WAIT, TcpStream::connect(proxy.addr()))
        .await
        .expect("connect ended within the wait")
    {
        Ok(mut refused) => {
            assert_eq!(read_error(&mut refused).await, ErrorKind::ConnectionReset)
        }
        Err(error) => assert!(
            matches!(
                error.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ),
            "a refused connect fails with a reset, not {error}"
        ),
    }
    proxy.wait_connections(2).await;
    round_trip(&mut open, b"an open connection is left alone").await;
    assert_eq!(proxy.connections_accepted(), 2);
    assert_eq!(upstream.accepted(), 1, "a refused connection goes nowhere");

    proxy.heal();
    let mut healed = connect(&proxy).await;
    round_trip(&mut healed, b"after heal").await;
    assert_eq!(upstream.accepted(), 2);
}

#[tokio::test]
async fn slow_trickles_bytes_and_heal_lifts_the_cap() {
    let upstream = EchoUpstream::start().await;
    let proxy = FaultProxy::start(upstream.addr).await;
    let mut client = connect(&proxy).await;

    // 4,000 bytes at 2,000 bytes a second go in pieces of 100 bytes, 50 ms apart, each way.
    proxy.slow(2_000);
    let message: Vec<u8> = (0..4_000).map(|i| (i % 251) as u8).collect();
    client.write_all(&message).await.expect("write");
    let mut back = Vec::new();
    let mut reads = 0;
    while back.len() < message.len() {
        let mut buffer = [0; 8192];
        let read = tokio::time::timeout(WAIT, client.read(&mut buffer))
            .await
            .expect("bytes keep arriving")
            .expect("read");
        assert_ne!(read, 0, "the connection stays open");
        back.extend_from_slice(&buffer[..read]);
        reads += 1;
    }
    assert_eq!(back, message, "every byte, in order");
    assert!(
        reads >= 4,
        "the bytes trickled in over time, not in one go ({reads} reads)"
    );

    // Capped, a quarter of a megabyte would take two minutes each way.
    proxy.heal();
    round_trip(&mut client, &[9; 256 * 1024]).await;
}

#[tokio::test]
async fn dropping_the_proxy_ends_its_connections_and_its_listener() {
    let (_upstream, proxy, mut client) = forwarding().await;
    let addr = proxy.addr();

    drop(proxy);
    let mut buffer = [0; 64];
    let read = tokio::time::timeout(WAIT, client.read(&mut buffer))
        .await
        .expect("the connection ended within the wait");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection is closed, not {read:?}"
    );
    assert!(
        wait_until_refused(addr).await,
        "nothing listens on the dropped proxy's address"
    );
}
