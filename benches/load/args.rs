//! The load tool's command line: which scenario to run, against which broker, and how hard.
//!
//! Owns parsing and range checks only; the scenarios read the parsed [`Args`].

use std::path::PathBuf;
use std::time::Duration;

use cairn::codec::{ProtocolVersion, QoS};
use clap::{Parser, ValueEnum};

use crate::stamp::STAMP_LEN;

/// Drives any MQTT broker at host:port with one scenario and prints a `RESULT …` line.
#[derive(Debug, Clone, Parser)]
#[command(name = "load", about)]
pub struct Args {
    /// What to measure. Without it the tool checks its own bookkeeping and exits, which is
    /// what plain `cargo bench` and `cargo test --all-targets` (running every bench target
    /// without a scenario) do.
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,

    /// Broker address, host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub broker: String,

    /// The bridge scenarios: the upstream broker the gateway (--broker) bridges `bench/#` to,
    /// host:port.
    #[arg(long)]
    pub upstream: Option<String>,

    /// bridge-drain: a file to create once the local publisher has run for --warmup; the
    /// caller starts the upstream then.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,

    /// Name of the broker printed in the RESULT line (e.g. cairn, mosquitto).
    #[arg(long, default_value = "unnamed")]
    pub label: String,

    /// MQTT protocol version spoken by every client.
    #[arg(long = "mqtt-version", value_enum, default_value = "5")]
    pub mqtt_version: MqttVersion,

    /// QoS of publications and subscriptions.
    #[arg(long, value_enum, default_value = "0")]
    pub qos: QosLevel,

    /// Publishers in fan-in, durable-fan-in and bridge-fill (bridge-drain: how many the fill
    /// had).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub publishers: u32,

    /// Subscribers in fan-out; persistent sessions (each with its own topic and publisher) in
    /// durable-queues.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub subscribers: u32,

    /// Payload size in bytes (at least the 20-byte stamp of publisher, sequence and time).
    #[arg(long, default_value_t = 64, value_parser = parse_payload_len)]
    pub payload: usize,

    /// Seconds of warm-up before measuring.
    #[arg(long, default_value = "2", value_parser = parse_seconds)]
    pub warmup: Duration,

    /// Seconds to measure (ignored when --count is given).
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,

    /// Measure until this many messages were received instead of for --duration; in the
    /// durable scenarios, the messages each publisher sends (the whole run is measured).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Publish rate of the latency scenario (and of each durable publisher with --paced, and
    /// of the local publisher of bridge-drain and bridge-wear), messages per second.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,

    /// Durable scenarios: each publisher sends at --rate instead of as fast as its inflight
    /// window allows.
    #[arg(long)]
    pub paced: bool,

    /// Durable scenarios: also report the broker's store commits, bytes written, elided queue
    /// entries and queue length from Cairn's `$SYS/broker/…` topics (start Cairn with
    /// CAIRN_SYS_INTERVAL=1).
    #[arg(long)]
    pub store_stats: bool,

    /// durable-fan-in: the persistent subscriber stays connected and acknowledges every
    /// message while the publishers run, instead of being offline and draining afterwards.
    #[arg(long)]
    pub online: bool,

    /// PEM CA file: connect to --broker through TLS, verifying its certificate with this CA
    /// (the upstream of the bridge scenarios stays plain TCP).
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,

    /// The name the broker's certificate must carry with --tls-ca (a DNS name, sent as SNI, or
    /// an IP address); default: the host of --broker.
    #[arg(long)]
    pub tls_server_name: Option<String>,

    /// Unacknowledged QoS 1/2 PUBLISHes per publisher (capped by the broker's Receive Maximum).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,

    /// Messages sent but not yet received by the slowest subscriber before publishers wait,
    /// so that no broker queues without bound.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
    pub window: u64,

    /// Connections opened by idle-memory (default 1000) and reboot-storm (default 10000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: Option<u32>,

    /// Handshakes in progress at once in idle-memory (default 32) and reboot-storm (default
    /// 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,

    /// Process id of the broker whose VmRSS idle-memory and reboot-storm read (required for
    /// them); the
    /// durable scenarios then report its RSS and storage writes (/proc/<pid>/io) too.
    #[arg(long)]
    pub broker_pid: Option<u32>,

    /// Seconds idle-memory waits after the last CONNACK before reading the broker's RSS
    /// (idle connections send no PINGREQ: keep it well below --keep-alive).
    #[arg(long, default_value = "2", value_parser = parse_seconds)]
    pub settle: Duration,

    /// reboot-storm: after the RSS reading, a publisher sends one QoS 1 message to every
    /// client's own topic (a command to each sensor), each client receives and acknowledges
    /// it, and after --settle the RSS is read again (bytes_per_conn_commanded).
    #[arg(long)]
    pub command_each: bool,

    /// Keep Alive in seconds sent in every CONNECT (0 turns it off).
    #[arg(long, default_value_t = 60)]
    pub keep_alive: u16,

    /// Prefix of every client identifier (default `load-<pid>`, unique to the run). The same
    /// prefix in a later run reopens the sessions of an earlier one: reboot-storm then measures
    /// sensors resuming their sessions after a gateway restart.
    #[arg(long)]
    pub client_prefix: Option<String>,

    /// reboot-storm and the durable scenarios: a path on the broker's storage (its data
    /// directory): also count the bytes written meanwhile to the block device that holds it
    /// (device_written_per_client, device_bytes_per_msg), which includes what the file system
    /// writes for the broker (journal, inodes) and what any other process writes there.
    #[arg(long)]
    pub storage: Option<std::path::PathBuf>,

