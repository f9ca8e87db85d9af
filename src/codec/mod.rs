//! The MQTT 3.1.1 and 5.0 wire format: packet types, properties, reason codes, and their
//! encoding and decoding over `bytes`.
//!
//! Pure: no I/O, no tokio, no clocks. Every malformed input is a `DecodeError` naming what is
//! wrong, never a panic. The maximum packet size is enforced from the fixed header, before the
//! body is buffered.

mod decode;
mod encode;
mod error;
mod packet;
mod primitives;
mod properties;
mod property_wire;
mod reason;
mod rules;

pub use decode::{decode, decode_publish_head, Head, PublishHead};
pub use encode::{encode, encoded_len, publish_len};
pub use error::{DecodeError, EncodeError, RuleError};
pub use packet::*;
pub use properties::{id as property_id, Properties};
pub use reason::ReasonCode;
