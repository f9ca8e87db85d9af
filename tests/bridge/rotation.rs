//! Secrets renewed on disk under the same settings (`ServerHandle::reload`, what SIGHUP
//! calls): a reload that finds a bridge's password file or client certificate changed
//! restarts the bridge, which says goodbye upstream and reconnects with the new one on the
//! same queue (nothing acknowledged locally is lost, each publisher's order kept); a reload
//! that finds the same files leaves it connected, and one that cannot read them changes
//! nothing. The upstream, a Cairn, accepts only the new password or certificate once its own
//! files are renewed and reloaded, so the bridge's messages after the reload prove it
//! presented the new one.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use cairn::codec::{ConnAck, Packet, ProtocolVersion, QoS, ReasonCode};
use cairn::config::{AuthMode, BridgeConfig, BridgeTls, ClientAuth, Direction};
use cairn::transport::client::{self, ClientIdentity, TlsClient, TlsClientSettings};
use cairn::transport::Framed;

use crate::common::certs::TlsFiles;
use crate::common::clients::{connect_ok, publish_qos1, subscribe_ok, text};
use crate::common::ordered::receive_in_order_allowing_repeats;
use crate::common::passwords::write_password_file;
use crate::common::{connect_packet, start_broker_with, RawClient, TestBroker, WAIT};
use crate::support::{bridge, expect_text, gateway, publish_in_groups, rule};

const V5: ProtocolVersion = ProtocolVersion::V5;
/// Where the bridge says whether it is connected, upstream.
const STATE_TOPIC: &str = "site-7/bridge/state";
/// What the upstream's subscribers log in with when the upstream asks for passwords.
const CLOUD_USER: (&str, &str) = ("cloud-sub", "cloud-sub password");

/// A reload after the cloud password was rotated in the bridge's `password_file`.
#[tokio::test]
async fn a_rotated_password_file_reconnects_the_bridge_with_the_new_password() {
    let dir = tempfile::tempdir().expect("a directory for the files");
    let upstream_passwords = |gateway_password: &str| {
        write_password_file(
            dir.path(),
            "upstream.passwd",
            &[("gw-7", gateway_password), CLOUD_USER],
        )
    };
    let passwords = upstream_passwords("old secret");
    let mut upstream = start_broker_with(|config| {
        config.password_file = Some(passwords);
        config.listeners[0].auth = Some(AuthMode::Password);
    })
    .await;
    let password_file = dir.path().join("cloud.pass");
    fs::write(&password_file, "old secret\n").expect("write the bridge's password file");
    let mut config = bridge_to(upstream.addr);
    config.username = Some("gw-7".into());
    config.password_file = Some(password_file.clone());

    let rotate_upstream = || {
        upstream_passwords("new secret");
    };
    let rotate_gateway = || fs::write(&password_file, "new secret\n").expect("rotate");
    let bridged =
        renewed_files_reconnect_the_bridge(&mut upstream, config, rotate_upstream, rotate_gateway)
            .await;

    let mut old = connect_packet(V5, "gw-7-old");
    old.username = Some("gw-7".into());
    old.password = Some("old secret".as_bytes().to_vec().into());
    let (_, refused): (RawClient, ConnAck) = RawClient::connect_with(upstream.addr, old).await;
    assert_eq!(
        refused.reason,
        ReasonCode::BadUserNameOrPassword,
        "the upstream no longer takes the old password: the bridge logged in with the new one"
    );
    bridged.gateway.shutdown().await;
    upstream.shutdown().await;
}

