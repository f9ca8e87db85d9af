//! Bounded, disk-backed offline queues: `limits.max_queued_messages`, `max_queued_bytes` and
//! `max_queued_bytes_total` under both `queue_full_policy` values (drops counted, v5
//! publishers told 0x97 when nothing took their message), `queue_qos0_offline`, and the
//! spilling of persistent sessions' queues to the store, offline, across a restart and behind
//! a slow reader, up to the 100k-message outage of the issue.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;

use cairn::broker::queue::WINDOW;
use cairn::codec::{
    Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, SubscriptionOptions,
};
use cairn::config::QueueFullPolicy;

use crate::common::clients::{
    client_id, new_session, publish_qos1, resume, subscribe_granted, subscriber, text, BOTH,
};
use crate::common::{publish_packet, start_broker_with, RawClient, TestBroker};
use crate::offline::offline_subscriber;
use crate::support::{acknowledge, expect_ack, texts, Ack};

/// What a session's queue holds, read under the state lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QueueView {
    /// Entries queued, in memory and in the store only.
    len: usize,
    /// Bytes (topic + payload) queued.
    bytes: u64,
    /// Entries held in memory.
    in_memory: usize,
    /// Messages sent and not yet acknowledged (not part of the queue).
    inflight: usize,
}

/// The queue of `id`'s session; fails the test if the broker has no such session.
fn queue_of(broker: &TestBroker, id: &str) -> QueueView {
    broker.handle.broker().read(|state| {
        let session = state
            .session(id)
            .unwrap_or_else(|| panic!("the broker has a session for {id}"));
        QueueView {
            len: session.queue.len(),
            bytes: session.queue.bytes(),
            in_memory: session.queue.in_memory(),
            inflight: session.inflight.len(),
        }
    })
}

/// Bytes queued in every session together.
fn queued_bytes(broker: &TestBroker) -> u64 {
    broker
        .handle
        .broker()
        .read(|state| state.counts().queued_bytes)
}

/// Messages the broker counted as lost to queue bounds.
fn dropped(broker: &TestBroker) -> u64 {
    broker
        .handle
        .broker()
        .metrics()
        .messages_dropped
        .load(Ordering::Relaxed)
}

/// The payload of message `number`: the number, zero-padded to `len` bytes.
fn numbered(number: u32, len: usize) -> Vec<u8> {
    format!("{number:0len$}").into_bytes()
}

/// The number a [`numbered`] payload carries.
fn number_of(publish: &Publish) -> u32 {
    text(publish)
        .parse()
        .unwrap_or_else(|_| panic!("a numbered payload, got {:?}", text(publish)))
}

/// The v5 publisher's burst: Receive Maximum allows no more unacknowledged QoS 1 messages
/// [MQTT-3.3.4-7]; a 3.1.1 publisher is not limited, so it may send `wanted`.
fn burst_for(broker: &TestBroker, version: ProtocolVersion, wanted: u16) -> u16 {
    match version {
        ProtocolVersion::V5 => wanted.min(broker.config.limits.max_inflight),
        ProtocolVersion::V311 => wanted,
    }
}

/// Publishes QoS 1 messages `numbers` (payloads of `payload_len` bytes) to `topic`, `burst` at
/// a time: sends a burst (packet ids 1..=burst), then reads its PUBACKs, which come in order.
/// Calls `after_burst` with the count published so far; returns the PUBACK reason codes.
async fn publish_numbered(
    publisher: &mut RawClient,
    topic: &str,
    numbers: RangeInclusive<u32>,
    payload_len: usize,
    burst: u16,
    mut after_burst: impl FnMut(usize),
) -> Vec<ReasonCode> {
    let numbers: Vec<u32> = numbers.collect();
    let mut reasons = Vec::with_capacity(numbers.len());
    for chunk in numbers.chunks(usize::from(burst)) {
        for (packet_id, &number) in (1..).zip(chunk) {
            let payload = numbered(number, payload_len);
            let publish = publish_packet(topic, QoS::AtLeastOnce, Some(packet_id), &payload);
            publisher.send(&Packet::Publish(publish)).await;
        }
        for packet_id in (1..).take(chunk.len()) {
            match publisher.recv().await {
                Packet::PubAck(ack) => {
                    assert_eq!(
                        ack.packet_id, packet_id,
                        "PUBACKs come in the order of the PUBLISHes"
                    );
                    reasons.push(ack.reason);
                }
                other => panic!("expected PUBACK {packet_id}, got {other:?}"),
            }
        }
        after_burst(reasons.len());
    }
    reasons
}

