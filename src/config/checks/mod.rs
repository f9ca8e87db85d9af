//! The checks serde cannot make: ranges (from the key table's [`Bounds`]), at least one
//! listener, a `tls` table exactly on TLS listeners (`tls`, `wss`), a `path` only on WebSocket
//! listeners (`ws`, `wss`) and one a request can ask for, `client_auth`/`identity` only with
//! `client_ca`, each address bound once (a wildcard takes its port on every address; the metrics
//! endpoint counts too), each listener's `auth` possible with its settings, a parsable log
//! filter, and every bridge's settings (`bridges` below). Each check adds every problem it finds; none stops early. The password and ACL
//! files are read by the server, not here.

mod bridges;

use std::fmt::Display;
use std::net::SocketAddr;

use super::error::Problem;
use super::keys::{self, expected_for, Bounds};
use super::types::{AuthMode, CertificateIdentity, ClientAuth, Config, Limits, ListenerConfig};

/// Every problem in `config`, in the order of the checks.
pub fn problems(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    if config.data_dir.as_os_str().is_empty() {
        problems.push(Problem::bad_value("data_dir", "\"\""));
    }
    check_listeners(&config.listeners, &mut problems);
    check_listener_auth(config, &mut problems);
    check_limits(&config.limits, &mut problems);
    check_range(
        &mut problems,
        "store.commit_window_ms",
        config.store.commit_window_ms,
        keys::COMMIT_WINDOW_MS,
    );
    check_range(
        &mut problems,
        "store.cache_bytes",
        config.store.cache_bytes,
        keys::CACHE_BYTES,
    );
    check_range(
        &mut problems,
        "sys_interval",
        config.sys_interval,
        keys::SYS_INTERVAL,
    );
    check_range(
        &mut problems,
        "worker_threads",
        config.worker_threads,
        keys::WORKER_THREADS,
    );
    if let Err(error) = super::parse_log_filter(&config.log.level) {
        problems.push(Problem::BadValue {
            key: "log.level".to_string(),
            value: format!("{:?}", config.log.level),
            origin: None,
            expected: format!("{} ({error})", expected_for("log.level")),
        });
    }
    bridges::check_bridges(config, &mut problems);
    check_metrics_bind(config, &mut problems);
    problems
}

/// Whether two listening sockets cannot both be bound: the same port (not 0, which asks for a
/// fresh one) in the same address family, on the same address or where either is the
/// wildcard (`0.0.0.0` takes every IPv4 address, `[::]` every IPv6 one; IPv6 sockets listen
/// for IPv6 only, so the families never meet).
fn binds_collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The metrics endpoint cannot share a listener's address, nor one a wildcard listener takes.
fn check_metrics_bind(config: &Config, problems: &mut Vec<Problem>) {
    let Some(bind) = config.metrics.as_ref().map(|metrics| metrics.bind) else {
        return;
    };
    if let Some((index, listener)) = config
        .listeners
        .iter()
        .enumerate()
        .find(|(_, listener)| binds_collide(listener.bind, bind))
    {
        problems.push(Problem::BadValue {
            key: "metrics.bind".to_string(),
            value: format!("\"{bind}\""),
            origin: None,
            expected: format!(
                "an address no listener takes (listeners[{index}] binds {})",
                listener.bind
            ),
        });
    }
}

fn check_range<T: TryInto<u64> + Display + Copy>(
    problems: &mut Vec<Problem>,
    key: &str,
    value: T,
    bounds: Bounds,
) {
    if !bounds.allows(value) {
        problems.push(Problem::bad_value(key, value));
    }
}

/// The limits whose bounds are narrower than their types.
fn check_limits(limits: &Limits, problems: &mut Vec<Problem>) {
    let key = |name: &str| format!("limits.{name}");
    check_range(
        problems,
        &key("max_connections"),
        limits.max_connections,
        keys::MAX_CONNECTIONS,
    );
    check_range(
        problems,
        &key("connect_timeout"),
        limits.connect_timeout,
        keys::CONNECT_TIMEOUT,
    );
    check_range(
        problems,
        &key("max_packet_size"),
        limits.max_packet_size,
        keys::MAX_PACKET_SIZE,
    );
    check_range(
        problems,
        &key("max_inflight"),
        limits.max_inflight,
        keys::MAX_INFLIGHT,
    );
    check_range(
        problems,
        &key("max_queued_messages"),
        limits.max_queued_messages,
        keys::QUEUE_BOUND,
    );
    check_range(
        problems,
        &key("max_queued_bytes"),
        limits.max_queued_bytes,
        keys::QUEUE_BOUND,
    );
    check_range(
        problems,
        &key("max_queued_bytes_total"),
        limits.max_queued_bytes_total,
        keys::QUEUE_BOUND,
    );
    check_range(
        problems,
        &key("max_topic_length"),
        limits.max_topic_length,
        keys::MAX_TOPIC_LENGTH,
    );
    check_range(
        problems,
        &key("max_topic_levels"),
        limits.max_topic_levels,
        keys::MAX_TOPIC_LEVELS,
    );
}

