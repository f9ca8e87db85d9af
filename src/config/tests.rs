//! The configuration's unit tests: loading through every layer, the messages of every kind
//! of problem, each check, and the key table against the structs and `config/cairn.toml`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ::config::Map;

use super::keys::{self, expected_for, Bounds, Children, KeySpec, CONFIG_KEYS};
use super::load::{cairn_environment, load_layers};
use super::tree::{env_var_name, normalize_key};
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

#[test]
fn environment_overrides_the_file() {
    let config = load_from(
        Some("data_dir = \"/from/file\"\n[limits]\nmax_inflight = 10\n"),
        &[
            ("CAIRN_LIMITS__MAX_INFLIGHT", "64"),
            ("CAIRN_DATA_DIR", "/var/lib/cairn"),
            ("CAIRN_PASSWORD_FILE", "/etc/cairn/passwd"),
            ("CAIRN_LOG__LEVEL", "cairn=debug"),
            ("OTHER_VARIABLE", "ignored"),
        ],
        &Overrides::default(),
    )
    .expect("valid layers");
    assert_eq!(config.limits.max_inflight, 64);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/cairn"));
    assert_eq!(
        config.password_file,
        Some(PathBuf::from("/etc/cairn/passwd"))
    );
    assert_eq!(config.log.level, "cairn=debug");
}

#[test]
fn empty_environment_variable_counts_as_unset() {
    let config =
        load_from(None, &[("CAIRN_DATA_DIR", "")], &Overrides::default()).expect("valid layers");
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

/// A value of a wrong type or out of range from the environment names its variable.
#[test]
fn bad_value_from_environment_names_the_variable() {
    for value in ["many", "0"] {
        let problems = problems_of(load_from(
            None,
            &[("CAIRN_LIMITS__MAX_INFLIGHT", value)],
            &Overrides::default(),
        ));
        assert_eq!(keys_of(&problems), ["limits.max_inflight"]);
        let message = problems[0].to_string();
        assert!(
            message.contains("(from environment variable CAIRN_LIMITS__MAX_INFLIGHT)"),
            "{message}"
        );
        assert!(message.contains("1..=65535"), "{message}");
    }
}

/// Every value of a wrong type is reported, always in the same order (the key table's),
/// including values past a listener whose required `bind` or TLS `cert` is bad.
#[test]
fn every_value_of_a_wrong_type_is_reported_in_a_stable_order() {
    let toml = "sys_interval = \"often\"\nacl_file = [7]\n\
                [[listeners]]\nbind = 1883\nkind = \"udp\"\n\
                [[listeners]]\nbind = \"127.0.0.1:1884\"\nkind = \"tls\"\n\
                [listeners.tls]\ncert = [1]\nkey = [2]\nclient_auth = \"maybe\"\n\
                [limits]\nmax_inflight = \"lots\"\nqueue_full_policy = \"keep_all\"\n\
                [store]\nfsync = \"sure\"\n";
    let expected = [
        "acl_file",
        "listeners[0].bind",
        "listeners[0].kind",
        "listeners[1].tls.cert",
        "listeners[1].tls.key",
        "listeners[1].tls.client_auth",
        "limits.max_inflight",
        "limits.queue_full_policy",
        "sys_interval",
        "store.fsync",
    ];
    for _ in 0..8 {
        let problems = problems_of(load_toml(toml));
        assert_eq!(keys_of(&problems), expected);
    }
}

/// A file value of a TOML type its key does not take is refused, never converted: a float or
/// a boolean for an integer (10.5 was read as 11, `true` as 1), an integer or a string for a
/// boolean (0 and "off" were read as false, turning fsync off), a quoted number. The same text
/// from an environment variable, which can only be text, is converted as documented.
#[test]
fn values_of_another_toml_type_are_refused_not_converted() {
    let problems = problems_of(load_toml(
        "sys_interval = 10.5\nworker_threads = true\n\
         [limits]\nmax_connections = 1e3\nmax_keep_alive = -0.4\nqueue_qos0_offline = 1\n\
         max_inflight = \"20\"\n[store]\nfsync = \"off\"\ncommit_window_ms = 20\n",
    ));
    assert_eq!(
        keys_of(&problems),
        [
            "limits.max_connections",
            "limits.max_inflight",
            "limits.queue_qos0_offline",
            "limits.max_keep_alive",
            "sys_interval",
            "worker_threads",
            "store.fsync",
        ]
    );
    let message = problems[0].to_string();
    assert!(
        message.contains("1000") && message.contains("an integer"),
        "{message}"
    );
    let fsync = problems[6].to_string();
    assert!(
        fsync.contains("\"off\"") && fsync.contains("true or false"),
        "{fsync}"
    );
    let from_zero = problems_of(load_toml("[store]\nfsync = 0\n"));
    assert_eq!(keys_of(&from_zero), ["store.fsync"]);

    let config = load_from(
        None,
        &[("CAIRN_SYS_INTERVAL", "5"), ("CAIRN_STORE__FSYNC", "false")],
        &Overrides::default(),
    )
    .expect("text from the environment is converted");
    assert_eq!(config.sys_interval, 5);
    assert!(!config.store.fsync);
}

/// A word that is none of a key's words is told with the words allowed, without the names of
/// Rust's types.
#[test]
fn an_unknown_word_is_told_without_rust_type_names() {
    let problems = problems_of(load_toml("[limits]\nqueue_full_policy = \"drop_newest\"\n"));
    let message = problems[0].to_string();
    assert!(
        message.contains("\"drop_oldest\" or \"refuse_newest\""),
        "{message}"
    );
    assert!(!message.contains("QueueFullPolicy"), "{message}");
}

/// A table made of environment variables (`CAIRN_LISTENERS__0__BIND` makes `listeners` a
/// table, `CAIRN__LOG__LEVEL` an unknown `_log`) is reported naming the variable that made it.
#[test]
fn a_table_from_the_environment_names_its_variable() {
    let problems = problems_of(load_from(
        None,
        &[
            ("CAIRN_LISTENERS__0__BIND", "127.0.0.1:1883"),
            ("CAIRN__LOG__LEVEL", "debug"),
            ("CAIRN_LIMITS__MAX_INFLIGHT__X", "1"),
        ],
        &Overrides::default(),
    ));
    let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
    for variable in [
        "CAIRN__LOG__LEVEL",
        "CAIRN_LISTENERS__0__BIND",
        "CAIRN_LIMITS__MAX_INFLIGHT__X",
    ] {
        assert!(
            messages
                .iter()
                .any(|message| message.contains(&format!("environment variable {variable}"))),
            "{variable} is named: {messages:?}"
        );
    }
}

/// A value of a wrong type is reported once: what is read in its place is not checked.
#[test]
fn a_bad_tls_table_is_reported_once() {
    let listener = "[[listeners]]\nbind = \"127.0.0.1:8883\"\nkind = \"tls\"\n";
    for (tls, key) in [
        ("tls = 3\n", "listeners[0].tls"),
        ("[listeners.tls]\nkey = \"k\"\n", "listeners[0].tls.cert"),
    ] {
        let problems = problems_of(load_toml(&format!("{listener}{tls}")));
        assert_eq!(keys_of(&problems), [key], "{tls}");
    }
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

/// A queue bound of 0 would deliver nothing (every message passes through a queue), and is
/// not Mosquitto's "no limit": it is refused, from a file and from code alike.
#[test]
fn a_queue_bound_of_zero_is_refused() {
    let problems = problems_of(load_toml(
        "[limits]\nmax_queued_messages = 0\nmax_queued_bytes = 0\nmax_queued_bytes_total = 0\n\
         [[bridges]]\nname = \"up\"\naddresses = [\"127.0.0.1:1883\"]\n\
         [bridges.queue]\nmax_messages = 0\nmax_bytes = 0\nin_memory_bytes = 0\n\
         [[bridges.topics]]\nfilter = \"#\"\n",
    ));
    assert_eq!(
        keys_of(&problems),
        [
            "limits.max_queued_messages",
            "limits.max_queued_bytes",
            "limits.max_queued_bytes_total",
            "bridges[0].queue.max_messages",
            "bridges[0].queue.max_bytes",
        ]
    );
    let mut config = Config::default();
    config.limits.max_queued_messages = 0;
    config.limits.max_queued_bytes_total = 0;
    let error = config.validate().expect_err("a queue bound of 0");
    assert_eq!(
        keys_of(error.problems()),
        [
            "limits.max_queued_messages",
            "limits.max_queued_bytes_total"
        ]
    );
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
    config.worker_threads = 257;
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
            "worker_threads",
        ]
    );
}

