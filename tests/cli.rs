//! The `cairn` binary end to end: `--version`; `check-config` with the defaults, bad keys,
//! bad values, bad bridges and a missing file; `serve` starting, serving MQTT, reloading its
//! configuration on SIGHUP and stopping on SIGTERM (5.0 clients told DISCONNECT 0x8B), or
//! refusing to start with a clear message when a TLS certificate is missing or the port is
//! taken; and its log kept to one line per event whatever a client sends.

#[path = "common/mod.rs"]
mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use bytes::Bytes;
use cairn::codec::{Disconnect, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Will};
use cairn::config::Config;
use common::binary::{assert_exit, cairn, run, run_to_end, stderr, stdout};
use common::certs::TlsFiles;
use common::serve::ServeProcess;
use common::{connect_packet, publish_packet, RawClient, WAIT};

/// Exit code for a bad configuration or usage.
const EXIT_BAD_CONFIG: i32 = 2;
/// Exit code for a failure at run time.
const EXIT_RUNTIME: i32 = 1;

/// Writes `contents` to `cairn.toml` in `dir` and returns its path as a string.
fn config_file(dir: &Path, contents: &str) -> String {
    let path = dir.join("cairn.toml");
    std::fs::write(&path, contents).expect("write config file");
    path.display().to_string()
}

#[tokio::test]
async fn version_prints_the_crate_version() {
    let output = run(&["--version"]).await;
    assert_exit(&output, 0, "cairn --version");
    assert!(
        stdout(&output).contains(env!("CARGO_PKG_VERSION")),
        "version in {:?}",
        stdout(&output)
    );
}

/// With no file and no environment, `check-config` prints the built-in defaults as TOML that
/// reads back to exactly `Config::default()`.
#[tokio::test]
async fn check_config_prints_the_defaults_as_toml() {
    let output = run(&["check-config"]).await;
    assert_exit(&output, 0, "cairn check-config");
    let printed: Config = config::Config::builder()
        .add_source(config::File::from_str(
            &stdout(&output),
            config::FileFormat::Toml,
        ))
        .build()
        .and_then(|parsed| parsed.try_deserialize())
        .unwrap_or_else(|error| {
            panic!(
                "check-config printed no valid config ({error}): {}",
                stdout(&output)
            )
        });
    assert_eq!(printed, Config::default());
}

/// A listener section that checks every client's identity: TLS, client certificates signed
/// by the test CA required, their Common Name as the user name (`auth = "certificate"`).
fn identity_checking_listener(files: &TlsFiles) -> String {
    format!(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\nkind = \"tls\"\nauth = \"certificate\"\n\
         [listeners.tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\
         client_auth = \"required\"\n",
        files.server_cert, files.server_key, files.ca
    )
}

/// A file that loads is printed back with its values applied.
#[tokio::test]
async fn check_config_applies_the_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let files = TlsFiles::generate();
    let file = config_file(
        dir.path(),
        &format!(
            "[limits]\nmax_inflight = 7\n{}",
            identity_checking_listener(&files)
        ),
    );
    let output = run(&["check-config", "--config", &file]).await;
    assert_exit(&output, 0, "check-config with a valid file");
    let printed = stdout(&output);
    assert!(printed.contains("max_inflight = 7"), "{printed}");
    assert!(printed.contains("auth = \"certificate\""), "{printed}");
}

/// Unknown keys, out-of-range values and wrong types exit 2 with a message naming the key.
#[tokio::test]
async fn check_config_rejects_bad_keys_and_values_naming_the_key() {
    let cases = [
        ("[limits]\nmax_inflite = 5\n", "max_inflite"),
        ("[limits]\nmax_inflight = 0\n", "max_inflight"),
        ("[limits]\nmax_packet_size = 1\n", "max_packet_size"),
        ("sys_interval = \"often\"\n", "sys_interval"),
        ("[[listeners]]\nbind = \"not an address\"\n", "bind"),
        (
            "[[listeners]]\nbind = \"127.0.0.1:1883\"\nkind = \"udp\"\n",
            "kind",
        ),
    ];
    let dir = tempfile::tempdir().expect("temporary directory");
    for (contents, key) in cases {
        let file = config_file(dir.path(), contents);
        let output = run(&["check-config", "--config", &file]).await;
        assert_exit(
            &output,
            EXIT_BAD_CONFIG,
            &format!("check-config with {contents:?}"),
        );
        assert!(
            stderr(&output).contains(key),
            "the error for {contents:?} must name `{key}`: {}",
            stderr(&output)
        );
    }
}

