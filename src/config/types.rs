//! The typed settings and their built-in defaults. Serde reads them; `checks.rs` checks what
//! the types cannot say.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration of one broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the broker keeps its data (the redb database).
    pub data_dir: PathBuf,
    /// Users and their password hashes, in Mosquitto's format (`mosquitto_passwd`,
    /// `cairn passwd`); `None`: no passwords. Re-read on reload.
    pub password_file: Option<PathBuf>,
    /// Who may publish and subscribe to what, in Mosquitto's ACL format; `None`: everyone may
    /// do everything. Re-read on reload.
    pub acl_file: Option<PathBuf>,
    /// Listeners: any number of TCP, TLS and WebSocket sockets.
    pub listeners: Vec<ListenerConfig>,
    /// Resource limits.
    pub limits: Limits,
    /// Seconds between `$SYS/broker/…` updates; 0 turns them off.
    pub sys_interval: u64,
    /// Threads that serve connections; 0: automatic (see [`Config::worker_threads`]).
    pub worker_threads: u64,
    /// The durable store under `data_dir`.
    pub store: StoreConfig,
    /// Logging.
    pub log: LogConfig,
    /// Links to upstream brokers, `[[bridges]]`; none by default.
    pub bridges: Vec<BridgeConfig>,
    /// The Prometheus endpoint, `[metrics]`; off by default.
    pub metrics: Option<MetricsConfig>,
}

/// The Prometheus endpoint: `GET /metrics` over plain HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address and port to bind, e.g. `127.0.0.1:9883`.
    pub bind: SocketAddr,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port to bind, e.g. `127.0.0.1:1883` or `0.0.0.0:8883`.
    pub bind: SocketAddr,
    /// Plain TCP, TLS, or MQTT over WebSockets without or with TLS.
    #[serde(default)]
    pub kind: ListenerKind,
    /// TLS settings; required when `kind = "tls"` or `"wss"`, refused otherwise.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// How its clients prove who they are; `None`: [`AuthMode::Password`] when a password
    /// file is set, else [`AuthMode::Anonymous`] (see [`Config::listener_auth`]).
    #[serde(default)]
    pub auth: Option<AuthMode>,
    /// The URL path WebSocket clients connect to (`ws://host:port/mqtt`); only on `ws` and
    /// `wss` listeners, [`DEFAULT_WEBSOCKET_PATH`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// How the clients of a listener prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Anyone may connect. A client that sends a user name is checked against the password
    /// file when there is one (as Mosquitto does with `allow_anonymous true`).
    Anonymous,
    /// A user name and its password from the password file.
    Password,
    /// A client certificate verified against `client_ca`; its identity (the Common Name, or
    /// a Subject Alternative Name) is the user name.
    Certificate,
    /// A verified client certificate when the client presents one, else a password.
    PasswordOrCertificate,
}

impl AuthMode {
    /// Whether a password file must be configured for this mode.
    pub fn needs_passwords(self) -> bool {
        matches!(self, AuthMode::Password | AuthMode::PasswordOrCertificate)
    }

    /// Whether this mode identifies clients by their certificates.
    pub fn uses_certificates(self) -> bool {
        matches!(
            self,
            AuthMode::Certificate | AuthMode::PasswordOrCertificate
        )
    }
}

/// The URL path of a WebSocket listener without `path`: the one MQTT.js and most browser
/// clients use.
pub const DEFAULT_WEBSOCKET_PATH: &str = "/mqtt";

impl ListenerConfig {
    /// The URL path WebSocket clients connect to, or `None` when the listener does not speak
    /// WebSocket.
    pub fn websocket_path(&self) -> Option<&str> {
        self.kind
            .is_websocket()
            .then(|| self.path.as_deref().unwrap_or(DEFAULT_WEBSOCKET_PATH))
    }
}

/// The transport of a listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Plain TCP (MQTT's usual port 1883).
    #[default]
    Tcp,
    /// TLS 1.2 or 1.3 over TCP (MQTT's usual port 8883).
    Tls,
    /// MQTT over WebSockets, over plain TCP (browsers' `ws://`).
    Ws,
    /// MQTT over WebSockets over TLS (browsers' `wss://`), with the same TLS settings as `Tls`.
    Wss,
}

impl ListenerKind {
    /// The name the configuration uses (`kind = "wss"`).
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }

    /// Whether connections start with a TLS handshake (`tls` and `wss`).
    pub fn uses_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// Whether MQTT goes over WebSockets (`ws` and `wss`).
    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }
}