/// Reads deliveries and acknowledges each at once (so the inflight window keeps moving):
/// they must be exactly `expected`, in order, first deliveries at `qos` [MQTT-4.6.0-5]
/// (3.1.1: [MQTT-4.6.0-6]).
/// Then nothing else is pending.
async fn receive_in_order(client: &mut RawClient, expected: RangeInclusive<u32>, qos: QoS) {
    for want in expected {
        let publish = client.expect_publish().await;
        assert_eq!(
            (number_of(&publish), publish.qos, publish.dup),
            (want, qos, false),
            "delivery of message {want}: in publish order, no duplicates"
        );
        acknowledge(client, &publish).await;
    }
    client.expect_nothing_pending().await;
}

/// A persistent session subscribed to `topic` at QoS 1, left online.
async fn online_subscriber(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    topic: &str,
) -> RawClient {
    let mut sub = new_session(addr, version, id).await;
    let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    subscribe_granted(&mut sub, 1, topic, options, Properties::default()).await;
    sub
}

/// Resumes session `id`, takes every message its queue delivers (until a PINGRESP shows there
/// is no more), acknowledges each, and checks that nothing else follows.
async fn drain_queue(addr: SocketAddr, version: ProtocolVersion, id: &str) -> Vec<Publish> {
    let mut sub = resume(addr, version, id).await;
    let delivered = sub.publishes_before_pingresp().await;
    for publish in &delivered {
        acknowledge(&mut sub, publish).await;
    }
    sub.expect_nothing_pending().await;
    delivered
}

/// drop_oldest (the default): of five QoS 1 messages for an offline session limited to three,
/// the last three arrive, in order; the two oldest are dropped and counted, and every
/// publisher still gets a normal PUBACK.
#[tokio::test]
async fn drop_oldest_keeps_the_newest_max_queued_messages() {
    let broker = start_broker_with(|config| config.limits.max_queued_messages = 3).await;
    assert_eq!(
        broker.config.limits.queue_full_policy,
        QueueFullPolicy::DropOldest,
        "the default policy"
    );
    let mut dropped_so_far = 0;
    for version in BOTH {
        let id = client_id("drop-oldest", version);
        let topic = format!("drop-oldest/{}", version.level());
        offline_subscriber(broker.addr, version, &id, &topic, QoS::AtLeastOnce).await;

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("drop-oldest-pub", version)).await;
        for n in 1..=5 {
            let reason = publish_qos1(&mut publisher, &topic, n, &format!("m{n}")).await;
            assert_eq!(reason, ReasonCode::Success, "message m{n} is acknowledged");
        }
        dropped_so_far += 2;
        assert_eq!(
            dropped(&broker),
            dropped_so_far,
            "dropped messages are counted"
        );
        assert_eq!(queue_of(&broker, &id).len, 3, "the queue holds its bound");

        let delivered = drain_queue(broker.addr, version, &id).await;
        assert_eq!(
            texts(&delivered),
            ["m3", "m4", "m5"],
            "the newest messages survive, in order [MQTT-4.6.0-5] (3.1.1: [MQTT-4.6.0-6])"
        );
    }
}