/// A file whose bridges have many problems: `check-config` exits 2 naming every one of them,
/// each by its full key, in one run; a wrong type in one bridge does not hide the others'.
#[tokio::test]
async fn check_config_names_every_bridge_problem_at_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = config_file(
        dir.path(),
        r##"
[[bridges]]
name = "cloud/1"
addresses = ["mqtt.example.com", "[::1]:8883"]
keep_alive = 0
reconnect_min = 60
reconnect_max = 10
state_topic = "$SYS/gw/state"
[bridges.tls]
cert = "/etc/cairn/gw.pem"
[[bridges.topics]]
filter = "#"
local_prefix = "L"
[[bridges.topics]]
filter = ""
remote_prefix = "cloud/state"
[[bridges.topics]]
filter = "a/#/b"
qos = 3

[[bridges]]
name = "cloud/1"
addresses = []

[[bridges]]
name = "typed"
addresses = ["h:1"]
protocol = 5
[[bridges.topics]]
filter = "x"
direction = "sideways"
"##,
    );
    let output = run(&["check-config", "--config", &file]).await;
    assert_exit(&output, EXIT_BAD_CONFIG, "check-config with bad bridges");
    let message = stderr(&output);
    let wrong_types = ["bridges[2].protocol", "bridges[2].topics[0].direction"];
    for key in wrong_types {
        assert!(
            message.contains(&format!("`{key}`")),
            "{key} not named: {message}"
        );
    }
    // Values of a wrong type are reported first; the checks follow once every value reads.
    let fixed = std::fs::read_to_string(&file)
        .expect("read back")
        .replace("protocol = 5", "protocol = \"5\"")
        .replace("\"sideways\"", "\"both\"");
    let file = config_file(dir.path(), &fixed);
    let output = run(&["check-config", "--config", &file]).await;
    assert_exit(&output, EXIT_BAD_CONFIG, "check-config with bad bridges");
    let message = stderr(&output);
    let checked = [
        "bridges[0].name",
        "bridges[0].addresses[0]",
        "bridges[0].keep_alive",
        "bridges[0].reconnect_max",
        "bridges[0].state_topic",
        "bridges[0].tls.key",
        "bridges[0].topics[0].local_prefix",
        "bridges[0].topics[1].filter",
        "bridges[0].topics[2].filter",
        "bridges[0].topics[2].qos",
        "bridges[1].name",
        "bridges[1].addresses",
        "bridges[1].topics",
    ];
    for key in checked {
        assert!(
            message.contains(&format!("`{key}`")),
            "{key} not named: {message}"
        );
    }
    let named = message.matches("error: `bridges[").count();
    assert_eq!(named, checked.len(), "one line per problem: {message}");
    assert!(!message.contains("bridges[0].addresses[1]"), "{message}");
    assert!(!message.contains("bridges[2]"), "{message}");
}

