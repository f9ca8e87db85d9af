//! Will Messages: when they are published (unclean close, protocol violation, DISCONNECT 0x04,
//! session end) and when not (normal DISCONNECT, session resumed within the Will Delay
//! Interval), with their QoS, Retain flag and v5 properties.

use bytes::Bytes;
use cairn::codec::{Packet, Properties, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

use crate::common::clients::{
    client_id, connect_expecting_session, connect_ok, delayed, expect_server_close,
    persistent_connect, subscribe_ok, will, with_expiry, with_will, BOTH, LONG_EXPIRY,
};
use crate::common::{connect_packet, start_broker, RawClient};
use crate::support::{disconnect, expect_message, expect_only_marker, observer, resume_connect};

// [MQTT-3.1.2-8] The Will is published at its QoS when the connection closes without
// DISCONNECT (here the socket is dropped), as a non-retained message [MQTT-3.1.2-16] (3.1.1)
// [MQTT-3.1.2-14] (5.0): a later subscriber gets nothing retained.
#[tokio::test]
async fn will_is_published_when_the_connection_drops() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "dropped/#").await;
    for version in BOTH {
        let topic = format!("dropped/{}", version.level());
        let connect = with_will(
            connect_packet(version, &client_id("dropper", version)),
            will(&topic, "gone"),
        );
        let (client, _) = connect_ok(broker.addr, connect).await;
        drop(client);
        let published = expect_message(&mut watcher, &topic, "gone").await;
        assert_eq!(published.qos, QoS::AtLeastOnce, "Will QoS");

        let mut late = RawClient::connect(broker.addr, version, &client_id("late", version)).await;
        subscribe_ok(&mut late, 1, &topic, QoS::AtLeastOnce).await;
        subscribe_ok(&mut late, 1, "late/marker", QoS::AtLeastOnce).await;
        expect_only_marker(&mut late, "late/marker").await;
    }
}

// [MQTT-3.1.2-10] (3.1.1, 5.0) [MQTT-3.14.4-3] (5.0) After a normal DISCONNECT the Will is
// discarded, not published: the watcher's own marker is the first message it receives.
#[tokio::test]
async fn will_is_discarded_after_a_normal_disconnect() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "polite/#").await;
    for version in BOTH {
        let topic = format!("polite/{}", version.level());
        let connect = with_will(
            connect_packet(version, &client_id("polite", version)),
            will(&topic, "gone"),
        );
        let (mut client, _) = connect_ok(broker.addr, connect).await;
        disconnect(&mut client, ReasonCode::Success).await;
    }
    expect_only_marker(&mut watcher, "polite/marker").await;
}

// (5.0) MQTT 5.0 §3.14.2.1: DISCONNECT 0x04 Disconnect with Will Message closes normally but
// publishes the Will [MQTT-3.1.2-8].
#[tokio::test]
async fn v5_disconnect_with_will_message_publishes_the_will() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "asked/#").await;
    let connect = with_will(
        connect_packet(ProtocolVersion::V5, "asker"),
        will("asked/will", "please"),
    );
    let (mut client, _) = connect_ok(broker.addr, connect).await;
    disconnect(&mut client, ReasonCode::DisconnectWithWillMessage).await;
    expect_message(&mut watcher, "asked/will", "please").await;
}

// [MQTT-3.1.2-8] [MQTT-3.1.2-10] [MQTT-3.14.4-3] Only DISCONNECT 0x00 discards the Will: a
// client that disconnects with an error reason (here 0x80, 0x83 and 0x93) ended abnormally,
// and its Will is published.
#[tokio::test]
async fn v5_disconnect_with_an_error_reason_publishes_the_will() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "failing/#").await;
    for reason in [
        ReasonCode::UnspecifiedError,
        ReasonCode::ImplementationSpecificError,
        ReasonCode::ReceiveMaximumExceeded,
    ] {
        let topic = format!("failing/{}", reason.to_u8());
        let connect = with_will(
            connect_packet(ProtocolVersion::V5, &format!("failing-{}", reason.to_u8())),
            will(&topic, "failed"),
        );
        let (mut client, _) = connect_ok(broker.addr, connect).await;
        disconnect(&mut client, reason).await;
        expect_message(&mut watcher, &topic, "failed").await;
    }
}

