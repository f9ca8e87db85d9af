//! Logins and the ACL over a broker's life: a reload that removes a user closes its
//! connections (v5 DISCONNECT 0x87) and a changed password is asked for again; a reloaded ACL
//! holds for connected clients from their next packet; a Will the ACL forbids is never sent,
//! also when it was stored before a restart and the ACL changed with the restart; repeated
//! failures from one address are slowed down (counted, not timed).

use std::path::Path;

use cairn::access::throttle::FREE_FAILURES;
use cairn::broker::sys::Figures;
use cairn::codec::{Connect, Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::clients::{
    connect_expecting_session, connect_ok, delayed, expect_server_close, subscribe_ok, will,
    with_expiry, with_will, BOTH, LONG_EXPIRY,
};
use crate::common::passwords::write_password_file;
use crate::common::{connect_packet, publish_packet, start_broker_with, RawClient, TestBroker};
use crate::support::{expect_connect_refused, expect_message, expect_only_marker};

/// A CONNECT from `client_id` as `user` with `password`.
fn login(version: ProtocolVersion, client_id: &str, user: &str, password: &str) -> Connect {
    let mut connect = connect_packet(version, client_id);
    connect.username = Some(user.to_string());
    connect.password = Some(password.as_bytes().to_vec().into());
    connect
}

/// A broker asking for passwords from `users`, with the ACL `acl` if given; the files live in
/// `dir`.
async fn broker(dir: &Path, users: &[(&str, &str)], acl: Option<&str>) -> TestBroker {
    let passwords = write_password_file(dir, "passwd", users);
    let acl = acl.map(|text| write_acl(dir, text));
    start_broker_with(|config| {
        config.password_file = Some(passwords);
        config.acl_file = acl;
    })
    .await
}

/// A v5 client logged in as `user`, subscribed to `filter` at QoS 1.
async fn subscribed_as(broker: &TestBroker, user: &str, password: &str, filter: &str) -> RawClient {
    let (mut client, _) = connect_ok(
        broker.addr,
        login(ProtocolVersion::V5, user, user, password),
    )
    .await;
    subscribe_ok(&mut client, 1, filter, QoS::AtLeastOnce).await;
    client
}

fn write_acl(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("acl");
    std::fs::write(&path, text).expect("write the ACL file");
    path
}

/// A reload re-reads the password file: the connections of a user it no longer has are
/// closed (v5: DISCONNECT 0x87 Not authorized; 3.1.1: the close) and the user is refused from
/// then on; a user still there stays connected; a changed password is asked for again (no
/// login remembered from before the reload lets the old one in).
#[tokio::test]
async fn a_reload_that_removes_a_user_closes_its_connections() {
    let dir = tempfile::tempdir().expect("a directory for the files");
    let mut broker = broker(
        dir.path(),
        &[("alice", "alice-pw"), ("bob", "bob-pw")],
        None,
    )
    .await;
    let (mut alice, _) = connect_ok(
        broker.addr,
        login(ProtocolVersion::V5, "alice", "alice", "alice-pw"),
    )
    .await;
    let mut bobs = Vec::new();
    for version in BOTH {
        let id = format!("bob-{}", version.level());
        let (bob, _) = connect_ok(broker.addr, login(version, &id, "bob", "bob-pw")).await;
        bobs.push(bob);
    }

    write_password_file(dir.path(), "passwd", &[("alice", "new-pw")]);
    let reloaded = broker.reload_files().await;
    assert_eq!(reloaded.logins_closed, 2, "both of bob's connections");
    for bob in &mut bobs {
        expect_server_close(bob, ReasonCode::NotAuthorized).await;
    }
    alice.expect_nothing_pending().await;
    for (user, password) in [("bob", "bob-pw"), ("alice", "alice-pw")] {
        let refused = login(ProtocolVersion::V5, "again", user, password);
        expect_connect_refused(broker.addr, refused, ReasonCode::BadUserNameOrPassword).await;
    }
    connect_ok(
        broker.addr,
        login(ProtocolVersion::V5, "again", "alice", "new-pw"),
    )
    .await;
    broker.shutdown().await;
}

/// A reloaded ACL file holds for a connected client from its next packet: a topic it could
/// write before the reload and may only read after gets PUBACK 0x87 Not authorized,
/// and the message reaches no one, not even its own subscription.
#[tokio::test]
async fn a_reloaded_acl_holds_for_connected_clients() {
    let dir = tempfile::tempdir().expect("a directory for the files");
    let mut broker = broker(
        dir.path(),
        &[("alice", "alice-pw")],
        Some("user alice\ntopic readwrite a/#\n"),
    )
    .await;
    let mut alice = subscribed_as(&broker, "alice", "alice-pw", "a/#").await;
    let publish = |packet_id, payload: &[u8]| {
        Packet::Publish(publish_packet(
            "a/1",
            QoS::AtLeastOnce,
            Some(packet_id),
            payload,
        ))
    };
    alice.send(&publish(2, b"before")).await;
    let mut acked = false;
    let mut delivered = false;
    while !(acked && delivered) {
        match alice.recv().await {
            Packet::PubAck(ack) if ack.packet_id == 2 => {
                assert_eq!(ack.reason, ReasonCode::Success);
                acked = true;
            }
            Packet::Publish(message) if message.payload == "before" => {
                alice.acknowledge(&message).await;
                delivered = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    write_acl(dir.path(), "user alice\ntopic read a/#\n");
    broker.reload_files().await;
    alice.send(&publish(3, b"after")).await;
    match alice.recv().await {
        Packet::PubAck(ack) => {
            assert_eq!(ack.packet_id, 3);
            assert_eq!(ack.reason, ReasonCode::NotAuthorized);
        }
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }
    alice.expect_nothing_pending().await;
    let figures = Figures::read(broker.handle.broker());
    assert_eq!(figures.messages_denied, 1);
    broker.shutdown().await;
}

/// A Will whose topic the ACL does not let its client write is never published; an allowed
/// one is. The forbidden Will would go out at the takeover, before the allowed one's
/// connection even ends, so the watcher's first message tells.
#[tokio::test]
async fn a_will_the_acl_forbids_is_never_sent() {
    let dir = tempfile::tempdir().expect("a directory for the files");
    let broker = broker(
        dir.path(),
        &[("alice", "alice-pw"), ("watcher", "watcher-pw")],
        Some("user alice\ntopic readwrite wills/allowed\nuser watcher\ntopic read wills/#\n"),
    )
    .await;
    let mut watcher = subscribed_as(&broker, "watcher", "watcher-pw", "wills/#").await;
    for version in BOTH {
        let id = format!("alice-{}", version.level());
        let forbidden = with_will(
            login(version, &id, "alice", "alice-pw"),
            will("wills/forbidden", "no"),
        );
        let (_first, _) = connect_ok(broker.addr, forbidden).await;
        let allowed = with_will(
            login(version, &id, "alice", "alice-pw"),
            will("wills/allowed", "yes"),
        );
        let (second, _) = connect_ok(broker.addr, allowed).await;
        drop(second);
        let message = expect_message(&mut watcher, "wills/allowed", "yes").await;
        watcher.acknowledge(&message).await;
    }
    broker.shutdown().await;
}

/// A Will is checked again when it is sent: one allowed at CONNECT whose topic a reload then
/// forbids is dropped. The takeover would send it before the new connection's CONNACK, and
/// the new connection's own (allowed) Will only after it drops, so the watcher's first
/// message tells.
#[tokio::test]
async fn a_will_a_reload_forbids_is_not_sent() {
    let dir = tempfile::tempdir().expect("a directory for the files");
    let mut broker = broker(
        dir.path(),
        &[("alice", "alice-pw"), ("watcher", "watcher-pw")],
        Some("user alice\ntopic readwrite wills/#\nuser watcher\ntopic read wills/#\n"),
    )
    .await;
    let mut watcher = subscribed_as(&broker, "watcher", "watcher-pw", "wills/#").await;
    let connect = |topic: &str| {
        let will = will(topic, topic);
        with_will(
            login(ProtocolVersion::V5, "alice", "alice", "alice-pw"),
            will,
        )
    };
    let (_first, _) = connect_ok(broker.addr, connect("wills/a")).await;
    write_acl(
        dir.path(),
        "user alice\ntopic readwrite wills/b\nuser watcher\ntopic read wills/#\n",
    );
    broker.reload_files().await;
    let (second, _) = connect_ok(broker.addr, connect("wills/b")).await;
    drop(second);
    expect_message(&mut watcher, "wills/b", "wills/b").await;
    broker.shutdown().await;
}

/// The ACL of the restart tests before the restart: alice and bob may write their own Will
/// topics, the watcher everything under `wills/`.
const ACL_BEFORE_RESTART: &str = "user alice\ntopic readwrite wills/alice\n\
    user bob\ntopic readwrite wills/bob\n\
    user watcher\ntopic readwrite wills/#\n";

/// A v5 CONNECT of `user` (client id = user name) for a session that outlives its connection
/// (Session Expiry [`LONG_EXPIRY`]), with a Will to `wills/{user}` delayed by 2 s.
fn persistent_with_delayed_will(user: &str) -> Connect {
    let mut connect = login(ProtocolVersion::V5, user, user, &format!("{user}-pw"));
    connect.clean_start = false;
    let will = delayed(will(&format!("wills/{user}"), &format!("{user} gone")), 2);
    with_will(with_expiry(connect, LONG_EXPIRY), will)
}

/// alice and bob connect with delayed Wills (Will Delay 2 s, Session Expiry 300 s) that
/// [`ACL_BEFORE_RESTART`] allows; the broker shuts down while they are connected and starts
/// again on the same data directory with the ACL `acl_after_restart`. Returns the topics of
/// the Wills a persistent subscriber to `wills/#` receives: it waits for bob's Will (due 2 s
/// after the shutdown), then alice starts a clean session, which ends her old one and so
/// sends its Will at once if it is still pending [MQTT-3.1.3-9] (MQTT 5.0 §3.1.3.2.2), then
/// a marker is published: a Will of alice's, had it gone out, arrives before the marker.
async fn wills_sent_after_a_restart_with_the_acl(acl_after_restart: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a directory for the files");
    let users = [
        ("alice", "alice-pw"),
        ("bob", "bob-pw"),
        ("watcher", "watcher-pw"),
    ];
    let broker = broker(dir.path(), &users, Some(ACL_BEFORE_RESTART)).await;
    let mut watcher_connect = login(ProtocolVersion::V5, "watcher", "watcher", "watcher-pw");
    watcher_connect.clean_start = false;
    let watcher_connect = with_expiry(watcher_connect, LONG_EXPIRY);
    let mut watcher = connect_expecting_session(broker.addr, watcher_connect.clone(), false).await;
    subscribe_ok(&mut watcher, 1, "wills/#", QoS::AtLeastOnce).await;
    watcher.go_offline().await;
    let mut willers = Vec::new();
    for user in ["alice", "bob"] {
        let connect = persistent_with_delayed_will(user);
        willers.push(connect_expecting_session(broker.addr, connect, false).await);
    }

    write_acl(dir.path(), acl_after_restart);
    let broker = broker.restart().await;
    let mut watcher = connect_expecting_session(broker.addr, watcher_connect, true).await;
    let mut wills = Vec::new();
    while !wills.iter().any(|topic| topic == "wills/bob") {
        let message = watcher.expect_publish().await;
        watcher.acknowledge(&message).await;
        wills.push(message.topic);
    }
    let (alice, _) = connect_ok(
        broker.addr,
        login(ProtocolVersion::V5, "alice", "alice", "alice-pw"),
    )
    .await;
    drop(alice);
    watcher
        .send(&Packet::Publish(publish_packet(
            "wills/marker",
            QoS::AtMostOnce,
            None,
            b"marker",
        )))
        .await;
    loop {
        let message = watcher.expect_publish().await;
        if message.topic == "wills/marker" {
            break;
        }
        watcher.acknowledge(&message).await;
        wills.push(message.topic);
    }
    drop(willers);
    broker.shutdown().await;
    wills.sort();
    wills
}

/// A Will stored before a restart is checked against the ACL in force when it is sent, with
/// the user name of the client that set it: alice's Will, allowed when she connected, is not
/// sent once the ACL the broker restarted with lets her only read its topic, while bob's,
/// still allowed, is.
#[tokio::test]
async fn a_will_stored_before_a_restart_is_not_sent_if_the_new_acl_forbids_it() {
    let acl = "user alice\ntopic read wills/alice\n\
        user bob\ntopic readwrite wills/bob\n\
        user watcher\ntopic readwrite wills/#\n";
    assert_eq!(
        wills_sent_after_a_restart_with_the_acl(acl).await,
        ["wills/bob"]
    );
}

/// The control of the test above: with an ACL after the restart that still lets alice write
/// her Will topic, through a `pattern` rule whose `%u` stands for the user name stored with
/// the Will, both Wills are sent [MQTT-3.1.2-8].
#[tokio::test]
async fn a_will_stored_before_a_restart_is_sent_if_the_new_acl_allows_it() {
    let acl = "pattern readwrite wills/%u\nuser watcher\ntopic readwrite wills/#\n";
    assert_eq!(
        wills_sent_after_a_restart_with_the_acl(acl).await,
        ["wills/alice", "wills/bob"]
    );
}

/// Failed logins from one address are free up to a few, then each next login from it waits
/// before its CONNACK, whatever its outcome; a success forgets the failures. Counted through
/// the broker's figures: attempts made to wait, not seconds.
#[tokio::test]
async fn repeated_login_failures_from_one_address_are_slowed_down() {
    let dir = tempfile::tempdir().expect("a directory for the files");
    let broker = broker(dir.path(), &[("alice", "alice-pw")], None).await;
    let failures = FREE_FAILURES + 3;
    for _ in 0..failures {
        let wrong = login(ProtocolVersion::V5, "guess", "alice", "guess");
        expect_connect_refused(broker.addr, wrong, ReasonCode::BadUserNameOrPassword).await;
    }
    let figures = Figures::read(broker.handle.broker());
    assert_eq!(figures.logins_refused, u64::from(failures));
    // The attempts after FREE_FAILURES failures waited.
    assert_eq!(figures.logins_slowed, u64::from(failures - FREE_FAILURES));

    let right = || login(ProtocolVersion::V5, "alice", "alice", "alice-pw");
    let (client, _) = connect_ok(broker.addr, right()).await;
    drop(client);
    let after_success = Figures::read(broker.handle.broker()).logins_slowed;
    assert_eq!(
        after_success,
        u64::from(failures - FREE_FAILURES + 1),
        "the right password waited too"
    );
    let (mut client, _) = connect_ok(broker.addr, right()).await;
    client.expect_nothing_pending().await;
    assert_eq!(
        Figures::read(broker.handle.broker()).logins_slowed,
        after_success,
        "a success forgets the failures"
    );
    subscribe_ok(&mut client, 1, "marker", QoS::AtMostOnce).await;
    expect_only_marker(&mut client, "marker").await;
    broker.shutdown().await;
}