/// Automatic: one core is left to the store's writer thread, and there is always a worker.
#[test]
fn worker_threads_are_one_fewer_than_the_cores_unless_set() {
    let automatic = Config::default();
    for (cores, workers) in [(1, 1), (2, 1), (4, 3), (8, 7)] {
        assert_eq!(automatic.worker_threads(cores), workers, "{cores} cores");
    }
    let set = Config {
        worker_threads: 2,
        ..Config::default()
    };
    assert_eq!(set.worker_threads(1), 2);
    assert_eq!(set.worker_threads(8), 2);
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

/// Each range is stated once, as a `Bounds`; the message says exactly it.
#[test]
fn range_messages_say_the_checked_bounds() {
    for (key, bounds, range) in [
        (
            "limits.max_packet_size",
            keys::MAX_PACKET_SIZE,
            "2..=268435460",
        ),
        (
            "limits.max_topic_length",
            keys::MAX_TOPIC_LENGTH,
            "1..=65535",
        ),
        ("sys_interval", keys::SYS_INTERVAL, "0..=86400"),
        ("worker_threads", keys::WORKER_THREADS, "0..=256"),
        ("limits.max_inflight", keys::MAX_INFLIGHT, "1..=65535"),
        ("limits.connect_timeout", keys::CONNECT_TIMEOUT, "1..=3600"),
        (
            "limits.max_topic_levels",
            keys::MAX_TOPIC_LEVELS,
            "1..=1024",
        ),
        ("store.commit_window_ms", keys::COMMIT_WINDOW_MS, "0..=1000"),
        ("store.cache_bytes", keys::CACHE_BYTES, "0..=1073741824"),
    ] {
        let expected = expected_for(key);
        assert!(
            expected.starts_with(&bounds.to_string()),
            "{key}: {expected}"
        );
        assert!(expected.contains(range), "{key}: {expected}");
    }
    assert_eq!(
        expected_for("limits.max_connections"),
        "an integer of at least 1"
    );
}

/// The checks apply the same bounds: the edges pass, one beyond fails.
#[test]
fn checks_refuse_just_beyond_the_bounds() {
    let problem_keys = |adjust: &dyn Fn(&mut Config)| {
        let mut config = Config::default();
        adjust(&mut config);
        config
            .validate()
            .err()
            .map(|error| keys_of(error.problems()).join(" "))
            .unwrap_or_default()
    };
    let connect = keys::CONNECT_TIMEOUT;
    let window = keys::COMMIT_WINDOW_MS;
    let levels = keys::MAX_TOPIC_LEVELS;
    assert_eq!(
        problem_keys(&|c| c.limits.connect_timeout = connect.max),
        ""
    );
    assert_eq!(
        problem_keys(&|c| c.limits.connect_timeout = connect.max + 1),
        "limits.connect_timeout"
    );
    assert_eq!(problem_keys(&|c| c.store.commit_window_ms = window.max), "");
    assert_eq!(
        problem_keys(&|c| c.store.commit_window_ms = window.max + 1),
        "store.commit_window_ms"
    );
    let cache = keys::CACHE_BYTES;
    assert_eq!(problem_keys(&|c| c.store.cache_bytes = cache.max), "");
    assert_eq!(
        problem_keys(&|c| c.store.cache_bytes = cache.max + 1),
        "store.cache_bytes"
    );
    let most_levels = usize::try_from(levels.max).expect("fits");
    assert_eq!(
        problem_keys(&|c| c.limits.max_topic_levels = most_levels),
        ""
    );
    assert_eq!(
        problem_keys(&|c| c.limits.max_topic_levels = most_levels + 1),
        "limits.max_topic_levels"
    );
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
        auth: None,
        path: None,
    }
}