// [MQTT-3.1.2-8] A connection the server closes for a protocol violation (here a second
// CONNECT [MQTT-3.1.0-2]) did not end with DISCONNECT, so its Will is published.
#[tokio::test]
async fn will_is_published_after_a_protocol_violation() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "violator/#").await;
    for version in BOTH {
        let topic = format!("violator/{}", version.level());
        let connect = with_will(
            connect_packet(version, &client_id("violator", version)),
            will(&topic, "bad"),
        );
        let (mut client, _) = connect_ok(broker.addr, connect.clone()).await;
        client.send(&Packet::Connect(Box::new(connect))).await;
        expect_server_close(&mut client, ReasonCode::ProtocolError).await;
        expect_message(&mut watcher, &topic, "bad").await;
    }
}

// [MQTT-3.1.2-17] (3.1.1) [MQTT-3.1.2-15] (5.0) A Will with Will Retain 1 is published as a
// retained message: existing subscribers get it with RETAIN 0 [MQTT-3.3.1-9] (3.1.1)
// [MQTT-3.3.1-12] (5.0), a later subscriber gets it with RETAIN 1 [MQTT-3.3.1-8]; QoS 2 is kept.
#[tokio::test]
async fn retained_will_reaches_later_subscribers() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "retained-will/#").await;
    for version in BOTH {
        let topic = format!("retained-will/{}", version.level());
        let mut last_words = will(&topic, "kept");
        last_words.qos = QoS::ExactlyOnce;
        last_words.retain = true;
        let connect = with_will(
            connect_packet(version, &client_id("retainer", version)),
            last_words,
        );
        let (client, _) = connect_ok(broker.addr, connect).await;
        drop(client);

        let live = expect_message(&mut watcher, &topic, "kept").await;
        assert_eq!(live.qos, QoS::ExactlyOnce, "Will QoS 2 kept");
        assert!(!live.retain, "an established subscription gets RETAIN 0");

        let mut late = RawClient::connect(broker.addr, version, &client_id("late", version)).await;
        subscribe_ok(&mut late, 1, &topic, QoS::ExactlyOnce).await;
        let retained = expect_message(&mut late, &topic, "kept").await;
        assert!(
            retained.retain,
            "a new subscription gets the retained Will with RETAIN 1"
        );
        assert_eq!(retained.qos, QoS::ExactlyOnce);
    }
}

// (5.0) Will Properties are forwarded with the Will Message: Payload Format Indicator,
// Content Type, Response Topic, Correlation Data, User Properties in order [MQTT-3.1.3-10],
// and the Message Expiry Interval (counting down); the Will Delay Interval is not.
#[tokio::test]
async fn v5_will_properties_are_forwarded() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "described/#").await;
    let mut described = delayed(will("described/will", "{\"state\":\"offline\"}"), 0);
    let user_properties = vec![
        ("site".to_string(), "north".to_string()),
        ("rack".to_string(), "7".to_string()),
        ("site".to_string(), "backup".to_string()),
    ];
    described.properties.payload_format_indicator = Some(1);
    described.properties.content_type = Some("application/json".to_string());
    described.properties.response_topic = Some("described/reply".to_string());
    described.properties.correlation_data = Some(Bytes::from_static(b"\x01\x02"));
    described.properties.message_expiry_interval = Some(60);
    described.properties.user_properties = user_properties.clone();
    let (client, _) = connect_ok(
        broker.addr,
        with_will(connect_packet(ProtocolVersion::V5, "describer"), described),
    )
    .await;
    drop(client);

    let published = expect_message(&mut watcher, "described/will", "{\"state\":\"offline\"}").await;
    let properties = &published.properties;
    assert_eq!(properties.payload_format_indicator, Some(1));
    assert_eq!(properties.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        properties.response_topic.as_deref(),
        Some("described/reply")
    );
    assert_eq!(
        properties.correlation_data.as_deref(),
        Some(&b"\x01\x02"[..])
    );
    assert_eq!(
        properties.user_properties, user_properties,
        "User Properties in their order"
    );
    let expiry = properties
        .message_expiry_interval
        .expect("Message Expiry Interval forwarded");
    assert!(
        (1..=60).contains(&expiry),
        "remaining expiry {expiry} within the 60 s set"
    );
    assert_eq!(properties.will_delay_interval, None);
}

// (5.0) [MQTT-3.1.2-8] MQTT 5.0 §3.1.3.2.2: the Will waits for its Will Delay Interval (2 s)
// after the close: a marker published after the close arrives first, the Will after it.
#[tokio::test]
async fn v5_will_waits_for_its_delay() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "patient/#").await;
    let connect = with_will(
        persistent_connect(ProtocolVersion::V5, "patient"),
        delayed(will("patient/will", "late"), 2),
    );
    let (mut client, _) = connect_ok(broker.addr, connect).await;
    disconnect(&mut client, ReasonCode::DisconnectWithWillMessage).await;
    expect_only_marker(&mut watcher, "patient/marker").await;
    expect_message(&mut watcher, "patient/will", "late").await;
}

