//! Session expiry measured in wall-clock time across a restart (design.md promise 2): time the
//! broker spends stopped counts against a session's Session Expiry Interval, the interval set
//! by DISCONNECT is the one that counts, and long-lived sessions resume with their queue; and
//! a session whose interval a resuming CONNECT changes (to 0, or from 0) is stored as that
//! interval asks, across a stop and a `kill -9`.

use std::time::{Duration, SystemTime};

use cairn::codec::{Disconnect, Packet, Properties, ProtocolVersion, QoS, ReasonCode};

use crate::common::clients::{
    connect_expecting_session, persistent_connect, subscribe_ok, with_expiry, LONG_EXPIRY,
};
use crate::common::stop;
use crate::common::{start_broker, RawClient};
use crate::support::{expect_message, expect_shutdown_close, message, publish};

/// The short Session Expiry Interval under test, in seconds.
const SHORT_EXPIRY: u32 = 2;

/// Waits until the wall clock reads `until`. The thing under test is wall-clock time passing
/// while the broker is stopped, so this waits on the clock itself, boundedly.
async fn wait_for_wall_clock(until: SystemTime) {
    while let Ok(left) = until.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
}

/// Connects a v5 session asking for `expiry` and subscribes it to `expiry/queued`.
async fn subscribed_session(addr: std::net::SocketAddr, id: &str, expiry: u32) -> RawClient {
    let mut client = connect_expecting_session(
        addr,
        with_expiry(persistent_connect(ProtocolVersion::V5, id), expiry),
        false,
    )
    .await;
    subscribe_ok(&mut client, 1, "expiry/queued", QoS::AtLeastOnce).await;
    client
}

/// Sends DISCONNECT 0x00, with a new Session Expiry Interval if given, and waits for the close.
async fn disconnect_with(client: &mut RawClient, expiry: Option<u32>) {
    let disconnect = Disconnect {
        reason: ReasonCode::Success,
        properties: Properties {
            session_expiry_interval: expiry,
            ..Properties::default()
        },
    };
    client.send(&Packet::Disconnect(disconnect)).await;
    assert_eq!(client.expect_closed().await, Vec::<Packet>::new());
}

/// Promise 2, MQTT 5.0 §3.1.2.11.2 and §3.14.2.2.2: five v5 sessions, then the broker stopped
/// gracefully for more than 2 s of wall-clock time:
/// - `short` (expiry 2, offline) and `lowered` (expiry 300, DISCONNECT set 2) have expired:
///   Session Present 0 [MQTT-3.2.2-3];
/// - `at-stop` (expiry 2, still connected when the broker stopped) has expired too: the network
///   connection closed at the stop, so its expiry counted from then [MQTT-3.1.2-23];
/// - `long` (expiry 300) and `raised` (expiry 2, DISCONNECT set 300) resume with Session
///   Present 1 and receive the message queued for them before the stop.
///
/// The expired sessions had that message inflight (unacknowledged): it is gone with them.
#[tokio::test]
async fn session_expiry_counts_wall_clock_time_while_the_broker_is_down() {
    let broker = start_broker().await;
    let mut long = subscribed_session(broker.addr, "long", LONG_EXPIRY).await;
    let mut raised = subscribed_session(broker.addr, "raised", SHORT_EXPIRY).await;
    let mut at_stop = subscribed_session(broker.addr, "at-stop", SHORT_EXPIRY).await;
    let mut lowered = subscribed_session(broker.addr, "lowered", LONG_EXPIRY).await;
    let mut short = subscribed_session(broker.addr, "short", SHORT_EXPIRY).await;
    disconnect_with(&mut long, None).await;
    disconnect_with(&mut raised, Some(LONG_EXPIRY)).await;
    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V5, "expiry-pub").await;
    publish(
        &mut publisher,
        message("expiry/queued", QoS::AtLeastOnce, 1, "kept"),
    )
    .await;
    for client in [&mut at_stop, &mut lowered, &mut short] {
        expect_message(client, "kept", QoS::AtLeastOnce, false).await;
    }
    // Offline just before the stop, so their in-process 2 s timers cannot fire first.
    disconnect_with(&mut lowered, Some(SHORT_EXPIRY)).await;
    disconnect_with(&mut short, None).await;

    let stopped = stop(broker).await;
    expect_shutdown_close(&mut at_stop).await;
    let down_since = SystemTime::now();
    wait_for_wall_clock(
        down_since + Duration::from_secs(u64::from(SHORT_EXPIRY)) + Duration::from_millis(200),
    )
    .await;
    let broker = stopped.start().await;

    for id in ["short", "lowered", "at-stop"] {
        let mut client = connect_expecting_session(
            broker.addr,
            persistent_connect(ProtocolVersion::V5, id),
            false,
        )
        .await;
        client.expect_nothing_pending().await;
    }
    for id in ["long", "raised"] {
        let mut client = connect_expecting_session(
            broker.addr,
            persistent_connect(ProtocolVersion::V5, id),
            true,
        )
        .await;
        let delivered = expect_message(&mut client, "kept", QoS::AtLeastOnce, false).await;
        client.acknowledge(&delivered).await;
        client.expect_nothing_pending().await;
    }
    broker.shutdown().await;
}

