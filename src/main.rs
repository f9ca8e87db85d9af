//! The `cairn` command: `serve` runs the broker in the foreground until SIGINT or SIGTERM,
//! `check-config` prints the effective configuration or every problem in it, `sessions …` and
//! `store stats` show (or drop) what the store of a stopped broker holds. This file owns the
//! command line, exit codes, output and logging set-up; the broker and the store tools
//! ([`cairn::store::admin`]) live in the library.
//!
//! Exit codes: 0 success, 2 bad configuration or usage (a store file cairn cannot use counts
//! as one), 1 runtime error.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

use cairn::config::{Config, ConfigError, ListenerKind, Overrides};
use cairn::server::{Server, ServerError, ServerHandle};
use cairn::store::admin::{self, AdminStore, SessionDetails, SessionSummary, StoreStats};
use cairn::store::redb::OpenError;
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
    /// List, show or drop the sessions in the store (the broker must be stopped).
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Look into the store (the broker must be stopped).
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// One line per stored session.
    List(DataArgs),
    /// Everything stored about one session (exit code 1 if there is none).
    Show(SessionArg),
    /// Delete one session with its subscriptions, queued and inflight messages and Will.
    Drop(SessionArg),
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Sessions, queued, inflight and retained messages, and the database file's size.
    Stats(DataArgs),
}

#[derive(Debug, Args)]
struct ConfigFileArg {
    /// TOML configuration file; without it, built-in defaults and CAIRN_* variables apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Where the data directory is: the configuration, or `--data-dir`.
#[derive(Debug, Args)]
struct DataArgs {
    #[command(flatten)]
    file: ConfigFileArg,
    /// Use the data directory DIR instead of the configured `data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl DataArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: Vec::new(),
            data_dir: self.data_dir.clone(),
        }
    }
}

#[derive(Debug, Args)]
struct SessionArg {
    /// The session's client identifier.
    #[arg(value_name = "ID")]
    client_id: String,
    #[command(flatten)]
    data: DataArgs,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Listen with plain TCP on ADDR instead of the configured listeners (repeatable). ADDR is
    /// IP:PORT, or a bare PORT for every IPv4 interface (0.0.0.0:PORT, like `mosquitto -p`);
    /// IPv6: [::]:PORT.
    #[arg(long = "listen", value_name = "ADDR", value_parser = listen_address)]
    listen: Vec<SocketAddr>,
    /// If the database file cannot be used (unreadable, another program's, of a newer schema,
    /// or failing recovery), move it aside to cairn.redb.quarantined-<UTC time> and start with
    /// an empty store.
    #[arg(long)]
    repair: bool,
}

/// `--listen`'s value: `IP:PORT`, or a bare port on every IPv4 interface.
fn listen_address(value: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    value.parse().map_err(|_| {
        "expected IP:PORT such as 127.0.0.1:1883 or [::]:1883, or a port such as 1883".to_string()
    })
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            ..self.data.overrides()
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
        Command::Sessions(SessionsCommand::List(data)) => operate(&data, StoreAction::List),
        Command::Sessions(SessionsCommand::Show(arg)) => {
            operate(&arg.data, StoreAction::Show(&arg.client_id))
        }
        Command::Sessions(SessionsCommand::Drop(arg)) => {
            operate(&arg.data, StoreAction::Drop(&arg.client_id))
        }
        Command::Store(StoreCommand::Stats(data)) => operate(&data, StoreAction::Stats),
    };
    outcome.into()
}

