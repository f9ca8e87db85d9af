//! One MQTT client connection over TCP or TLS: the socket, its read and write buffers, the
//! CONNECT and SUBSCRIBE handshakes, keep-alive pings, and one I/O step at a time for the
//! roles.
//!
//! Owns framing and the socket only; what to publish or acknowledge is the roles' business.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use cairn::codec::{
    decode, encode, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubResponse, Publish,
    QoS, ReasonCode, Subscribe, SubscriptionOptions,
};
use cairn::transport::client::{self, ByteStream, TlsClient};
use cairn::transport::TcpOrTls;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep_until, timeout, Instant};

use crate::error::LoadError;

/// Bytes the read buffer makes room for before each read.
const READ_CHUNK: usize = 64 * 1024;

/// Largest packet accepted from the broker.
const MAX_INBOUND_PACKET: u32 = 16 * 1024 * 1024;

/// Packet identifier of the single SUBSCRIBE each subscriber sends.
const SUBSCRIBE_PACKET_ID: u16 = 1;

/// How every client of a run connects.
#[derive(Clone)]
pub struct ClientOptions {
    /// Broker address, host:port.
    pub broker: String,
    pub version: ProtocolVersion,
    /// Keep Alive sent in CONNECT, seconds; 0 turns pings off.
    pub keep_alive: u16,
    /// Limit on the TCP connect (and TLS handshake) and on each handshake reply.
    pub handshake_timeout: Duration,
    /// TLS to the broker (`--tls-ca`); plain TCP without.
    pub tls: Option<TlsClient>,
    /// Plain TCP only: close with a reset (`SO_LINGER` 0) rather than leave a TIME_WAIT socket
    /// behind. A run that closes thousands of connections otherwise leaves the next run's
    /// connects searching past them for free ports: a 10,000-client storm right after another
    /// took about 10,500 clients per second instead of 16,000, the broker's CPU per client
    /// unchanged.
    pub reset_at_close: bool,
}

/// What the broker's CONNACK allows this client (MQTT 5.0 properties; 3.1.1 has no limits)
/// and whether it resumed a session.
#[derive(Debug, Clone, Copy)]
pub struct BrokerLimits {
    /// Receive Maximum: QoS 1/2 PUBLISHes the broker accepts unacknowledged.
    pub receive_maximum: u16,
    /// Maximum QoS the broker accepts.
    pub maximum_qos: u8,
    /// Session Present: the broker kept a session for this client identifier.
    pub session_present: bool,
}

/// Which session a CONNECT asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStart {
    /// Clean Start 1 (3.1.1 Clean Session 1): a new session that ends with the connection.
    Clean,
    /// Clean Start 0 (3.1.1 Clean Session 0): resume the client's session, or start one that
    /// outlives the connection; `expiry_secs` is the MQTT 5.0 Session Expiry Interval.
    Persistent { expiry_secs: u32 },
}

/// An open, CONNACKed MQTT connection.
pub struct MqttConnection {
    /// Label used in every error message.
    who: String,
    stream: TcpOrTls<Box<dyn ByteStream>>,
    version: ProtocolVersion,
    /// Bytes read but not yet decoded.
    inbound: BytesMut,
    /// Encoded packets not yet written.
    outbound: BytesMut,
    /// Silence after which a PINGREQ is due; `None` when Keep Alive is 0.
    ping_after: Option<Duration>,
    last_write: Instant,
}

/// What one [`MqttConnection::pump`] step did.
enum Step {
    Read(io::Result<usize>),
    Wrote(io::Result<usize>),
    Woken,
    PingDue,
}

impl MqttConnection {
    /// Opens a TCP connection, sends CONNECT (clean start) and waits for a successful CONNACK.
    pub async fn open(
        who: String,
        client_id: &str,
        options: &ClientOptions,
    ) -> Result<(MqttConnection, BrokerLimits), LoadError> {
        MqttConnection::open_session(who, client_id, options, SessionStart::Clean).await
    }

