//! Tests of the durable store through its public API (open, submit, close, reopen), looking into
//! the tables directly only to check what is stored (bodies once, rows removed). Its builders of
//! stores, messages and ops also fill the store the admin tests read.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};
use tempfile::TempDir;

use super::tables::{
    FILE_NAME, INBOUND_QOS2, INFLIGHT, MESSAGES, MESSAGE_REFS, META, META_SCHEMA_VERSION, QUEUE,
    SCHEMA_VERSION, SESSIONS, SUBSCRIPTIONS, WILLS,
};
use super::*;
use crate::codec::{Properties, QoS, SubscriptionOptions, Will};
use crate::model::{
    Delivery, Inflight, Message, OutboundState, RecoveredSession, SessionWill, WillSender,
    FIRST_RELEASE_ORDER,
};
use tokio::sync::oneshot;

/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(60);

fn options() -> DurableOptions {
    DurableOptions::default()
}

pub(crate) fn open(dir: &TempDir) -> (DurableStore, Recovered) {
    match DurableStore::open(dir.path(), options()) {
        Ok(opened) => opened,
        Err(error) => panic!("open failed: {error}"),
    }
}

fn reopen(dir: &TempDir, store: DurableStore) -> Recovered {
    store.close();
    open(dir).1
}

/// Submits a batch and waits for its commit.
pub(crate) fn commit(store: &DurableStore, ops: Vec<StoreOp>) {
    let outcome = outcome(store.submit(ops, Pace::Window));
    assert!(
        matches!(outcome, Some(Ok(()))),
        "commit failed: {outcome:?}"
    );
}

fn id(client: &str) -> Arc<str> {
    Arc::from(client)
}

/// A QoS 2 message from "publisher".
pub(crate) fn message(id: u64, topic: &str, payload: &'static [u8]) -> Arc<Message> {
    Arc::new(Message {
        id,
        topic: Arc::from(topic),
        payload: Bytes::from_static(payload),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: None,
        expires_at: None,
        publisher: Some(Arc::from("publisher")),
    })
}

fn delivery(message: &Arc<Message>, qos: QoS) -> Delivery {
    Delivery {
        message: message.clone(),
        qos,
        retain: false,
        subscription_ids: Vec::new(),
        queued_at: 1_700_000_000,
    }
}

pub(crate) fn put_session(client: &str, expiry_interval: u32) -> StoreOp {
    StoreOp::PutSession {
        client_id: id(client),
        expiry_interval,
    }
}

/// Queues `message` for `client` as the entry numbered with the message id (each test queues
/// a message at most once per session).
fn enqueue(client: &str, message: &Arc<Message>, qos: QoS) -> StoreOp {
    enqueue_matched(client, message, qos, Vec::new())
}

/// [`enqueue`], for a message that matched the subscriptions `subscription_ids`.
pub(crate) fn enqueue_matched(
    client: &str,
    message: &Arc<Message>,
    qos: QoS,
    subscription_ids: Vec<u32>,
) -> StoreOp {
    StoreOp::Enqueue {
        client_id: id(client),
        seq: message.id,
        delivery: Delivery {
            subscription_ids,
            ..delivery(message, qos)
        },
    }
}

fn inflight(client: &str, packet_id: u16, seq: u64) -> StoreOp {
    StoreOp::Inflight {
        client_id: id(client),
        seq,
        packet_id,
        sent_topic: None,
    }
}

/// Reads queue entries `range` of a session back through the writer.
fn released(client: &str, packet_id: u16, order: u64) -> StoreOp {
    StoreOp::Released {
        client_id: id(client),
        packet_id,
        order,
    }
}

fn load(store: &DurableStore, client: &str, range: std::ops::Range<u64>) -> Vec<(u64, Delivery)> {
    match store.load(id(client), range).blocking_recv() {
        Ok(Ok(entries)) => entries,
        other => panic!("load failed: {other:?}"),
    }
}

fn acked(client: &str, packet_id: u16) -> StoreOp {
    StoreOp::Acked {
        client_id: id(client),
        packet_id,
    }
}

fn subscribe(client: &str, filter: &str, qos: QoS, identifier: Option<u32>) -> StoreOp {
    StoreOp::Subscribe {
        client_id: id(client),
        filter: Arc::from(filter),
        options: SubscriptionOptions {
            qos,
            no_local: true,
            retain_as_published: false,
            retain_handling: 2,
        },
        identifier,
    }
}

/// A QoS 1 retained Will of 4 payload bytes with a Will Delay of 30 s, set by user "alice".
pub(crate) fn will(topic: &str) -> SessionWill {
    SessionWill {
        will: Will {
            topic: topic.into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                will_delay_interval: Some(30),
                ..Properties::default()
            },
        },
        sender: WillSender::Client(Some(id("alice"))),
    }
}

/// What a delivery is, comparably.
fn summary(delivery: &Delivery) -> (u64, String, Bytes, QoS, bool, Vec<u32>) {
    (
        delivery.message.id,
        delivery.message.topic.to_string(),
        delivery.message.payload.clone(),
        delivery.qos,
        delivery.retain,
        delivery.subscription_ids.clone(),
    )
}

fn session<'r>(recovered: &'r Recovered, client: &str) -> &'r RecoveredSession {
    match recovered.sessions.iter().find(|s| &*s.client_id == client) {
        Some(session) => session,
        None => panic!("session {client} not recovered"),
    }
}

/// Rows of a table, read with the store closed.
fn rows<K: redb::Key + 'static, V: redb::Value + 'static>(
    dir: &TempDir,
    table: TableDefinition<K, V>,
) -> u64 {
    let database = Database::create(dir.path().join(FILE_NAME)).unwrap();
    let txn = database.begin_read().unwrap();
    txn.open_table(table).unwrap().len().unwrap()
}

