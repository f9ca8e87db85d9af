//! The keep-alive sweep: once a tick, every attached connection whose deadline has passed
//! (nothing from the client for 1.5 × Keep Alive [MQTT-3.1.2-24]) is asked to close with
//! 0x8D Keep alive timeout. One task for the whole broker, as Mosquitto checks its clients
//! once a second, instead of a timer per connection, re-armed at every packet: a connection is
//! closed between 1.5 × Keep Alive and one tick later.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::Broker;
use crate::codec::ReasonCode;

/// How often deadlines are looked at.
pub const TICK: Duration = Duration::from_secs(1);

/// Sweeps every `tick` until the broker shuts down.
pub async fn run(broker: Arc<Broker>, tick: Duration) {
    let mut shutdown = broker.shutdown_signal();
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticks.tick() => {
                let closed = sweep(&broker);
                if closed > 0 {
                    tracing::debug!(closed, "closed connections silent for 1.5 x Keep Alive");
                }
            }
        }
    }
}

/// Asks every connection past its deadline to close; returns how many were asked.
fn sweep(broker: &Broker) -> usize {
    let now = broker.clock_ms();
    broker.read(|state| {
        state.close_connections(|signal| {
            signal
                .deadline_passed(now)
                .then_some(ReasonCode::KeepAliveTimeout)
        })
    })
}
