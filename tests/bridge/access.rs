//! The gateway's ACL and the bridge: the bridge itself is not one of the LAN's clients (no
//! user of the ACL may write the topics it brings in, and they come in all the same), but what
//! it brings in reaches each local subscriber only as that subscriber's ACL lets it read.

use cairn::codec::{ProtocolVersion, QoS};
use cairn::config::Direction;

use crate::common::clients::{connect_ok, publish_qos1, subscribe_ok, subscriber, text};
use crate::common::passwords::write_password_file;
use crate::common::{connect_packet, start_broker, RawClient};
use crate::support::{bridge, gateway_with, rule};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A v5 client of `addr` logged in as `user` (its password is its name), subscribed to
/// `filter` at QoS 1.
async fn subscribed_as(addr: std::net::SocketAddr, user: &str, filter: &str) -> RawClient {
    let mut connect = connect_packet(V5, user);
    connect.username = Some(user.to_string());
    connect.password = Some(user.as_bytes().to_vec().into());
    let (mut client, _) = connect_ok(addr, connect).await;
    subscribe_ok(&mut client, 1, filter, QoS::AtLeastOnce).await;
    client
}

#[tokio::test]
async fn messages_brought_in_reach_only_the_subscribers_allowed_to_read_them() {
    let upstream = start_broker().await;
    let dir = tempfile::tempdir().expect("a directory for the files");
    let passwords =
        write_password_file(dir.path(), "passwd", &[("alice", "alice"), ("bob", "bob")]);
    let acl = dir.path().join("acl");
    // Nobody may write cmd/#: the bridge is not held to the LAN clients' rules.
    let rules =
        "user alice\ntopic read cmd/a/#\n\nuser bob\ntopic read cmd/#\ntopic write sensors/#\n";
    std::fs::write(&acl, rules).expect("write the ACL file");
    let rules = vec![
        rule("cmd/#", Direction::In, 1, "", "site-7/"),
        rule("sensors/#", Direction::Out, 1, "", "site-7/"),
    ];
    let gateway = gateway_with(vec![bridge("cloud", upstream.addr, rules)], |config| {
        config.password_file = Some(passwords);
        config.acl_file = Some(acl);
    })
    .await;
    // Alice's filter is wider than what she may read: the subscription is granted and she
    // gets only the topics she may read, as from Mosquitto.
    let mut alice = subscribed_as(gateway.addr, "alice", "cmd/#").await;
    let mut bob = subscribed_as(gateway.addr, "bob", "cmd/#").await;

    // The bridge subscribes upstream before it sends anything on a connection: once a message
    // of Bob's has gone up, the operator's commands come in.
    let mut cloud = subscriber(
        upstream.addr,
        V5,
        "cloud",
        "site-7/sensors/#",
        QoS::AtLeastOnce,
    )
    .await;
    publish_qos1(&mut bob, "sensors/t", 2, "ready").await;
    let ready = cloud.expect_publish().await;
    assert_eq!(ready.topic, "site-7/sensors/t");
    let mut operator = RawClient::connect(upstream.addr, V5, "operator").await;
    publish_qos1(&mut operator, "site-7/cmd/b/reboot", 1, "for b").await;
    publish_qos1(&mut operator, "site-7/cmd/a/reboot", 2, "for a").await;

    for expected in [("cmd/b/reboot", "for b"), ("cmd/a/reboot", "for a")] {
        let got = bob.expect_publish().await;
        assert_eq!((got.topic.as_str(), text(&got).as_str()), expected);
        bob.acknowledge(&got).await;
    }
    // The bridge brings messages in in order, so had cmd/b/reboot reached Alice it would have
    // come first.
    let got = alice.expect_publish().await;
    assert_eq!(
        (got.topic.as_str(), text(&got).as_str()),
        ("cmd/a/reboot", "for a"),
        "alice may read cmd/a/# only"
    );
}
