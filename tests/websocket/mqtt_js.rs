//! MQTT.js over `ws` and `wss`: every session feature the same as over TCP — QoS 0, 1 and 2
//! both ways, retained messages, a persistent session resumed, a Will on a dropped
//! connection — for MQTT 5.0 and 3.1.1 clients, a custom path, TLS trusting the test CA, and
//! a TCP client and a WebSocket client talking to each other.

use std::net::SocketAddr;

use cairn::codec::{ProtocolVersion, QoS};
use cairn::config::ListenerKind;

use crate::common::certs::TlsFiles;
use crate::common::clients::{client_id, publish_qos1, subscriber, text, BOTH};
use crate::common::{start_broker_with, RawClient, TestBroker};
use crate::node::{self, mqtt_js_available};
use crate::{tcp_watcher, ws_and_tcp_broker, ws_listener};

/// Asserts the next packet `client` gets is a PUBLISH of `payload` to `topic`.
async fn expect_message(client: &mut RawClient, topic: &str, payload: &str) {
    let publish = client.expect_publish().await;
    assert_eq!(
        (publish.topic.as_str(), text(&publish).as_str()),
        (topic, payload)
    );
}

/// The URL of the WebSocket listener at `addr`.
fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/mqtt")
}

/// The `--version` MQTT.js takes: 5, or 4 for 3.1.1.
fn version_arg(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V5 => "5",
        ProtocolVersion::V311 => "4",
    }
}

/// One subscriber and three publishers, all MQTT.js over `url`: a message at each QoS
/// reaches the subscriber at that QoS (it subscribed with QoS 2).
async fn exchange_at_every_qos(url: &str, version: ProtocolVersion, extra: &[&str]) {
    let v = version_arg(version);
    let topic = format!("ws/v{v}");
    let filter = format!("{topic}/#");
    let mut args = vec!["--version", v, "--id", "sub", "--topic", &filter];
    args.extend(["--qos", "2", "--count", "3"]);
    args.extend(extra);
    let mut subscriber = node::spawn("subscribe", url, &args);
    subscriber
        .wait_for_line("its SUBACK", |line| line == "subscribed 2")
        .await;
    for (qos, payload) in [("0", "zero"), ("1", "one"), ("2", "two")] {
        let topic = format!("{topic}/q{qos}");
        let id = format!("pub-{qos}");
        let mut args = vec!["--version", v, "--id", &id, "--topic", &topic];
        args.extend(["--qos", qos, "--payload", payload]);
        args.extend(extra);
        let published = node::run("publish", url, &args).await;
        assert_eq!(published.stdout.last(), Some(&format!("published {topic}")));
    }
    let received = subscriber.finish().await;
    received.assert_success("the MQTT.js subscriber");
    assert_eq!(
        received.stdout,
        [
            format!("message {topic}/q0 qos=0 retain=false zero"),
            format!("message {topic}/q1 qos=1 retain=false one"),
            format!("message {topic}/q2 qos=2 retain=false two"),
        ]
    );
}

/// MQTT 5.0 and 3.1.1 clients alike.
#[tokio::test]
async fn mqtt_js_publishes_and_receives_at_every_qos_over_ws() {
    if !mqtt_js_available("mqtt_js_publishes_and_receives_at_every_qos_over_ws") {
        return;
    }
    let broker = start_broker_with(|config| config.listeners = vec![ws_listener()]).await;
    for version in BOTH {
        exchange_at_every_qos(&ws_url(broker.addr), version, &[]).await;
    }
    broker.shutdown().await;
}

/// A `wss` listener: the TLS handshake, then the upgrade; MQTT.js trusts the test CA.
#[tokio::test]
async fn mqtt_js_publishes_and_receives_over_wss_trusting_the_test_ca() {
    if !mqtt_js_available("mqtt_js_publishes_and_receives_over_wss_trusting_the_test_ca") {
        return;
    }
    let files = TlsFiles::generate();
    let mut listener = files.listener(None, None);
    listener.kind = ListenerKind::Wss;
    let broker = start_broker_with(|config| config.listeners = vec![listener]).await;
    let url = format!("wss://{}/mqtt", broker.addr);
    let ca = files.ca.display().to_string();
    exchange_at_every_qos(&url, ProtocolVersion::V5, &["--ca", &ca]).await;
    broker.shutdown().await;
}

/// A listener with its own `path` serves MQTT.js there.
#[tokio::test]
async fn mqtt_js_connects_to_a_listener_s_own_path() {
    if !mqtt_js_available("mqtt_js_connects_to_a_listener_s_own_path") {
        return;
    }
    let mut listener = ws_listener();
    listener.path = Some("/gateway/mqtt".into());
    let broker = start_broker_with(|config| config.listeners = vec![listener]).await;
    let url = format!("ws://{}/gateway/mqtt", broker.addr);
    let connected = node::run("subscribe", &url, &["--id", "path"]).await;
    assert_eq!(connected.stdout, ["connected session_present=false"]);
    broker.shutdown().await;
}

