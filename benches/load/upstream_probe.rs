//! bridge-window: the tool plays the upstream broker itself, to see whether a gateway's bridge
//! keeps to the Receive Maximum the upstream announces while it sends its backlog
//! [MQTT-3.3.4-7] (a server that checks it, as HiveMQ does, disconnects a bridge that does not
//! with 0x93, Receive Maximum exceeded).
//!
//! It listens on --upstream, accepts the bridge's connection, answers CONNECT with an MQTT 5.0
//! CONNACK (Session Present 0, Receive Maximum --receive-maximum), answers PINGREQ, and
//! acknowledges the QoS 1 PUBLISHes it receives in batches, [`HOLD`] after the first
//! unacknowledged one arrived (a server a WAN round trip away); anything else (a SUBSCRIBE) goes
//! unanswered: the bench's bridges carry `out` rules only. Reports how many PUBLISHes it
//! received (repeats included) and the most it held unacknowledged at once, a lower bound of
//! what the bridge had in flight; runs until --count have arrived and [`QUIET`] passed without
//! more.

use std::time::Duration;

use bytes::BytesMut;
use cairn::codec::{
    decode, encode, ConnAck, Packet, Properties, ProtocolVersion, PubResponse, QoS, ReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::args::Args;
use crate::connection::listen;
use crate::error::LoadError;
use crate::scenarios::Summary;

/// How long PUBACKs are held after the first unacknowledged PUBLISH arrived.
const HOLD: Duration = Duration::from_millis(50);

/// Silence after the last expected PUBLISH before the count is final (a bridge that sends more
/// than the window would have sent it by then).
const QUIET: Duration = Duration::from_millis(500);

/// How the probe names itself in errors.
const WHO: &str = "bridge-window upstream";

/// Largest packet accepted from the bridge.
const MAX_PACKET: u32 = 1024 * 1024;

/// What the probe saw.
#[derive(Debug, Default)]
struct Seen {
    received: u64,
    most_unacknowledged: usize,
}

pub async fn bridge_window(args: &Args) -> Result<Summary, LoadError> {
    let scenario = "bridge-window";
    let address = args
        .upstream
        .as_deref()
        .ok_or(LoadError::MissingUpstream { scenario })?;
    let count = args.count.ok_or(LoadError::MissingCount { scenario })?;
    let expected = count * u64::from(args.publishers);
    let listener = listen(address).await?;
    let wait = args.drain_timeout;
    let (stream, _) = timeout(wait, listener.accept())
        .await
        .map_err(|_| timed_out("a bridge connection", wait))?
        .map_err(io_error)?;
    stream.set_nodelay(true).map_err(io_error)?;
    let seen = timeout(wait, serve(stream, args.receive_maximum, expected))
        .await
        .map_err(|_| timed_out("the whole backlog", wait))??;
    let mut problems = Vec::new();
    if seen.received < expected {
        problems.push(format!("{} of {expected} messages arrived", seen.received));
    }
    Ok(Summary {
        fields: vec![
            ("expected", expected.to_string()),
            ("received", seen.received.to_string()),
            ("receive_maximum", args.receive_maximum.to_string()),
            ("most_unacknowledged", seen.most_unacknowledged.to_string()),
        ],
        problems,
    })
}

/// Serves the bridge's connection until `expected` PUBLISHes arrived and it fell quiet.
async fn serve(
    mut stream: TcpStream,
    receive_maximum: u16,
    expected: u64,
) -> Result<Seen, LoadError> {
    let mut inbound = BytesMut::with_capacity(64 * 1024);
    let mut outbound = BytesMut::new();
    let mut unacknowledged: Vec<u16> = Vec::new();
    let mut held_since: Option<Instant> = None;
    let mut seen = Seen::default();
    loop {
        let deadline = match held_since {
            Some(since) => since + HOLD,
            None if seen.received >= expected => Instant::now() + QUIET,
            None => Instant::now() + Duration::from_secs(3600),
        };
        let read = tokio::select! {
            read = stream.read_buf(&mut inbound) => Some(read),
            () = tokio::time::sleep_until(deadline) => None,
        };
        match read {
            Some(Ok(0)) => return Ok(seen),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(io_error(error)),
            None if held_since.is_some() => {
                for packet_id in unacknowledged.drain(..) {
                    let ack = Packet::PubAck(PubResponse::success(packet_id));
                    queue(&ack, &mut outbound)?;
                }
                held_since = None;
            }
            None => return Ok(seen),
        }
        while let Some(packet) = next_packet(&mut inbound)? {
            match packet {
                Packet::Connect(_) => {
                    let properties = Properties {
                        receive_maximum: Some(receive_maximum),
                        ..Properties::default()
                    };
                    let connack = Packet::ConnAck(ConnAck {
                        session_present: false,
                        reason: ReasonCode::Success,
                        properties,
                    });
                    queue(&connack, &mut outbound)?;
                }
                Packet::Publish(publish) if publish.qos == QoS::AtLeastOnce => {
                    seen.received += 1;
                    unacknowledged.extend(publish.packet_id);
                    seen.most_unacknowledged = seen.most_unacknowledged.max(unacknowledged.len());
                    held_since.get_or_insert_with(Instant::now);
                }
                Packet::PingReq => {
                    queue(&Packet::PingResp, &mut outbound)?;
                }
                Packet::Disconnect(_) => return Ok(seen),
                _ => {}
            }
        }
        stream.write_all(&outbound).await.map_err(io_error)?;
        outbound.clear();
    }
}

/// The next whole packet in `inbound`, taken out of it.
fn next_packet(inbound: &mut BytesMut) -> Result<Option<Packet>, LoadError> {
    decode(inbound, ProtocolVersion::V5, MAX_PACKET).map_err(|source| LoadError::Decode {
        who: WHO.into(),
        source,
    })
}

/// Encodes `packet` for the next write.
fn queue(packet: &Packet, outbound: &mut BytesMut) -> Result<(), LoadError> {
    encode(packet, ProtocolVersion::V5, outbound).map_err(|source| LoadError::Encode {
        who: WHO.into(),
        packet: packet.name(),
        source,
    })
}

fn io_error(source: std::io::Error) -> LoadError {
    LoadError::Io {
        who: WHO.into(),
        source,
    }
}

fn timed_out(awaited: &'static str, timeout: Duration) -> LoadError {
    LoadError::Timeout {
        who: WHO.into(),
        awaited,
        timeout,
    }
}
