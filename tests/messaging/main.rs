//! Message flows and subscriptions, end to end over TCP against a broker started from the
//! library: QoS 0/1/2 in both directions, resends after a reconnect, flow control, offline
//! queues, topic matching and subscription options, shared subscriptions, retained messages,
//! and the MQTT 5 extras (topic aliases, Maximum Packet Size, Message Expiry, forwarded
//! properties). Every test names the normative statements it checks.

#[path = "../common/mod.rs"]
mod common;

mod aliases;
mod flow;
mod matching;
mod offline;
mod properties;
mod qos;
mod queues;
mod resend;
mod retained;
mod shared;
mod subscriptions;
mod support;
