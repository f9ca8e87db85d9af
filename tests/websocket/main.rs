//! MQTT over WebSockets against a broker started from the library, on `ws` and `wss`
//! listeners: MQTT.js (npm `mqtt`, run by Node.js from `js/`) publishing, subscribing,
//! resuming a persistent session and leaving a Will, over ws and over wss trusting the test
//! CA, and exchanging messages with a TCP client (`mqtt_js`); and requests the broker must
//! refuse or end — another path, no MQTT subprotocol, a text frame, a plain HTTP GET, a
//! silent socket — made with tokio-tungstenite's client and raw sockets (`refusals`); and a
//! real browser, headless Chromium running MQTT.js's browser bundle (`browser`).

#[path = "../common/mod.rs"]
mod common;

mod browser;
mod mqtt_js;
mod node;
mod refusals;

use cairn::codec::{ProtocolVersion, QoS};
use cairn::config::{ListenerConfig, ListenerKind};

use common::clients::subscriber;
use common::{start_broker_with, test_config, RawClient, TestBroker};

/// A WebSocket listener on 127.0.0.1:0 with the default path, `/mqtt`.
fn ws_listener() -> ListenerConfig {
    ListenerConfig {
        bind: "127.0.0.1:0".parse().expect("valid address"),
        kind: ListenerKind::Ws,
        tls: None,
        auth: None,
        path: None,
    }
}

/// A broker with a WebSocket listener (its `addr`) and a TCP one (its second address).
async fn ws_and_tcp_broker() -> TestBroker {
    start_broker_with(|config| {
        config.listeners = vec![ws_listener(), test_config().listeners[0].clone()]
    })
    .await
}

/// A v5 client on the TCP listener of a [`ws_and_tcp_broker`], subscribed to `filter` at QoS 1.
async fn tcp_watcher(broker: &TestBroker, filter: &str) -> RawClient {
    let tcp = broker.handle.local_addrs()[1];
    subscriber(
        tcp,
        ProtocolVersion::V5,
        "watcher",
        filter,
        QoS::AtLeastOnce,
    )
    .await
}
