//! Who may connect and what they may touch, as files: Mosquitto's password file
//! ([`PasswordFile`], `password_file.rs`) and ACL file ([`Acl`], `acl.rs`, matching its rules
//! against topics in `filter.rs`), read exactly as Mosquitto 2.0 reads them so a gateway moves
//! from Mosquitto by copying the files.
//!
//! Pure: it reads a file when asked and answers questions about it. It never imports the rest of
//! the crate, never logs, and never decides what happens to a connection (the engine does).

mod acl;
mod filter;
mod password_file;

pub use acl::{Access, Acl, Who};
pub use password_file::{check_user_name, EntryError, PasswordFile};

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A password or ACL file that cannot be used; the broker refuses to start or reload with it.
/// The message names the file and, for a bad line, its number and what is wrong with it, never
/// a stored hash.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("{}, line {line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        /// Counted from 1.
        line: usize,
        problem: LineProblem,
    },
}

impl AuthFileError {
    fn line(path: &Path, line: usize, problem: LineProblem) -> AuthFileError {
        AuthFileError::Line {
            path: path.to_path_buf(),
            line,
            problem,
        }
    }
}

/// What is wrong with one line of a password or ACL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    // The password file.
    /// Neither blank, a comment, nor `user:hash`.
    MissingColon,
    EmptyUser,
    /// The same user on an earlier line.
    DuplicateUser {
        user: String,
        first_line: usize,
    },
    /// The hash is not `$6$…` or `$7$…` (a plain-text password, or another scheme).
    UnknownHashScheme {
        user: String,
    },
    /// A `$6$`/`$7$` hash whose fields cannot be read; `what` names the field.
    BadHash {
        user: String,
        what: &'static str,
    },
    // The ACL file.
    /// The first word is not `user`, `topic` or `pattern` (words are separated by spaces).
    UnknownKeyword(String),
    MissingUserName,
    MissingTopic,
    BadAccess(String),
    InvalidFilter(String),
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::MissingColon => {
                write!(f, "expected `user:hash`, a comment (#) or a blank line")
            }
            LineProblem::EmptyUser => write!(f, "the user name before ':' is empty"),
            LineProblem::DuplicateUser { user, first_line } => {
                write!(f, "user {user:?} is already on line {first_line}")
            }
            LineProblem::UnknownHashScheme { user } => write!(
                f,
                "the password of user {user:?} is not a $7$ (PBKDF2-SHA512) or $6$ (SHA-512) \
                 hash; write it with `cairn passwd` or `mosquitto_passwd`"
            ),
            LineProblem::BadHash { user, what } => {
                write!(f, "the password hash of user {user:?} has {what}")
            }
            LineProblem::UnknownKeyword(word) => write!(
                f,
                "unknown keyword {word:?}: expected `user`, `topic` or `pattern` (separated from \
                 what follows by spaces), a comment (#) or a blank line"
            ),
            LineProblem::MissingUserName => write!(f, "`user` without a user name"),
            LineProblem::MissingTopic => write!(f, "no topic filter"),
            LineProblem::BadAccess(word) => write!(
                f,
                "unknown access {word:?}: expected read, write, readwrite or deny before the \
                 topic filter"
            ),
            LineProblem::InvalidFilter(filter) => write!(
                f,
                "{filter:?} is not a valid topic filter ('+' and '#' must fill a whole level, \
                 '#' only the last)"
            ),
        }
    }
}

/// The text of the file at `path`, or the error that names it.
fn read_text(path: &Path) -> Result<String, AuthFileError> {
    let bytes = std::fs::read(path).map_err(|source| AuthFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| AuthFileError::NotText {
        path: path.to_path_buf(),
    })
}

/// Whether C's `isspace` is true for `c`: what Mosquitto trims.
fn is_blank(c: char) -> bool {
    c.is_ascii_whitespace() || c == '\x0b'
}

/// `text` without blanks at either end (Mosquitto's `misc__trimblanks`).
fn trim_blanks(text: &str) -> &str {
    text.trim_matches(is_blank)
}
