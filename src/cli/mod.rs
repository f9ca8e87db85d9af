//! The commands of the `cairn` binary, one module each, and what they share: how `cairn` ends
//! ([`Outcome`], the exit code), loading the configuration for a command, printing and
//! logging. The command line itself (clap) and the dispatch are in `main.rs`.

pub mod check_config;
mod logging;
#[cfg(feature = "man")]
pub mod man;
pub mod passwd;
mod print;
mod reload;
pub mod serve;
mod setup;
mod signals;
pub mod store_admin;

use std::fmt;
use std::process::ExitCode;

/// How `cairn` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    RuntimeError,
    BadConfig,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        ExitCode::from(match outcome {
            Outcome::Success => 0,
            Outcome::RuntimeError => 1,
            Outcome::BadConfig => 2,
        })
    }
}

/// An error and its causes, as `{:#}` prints an `anyhow::Error` (`outer: cause: cause`), but
/// saying each once: a cause whose text the line already ends with is left out. Many errors,
/// ours among them, end their message with their cause's (`cannot listen on 127.0.0.1:1883:
/// Address already in use`), which `{:#}` then printed twice.
pub struct Explained<'a>(pub &'a anyhow::Error);

impl fmt::Display for Explained<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        for cause in self.0.chain() {
            let text = cause.to_string();
            if line.is_empty() {
                line = text;
            } else if !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
        }
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    /// An error that ends its message with its cause's, as thiserror's `{source}` does.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:1883: {source}")]
    struct Bind {
        source: io::Error,
    }

    fn in_use() -> io::Error {
        io::Error::new(io::ErrorKind::AddrInUse, "Address already in use")
    }

    #[test]
    fn a_cause_the_message_already_says_is_printed_once() {
        let error =
            anyhow::Error::new(Bind { source: in_use() }).context("cannot start the broker");
        assert_eq!(
            Explained(&error).to_string(),
            "cannot start the broker: cannot listen on 127.0.0.1:1883: Address already in use"
        );
    }

    #[test]
    fn causes_the_message_does_not_say_are_all_printed() {
        let error = anyhow::Error::new(in_use())
            .context("cannot bind the metrics endpoint")
            .context("cannot start the broker");
        assert_eq!(
            Explained(&error).to_string(),
            "cannot start the broker: cannot bind the metrics endpoint: Address already in use"
        );
    }

    #[test]
    fn exit_codes_follow_the_documented_convention() {
        assert_eq!(ExitCode::from(Outcome::Success), ExitCode::from(0));
        assert_eq!(ExitCode::from(Outcome::RuntimeError), ExitCode::from(1));
        assert_eq!(ExitCode::from(Outcome::BadConfig), ExitCode::from(2));
    }
}