/// `allow_anonymous` (replaced by each listener's `auth`) is refused by `check-config` and
/// `serve` (exit 2) with what to write instead, from the file or the environment: a file
/// that meant "no anonymous clients" never starts a broker that lets them in.
#[tokio::test]
async fn allow_anonymous_of_earlier_releases_is_refused_saying_what_to_write() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data_dir = dir.path().display().to_string();
    let old = config_file(dir.path(), "allow_anonymous = false\n");
    let refusals = [
        ("check-config", vec!["check-config", "--config", &old]),
        (
            "serve",
            vec!["serve", "--config", &old, "--data-dir", &data_dir],
        ),
    ];
    for (what, args) in &refusals {
        let output = run(args).await;
        assert_exit(&output, EXIT_BAD_CONFIG, what);
        let message = stderr(&output);
        assert!(message.contains("`allow_anonymous`"), "{what}: {message}");
        assert!(
            message.contains("auth = \"certificate\""),
            "{what}: {message}"
        );
    }

    let from_env = tokio::time::timeout(
        WAIT * 3,
        cairn(&["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_dir])
            .env("CAIRN_ALLOW_ANONYMOUS", "false")
            .output(),
    )
    .await
    .expect("serve ends in time")
    .expect("cairn runs");
    assert_exit(
        &from_env,
        EXIT_BAD_CONFIG,
        "serve with CAIRN_ALLOW_ANONYMOUS",
    );
    assert!(
        stderr(&from_env).contains("CAIRN_ALLOW_ANONYMOUS"),
        "{}",
        stderr(&from_env)
    );
}

/// A password or ACL file that is missing or unreadable stops `check-config` and `serve`
/// with a message naming the key and the file; `auth = "password"` without a password file
/// is refused naming the listener.
#[tokio::test]
async fn bad_password_and_acl_files_are_named() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data_dir = dir.path().display().to_string();
    let missing = dir.path().join("absent-passwd");
    let port_0 = "[[listeners]]\nbind = \"127.0.0.1:0\"\n";
    let missing_passwords = config_file(
        dir.path(),
        &format!("password_file = {missing:?}\n{port_0}"),
    );
    for (command, message) in refused_by_both(&missing_passwords, &data_dir).await {
        assert!(message.contains("password_file"), "{command}: {message}");
        assert!(message.contains("absent-passwd"), "{command}: {message}");
    }
    let missing_acl = config_file(
        dir.path(),
        &format!("acl_file = {:?}\n{port_0}", dir.path().join("absent-acl")),
    );
    for (command, message) in refused_by_both(&missing_acl, &data_dir).await {
        assert!(message.contains("acl_file"), "{command}: {message}");
    }

    let no_file = config_file(
        dir.path(),
        "[[listeners]]\nbind = \"127.0.0.1:0\"\nauth = \"password\"\n",
    );
    let output = run(&["check-config", "--config", &no_file]).await;
    assert_exit(&output, EXIT_BAD_CONFIG, "auth = password without a file");
    let message = stderr(&output);
    assert!(message.contains("`listeners[0].auth`"), "{message}");
    assert!(message.contains("without password_file"), "{message}");
}

/// Every file the configuration names that cannot be read is named in one run, by
/// `check-config` and by `serve` alike: a TLS listener's certificate, the password and ACL
/// files, a bridge's password file and CA bundle (each used to stop at the first).
#[tokio::test]
async fn every_unreadable_file_is_named_at_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data_dir = dir.path().display().to_string();
    let gone = |name: &str| format!("{:?}", dir.path().join(name));
    let config = config_file(
        dir.path(),
        &format!(
            "password_file = {}\nacl_file = {}\n\
             [[listeners]]\nbind = \"127.0.0.1:0\"\nkind = \"tls\"\n\
             [listeners.tls]\ncert = {}\nkey = {}\n\
             [[bridges]]\nname = \"cloud\"\naddresses = [\"127.0.0.1:1\"]\npassword_file = {}\n\
             [bridges.tls]\nca = {}\n[[bridges.topics]]\nfilter = \"#\"\n",
            gone("no-passwd"),
            gone("no-acl"),
            gone("no-cert.pem"),
            gone("no-key.pem"),
            gone("no-cloud.pass"),
            gone("no-ca.pem"),
        ),
    );
    for (command, message) in refused_by_both(&config, &data_dir).await {
        for file in [
            "no-cert.pem",
            "no-passwd",
            "no-acl",
            "no-cloud.pass",
            "no-ca.pem",
        ] {
            assert!(message.contains(file), "{command} names {file}: {message}");
        }
    }
}

/// Runs `check-config` and `serve` (data in `data_dir`) on the configuration file `config`:
/// the same mistake gets the same exit code, 2, whichever command finds it. Returns each
/// command with what it wrote on stderr.
async fn refused_by_both(config: &str, data_dir: &str) -> Vec<(&'static str, String)> {
    let mut refusals = Vec::new();
    for (command, args) in [
        ("check-config", vec!["check-config", "--config", config]),
        (
            "serve",
            vec!["serve", "--config", config, "--data-dir", data_dir],
        ),
    ] {
        let output = run(&args).await;
        assert_exit(&output, EXIT_BAD_CONFIG, command);
        refusals.push((command, stderr(&output)));
    }
    refusals
}

/// A `RUST_LOG` that is no log filter stops `serve` (exit 2), and `check-config` says so too
/// instead of passing the configuration.
#[tokio::test]
async fn check_config_and_serve_both_refuse_a_bad_rust_log() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data_dir = dir.path().display().to_string();
    for args in [
        vec!["check-config"],
        vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_dir],
    ] {
        let mut command = cairn(&args);
        command.env("RUST_LOG", "cairn===");
        let output = run_to_end(command).await;
        assert_exit(&output, EXIT_BAD_CONFIG, &args.join(" "));
        assert!(stderr(&output).contains("RUST_LOG"), "{}", stderr(&output));
    }
}

