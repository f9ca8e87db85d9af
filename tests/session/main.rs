//! Connection and session rules of MQTT 3.1.1 and 5.0, end to end over TCP against a broker
//! started from the library: CONNECT and CONNACK, keep-alive, session lifetime (Clean Session,
//! Clean Start, Session Expiry Interval), takeover, Will Messages, malformed input on a
//! connected session, and graceful shutdown. Every test names the normative statements it
//! checks.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod connect;
mod flood;
mod idle;
mod keep_alive;
mod malformed;
mod sessions;
mod shutdown;
mod support;
mod takeover;
mod timers;
mod wills;