#[test]
fn everything_written_is_recovered_after_reopen() {
    let dir = TempDir::new().unwrap();
    let (store, recovered) = open(&dir);
    assert!(recovered.sessions.is_empty() && recovered.retained.is_empty());
    let offline_at = UNIX_EPOCH + Duration::new(1_750_000_000, 123_456_789);
    let (m1, m2, m3, m4) = (
        message(1, "a/1", b"one"),
        message(2, "a/2", b"two"),
        message(3, "a/3", b"three"),
        message(4, "a/4", b"four"),
    );
    let mut with_ids = delivery(&m3, QoS::AtLeastOnce);
    with_ids.subscription_ids = vec![5, 9];
    with_ids.retain = true;
    let retained = Arc::new(Message {
        retain: true,
        properties: Some(Box::new(Properties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        })),
        ..Message::from_broker(10, "status/gw", Bytes::from_static(b"up"), true)
    });
    commit(
        &store,
        vec![
            put_session("alpha", 3600),
            put_session("beta", u32::MAX),
            subscribe("alpha", "a/#", QoS::AtLeastOnce, Some(5)),
            subscribe("alpha", "$share/g/b/+", QoS::ExactlyOnce, None),
            subscribe("alpha", "gone", QoS::AtMostOnce, None),
            StoreOp::Unsubscribe {
                client_id: id("alpha"),
                filter: Arc::from("gone"),
            },
        ],
    );
    commit(
        &store,
        vec![
            enqueue("alpha", &m1, QoS::AtLeastOnce),
            enqueue("alpha", &m2, QoS::ExactlyOnce),
            StoreOp::Enqueue {
                client_id: id("alpha"),
                seq: 3,
                delivery: with_ids.clone(),
            },
            enqueue("alpha", &m4, QoS::ExactlyOnce),
            inflight("alpha", 11, 1),
            inflight("alpha", 10, 2),
            released("alpha", 10, FIRST_RELEASE_ORDER),
            StoreOp::InboundQos2 {
                client_id: id("alpha"),
                packet_id: 9,
                awaiting: true,
            },
            StoreOp::InboundQos2 {
                client_id: id("alpha"),
                packet_id: 7,
                awaiting: true,
            },
            StoreOp::InboundQos2 {
                client_id: id("alpha"),
                packet_id: 8,
                awaiting: true,
            },
            StoreOp::InboundQos2 {
                client_id: id("alpha"),
                packet_id: 8,
                awaiting: false,
            },
            StoreOp::Will {
                client_id: id("alpha"),
                will: Some(Box::new(will("dead/alpha"))),
            },
            StoreOp::Offline {
                client_id: id("alpha"),
                at: offline_at,
            },
            StoreOp::Offline {
                client_id: id("beta"),
                at: SystemTime::now(),
            },
            put_session("beta", u32::MAX),
            StoreOp::Retain {
                topic: retained.topic.clone(),
                message: Some(retained.clone()),
            },
            StoreOp::Retain {
                topic: Arc::from("cleared"),
                message: Some(message(12, "cleared", b"x")),
            },
            StoreOp::Retain {
                topic: Arc::from("cleared"),
                message: None,
            },
        ],
    );
    store.close();
    let (store, recovered) = open(&dir);

    assert_eq!(recovered.sessions.len(), 2);
    let alpha = session(&recovered, "alpha");
    assert_eq!(alpha.expiry_interval, 3600);
    assert_eq!(alpha.offline_since, Some(offline_at));
    let filters: Vec<_> = alpha
        .subscriptions
        .iter()
        .map(|(filter, options, identifier)| (filter.to_string(), options.qos, *identifier))
        .collect();
    assert_eq!(
        filters,
        vec![
            ("$share/g/b/+".to_string(), QoS::ExactlyOnce, None),
            ("a/#".to_string(), QoS::AtLeastOnce, Some(5)),
        ]
    );
    assert!(alpha.subscriptions[0].1.no_local && alpha.subscriptions[0].1.retain_handling == 2);
    let positions: Vec<_> = alpha
        .queue
        .iter()
        .map(|entry| (entry.seq, entry.size))
        .collect();
    assert_eq!(
        positions,
        vec![(3, 8), (4, 7)],
        "(sequence number, topic + payload bytes)"
    );
    assert_eq!(alpha.next_sequence, 5);
    let queued = load(&store, "alpha", 0..alpha.next_sequence);
    let queue: Vec<_> = queued
        .iter()
        .map(|(_, delivery)| summary(delivery))
        .collect();
    assert_eq!(
        queue,
        vec![
            summary(&with_ids),
            summary(&delivery(&m4, QoS::ExactlyOnce))
        ]
    );
    let window: Vec<_> = alpha
        .inflight
        .iter()
        .map(|entry| (entry.packet_id, entry.delivery.message.id, entry.state))
        .collect();
    assert_eq!(
        window,
        vec![
            (10, 2, OutboundState::AwaitingPubComp),
            (11, 1, OutboundState::AwaitingPubAck),
        ],
        "inflight window in resend order, with states"
    );
    assert_eq!(alpha.inbound_qos2, vec![7, 9]);
    assert_eq!(alpha.will, Some(will("dead/alpha")));
    assert_eq!(queued[0].1.message.publisher.as_deref(), Some("publisher"));

    let beta = session(&recovered, "beta");
    assert_eq!(beta.expiry_interval, u32::MAX);
    assert_eq!(
        beta.offline_since, None,
        "PutSession after Offline clears it"
    );
    assert!(beta.subscriptions.is_empty() && beta.queue.is_empty() && beta.will.is_none());

    assert_eq!(recovered.retained.len(), 1);
    let kept = &recovered.retained[0];
    assert_eq!(
        (&*kept.topic, &kept.payload[..], kept.id, kept.retain),
        ("status/gw", &b"up"[..], 10, true)
    );
    assert_eq!(kept.properties, retained.properties);
    assert_eq!(
        recovered.next_message_id, 11,
        "above every id still held: the retained message 10 and the queued bodies 1 to 4"
    );
}

