//! Mosquitto's command-line clients against the broker over plain TCP, MQTT 3.1.1 and 5.0:
//! publish/subscribe at every QoS, retained messages, a persistent session, and a refused
//! anonymous client.

use cairn::codec::{ProtocolVersion, QoS};

use crate::common::clients::subscribe_ok;
use crate::common::{start_broker, RawClient};
use crate::mosquitto::{self, Args};

/// `mosquitto_pub` → broker → `mosquitto_sub` and a raw subscriber, both subscribed at `qos`
/// in `version`: each receives the message at that QoS with its topic and payload
/// [MQTT-3.3.5-1] [MQTT-4.3.2-1] [MQTT-4.3.3-1], and both Mosquitto clients complete their
/// flows (exit 0).
async fn publish_subscribe(version: ProtocolVersion, qos: QoS, test: &str) {
    if !mosquitto::available(test) {
        return;
    }
    let broker = start_broker().await;
    let topic = format!("interop/{test}");
    let mut raw = RawClient::connect(broker.addr, version, &format!("{test}-raw")).await;
    subscribe_ok(&mut raw, 1, &topic, qos).await;
    let subscriber = mosquitto::subscriber(
        Args::new(broker.addr, version, &format!("{test}-sub")),
        &topic,
        qos,
        1,
    )
    .await;

    let published = mosquitto::publish(
        Args::new(broker.addr, version, &format!("{test}-pub")),
        &topic,
        qos,
        "hello cairn",
    )
    .await;
    published.assert_success("mosquitto_pub");

    let received = raw.expect_publish().await;
    assert_eq!(
        (received.topic.as_str(), received.qos, &received.payload[..]),
        (topic.as_str(), qos, &b"hello cairn"[..])
    );
    assert_eq!(
        received.packet_id.is_some(),
        qos != QoS::AtMostOnce,
        "packet id only for QoS > 0 [MQTT-2.2.1-2]"
    );
    let finished = subscriber.finish().await;
    finished.assert_success("mosquitto_sub");
    assert_eq!(
        mosquitto::messages(&finished),
        vec![format!("{} 0 {topic} hello cairn", qos as u8)]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn mosquitto_v311_qos0_publish_subscribe() {
    publish_subscribe(
        ProtocolVersion::V311,
        QoS::AtMostOnce,
        "mosquitto_v311_qos0",
    )
    .await;
}

#[tokio::test]
async fn mosquitto_v311_qos1_publish_subscribe() {
    publish_subscribe(
        ProtocolVersion::V311,
        QoS::AtLeastOnce,
        "mosquitto_v311_qos1",
    )
    .await;
}

#[tokio::test]
async fn mosquitto_v311_qos2_publish_subscribe() {
    publish_subscribe(
        ProtocolVersion::V311,
        QoS::ExactlyOnce,
        "mosquitto_v311_qos2",
    )
    .await;
}

#[tokio::test]
async fn mosquitto_v5_qos0_publish_subscribe() {
    publish_subscribe(ProtocolVersion::V5, QoS::AtMostOnce, "mosquitto_v5_qos0").await;
}

#[tokio::test]
async fn mosquitto_v5_qos1_publish_subscribe() {
    publish_subscribe(ProtocolVersion::V5, QoS::AtLeastOnce, "mosquitto_v5_qos1").await;
}

#[tokio::test]
async fn mosquitto_v5_qos2_publish_subscribe() {
    publish_subscribe(ProtocolVersion::V5, QoS::ExactlyOnce, "mosquitto_v5_qos2").await;
}

/// A 5.0 publisher reaches a 3.1.1 subscriber and the other way round.
#[tokio::test]
async fn mosquitto_across_protocol_versions() {
    let test = "mosquitto_across_protocol_versions";
    if !mosquitto::available(test) {
        return;
    }
    let broker = start_broker().await;
    for (from, to) in [
        (ProtocolVersion::V5, ProtocolVersion::V311),
        (ProtocolVersion::V311, ProtocolVersion::V5),
    ] {
        let topic = format!("interop/cross/{from:?}");
        let subscriber = mosquitto::subscriber(
            Args::new(broker.addr, to, "cross-sub"),
            &topic,
            QoS::AtLeastOnce,
            1,
        )
        .await;
        mosquitto::publish(
            Args::new(broker.addr, from, "cross-pub"),
            &topic,
            QoS::AtLeastOnce,
            "across",
        )
        .await
        .assert_success("mosquitto_pub");
        let finished = subscriber.finish().await;
        finished.assert_success("mosquitto_sub");
        assert_eq!(
            mosquitto::messages(&finished),
            vec![format!("1 0 {topic} across")],
            "{from:?} → {to:?}"
        );
    }
    broker.shutdown().await;
}

/// `mosquitto_pub -r` stores a retained message that a later `mosquitto_sub` receives with
/// RETAIN 1 [MQTT-3.3.1-5] [MQTT-3.3.1-8]; in both versions.
#[tokio::test]
async fn mosquitto_retained_message_reaches_later_subscriber() {
    let test = "mosquitto_retained_message_reaches_later_subscriber";
    if !mosquitto::available(test) {
        return;
    }
    let broker = start_broker().await;
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let topic = format!("interop/retained/{version:?}");
        let publisher = Args::new(broker.addr, version, "retain-pub").with(&["-r"]);
        mosquitto::publish(publisher, &topic, QoS::AtLeastOnce, "kept")
            .await
            .assert_success("mosquitto_pub -r");
        let finished = mosquitto::spawn_subscriber(
            Args::new(broker.addr, version, "retain-sub"),
            &topic,
            QoS::AtLeastOnce,
            1,
        )
        .finish()
        .await;
        finished.assert_success("mosquitto_sub");
        assert_eq!(
            mosquitto::messages(&finished),
            vec![format!("1 1 {topic} kept")],
            "{version:?}"
        );
    }
    broker.shutdown().await;
}

/// `mosquitto_sub -c` (Clean Session 0 / Clean Start 0 with no expiry) subscribes and leaves
/// (`-E`); two QoS 1 messages published meanwhile are delivered when it comes back
/// [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.1.2-23]; in both versions.
#[tokio::test]
async fn mosquitto_persistent_session_receives_queued_messages() {
    let test = "mosquitto_persistent_session_receives_queued_messages";
    if !mosquitto::available(test) {
        return;
    }
    let broker = start_broker().await;
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let topic = format!("interop/offline/{version:?}");
        let session =
            || Args::new(broker.addr, version, &format!("offline-{version:?}")).with(&["-c"]);
        let first =
            mosquitto::spawn_subscriber(session().with(&["-E"]), &topic, QoS::AtLeastOnce, 2)
                .finish()
                .await;
        first.assert_success("mosquitto_sub -c -E");
        for payload in ["first", "second"] {
            mosquitto::publish(
                Args::new(broker.addr, version, "offline-pub"),
                &topic,
                QoS::AtLeastOnce,
                payload,
            )
            .await
            .assert_success("mosquitto_pub");
        }
        let back = mosquitto::spawn_subscriber(session(), &topic, QoS::AtLeastOnce, 2)
            .finish()
            .await;
        back.assert_success("mosquitto_sub -c");
        assert_eq!(
            mosquitto::messages(&back),
            vec![format!("1 0 {topic} first"), format!("1 0 {topic} second")],
            "{version:?}"
        );
    }
    broker.shutdown().await;
}