    /// Opens a TCP connection, sends CONNECT asking for `session` and waits for a successful
    /// CONNACK.
    pub async fn open_session(
        who: String,
        client_id: &str,
        options: &ClientOptions,
        session: SessionStart,
    ) -> Result<(MqttConnection, BrokerLimits), LoadError> {
        let stream = match &options.tls {
            None => TcpOrTls::Tcp(connect_tcp(&who, options).await?),
            Some(tls) => TcpOrTls::Tls(connect_tls(&who, options, tls).await?),
        };
        let mut connection = MqttConnection {
            who,
            stream,
            version: options.version,
            inbound: BytesMut::with_capacity(READ_CHUNK),
            outbound: BytesMut::with_capacity(READ_CHUNK),
            ping_after: (options.keep_alive > 0)
                .then(|| Duration::from_secs(u64::from(options.keep_alive)) / 2),
            last_write: Instant::now(),
        };
        let (clean_start, session_expiry_interval) = match session {
            SessionStart::Clean => (true, None),
            SessionStart::Persistent { expiry_secs } => (false, Some(expiry_secs)),
        };
        connection.queue(&Packet::Connect(Box::new(Connect {
            protocol: options.version,
            clean_start,
            bridge: false,
            keep_alive: options.keep_alive,
            client_id: client_id.to_owned(),
            properties: Properties {
                session_expiry_interval,
                ..Properties::default()
            },
            will: None,
            username: None,
            password: None,
        })))?;
        connection.flush().await?;
        let limits = connection.await_connack(options.handshake_timeout).await?;
        Ok((connection, limits))
    }

