//! The transport's client connection (what the bridge will use upstream) against Cairn's own
//! listeners: plain TCP, TLS by DNS name and by IP address, with ALPN offered, with a client
//! certificate (mTLS, `cn_as_username`), and the errors of a server it cannot verify, a
//! server that never answers and bad settings. MQTT goes through the transport's `Framed`.

use std::time::Duration;

use cairn::codec::{Connect, Packet, ProtocolVersion, ReasonCode};
use cairn::config::{AuthMode, ClientAuth};
use cairn::transport::client::{
    self, ByteStream, ClientIdentity, ConnectError, TlsClient, TlsClientSettings,
};
use cairn::transport::{Framed, TlsError};
use tokio::net::TcpListener;

use crate::common::certs::TlsFiles;
use crate::common::{connect_packet, start_broker, start_broker_with, WAIT};

/// Largest packet the test client accepts.
pub(crate) const MAX_PACKET: u32 = 1 << 20;

fn settings(files: &TlsFiles, server_name: &str) -> TlsClientSettings {
    TlsClientSettings {
        ca: files.ca.clone(),
        server_name: server_name.to_string(),
        identity: None,
        alpn: vec![b"mqtt".to_vec()],
    }
}

/// Sends CONNECT over `stream` and returns the CONNACK's reason, or `None` when the server
/// closed the connection (or failed it) instead.
pub(crate) async fn connack_reason(
    stream: Box<dyn ByteStream>,
    client_id: &str,
) -> Option<ReasonCode> {
    connack_reason_as(stream, connect_packet(ProtocolVersion::V5, client_id)).await
}

/// Sends `connect` over `stream` and returns the CONNACK's reason, or `None` when the server
/// closed the connection (or failed it) instead.
async fn connack_reason_as(stream: Box<dyn ByteStream>, connect: Connect) -> Option<ReasonCode> {
    let mut framed = Framed::new(stream, MAX_PACKET);
    framed.version = ProtocolVersion::V5;
    framed
        .queue(&Packet::Connect(Box::new(connect)))
        .expect("CONNECT encodes");
    framed.flush().await.ok()?;
    match tokio::time::timeout(WAIT, framed.read_packet())
        .await
        .expect("an answer or a close within the wait")
    {
        Ok(Some(Packet::ConnAck(connack))) => Some(connack.reason),
        Ok(Some(other)) => panic!("expected CONNACK, got {other:?}"),
        Ok(None) | Err(_) => None,
    }
}

#[tokio::test]
async fn plain_tcp_client_gets_connack() {
    let broker = start_broker().await;
    let stream = client::connect(&broker.addr.to_string(), None, WAIT)
        .await
        .expect("TCP connect");
    assert_eq!(
        connack_reason(stream, "plain").await,
        Some(ReasonCode::Success)
    );
    broker.shutdown().await;
}

// The server certificate names both `localhost` (checked, and sent as SNI) and 127.0.0.1
// (checked against the certificate's IP addresses, no SNI).
#[tokio::test]
async fn tls_client_connects_by_name_and_by_address() {
    let files = TlsFiles::generate();
    let broker =
        start_broker_with(|config| config.listeners = vec![files.listener(None, None)]).await;
    for server_name in ["localhost", "127.0.0.1"] {
        let tls = TlsClient::new(&settings(&files, server_name)).expect("TLS client");
        let stream = client::connect(&broker.addr.to_string(), Some(&tls), WAIT)
            .await
            .unwrap_or_else(|error| panic!("TLS connect as {server_name}: {error}"));
        assert_eq!(
            connack_reason(stream, server_name).await,
            Some(ReasonCode::Success),
            "server name {server_name}"
        );
    }
    broker.shutdown().await;
}