/// A retained message published over ws reaches a later subscriber over ws with its Retain
/// flag set.
#[tokio::test]
async fn a_retained_message_reaches_a_later_mqtt_js_subscriber() {
    if !mqtt_js_available("a_retained_message_reaches_a_later_mqtt_js_subscriber") {
        return;
    }
    let broker = start_broker_with(|config| config.listeners = vec![ws_listener()]).await;
    let url = ws_url(broker.addr);
    let topic = "ws/status";
    let publish = ["--id", "pub", "--topic", topic, "--qos", "1"];
    node::run(
        "publish",
        &url,
        &[&publish[..], &["--payload", "up", "--retain", "true"]].concat(),
    )
    .await;
    let subscribe = [
        "--id", "late", "--topic", "ws/#", "--qos", "1", "--count", "1",
    ];
    let mut received = node::run("subscribe", &url, &subscribe).await.stdout;
    // The SUBACK and the retained message may come in either order.
    received.sort();
    assert_eq!(
        received,
        [
            "connected session_present=false",
            "message ws/status qos=1 retain=true up",
            "subscribed 1",
        ]
    );
    broker.shutdown().await;
}

/// A persistent session made over ws keeps its subscription and queues QoS 1 messages while
/// offline; MQTT.js resuming it over ws is told Session Present and gets them.
async fn session_resumed_over_ws(broker: &TestBroker, version: ProtocolVersion) {
    let url = ws_url(broker.addr);
    let tcp = broker.handle.local_addrs()[1];
    let v = version_arg(version);
    let id = client_id("keeper", version);
    let session = [
        "--version",
        v,
        "--id",
        &id,
        "--clean",
        "false",
        "--expiry",
        "300",
    ];
    let subscribe = [&session[..], &["--topic", "kept/#", "--qos", "1"]].concat();
    let first = node::run("subscribe", &url, &subscribe).await;
    assert_eq!(
        first.stdout,
        ["connected session_present=false", "subscribed 1"]
    );

    let publisher_id = client_id("offline-publisher", version);
    let mut publisher = RawClient::connect(tcp, version, &publisher_id).await;
    for (packet_id, payload) in [(1, "first"), (2, "second")] {
        publish_qos1(&mut publisher, "kept/reading", packet_id, payload).await;
    }
    let resume = [&session[..], &["--count", "2"]].concat();
    let resumed = node::run("subscribe", &url, &resume).await;
    assert_eq!(
        resumed.stdout,
        [
            "connected session_present=true",
            "message kept/reading qos=1 retain=false first",
            "message kept/reading qos=1 retain=false second",
        ]
    );
}

/// MQTT 5.0 and 3.1.1 clients alike.
#[tokio::test]
async fn an_mqtt_js_persistent_session_is_resumed_over_ws() {
    if !mqtt_js_available("an_mqtt_js_persistent_session_is_resumed_over_ws") {
        return;
    }
    let broker = ws_and_tcp_broker().await;
    for version in BOTH {
        session_resumed_over_ws(&broker, version).await;
    }
    broker.shutdown().await;
}

/// MQTT.js connected over ws with a Will drops its connection without DISCONNECT: the Will
/// reaches a TCP subscriber.
#[tokio::test]
async fn an_mqtt_js_will_is_published_when_its_ws_connection_drops() {
    if !mqtt_js_available("an_mqtt_js_will_is_published_when_its_ws_connection_drops") {
        return;
    }
    let broker = ws_and_tcp_broker().await;
    let mut watcher = tcp_watcher(&broker, "wills/#").await;
    let will = [
        "--id",
        "fragile",
        "--topic",
        "wills/fragile",
        "--qos",
        "1",
        "--payload",
        "gone",
    ];
    let dropped = node::run("will", &ws_url(broker.addr), &will).await;
    assert_eq!(
        dropped.stdout,
        ["connected session_present=false", "dropped"]
    );
    expect_message(&mut watcher, "wills/fragile", "gone").await;
    broker.shutdown().await;
}

/// A TCP client and MQTT.js over ws, on two listeners of one broker, exchange messages both
/// ways.
#[tokio::test]
async fn a_tcp_client_and_an_mqtt_js_ws_client_exchange_messages() {
    if !mqtt_js_available("a_tcp_client_and_an_mqtt_js_ws_client_exchange_messages") {
        return;
    }
    let broker = ws_and_tcp_broker().await;
    let url = ws_url(broker.addr);
    let tcp = broker.handle.local_addrs()[1];
    let mut tcp_client = subscriber(
        tcp,
        ProtocolVersion::V311,
        "tcp",
        "to-tcp",
        QoS::AtLeastOnce,
    )
    .await;
    let ws_args = [
        "--id", "ws", "--topic", "to-ws", "--qos", "1", "--count", "1",
    ];
    let mut ws_client = node::spawn("subscribe", &url, &ws_args);
    ws_client
        .wait_for_line("its SUBACK", |line| line == "subscribed 1")
        .await;

    publish_qos1(&mut tcp_client, "to-ws", 1, "from tcp").await;
    let publish_args = [
        "--id",
        "ws-pub",
        "--topic",
        "to-tcp",
        "--qos",
        "1",
        "--payload",
        "from ws",
    ];
    node::run("publish", &url, &publish_args).await;

    let received = ws_client.finish().await;
    received.assert_success("the MQTT.js subscriber");
    assert_eq!(
        received.stdout,
        ["message to-ws qos=1 retain=false from tcp"]
    );
    expect_message(&mut tcp_client, "to-tcp", "from ws").await;
    broker.shutdown().await;
}
