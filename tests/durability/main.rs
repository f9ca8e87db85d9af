//! Durability across restarts and crashes: persistent sessions, their subscriptions,
//! queues, inflight windows and inbound QoS 2 state, wills and retained messages after a
//! graceful restart of a library broker and after `kill -9` of the real `cairn` binary; session
//! expiry counted in wall-clock time while the broker is down; the store refusing a second
//! broker on its directory or a garbage file; and a seeded crash loop that kills the broker
//! under QoS 1/2 load and checks that nothing acknowledged is lost and no QoS 2 message is
//! delivered twice; a reboot storm of persistent clients whose acknowledged sessions and
//! subscriptions survive `kill -9`; and seeded random sequences of connects, takeovers,
//! disconnects, restarts and kills checked step by step against a model of MQTT's sessions.
//!
//! Each test names the promise of /work/shared/design.md it checks ("promise 1": nothing
//! acknowledged is lost; "promise 2": sessions outlive connections and reboots) and the spec
//! statements involved.

#[path = "../common/mod.rs"]
mod common;

mod crash;
mod diskfull;
mod expiry;
mod kill;
mod order;
mod process;
mod refusal;
mod restart;
mod sequences;
mod storm;
mod support;
mod wills;
