//! [`Broker`]: the engine shared by every connection of one broker: the [`State`] behind one
//! mutex (never held across an await) that only [`Broker::change`] changes, the [`Store`]
//! every durable change goes through, the timers of offline sessions, the hand-over of a
//! session taken over, and the counters.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{watch, Notify};

use crate::access::{AccessControl, Rules};
use crate::codec::{QoS, ReasonCode};
use crate::config::Config;
use crate::model::Recovered;
use crate::store::{Commit, Store, StoreError};

use super::queue::{QueueBudget, QueueLimits};
use super::state::{Changes, ConnectionSignal, Detached, State};

/// Waits for the commit of a background change (timers, `$SYS`, a connection's end), logging
/// a failure: there is no client waiting to be told.
pub async fn settle(commit: Commit) {
    if let Err(error) = commit.wait().await {
        tracing::error!(%error, "could not commit a background change");
    }
}

/// The queue bounds the configuration sets.
fn queue_limits(limits: &crate::config::Limits) -> QueueLimits {
    QueueLimits {
        max_messages: limits.max_queued_messages,
        max_bytes: limits.max_queued_bytes,
        policy: limits.queue_full_policy,
        queue_qos0_offline: limits.queue_qos0_offline,
    }
}

/// Counters published under `$SYS/broker/…`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Clients connected right now.
    pub clients_connected: AtomicUsize,
    /// PUBLISH packets received from clients.
    pub messages_received: PerQos,
    /// PUBLISH packets sent to clients.
    pub messages_sent: PerQos,
    /// Messages dropped because a session's queue was full.
    pub messages_dropped: AtomicU64,
    /// PUBLISHes and deliveries the ACL forbade.
    pub messages_denied: AtomicU64,
}

/// A counter per QoS level.
#[derive(Debug, Default)]
pub struct PerQos([AtomicU64; 3]);

impl PerQos {
    /// Adds `by` to the count of `qos`.
    pub fn add(&self, qos: QoS, by: u64) {
        self.0[qos as usize].fetch_add(by, Ordering::Relaxed);
    }

    /// Adds `counts` (QoS 0 first), leaving the counters of levels with nothing to add alone.
    pub fn add_each(&self, counts: [u64; 3]) {
        for (counter, by) in self.0.iter().zip(counts) {
            if by > 0 {
                counter.fetch_add(by, Ordering::Relaxed);
            }
        }
    }

    /// The counts, QoS 0 first.
    pub fn read(&self) -> [u64; 3] {
        self.0.each_ref().map(|count| count.load(Ordering::Relaxed))
    }
}

/// The engine shared by every connection of one broker.
#[derive(Debug)]
pub struct Broker {
    /// The configuration in force; a reload replaces it ([`Broker::reconfigure`]).
    config: RwLock<Arc<Config>>,
    state: Mutex<State>,
    store: Store,
    /// The password and ACL files in force, and what logins share.
    access: AccessControl,
    metrics: Metrics,
    started: Instant,
    next_connection_id: AtomicU64,
    /// Flips to `Some(reason)` when the broker shuts down; connections then say goodbye.
    shutdown: watch::Sender<Option<ReasonCode>>,
    /// Notified whenever a connection has released its session: what a CONNECT taking a
    /// session over waits for ([`Broker::take_over`]).
    released: Notify,
}

impl Broker {
    /// A broker with empty state for `config`, checking logins and topics under `rules`.
    pub fn new(config: Arc<Config>, store: Store, rules: Rules) -> Arc<Broker> {
        let (shutdown, _) = watch::channel(None);
        let access = AccessControl::new(rules);
        let mut state = State::new(
            queue_limits(&config.limits),
            QueueBudget::new(config.limits.max_queued_bytes_total),
        );
        state.set_will_acl(access.acl());
        Arc::new(Broker {
            state: Mutex::new(state),
            config: RwLock::new(config),
            store,
            access,
            metrics: Metrics::default(),
            started: Instant::now(),
            next_connection_id: AtomicU64::new(1),
            shutdown,
            released: Notify::new(),
        })
    }

    /// The configuration in force now. A connection takes it once, at CONNECT, and keeps
    /// the limits it announced for its whole life.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Puts `config` in force (a reload): connections made from now on get its limits, and
    /// every queue but the bridges' its bounds from the next message on. The caller keeps
    /// the keys that need a restart as they were (see [`crate::config::reload`]).
    pub fn reconfigure(&self, config: Arc<Config>) {
        let ((), commit) = self.change(|state, _| {
            state.set_queue_limits(
                queue_limits(&config.limits),
                config.limits.max_queued_bytes_total,
            )
        });
        drop(commit);
        *self
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
    }

    /// Who may connect and what they may touch.
    pub fn access(&self) -> &AccessControl {
        &self.access
    }