fn tls_files() -> TlsConfig {
    TlsConfig {
        cert: PathBuf::from("cert.pem"),
        key: PathBuf::from("key.pem"),
        client_ca: None,
        client_auth: None,
        identity: CertificateIdentity::Cn,
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
fn client_auth_and_identity_need_client_ca() {
    let mut tls = tls_files();
    tls.client_auth = Some(ClientAuth::Optional);
    tls.identity = CertificateIdentity::San;
    let problems = validate_listeners(vec![tls_listener(Some(tls.clone()))]);
    assert_eq!(
        keys_of(&problems),
        ["listeners[0].tls.client_auth", "listeners[0].tls.identity"]
    );
    tls.client_ca = Some(PathBuf::from("ca.pem"));
    assert!(validate_listeners(vec![tls_listener(Some(tls.clone()))]).is_empty());
    // Asked for explicitly, "required" without a CA would leave the listener open to clients
    // without a certificate: refused as well.
    tls.client_ca = None;
    tls.client_auth = Some(ClientAuth::Required);
    tls.identity = CertificateIdentity::Cn;
    let problems = validate_listeners(vec![tls_listener(Some(tls))]);
    assert_eq!(keys_of(&problems), ["listeners[0].tls.client_auth"]);
    assert!(
        problems[0]
            .to_string()
            .contains("\"required\" without client_ca"),
        "{problems:?}"
    );
}

#[test]
fn websocket_listeners_are_read_with_their_path() {
    let toml = r#"
        [[listeners]]
        bind = "127.0.0.1:8080"
        kind = "ws"
        [[listeners]]
        bind = "127.0.0.1:8443"
        kind = "wss"
        path = "/gateway/mqtt"
        [listeners.tls]
        cert = "cert.pem"
        key = "key.pem"
    "#;
    let config = load_from(Some(toml), &[], &Overrides::default()).expect("valid listeners");
    let kinds: Vec<_> = config.listeners.iter().map(|l| l.kind).collect();
    assert_eq!(kinds, [ListenerKind::Ws, ListenerKind::Wss]);
    assert_eq!(config.listeners[0].websocket_path(), Some("/mqtt"));
    assert_eq!(config.listeners[1].websocket_path(), Some("/gateway/mqtt"));
    assert_eq!(tls_listener(None).websocket_path(), None);
}

#[test]
fn a_wss_listener_needs_a_tls_table_and_a_ws_listener_refuses_one() {
    let mut wss = tls_listener(None);
    wss.kind = ListenerKind::Wss;
    assert_eq!(
        keys_of(&validate_listeners(vec![wss.clone()])),
        ["listeners[0].tls"]
    );
    wss.tls = Some(tls_files());
    assert!(validate_listeners(vec![wss.clone()]).is_empty());

    let mut ws = wss;
    ws.kind = ListenerKind::Ws;
    let problems = validate_listeners(vec![ws]);
    assert_eq!(keys_of(&problems), ["listeners[0].tls"]);
    assert!(
        problems[0].to_string().contains("kind = \"ws\""),
        "{}",
        problems[0]
    );
}

#[test]
fn a_path_is_taken_only_on_websocket_listeners_and_only_a_requestable_one() {
    let with_path = |kind, path: &str| {
        let mut listener = Config::default().listeners[0].clone();
        listener.kind = kind;
        listener.path = Some(path.to_string());
        validate_listeners(vec![listener])
    };
    assert!(with_path(ListenerKind::Ws, "/").is_empty());
    assert!(with_path(ListenerKind::Ws, "/mqtt/v1").is_empty());
    let on_tcp = with_path(ListenerKind::Tcp, "/mqtt");
    assert_eq!(keys_of(&on_tcp), ["listeners[0].path"]);
    let message = on_tcp[0].to_string();
    assert!(message.contains("kind = \"tcp\""), "{message}");
    assert!(message.contains("\"ws\" or \"wss\""), "{message}");
    for bad in ["mqtt", "", "/mq tt", "/mqtt?x=1", "/mqtt#top", "/mqtté"] {
        let problems = with_path(ListenerKind::Ws, bad);
        assert_eq!(keys_of(&problems), ["listeners[0].path"], "path {bad:?}");
    }
}

#[test]
fn certificate_auth_takes_a_wss_listener_that_checks_certificates() {
    let mut wss = certificate_checking_listener();
    wss.kind = ListenerKind::Wss;
    wss.auth = Some(AuthMode::Certificate);
    assert!(validation_problems(Config {
        listeners: vec![wss],
        ..Config::default()
    })
    .is_empty());
}

fn validation_problems(config: Config) -> Vec<Problem> {
    config
        .validate()
        .err()
        .map(|error| error.problems().to_vec())
        .unwrap_or_default()
}

/// A TLS listener that verifies client certificates against `client_ca`, required.
fn certificate_checking_listener() -> ListenerConfig {
    let mut tls = tls_files();
    tls.client_ca = Some(PathBuf::from("ca.pem"));
    tls_listener(Some(tls))
}

#[test]
fn password_auth_needs_a_password_file_and_is_its_default() {
    let mut listener = Config::default().listeners[0].clone();
    listener.auth = Some(AuthMode::Password);
    let without_file = Config {
        listeners: vec![listener.clone()],
        ..Config::default()
    };
    let problems = validation_problems(without_file.clone());
    assert_eq!(keys_of(&problems), ["listeners[0].auth"]);
    assert!(problems[0].to_string().contains("without password_file"));

    let with_file = Config {
        password_file: Some(PathBuf::from("/etc/cairn/passwd")),
        ..without_file
    };
    assert!(validation_problems(with_file.clone()).is_empty());
    let default_listener = &Config::default().listeners[0];
    assert_eq!(
        with_file.listener_auth(default_listener),
        AuthMode::Password
    );
    assert_eq!(
        Config::default().listener_auth(default_listener),
        AuthMode::Anonymous
    );
    listener.auth = Some(AuthMode::PasswordOrCertificate);
    let problems = validation_problems(Config {
        listeners: vec![listener],
        ..Config::default()
    });
    assert_eq!(
        keys_of(&problems),
        ["listeners[0].auth", "listeners[0].auth"]
    );
}

#[test]
fn certificate_auth_needs_a_listener_that_verifies_client_certificates() {
    let with_auth = |mut listener: ListenerConfig, auth| {
        listener.auth = Some(auth);
        validation_problems(Config {
            listeners: vec![listener],
            ..Config::default()
        })
    };
    let plain = Config::default().listeners[0].clone();
    let problems = with_auth(plain, AuthMode::Certificate);
    assert_eq!(keys_of(&problems), ["listeners[0].auth"]);
    assert!(problems[0].to_string().contains("without tls.client_ca"));
    let tls_only = tls_listener(Some(tls_files()));
    assert_eq!(
        keys_of(&with_auth(tls_only, AuthMode::Certificate)),
        ["listeners[0].auth"]
    );
    assert!(with_auth(certificate_checking_listener(), AuthMode::Certificate).is_empty());

    let mut optional = certificate_checking_listener();
    if let Some(tls) = &mut optional.tls {
        tls.client_auth = Some(ClientAuth::Optional);
    }
    let problems = with_auth(optional.clone(), AuthMode::Certificate);
    assert!(problems[0].to_string().contains("optional"), "{problems:?}");
    let password_file = Some(PathBuf::from("/etc/cairn/passwd"));
    optional.auth = Some(AuthMode::PasswordOrCertificate);
    assert!(validation_problems(Config {
        listeners: vec![optional],
        password_file,
        ..Config::default()
    })
    .is_empty());
}

#[test]
fn keys_of_earlier_releases_say_what_to_write_instead() {
    let toml = "allow_anonymous = false\n[[listeners]]\nbind = \"127.0.0.1:8883\"\n\
                kind = \"tls\"\n[listeners.tls]\ncert = \"c\"\nkey = \"k\"\n\
                client_ca = \"ca\"\ncn_as_username = true\n";
    let error = load_toml(toml).expect_err("replaced keys");
    assert_eq!(
        keys_of(error.problems()),
        ["allow_anonymous", "listeners[0].tls.cn_as_username"]
    );
    let message = error.to_string();
    assert!(message.contains("`allow_anonymous` (from "), "{message}");
    assert!(message.contains("is no longer read"), "{message}");
    assert!(message.contains("auth = \"certificate\""), "{message}");
}

#[test]
fn duplicate_bind_addresses_are_refused_except_port_zero() {
    let tcp = |port| ListenerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], port)),
        kind: ListenerKind::Tcp,
        tls: None,
        auth: None,
        path: None,
    };
    let problems = validate_listeners(vec![tcp(1883), tcp(1884), tcp(1883)]);
    assert_eq!(keys_of(&problems), ["listeners[2].bind"]);
    assert!(problems[0]
        .to_string()
        .contains("listeners[0] binds 127.0.0.1:1883"));
    assert!(validate_listeners(vec![tcp(0), tcp(0)]).is_empty());
}

