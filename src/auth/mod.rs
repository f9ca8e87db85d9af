//! STUB (replaced by the helper's module): password and ACL files.
pub mod acl;
pub mod password_file;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read {}: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
}
