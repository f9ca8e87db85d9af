//! A bad uplink, through the fault-injecting proxy between the bridge and an upstream Cairn:
//! the link cut (RST) every second under steady load, and a black-holed link (no FIN, no
//! RST). Nothing acknowledged locally is lost and each publisher's order holds (a QoS 1
//! message may come twice after a cut, never out of turn).

use std::sync::Arc;
use std::time::Duration;

use cairn::codec::{Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};
use cairn::config::{BridgeConfig, Direction};

use crate::common::clients::subscriber;
use crate::common::ordered::receive_in_order_allowing_repeats;
use crate::common::proxy::FaultProxy;
use crate::common::{publish_packet, start_broker, RawClient, TestBroker};
use crate::support::{bridge, gateway, gateway_with, publish_in_groups, rule, wait_for_state};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Sends `count` QoS 1 messages `"{name}#{n}"` to `sensors/t` at about `per_second`, each
/// acknowledged before the next (the pace is load, not synchronisation).
async fn publish_paced(addr: std::net::SocketAddr, name: String, count: u32, per_second: u32) {
    let mut client = RawClient::connect(addr, V5, &name).await;
    let mut pace = tokio::time::interval(Duration::from_secs(1) / per_second);
    for n in 0..count {
        pace.tick().await;
        let packet_id = u16::try_from(n % 60_000 + 1).expect("fits");
        let payload = format!("{name}#{n}");
        let publish = publish_packet(
            "sensors/t",
            QoS::AtLeastOnce,
            Some(packet_id),
            payload.as_bytes(),
        );
        client.publish(publish).await.expect("PUBACK");
    }
    client
        .send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
        .await;
}

/// An upstream Cairn with a subscriber to `sensors/#`, a proxy in front of it, and a bridge
/// configuration carrying `sensors/#` out through the proxy.
async fn through_proxy() -> (TestBroker, RawClient, FaultProxy, BridgeConfig) {
    let upstream = start_broker().await;
    let cloud = subscriber(
        upstream.addr,
        V5,
        "cloud-sub",
        "sensors/#",
        QoS::AtLeastOnce,
    )
    .await;
    let proxy = FaultProxy::start(upstream.addr).await;
    let config = bridge(
        "cloud",
        proxy.addr(),
        vec![rule("sensors/#", Direction::Out, 1, "", "")],
    );
    (upstream, cloud, proxy, config)
}

/// The cut test: 500 msg/s for 30 s (twenty publishers at 25 each: each waits for its
/// PUBACK, which waits for a commit) while the proxy resets the uplink every second: all
/// 15,000 arrive upstream, in order.
#[tokio::test]
async fn a_link_cut_every_second_under_load_loses_nothing_and_keeps_order() {
    let (_upstream, mut cloud, proxy, mut config) = through_proxy().await;
    let proxy = Arc::new(proxy);
    config.reconnect_min = 1;
    config.reconnect_max = 1;
    let gateway = gateway(vec![config]).await;
    proxy.wait_connections(1).await;

    let publishers: Vec<String> = (0..20).map(|p| format!("sensor-{p}")).collect();
    let per = 750;
    let tasks: Vec<_> = publishers
        .iter()
        .map(|name| tokio::spawn(publish_paced(gateway.addr, name.clone(), per, 25)))
        .collect();
    let cutter = tokio::spawn({
        let proxy = proxy.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            for _ in 0..30 {
                every.tick().await;
                proxy.cut();
            }
        }
    });
    let repeats = receive_in_order_allowing_repeats(&mut cloud, &publishers, per).await;
    for task in tasks {
        task.await.expect("publisher finished");
    }
    cutter.await.expect("cutter finished");
    assert!(
        proxy.connections_accepted() > 5,
        "the link was cut and redialled"
    );
    eprintln!("{repeats} messages came twice after cuts");
}

/// A black-holed link (bytes stop, no FIN, no RST) is given up within 1.5 × Keep Alive and
/// the bridge dials again; what was queued or in flight arrives, in order.
#[tokio::test]
async fn a_black_holed_link_is_detected_and_left() {
    let (_upstream, mut cloud, proxy, mut config) = through_proxy().await;
    config.keep_alive = 5;
    let gateway = gateway_with(vec![config], |config| config.sys_interval = 1).await;
    // Past its CONNACK, with nothing in flight (a message sent to show the link up could
    // have its PUBACK swallowed by the black hole, and come again after the reconnect).
    wait_for_state(gateway.addr, "cloud", "connected to").await;
    proxy.black_hole();
    proxy.heal(); // new connections pass again; the open one stays dead
    let publishers = vec!["sensor".to_string()];
    publish_in_groups(gateway.addr, &publishers, 200).await;
    proxy.wait_connections(2).await;
    let repeats = receive_in_order_allowing_repeats(&mut cloud, &publishers, 200).await;
    assert_eq!(
        repeats, 0,
        "nothing reached the upstream through the black hole"
    );
}