#[test]
fn shared_body_is_stored_once_and_deleted_after_the_last_reference() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let body = message(7, "fan/out", b"shared payload");
    let mut ops: Vec<StoreOp> = ["s1", "s2", "s3"]
        .iter()
        .map(|client| put_session(client, 60))
        .collect();
    ops.extend(
        ["s1", "s2", "s3"]
            .iter()
            .map(|client| enqueue(client, &body, QoS::AtLeastOnce)),
    );
    commit(&store, ops);
    store.close();
    assert_eq!(rows(&dir, MESSAGES), 1, "one body for three queues");
    assert_eq!(rows(&dir, QUEUE), 3);

    let (store, _) = open(&dir);
    commit(
        &store,
        vec![
            inflight("s1", 1, 7),
            acked("s1", 1),
            StoreOp::Discard {
                client_id: id("s2"),
                seq: 7,
            },
        ],
    );
    store.close();
    assert_eq!(rows(&dir, MESSAGES), 1, "s3 still refers to the body");

    let (store, _) = open(&dir);
    commit(&store, vec![inflight("s3", 4, 7)]);
    commit(
        &store,
        vec![released("s3", 4, FIRST_RELEASE_ORDER), acked("s3", 4)],
    );
    store.close();
    assert_eq!(rows(&dir, MESSAGES), 0, "released by the last ack");
    assert_eq!(rows(&dir, MESSAGE_REFS), 0);
    assert_eq!(rows(&dir, QUEUE) + rows(&dir, INFLIGHT), 0);
}

/// An open store with sessions "a" and "b", messages 1 to `count` queued for "a" and the
/// messages `for_b` for "b" (a body both queues hold is stored once).
fn queued_for_a_and_b(dir: &TempDir, count: u64, for_b: &[u64]) -> DurableStore {
    let (store, _) = open(dir);
    let queued = |client, id| enqueue(client, &message(id, "t", b"p"), QoS::AtLeastOnce);
    let mut ops = vec![put_session("a", 60), put_session("b", 60)];
    ops.extend((1..=count).map(|id| queued("a", id)));
    ops.extend(for_b.iter().map(|&id| queued("b", id)));
    commit(&store, ops);
    store
}

/// A queue draining in order discards runs of consecutive entries (sent and acknowledged in
/// one group, or discarded); each entry and body goes, bodies another queue holds stay, an
/// entry outside the runs stays, and a discard of an entry not stored changes nothing.
#[test]
fn runs_of_discarded_entries_remove_exactly_their_rows_and_bodies() {
    let dir = TempDir::new().unwrap();
    let store = queued_for_a_and_b(&dir, 10, &[4, 5]);
    let discard = |client: &str, seq| StoreOp::Discard {
        client_id: id(client),
        seq,
    };
    commit(
        &store,
        vec![
            discard("a", 1),
            discard("a", 2),
            discard("a", 3),
            inflight("a", 1, 4),
            inflight("a", 2, 5),
            inflight("a", 3, 6),
            acked("a", 1),
            acked("a", 2),
            acked("a", 3),
            discard("b", 5),
            discard("a", 8),
            discard("a", 9),
            discard("a", 30),
        ],
    );
    let left: Vec<u64> = load(&store, "a", 0..40)
        .iter()
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(left, [7, 10], "only the entries outside the runs are left");
    assert_eq!(load(&store, "b", 0..40)[0].1.message.id, 4);
    let recovered = reopen(&dir, store);
    let seqs = |client| -> Vec<u64> {
        session(&recovered, client)
            .queue
            .iter()
            .map(|entry| entry.seq)
            .collect()
    };
    assert_eq!((seqs("a"), seqs("b")), (vec![7, 10], vec![4]));
    assert!(session(&recovered, "a").inflight.is_empty());
    drop(recovered);
    assert_eq!(rows(&dir, QUEUE), 3);
    assert_eq!(rows(&dir, INFLIGHT), 0);
    assert_eq!(
        rows(&dir, MESSAGES),
        3,
        "bodies 4 (still queued for b), 7 and 10"
    );
    assert_eq!(rows(&dir, MESSAGE_REFS), 0, "body 4 is held once again");
}

/// A page cache smaller than one commit's pages (or none) changes only how often redb reads
/// the file: every entry is kept, read back through the writer and recovered, in order.
#[test]
fn a_small_page_cache_keeps_and_reads_back_every_entry() {
    static KIB: [u8; 1024] = [7; 1024];
    for cache_bytes in [0, 64 * 1024] {
        let dir = TempDir::new().unwrap();
        let options = DurableOptions {
            cache_bytes,
            ..options()
        };
        let (store, _) = DurableStore::open(dir.path(), options).expect("open");
        commit(&store, vec![put_session("a", 60)]);
        for batch in 0..4u64 {
            let ids = batch * 500 + 1..=batch * 500 + 500;
            let ops = ids.map(|id| enqueue("a", &message(id, "t", &KIB), QoS::AtLeastOnce));
            commit(&store, ops.collect());
        }
        let discards = (1..=1_000).map(|seq| StoreOp::Discard {
            client_id: id("a"),
            seq,
        });
        commit(&store, discards.collect());
        let loaded = load(&store, "a", 0..3_000);
        let seqs: Vec<u64> = loaded.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(
            seqs,
            (1_001..=2_000).collect::<Vec<_>>(),
            "cache {cache_bytes}"
        );
        assert!(loaded.iter().all(|(_, d)| d.message.payload[..] == KIB[..]));
        store.close();
        let (store, recovered) = DurableStore::open(dir.path(), options).expect("reopen");
        let queue = &session(&recovered, "a").queue;
        let seqs: Vec<u64> = queue.iter().map(|entry| entry.seq).collect();
        assert_eq!(
            seqs,
            (1_001..=2_000).collect::<Vec<_>>(),
            "cache {cache_bytes}"
        );
        assert_eq!(load(&store, "a", 1_990..1_995).len(), 5);
        store.close();
    }
}

/// A run long enough to span many B-tree pages of the queue and of the bodies removes every
/// row of it and none next to it.
#[test]
fn a_run_over_many_pages_removes_exactly_its_rows() {
    let dir = TempDir::new().unwrap();
    let store = queued_for_a_and_b(&dir, 3_000, &[3_001]);
    let discards = (2..3_000).map(|seq| StoreOp::Discard {
        client_id: id("a"),
        seq,
    });
    commit(&store, discards.collect());
    let left: Vec<u64> = load(&store, "a", 0..4_000)
        .iter()
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(left, [1, 3_000]);
    store.close();
    assert_eq!(rows(&dir, QUEUE), 3);
    assert_eq!(rows(&dir, MESSAGES), 3, "bodies 1, 3000 and b's 3001");
}

