//! A session's Will together with who set it: the engine checks the sender against the ACL
//! in force when the Will is sent, the store keeps both, and recovery gives both back.

use std::sync::Arc;

use crate::codec::Will;

/// Who set a session's Will: the ACL in force when the Will is sent must let them write its
/// topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WillSender {
    /// Not known: the Will was read back from a record written by a build that did not store
    /// the sender's user name. Such a Will was checked against the ACL when its CONNECT was
    /// accepted, and goes out without being checked again.
    #[default]
    Unknown,
    /// The client that set it, logged in with this user name (`None`: anonymous).
    Client(Option<Arc<str>>),
}

/// A session's Will and who set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWill {
    pub will: Will,
    pub sender: WillSender,
}