/// A wildcard listener takes its port on every address of its family: a loopback listener on
/// the same port beside it cannot be bound (Linux says "address in use", as it does to
/// Mosquitto), whichever comes first. The families never meet: IPv6 listeners take IPv6 only.
#[test]
fn a_wildcard_listener_takes_its_port_on_every_address_of_its_family() {
    let at = |bind: &str| ListenerConfig {
        bind: bind.parse().expect("an address"),
        kind: ListenerKind::Tcp,
        tls: None,
        auth: None,
        path: None,
    };
    let problems = validate_listeners(vec![at("127.0.0.1:1883"), at("0.0.0.0:1883")]);
    assert_eq!(keys_of(&problems), ["listeners[1].bind"]);
    let problems = validate_listeners(vec![at("[::]:1883"), at("[::1]:1883")]);
    assert_eq!(keys_of(&problems), ["listeners[1].bind"]);
    for apart in [
        vec![at("0.0.0.0:1883"), at("[::]:1883")],
        vec![at("0.0.0.0:1883"), at("127.0.0.1:1884")],
        vec![at("127.0.0.1:1883"), at("192.168.1.2:1883")],
        vec![at("0.0.0.0:0"), at("127.0.0.1:0")],
    ] {
        assert!(validate_listeners(apart.clone()).is_empty(), "{apart:?}");
    }
    let problems = problems_of(load_toml(
        "[[listeners]]\nbind = \"0.0.0.0:1883\"\n[metrics]\nbind = \"127.0.0.1:1883\"\n",
    ));
    assert_eq!(keys_of(&problems), ["metrics.bind"]);
}

#[test]
fn unparsable_log_filter_is_refused() {
    let mut config = Config::default();
    config.log.level = "cairn=verbose".to_string();
    let error = config.validate().expect_err("bad filter");
    assert_eq!(keys_of(error.problems()), ["log.level"]);
    // Mosquitto's word for warn: to tracing a target, which would turn every other line off.
    config.log.level = "warning".to_string();
    let error = config.validate().expect_err("not a level");
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

/// A problem with a value set on the command line names the flag, not the file it replaced.
#[test]
fn bad_value_from_a_flag_names_the_flag() {
    let addr: SocketAddr = "127.0.0.1:2883".parse().expect("addr");
    let overrides = Overrides {
        listen: vec![addr, addr],
        data_dir: Some(PathBuf::new()),
    };
    let toml = "data_dir = \"/var/lib/cairn\"\n[[listeners]]\nbind = \"127.0.0.1:2883\"\n";
    let problems = problems_of(load_from(Some(toml), &[], &overrides));
    assert_eq!(keys_of(&problems), ["data_dir", "listeners[1].bind"]);
    assert!(problems[0].to_string().contains("(from --data-dir)"));
    assert!(problems[1].to_string().contains("(from --listen)"));
}

/// A configuration with every optional setting present, so that it shows every key.
fn every_key_set() -> Config {
    let mut tls = tls_files();
    tls.client_ca = Some(PathBuf::from("ca.pem"));
    tls.client_auth = Some(ClientAuth::Required);
    let mut bridge = load_bridge(ISSUE_BRIDGE_EXAMPLE);
    bridge.state_topic = Some("gw-7/bridge/state".to_string());
    let mut listener = tls_listener(Some(tls));
    listener.kind = ListenerKind::Wss;
    listener.path = Some("/mqtt".to_string());
    listener.auth = Some(AuthMode::PasswordOrCertificate);
    Config {
        password_file: Some(PathBuf::from("/etc/cairn/passwd")),
        acl_file: Some(PathBuf::from("/etc/cairn/acl")),
        listeners: vec![listener],
        bridges: vec![bridge],
        metrics: Some(MetricsConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 9883)),
        }),
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

