//! MQTT over WebSockets (RFC 6455; MQTT 5.0 and 3.1.1 section 6) for `ws` and `wss`
//! listeners: the server side of the HTTP upgrade ([`accept`]: the listener's path, the `mqtt`
//! subprotocol, bounded frames) and [`WebSocket`], which carries MQTT's byte stream in binary
//! frames so that the engine serves it as it serves a TCP or TLS stream.
//!
//! It owns no socket and never runs TLS or a timer: the accept loop hands it a stream (after
//! the TLS handshake for `wss`) and holds the upgrade to the connect deadline. It never decodes
//! MQTT: packets may span frames and frames may hold several packets [MQTT-6.0.0-2].

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::header::{
    CONTENT_LENGTH, CONTENT_TYPE, SEC_WEBSOCKET_PROTOCOL,
};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// The subprotocol of MQTT 3.1.1 and 5.0: a client offers it [MQTT-6.0.0-3] and the server
/// selects it [MQTT-6.0.0-4].
pub const MQTT_SUBPROTOCOL: &str = "mqtt";
/// The name MQTT 3.1 clients (and older libraries) offer instead; selected only when `mqtt` is
/// not offered, as Mosquitto does.
pub const MQTT_V31_SUBPROTOCOL: &str = "mqttv3.1";

/// Room in a frame beyond the largest packet, for small packets that share its frame.
const FRAME_HEADROOM: usize = 64 * 1024;
/// The read buffer tungstenite keeps per connection. Its default (128 KiB) is for throughput;
/// a broker keeps many mostly idle connections.
const READ_BUFFER: usize = 4 * 1024;
/// The most of a client's path or subprotocol list a log line repeats.
const LOGGED_CHARS: usize = 100;

/// What a WebSocket listener's upgrades need: its path and the largest frame it takes. Cloned
/// into each connection (one pointer); [`WebSocketSettings::set_max_packet_size`] changes the
/// frame limit for upgrades from then on (a reload).
#[derive(Debug, Clone)]
pub struct WebSocketSettings(Arc<Settings>);

#[derive(Debug)]
struct Settings {
    /// The only path a request may ask for, such as `/mqtt`.
    path: String,
    /// The largest frame and message taken from a client: `limits.max_packet_size` plus
    /// [`FRAME_HEADROOM`]. A larger one ends the connection; the engine's own limit still
    /// applies to each packet.
    max_frame: AtomicUsize,
}

impl WebSocketSettings {
    /// Upgrades of requests for `path`, with frames bounded by `max_packet_size`.
    pub fn new(path: &str, max_packet_size: u32) -> WebSocketSettings {
        WebSocketSettings(Arc::new(Settings {
            path: path.to_string(),
            max_frame: AtomicUsize::new(frame_limit(max_packet_size)),
        }))
    }

    /// Bounds the frames of connections upgraded from now on by `max_packet_size`.
    pub fn set_max_packet_size(&self, max_packet_size: u32) {
        self.0
            .max_frame
            .store(frame_limit(max_packet_size), Ordering::Relaxed);
    }

    /// The path requests must ask for.
    pub fn path(&self) -> &str {
        &self.0.path
    }

    fn config(&self) -> WebSocketConfig {
        let max_frame = self.0.max_frame.load(Ordering::Relaxed);
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            // Written at once: `Framed` already gathers packets into one write per flush.
            .write_buffer_size(0)
            .max_frame_size(Some(max_frame))
            .max_message_size(Some(max_frame))
    }

