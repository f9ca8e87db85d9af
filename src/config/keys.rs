//! The key table: every configuration key Cairn knows, where it sits, and what it accepts,
//! in words for messages. Each allowed integer range is stated here once, as a [`Bounds`]
//! constant that both the messages and the checks (`checks.rs`) use.
//!
//! Keys whose range is their type's whole range (a `u16`, a `u32`) are not checked again: the
//! deserializer refuses anything else, and the message names the same bounds.

use std::fmt;

/// An allowed range of integers, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
}

impl Bounds {
    const fn new(min: u64, max: u64) -> Bounds {
        Bounds { min, max }
    }

    /// No upper bound beyond the type's.
    const fn at_least(min: u64) -> Bounds {
        Bounds { min, max: u64::MAX }
    }

    /// Whether `value` lies within; a value too large for a `u64` does not.
    pub fn allows(self, value: impl TryInto<u64>) -> bool {
        value
            .try_into()
            .is_ok_and(|value| (self.min..=self.max).contains(&value))
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            u64::MAX => write!(f, "an integer of at least {}", self.min),
            max => write!(f, "an integer in {}..={max}", self.min),
        }
    }
}

/// `limits.max_connections`.
pub const MAX_CONNECTIONS: Bounds = Bounds::at_least(1);
/// `limits.connect_timeout`, seconds: a client gets at least a second, at most an hour.
pub const CONNECT_TIMEOUT: Bounds = Bounds::new(1, 3600);
/// `limits.max_packet_size`: the largest MQTT packet is a 268,435,455-byte remaining length
/// plus a 5-byte fixed header.
pub const MAX_PACKET_SIZE: Bounds = Bounds::new(2, 268_435_460);
/// `limits.max_inflight`: a Receive Maximum is a non-zero 16-bit integer.
pub const MAX_INFLIGHT: Bounds = Bounds::new(1, 65_535);
/// `limits.max_queued_messages`, `limits.max_queued_bytes`, `limits.max_queued_bytes_total`
/// and a bridge queue's own: every message passes through its session's queue, so a queue
/// bound of 0 would deliver nothing (it is not Mosquitto's "no limit").
pub const QUEUE_BOUND: Bounds = Bounds::at_least(1);
/// `bridges.queue.in_memory_bytes`: 0 keeps no entries in memory.
pub const IN_MEMORY_BYTES: Bounds = Bounds::at_least(0);
/// `limits.max_topic_length`: MQTT strings (hence topics) are at most 65,535 bytes.
pub const MAX_TOPIC_LENGTH: Bounds = Bounds::new(1, 65_535);
/// `limits.max_topic_levels`: matching recurses once per level, so a bound keeps a connection
/// task's stack safe.
pub const MAX_TOPIC_LEVELS: Bounds = Bounds::new(1, 1024);
/// `limits.max_keep_alive`, seconds (a 16-bit field).
pub const MAX_KEEP_ALIVE: Bounds = Bounds::new(0, 65_535);
/// `limits.max_session_expiry`, seconds (a 32-bit field).
pub const MAX_SESSION_EXPIRY: Bounds = Bounds::new(0, 4_294_967_295);
/// `limits.topic_alias_maximum` (a 16-bit field).
pub const TOPIC_ALIAS_MAXIMUM: Bounds = Bounds::new(0, 65_535);
/// `sys_interval`, seconds: at most a day apart (keeps timer arithmetic far from overflow).
pub const SYS_INTERVAL: Bounds = Bounds::new(0, 86_400);
/// `worker_threads`: 0 is automatic; more threads than this serve no gateway.
pub const WORKER_THREADS: Bounds = Bounds::new(0, 256);
/// `store.commit_window_ms`.
pub const COMMIT_WINDOW_MS: Bounds = Bounds::new(0, 1000);
/// `store.cache_bytes`: at most redb's own default, 1 GiB (which also fits a 32-bit `usize`).
pub const CACHE_BYTES: Bounds = Bounds::new(0, 1 << 30);