/// A reload that lowers `max_queued_messages` drops nothing by itself; the next message
/// offered to a queue above the new bound follows the policy (drop_oldest: the oldest go,
/// counted, until the new one fits), and the newest survive in order.
#[tokio::test]
async fn a_reload_lowers_queue_bounds_from_the_next_message_on() {
    let mut broker = start_broker_with(|config| config.limits.max_queued_messages = 10).await;
    let version = ProtocolVersion::V5;
    let id = client_id("reload-bounds", version);
    offline_subscriber(broker.addr, version, &id, "reload/bounds", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(
        broker.addr,
        version,
        &client_id("reload-bounds-pub", version),
    )
    .await;
    for n in 1..=5 {
        publish_qos1(&mut publisher, "reload/bounds", n, &format!("m{n}")).await;
    }
    let mut config = broker.config.clone();
    config.limits.max_queued_messages = 3;
    let reloaded = broker.handle.reload(config).await.expect("reload");
    assert_eq!(reloaded.applied, ["limits.max_queued_messages"]);
    assert_eq!(
        queue_of(&broker, &id).len,
        5,
        "the reload itself drops nothing"
    );
    assert_eq!(dropped(&broker), 0);

    publish_qos1(&mut publisher, "reload/bounds", 6, "m6").await;
    assert_eq!(
        queue_of(&broker, &id).len,
        3,
        "the queue is within its new bound"
    );
    assert_eq!(
        dropped(&broker),
        3,
        "the three oldest were dropped, and counted"
    );
    let delivered = drain_queue(broker.addr, version, &id).await;
    assert_eq!(texts(&delivered), ["m4", "m5", "m6"]);
}

/// refuse_newest: the first three of five messages arrive; a v5 publisher gets 0x00 for
/// messages 1-3 and 0x97 Quota exceeded for 4 and 5; a 3.1.1 publisher, which has no way to
/// hear it, gets normal PUBACKs. Both losses are counted.
#[tokio::test]
async fn refuse_newest_keeps_the_first_messages_and_tells_v5_publishers() {
    let broker = start_broker_with(|config| {
        config.limits.max_queued_messages = 3;
        config.limits.queue_full_policy = QueueFullPolicy::RefuseNewest;
    })
    .await;
    let mut dropped_so_far = 0;
    for version in BOTH {
        let id = client_id("refuse", version);
        let topic = format!("refuse/{}", version.level());
        offline_subscriber(broker.addr, version, &id, &topic, QoS::AtLeastOnce).await;

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("refuse-pub", version)).await;
        let mut reasons = Vec::new();
        for n in 1..=5 {
            reasons.push(publish_qos1(&mut publisher, &topic, n, &format!("m{n}")).await);
        }
        let refused = match version {
            ProtocolVersion::V5 => ReasonCode::QuotaExceeded,
            ProtocolVersion::V311 => ReasonCode::Success,
        };
        assert_eq!(
            reasons,
            [
                ReasonCode::Success,
                ReasonCode::Success,
                ReasonCode::Success,
                refused,
                refused
            ],
            "PUBACK reason codes"
        );
        dropped_so_far += 2;
        assert_eq!(
            dropped(&broker),
            dropped_so_far,
            "refused messages are counted"
        );

        let delivered = drain_queue(broker.addr, version, &id).await;
        assert_eq!(
            texts(&delivered),
            ["m1", "m2", "m3"],
            "the oldest messages are kept"
        );
    }
}

