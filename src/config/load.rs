//! Loading: built-in defaults < TOML file < `CAIRN_…` environment variables < command-line
//! [`Overrides`], merged into one tree of values, read into a [`Config`] and checked, with
//! every problem named by its key and where its value came from. Reads the file and the
//! environment and nothing else.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ::config::{Environment, File, FileFormat, Map, Source, Value, ValueKind};

use super::checks;
use super::error::{ConfigError, Problem};
use super::keys::{split_index, CONFIG_KEYS};
use super::tree::{
    describe_origin, deserialize_config, remove_unknown_keys_and_wrong_types, value_at,
};
use super::types::{Config, ListenerConfig, ListenerKind};
use super::{ENV_LEVEL_SEPARATOR, ENV_PREFIX};

/// Settings given on the command line; they win over the file and the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// When not empty, replaces every configured listener with plain TCP ones at these
    /// addresses.
    pub listen: Vec<SocketAddr>,
    /// When set, replaces `data_dir`.
    pub data_dir: Option<PathBuf>,
}

impl Overrides {
    /// The command-line flag that set `key` (e.g. `listeners[0].bind`), if one did.
    fn flag_setting(&self, key: &str) -> Option<&'static str> {
        match split_index(key.split('.').next().unwrap_or(key)).0 {
            "listeners" if !self.listen.is_empty() => Some("--listen"),
            "data_dir" if self.data_dir.is_some() => Some("--data-dir"),
            _ => None,
        }
    }

    fn apply_to(&self, config: &mut Config) {
        if !self.listen.is_empty() {
            config.listeners = self
                .listen
                .iter()
                .map(|&bind| ListenerConfig {
                    bind,
                    kind: ListenerKind::Tcp,
                    tls: None,
                    auth: None,
                    path: None,
                })
                .collect();
        }
        if let Some(data_dir) = &self.data_dir {
            config.data_dir = data_dir.clone();
        }
    }
}

/// The `CAIRN_…` environment source; `vars` replaces the process environment (for tests).
pub fn cairn_environment(vars: Option<Map<String, String>>) -> Environment {
    let prefix = ENV_PREFIX.trim_end_matches('_');
    Environment::with_prefix(prefix)
        .prefix_separator("_")
        .separator(ENV_LEVEL_SEPARATOR)
        .ignore_empty(true)
        .source(vars)
}

/// Reads the file and `environment` into one tree, then reports, in this order, unknown keys,
/// values of a wrong type, and (only when every value could be read) what the checks find
/// once `overrides` are applied.
pub fn load_layers(
    file: Option<&Path>,
    environment: Environment,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut tree = read_layers(file, environment)?;
    let mut problems = Vec::new();
    let mut mistyped = Vec::new();
    if let ValueKind::Table(table) = &mut tree.kind {
        remove_unknown_keys_and_wrong_types(
            table,
            CONFIG_KEYS,
            "",
            file,
            &mut problems,
            &mut mistyped,
        );
    }
    if let Some(mut config) = deserialize_config(&tree, file, mistyped, &mut problems) {
        overrides.apply_to(&mut config);
        let checked = checks::problems(&config).into_iter();
        problems.extend(checked.map(|problem| with_origin(problem, &tree, file, overrides)));
        if problems.is_empty() {
            return Ok(config);
        }
    }
    Err(ConfigError::Invalid(problems))
}

/// Merges the file (if any) and the environment into one tree of values; the built-in
/// defaults are filled in later by serde (`#[serde(default)]`).
fn read_layers(file: Option<&Path>, environment: Environment) -> Result<Value, ConfigError> {
    let mut builder = ::config::Config::builder();
    if let Some(path) = file {
        let text = read_config_file(path)?;
        builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    }
    let layered = builder
        .add_source(environment)
        .build()
        .map_err(|error| layering_error(error, file))?;
    let table = layered.collect().map_err(|error| ConfigError::Layering {
        message: error.to_string(),
    })?;
    Ok(Value::new(None, ValueKind::Table(table)))
}

fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    fs::read_to_string(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ConfigError::FileNotFound {
            path: path.to_path_buf(),
        },
        _ => ConfigError::FileUnreadable {
            path: path.to_path_buf(),
            source,
        },
    })
}

fn layering_error(error: ::config::ConfigError, file: Option<&Path>) -> ConfigError {
    match (error, file) {
        (::config::ConfigError::FileParse { cause, .. }, Some(path)) => ConfigError::Syntax {
            path: path.to_path_buf(),
            message: cause.to_string(),
        },
        (error, _) => ConfigError::Layering {
            message: error.to_string(),
        },
    }
}

/// `problem` from a check, with where its value came from: a command-line flag, an
/// environment variable or the file (nothing for a built-in default).
fn with_origin(
    problem: Problem,
    tree: &Value,
    file: Option<&Path>,
    overrides: &Overrides,
) -> Problem {
    let Problem::BadValue {
        key,
        value,
        origin: None,
        expected,
    } = problem
    else {
        return problem;
    };
    let origin = match overrides.flag_setting(&key) {
        Some(flag) => Some(flag.to_string()),
        None => describe_origin(&key, value_at(tree, &key), file),
    };
    Problem::BadValue {
        key,
        value,
        origin,
        expected,
    }
}
