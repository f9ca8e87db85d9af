//! Idle connections park: a plain TCP or TLS client with nothing under way holds no task, only
//! its state in a waker, and whatever reaches it resumes it — a message for it, a packet of its
//! own, a takeover, a keep-alive timeout, shutdown. Counted with tokio's own task count: the
//! broker runs in the test's runtime. (A client that parks briefly twice in a row keeps its
//! task for a second: the unit tests of `ParkHistory` cover that rule.)

use std::time::Duration;

use cairn::codec::{Packet, ProtocolVersion, PubResponse, QoS, ReasonCode};
use cairn::transport::client::{self, TlsClient, TlsClientSettings};
use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::common::certs::TlsFiles;
use crate::common::clients::{
    client_id, connect_ok, expect_server_close, publish_qos1, subscribe_ok,
};
use crate::common::{connect_packet, start_broker, start_broker_with, RawClient, TestBroker, WAIT};

/// Clients of the test: enough that holding a task each could not hide in the slack.
const CLIENTS: usize = 40;

/// Tasks that may be alive beyond the baseline once every client is idle (a connection
/// finishing its last step, a timer of the broker's).
const SLACK: usize = 2;

/// Waits until at most `limit` tasks are alive, within [`WAIT`]; returns how many are.
async fn alive_tasks_fall_to(limit: usize) -> usize {
    let metrics = Handle::current().metrics();
    let deadline = Instant::now() + WAIT;
    loop {
        let alive = metrics.num_alive_tasks();
        if alive <= limit {
            return alive;
        }
        assert!(
            Instant::now() < deadline,
            "{alive} tasks alive after {WAIT:?}, expected at most {limit}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every client sends PINGREQ, and each gets its PINGRESP [MQTT-3.12.4-1]: a parked
/// connection is resumed by its socket.
async fn pings_are_answered(clients: &mut [RawClient]) {
    for client in clients.iter_mut() {
        client.send(&Packet::PingReq).await;
    }
    for client in clients.iter_mut() {
        assert!(matches!(client.recv().await, Packet::PingResp));
    }
}

/// The publisher sends each client a QoS 1 message on `<prefix>/<index>`, the topic it
/// subscribed to; each receives its own and acknowledges it.
async fn messages_are_delivered(
    publisher: &mut RawClient,
    clients: &mut [RawClient],
    prefix: &str,
) {
    for index in 0..clients.len() {
        let packet_id = u16::try_from(index + 1).expect("small");
        publish_qos1(
            publisher,
            &format!("{prefix}/{index}"),
            packet_id,
            "wake up",
        )
        .await;
    }
    for (index, client) in clients.iter_mut().enumerate() {
        let publish = client.expect_publish().await;
        assert_eq!(publish.topic, format!("{prefix}/{index}"));
        assert_eq!(publish.payload, "wake up".as_bytes());
        let packet_id = publish.packet_id.expect("QoS 1");
        client
            .send(&Packet::PubAck(PubResponse::success(packet_id)))
            .await;
    }
}

/// Shuts `broker` down while `clients` (v5) are connected: each gets DISCONNECT 0x8B, and the
/// shutdown completes.
async fn all_closed_at_shutdown(broker: TestBroker, clients: &mut [RawClient]) {
    let stopping = tokio::spawn(broker.shutdown());
    for client in clients.iter_mut() {
        expect_server_close(client, ReasonCode::ServerShuttingDown).await;
    }
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("shutdown in time")
        .expect("shutdown task");
}

/// Both protocol versions, alternating.
fn version(index: usize) -> ProtocolVersion {
    if index % 2 == 0 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V311
    }
}

#[tokio::test]
async fn idle_clients_hold_no_task_and_wake_for_what_reaches_them() {
    let broker = start_broker().await;
    let mut publisher =
        RawClient::connect(broker.addr, ProtocolVersion::V5, "idle-publisher").await;
    let baseline = alive_tasks_fall_to(usize::MAX).await;
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let id = client_id(&format!("idle-{index}"), version(index));
        let mut client = RawClient::connect(broker.addr, version(index), &id).await;
        subscribe_ok(&mut client, 1, &format!("idle/{index}"), QoS::AtLeastOnce).await;
        clients.push(client);
    }
    alive_tasks_fall_to(baseline + SLACK).await;

    // A message for each: the state's signal resumes it.
    messages_are_delivered(&mut publisher, &mut clients, "idle").await;

    // A packet of its own: its socket resumes it.
    pings_are_answered(&mut clients).await;
}

/// TLS connections park too, each with its TLS session over its socket: idle TLS clients
/// hold no task, a message for each resumes it through the state's signal and a PINGREQ
/// through its socket, and each session goes on unbroken (its records still decrypt).
#[tokio::test]
async fn idle_tls_clients_hold_no_task_and_wake_for_what_reaches_them() {
    let tls = TlsBroker::start().await;
    let mut publisher = tls.connect("idle-tls-publisher").await;
    let baseline = alive_tasks_fall_to(usize::MAX).await;
    let mut clients = Vec::new();
    for index in 0..CLIENTS / 4 {
        let mut client = tls.connect(&format!("idle-tls-{index}")).await;
        subscribe_ok(
            &mut client,
            1,
            &format!("idle-tls/{index}"),
            QoS::AtLeastOnce,
        )
        .await;
        clients.push(client);
    }
    alive_tasks_fall_to(baseline + SLACK).await;

    messages_are_delivered(&mut publisher, &mut clients, "idle-tls").await;
    pings_are_answered(&mut clients).await;
    tls.broker.shutdown().await;
}

/// Shutdown resumes parked TLS connections too, to say goodbye through their TLS sessions:
/// v5 clients get DISCONNECT 0x8B.
#[tokio::test]
async fn parked_tls_connections_are_closed_at_shutdown() {
    let tls = TlsBroker::start().await;
    let baseline = alive_tasks_fall_to(usize::MAX).await;
    let mut clients = Vec::new();
    for index in 0..4 {
        clients.push(tls.connect(&format!("idle-tls-shutdown-{index}")).await);
    }
    alive_tasks_fall_to(baseline).await;
    all_closed_at_shutdown(tls.broker, &mut clients).await;
}

/// A broker with one TLS listener, and a client setup that trusts its certificate.
struct TlsBroker {
    broker: TestBroker,
    client: TlsClient,
    _files: TlsFiles,
}

impl TlsBroker {
    async fn start() -> TlsBroker {
        let files = TlsFiles::generate();
        let broker =
            start_broker_with(|config| config.listeners = vec![files.listener(None, None)]).await;
        let client = TlsClient::new(&TlsClientSettings {
            ca: files.ca.clone(),
            server_name: "localhost".into(),
            identity: None,
            alpn: Vec::new(),
        })
        .expect("TLS client settings");
        TlsBroker {
            broker,
            client,
            _files: files,
        }
    }

    /// A v5 client connected through TLS with Clean Start, CONNACK checked.
    async fn connect(&self, id: &str) -> RawClient {
        let stream = client::connect(&self.broker.addr.to_string(), Some(&self.client), WAIT)
            .await
            .expect("TLS connect");
        let mut client = RawClient::from_stream(stream, ProtocolVersion::V5);
        client
            .send(&Packet::Connect(Box::new(connect_packet(
                ProtocolVersion::V5,
                id,
            ))))
            .await;
        let connack = client.expect_connack().await;
        assert_eq!(connack.reason, ReasonCode::Success, "CONNACK for {id}");
        client
    }
}

// A client silent after its CONNACK parks, and is still served once parked.
#[tokio::test]
async fn a_client_silent_after_connack_parks() {
    let broker = start_broker().await;
    let baseline = alive_tasks_fall_to(usize::MAX).await;
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let id = client_id(&format!("silent-{index}"), version(index));
        clients.push(RawClient::connect(broker.addr, version(index), &id).await);
    }
    alive_tasks_fall_to(baseline + SLACK).await;
    pings_are_answered(&mut clients).await;
}