/// Loads the configuration with `overrides`, returning one line per problem (each naming its
/// key) when anything is wrong.
fn load_config(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Vec<String>> {
    Config::load_with_overrides(file, overrides).map_err(|error| match error {
        ConfigError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    })
}

/// Loads the configuration with `overrides` and tries every TLS listener's files, returning
/// one line per problem (each naming its key) when anything is wrong.
fn effective_config(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Vec<String>> {
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

/// A loaded configuration with logging started, or the outcome to exit with: the problems
/// are reported on stderr.
fn ready_to_run(loaded: Result<Config, Vec<String>>) -> Result<Config, Outcome> {
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
        let _ = writeln!(io::stderr(), "cairn: {error:#}");
        Outcome::BadConfig
    })?;
    logging::install(filter).map_err(|error| {
        let _ = writeln!(io::stderr(), "cairn: {error:#}");
        Outcome::RuntimeError
    })
}

/// `cairn serve`: load, set up logging, run until a signal, shut down gracefully.
fn serve(args: &ServeArgs) -> Outcome {
    let config = match ready_to_run(effective_config(
        args.data.file.config.as_deref(),
        &args.overrides(),
    )) {
        Ok(config) => config,
        Err(outcome) => return outcome,
    };
    match run(config, args.repair) {
        Ok(()) => Outcome::Success,
        Err(error) => {
            tracing::error!("{error:#}");
            match error.downcast_ref::<UnusableStore>() {
                Some(_) => Outcome::BadConfig,
                None => Outcome::RuntimeError,
            }
        }
    }
}

fn run(config: Config, repair: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(serve_until_signal(config, repair))
}

async fn serve_until_signal(config: Config, repair: bool) -> anyhow::Result<()> {
    // Installed before the broker starts, so an early signal is not fatal.
    let mut signals = ShutdownSignals::install()?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "cairn starting");
    let handle = start_broker(config, repair).await?;
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

/// The database file cannot be used and `--repair` was not given: a setup problem (exit 2).
#[derive(Debug, thiserror::Error)]
#[error(
    "{0}. `cairn serve --repair` would move it aside (its bytes kept, renamed \
     {file}.quarantined-<UTC time>) and start with an empty store",
    file = admin::DATABASE_FILE
)]
struct UnusableStore(OpenError);

/// Starts the broker. A database file it cannot use stops the start, unless `repair`: then the
/// file is moved aside, loudly, and the broker starts once more, on an empty store.
async fn start_broker(config: Config, repair: bool) -> anyhow::Result<ServerHandle> {
    const FAILED: &str = "cannot start the broker";
    let error = match Server::start(config.clone()).await {
        Err(ServerError::Store(error)) => error,
        started => return started.context(FAILED),
    };
    let Some(reason) = admin::unusable_reason(&error) else {
        return Err(error).context(FAILED);
    };
    if !repair {
        return Err(UnusableStore(error)).context(FAILED);
    }
    let file = config.data_dir.join(admin::DATABASE_FILE);
    let moved = admin::quarantine(&config.data_dir)
        .with_context(|| format!("--repair cannot move {} aside", file.display()))?;
    tracing::error!(
        "--repair: {} cannot be used: {reason}; moved it to {} and starting with an EMPTY store \
         (its sessions, queued and retained messages are not loaded)",
        file.display(),
        moved.display()
    );
    Server::start(config)
        .await
        .context("cannot start the broker on an empty store after the repair")
}