#[test]
fn delete_session_removes_all_its_rows_and_only_its_rows() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let shared = message(1, "t", b"shared");
    let own = message(2, "t", b"own");
    let mut ops = Vec::new();
    // "victim" is a prefix of "victim2": its ranges must not reach the longer name.
    for client in ["victim", "victim2"] {
        ops.extend([
            put_session(client, 60),
            subscribe(client, "t", QoS::AtLeastOnce, None),
            enqueue(client, &shared, QoS::AtLeastOnce),
            StoreOp::InboundQos2 {
                client_id: id(client),
                packet_id: 3,
                awaiting: true,
            },
            StoreOp::Will {
                client_id: id(client),
                will: Some(Box::new(will("w"))),
            },
        ]);
    }
    ops.extend([
        enqueue("victim", &own, QoS::ExactlyOnce),
        inflight("victim", 5, 2),
    ]);
    commit(&store, ops);
    commit(
        &store,
        vec![StoreOp::DeleteSession {
            client_id: id("victim"),
        }],
    );
    let recovered = reopen(&dir, store);
    store_is_only_victim2(&recovered);
    drop(recovered);
    assert_eq!(rows(&dir, SESSIONS), 1);
    assert_eq!(rows(&dir, SUBSCRIPTIONS), 1);
    assert_eq!(rows(&dir, QUEUE), 1);
    assert_eq!(rows(&dir, INFLIGHT), 0);
    assert_eq!(rows(&dir, INBOUND_QOS2), 1);
    assert_eq!(rows(&dir, WILLS), 1);
    assert_eq!(rows(&dir, MESSAGES), 1, "the victim's own body is gone");
}

fn store_is_only_victim2(recovered: &Recovered) {
    assert_eq!(recovered.sessions.len(), 1);
    let survivor = session(recovered, "victim2");
    assert_eq!(survivor.subscriptions.len(), 1);
    assert_eq!(survivor.queue.len(), 1);
    assert_eq!(survivor.inbound_qos2, vec![3]);
    assert!(survivor.will.is_some());
}

#[test]
fn ops_for_unknown_sessions_and_entries_are_ignored() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let body = message(3, "t", b"x");
    commit(
        &store,
        vec![
            subscribe("ghost", "t", QoS::AtLeastOnce, None),
            enqueue("ghost", &body, QoS::AtLeastOnce),
            inflight("ghost", 1, 3),
            acked("ghost", 1),
            released("ghost", 1, FIRST_RELEASE_ORDER),
            StoreOp::Discard {
                client_id: id("ghost"),
                seq: 3,
            },
            StoreOp::Offline {
                client_id: id("ghost"),
                at: SystemTime::now(),
            },
            StoreOp::InboundQos2 {
                client_id: id("ghost"),
                packet_id: 1,
                awaiting: true,
            },
            StoreOp::Will {
                client_id: id("ghost"),
                will: Some(Box::new(will("w"))),
            },
            StoreOp::Unsubscribe {
                client_id: id("ghost"),
                filter: Arc::from("t"),
            },
            StoreOp::DeleteSession {
                client_id: id("ghost"),
            },
            // A session deleted earlier in the same batch, then acked.
            put_session("brief", 10),
            enqueue("brief", &body, QoS::AtLeastOnce),
            inflight("brief", 2, 3),
            StoreOp::DeleteSession {
                client_id: id("brief"),
            },
            acked("brief", 2),
            // Entries that do not exist in a session that does.
            put_session("real", 10),
            acked("real", 9),
            inflight("real", 9, 99),
        ],
    );
    let recovered = reopen(&dir, store);
    assert_eq!(recovered.sessions.len(), 1);
    let real = session(&recovered, "real");
    assert!(real.queue.is_empty() && real.inflight.is_empty());
    drop(recovered);
    assert_eq!(rows(&dir, MESSAGES), 0);
    assert_eq!(
        rows(&dir, QUEUE) + rows(&dir, SUBSCRIPTIONS) + rows(&dir, WILLS),
        0
    );
}

#[test]
fn second_open_of_the_same_directory_is_refused_while_the_first_is_open() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let error = DurableStore::open(dir.path(), options()).err();
    assert!(
        matches!(error, Some(OpenError::AlreadyOpen { .. })),
        "{error:?}"
    );
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("another cairn is running on this data directory"));
    assert!(message.contains(FILE_NAME), "names the file: {message}");
    store.close();
    assert!(DurableStore::open(dir.path(), options()).is_ok());
}

#[test]
fn garbage_file_is_refused_and_left_byte_for_byte_intact() {
    for garbage in [
        b"hello".to_vec(),
        (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect(),
    ] {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, &garbage).unwrap();
        let error = DurableStore::open(dir.path(), options()).err();
        assert!(
            matches!(error, Some(OpenError::Unreadable { .. })),
            "{error:?}"
        );
        let message = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("left untouched") && message.contains(FILE_NAME));
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }
}

/// A store cut short, inside its header or after it, is refused as a file that cannot be
/// used (which `--repair` sets aside), not as an I/O error (which it never does): a read past
/// the end of the file is the file's fault.
#[test]
fn a_store_cut_short_is_unusable_not_an_io_error() {
    let dir = TempDir::new().unwrap();
    open(&dir).0.close();
    let path = dir.path().join(FILE_NAME);
    let whole = std::fs::read(&path).unwrap();
    for length in [9, 100, 320, 5000] {
        std::fs::write(&path, &whole[..length]).unwrap();
        let error = DurableStore::open(dir.path(), options()).err();
        assert!(
            matches!(
                error,
                Some(OpenError::Unreadable { .. } | OpenError::Damaged { .. })
            ),
            "{length} bytes: {error:?}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            &whole[..length],
            "left as it was"
        );
    }
}

/// Offsets in a file of `len` bytes to damage: the first bytes of every page (its type and
/// header), one in its middle and its last.
fn page_offsets(len: usize) -> impl Iterator<Item = usize> {
    const PAGE: usize = 4096;
    (0..len)
        .step_by(PAGE)
        .flat_map(|page| [0, 1, 9, 64, PAGE / 2, PAGE - 1].map(|at| page + at))
        .filter(move |&offset| offset < len)
}

