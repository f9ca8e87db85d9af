//! Disk full on commit, with the real `cairn` binary: the broker keeps running,
//! refuses new QoS 1 work (v5: PUBACK 0x80 Unspecified error; 3.1.1: connection closed) and
//! subscriptions (SUBACK 0x80, subscribed to nothing), logs the failure, recovers by itself
//! once space returns, and loses nothing it acknowledged (design.md promise 1).
//!
//! "Disk full" without root or mounts: `cairn` runs through `sh` with SIGXFSZ ignored (an
//! ignored signal stays ignored across `exec`), and the test lowers the soft RLIMIT_FSIZE of
//! the running process to a little above its database's size with `prlimit`, so once the file
//! reaches that size every write that would grow it fails with EFBIG; raising the limit again
//! is "space returns".

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::process::Stdio;

use cairn::codec::{Packet, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions};
use cairn::store::redb::DATABASE_FILE;
use tokio::process::Command;

use crate::common::clients::{client_id, new_session, resume, subscribe_ok, text};
use crate::common::serve::ServeProcess;
use crate::common::{publish_packet, RawClient};
use crate::process::{self, serve_command};
use crate::support::{publish, receive_until_marker};

/// The persistent subscriber's filter.
const FILTER: &str = "t/#";
/// The topic of the stream.
const TOPIC: &str = "t/readings";
/// Published after the restart, last: everything delivered before it is the whole queue.
const MARKER_TOPIC: &str = "t/marker";
const MARKER: &str = "marker";
/// Bytes of each reading: large, so the database must grow after a few of them.
const READING_SIZE: usize = 16 * 1024;
/// Bytes of the 3.1.1 client's reading: far more than the readings already refused, so no free
/// space left inside the file (e.g. by an aborted commit) can take it.
const LARGE_READING_SIZE: usize = 512 * 1024;
/// How far the database file may still grow once the disk "fills": a few readings fit first.
const HEADROOM: u64 = 128 * 1024;
/// Readings acknowledged before the disk fills.
const READINGS_BEFORE: u16 = 20;
/// Readings published after the first refusal while the disk is still full (either verdict
/// is fine: an aborted commit may leave room inside the file); they make the writer reopen
/// the database on a full disk again and again.
const READINGS_WHILE_FULL: u16 = 10;
/// Readings that must all be acknowledged after the first acknowledgement once space returns.
const READINGS_AFTER: u16 = 10;
/// Most readings published while waiting for the first refusal (or, after space returns, for
/// the first acknowledgement): bounds the test, and the disk it uses, if the limit fails.
const MAX_READINGS: u16 = 1000;
/// Filters of the SUBSCRIBE refused on a full disk, and the bytes of each: their rows need
/// the database file to grow by far more than a commit can find free inside it.
const LARGE_FILTERS: u16 = 48;
const LARGE_FILTER_SIZE: usize = 16 * 1024;
/// Makes the shell ignore SIGXFSZ, then become the command given as its arguments.
const IGNORE_SIGXFSZ_AND_EXEC: &str = r#"trap "" XFSZ; exec "$0" "$@""#;

/// Reading `n`: its number, then padding up to `size` bytes.
fn reading(n: u16, size: usize) -> Vec<u8> {
    let mut payload = format!("{n} ").into_bytes();
    payload.resize(size, b'.');
    payload
}

/// The number of a reading's text.
fn reading_number(payload: &str) -> u16 {
    payload
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            let start: String = payload.chars().take(40).collect();
            panic!("unexpected payload {start:?}…")
        })
}

/// `inner` (program, arguments, environment) run through `sh` with SIGXFSZ ignored; `sh`
/// execs the program, so the process id is the program's.
fn with_sigxfsz_ignored(inner: &Command) -> Command {
    let inner = inner.as_std();
    let mut shell = Command::new("sh");
    shell
        .args(["-c", IGNORE_SIGXFSZ_AND_EXEC])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    shell
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    shell
}