/// The `[[bridges]]` example of the bridge's specification, verbatim but for its comments.
const ISSUE_BRIDGE_EXAMPLE: &str = r#"
[[bridges]]
name = "cloud"
addresses = ["mqtt.example.com:8883", "mqtt2.example.com:8883"]
protocol = "5"
client_id = "gw-7"
username = "gw-7"
password_file = "/etc/cairn/cloud.pass"
keep_alive = 60
session_expiry = 604800
max_inflight = 32
rate_limit = 0
[bridges.tls]
ca = "/etc/cairn/cloud-ca.pem"
cert = "/etc/cairn/gw.pem"
key = "/etc/cairn/gw.key"
server_name = "mqtt.example.com"
alpn = ["x-amzn-mqtt-ca"]
[bridges.queue]
max_messages = 1000000
max_bytes = 1073741824
policy = "drop_oldest"
[[bridges.topics]]
filter = "sensors/#"
direction = "out"
qos = 1
local_prefix = ""
remote_prefix = "site-7/"
"#;

/// The one bridge of `toml`, which must load.
fn load_bridge(toml: &str) -> BridgeConfig {
    let mut config = load_toml(toml).expect("a valid bridge");
    assert_eq!(config.bridges.len(), 1);
    config.bridges.remove(0)
}

#[test]
fn no_bridges_by_default() {
    assert!(Config::default().bridges.is_empty());
}

#[test]
fn the_specification_example_loads() {
    let bridge = load_bridge(ISSUE_BRIDGE_EXAMPLE);
    assert_eq!(bridge.name, "cloud");
    assert_eq!(
        bridge.addresses,
        ["mqtt.example.com:8883", "mqtt2.example.com:8883"]
    );
    assert_eq!(bridge.protocol, BridgeProtocol::V5);
    assert_eq!(bridge.client_id(), "gw-7");
    assert_eq!(bridge.username.as_deref(), Some("gw-7"));
    assert_eq!(
        bridge.password_file,
        Some(PathBuf::from("/etc/cairn/cloud.pass"))
    );
    let tls = bridge.tls.as_ref().expect("a tls table");
    assert_eq!(tls.ca, Some(PathBuf::from("/etc/cairn/cloud-ca.pem")));
    assert_eq!(tls.key, Some(PathBuf::from("/etc/cairn/gw.key")));
    assert_eq!(tls.server_name.as_deref(), Some("mqtt.example.com"));
    assert_eq!(tls.alpn, ["x-amzn-mqtt-ca"]);
    let queue = bridge.queue.resolved(&Limits::default());
    assert_eq!(queue.max_messages, 1_000_000);
    assert_eq!(queue.max_bytes, 1_073_741_824);
    assert_eq!(queue.policy, QueueFullPolicy::DropOldest);
    assert_eq!(
        bridge.topics,
        [BridgeTopic {
            filter: "sensors/#".to_string(),
            direction: Direction::Out,
            qos: 1,
            local_prefix: String::new(),
            remote_prefix: "site-7/".to_string(),
        }]
    );
}

#[test]
fn a_bridge_queue_may_hold_more_or_less_in_memory() {
    let bridge = load_bridge(
        "[[bridges]]\nname = \"up\"\naddresses = [\"127.0.0.1:1883\"]\n\
         [bridges.queue]\nin_memory_bytes = 5000\n[[bridges.topics]]\nfilter = \"#\"\n",
    );
    assert_eq!(
        bridge.queue.resolved(&Limits::default()).in_memory_bytes,
        5000
    );
    let problems = problems_of(load_toml(
        "[[bridges]]\nname = \"up\"\naddresses = [\"127.0.0.1:1883\"]\n\
         [bridges.queue]\nin_memory_bytes = -1\n[[bridges.topics]]\nfilter = \"#\"\n",
    ));
    assert_eq!(keys_of(&problems), ["bridges[0].queue.in_memory_bytes"]);
    assert!(
        problems[0].to_string().contains("an integer of at least 0"),
        "{}",
        problems[0]
    );
}

/// Only `name`, `addresses` and a topic's `filter` are needed; the rest has its documented
/// default.
#[test]
fn a_minimal_bridge_gets_the_defaults() {
    let bridge = load_bridge(
        "[[bridges]]\nname = \"up\"\naddresses = [\"127.0.0.1:1883\"]\n\
         [[bridges.topics]]\nfilter = \"#\"\n",
    );
    assert_eq!(bridge.protocol, BridgeProtocol::V5);
    assert_eq!(bridge.client_id, None);
    assert!(bridge.client_id().starts_with("cairn-"));
    assert!(bridge.client_id().ends_with("-up"));
    assert_eq!(bridge.username, None);
    assert_eq!(bridge.password_file, None);
    assert_eq!(bridge.keep_alive, 60);
    assert_eq!(bridge.session_expiry, 604_800);
    assert_eq!(bridge.max_inflight, 20);
    assert_eq!(bridge.rate_limit, 0);
    assert_eq!(bridge.max_qos, 2);
    assert!(bridge.retain && bridge.try_private && bridge.fallback_311);
    assert_eq!(bridge.connect_timeout, 30);
    assert_eq!(bridge.reconnect_min, 1);
    assert_eq!(bridge.reconnect_max, 120);
    assert_eq!(bridge.stable_after, 60);
    assert_eq!(bridge.state_topic, None);
    assert_eq!(bridge.tls, None);
    assert_eq!(bridge.queue, BridgeQueue::default());
    let limits = Limits::default();
    let queue = bridge.queue.resolved(&limits);
    assert_eq!(queue.max_messages, limits.max_queued_messages);
    assert_eq!(queue.max_bytes, limits.max_queued_bytes);
    assert_eq!(queue.policy, limits.queue_full_policy);
    assert_eq!(queue.in_memory_bytes, 64 * 1024 * 1024);
    let topic = &bridge.topics[0];
    assert_eq!(topic.direction, Direction::Out);
    assert_eq!(topic.qos, 1);
    assert_eq!(
        (topic.local_prefix.as_str(), topic.remote_prefix.as_str()),
        ("", "")
    );
}

#[test]
fn protocol_3_1_1_and_every_direction_load() {
    let bridge = load_bridge(
        "[[bridges]]\nname = \"old\"\naddresses = [\"[::1]:1883\"]\nprotocol = \"3.1.1\"\n\
         [[bridges.topics]]\nfilter = \"a\"\ndirection = \"in\"\n\
         [[bridges.topics]]\nfilter = \"b\"\ndirection = \"both\"\nqos = 0\n",
    );
    assert_eq!(bridge.protocol, BridgeProtocol::V311);
    assert_eq!(bridge.topics[0].direction, Direction::In);
    assert_eq!(bridge.topics[1].direction, Direction::Both);
    assert_eq!(bridge.topics[1].qos, 0);
}

