//! Shared helpers for the integration tests: a broker started from the library on
//! 127.0.0.1 port 0, and a raw MQTT client that sends exact packets (valid or not) and
//! checks the exact answers. Beside it: `clients` (what most tests do with that client:
//! client ids, persistent sessions, checked subscribes and publishes, how a connection ends),
//! `binary` (the real `cairn` binary run to its end), `certs` (a CA and certificates made by
//! rcgen for the TLS tests), `serve` (a running `cairn serve`), `programs` (outside programs:
//! found on PATH or skipped, run with a deadline), `proxy` (a TCP proxy that injects faults),
//! `passwords` (password files), `upstream` (Mosquitto and ejabberd as a bridge's upstream) and `prng` (a seeded PRNG). A helper two test binaries need belongs here, not in a copy in
//! each.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod binary;
pub mod certs;
pub mod clients;
pub mod ordered;
pub mod passwords;
pub mod prng;
pub mod programs;
pub mod proxy;
pub mod serve;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn::codec::{
    self, ConnAck, Connect, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, SubAck,
    Subscribe, SubscriptionOptions,
};
use cairn::config::{Config, ListenerConfig, ListenerKind};
use cairn::server::{Reloaded, Server, ServerHandle};
use cairn::transport::client::ByteStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for any expected event before failing. Generous: CI machines are
/// small and loaded.
pub const WAIT: Duration = Duration::from_secs(10);

/// A broker running inside the test process.
pub struct TestBroker {
    pub handle: ServerHandle,
    pub addr: SocketAddr,
    /// The configuration it runs with, for a restart.
    pub config: Config,
    /// Its data directory, deleted when the test ends.
    pub data_dir: Arc<tempfile::TempDir>,
}

impl TestBroker {
    /// Shuts the broker down gracefully.
    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }

    /// Shuts the broker down gracefully and starts it again on the same data directory
    /// (listening on a new port).
    pub async fn restart(self) -> TestBroker {
        let TestBroker {
            handle,
            config,
            data_dir,
            ..
        } = self;
        handle.shutdown().await;
        launch(config, data_dir).await
    }

    /// Reloads the broker with the configuration it runs with, as SIGHUP does when the file
    /// did not change: the files it names (passwords, ACL, TLS, bridges' files) are read
    /// again.
    pub async fn reload_files(&mut self) -> Reloaded {
        self.handle
            .reload(self.config.clone())
            .await
            .expect("the reload succeeds")
    }
}

/// A library broker that was shut down gracefully; its data directory lives on.
pub struct Stopped {
    config: Config,
    data_dir: Arc<tempfile::TempDir>,
}

/// Shuts `broker` down gracefully, keeping its configuration and data directory.
pub async fn stop(broker: TestBroker) -> Stopped {
    let TestBroker {
        handle,
        config,
        data_dir,
        ..
    } = broker;
    handle.shutdown().await;
    Stopped { config, data_dir }
}

impl Stopped {
    /// The address it was configured to listen on (port 0 unless it was given one).
    pub fn configured_addr(&self) -> SocketAddr {
        self.config.listeners[0].bind
    }

    /// Starts the broker again on the same data directory (on a new port, unless it was
    /// configured with one).
    pub async fn start(self) -> TestBroker {
        let Stopped { config, data_dir } = self;
        launch(config, data_dir).await
    }
}

/// Starts a broker with `config` on `data_dir`.
pub async fn launch(mut config: Config, data_dir: Arc<tempfile::TempDir>) -> TestBroker {
    config.data_dir = data_dir.path().to_path_buf();
    let handle = Server::start(config.clone()).await.expect("broker starts");
    let addr = handle.local_addrs()[0];
    TestBroker {
        handle,
        addr,
        config,
        data_dir,
    }
}

/// The default test configuration: one TCP listener on 127.0.0.1:0, no `$SYS` updates.
pub fn test_config() -> Config {
    Config {
        listeners: vec![ListenerConfig {
            bind: "127.0.0.1:0".parse().expect("valid address"),
            kind: ListenerKind::Tcp,
            tls: None,
            auth: None,
            path: None,
        }],
        sys_interval: 0,
        ..Config::default()
    }
}

/// Starts a broker with the default test configuration.
pub async fn start_broker() -> TestBroker {
    start_broker_with(|_| {}).await
}

