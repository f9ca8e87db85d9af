//! `$SYS/broker/…`: the broker's own status topics, published as retained messages every
//! `sys_interval` seconds (version, uptime, clients connected, messages received, sent,
//! dropped, queued and inflight, sessions, and the store's commits, messages per commit and
//! bytes written, in total and per second over the last interval). They are rebuilt at start,
//! so they are never written to the store; one no longer published is cleared.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::state::State;
use super::{settle, Broker};
use crate::model::Message;
use crate::model::StoreOp;

/// Publishes the `$SYS` topics now and then every `interval`, until the broker shuts down,
/// with the (topic, value) pairs `more` gives (the bridges').
pub async fn run(
    broker: Arc<Broker>,
    interval: Duration,
    more: impl Fn() -> Vec<(String, String)>,
) {
    let mut shutdown = broker.shutdown_signal();
    let mut last = StoreSample::at_start();
    // The topics published last time: one no longer given (a bridge a reload removed) has its
    // retained value cleared, not left to describe what is gone.
    let mut published: HashSet<String> = HashSet::new();
    loop {
        let values: Vec<(String, String)> = status(&broker, &mut last)
            .into_iter()
            .map(|(topic, value)| (topic.to_string(), value))
            .chain(more())
            .collect();
        let now: HashSet<String> = values.iter().map(|(topic, _)| topic.clone()).collect();
        // An empty retained message removes the retained one [MQTT-3.3.1-6] (3.1.1: -10).
        let gone: Vec<(String, String)> = published
            .difference(&now)
            .map(|topic| (topic.clone(), String::new()))
            .collect();
        publish_status(&broker, values.into_iter().chain(gone)).await;
        published = now;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The store's counters at one moment, to turn them into rates.
#[derive(Debug, Clone, Copy)]
struct StoreSample {
    at: Instant,
    commits: u64,
    bytes_written: u64,
}

impl StoreSample {
    /// Nothing committed yet, now.
    fn at_start() -> StoreSample {
        StoreSample {
            at: Instant::now(),
            commits: 0,
            bytes_written: 0,
        }
    }

    /// Commits and bytes written per second from `self` to `now`.
    fn rates_until(&self, now: &StoreSample) -> (f64, f64) {
        let seconds = now.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let per_second = |from: u64, to: u64| to.saturating_sub(from) as f64 / seconds;
        (
            per_second(self.commits, now.commits),
            per_second(self.bytes_written, now.bytes_written),
        )
    }
}

/// The broker's figures at one moment: what `$SYS` publishes and the metrics endpoint shows,
/// read in one place so that both show the same numbers.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub uptime: Duration,
    /// Clients connected now.
    pub clients_connected: usize,
    /// PUBLISH packets received from clients and sent to clients, per QoS level (QoS 0
    /// first), and messages dropped by full queues, since start.
    pub messages_received: [u64; 3],
    pub messages_sent: [u64; 3],
    pub messages_dropped: u64,
    /// PUBLISHes and deliveries the ACL forbade, logins refused and logins slowed down
    /// after repeated failures, since start.
    pub messages_denied: u64,
    pub logins_refused: u64,
    pub logins_slowed: u64,
    /// Sessions, and what their queues hold now.
    pub sessions: usize,
    pub queued: usize,
    pub queued_bytes: u64,
    pub inflight: usize,
    /// The store's work since start.
    pub store_commits: u64,
    pub store_failed_commits: u64,
    pub store_messages_per_commit: f64,
    pub store_messages_elided: u64,
    pub store_bytes_written: u64,
}

impl Figures {
    /// The figures now.
    pub fn read(broker: &Broker) -> Figures {
        let metrics = broker.metrics();
        let store = broker.store().metrics();
        let counts = broker.read(State::counts);
        Figures {
            uptime: broker.uptime(),
            clients_connected: metrics.clients_connected.load(Ordering::Relaxed),
            messages_received: metrics.messages_received.read(),
            messages_sent: metrics.messages_sent.read(),
            messages_dropped: metrics.messages_dropped.load(Ordering::Relaxed),
            messages_denied: metrics.messages_denied.load(Ordering::Relaxed),
            logins_refused: broker.access().logins_refused.load(Ordering::Relaxed),
            logins_slowed: broker.access().logins_slowed.load(Ordering::Relaxed),
            sessions: counts.sessions,
            queued: counts.queued,
            queued_bytes: counts.queued_bytes,
            inflight: counts.inflight,
            store_commits: store.commits.load(Ordering::Relaxed),
            store_failed_commits: store.failed_commits.load(Ordering::Relaxed),
            store_messages_per_commit: store.messages_per_commit(),
            store_messages_elided: store.elided.load(Ordering::Relaxed),
            store_bytes_written: store.bytes_written.load(Ordering::Relaxed),
        }
    }
}

/// The current status as (topic, value) pairs; rates are over the time since `last`, which
/// becomes now.
fn status(broker: &Broker, last: &mut StoreSample) -> Vec<(&'static str, String)> {
    let figures = Figures::read(broker);
    let now = StoreSample {
        at: Instant::now(),
        commits: figures.store_commits,
        bytes_written: figures.store_bytes_written,
    };
    let (commits_per_second, bytes_per_second) = last.rates_until(&now);
    *last = now;
    vec![
        (
            "$SYS/broker/version",
            format!("cairn {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", figures.uptime.as_secs()),
        ),
        (
            "$SYS/broker/clients/connected",
            figures.clients_connected.to_string(),
        ),
        (
            "$SYS/broker/messages/received",
            figures.messages_received.iter().sum::<u64>().to_string(),
        ),
        (
            "$SYS/broker/messages/sent",
            figures.messages_sent.iter().sum::<u64>().to_string(),
        ),
        (
            "$SYS/broker/messages/dropped",
            figures.messages_dropped.to_string(),
        ),
        (
            "$SYS/broker/messages/denied",
            figures.messages_denied.to_string(),
        ),
        (
            "$SYS/broker/clients/logins_refused",
            figures.logins_refused.to_string(),
        ),
        (
            "$SYS/broker/clients/logins_slowed",
            figures.logins_slowed.to_string(),
        ),
        ("$SYS/broker/sessions/count", figures.sessions.to_string()),
        ("$SYS/broker/messages/queued", figures.queued.to_string()),
        (
            "$SYS/broker/messages/queued_bytes",
            figures.queued_bytes.to_string(),
        ),
        (
            "$SYS/broker/messages/inflight",
            figures.inflight.to_string(),
        ),
        ("$SYS/broker/store/commits", now.commits.to_string()),
        (
            "$SYS/broker/store/commits_per_second",
            format!("{commits_per_second:.1}"),
        ),
        (
            "$SYS/broker/store/failed_commits",
            figures.store_failed_commits.to_string(),
        ),
        (
            "$SYS/broker/store/messages_per_commit",
            format!("{:.2}", figures.store_messages_per_commit),
        ),
        (
            "$SYS/broker/store/messages_elided",
            figures.store_messages_elided.to_string(),
        ),
        (
            "$SYS/broker/store/bytes_written",
            now.bytes_written.to_string(),
        ),
        (
            "$SYS/broker/store/bytes_written_per_second",
            format!("{bytes_per_second:.0}"),
        ),
    ]
}

async fn publish_status(broker: &Broker, values: impl Iterator<Item = (String, String)>) {
    for (topic, value) in values {
        let ((), commit) = broker.change(|state, changes| {
            let id = state.next_message_id();
            let message = Arc::new(Message::from_broker(id, &topic, Bytes::from(value), true));
            state.route_into(&message, changes);
            // Status values are recomputed at start: keep them out of the store.
            changes
                .ops
                .retain(|op| !matches!(op, StoreOp::Retain { .. }));
        });
        settle(commit).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::test_broker;
    use crate::codec::QoS;

    #[tokio::test]
    async fn sys_shows_the_totals_of_the_figures_metrics_show_per_qos() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let broker = test_broker(&dir);
        broker.metrics().messages_received.add(QoS::AtMostOnce, 2);
        broker.metrics().messages_received.add(QoS::ExactlyOnce, 3);
        broker.metrics().messages_sent.add_each([1, 4, 0]);
        let figures = Figures::read(&broker);
        assert_eq!(figures.messages_received, [2, 0, 3]);
        assert_eq!(figures.messages_sent, [1, 4, 0]);
        let values = status(&broker, &mut StoreSample::at_start());
        let value = |topic| {
            values
                .iter()
                .find(|(name, _)| *name == topic)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(value("$SYS/broker/messages/received"), Some("5"));
        assert_eq!(value("$SYS/broker/messages/sent"), Some("5"));
    }

    #[test]
    fn rates_are_deltas_over_the_elapsed_time() {
        let start = StoreSample::at_start();
        let later = StoreSample {
            at: start.at + Duration::from_secs(4),
            commits: 10,
            bytes_written: 4096,
        };
        assert_eq!(start.rates_until(&later), (2.5, 1024.0));
        assert_eq!(later.rates_until(&later), (0.0, 0.0), "no time, no change");
    }
}