    /// reboot-storm: open the clients in a scrambled order of their identifiers rather than
    /// in sorted order. Real sensors' identifiers do not arrive sorted, and a store writes
    /// more pages when consecutive sessions are not neighbours in its tables.
    #[arg(long)]
    pub shuffle: bool,

    /// bridge-drain, bridge-wear: listen here and forward to --upstream with --uplink-delay
    /// each way (the gateway's bridge connects to this address instead of the upstream's).
    #[arg(long)]
    pub delay_proxy: Option<String>,

    /// With --delay-proxy: seconds each direction of the uplink is delayed.
    #[arg(long, default_value = "0", value_parser = parse_seconds)]
    pub uplink_delay: Duration,

    /// bridge-window: the Receive Maximum the tool announces as the upstream.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
    pub receive_maximum: u16,

    /// Seconds to wait for the last acknowledgements and deliveries after publishing stops.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub drain_timeout: Duration,

    /// Seconds to wait for a TCP connection and for each CONNACK and SUBACK.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    pub connect_timeout: Duration,

    /// Tokio worker threads of the load tool itself.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl Args {
    /// The codec's protocol version for `--mqtt-version`.
    pub fn protocol(&self) -> ProtocolVersion {
        match self.mqtt_version {
            MqttVersion::V311 => ProtocolVersion::V311,
            MqttVersion::V5 => ProtocolVersion::V5,
        }
    }

    /// `--connections`, or the default of `scenario`.
    pub fn connections(&self, scenario: Scenario) -> u32 {
        let default = match scenario {
            Scenario::RebootStorm => 10_000,
            _ => 1000,
        };
        self.connections.unwrap_or(default)
    }

    /// `--concurrency`, or the default of `scenario`.
    pub fn concurrency(&self, scenario: Scenario) -> u32 {
        let default = match scenario {
            Scenario::RebootStorm => 100,
            _ => 32,
        };
        self.concurrency.unwrap_or(default)
    }
}

/// The scenarios the tool can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// P publishers to one subscriber on `load/#`; messages/s received.
    FanIn,
    /// One publisher to S subscribers of one topic; deliveries/s.
    FanOut,
    /// One publisher at --rate to one subscriber; latency percentiles in µs.
    Latency,
    /// N idle connections; broker RSS growth per connection.
    IdleMemory,
    /// N clients, C at a time, each connecting with Clean Session 0 and subscribing once at
    /// --qos, then idle; clients per second through CONNACK and SUBACK, and broker RSS growth
    /// per connection.
    RebootStorm,
    /// P publishers to one offline persistent subscriber on `load/#`; acknowledged msg/s and
    /// PUBACK latency, then the subscriber returns and must receive every message (with
    /// --online it stays connected and receives them as they come).
    DurableFanIn,
    /// S offline persistent sessions, each on its own topic fed by its own publisher; the
    /// messages stay queued (for restart and recovery measurements).
    DurableQueues,
    /// Creates the persistent session on `bench/#` at --upstream that bridge-drain resumes.
    BridgeSession,
    /// P publishers send --count messages each to the gateway on `bench/<i>` (uplink down).
    BridgeFill,
    /// The upstream subscriber returns and receives the fill's backlog through the gateway's
    /// bridge; local PUBACK latency at --rate meanwhile.
    BridgeDrain,
    /// One publisher at --rate through the bridge to a subscriber online upstream; the
    /// gateway's storage writes per message (needs --broker-pid).
    BridgeWear,
    /// The tool is the upstream, on --upstream, announcing --receive-maximum: the most
    /// PUBLISHes the gateway's bridge leaves unacknowledged while it sends the fill's backlog.
    BridgeWindow,
}

impl Scenario {
    /// The name used on the command line and in RESULT lines.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FanIn => "fan-in",
            Scenario::FanOut => "fan-out",
            Scenario::Latency => "latency",
            Scenario::IdleMemory => "idle-memory",
            Scenario::RebootStorm => "reboot-storm",
            Scenario::DurableFanIn => "durable-fan-in",
            Scenario::DurableQueues => "durable-queues",
            Scenario::BridgeSession => "bridge-session",
            Scenario::BridgeFill => "bridge-fill",
            Scenario::BridgeDrain => "bridge-drain",
            Scenario::BridgeWear => "bridge-wear",
            Scenario::BridgeWindow => "bridge-window",
        }
    }
}

/// `--mqtt-version` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    #[value(name = "3.1.1")]
    V311,
    /// MQTT 5.0.
    #[value(name = "5")]
    V5,
}

impl MqttVersion {
    /// The name used on the command line and in RESULT lines.
    pub fn name(self) -> &'static str {
        match self {
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5",
        }
    }
}

/// `--qos` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QosLevel {
    /// At most once.
    #[value(name = "0")]
    Zero,
    /// At least once.
    #[value(name = "1")]
    One,
    /// Exactly once.
    #[value(name = "2")]
    Two,
}

impl QosLevel {
    /// The codec's QoS.
    pub fn qos(self) -> QoS {
        match self {
            QosLevel::Zero => QoS::AtMostOnce,
            QosLevel::One => QoS::AtLeastOnce,
            QosLevel::Two => QoS::ExactlyOnce,
        }
    }
}

/// Parses a non-negative number of seconds, fractions allowed.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("`{text}` seconds is negative or too large"))
}

/// Parses a payload size that leaves room for the stamp.
fn parse_payload_len(text: &str) -> Result<usize, String> {
    let len: usize = text
        .parse()
        .map_err(|_| format!("`{text}` is not a byte count"))?;
    if len < STAMP_LEN {
        return Err(format!(
            "payload of {len} bytes is below the {STAMP_LEN}-byte stamp"
        ));
    }
    Ok(len)
}
