//! The store's operator commands through the real binary, on a store a broker (started from the
//! library) filled and left: `sessions list`, `sessions show`, `sessions drop`, `store stats`,
//! their refusal while a broker holds the store, and `serve --repair` moving an unusable
//! database file aside (or, without it, exit 2 leaving the file alone).

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use bytes::Bytes;
use cairn::codec::{
    Disconnect, Packet, Properties, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions, Will,
};
use common::binary::{assert_exit, cairn, run, stderr, stdout};
use common::serve::ServeProcess;
use common::{connect_packet, publish_packet, RawClient};
use tempfile::TempDir;

/// Exit code for a bad configuration or usage.
const EXIT_BAD_CONFIG: i32 = 2;
/// Exit code for a failure at run time.
const EXIT_RUNTIME: i32 = 1;

/// What a garbage database file holds.
const GARBAGE: &[u8] = b"these bytes are not a redb database, and must survive a repair";

/// Runs `cairn args… --data-dir dir` to its end.
async fn run_on(dir: &Path, args: &[&str]) -> Output {
    let dir = dir.display().to_string();
    let mut all = args.to_vec();
    all.extend(["--data-dir", &dir]);
    run(&all).await
}

/// The cells of each line of `sessions list` (columns are two or more spaces apart).
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

/// `label: value` lines as a map.
fn fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(label, value)| (label.to_string(), value.trim().to_string()))
        .collect()
}

