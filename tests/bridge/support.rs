//! Shared pieces of the bridge scenarios: a bridge configuration towards an upstream, and a
//! local broker running it.

use std::net::SocketAddr;

use cairn::config::{BridgeConfig, BridgeTopic, Config, Direction};

use crate::common::{start_broker_with, TestBroker};

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
/// bridge's address is fixed), on its own data directory.
pub async fn upstream_cairn() -> TestBroker {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free port")
        .port();
    start_broker_with(|config| {
        config.listeners[0].bind = SocketAddr::from(([127, 0, 0, 1], port));
    })
    .await
}