/// A byte changed in the file (a worn flash cell, a stray write) never makes the open panic,
/// wherever it is: the file is refused as damaged (or unreadable, in its header) and left as it
/// was, or, where the byte is in a page the last commit does not reach, it opens with every row
/// that was stored.
#[test]
fn a_changed_byte_is_refused_or_harmless_never_a_panic() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let body = message(1, "flip/a", b"kept");
    commit(
        &store,
        vec![
            put_session("flipped", 600),
            enqueue("flipped", &body, QoS::AtLeastOnce),
        ],
    );
    store.close();
    let path = dir.path().join(FILE_NAME);
    let pristine = std::fs::read(&path).unwrap();
    let mut refused = 0;
    for offset in page_offsets(pristine.len()) {
        let mut damaged = pristine.clone();
        damaged[offset] ^= 0xFF;
        std::fs::write(&path, &damaged).unwrap();
        match DurableStore::open(dir.path(), options()) {
            Ok((store, recovered)) => {
                let entries = &session(&recovered, "flipped").queue;
                assert_eq!(
                    entries.len(),
                    1,
                    "byte {offset}: the queued message is kept"
                );
                store.close();
            }
            Err(OpenError::Damaged { .. } | OpenError::Unreadable { .. }) => {
                refused += 1;
                assert!(
                    std::fs::read(&path).unwrap() == damaged,
                    "byte {offset}: written to"
                );
            }
            Err(other) => panic!("byte {offset}: {other}"),
        }
    }
    assert!(refused > 0, "some byte mattered");
}

/// A store in `dir` whose meta table says schema `version`; returns its file.
fn store_of_schema(dir: &TempDir, version: u64) -> std::path::PathBuf {
    open(dir).0.close();
    let path = dir.path().join(FILE_NAME);
    let database = Database::create(&path).unwrap();
    let txn = database.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert(META_SCHEMA_VERSION, version)
        .unwrap();
    txn.commit().unwrap();
    path
}

#[test]
fn newer_schema_version_is_refused_naming_both_versions() {
    let dir = TempDir::new().unwrap();
    let path = store_of_schema(&dir, SCHEMA_VERSION + 1);
    let before = std::fs::read(&path).unwrap();
    let error = DurableStore::open(dir.path(), options()).err();
    assert!(
        matches!(error, Some(OpenError::NewerSchema { found, supported, .. })
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{error:?}"
    );
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains(&format!("schema version {}", SCHEMA_VERSION + 1))
            && message.contains(&format!("version {SCHEMA_VERSION}"))
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "not written to");
}

/// A newer schema's file a crash left needing a repair is refused untouched too: the check
/// reads it with the repair made in memory, so nothing is written before the refusal.
#[test]
fn newer_schema_version_left_by_a_crash_is_refused_untouched() {
    let dir = TempDir::new().unwrap();
    open(&dir).0.close();
    let database = Database::create(dir.path().join(FILE_NAME)).unwrap();
    let txn = database.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert(META_SCHEMA_VERSION, SCHEMA_VERSION + 1)
        .unwrap();
    txn.commit().unwrap();
    // A copy while it is open: what a crash leaves.
    let image = TempDir::new().unwrap();
    let path = image.path().join(FILE_NAME);
    std::fs::copy(dir.path().join(FILE_NAME), &path).unwrap();
    drop(database);
    assert!(
        matches!(
            redb::ReadOnlyDatabase::open(&path),
            Err(redb::DatabaseError::RepairAborted)
        ),
        "the copy needs a repair"
    );
    let before = std::fs::read(&path).unwrap();
    let error = DurableStore::open(image.path(), options()).err();
    assert!(
        matches!(error, Some(OpenError::NewerSchema { found, .. }) if found == SCHEMA_VERSION + 1),
        "{error:?}"
    );
    assert!(std::fs::read(&path).unwrap() == before, "not written to");
}

#[test]
fn redb_file_of_another_program_is_refused() {
    let dir = TempDir::new().unwrap();
    {
        let database = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = database.begin_write().unwrap();
        let other: TableDefinition<&str, &str> = TableDefinition::new("accounts");
        txn.open_table(other).unwrap().insert("a", "b").unwrap();
        txn.commit().unwrap();
    }
    let error = DurableStore::open(dir.path(), options()).err();
    assert!(
        matches!(error, Some(OpenError::Foreign { .. })),
        "{error:?}"
    );
}

#[test]
fn concurrent_batches_share_commits() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 125;
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let store = Arc::new(store);
    commit(
        &store,
        (0..THREADS)
            .map(|t| put_session(&format!("c{t}"), 60))
            .collect(),
    );
    let before = store
        .metrics()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, start) = (store.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let client = format!("c{t}");
                let pending: Vec<_> = (0..PER_THREAD)
                    .map(|i| {
                        let id = (t * PER_THREAD + i) as u64 + 1;
                        let body = message(id, "load", b"0123456789abcdef");
                        store.submit(
                            vec![enqueue(&client, &body, QoS::AtLeastOnce)],
                            Pace::Window,
                        )
                    })
                    .collect();
                pending
                    .into_iter()
                    .filter_map(|done| outcome(done).filter(Result::is_ok))
                    .count()
            })
        })
        .collect();
    let completed: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(completed, THREADS * PER_THREAD);
    let metrics = store.metrics();
    let commits = metrics.commits.load(std::sync::atomic::Ordering::Relaxed) - before;
    println!(
        "group commit: {} batches in {commits} commits ({:.1} messages per commit)",
        THREADS * PER_THREAD,
        (THREADS * PER_THREAD) as f64 / commits as f64
    );
    assert!(commits < 1000, "{commits} commits for 1000 batches");
    assert_eq!(
        metrics.batches.load(std::sync::atomic::Ordering::Relaxed) as usize,
        THREADS * PER_THREAD + 1
    );
    let recovered = match Arc::try_unwrap(store) {
        Ok(store) => reopen(&dir, store),
        Err(_) => panic!("store still shared"),
    };
    let queued: usize = recovered.sessions.iter().map(|s| s.queue.len()).sum();
    assert_eq!(queued, THREADS * PER_THREAD);
    assert_eq!(recovered.next_message_id, (THREADS * PER_THREAD) as u64 + 1);
}