#[test]
fn unknown_keys_in_bridges_are_named_at_every_level() {
    let toml = "[[bridges]]\nname = \"a\"\naddresses = [\"h:1\"]\ncleansession = false\n\
                [bridges.tls]\ncafile = \"x\"\n[bridges.queue]\nsize = 1\n\
                [[bridges.topics]]\nfilter = \"#\"\npattern = \"#\"\n";
    let problems = problems_of(load_toml(toml));
    assert_eq!(
        keys_of(&problems),
        [
            "bridges[0].cleansession",
            "bridges[0].tls.cafile",
            "bridges[0].queue.size",
            "bridges[0].topics[0].pattern",
        ]
    );
    let message = problems[0].to_string();
    assert!(
        message.contains("allowed here: name, addresses, protocol"),
        "{message}"
    );
}

/// Values of a wrong type in several bridges and rules, and a missing required key, are all
/// reported, in the key table's order.
#[test]
fn every_bridge_value_of_a_wrong_type_is_reported() {
    let toml = "[[bridges]]\nname = \"a\"\naddresses = [\"h:1\"]\nkeep_alive = \"often\"\n\
                protocol = 5\n\
                [[bridges.topics]]\nfilter = \"x\"\n\
                [[bridges.topics]]\nfilter = \"y\"\ndirection = \"sideways\"\nqos = \"high\"\n\
                [[bridges]]\naddresses = \"h:1\"\n[bridges.queue]\npolicy = \"keep\"\n\
                [[bridges.topics]]\ndirection = \"in\"\n";
    let expected = [
        "bridges[0].protocol",
        "bridges[0].keep_alive",
        "bridges[0].topics[1].direction",
        "bridges[0].topics[1].qos",
        "bridges[1].name",
        "bridges[1].addresses",
        "bridges[1].queue.policy",
        "bridges[1].topics[0].filter",
    ];
    for _ in 0..4 {
        let problems = problems_of(load_toml(toml));
        assert_eq!(keys_of(&problems), expected);
    }
    let problems = problems_of(load_toml(toml));
    let protocol = problems[0].to_string();
    assert!(
        protocol.contains("expected \"5\" or \"3.1.1\""),
        "{protocol}"
    );
    let name = problems[4].to_string();
    assert!(name.contains("got nothing"), "{name}");
}

/// A valid bridge, to spoil one setting at a time.
fn valid_bridge() -> BridgeConfig {
    load_bridge(
        "[[bridges]]\nname = \"cloud\"\naddresses = [\"mqtt.example.com:8883\"]\n\
         [[bridges.topics]]\nfilter = \"sensors/#\"\n",
    )
}

fn bridge_problems(bridges: Vec<BridgeConfig>) -> Vec<Problem> {
    let config = Config {
        bridges,
        ..Config::default()
    };
    config
        .validate()
        .err()
        .map(|error| error.problems().to_vec())
        .unwrap_or_default()
}

fn spoiled(spoil: impl Fn(&mut BridgeConfig)) -> Vec<String> {
    let mut bridge = valid_bridge();
    spoil(&mut bridge);
    keys_of(&bridge_problems(vec![bridge]))
        .into_iter()
        .map(String::from)
        .collect()
}

#[test]
fn a_valid_bridge_passes_the_checks() {
    assert!(bridge_problems(vec![valid_bridge()]).is_empty());
    assert!(bridge_problems(vec![load_bridge(ISSUE_BRIDGE_EXAMPLE)]).is_empty());
}

#[test]
fn bridge_names_are_safe_short_and_unique() {
    for name in ["", "has space", "slash/", "dollar$", "é", &"n".repeat(65)] {
        assert_eq!(
            spoiled(|b| b.name = name.to_string()),
            ["bridges[0].name"],
            "{name:?}"
        );
    }
    assert!(spoiled(|b| b.name = "A-z_09".repeat(10)).is_empty());
    let mut second = valid_bridge();
    second.addresses = vec!["other.example.com:1883".to_string()];
    let problems = bridge_problems(vec![valid_bridge(), valid_bridge(), second]);
    assert_eq!(keys_of(&problems), ["bridges[1].name", "bridges[2].name"]);
    assert!(problems[0].to_string().contains("bridges[0] has it"));
}

/// [MQTT-3.1.2-22] A 3.1.1 CONNECT carries a password only with a user name: a 3.1.1 bridge
/// with a password file and no username is refused (it would never connect), a v5 one not.
#[test]
fn a_3_1_1_bridge_with_a_password_needs_a_username() {
    let password_only = |protocol| {
        move |b: &mut BridgeConfig| {
            b.protocol = protocol;
            b.password_file = Some("/etc/cairn/cloud.pass".into());
        }
    };
    assert_eq!(
        spoiled(password_only(BridgeProtocol::V311)),
        ["bridges[0].password_file"]
    );
    assert!(spoiled(password_only(BridgeProtocol::V5)).is_empty());
    assert!(spoiled(|b| {
        password_only(BridgeProtocol::V311)(b);
        b.username = Some("gw-7".into());
    })
    .is_empty());
}

/// A bridge named `name` to `address`, with `client_id` when given.
fn bridge_with_id(name: &str, address: &str, client_id: Option<&str>) -> BridgeConfig {
    let mut bridge = valid_bridge();
    bridge.name = name.to_string();
    bridge.addresses = vec![address.to_string()];
    bridge.client_id = client_id.map(String::from);
    bridge
}

/// Two bridges with one client id upstream would take each other's session over in a loop:
/// refused, naming both bridges and the key, for two explicit ids and for an explicit id equal
/// to another bridge's default `cairn-<hostname>-<name>`, whatever their addresses.
#[test]
fn two_bridges_never_share_a_client_id_upstream() {
    let problems = bridge_problems(vec![
        bridge_with_id("aws", "a.example.com:8883", Some("gw-7")),
        bridge_with_id("hive", "h.example.com:8883", None),
        bridge_with_id("aws-2", "a.example.com:8883", Some("gw-7")),
    ]);
    assert_eq!(keys_of(&problems), ["bridges[2].client_id"]);
    let message = problems[0].to_string();
    for part in ["bridge \"aws-2\"", "bridge \"aws\" has it", "\"gw-7\""] {
        assert!(message.contains(part), "{part} in {message}");
    }

    let default_of_hive = bridge_with_id("hive", "h.example.com:8883", None).client_id();
    let problems = bridge_problems(vec![
        bridge_with_id("hive", "h.example.com:8883", None),
        bridge_with_id(
            "other",
            "elsewhere.example.com:1883",
            Some(&default_of_hive),
        ),
    ]);
    assert_eq!(keys_of(&problems), ["bridges[1].client_id"]);
    let message = problems[0].to_string();
    assert!(
        message.contains("the default of bridge \"hive\" has it"),
        "{message}"
    );

    let distinct = bridge_problems(vec![
        bridge_with_id("a", "h.example.com:8883", Some("gw-a")),
        bridge_with_id("b", "h.example.com:8883", Some("gw-b")),
        bridge_with_id("c", "h.example.com:8883", None),
        bridge_with_id("d", "h.example.com:8883", None),
    ]);
    assert!(distinct.is_empty(), "{distinct:?}");
}