/// `bridges.keep_alive`, seconds: at least 5, and never 0 (no keep-alive would leave a
/// black-holed uplink undetected).
pub const BRIDGE_KEEP_ALIVE: Bounds = Bounds::new(5, 65_535);
/// `bridges.session_expiry`, seconds (a 32-bit field).
pub const BRIDGE_SESSION_EXPIRY: Bounds = Bounds::new(0, 4_294_967_295);
/// `bridges.rate_limit`, messages per second (a 32-bit field).
pub const BRIDGE_RATE_LIMIT: Bounds = Bounds::new(0, 4_294_967_295);
/// `bridges.max_qos` and `bridges.topics.qos`.
pub const QOS: Bounds = Bounds::new(0, 2);
/// `bridges.reconnect_min`, seconds.
pub const RECONNECT_MIN: Bounds = Bounds::new(1, 3600);
/// `bridges.reconnect_max`, seconds: at most a day (and at least `reconnect_min`).
pub const RECONNECT_MAX: Bounds = Bounds::new(1, 86_400);
/// `bridges.stable_after`, seconds.
pub const STABLE_AFTER: Bounds = Bounds::new(0, 86_400);
/// The length of `bridges.name`, in characters.
pub const BRIDGE_NAME_LENGTH: Bounds = Bounds::new(1, 64);

/// What a key accepts, for messages.
pub enum Accepts {
    /// Said in words.
    Text(&'static str),
    /// An integer within bounds, with a note on its unit or meaning (empty for none).
    Integer(Bounds, &'static str),
    /// `true` or `false`, with a note on its meaning (empty for none).
    Boolean(&'static str),
}

impl fmt::Display for Accepts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Accepts::Text(text) => f.write_str(text),
            Accepts::Integer(bounds, "") => write!(f, "{bounds}"),
            Accepts::Integer(bounds, note) => write!(f, "{bounds} ({note})"),
            Accepts::Boolean("") => f.write_str("true or false"),
            Accepts::Boolean(note) => write!(f, "true or false ({note})"),
        }
    }
}

/// One configuration key and what it accepts.
pub struct KeySpec {
    pub name: &'static str,
    pub accepts: Accepts,
    pub children: Children,
}

/// What lies below a key.
pub enum Children {
    None,
    Table(&'static [KeySpec]),
    TableList(&'static [KeySpec]),
}

impl Children {
    pub fn keys(&self) -> &'static [KeySpec] {
        match self {
            Children::None => &[],
            Children::Table(keys) | Children::TableList(keys) => keys,
        }
    }
}

const fn leaf(name: &'static str, expected: &'static str) -> KeySpec {
    KeySpec {
        name,
        accepts: Accepts::Text(expected),
        children: Children::None,
    }
}

const fn integer(name: &'static str, bounds: Bounds, note: &'static str) -> KeySpec {
    KeySpec {
        name,
        accepts: Accepts::Integer(bounds, note),
        children: Children::None,
    }
}

const fn boolean(name: &'static str, note: &'static str) -> KeySpec {
    KeySpec {
        name,
        accepts: Accepts::Boolean(note),
        children: Children::None,
    }
}

const fn table(name: &'static str, expected: &'static str, children: Children) -> KeySpec {
    KeySpec {
        name,
        accepts: Accepts::Text(expected),
        children,
    }
}

/// Every key, in the order problems about values of a wrong type are reported.
pub const CONFIG_KEYS: &[KeySpec] = &[
    leaf("data_dir", "a non-empty directory path"),
    leaf(
        "password_file",
        "the path of a password file in Mosquitto's format (mosquitto_passwd, cairn passwd)",
    ),
    leaf("acl_file", "the path of an ACL file in Mosquitto's format"),
    table(
        "listeners",
        "one or more [[listeners]] tables",
        Children::TableList(LISTENER_KEYS),
    ),
    table("limits", "a [limits] table", Children::Table(LIMITS_KEYS)),
    integer("sys_interval", SYS_INTERVAL, "seconds; 0 turns $SYS off"),
    integer(
        "worker_threads",
        WORKER_THREADS,
        "0 = one fewer than the CPU cores, at least 1",
    ),
    table("store", "a [store] table", Children::Table(STORE_KEYS)),
    table("log", "a [log] table", Children::Table(LOG_KEYS)),
    table(
        "bridges",
        "[[bridges]] tables, one per upstream broker",
        Children::TableList(BRIDGE_KEYS),
    ),
    table(
        "metrics",
        "a [metrics] table (bind) to serve Prometheus metrics",
        Children::Table(METRICS_KEYS),
    ),
];

const METRICS_KEYS: &[KeySpec] = &[leaf(
    "bind",
    "an IP address and port such as \"127.0.0.1:9883\", not used by a listener",
)];

const STORE_KEYS: &[KeySpec] = &[
    boolean(
        "fsync",
        "false may lose acknowledged messages on a power cut",
    ),
    integer("commit_window_ms", COMMIT_WINDOW_MS, "milliseconds"),
    integer(
        "cache_bytes",
        CACHE_BYTES,
        "bytes of the store's page cache, beside the kernel's",
    ),
];

const LISTENER_KEYS: &[KeySpec] = &[
    leaf(
        "bind",
        "an IP address and port such as \"0.0.0.0:1883\", used by one listener only",
    ),
    leaf("kind", "\"tcp\", \"tls\", \"ws\" or \"wss\""),
    table(
        "tls",
        "a tls table (cert, key) on a listener with kind = \"tls\" or \"wss\", and none on \
         others",
        Children::Table(TLS_KEYS),
    ),
    leaf(
        "path",
        "a URL path such as \"/mqtt\" (a \"/\" then visible ASCII characters other than ? and \
         #), only on a listener with kind = \"ws\" or \"wss\"",
    ),
    leaf(
        "auth",
        "\"anonymous\", \"password\" (needs password_file), \"certificate\" (needs a tls \
         table with client_ca and client_auth = \"required\") or \"password_or_certificate\" \
         (needs password_file and a tls table with client_ca)",
    ),
];

const TLS_KEYS: &[KeySpec] = &[
    leaf("cert", "the path of a PEM certificate chain"),
    leaf("key", "the path of a PEM private key"),
    leaf("client_ca", "the path of a PEM CA bundle"),
    leaf(
        "client_auth",
        "\"required\" (the default with client_ca) or \"optional\"; only together with client_ca",
    ),
    leaf(
        "identity",
        "\"cn\" (the certificate's Common Name) or \"san\" (its first DNS, e-mail or URI \
         Subject Alternative Name); only together with client_ca",
    ),
];

/// Keys of earlier releases that Cairn no longer reads, by their path without list indices,
/// with what to write instead.
const REPLACED_KEYS: &[(&str, &str)] = &[
    (
        "allow_anonymous",
        "each listener's `auth` says who may connect: remove allow_anonymous (true was \
         auth = \"anonymous\", the default without password_file); for false, write \
         auth = \"certificate\" (or \"password\" with password_file) on each [[listeners]]",
    ),
    (
        "listeners.tls.cn_as_username",
        "write auth = \"certificate\" on the listener: the certificate's Common Name is then \
         the user name (identity = \"san\" in its tls table takes a Subject Alternative Name)",
    ),
];

/// What to write instead of `key` (a full path such as `listeners[0].tls.cn_as_username`) if
/// it is a key of an earlier release.
pub fn replaced_by(key: &str) -> Option<&'static str> {
    let mut path = String::with_capacity(key.len());
    let mut in_index = false;
    for character in key.chars() {
        match character {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => path.push(character),
            _ => {}
        }
    }
    REPLACED_KEYS
        .iter()
        .find(|(old, _)| *old == path)
        .map(|(_, instead)| *instead)
}

