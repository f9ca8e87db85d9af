//! Bridges changed by a reload (`ServerHandle::reload`, what SIGHUP calls): one added starts,
//! one changed reconnects with its new settings on the same queue (nothing queued is lost,
//! order kept), one unchanged is left connected, one removed ends with its session; and one
//! whose password file cannot be read refuses the whole reload.

use cairn::codec::{ProtocolVersion, QoS};
use cairn::config::Direction;

use crate::common::clients::{publish_qos1, resume, subscriber};
use crate::common::ordered::receive_in_publisher_order;
use crate::common::RawClient;
use crate::support::{
    bridge, expect_text, gateway, publish_in_groups, rule, upstream_down_with_subscriber,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

#[tokio::test]
async fn a_reload_adds_changes_keeps_and_removes_bridges() {
    let upstream_stopped =
        upstream_down_with_subscriber("cloud-sub", "site-8/#", QoS::AtLeastOnce).await;
    let upstream_addr = upstream_stopped.configured_addr();
    let mut gateway = gateway(Vec::new()).await;
    let session = "$bridge/cloud";

    // Added: its session takes messages at once, queued while the upstream is down.
    let mut config = gateway.config.clone();
    config.bridges = vec![bridge(
        "cloud",
        upstream_addr,
        vec![rule("sensors/#", Direction::Out, 1, "", "site-7/")],
    )];
    let reloaded = gateway.handle.reload(config.clone()).await.expect("reload");
    assert_eq!(reloaded.bridges.added, ["cloud"]);
    assert_eq!(reloaded.applied, ["bridges"]);
    let publishers: Vec<String> = (0..4).map(|p| format!("sensor-{p}")).collect();
    let per = 250;
    publish_in_groups(gateway.addr, &publishers[..2], per).await;

    // Changed (another remote prefix): restarted on the same queue, which keeps all it held.
    config.bridges[0].topics = vec![rule("sensors/#", Direction::Out, 1, "", "site-8/")];
    let reloaded = gateway.handle.reload(config.clone()).await.expect("reload");
    assert_eq!(reloaded.bridges.restarted, ["cloud"]);
    assert!(reloaded.bridges.added.is_empty() && reloaded.bridges.removed.is_empty());
    let queued = gateway.handle.broker().read(|state| {
        state
            .session(session)
            .map(|session| session.queue.len() + session.inflight.len())
    });
    assert_eq!(
        queued,
        Some(2 * per as usize),
        "the queue is kept by the bridge's name"
    );
    publish_in_groups(gateway.addr, &publishers[2..], per).await;

    // The upstream back: everything arrives under the new prefix, each publisher in order.
    let upstream = upstream_stopped.start().await;
    let mut cloud = resume(upstream.addr, V5, "cloud-sub").await;
    receive_in_publisher_order(&mut cloud, &publishers, per).await;

    // Unchanged while other keys change: left connected, not restarted.
    config.limits.max_connections += 1;
    let reloaded = gateway.handle.reload(config.clone()).await.expect("reload");
    assert!(reloaded.bridges.is_empty(), "{:?}", reloaded.bridges);
    assert_eq!(reloaded.applied, ["limits.max_connections"]);
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor-after").await;
    publish_qos1(&mut sensor, "sensors/after", 1, "still bridged").await;
    expect_text(&mut cloud, "site-8/sensors/after", "still bridged").await;

    // A password file that cannot be read: the reload is refused whole, nothing changes.
    let mut broken = config.clone();
    broken.bridges[0].password_file = Some("/nonexistent/cloud.pass".into());
    broken.limits.max_connections += 1;
    let error = gateway
        .handle
        .reload(broken)
        .await
        .expect_err("an unreadable password file refuses the reload");
    assert!(
        error.to_string().contains("/nonexistent/cloud.pass"),
        "{error}"
    );
    assert_eq!(
        gateway.handle.broker().config().limits.max_connections,
        config.limits.max_connections,
        "nothing of a refused reload applies"
    );
    publish_qos1(&mut sensor, "sensors/after", 2, "bridged on").await;
    expect_text(&mut cloud, "site-8/sensors/after", "bridged on").await;

    // Removed: its task ends and its session with it.
    config.bridges.clear();
    let reloaded = gateway.handle.reload(config).await.expect("reload");
    assert_eq!(reloaded.bridges.removed, ["cloud"]);
    let left = gateway
        .handle
        .broker()
        .read(|state| state.session(session).is_some());
    assert!(!left, "a removed bridge's session ends");
    let mut watcher =
        subscriber(gateway.addr, V5, "local-sub", "sensors/#", QoS::AtLeastOnce).await;
    publish_qos1(&mut sensor, "sensors/gone", 3, "local only").await;
    expect_text(&mut watcher, "sensors/gone", "local only").await;
    cloud.expect_nothing_pending().await;
    gateway.shutdown().await;
    upstream.shutdown().await;
}
