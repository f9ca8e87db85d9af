//! Session Expiry and Will Delay timers belong to the one session, and the one attachment of
//! it, they were set for: a session created again under the same client id (Clean Start),
//! shortened or lengthened by the DISCONNECT override, or brought back by a restart, is never
//! ended, nor its Will sent, by an older timer.
//!
//! These tests wait for real timers. They never sleep to synchronise: a *witness* session with
//! a longer expiry and a Will sent at its end tells the observer that the older timer's time
//! has passed, with two seconds to spare.

use std::net::SocketAddr;

use cairn::codec::{Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::clients::{
    connect_expecting_session, connect_ok, delayed, publish_qos1, subscribe_ok, will, with_expiry,
    with_will,
};
use crate::common::{connect_packet, start_broker, RawClient};
use crate::support::{disconnect, expect_message, observer, resume_connect};

/// Seconds a witness outlives the timer it stands for.
const MARGIN: u32 = 2;

/// Starts a witness: a v5 session with expiry `seconds + MARGIN` whose Will (delay beyond the
/// expiry: sent when the session ends [MQTT-3.1.3-9]) goes to `witness/{name}`.
async fn start_witness(addr: SocketAddr, name: &str, seconds: u32) {
    let connect = with_will(
        with_expiry(
            connect_packet(ProtocolVersion::V5, &format!("witness-{name}")),
            seconds + MARGIN,
        ),
        delayed(will(&format!("witness/{name}"), "time passed"), u32::MAX),
    );
    let (mut client, _) = connect_ok(addr, connect).await;
    // DISCONNECT 0x04 keeps the Will [MQTT-3.14.4-3].
    disconnect(&mut client, ReasonCode::DisconnectWithWillMessage).await;
}

/// Waits until the witness `name` ended: its Will is the next message the observer gets.
async fn await_witness(observer: &mut RawClient, name: &str) {
    expect_message(observer, &format!("witness/{name}"), "time passed").await;
}

/// A v5 CONNECT for `id`: Clean Start `clean`, Session Expiry `expiry`.
fn v5_connect(id: &str, clean: bool, expiry: u32) -> cairn::codec::Connect {
    let connect = with_expiry(connect_packet(ProtocolVersion::V5, id), expiry);
    if clean {
        connect
    } else {
        resume_connect(connect)
    }
}

/// [MQTT-3.1.2-4] [MQTT-3.1.2-23] [MQTT-3.2.2-2]: the fault outside testing found. A session
/// (expiry 1 s) is replaced at once by a new one (Clean Start 1, expiry 100 s) that subscribes
/// and goes offline; once the first session's expiry has passed, the new session is still
/// there: Session Present 1, its subscription and the message queued for it kept.
#[tokio::test]
async fn a_new_session_outlives_the_expiry_timer_of_the_session_it_replaced() {
    let broker = start_broker().await;
    let mut watch = observer(broker.addr, "timer-watch", "witness/#").await;
    let id = "timer-clean-start";
    let (mut client, _) = connect_ok(broker.addr, v5_connect(id, true, 1)).await;
    disconnect(&mut client, ReasonCode::Success).await;
    start_witness(broker.addr, "clean-start", 1).await;

    let mut client = connect_expecting_session(broker.addr, v5_connect(id, true, 100), false).await;
    subscribe_ok(&mut client, 1, "timers/clean-start", QoS::AtLeastOnce).await;
    disconnect(&mut client, ReasonCode::Success).await;
    let mut publisher = RawClient::connect(broker.addr, ProtocolVersion::V5, "timer-pub").await;
    assert_eq!(
        publish_qos1(&mut publisher, "timers/clean-start", 1, "queued").await,
        ReasonCode::Success
    );

    await_witness(&mut watch, "clean-start").await;
    let mut client = connect_expecting_session(broker.addr, v5_connect(id, false, 100), true).await;
    expect_message(&mut client, "timers/clean-start", "queued").await;
}

/// [MQTT-3.14.2-2] [MQTT-3.2.2-2]: the DISCONNECT override sets the expiry of the session it
/// ends; an older session's timer under the same client id must not end it (the step of the
/// Paho MQTT 5 interoperability test `test_session_expiry` that found no session).
#[tokio::test]
async fn a_session_lengthened_by_the_disconnect_override_outlives_an_older_timer() {
    let broker = start_broker().await;
    let mut watch = observer(broker.addr, "override-watch", "witness/#").await;
    let id = "timer-override";
    let (mut client, _) = connect_ok(broker.addr, v5_connect(id, true, 1)).await;
    disconnect(&mut client, ReasonCode::Success).await;
    start_witness(broker.addr, "override", 1).await;

    let mut client = connect_expecting_session(broker.addr, v5_connect(id, true, 2), false).await;
    subscribe_ok(&mut client, 1, "timers/override", QoS::AtLeastOnce).await;
    let mut goodbye = Disconnect::new(ReasonCode::Success);
    goodbye.properties.session_expiry_interval = Some(100);
    client.send(&Packet::Disconnect(goodbye)).await;
    assert!(client.expect_closed().await.is_empty());

    // The witness outlives the old timer (1 s) and the session's own first 2 s.
    await_witness(&mut watch, "override").await;
    let mut client = connect_expecting_session(broker.addr, v5_connect(id, false, 100), true).await;
    subscribe_ok(&mut client, 1, "timers/override-marker", QoS::AtLeastOnce).await;
}

/// [MQTT-3.1.3-9]: a new session's Will waits for its own Will Delay Interval; the delay timer
/// of the session it replaced (whose Will went out when it ended) does not send it early.
#[tokio::test]
async fn a_will_delay_timer_of_a_replaced_session_does_not_send_the_new_will() {
    let broker = start_broker().await;
    let mut watch = observer(broker.addr, "will-watch", "witness/#").await;
    subscribe_ok(&mut watch, 1, "timers/will/#", QoS::AtLeastOnce).await;
    let id = "timer-will";
    let connect = with_will(
        v5_connect(id, true, 100),
        delayed(will("timers/will/old", "old"), 1),
    );
    let (client, _) = connect_ok(broker.addr, connect).await;
    drop(client);
    start_witness(broker.addr, "will", 1).await;

    // Clean Start ends the old session: its Will goes out now.
    let connect = with_will(
        v5_connect(id, true, 100),
        delayed(will("timers/will/new", "new"), 60),
    );
    let (client, _) = connect_ok(broker.addr, connect).await;
    expect_message(&mut watch, "timers/will/old", "old").await;
    drop(client);

    // Nothing but the witness: the new Will is not due for a minute.
    await_witness(&mut watch, "will").await;
}

/// Promise 2: a timer armed when the broker restored a session at start-up does not end a
/// session created under the same client id after the restart.
#[tokio::test]
async fn a_timer_armed_at_start_up_leaves_a_session_created_after_it_alone() {
    let broker = start_broker().await;
    let id = "timer-restart";
    let (mut client, _) = connect_ok(broker.addr, v5_connect(id, true, 1)).await;
    disconnect(&mut client, ReasonCode::Success).await;
    let broker = broker.restart().await;
    let mut watch = observer(broker.addr, "restart-watch", "witness/#").await;
    start_witness(broker.addr, "restart", 1).await;

    let mut client = connect_expecting_session(broker.addr, v5_connect(id, true, 100), false).await;
    subscribe_ok(&mut client, 1, "timers/restart", QoS::AtLeastOnce).await;
    disconnect(&mut client, ReasonCode::Success).await;

    await_witness(&mut watch, "restart").await;
    connect_expecting_session(broker.addr, v5_connect(id, false, 100), true).await;
}
