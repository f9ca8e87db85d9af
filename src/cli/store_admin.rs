//! `cairn sessions list|show|drop` and `cairn store stats`: the store of a stopped broker,
//! opened directly, shown or changed, and printed.

use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use cairn::config::Overrides;
use cairn::store::admin::{self, AdminStore};

use super::print::{print_session, print_sessions, print_stats};
use super::setup::{load_config, ready_to_run};
use super::{Explained, Outcome};

/// What an operator command does with the store.
#[derive(Debug, Clone, Copy)]
pub enum StoreAction<'a> {
    List,
    Show(&'a str),
    Drop(&'a str),
    Stats,
}

/// `cairn sessions …` and `cairn store stats`: opens the store of the configured data
/// directory (refused while a broker runs on it), acts, prints.
pub fn operate(file: Option<&Path>, overrides: &Overrides, action: StoreAction<'_>) -> Outcome {
    let config = match ready_to_run(load_config(file, overrides)) {
        Ok(config) => config,
        Err(outcome) => return outcome,
    };
    match act_on_store(&config.data_dir, action, &mut io::stdout()) {
        Ok(()) => Outcome::Success,
        Err(error) => {
            let _ = writeln!(io::stderr(), "cairn: {}", Explained(&error));
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
