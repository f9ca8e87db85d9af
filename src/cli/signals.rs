//! The signals `cairn serve` answers: SIGINT and SIGTERM stop the broker, SIGHUP reloads the
//! configuration.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

/// What a signal asks of the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGINT (Ctrl-C) or SIGTERM (systemd, docker stop), named: stop gracefully.
    Stop(&'static str),
    /// SIGHUP (`systemctl reload`): read the configuration again and apply what changed.
    Reload,
}

/// The signals `cairn serve` handles, installed before the broker starts so that an early
/// one does not take its default action (which would kill the broker).
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.interrupt.recv() => Request::Stop("SIGINT"),
            _ = self.terminate.recv() => Request::Stop("SIGTERM"),
            _ = self.hangup.recv() => Request::Reload,
        }
    }

    /// Waits for a signal that stops the broker and comes `after` from now or later, and
    /// names it; a SIGHUP meanwhile (during shutdown), and stop signals sooner, are ignored.
    pub async fn next_stop_after(&mut self, after: Duration) -> &'static str {
        let from = Instant::now() + after;
        loop {
            if let Request::Stop(name) = self.next().await {
                if Instant::now() >= from {
                    return name;
                }
            }
        }
    }
}
