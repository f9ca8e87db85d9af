//! The Prometheus endpoint of a real broker, scraped over HTTP: after publishes through a
//! bridge to an upstream Cairn (and a second bridge whose upstream is down), every line of
//! `/metrics` parses, every metric has HELP and TYPE, counters and only counters end in
//! `_total`, and the figures show what happened. Other paths get 404, other methods 405, an
//! oversized request 431.

#[path = "common/mod.rs"]
mod common;
// Only the bridge configuration helpers are used here.
#[allow(dead_code)]
#[path = "bridge/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use cairn::codec::{ProtocolVersion, QoS};
use cairn::config::{Direction, MetricsConfig};
use common::clients::{publish_qos1, subscriber};
use common::{start_broker, RawClient, TestBroker, WAIT};
use support::{bridge, gateway_with, rule};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;

/// One HTTP answer: status code, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// Sends `request` as is and reads the answer to the end (the endpoint closes after it).
async fn http(addr: SocketAddr, request: &[u8]) -> Answer {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to /metrics");
        // The endpoint may answer (and close) before it has read an oversized request.
        let _ = stream.write_all(request).await;
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        raw
    };
    let raw = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("the endpoint answers within the wait");
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|line| line.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn scrape(addr: SocketAddr) -> Answer {
    http(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await
}

/// One sample line: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Whether `name` is a valid metric or label name.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `{a="x",b="y\"z"}` (after the name) into labels; returns the rest of the line.
fn parse_labels(text: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = text.strip_prefix('{') else {
        return (labels, text);
    };
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
        assert!(valid_name(name), "label name {name:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (_, '\\') => match chars.next().expect("an escaped character").1 {
                    'n' => value.push('\n'),
                    escaped @ ('\\' | '"') => value.push(escaped),
                    other => panic!("bad escape \\{other}"),
                },
                (index, '"') => break index,
                (_, other) => value.push(other),
            }
        };
        labels.insert(name.to_string(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Every sample of an exposition, checking the format on the way: each line is a HELP, a TYPE
/// or a sample; each metric has one HELP and one TYPE before its samples; counters, and only
/// they, end in `_total`; names and values parse.
fn parse(text: &str) -> Vec<Sample> {
    let mut help = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').expect("# HELP name text");
            assert!(!text.is_empty(), "{name} has a help text");
            assert!(
                help.insert(name.to_string(), ()).is_none(),
                "one HELP for {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "counters and only counters end in _total: {line}"
            );
            assert!(
                kinds.insert(name.to_string(), kind).is_none(),
                "one TYPE for {name}"
            );
        } else {
            let end = line.find(['{', ' ']).expect("a sample line");
            let name = &line[..end];
            assert!(valid_name(name), "metric name {name:?} in {line:?}");
            assert!(name.starts_with("cairn_"), "{name}");
            assert!(
                help.contains_key(name) && kinds.contains_key(name),
                "HELP and TYPE before the samples of {name}"
            );
            let (labels, rest) = parse_labels(&line[end..]);
            let value = rest.strip_prefix(' ').expect("a space before the value");
            let value = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                number => number
                    .parse()
                    .unwrap_or_else(|_| panic!("value of {line:?}")),
            };
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    samples
}

/// The value of the sample `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    samples
        .iter()
        .find(|sample| sample.name == name && sample.labels == labels)
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {samples:?}"))
        .value
}

