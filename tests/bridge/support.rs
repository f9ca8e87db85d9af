//! Shared pieces of the bridge scenarios: a bridge configuration towards an upstream, and a
//! local broker running it.

use std::net::SocketAddr;

use cairn::codec::{ConnAck, Connect, Packet, ProtocolVersion, QoS};
use cairn::config::{BridgeConfig, BridgeProtocol, BridgeTopic, Config, Direction};
use tokio::net::TcpListener;

use crate::common::clients::{new_session, publish_qos1, subscribe_ok, subscriber, text};
use crate::common::ordered::publish_pipelined;
use crate::common::serve::ServeProcess;
use crate::common::{binary, start_broker_with, stop, RawClient, Stopped, TestBroker, WAIT};

/// A topic rule.
pub fn rule(filter: &str, direction: Direction, qos: u8, local: &str, remote: &str) -> BridgeTopic {
    BridgeTopic {
        filter: filter.to_string(),
        direction,
        qos,
        local_prefix: local.to_string(),
        remote_prefix: remote.to_string(),
    }
}

/// A bridge named `name` to `upstream` with `topics`, reconnecting quickly (tests wait for
/// reconnects).
pub fn bridge(name: &str, upstream: SocketAddr, topics: Vec<BridgeTopic>) -> BridgeConfig {
    let mut config: BridgeConfig = toml_bridge(name, upstream);
    config.topics = topics;
    config.reconnect_min = 1;
    config.reconnect_max = 2;
    config
}

fn toml_bridge(name: &str, upstream: SocketAddr) -> BridgeConfig {
    let text =
        format!("name = \"{name}\"\naddresses = [\"{upstream}\"]\nclient_id = \"gw-{name}\"\n");
    toml::from_str(&text).expect("a valid bridge")
}

/// A local broker (the gateway) running `bridges`.
pub async fn gateway(bridges: Vec<BridgeConfig>) -> TestBroker {
    gateway_with(bridges, |_| {}).await
}

/// A local broker running `bridges`, its configuration changed by `adjust`.
pub async fn gateway_with(
    bridges: Vec<BridgeConfig>,
    adjust: impl FnOnce(&mut Config),
) -> TestBroker {
    start_broker_with(|config| {
        config.bridges = bridges;
        adjust(config);
    })
    .await
}

/// An upstream Cairn listening on a port of its own that stays the same across restarts (a
/// bridge's address is fixed), on its own data directory, with room for large backlogs.
pub async fn upstream_cairn() -> TestBroker {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free port")
        .port();
    start_broker_with(|config| {
        config.listeners[0].bind = SocketAddr::from(([127, 0, 0, 1], port));
        // The scenarios queue 10,000 messages for one offline subscriber here: room beyond
        // that, so a QoS 1 repeat can never push one out.
        config.limits.max_queued_messages = 100_000;
    })
    .await
}

/// A gateway run as the real binary (so a test can SIGKILL it): `cairn serve` with `config`
/// written to a TOML file in `dir`, its data in `dir/data`, listening on 127.0.0.1 port 0.
pub struct GatewayProcess {
    config_file: std::path::PathBuf,
    data_dir: std::path::PathBuf,
}

impl GatewayProcess {
    /// Writes the configuration of a gateway running `bridges` into `dir`.
    pub fn new(dir: &std::path::Path, bridges: Vec<BridgeConfig>) -> GatewayProcess {
        let config = Config {
            bridges,
            sys_interval: 0,
            ..Config::default()
        };
        let config_file = dir.join("cairn.toml");
        let text = toml::to_string(&config).expect("the configuration serializes");
        std::fs::write(&config_file, text).expect("write the configuration");
        GatewayProcess {
            config_file,
            data_dir: dir.join("data"),
        }
    }

    /// Starts it (again) and waits until it is ready.
    pub async fn start(&self) -> ServeProcess {
        let config = self.config_file.display().to_string();
        let data = self.data_dir.display().to_string();
        let mut command = binary::cairn(&[
            "serve",
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
        ]);
        command
            .env("CAIRN_LOG__LEVEL", "info")
            .env("CAIRN_LIMITS__MAX_QUEUED_MESSAGES", "1000000");
        ServeProcess::spawn(command).await
    }
}

/// A listening socket the test answers by hand.
pub struct FakeCloud {
    listener: TcpListener,
}