const LIMITS_KEYS: &[KeySpec] = &[
    integer("max_connections", MAX_CONNECTIONS, ""),
    integer("max_packet_size", MAX_PACKET_SIZE, "bytes"),
    integer("max_inflight", MAX_INFLIGHT, ""),
    integer("connect_timeout", CONNECT_TIMEOUT, "seconds"),
    integer("max_queued_messages", QUEUE_BOUND, ""),
    integer(
        "max_queued_bytes",
        QUEUE_BOUND,
        "bytes of topic and payload",
    ),
    integer(
        "max_queued_bytes_total",
        QUEUE_BOUND,
        "bytes queued in all sessions together",
    ),
    leaf("queue_full_policy", "\"drop_oldest\" or \"refuse_newest\""),
    boolean("queue_qos0_offline", ""),
    integer("max_topic_length", MAX_TOPIC_LENGTH, "bytes"),
    integer("max_topic_levels", MAX_TOPIC_LEVELS, ""),
    integer(
        "max_keep_alive",
        MAX_KEEP_ALIVE,
        "seconds; 0 means no maximum",
    ),
    integer("max_session_expiry", MAX_SESSION_EXPIRY, "seconds"),
    integer(
        "topic_alias_maximum",
        TOPIC_ALIAS_MAXIMUM,
        "0 disables topic aliases",
    ),
];

