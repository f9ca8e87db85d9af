//! `$SYS/broker/…`: the broker's own status topics, published as retained messages every
//! `sys_interval` seconds (version, uptime, clients connected, messages received, sent,
//! dropped, queued and inflight, sessions, and the store's commits, messages per commit and
//! bytes written). They are rebuilt at start, so they are never written to the store.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::message::Message;
use super::{settle, Broker};
use crate::store::StoreOp;

/// Publishes the `$SYS` topics now and then every `interval`, until the broker shuts down.
pub async fn run(broker: Arc<Broker>, interval: Duration) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        publish_status(&broker).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The current status as (topic, value) pairs.
pub fn status(broker: &Broker) -> Vec<(&'static str, String)> {
    let metrics = broker.metrics();
    let store = broker.store().metrics();
    let (sessions, queued, queued_bytes, inflight) = {
        let state = broker.state();
        let queued = state
            .sessions
            .values()
            .map(|slot| slot.session.queue.len())
            .sum::<usize>();
        let inflight = state
            .sessions
            .values()
            .map(|slot| slot.session.inflight.len())
            .sum::<usize>();
        (state.sessions.len(), queued, state.queued_bytes(), inflight)
    };
    vec![
        (
            "$SYS/broker/version",
            format!("cairn {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", broker.uptime().as_secs()),
        ),
        (
            "$SYS/broker/clients/connected",
            metrics
                .clients_connected
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            "$SYS/broker/messages/received",
            metrics
                .messages_received
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            "$SYS/broker/messages/sent",
            metrics.messages_sent.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/messages/dropped",
            metrics.messages_dropped.load(Ordering::Relaxed).to_string(),
        ),
        ("$SYS/broker/sessions/count", sessions.to_string()),
        ("$SYS/broker/messages/queued", queued.to_string()),
        (
            "$SYS/broker/messages/queued_bytes",
            queued_bytes.to_string(),
        ),
        ("$SYS/broker/messages/inflight", inflight.to_string()),
        (
            "$SYS/broker/store/commits",
            store.commits.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/store/failed_commits",
            store.failed_commits.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/store/messages_per_commit",
            format!("{:.2}", store.messages_per_commit()),
        ),
        (
            "$SYS/broker/store/messages_elided",
            store.elided.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/store/bytes_written",
            store.bytes_written.load(Ordering::Relaxed).to_string(),
        ),
    ]
}

async fn publish_status(broker: &Broker) {
    for (topic, value) in status(broker) {
        let ((), commit) = broker.change(|state, routed| {
            let id = state.next_message_id();
            let message = Arc::new(Message::from_broker(id, topic, Bytes::from(value), true));
            state.route_into(&message, routed);
            // Status values are recomputed at start: keep them out of the store.
            routed
                .ops
                .retain(|op| !matches!(op, StoreOp::Retain { .. }));
        });
        settle(commit).await;
    }
}