impl FakeCloud {
    pub async fn start() -> FakeCloud {
        FakeCloud {
            listener: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound")
    }

    /// Takes the bridge's next connection and its CONNECT, without answering.
    pub async fn accept_connect(&self) -> (RawClient, Connect) {
        let (stream, _) = tokio::time::timeout(WAIT * 3, self.listener.accept())
            .await
            .expect("the bridge connects in time")
            .expect("accept");
        let mut link = RawClient::from_stream(stream, ProtocolVersion::V5);
        let connect = match link.recv().await {
            Packet::Connect(connect) => *connect,
            other => panic!("expected CONNECT, got {other:?}"),
        };
        link.version = connect.protocol;
        (link, connect)
    }

    /// Takes the bridge's next connection and answers its CONNECT with `connack`.
    pub async fn accept(&self, connack: ConnAck) -> (RawClient, Connect) {
        let (mut link, connect) = self.accept_connect().await;
        link.send(&Packet::ConnAck(connack)).await;
        (link, connect)
    }
}

/// An upstream Cairn (fixed port) holding an offline persistent session `id` subscribed to
/// `filter`, then stopped: an uplink that is down, with a subscriber waiting behind it.
pub async fn upstream_down_with_subscriber(id: &str, filter: &str, qos: QoS) -> Stopped {
    let upstream = upstream_cairn().await;
    let mut cloud = new_session(upstream.addr, ProtocolVersion::V5, id).await;
    subscribe_ok(&mut cloud, 1, filter, qos).await;
    cloud.go_offline().await;
    stop(upstream).await
}

/// Each of `publishers` sends `per` QoS 1 messages to `sensors/t` at once, pipelined (32 in
/// flight), numbered for [`crate::common::ordered::receive_in_publisher_order`].
pub async fn publish_in_groups(addr: SocketAddr, publishers: &[String], per: u32) {
    let tasks: Vec<_> = publishers
        .iter()
        .map(|name| tokio::spawn(publish_pipelined(addr, name.clone(), "sensors/t", per, 32)))
        .collect();
    for task in tasks {
        task.await.expect("publisher finished");
    }
}

/// `both` on one topic through `upstream`: each side's message crosses once and never comes
/// back, checked with a marker message each way (No Local on the bridge's subscriptions; for
/// 3.1.1, the bridge bit on a Mosquitto upstream).
pub async fn no_loop_through(upstream: SocketAddr, protocol: BridgeProtocol) {
    let v5 = ProtocolVersion::V5;
    let mut cloud = subscriber(upstream, v5, "cloud-sub", "data/#", QoS::AtLeastOnce).await;
    let mut config = bridge(
        "cloud",
        upstream,
        vec![rule("data/#", Direction::Both, 1, "", "")],
    );
    config.protocol = protocol;
    let gateway = gateway(vec![config]).await;
    let mut local = subscriber(gateway.addr, v5, "local-sub", "data/#", QoS::AtLeastOnce).await;
    let mut sensor = RawClient::connect(gateway.addr, v5, "sensor").await;
    publish_qos1(&mut sensor, "data/from-gateway", 1, "up").await;
    expect_text(&mut local, "data/from-gateway", "up").await;
    expect_text(&mut cloud, "data/from-gateway", "up").await;

    // The bridge subscribed upstream before it sent "up" on the same connection.
    let mut operator = RawClient::connect(upstream, v5, "operator").await;
    publish_qos1(&mut operator, "data/from-cloud", 1, "down").await;
    expect_text(&mut cloud, "data/from-cloud", "down").await;
    expect_text(&mut local, "data/from-cloud", "down").await;

    publish_qos1(&mut sensor, "data/marker", 2, "end").await;
    for client in [&mut local, &mut cloud] {
        expect_text(client, "data/marker", "end").await;
        client.expect_nothing_pending().await;
    }
}

/// Receives the next PUBLISH, checks its topic and payload, and acknowledges it.
pub async fn expect_text(client: &mut RawClient, topic: &str, payload: &str) {
    let publish = client.expect_publish().await;
    assert_eq!(
        (publish.topic.as_str(), text(&publish).as_str()),
        (topic, payload),
        "nothing else (no message looped back) before it"
    );
    client.acknowledge(&publish).await;
}

/// Waits (each `$SYS` update within the harness's wait) until the gateway at `gateway`, with
/// `sys_interval` set, says its bridge `name` is in a state starting with `prefix`; returns it.
pub async fn wait_for_state(gateway: SocketAddr, name: &str, prefix: &str) -> String {
    let topic = format!("$SYS/broker/bridge/{name}/state");
    let id = format!("state-watcher-{name}");
    let mut watcher = subscriber(gateway, ProtocolVersion::V5, &id, &topic, QoS::AtMostOnce).await;
    loop {
        let state = text(&watcher.expect_publish().await);
        if state.starts_with(prefix) {
            return state;
        }
    }
}