/// A reload after the bridge's client certificate was renewed (by another CA, which the
/// upstream trusts instead of the old one after its own reload).
#[tokio::test]
async fn a_renewed_client_certificate_reconnects_the_bridge_with_it() {
    let old = TlsFiles::generate();
    let renewed = TlsFiles::generate();
    let live = tempfile::tempdir().expect("a directory for the files");
    let client_ca = live.path().join("client-ca.pem");
    let (cert, key) = (live.path().join("gw.pem"), live.path().join("gw.key"));
    let install_client_ca = |files: &TlsFiles| copy(&files.ca, &client_ca);
    let install_identity = |files: &TlsFiles| {
        copy(&files.client_cert, &cert);
        copy(&files.client_key, &key);
    };
    install_client_ca(&old);
    install_identity(&old);

    let mut listener = old.listener(Some(ClientAuth::Required), None);
    if let Some(tls) = listener.tls.as_mut() {
        tls.client_ca = Some(client_ca.clone());
    }
    // The test's own clients use the plain listener; the bridge the TLS one.
    let mut upstream = start_broker_with(|config| config.listeners.push(listener)).await;
    let tls_addr = upstream.handle.local_addrs()[1];
    let mut config = bridge_to(tls_addr);
    config.tls = Some(BridgeTls {
        ca: Some(old.ca.clone()),
        cert: Some(cert.clone()),
        key: Some(key.clone()),
        server_name: Some("localhost".into()),
        alpn: Vec::new(),
    });

    let mut bridged = renewed_files_reconnect_the_bridge(
        &mut upstream,
        config,
        || install_client_ca(&renewed),
        || install_identity(&renewed),
    )
    .await;

    assert!(
        refuses_certificate_of(tls_addr, &old, &old).await,
        "the upstream no longer takes the old certificate: the bridge presented the new one"
    );
    assert!(
        !refuses_certificate_of(tls_addr, &old, &renewed).await,
        "the renewed certificate is taken"
    );

    // A key file caught half-written: the reload is refused whole, naming the file, and the
    // bridge stays on its connection.
    fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").expect("write a broken key");
    let mut config = bridged.gateway.config.clone();
    config.limits.max_connections += 1;
    let error = bridged
        .gateway
        .handle
        .reload(config)
        .await
        .expect_err("an unreadable key refuses the reload");
    assert!(error.to_string().contains("gw.key"), "{error}");
    assert_eq!(
        bridged
            .gateway
            .handle
            .broker()
            .config()
            .limits
            .max_connections,
        bridged.gateway.config.limits.max_connections,
        "nothing of a refused reload applies"
    );
    bridged.assert_still_connected("broken key").await;
    bridged.gateway.shutdown().await;
    upstream.shutdown().await;
}

/// Whether the TLS listener at `addr`, whose certificate is that of `server`, refuses a client
/// presenting the client certificate of `client`: the handshake fails, or the connection closes before a CONNACK (in TLS 1.3 the
/// server checks the client's certificate after the client has finished its handshake).
async fn refuses_certificate_of(addr: SocketAddr, server: &TlsFiles, client: &TlsFiles) -> bool {
    let tls = TlsClient::new(&TlsClientSettings {
        ca: server.ca.clone(),
        server_name: "localhost".into(),
        identity: Some(ClientIdentity {
            cert: client.client_cert.clone(),
            key: client.client_key.clone(),
        }),
        alpn: Vec::new(),
    })
    .expect("TLS client settings");
    let Ok(stream) = client::connect(&addr.to_string(), Some(&tls), WAIT).await else {
        return true;
    };
    let mut framed = Framed::new(stream, 1 << 20);
    framed.version = V5;
    framed
        .queue(&Packet::Connect(Box::new(connect_packet(
            V5,
            "old-certificate",
        ))))
        .expect("CONNECT encodes");
    if framed.flush().await.is_err() {
        return true;
    }
    let answer = tokio::time::timeout(WAIT, framed.read_packet())
        .await
        .expect("an answer or a close within the wait");
    !matches!(answer, Ok(Some(Packet::ConnAck(_))))
}

/// A bridge `cloud` to `upstream` carrying `sensors/#` out under `site-7/`, announcing its
/// state on [`STATE_TOPIC`].
fn bridge_to(upstream: SocketAddr) -> BridgeConfig {
    let mut config = bridge(
        "cloud",
        upstream,
        vec![rule("sensors/#", Direction::Out, 1, "", "site-7/")],
    );
    config.state_topic = Some(STATE_TOPIC.into());
    config
}

fn copy(from: &Path, to: &Path) {
    fs::copy(from, to).expect("install the file");
}

