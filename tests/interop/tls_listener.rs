//! A TLS listener's connect deadline: `limits.connect_timeout` counts from accept and covers
//! the TLS handshake (it was a fixed 10 s before CONNECT's own timeout started); and its
//! certificate renewed by a reload.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use cairn::codec::{Packet, ProtocolVersion, ReasonCode};
use cairn::transport::client::{self, TlsClient, TlsClientSettings};
use cairn::transport::Framed;

use crate::common::certs::TlsFiles;
use crate::common::{connect_packet, start_broker_with, WAIT};
use crate::transport_client::{connack_reason, MAX_PACKET};

/// Below the former fixed TLS handshake timeout (10 s), far above the configured 1 s.
const CLOSED_WITHIN: Duration = Duration::from_secs(8);

#[tokio::test]
async fn a_silent_socket_on_a_tls_listener_is_closed_after_the_connect_timeout() {
    let files = TlsFiles::generate();
    let broker = start_broker_with(|config| {
        config.listeners = vec![files.listener(None, None)];
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

/// A reload reads a TLS listener's files again: handshakes after it present the renewed
/// certificate (from another CA here, so the change shows in what a client can verify), and
/// a connection made before keeps being served.
#[tokio::test]
async fn a_reload_puts_a_renewed_certificate_in_force() {
    let old = TlsFiles::generate();
    let renewed = TlsFiles::generate();
    let live = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = (live.path().join("cert.pem"), live.path().join("key.pem"));
    let install = |files: &TlsFiles| {
        std::fs::copy(&files.server_cert, &cert).expect("copy the certificate");
        std::fs::copy(&files.server_key, &key).expect("copy the key");
    };
    install(&old);
    let mut listener = old.listener(None, None);
    if let Some(tls) = listener.tls.as_mut() {
        (tls.cert, tls.key) = (cert.clone(), key.clone());
    }
    let mut broker = start_broker_with(|config| config.listeners = vec![listener]).await;
    let addr = broker.addr.to_string();
    let trusting = |files: &TlsFiles| {
        TlsClient::new(&TlsClientSettings {
            ca: files.ca.clone(),
            server_name: "localhost".into(),
            identity: None,
            alpn: Vec::new(),
        })
        .expect("TLS client settings")
    };
    let stream = client::connect(&addr, Some(&trusting(&old)), WAIT)
        .await
        .expect("TLS connect before the renewal");
    let mut before = Framed::new(stream, MAX_PACKET);
    before.version = ProtocolVersion::V5;
    before
        .queue(&Packet::Connect(Box::new(connect_packet(
            ProtocolVersion::V5,
            "before",
        ))))
        .expect("CONNECT encodes");
    before.flush().await.expect("CONNECT sent");
    assert!(matches!(
        before.read_packet().await,
        Ok(Some(Packet::ConnAck(connack))) if connack.reason == ReasonCode::Success
    ));

    install(&renewed);
    let reloaded = broker.reload_files().await;
    assert!(reloaded.applied.is_empty() && reloaded.need_restart.is_empty());

    let refused = client::connect(&addr, Some(&trusting(&old)), WAIT).await;
    assert!(
        refused.is_err(),
        "a client trusting only the old CA cannot verify the renewed certificate"
    );
    let stream = client::connect(&addr, Some(&trusting(&renewed)), WAIT)
        .await
        .expect("TLS connect after the renewal");
    assert_eq!(
        connack_reason(stream, "after").await,
        Some(ReasonCode::Success)
    );
    before.queue(&Packet::PingReq).expect("PINGREQ encodes");
    before.flush().await.expect("PINGREQ sent");
    assert_eq!(
        tokio::time::timeout(WAIT, before.read_packet())
            .await
            .expect("an answer within the wait")
            .expect("readable"),
        Some(Packet::PingResp),
        "the connection made before the reload is still served"
    );
    broker.shutdown().await;
}