/// refuse_newest, QoS 2 from a v5 publisher: the refused message gets PUBREC 0x97, which ends
/// the flow (MQTT 5 §2.2.1: after a PUBREC with a Reason Code of 0x80 or greater the Packet
/// Identifier is free again), so the broker awaits no PUBREL: the same packet id is reused at
/// once for a new QoS 2 message, which is routed like any other (had the broker kept the id
/// as awaiting PUBREL, it would take the new PUBLISH for a resend and not route it
/// [MQTT-4.3.3-10]). A 3.1.1 publisher gets a normal QoS 2 flow.
#[tokio::test]
async fn refused_qos2_ends_at_pubrec_without_awaiting_pubrel() {
    let broker = start_broker_with(|config| {
        config.limits.max_queued_messages = 1;
        config.limits.queue_full_policy = QueueFullPolicy::RefuseNewest;
    })
    .await;
    for version in BOTH {
        let full_id = client_id("full", version);
        let full_topic = format!("full/{}", version.level());
        offline_subscriber(
            broker.addr,
            version,
            &full_id,
            &full_topic,
            QoS::ExactlyOnce,
        )
        .await;
        let open_topic = format!("open/{}", version.level());
        let mut open = subscriber(
            broker.addr,
            version,
            &client_id("open", version),
            &open_topic,
            QoS::ExactlyOnce,
        )
        .await;

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("qos2-pub", version)).await;
        let first = publish_packet(&full_topic, QoS::ExactlyOnce, Some(7), b"fits");
        let rec = publisher
            .publish(first)
            .await
            .expect("QoS 2 is acknowledged");
        assert_eq!(rec.reason, ReasonCode::Success, "the first message fits");
        let dropped_before = dropped(&broker);

        let refused_publish = publish_packet(&full_topic, QoS::ExactlyOnce, Some(7), b"refused");
        publisher.send(&Packet::Publish(refused_publish)).await;
        let reason = expect_ack(&mut publisher, Ack::Received, 7).await;
        assert_eq!(
            dropped(&broker),
            dropped_before + 1,
            "the refusal is counted"
        );
        match version {
            ProtocolVersion::V5 => assert_eq!(reason, ReasonCode::QuotaExceeded, "PUBREC 0x97"),
            ProtocolVersion::V311 => {
                assert_eq!(reason, ReasonCode::Success, "3.1.1 PUBREC");
                publisher
                    .send(&Packet::PubRel(PubResponse::success(7)))
                    .await;
                expect_ack(&mut publisher, Ack::Completed, 7).await;
            }
        }

        // Packet id 7 again, at once: a new message, routed to the online subscriber.
        let reused = publish_packet(&open_topic, QoS::ExactlyOnce, Some(7), b"after refusal");
        let rec = publisher
            .publish(reused)
            .await
            .expect("QoS 2 is acknowledged");
        assert_eq!(
            rec.reason,
            ReasonCode::Success,
            "packet id 7 starts a new flow"
        );
        let delivered = open.expect_publish().await;
        assert_eq!(
            text(&delivered),
            "after refusal",
            "the new message is routed"
        );
        acknowledge(&mut open, &delivered).await;
        publisher.expect_nothing_pending().await;

        let kept = drain_queue(broker.addr, version, &full_id).await;
        assert_eq!(
            texts(&kept),
            ["fits"],
            "only the message that fitted is queued"
        );
    }
}

/// `max_queued_bytes` bounds a session by topic + payload bytes: at 100 bytes, entries of 30
/// bytes (a 5-byte topic, a 25-byte payload) fit three at a time; the oldest two of five are
/// dropped.
#[tokio::test]
async fn max_queued_bytes_bounds_a_session_by_topic_and_payload() {
    let broker = start_broker_with(|config| config.limits.max_queued_bytes = 100).await;
    let mut dropped_so_far = 0;
    for version in BOTH {
        let id = client_id("bytes", version);
        let topic = format!("qb/v{}", version.level());
        assert_eq!(topic.len(), 5);
        offline_subscriber(broker.addr, version, &id, &topic, QoS::AtLeastOnce).await;

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("bytes-pub", version)).await;
        let burst = burst_for(&broker, version, 5);
        let reasons = publish_numbered(&mut publisher, &topic, 1..=5, 25, burst, |_| {}).await;
        assert!(reasons.iter().all(|reason| *reason == ReasonCode::Success));
        dropped_so_far += 2;
        assert_eq!(
            dropped(&broker),
            dropped_so_far,
            "dropped messages are counted"
        );
        let queue = queue_of(&broker, &id);
        assert_eq!((queue.len, queue.bytes), (3, 90), "three 30-byte entries");

        let mut sub = resume(broker.addr, version, &id).await;
        receive_in_order(&mut sub, 3..=5, QoS::AtLeastOnce).await;
        assert_eq!(
            queue_of(&broker, &id).bytes,
            0,
            "a drained queue holds no bytes"
        );
    }
}

