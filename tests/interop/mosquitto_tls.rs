//! Mosquitto's command-line clients against TLS listeners, MQTT 3.1.1 and 5.0, with
//! certificates made by rcgen: server-only TLS, mTLS with required and optional client
//! certificates, certificates as identities (`auth = "certificate"` and
//! `"password_or_certificate"`), and plain MQTT sent to a TLS port.

use std::net::SocketAddr;

use cairn::codec::{ProtocolVersion, QoS};
use cairn::config::{AuthMode, ClientAuth};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::certs::TlsFiles;
use crate::common::programs::Finished;
use crate::common::{start_broker_with, TestBroker, WAIT};
use crate::mosquitto::{self, Args};

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

/// How a test's TLS listener treats clients.
struct Setup {
    /// Client certificates checked against the test CA (`None`: not asked for).
    client_auth: Option<ClientAuth>,
    /// The listener's `auth` (`None`: the default, anonymous without a password file).
    auth: Option<AuthMode>,
}

/// Whether a Mosquitto client presents the test client certificate.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ClientCert {
    Presented,
    Absent,
}

/// A broker whose only listener is TLS with the test certificates.
async fn tls_broker(files: &TlsFiles, setup: Setup) -> TestBroker {
    start_broker_with(|config| {
        config.listeners = vec![files.listener(setup.client_auth, setup.auth)];
        if setup.auth.is_some_and(AuthMode::needs_passwords) {
            config.password_file = Some(files.no_passwords.clone());
        }
    })
    .await
}

/// Mosquitto arguments for a TLS client, with or without the client certificate.
fn tls_args(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    files: &TlsFiles,
    cert: ClientCert,
) -> Args {
    let args = Args::new(addr, version, client_id).tls(files);
    match cert {
        ClientCert::Presented => args.client_cert(files),
        ClientCert::Absent => args,
    }
}

/// `mosquitto_sub` and `mosquitto_pub` over TLS exchange one QoS 1 message.
async fn round_trip(
    addr: SocketAddr,
    version: ProtocolVersion,
    files: &TlsFiles,
    cert: ClientCert,
) {
    let topic = format!("interop/tls/{version:?}/{cert:?}");
    let subscriber = mosquitto::subscriber(
        tls_args(addr, version, "tls-sub", files, cert),
        &topic,
        QoS::AtLeastOnce,
        1,
    )
    .await;
    mosquitto::publish(
        tls_args(addr, version, "tls-pub", files, cert),
        &topic,
        QoS::AtLeastOnce,
        "secret",
    )
    .await
    .assert_success("mosquitto_pub over TLS");
    let finished = subscriber.finish().await;
    finished.assert_success("mosquitto_sub over TLS");
    assert_eq!(
        mosquitto::messages(&finished),
        vec![format!("1 0 {topic} secret")],
        "{version:?}"
    );
}

/// Runs a `mosquitto_sub` that must be refused, and asserts it failed without a message.
async fn refused(args: Args) -> Finished {
    let finished = mosquitto::spawn_subscriber(args, "interop/tls/refused", QoS::AtMostOnce, 1)
        .finish()
        .await;
    assert!(
        !finished.status.success(),
        "mosquitto_sub must be refused: {finished:#?}"
    );
    assert!(mosquitto::messages(&finished).is_empty(), "{finished:#?}");
    finished
}

/// The CONNACK line `mosquitto_sub -d` prints when refused as not authorized: return code 5
/// in 3.1.1, reason 0x87 in 5.0; the broker closes the connection after it [MQTT-3.2.2-5]
/// (3.1.1) [MQTT-3.2.2-7] (5.0).
fn not_authorized_line(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V311 => "CONNACK (5)",
        ProtocolVersion::V5 => "CONNACK (135)",
    }
}

fn assert_not_authorized(finished: &Finished, version: ProtocolVersion) {
    let expected = not_authorized_line(version);
    assert!(
        finished.stdout.iter().any(|line| line.ends_with(expected)),
        "{version:?}: expected {expected} in {finished:#?}"
    );
    // "not authorised" (3.1.1) or "Not authorized" (5.0).
    assert!(
        finished.stderr.to_lowercase().contains("not authori"),
        "{version:?}: {finished:#?}"
    );
}

#[tokio::test]
async fn mosquitto_over_tls_with_server_certificate() {
    if !mosquitto::available("mosquitto_over_tls_with_server_certificate") {
        return;
    }
    let files = TlsFiles::generate();
    let broker = tls_broker(
        &files,
        Setup {
            client_auth: None,
            auth: None,
        },
    )
    .await;
    for version in VERSIONS {
        round_trip(broker.addr, version, &files, ClientCert::Absent).await;
    }
    broker.shutdown().await;
}

