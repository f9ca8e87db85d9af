//! The `cairn` command: `serve` runs the broker in the foreground until SIGINT or SIGTERM,
//! `check-config` prints the effective configuration or every problem in it. This file owns
//! the command line, exit codes and logging set-up; the broker itself lives in the library.
//!
//! Exit codes: 0 success, 2 bad configuration or usage, 1 runtime error.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

use cairn::config::{Config, ConfigError, ListenerKind, Overrides};
use cairn::server::Server;
use cairn::transport::tls;

/// Cairn, a durable MQTT 3.1.1 + 5.0 broker for edge gateways.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker in the foreground until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Print the effective configuration as TOML, or every problem in it (exit code 2).
    CheckConfig(ConfigFileArg),
}

#[derive(Debug, Args)]
struct ConfigFileArg {
    /// TOML configuration file; without it, built-in defaults and CAIRN_* variables apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    file: ConfigFileArg,
    /// Listen with plain TCP on ADDR instead of the configured listeners (repeatable).
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// Keep data in DIR instead of the configured `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

/// How `cairn` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
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

fn main() -> ExitCode {
    // clap exits by itself: 0 for --help/--version, 2 for usage errors.
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::CheckConfig(args) => {
            check_config(args.config.as_deref(), &mut io::stdout(), &mut io::stderr())
        }
    };
    outcome.into()
}