// A parked connection is resumed by its socket: PINGREQ is answered [MQTT-3.12.4-1], and it
// parks again (one brief park is no busy client); then a SUBSCRIBE is acknowledged and
// served.
#[tokio::test]
async fn a_parked_connection_is_resumed_by_what_its_client_sends() {
    let broker = start_broker().await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
        // Measured again: the client before may still hold its task, busy as it was.
        let baseline = alive_tasks_fall_to(usize::MAX).await;
        let id = client_id("idle-socket", version);
        let mut client = RawClient::connect(broker.addr, version, &id).await;
        alive_tasks_fall_to(baseline).await;
        client.send(&Packet::PingReq).await;
        assert!(matches!(client.recv().await, Packet::PingResp));
        alive_tasks_fall_to(baseline).await;
        subscribe_ok(&mut client, 1, "idle/socket", QoS::AtLeastOnce).await;
        publish_qos1(&mut client, "idle/socket", 2, "to myself").await;
        let publish = client.expect_publish().await;
        assert_eq!(publish.payload, "to myself".as_bytes());
    }
}

// [MQTT-3.1.4-3] A parked connection taken over is resumed to close: DISCONNECT 0x8E (v5), and
// the new connection gets the session.
#[tokio::test]
async fn a_parked_connection_taken_over_is_closed() {
    let broker = start_broker().await;
    let baseline = alive_tasks_fall_to(usize::MAX).await;
    let id = client_id("idle-takeover", ProtocolVersion::V5);
    let mut first = RawClient::connect(broker.addr, ProtocolVersion::V5, &id).await;
    alive_tasks_fall_to(baseline).await;
    let (mut second, connack) =
        connect_ok(broker.addr, connect_packet(ProtocolVersion::V5, &id)).await;
    assert_eq!(connack.reason, ReasonCode::Success);
    expect_server_close(&mut first, ReasonCode::SessionTakenOver).await;
    second.send(&Packet::PingReq).await;
    assert!(matches!(second.recv().await, Packet::PingResp));
}

// [MQTT-3.1.2-22] A parked connection is closed by the keep-alive sweep like any other.
#[tokio::test]
async fn a_parked_connection_silent_too_long_is_closed() {
    let broker = start_broker().await;
    let baseline = alive_tasks_fall_to(usize::MAX).await;
    let id = client_id("idle-silent", ProtocolVersion::V5);
    let mut connect = connect_packet(ProtocolVersion::V5, &id);
    connect.keep_alive = 3;
    let connected = Instant::now();
    let (mut client, _) = connect_ok(broker.addr, connect).await;
    alive_tasks_fall_to(baseline).await;
    assert!(
        connected.elapsed() < Duration::from_millis(4_500),
        "parked before 1.5 x Keep Alive, not closed then"
    );
    expect_server_close(&mut client, ReasonCode::KeepAliveTimeout).await;
}

// Shutdown resumes every parked connection to say goodbye: v5 clients get 0x8B.
#[tokio::test]
async fn parked_connections_are_closed_at_shutdown() {
    let broker = start_broker().await;
    let baseline = alive_tasks_fall_to(usize::MAX).await;
    let mut clients = Vec::new();
    for index in 0..4 {
        let id = client_id(&format!("idle-shutdown-{index}"), ProtocolVersion::V5);
        clients.push(RawClient::connect(broker.addr, ProtocolVersion::V5, &id).await);
    }
    alive_tasks_fall_to(baseline).await;
    all_closed_at_shutdown(broker, &mut clients).await;
}
