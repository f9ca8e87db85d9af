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

use cairn::config::{ListenerConfig, ListenerKind};

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