fn is_rfc3339_utc(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 20 && bytes[10] == b'T' && bytes[19] == b'Z' && bytes[4] == b'-'
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the data directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Fills a store through a broker, then stops it:
/// - `keeper` (5.0, Session Expiry 3600 s): `sensors/#` QoS 1 with identifier 7 and
///   `commands/keeper` QoS 2 No Local; disconnected normally; 3 messages queued for it;
/// - `watcher` (5.0, Session Expiry 600 s, a Will with delay 300 s): `alerts/#` QoS 1; one
///   message sent to it and never acknowledged (inflight); connected until the stop;
/// - one retained message, `config/mode`.
async fn populated_store() -> Arc<TempDir> {
    let broker = common::start_broker().await;
    let addr = broker.addr;

    let mut connect = connect_packet(ProtocolVersion::V5, "keeper");
    connect.properties.session_expiry_interval = Some(3600);
    let (mut keeper, connack) = RawClient::connect_with(addr, connect).await;
    assert_eq!(connack.reason, ReasonCode::Success);
    let with_id = Properties {
        subscription_identifiers: vec![7],
        ..Properties::default()
    };
    let sensors = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    keeper
        .subscribe_with(1, "sensors/#", sensors, with_id)
        .await;
    let commands = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::with_qos(QoS::ExactlyOnce)
    };
    let no_properties = Properties::default();
    keeper
        .subscribe_with(2, "commands/keeper", commands, no_properties)
        .await;
    keeper
        .send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
        .await;
    keeper.expect_closed().await;

    let mut connect = connect_packet(ProtocolVersion::V5, "watcher");
    connect.properties.session_expiry_interval = Some(600);
    connect.will = Some(Will {
        topic: "status/watcher".into(),
        payload: Bytes::from_static(b"offline"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties {
            will_delay_interval: Some(300),
            ..Properties::default()
        },
    });
    let (mut watcher, connack) = RawClient::connect_with(addr, connect).await;
    assert_eq!(connack.reason, ReasonCode::Success);
    watcher.subscribe(1, "alerts/#", QoS::AtLeastOnce).await;

    let mut publisher = RawClient::connect(addr, ProtocolVersion::V311, "publisher").await;
    for (packet_id, topic) in [(1, "sensors/1"), (2, "sensors/2"), (3, "sensors/3")] {
        let reading = publish_packet(topic, QoS::AtLeastOnce, Some(packet_id), b"21.5");
        publisher.publish(reading).await.expect("PUBACK");
    }
    let mut mode = publish_packet("config/mode", QoS::AtLeastOnce, Some(4), b"eco");
    mode.retain = true;
    publisher.publish(mode).await.expect("PUBACK");
    let alert = publish_packet("alerts/door", QoS::AtLeastOnce, Some(5), b"open");
    publisher.publish(alert).await.expect("PUBACK");
    let received = watcher.expect_publish().await;
    assert_eq!(received.topic, "alerts/door");
    publisher
        .send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
        .await;
    publisher.expect_closed().await;

    let data_dir = broker.data_dir.clone();
    broker.shutdown().await;
    watcher.expect_closed().await;
    data_dir
}

/// `sessions list`, `sessions show` and `store stats` describe what the broker left.
#[tokio::test]
async fn list_show_and_stats_describe_the_stored_sessions() {
    let data = populated_store().await;
    let dir = data.path();

    let list = run_on(dir, &["sessions", "list"]).await;
    assert_exit(&list, 0, "sessions list");
    let rows = table(&stdout(&list));
    assert_eq!(
        rows.len(),
        3,
        "a header and two sessions: {}",
        stdout(&list)
    );
    assert_eq!(rows[0][0], "CLIENT ID");
    let keeper = &rows[1];
    assert_eq!(keeper[0], "keeper");
    assert_eq!(keeper[1], "3600s");
    assert!(is_rfc3339_utc(&keeper[2]), "offline since: {keeper:?}");
    assert_eq!(keeper[3..], ["2", "3", "0", "no"]);
    let watcher = &rows[2];
    assert_eq!(watcher[..2], ["watcher", "600s"]);
    // Connected when the broker stopped: the engine may record the stop as its offline time.
    assert!(
        watcher[2] == "connected at last stop" || is_rfc3339_utc(&watcher[2]),
        "offline since: {watcher:?}"
    );
    assert_eq!(watcher[3..], ["1", "0", "1", "yes"]);

    let show = run_on(dir, &["sessions", "show", "keeper"]).await;
    assert_exit(&show, 0, "sessions show keeper");
    let text = stdout(&show);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines.contains(&"subscriptions: 2"), "{text}");
    assert!(
        lines.contains(
            &"commands/keeper  QoS 2, no local: yes, retain as published: no, retain handling: 0"
        ),
        "{text}"
    );
    assert!(lines.contains(&"sensors/#  QoS 1, no local: no, retain as published: no, retain handling: 0, identifier: 7"), "{text}");
    let queued: Vec<&str> = lines
        .iter()
        .filter(|line| line.starts_with("sensors/") && line.contains("message"))
        .copied()
        .collect();
    assert_eq!(queued.len(), 3, "{text}");
    for (line, topic) in queued.iter().zip(["sensors/1", "sensors/2", "sensors/3"]) {
        assert!(
            line.starts_with(&format!("{topic}  QoS 1, 4 bytes")),
            "{line}"
        );
        assert!(line.ends_with("subscription identifiers: 7"), "{line}");
    }
    let keeper_fields = fields(&text);
    assert!(is_rfc3339_utc(&keeper_fields["expires"]), "{text}");
    assert_eq!(keeper_fields["will"], "none");

    let show = run_on(dir, &["sessions", "show", "watcher"]).await;
    assert_exit(&show, 0, "sessions show watcher");
    let text = stdout(&show);
    let watcher_fields = fields(&text);
    assert_eq!(
        watcher_fields["will"],
        "status/watcher  QoS 1, 7 bytes, retain: yes, delay: 300s, set by: a client without a user name"
    );
    assert!(text.contains("inflight (in resend order): 1"), "{text}");
    assert!(
        text.contains("awaiting PUBACK: alerts/door  QoS 1, 4 bytes"),
        "{text}"
    );

    let file = dir.join("cairn.redb");
    let size = std::fs::metadata(&file).expect("the store file").len();
    let stats = run_on(dir, &["store", "stats"]).await;
    assert_exit(&stats, 0, "store stats");
    let stats = fields(&stdout(&stats));
    assert_eq!(stats["store"], file.display().to_string());
    assert_eq!(stats["file size"], format!("{size} bytes"));
    assert!(
        stats["sessions"].starts_with("2 ("),
        "{}",
        stats["sessions"]
    );
    assert_eq!(stats["subscriptions"], "3");
    assert_eq!(stats["wills"], "1");
    assert_eq!(stats["queued messages"], "3 (12 payload bytes)");
    assert_eq!(stats["inflight messages"], "1 (4 payload bytes)");
    assert_eq!(stats["retained messages"], "1 (3 payload bytes)");
}