#[test]
fn bridge_addresses_are_needed_and_each_checked() {
    assert_eq!(spoiled(|b| b.addresses.clear()), ["bridges[0].addresses"]);
    let problems = {
        let mut bridge = valid_bridge();
        bridge.addresses = ["ok.example:1", "no-port", "::1:1883", "[::1]:1883"]
            .map(String::from)
            .to_vec();
        bridge_problems(vec![bridge])
    };
    assert_eq!(
        keys_of(&problems),
        ["bridges[0].addresses[1]", "bridges[0].addresses[2]"]
    );
    let message = problems[1].to_string();
    assert!(message.contains("in brackets"), "{message}");
}

#[test]
fn bridge_strings_must_be_sendable() {
    assert_eq!(
        spoiled(|b| b.client_id = Some(String::new())),
        ["bridges[0].client_id"]
    );
    assert_eq!(
        spoiled(|b| b.username = Some("a\0b".to_string())),
        ["bridges[0].username"]
    );
    assert_eq!(
        spoiled(|b| b.client_id = Some("x".repeat(65_536))),
        ["bridges[0].client_id"]
    );
    assert_eq!(
        spoiled(|b| b.password_file = Some(PathBuf::new())),
        ["bridges[0].password_file"]
    );
    assert!(spoiled(|b| b.username = Some(String::new())).is_empty());
}

/// The state topic is a topic name, and not a `$` one: clouds refuse those, as Will too.
#[test]
fn bridge_state_topic_is_a_plain_topic_name() {
    for topic in ["", "a/+", "a/#", "$SYS/broker/connection/gw/state", "a\0"] {
        assert_eq!(
            spoiled(|b| b.state_topic = Some(topic.to_string())),
            ["bridges[0].state_topic"],
            "{topic:?}"
        );
    }
    assert!(spoiled(|b| b.state_topic = Some("gw-7/bridge/state".to_string())).is_empty());
}

/// Sets one of a bridge's integers; `None` when its type cannot hold the value.
type SetBridge = fn(&mut BridgeConfig, u64) -> Option<()>;

/// Each range's edges pass and one beyond fails.
#[test]
fn bridge_ranges_are_checked_at_their_edges() {
    let cases: [(&str, Bounds, SetBridge); 8] = [
        ("keep_alive", keys::BRIDGE_KEEP_ALIVE, |b, v| {
            b.keep_alive = v.try_into().ok()?;
            Some(())
        }),
        ("max_inflight", keys::MAX_INFLIGHT, |b, v| {
            b.max_inflight = v.try_into().ok()?;
            Some(())
        }),
        ("max_qos", keys::QOS, |b, v| {
            b.max_qos = v.try_into().ok()?;
            Some(())
        }),
        ("max_packet_size", keys::MAX_PACKET_SIZE, |b, v| {
            b.max_packet_size = v.try_into().ok()?;
            Some(())
        }),
        ("connect_timeout", keys::CONNECT_TIMEOUT, |b, v| {
            b.connect_timeout = v.try_into().ok()?;
            Some(())
        }),
        ("reconnect_min", keys::RECONNECT_MIN, |b, v| {
            b.reconnect_min = v.try_into().ok()?;
            b.reconnect_max = b.reconnect_max.max(b.reconnect_min);
            Some(())
        }),
        ("reconnect_max", keys::RECONNECT_MAX, |b, v| {
            b.reconnect_max = v.try_into().ok()?;
            Some(())
        }),
        ("stable_after", keys::STABLE_AFTER, |b, v| {
            b.stable_after = v.try_into().ok()?;
            Some(())
        }),
    ];
    for (name, bounds, set) in cases {
        let problems_with = |value: u64| {
            let mut bridge = valid_bridge();
            set(&mut bridge, value)?;
            Some(keys_of(&bridge_problems(vec![bridge])).join(" "))
        };
        let key = format!("bridges[0].{name}");
        for edge in [bounds.min, bounds.max] {
            assert_eq!(problems_with(edge).as_deref(), Some(""), "{key} = {edge}");
        }
        if let Some(below) = bounds.min.checked_sub(1) {
            assert_eq!(problems_with(below), Some(key.clone()), "{key} = {below}");
        }
        if let Some(found) = problems_with(bounds.max + 1) {
            assert_eq!(found, key, "{key} = {}", bounds.max + 1);
        }
    }
}

#[test]
fn reconnect_max_is_not_below_reconnect_min() {
    let problems = {
        let mut bridge = valid_bridge();
        bridge.reconnect_min = 30;
        bridge.reconnect_max = 10;
        bridge_problems(vec![bridge])
    };
    assert_eq!(keys_of(&problems), ["bridges[0].reconnect_max"]);
    assert!(problems[0].to_string().contains("reconnect_min is 30"));
    assert!(spoiled(|b| {
        b.reconnect_min = 30;
        b.reconnect_max = 30;
    })
    .is_empty());
}

#[test]
fn bridge_tls_cert_and_key_go_together_and_names_are_checked() {
    let tls = |spoil: &dyn Fn(&mut BridgeTls)| {
        spoiled(|b| {
            let mut tls = BridgeTls::default();
            spoil(&mut tls);
            b.tls = Some(tls);
        })
    };
    assert!(tls(&|_| {}).is_empty());
    assert_eq!(
        tls(&|t| t.cert = Some(PathBuf::from("gw.pem"))),
        ["bridges[0].tls.key"]
    );
    assert_eq!(
        tls(&|t| t.key = Some(PathBuf::from("gw.key"))),
        ["bridges[0].tls.cert"]
    );
    assert_eq!(tls(&|t| t.ca = Some(PathBuf::new())), ["bridges[0].tls.ca"]);
    for name in ["", "bad name", "-x.example"] {
        assert_eq!(
            tls(&|t| t.server_name = Some(name.to_string())),
            ["bridges[0].tls.server_name"],
            "{name:?}"
        );
    }
    assert!(tls(&|t| t.server_name = Some("192.0.2.7".to_string())).is_empty());
    assert_eq!(
        tls(&|t| t.alpn = vec!["mqtt".to_string(), String::new(), "x".repeat(256)]),
        ["bridges[0].tls.alpn[1]", "bridges[0].tls.alpn[2]"]
    );
}

