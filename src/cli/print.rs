//! How the store commands print: tables with aligned columns, `label: value` fields and
//! counted sections. Writes only to the `out` it is given.

use std::fmt::Display;
use std::io::{self, Write};

use cairn::store::admin::{self, SessionDetails, SessionSummary, StoreStats};

/// One line per session under a header, or a line saying there are none.
pub fn print_sessions(sessions: &[SessionSummary], out: &mut dyn Write) -> io::Result<()> {
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

pub fn print_session(details: &SessionDetails, out: &mut dyn Write) -> io::Result<()> {
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
    section(out, "inflight (in resend order)", &details.inflight)
}

pub fn print_stats(stats: &StoreStats, out: &mut dyn Write) -> io::Result<()> {
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
fn field(out: &mut dyn Write, label: &str, value: &dyn Display) -> io::Result<()> {
    writeln!(out, "{:<20}{value}", format!("{label}:"))
}

/// `title: N`, then the N lines indented.
fn section<T: Display>(out: &mut dyn Write, title: &str, lines: &[T]) -> io::Result<()> {
    writeln!(out, "{title}: {}", lines.len())?;
    for line in lines {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