/// MQTT 5 §3.1.2.11.2 (a Session Expiry Interval of 0 ends the session when the Network
/// Connection closes), [MQTT-3.2.2-3]: a stored session resumed by a CONNECT asking for
/// interval 0 must not come back once that connection is gone, whether the broker stopped
/// (SIGTERM) or was killed (SIGKILL, right after the CONNACK) while it was connected. Found by
/// the seeded sequences: the store kept the session with its old interval, and the next
/// CONNECT with Clean Start 0 got Session Present 1, its subscription and its queue.
#[tokio::test]
async fn a_stored_session_resumed_with_expiry_0_ends_with_that_connection_across_stop_and_kill() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    for kill in [false, true] {
        let id = if kill {
            "resumed-0-kill"
        } else {
            "resumed-0-stop"
        };
        let cairn = crate::process::start(data_dir.path()).await;
        let mut client = subscribed_session(cairn.addr, id, LONG_EXPIRY).await;
        disconnect_with(&mut client, None).await;
        let (_connected, connack) = crate::common::clients::connect_ok(
            cairn.addr,
            with_expiry(persistent_connect(ProtocolVersion::V5, id), 0),
        )
        .await;
        assert!(connack.session_present, "{id}: resumed [MQTT-3.2.2-2]");
        if kill {
            cairn.kill().await;
        } else {
            cairn.terminate().await;
        }
        let cairn = crate::process::start(data_dir.path()).await;
        let mut client = connect_expecting_session(
            cairn.addr,
            persistent_connect(ProtocolVersion::V5, id),
            false,
        )
        .await;
        let mut publisher = RawClient::connect(cairn.addr, ProtocolVersion::V5, "expiry-pub").await;
        let reason = publish(
            &mut publisher,
            message("expiry/queued", QoS::AtLeastOnce, 1, "after"),
        )
        .await;
        assert_eq!(
            reason,
            ReasonCode::NoMatchingSubscribers,
            "{id}: no subscription of the ended session is left"
        );
        client.expect_nothing_pending().await;
        cairn.terminate().await;
    }
}

/// [MQTT-3.1.2-6] (3.1.1) and MQTT 5 §3.1.2.11.2 across `kill -9`: a session that does not
/// outlive its connection (3.1.1 Clean Session 1; v5 Session Expiry Interval 0) ends with it
/// when a CONNECT asking to resume (Clean Session 0; Clean Start 0 with an interval) takes it
/// over: Session Present 0 and nothing of it resent; after SIGKILL and a restart the new
/// session resumes with its own subscription only, and the old message is not sent again.
#[tokio::test]
async fn a_session_taken_over_to_outlive_its_connection_starts_anew() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    for version in crate::common::clients::BOTH {
        let id = crate::common::clients::client_id("made-persistent", version);
        let topic = format!("made-persistent/{}", version.level());
        let other = format!("made-persistent/other/{}", version.level());
        let cairn = crate::process::start(data_dir.path()).await;
        let mut first = RawClient::connect(cairn.addr, version, &id).await;
        subscribe_ok(&mut first, 1, &topic, QoS::AtLeastOnce).await;
        let mut publisher = RawClient::connect(cairn.addr, ProtocolVersion::V5, "expiry-pub").await;
        publish(
            &mut publisher,
            message(&topic, QoS::AtLeastOnce, 1, "inflight"),
        )
        .await;
        expect_message(&mut first, "inflight", QoS::AtLeastOnce, false).await;
        let mut second =
            connect_expecting_session(cairn.addr, persistent_connect(version, &id), false).await;
        drop(first);
        // A SUBACK waits for a commit after the takeover.
        subscribe_ok(&mut second, 2, &other, QoS::AtLeastOnce).await;
        second.expect_nothing_pending().await;
        cairn.kill().await;

        let cairn = crate::process::start(data_dir.path()).await;
        let mut client =
            connect_expecting_session(cairn.addr, persistent_connect(version, &id), true).await;
        client.expect_nothing_pending().await;
        let mut publisher = RawClient::connect(cairn.addr, ProtocolVersion::V5, "expiry-pub").await;
        for (n, (to, payload)) in [(&topic, "old"), (&other, "after")].into_iter().enumerate() {
            publish(
                &mut publisher,
                message(to, QoS::AtLeastOnce, n as u16 + 1, payload),
            )
            .await;
        }
        let after = expect_message(&mut client, "after", QoS::AtLeastOnce, false).await;
        client.acknowledge(&after).await;
        client.expect_nothing_pending().await;
        cairn.terminate().await;
    }
}
