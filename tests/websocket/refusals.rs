//! What a WebSocket listener refuses or ends, and that the broker serves on afterwards: a
//! request for another path (404), one without the `mqtt` subprotocol (400, [MQTT-6.0.0-3]),
//! a text frame [MQTT-6.0.0-1], a plain HTTP GET, a socket that never finishes its request.
//! The clients are tokio-tungstenite's and raw sockets; the broker's choice of `mqtt`
//! [MQTT-6.0.0-4] and a CONNECT split across frames [MQTT-6.0.0-2] are checked on the way.

use std::net::SocketAddr;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use cairn::codec::{self, Packet, ProtocolVersion, ReasonCode};

use crate::common::binary::cairn;
use crate::common::serve::ServeProcess;
use crate::common::{connect_packet, start_broker_with, TestBroker, WAIT};
use crate::ws_listener;

type Client = WebSocketStream<TcpStream>;

async fn ws_broker() -> TestBroker {
    start_broker_with(|config| config.listeners = vec![ws_listener()]).await
}

/// Upgrades a new connection to `addr` asking for `path` and offering `subprotocols`.
async fn upgrade(
    addr: SocketAddr,
    path: &str,
    subprotocols: Option<&str>,
) -> Result<(Client, Response), WsError> {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("a request");
    if let Some(offer) = subprotocols {
        let value = HeaderValue::from_str(offer).expect("a header value");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", value);
    }
    let stream = TcpStream::connect(addr).await.expect("TCP connect");
    tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("the upgrade is answered within the wait")
}

fn refused_with(outcome: Result<(Client, Response), WsError>) -> StatusCode {
    match outcome {
        Err(WsError::Http(response)) => response.status(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok((_, response)) => panic!("upgraded: {response:?}"),
    }
}

/// The next message from the broker, `None` once the connection is over.
async fn next(client: &mut Client) -> Option<Message> {
    match tokio::time::timeout(WAIT, client.next()).await {
        Ok(Some(Ok(message))) => Some(message),
        Ok(Some(Err(_)) | None) => None,
        Err(_) => panic!("the broker neither answered nor closed within {WAIT:?}"),
    }
}

/// Connects over an upgraded connection with the CONNECT split across two binary frames
/// [MQTT-6.0.0-2] and returns the CONNACK's reason, read from a binary frame [MQTT-6.0.0-1].
async fn mqtt_connect(client: &mut Client, id: &str) -> ReasonCode {
    let mut bytes = BytesMut::new();
    let connect = Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, id)));
    codec::encode(&connect, ProtocolVersion::V5, &mut bytes).expect("encodes");
    let tail = bytes.split_off(5);
    for part in [bytes, tail] {
        client
            .send(Message::Binary(part.freeze()))
            .await
            .expect("send a CONNECT frame");
    }
    match next(client).await {
        Some(Message::Binary(bytes)) => {
            let mut bytes = BytesMut::from(&bytes[..]);
            match codec::decode(&mut bytes, ProtocolVersion::V5, u32::MAX) {
                Ok(Some(Packet::ConnAck(connack))) => connack.reason,
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }
        other => panic!("expected a binary frame with CONNACK, got {other:?}"),
    }
}

/// Asserts the broker still upgrades a good request and serves MQTT over it.
async fn assert_still_serving(addr: SocketAddr) {
    let (mut client, _) = upgrade(addr, "/mqtt", Some("mqtt"))
        .await
        .expect("a good request is upgraded");
    assert_eq!(
        mqtt_connect(&mut client, "still-serving").await,
        ReasonCode::Success
    );
}