/// `sessions drop` deletes one session (and only it); showing or dropping it afterwards exits 1.
#[tokio::test]
async fn drop_deletes_one_session() {
    let data = populated_store().await;
    let dir = data.path();

    let dropped = run_on(dir, &["sessions", "drop", "keeper"]).await;
    assert_exit(&dropped, 0, "sessions drop keeper");
    assert!(
        stdout(&dropped).contains("keeper deleted"),
        "{}",
        stdout(&dropped)
    );

    let show = run_on(dir, &["sessions", "show", "keeper"]).await;
    assert_exit(&show, EXIT_RUNTIME, "show of a dropped session");
    assert!(
        stderr(&show).contains("no session with client id \"keeper\""),
        "{}",
        stderr(&show)
    );
    let again = run_on(dir, &["sessions", "drop", "keeper"]).await;
    assert_exit(&again, EXIT_RUNTIME, "drop of a dropped session");

    let list = run_on(dir, &["sessions", "list"]).await;
    let rows = table(&stdout(&list));
    let ids: Vec<&str> = rows.iter().map(|row| row[0].as_str()).collect();
    assert_eq!(ids, ["CLIENT ID", "watcher"]);
    let stats = fields(&stdout(&run_on(dir, &["store", "stats"]).await));
    assert_eq!(stats["queued messages"], "0 (0 payload bytes)");
    assert_eq!(stats["retained messages"], "1 (3 payload bytes)");
}

/// Every store command, and `serve --repair`, refuses a store a running broker holds: exit 1,
/// naming the directory and the broker's pid (this test process), the file untouched.
#[tokio::test]
async fn commands_refuse_a_store_a_running_broker_holds() {
    let broker = common::start_broker().await;
    let dir = broker.data_dir.path().to_path_buf();
    let expected = format!(
        "the broker is running on {} (pid {}); stop it first",
        dir.display(),
        std::process::id()
    );
    for args in [
        &["sessions", "list"][..],
        &["sessions", "show", "anyone"],
        &["sessions", "drop", "anyone"],
        &["store", "stats"],
    ] {
        let output = run_on(&dir, args).await;
        assert_exit(&output, EXIT_RUNTIME, &args.join(" "));
        assert!(
            stderr(&output).contains(&expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let repair = run_on(&dir, &["serve", "--repair", "--listen", "127.0.0.1:0"]).await;
    assert_exit(&repair, EXIT_RUNTIME, "serve --repair on a locked store");
    assert_eq!(files_in(&dir), ["cairn.redb"], "nothing is quarantined");
    broker.shutdown().await;
}

/// A directory without a store is reported, not created.
#[tokio::test]
async fn a_missing_store_is_reported_and_not_created() {
    let parent = tempfile::tempdir().expect("temporary directory");
    let dir = parent.path().join("never-used");
    let output = run_on(&dir, &["sessions", "list"]).await;
    assert_exit(&output, EXIT_RUNTIME, "sessions list without a store");
    assert!(
        stderr(&output).contains("there is no store at"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.exists(), "the data directory was created");
}

/// A configuration file that does not load exits 2, as for every other command.
#[tokio::test]
async fn a_bad_configuration_exits_2() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("absent.toml").display().to_string();
    let output = run_on(dir.path(), &["store", "stats", "--config", &config]).await;
    assert_exit(&output, EXIT_BAD_CONFIG, "store stats with a missing file");
    assert!(stderr(&output).contains(&config), "{}", stderr(&output));
}

/// A data directory whose `cairn.redb` holds `GARBAGE`.
fn garbage_store() -> TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("cairn.redb"), GARBAGE).expect("write the garbage file");
    dir
}

/// Without `--repair`, an unusable database file stops `serve` with exit 2, a message naming
/// the file and `--repair`, and the file exactly as it was.
#[tokio::test]
async fn serve_without_repair_leaves_an_unusable_store_alone() {
    let data = garbage_store();
    let output = run_on(data.path(), &["serve", "--listen", "127.0.0.1:0"]).await;
    assert_exit(&output, EXIT_BAD_CONFIG, "serve on a garbage store");
    let message = stderr(&output);
    let file = data.path().join("cairn.redb");
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains("--repair"), "{message}");
    assert_eq!(files_in(data.path()), ["cairn.redb"]);
    assert_eq!(std::fs::read(&file).expect("read"), GARBAGE);
}