/// Waits for a commit's outcome, bounded by [`WAIT`]; `None` if it did not come.
fn outcome(done: oneshot::Receiver<Result<(), StoreError>>) -> Option<Result<(), StoreError>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .ok()?;
    runtime
        .block_on(async { tokio::time::timeout(WAIT, done).await })
        .ok()?
        .ok()
}

#[test]
fn message_expiry_keeps_its_remaining_time_across_reopen() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let mut expiring = Message::from_broker(1, "t", Bytes::from_static(b"soon"), false);
    expiring.qos = QoS::AtLeastOnce;
    expiring.expires_at = Some(Instant::now() + Duration::from_secs(600));
    let expiring = Arc::new(expiring);
    commit(
        &store,
        vec![
            put_session("c", 60),
            enqueue("c", &expiring, QoS::AtLeastOnce),
            StoreOp::Retain {
                topic: Arc::from("t"),
                message: Some(expiring.clone()),
            },
        ],
    );
    store.close();
    let (store, recovered) = open(&dir);
    let now = Instant::now();
    let loaded = load(&store, "c", 0..session(&recovered, "c").next_sequence);
    let queued = &loaded[0].1.message;
    for message in [queued, &recovered.retained[0]] {
        let remaining = message.remaining_expiry(now);
        assert!(
            matches!(remaining, Some(599..=600)),
            "remaining {remaining:?} s"
        );
    }
    assert_eq!(queued.id, recovered.retained[0].id);
}

#[test]
fn empty_batch_completes_at_once_and_counters_track_commits() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let mut empty = store.submit(Vec::new(), Pace::Window);
    assert!(matches!(empty.try_recv(), Ok(Ok(()))));
    commit(&store, vec![put_session("c", 1)]);
    let metrics = store.metrics();
    assert_eq!(
        metrics.commits.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(metrics.ops.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// Ids of deleted bodies may be used again after a restart: nothing refers to them any more.
#[test]
fn message_ids_restart_above_every_id_still_held() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    commit(
        &store,
        vec![
            put_session("c", 60),
            enqueue("c", &message(41, "t", b"x"), QoS::AtLeastOnce),
            enqueue("c", &message(50, "t", b"y"), QoS::AtLeastOnce),
            StoreOp::Discard {
                client_id: id("c"),
                seq: 50,
            },
        ],
    );
    assert_eq!(reopen(&dir, store).next_message_id, 42);
}

/// [MQTT-4.6.0-4] Entries released out of their send order come back in the order of their
/// PUBRECs, before the entries still awaiting PUBREC in send order [MQTT-4.6.0-1]; release
/// orders leave the queue's sequence numbers alone.
#[test]
fn released_entries_come_back_in_the_order_of_their_pubrecs() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let mut ops = vec![put_session("c", 60)];
    ops.extend((1..=4).map(|seq| enqueue("c", &message(seq, "t", b"x"), QoS::ExactlyOnce)));
    ops.extend((1..=4).map(|seq| inflight("c", 10 + seq as u16, seq)));
    commit(&store, ops);
    commit(
        &store,
        vec![
            released("c", 13, FIRST_RELEASE_ORDER),
            released("c", 11, FIRST_RELEASE_ORDER + 1),
        ],
    );
    let recovered = reopen(&dir, store);
    let c = session(&recovered, "c");
    let window: Vec<_> = c
        .inflight
        .iter()
        .map(|entry| (entry.packet_id, entry.state, entry.release_order))
        .collect();
    assert_eq!(
        window,
        [
            (13, OutboundState::AwaitingPubComp, FIRST_RELEASE_ORDER),
            (11, OutboundState::AwaitingPubComp, FIRST_RELEASE_ORDER + 1),
            (12, OutboundState::AwaitingPubRec, 0),
            (14, OutboundState::AwaitingPubRec, 0),
        ]
    );
    assert_eq!(c.next_sequence, 5);
}

/// The topic an inflight entry went out under (a bridge's renaming) survives a restart, also
/// once its PUBREC came; an entry sent under its own topic comes back with none.
#[test]
fn the_topic_an_entry_went_out_under_is_recovered() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let mut ops = vec![put_session("c", 60)];
    ops.extend((1..=3).map(|seq| enqueue("c", &message(seq, "t", b"x"), QoS::ExactlyOnce)));
    for (seq, sent_topic) in [(1, Some("site-7/t")), (2, Some("site-7/t")), (3, None)] {
        ops.push(StoreOp::Inflight {
            client_id: id("c"),
            seq,
            packet_id: 10 + seq as u16,
            sent_topic: sent_topic.map(Arc::from),
        });
    }
    commit(&store, ops);
    commit(&store, vec![released("c", 12, FIRST_RELEASE_ORDER)]);
    let recovered = reopen(&dir, store);
    let window: Vec<_> = session(&recovered, "c")
        .inflight
        .iter()
        .map(|entry| (entry.packet_id, entry.sent_topic.as_deref()))
        .collect();
    assert_eq!(
        window,
        [(12, Some("site-7/t")), (11, Some("site-7/t")), (13, None)]
    );
}

/// A database of the previous schema (written by a pre-release build) is refused untouched.
#[test]
fn older_schema_version_is_refused_untouched() {
    let dir = TempDir::new().unwrap();
    let path = store_of_schema(&dir, SCHEMA_VERSION - 1);
    let before = std::fs::read(&path).unwrap();
    let error = DurableStore::open(dir.path(), options()).err();
    assert!(
        matches!(error, Some(OpenError::OlderSchema { found, .. }) if found == SCHEMA_VERSION - 1),
        "{error:?}"
    );
    assert!(error.is_some_and(|e| e.to_string().contains("--repair")));
    assert_eq!(std::fs::read(&path).unwrap(), before, "not written to");
}

