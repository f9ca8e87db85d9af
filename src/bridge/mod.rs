//! Bridges: links from this broker to upstream brokers (a cloud broker, another Cairn), each
//! configured by a `[[bridges]]` table.
//!
//! - `topics`: which topics a bridge carries and how their names change on the way (Mosquitto's
//!   `topic` rules with their prefixes); pure string work, no I/O;
//! - `identity`: who a bridge is upstream: its client id and the password from its file.
//!
//! The link itself (the upstream connection, its durable outbound queue, reconnects) is being
//! built; until it lands, a configured bridge is validated but not started.

pub mod identity;
pub mod topics;