/// mTLS required: a client without a certificate fails the handshake; with one it works, and
/// the broker keeps serving after the refusal.
#[tokio::test]
async fn mosquitto_mtls_required_refuses_client_without_certificate() {
    if !mosquitto::available("mosquitto_mtls_required_refuses_client_without_certificate") {
        return;
    }
    let files = TlsFiles::generate();
    let broker = tls_broker(
        &files,
        Setup {
            client_auth: Some(ClientAuth::Required),
            auth: None,
        },
    )
    .await;
    for version in VERSIONS {
        let finished = refused(tls_args(
            broker.addr,
            version,
            "no-cert",
            &files,
            ClientCert::Absent,
        ))
        .await;
        assert!(
            !finished
                .stdout
                .iter()
                .any(|line| line.contains("received CONNACK")),
            "no CONNACK without a certificate: {finished:#?}"
        );
        // The broker's TLS alert, as OpenSSL reports it to mosquitto_sub.
        assert!(
            finished
                .stdout
                .iter()
                .any(|line| line.contains("certificate required")),
            "{finished:#?}"
        );
        round_trip(broker.addr, version, &files, ClientCert::Presented).await;
    }
    broker.shutdown().await;
}

/// `auth = "certificate"`: a client whose verified certificate names it is accepted without
/// `-u` (its Common Name is its user name).
#[tokio::test]
async fn mosquitto_certificate_auth_lets_the_certificate_holder_in() {
    if !mosquitto::available("mosquitto_certificate_auth_lets_the_certificate_holder_in") {
        return;
    }
    let files = TlsFiles::generate();
    let broker = tls_broker(
        &files,
        Setup {
            client_auth: Some(ClientAuth::Required),
            auth: Some(AuthMode::Certificate),
        },
    )
    .await;
    for version in VERSIONS {
        round_trip(broker.addr, version, &files, ClientCert::Presented).await;
    }
    broker.shutdown().await;
}

/// On a listener with `auth = "password"` a certificate is no password: a client with a
/// verified certificate but no user name is refused as not authorized.
#[tokio::test]
async fn mosquitto_a_certificate_is_no_password() {
    if !mosquitto::available("mosquitto_a_certificate_is_no_password") {
        return;
    }
    let files = TlsFiles::generate();
    let broker = tls_broker(
        &files,
        Setup {
            client_auth: Some(ClientAuth::Required),
            auth: Some(AuthMode::Password),
        },
    )
    .await;
    for version in VERSIONS {
        let finished = refused(tls_args(
            broker.addr,
            version,
            "cert-only",
            &files,
            ClientCert::Presented,
        ))
        .await;
        assert_not_authorized(&finished, version);
    }
    broker.shutdown().await;
}

/// Optional client certificates with `auth = "password_or_certificate"`: without a
/// certificate (or a password) the TLS session is set up but the CONNECT is refused; with a
/// certificate the client is accepted.
#[tokio::test]
async fn mosquitto_optional_client_certificate() {
    if !mosquitto::available("mosquitto_optional_client_certificate") {
        return;
    }
    let files = TlsFiles::generate();
    let broker = tls_broker(
        &files,
        Setup {
            client_auth: Some(ClientAuth::Optional),
            auth: Some(AuthMode::PasswordOrCertificate),
        },
    )
    .await;
    for version in VERSIONS {
        let finished = refused(tls_args(
            broker.addr,
            version,
            "no-cert",
            &files,
            ClientCert::Absent,
        ))
        .await;
        assert_not_authorized(&finished, version);
        round_trip(broker.addr, version, &files, ClientCert::Presented).await;
    }
    broker.shutdown().await;
}

/// Plain MQTT sent to a TLS port gets no CONNACK, the connection is closed, and TLS clients
/// are still served.
#[tokio::test]
async fn plain_mqtt_on_tls_listener_is_closed() {
    let files = TlsFiles::generate();
    let broker = tls_broker(
        &files,
        Setup {
            client_auth: None,
            auth: None,
        },
    )
    .await;
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(broker.addr))
        .await
        .expect("connect in time")
        .expect("TCP connect");
    // CONNECT, MQTT 3.1.1, clean session, keep-alive 60, client id "plain".
    let connect = [
        0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 5, b'p', b'l', b'a', b'i', b'n',
    ];
    stream.write_all(&connect).await.expect("write");
    let mut answer = Vec::new();
    // A reset counts as closed too (hence the ignored read result); what matters is that the
    // connection ends and no CONNACK (0x20) came back.
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the broker closes the connection");
    assert_ne!(
        answer.first(),
        Some(&0x20),
        "no CONNACK over a TLS port: {answer:02x?}"
    );
    if mosquitto::available("plain_mqtt_on_tls_listener_is_closed") {
        round_trip(broker.addr, ProtocolVersion::V5, &files, ClientCert::Absent).await;
    }
    broker.shutdown().await;
}
