//! The shared vocabulary of the engine and the store: application messages and their
//! per-receiver deliveries, the outbound flow states, sessions' Wills with their senders, the
//! change records the engine hands the store, and the snapshot the store reads back at
//! start-up. Both `broker` and `store` import this module; it imports neither (only `codec`).

mod change;
mod message;
mod recovered;
mod will;

pub use change::StoreOp;
pub use message::{
    boxed_unless_empty, entry_size, unix_seconds, Delivery, Inflight, Message, OutboundState,
    FIRST_RELEASE_ORDER,
};
pub use recovered::{Recovered, RecoveredSession, StoredEntry};
pub use will::{SessionWill, WillSender};
