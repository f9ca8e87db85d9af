//! Topic matching as subscribers see it: `+` matches exactly one level, `#` matches its parent
//! and every descendant, and filters starting with a wildcard never match `$` topics.
//!
//! Each test publishes a list of topics (payload = topic) followed by a marker every filter
//! matches, so "not delivered" is proven by the marker arriving first.

use std::net::SocketAddr;

use cairn::codec::{ProtocolVersion, QoS, ReasonCode};

use crate::common::clients::{client_id, subscriber, text, BOTH};
use crate::common::{publish_packet, start_broker, start_broker_with, RawClient};
use crate::support::{publish_qos0, publishes_before_marker, texts};

/// Subscribes to `filter`, publishes each of `topics` and then `marker_topic`, and returns the
/// topics the subscriber received before the marker.
async fn delivered_topics(
    addr: SocketAddr,
    version: ProtocolVersion,
    name: &str,
    filter: &str,
    topics: &[&str],
    marker_topic: &str,
) -> Vec<String> {
    let mut sub = subscriber(
        addr,
        version,
        &client_id(&format!("{name}-sub"), version),
        filter,
        QoS::AtMostOnce,
    )
    .await;
    let mut publisher =
        RawClient::connect(addr, version, &client_id(&format!("{name}-pub"), version)).await;
    for topic in topics {
        publish_qos0(&mut publisher, topic, topic).await;
    }
    publish_qos0(&mut publisher, marker_topic, "marker").await;
    let before = publishes_before_marker(&mut sub, "marker").await;
    for publish in &before {
        assert_eq!(
            text(publish),
            publish.topic,
            "the topic name is the published one [MQTT-3.3.2-3]"
        );
    }
    texts(&before)
}

/// [MQTT-4.7.1-3] (section 4.7.1.3): `+` matches exactly one level, an empty one included.
#[tokio::test]
async fn single_level_wildcard_matches_exactly_one_level() {
    let broker = start_broker().await;
    for version in BOTH {
        let topics = [
            "sport/tennis/score",
            "sport/tennis/player/score",
            "sport/score",
            "sport//score",
            "sport/golf/score/",
            "other/tennis/score",
        ];
        let got = delivered_topics(
            broker.addr,
            version,
            "plus",
            "sport/+/score",
            &topics,
            "sport/marker/score",
        )
        .await;
        assert_eq!(got, ["sport/tennis/score", "sport//score"]);
    }
}

/// [MQTT-4.7.1-2] (section 4.7.1.2): `sport/tennis/#` matches `sport/tennis` itself and every
/// level below it, but not a sibling such as `sport/tennis2`.
#[tokio::test]
async fn multi_level_wildcard_matches_parent_and_descendants() {
    let broker = start_broker().await;
    for version in BOTH {
        let topics = [
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis2",
            "sport",
            "sport/tennis/",
        ];
        let got = delivered_topics(
            broker.addr,
            version,
            "hash",
            "sport/tennis/#",
            &topics,
            "sport/tennis/marker",
        )
        .await;
        assert_eq!(
            got,
            [
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/"
            ]
        );
    }
}

/// Section 4.7.1: `+/+` matches `/finance` (two levels, the first empty) while `+` does not.
#[tokio::test]
async fn leading_separator_makes_an_empty_first_level() {
    let broker = start_broker().await;
    for version in BOTH {
        let plus = delivered_topics(
            broker.addr,
            version,
            "lone-plus",
            "+",
            &["/finance", "finance"],
            "marker",
        )
        .await;
        assert_eq!(plus, ["finance"]);
        let two = delivered_topics(
            broker.addr,
            version,
            "plus-plus",
            "+/+",
            &["/finance", "finance"],
            "m/arker",
        )
        .await;
        assert_eq!(two, ["/finance"]);
    }
}