/// Starts a broker with the test configuration changed by `adjust`, on a fresh data
/// directory.
pub async fn start_broker_with(adjust: impl FnOnce(&mut Config)) -> TestBroker {
    let mut config = test_config();
    adjust(&mut config);
    let data_dir = tempfile::tempdir().expect("a temporary data directory");
    launch(config, Arc::new(data_dir)).await
}

/// A CONNECT with the given version and client id, keep-alive 60 s, clean start.
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        bridge: false,
        keep_alive: 60,
        client_id: client_id.to_string(),
        properties: Properties::default(),
        will: None,
        username: None,
        password: None,
    }
}

/// A PUBLISH of `payload` to `topic`.
pub fn publish_packet(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_string(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A client speaking raw MQTT over TCP.
pub struct RawClient {
    stream: Box<dyn ByteStream>,
    buffer: BytesMut,
    pub version: ProtocolVersion,
}

impl RawClient {
    /// Opens a TCP connection (no CONNECT sent yet).
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> RawClient {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("TCP connect");
        RawClient::from_stream(stream, version)
    }

    /// Wraps a connection opened elsewhere, TCP or TLS (no CONNECT sent yet).
    pub fn from_stream(stream: impl ByteStream + 'static, version: ProtocolVersion) -> RawClient {
        RawClient {
            stream: Box::new(stream),
            buffer: BytesMut::new(),
            version,
        }
    }

    /// Opens a connection, sends `connect` and returns the CONNACK.
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
        let mut client = RawClient::open(addr, connect.protocol).await;
        client.send(&Packet::Connect(Box::new(connect))).await;
        let connack = client.expect_connack().await;
        (client, connack)
    }

    /// Connects with clean start and the given id; asserts the CONNACK is a success.
    pub async fn connect(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> RawClient {
        let (client, connack) =
            RawClient::connect_with(addr, connect_packet(version, client_id)).await;
        assert_eq!(
            connack.reason,
            codec::ReasonCode::Success,
            "CONNACK for {client_id}"
        );
        client
    }

    /// Sends one packet.
    pub async fn send(&mut self, packet: &Packet) {
        self.send_all(std::slice::from_ref(packet)).await;
    }

    /// Sends `packets` in one write, as a client that does not wait between them.
    pub async fn send_all(&mut self, packets: &[Packet]) {
        let bytes = self.encode_all(packets);
        self.send_bytes(&bytes).await;
    }

    /// Sends `packets` in one write; false if the connection is gone. For tests where the
    /// broker may die at any moment.
    pub async fn try_send(&mut self, packets: &[Packet]) -> bool {
        let bytes = self.encode_all(packets);
        bytes.is_empty() || self.stream.write_all(&bytes).await.is_ok()
    }

    fn encode_all(&self, packets: &[Packet]) -> BytesMut {
        let mut bytes = BytesMut::new();
        for packet in packets {
            codec::encode(packet, self.version, &mut bytes).expect("test packet encodes");
        }
        bytes
    }

    /// Sends raw bytes, e.g. a malformed packet.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to broker");
    }

    /// The next packet, or `None` if the broker closed the connection. Fails the test after
    /// [`WAIT`] without either.
    pub async fn next(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, self.read_packet())
            .await
            .expect("the broker answered within the wait")
    }

    /// The next packet, or `None` once the connection is closed, however long that takes
    /// (see [`RawClient::next`] for the bounded wait). Cancel-safe: a packet half read stays
    /// buffered.
    pub async fn read_packet(&mut self) -> Option<Packet> {
        loop {
            match codec::decode(&mut self.buffer, self.version, u32::MAX) {
                Ok(Some(packet)) => return Some(packet),
                Ok(None) => {}
                Err(error) => panic!("broker sent a malformed packet: {error}"),
            }
            match self.stream.read_buf(&mut self.buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next packet, which must exist.
    pub async fn recv(&mut self) -> Packet {
        self.next()
            .await
            .expect("a packet, not a closed connection")
    }

    /// Asserts the next packet is CONNACK and returns it.
    pub async fn expect_connack(&mut self) -> ConnAck {
        match self.recv().await {
            Packet::ConnAck(connack) => connack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Asserts the next packet is PUBLISH and returns it.
    pub async fn expect_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(publish) => publish,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Reads until the broker closes the connection; returns the packets seen on the way
    /// (e.g. a DISCONNECT with its reason code).
    pub async fn expect_closed(&mut self) -> Vec<Packet> {
        let mut seen = Vec::new();
        while let Some(packet) = self.next().await {
            seen.push(packet);
        }
        seen
    }

    /// Sends a normal DISCONNECT and waits until the broker has closed the connection.
    pub async fn go_offline(&mut self) {
        self.send(&Packet::Disconnect(codec::Disconnect::new(
            codec::ReasonCode::Success,
        )))
        .await;
        let after = self.expect_closed().await;
        assert!(
            after.is_empty(),
            "nothing follows a client's DISCONNECT, got {after:?}"
        );
    }

    /// The ping barrier: PINGREQ, and the next packet must be PINGRESP. The broker handles a
    /// client's packets in order and answers on one connection in order, so every packet sent
    /// before has been handled, and nothing the broker had for this client was pending.
    pub async fn expect_nothing_pending(&mut self) {
        self.send(&Packet::PingReq).await;
        match self.recv().await {
            Packet::PingResp => {}
            other => panic!("expected nothing pending before PINGRESP, got {other:?}"),
        }
    }

    /// Sends PINGREQ and gathers every PUBLISH that arrives before the PINGRESP (any other
    /// packet fails the test).
    pub async fn publishes_before_pingresp(&mut self) -> Vec<Publish> {
        self.send(&Packet::PingReq).await;
        let mut seen = Vec::new();
        loop {
            match self.recv().await {
                Packet::PingResp => return seen,
                Packet::Publish(publish) => seen.push(publish),
                other => panic!("expected PUBLISH or PINGRESP, got {other:?}"),
            }
        }
    }

    /// Asserts the next packet is PUBREL for `packet_id` with reason Success.
    pub async fn expect_pubrel(&mut self, packet_id: u16) {
        match self.recv().await {
            Packet::PubRel(rel) => assert_eq!(
                (rel.packet_id, rel.reason),
                (packet_id, codec::ReasonCode::Success),
                "PUBREL"
            ),
            other => panic!("expected PUBREL {packet_id}, got {other:?}"),
        }
    }

    /// Completes the receiver's side of a QoS 1 or 2 delivery: PUBACK for QoS 1; PUBREC, the
    /// broker's PUBREL (same packet id [MQTT-4.3.3-4]), then PUBCOMP for QoS 2.
    pub async fn acknowledge(&mut self, publish: &Publish) {
        let packet_id = publish.packet_id.expect("QoS 1 and 2 have a packet id");
        assert_ne!(
            packet_id, 0,
            "the broker's packet ids are non-zero [MQTT-2.2.1-4] (3.1.1: [MQTT-2.3.1-1])"
        );
        match publish.qos {
            QoS::AtMostOnce => panic!(
                "QoS 0 PUBLISH with packet id {packet_id} [MQTT-2.2.1-2] (3.1.1: [MQTT-2.3.1-5])"
            ),
            QoS::AtLeastOnce => {
                self.send(&Packet::PubAck(PubResponse::success(packet_id)))
                    .await
            }
            QoS::ExactlyOnce => {
                self.send(&Packet::PubRec(PubResponse::success(packet_id)))
                    .await;
                self.expect_pubrel(packet_id).await;
                self.send(&Packet::PubComp(PubResponse::success(packet_id)))
                    .await;
            }
        }
    }

    /// Subscribes to one filter with `qos` and returns the SUBACK.
    pub async fn subscribe(&mut self, packet_id: u16, filter: &str, qos: QoS) -> SubAck {
        self.subscribe_with(
            packet_id,
            filter,
            SubscriptionOptions::with_qos(qos),
            Properties::default(),
        )
        .await
    }

    /// Subscribes with full options and properties and returns the SUBACK.
    pub async fn subscribe_with(
        &mut self,
        packet_id: u16,
        filter: &str,
        options: SubscriptionOptions,
        properties: Properties,
    ) -> SubAck {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            properties,
            filters: vec![(filter.to_string(), options)],
        }))
        .await;
        match self.recv().await {
            Packet::SubAck(suback) => suback,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and, for QoS 1/2, completes the flow; returns the broker's PUBACK/PUBREC.
    pub async fn publish(&mut self, publish: Publish) -> Option<PubResponse> {
        let qos = publish.qos;
        self.send(&Packet::Publish(publish)).await;
        match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => match self.recv().await {
                Packet::PubAck(ack) => Some(ack),
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                let rec = match self.recv().await {
                    Packet::PubRec(rec) => rec,
                    other => panic!("expected PUBREC, got {other:?}"),
                };
                self.send(&Packet::PubRel(PubResponse::success(rec.packet_id)))
                    .await;
                match self.recv().await {
                    Packet::PubComp(_) => {}
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
                Some(rec)
            }
        }
    }
}