/// What an operator command does with the store.
#[derive(Debug, Clone, Copy)]
enum StoreAction<'a> {
    List,
    Show(&'a str),
    Drop(&'a str),
    Stats,
}

/// `cairn sessions …` and `cairn store stats`: opens the store of the configured data
/// directory (refused while a broker runs on it), acts, prints.
fn operate(data: &DataArgs, action: StoreAction<'_>) -> Outcome {
    let config = match ready_to_run(load_config(data.file.config.as_deref(), &data.overrides())) {
        Ok(config) => config,
        Err(outcome) => return outcome,
    };
    match act_on_store(&config.data_dir, action, &mut io::stdout()) {
        Ok(()) => Outcome::Success,
        Err(error) => {
            let _ = writeln!(io::stderr(), "cairn: {error:#}");
            Outcome::RuntimeError
        }
    }
}

fn act_on_store(dir: &Path, action: StoreAction<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = AdminStore::open(dir)?;
    let printed = match action {
        StoreAction::List => print_sessions(&admin::summaries(store.recovered()), out),
        StoreAction::Show(client_id) => {
            let details = store.details(client_id, SystemTime::now())?;
            print_session(&details, out)
        }
        StoreAction::Drop(client_id) => {
            store.drop_session(client_id)?;
            writeln!(
                out,
                "session {} deleted from {}",
                admin::printable(client_id),
                dir.display()
            )
        }
        StoreAction::Stats => print_stats(&store.stats(), out),
    };
    printed.context("cannot write to stdout")
}

/// One line per session under a header, or a line saying there are none.
fn print_sessions(sessions: &[SessionSummary], out: &mut dyn Write) -> io::Result<()> {
    if sessions.is_empty() {
        return writeln!(out, "no sessions stored");
    }
    let header = [
        "CLIENT ID",
        "EXPIRY",
        "OFFLINE SINCE",
        "SUBSCRIPTIONS",
        "QUEUED",
        "INFLIGHT",
        "WILL",
    ]
    .map(String::from);
    let rows = sessions.iter().map(|session| {
        [
            admin::printable(&session.client_id),
            session.expiry.to_string(),
            session.last_seen.to_string(),
            session.subscriptions.to_string(),
            session.queued.to_string(),
            session.inflight.to_string(),
            admin::yes_no(session.has_will).to_string(),
        ]
    });
    let table: Vec<[String; 7]> = std::iter::once(header).chain(rows).collect();
    print_table(&table, out)
}

/// Rows with their columns aligned, two spaces apart.
fn print_table<const N: usize>(rows: &[[String; N]], out: &mut dyn Write) -> io::Result<()> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: String = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}  "))
            .collect();
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn print_session(details: &SessionDetails, out: &mut dyn Write) -> io::Result<()> {
    let summary = &details.summary;
    field(out, "client id", &admin::printable(&summary.client_id))?;
    field(out, "expiry interval", &summary.expiry)?;
    field(out, "offline since", &summary.last_seen)?;
    field(out, "expires", &details.deadline)?;
    match &details.will {
        Some(will) => field(out, "will", will)?,
        None => field(out, "will", &"none")?,
    }
    let awaiting: Vec<String> = details.inbound_qos2.iter().map(u16::to_string).collect();
    let awaiting = match awaiting.is_empty() {
        true => "none".to_string(),
        false => format!("packets {}", awaiting.join(" ")),
    };
    field(out, "awaiting PUBREL", &awaiting)?;
    section(out, "subscriptions", &details.subscriptions)?;
    section(out, "queued (oldest first)", &details.queued)?;
    section(out, "inflight (in send order)", &details.inflight)
}

fn print_stats(stats: &StoreStats, out: &mut dyn Write) -> io::Result<()> {
    let sessions = format!(
        "{} ({} connected at last stop)",
        stats.sessions, stats.connected_at_last_stop
    );
    field(out, "store", &stats.file.display())?;
    field(out, "file size", &format!("{} bytes", stats.file_bytes))?;
    field(out, "sessions", &sessions)?;
    field(out, "subscriptions", &stats.subscriptions)?;
    field(out, "wills", &stats.wills)?;
    field(out, "queued messages", &stats.queued)?;
    field(out, "inflight messages", &stats.inflight)?;
    field(out, "message bodies", &stats.bodies)?;
    field(out, "retained messages", &stats.retained)
}

/// `label: value`, values aligned.
fn field(out: &mut dyn Write, label: &str, value: &dyn std::fmt::Display) -> io::Result<()> {
    writeln!(out, "{:<20}{value}", format!("{label}:"))
}

