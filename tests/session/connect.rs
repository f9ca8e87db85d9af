//! CONNECT and CONNACK: the first packet, protocol levels, Connect Flags, client identifiers,
//! authentication, the limits a v5 CONNACK announces, and the connection limit.

use bytes::BytesMut;
use cairn::codec::{
    encoded_len, Auth, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe,
    SubscriptionOptions,
};

use crate::common::clients::{
    assert_broker_serves, client_id, connect_ok, expect_server_close, expect_silent_close,
    persistent_connect, subscribe_ok, subscriber, text, will, with_expiry, with_will, BOTH,
};
use crate::common::passwords::write_password_file;
use crate::common::{connect_packet, publish_packet, start_broker, start_broker_with, RawClient};
use crate::support::{
    disconnect, disconnect_packet, encoded, expect_connect_refused, resume_connect, CONNECT_FLAGS,
    CONNECT_LEVEL,
};

// [MQTT-3.1.0-1] The first packet from a client must be CONNECT; anything else is closed
// without an answer.
#[tokio::test]
async fn first_packet_other_than_connect_is_closed() {
    let broker = start_broker().await;
    let publish = Packet::Publish(publish_packet("a/b", QoS::AtMostOnce, None, b"early"));
    for first in [
        encoded(&Packet::PingReq, ProtocolVersion::V5),
        encoded(&publish, ProtocolVersion::V5),
    ] {
        let mut client = RawClient::open(broker.addr, ProtocolVersion::V5).await;
        client.send_bytes(&first).await;
        expect_silent_close(&mut client).await;
    }
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

// [MQTT-3.1.0-2] A second CONNECT is a protocol violation: v5 DISCONNECT 0x82, then close.
#[tokio::test]
async fn second_connect_is_a_protocol_error() {
    let broker = start_broker().await;
    for version in BOTH {
        let id = client_id("twice", version);
        let mut client = RawClient::connect(broker.addr, version, &id).await;
        client
            .send(&Packet::Connect(Box::new(connect_packet(version, &id))))
            .await;
        expect_server_close(&mut client, ReasonCode::ProtocolError).await;
    }
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

/// A CONNECT asking for "MQIsdp" level 3 (MQTT 3.1), written by hand: the codec only encodes
/// the versions Cairn speaks.
fn mqtt31_connect() -> BytesMut {
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&[0x10, 16, 0x00, 0x06]);
    bytes.extend_from_slice(b"MQIsdp");
    bytes.extend_from_slice(&[0x03, 0x02, 0x00, 0x3c, 0x00, 0x02]);
    bytes.extend_from_slice(b"c1");
    bytes
}

/// A valid v5 CONNECT whose Protocol Level byte is replaced by `level`.
fn connect_with_level(level: u8) -> BytesMut {
    let mut bytes = encoded(
        &Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "level"))),
        ProtocolVersion::V5,
    );
    bytes[CONNECT_LEVEL] = level;
    bytes
}