/// Loads read entries in order, skip numbers the store does not have, and see every batch
/// submitted before them (even one still in the same group commit).
#[test]
fn loads_read_queue_ranges_after_earlier_batches() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let bodies: Vec<_> = (1..=5).map(|id| message(id, "t", b"p")).collect();
    let mut ops = vec![put_session("c", 60)];
    ops.extend(
        bodies
            .iter()
            .map(|body| enqueue("c", body, QoS::AtLeastOnce)),
    );
    ops.push(StoreOp::Discard {
        client_id: id("c"),
        seq: 3,
    });
    let pending = store.submit(ops, Pace::Window);
    let entries = load(&store, "c", 2..5);
    assert!(matches!(outcome(pending), Some(Ok(()))));
    let seqs: Vec<u64> = entries.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, vec![2, 4], "3 was discarded, 5 is outside the range");
    assert_eq!(entries[1].1.message.id, 4);
    assert!(load(&store, "other", 0..10).is_empty());
}

/// An in-memory disk whose writes fail while `full` is set, like a full SD card.
#[derive(Debug, Clone)]
struct FlakyDisk {
    data: Arc<redb::backends::InMemoryBackend>,
    full: Arc<std::sync::atomic::AtomicBool>,
}

impl FlakyDisk {
    fn check(&self) -> std::io::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::other("No space left on device"))
        } else {
            Ok(())
        }
    }
}

impl redb::StorageBackend for FlakyDisk {
    fn len(&self) -> std::io::Result<u64> {
        self.data.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.data.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check()?;
        self.data.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.check()?;
        self.data.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check()?;
        self.data.write(offset, data)
    }
}

fn open_flaky(disk: &FlakyDisk) -> Result<Database, OpenError> {
    Database::builder()
        .create_with_backend(disk.clone())
        .map_err(|error| OpenError::Unreadable {
            path: Path::new("flaky").to_owned(),
            cause: UnreadableFile(error),
        })
}

#[test]
fn failed_commit_answers_its_waiters_and_later_batches_commit() {
    let disk = FlakyDisk {
        data: Arc::new(redb::backends::InMemoryBackend::new()),
        full: Arc::default(),
    };
    let start = |disk: &FlakyDisk| {
        let database = open_flaky(disk).unwrap();
        database::prepare(&database, Path::new("flaky")).unwrap();
        let reopen_disk = disk.clone();
        let reopen: writer::Reopen = Box::new(move || open_flaky(&reopen_disk));
        DurableStore::start(database, "flaky".into(), reopen, options()).unwrap()
    };
    let (store, _) = start(&disk);
    commit(&store, vec![put_session("before", 10)]);
    disk.full.store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = outcome(store.submit(vec![put_session("during", 10)], Pace::Window));
    let Some(Err(error)) = refused else {
        panic!("expected a failed commit, got {refused:?}");
    };
    assert!(
        matches!(&error, StoreError::Commit(cause)
            if matches!(&**cause, CommitFailure::Write(failure) if failure.is_io())),
        "the disk's error is kept as it is: {error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("the store could not commit the batch: ")
            && message.contains("No space left on device"),
        "{message}"
    );
    assert_eq!(
        store
            .metrics()
            .failed_commits
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    disk.full.store(false, std::sync::atomic::Ordering::SeqCst);
    // A barrier cannot vouch for state a failed commit may have lost, even once the disk
    // takes writes again.
    assert!(store.has_failed());
    let barrier = outcome(store.barrier());
    assert!(
        matches!(barrier, Some(Err(StoreError::EarlierCommitFailed))),
        "a barrier after a failed commit fails: {barrier:?}"
    );
    commit(&store, vec![put_session("after", 10)]);
    store.close();

    let (store, recovered) = start(&disk);
    let clients: Vec<_> = recovered
        .sessions
        .iter()
        .map(|s| s.client_id.to_string())
        .collect();
    assert!(clients.contains(&"before".to_string()) && clients.contains(&"after".to_string()));
    store.close();
}

/// A failing disk is told apart from a corrupt file, so `--repair` never quarantines a healthy
/// database over an I/O error.
#[test]
fn io_errors_are_told_apart_from_corruption() {
    let path = Path::new("cairn.redb");
    let io = redb::StorageError::Io(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
    assert!(matches!(
        OpenError::recovery(path, io),
        OpenError::RecoveryIo { .. }
    ));
    let corrupt = redb::StorageError::Corrupted("bad page".into());
    assert!(matches!(
        OpenError::recovery(path, corrupt),
        OpenError::Recovery { .. }
    ));
    let record = super::records::RecordError::Invalid {
        record: "session",
        field: "state",
    };
    assert!(matches!(
        OpenError::recovery(path, super::tables::DbError::from(record)),
        OpenError::Recovery { .. }
    ));
}

/// A body held by one entry has no reference-count row (one table fewer written per commit);
/// a second entry adds the row, and releasing back to one removes it again.
#[test]
fn a_body_with_one_reference_has_no_count_row() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let body = message(5, "t", b"once");
    commit(
        &store,
        vec![
            put_session("a", 60),
            put_session("b", 60),
            enqueue("a", &body, QoS::AtLeastOnce),
        ],
    );
    store.close();
    assert_eq!((rows(&dir, MESSAGES), rows(&dir, MESSAGE_REFS)), (1, 0));

    let (store, _) = open(&dir);
    commit(&store, vec![enqueue("b", &body, QoS::AtLeastOnce)]);
    store.close();
    assert_eq!((rows(&dir, MESSAGES), rows(&dir, MESSAGE_REFS)), (1, 1));

    let (store, _) = open(&dir);
    commit(&store, vec![inflight("a", 1, 5), acked("a", 1)]);
    store.close();
    assert_eq!((rows(&dir, MESSAGES), rows(&dir, MESSAGE_REFS)), (1, 0));

    let (store, _) = open(&dir);
    commit(
        &store,
        vec![StoreOp::Discard {
            client_id: id("b"),
            seq: 5,
        }],
    );
    store.close();
    assert_eq!((rows(&dir, MESSAGES), rows(&dir, MESSAGE_REFS)), (0, 0));
}

/// A Will keeps who set it across a reopen: a user name, none for an anonymous client, and
/// "unknown" for a Will read from a record of an older build (written back in that build's
/// format). A later Will of the session replaces the earlier one's sender with its own.
#[test]
fn a_will_keeps_its_sender_across_reopen() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let alice = WillSender::Client(Some(id("alice")));
    let bob = WillSender::Client(Some(id("bob")));
    let cases = [
        ("named", alice.clone()),
        ("anonymous", WillSender::Client(None)),
        ("unknown", WillSender::Unknown),
        ("replaced", bob.clone()),
    ];
    let set = |client: &str, sender: &WillSender| StoreOp::Will {
        client_id: id(client),
        will: Some(Box::new(SessionWill {
            sender: sender.clone(),
            ..will(&format!("dead/{client}"))
        })),
    };
    let mut ops = vec![set("replaced", &alice)];
    for (client, sender) in &cases {
        ops.insert(0, put_session(client, 3600));
        ops.push(set(client, sender));
    }
    commit(&store, ops);

    let recovered = reopen(&dir, store);
    for (client, sender) in cases {
        let stored = session(&recovered, client).will.clone();
        let expected = SessionWill {
            sender,
            ..will(&format!("dead/{client}"))
        };
        assert_eq!(stored, Some(expected), "{client}");
    }
}