#[test]
fn a_bridge_needs_topic_rules_and_each_is_checked() {
    assert_eq!(spoiled(|b| b.topics.clear()), ["bridges[0].topics"]);
    let problems = {
        let mut bridge = valid_bridge();
        let rule = |filter: &str, local: &str, remote: &str| BridgeTopic {
            filter: filter.to_string(),
            direction: Direction::Both,
            qos: 1,
            local_prefix: local.to_string(),
            remote_prefix: remote.to_string(),
        };
        bridge.topics = vec![
            rule("ok/#", "l/", "r/"),
            rule("", "local", ""),
            rule("#", "L", "R/+/"),
            rule("a/#/b", "", ""),
            BridgeTopic {
                qos: 3,
                ..rule("x", "", "")
            },
        ];
        bridge_problems(vec![bridge])
    };
    assert_eq!(
        keys_of(&problems),
        [
            "bridges[0].topics[1].filter",
            "bridges[0].topics[2].local_prefix",
            "bridges[0].topics[2].remote_prefix",
            "bridges[0].topics[3].filter",
            "bridges[0].topics[4].qos",
        ]
    );
    let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        messages[0].contains("both prefixes must be set"),
        "{}",
        messages[0]
    );
    assert!(messages[1].contains("\"L#\""), "{}", messages[1]);
    assert!(messages[2].contains("'+'"), "{}", messages[2]);
    assert!(messages[3].contains("[MQTT-4.7.1-2]"), "{}", messages[3]);
    assert!(messages[4].contains("got 3"), "{}", messages[4]);
}

/// An `out` rule's local filter is subscribed on this broker, so it must fit its limits.
#[test]
fn an_out_rule_fits_this_broker_topic_limits() {
    let mut config = Config {
        bridges: vec![valid_bridge()],
        ..Config::default()
    };
    config.limits.max_topic_levels = 1;
    let error = config.validate().expect_err("two levels");
    assert_eq!(keys_of(error.problems()), ["bridges[0].topics[0].filter"]);
    config.bridges[0].topics[0].direction = Direction::In;
    assert!(config.validate().is_ok());
}

/// A problem found by the checks names where its value came from.
#[test]
fn a_bridge_problem_names_the_file() {
    let problems = problems_of(load_toml(
        "[[bridges]]\nname = \"a b\"\naddresses = [\"h\"]\n[[bridges.topics]]\nfilter = \"#\"\n",
    ));
    assert_eq!(
        keys_of(&problems),
        ["bridges[0].name", "bridges[0].addresses[0]"]
    );
    for problem in &problems {
        assert!(problem.to_string().contains("(from /"), "{problem}");
    }
}

/// The commented-out bridge of `config/cairn.toml`, uncommented, is valid and sets every key.
#[test]
fn shipped_bridge_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cairn.toml");
    let shipped = std::fs::read_to_string(path).expect("config/cairn.toml");
    let start = shipped.find("# [[bridges]]").expect("a bridge example");
    let example: String = shipped[start..]
        .lines()
        .map(|line| line.strip_prefix('#').unwrap_or(line))
        .map(|line| format!("{}\n", line.strip_prefix(' ').unwrap_or(line)))
        .collect();
    let config = load_toml(&example).expect("the example loads");
    let mut expected = every_key_set().bridges;
    // The shipped example shows the default window; the specification's asks for 32.
    expected[0].max_inflight = 20;
    assert_eq!(config.bridges, expected);
}

#[test]
fn metrics_are_off_by_default_and_on_with_a_bind_address() {
    assert_eq!(Config::default().metrics, None);
    let config = load_toml("[metrics]\nbind = \"127.0.0.1:9883\"\n").expect("valid");
    assert_eq!(
        config.metrics,
        Some(MetricsConfig {
            bind: "127.0.0.1:9883".parse().expect("address")
        })
    );
    let config = load_from(
        None,
        &[("CAIRN_METRICS__BIND", "0.0.0.0:9883")],
        &Overrides::default(),
    )
    .expect("valid");
    assert_eq!(
        config.metrics.map(|metrics| metrics.bind.to_string()),
        Some("0.0.0.0:9883".to_string())
    );
}

#[test]
fn a_bad_metrics_address_names_the_key_and_the_variable() {
    let problems = problems_of(load_toml("[metrics]\nbind = \"localhost\"\n"));
    assert_eq!(keys_of(&problems), ["metrics.bind"]);
    let message = problems[0].to_string();
    assert!(message.contains("127.0.0.1:9883"), "{message}");
    let problems = problems_of(load_from(
        None,
        &[("CAIRN_METRICS__BIND", "9883")],
        &Overrides::default(),
    ));
    assert_eq!(keys_of(&problems), ["metrics.bind"]);
    let message = problems[0].to_string();
    assert!(
        message.contains("environment variable CAIRN_METRICS__BIND"),
        "{message}"
    );
    let problems = problems_of(load_toml("[metrics]\nport = 9883\n"));
    assert!(
        problems[0].to_string().contains("metrics.port"),
        "{:?}",
        problems
    );
}

#[test]
fn the_metrics_endpoint_cannot_take_a_listeners_address() {
    let problems = problems_of(load_toml(
        "[[listeners]]\nbind = \"127.0.0.1:1883\"\n[metrics]\nbind = \"127.0.0.1:1883\"\n",
    ));
    assert_eq!(keys_of(&problems), ["metrics.bind"]);
    assert!(
        problems[0]
            .to_string()
            .contains("listeners[0] binds 127.0.0.1:1883"),
        "{}",
        problems[0]
    );
    let config =
        load_toml("[[listeners]]\nbind = \"127.0.0.1:0\"\n[metrics]\nbind = \"127.0.0.1:0\"\n");
    assert!(config.is_ok(), "port 0 is a fresh port each: {config:?}");
}