#[tokio::test]
async fn check_config_with_missing_file_names_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("absent.toml").display().to_string();
    let output = run(&["check-config", "--config", &missing]).await;
    assert_exit(&output, EXIT_BAD_CONFIG, "check-config with a missing file");
    assert!(
        stderr(&output).contains(&missing),
        "the error must name {missing}: {}",
        stderr(&output)
    );
}

/// `cairn serve --listen 127.0.0.1:0` with data in `data_dir`, once it accepts connections;
/// the address is the one its ready line names, on 127.0.0.1 as asked.
async fn serve_on_port_0(data_dir: &Path) -> (ServeProcess, SocketAddr) {
    let serving = ServeProcess::spawn(cairn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir.display().to_string(),
    ]))
    .await;
    let addr = serving.addr;
    assert_eq!(
        addr.ip(),
        std::net::Ipv4Addr::LOCALHOST,
        "cairn serve listens where --listen says"
    );
    (serving, addr)
}

/// A client id holding a line break, in a CONNECT refused before any login (its Will topic
/// has a wildcard), cannot forge a log line: the refusal is logged on one line, the break
/// written as `\n`, and no line of the log starts with the text that followed it.
#[tokio::test]
async fn a_line_break_from_a_client_cannot_forge_a_log_line() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let (mut serving, addr) = serve_on_port_0(data_dir.path()).await;
    let forged = "2026-01-01T00:00:00.000000Z ERROR cairn::store: FORGED";
    let mut connect = connect_packet(ProtocolVersion::V5, &format!("x\n{forged}\r"));
    connect.will = Some(Will {
        topic: "status/#".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    let (_client, connack) = RawClient::connect_with(addr, connect).await;
    assert_eq!(connack.reason, ReasonCode::TopicNameInvalid);
    let escaped = format!("x\\n{forged}\\r");
    serving
        .wait_for_log_line("refusing the CONNECT", |line| {
            line.contains("refusing CONNECT") && line.contains(&escaped)
        })
        .await;
    let log = serving.log();
    assert!(!log.lines().any(|line| line.starts_with(forged)), "{log}");
    serving.terminate().await;
}

/// `serve --listen` serves MQTT (a 3.1.1 QoS 1 message reaches a 5.0 subscriber); on SIGTERM it
/// tells the 5.0 client DISCONNECT 0x8B Server shutting down, closes the 3.1.1 client without
/// one (3.1.1 has no server DISCONNECT), and exits 0, having logged where it listened.
#[tokio::test]
async fn serve_serves_mqtt_and_stops_on_sigterm() {
    let data = tempfile::tempdir().expect("temporary directory");
    let (mut serving, addr) = serve_on_port_0(data.path()).await;

    let mut subscriber = RawClient::connect(addr, ProtocolVersion::V5, "cli-sub").await;
    subscriber
        .subscribe(1, "cli/readings", QoS::AtLeastOnce)
        .await;
    let mut publisher = RawClient::connect(addr, ProtocolVersion::V311, "cli-pub").await;
    let puback = publisher
        .publish(publish_packet(
            "cli/readings",
            QoS::AtLeastOnce,
            Some(7),
            b"from the binary",
        ))
        .await
        .expect("PUBACK");
    assert_eq!(puback.packet_id, 7);
    let received = subscriber.expect_publish().await;
    assert_eq!(
        (received.topic.as_str(), received.qos, &received.payload[..]),
        ("cli/readings", QoS::AtLeastOnce, &b"from the binary"[..])
    );
    subscriber
        .send(&Packet::PubAck(cairn::codec::PubResponse::success(
            received.packet_id.expect("QoS 1 has a packet id"),
        )))
        .await;

    serving.signal("-TERM").await;
    assert_eq!(
        subscriber.expect_closed().await,
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::ServerShuttingDown
        ))]
    );
    assert_eq!(publisher.expect_closed().await, Vec::<Packet>::new());
    let status = serving.exit_status().await;
    let log = serving.stderr().await;
    assert!(
        status.success(),
        "cairn serve exits 0 on SIGTERM, got {status}: {log}"
    );
    assert!(
        log.contains(&addr.to_string()),
        "the log names the listening address {addr}: {log}"
    );
}

