//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5 section 4.8.2): each message goes to
//! exactly one member of the group, independently of ordinary subscriptions to the same topic,
//! and what a member's ended session left unacknowledged goes to another member; No Local on a
//! shared filter is a Protocol Error.

use std::collections::BTreeSet;

use cairn::codec::{
    Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions,
};

use crate::common::clients::{
    assert_broker_serves, expect_server_close, publish_qos1, subscriber, text,
};
use crate::common::{publish_packet, start_broker, RawClient};
use crate::support::texts;

/// Section 4.8.2: ten messages to a group of two members are split between them — every
/// message reaches exactly one member and both get some — while an ordinary subscriber to the
/// same topic gets all ten.
#[tokio::test]
async fn shared_subscription_delivers_each_message_to_one_member() {
    let broker = start_broker().await;
    let version = ProtocolVersion::V5;
    let mut first = subscriber(
        broker.addr,
        version,
        "member-1",
        "$share/workers/jobs/+",
        QoS::AtMostOnce,
    )
    .await;
    let mut second = subscriber(
        broker.addr,
        version,
        "member-2",
        "$share/workers/jobs/+",
        QoS::AtMostOnce,
    )
    .await;
    let mut ordinary =
        subscriber(broker.addr, version, "ordinary", "jobs/+", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connect(broker.addr, version, "jobs-pub").await;
    let sent: Vec<String> = (1..=10).map(|n| format!("job {n}")).collect();
    for (n, job) in sent.iter().enumerate() {
        let reason = publish_qos1(&mut publisher, &format!("jobs/{n}"), n as u16 + 1, job).await;
        assert_eq!(reason, ReasonCode::Success);
    }

    let to_first = texts(&first.publishes_before_pingresp().await);
    let to_second = texts(&second.publishes_before_pingresp().await);
    assert!(
        !to_first.is_empty() && !to_second.is_empty(),
        "split: {to_first:?} / {to_second:?}"
    );
    assert_eq!(
        to_first.len() + to_second.len(),
        sent.len(),
        "no message twice: {to_first:?} / {to_second:?}"
    );
    let union: BTreeSet<&String> = to_first.iter().chain(&to_second).collect();
    assert_eq!(
        union,
        sent.iter().collect(),
        "every message reached a member"
    );
    assert_eq!(texts(&ordinary.publishes_before_pingresp().await), sent);
}

/// Section 4.8.2 / 3.3.1.3: retained messages are not sent when a shared subscription is made.
#[tokio::test]
async fn shared_subscription_gets_no_retained_messages() {
    let broker = start_broker().await;
    let version = ProtocolVersion::V5;
    let mut publisher = RawClient::connect(broker.addr, version, "retainer").await;
    let mut retained = publish_packet("kept/state", QoS::AtLeastOnce, Some(1), b"on");
    retained.retain = true;
    publisher.publish(retained).await;
    let mut member = subscriber(
        broker.addr,
        version,
        "late-member",
        "$share/g/kept/state",
        QoS::AtLeastOnce,
    )
    .await;
    member.expect_nothing_pending().await;
}

/// [MQTT-3.8.3-4]: No Local on a shared subscription is a Protocol Error: DISCONNECT 0x82, and
/// the broker goes on serving other clients.
#[tokio::test]
async fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let broker = start_broker().await;
    let version = ProtocolVersion::V5;
    let mut client = RawClient::connect(broker.addr, version, "shared-no-local").await;
    let options = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::with_qos(QoS::AtMostOnce)
    };
    client
        .send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![("$share/g/t".to_string(), options)],
        }))
        .await;
    expect_server_close(&mut client, ReasonCode::ProtocolError).await;
    assert_broker_serves(broker.addr, version).await;
}

/// Section 4.8.2: a member whose session ends (Session Expiry 0, its connection lost) before
/// it acknowledges the QoS 1 messages the group gave it does not take them along: the other
/// member receives each of them, in order, and nothing else.
#[tokio::test]
async fn what_an_ended_member_left_unacknowledged_goes_to_another_member() {
    let broker = start_broker().await;
    let version = ProtocolVersion::V5;
    let filter = "$share/workers/tasks/+";
    let mut crashing = subscriber(broker.addr, version, "crashing", filter, QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(broker.addr, version, "tasks-pub").await;
    let sent: Vec<String> = (1..=4).map(|n| format!("task {n}")).collect();
    for (n, task) in sent.iter().enumerate() {
        let reason = publish_qos1(&mut publisher, "tasks/a", n as u16 + 1, task).await;
        assert_eq!(reason, ReasonCode::Success);
    }
    for task in &sent {
        assert_eq!(
            &text(&crashing.expect_publish().await),
            task,
            "the only member"
        );
    }
    let mut survivor = subscriber(broker.addr, version, "survivor", filter, QoS::AtLeastOnce).await;
    drop(crashing);

    let mut received = Vec::new();
    for _ in &sent {
        let publish = survivor.expect_publish().await;
        survivor.acknowledge(&publish).await;
        received.push(text(&publish));
    }
    assert_eq!(received, sent);
    survivor.expect_nothing_pending().await;
}