/// `title: N`, then the N lines indented.
fn section<T: std::fmt::Display>(out: &mut dyn Write, title: &str, lines: &[T]) -> io::Result<()> {
    writeln!(out, "{title}: {}", lines.len())?;
    for line in lines {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// SIGINT (Ctrl-C) and SIGTERM (systemd, docker stop) stop the broker; SIGHUP (`systemctl
/// reload`) is caught so that its default action does not kill the broker, and only logged.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<ShutdownSignals> {
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    /// Waits for the next signal that stops the broker and names it; a SIGHUP meanwhile is
    /// logged and otherwise ignored.
    async fn next(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return "SIGINT",
                _ = self.terminate.recv() => return "SIGTERM",
                _ = self.hangup.recv() => tracing::warn!(
                    "SIGHUP received: reloading is not supported yet; the configuration was not \
                     re-read and the broker keeps running with the one it started with"
                ),
            }
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
        assert_eq!(args.data.file.config, Some(PathBuf::from("cairn.toml")));
        assert!(!args.repair);
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
    fn listen_takes_a_bare_port_for_every_ipv4_interface() {
        let cli = parse(&["serve", "--listen", "1883", "--listen", "[::]:8883"]).expect("valid");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve, got {:?}", cli.command);
        };
        assert_eq!(
            args.overrides().listen,
            [
                "0.0.0.0:1883".parse::<SocketAddr>().expect("addr"),
                "[::]:8883".parse().expect("addr")
            ]
        );
        for refused in ["65536", "-1", "localhost:1883", ""] {
            assert!(parse(&["serve", "--listen", refused]).is_err(), "{refused}");
        }
    }

    #[test]
    fn usage_errors_exit_with_2() {
        for args in [
            &["serve", "--listen", "not-an-address"][..],
            &["check-config", "--listen", "127.0.0.1:1"],
            &["launch"],
            &[],
            &["sessions"],
            &["sessions", "show"],
            &["sessions", "drop", "--data-dir"],
            &["store"],
            &["store", "stats", "--listen", "127.0.0.1:1"],
        ] {
            let error = parse(args).expect_err("usage error");
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        }
    }

    #[test]
    fn serve_takes_repair() {
        let cli = parse(&["serve", "--repair"]).expect("valid command line");
        let Command::Serve(args) = cli.command else {
            panic!("expected serve, got {:?}", cli.command);
        };
        assert!(args.repair);
    }

    #[test]
    fn session_commands_take_an_id_and_the_data_directory() {
        let cli = parse(&[
            "sessions",
            "show",
            "sensor-1",
            "--data-dir",
            "/var/lib/cairn",
        ])
        .expect("valid command line");
        let Command::Sessions(SessionsCommand::Show(arg)) = cli.command else {
            panic!("expected sessions show, got {:?}", cli.command);
        };
        assert_eq!(arg.client_id, "sensor-1");
        assert_eq!(
            arg.data.overrides().data_dir,
            Some(PathBuf::from("/var/lib/cairn"))
        );
        assert!(arg.data.overrides().listen.is_empty());
        let cli = parse(&["store", "stats", "--config", "cairn.toml"]).expect("valid");
        let Command::Store(StoreCommand::Stats(data)) = cli.command else {
            panic!("expected store stats, got {:?}", cli.command);
        };
        assert_eq!(data.file.config, Some(PathBuf::from("cairn.toml")));
    }

    #[test]
    fn tables_align_their_columns() {
        let rows = [
            ["ID".to_string(), "QUEUED".to_string()],
            ["sensor-12".to_string(), "3".to_string()],
        ];
        let mut out = Vec::new();
        print_table(&rows, &mut out).expect("write to memory");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "ID         QUEUED\nsensor-12  3\n"
        );
    }

    #[test]
    fn an_unusable_store_names_the_file_and_the_repair() {
        let error = UnusableStore(OpenError::Foreign {
            path: PathBuf::from("/var/lib/cairn/cairn.redb"),
        });
        let text = error.to_string();
        assert!(text.contains("/var/lib/cairn/cairn.redb"), "{text}");
        assert!(text.contains("cairn serve --repair"), "{text}");
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