/// Loads the configuration with `overrides` and tries every TLS listener's files, returning
/// one line per problem (each naming its key) when anything is wrong.
fn effective_config(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Vec<String>> {
    let config = Config::load_with_overrides(file, overrides).map_err(|error| match error {
        ConfigError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    })?;
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
        .filter(|(_, listener)| listener.kind == ListenerKind::Tls)
        .filter_map(|(index, listener)| Some((index, listener.tls.as_ref()?)))
        .filter_map(|(index, files)| {
            let error = tls::acceptor(files).err()?;
            Some(format!("`listeners[{index}].tls`: {error}"))
        })
        .collect()
}

fn report_problems(problems: &[String], err: &mut dyn Write) {
    // Nothing sensible is left to do if stderr itself cannot be written.
    let _ = writeln!(err, "cairn: the configuration cannot be used:");
    for problem in problems {
        let _ = writeln!(err, "  error: {problem}");
    }
}

/// `cairn check-config`: the effective configuration as TOML on `out` (exit 0), or every
/// problem on `err` (exit 2).
fn check_config(file: Option<&Path>, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
    let config = match effective_config(file, &Overrides::default()) {
        Ok(config) => config,
        Err(problems) => {
            report_problems(&problems, err);
            return Outcome::BadConfig;
        }
    };
    let printed = toml::to_string(&config)
        .context("cannot print the configuration as TOML")
        .and_then(|text| {
            out.write_all(text.as_bytes())
                .context("cannot write to stdout")
        });
    match printed {
        Ok(()) => Outcome::Success,
        Err(error) => {
            let _ = writeln!(err, "cairn: {error:#}");
            Outcome::RuntimeError
        }
    }
}

/// `cairn serve`: load, set up logging, run until a signal, shut down gracefully.
fn serve(args: &ServeArgs) -> Outcome {
    let config = match effective_config(args.file.config.as_deref(), &args.overrides()) {
        Ok(config) => config,
        Err(problems) => {
            report_problems(&problems, &mut io::stderr());
            return Outcome::BadConfig;
        }
    };
    let filter = match logging::filter(&config.log.level) {
        Ok(filter) => filter,
        Err(error) => {
            let _ = writeln!(io::stderr(), "cairn: {error:#}");
            return Outcome::BadConfig;
        }
    };
    if let Err(error) = logging::install(filter) {
        let _ = writeln!(io::stderr(), "cairn: {error:#}");
        return Outcome::RuntimeError;
    }
    match run(config) {
        Ok(()) => Outcome::Success,
        Err(error) => {
            tracing::error!("{error:#}");
            Outcome::RuntimeError
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(serve_until_signal(config))
}

async fn serve_until_signal(config: Config) -> anyhow::Result<()> {
    // Installed before the broker starts, so an early signal is not fatal.
    let mut signals = ShutdownSignals::install()?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "cairn starting");
    let handle = Server::start(config)
        .await
        .context("cannot start the broker")?;
    let addrs: Vec<String> = handle
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(listening = addrs.join(" "), "broker ready");
    let first = signals.next().await;
    tracing::info!(signal = first, "shutting down");
    tokio::select! {
        () = handle.shutdown() => {
            tracing::info!("stopped");
            Ok(())
        }
        second = signals.next() => {
            anyhow::bail!("{second} during shutdown: stopping without waiting")
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM (systemd, docker stop).
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<ShutdownSignals> {
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    /// Waits for the next signal and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Logging: `tracing` events filtered by `log.level` (or `RUST_LOG`), written to stderr, or
/// to the systemd journal when the process runs under systemd with its output connected to
/// the journal.
mod logging {
    use std::fmt::{self, Write as _};
    use std::io::IsTerminal;

    use anyhow::Context;
    use systemd_journal_logger::{connected_to_journal, JournalLog};
    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};

    /// Installs the global subscriber: to the journal when stderr is connected to it (falling
    /// back to stderr if the journal cannot be opened), else to stderr.
    pub fn install(filter: EnvFilter) -> anyhow::Result<()> {
        let journal = connected_to_journal().then(JournalLog::new);
        match journal {
            Some(Ok(journal)) => tracing_subscriber::registry()
                .with(JournalLayer { journal }.with_filter(filter))
                .try_init(),
            Some(Err(error)) => stderr_subscriber(filter).try_init().map(|()| {
                tracing::warn!(%error, "cannot open the systemd journal; logging to stderr");
            }),
            None => stderr_subscriber(filter).try_init(),
        }
        .context("cannot install the logger")
    }

    fn stderr_subscriber(filter: EnvFilter) -> impl Subscriber + Send + Sync {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            // Its complaint about a closed stderr would go to stderr and panic.
            .log_internal_errors(false)
            .finish()
    }

    /// `RUST_LOG` when set and not empty, else the configured `log.level`.
    pub fn filter(configured_level: &str) -> anyhow::Result<EnvFilter> {
        let (setting, directives) = match std::env::var(EnvFilter::DEFAULT_ENV) {
            Ok(from_env) if !from_env.is_empty() => ("RUST_LOG", from_env),
            _ => ("log.level", configured_level.to_string()),
        };
        // The parse error's source repeats its message, so only its own text is kept.
        EnvFilter::try_new(&directives).map_err(|error| {
            anyhow::anyhow!("{setting} = {directives:?} is not a tracing filter: {error}")
        })
    }

    /// Sends each event to journald as one entry (priority from the level).
    struct JournalLayer {
        journal: JournalLog,
    }

    impl<S: Subscriber> Layer<S> for JournalLayer {
        fn on_event(&self, event: &Event<'_>, _context: LayerContext<'_, S>) {
            let metadata = event.metadata();
            let mut text = EventText::default();
            event.record(&mut text);
            // A logger has nowhere to report its own failure; the entry is dropped.
            let _ = self.journal.journal_send(
                &log::Record::builder()
                    .level(log_level(*metadata.level()))
                    .target(metadata.target())
                    .module_path(metadata.module_path())
                    .file(metadata.file())
                    .line(metadata.line())
                    .args(format_args!("{}", text.0))
                    .build(),
            );
        }
    }

    fn log_level(level: Level) -> log::Level {
        match level {
            Level::ERROR => log::Level::Error,
            Level::WARN => log::Level::Warn,
            Level::INFO => log::Level::Info,
            Level::DEBUG => log::Level::Debug,
            Level::TRACE => log::Level::Trace,
        }
    }

    /// An event as one line: its message, then `name=value` for every other field.
    #[derive(Default)]
    struct EventText(String);

    impl Visit for EventText {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            let separator = if self.0.is_empty() { "" } else { " " };
            // Writing to a String cannot fail.
            let _ = match field.name() {
                "message" => write!(self.0, "{separator}{value:?}"),
                name => write!(self.0, "{separator}{name}={value:?}"),
            };
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn configured_level_is_used_unless_rust_log_is_set() {
            if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
                return; // the developer's RUST_LOG wins, by design
            }
            assert!(filter("warn,cairn=debug").is_ok());
            let error = filter("cairn=loud").expect_err("not a filter");
            assert!(error.to_string().contains("log.level"), "{error}");
        }

        #[test]
        fn levels_map_to_journal_priorities() {
            assert_eq!(log_level(Level::ERROR), log::Level::Error);
            assert_eq!(log_level(Level::TRACE), log::Level::Trace);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use clap::error::ErrorKind;
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cairn").chain(args.iter().copied()))
    }

    fn temp_config(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write config");
        file
    }

    fn run_check_config(file: Option<&Path>) -> (Outcome, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let outcome = check_config(file, &mut out, &mut err);
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8 output");
        (outcome, text(out), text(err))
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_become_overrides() {
        let cli = parse(&[
            "serve",
            "--config",
            "cairn.toml",
            "--listen",
            "127.0.0.1:1884",
            "--listen",
            "[::1]:1885",
            "--data-dir",
            "/var/lib/cairn",
        ])
        .expect("valid command line");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve, got {:?}", cli.command);
        };
        assert_eq!(args.file.config, Some(PathBuf::from("cairn.toml")));
        let overrides = args.overrides();
        assert_eq!(
            overrides.listen,
            [
                "127.0.0.1:1884".parse::<SocketAddr>().expect("addr"),
                "[::1]:1885".parse().expect("addr")
            ]
        );
        assert_eq!(overrides.data_dir, Some(PathBuf::from("/var/lib/cairn")));
    }

    #[test]
    fn usage_errors_exit_with_2() {
        for args in [
            &["serve", "--listen", "not-an-address"][..],
            &["check-config", "--listen", "127.0.0.1:1"],
            &["launch"],
            &[],
        ] {
            let error = parse(args).expect_err("usage error");
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        }
    }

    #[test]
    fn version_flag_is_answered_by_clap_with_exit_0() {
        let error = parse(&["--version"]).expect_err("clap answers --version itself");
        assert_eq!(error.kind(), ErrorKind::DisplayVersion);
        assert_eq!(error.exit_code(), 0);
    }

    #[test]
    fn check_config_prints_the_effective_config_as_toml() {
        let file = temp_config("[limits]\nmax_inflight = 7\n");
        let (outcome, out, err) = run_check_config(Some(file.path()));
        assert_eq!(outcome, Outcome::Success, "{err}");
        let printed: Config = toml::from_str(&out).expect("output is TOML of a Config");
        assert_eq!(printed.limits.max_inflight, 7);
        assert_eq!(printed.listeners, Config::default().listeners);
    }

    #[test]
    fn check_config_lists_every_problem_with_its_key_and_exits_2() {
        let file = temp_config("[limits]\nmax_inflite = 7\nmax_topic_levels = 0\n");
        let (outcome, out, err) = run_check_config(Some(file.path()));
        assert_eq!(outcome, Outcome::BadConfig);
        assert!(out.is_empty(), "{out}");
        assert!(err.contains("`limits.max_inflite`"), "{err}");
        assert!(err.contains("`limits.max_topic_levels`"), "{err}");
        assert_eq!(err.matches("error: ").count(), 2, "{err}");
    }

    #[test]
    fn check_config_names_a_missing_file_and_exits_2() {
        let (outcome, _, err) = run_check_config(Some(Path::new("/nonexistent/cairn.toml")));
        assert_eq!(outcome, Outcome::BadConfig);
        assert!(err.contains("/nonexistent/cairn.toml"), "{err}");
    }

    #[test]
    fn check_config_reports_unreadable_tls_files_by_listener() {
        let file = temp_config(
            "[[listeners]]\nbind = \"127.0.0.1:8883\"\nkind = \"tls\"\n\
             [listeners.tls]\ncert = \"/nonexistent/server.pem\"\nkey = \"/nonexistent/server.key\"\n",
        );
        let (outcome, _, err) = run_check_config(Some(file.path()));
        assert_eq!(outcome, Outcome::BadConfig);
        assert!(err.contains("`listeners[0].tls`"), "{err}");
        assert!(err.contains("/nonexistent/server.pem"), "{err}");
    }

    #[test]
    fn exit_codes_follow_the_documented_convention() {
        assert_eq!(ExitCode::from(Outcome::Success), ExitCode::from(0));
        assert_eq!(ExitCode::from(Outcome::RuntimeError), ExitCode::from(1));
        assert_eq!(ExitCode::from(Outcome::BadConfig), ExitCode::from(2));
    }
}
