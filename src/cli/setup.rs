//! Getting a command ready: the configuration loaded (with the files it names read, for the
//! commands that serve or check it), every problem reported on stderr, and logging started.

use std::io::{self, Write};
use std::path::Path;

use cairn::access::Rules;
use cairn::bridge::Bridge;
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

/// Loads the configuration with `overrides` and reads every file it names as `serve` reads
/// them (each TLS listener's, the password and ACL files, each bridge's password and TLS
/// files), returning one line per problem (each naming its key or file), all of them, when
/// anything is wrong.
pub fn effective_config(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Vec<String>> {
    let config = load_config(file, overrides)?;
    let mut problems = tls_file_problems(&config);
    let access = Rules::file_problems(&config).into_iter();
    problems.extend(access.map(|problem| problem.to_string()));
    for bridge in &config.bridges {
        let files = Bridge::file_problems(bridge).into_iter();
        problems.extend(files.map(|problem| problem.to_string()));
    }
    match problems.is_empty() {
        true => Ok(config),
        false => Err(problems),
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
