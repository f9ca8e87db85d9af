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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_documented_convention() {
        assert_eq!(ExitCode::from(Outcome::Success), ExitCode::from(0));
        assert_eq!(ExitCode::from(Outcome::RuntimeError), ExitCode::from(1));
        assert_eq!(ExitCode::from(Outcome::BadConfig), ExitCode::from(2));
    }
}
