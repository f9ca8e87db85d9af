//! Wills of clients that were connected when the real binary was killed with SIGKILL
//! (design.md promise 2): after the restart a delayed Will goes out once its delay has passed
//! (to a persistent subscriber, and as a retained message), the Will of a session that ended
//! with the crash goes out at start-up, a Will deleted by a normal DISCONNECT never does, and
//! no Will goes out twice.

use std::time::{Duration, Instant};

use cairn::codec::{ProtocolVersion, Publish, QoS, Will};

use crate::common::clients::{
    client_id, connect_expecting_session, delayed, new_session, persistent_connect, resume,
    subscribe_ok, text, will, with_will, BOTH,
};
use crate::common::{connect_packet, RawClient};
use crate::process;
use crate::support::expect_message;

/// The Will Delay Interval of the delayed Will, in seconds.
const WILL_DELAY: u32 = 2;

/// After a SIGKILL, asserts that the only PUBLISHes before PINGRESP are resends (DUP 1, same
/// packet identifier) of `delivered` messages whose PUBACK the kill may have beaten to the
/// disk (QoS 1 allows that repeat); a Will published again would arrive with DUP 0.
async fn expect_no_new_publication(client: &mut RawClient, delivered: &[Publish]) {
    for resent in client.publishes_before_pingresp().await {
        assert!(
            resent.dup
                && delivered.iter().any(|earlier| {
                    earlier.packet_id == resent.packet_id
                        && earlier.topic == resent.topic
                        && earlier.payload == resent.payload
                }),
            "only resends of acknowledged deliveries may follow a kill, got {resent:?}"
        );
        client.acknowledge(&resent).await;
    }
}

/// A persistent v5 watcher subscribed to `wills/#`, offline when this returns.
async fn offline_watcher(addr: std::net::SocketAddr, id: &str) {
    let mut watcher = new_session(addr, ProtocolVersion::V5, id).await;
    subscribe_ok(&mut watcher, 1, "wills/#", QoS::AtLeastOnce).await;
    watcher.go_offline().await;
}

/// Promise 2, [MQTT-3.1.2-8] (5.0): a v5 client with a retained Will, Will Delay 2 s and
/// Session Expiry 300 is connected when `cairn` is killed with SIGKILL. After the restart the
/// Will is published once its delay has passed — never earlier than 2 s after the connection
/// was lost — to a persistent subscriber that was offline, and is kept as the retained message
/// of its topic [MQTT-3.3.1-5]. A client whose normal DISCONNECT deleted its Will
/// [MQTT-3.1.2-10] has nothing published. After a second SIGKILL and restart the Will is not
/// published again.
#[tokio::test]
async fn delayed_will_of_a_client_connected_at_sigkill_is_published_after_the_delay() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let cairn = process::start(data_dir.path()).await;
    offline_watcher(cairn.addr, "delay-watcher").await;
    let mut polite = connect_expecting_session(
        cairn.addr,
        with_will(
            persistent_connect(ProtocolVersion::V5, "polite"),
            will("wills/polite", "must not appear"),
        ),
        false,
    )
    .await;
    polite.go_offline().await;
    let _willer = connect_expecting_session(
        cairn.addr,
        with_will(
            persistent_connect(ProtocolVersion::V5, "willer"),
            Will {
                retain: true,
                ..delayed(will("wills/delayed", "gone"), WILL_DELAY)
            },
        ),
        false,
    )
    .await;

    let lost_at = Instant::now();
    cairn.kill().await;
    let cairn = process::start(data_dir.path()).await;
    let mut watcher = resume(cairn.addr, ProtocolVersion::V5, "delay-watcher").await;
    let published = expect_message(&mut watcher, "gone", QoS::AtLeastOnce, false).await;
    assert!(
        lost_at.elapsed() >= Duration::from_secs(u64::from(WILL_DELAY)),
        "the Will waited for its delay after the connection was lost, got {:?}",
        lost_at.elapsed()
    );
    assert_eq!(published.topic, "wills/delayed");
    watcher.acknowledge(&published).await;
    watcher.expect_nothing_pending().await;

    let mut late = RawClient::connect(cairn.addr, ProtocolVersion::V311, "late-reader").await;
    subscribe_ok(&mut late, 1, "wills/delayed", QoS::AtLeastOnce).await;
    let retained = expect_message(&mut late, "gone", QoS::AtLeastOnce, false).await;
    assert!(retained.retain, "the retained Will is sent with RETAIN 1");
    late.acknowledge(&retained).await;
    late.expect_nothing_pending().await;
    watcher.go_offline().await;

    cairn.kill().await;
    let cairn = process::start(data_dir.path()).await;
    let mut watcher = resume(cairn.addr, ProtocolVersion::V5, "delay-watcher").await;
    expect_no_new_publication(&mut watcher, &[published]).await;
    let willer = connect_expecting_session(
        cairn.addr,
        persistent_connect(ProtocolVersion::V5, "willer"),
        true,
    )
    .await;
    drop(willer);
    cairn.kill().await;
}

