//! Cairn's configuration: the typed settings, their built-in defaults, and loading them from
//! defaults < TOML file < `CAIRN_…` environment variables < command-line overrides, validated
//! with errors that name the key, the value and what is allowed.
//!
//! Environment variables are `CAIRN_` followed by the key path in upper case, with `__` (two
//! underscores) between levels, because key names contain single underscores themselves:
//! `CAIRN_DATA_DIR=/var/lib/cairn`, `CAIRN_LIMITS__MAX_INFLIGHT=64`, `CAIRN_LOG__LEVEL=debug`.
//! An empty variable counts as unset. `listeners` is a list of tables and is set only in the
//! file (or replaced by `cairn serve --listen`).
//!
//! This module reads the configuration file and the environment and nothing else: the TLS
//! files named here are opened by `transport::tls`.

use std::fmt::Display;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use ::config::{Environment, File, FileFormat, Map, Source, Value, ValueKind};
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
    /// a commit has 16 batches, so a busy broker is not slowed.
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

/// Environment variables that override the configuration start with this.
pub const ENV_PREFIX: &str = "CAIRN_";
/// Separates the levels of a key path in an environment variable name.
pub const ENV_LEVEL_SEPARATOR: &str = "__";

/// Largest MQTT packet: a 268,435,455-byte remaining length plus a 5-byte fixed header.
const PACKET_SIZE_RANGE: RangeInclusive<u32> = 2..=268_435_460;
/// MQTT strings (hence topics) are at most 65,535 bytes.
const TOPIC_LENGTH_RANGE: RangeInclusive<usize> = 1..=65_535;
/// `$SYS` updates at most once a day apart (keeps timer arithmetic far from overflow).
const SYS_INTERVAL_RANGE: RangeInclusive<u64> = 0..=86_400;

/// The `origin` the `config` crate gives values read from the environment.
const ENVIRONMENT_ORIGIN: &str = "the environment";

/// Settings given on the command line; they win over the file and the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// When not empty, replaces every configured listener with plain TCP ones at these
    /// addresses.
    pub listen: Vec<SocketAddr>,
    /// When set, replaces `data_dir`.
    pub data_dir: Option<PathBuf>,
}