    /// Puts re-read password and ACL files in force (a reload), for logins, publishes,
    /// deliveries and Wills from now on.
    pub fn replace_rules(&self, rules: Rules) {
        self.access.replace(rules);
        let acl = self.access.acl();
        let ((), commit) = self.change(|state, _| state.set_will_acl(acl));
        drop(commit);
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How long the broker has been running.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Locks the shared state. A panic while it was held cannot leave it half-changed in a
    /// way that matters more than stopping would, so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh identifier for a connection.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The store, for its counters and for reading queue entries back.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Looks at the shared state without changing it.
    pub fn read<T>(&self, look: impl FnOnce(&State) -> T) -> T {
        look(&self.lock())
    }

    /// The one way to change the shared state: runs `change` on it, then hands the store the
    /// operations it recorded before the state is unlocked, so the store receives changes in
    /// the order they happened (a receiver's Inflight can never reach it before the Enqueue
    /// it refers to). Counts the messages queue bounds dropped. The returned [`Commit`]
    /// completes once the changes are durable.
    pub fn change<T>(&self, change: impl FnOnce(&mut State, &mut Changes) -> T) -> (T, Commit) {
        let mut state = self.lock();
        let mut changes = Changes {
            restate: self.store.has_failed(),
            ..Changes::default()
        };
        let value = change(&mut state, &mut changes);
        if changes.dropped > 0 {
            self.metrics
                .messages_dropped
                .fetch_add(changes.dropped, Ordering::Relaxed);
        }
        // A batch of its own comes after everything submitted before: only a change without
        // one needs the barrier.
        let commit = if changes.ops.is_empty() && changes.rests_on_earlier {
            self.store.barrier()
        } else {
            self.store.commit(changes.ops, changes.pace)
        };
        drop(state);
        (value, commit)
    }

    /// Rebuilds sessions and retained messages from the store at start-up, publishes the
    /// Wills and ends the sessions whose time passed while the broker was down, and arms the
    /// timers of the rest.
    pub async fn restore(self: &Arc<Self>, recovered: Recovered) -> Result<(), StoreError> {
        let (timers, commit) =
            self.change(|state, changes| state.restore(recovered, SystemTime::now(), changes));
        for (client_id, detached) in timers {
            self.arm_timers(client_id, &detached);
        }
        commit.wait().await
    }

    /// Arms the Will Delay and Session Expiry timers a detach asked for. Each timer acts only
    /// if the session is still offline in the same epoch when it fires, and holds the broker
    /// weakly: a timer left at shutdown keeps nothing alive.
    pub fn arm_timers(self: &Arc<Self>, client_id: Arc<str>, detached: &Detached) {
        let epoch = detached.epoch;
        if let Some(delay) = detached.will_delay {
            let client_id = client_id.clone();
            self.after(delay, move |state, changes| {
                state.will_due(&client_id, epoch, changes)
            });
        }
        if let Some(expiry) = detached.expiry {
            self.after(expiry, move |state, changes| {
                state.expire(&client_id, epoch, changes)
            });
        }
    }

    /// Makes `change` after `seconds`, unless the broker is gone by then.
    fn after(
        self: &Arc<Self>,
        seconds: u32,
        change: impl FnOnce(&mut State, &mut Changes) + Send + 'static,
    ) {
        let broker = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(u64::from(seconds))).await;
            let Some(broker) = broker.upgrade() else {
                return;
            };
            let ((), commit) = broker.change(change);
            settle(commit).await;
        });
    }

    /// A receiver that learns when the broker shuts down: its `changed()` completes at the
    /// shutdown, or at once if the shutdown began before it was made.
    pub fn shutdown_signal(&self) -> watch::Receiver<Option<ReasonCode>> {
        let mut signal = self.shutdown.subscribe();
        if signal.borrow().is_some() {
            signal.mark_changed();
        }
        signal
    }

    /// Tells every connection to close with 0x8B Server shutting down: those attached now
    /// through their signal, any attached later when they see [`Broker::shutting_down`],
    /// and the broker's own tasks through [`Broker::shutdown_signal`].
    pub fn begin_shutdown(&self) {
        self.shutdown
            .send_replace(Some(ReasonCode::ServerShuttingDown));
        self.read(|state| state.close_connections(|_| Some(ReasonCode::ServerShuttingDown)));
    }

    /// Asks the connection attached to `client_id`'s session, if one is, to close as taken
    /// over, and waits until it has released the session, for at most `within`. Before it
    /// closes, it acts on what its client sent before this CONNECT came (a DISCONNECT that
    /// ends the session or removes its Will, PUBLISHes), as one connection would have: the
    /// client sent it first. A connection that cannot finish in time (stuck writing to a
    /// client that does not read) is taken over as it is.
    pub async fn take_over(&self, client_id: &str, within: Duration) {
        let Some(predecessor) = self.read(|state| state.attached_signal(client_id)) else {
            return;
        };
        predecessor.close(ReasonCode::SessionTakenOver);
        let released = async {
            loop {
                // Made before the look: a release between the two still wakes it.
                let notified = self.released.notified();
                if predecessor.released() {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(within, released).await.is_err() {
            tracing::debug!(%client_id, "the connection taken over did not end in time");
        }
    }

    /// A connection has ended and released its session (`signal` is its own): a takeover
    /// waiting for it goes on.
    pub fn released(&self, signal: &ConnectionSignal) {
        signal.release();
        self.released.notify_waiters();
    }

    /// Whether the shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        self.shutdown.borrow().is_some()
    }

    /// Milliseconds since the broker started: the clock of keep-alive deadlines.
    pub fn clock_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A broker with the default configuration on an empty store in `dir`, for unit tests.
#[cfg(test)]
pub(crate) fn test_broker(dir: &tempfile::TempDir) -> Arc<Broker> {
    let options = crate::store::redb::DurableOptions::default();
    let (store, _) = Store::open(dir.path(), options).expect("open a store");
    Broker::new(Arc::new(Config::default()), store, Rules::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_qos_counters_count_each_level_apart() {
        let counters = PerQos::default();
        counters.add(QoS::ExactlyOnce, 2);
        counters.add_each([1, 0, 3]);
        counters.add(QoS::AtMostOnce, 1);
        assert_eq!(counters.read(), [2, 0, 5]);
    }
}