/// Promise 2, [MQTT-3.1.2-8]: a 3.1.1 Clean Session 1 client and a v5 client with Session
/// Expiry 0 (and a Will Delay of 30 s, which the end of the session cuts short: MQTT 5.0
/// §3.1.3.2.2), both with Wills, are connected when `cairn` is killed with SIGKILL. Their
/// sessions ended with their connections, so both Wills are published at start-up, before any
/// client connects; they reach a persistent subscriber that was offline, exactly once (not
/// again after another SIGKILL and restart), and the clients find no session
/// [MQTT-3.2.2-3].
#[tokio::test]
async fn will_of_a_session_that_ended_at_sigkill_is_published_at_start_up() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let cairn = process::start(data_dir.path()).await;
    offline_watcher(cairn.addr, "startup-watcher").await;
    let mut doomed = Vec::new();
    for version in BOTH {
        let id = client_id("doomed", version);
        let last_will = will(&format!("wills/{id}"), &format!("{id} lost"));
        let last_will = match version {
            ProtocolVersion::V311 => last_will,
            ProtocolVersion::V5 => delayed(last_will, 30),
        };
        let connect = with_will(connect_packet(version, &id), last_will);
        doomed.push(connect_expecting_session(cairn.addr, connect, false).await);
    }

    cairn.kill().await;
    let cairn = process::start(data_dir.path()).await;
    let mut watcher = resume(cairn.addr, ProtocolVersion::V5, "startup-watcher").await;
    let mut published = Vec::new();
    for _ in BOTH {
        let will = watcher.expect_publish().await;
        watcher.acknowledge(&will).await;
        published.push(will);
    }
    let mut summary: Vec<(String, String, QoS)> = published
        .iter()
        .map(|will| (will.topic.clone(), text(will), will.qos))
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        vec![
            (
                "wills/doomed-v4".to_string(),
                "doomed-v4 lost".to_string(),
                QoS::AtLeastOnce
            ),
            (
                "wills/doomed-v5".to_string(),
                "doomed-v5 lost".to_string(),
                QoS::AtLeastOnce
            ),
        ]
    );
    watcher.expect_nothing_pending().await;
    watcher.go_offline().await;

    cairn.kill().await;
    let cairn = process::start(data_dir.path()).await;
    let mut watcher = resume(cairn.addr, ProtocolVersion::V5, "startup-watcher").await;
    expect_no_new_publication(&mut watcher, &published).await;
    for version in BOTH {
        let id = client_id("doomed", version);
        let mut connect = connect_packet(version, &id);
        connect.clean_start = false;
        let mut client = connect_expecting_session(cairn.addr, connect, false).await;
        client.expect_nothing_pending().await;
    }
    drop(doomed);
    cairn.kill().await;
}