/// `max_queued_bytes_total` is one budget for every session: the first offline session takes
/// 120 of 150 bytes, so the second holds one 30-byte entry at a time (its newest, under
/// drop_oldest); the first is not touched. Delivered queues give their bytes back.
#[tokio::test]
async fn max_queued_bytes_total_is_shared_by_all_sessions() {
    for version in BOTH {
        let broker = start_broker_with(|config| config.limits.max_queued_bytes_total = 150).await;
        let first_id = client_id("budget-a", version);
        let second_id = client_id("budget-b", version);
        offline_subscriber(broker.addr, version, &first_id, "qt/a", QoS::AtLeastOnce).await;
        offline_subscriber(broker.addr, version, &second_id, "qt/b", QoS::AtLeastOnce).await;

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("budget-pub", version)).await;
        let burst = burst_for(&broker, version, 4);
        publish_numbered(&mut publisher, "qt/a", 1..=4, 26, burst, |_| {}).await;
        assert_eq!(dropped(&broker), 0, "the first session's 120 bytes fit");
        publish_numbered(&mut publisher, "qt/b", 11..=13, 26, burst, |_| {}).await;
        assert_eq!(
            dropped(&broker),
            2,
            "the second session had room for one entry"
        );
        assert_eq!(
            queue_of(&broker, &first_id).len,
            4,
            "the first session keeps all"
        );
        assert_eq!(queue_of(&broker, &second_id).len, 1);
        assert_eq!(
            queued_bytes(&broker),
            150,
            "the budget is used up, not exceeded"
        );

        let mut first = resume(broker.addr, version, &first_id).await;
        receive_in_order(&mut first, 1..=4, QoS::AtLeastOnce).await;
        let mut second = resume(broker.addr, version, &second_id).await;
        receive_in_order(&mut second, 13..=13, QoS::AtLeastOnce).await;
        assert_eq!(
            queued_bytes(&broker),
            0,
            "delivered entries give their bytes back"
        );
        broker.shutdown().await;
    }
}

/// `queue_qos0_offline = true`: QoS 0 messages published while a persistent session is offline
/// wait with its QoS 1 messages and arrive on reconnect in publish order (the spec orders only
/// messages of one QoS [MQTT-4.6.0-5]; one queue keeps them all in order), still at QoS 0 (no
/// packet id).
#[tokio::test]
async fn qos0_is_queued_offline_when_configured() {
    let broker = start_broker_with(|config| config.limits.queue_qos0_offline = true).await;
    for version in BOTH {
        let id = client_id("qos0-kept", version);
        let topic = format!("qos0-kept/{}", version.level());
        offline_subscriber(broker.addr, version, &id, &topic, QoS::AtLeastOnce).await;

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("qos0-pub", version)).await;
        let sequence = [
            ("q1", QoS::AtLeastOnce),
            ("z2", QoS::AtMostOnce),
            ("q3", QoS::AtLeastOnce),
            ("z4", QoS::AtMostOnce),
            ("q5", QoS::AtLeastOnce),
        ];
        for (packet_id, (payload, qos)) in (1..).zip(sequence) {
            let packet_id = (qos != QoS::AtMostOnce).then_some(packet_id);
            // Ending with QoS 1: its PUBACK proves the QoS 0 messages before it were routed.
            publisher
                .publish(publish_packet(&topic, qos, packet_id, payload.as_bytes()))
                .await;
        }
        assert_eq!(
            queue_of(&broker, &id).len,
            5,
            "QoS 0 messages are queued too"
        );

        let delivered = drain_queue(broker.addr, version, &id).await;
        let seen: Vec<(String, QoS)> = delivered.iter().map(|p| (text(p), p.qos)).collect();
        let expected: Vec<(String, QoS)> = sequence
            .iter()
            .map(|(payload, qos)| (payload.to_string(), *qos))
            .collect();
        assert_eq!(seen, expected, "QoS 0 and 1 together, in publish order");
    }
}