    /// Subscribes to `filter` at `qos` and waits for a SUBACK granting exactly that QoS.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: QoS,
        reply_timeout: Duration,
    ) -> Result<(), LoadError> {
        self.queue(&Packet::Subscribe(Subscribe {
            packet_id: SUBSCRIBE_PACKET_ID,
            properties: Properties::default(),
            filters: vec![(filter.to_owned(), SubscriptionOptions::with_qos(qos))],
        }))?;
        self.flush().await?;
        let packet = self.receive(reply_timeout, "SUBACK").await?;
        let Packet::SubAck(ack) = packet else {
            return Err(self.unexpected(&packet, "awaiting SUBACK"));
        };
        let granted = ack.reasons.first().copied();
        if ack.packet_id != SUBSCRIBE_PACKET_ID || granted != Some(ReasonCode::granted(qos)) {
            return Err(LoadError::SubscriptionRefused {
                who: self.who.clone(),
                filter: filter.to_owned(),
                reason: granted.unwrap_or(ReasonCode::UnspecifiedError),
                asked: qos,
            });
        }
        Ok(())
    }

    /// Queues a QoS 1 PUBLISH of `payload` to `topic` under `packet_id` (sent by the next
    /// flush).
    pub fn queue_publish(
        &mut self,
        topic: &str,
        payload: &'static [u8],
        packet_id: u16,
    ) -> Result<(), LoadError> {
        self.queue(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.to_owned(),
            packet_id: Some(packet_id),
            properties: Properties::default(),
            payload: bytes::Bytes::from_static(payload),
        }))
    }

    /// Waits for the PUBACK of `packet_id`.
    pub async fn await_puback(
        &mut self,
        packet_id: u16,
        reply_timeout: Duration,
    ) -> Result<(), LoadError> {
        match self.receive(reply_timeout, "PUBACK").await? {
            Packet::PubAck(ack) if ack.packet_id == packet_id => Ok(()),
            other => Err(self.unexpected(&other, "awaiting PUBACK")),
        }
    }

    /// Waits for one QoS 1 PUBLISH and acknowledges it.
    pub async fn acknowledge_next_publish(
        &mut self,
        reply_timeout: Duration,
    ) -> Result<(), LoadError> {
        let packet = self.receive(reply_timeout, "PUBLISH").await?;
        let Packet::Publish(Publish {
            packet_id: Some(packet_id),
            ..
        }) = packet
        else {
            return Err(self.unexpected(&packet, "awaiting a QoS 1 PUBLISH"));
        };
        self.queue(&Packet::PubAck(PubResponse::success(packet_id)))?;
        self.flush().await
    }

    /// The label errors of this connection carry.
    pub fn who(&self) -> &str {
        &self.who
    }

    /// Encodes `packet` at the end of the write buffer.
    pub fn queue(&mut self, packet: &Packet) -> Result<(), LoadError> {
        encode(packet, self.version, &mut self.outbound).map_err(|source| LoadError::Encode {
            who: self.who.clone(),
            packet: packet.name(),
            source,
        })
    }

    /// Bytes queued but not yet written.
    pub fn unsent_len(&self) -> usize {
        self.outbound.len()
    }

    /// Decodes the next whole packet already read, if any.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, LoadError> {
        decode(&mut self.inbound, self.version, MAX_INBOUND_PACKET).map_err(|source| {
            LoadError::Decode {
                who: self.who.clone(),
                source,
            }
        })
    }

    /// One I/O step: writes some queued bytes, reads some, or returns when `wake` completes,
    /// whichever comes first. With nothing queued for Keep Alive's half-period, it queues a
    /// PINGREQ.
    pub async fn pump(&mut self, wake: impl Future<Output = ()>) -> Result<(), LoadError> {
        self.inbound.reserve(READ_CHUNK);
        let ping_at = self.ping_after.map(|after| self.last_write + after);
        let io = IoStep {
            outbound: &self.outbound,
            inbound: &mut self.inbound,
            wake,
            ping_at,
        };
        let step = match &mut self.stream {
            TcpOrTls::Tcp(tcp) => {
                let (reader, writer) = tcp.split();
                io.run(reader, writer).await
            }
            TcpOrTls::Tls(tls) => {
                let (reader, writer) = tokio::io::split(tls);
                io.run(reader, writer).await
            }
        };
        self.apply(step)
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), LoadError> {
        self.stream
            .write_all(&self.outbound)
            .await
            .map_err(|source| io_error(&self.who, source))?;
        self.outbound.clear();
        self.last_write = Instant::now();
        Ok(())
    }

    /// Sends DISCONNECT (normal disconnection) and closes the socket.
    pub async fn disconnect(mut self) -> Result<(), LoadError> {
        self.queue(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))?;
        self.flush().await?;
        self.stream
            .shutdown()
            .await
            .map_err(|source| io_error(&self.who, source))
    }

    /// The error for a packet the broker should not have sent in `state`.
    pub fn unexpected(&self, packet: &Packet, state: &'static str) -> LoadError {
        LoadError::UnexpectedPacket {
            who: self.who.clone(),
            packet: packet.name(),
            state,
        }
    }

    /// Waits for CONNACK and turns a refusal into an error.
    async fn await_connack(&mut self, reply_timeout: Duration) -> Result<BrokerLimits, LoadError> {
        let packet = self.receive(reply_timeout, "CONNACK").await?;
        let Packet::ConnAck(ack) = packet else {
            return Err(self.unexpected(&packet, "awaiting CONNACK"));
        };
        if ack.reason != ReasonCode::Success {
            return Err(LoadError::Refused {
                who: self.who.clone(),
                reason: ack.reason,
            });
        }
        Ok(BrokerLimits {
            receive_maximum: ack.properties.receive_maximum.unwrap_or(u16::MAX),
            maximum_qos: ack.properties.maximum_qos.unwrap_or(2),
            session_present: ack.session_present,
        })
    }

    /// Reads until one whole packet is buffered, within `reply_timeout`.
    async fn receive(
        &mut self,
        reply_timeout: Duration,
        awaited: &'static str,
    ) -> Result<Packet, LoadError> {
        let deadline = Instant::now() + reply_timeout;
        loop {
            if let Some(packet) = self.next_packet()? {
                return Ok(packet);
            }
            self.inbound.reserve(READ_CHUNK);
            let read = timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.stream.read_buf(&mut self.inbound),
            )
            .await
            .map_err(|_| LoadError::Timeout {
                who: self.who.clone(),
                awaited,
                timeout: reply_timeout,
            })?;
            self.apply(Step::Read(read))?;
        }
    }

    /// Books the outcome of one I/O step.
    fn apply(&mut self, step: Step) -> Result<(), LoadError> {
        match step {
            Step::Read(Ok(0)) => Err(LoadError::Closed {
                who: self.who.clone(),
            }),
            Step::Read(Ok(_)) | Step::Woken => Ok(()),
            Step::Wrote(Ok(written)) => {
                self.outbound.advance(written);
                self.last_write = Instant::now();
                Ok(())
            }
            Step::Read(Err(source)) | Step::Wrote(Err(source)) => Err(io_error(&self.who, source)),
            Step::PingDue => self.queue(&Packet::PingReq),
        }
    }
}