/// Sets the soft file-size limit (RLIMIT_FSIZE) of process `pid`: `bytes`, or unlimited.
async fn set_file_size_limit(pid: u32, bytes: Option<u64>) {
    let soft = bytes.map_or_else(|| "unlimited".to_string(), |bytes| bytes.to_string());
    let output = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--fsize={soft}:"))
        .output()
        .await
        .expect("prlimit (util-linux) runs");
    assert!(
        output.status.success(),
        "prlimit --fsize={soft}: on {pid}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Size of the database file in `data_dir`.
fn database_size(data_dir: &Path) -> u64 {
    std::fs::metadata(data_dir.join(DATABASE_FILE))
        .expect("the database file exists")
        .len()
}

/// What the publisher learned: readings acknowledged (0x00) and refused (0x80).
#[derive(Default)]
struct Outcomes {
    acked: BTreeSet<u16>,
    refused: BTreeSet<u16>,
}

impl Outcomes {
    /// Publishes reading `n` with QoS 1 and records the PUBACK's verdict; any other reason
    /// than Success or Unspecified error fails the test.
    async fn publish(&mut self, publisher: &mut RawClient, n: u16) -> ReasonCode {
        let packet = publish_packet(TOPIC, QoS::AtLeastOnce, Some(n), &reading(n, READING_SIZE));
        let ack = publisher
            .publish(packet)
            .await
            .expect("a QoS 1 PUBLISH is answered");
        assert_eq!(ack.packet_id, n, "PUBACK packet id");
        match ack.reason {
            ReasonCode::Success => self.acked.insert(n),
            ReasonCode::UnspecifiedError => self.refused.insert(n),
            other => panic!("reading {n}: PUBACK {other:?}, expected Success or 0x80"),
        };
        ack.reason
    }

    /// Publishes readings `from..` until one gets `wanted`; returns the next number. Fails
    /// after [`MAX_READINGS`].
    async fn publish_until(
        &mut self,
        publisher: &mut RawClient,
        from: u16,
        wanted: ReasonCode,
    ) -> u16 {
        for n in from..from + MAX_READINGS {
            if self.publish(publisher, n).await == wanted {
                return n + 1;
            }
        }
        panic!(
            "no PUBACK {wanted:?} in {MAX_READINGS} readings from {from} ({} acked, {} refused)",
            self.acked.len(),
            self.refused.len()
        );
    }

    /// Publishes readings `numbers`, asserting each gets `expected` if given; returns the
    /// next number.
    async fn publish_all(
        &mut self,
        publisher: &mut RawClient,
        numbers: Range<u16>,
        expected: Option<ReasonCode>,
    ) -> u16 {
        let next = numbers.end;
        for n in numbers {
            let reason = self.publish(publisher, n).await;
            if let Some(expected) = expected {
                assert_eq!(reason, expected, "PUBACK of reading {n}");
            }
        }
        next
    }
}

/// Promise 1 under a full disk: a persistent v5 subscriber is offline, so every
/// reading must be queued on disk. Once the database file may not grow, v5 readings are
/// refused with PUBACK 0x80 (one of the PUBACK reason codes [MQTT-3.4.2-1]) and a 3.1.1
/// PUBLISH closes its connection; the broker keeps serving and logs the cause. When space
/// returns it acknowledges again with no restart, and after a SIGTERM restart the subscriber
/// receives every acknowledged reading.
#[tokio::test]
async fn full_disk_refuses_qos1_work_keeps_running_and_recovers_without_losing_acked_messages() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let mut cairn =
        ServeProcess::spawn(with_sigxfsz_ignored(&serve_command(data_dir.path()))).await;
    let subscriber_id = client_id("diskfull-sub", ProtocolVersion::V5);
    let mut subscriber = new_session(cairn.addr, ProtocolVersion::V5, &subscriber_id).await;
    subscribe_ok(&mut subscriber, 1, FILTER, QoS::AtLeastOnce).await;
    subscriber.go_offline().await;
    let mut publisher = RawClient::connect(cairn.addr, ProtocolVersion::V5, "diskfull-pub").await;
    let mut outcomes = Outcomes::default();
    let next = outcomes
        .publish_all(
            &mut publisher,
            1..READINGS_BEFORE + 1,
            Some(ReasonCode::Success),
        )
        .await;

    // The disk fills: the database file may grow a little more, then no further.
    let limit = database_size(data_dir.path()) + HEADROOM;
    set_file_size_limit(cairn.pid(), Some(limit)).await;
    let next = outcomes
        .publish_until(&mut publisher, next, ReasonCode::UnspecifiedError)
        .await;
    let next = outcomes
        .publish_all(&mut publisher, next..next + READINGS_WHILE_FULL, None)
        .await;

    // A 3.1.1 client cannot be told of the failure: its connection is closed, no PUBACK.
    let mut v311 = RawClient::connect(cairn.addr, ProtocolVersion::V311, "diskfull-v311").await;
    v311.send(&Packet::Publish(publish_packet(
        TOPIC,
        QoS::AtLeastOnce,
        Some(1),
        &reading(next, LARGE_READING_SIZE),
    )))
    .await;
    let seen = v311.expect_closed().await;
    assert!(
        seen.is_empty(),
        "3.1.1 QoS 1 PUBLISH on a full disk: connection closed without an ack, got {seen:?}"
    );

    // Still running, serving the connection it refused work on and new ones; the log names
    // the failed commit and its cause.
    publisher.expect_nothing_pending().await;
    let mut probe = RawClient::connect(cairn.addr, ProtocolVersion::V5, "diskfull-probe").await;
    probe.expect_nothing_pending().await;
    cairn
        .wait_for_log_line("naming the failed commit and EFBIG", |line| {
            line.contains("ERROR") && line.contains("commit") && line.contains("File too large")
        })
        .await;

    // Space returns: the broker recovers by itself, with no restart.
    set_file_size_limit(cairn.pid(), None).await;
    let recovered = outcomes
        .publish_until(&mut publisher, next + 1, ReasonCode::Success)
        .await;
    outcomes
        .publish_all(
            &mut publisher,
            recovered..recovered + READINGS_AFTER,
            Some(ReasonCode::Success),
        )
        .await;
    cairn.terminate().await;

    let cairn = process::start(data_dir.path()).await;
    let mut subscriber = resume(cairn.addr, ProtocolVersion::V5, &subscriber_id).await;
    let mut marker = RawClient::connect(cairn.addr, ProtocolVersion::V5, "diskfull-marker").await;
    publish(
        &mut marker,
        publish_packet(MARKER_TOPIC, QoS::AtLeastOnce, Some(1), MARKER.as_bytes()),
    )
    .await;
    let delivered: BTreeSet<u16> = receive_until_marker(&mut subscriber, MARKER_TOPIC, MARKER)
        .await
        .iter()
        .map(|publish| reading_number(&text(publish)))
        .collect();
    let lost: Vec<&u16> = outcomes.acked.difference(&delivered).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost across a full disk and a restart: {lost:?} (acked {:?})",
        outcomes.acked
    );
    // Refused readings (and the 3.1.1 one) may or may not be delivered: a refusal promises
    // nothing either way (the publisher must send again), and a failed commit is ambiguous
    // (the error can come after the data reached the disk). Nothing else may appear.
    let unknown: Vec<&u16> = delivered
        .iter()
        .filter(|n| !outcomes.acked.contains(n) && !outcomes.refused.contains(n) && **n != next)
        .collect();
    assert!(
        unknown.is_empty(),
        "delivered but never published: {unknown:?}"
    );
    cairn.kill().await;
}

