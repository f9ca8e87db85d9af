//! The database layout: every table, its key and value types, and the schema version.
//!
//! Keys that belong to a session start with its client identifier, so one range covers all of
//! a session's rows. Values are records of [`super::records`]. Message bodies are stored once
//! per message id, with a reference count of the queue and inflight entries that point at them.

use redb::TableDefinition;

use super::records::RecordError;

/// The database file inside the data directory.
pub const FILE_NAME: &str = "cairn.redb";

/// The layout this build reads and writes. Open refuses a database with another one.
/// Version 2: queue entries are numbered per session and record their size.
pub const SCHEMA_VERSION: u64 = 2;

/// Store-wide values, by name (`META_*` keys).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The layout version of the file.
pub const META_SCHEMA_VERSION: &str = "schema_version";

/// client id → session record.
pub const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// (client id, filter) → subscription record.
pub const SUBSCRIPTIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("subscriptions");
/// (client id, sequence number) → queue record; oldest first within a session. The engine
/// numbers each session's entries; they leave from the front, so the numbers are contiguous.
pub const QUEUE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue");
/// (client id, packet id) → inflight record.
pub const INFLIGHT: TableDefinition<(&str, u16), &[u8]> = TableDefinition::new("inflight");
/// (client id, packet id) of inbound QoS 2 messages awaiting PUBREL.
pub const INBOUND_QOS2: TableDefinition<(&str, u16), ()> = TableDefinition::new("inbound_qos2");
/// client id → will record.
pub const WILLS: TableDefinition<&str, &[u8]> = TableDefinition::new("wills");
/// message id → message record (bodies of queued and inflight deliveries).
pub const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// message id → number of queue and inflight entries referring to its body, when more than
/// one (a stored body without a row has exactly one).
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

impl DbError {
    /// Whether the operating system failed an I/O request (a full or failing disk, a denied
    /// permission): says nothing about what the file holds, unlike a corrupt page or record.
    pub fn is_io(&self) -> bool {
        let storage = match self {
            DbError::Transaction(redb::TransactionError::Storage(storage))
            | DbError::Table(redb::TableError::Storage(storage))
            | DbError::Commit(redb::CommitError::Storage(storage))
            | DbError::Storage(storage) => storage,
            DbError::Durability(_)
            | DbError::Transaction(_)
            | DbError::Table(_)
            | DbError::Commit(_)
            | DbError::Record(_) => return false,
        };
        matches!(storage, redb::StorageError::Io(error) if error.kind() != std::io::ErrorKind::InvalidData)
    }
}