/// A listening socket on `address`, for the tool's stand-ins for a broker (the delaying
/// proxy, the bridge-window upstream).
pub async fn listen(address: &str) -> Result<TcpListener, LoadError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| LoadError::Listen {
            address: address.to_string(),
            source,
        })
}

/// Opens the TCP connection with Nagle off (every client here cares about latency).
async fn connect_tcp(who: &str, options: &ClientOptions) -> Result<TcpStream, LoadError> {
    let connecting = TcpStream::connect(&options.broker);
    let stream = timeout(options.handshake_timeout, connecting)
        .await
        .map_err(|_| LoadError::Timeout {
            who: who.to_owned(),
            awaited: "TCP connection",
            timeout: options.handshake_timeout,
        })?
        .map_err(|source| LoadError::Connect {
            who: who.to_owned(),
            broker: options.broker.clone(),
            source,
        })?;
    stream
        .set_nodelay(true)
        .map_err(|source| io_error(who, source))?;
    if options.reset_at_close {
        stream
            .set_zero_linger()
            .map_err(|source| io_error(who, source))?;
    }
    Ok(stream)
}

/// What one [`MqttConnection::pump`] step waits on besides the socket.
struct IoStep<'a, W> {
    /// Bytes to write, if any.
    outbound: &'a [u8],
    /// Where bytes read go.
    inbound: &'a mut BytesMut,
    wake: W,
    /// When a ping is due, with nothing to write.
    ping_at: Option<Instant>,
}

impl<W: Future<Output = ()>> IoStep<'_, W> {
    /// Writes some of `outbound`, reads into `inbound`, or returns when `wake` completes or the
    /// ping is due, whichever comes first.
    async fn run(
        self,
        mut reader: impl AsyncRead + Unpin,
        mut writer: impl AsyncWrite + Unpin,
    ) -> Step {
        let idle = self.outbound.is_empty();
        tokio::select! {
            written = writer.write(self.outbound), if !idle => Step::Wrote(written),
            read = reader.read_buf(self.inbound) => Step::Read(read),
            () = self.wake => Step::Woken,
            () = sleep_until_some(self.ping_at), if idle => Step::PingDue,
        }
    }
}

/// Opens the connection through TLS (Nagle off, as [`connect_tcp`]).
async fn connect_tls(
    who: &str,
    options: &ClientOptions,
    tls: &TlsClient,
) -> Result<Box<dyn ByteStream>, LoadError> {
    client::connect(&options.broker, Some(tls), options.handshake_timeout)
        .await
        .map_err(|error| LoadError::Connect {
            who: who.to_owned(),
            broker: options.broker.clone(),
            source: io::Error::other(error),
        })
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn io_error(who: &str, source: io::Error) -> LoadError {
    LoadError::Io {
        who: who.to_owned(),
        source,
    }
}