/// A stop signal sent twice at once (as `timeout` sends it: to the process, then to its process
/// group) is one request: the shutdown stays graceful (DISCONNECT 0x8B, exit 0) instead of
/// taking the second as a request to stop at once.
#[tokio::test]
async fn a_sigterm_sent_twice_at_once_is_one_graceful_stop() {
    let data = tempfile::tempdir().expect("temporary directory");
    let (mut serving, addr) = serve_on_port_0(data.path()).await;
    let mut client = RawClient::connect(addr, ProtocolVersion::V5, "cli-twice").await;
    client.subscribe(1, "cli/twice", QoS::AtLeastOnce).await;

    let pid = serving.pid().to_string();
    let status = tokio::process::Command::new("sh")
        .args([
            "-c",
            "kill -TERM \"$0\"; kill -TERM \"$0\" 2>/dev/null; true",
            &pid,
        ])
        .status()
        .await
        .expect("run sh");
    assert!(status.success(), "sh: {status}");
    assert_eq!(
        client.expect_closed().await,
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::ServerShuttingDown
        ))]
    );
    let status = serving.exit_status().await;
    let log = serving.stderr().await;
    assert!(status.success(), "exit 0, got {status}: {log}");
    assert!(!log.contains("during shutdown"), "{log}");
}

/// A configuration file for `serve`: one listener on 127.0.0.1 port 0, data in `data`, and
/// `more` (TOML) after it.
fn reloadable_config(dir: &Path, data: &Path, more: &str) -> String {
    config_file(
        dir,
        &format!(
            "data_dir = {data:?}\n{more}\n[[listeners]]\nbind = \"127.0.0.1:0\"\n",
            data = data.display().to_string()
        ),
    )
}

/// Rewrites the configuration file (see [`reloadable_config`]), sends SIGHUP and waits for the
/// log line that contains every one of `wanted`.
async fn reload_with(
    serving: &mut ServeProcess,
    dir: &Path,
    data: &Path,
    more: &str,
    wanted: &[&str],
) {
    reloadable_config(dir, data, more);
    serving.signal("-HUP").await;
    let what = format!("with {wanted:?}");
    serving
        .wait_for_log_line(&what, |line| wanted.iter().all(|part| line.contains(part)))
        .await;
}

/// `cairn serve --config FILE`, once it accepts connections.
async fn serve_config(file: &str) -> ServeProcess {
    ServeProcess::spawn(cairn(&["serve", "--config", file])).await
}

/// SIGHUP (what `systemctl reload` sends) reads the file again and puts a new `log.level` in
/// force without dropping anyone: a client's debug line appears only after it, the client
/// connected before keeps receiving, and SIGTERM then stops the broker as usual (exit 0).
#[tokio::test]
async fn sighup_reloads_the_log_level_and_keeps_clients() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let file = reloadable_config(dir.path(), &data, "[log]\nlevel = \"info\"");
    let mut serving = serve_config(&file).await;
    let addr = serving.addr;
    let mut before = RawClient::connect(addr, ProtocolVersion::V5, "before-hup").await;
    before.subscribe(1, "cli/hup", QoS::AtLeastOnce).await;

    reload_with(
        &mut serving,
        dir.path(),
        &data,
        "[log]\nlevel = \"debug\"",
        &["configuration reloaded", "log.level"],
    )
    .await;
    assert!(
        !serving.log().contains("before-hup"),
        "no debug line before the reload: {}",
        serving.log()
    );
    let mut after = RawClient::connect(addr, ProtocolVersion::V311, "after-hup").await;
    serving
        .wait_for_log_line("at debug level about the new client", |line| {
            line.contains("DEBUG") && line.contains("after-hup")
        })
        .await;
    after
        .publish(publish_packet(
            "cli/hup",
            QoS::AtLeastOnce,
            Some(1),
            b"still here",
        ))
        .await
        .expect("PUBACK after SIGHUP");
    assert_eq!(&before.expect_publish().await.payload[..], b"still here");

    serving.signal("-TERM").await;
    let status = serving.exit_status().await;
    let log = serving.stderr().await;
    assert!(
        status.success(),
        "exit 0 on SIGTERM after SIGHUP, got {status}: {log}"
    );
}

