//! Telling the service manager (systemd, `Type=notify`) how the broker is: `READY=1` once the
//! store is recovered, the bridges opened and every listener bound, with a `STATUS=` line
//! saying what it serves; keep-alives while the engine makes progress (`WatchdogSec=`);
//! `STOPPING=1` when shutdown begins. Without `NOTIFY_SOCKET` in the environment it does
//! nothing. Reads the environment once and never changes it (the broker starts no process that
//! could inherit it).
//!
//! - [`notify`]: the datagrams and where they go;
//! - [`watchdog`]: when a keep-alive is due, and the engine's proof of progress.

pub mod notify;
pub mod watchdog;

use std::time::Duration;

use crate::broker::state::State;
use crate::server::ServerHandle;

use self::notify::{status, Notifier};
use self::watchdog::Verdict;

/// The service manager, as this process was told of it.
#[derive(Debug, Default)]
pub struct ServiceManager {
    notifier: Option<std::sync::Arc<Notifier>>,
    /// How often systemd wants a keep-alive, at the latest.
    watchdog: Option<Duration>,
}

impl ServiceManager {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (an unusable socket address is
    /// logged and treated as none) and says that the broker is starting: `STATUS=` while the
    /// store recovers, which can take a while on a large database.
    pub fn starting() -> ServiceManager {
        let manager = ServiceManager::from_env();
        if let Some(notifier) = &manager.notifier {
            notifier.send(&status(
                "starting: recovering the store, opening bridges, binding listeners",
            ));
        }
        manager
    }

    fn from_env() -> ServiceManager {
        let variable = |name| std::env::var(name).ok();
        let Some(socket) = variable("NOTIFY_SOCKET") else {
            return ServiceManager::default();
        };
        let notifier = match Notifier::new(&socket) {
            Ok(notifier) => notifier,
            Err(error) => {
                tracing::warn!(socket, %error, "NOTIFY_SOCKET cannot be used; not notifying");
                None
            }
        };
        let watchdog = watchdog::interval(
            variable("WATCHDOG_USEC").as_deref(),
            variable("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        ServiceManager {
            notifier: notifier.map(std::sync::Arc::new),
            watchdog,
        }
    }

    /// The broker serves: `READY=1` with what it serves, and the watchdog starts (it stops when
    /// the broker begins to shut down).
    pub fn ready(&self, server: &ServerHandle) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let serving = status(&serving(server));
        notifier.send(&format!("READY=1\n{serving}"));
        if let Some(limit) = self.watchdog {
            tracing::info!(
                ?limit,
                "systemd watchdog: keep-alives while the engine progresses"
            );
            let notifier = notifier.clone();
            let broker = std::sync::Arc::downgrade(server.broker());
            let mut shutdown = server.broker().shutdown_signal();
            // After a missed keep-alive the status says why, until the engine progresses again.
            let mut missed = false;
            let keep_alive = watchdog::watch(
                limit / 2,
                move || watchdog::engine_progress(broker.clone()),
                move |verdict| match verdict {
                    Verdict::Alive if missed => {
                        missed = false;
                        tracing::info!("the engine progresses again: watchdog keep-alives resume");
                        notifier.send(&format!("WATCHDOG=1\n{serving}"));
                    }
                    Verdict::Alive => notifier.send("WATCHDOG=1"),
                    Verdict::Missed(reason) => {
                        missed = true;
                        tracing::error!("no watchdog keep-alive: {reason}");
                        notifier.send(&status(&format!("no watchdog keep-alive: {reason}")));
                    }
                },
            );
            tokio::spawn(async move {
                tokio::select! {
                    () = keep_alive => {}
                    _ = shutdown.changed() => {}
                }
            });
        }
    }

    /// Shutdown begins: `STOPPING=1`.
    pub fn stopping(&self) {
        if let Some(notifier) = &self.notifier {
            notifier.send(&format!(
                "STOPPING=1\n{}",
                status("stopping: closing connections, then the store")
            ));
        }
    }
}

/// What a ready broker serves, for `STATUS=`: its listeners, the metrics endpoint, the
/// sessions it restored.
fn serving(server: &ServerHandle) -> String {
    let listeners: Vec<String> = server
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let sessions = server.broker().read(State::counts).sessions;
    let mut text = format!(
        "serving MQTT on {}; {sessions} sessions restored",
        listeners.join(", ")
    );
    if let Some(metrics) = server.metrics_addr() {
        text.push_str(&format!("; metrics on http://{metrics}/metrics"));
    }
    text
}