impl Overrides {
    /// The command-line flag that set `key` (e.g. `listeners[0].bind`), if one did.
    fn flag_setting(&self, key: &str) -> Option<&'static str> {
        match split_index(key.split('.').next().unwrap_or(key)).0 {
            "listeners" if !self.listen.is_empty() => Some("--listen"),
            "data_dir" if self.data_dir.is_some() => Some("--data-dir"),
            _ => None,
        }
    }

    fn apply_to(&self, config: &mut Config) {
        if !self.listen.is_empty() {
            config.listeners = self
                .listen
                .iter()
                .map(|&bind| ListenerConfig {
                    bind,
                    kind: ListenerKind::Tcp,
                    tls: None,
                })
                .collect();
        }
        if let Some(data_dir) = &self.data_dir {
            config.data_dir = data_dir.clone();
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` names a file that does not exist.
    #[error("config file {} does not exist", .path.display())]
    FileNotFound { path: PathBuf },
    /// The config file exists but cannot be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    FileUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The config file is not TOML.
    #[error("config file {} is not valid TOML: {message}", .path.display())]
    Syntax { path: PathBuf, message: String },
    /// The file and the environment could not be combined (e.g. a non-UTF-8 variable).
    #[error("cannot combine the config file and the {ENV_PREFIX}* environment: {message}")]
    Layering { message: String },
    /// One or more keys are unknown or hold values that are not allowed.
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), list_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The individual problems of an [`ConfigError::Invalid`] configuration (else empty).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

/// One thing wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A key that Cairn does not know (a typo, or a setting from another broker).
    #[error("unknown key `{key}`{}; allowed here: {}", in_origin(.origin), .allowed.join(", "))]
    UnknownKey {
        /// Full key path, e.g. `limits.max_inflite`.
        key: String,
        /// The file or environment variable it came from.
        origin: Option<String>,
        /// The keys allowed at that level.
        allowed: Vec<String>,
    },
    /// A known key whose value is of the wrong type, out of range or in conflict.
    #[error("`{key}`{}: got {value}, expected {expected}", in_origin(.origin))]
    BadValue {
        /// Full key path, e.g. `listeners[0].bind`.
        key: String,
        /// The value found, as written in TOML (or `nothing` when missing).
        value: String,
        /// The file or environment variable it came from, when known.
        origin: Option<String>,
        /// What is allowed.
        expected: String,
    },
}

impl Problem {
    /// The full key path the problem is about.
    pub fn key(&self) -> &str {
        match self {
            Problem::UnknownKey { key, .. } | Problem::BadValue { key, .. } => key,
        }
    }

    fn bad_value(key: impl Into<String>, value: impl Display) -> Problem {
        let key = key.into();
        Problem::BadValue {
            expected: expected_for(&key).to_string(),
            key,
            value: value.to_string(),
            origin: None,
        }
    }
}

fn in_origin(origin: &Option<String>) -> String {
    origin
        .as_ref()
        .map(|origin| format!(" (from {origin})"))
        .unwrap_or_default()
}

fn list_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| format!("  - {problem}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Built-in defaults < TOML file (if given) < `CAIRN_…` environment variables (see the
    /// module documentation for their names), then validated. Returns every problem found
    /// (all unknown keys, the first value of a wrong type, every failed check) when possible.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_overrides(file, &Overrides::default())
    }

    /// Like [`Config::load`], with command-line `overrides` applied before validation.
    pub fn load_with_overrides(
        file: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        load_layers(file, cairn_environment(None), overrides)
    }

    /// Checks values serde cannot: ranges, at least one listener, a `tls` table exactly on
    /// TLS listeners, `client_auth`/`cn_as_username` only with `client_ca`, bind addresses
    /// used once, a parsable log filter. Reports every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.data_dir.as_os_str().is_empty() {
            problems.push(Problem::bad_value("data_dir", "\"\""));
        }
        check_listeners(&self.listeners, &mut problems);
        check_anonymous_refusable(self, &mut problems);
        check_limits(&self.limits, &mut problems);
        check_range(
            &mut problems,
            "store.commit_window_ms",
            self.store.commit_window_ms,
            0..=1000,
        );
        check_range(
            &mut problems,
            "sys_interval",
            self.sys_interval,
            SYS_INTERVAL_RANGE,
        );
        if let Err(error) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            problems.push(Problem::BadValue {
                key: "log.level".to_string(),
                value: format!("{:?}", self.log.level),
                origin: None,
                expected: format!("{} ({error})", expected_for("log.level")),
            });
        }
        problems
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the layers

/// The `CAIRN_…` environment source; `vars` replaces the process environment (for tests).
fn cairn_environment(vars: Option<Map<String, String>>) -> Environment {
    let prefix = ENV_PREFIX.trim_end_matches('_');
    Environment::with_prefix(prefix)
        .prefix_separator("_")
        .separator(ENV_LEVEL_SEPARATOR)
        .ignore_empty(true)
        .source(vars)
}

fn load_layers(
    file: Option<&Path>,
    environment: Environment,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut tree = read_layers(file, environment)?;
    let mut problems = Vec::new();
    if let ValueKind::Table(table) = &mut tree.kind {
        remove_unknown_keys(table, CONFIG_KEYS, "", file, &mut problems);
    }
    match tree.clone().try_deserialize::<Config>() {
        Ok(mut config) => {
            overrides.apply_to(&mut config);
            let checked = config.problems().into_iter();
            problems.extend(checked.map(|problem| with_origin(problem, &tree, file, overrides)));
            if problems.is_empty() {
                return Ok(config);
            }
        }
        Err(error) => problems.push(deserialize_problem(error, &tree, file)),
    }
    Err(ConfigError::Invalid(problems))
}

/// Merges the file (if any) and the environment into one tree of values; the built-in
/// defaults are filled in later by serde (`#[serde(default)]`).
fn read_layers(file: Option<&Path>, environment: Environment) -> Result<Value, ConfigError> {
    let mut builder = ::config::Config::builder();
    if let Some(path) = file {
        let text = read_config_file(path)?;
        builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    }
    let layered = builder
        .add_source(environment)
        .build()
        .map_err(|error| layering_error(error, file))?;
    let table = layered.collect().map_err(|error| ConfigError::Layering {
        message: error.to_string(),
    })?;
    Ok(Value::new(None, ValueKind::Table(table)))
}

fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    fs::read_to_string(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ConfigError::FileNotFound {
            path: path.to_path_buf(),
        },
        _ => ConfigError::FileUnreadable {
            path: path.to_path_buf(),
            source,
        },
    })
}

fn layering_error(error: ::config::ConfigError, file: Option<&Path>) -> ConfigError {
    match (error, file) {
        (::config::ConfigError::FileParse { cause, .. }, Some(path)) => ConfigError::Syntax {
            path: path.to_path_buf(),
            message: cause.to_string(),
        },
        (error, _) => ConfigError::Layering {
            message: error.to_string(),
        },
    }
}

/// Where a value came from, for messages: the environment variable's name or the file.
fn describe_origin(key: &str, origin: Option<&str>, file: Option<&Path>) -> Option<String> {
    match origin {
        Some(ENVIRONMENT_ORIGIN) => Some(format!("environment variable {}", env_var_name(key))),
        _ => file.map(|path| path.display().to_string()),
    }
}

/// `problem` from a check, with where its value came from: a command-line flag, an
/// environment variable or the file (nothing for a built-in default).
fn with_origin(
    problem: Problem,
    tree: &Value,
    file: Option<&Path>,
    overrides: &Overrides,
) -> Problem {
    let Problem::BadValue {
        key,
        value,
        origin: None,
        expected,
    } = problem
    else {
        return problem;
    };
    let origin = match overrides.flag_setting(&key) {
        Some(flag) => Some(flag.to_string()),
        None => value_at(tree, &key).and_then(|found| describe_origin(&key, found.origin(), file)),
    };
    Problem::BadValue {
        key,
        value,
        origin,
        expected,
    }
}

/// The environment variable that sets `key`, e.g. `CAIRN_LIMITS__MAX_INFLIGHT`.
fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', ENV_LEVEL_SEPARATOR).to_uppercase()
    )
}

// ---------------------------------------------------------------------------------------------
// The keys Cairn knows, and what each accepts

