//! Cairn's configuration: the typed settings, their built-in defaults, and loading them from
//! defaults < TOML file < `CAIRN_…` environment variables < command-line overrides, validated
//! with errors that name the key, the value, where it came from and what is allowed.
//!
//! Environment variables are `CAIRN_` followed by the key path in upper case, with `__` (two
//! underscores) between levels, because key names contain single underscores themselves:
//! `CAIRN_DATA_DIR=/var/lib/cairn`, `CAIRN_LIMITS__MAX_INFLIGHT=64`, `CAIRN_LOG__LEVEL=debug`.
//! An empty variable counts as unset. `listeners` is a list of tables and is set only in the
//! file (or replaced by `cairn serve --listen`); `bridges` likewise only in the file.
//!
//! - `types`: the settings and their defaults;
//! - `bridge`: a bridge's addresses as host and port, its queue bounds filled in from `[limits]`;
//! - `load`: the layers, merged and read, and the command-line [`Overrides`];
//! - `tree`: the merged values before they are typed: unknown keys, values of a wrong type;
//! - `keys`: every key and what it accepts, each allowed range stated once;
//! - `checks`: what the types cannot say;
//! - [`reload`]: which keys a reload changes now and which wait for a restart;
//! - `error`: [`ConfigError`] and its [`Problem`]s.
//!
//! This module reads the configuration file and the environment and nothing else: the TLS
//! files named here are opened by `transport::tls`.

mod bridge;
mod checks;
mod error;
mod keys;
mod load;
mod log_filter;
pub mod reload;
#[cfg(test)]
mod tests;
mod tree;
mod types;

use std::path::Path;

pub use bridge::{AddressError, BridgeAddress, QueueBounds};
pub use error::{ConfigError, Problem};
pub use load::Overrides;
pub use log_filter::parse_log_filter;
pub use types::{
    AuthMode, BridgeConfig, BridgeProtocol, BridgeQueue, BridgeTls, BridgeTopic,
    CertificateIdentity, ClientAuth, Config, Direction, Limits, ListenerConfig, ListenerKind,
    LogConfig, MetricsConfig, QueueFullPolicy, StoreConfig, TlsConfig,
};

/// Environment variables that override the configuration start with this.
pub const ENV_PREFIX: &str = "CAIRN_";
/// Separates the levels of a key path in an environment variable name.
pub const ENV_LEVEL_SEPARATOR: &str = "__";

impl Config {
    /// Built-in defaults < TOML file (if given) < `CAIRN_…` environment variables (see the
    /// module documentation for their names), then validated. Returns every problem found
    /// (all unknown keys, all values of a wrong type, every failed check) when possible.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_overrides(file, &Overrides::default())
    }

    /// Like [`Config::load`], with command-line `overrides` applied before validation.
    pub fn load_with_overrides(
        file: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        load::load_layers(file, load::cairn_environment(None), overrides)
    }

    /// How the clients of `listener` prove who they are: its `auth`, else passwords when a
    /// password file is set, else none.
    pub fn listener_auth(&self, listener: &ListenerConfig) -> AuthMode {
        listener.auth.unwrap_or(if self.password_file.is_some() {
            AuthMode::Password
        } else {
            AuthMode::Anonymous
        })
    }

    /// How many threads serve connections on a machine with `cores` CPU cores: the
    /// configured number, or automatically one fewer than the cores (at least one). The
    /// store's writer thread runs beside them and, under load, keeps most of a core busy with
    /// its group commits; a worker per core as well oversubscribes the cores, and on two
    /// cores two workers cost more in thread wake-ups and handing tasks between them than
    /// the second one brings (see the README's speed section). One worker runs tokio's
    /// current-thread scheduler (`cli/serve.rs`).
    pub fn worker_threads(&self, cores: usize) -> usize {
        match self.worker_threads {
            0 => cores.saturating_sub(1).max(1),
            configured => usize::try_from(configured).unwrap_or(usize::MAX),
        }
    }

    /// Checks values serde cannot: ranges, at least one listener, a `tls` table exactly on
    /// TLS listeners, `client_auth`/`identity` only with `client_ca`, bind addresses used
    /// once, each listener's `auth` possible with its settings, a parsable log filter, every
    /// bridge's settings and topic rules. Reports every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = checks::problems(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}
