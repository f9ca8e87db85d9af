//! The bridge, end to end: a Cairn with a `[[bridges]]` section forwarding to a real upstream
//! (a second Cairn, Mosquitto, an ejabberd cluster) over loopback, through a fault-injecting
//! proxy where the scenario needs a bad link. Each scenario counts the messages that arrive,
//! checks their order and looks for duplicates. `kit` checks the test kit itself (the proxy and
//! the upstream brokers of `tests/common`).

#[path = "../common/mod.rs"]
mod common;

mod access;
mod cairn_upstream;
mod ejabberd_upstream;
mod faults;
mod kills;
mod kit;
mod mosquitto_upstream;
mod reload;
mod rotation;
mod scripted;
mod support;
mod thread;