/// A reloaded file with errors is refused whole: every problem is logged with its key, and
/// nothing of it applies (its lower `max_connections` neither), the broker serving on.
#[tokio::test]
async fn sighup_with_a_broken_file_logs_each_problem_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let file = reloadable_config(dir.path(), &data, "");
    let mut serving = serve_config(&file).await;
    let addr = serving.addr;
    let _first = RawClient::connect(addr, ProtocolVersion::V5, "first").await;

    reload_with(
        &mut serving,
        dir.path(),
        &data,
        "[limits]\nmax_connections = 1\nmax_inflight = 0\nno_such_key = 1",
        &["reload refused", "stays in force"],
    )
    .await;
    let log = serving.log();
    for key in ["limits.max_inflight", "limits.no_such_key"] {
        assert!(
            log.lines()
                .any(|line| line.contains("ERROR") && line.contains(key)),
            "an error line names {key}: {log}"
        );
    }
    let mut second = RawClient::connect(addr, ProtocolVersion::V5, "second").await;
    second.expect_nothing_pending().await;
    serving.terminate().await;
}

/// A reload with no key changed still reads the password and ACL files again and puts them in
/// force, and its log line says so, instead of "nothing changed".
#[tokio::test]
async fn sighup_names_the_files_it_read_again() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let passwords = dir.path().join("passwd");
    let acl = dir.path().join("acl");
    std::fs::write(&passwords, "").expect("write the password file");
    std::fs::write(&acl, "topic readwrite #\n").expect("write the ACL file");
    let files = format!("password_file = {passwords:?}\nacl_file = {acl:?}");
    let file = reloadable_config(dir.path(), &data, &files);
    let mut serving = serve_config(&file).await;
    std::fs::write(&acl, "topic read #\n").expect("edit the ACL file");
    reload_with(
        &mut serving,
        dir.path(),
        &data,
        &files,
        &[
            "configuration reloaded",
            "files read again and in force: password_file acl_file",
        ],
    )
    .await;
    assert!(
        !serving.log().contains("nothing changed"),
        "{}",
        serving.log()
    );
    serving.terminate().await;
}

/// Keys that only a restart applies (here `data_dir` and a second listener) are named in a
/// warning each, and their running values stay: the broker keeps its data directory.
#[tokio::test]
async fn sighup_names_the_keys_that_need_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let file = reloadable_config(dir.path(), &data, "");
    let mut serving = serve_config(&file).await;
    let moved = dir.path().join("moved");
    reload_with(
        &mut serving,
        dir.path(),
        &moved,
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[limits]\nmax_inflight = 7",
        &["configuration reloaded", "limits.max_inflight"],
    )
    .await;
    let log = serving.log();
    for key in ["data_dir", "listeners"] {
        assert!(
            log.lines().any(|line| line.contains("WARN")
                && line.contains(&format!("key=\"{key}\""))
                && line.contains("restart")),
            "a warning names {key} as needing a restart: {log}"
        );
    }
    assert!(
        !moved.exists(),
        "the new data_dir is not opened before a restart"
    );
    let mut client = RawClient::connect(serving.addr, ProtocolVersion::V5, "still").await;
    client.expect_nothing_pending().await;
    serving.terminate().await;
}

/// A TLS listener whose certificate file does not exist: `serve` refuses to start, exits with
/// the bad-configuration code and names the file.
#[tokio::test]
async fn serve_with_missing_tls_certificate_names_the_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cert = dir.path().join("missing-cert.pem").display().to_string();
    let key = dir.path().join("missing-key.pem").display().to_string();
    let file = config_file(
        dir.path(),
        &format!("[[listeners]]\nbind = \"127.0.0.1:0\"\nkind = \"tls\"\n[listeners.tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n"),
    );
    let output = run(&[
        "serve",
        "--config",
        &file,
        "--data-dir",
        &dir.path().display().to_string(),
    ])
    .await;
    assert_exit(&output, EXIT_BAD_CONFIG, "serve with a missing certificate");
    assert!(
        stderr(&output).contains(&cert),
        "the error must name {cert}: {}",
        stderr(&output)
    );
}

/// A port already in use: `serve` exits 1 with a message naming the address and the cause, once
/// (the bind error ends with its cause, which the printed chain of causes said a second time).
#[tokio::test]
async fn serve_on_a_busy_port_exits_1_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("local address").to_string();
    let data = tempfile::tempdir().expect("temporary directory");
    let output = run(&[
        "serve",
        "--listen",
        &addr,
        "--data-dir",
        &data.path().display().to_string(),
    ])
    .await;
    assert_exit(&output, EXIT_RUNTIME, "serve on a busy port");
    let message = stderr(&output);
    assert!(
        message.contains(&addr),
        "the error must name {addr}: {message}"
    );
    assert_eq!(
        message.to_lowercase().matches("in use").count(),
        1,
        "the error must say once that the address is in use: {message}"
    );
    drop(taken);
}