/// 2,000 QoS 1 messages for an offline persistent session live in the store only
/// (`in_memory() == 0`); on reconnect they are read back in batches and all arrive in publish
/// order, none twice, with the window moving as they are acknowledged; then the queue is empty.
#[tokio::test]
async fn offline_queue_spills_to_the_store_and_drains_in_order() {
    let broker = start_broker_with(|_| {}).await;
    for version in BOTH {
        let id = client_id("spill", version);
        let topic = format!("spill/{}", version.level());
        offline_subscriber(broker.addr, version, &id, &topic, QoS::AtLeastOnce).await;

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("spill-pub", version)).await;
        let burst = burst_for(&broker, version, 250);
        publish_numbered(&mut publisher, &topic, 1..=2000, 8, burst, |_| {}).await;
        let queue = queue_of(&broker, &id);
        assert_eq!(
            (queue.len, queue.in_memory),
            (2000, 0),
            "queued, none in memory"
        );

        let mut sub = resume(broker.addr, version, &id).await;
        receive_in_order(&mut sub, 1..=2000, QoS::AtLeastOnce).await;
        let queue = queue_of(&broker, &id);
        assert_eq!(
            queue,
            QueueView {
                len: 0,
                bytes: 0,
                in_memory: 0,
                inflight: 0
            },
            "everything delivered and acknowledged"
        );
    }
    assert_eq!(dropped(&broker), 0, "nothing lost");
}

/// A spilled queue survives a restart: 1,000 messages queued offline, the broker restarts, and
/// on reconnect all 1,000 arrive in publish order.
#[tokio::test]
async fn spilled_queue_survives_a_restart_in_order() {
    let mut broker = start_broker_with(|_| {}).await;
    for version in BOTH {
        let id = client_id("spill-restart", version);
        let topic = format!("spill-restart/{}", version.level());
        offline_subscriber(broker.addr, version, &id, &topic, QoS::AtLeastOnce).await;
        let mut publisher = RawClient::connect(
            broker.addr,
            version,
            &client_id("spill-restart-pub", version),
        )
        .await;
        let burst = burst_for(&broker, version, 250);
        publish_numbered(&mut publisher, &topic, 1..=1000, 8, burst, |_| {}).await;
        drop(publisher);

        broker = broker.restart().await;
        let queue = queue_of(&broker, &id);
        assert_eq!(
            (queue.len, queue.in_memory),
            (1000, 0),
            "read back from the store, none in memory"
        );
        let mut sub = resume(broker.addr, version, &id).await;
        receive_in_order(&mut sub, 1..=1000, QoS::AtLeastOnce).await;
        assert_eq!(queue_of(&broker, &id).len, 0, "the queue is empty");
    }
}

/// A connected persistent subscriber that neither reads nor acknowledges while 1,000 messages
/// arrive holds at most `WINDOW` of them in memory (its inflight window apart); the rest wait
/// in the store. Once it reads and acknowledges, all arrive in publish order.
#[tokio::test]
async fn slow_online_subscriber_holds_only_a_window_in_memory() {
    let broker = start_broker_with(|_| {}).await;
    let max_inflight = usize::from(broker.config.limits.max_inflight);
    for version in BOTH {
        let id = client_id("slow", version);
        let topic = format!("slow/{}", version.level());
        let mut sub = online_subscriber(broker.addr, version, &id, &topic).await;

        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("slow-pub", version)).await;
        let burst = burst_for(&broker, version, 100);
        let mut largest_in_memory = 0;
        publish_numbered(&mut publisher, &topic, 1..=1000, 8, burst, |published| {
            let queue = queue_of(&broker, &id);
            assert_eq!(
                queue.len + queue.inflight,
                published,
                "every published message is queued or inflight"
            );
            assert!(queue.inflight <= max_inflight, "the inflight window holds");
            largest_in_memory = largest_in_memory.max(queue.in_memory);
        })
        .await;
        assert!(
            largest_in_memory <= WINDOW,
            "at most {WINDOW} entries in memory, saw {largest_in_memory}"
        );
        assert!(
            largest_in_memory > 0,
            "an online session keeps its head in memory"
        );

        receive_in_order(&mut sub, 1..=1000, QoS::AtLeastOnce).await;
        assert_eq!(queue_of(&broker, &id).len, 0, "the queue is empty");
    }
}

