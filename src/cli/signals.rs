//! The signals `cairn serve` answers: SIGINT and SIGTERM stop the broker, SIGHUP is logged.

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

/// SIGINT (Ctrl-C) and SIGTERM (systemd, docker stop) stop the broker; SIGHUP (`systemctl
/// reload`) is caught so that its default action does not kill the broker, and only logged.
pub struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub fn install() -> anyhow::Result<ShutdownSignals> {
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    /// Waits for the next signal that stops the broker and names it; a SIGHUP meanwhile is
    /// logged and otherwise ignored.
    pub async fn next(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return "SIGINT",
                _ = self.terminate.recv() => return "SIGTERM",
                _ = self.hangup.recv() => tracing::warn!(
                    "SIGHUP received: reloading is not supported yet; the configuration was not \
                     re-read and the broker keeps running with the one it started with"
                ),
            }
        }
    }
}