/// One configuration key and what it accepts (the text used in error messages).
struct KeySpec {
    name: &'static str,
    expected: &'static str,
    children: Children,
}

/// What lies below a key.
enum Children {
    None,
    Table(&'static [KeySpec]),
    TableList(&'static [KeySpec]),
}

const fn leaf(name: &'static str, expected: &'static str) -> KeySpec {
    KeySpec {
        name,
        expected,
        children: Children::None,
    }
}

const CONFIG_KEYS: &[KeySpec] = &[
    leaf("data_dir", "a non-empty directory path"),
    leaf(
        "allow_anonymous",
        "true or false; false only when every listener has kind = \"tls\", client_ca, \
         client_auth = \"required\" and cn_as_username = true (passwords are not checked yet)",
    ),
    KeySpec {
        name: "listeners",
        expected: "one or more [[listeners]] tables",
        children: Children::TableList(LISTENER_KEYS),
    },
    KeySpec {
        name: "limits",
        expected: "a [limits] table",
        children: Children::Table(LIMITS_KEYS),
    },
    leaf(
        "sys_interval",
        "an integer in 0..=86400 (seconds; 0 turns $SYS off)",
    ),
    KeySpec {
        name: "store",
        expected: "a [store] table",
        children: Children::Table(STORE_KEYS),
    },
    KeySpec {
        name: "log",
        expected: "a [log] table",
        children: Children::Table(LOG_KEYS),
    },
];

const STORE_KEYS: &[KeySpec] = &[
    leaf(
        "fsync",
        "true or false (false may lose acknowledged messages on a power cut)",
    ),
    leaf("commit_window_ms", "an integer in 0..=1000 (milliseconds)"),
];

const LISTENER_KEYS: &[KeySpec] = &[
    leaf(
        "bind",
        "an IP address and port such as \"0.0.0.0:1883\", used by one listener only",
    ),
    leaf("kind", "\"tcp\" or \"tls\""),
    KeySpec {
        name: "tls",
        expected: "a tls table (cert, key) on a listener with kind = \"tls\", and none on others",
        children: Children::Table(TLS_KEYS),
    },
];

const TLS_KEYS: &[KeySpec] = &[
    leaf("cert", "the path of a PEM certificate chain"),
    leaf("key", "the path of a PEM private key"),
    leaf("client_ca", "the path of a PEM CA bundle"),
    leaf(
        "client_auth",
        "\"required\" or \"optional\"; \"optional\" only together with client_ca",
    ),
    leaf(
        "cn_as_username",
        "true or false; true only together with client_ca",
    ),
];

const LIMITS_KEYS: &[KeySpec] = &[
    leaf("max_connections", "an integer of at least 1"),
    leaf("max_packet_size", "an integer in 2..=268435460 (bytes)"),
    leaf("max_inflight", "an integer in 1..=65535"),
    leaf("connect_timeout", "an integer in 1..=3600 (seconds)"),
    leaf("max_queued_messages", "an integer of at least 0"),
    leaf(
        "max_queued_bytes",
        "an integer of at least 0 (bytes of topic and payload)",
    ),
    leaf(
        "max_queued_bytes_total",
        "an integer of at least 0 (bytes queued in all sessions together)",
    ),
    leaf("queue_full_policy", "\"drop_oldest\" or \"refuse_newest\""),
    leaf("queue_qos0_offline", "true or false"),
    leaf("max_topic_length", "an integer in 1..=65535 (bytes)"),
    leaf("max_topic_levels", "an integer in 1..=1024"),
    leaf(
        "max_keep_alive",
        "an integer in 0..=65535 (seconds; 0 means no maximum)",
    ),
    leaf(
        "max_session_expiry",
        "an integer in 0..=4294967295 (seconds)",
    ),
    leaf(
        "topic_alias_maximum",
        "an integer in 0..=65535 (0 disables topic aliases)",
    ),
];

const LOG_KEYS: &[KeySpec] = &[leaf(
    "level",
    "a tracing filter such as \"info\" or \"warn,cairn=debug\"",
)];

impl Children {
    fn keys(&self) -> &'static [KeySpec] {
        match self {
            Children::None => &[],
            Children::Table(keys) | Children::TableList(keys) => keys,
        }
    }
}

/// What `key` (e.g. `listeners[2].tls.cert`) accepts, for messages.
fn expected_for(key: &str) -> &'static str {
    spec_for(key).map_or("a value documented in config/cairn.toml", |spec| {
        spec.expected
    })
}

fn spec_for(key: &str) -> Option<&'static KeySpec> {
    let mut level = CONFIG_KEYS;
    let mut found = None;
    for segment in key.split('.') {
        let (name, _) = split_index(segment);
        let spec = level.iter().find(|spec| spec.name == name)?;
        level = spec.children.keys();
        found = Some(spec);
    }
    found
}

/// Splits `listeners[3]` into `("listeners", Some(3))`.
fn split_index(segment: &str) -> (&str, Option<usize>) {
    segment
        .strip_suffix(']')
        .and_then(|rest| rest.split_once('['))
        .map_or((segment, None), |(name, index)| (name, index.parse().ok()))
}

fn join_key(prefix: &str, name: &str) -> String {
    match prefix {
        "" => name.to_string(),
        _ => format!("{prefix}.{name}"),
    }
}