/// Large filter `n` of the refused SUBSCRIBE (no wildcard: its topic is the same string).
fn large_filter(n: u16) -> String {
    format!("big/{n}/{}", "f".repeat(LARGE_FILTER_SIZE))
}

/// A SUBSCRIBE whose commit fails on a full disk is refused (SUBACK 0x80 for every filter,
/// in v5 and in 3.1.1) and subscribes to nothing: no retained message follows it, and a
/// message published to those topics afterwards does not reach the client, neither once space has returned nor after a restart
/// on the same data, where the session resumes with only what it had before.
async fn a_subscribe_refused_on_a_full_disk_subscribes_to_nothing(version: ProtocolVersion) {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let cairn = ServeProcess::spawn(with_sigxfsz_ignored(&serve_command(data_dir.path()))).await;
    let id = client_id("diskfull-subscribe", version);
    let mut watcher = new_session(cairn.addr, version, &id).await;
    subscribe_ok(&mut watcher, 1, MARKER_TOPIC, QoS::AtLeastOnce).await;
    // A retained message on a refused filter: it must not follow the refusal either.
    let mut retainer = RawClient::connect(cairn.addr, ProtocolVersion::V5, "diskfull-ret").await;
    let mut retained = publish_packet(&large_filter(0), QoS::AtLeastOnce, Some(1), b"kept");
    retained.retain = true;
    publish(&mut retainer, retained).await;

    set_file_size_limit(cairn.pid(), Some(database_size(data_dir.path()))).await;
    let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    watcher
        .send(&Packet::Subscribe(Subscribe {
            packet_id: 2,
            properties: Default::default(),
            filters: (0..LARGE_FILTERS)
                .map(|n| (large_filter(n), options))
                .collect(),
        }))
        .await;
    match watcher.recv().await {
        Packet::SubAck(suback) => assert_eq!(
            (suback.packet_id, suback.reasons),
            (2, vec![ReasonCode::UnspecifiedError; LARGE_FILTERS.into()]),
            "the SUBACK of a SUBSCRIBE whose commit failed"
        ),
        other => panic!("expected a SUBACK, got {other:?}"),
    }
    set_file_size_limit(cairn.pid(), None).await;
    expect_only_the_marker(&mut watcher, &cairn, "once space returned").await;

    cairn.terminate().await;
    let cairn = process::start(data_dir.path()).await;
    let mut watcher = resume(cairn.addr, version, &id).await;
    expect_only_the_marker(&mut watcher, &cairn, "after a restart").await;
    cairn.kill().await;
}

