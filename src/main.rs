//! The `cairn` command: `serve` runs the broker in the foreground until SIGINT or SIGTERM,
//! `check-config` prints the effective configuration or every problem in it, `sessions …` and
//! `store stats` show (or drop) what the store of a stopped broker holds, `passwd` edits a
//! password file. This file owns the command line (clap) and sends each command to its module
//! under `cli/`, which owns its output; the broker, the store tools ([`cairn::store::admin`])
//! and the password file ([`cairn::auth::PasswordFile`]) live in the library; the process's
//! memory allocator is [`allocator`]'s.
//!
//! Exit codes: 0 success, 2 bad configuration or usage (a store file cairn cannot use counts
//! as one), 1 runtime error.

mod allocator;
mod cli;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use cairn::config::Overrides;
use cli::check_config::check_config;
use cli::passwd::{passwd, Action as PasswdAction, Request as PasswdRequest};
use cli::serve::serve;
use cli::store_admin::{operate, StoreAction};

/// Every allocation of the process (see [`allocator`]).
#[global_allocator]
static ALLOCATOR: allocator::CarvingAllocator = allocator::CarvingAllocator;

/// Cairn, a durable MQTT 3.1.1 + 5.0 broker for edge gateways.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, after_long_help = FILES_ENVIRONMENT_EXIT_STATUS)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The end of `cairn --help` and of the manual page.
const FILES_ENVIRONMENT_EXIT_STATUS: &str = "\
Files: /etc/cairn/cairn.toml is the configuration of the Debian package's service (every key, \
with comments; `cairn check-config --config FILE` checks a file). /var/lib/cairn is its \
data_dir, holding the store, cairn.redb.

Environment: CAIRN_<KEY> sets a configuration key, `__` between levels (CAIRN_DATA_DIR=DIR, \
CAIRN_LOG__LEVEL=debug). RUST_LOG replaces log.level.

Exit status: 0 success, 1 runtime error, 2 bad configuration or usage.";

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
    /// Set or delete a user's password in a password file (Mosquitto's format, as
    /// mosquitto_passwd writes it). Exit code 1 if it cannot.
    Passwd(PasswdArgs),
    /// Write the manual pages into DIR (for packaging).
    #[cfg(feature = "man")]
    #[command(hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
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

    /// Runs a store command on the data directory these arguments name.
    fn operate(&self, action: StoreAction<'_>) -> cli::Outcome {
        operate(self.file.config.as_deref(), &self.overrides(), action)
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
#[command(
    after_help = "The password is asked for twice on the terminal, without echo, unless \
-b gives it. The other lines of FILE are kept as they are; FILE is replaced atomically with its \
mode, owner and group (a new file gets mode 0640)."
)]
struct PasswdArgs {
    /// Create FILE with only USER in it, replacing any existing file. Without -c, FILE must
    /// exist.
    #[arg(short = 'c', long = "create", conflicts_with = "delete")]
    create: bool,
    /// Delete USER instead of setting a password (exit code 1 if USER is not in FILE).
    #[arg(short = 'D', long = "delete", conflicts_with = "batch")]
    delete: bool,
    /// Take the password from the command line (where other users of the machine may see it)
    /// instead of asking for it.
    #[arg(short = 'b', long = "batch", requires = "password")]
    batch: bool,
    /// The password file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The user name: not empty, without ':' or control characters.
    #[arg(value_name = "USER")]
    user: String,
    /// The password, with -b.
    #[arg(value_name = "PASSWORD", requires = "batch")]
    password: Option<String>,
}

impl PasswdArgs {
    fn request(&self) -> PasswdRequest<'_> {
        let action = match (&self.password, self.delete) {
            (_, true) => PasswdAction::Delete,
            (Some(password), false) => PasswdAction::SetGiven(password),
            (None, false) => PasswdAction::SetPrompted,
        };
        PasswdRequest {
            file: &self.file,
            user: &self.user,
            action,
            create: self.create,
        }
    }
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

fn main() -> ExitCode {
    // clap exits by itself: 0 for --help/--version, 2 for usage errors.
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve(
            args.data.file.config.as_deref(),
            &args.overrides(),
            args.repair,
        ),
        Command::CheckConfig(args) => {
            check_config(args.config.as_deref(), &mut io::stdout(), &mut io::stderr())
        }
        Command::Sessions(SessionsCommand::List(data)) => data.operate(StoreAction::List),
        Command::Sessions(SessionsCommand::Show(arg)) => {
            arg.data.operate(StoreAction::Show(&arg.client_id))
        }
        Command::Sessions(SessionsCommand::Drop(arg)) => {
            arg.data.operate(StoreAction::Drop(&arg.client_id))
        }
        Command::Store(StoreCommand::Stats(data)) => data.operate(StoreAction::Stats),
        Command::Passwd(args) => passwd(&args.request()),
        #[cfg(feature = "man")]
        Command::Man { dir } => {
            cli::man::write_pages(<Cli as clap::CommandFactory>::command(), &dir)
        }
    };
    outcome.into()
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cairn").chain(args.iter().copied()))
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
    fn passwd_takes_mosquitto_passwds_flags() {
        let request_of = |args: &[&str]| {
            let Command::Passwd(args) = parse(args).expect("valid command line").command else {
                panic!("expected passwd for {args:?}");
            };
            format!("{:?}", args.request())
        };
        assert_eq!(
            request_of(&["passwd", "-b", "pw", "bob", "secret"]),
            r#"Request { file: "pw", user: "bob", action: SetGiven("secret"), create: false }"#
        );
        assert_eq!(
            request_of(&["passwd", "-c", "--batch", "pw", "bob", "secret"]),
            r#"Request { file: "pw", user: "bob", action: SetGiven("secret"), create: true }"#
        );
        assert_eq!(
            request_of(&["passwd", "pw", "bob"]),
            r#"Request { file: "pw", user: "bob", action: SetPrompted, create: false }"#
        );
        assert_eq!(
            request_of(&["passwd", "-D", "pw", "bob"]),
            r#"Request { file: "pw", user: "bob", action: Delete, create: false }"#
        );
        for args in [
            &["passwd", "pw"][..],
            &["passwd", "-b", "pw", "bob"],
            &["passwd", "pw", "bob", "secret"],
            &["passwd", "-D", "-b", "pw", "bob", "secret"],
            &["passwd", "-c", "-D", "pw", "bob"],
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
}