const BRIDGE_KEYS: &[KeySpec] = &[
    leaf(
        "name",
        "1 to 64 characters of A-Z a-z 0-9 _ -, used by one bridge only",
    ),
    leaf(
        "addresses",
        "one or more \"host:port\" strings (a DNS name, an IPv4 address or [an IPv6 address], \
         and a port in 1..=65535)",
    ),
    leaf("protocol", "\"5\" or \"3.1.1\""),
    leaf(
        "client_id",
        "a non-empty string of at most 65535 bytes without U+0000",
    ),
    leaf("username", "a string of at most 65535 bytes without U+0000"),
    leaf(
        "password_file",
        "the path of a file whose first line is the password",
    ),
    integer("keep_alive", BRIDGE_KEEP_ALIVE, "seconds"),
    integer("session_expiry", BRIDGE_SESSION_EXPIRY, "seconds"),
    integer("max_inflight", MAX_INFLIGHT, ""),
    integer(
        "rate_limit",
        BRIDGE_RATE_LIMIT,
        "messages per second; 0 means no limit",
    ),
    integer("max_qos", QOS, ""),
    integer("max_packet_size", MAX_PACKET_SIZE, "bytes"),
    boolean("retain", ""),
    boolean("try_private", ""),
    boolean("fallback_311", ""),
    integer("connect_timeout", CONNECT_TIMEOUT, "seconds"),
    integer("reconnect_min", RECONNECT_MIN, "seconds"),
    integer(
        "reconnect_max",
        RECONNECT_MAX,
        "seconds; at least reconnect_min",
    ),
    integer("stable_after", STABLE_AFTER, "seconds"),
    leaf(
        "state_topic",
        "a topic name (no wildcards) not starting with '$'",
    ),
    table(
        "tls",
        "a [bridges.tls] table",
        Children::Table(BRIDGE_TLS_KEYS),
    ),
    table(
        "queue",
        "a [bridges.queue] table",
        Children::Table(BRIDGE_QUEUE_KEYS),
    ),
    table(
        "topics",
        "one or more [[bridges.topics]] tables",
        Children::TableList(BRIDGE_TOPIC_KEYS),
    ),
];

const BRIDGE_TLS_KEYS: &[KeySpec] = &[
    leaf("ca", "the path of a PEM CA bundle"),
    leaf(
        "cert",
        "the path of a PEM certificate chain, together with key",
    ),
    leaf("key", "the path of a PEM private key, together with cert"),
    leaf("server_name", "a DNS name or an IP address"),
    leaf("alpn", "a list of protocol names, each 1 to 255 bytes"),
];

const BRIDGE_QUEUE_KEYS: &[KeySpec] = &[
    integer("max_messages", QUEUE_BOUND, ""),
    integer("max_bytes", QUEUE_BOUND, "bytes of topic and payload"),
    leaf("policy", "\"drop_oldest\" or \"refuse_newest\""),
    integer("in_memory_bytes", IN_MEMORY_BYTES, "bytes"),
];

const BRIDGE_TOPIC_KEYS: &[KeySpec] = &[
    leaf(
        "filter",
        "an MQTT topic filter, or \"\" together with both prefixes (Mosquitto's topic rules)",
    ),
    leaf("direction", "\"out\", \"in\" or \"both\""),
    integer("qos", QOS, ""),
    leaf(
        "local_prefix",
        "topic text without wildcards that, followed by the filter, is a valid filter",
    ),
    leaf(
        "remote_prefix",
        "topic text without wildcards that, followed by the filter, is a valid filter",
    ),
];

const LOG_KEYS: &[KeySpec] = &[leaf(
    "level",
    "a tracing filter such as \"info\" or \"warn,cairn=debug\"",
)];

/// What `key` (e.g. `listeners[2].tls.cert`) accepts, for messages.
pub fn expected_for(key: &str) -> String {
    spec_for(key).map_or_else(
        || "a value documented in config/cairn.toml".to_string(),
        |spec| spec.accepts.to_string(),
    )
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

/// Where `key` comes in the table: the position of each of its names at its level, and the
/// index of each list item. Sorting keys by it gives the table's order; unknown names last.
pub fn table_position(key: &str) -> Vec<usize> {
    let mut level = CONFIG_KEYS;
    let mut position = Vec::new();
    for segment in key.split('.') {
        let (name, index) = split_index(segment);
        let found = level.iter().position(|spec| spec.name == name);
        position.push(found.unwrap_or(usize::MAX));
        position.push(index.unwrap_or(0));
        level = found.map_or(&[], |found| level[found].children.keys());
    }
    position
}

/// Splits `listeners[3]` into `("listeners", Some(3))`.
pub fn split_index(segment: &str) -> (&str, Option<usize>) {
    segment
        .strip_suffix(']')
        .and_then(|rest| rest.split_once('['))
        .map_or((segment, None), |(name, index)| (name, index.parse().ok()))
}

/// `prefix.name`, or `name` at the top.
pub fn join_key(prefix: &str, name: &str) -> String {
    match (prefix, name) {
        ("", name) => name.to_string(),
        (prefix, "") => prefix.to_string(),
        _ => format!("{prefix}.{name}"),
    }
}
