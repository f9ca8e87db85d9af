//! The protocol engine: sessions, routing, retained messages, wills, and the per-connection
//! state machine that speaks MQTT 3.1.1 and 5.0 to one client.
//!
//! [`Broker`] is the shared heart: the [`state::State`] behind one mutex (never held across an
//! await), the [`Store`](crate::store::Store) every durable change goes through, and the broker's counters.

pub mod acks;
pub mod aliases;
pub mod connection;
mod engine;
pub mod keep_alive;
pub mod queue;
pub mod session;
pub mod state;
pub mod subscriptions;
pub mod sys;
pub mod topic;
pub mod window;

/// A map of the engine keyed by what clients choose (client identifiers, topics), looked up
/// for every delivery: ahash, several times faster than std's SipHash on short keys, with
/// random keys per process as std's, so identifiers cannot be chosen to collide.
pub type ClientKeyed<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

#[cfg(test)]
pub(crate) use engine::test_broker;
pub use engine::{settle, Broker, Metrics, PerQos};
