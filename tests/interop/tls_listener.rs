//! A TLS listener's connect deadline: `limits.connect_timeout` counts from accept and covers
//! the TLS handshake (it was a fixed 10 s before CONNECT's own timeout started).

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::certs::TlsFiles;
use crate::common::start_broker_with;

/// Below the former fixed TLS handshake timeout (10 s), far above the configured 1 s.
const CLOSED_WITHIN: Duration = Duration::from_secs(8);

#[tokio::test]
async fn a_silent_socket_on_a_tls_listener_is_closed_after_the_connect_timeout() {
    let files = TlsFiles::generate();
    let broker = start_broker_with(|config| {
        config.listeners = vec![files.listener(None, false)];
        config.limits.connect_timeout = 1;
    })
    .await;
    // Before the connect: the broker accepts, and starts its deadline, after this instant.
    let opened = Instant::now();
    let mut socket = TcpStream::connect(broker.addr).await.expect("TCP connect");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(CLOSED_WITHIN, socket.read(&mut byte))
        .await
        .unwrap_or_else(|_| panic!("still open {CLOSED_WITHIN:?} after the connect"));
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the broker sent data to a client that never sent a ClientHello"
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "closed before the timeout"
    );
    broker.shutdown().await;
}