    /// The response to an upgrade request: `response` with the chosen subprotocol, or the
    /// refusal (404 for another path, 400 without an MQTT subprotocol).
    fn answer(&self, request: &Request, mut response: Response) -> Result<Response, UpgradeError> {
        let requested = request.uri().path();
        if requested != self.0.path {
            return Err(UpgradeError::WrongPath {
                requested: shortened(requested),
                served: self.0.path.clone(),
            });
        }
        let chosen = [MQTT_SUBPROTOCOL, MQTT_V31_SUBPROTOCOL]
            .into_iter()
            .find(|name| offered_subprotocols(request).any(|offered| offered == *name));
        let Some(chosen) = chosen else {
            let offered: Vec<&str> = offered_subprotocols(request).collect();
            let offered = match offered.is_empty() {
                true => "none".to_string(),
                false => format!("{:?}", shortened(&offered.join(", "))),
            };
            return Err(UpgradeError::NoMqttSubprotocol { offered });
        };
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(chosen));
        Ok(response)
    }
}

fn frame_limit(max_packet_size: u32) -> usize {
    usize::try_from(max_packet_size)
        .unwrap_or(usize::MAX)
        .saturating_add(FRAME_HEADROOM)
}

/// The subprotocols a request offers, from every `Sec-WebSocket-Protocol` header.
fn offered_subprotocols(request: &Request) -> impl Iterator<Item = &str> {
    request
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

/// At most [`LOGGED_CHARS`] of what a client sent, for a log line.
fn shortened(text: &str) -> String {
    text.chars().take(LOGGED_CHARS).collect()
}

/// Why a connection was not upgraded.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The request asked for another path; answered with HTTP 404.
    #[error("HTTP 404: the request is for {requested:?}, the listener's path is {served:?}")]
    WrongPath { requested: String, served: String },
    /// The request offered no MQTT subprotocol (`offered` is what it offered, quoted, or
    /// "none"); answered with HTTP 400.
    #[error(
        "HTTP 400: the request offers no MQTT subprotocol (offered: {offered}); a client \
         must offer \"mqtt\" [MQTT-6.0.0-3]"
    )]
    NoMqttSubprotocol { offered: String },
    /// Not a WebSocket upgrade request (a plain HTTP request, a malformed or oversized one),
    /// or the connection failed during the upgrade; closed without an answer.
    #[error("not a WebSocket upgrade: {0}")]
    Handshake(#[source] tungstenite::Error),
}

impl UpgradeError {
    /// The HTTP answer to a refused request.
    fn response(&self) -> ErrorResponse {
        let (status, body) = match self {
            UpgradeError::WrongPath { .. } => (StatusCode::NOT_FOUND, "no MQTT at this path\n"),
            UpgradeError::NoMqttSubprotocol { .. } => (
                StatusCode::BAD_REQUEST,
                "offer the WebSocket subprotocol \"mqtt\"\n",
            ),
            UpgradeError::Handshake(_) => (StatusCode::BAD_REQUEST, "bad request\n"),
        };
        let mut response = ErrorResponse::new(Some(body.to_string()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        response
    }
}

/// Reads the client's upgrade request from `stream` and answers it: `101 Switching Protocols`
/// with the `mqtt` subprotocol [MQTT-6.0.0-4] (`mqttv3.1` when only that is offered), or a
/// refusal. The request is bounded by tungstenite (64 KiB, 124 headers); the caller bounds the
/// time.
pub async fn accept<S>(
    stream: S,
    settings: &WebSocketSettings,
) -> Result<WebSocket<S>, UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut refused = None;
    #[allow(clippy::result_large_err)] // the signature of tungstenite's `Callback`
    let check = |request: &Request, response: Response| {
        settings.answer(request, response).map_err(|refusal| {
            let answer = refusal.response();
            refused = Some(refusal);
            answer
        })
    };
    let upgraded =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(settings.config()))
            .await;
    match upgraded {
        Ok(socket) => Ok(WebSocket::new(socket)),
        Err(error) => Err(refused.unwrap_or(UpgradeError::Handshake(error))),
    }
}

