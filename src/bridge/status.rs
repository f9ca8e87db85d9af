//! What a bridge shows of itself: its link state with the reason, and its counters. Published
//! under `$SYS/broker/bridge/<name>/` with the queue figures the engine knows, and logged once
//! per change of state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Where a bridge's uplink stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Dialling an address, or waiting for its CONNACK.
    Connecting { address: String },
    /// Connected: the queue drains upstream.
    Connected { address: String },
    /// Waiting before the next attempt, and why.
    Backoff { reason: String, seconds: u64 },
    /// The broker is stopping.
    Stopped,
}

impl LinkState {
    /// The name of every kind of state, as [`LinkState::name`] gives them.
    pub const NAMES: [&'static str; 4] = ["connecting", "connected", "backoff", "stopped"];

    /// The kind of state, without its details: one of [`LinkState::NAMES`].
    pub fn name(&self) -> &'static str {
        match self {
            LinkState::Connecting { .. } => "connecting",
            LinkState::Connected { .. } => "connected",
            LinkState::Backoff { .. } => "backoff",
            LinkState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkState::Connecting { address } => write!(f, "connecting to {address}"),
            LinkState::Connected { address } => write!(f, "connected to {address}"),
            LinkState::Backoff { reason, seconds } => {
                write!(f, "backoff {seconds} s: {reason}")
            }
            LinkState::Stopped => write!(f, "stopped"),
        }
    }
}

/// The live status of one bridge, shared by its task and the `$SYS` publisher.
#[derive(Debug)]
pub struct BridgeStatus {
    pub name: String,
    state: Mutex<LinkState>,
    last_error: Mutex<String>,
    /// Messages the upstream acknowledged (or took, at QoS 0).
    pub sent: AtomicU64,
    /// Messages that left the queue without reaching upstream (larger than the server's
    /// Maximum Packet Size, refused by it, or expired), and messages from a 3.1.1 upstream
    /// larger than `limits.max_packet_size`, skipped.
    pub dropped: AtomicU64,
    /// Connections made to the upstream, across restarts by a reload (the status is kept):
    /// all but the first are reconnects.
    pub connections: AtomicU64,
    /// Messages received from upstream and published locally.
    pub received: AtomicU64,
}

impl BridgeStatus {
    pub fn new(name: &str) -> BridgeStatus {
        BridgeStatus {
            name: name.to_string(),
            state: Mutex::new(LinkState::Stopped),
            last_error: Mutex::new(String::new()),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// Moves to `state`, with one log line when it differs from the current one.
    pub fn set(&self, state: LinkState) {
        let Ok(mut current) = self.state.lock() else {
            return;
        };
        if *current == state {
            return;
        }
        match &state {
            LinkState::Backoff { .. } => tracing::warn!(bridge = %self.name, "{state}"),
            _ => tracing::info!(bridge = %self.name, "{state}"),
        }
        *current = state;
    }

    /// Records the last error (also told by the next state's reason).
    pub fn error(&self, error: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = error.to_string();
        }
    }

    pub fn state(&self) -> LinkState {
        self.state
            .lock()
            .map(|state| state.clone())
            .unwrap_or(LinkState::Stopped)
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|last| last.clone())
            .unwrap_or_default()
    }

    pub fn count(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}
