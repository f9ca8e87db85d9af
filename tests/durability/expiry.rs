//! Session expiry measured in wall-clock time across a restart (design.md promise 2): time the
//! broker spends stopped counts against a session's Session Expiry Interval, the interval set
//! by DISCONNECT is the one that counts, and long-lived sessions resume with their queue.

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