/// An upgraded connection as a byte stream: what the client sends in binary frames is read
/// in order, whatever the frame boundaries [MQTT-6.0.0-2]; each write goes out as one binary
/// frame [MQTT-6.0.0-1]. A text frame is an error that ends the connection [MQTT-6.0.0-1].
/// Pings are answered by tungstenite; the client's close frame is answered and ends the
/// stream; shutdown sends a close frame, then shuts the underlying stream down.
#[derive(Debug)]
pub struct WebSocket<S> {
    socket: WebSocketStream<S>,
    /// What is left to read of the last binary message.
    reading: Bytes,
    /// Whether shutdown has sent the close frame (the underlying stream's shutdown follows).
    close_sent: bool,
}

impl<S> WebSocket<S> {
    /// Wraps a connection whose upgrade is done.
    pub fn new(socket: WebSocketStream<S>) -> WebSocket<S> {
        WebSocket {
            socket,
            reading: Bytes::new(),
            close_sent: false,
        }
    }
}

/// A tungstenite error as the engine's I/O errors: the socket's own errors as they are, the
/// rest (protocol violations, a frame too large) as invalid data.
fn io_error(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(error) => error,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WebSocket<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        while this.reading.is_empty() {
            match ready!(Pin::new(&mut this.socket).poll_next(cx)) {
                // The close handshake is done, or the connection ended: end of stream.
                None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => this.reading = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text frame: MQTT over WebSockets takes binary frames only \
                         [MQTT-6.0.0-1]",
                    )))
                }
                // tungstenite answers a ping (and a close frame, after which the stream
                // ends) while reading on; it never hands out a raw frame when reading.
                Some(Ok(
                    Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_),
                )) => {}
                Some(Err(error)) => return Poll::Ready(Err(io_error(error))),
            }
        }
        let len = this.reading.len().min(buf.remaining());
        buf.put_slice(&this.reading[..len]);
        this.reading.advance(len);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WebSocket<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut this.socket).poll_ready(cx)).map_err(io_error)?;
        let frame = Message::Binary(Bytes::copy_from_slice(buf));
        Pin::new(&mut this.socket)
            .start_send(frame)
            .map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket)
            .poll_flush(cx)
            .map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            ready!(Pin::new(&mut this.socket).poll_close(cx)).map_err(io_error)?;
            this.close_sent = true;
        }
        Pin::new(this.socket.get_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::handshake::client::Response as ClientResponse;
    use tokio_tungstenite::tungstenite::http::Request as HttpRequest;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;
    use crate::codec::{self, Packet, ProtocolVersion, PubResponse, Publish, QoS};
    use crate::transport::{Framed, ReadError};

    /// The largest packet the broker's side takes in these tests.
    const MAX_PACKET: u32 = 1024;
    /// How long a test waits for anything before failing.
    const WAIT: Duration = Duration::from_secs(10);

    type ClientSocket = WebSocketStream<DuplexStream>;

    /// An upgraded connection without the HTTP exchange: the broker's side framed as the
    /// engine frames it, and the client's side.
    async fn connected() -> (Framed<WebSocket<DuplexStream>>, ClientSocket) {
        let (server, client) = duplex(64 * 1024);
        let config = WebSocketSettings::new("/mqtt", MAX_PACKET).config();
        let server = WebSocketStream::from_raw_socket(server, Role::Server, Some(config)).await;
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let mut framed = Framed::new(WebSocket::new(server), MAX_PACKET);
        framed.version = ProtocolVersion::V311;
        (framed, client)
    }

    fn wire(packets: &[Packet]) -> Vec<u8> {
        let mut bytes = bytes::BytesMut::new();
        for packet in packets {
            codec::encode(packet, ProtocolVersion::V311, &mut bytes).expect("encodes");
        }
        bytes.to_vec()
    }

    fn publish(payload: &[u8]) -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "sensors/t".into(),
            packet_id: Some(7),
            properties: Default::default(),
            payload: Bytes::copy_from_slice(payload),
        })
    }

    async fn read(
        framed: &mut Framed<WebSocket<DuplexStream>>,
    ) -> Result<Option<Packet>, ReadError> {
        tokio::time::timeout(WAIT, framed.read_packet())
            .await
            .expect("the broker's side read within the wait")
    }

    async fn binary(client: &mut ClientSocket, bytes: &[u8]) {
        let frame = Message::Binary(Bytes::copy_from_slice(bytes));
        client.send(frame).await.expect("client sends a frame");
    }

    async fn next_message(client: &mut ClientSocket) -> Option<Message> {
        tokio::time::timeout(WAIT, client.next())
            .await
            .expect("the client read within the wait")
            .map(|message| message.expect("a valid frame"))
    }

    /// [MQTT-6.0.0-2]: a packet arrives in pieces across frames, and one frame ends a packet
    /// and starts the next.
    #[tokio::test]
    async fn packets_split_across_frames_are_read_whole() {
        let (mut framed, mut client) = connected().await;
        let publish = publish(b"21.5");
        let mut bytes = wire(&[publish.clone(), Packet::PingReq]);
        let tail = bytes.split_off(3);
        binary(&mut client, &bytes[..1]).await;
        binary(&mut client, &bytes[1..]).await;
        binary(&mut client, &tail[..tail.len() - 1]).await;
        binary(&mut client, &tail[tail.len() - 1..]).await;
        assert_eq!(read(&mut framed).await.expect("decodes"), Some(publish));
        assert_eq!(
            read(&mut framed).await.expect("decodes"),
            Some(Packet::PingReq)
        );
    }

    /// [MQTT-6.0.0-2]: one frame holds several packets.
    #[tokio::test]
    async fn several_packets_in_one_frame_are_all_read() {
        let (mut framed, mut client) = connected().await;
        let packets = [
            Packet::PingReq,
            publish(b"one"),
            Packet::PubAck(PubResponse::success(3)),
        ];
        binary(&mut client, &wire(&packets)).await;
        for packet in packets {
            assert_eq!(read(&mut framed).await.expect("decodes"), Some(packet));
        }
    }

    /// [MQTT-6.0.0-1]: a text frame is refused and the connection ends.
    #[tokio::test]
    async fn a_text_frame_is_an_error_that_ends_the_connection() {
        let (mut framed, mut client) = connected().await;
        client
            .send(Message::text("\u{c0}\u{0}"))
            .await
            .expect("client sends a text frame");
        match read(&mut framed).await {
            Err(ReadError::Io(error)) => {
                assert_eq!(error.kind(), io::ErrorKind::InvalidData);
                assert!(error.to_string().contains("[MQTT-6.0.0-1]"), "{error}");
            }
            other => panic!("a text frame was taken: {other:?}"),
        }
    }

    /// [MQTT-6.0.0-1]: what the broker writes goes out in binary frames.
    #[tokio::test]
    async fn packets_go_out_in_binary_frames() {
        let (mut framed, mut client) = connected().await;
        let packets = [Packet::PingResp, Packet::PubAck(PubResponse::success(9))];
        for packet in &packets {
            framed.queue(packet).expect("encodes");
        }
        framed.flush().await.expect("flush");
        match next_message(&mut client).await {
            Some(Message::Binary(bytes)) => assert_eq!(bytes, wire(&packets)),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// A client's ping is answered with a pong while the broker reads on.
    #[tokio::test]
    async fn a_ping_is_answered_while_reading() {
        let (mut framed, mut client) = connected().await;
        client
            .send(Message::Ping(Bytes::from_static(b"are you there")))
            .await
            .expect("client pings");
        binary(&mut client, &wire(&[Packet::PingReq])).await;
        assert_eq!(
            read(&mut framed).await.expect("decodes"),
            Some(Packet::PingReq)
        );
        match next_message(&mut client).await {
            Some(Message::Pong(payload)) => assert_eq!(&payload[..], b"are you there"),
            other => panic!("expected a pong, got {other:?}"),
        }
    }

    /// The client's close frame is answered and ends the stream cleanly, as a TCP end does.
    #[tokio::test]
    async fn the_client_s_close_frame_ends_the_stream() {
        let (mut framed, mut client) = connected().await;
        binary(&mut client, &wire(&[Packet::PingReq])).await;
        client.close(None).await.expect("client closes");
        assert_eq!(
            read(&mut framed).await.expect("decodes"),
            Some(Packet::PingReq)
        );
        assert_eq!(read(&mut framed).await.expect("a clean end"), None);
        assert!(
            matches!(
                next_message(&mut client).await,
                Some(Message::Close(_)) | None
            ),
            "the close frame is answered"
        );
    }

    /// Closing the broker's side sends a close frame, then ends the underlying stream.
    #[tokio::test]
    async fn closing_sends_a_close_frame() {
        let (mut framed, mut client) = connected().await;
        framed.close().await;
        assert!(matches!(
            next_message(&mut client).await,
            Some(Message::Close(_))
        ));
        assert!(next_message(&mut client).await.is_none(), "the stream ends");
    }

    /// A frame beyond the largest packet and its headroom ends the connection before it is
    /// held whole; one within is read.
    #[tokio::test]
    async fn a_frame_beyond_the_limit_ends_the_connection() {
        let (mut framed, mut client) = connected().await;
        let limit = frame_limit(MAX_PACKET);
        let pings = limit / 2;
        let within = wire(&[Packet::PingReq]).repeat(pings);
        let sender = tokio::spawn(async move {
            binary(&mut client, &within).await;
            let beyond = Message::Binary(vec![0xC0; limit + 1].into());
            // Fails once the broker's side is gone.
            let _ = client.send(beyond).await;
        });
        let mut read_pings = 0;
        let end = loop {
            match read(&mut framed).await {
                Ok(Some(Packet::PingReq)) => read_pings += 1,
                other => break other,
            }
        };
        assert_eq!(
            read_pings, pings,
            "the frame within the limit is read whole"
        );
        match end {
            Err(ReadError::Io(error)) => assert_eq!(error.kind(), io::ErrorKind::InvalidData),
            other => panic!("an oversized frame was taken: {other:?}"),
        }
        drop(framed);
        sender.await.expect("the client's task ends");
    }

    /// The client's side of an upgrade, and the broker's, run together.
    async fn upgrade(
        request: HttpRequest<()>,
    ) -> (
        Result<WebSocket<DuplexStream>, UpgradeError>,
        Result<ClientResponse, tungstenite::Error>,
    ) {
        let (server, client) = duplex(64 * 1024);
        let settings = WebSocketSettings::new("/mqtt", MAX_PACKET);
        let both = async {
            tokio::join!(
                accept(server, &settings),
                tokio_tungstenite::client_async(request, client)
            )
        };
        let (server, client) = tokio::time::timeout(WAIT, both)
            .await
            .expect("the upgrade ends within the wait");
        (server, client.map(|(_, response)| response))
    }

    fn request(url: &str, subprotocols: Option<&str>) -> HttpRequest<()> {
        let mut request = url.into_client_request().expect("a request");
        if let Some(subprotocols) = subprotocols {
            let value = HeaderValue::from_str(subprotocols).expect("a header value");
            request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, value);
        }
        request
    }

    /// The subprotocol the broker's side chooses for a request offering `offer`; both sides
    /// must be upgraded.
    async fn chosen_for(offer: &str) -> Option<String> {
        let (server, client) = upgrade(request("ws://localhost/mqtt", Some(offer))).await;
        assert!(server.is_ok(), "{server:?}");
        let response = client.expect("the client is upgraded");
        let chosen = response.headers().get(SEC_WEBSOCKET_PROTOCOL);
        chosen
            .and_then(|value| value.to_str().ok())
            .map(String::from)
    }

    /// [MQTT-6.0.0-4]: the server selects "mqtt" (offered as [MQTT-6.0.0-3] requires), even
    /// listed after another.
    #[tokio::test]
    async fn the_upgrade_selects_mqtt() {
        let chosen = chosen_for("mqttv3.1, mqtt").await;
        assert_eq!(chosen.as_deref(), Some(MQTT_SUBPROTOCOL));
    }

    /// An MQTT 3.1 client that offers only the old name gets it.
    #[tokio::test]
    async fn an_mqtt_3_1_client_gets_its_own_subprotocol() {
        let chosen = chosen_for("mqttv3.1").await;
        assert_eq!(chosen.as_deref(), Some(MQTT_V31_SUBPROTOCOL));
    }

    /// A reload's new `limits.max_packet_size` bounds the frames of upgrades from then on.
    #[test]
    fn the_frame_limit_follows_the_max_packet_size() {
        let settings = WebSocketSettings::new("/mqtt", 1000);
        assert_eq!(
            settings.config().max_frame_size,
            Some(1000 + FRAME_HEADROOM)
        );
        settings.clone().set_max_packet_size(5000);
        let config = settings.config();
        assert_eq!(config.max_frame_size, Some(5000 + FRAME_HEADROOM));
        assert_eq!(config.max_message_size, Some(5000 + FRAME_HEADROOM));
    }

    /// [MQTT-6.0.0-3]: a request that offers no MQTT subprotocol (none, or another one) is
    /// refused with HTTP 400.
    #[tokio::test]
    async fn a_request_without_an_mqtt_subprotocol_is_refused_with_400() {
        for (offer, logged) in [
            (None, "none"),
            (Some("chat, superchat"), "\"chat, superchat\""),
        ] {
            let (server, client) = upgrade(request("ws://localhost/mqtt", offer)).await;
            match server {
                Err(UpgradeError::NoMqttSubprotocol { offered }) => assert_eq!(offered, logged),
                other => panic!("offer {offer:?} was not refused: {other:?}"),
            }
            match client {
                Err(tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), StatusCode::BAD_REQUEST)
                }
                other => panic!("offer {offer:?}: expected HTTP 400, got {other:?}"),
            }
        }
    }

    /// A request for another path is refused with HTTP 404, whatever it offers.
    #[tokio::test]
    async fn a_request_for_another_path_is_refused_with_404() {
        let offer = request("ws://localhost/other?x=1", Some("mqtt"));
        let (server, client) = upgrade(offer).await;
        assert!(
            matches!(&server, Err(UpgradeError::WrongPath { requested, .. }) if requested == "/other"),
            "{server:?}"
        );
        match client {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::NOT_FOUND)
            }
            other => panic!("expected HTTP 404, got {other:?}"),
        }
    }

    /// Sends `request` raw to a broker's side upgrading, and returns its outcome and whatever
    /// the broker wrote back before closing.
    async fn raw_upgrade(
        request: Vec<u8>,
    ) -> (Result<WebSocket<DuplexStream>, UpgradeError>, Vec<u8>) {
        let (server, mut client) = duplex(16 * 1024);
        let settings = WebSocketSettings::new("/mqtt", MAX_PACKET);
        let talk = async move {
            // The broker may stop reading (and close) before everything is written.
            let _ = client.write_all(&request).await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            answer
        };
        let both = async { tokio::join!(accept(server, &settings), talk) };
        tokio::time::timeout(WAIT, both)
            .await
            .expect("the upgrade ends within the wait")
    }

    /// A plain HTTP GET (no upgrade) is refused: no 101, no WebSocket.
    #[tokio::test]
    async fn a_plain_http_request_is_refused() {
        let get = b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
        let (server, answer) = raw_upgrade(get).await;
        assert!(
            matches!(server, Err(UpgradeError::Handshake(_))),
            "{server:?}"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(!answer.contains(" 101 "), "{answer}");
    }

    /// A request that never ends within the bound is refused, not buffered on.
    #[tokio::test]
    async fn an_oversized_request_is_refused() {
        let mut get = b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n".to_vec();
        while get.len() < 100 * 1024 {
            get.extend_from_slice(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        let (server, _) = raw_upgrade(get).await;
        assert!(
            matches!(server, Err(UpgradeError::Handshake(_))),
            "{server:?}"
        );
    }
}
