//! Getting a command ready: the configuration loaded (with the TLS files tried, for the
//! commands that listen), every problem reported on stderr, and logging started.

use std::io::{self, Write};
use std::path::Path;

use cairn::config::{Config, ConfigError, Overrides};
use cairn::transport::tls;

use super::logging;
use super::{Explained, Outcome};

/// Loads the configuration with `overrides`, returning one line per problem (each naming its
/// key) when anything is wrong.
pub fn load_config(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Vec<String>> {
    Config::load_with_overrides(file, overrides).map_err(|error| match error {
        ConfigError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    })
}

/// Loads the configuration with `overrides` and tries every TLS listener's files, returning
/// one line per problem (each naming its key) when anything is wrong.
pub fn effective_config(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Vec<String>> {
    let config = load_config(file, overrides)?;
    let tls_problems = tls_file_problems(&config);
    match tls_problems.is_empty() {
        true => Ok(config),
        false => Err(tls_problems),
    }
}

/// Builds each TLS listener's acceptor once, so bad certificate files are configuration
/// errors (exit 2) found by `check-config` too, not start-up failures.
fn tls_file_problems(config: &Config) -> Vec<String> {
    config
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, listener)| listener.kind.uses_tls())
        .filter_map(|(index, listener)| Some((index, listener.tls.as_ref()?)))
        .filter_map(|(index, files)| {
            let error = tls::acceptor(files).err()?;
            Some(format!("`listeners[{index}].tls`: {error}"))
        })
        .collect()
}

pub fn report_problems(problems: &[String], err: &mut dyn Write) {
    // Nothing sensible is left to do if stderr itself cannot be written.
    let _ = writeln!(err, "cairn: the configuration cannot be used:");
    for problem in problems {
        let _ = writeln!(err, "  error: {problem}");
    }
}

/// A loaded configuration with logging started, or the outcome to exit with: the problems
/// are reported on stderr.
pub fn ready_to_run(loaded: Result<Config, Vec<String>>) -> Result<Config, Outcome> {
    let config = loaded.map_err(|problems| {
        report_problems(&problems, &mut io::stderr());
        Outcome::BadConfig
    })?;
    start_logging(&config)?;
    Ok(config)
}

/// Installs the logger with the configured level, reporting a failure on stderr as the
/// outcome to exit with.
fn start_logging(config: &Config) -> Result<(), Outcome> {
    let filter = logging::filter(&config.log.level).map_err(|error| {
        let _ = writeln!(io::stderr(), "cairn: {}", Explained(&error));
        Outcome::BadConfig
    })?;
    logging::install(filter).map_err(|error| {
        let _ = writeln!(io::stderr(), "cairn: {}", Explained(&error));
        Outcome::RuntimeError
    })
}