/// Resident set size of this process (the broker runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// Asserts the process's memory did not grow with the outage between the first sample (20,000
/// messages, the queue long full) and the last (100,000). A queue kept in RAM without bound
/// would add at least the 80,000 payloads of 256 bytes between them (20 MB); the bound is
/// 8 MiB, far above what the test measures (under 1 MiB) to allow for the other tests running
/// in this process.
///
/// Growth from before the first message is not asserted: redb's page cache (up to 32 MiB)
/// fills in the first 20,000 messages, as much as a RAM-held queue of 10,000 would take, so
/// RSS cannot tell them apart; that the queue is not held in RAM is asserted through
/// `in_memory() == 0` instead.
fn assert_rss_flat(samples: &[(usize, u64)]) {
    const MAX_GROWTH_KIB: u64 = 8 * 1024;
    let (Some((_, first)), Some((_, last))) = (samples.first(), samples.last()) else {
        panic!("RSS was sampled during the outage");
    };
    let growth = last.saturating_sub(*first);
    assert!(
        growth < MAX_GROWTH_KIB,
        "RSS grew by {growth} KiB from the first to the last sample: {samples:?}"
    );
}

/// The test: 100,000 QoS 1 messages to an offline session with the default limit of
/// 10,000. drop_oldest applies: 90,000 dropped and counted, 10,000 queued (bytes = 10,000 x
/// entry size), none in memory while offline, and on reconnect exactly messages
/// 90,001..=100,000 arrive, in order. The broker's memory does not grow with the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_messages_to_an_offline_session_stay_bounded() {
    const TOTAL: u32 = 100_000;
    const PAYLOAD: usize = 256;
    // This test is about bounds, not durability.
    let broker = start_broker_with(|config| config.store.fsync = false).await;
    let limit = broker.config.limits.max_queued_messages;
    assert_eq!(limit, 10_000, "the default bound");
    let version = ProtocolVersion::V311;
    let id = "outage";
    let topic = "outage/readings";
    let entry_size = (topic.len() + PAYLOAD) as u64;
    offline_subscriber(broker.addr, version, id, topic, QoS::AtLeastOnce).await;

    let mut publisher = RawClient::connect(broker.addr, version, "outage-pub").await;
    let rss_before = rss_kib();
    let mut rss_at = Vec::new();
    let mut largest_in_memory = 0;
    let reasons = publish_numbered(
        &mut publisher,
        topic,
        1..=TOTAL,
        PAYLOAD,
        1000,
        |published| {
            largest_in_memory = largest_in_memory.max(queue_of(&broker, id).in_memory);
            if published % 20_000 == 0 {
                rss_at.push((published, rss_kib()));
            }
        },
    )
    .await;
    assert!(reasons.iter().all(|reason| *reason == ReasonCode::Success));
    println!("RSS before: {rss_before} KiB; after n messages (n, KiB): {rss_at:?}");
    assert_rss_flat(&rss_at);

    assert_eq!(
        dropped(&broker),
        u64::from(TOTAL) - limit as u64,
        "drops counted"
    );
    let queue = queue_of(&broker, id);
    assert_eq!(queue.len, limit, "the queue holds its bound");
    assert_eq!(
        largest_in_memory, 0,
        "an offline session holds nothing in memory"
    );
    assert_eq!(queue.bytes, limit as u64 * entry_size, "queued bytes");
    assert_eq!(
        queued_bytes(&broker),
        limit as u64 * entry_size,
        "global queued bytes"
    );

    let mut sub = resume(broker.addr, version, id).await;
    receive_in_order(&mut sub, TOTAL - limit as u32 + 1..=TOTAL, QoS::AtLeastOnce).await;
    assert_eq!(queue_of(&broker, id).len, 0, "the queue is empty");
}