/// [MQTT-6.0.0-4]: the broker selects "mqtt"; MQTT then runs over binary frames.
#[tokio::test]
async fn the_broker_selects_mqtt_and_serves_mqtt_over_binary_frames() {
    let broker = ws_broker().await;
    let (mut client, response) = upgrade(broker.addr, "/mqtt", Some("mqttv3.1, mqtt"))
        .await
        .expect("upgraded");
    let chosen = response.headers().get("Sec-WebSocket-Protocol");
    assert_eq!(chosen.and_then(|value| value.to_str().ok()), Some("mqtt"));
    assert_eq!(
        mqtt_connect(&mut client, "binary").await,
        ReasonCode::Success
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_request_for_another_path_is_refused_with_404() {
    let broker = ws_broker().await;
    let outcome = upgrade(broker.addr, "/other", Some("mqtt")).await;
    assert_eq!(refused_with(outcome), StatusCode::NOT_FOUND);
    assert_still_serving(broker.addr).await;
    broker.shutdown().await;
}

/// [MQTT-6.0.0-3]: a client must offer "mqtt"; a request offering none, or only others, is
/// refused with 400.
#[tokio::test]
async fn a_request_without_the_mqtt_subprotocol_is_refused_with_400() {
    let broker = ws_broker().await;
    for offer in [None, Some("chat")] {
        let outcome = upgrade(broker.addr, "/mqtt", offer).await;
        assert_eq!(
            refused_with(outcome),
            StatusCode::BAD_REQUEST,
            "offer {offer:?}"
        );
    }
    assert_still_serving(broker.addr).await;
    broker.shutdown().await;
}

/// [MQTT-6.0.0-1]: a text frame closes the network connection, before CONNECT and after.
#[tokio::test]
async fn a_text_frame_closes_the_connection() {
    let broker = ws_broker().await;
    for connected in [false, true] {
        let (mut client, _) = upgrade(broker.addr, "/mqtt", Some("mqtt"))
            .await
            .expect("upgraded");
        if connected {
            assert_eq!(
                mqtt_connect(&mut client, "texter").await,
                ReasonCode::Success
            );
        }
        client
            .send(Message::text("hello"))
            .await
            .expect("send a text frame");
        // What comes before the end: at most a DISCONNECT and the close frame.
        loop {
            match next(&mut client).await {
                None => break,
                Some(Message::Close(_) | Message::Binary(_)) => {}
                Some(other) => panic!("after a text frame the broker sent {other:?}"),
            }
        }
    }
    assert_still_serving(broker.addr).await;
    broker.shutdown().await;
}

/// Writes `request` on a new socket and reads what the broker answers until it closes.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(addr).await.expect("TCP connect");
    socket.write_all(request).await.expect("send the request");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, socket.read_to_end(&mut answer))
        .await
        .expect("the broker closes within the wait")
        .expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A plain HTTP GET (a browser opening the URL) is not upgraded: the connection is closed
/// without a 101.
#[tokio::test]
async fn a_plain_http_get_is_refused() {
    let broker = ws_broker().await;
    let answer = raw_exchange(broker.addr, b"GET /mqtt HTTP/1.1\r\nHost: gateway\r\n\r\n").await;
    assert!(!answer.contains(" 101 "), "{answer}");
    // Not HTTP at all: MQTT sent to a WebSocket listener.
    let mut bytes = BytesMut::new();
    let connect = Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "lost")));
    codec::encode(&connect, ProtocolVersion::V5, &mut bytes).expect("encodes");
    let answer = raw_exchange(broker.addr, &bytes).await;
    assert!(answer.is_empty(), "{answer}");
    assert_still_serving(broker.addr).await;
    broker.shutdown().await;
}

/// A socket that sends half a request and waits is closed at the connect deadline, which
/// covers the upgrade.
#[tokio::test]
async fn a_request_never_finished_is_closed_at_the_connect_deadline() {
    let broker = start_broker_with(|config| {
        config.listeners = vec![ws_listener()];
        config.limits.connect_timeout = 1;
    })
    .await;
    let mut socket = TcpStream::connect(broker.addr).await.expect("TCP connect");
    socket
        .write_all(b"GET /mqtt HTTP/1.1\r\nHost: gate")
        .await
        .expect("send half a request");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, socket.read_to_end(&mut answer))
        .await
        .expect("closed within the wait, long before the 10 s default");
    assert!(read.is_ok() && answer.is_empty(), "{read:?} {answer:?}");
    broker.shutdown().await;
}

/// The real binary with a `kind = "ws"` listener from its file logs each refusal with the
/// client's address and the reason, and serves on.
#[tokio::test]
async fn cairn_serve_logs_a_refused_upgrade_with_the_client_and_the_reason() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("cairn.toml");
    let config = format!(
        "data_dir = {:?}\nsys_interval = 0\n[[listeners]]\nbind = \"127.0.0.1:0\"\nkind = \"ws\"\n",
        dir.path().join("data")
    );
    std::fs::write(&file, config).expect("write the configuration");
    let mut serving =
        ServeProcess::spawn(cairn(&["serve", "--config", &file.display().to_string()])).await;
    let stream = TcpStream::connect(serving.addr).await.expect("TCP connect");
    let client = stream
        .local_addr()
        .expect("the client's address")
        .to_string();
    let request = format!("ws://{}/mqtt", serving.addr)
        .into_client_request()
        .expect("a request");
    let outcome = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("answered within the wait");
    assert_eq!(refused_with(outcome), StatusCode::BAD_REQUEST);
    serving
        .wait_for_log_line("naming the client and [MQTT-6.0.0-3]", |line| {
            line.contains("WebSocket upgrade refused")
                && line.contains(&client)
                && line.contains("[MQTT-6.0.0-3]")
        })
        .await;
    assert_still_serving(serving.addr).await;
    serving.terminate().await;
}
