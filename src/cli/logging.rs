//! Logging: `tracing` events filtered by `log.level` (or `RUST_LOG`), written to stderr, or
//! to the systemd journal when the process runs under systemd with its output connected to
//! the journal. The filter can be replaced while running ([`replace_filter`], at a reload).
//! Every event stays on one line: a line break inside it, which a client id, topic or filter
//! may carry, is written as `\n` or `\r`, so no client can forge log lines.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::{self, IsTerminal};
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
        .with_writer(|| OneLine(io::stderr()))
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
                .args(format_args!(
                    "{}",
                    String::from_utf8_lossy(&one_line(text.0.as_bytes()))
                ))
                .build(),
        );
    }
}

/// A writer of formatted events (one whole event per write, as the fmt layer writes them)
/// that keeps each event on its one line.
struct OneLine<W>(W);

impl<W: io::Write> io::Write for OneLine<W> {
    fn write(&mut self, event: &[u8]) -> io::Result<usize> {
        self.0.write_all(&one_line(event))?;
        Ok(event.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `event` with every line break but a final one written as `\n` or `\r`.
fn one_line(event: &[u8]) -> Cow<'_, [u8]> {
    let body = event.strip_suffix(b"\n").unwrap_or(event);
    if !body.iter().any(|byte| matches!(byte, b'\n' | b'\r')) {
        return Cow::Borrowed(event);
    }
    let mut escaped = Vec::with_capacity(event.len() + 16);
    for &byte in body {
        match byte {
            b'\n' => escaped.extend_from_slice(b"\\n"),
            b'\r' => escaped.extend_from_slice(b"\\r"),
            other => escaped.push(other),
        }
    }
    escaped.extend_from_slice(&event[body.len()..]);
    Cow::Owned(escaped)
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
    fn an_event_stays_on_one_line() {
        let forged = b"refusing CONNECT client_id=x\n2026-01-01T00:00:00Z ERROR forged\r\n";
        assert_eq!(
            &*one_line(forged),
            &b"refusing CONNECT client_id=x\\n2026-01-01T00:00:00Z ERROR forged\\r\n"[..]
        );
        let plain = b"client connected\n";
        assert!(matches!(one_line(plain), Cow::Borrowed(line) if line == plain));
        assert_eq!(&*one_line(b"a\nb"), &b"a\\nb"[..]);
        let mut written = Vec::new();
        io::Write::write_all(&mut OneLine(&mut written), b"one\ntwo\n").expect("write");
        assert_eq!(written, b"one\\ntwo\n");
    }

    #[test]
    fn levels_map_to_journal_priorities() {
        assert_eq!(log_level(Level::ERROR), log::Level::Error);
        assert_eq!(log_level(Level::TRACE), log::Level::Trace);
    }
}
