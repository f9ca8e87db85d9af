//! Mosquitto as an upstream: both profiles start and answer an MQTT 5 CONNECT, the cloud-like
//! one announces a cloud's limits in its CONNACK, and a stop and start again is a cloud that
//! forgot the session.

use cairn::codec::{Connect, ProtocolVersion, QoS, ReasonCode};
use tokio::net::TcpStream;

use crate::common::upstream::{wait_until_refused, MosquittoProfile, MosquittoUpstream};
use crate::common::{connect_packet, publish_packet, RawClient};

/// A v5 CONNECT that asks for a session kept an hour (Clean Start 0).
fn persistent(client_id: &str) -> Connect {
    let mut connect = connect_packet(ProtocolVersion::V5, client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    connect
}

#[tokio::test]
async fn plain_mosquitto_accepts_mqtt_5_and_qos_2() {
    let test = "plain_mosquitto_accepts_mqtt_5_and_qos_2";
    let Some(upstream) = MosquittoUpstream::start(MosquittoProfile::Plain, test).await else {
        return;
    };
    let (mut client, connack) = RawClient::connect_with(
        upstream.addr(),
        connect_packet(ProtocolVersion::V5, "kit-plain"),
    )
    .await;
    assert_eq!(connack.reason, ReasonCode::Success);
    assert_eq!(
        (
            connack.properties.maximum_qos,
            connack.properties.retain_available
        ),
        (None, None),
        "a plain Mosquitto limits neither QoS nor retained messages"
    );
    let publish = publish_packet("kit/plain", QoS::ExactlyOnce, Some(1), b"qos 2");
    let rec = client.publish(publish).await.expect("a PUBREC");
    assert_eq!(rec.reason, ReasonCode::Success);
}

#[tokio::test]
async fn cloud_like_mosquitto_announces_a_clouds_limits() {
    let test = "cloud_like_mosquitto_announces_a_clouds_limits";
    let Some(upstream) = MosquittoUpstream::start(MosquittoProfile::CloudLike, test).await else {
        return;
    };
    let (_client, connack) = RawClient::connect_with(
        upstream.addr(),
        connect_packet(ProtocolVersion::V5, "kit-cloud"),
    )
    .await;
    assert_eq!(connack.reason, ReasonCode::Success);
    let announced = &connack.properties;
    assert_eq!(announced.receive_maximum, Some(10), "Receive Maximum");
    assert_eq!(announced.maximum_qos, Some(1), "Maximum QoS");
    assert_eq!(announced.retain_available, Some(0), "Retain Available");
    assert_eq!(
        announced.maximum_packet_size,
        Some(131_072),
        "Maximum Packet Size"
    );
    assert_eq!(
        announced.topic_alias_maximum,
        Some(8),
        "Topic Alias Maximum"
    );
}

#[tokio::test]
async fn stop_and_start_again_forget_the_session() {
    let test = "stop_and_start_again_forget_the_session";
    let Some(mut upstream) = MosquittoUpstream::start(MosquittoProfile::CloudLike, test).await
    else {
        return;
    };
    let addr = upstream.addr();
    let (mut client, connack) = RawClient::connect_with(addr, persistent("kit-forget")).await;
    assert_eq!(connack.reason, ReasonCode::Success);
    let suback = client.subscribe(1, "kit/#", QoS::AtLeastOnce).await;
    assert_eq!(suback.reasons, vec![ReasonCode::GrantedQoS1]);
    client.go_offline().await;
    let (mut client, connack) = RawClient::connect_with(addr, persistent("kit-forget")).await;
    assert!(
        connack.session_present,
        "while it runs, Mosquitto keeps the session [MQTT-3.2.2-3]"
    );

    upstream.stop().await;
    client.expect_closed().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens during the outage"
    );

    upstream.start_again().await;
    assert_eq!(upstream.addr(), addr, "the same port");
    let (_client, connack) = RawClient::connect_with(addr, persistent("kit-forget")).await;
    assert_eq!(connack.reason, ReasonCode::Success);
    assert!(
        !connack.session_present,
        "without persistence, the session is gone after the restart [MQTT-3.2.2-3]"
    );

    drop(upstream);
    assert!(
        wait_until_refused(addr).await,
        "the dropped Mosquitto is gone"
    );
}