/// A format 2 entry record as the previous build wrote it: format 1, without the queue time
/// that ends it.
fn as_format_1(record: &[u8]) -> Vec<u8> {
    assert_eq!(record[0], 2, "written in format 2");
    let mut bytes = record[..record.len() - 4].to_vec();
    bytes[0] = 1;
    bytes
}

/// Rewrites every record of `table` [`as_format_1`].
fn rewrite_as_format_1<K: redb::Key + 'static>(
    txn: &redb::WriteTransaction,
    table: TableDefinition<K, &[u8]>,
) {
    use redb::ReadableTable;
    let mut entries = txn.open_table(table).unwrap();
    let mut old: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for entry in entries.iter().unwrap() {
        let (key, value) = entry.unwrap();
        let key: Vec<u8> = K::as_bytes(&key.value()).as_ref().to_vec();
        old.push((key, as_format_1(value.value())));
    }
    for (key, bytes) in &old {
        entries
            .insert(K::from_bytes(key), bytes.as_slice())
            .unwrap();
    }
}

/// Rewrites every queue and inflight record in `dir` [`as_format_1`].
fn rewrite_entries_as_format_1(dir: &TempDir) {
    let database = Database::create(dir.path().join(FILE_NAME)).unwrap();
    let txn = database.begin_write().unwrap();
    rewrite_as_format_1(&txn, QUEUE);
    rewrite_as_format_1(&txn, INFLIGHT);
    txn.commit().unwrap();
}

/// Session "s" with message 1 in its inflight window (packet id 7) and message 2 queued.
fn queue_and_window_of_s(store: &DurableStore) -> (Arc<Message>, Arc<Message>) {
    let (m1, m2) = (message(1, "a/1", b"one"), message(2, "a/2", b"two"));
    commit(
        store,
        vec![
            put_session("s", 3600),
            enqueue("s", &m1, QoS::AtLeastOnce),
            enqueue("s", &m2, QoS::AtLeastOnce),
            inflight("s", 7, 1),
        ],
    );
    (m1, m2)
}

/// A data directory written before queue entries carried their queue time still opens: its
/// entries read back whole, counted as queued when this process read them.
#[test]
fn entries_written_before_queue_times_still_open_and_load() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    let (m1, m2) = queue_and_window_of_s(&store);
    store.close();
    rewrite_entries_as_format_1(&dir);

    let before = crate::model::unix_seconds(SystemTime::now());
    let (store, recovered) = open(&dir);
    let s = session(&recovered, "s");
    assert_eq!(s.queue.len(), 1);
    assert_eq!((s.queue[0].seq, s.queue[0].size), (2, 6));
    assert!(s.queue[0].queued_at >= before);
    assert_eq!(s.inflight.len(), 1);
    let Inflight {
        packet_id,
        delivery,
        state,
        ..
    } = &s.inflight[0];
    assert_eq!((*packet_id, *state), (7, OutboundState::AwaitingPubAck));
    assert_eq!(
        summary(delivery),
        summary(&self::delivery(&m1, QoS::AtLeastOnce))
    );
    assert!(delivery.queued_at >= before);
    let loaded = load(&store, "s", 2..3);
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        summary(&loaded[0].1),
        summary(&self::delivery(&m2, QoS::AtLeastOnce))
    );
    store.close();
}

/// The time an entry was queued survives a restart, in the queue and in the inflight window.
#[test]
fn queue_times_are_recovered() {
    let dir = TempDir::new().unwrap();
    let (store, _) = open(&dir);
    queue_and_window_of_s(&store);
    let recovered = reopen(&dir, store);
    let s = session(&recovered, "s");
    assert_eq!(s.queue[0].queued_at, 1_700_000_000);
    assert_eq!(s.inflight[0].delivery.queued_at, 1_700_000_000);
}

/// A barrier is answered once every batch handed over before it is committed, at once when
/// none is on its way, and counts as a record: [`writer::WINDOW_CLOSES_AT`] barriers close the
/// commit window (clients wait for them), even an hour-long one.
#[test]
fn a_barrier_waits_for_the_batches_before_it() {
    let dir = TempDir::new().unwrap();
    let hour_long_window = DurableOptions {
        commit_window: Duration::from_secs(3600),
        ..options()
    };
    let (store, _) = DurableStore::open(dir.path(), hour_long_window).unwrap();
    let mut settled = store.barrier();
    assert!(
        matches!(settled.try_recv(), Ok(Ok(()))),
        "nothing in flight: answered at once"
    );
    // A session stored at CONNECT is no record: alone it would wait out the window.
    let mut session = store.submit(vec![put_session("c", 10)], Pace::Window);
    let mut barriers: Vec<_> = (0..writer::WINDOW_CLOSES_AT)
        .map(|_| store.barrier())
        .collect();
    let last = barriers.pop().expect("several barriers");
    assert!(matches!(outcome(last), Some(Ok(()))), "the window closed");
    assert!(
        matches!(session.try_recv(), Ok(Ok(()))),
        "the batch before the barriers was committed first"
    );
    for barrier in barriers {
        assert!(matches!(outcome(barrier), Some(Ok(()))));
    }
    let mut settled = store.barrier();
    assert!(
        matches!(settled.try_recv(), Ok(Ok(()))),
        "everything answered: at once again"
    );
    store.close();
}
