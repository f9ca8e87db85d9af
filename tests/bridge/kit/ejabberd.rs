//! The ejabberd cluster as an upstream: its two nodes route between each other, a persistent
//! MQTT 5 session made on node 1 resumes on node 2, and a stopped node refuses connections
//! while the other serves.

use bytes::Bytes;
use cairn::codec::{Connect, ProtocolVersion, QoS, ReasonCode};
use tokio::net::TcpStream;

use crate::common::upstream::{wait_until_refused, EjabberdCluster};
use crate::common::{connect_packet, publish_packet, RawClient};

/// A v5 CONNECT with the user name and password ejabberd requires (any do), keeping the
/// session 300 s (Clean Start 0) when `persistent`.
fn connect(client_id: &str, persistent: bool) -> Connect {
    let mut connect = connect_packet(ProtocolVersion::V5, client_id);
    connect.username = Some("kit".to_string());
    connect.password = Some(Bytes::from_static(b"any"));
    if persistent {
        connect.clean_start = false;
        connect.properties.session_expiry_interval = Some(300);
    }
    connect
}

async fn connected(addr: std::net::SocketAddr, connect: Connect) -> (RawClient, bool) {
    let (client, connack) = RawClient::connect_with(addr, connect).await;
    assert_eq!(connack.reason, ReasonCode::Success, "CONNACK");
    (client, connack.session_present)
}

#[tokio::test]
async fn a_session_made_on_node_1_resumes_on_node_2() {
    let test = "a_session_made_on_node_1_resumes_on_node_2";
    let Some(cluster) = EjabberdCluster::start(test).await else {
        return;
    };
    let [node_1, node_2] = cluster.addrs();

    let (mut client, present) = connected(node_1, connect("kit-roaming", true)).await;
    assert!(!present, "a new session [MQTT-3.2.2-3]");
    let suback = client.subscribe(1, "kit/roaming", QoS::AtLeastOnce).await;
    assert_eq!(suback.reasons, vec![ReasonCode::GrantedQoS1]);
    client.go_offline().await;

    let (mut client, present) = connected(node_2, connect("kit-roaming", true)).await;
    assert!(present, "node 2 has node 1's session [MQTT-3.2.2-3]");

    // The subscription made on node 1 came along: a message published on node 1 arrives.
    let (mut publisher, _) = connected(node_1, connect("kit-publisher", false)).await;
    let publish = publish_packet("kit/roaming", QoS::AtLeastOnce, Some(1), b"across");
    publisher.publish(publish).await.expect("a PUBACK");
    let received = client.expect_publish().await;
    assert_eq!(
        (received.topic.as_str(), &received.payload[..]),
        ("kit/roaming", &b"across"[..])
    );
}

#[tokio::test]
async fn a_stopped_node_refuses_and_the_other_serves() {
    let test = "a_stopped_node_refuses_and_the_other_serves";
    let Some(mut cluster) = EjabberdCluster::start(test).await else {
        return;
    };
    let [node_1, node_2] = cluster.addrs();
    let (mut held, _) = connected(node_1, connect("kit-held", true)).await;

    cluster.stop_node(0).await;
    held.expect_closed().await;
    assert!(
        TcpStream::connect(node_1).await.is_err(),
        "nothing listens on the stopped node"
    );
    connected(node_2, connect("kit-held", true)).await;

    drop(cluster);
    assert!(
        wait_until_refused(node_2).await,
        "the dropped cluster's other node is gone"
    );
}
