//! Why a configuration cannot be used: [`ConfigError`], and the [`Problem`]s of an invalid
//! one, each naming its key, the value found, where it came from and what is allowed.

use std::fmt::Display;
use std::io;
use std::path::PathBuf;

use super::keys::expected_for;
use super::ENV_PREFIX;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` names a file that does not exist.
    #[error("config file {} does not exist", .path.display())]
    FileNotFound { path: PathBuf },
    /// The config file exists but cannot be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    FileUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The config file is not TOML.
    #[error("config file {} is not valid TOML: {message}", .path.display())]
    Syntax { path: PathBuf, message: String },
    /// The file and the environment could not be combined (e.g. a non-UTF-8 variable).
    #[error("cannot combine the config file and the {ENV_PREFIX}* environment: {message}")]
    Layering { message: String },
    /// One or more keys are unknown or hold values that are not allowed.
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), list_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The individual problems of an [`ConfigError::Invalid`] configuration (else empty).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

/// One thing wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A key that Cairn does not know (a typo, or a setting from another broker).
    #[error("unknown key `{key}`{}; allowed here: {}", in_origin(.origin), .allowed.join(", "))]
    UnknownKey {
        /// Full key path, e.g. `limits.max_inflite`.
        key: String,
        /// The file or environment variable it came from.
        origin: Option<String>,
        /// The keys allowed at that level.
        allowed: Vec<String>,
    },
    /// A key of an earlier release that Cairn no longer reads.
    #[error("`{key}`{} is no longer read: {instead}", in_origin(.origin))]
    ReplacedKey {
        /// Full key path, e.g. `allow_anonymous`.
        key: String,
        /// The file or environment variable it came from.
        origin: Option<String>,
        /// What to write instead.
        instead: &'static str,
    },
    /// A known key whose value is of the wrong type, out of range or in conflict.
    #[error("`{key}`{}: got {value}, expected {expected}", in_origin(.origin))]
    BadValue {
        /// Full key path, e.g. `listeners[0].bind`.
        key: String,
        /// The value found, as written in TOML (or `nothing` when missing).
        value: String,
        /// The file or environment variable it came from, when known.
        origin: Option<String>,
        /// What is allowed.
        expected: String,
    },
}

impl Problem {
    /// The full key path the problem is about.
    pub fn key(&self) -> &str {
        match self {
            Problem::UnknownKey { key, .. }
            | Problem::ReplacedKey { key, .. }
            | Problem::BadValue { key, .. } => key,
        }
    }

    /// A value that is not what the key table says `key` accepts.
    pub(super) fn bad_value(key: impl Into<String>, value: impl Display) -> Problem {
        let key = key.into();
        Problem::BadValue {
            expected: expected_for(&key),
            key,
            value: value.to_string(),
            origin: None,
        }
    }
}

fn in_origin(origin: &Option<String>) -> String {
    origin
        .as_ref()
        .map(|origin| format!(" (from {origin})"))
        .unwrap_or_default()
}

fn list_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| format!("  - {problem}"))
        .collect::<Vec<_>>()
        .join("\n")
}