/// Certificates for a TLS listener (PEM files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle to verify client certificates; enables mTLS.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: whether a client certificate is required (when absent) or optional.
    /// Absent, not "required", so a listener that asks for certificates without saying whose
    /// CA checks them is refused rather than left open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// Which name of a verified client certificate is the client's identity (its user name)
    /// on listeners with `auth = "certificate"` or `"password_or_certificate"`.
    #[serde(default)]
    pub identity: CertificateIdentity,
}

/// Which name of a client certificate identifies the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateIdentity {
    /// The subject's Common Name.
    #[default]
    Cn,
    /// The first Subject Alternative Name that is a DNS name, an e-mail address or a URI.
    San,
}

/// Whether clients of a mTLS listener must present a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A client without a certificate signed by `client_ca` is refused during the handshake.
    #[default]
    Required,
    /// A client may connect without a certificate; one it presents must verify.
    Optional,
}

/// Resource limits, each with a sane default for a small gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Simultaneous client connections; more are refused (v5: CONNACK 0x89 Server busy).
    pub max_connections: usize,
    /// Seconds a new connection may take to complete CONNECT (TLS handshake included);
    /// a connection that has not by then is closed.
    pub connect_timeout: u64,
    /// Largest packet accepted from a client, in bytes (also announced as Maximum Packet Size).
    pub max_packet_size: u32,
    /// Inflight window per session: our Receive Maximum, and the cap on unacknowledged
    /// outgoing QoS 1/2 messages.
    pub max_inflight: u16,
    /// Messages queued per session while it is offline or its window is full.
    pub max_queued_messages: usize,
    /// Bytes (topic + payload) queued per session.
    pub max_queued_bytes: u64,
    /// Bytes queued in every session together: one budget for the whole broker.
    pub max_queued_bytes_total: u64,
    /// What happens to a message for a session whose queue is full.
    pub queue_full_policy: QueueFullPolicy,
    /// Queue QoS 0 messages for offline persistent sessions (like QoS 1 messages, but
    /// still delivered at most once).
    pub queue_qos0_offline: bool,
    /// Longest topic name or filter, in bytes.
    pub max_topic_length: usize,
    /// Most levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Largest Keep Alive granted, in seconds; a client asking for more (or 0) is given this
    /// as Server Keep Alive (v5). 0 means no maximum.
    pub max_keep_alive: u16,
    /// Largest Session Expiry Interval granted, in seconds.
    pub max_session_expiry: u32,
    /// Topic Alias Maximum announced to v5 clients (inbound aliases); 0 disables them.
    pub topic_alias_maximum: u16,
}

/// What a full queue does with one more message. Either way the loss is counted in
/// `$SYS/broker/messages/dropped` and logged once per burst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFullPolicy {
    /// Drop the oldest queued messages to make room: the newest readings survive an outage.
    #[default]
    DropOldest,
    /// Refuse the new message; a v5 publisher whose message reached no queue gets 0x97 Quota
    /// exceeded.
    RefuseNewest,
}

/// Settings of the durable store (group commit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// fsync every commit. `false` may lose acknowledged messages on a power cut: for
    /// benchmarks and disposable setups only.
    pub fsync: bool,
    /// Longest a group commit waits to gather more work, in milliseconds. Acks wait up to this
    /// much longer; commits (and SD-card writes) get fewer and fuller. The wait ends early once
    /// a commit holds 16 messages, sessions and subscriptions, so a busy broker is not slowed,
    /// and a commit a SUBACK or UNSUBACK waits for only waits for its work to pause.
    pub commit_window_ms: u64,
    /// Bytes of redb's page cache (half of it at most for a commit's dirty pages). It holds
    /// copies of pages the kernel's page cache holds too; more saves read syscalls, not disk.
    pub cache_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            fsync: true,
            commit_window_ms: 20,
            cache_bytes: crate::store::redb::DEFAULT_CACHE_BYTES,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `cairn=debug`.
    pub level: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./cairn-data"),
            password_file: None,
            acl_file: None,
            listeners: vec![ListenerConfig {
                bind: SocketAddr::from(([127, 0, 0, 1], 1883)),
                kind: ListenerKind::Tcp,
                tls: None,
                auth: None,
                path: None,
            }],
            limits: Limits::default(),
            sys_interval: 10,
            worker_threads: 0,
            store: StoreConfig::default(),
            log: LogConfig::default(),
            bridges: Vec::new(),
            metrics: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            connect_timeout: 10,
            max_packet_size: 1024 * 1024,
            max_inflight: 32,
            max_queued_messages: 10_000,
            max_queued_bytes: 16 * 1024 * 1024,
            max_queued_bytes_total: 256 * 1024 * 1024,
            queue_full_policy: QueueFullPolicy::DropOldest,
            queue_qos0_offline: false,
            max_topic_length: 65_535,
            max_topic_levels: 64,
            max_keep_alive: 0,
            max_session_expiry: u32::MAX,
            topic_alias_maximum: 16,
        }
    }
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            level: "info".to_string(),
        }
    }
}

