//! Cairn's configuration: the typed settings, their built-in defaults, and loading them from
//! defaults < TOML file < `CAIRN_…` environment variables, validated with errors that name
//! the key, the value and what is allowed.

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
    #[default]
    Tcp,
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
    #[default]
    Required,
    Optional,
}

/// Resource limits, each with a sane default for a small gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Simultaneous client connections; more are refused (v5 CONNACK 0x97... see docs).
    pub max_connections: usize,
    /// Largest packet accepted from a client, in bytes (also announced as Maximum Packet Size).
    pub max_packet_size: u32,
    /// Inflight window per session: our Receive Maximum, and the cap on unacknowledged
    /// outgoing QoS 1/2 messages.
    pub max_inflight: u16,
    /// Messages queued per session while it is offline or its window is full.
    pub max_queued_messages: usize,
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
            log: LogConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            max_packet_size: 1024 * 1024,
            max_inflight: 32,
            max_queued_messages: 1000,
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