// With client certificates required and `auth = "certificate"` (the Common Name is the user
// name), a CONNECT without user name succeeds only with the certificate presented.
#[tokio::test]
async fn tls_client_presents_its_certificate() {
    let files = TlsFiles::generate();
    let broker = start_broker_with(|config| {
        config.listeners =
            vec![files.listener(Some(ClientAuth::Required), Some(AuthMode::Certificate))];
    })
    .await;
    let addr = broker.addr.to_string();

    let mut with_identity = settings(&files, "localhost");
    with_identity.identity = Some(ClientIdentity {
        cert: files.client_cert.clone(),
        key: files.client_key.clone(),
    });
    let tls = TlsClient::new(&with_identity).expect("TLS client with a certificate");
    let stream = client::connect(&addr, Some(&tls), WAIT)
        .await
        .expect("mTLS connect");
    assert_eq!(
        connack_reason(stream, "with-cert").await,
        Some(ReasonCode::Success)
    );

    let tls = TlsClient::new(&settings(&files, "localhost")).expect("TLS client");
    // TLS 1.3: the client may finish its handshake before the server refuses it.
    if let Ok(stream) = client::connect(&addr, Some(&tls), WAIT).await {
        assert_eq!(connack_reason(stream, "without-cert").await, None);
    }
    broker.shutdown().await;
}

// With `auth = "certificate"`, a client whose (valid) certificate has no Common Name cannot
// name itself in CONNECT: it has no identity and is refused (v5 CONNACK 0x87 Not authorized).
#[tokio::test]
async fn a_certificate_without_common_name_gives_no_username() {
    let files = TlsFiles::generate();
    let broker = start_broker_with(|config| {
        config.listeners =
            vec![files.listener(Some(ClientAuth::Required), Some(AuthMode::Certificate))];
    })
    .await;
    let mut nameless = settings(&files, "localhost");
    nameless.identity = Some(ClientIdentity {
        cert: files.nameless_cert.clone(),
        key: files.nameless_key.clone(),
    });
    let tls = TlsClient::new(&nameless).expect("TLS client with a nameless certificate");
    let stream = client::connect(&broker.addr.to_string(), Some(&tls), WAIT)
        .await
        .expect("mTLS connect");
    let mut connect = connect_packet(ProtocolVersion::V5, "self-named");
    connect.username = Some("admin".to_string());
    assert_eq!(
        connack_reason_as(stream, connect).await,
        Some(ReasonCode::NotAuthorized)
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn tls_client_refuses_a_certificate_for_another_name() {
    let files = TlsFiles::generate();
    let broker =
        start_broker_with(|config| config.listeners = vec![files.listener(None, None)]).await;
    let tls = TlsClient::new(&settings(&files, "broker.example")).expect("TLS client");
    let result = client::connect(&broker.addr.to_string(), Some(&tls), WAIT).await;
    assert!(
        matches!(result, Err(ConnectError::Handshake { .. })),
        "connected to a server whose certificate names another host"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn tls_client_gives_up_on_a_server_that_never_answers() {
    let files = TlsFiles::generate();
    // The kernel completes the TCP handshake; nothing ever answers the ClientHello.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("local address").to_string();
    let tls = TlsClient::new(&settings(&files, "localhost")).expect("TLS client");
    let timeout = Duration::from_secs(1);
    match client::connect(&addr, Some(&tls), timeout).await {
        Err(ConnectError::Timeout { timeout: given, .. }) => assert_eq!(given, timeout),
        Err(other) => panic!("expected a timeout, got {other}"),
        Ok(_) => panic!("a TLS handshake completed with a silent server"),
    }
}

#[test]
fn tls_client_settings_errors_name_the_problem() {
    let files = TlsFiles::generate();
    let mut missing_ca = settings(&files, "localhost");
    missing_ca.ca = files.ca.with_file_name("absent-ca.pem");
    match TlsClient::new(&missing_ca) {
        Err(error @ TlsError::Read { .. }) => {
            assert!(error.to_string().contains("absent-ca.pem"), "{error}")
        }
        Err(other) => panic!("expected a read error, got {other}"),
        Ok(_) => panic!("a missing CA file was accepted"),
    }
    match TlsClient::new(&settings(&files, "not a host name")) {
        Err(error @ TlsError::BadServerName { .. }) => {
            assert!(error.to_string().contains("not a host name"), "{error}")
        }
        Err(other) => panic!("expected a server name error, got {other}"),
        Ok(_) => panic!("an invalid server name was accepted"),
    }
}
