//! A reboot storm (design.md promises 1 and 2): many persistent clients connecting and
//! subscribing at once fill a commit group with session and subscription changes alone, which
//! closes the commit window early; every CONNACK and SUBACK must still wait for its commit, so
//! a `kill -9` right after the last SUBACK loses no session and no subscription.

use cairn::codec::{ProtocolVersion, QoS};
use tokio::task::JoinSet;

use crate::common::clients::{client_id, new_session, resume, subscribe_ok};
use crate::common::serve::ServeProcess;
use crate::common::RawClient;
use crate::process::{self, serve_command};
use crate::support::{expect_message, message, publish};

/// Clients reconnecting together: enough to close the commit window twice over.
const CLIENTS: usize = 40;
/// A commit window far longer than the test may take to see its acknowledgements.
const LONG_WINDOW_MS: &str = "1000";

fn topic(index: usize) -> String {
    format!("storm/sensor-{index}/command")
}

/// Promise 1 and 2, [MQTT-3.2.2-2] (Session Present 1 on resuming), [MQTT-3.8.4-3] (the
/// subscription is in place once SUBACK is sent): 40 clients of both versions connect with
/// Clean Session 0 / Clean Start 0 at once and subscribe at QoS 1, under a 1 s commit window
/// that only a group full of their changes closes early. `cairn` is killed with SIGKILL as
/// soon as the last SUBACK arrives. After the restart every client resumes its session and
/// receives a QoS 1 message published to its topic.
#[tokio::test]
async fn sessions_and_subscriptions_acknowledged_in_a_reconnect_storm_survive_sigkill() {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let mut command = serve_command(data_dir.path());
    command.env("CAIRN_STORE__COMMIT_WINDOW_MS", LONG_WINDOW_MS);
    let cairn = ServeProcess::spawn(command).await;
    let mut storm = JoinSet::new();
    for index in 0..CLIENTS {
        let addr = cairn.addr;
        storm.spawn(async move {
            let version = version_of(index);
            let id = client_id(&format!("storm-{index}"), version);
            let mut client = new_session(addr, version, &id).await;
            subscribe_ok(&mut client, 1, &topic(index), QoS::AtLeastOnce).await;
            client
        });
    }
    // Keep every connection open until the kill: nothing after the SUBACKs may help.
    let mut connected = Vec::with_capacity(CLIENTS);
    while let Some(client) = storm.join_next().await {
        connected.push(client.expect("a storm client connects and subscribes"));
    }
    cairn.kill().await;
    drop(connected);

    let cairn = process::start(data_dir.path()).await;
    let mut publisher = RawClient::connect(cairn.addr, ProtocolVersion::V5, "storm-pub").await;
    for index in 0..CLIENTS {
        let version = version_of(index);
        let mut client = resume(
            cairn.addr,
            version,
            &client_id(&format!("storm-{index}"), version),
        )
        .await;
        let payload = format!("command {index}");
        publish(
            &mut publisher,
            message(&topic(index), QoS::AtLeastOnce, 1, &payload),
        )
        .await;
        let delivered = expect_message(&mut client, &payload, QoS::AtLeastOnce, false).await;
        client.acknowledge(&delivered).await;
    }
}

/// Half the clients speak 3.1.1, half 5.0.
fn version_of(index: usize) -> ProtocolVersion {
    if index % 2 == 0 {
        ProtocolVersion::V311
    } else {
        ProtocolVersion::V5
    }
}