/// A listener's `auth` needs a password file for passwords, and a TLS listener that verifies
/// client certificates (`client_ca`) for certificates.
fn check_listener_auth(config: &Config, problems: &mut Vec<Problem>) {
    for (index, listener) in config.listeners.iter().enumerate() {
        let mode = config.listener_auth(listener);
        let key = format!("listeners[{index}].auth");
        let value = || format!("{:?}", auth_name(mode));
        if mode.needs_passwords() && config.password_file.is_none() {
            problems.push(Problem::bad_value(
                key.clone(),
                format!("{} without password_file", value()),
            ));
        }
        let verifies_certificates = listener
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca.is_some());
        if mode.uses_certificates() && !verifies_certificates {
            problems.push(Problem::bad_value(
                key.clone(),
                format!("{} on a listener without tls.client_ca", value()),
            ));
        }
        if mode == AuthMode::Certificate
            && verifies_certificates
            && listener.tls.as_ref().and_then(|tls| tls.client_auth) == Some(ClientAuth::Optional)
        {
            problems.push(Problem::bad_value(
                key,
                format!("{} with tls.client_auth = \"optional\"", value()),
            ));
        }
    }
}

/// The name of `mode` as the configuration writes it.
fn auth_name(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Anonymous => "anonymous",
        AuthMode::Password => "password",
        AuthMode::Certificate => "certificate",
        AuthMode::PasswordOrCertificate => "password_or_certificate",
    }
}

fn check_listeners(listeners: &[ListenerConfig], problems: &mut Vec<Problem>) {
    if listeners.is_empty() {
        problems.push(Problem::bad_value("listeners", "[]"));
    }
    for (index, listener) in listeners.iter().enumerate() {
        let key = format!("listeners[{index}]");
        check_listener_tls(&key, listener, problems);
        check_listener_path(&key, listener, problems);
        check_bind_used_once(&key, index, listeners, problems);
    }
}

fn check_listener_tls(key: &str, listener: &ListenerConfig, problems: &mut Vec<Problem>) {
    let tls_key = format!("{key}.tls");
    match (listener.kind.uses_tls(), &listener.tls) {
        (true, None) => problems.push(Problem::bad_value(tls_key, "nothing")),
        (false, Some(_)) => problems.push(Problem::bad_value(
            tls_key,
            format!("a tls table on kind = \"{}\"", listener.kind.name()),
        )),
        (_, Some(tls)) if tls.client_ca.is_none() => {
            if let Some(asked) = tls.client_auth {
                let key = format!("{tls_key}.client_auth");
                let asked = match asked {
                    ClientAuth::Required => "\"required\"",
                    ClientAuth::Optional => "\"optional\"",
                };
                problems.push(Problem::bad_value(
                    key,
                    format!("{asked} without client_ca"),
                ));
            }
            if tls.identity != CertificateIdentity::Cn {
                let key = format!("{tls_key}.identity");
                problems.push(Problem::bad_value(key, "\"san\" without client_ca"));
            }
        }
        _ => {}
    }
}

/// A `path` only where WebSocket clients ask for one, and one a request line can carry: the
/// path a client sends starts with "/", has no spaces, and ends before any "?" or "#".
fn check_listener_path(key: &str, listener: &ListenerConfig, problems: &mut Vec<Problem>) {
    let Some(path) = &listener.path else {
        return;
    };
    let path_key = format!("{key}.path");
    if !listener.kind.is_websocket() {
        let value = format!("{path:?} on kind = \"{}\"", listener.kind.name());
        problems.push(Problem::bad_value(path_key, value));
    } else if !path.starts_with('/')
        || !path
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '?' && c != '#')
    {
        problems.push(Problem::bad_value(path_key, format!("{path:?}")));
    }
}

/// Each address is bound once: not twice, and not beside a wildcard listener on its port.
fn check_bind_used_once(
    key: &str,
    index: usize,
    listeners: &[ListenerConfig],
    problems: &mut Vec<Problem>,
) {
    let bind = listeners[index].bind;
    if let Some((first, other)) = listeners[..index]
        .iter()
        .enumerate()
        .find(|(_, other)| binds_collide(other.bind, bind))
    {
        problems.push(Problem::BadValue {
            key: format!("{key}.bind"),
            value: format!("\"{bind}\""),
            origin: None,
            expected: format!(
                "an address no other listener takes (listeners[{first}] binds {})",
                other.bind
            ),
        });
    }
}