/// A store filled by a broker, then damaged on disk (the first byte of every page after the
/// header flipped, as a worn flash card might): `store stats` and `sessions list` refuse it
/// with exit 1 and `serve` with exit 2, each saying it is damaged, naming the file (and `serve`
/// naming `--repair`), never aborting; the file is left exactly as it was.
#[tokio::test]
async fn a_damaged_store_is_refused_by_every_command_never_a_crash() {
    let data = populated_store().await;
    let file = data.path().join("cairn.redb");
    let mut damaged = std::fs::read(&file).expect("read the store");
    for page in damaged.chunks_mut(4096).skip(1) {
        page[0] ^= 0xFF;
    }
    std::fs::write(&file, &damaged).expect("damage the store");
    let name = file.display().to_string();
    for (args, exit) in [
        (&["store", "stats"][..], EXIT_RUNTIME),
        (&["sessions", "list"][..], EXIT_RUNTIME),
        (&["serve", "--listen", "127.0.0.1:0"][..], EXIT_BAD_CONFIG),
    ] {
        let output = run_on(data.path(), args).await;
        assert_exit(&output, exit, &args.join(" "));
        let message = stderr(&output);
        assert!(
            message.contains(&name) && message.contains("is damaged"),
            "{message}"
        );
        assert!(!message.contains("panicked"), "{message}");
        if args[0] == "serve" {
            assert!(message.contains("--repair"), "{message}");
        }
    }
    assert!(std::fs::read(&file).expect("read") == damaged, "written to");
}

/// With `--repair`, the unusable file is moved to `cairn.redb.quarantined-<UTC time>` with its
/// bytes, an error-level log line says what moved where and why, and the broker starts on an
/// empty store (then stops on SIGTERM with exit 0).
#[tokio::test]
async fn serve_with_repair_quarantines_an_unusable_store_and_starts() {
    let data = garbage_store();
    let dir = data.path().display().to_string();
    let mut command = cairn(&[
        "serve",
        "--repair",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &dir,
    ]);
    // No `$SYS` task: it subscribes to the shutdown signal only once it runs, so a SIGTERM
    // right after start-up could wait out its whole interval.
    command.env("CAIRN_SYS_INTERVAL", "0");
    let serving = ServeProcess::spawn(command).await;
    let seen = serving.log();

    let quarantined: Vec<String> = files_in(data.path())
        .into_iter()
        .filter(|name| name.starts_with("cairn.redb.quarantined-"))
        .collect();
    assert_eq!(quarantined.len(), 1, "{:?}", files_in(data.path()));
    let moved = data.path().join(&quarantined[0]);
    assert_eq!(std::fs::read(&moved).expect("read"), GARBAGE);
    let error_line = seen
        .lines()
        .find(|line| line.contains("ERROR") && line.contains("--repair"))
        .unwrap_or_else(|| panic!("no error-level line about the repair: {seen}"));
    assert!(
        error_line.contains(&moved.display().to_string()),
        "{error_line}"
    );
    assert!(error_line.contains("not a database"), "{error_line}");

    serving.terminate().await;

    let list = run_on(data.path(), &["sessions", "list"]).await;
    assert_exit(&list, 0, "sessions list on the fresh store");
    assert_eq!(stdout(&list).trim(), "no sessions stored");
}
