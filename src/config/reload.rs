//! What a reload may change: compares the configuration in force with a newly loaded one,
//! names every key that changed, and keeps the keys that only a restart can change as they
//! are. Pure: it starts and stops nothing.
//!
//! A restart is needed for `data_dir` and `store.*` (the open database), `sys_interval`,
//! `worker_threads` (the running threads), `metrics` (its bound socket), each listener's
//! `bind`, `kind` and WebSocket `path`, and the number of listeners (bound sockets).
//! Everything else applies at once: `log.level`,
//! `limits.*` (for connections made from then on; a connection keeps the limits its CONNACK
//! announced), each listener's `auth` (for connections made from then on), `password_file`
//! and `acl_file` (the files themselves are read again on every reload, changed or not, by the
//! server), a TLS listener's files and options (for handshakes from then on), and `bridges`.

use toml::Value;

use super::Config;

/// Keys (or key prefixes, ending in `.`) that only a restart changes; `listeners` is
/// compared on its own (see [`listeners_need_restart`]).
const RESTART_KEYS: &[&str] = &[
    "data_dir",
    "store.",
    "sys_interval",
    "worker_threads",
    "metrics.",
];

/// The outcome of comparing a running configuration with a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadPlan {
    /// What to put in force: the new configuration, with the keys that need a restart kept
    /// as they are in the running one.
    pub config: Config,
    /// Keys whose new value applies now, e.g. `limits.max_connections`, `bridges`.
    pub applied: Vec<String>,
    /// Keys whose new value waits for a restart; the running value stays in force.
    pub need_restart: Vec<String>,
}

/// Compares `running` with `new`; see the module documentation for which keys apply now.
pub fn plan(running: &Config, new: Config) -> ReloadPlan {
    let mut changed = Vec::new();
    diff("", &as_value(running), &as_value(&new), &mut changed);
    let listeners_fixed = listeners_need_restart(running, &new);
    let mut config = new;
    config.data_dir = running.data_dir.clone();
    config.store = running.store.clone();
    config.sys_interval = running.sys_interval;
    config.worker_threads = running.worker_threads;
    config.metrics = running.metrics.clone();
    if listeners_fixed {
        config.listeners = running.listeners.clone();
    }
    let (need_restart, applied) = changed.into_iter().partition(|key| {
        RESTART_KEYS
            .iter()
            .any(|fixed| match fixed.strip_suffix('.') {
                Some(table) => key.starts_with(fixed) || key == table,
                None => key == fixed,
            })
            || (listeners_fixed && key.starts_with("listeners"))
    });
    ReloadPlan {
        config,
        applied,
        need_restart,
    }
}

/// Whether the listeners' sockets would change: another count, or another `bind`, `kind` or
/// (WebSocket) `path` at some position. Then every listener key waits for a restart, TLS files
/// included.
fn listeners_need_restart(running: &Config, new: &Config) -> bool {
    running.listeners.len() != new.listeners.len()
        || running
            .listeners
            .iter()
            .zip(&new.listeners)
            .any(|(old, new)| {
                old.bind != new.bind
                    || old.kind != new.kind
                    || old.websocket_path() != new.websocket_path()
            })
}

/// The configuration as a TOML tree, to compare key by key.
fn as_value(config: &Config) -> Value {
    // A `Config` always serialises: it came from TOML, and its fields are all plain data.
    Value::try_from(config).unwrap_or(Value::Table(Default::default()))
}

