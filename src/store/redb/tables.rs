//! The database layout: every table, its key and value types, and the schema version.
//!
//! Keys that belong to a session start with its client identifier, so one range covers all of
//! a session's rows. Values are records of [`super::records`]. Message bodies are stored once
//! per message id, with a reference count of the queue and inflight entries that point at them.

use redb::TableDefinition;

use super::records::RecordError;

/// The database file inside the data directory.
pub const FILE_NAME: &str = "cairn.redb";

/// The layout this build writes. Open refuses a database with a higher one.
pub const SCHEMA_VERSION: u64 = 1;

/// Store-wide values, by name (`META_*` keys).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The layout version of the file.
pub const META_SCHEMA_VERSION: &str = "schema_version";
/// Above every message id ever stored, deleted ones included.
pub const META_NEXT_MESSAGE_ID: &str = "next_message_id";
/// The next value of the store-wide sequence that orders queue and inflight entries.
pub const META_NEXT_SEQUENCE: &str = "next_sequence";

/// client id → session record.
pub const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// (client id, filter) → subscription record.
pub const SUBSCRIPTIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("subscriptions");
/// (client id, sequence) → queue record; oldest first within a session.
pub const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
/// (client id, packet id) → inflight record.
pub const INFLIGHT: TableDefinition<(&str, u16), &[u8]> = TableDefinition::new("inflight");
/// (client id, packet id) of inbound QoS 2 messages awaiting PUBREL.
pub const INBOUND_QOS2: TableDefinition<(&str, u16), ()> = TableDefinition::new("inbound_qos2");
/// client id → will record.
pub const WILLS: TableDefinition<&str, &[u8]> = TableDefinition::new("wills");
/// message id → message record (bodies of queued and inflight deliveries).
pub const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// message id → number of queue and inflight entries referring to its body.
pub const MESSAGE_REFS: TableDefinition<u64, u32> = TableDefinition::new("message_refs");
/// topic → message record of its retained message.
pub const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");

/// The first key after every `(client_id, _)` key of a string-keyed pair: `client_id`
/// followed by NUL, the next string in byte order.
pub fn after_client(client_id: &str) -> String {
    format!("{client_id}\0")
}

/// Why reading or writing the tables failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot start a transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("cannot set the commit's durability: {0}")]
    Durability(#[from] redb::SetDurabilityError),
    #[error("cannot open a table: {0}")]
    Table(#[from] redb::TableError),
    #[error("storage failed: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("commit failed: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("a stored record is unreadable: {0}")]
    Record(#[from] RecordError),
}
