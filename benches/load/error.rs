//! Everything that can stop a load run, each message naming the client and what went wrong.
//!
//! `who` is a client's label (`publisher 3`, `subscriber 0`, `idle connection 17`).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use cairn::codec::{DecodeError, EncodeError, QoS, ReasonCode};

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("--tls-ca: {0}")]
    Tls(String),
    #[error("{who}: cannot connect to {broker}: {source}")]
    Connect {
        who: String,
        broker: String,
        source: io::Error,
    },

    #[error("{who}: no {awaited} from the broker within {timeout:?}")]
    Timeout {
        who: String,
        awaited: &'static str,
        timeout: Duration,
    },

    #[error("{who}: broker refused the connection with reason {reason:?}")]
    Refused { who: String, reason: ReasonCode },

    #[error("{who}: broker supports QoS up to {maximum}, the run needs {needed:?}")]
    QosUnsupported {
        who: String,
        maximum: u8,
        needed: QoS,
    },

    #[error(
        "{who}: broker answered SUBSCRIBE to `{filter}` with {reason:?} (asked for {asked:?})"
    )]
    SubscriptionRefused {
        who: String,
        filter: String,
        reason: ReasonCode,
        asked: QoS,
    },

    #[error("{who}: broker closed the connection")]
    Closed { who: String },

    #[error("{who}: socket error: {source}")]
    Io { who: String, source: io::Error },

    #[error("{who}: undecodable packet from the broker: {source}")]
    Decode { who: String, source: DecodeError },

    #[error("{who}: cannot encode {packet}: {source}")]
    Encode {
        who: String,
        packet: &'static str,
        source: EncodeError,
    },

    #[error("{who}: unexpected {packet} from the broker while {state}")]
    UnexpectedPacket {
        who: String,
        packet: &'static str,
        state: &'static str,
    },

    #[error("{who}: {packet} for packet id {packet_id}, which is not awaiting it")]
    UnknownPacketId {
        who: String,
        packet: &'static str,
        packet_id: u16,
    },

    #[error("{who}: {packet} for packet id {packet_id} carries failure reason {reason:?}")]
    AckFailed {
        who: String,
        packet: &'static str,
        packet_id: u16,
        reason: ReasonCode,
    },

    #[error("{who}: PUBLISH on `{topic}` carries no load-tool stamp ({len} bytes)")]
    ForeignMessage {
        who: String,
        topic: String,
        len: usize,
    },

    #[error("{who}: message stamped by publisher {publisher}, but the run has {publishers}")]
    UnknownPublisher {
        who: String,
        publisher: u32,
        publishers: usize,
    },

    #[error(
        "{who}: {inflight} PUBLISHes still unacknowledged {timeout:?} after publishing stopped"
    )]
    Unacknowledged {
        who: String,
        inflight: usize,
        timeout: Duration,
    },

    #[error("{scenario} needs --broker-pid to read the broker's memory")]
    MissingBrokerPid { scenario: &'static str },

    #[error("cannot read {field} from {path}: {reason}")]
    BrokerStat {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },

    #[error("{scenario} needs --upstream, the broker the gateway bridges to")]
    MissingUpstream { scenario: &'static str },

    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: io::Error },

    #[error("{scenario} needs --count, the messages each publisher of the fill sent")]
    MissingCount { scenario: &'static str },

    #[error("cannot write the ready file {path}: {source}")]
    ReadyFile { path: PathBuf, source: io::Error },

    #[error("{scenario} needs --qos 1 or 2: only acknowledged messages are durable")]
    QosNotDurable { scenario: &'static str },

    #[error(
        "{who}: broker answered Session Present 0 on resuming: the persistent session is gone"
    )]
    SessionLost { who: String },

    #[error("$SYS value {topic} = `{value}` is not a number")]
    SysValue { topic: String, value: String },

    #[error("a load task failed to run to completion: {0}")]
    Task(#[from] tokio::task::JoinError),

    #[error("a {0} task ended before it was told to stop")]
    EndedEarly(&'static str),

    #[error("{role}s did not finish within {timeout:?} of being told to stop")]
    StuckStopping {
        role: &'static str,
        timeout: Duration,
    },

    #[error("cannot start the tokio runtime: {0}")]
    Runtime(io::Error),

    #[error("the scenario's task failed: {0}")]
    Panicked(tokio::task::JoinError),
}
