//! Tests of [`AdminStore`] over a small populated store: what it reports, what it deletes, and
//! what it refuses.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use super::report::NEVER_EXPIRES;
use super::*;
use crate::codec::{QoS, SubscriptionOptions};
use crate::store::redb::tests::{self as fixture, enqueue_matched, message, put_session, will};

/// The moment the test sessions went offline: 2023-11-14T22:13:20Z.
pub(super) fn offline_at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A store with two sessions: `alpha` (offline, expiry 3600 s, one subscription, one queued
/// and one inflight message) and `beta` (connected at the last stop, never expires, a
/// Will); and one retained message.
fn populated() -> TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (store, _) = fixture::open(&dir);
    let alpha: Arc<str> = Arc::from("alpha");
    let ops = vec![
        put_session("alpha", 3600),
        StoreOp::Subscribe {
            client_id: alpha.clone(),
            filter: Arc::from("sensors/#"),
            options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            identifier: Some(7),
        },
        enqueue_matched(
            "alpha",
            &message(1, "sensors/a", b"12345"),
            QoS::AtLeastOnce,
            vec![7],
        ),
        enqueue_matched(
            "alpha",
            &message(2, "sensors/b", b"123"),
            QoS::AtLeastOnce,
            vec![7],
        ),
        StoreOp::Inflight {
            client_id: alpha.clone(),
            seq: 1,
            packet_id: 9,
            sent_topic: None,
        },
        StoreOp::Offline {
            client_id: alpha,
            at: offline_at(),
        },
        put_session("beta", NEVER_EXPIRES),
        StoreOp::Will {
            client_id: Arc::from("beta"),
            will: Some(Box::new(will("status/beta"))),
        },
        StoreOp::Retain {
            topic: Arc::from("config/mode"),
            message: Some(message(3, "config/mode", b"on")),
        },
    ];
    fixture::commit(&store, ops);
    store.close();
    dir
}

fn open(dir: &TempDir) -> AdminStore {
    AdminStore::open(dir.path()).unwrap_or_else(|error| panic!("admin open: {error}"))
}

#[test]
fn database_file_is_the_one_the_store_opens() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let opened = DurableStore::open(dir.path(), DurableOptions::default()).expect("open");
    assert!(dir.path().join(DATABASE_FILE).is_file());
    drop(opened);
}

#[test]
fn summaries_give_one_line_per_session() {
    let dir = populated();
    let summaries = summaries(open(&dir).recovered());
    assert_eq!(
        summaries,
        [
            SessionSummary {
                client_id: Arc::from("alpha"),
                expiry: Expiry::After(3600),
                last_seen: LastSeen::OfflineSince(offline_at()),
                subscriptions: 1,
                queued: 1,
                inflight: 1,
                has_will: false,
            },
            SessionSummary {
                client_id: Arc::from("beta"),
                expiry: Expiry::Never,
                last_seen: LastSeen::ConnectedAtLastStop,
                subscriptions: 0,
                queued: 0,
                inflight: 0,
                has_will: true,
            },
        ]
    );
    assert_eq!(summaries[0].last_seen.to_string(), "2023-11-14T22:13:20Z");
    assert_eq!(summaries[1].last_seen.to_string(), "connected at last stop");
    assert_eq!(summaries[1].expiry.to_string(), "never");
}

#[test]
fn details_show_subscriptions_messages_and_will() {
    let dir = populated();
    let store = open(&dir);
    let soon = offline_at() + Duration::from_secs(10);
    let alpha = store.details("alpha", soon).expect("alpha is stored");
    assert_eq!(
        alpha.deadline,
        Deadline::At(offline_at() + Duration::from_secs(3600))
    );
    assert_eq!(
        alpha.subscriptions[0].to_string(),
        "sensors/#  QoS 1, no local: no, retain as published: no, retain handling: 0, \
         identifier: 7"
    );
    assert_eq!(
        alpha.queued[0].to_string(),
        "sensors/b  QoS 1, 3 bytes, retain: no, message 2, subscription identifiers: 7"
    );
    assert_eq!(
        alpha.inflight[0].to_string(),
        "packet 9, awaiting PUBACK: sensors/a  QoS 1, 5 bytes, retain: no, message 1, \
         subscription identifiers: 7"
    );
    assert_eq!(alpha.will, None);
    let beta = store.details("beta", soon).expect("beta is stored");
    assert_eq!(beta.deadline, Deadline::Never);
    assert_eq!(
        beta.will.map(|will| will.to_string()).as_deref(),
        Some("status/beta  QoS 1, 4 bytes, retain: yes, delay: 30s, set by: user alice")
    );
}

#[test]
fn a_will_line_says_who_set_the_will() {
    use crate::model::WillSender;
    for (sender, shown) in [
        (
            WillSender::Client(Some(Arc::from("bob"))),
            "set by: user bob",
        ),
        (
            WillSender::Client(None),
            "set by: a client without a user name",
        ),
        (
            WillSender::Unknown,
            "set by: unknown (stored by an older release; sent without an ACL check)",
        ),
    ] {
        let line = WillLine {
            topic: "status/x".into(),
            qos: QoS::AtMostOnce,
            retain: false,
            payload_bytes: 0,
            delay: None,
            sender,
        };
        assert!(line.to_string().ends_with(shown), "{line}");
    }
}