/// One bridge to an upstream broker, `[[bridges]]`. Holds the path of the password file, never
/// the password, so printing it (`Debug`, `check-config`) shows no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Unique, 1 to 64 characters of `A-Z a-z 0-9 _ -`: it names the bridge's durable queue and
    /// its `$SYS/broker/bridge/<name>/` topics.
    pub name: String,
    /// `host:port` of the upstream broker, first the primary, then fallbacks. A host is a DNS
    /// name, an IPv4 address or an IPv6 address in brackets.
    pub addresses: Vec<String>,
    /// The MQTT version spoken upstream.
    #[serde(default)]
    pub protocol: BridgeProtocol,
    /// The client id upstream; none means `cairn-<hostname>-<name>` (see
    /// `BridgeConfig::client_id`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// The username upstream.
    #[serde(default)]
    pub username: Option<String>,
    /// A file whose first line is the password upstream; read when connecting, never logged.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Keep Alive asked for, seconds; a v5 Server Keep Alive wins.
    #[serde(default = "bridge_defaults::keep_alive")]
    pub keep_alive: u16,
    /// v5 Session Expiry Interval asked for, seconds; the CONNACK's value wins.
    #[serde(default = "bridge_defaults::session_expiry")]
    pub session_expiry: u32,
    /// Most unacknowledged QoS 1/2 messages upstream; the server's Receive Maximum wins when
    /// lower.
    #[serde(default = "bridge_defaults::max_inflight")]
    pub max_inflight: u16,
    /// Messages per second upstream; 0 means no limit.
    #[serde(default)]
    pub rate_limit: u32,
    /// Highest QoS sent upstream: for servers that announce nothing (3.1.1); a v5 server's
    /// Maximum QoS lowers it further.
    #[serde(default = "bridge_defaults::max_qos")]
    pub max_qos: u8,
    /// Largest packet sent upstream, in bytes: for servers that announce nothing (3.1.1); a
    /// v5 server's Maximum Packet Size lowers it further. A larger message is dropped and
    /// counted, never sent (a server would disconnect the bridge over it, again and again).
    #[serde(default = "bridge_defaults::max_packet_size")]
    pub max_packet_size: u32,
    /// Whether RETAIN is kept upstream; false clears it (for servers without retained
    /// messages that announce nothing).
    #[serde(default = "bridge_defaults::yes")]
    pub retain: bool,
    /// 3.1.1: announce a bridge with Mosquitto's bit (protocol level | 0x80), dropped when
    /// the server refuses it.
    #[serde(default = "bridge_defaults::yes")]
    pub try_private: bool,
    /// A v5 CONNECT refused with 0x84 (Unsupported Protocol Version) is retried as 3.1.1.
    #[serde(default = "bridge_defaults::yes")]
    pub fallback_311: bool,
    /// Seconds to wait for CONNACK, SUBACK, PINGRESP and acks before reconnecting; the dial,
    /// TLS handshake and CONNACK wait at most 1.5 × `keep_alive`.
    #[serde(default = "bridge_defaults::connect_timeout")]
    pub connect_timeout: u32,
    /// Reconnect backoff base, seconds.
    #[serde(default = "bridge_defaults::reconnect_min")]
    pub reconnect_min: u32,
    /// Reconnect backoff cap, seconds.
    #[serde(default = "bridge_defaults::reconnect_max")]
    pub reconnect_max: u32,
    /// Seconds connected after which the backoff starts again from `reconnect_min`.
    #[serde(default = "bridge_defaults::stable_after")]
    pub stable_after: u32,
    /// A topic upstream holding, retained, "connected" or "disconnected" (the Will).
    #[serde(default)]
    pub state_topic: Option<String>,
    /// TLS upstream; none means plain TCP.
    #[serde(default)]
    pub tls: Option<BridgeTls>,
    /// Bounds of the outbound queue.
    #[serde(default)]
    pub queue: BridgeQueue,
    /// The topic rules, at least one.
    #[serde(default)]
    pub topics: Vec<BridgeTopic>,
}

