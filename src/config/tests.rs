//! The configuration's unit tests: loading through every layer, the messages of every kind
//! of problem, each check, and the key table against the structs and `config/cairn.toml`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ::config::Map;

use super::keys::{self, expected_for, Children, KeySpec, CONFIG_KEYS};
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
    let toml = "sys_interval = \"often\"\nallow_anonymous = \"nope\"\n\
                [[listeners]]\nbind = 1883\nkind = \"udp\"\n\
                [[listeners]]\nbind = \"127.0.0.1:1884\"\nkind = \"tls\"\n\
                [listeners.tls]\ncert = [1]\nkey = [2]\nclient_auth = \"maybe\"\n\
                [limits]\nmax_inflight = \"lots\"\nqueue_full_policy = \"keep_all\"\n\
                [store]\nfsync = \"sure\"\n";
    let expected = [
        "allow_anonymous",
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
        ("limits.max_inflight", keys::MAX_INFLIGHT, "1..=65535"),
        ("limits.connect_timeout", keys::CONNECT_TIMEOUT, "1..=3600"),
        (
            "limits.max_topic_levels",
            keys::MAX_TOPIC_LEVELS,
            "1..=1024",
        ),
        ("store.commit_window_ms", keys::COMMIT_WINDOW_MS, "0..=1000"),
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