/// Scrapes until `done` holds for the samples (the bridge acknowledges upstream a moment after
/// the upstream subscriber has its messages); fails after [`WAIT`].
async fn scrape_until(addr: SocketAddr, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let polled = tokio::time::timeout(WAIT, async {
        loop {
            let samples = parse(&scrape(addr).await.body);
            if done(&samples) {
                return samples;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    polled.expect("the figures arrive within the wait")
}

/// A gateway with metrics on 127.0.0.1:0 and two bridges: `cloud` to `upstream`, `down` to an
/// address where nothing listens.
async fn gateway(upstream: &TestBroker) -> (TestBroker, SocketAddr) {
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free port");
    let bridges = vec![
        bridge(
            "cloud",
            upstream.addr,
            vec![rule("sensors/#", Direction::Out, 1, "", "site/")],
        ),
        bridge(
            "down",
            nowhere,
            vec![rule("sensors/#", Direction::Out, 1, "", "")],
        ),
    ];
    let gateway = gateway_with(bridges, |config| {
        config.metrics = Some(MetricsConfig {
            bind: "127.0.0.1:0".parse().expect("address"),
        });
    })
    .await;
    let metrics = gateway.handle.metrics_addr().expect("metrics are on");
    assert_eq!(metrics.ip(), std::net::Ipv4Addr::LOCALHOST);
    (gateway, metrics)
}

#[tokio::test]
async fn metrics_show_the_brokers_and_the_bridges_figures() {
    let upstream = start_broker().await;
    let mut cloud = subscriber(upstream.addr, V5, "cloud", "site/#", QoS::AtLeastOnce).await;
    let (gateway, metrics) = gateway(&upstream).await;

    let answer = scrape(metrics).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let before = parse(&answer.body);
    assert_eq!(
        value(&before, "cairn_messages_received_total", &[("qos", "1")]),
        0.0
    );

    let mut local = subscriber(gateway.addr, V5, "local", "sensors/#", QoS::AtMostOnce).await;
    let mut sensor = RawClient::connect(gateway.addr, V5, "sensor").await;
    for id in 1..=3 {
        publish_qos1(&mut sensor, "sensors/t", id, "reading").await;
    }
    for _ in 0..3 {
        let message = cloud.expect_publish().await;
        cloud.acknowledge(&message).await;
        assert_eq!(local.expect_publish().await.qos, QoS::AtMostOnce);
    }
    let samples = scrape_until(metrics, |samples| {
        value(samples, "cairn_bridge_sent_total", &[("bridge", "cloud")]) == 3.0
    })
    .await;

    let by_qos = |name, qos| value(&samples, name, &[("qos", qos)]);
    assert_eq!(by_qos("cairn_messages_received_total", "1"), 3.0);
    assert_eq!(by_qos("cairn_messages_received_total", "0"), 0.0);
    assert_eq!(by_qos("cairn_messages_received_total", "2"), 0.0);
    // The local subscriber's QoS 0 subscription downgrades them.
    assert_eq!(by_qos("cairn_messages_sent_total", "0"), 3.0);
    assert_eq!(by_qos("cairn_messages_sent_total", "1"), 0.0);
    assert_eq!(value(&samples, "cairn_clients_connected", &[]), 2.0);
    assert!(value(&samples, "cairn_store_commits_total", &[]) >= 1.0);
    assert!(
        value(&samples, "cairn_sessions", &[]) >= 2.0,
        "the bridges' sessions"
    );
    let cloud_state = |state| {
        value(
            &samples,
            "cairn_bridge_state",
            &[("bridge", "cloud"), ("state", state)],
        )
    };
    assert_eq!(cloud_state("connected"), 1.0);
    assert_eq!(
        cloud_state("backoff") + cloud_state("connecting") + cloud_state("stopped"),
        0.0
    );
    assert_eq!(
        value(&samples, "cairn_bridge_queued", &[("bridge", "cloud")]),
        0.0
    );
    // The bridge whose upstream is down keeps the three messages.
    assert_eq!(
        value(&samples, "cairn_bridge_queued", &[("bridge", "down")]),
        3.0
    );
    assert!(value(&samples, "cairn_bridge_queued_bytes", &[("bridge", "down")]) > 0.0);
    // Present, and the messages are seconds old at most.
    let oldest = value(
        &samples,
        "cairn_bridge_oldest_queued_age_seconds",
        &[("bridge", "down")],
    );
    assert!(oldest < 3600.0, "{oldest}");
    assert_eq!(
        value(&samples, "cairn_bridge_sent_total", &[("bridge", "down")]),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "cairn_bridge_state",
            &[("bridge", "down"), ("state", "connected")]
        ),
        0.0
    );
    for name in [
        "cairn_bridge_dropped_total",
        "cairn_bridge_reconnects_total",
        "cairn_bridge_received_total",
    ] {
        assert_eq!(value(&samples, name, &[("bridge", "cloud")]), 0.0, "{name}");
    }
    gateway.shutdown().await;
}

#[tokio::test]
async fn only_get_metrics_is_served_and_requests_are_bounded() {
    let upstream = start_broker().await;
    let (gateway, metrics) = gateway(&upstream).await;

    let other_path = http(metrics, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(other_path.status, 404);
    let other_method = http(
        metrics,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(other_method.status, 405);
    assert_eq!(
        other_method.headers.get("allow").map(String::as_str),
        Some("GET")
    );
    let garbage = http(metrics, b"\x16\x03\x01 hello\r\n\r\n").await;
    assert_eq!(garbage.status, 400);

    let mut oversized = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    oversized.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let refused = http(metrics, &oversized).await;
    assert_eq!(refused.status, 431);

    // Still serving after all that.
    assert_eq!(scrape(metrics).await.status, 200);
    gateway.shutdown().await;
}

/// A scraper that connects and says nothing does not hold the broker at shutdown: the store
/// closes with it, so the broker starts again on the same data directory at once.
#[tokio::test]
async fn a_silent_scraper_does_not_delay_the_stores_closing() {
    let broker = common::start_broker_with(|config| {
        config.metrics = Some(MetricsConfig {
            bind: "127.0.0.1:0".parse().expect("address"),
        });
    })
    .await;
    let metrics = broker.handle.metrics_addr().expect("metrics are on");
    let silent = TcpStream::connect(metrics).await.expect("connect");
    // The endpoint has taken the connection once it answers another scrape.
    assert_eq!(scrape(metrics).await.status, 200);
    let restarted = broker.restart().await;
    drop(silent);
    restarted.shutdown().await;
}