/// One topic rule of a bridge, `[[bridges.topics]]`: Mosquitto's `topic` line. The mapping
/// and its checks are `bridge::topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeTopic {
    /// An MQTT topic filter (wildcards allowed), or `""` to map the single topic
    /// `local_prefix` to `remote_prefix`.
    pub filter: String,
    /// Which way messages go.
    #[serde(default)]
    pub direction: Direction,
    /// The highest QoS used on the way: the QoS of the local subscription (`out`) or of the
    /// upstream subscription (`in`). At least once by default (Mosquitto's default is 0).
    #[serde(default = "bridge_defaults::topic_qos")]
    pub qos: u8,
    /// Put before the filter on this broker: local topic = `local_prefix` + T.
    #[serde(default)]
    pub local_prefix: String,
    /// Put before the filter upstream: remote topic = `remote_prefix` + T.
    #[serde(default)]
    pub remote_prefix: String,
}

/// Which way a bridge's topic rule carries messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From this broker upstream.
    #[default]
    Out,
    /// From upstream to this broker.
    In,
    /// Both ways.
    Both,
}

impl Direction {
    /// Whether local messages go upstream.
    pub fn carries_out(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }

    /// Whether upstream messages come down.
    pub fn carries_in(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }
}

/// The defaults of a bridge's settings, for serde.
mod bridge_defaults {
    pub fn keep_alive() -> u16 {
        60
    }
    pub fn session_expiry() -> u32 {
        604_800
    }
    /// Mosquitto's own default `max_inflight_messages`: a 3.1.1 server announces nothing,
    /// and Mosquitto refuses the 21st QoS 2 message in flight and closes the connection.
    pub fn max_inflight() -> u16 {
        20
    }
    pub fn max_qos() -> u8 {
        2
    }
    pub fn max_packet_size() -> u32 {
        268_435_460
    }
    pub fn yes() -> bool {
        true
    }
    pub fn connect_timeout() -> u32 {
        30
    }
    pub fn reconnect_min() -> u32 {
        1
    }
    pub fn reconnect_max() -> u32 {
        120
    }
    pub fn stable_after() -> u32 {
        60
    }
    pub fn topic_qos() -> u8 {
        1
    }
}

/// The MQTT version a bridge speaks upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BridgeProtocol {
    /// MQTT 5.0.
    #[default]
    #[serde(rename = "5")]
    V5,
    /// MQTT 3.1.1.
    #[serde(rename = "3.1.1")]
    V311,
}

/// TLS towards the upstream broker (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeTls {
    /// CA bundle the server's certificate must chain to; none means the system's trust store,
    /// `/etc/ssl/certs/ca-certificates.crt`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Client certificate chain, leaf first; together with `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key; together with `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name sent as SNI and verified in the server's certificate; none means the host of
    /// the address connected to.
    #[serde(default)]
    pub server_name: Option<String>,
    /// ALPN protocols offered, e.g. `x-amzn-mqtt-ca`.
    #[serde(default)]
    pub alpn: Vec<String>,
}

/// Memory a bridge's queue may hold unless `bridges.queue.in_memory_bytes` says otherwise
/// (64 MiB): a backlog that fits, queued while the uplink was down, drains from memory.
pub const DEFAULT_IN_MEMORY_BYTES: u64 = 64 * 1024 * 1024;

/// Bounds of a bridge's outbound queue; each bound not given is taken from `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeQueue {
    /// Most queued messages; none means `limits.max_queued_messages`.
    pub max_messages: Option<usize>,
    /// Most queued bytes (topic + payload); none means `limits.max_queued_bytes`.
    pub max_bytes: Option<u64>,
    /// What a full queue does; none means `limits.queue_full_policy`.
    pub policy: Option<QueueFullPolicy>,
    /// Memory the queue may hold its messages in as well (every one is in the store all the
    /// same), uplink up or down, each message counted as its topic and payload plus 256
    /// bytes; the rest are read back from the store as the queue drains.
    pub in_memory_bytes: u64,
}

impl Default for BridgeQueue {
    fn default() -> BridgeQueue {
        BridgeQueue {
            max_messages: None,
            max_bytes: None,
            policy: None,
            in_memory_bytes: DEFAULT_IN_MEMORY_BYTES,
        }
    }
}