/// A gateway whose bridge is connected to the upstream, with a local publisher and the
/// upstream's subscribers to the bridged topics and to the bridge's state topic.
struct Bridged {
    gateway: TestBroker,
    sensor: RawClient,
    cloud: RawClient,
    watcher: RawClient,
    /// Markers sent so far (their packet ids).
    markers: u16,
}

impl Bridged {
    /// Checks that the bridge is still on the connection it had: a marker published locally
    /// arrives upstream, and the state topic said nothing. A restart would have said
    /// `disconnected` before its goodbye, so before the marker, which can only follow on the
    /// next connection.
    async fn assert_still_connected(&mut self, marker: &str) {
        self.markers += 1;
        publish_qos1(&mut self.sensor, "sensors/marker", self.markers, marker).await;
        expect_text(&mut self.cloud, "site-7/sensors/marker", marker).await;
        self.watcher.expect_nothing_pending().await;
    }
}

/// The scenario both renewals share. A gateway runs `bridge` to `upstream`; a reload with
/// the same files leaves it connected. Then `rotate_upstream` renews the upstream's files,
/// and the upstream reloads them (the bridge's connection stays, logged in as it was);
/// messages are acknowledged locally; `rotate_gateway` renews the bridge's files; the
/// gateway reloads: the bridge is restarted, for its files alone, says goodbye and connects
/// again, and every message reaches the upstream in each publisher's order.
async fn renewed_files_reconnect_the_bridge(
    upstream: &mut TestBroker,
    bridge: BridgeConfig,
    rotate_upstream: impl FnOnce(),
    rotate_gateway: impl FnOnce(),
) -> Bridged {
    let mut watcher = cloud_subscriber(upstream.addr, "state-watcher", STATE_TOPIC).await;
    let cloud = cloud_subscriber(upstream.addr, "cloud-sub", "site-7/sensors/#").await;
    let gateway = gateway(vec![bridge]).await;
    expect_state(&mut watcher, "connected").await;
    let sensor = RawClient::connect(gateway.addr, V5, "sensor-marker").await;
    let mut bridged = Bridged {
        gateway,
        sensor,
        cloud,
        watcher,
        markers: 0,
    };

    let reloaded = bridged.gateway.reload_files().await;
    assert!(reloaded.bridges.is_empty(), "{:?}", reloaded.bridges);
    bridged.assert_still_connected("same files").await;

    rotate_upstream();
    let reloaded = upstream.reload_files().await;
    assert_eq!(
        reloaded.logins_closed, 0,
        "the bridge's user is still known"
    );
    let publishers: Vec<String> = (0..3).map(|p| format!("sensor-{p}")).collect();
    let per = 200;
    publish_in_groups(bridged.gateway.addr, &publishers[..2], per).await;

    rotate_gateway();
    let reloaded = bridged.gateway.reload_files().await;
    assert_eq!(reloaded.bridges.restarted, ["cloud"]);
    assert_eq!(
        reloaded.bridges.renewed,
        ["cloud"],
        "restarted for its files"
    );
    assert!(reloaded.applied.is_empty(), "{:?}", reloaded.applied);
    expect_state(&mut bridged.watcher, "disconnected").await;
    expect_state(&mut bridged.watcher, "connected").await;
    publish_in_groups(bridged.gateway.addr, &publishers[2..], per).await;
    receive_in_order_allowing_repeats(&mut bridged.cloud, &publishers, per).await;
    bridged
}

/// A client of the upstream, logged in as [`CLOUD_USER`], subscribed to `filter` at QoS 1.
async fn cloud_subscriber(upstream: SocketAddr, id: &str, filter: &str) -> RawClient {
    let mut connect = connect_packet(V5, id);
    connect.username = Some(CLOUD_USER.0.into());
    connect.password = Some(CLOUD_USER.1.as_bytes().to_vec().into());
    let (mut client, _) = connect_ok(upstream, connect).await;
    subscribe_ok(&mut client, 1, filter, QoS::AtLeastOnce).await;
    client
}

/// The next message on the state topic says `state` (sent at QoS 0).
async fn expect_state(watcher: &mut RawClient, state: &str) {
    let publish = watcher.expect_publish().await;
    assert_eq!(
        (publish.topic.as_str(), text(&publish).as_str()),
        (STATE_TOPIC, state)
    );
}