/// Publishes a QoS 1 message to every refused filter's topic, then the marker: `watcher`
/// must receive the marker alone.
async fn expect_only_the_marker(watcher: &mut RawClient, cairn: &ServeProcess, when: &str) {
    let mut publisher = RawClient::connect(cairn.addr, ProtocolVersion::V5, "diskfull-pub").await;
    for n in 0..LARGE_FILTERS {
        let message = publish_packet(&large_filter(n), QoS::AtLeastOnce, Some(n + 1), b"no");
        assert_eq!(
            publish(&mut publisher, message).await,
            ReasonCode::NoMatchingSubscribers,
            "{when}: the PUBACK of a message to refused filter {n}"
        );
    }
    let marker = publish_packet(MARKER_TOPIC, QoS::AtLeastOnce, Some(1), MARKER.as_bytes());
    publish(&mut publisher, marker).await;
    let seen = receive_until_marker(watcher, MARKER_TOPIC, MARKER).await;
    assert!(
        seen.is_empty(),
        "{when}: {} message(s) delivered on refused subscriptions",
        seen.len()
    );
}

#[tokio::test]
async fn a_v5_subscribe_refused_on_a_full_disk_subscribes_to_nothing() {
    a_subscribe_refused_on_a_full_disk_subscribes_to_nothing(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn a_v311_subscribe_refused_on_a_full_disk_subscribes_to_nothing() {
    a_subscribe_refused_on_a_full_disk_subscribes_to_nothing(ProtocolVersion::V311).await;
}
