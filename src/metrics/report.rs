//! What the metrics endpoint shows: the broker's and the bridges' figures (the same ones `$SYS`
//! publishes, read by [`Figures::read`] and [`crate::bridge::figures`]) named as Prometheus
//! metrics, with `cairn_` in front, units in the names and `_total` on counters.

use crate::bridge::status::LinkState;
use crate::bridge::BridgeFigures;
use crate::broker::sys::Figures;

use super::exposition::{Exposition, Kind};

/// The text served at `/metrics`.
pub fn render(figures: &Figures, bridges: &[BridgeFigures]) -> String {
    let mut out = Exposition::default();
    out.metric(
        "cairn_build_info",
        Kind::Gauge,
        "Always 1; the version of the running broker is its label.",
    )
    .sample(
        "cairn_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1u64,
    );
    out.single(
        "cairn_uptime_seconds",
        Kind::Gauge,
        "Seconds since the broker started.",
        figures.uptime.as_secs_f64(),
    );
    out.single(
        "cairn_clients_connected",
        Kind::Gauge,
        "Clients connected now.",
        figures.clients_connected,
    );
    per_qos(
        &mut out,
        "cairn_messages_received_total",
        "PUBLISH packets received from clients, by QoS.",
        figures.messages_received,
    );
    per_qos(
        &mut out,
        "cairn_messages_sent_total",
        "PUBLISH packets sent to clients, by QoS.",
        figures.messages_sent,
    );
    out.single(
        "cairn_messages_dropped_total",
        Kind::Counter,
        "Messages dropped because a session's queue was full.",
        figures.messages_dropped,
    );
    out.single(
        "cairn_messages_denied_total",
        Kind::Counter,
        "PUBLISHes and deliveries the ACL forbade.",
        figures.messages_denied,
    );
    out.single(
        "cairn_logins_refused_total",
        Kind::Counter,
        "CONNECTs refused for their credentials (bad password, no certificate, no user name).",
        figures.logins_refused,
    );
    out.single(
        "cairn_logins_slowed_total",
        Kind::Counter,
        "Logins made to wait because their address failed repeatedly.",
        figures.logins_slowed,
    );
    out.single(
        "cairn_sessions",
        Kind::Gauge,
        "Sessions held, online and offline, bridges' included.",
        figures.sessions,
    );
    out.single(
        "cairn_messages_queued",
        Kind::Gauge,
        "Messages queued in all sessions, in memory and on disk.",
        figures.queued,
    );
    out.single(
        "cairn_messages_queued_bytes",
        Kind::Gauge,
        "Bytes of topic and payload queued in all sessions.",
        figures.queued_bytes,
    );
    out.single(
        "cairn_messages_inflight",
        Kind::Gauge,
        "Messages sent and not yet acknowledged.",
        figures.inflight,
    );
    out.single(
        "cairn_store_commits_total",
        Kind::Counter,
        "Write transactions the store committed.",
        figures.store_commits,
    );
    out.single(
        "cairn_store_failed_commits_total",
        Kind::Counter,
        "Group commits that failed (their clients got no ack).",
        figures.store_failed_commits,
    );
    out.single(
        "cairn_store_messages_per_commit",
        Kind::Gauge,
        "Queue entries per commit, on average since start.",
        figures.store_messages_per_commit,
    );
    out.single(
        "cairn_store_messages_elided_total",
        Kind::Counter,
        "Queue entries never written: delivered and acknowledged before their commit.",
        figures.store_messages_elided,
    );
    out.single(
        "cairn_store_written_bytes_total",
        Kind::Counter,
        "Bytes the store's writer sent to storage (0 where the kernel does not count them).",
        figures.store_bytes_written,
    );
    render_bridges(&mut out, bridges);
    out.finish()
}

/// A counter with one sample per QoS level, labelled `qos="0"` to `qos="2"`.
fn per_qos(out: &mut Exposition, name: &str, help: &str, counts: [u64; 3]) {
    out.metric(name, Kind::Counter, help);
    for (qos, count) in ["0", "1", "2"].into_iter().zip(counts) {
        out.sample(name, &[("qos", qos)], count);
    }
}

/// The per-bridge metrics, labelled `bridge="<name>"`; none without bridges.
fn render_bridges(out: &mut Exposition, bridges: &[BridgeFigures]) {
    if bridges.is_empty() {
        return;
    }
    const STATE: &str = "cairn_bridge_state";
    out.metric(
        STATE,
        Kind::Gauge,
        "1 for the state the bridge's uplink is in, 0 for the others.",
    );
    for bridge in bridges {
        for state in LinkState::NAMES {
            let value = u64::from(bridge.state.name() == state);
            out.sample(STATE, &[("bridge", &bridge.name), ("state", state)], value);
        }
    }
    type Figure = fn(&BridgeFigures) -> crate::metrics::exposition::Number;
    let per_bridge: [(&str, Kind, &str, Figure); 7] = [
        (
            "cairn_bridge_queued",
            Kind::Gauge,
            "Messages queued for upstream and not yet acknowledged, in flight included.",
            |bridge| bridge.queued.into(),
        ),
        (
            "cairn_bridge_queued_bytes",
            Kind::Gauge,
            "Bytes of topic and payload queued for upstream.",
            |bridge| bridge.queued_bytes.into(),
        ),
        (
            "cairn_bridge_oldest_queued_age_seconds",
            Kind::Gauge,
            "Seconds the oldest message queued for upstream has waited; 0 when none.",
            |bridge| bridge.oldest_queued_age.into(),
        ),
        (
            "cairn_bridge_sent_total",
            Kind::Counter,
            "Messages upstream acknowledged (or took, at QoS 0).",
            |bridge| bridge.sent.into(),
        ),
        (
            "cairn_bridge_received_total",
            Kind::Counter,
            "Messages received from upstream and published locally.",
            |bridge| bridge.received.into(),
        ),
        (
            "cairn_bridge_dropped_total",
            Kind::Counter,
            "Messages dropped instead of bridged: queued ones that left the queue without \
             reaching upstream (queue bounds, Message Expiry, no out rule any more, refused, \
             too large for the server) and ones from upstream too large to publish locally.",
            |bridge| bridge.dropped.into(),
        ),
        (
            "cairn_bridge_reconnects_total",
            Kind::Counter,
            "Connections to upstream made after the first.",
            |bridge| bridge.reconnects.into(),
        ),
    ];
    for (name, kind, help, figure) in per_bridge {
        out.metric(name, kind, help);
        for bridge in bridges {
            out.sample(name, &[("bridge", &bridge.name)], figure(bridge));
        }
    }
}
