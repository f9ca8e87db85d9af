//! An ejabberd two-node cluster as the upstream, standing in for a clustered cloud broker
//! (skipped when ejabberd is not installed, failed under `CI=true`): the bridge has both
//! nodes' addresses; when the node holding its session dies, it moves to the other node and
//! loses nothing, whatever that node remembers of the session.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use cairn::codec::{ProtocolVersion, QoS, ReasonCode};
use cairn::config::{BridgeConfig, BridgeProtocol, Direction};

use crate::common::connect_packet;
use crate::common::ordered::receive_in_order_allowing_repeats;
use crate::common::upstream::EjabberdCluster;
use crate::common::RawClient;
use crate::support::{bridge, gateway, publish_in_groups, rule};

/// A v5 subscriber to `filter` on the node at `addr` (ejabberd wants a user name and a
/// password; any do).
async fn watcher(addr: SocketAddr, filter: &str) -> RawClient {
    let mut connect = connect_packet(ProtocolVersion::V5, "cloud-sub");
    connect.username = Some("watcher".into());
    connect.password = Some(Bytes::from_static(b"any"));
    let (mut client, connack) = RawClient::connect_with(addr, connect).await;
    assert_eq!(connack.reason, ReasonCode::Success);
    let suback = client.subscribe(1, filter, QoS::AtLeastOnce).await;
    assert_eq!(suback.reasons, [ReasonCode::GrantedQoS1]);
    client
}

/// Gives the bridge a user name and a password file in `dir`.
fn with_credentials(config: &mut BridgeConfig, dir: &Path) {
    let password_file = dir.join("cloud.pass");
    std::fs::write(&password_file, "any\n").expect("write the password file");
    config.username = Some("gw".into());
    config.password_file = Some(password_file);
}

#[tokio::test]
async fn the_node_holding_the_session_dies_and_nothing_is_lost() {
    let test = "the_node_holding_the_session_dies_and_nothing_is_lost";
    let Some(mut cluster) = EjabberdCluster::start(test).await else {
        return;
    };
    let [node_1, node_2] = cluster.addrs();
    let mut cloud = watcher(node_2, "site/#").await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = bridge(
        "cloud",
        node_1,
        vec![rule("sensors/#", Direction::Out, 1, "", "site/")],
    );
    config.addresses.push(node_2.to_string());
    with_credentials(&mut config, dir.path());
    let gateway = gateway(vec![config]).await;

    let before = vec!["before".to_string()];
    publish_in_groups(gateway.addr, &before, 100).await;
    receive_in_order_allowing_repeats(&mut cloud, &before, 100).await;

    cluster.stop_node(0).await;
    let after = vec!["after".to_string()];
    publish_in_groups(gateway.addr, &after, 100).await;
    receive_in_order_allowing_repeats(&mut cloud, &after, 100).await;
}

/// ejabberd refuses Mosquitto's bridge bit: a 3.1.1 bridge drops it and connects.
#[tokio::test]
async fn a_3_1_1_bridge_drops_the_bridge_bit_ejabberd_refuses() {
    let test = "a_3_1_1_bridge_drops_the_bridge_bit_ejabberd_refuses";
    let Some(cluster) = EjabberdCluster::start(test).await else {
        return;
    };
    let [node_1, _] = cluster.addrs();
    let mut cloud = watcher(node_1, "sensors/#").await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = bridge(
        "cloud",
        node_1,
        vec![rule("sensors/#", Direction::Out, 1, "", "")],
    );
    with_credentials(&mut config, dir.path());
    config.protocol = BridgeProtocol::V311;
    let gateway = gateway(vec![config]).await;
    let publishers = vec!["sensor".to_string()];
    publish_in_groups(gateway.addr, &publishers, 10).await;
    receive_in_order_allowing_repeats(&mut cloud, &publishers, 10).await;
}
