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
    /// Accept clients that send no username (real authentication comes later).
    pub allow_anonymous: bool,
    /// Listeners: any number of TCP and TLS sockets.
    pub listeners: Vec<ListenerConfig>,
    /// Resource limits.
    pub limits: Limits,
    /// Seconds between `$SYS/broker/…` updates; 0 turns them off.
    pub sys_interval: u64,
    /// The durable store under `data_dir`.
    pub store: StoreConfig,
    /// Logging.
    pub log: LogConfig,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port to bind, e.g. `127.0.0.1:1883` or `0.0.0.0:8883`.
    pub bind: SocketAddr,
    /// Plain TCP or TLS.
    #[serde(default)]
    pub kind: ListenerKind,
    /// TLS settings; required when `kind = "tls"`, refused otherwise.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
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
    /// With `client_ca`: whether a client certificate is required or optional.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Use the client certificate's Common Name as the MQTT username.
    #[serde(default)]
    pub cn_as_username: bool,
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
    /// a commit holds 16 messages, sessions and subscriptions, so a busy broker is not slowed.
    pub commit_window_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            fsync: true,
            commit_window_ms: 20,
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
            allow_anonymous: true,
            listeners: vec![ListenerConfig {
                bind: SocketAddr::from(([127, 0, 0, 1], 1883)),
                kind: ListenerKind::Tcp,
                tls: None,
            }],
            limits: Limits::default(),
            sys_interval: 10,
            store: StoreConfig::default(),
            log: LogConfig::default(),
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