// (5.0) [MQTT-3.1.3-9] A new connection to the session within the Will Delay Interval
// cancels the Will, and the delay timer must not publish the new connection's Will either.
// Barrier: a second client whose Will is due 1 s after the first one's would have been; its
// Will must be the first to arrive.
#[tokio::test]
async fn v5_will_is_cancelled_when_the_session_resumes_in_time() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "resumed/#").await;
    let resumer = persistent_connect(ProtocolVersion::V5, "resumer");
    let first = with_will(resumer.clone(), delayed(will("resumed/cancelled", "no"), 2));
    let (mut client, _) = connect_ok(broker.addr, first).await;
    disconnect(&mut client, ReasonCode::DisconnectWithWillMessage).await;
    let second = with_will(resumer, delayed(will("resumed/still-connected", "no"), 2));
    let _resumed = connect_expecting_session(broker.addr, second, true).await;

    let control = with_will(
        persistent_connect(ProtocolVersion::V5, "control"),
        delayed(will("resumed/control", "yes"), 3),
    );
    let (mut control, _) = connect_ok(broker.addr, control).await;
    disconnect(&mut control, ReasonCode::DisconnectWithWillMessage).await;
    expect_message(&mut watcher, "resumed/control", "yes").await;
}

// (5.0) [MQTT-3.1.2-8] MQTT 5.0 §3.1.3.2.2: the Will goes out when the session ends if that
// comes before the Will Delay Interval (60 s, longer than the test's wait): at once with
// Session Expiry Interval 0, after 1 s with 1 (the session is then gone).
#[tokio::test]
async fn v5_will_is_published_when_the_session_ends_first() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "ending/#").await;
    for expiry in [0, 1] {
        let topic = format!("ending/{expiry}");
        let id = format!("ending-{expiry}");
        let connect = resume_connect(with_expiry(
            connect_packet(ProtocolVersion::V5, &id),
            expiry,
        ));
        let (client, _) = connect_ok(
            broker.addr,
            with_will(connect.clone(), delayed(will(&topic, "ended"), 60)),
        )
        .await;
        drop(client);
        expect_message(&mut watcher, &topic, "ended").await;
        let mut probe = connect_expecting_session(broker.addr, connect, false).await;
        disconnect(&mut probe, ReasonCode::Success).await;
    }
}

// (5.0) [MQTT-3.1.2-4] A reconnect with Clean Start 1 ends the old session, so a Will still
// waiting for its delay is published at once [MQTT-3.1.2-8].
#[tokio::test]
async fn v5_clean_start_sends_a_pending_will() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "restarted/#").await;
    let persistent = with_expiry(
        connect_packet(ProtocolVersion::V5, "restarter"),
        LONG_EXPIRY,
    );
    let connect = with_will(
        persistent.clone(),
        delayed(will("restarted/will", "pending"), 60),
    );
    let (client, _) = connect_ok(broker.addr, connect).await;
    drop(client);
    let _fresh = connect_expecting_session(broker.addr, persistent, false).await;
    expect_message(&mut watcher, "restarted/will", "pending").await;
}

// (5.0) [MQTT-3.8.3-3] A Will is published as if its client had published it: a No Local
// subscription of the same client id does not get it, after the connection drops or when a
// new connection takes the session over, while other subscribers do.
#[tokio::test]
async fn v5_a_no_local_subscription_does_not_get_its_own_clients_will() {
    let broker = start_broker().await;
    let mut watcher = observer(broker.addr, "watcher", "own/#").await;
    let no_local = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    };
    for (id, ending) in [("own-dropper", "drop"), ("own-taken", "takeover")] {
        let topic = format!("own/{id}");
        let persistent = persistent_connect(ProtocolVersion::V5, id);
        let connect = with_will(persistent.clone(), will(&topic, "mine"));
        let (mut client, _) = connect_ok(broker.addr, connect).await;
        client
            .subscribe_with(1, "own/#", no_local, Properties::default())
            .await;
        let mut resumed = match ending {
            "drop" => {
                drop(client);
                expect_message(&mut watcher, &topic, "mine").await;
                connect_expecting_session(broker.addr, persistent, true).await
            }
            _ => {
                let resumed = connect_expecting_session(broker.addr, persistent, true).await;
                expect_message(&mut watcher, &topic, "mine").await;
                resumed
            }
        };
        resumed.expect_nothing_pending().await;
        disconnect(&mut resumed, ReasonCode::Success).await;
    }
}