/// [MQTT-4.7.2-1]: filters starting with `#` or `+` do not match topics starting with `$`, while
/// a filter naming the `$` level explicitly does.
#[tokio::test]
async fn wildcards_do_not_match_dollar_topics() {
    let broker = start_broker().await;
    for version in BOTH {
        let level = version.level();
        let mut everything = subscriber(
            broker.addr,
            version,
            &client_id("hash-all", version),
            "#",
            QoS::AtMostOnce,
        )
        .await;
        let mut any_info = subscriber(
            broker.addr,
            version,
            &client_id("plus-info", version),
            "+/info",
            QoS::AtMostOnce,
        )
        .await;
        let mut explicit = subscriber(
            broker.addr,
            version,
            &client_id("dollar", version),
            "$test/#",
            QoS::AtMostOnce,
        )
        .await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("dollar-pub", version)).await;
        let marker = format!("marker-{level}");
        publish_qos0(&mut publisher, "$test/info", "dollar").await;
        publish_qos0(&mut publisher, "plain/info", &marker).await;
        publish_qos0(&mut publisher, "$test/done", &marker).await;

        assert!(
            publishes_before_marker(&mut everything, &marker)
                .await
                .is_empty(),
            "'#' got a $ topic"
        );
        assert!(
            publishes_before_marker(&mut any_info, &marker)
                .await
                .is_empty(),
            "'+/info' got a $ topic"
        );
        let got = publishes_before_marker(&mut explicit, &marker).await;
        assert_eq!(texts(&got), ["dollar"]);
        assert_eq!(got[0].topic, "$test/info");
    }
}

/// [MQTT-4.7.2-1] with the broker's own `$SYS` topics (retained): a `#` subscriber gets none of
/// them on subscribe, a `$SYS/#` subscriber does.
#[tokio::test]
async fn hash_subscription_gets_no_retained_sys_topics() {
    let broker = start_broker_with(|config| config.sys_interval = 3600).await;
    for version in BOTH {
        let mut sys = subscriber(
            broker.addr,
            version,
            &client_id("sys", version),
            "$SYS/broker/version",
            QoS::AtMostOnce,
        )
        .await;
        let version_topic = sys.expect_publish().await;
        assert_eq!(version_topic.topic, "$SYS/broker/version");
        assert!(
            text(&version_topic).starts_with("cairn "),
            "got {version_topic:?}"
        );

        let mut everything = subscriber(
            broker.addr,
            version,
            &client_id("sys-hash", version),
            "#",
            QoS::AtMostOnce,
        )
        .await;
        everything.expect_nothing_pending().await;
        let mut plus = subscriber(
            broker.addr,
            version,
            &client_id("sys-plus", version),
            "+/broker/#",
            QoS::AtMostOnce,
        )
        .await;
        plus.expect_nothing_pending().await;
    }
}

/// Section 4.7.2: `$SYS` belongs to the broker. A client's PUBLISH there is acknowledged (v5:
/// 0x87 Not authorized) but neither delivered nor retained.
#[tokio::test]
async fn clients_cannot_publish_into_sys() {
    let broker = start_broker().await;
    for version in BOTH {
        let level = version.level();
        let topic = format!("$SYS/fake/{level}");
        let mut watcher = subscriber(
            broker.addr,
            version,
            &client_id("sys-watch", version),
            "$SYS/fake/#",
            QoS::AtMostOnce,
        )
        .await;
        let mut publisher =
            RawClient::connect(broker.addr, version, &client_id("sys-forger", version)).await;
        let mut forged = publish_packet(&topic, QoS::AtLeastOnce, Some(1), b"forged");
        forged.retain = true;
        let ack = publisher.publish(forged).await.expect("PUBACK");
        let expected = match version {
            ProtocolVersion::V5 => ReasonCode::NotAuthorized,
            ProtocolVersion::V311 => ReasonCode::Success,
        };
        assert_eq!((ack.packet_id, ack.reason), (1, expected));
        watcher.expect_nothing_pending().await;
        let mut late = subscriber(
            broker.addr,
            version,
            &client_id("sys-late", version),
            &topic,
            QoS::AtMostOnce,
        )
        .await;
        late.expect_nothing_pending().await;
    }
}