/// Appends to `changed` the path of every key whose value differs between `old` and `new`:
/// tables key by key, lists of tables item by item (`listeners[0].bind`), other lists and
/// values whole.
fn diff(path: &str, old: &Value, new: &Value, changed: &mut Vec<String>) {
    match (old, new) {
        (Value::Table(old), Value::Table(new)) => {
            let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = match path {
                    "" => key.clone(),
                    _ => format!("{path}.{key}"),
                };
                match (old.get(key), new.get(key)) {
                    (Some(old), Some(new)) => diff(&child, old, new, changed),
                    _ => changed.push(child),
                }
            }
        }
        (Value::Array(old), Value::Array(new))
            if old.len() == new.len() && old.iter().chain(new).all(Value::is_table) =>
        {
            for (index, (old, new)) in old.iter().zip(new).enumerate() {
                diff(&format!("{path}[{index}]"), old, new, changed);
            }
        }
        (old, new) if old != new => changed.push(path.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::config::{ListenerConfig, ListenerKind};

    fn listener(bind: &str) -> ListenerConfig {
        ListenerConfig {
            bind: bind.parse::<SocketAddr>().expect("an address"),
            kind: ListenerKind::Tcp,
            tls: None,
            auth: None,
            path: None,
        }
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let running = Config::default();
        let plan = plan(&running, running.clone());
        assert_eq!(plan.config, running);
        assert!(plan.applied.is_empty(), "{:?}", plan.applied);
        assert!(plan.need_restart.is_empty(), "{:?}", plan.need_restart);
    }

    #[test]
    fn limits_log_level_access_files_and_listener_auth_apply_now() {
        let running = Config::default();
        let mut new = running.clone();
        new.limits.max_connections = 7;
        new.limits.max_queued_messages = 9;
        new.log.level = "debug".into();
        new.password_file = Some("/etc/cairn/passwd".into());
        new.acl_file = Some("/etc/cairn/acl".into());
        new.listeners[0].auth = Some(crate::config::AuthMode::Password);
        let plan = plan(&running, new.clone());
        assert_eq!(plan.config, new);
        assert_eq!(
            plan.applied,
            [
                "acl_file",
                "limits.max_connections",
                "limits.max_queued_messages",
                "listeners[0].auth",
                "log.level",
                "password_file"
            ]
        );
        assert!(plan.need_restart.is_empty());
    }

    #[test]
    fn the_data_dir_store_sys_interval_and_threads_wait_for_a_restart() {
        let running = Config::default();
        let mut new = running.clone();
        new.data_dir = "/elsewhere".into();
        new.store.fsync = !running.store.fsync;
        new.sys_interval = running.sys_interval + 1;
        new.worker_threads = 3;
        new.limits.max_inflight = 3;
        let plan = plan(&running, new);
        assert_eq!(
            plan.need_restart,
            ["data_dir", "store.fsync", "sys_interval", "worker_threads"]
        );
        assert_eq!(plan.applied, ["limits.max_inflight"]);
        assert_eq!(plan.config.data_dir, running.data_dir);
        assert_eq!(plan.config.store, running.store);
        assert_eq!(plan.config.sys_interval, running.sys_interval);
        assert_eq!(plan.config.worker_threads, running.worker_threads);
        assert_eq!(plan.config.limits.max_inflight, 3);
    }

    #[test]
    fn a_moved_or_added_listener_waits_for_a_restart_and_keeps_every_listener() {
        let running = Config {
            listeners: vec![listener("127.0.0.1:1883")],
            ..Config::default()
        };
        let mut moved = running.clone();
        moved.listeners = vec![listener("127.0.0.1:1884")];
        let plan_moved = plan(&running, moved);
        assert_eq!(plan_moved.need_restart, ["listeners[0].bind"]);
        assert_eq!(plan_moved.config.listeners, running.listeners);

        let mut added = running.clone();
        added.listeners.push(listener("127.0.0.1:1885"));
        let plan_added = plan(&running, added);
        assert_eq!(plan_added.need_restart, ["listeners"]);
        assert_eq!(plan_added.config.listeners, running.listeners);
    }

    #[test]
    fn a_websocket_listener_s_kind_or_path_waits_for_a_restart() {
        let mut ws = listener("127.0.0.1:8080");
        ws.kind = ListenerKind::Ws;
        let running = Config {
            listeners: vec![ws],
            ..Config::default()
        };
        let mut moved = running.clone();
        moved.listeners[0].path = Some("/elsewhere".into());
        let plan_moved = plan(&running, moved);
        assert_eq!(plan_moved.need_restart, ["listeners[0].path"]);
        assert_eq!(plan_moved.config.listeners, running.listeners);

        let mut plain = running.clone();
        plain.listeners[0].kind = ListenerKind::Tcp;
        let plan_plain = plan(&running, plain);
        assert_eq!(plan_plain.need_restart, ["listeners[0].kind"]);
        assert_eq!(plan_plain.config.listeners, running.listeners);

        // The default path written out is the same path: nothing to restart for.
        let mut spelled = running.clone();
        spelled.listeners[0].path = Some("/mqtt".into());
        let plan_spelled = plan(&running, spelled);
        assert!(plan_spelled.need_restart.is_empty());
    }

    #[test]
    fn a_listener_s_tls_files_apply_now() {
        let tls = |cert: &str| crate::config::TlsConfig {
            cert: cert.into(),
            key: "/k.pem".into(),
            client_ca: None,
            client_auth: None,
            identity: Default::default(),
        };
        let running = Config {
            listeners: vec![ListenerConfig {
                bind: "127.0.0.1:8883".parse().expect("an address"),
                kind: ListenerKind::Tls,
                tls: Some(tls("/old.pem")),
                auth: None,
                path: None,
            }],
            ..Config::default()
        };
        let mut new = running.clone();
        new.listeners[0].tls = Some(tls("/new.pem"));
        let plan = plan(&running, new.clone());
        assert_eq!(plan.applied, ["listeners[0].tls.cert"]);
        assert!(plan.need_restart.is_empty());
        assert_eq!(plan.config, new);
    }

    #[test]
    fn bridges_are_named_as_one_key_when_their_number_changes() {
        let running = Config::default();
        let mut new = running.clone();
        new.bridges = toml::from_str::<Config>(
            r#"
            [[bridges]]
            name = "cloud"
            addresses = ["127.0.0.1:1883"]
            [[bridges.topics]]
            filter = "a/#"
            "#,
        )
        .expect("a bridge")
        .bridges;
        let plan = plan(&running, new);
        assert_eq!(plan.applied, ["bridges"]);
    }
}