#[test]
fn unknown_session_is_an_error_naming_it() {
    let dir = populated();
    let store = open(&dir);
    let error = store
        .details("gamma", SystemTime::now())
        .expect_err("absent");
    assert!(error.to_string().contains("\"gamma\""), "{error}");
    let error = store.drop_session("gamma").expect_err("absent");
    assert!(matches!(error, AdminError::NoSuchSession { .. }), "{error}");
}

#[test]
fn stats_count_rows_and_payload_bytes() {
    let dir = populated();
    let stats = open(&dir).stats();
    assert_eq!(stats.file, dir.path().join(DATABASE_FILE));
    assert!(stats.file_bytes > 0);
    assert_eq!((stats.sessions, stats.connected_at_last_stop), (2, 1));
    assert_eq!((stats.subscriptions, stats.wills), (1, 1));
    let tally = |count, payload_bytes| Tally {
        count,
        payload_bytes,
    };
    assert_eq!(stats.queued, tally(1, 3));
    assert_eq!(stats.inflight, tally(1, 5));
    assert_eq!(stats.bodies, tally(2, 8));
    assert_eq!(stats.retained, tally(1, 2));
}

#[test]
fn dropping_a_session_deletes_it_and_nothing_else() {
    let dir = populated();
    open(&dir).drop_session("alpha").expect("alpha dropped");
    let store = open(&dir);
    let left: Vec<&str> = store
        .recovered()
        .sessions
        .iter()
        .map(|session| &*session.client_id)
        .collect();
    assert_eq!(left, ["beta"]);
    assert_eq!(store.recovered().retained.len(), 1);
}

#[test]
fn a_directory_without_a_store_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("absent");
    let error = AdminStore::open(&missing).expect_err("no store");
    assert!(matches!(error, AdminError::NoStore { .. }), "{error}");
    assert!(!missing.exists(), "nothing is created");
}

#[test]
fn an_open_store_is_reported_as_a_running_broker_with_its_pid() {
    let dir = populated();
    let running = DurableStore::open(dir.path(), DurableOptions::default()).expect("open");
    let error = AdminStore::open(dir.path()).expect_err("locked");
    let AdminError::BrokerRunning { pid, .. } = &error else {
        panic!("expected BrokerRunning, got {error}");
    };
    if cfg!(target_os = "linux") {
        assert_eq!(*pid, Some(std::process::id()), "{error}");
    }
    assert!(error.to_string().contains("stop it first"), "{error}");
    drop(running);
}

/// The file's bytes.
fn bytes_of(dir: &Path) -> Vec<u8> {
    fs::read(dir.join(DATABASE_FILE)).expect("the database file")
}

/// A copy of the store in `dir` taken while it is open, as a crash leaves it (redb has not
/// closed it), in a new directory.
fn crash_image_of(dir: &TempDir) -> TempDir {
    let image = tempfile::tempdir().expect("temporary directory");
    fs::copy(
        dir.path().join(DATABASE_FILE),
        image.path().join(DATABASE_FILE),
    )
    .expect("copy of the open file");
    image
}

/// The inspection commands write nothing: the file has the same bytes before and after, on a
/// store closed cleanly.
#[test]
fn reading_a_store_leaves_its_file_as_it_was() {
    let dir = populated();
    let before = bytes_of(dir.path());
    let store = open(&dir);
    assert_eq!(store.stats().sessions, 2);
    assert!(store.details("alpha", SystemTime::now()).is_ok());
    drop(store);
    assert!(bytes_of(dir.path()) == before, "the file changed");
}

/// A store a crash left needing a repair (redb's read-only open refuses it) is read all the
/// same, the repair made in memory only: the file keeps its bytes, so a store on read-only
/// media, or one the operator may not write, can be inspected after a crash. Dropping a
/// session still opens it for writing and repairs it.
#[test]
fn a_store_left_by_a_crash_is_read_without_repairing_its_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (running, _) = fixture::open(&dir);
    fixture::commit(&running, vec![put_session("alpha", 3600)]);
    fixture::commit(
        &running,
        vec![
            put_session("beta", 60),
            enqueue_matched(
                "beta",
                &message(1, "sensors/b", b"123"),
                QoS::AtLeastOnce,
                vec![],
            ),
        ],
    );
    let image = crash_image_of(&dir);
    drop(running);
    assert!(
        matches!(
            redb::ReadOnlyDatabase::open(image.path().join(DATABASE_FILE)),
            Err(redb::DatabaseError::RepairAborted)
        ),
        "the image needs a repair"
    );
    let before = bytes_of(image.path());

    let store = open(&image);
    let ids: Vec<&str> = store
        .recovered()
        .sessions
        .iter()
        .map(|session| &*session.client_id)
        .collect();
    assert_eq!(ids, ["alpha", "beta"]);
    assert_eq!(store.stats().queued.count, 1);
    let details = store.details("beta", SystemTime::now()).expect("beta");
    assert_eq!(details.queued.len(), 1);
    assert!(bytes_of(image.path()) == before, "the file changed");

    store.drop_session("alpha").expect("alpha dropped");
    let left = open(&image);
    assert_eq!(left.recovered().sessions.len(), 1);
}

/// An empty database file (0 bytes) reads as an empty store, and stays empty.
#[test]
fn an_empty_file_reads_as_an_empty_store() {
    let dir = tempfile::tempdir().expect("temporary directory");
    fs::write(dir.path().join(DATABASE_FILE), b"").expect("an empty file");
    let store = open(&dir);
    assert_eq!(store.stats().sessions, 0);
    assert!(store.recovered().retained.is_empty());
    assert!(bytes_of(dir.path()).is_empty(), "the file changed");
}