// [MQTT-3.1.2-2] (3.1.1) An unsupported Protocol Level gets CONNACK return code 0x01 in the
// 3.1.1 form every client can read, then the close; (5.0) [MQTT-3.1.2-2] allows this answer.
#[tokio::test]
async fn unsupported_protocol_level_gets_return_code_1() {
    let broker = start_broker().await;
    for (name, bytes) in [
        ("MQIsdp 3", mqtt31_connect()),
        ("MQTT 3", connect_with_level(3)),
        ("MQTT 6", connect_with_level(6)),
    ] {
        // Read as 3.1.1: a v5-form CONNACK would not decode as one.
        let mut client = RawClient::open(broker.addr, ProtocolVersion::V311).await;
        client.send_bytes(&bytes).await;
        let connack = client.expect_connack().await;
        assert_eq!(
            connack.reason,
            ReasonCode::UnsupportedProtocolVersion,
            "protocol {name}"
        );
        assert!(!connack.session_present, "protocol {name}");
        expect_silent_close(&mut client).await;
    }
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

// Connect Flags a server must refuse by closing without CONNACK [MQTT-3.1.4-1]:
// reserved bit 0 set [MQTT-3.1.2-3]; Will QoS without the Will Flag [MQTT-3.1.2-13] (3.1.1)
// [MQTT-3.1.2-11] (5.0); Will Retain without the Will Flag [MQTT-3.1.2-15] (3.1.1)
// [MQTT-3.1.2-13] (5.0); Will QoS 3 [MQTT-3.1.2-14] (3.1.1) [MQTT-3.1.2-12] (5.0).
#[tokio::test]
async fn invalid_connect_flags_are_closed_without_connack() {
    let broker = start_broker().await;
    for version in BOTH {
        let plain = connect_packet(version, &client_id("flags", version));
        let willing = with_will(plain.clone(), will("flags/will", "gone"));
        for (name, connect, set_bits) in [
            ("reserved bit 0", &plain, 0x01),
            ("Will QoS 1 without Will Flag", &plain, 0x08),
            ("Will Retain without Will Flag", &plain, 0x20),
            ("Will QoS 3", &willing, 0x18),
        ] {
            let mut bytes = encoded(&Packet::Connect(Box::new(connect.clone())), version);
            bytes[CONNECT_FLAGS] |= set_bits;
            let mut client = RawClient::open(broker.addr, version).await;
            client.send_bytes(&bytes).await;
            let seen = client.expect_closed().await;
            assert!(
                seen.is_empty(),
                "{version:?} {name}: expected a silent close, got {seen:?}"
            );
        }
    }
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

// (5.0) A Will Topic must be a valid Topic Name, without wildcards [MQTT-4.7.0-1]: CONNACK
// 0x90 Topic Name invalid, then the close [MQTT-3.2.2-7].
#[tokio::test]
async fn v5_will_topic_with_wildcard_is_refused() {
    let broker = start_broker().await;
    for topic in ["will/+", "will/#"] {
        let connect = with_will(
            connect_packet(ProtocolVersion::V5, "wild-will"),
            will(topic, "never"),
        );
        expect_connect_refused(broker.addr, connect, ReasonCode::TopicNameInvalid).await;
    }
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

// [MQTT-3.1.3-8] (3.1.1) An empty client identifier with Clean Session 0 is refused with
// return code 0x02, Session Present 0 [MQTT-3.2.2-4], then the close [MQTT-3.2.2-5].
#[tokio::test]
async fn v311_empty_client_id_without_clean_session_is_refused() {
    let broker = start_broker().await;
    let connect = resume_connect(connect_packet(ProtocolVersion::V311, ""));
    expect_connect_refused(broker.addr, connect, ReasonCode::ClientIdentifierNotValid).await;
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

// [MQTT-3.1.3-6] (3.1.1) An empty client identifier with Clean Session 1 is accepted and
// the connection works.
#[tokio::test]
async fn v311_empty_client_id_with_clean_session_is_accepted() {
    let broker = start_broker().await;
    let (mut client, connack) =
        connect_ok(broker.addr, connect_packet(ProtocolVersion::V311, "")).await;
    assert!(
        !connack.session_present,
        "[MQTT-3.2.2-1] Clean Session 1 gives Session Present 0"
    );
    subscribe_ok(&mut client, 1, "anonymous/id", QoS::AtLeastOnce).await;
    client.expect_nothing_pending().await;
}

// [MQTT-3.2.2-16] [MQTT-3.1.3-6] (5.0) An empty client identifier gets an Assigned Client
// Identifier, unique among sessions; [MQTT-3.1.3-7] the CONNECT is processed as if the client
// had sent it, so the session can be resumed under that identifier.
#[tokio::test]
async fn v5_empty_client_id_gets_an_assigned_identifier() {
    let broker = start_broker().await;
    let persistent = resume_connect(with_expiry(connect_packet(ProtocolVersion::V5, ""), 60));
    let (mut first, first_ack) = connect_ok(broker.addr, persistent).await;
    let (_second, second_ack) =
        connect_ok(broker.addr, connect_packet(ProtocolVersion::V5, "")).await;
    let assigned = first_ack
        .properties
        .assigned_client_identifier
        .expect("CONNACK carries an Assigned Client Identifier");
    let other = second_ack
        .properties
        .assigned_client_identifier
        .expect("CONNACK carries an Assigned Client Identifier");
    assert!(!assigned.is_empty());
    assert_ne!(assigned, other, "assigned identifiers are unique");

    subscribe_ok(&mut first, 1, "assigned/topic", QoS::AtLeastOnce).await;
    disconnect(&mut first, ReasonCode::Success).await;
    let resume = resume_connect(with_expiry(
        connect_packet(ProtocolVersion::V5, &assigned),
        60,
    ));
    let (_resumed, connack) = connect_ok(broker.addr, resume).await;
    assert!(
        connack.session_present,
        "the session created under the assigned identifier resumes"
    );
    assert_eq!(
        connack.properties.assigned_client_identifier, None,
        "nothing assigned for a real identifier"
    );
}

// [MQTT-3.1.4-2] On a listener that asks for passwords (the default once a password file is
// set) a CONNECT without a user name is refused: 3.1.1 return code 0x05, v5 0x87 Not
// authorized; an unknown user, a wrong or a missing password get 0x04 / 0x86 Bad user name or
// password; each with Session Present 0, then the close [MQTT-3.2.2-4] [MQTT-3.2.2-5] (3.1.1)
// [MQTT-3.2.2-6] [MQTT-3.2.2-7] (5.0). The right password is accepted, on a second try from
// the same client identifier too.
#[tokio::test]
async fn a_password_listener_lets_in_only_the_right_password() {
    let files = tempfile::tempdir().expect("a directory for the password file");
    let passwords = write_password_file(files.path(), "passwd", &[("sensor", "s3cret")]);
    let broker = start_broker_with(|config| config.password_file = Some(passwords)).await;
    for version in BOTH {
        let id = client_id("password", version);
        let login = |username: Option<&str>, password: Option<&str>| {
            let mut connect = connect_packet(version, &id);
            connect.username = username.map(String::from);
            connect.password = password.map(|password| password.as_bytes().to_vec().into());
            connect
        };
        expect_connect_refused(broker.addr, login(None, None), ReasonCode::NotAuthorized).await;
        for (username, password) in [
            (Some("sensor"), Some("wrong")),
            (Some("sensor"), None),
            (Some("stranger"), Some("s3cret")),
        ] {
            let refused = login(username, password);
            expect_connect_refused(broker.addr, refused, ReasonCode::BadUserNameOrPassword).await;
        }
        let (mut client, _) = connect_ok(broker.addr, login(Some("sensor"), Some("s3cret"))).await;
        client.expect_nothing_pending().await;
        drop(client);
        let (mut again, _) = connect_ok(broker.addr, login(Some("sensor"), Some("s3cret"))).await;
        again.expect_nothing_pending().await;
    }
}

// [MQTT-4.12.0-1] An Authentication Method the server does not support is refused with
// CONNACK 0x8C Bad authentication method, then the close.
#[tokio::test]
async fn unsupported_authentication_method_is_refused() {
    let broker = start_broker().await;
    let mut connect = connect_packet(ProtocolVersion::V5, "scram");
    connect.properties.authentication_method = Some("SCRAM-SHA-1".to_string());
    expect_connect_refused(broker.addr, connect, ReasonCode::BadAuthenticationMethod).await;
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

// [MQTT-3.2.2-19] A refusing CONNACK leaves out its Reason String when the string would take
// it past the client's Maximum Packet Size [MQTT-3.1.2-24]; within the limit it is there.
#[tokio::test]
async fn a_refusal_leaves_out_a_reason_string_past_the_clients_maximum_packet_size() {
    let broker = start_broker().await;
    let refused = |limit: Option<u32>| {
        let mut connect = connect_packet(ProtocolVersion::V5, "refused-small");
        connect.properties.authentication_method = Some("SCRAM-SHA-1".to_string());
        connect.properties.maximum_packet_size = limit;
        connect
    };
    let mut roomy = RawClient::open(broker.addr, ProtocolVersion::V5).await;
    roomy.send(&Packet::Connect(Box::new(refused(None)))).await;
    let explained = roomy.expect_connack().await;
    assert_eq!(explained.reason, ReasonCode::BadAuthenticationMethod);
    assert!(
        explained.properties.reason_string.is_some(),
        "without a limit the refusal says why"
    );
    let limit = 20;
    assert!(encoded_len(&Packet::ConnAck(explained), ProtocolVersion::V5) > limit as usize);

    let mut small = RawClient::open(broker.addr, ProtocolVersion::V5).await;
    small
        .send(&Packet::Connect(Box::new(refused(Some(limit)))))
        .await;
    let terse = small.expect_connack().await;
    assert_eq!(terse.reason, ReasonCode::BadAuthenticationMethod);
    assert_eq!(terse.properties.reason_string, None);
    assert!(encoded_len(&Packet::ConnAck(terse), ProtocolVersion::V5) <= limit as usize);
    expect_silent_close(&mut small).await;
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

// [MQTT-3.1.2-24] A CONNACK the client could not receive (its Maximum Packet Size below the
// CONNACK's size, which has nothing optional to leave out) is not sent: the connection is
// closed, and the session under that client identifier is left as it was, even by a
// Clean Start that would have discarded it.
#[tokio::test]
async fn a_connack_past_the_clients_maximum_packet_size_is_not_sent() {
    let broker = start_broker().await;
    let id = "connack-too-big";
    let persistent = resume_connect(with_expiry(connect_packet(ProtocolVersion::V5, id), 60));
    let (mut first, connack) = connect_ok(broker.addr, persistent.clone()).await;
    subscribe_ok(&mut first, 1, "too-big/topic", QoS::AtLeastOnce).await;
    disconnect(&mut first, ReasonCode::Success).await;
    let limit = encoded_len(&Packet::ConnAck(connack), ProtocolVersion::V5) - 1;

    let mut clean_start = connect_packet(ProtocolVersion::V5, id);
    clean_start.properties.maximum_packet_size = Some(limit as u32);
    let mut assigned = connect_packet(ProtocolVersion::V5, "");
    assigned.properties.maximum_packet_size = Some(limit as u32);
    for connect in [clean_start, assigned] {
        let mut client = RawClient::open(broker.addr, ProtocolVersion::V5).await;
        client.send(&Packet::Connect(Box::new(connect))).await;
        expect_silent_close(&mut client).await;
    }

    let (_resumed, connack) = connect_ok(broker.addr, persistent).await;
    assert!(
        connack.session_present,
        "the refused Clean Start left the session in place"
    );
}

// [MQTT-4.12.0-7] A client that sent no Authentication Method must not send AUTH: v5 gets
// DISCONNECT 0x82 Protocol Error; in 3.1.1 packet type 15 is reserved (malformed), closed.
#[tokio::test]
async fn auth_without_authentication_method_is_a_protocol_error() {
    let broker = start_broker().await;
    let mut v5 = RawClient::connect(broker.addr, ProtocolVersion::V5, "auth-v5").await;
    v5.send(&Packet::Auth(Auth {
        reason: ReasonCode::ReAuthenticate,
        properties: Properties::default(),
    }))
    .await;
    expect_server_close(&mut v5, ReasonCode::ProtocolError).await;

    let mut v311 = RawClient::connect(broker.addr, ProtocolVersion::V311, "auth-v311").await;
    v311.send_bytes(&[0xF0, 0x00]).await;
    expect_silent_close(&mut v311).await;
    assert_broker_serves(broker.addr, ProtocolVersion::V5).await;
}

// MQTT 5.0 §3.2.2.3.3, §3.2.2.3.6, §3.2.2.3.8: CONNACK announces the configured Receive
// Maximum, Maximum Packet Size and Topic Alias Maximum (absent when aliases are off).
#[tokio::test]
async fn v5_connack_announces_configured_limits() {
    let broker = start_broker_with(|config| {
        config.limits.max_inflight = 7;
        config.limits.max_packet_size = 4096;
        config.limits.topic_alias_maximum = 3;
    })
    .await;
    let (_client, connack) =
        connect_ok(broker.addr, connect_packet(ProtocolVersion::V5, "limits")).await;
    assert_eq!(connack.properties.receive_maximum, Some(7));
    assert_eq!(connack.properties.maximum_packet_size, Some(4096));
    assert_eq!(connack.properties.topic_alias_maximum, Some(3));
    assert_eq!(
        connack.properties.server_keep_alive, None,
        "keep-alive granted as asked"
    );
    assert_eq!(
        connack.properties.session_expiry_interval, None,
        "session expiry granted as asked"
    );

    let no_aliases = start_broker_with(|config| config.limits.topic_alias_maximum = 0).await;
    let (_client, connack) = connect_ok(
        no_aliases.addr,
        connect_packet(ProtocolVersion::V5, "limits"),
    )
    .await;
    assert_eq!(
        connack.properties.topic_alias_maximum, None,
        "no aliases: Topic Alias Maximum absent"
    );
}

// With max_connections clients connected, another CONNECT is refused (v5 0x89 Server busy,
// 3.1.1 0x03 Server unavailable) and closed; once a client leaves, a new one is accepted.
#[tokio::test]
async fn connection_limit_refuses_then_frees_a_slot() {
    let broker = start_broker_with(|config| config.limits.max_connections = 1).await;
    let mut first = RawClient::connect(broker.addr, ProtocolVersion::V5, "first").await;
    for (version, reason) in [
        (ProtocolVersion::V5, ReasonCode::ServerBusy),
        (ProtocolVersion::V311, ReasonCode::ServerUnavailable),
    ] {
        let extra = connect_packet(version, &client_id("extra", version));
        expect_connect_refused(broker.addr, extra, reason).await;
    }
    first.expect_nothing_pending().await;
    disconnect(&mut first, ReasonCode::Success).await;
    let mut next = RawClient::connect(broker.addr, ProtocolVersion::V311, "next").await;
    next.expect_nothing_pending().await;
}

// A reload changes the limits of connections made after it: with max_connections lowered to
// the one client connected, the next CONNECT is refused (0x89); once it leaves, a new client
// is told the new Receive Maximum, while the one connected before had been told the old.
#[tokio::test]
async fn a_reload_applies_new_limits_to_connections_made_after_it() {
    let mut broker = start_broker_with(|config| {
        config.limits.max_connections = 2;
        config.limits.max_inflight = 20;
    })
    .await;
    let (mut first, connack) =
        RawClient::connect_with(broker.addr, connect_packet(ProtocolVersion::V5, "first")).await;
    assert_eq!(connack.properties.receive_maximum, Some(20));

    let mut config = broker.config.clone();
    config.limits.max_connections = 1;
    config.limits.max_inflight = 5;
    let reloaded = broker.handle.reload(config).await.expect("reload");
    assert_eq!(
        reloaded.applied,
        ["limits.max_connections", "limits.max_inflight"]
    );
    let extra = connect_packet(ProtocolVersion::V5, "extra");
    expect_connect_refused(broker.addr, extra, ReasonCode::ServerBusy).await;
    first.expect_nothing_pending().await;

    disconnect(&mut first, ReasonCode::Success).await;
    let (mut next, connack) =
        RawClient::connect_with(broker.addr, connect_packet(ProtocolVersion::V5, "next")).await;
    assert_eq!(connack.reason, ReasonCode::Success);
    assert_eq!(connack.properties.receive_maximum, Some(5));
    next.expect_nothing_pending().await;
}

/// MQTT 5 §3.1.4: a client need not wait for CONNACK before sending further packets. A
/// SUBSCRIBE and a QoS 1 PUBLISH written together with CONNECT (one read brings them all) are
/// served at once, SUBACK then PUBACK after the CONNACK, without the client sending anything
/// more (they waited for its next bytes, forever for a client that waits for its SUBACK): in
/// both versions, for a session that ends with its connection and for a stored one.
#[tokio::test]
async fn packets_written_with_connect_are_served_without_waiting_for_more() {
    let broker = start_broker().await;
    for version in BOTH {
        for persistent in [false, true] {
            let id = client_id(&format!("pipelined-{persistent}"), version);
            let connect = match persistent {
                true => persistent_connect(version, &id),
                false => connect_packet(version, &id),
            };
            let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
            let mut client = RawClient::open(broker.addr, version).await;
            client
                .send_all(&[
                    Packet::Connect(Box::new(connect)),
                    Packet::Subscribe(Subscribe {
                        packet_id: 1,
                        properties: Properties::default(),
                        filters: vec![("pipelined/in".to_string(), options)],
                    }),
                    Packet::Publish(publish_packet(
                        "pipelined/out",
                        QoS::AtLeastOnce,
                        Some(2),
                        b"at once",
                    )),
                ])
                .await;
            let context = format!("{version:?}, persistent {persistent}");
            assert_eq!(client.expect_connack().await.reason, ReasonCode::Success);
            match client.recv().await {
                Packet::SubAck(suback) => assert_eq!(suback.packet_id, 1, "{context}"),
                other => panic!("{context}: expected the SUBACK, got {other:?}"),
            }
            match client.recv().await {
                Packet::PubAck(puback) => assert_eq!(puback.packet_id, 2, "{context}"),
                other => panic!("{context}: expected the PUBACK, got {other:?}"),
            }
        }
    }
}

/// [MQTT-3.14.4-3]: a CONNECT with a Will, a QoS 0 PUBLISH and a normal DISCONNECT written
/// together: the PUBLISH is delivered and the Will is discarded (the PUBLISH was lost and the
/// Will published once the client closed its socket).
#[tokio::test]
async fn a_disconnect_written_with_connect_discards_the_will() {
    let broker = start_broker().await;
    let mut watcher = subscriber(
        broker.addr,
        ProtocolVersion::V5,
        "pipelined-watcher",
        "pipelined/#",
        QoS::AtLeastOnce,
    )
    .await;
    for version in BOTH {
        let id = client_id("pipelined-will", version);
        let connect = with_will(connect_packet(version, &id), will("pipelined/will", "gone"));
        let mut client = RawClient::open(broker.addr, version).await;
        client
            .send_all(&[
                Packet::Connect(Box::new(connect)),
                Packet::Publish(publish_packet(
                    "pipelined/data",
                    QoS::AtMostOnce,
                    None,
                    b"data",
                )),
                disconnect_packet(ReasonCode::Success),
            ])
            .await;
        assert_eq!(client.expect_connack().await.reason, ReasonCode::Success);
        client.expect_closed().await;
        let publish = watcher.expect_publish().await;
        assert_eq!(
            (publish.topic.as_str(), text(&publish).as_str()),
            ("pipelined/data", "data"),
            "{version:?}"
        );
        watcher.expect_nothing_pending().await;
    }
}
