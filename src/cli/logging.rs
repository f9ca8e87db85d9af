//! Logging: `tracing` events filtered by `log.level` (or `RUST_LOG`), written to stderr, or
//! to the systemd journal when the process runs under systemd with its output connected to
//! the journal. The filter can be replaced while running ([`replace_filter`], at a reload).

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::sync::OnceLock;

use anyhow::Context;
use systemd_journal_logger::{connected_to_journal, JournalLog};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

/// The variable that, when set and not empty, replaces `log.level`.
const RUST_LOG: &str = "RUST_LOG";

/// The installed filter, to replace at a reload.
static FILTER: OnceLock<reload::Handle<Targets, Registry>> = OnceLock::new();

/// Installs the global subscriber: to the journal when stderr is connected to it (falling
/// back to stderr if the journal cannot be opened), else to stderr.
pub fn install(filter: Targets) -> anyhow::Result<()> {
    let (filter, handle) = reload::Layer::new(filter);
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
    .context("cannot install the logger")?;
    // Only the first install reaches here: `try_init` refuses a second subscriber.
    let _ = FILTER.set(handle);
    Ok(())
}

fn stderr_subscriber(filter: reload::Layer<Targets, Registry>) -> impl Subscriber + Send + Sync {
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // Its complaint about a closed stderr would go to stderr and panic.
        .log_internal_errors(false);
    tracing_subscriber::registry().with(stderr.with_filter(filter))
}

/// Puts `filter` in force for every event from now on.
pub fn replace_filter(filter: Targets) -> anyhow::Result<()> {
    let handle = FILTER.get().context("no logger is installed")?;
    handle
        .reload(filter)
        .context("cannot replace the log filter")
}

/// `RUST_LOG` when set and not empty, else the configured `log.level`.
pub fn filter(configured_level: &str) -> anyhow::Result<Targets> {
    let (setting, directives) = match std::env::var(RUST_LOG) {
        Ok(from_env) if !from_env.is_empty() => ("RUST_LOG", from_env),
        _ => ("log.level", configured_level.to_string()),
    };
    // The parse error's source repeats its message, so only its own text is kept.
    cairn::config::parse_log_filter(&directives).map_err(|error| {
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
        if std::env::var_os(RUST_LOG).is_some() {
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
