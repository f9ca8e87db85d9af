//! The bridges a broker runs: one task each, started with the broker, and replaced by name
//! when a reload changes the configuration; and the list `$SYS` reports on.
//!
//! A reload keeps a bridge connected when neither its settings nor what its password file and
//! TLS files hold changed; one that was removed or changed (a renewed certificate or a rotated
//! password counts) says goodbye upstream (DISCONNECT) and its task ends before the sessions
//! are made to match the new configuration, and a changed one then starts again on the same
//! session, so its queue (kept by the bridge's name), its window (with the topics its messages
//! went out under) and its counters carry over.

use std::future::Future;
use std::sync::{Arc, RwLock};

use tokio::task::JoinHandle;

use crate::broker::queue::QueueLimits;
use crate::broker::state::BridgeSession;
use crate::broker::{settle, Broker};
use crate::config::Config;

use super::thread::BridgeThread;
use super::{run, Bridge, BridgeError, Difference};

/// The bridges a broker runs, each with its task.
#[derive(Debug, Default)]
pub struct RunningBridges {
    tasks: Vec<(Arc<Bridge>, JoinHandle<()>)>,
    shown: ShownBridges,
    /// Where the tasks run ([`BridgeThread`]).
    thread: Option<BridgeThread>,
}

/// The bridges running now, for whoever reports on them (`$SYS`); a reload changes the list.
#[derive(Debug, Clone, Default)]
pub struct ShownBridges(Arc<RwLock<Vec<Arc<Bridge>>>>);

impl ShownBridges {
    /// The bridges running now, in the configuration's order.
    pub fn current(&self) -> Vec<Arc<Bridge>> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, bridges: Vec<Arc<Bridge>>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = bridges;
    }
}

/// The bridges of a configuration, their secrets and certificates read, not yet running.
#[derive(Debug)]
pub struct PreparedBridges(Vec<Bridge>);

/// What [`RunningBridges::apply`] did, by bridge name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BridgeChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Changed settings, or the same settings with a password file or TLS files that hold
    /// something else now: reconnected with them, on the same queue.
    pub restarted: Vec<String>,
    /// Those of `restarted` whose settings are the same: only what their password file or TLS
    /// files hold changed.
    pub renewed: Vec<String>,
}

impl BridgeChanges {
    /// Whether no bridge was added, removed or restarted.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.restarted.is_empty()
    }
}

/// Reads every bridge's password file and TLS files under `config`: an error here changes
/// nothing yet.
pub fn prepare(config: &Config) -> Result<PreparedBridges, BridgeError> {
    config
        .bridges
        .iter()
        .map(|bridge| Bridge::new(bridge, config.limits.max_packet_size))
        .collect::<Result<_, _>>()
        .map(PreparedBridges)
}

impl RunningBridges {
    /// Opens the session of every bridge of the broker's configuration and starts its task.
    /// Call after the store's state is restored and before clients are accepted, so bridge
    /// sessions take messages from the first client on.
    pub async fn start(broker: &Arc<Broker>) -> Result<RunningBridges, BridgeError> {
        let prepared = prepare(&broker.config())?;
        let mut running = RunningBridges::default();
        running.apply(broker, prepared).await;
        Ok(running)
    }

    /// The list `$SYS` reports on, kept current by [`RunningBridges::apply`].
    pub fn shown(&self) -> ShownBridges {
        self.shown.clone()
    }

    /// Runs `prepared` instead of the bridges running now, under the broker's configuration
    /// (already the new one at a reload): bridges whose settings, password and TLS material
    /// are the same keep running; removed and changed ones are stopped and awaited; then
    /// every bridge session is made to match (`out` rules, queue bounds; the sessions of
    /// removed bridges end, with a warning naming what they held), and added and changed
    /// bridges start.
    pub async fn apply(
        &mut self,
        broker: &Arc<Broker>,
        prepared: PreparedBridges,
    ) -> BridgeChanges {
        let mut changes = BridgeChanges::default();
        let mut kept = Vec::new();
        let mut stopping = Vec::new();
        let mut bridges = prepared.0;
        for (old, task) in self.tasks.drain(..) {
            let name = old.config.name.clone();
            match bridges.iter_mut().find(|new| new.config.name == name) {
                Some(new) => match new.difference(&old) {
                    Difference::None => {
                        kept.push((old, task));
                        continue;
                    }
                    difference => {
                        new.status = old.status.clone();
                        if difference == Difference::Files {
                            changes.renewed.push(name.clone());
                        }
                        changes.restarted.push(name);
                    }
                },
                None => changes.removed.push(name),
            }
            old.stop();
            stopping.push(task);
        }
        for task in stopping {
            let _ = task.await;
        }
        open_sessions(broker, &bridges).await;
        for bridge in bridges {
            let name = &bridge.config.name;
            if let Some(index) = kept.iter().position(|(old, _)| &old.config.name == name) {
                self.tasks.push(kept.swap_remove(index));
                continue;
            }
            if !changes.restarted.contains(name) {
                changes.added.push(name.clone());
            }
            let bridge = Arc::new(bridge);
            let task = self.spawn(run(bridge.clone(), broker.clone()));
            self.tasks.push((bridge, task));
        }
        self.shown.set(
            self.tasks
                .iter()
                .map(|(bridge, _)| bridge.clone())
                .collect(),
        );
        changes
    }

    /// Runs a bridge's task on the bridges' thread, started with the first; on the caller's
    /// runtime if that thread cannot be started.
    fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        if self.thread.is_none() {
            match BridgeThread::start() {
                Ok(thread) => self.thread = Some(thread),
                Err(error) => tracing::warn!(%error,
                    "cannot start the bridges' thread; they run with the connections"),
            }
        }
        match &self.thread {
            Some(thread) => thread.spawn(task),
            None => tokio::spawn(task),
        }
    }

    /// Waits for every bridge's task to end, as they do once the broker shuts down.
    pub async fn join(self) {
        for (_, task) in self.tasks {
            let _ = task.await;
        }
    }
}

/// Makes the bridge sessions match `bridges` under the broker's configuration, and waits for
/// the change's commit.
async fn open_sessions(broker: &Arc<Broker>, bridges: &[Bridge]) {
    let config = broker.config();
    let sessions: Vec<BridgeSession> = bridges
        .iter()
        .map(|bridge| {
            let bounds = bridge.config.queue.resolved(&config.limits);
            let limits = QueueLimits {
                max_messages: bounds.max_messages,
                max_bytes: bounds.max_bytes,
                policy: bounds.policy,
                queue_qos0_offline: config.limits.queue_qos0_offline,
            };
            bridge.session(limits, bounds.in_memory_bytes)
        })
        .collect();
    let (opened, commit) = broker.change(|state, changes| state.open_bridges(&sessions, changes));
    for (session, queued) in opened.removed {
        tracing::warn!(%session, queued, "bridge no longer configured: its session and queued messages were removed");
    }
    settle(commit).await;
}