/// Removes (and reports) every key of `table` that `specs` does not know, at every level, so
/// that all of them are reported at once and the rest can still be checked.
fn remove_unknown_keys(
    table: &mut Map<String, Value>,
    specs: &'static [KeySpec],
    prefix: &str,
    file: Option<&Path>,
    problems: &mut Vec<Problem>,
) {
    let mut unknown: Vec<String> = table
        .keys()
        .filter(|name| !specs.iter().any(|spec| spec.name == name.as_str()))
        .cloned()
        .collect();
    unknown.sort();
    for name in unknown {
        let key = join_key(prefix, &name);
        let origin = table
            .remove(&name)
            .and_then(|value| value.origin().map(String::from));
        problems.push(Problem::UnknownKey {
            origin: describe_origin(&key, origin.as_deref(), file),
            key,
            allowed: specs.iter().map(|spec| spec.name.to_string()).collect(),
        });
    }
    for spec in specs {
        let Some(value) = table.get_mut(spec.name) else {
            continue;
        };
        let key = join_key(prefix, spec.name);
        match (&spec.children, &mut value.kind) {
            (Children::Table(keys), ValueKind::Table(inner)) => {
                remove_unknown_keys(inner, keys, &key, file, problems);
            }
            (Children::TableList(keys), ValueKind::Array(items)) => {
                for (index, item) in items.iter_mut().enumerate() {
                    if let ValueKind::Table(inner) = &mut item.kind {
                        let item_key = format!("{key}[{index}]");
                        remove_unknown_keys(inner, keys, &item_key, file, problems);
                    }
                }
            }
            // A value of the wrong shape is reported by deserialization.
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Turning serde's complaint into a Problem

fn deserialize_problem(error: ::config::ConfigError, tree: &Value, file: Option<&Path>) -> Problem {
    let (key, reason) = match error {
        ::config::ConfigError::Type { key, .. } => (key, None),
        ::config::ConfigError::NotFound(key) => (Some(key), None),
        ::config::ConfigError::At { error, key, .. } => (key, Some(error.to_string())),
        other => (None, Some(other.to_string())),
    };
    let key = key.as_deref().map(normalize_key).unwrap_or_default();
    let found = value_at(tree, &key);
    let expected = match reason {
        Some(reason) => format!("{} ({reason})", expected_for(&key)),
        None => expected_for(&key).to_string(),
    };
    Problem::BadValue {
        origin: describe_origin(&key, found.and_then(Value::origin), file),
        value: found.map_or_else(|| "nothing".to_string(), render),
        key,
        expected,
    }
}

/// The `config` crate writes `listeners[0]bind`; Cairn's messages say `listeners[0].bind`.
fn normalize_key(key: &str) -> String {
    let mut normalized = String::with_capacity(key.len() + 2);
    let mut after_index = false;
    for character in key.chars() {
        if after_index && character != '.' && character != '[' {
            normalized.push('.');
        }
        after_index = character == ']';
        normalized.push(character);
    }
    normalized
}

/// The value at a key path such as `listeners[0].tls.cert`.
fn value_at<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(root, |value, segment| {
        let (name, index) = split_index(segment);
        let ValueKind::Table(table) = &value.kind else {
            return None;
        };
        let child = table.get(name)?;
        match (index, &child.kind) {
            (None, _) => Some(child),
            (Some(index), ValueKind::Array(items)) => items.get(index),
            (Some(_), _) => None,
        }
    })
}

/// A value as it would be written in TOML, for messages.
fn render(value: &Value) -> String {
    match &value.kind {
        ValueKind::String(text) => format!("{text:?}"),
        ValueKind::Array(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Table(table) => {
            let mut entries: Vec<String> = table
                .iter()
                .map(|(name, value)| format!("{name} = {}", render(value)))
                .collect();
            entries.sort();
            format!("{{ {} }}", entries.join(", "))
        }
        ValueKind::Nil => "nothing".to_string(),
        scalar => scalar.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Checks serde cannot make

fn check_range<T: PartialOrd + Display>(
    problems: &mut Vec<Problem>,
    key: &str,
    value: T,
    allowed: RangeInclusive<T>,
) {
    if !allowed.contains(&value) {
        problems.push(Problem::bad_value(key, value));
    }
}

fn check_limits(limits: &Limits, problems: &mut Vec<Problem>) {
    let key = |name: &str| format!("limits.{name}");
    check_range(
        problems,
        &key("max_connections"),
        limits.max_connections,
        1..=usize::MAX,
    );
    check_range(
        problems,
        &key("connect_timeout"),
        limits.connect_timeout,
        1..=3600,
    );
    check_range(
        problems,
        &key("max_packet_size"),
        limits.max_packet_size,
        PACKET_SIZE_RANGE,
    );
    check_range(
        problems,
        &key("max_inflight"),
        limits.max_inflight,
        1..=u16::MAX,
    );
    check_range(
        problems,
        &key("max_topic_length"),
        limits.max_topic_length,
        TOPIC_LENGTH_RANGE,
    );
    check_range(
        problems,
        &key("max_topic_levels"),
        limits.max_topic_levels,
        // Matching recurses once per level: a bound keeps a connection task's stack safe.
        1..=1024,
    );
}

/// Cairn checks no passwords yet, so `allow_anonymous = false` is kept only where it means
/// something: when every listener verifies a client certificate (required, against
/// `client_ca`) and takes the username from it. Anywhere else any username would be let in.
fn check_anonymous_refusable(config: &Config, problems: &mut Vec<Problem>) {
    if config.allow_anonymous {
        return;
    }
    if let Some(index) = config
        .listeners
        .iter()
        .position(|listener| !checks_client_certificates(listener))
    {
        problems.push(Problem::BadValue {
            key: "allow_anonymous".to_string(),
            value: "false".to_string(),
            origin: None,
            expected: format!(
                "{} (listeners[{index}] lets clients in without a verified certificate)",
                expected_for("allow_anonymous")
            ),
        });
    }
}

/// Whether every client of `listener` has a certificate signed by `client_ca`, whose Common
/// Name is its username.
fn checks_client_certificates(listener: &ListenerConfig) -> bool {
    match &listener.tls {
        Some(tls) => {
            listener.kind == ListenerKind::Tls
                && tls.client_ca.is_some()
                && tls.client_auth == ClientAuth::Required
                && tls.cn_as_username
        }
        None => false,
    }
}

fn check_listeners(listeners: &[ListenerConfig], problems: &mut Vec<Problem>) {
    if listeners.is_empty() {
        problems.push(Problem::bad_value("listeners", "[]"));
    }
    for (index, listener) in listeners.iter().enumerate() {
        let key = format!("listeners[{index}]");
        check_listener_tls(&key, listener, problems);
        check_bind_used_once(&key, index, listeners, problems);
    }
}

fn check_listener_tls(key: &str, listener: &ListenerConfig, problems: &mut Vec<Problem>) {
    let tls_key = format!("{key}.tls");
    match (listener.kind, &listener.tls) {
        (ListenerKind::Tls, None) => problems.push(Problem::bad_value(tls_key, "nothing")),
        (ListenerKind::Tcp, Some(_)) => {
            problems.push(Problem::bad_value(tls_key, "a tls table on kind = \"tcp\""))
        }
        (_, Some(tls)) if tls.client_ca.is_none() => {
            if tls.client_auth == ClientAuth::Optional {
                let key = format!("{tls_key}.client_auth");
                problems.push(Problem::bad_value(key, "\"optional\" without client_ca"));
            }
            if tls.cn_as_username {
                let key = format!("{tls_key}.cn_as_username");
                problems.push(Problem::bad_value(key, "true without client_ca"));
            }
        }
        _ => {}
    }
}

/// Port 0 asks the OS for a fresh port, so it may appear on several listeners.
fn check_bind_used_once(
    key: &str,
    index: usize,
    listeners: &[ListenerConfig],
    problems: &mut Vec<Problem>,
) {
    let bind = listeners[index].bind;
    if bind.port() == 0 {
        return;
    }
    if let Some(first) = listeners[..index]
        .iter()
        .position(|other| other.bind == bind)
    {
        problems.push(Problem::BadValue {
            key: format!("{key}.bind"),
            value: format!("\"{bind}\""),
            origin: None,
            expected: format!("an address no other listener uses (listeners[{first}] has it)"),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Loads `toml` (when given) as the file and `env` as the whole environment.
    fn load_from(
        toml: Option<&str>,
        env: &[(&str, &str)],
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let file = toml.map(write_temp_file);
        let vars = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let path = file.as_ref().map(|file| file.path());
        load_layers(path, cairn_environment(Some(vars)), overrides)
    }

    fn write_temp_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write temp file");
        file
    }

    fn load_toml(toml: &str) -> Result<Config, ConfigError> {
        load_from(Some(toml), &[], &Overrides::default())
    }

    fn problems_of(result: Result<Config, ConfigError>) -> Vec<Problem> {
        match result {
            Err(ConfigError::Invalid(problems)) => problems,
            other => panic!("expected an invalid configuration, got {other:?}"),
        }
    }

    fn keys_of(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(Problem::key).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn no_file_and_empty_environment_give_the_defaults() {
        let config = load_from(None, &[], &Overrides::default()).expect("defaults load");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn file_overrides_defaults_and_keeps_the_rest() {
        let config = load_toml("[limits]\nmax_inflight = 64\n").expect("valid file");
        assert_eq!(config.limits.max_inflight, 64);
        assert_eq!(
            config.limits.max_packet_size,
            Limits::default().max_packet_size
        );
        assert_eq!(config.listeners, Config::default().listeners);
    }

    /// A TLS listener that checks every client's certificate, so `allow_anonymous = false`
    /// is allowed.
    const IDENTITY_CHECKING_LISTENER: &str = "[[listeners]]\nbind = \"127.0.0.1:8883\"\n\
        kind = \"tls\"\n[listeners.tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\n\
        cn_as_username = true\n";

    #[test]
    fn environment_overrides_the_file() {
        let config = load_from(
            Some(&format!(
                "data_dir = \"/from/file\"\n[limits]\nmax_inflight = 10\n{IDENTITY_CHECKING_LISTENER}"
            )),
            &[
                ("CAIRN_LIMITS__MAX_INFLIGHT", "64"),
                ("CAIRN_DATA_DIR", "/var/lib/cairn"),
                ("CAIRN_ALLOW_ANONYMOUS", "false"),
                ("CAIRN_LOG__LEVEL", "cairn=debug"),
                ("OTHER_VARIABLE", "ignored"),
            ],
            &Overrides::default(),
        )
        .expect("valid layers");
        assert_eq!(config.limits.max_inflight, 64);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/cairn"));
        assert!(!config.allow_anonymous);
        assert_eq!(config.log.level, "cairn=debug");
    }

    #[test]
    fn empty_environment_variable_counts_as_unset() {
        let config = load_from(None, &[("CAIRN_DATA_DIR", "")], &Overrides::default())
            .expect("valid layers");
        assert_eq!(config.data_dir, Config::default().data_dir);
    }

    #[test]
    fn env_var_name_uses_double_underscore_between_levels() {
        assert_eq!(
            env_var_name("limits.max_inflight"),
            "CAIRN_LIMITS__MAX_INFLIGHT"
        );
        assert_eq!(env_var_name("data_dir"), "CAIRN_DATA_DIR");
    }

    #[test]
    fn unknown_key_in_file_is_named_with_the_allowed_keys() {
        let problems = problems_of(load_toml("[limits]\nmax_inflite = 64\n"));
        assert_eq!(keys_of(&problems), ["limits.max_inflite"]);
        let message = problems[0].to_string();
        assert!(
            message.starts_with("unknown key `limits.max_inflite` (from "),
            "{message}"
        );
        assert!(message.contains("allowed here: max_connections, max_packet_size, max_inflight"));
    }

    #[test]
    fn unknown_key_from_environment_names_the_variable() {
        let problems = problems_of(load_from(
            None,
            &[("CAIRN_LIMITS__MAX_INFLITE", "64")],
            &Overrides::default(),
        ));
        let message = problems[0].to_string();
        assert!(
            message.contains("environment variable CAIRN_LIMITS__MAX_INFLITE"),
            "{message}"
        );
    }

    #[test]
    fn every_unknown_key_is_reported_at_every_level() {
        let toml = "colour = 1\n[limitz]\na = 1\n[log]\nlevl = \"info\"\n\
                    [[listeners]]\nbind = \"127.0.0.1:1883\"\nport = 1\n\
                    [listeners.tls]\ncert = \"c\"\nkey = \"k\"\nca = \"x\"\n";
        let problems = problems_of(load_toml(toml));
        let keys = keys_of(&problems);
        for expected in [
            "colour",
            "limitz",
            "log.levl",
            "listeners[0].port",
            "listeners[0].tls.ca",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported_together() {
        let problems = problems_of(load_toml(
            "sys_intervl = 5\n[limits]\nmax_inflight = 0\nmax_topic_levels = 0\n",
        ));
        assert_eq!(
            keys_of(&problems),
            [
                "sys_intervl",
                "limits.max_inflight",
                "limits.max_topic_levels"
            ]
        );
    }

    #[test]
    fn wrong_type_names_key_value_and_allowed_range() {
        let problems = problems_of(load_toml("[limits]\nmax_inflight = \"lots\"\n"));
        assert_eq!(keys_of(&problems), ["limits.max_inflight"]);
        let message = problems[0].to_string();
        assert!(message.contains("got \"lots\""), "{message}");
        assert!(
            message.contains("expected an integer in 1..=65535"),
            "{message}"
        );
    }

    #[test]
    fn value_too_large_for_its_type_names_the_range() {
        let problems = problems_of(load_toml("[limits]\nmax_inflight = 70000\n"));
        let message = problems[0].to_string();
        assert!(message.contains("`limits.max_inflight`"), "{message}");
        assert!(message.contains("got 70000"), "{message}");
        assert!(message.contains("1..=65535"), "{message}");
    }

    #[test]
    fn bad_value_from_environment_names_the_variable() {
        let problems = problems_of(load_from(
            None,
            &[("CAIRN_LIMITS__MAX_INFLIGHT", "many")],
            &Overrides::default(),
        ));
        let message = problems[0].to_string();
        assert!(
            message.contains("(from environment variable CAIRN_LIMITS__MAX_INFLIGHT)"),
            "{message}"
        );
    }

    #[test]
    fn unknown_listener_kind_is_refused() {
        let problems = problems_of(load_toml(
            "[[listeners]]\nbind = \"127.0.0.1:1883\"\nkind = \"udp\"\n",
        ));
        let message = problems[0].to_string();
        assert!(message.contains("`listeners[0].kind`"), "{message}");
        assert!(message.contains("got \"udp\""), "{message}");
    }

    #[test]
    fn listener_without_bind_is_refused() {
        let problems = problems_of(load_toml("[[listeners]]\nkind = \"tcp\"\n"));
        assert_eq!(keys_of(&problems), ["listeners[0].bind"]);
        assert!(problems[0].to_string().contains("got nothing"));
    }

    #[test]
    fn keys_from_the_config_crate_get_dots_after_indices() {
        assert_eq!(normalize_key("listeners[0]bind"), "listeners[0].bind");
        assert_eq!(
            normalize_key("listeners[1].tls.cert"),
            "listeners[1].tls.cert"
        );
        assert_eq!(normalize_key("limits.max_inflight"), "limits.max_inflight");
    }

    #[test]
    fn bad_socket_address_is_refused() {
        let problems = problems_of(load_toml("[[listeners]]\nbind = \"localhost\"\n"));
        assert_eq!(keys_of(&problems), ["listeners[0].bind"]);
    }

    #[test]
    fn limits_out_of_range_are_each_reported() {
        let mut config = Config::default();
        config.limits.max_inflight = 0;
        config.limits.max_packet_size = 1;
        config.limits.max_topic_levels = 0;
        config.limits.max_topic_length = 70_000;
        config.limits.max_connections = 0;
        config.sys_interval = 86_401;
        let error = config.validate().expect_err("invalid limits");
        assert_eq!(
            keys_of(error.problems()),
            [
                "limits.max_connections",
                "limits.max_packet_size",
                "limits.max_inflight",
                "limits.max_topic_length",
                "limits.max_topic_levels",
                "sys_interval",
            ]
        );
    }

    #[test]
    fn max_packet_size_bounds_are_those_of_mqtt() {
        for (size, valid) in [
            (1, false),
            (2, true),
            (268_435_460, true),
            (268_435_461, false),
        ] {
            let mut config = Config::default();
            config.limits.max_packet_size = size;
            assert_eq!(config.validate().is_ok(), valid, "max_packet_size = {size}");
        }
    }

    #[test]
    fn range_descriptions_match_the_checked_ranges() {
        let described = |key: &str, start: &dyn Display, end: &dyn Display| {
            let range = format!("{start}..={end}");
            assert!(expected_for(key).contains(&range), "{key}: {range}");
        };
        described(
            "limits.max_packet_size",
            PACKET_SIZE_RANGE.start(),
            PACKET_SIZE_RANGE.end(),
        );
        described(
            "limits.max_topic_length",
            TOPIC_LENGTH_RANGE.start(),
            TOPIC_LENGTH_RANGE.end(),
        );
        described(
            "sys_interval",
            SYS_INTERVAL_RANGE.start(),
            SYS_INTERVAL_RANGE.end(),
        );
        described("limits.max_inflight", &1, &u16::MAX);
    }

    #[test]
    fn no_listener_is_refused() {
        let mut config = Config::default();
        config.listeners.clear();
        let error = config.validate().expect_err("no listener");
        assert_eq!(keys_of(error.problems()), ["listeners"]);
    }

    fn tls_listener(tls: Option<TlsConfig>) -> ListenerConfig {
        ListenerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8883)),
            kind: ListenerKind::Tls,
            tls,
        }
    }

    fn tls_files() -> TlsConfig {
        TlsConfig {
            cert: PathBuf::from("cert.pem"),
            key: PathBuf::from("key.pem"),
            client_ca: None,
            client_auth: ClientAuth::Required,
            cn_as_username: false,
        }
    }

    fn validate_listeners(listeners: Vec<ListenerConfig>) -> Vec<Problem> {
        let config = Config {
            listeners,
            ..Config::default()
        };
        config
            .validate()
            .err()
            .map(|error| error.problems().to_vec())
            .unwrap_or_default()
    }

    #[test]
    fn tls_listener_needs_a_tls_table() {
        let problems = validate_listeners(vec![tls_listener(None)]);
        assert_eq!(keys_of(&problems), ["listeners[0].tls"]);
        assert!(validate_listeners(vec![tls_listener(Some(tls_files()))]).is_empty());
    }

    #[test]
    fn tcp_listener_refuses_a_tls_table() {
        let mut listener = tls_listener(Some(tls_files()));
        listener.kind = ListenerKind::Tcp;
        let problems = validate_listeners(vec![listener]);
        assert_eq!(keys_of(&problems), ["listeners[0].tls"]);
    }

    #[test]
    fn client_auth_and_cn_as_username_need_client_ca() {
        let mut tls = tls_files();
        tls.client_auth = ClientAuth::Optional;
        tls.cn_as_username = true;
        let problems = validate_listeners(vec![tls_listener(Some(tls.clone()))]);
        assert_eq!(
            keys_of(&problems),
            [
                "listeners[0].tls.client_auth",
                "listeners[0].tls.cn_as_username"
            ]
        );
        tls.client_ca = Some(PathBuf::from("ca.pem"));
        assert!(validate_listeners(vec![tls_listener(Some(tls))]).is_empty());
    }

    /// A listener that checks every client's identity: TLS, client certificates required and
    /// their Common Name as the username.
    fn identity_checking_listener() -> ListenerConfig {
        let mut tls = tls_files();
        tls.client_ca = Some(PathBuf::from("ca.pem"));
        tls.cn_as_username = true;
        tls_listener(Some(tls))
    }

    #[test]
    fn allow_anonymous_false_needs_every_listener_to_check_certificates() {
        let refused = |listeners: Vec<ListenerConfig>| {
            let config = Config {
                allow_anonymous: false,
                listeners,
                ..Config::default()
            };
            config
                .validate()
                .err()
                .map(|error| error.problems().to_vec())
                .unwrap_or_default()
        };
        let problems = refused(Config::default().listeners);
        assert_eq!(keys_of(&problems), ["allow_anonymous"]);
        let message = problems[0].to_string();
        assert!(message.contains("got false"), "{message}");
        assert!(message.contains("listeners[0]"), "{message}");
        assert!(refused(vec![identity_checking_listener()]).is_empty());

        let mut optional = identity_checking_listener();
        let mut without_cn = identity_checking_listener();
        if let (Some(optional), Some(without_cn)) = (&mut optional.tls, &mut without_cn.tls) {
            optional.client_auth = ClientAuth::Optional;
            without_cn.cn_as_username = false;
        }
        for mut listener in [optional, without_cn, Config::default().listeners[0].clone()] {
            listener.bind.set_port(8884);
            let problems = refused(vec![identity_checking_listener(), listener]);
            assert_eq!(keys_of(&problems), ["allow_anonymous"]);
            assert!(problems[0].to_string().contains("listeners[1]"));
        }
    }

    #[test]
    fn duplicate_bind_addresses_are_refused_except_port_zero() {
        let tcp = |port| ListenerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], port)),
            kind: ListenerKind::Tcp,
            tls: None,
        };
        let problems = validate_listeners(vec![tcp(1883), tcp(1884), tcp(1883)]);
        assert_eq!(keys_of(&problems), ["listeners[2].bind"]);
        assert!(problems[0].to_string().contains("listeners[0] has it"));
        assert!(validate_listeners(vec![tcp(0), tcp(0)]).is_empty());
    }

    #[test]
    fn unparsable_log_filter_is_refused() {
        let mut config = Config::default();
        config.log.level = "cairn=verbose".to_string();
        let error = config.validate().expect_err("bad filter");
        assert_eq!(keys_of(error.problems()), ["log.level"]);
    }

    #[test]
    fn missing_config_file_names_the_path() {
        let missing = Path::new("/nonexistent/cairn/missing.toml");
        let result = load_layers(
            Some(missing),
            cairn_environment(Some(Map::new())),
            &Overrides::default(),
        );
        match result {
            Err(error @ ConfigError::FileNotFound { .. }) => {
                assert!(error
                    .to_string()
                    .contains("/nonexistent/cairn/missing.toml"));
            }
            other => panic!("expected FileNotFound, got {other:?}"),
        }
    }

    #[test]
    fn toml_syntax_error_names_the_file() {
        let file = write_temp_file("[limits\nmax_inflight = 1\n");
        let result = load_layers(
            Some(file.path()),
            cairn_environment(Some(Map::new())),
            &Overrides::default(),
        );
        match result {
            Err(error @ ConfigError::Syntax { .. }) => {
                let path = file.path().display().to_string();
                assert!(error.to_string().contains(&path), "{error}");
            }
            other => panic!("expected Syntax, got {other:?}"),
        }
    }

    #[test]
    fn overrides_replace_listeners_and_data_dir() {
        let overrides = Overrides {
            listen: vec![
                "127.0.0.1:2883".parse().expect("addr"),
                "[::1]:0".parse().expect("addr"),
            ],
            data_dir: Some(PathBuf::from("/tmp/cairn")),
        };
        let toml = "[[listeners]]\nbind = \"0.0.0.0:8883\"\nkind = \"tls\"\n";
        let config = load_from(Some(toml), &[], &overrides).expect("overrides fix listeners");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/cairn"));
        assert_eq!(config.listeners.len(), 2);
        assert!(config
            .listeners
            .iter()
            .all(|listener| listener.kind == ListenerKind::Tcp && listener.tls.is_none()));
        assert_eq!(config.listeners[0].bind, overrides.listen[0]);
    }

    /// A configuration with every optional setting present, so that it shows every key.
    fn every_key_set() -> Config {
        let mut tls = tls_files();
        tls.client_ca = Some(PathBuf::from("ca.pem"));
        Config {
            listeners: vec![tls_listener(Some(tls))],
            ..Config::default()
        }
    }

    fn assert_same_keys(table: &toml::Table, specs: &[KeySpec], prefix: &str) {
        let mut in_struct: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut in_specs: Vec<&str> = specs.iter().map(|spec| spec.name).collect();
        in_struct.sort();
        in_specs.sort();
        assert_eq!(in_struct, in_specs, "keys under `{prefix}`");
        for spec in specs {
            let child = match (&spec.children, &table[spec.name]) {
                (Children::Table(_), toml::Value::Table(child)) => child,
                (Children::TableList(_), toml::Value::Array(items)) => match items.first() {
                    Some(toml::Value::Table(child)) => child,
                    other => panic!("`{}` is not a list of tables: {other:?}", spec.name),
                },
                (Children::None, _) => continue,
                (_, other) => panic!("`{}` has the wrong shape: {other:?}", spec.name),
            };
            assert_same_keys(child, spec.children.keys(), spec.name);
        }
    }

    #[test]
    fn key_specs_match_the_config_structs() {
        let table = toml::Table::try_from(every_key_set()).expect("serializes");
        assert_same_keys(&table, CONFIG_KEYS, "");
    }

    #[test]
    fn every_key_set_round_trips_through_the_loader() {
        let text = toml::to_string(&every_key_set()).expect("serializes");
        let config = load_toml(&text).expect("valid");
        assert_eq!(config, every_key_set());
    }

    #[test]
    fn shipped_config_file_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cairn.toml");
        let config = load_layers(
            Some(&path),
            cairn_environment(Some(Map::new())),
            &Overrides::default(),
        )
        .expect("config/cairn.toml loads");
        assert_eq!(config, Config::default());
    }
}
