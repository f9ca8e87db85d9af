//! SIGHUP: the configuration read again from where `serve` read it at start (the same file,
//! `CAIRN_…` variables and command-line flags) and put in force without dropping anyone, or
//! refused whole, with every problem logged by key, the running configuration kept.

use std::path::PathBuf;

use cairn::config::Overrides;
use cairn::server::{Reloaded, ServerHandle};

use super::setup::effective_config;
use super::{logging, Explained};

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

/// Reads the configuration again and applies it, logging what changed, what waits for a
/// restart, or why nothing changed.
pub async fn reload(handle: &mut ServerHandle, source: &Source) {
    const KEPT: &str = "the running configuration stays in force";
    tracing::info!("SIGHUP: reloading the configuration");
    let config = match effective_config(source.file.as_deref(), &source.overrides) {
        Ok(config) => config,
        Err(problems) => {
            for problem in &problems {
                tracing::error!("reload refused: {problem}");
            }
            tracing::error!(
                problems = problems.len(),
                "reload refused: the new configuration has errors; {KEPT}"
            );
            return;
        }
    };
    let filter = match logging::filter(&config.log.level) {
        Ok(filter) => filter,
        Err(error) => {
            tracing::error!("reload refused: {}; {KEPT}", Explained(&error));
            return;
        }
    };
    let reloaded = match handle.reload(config).await {
        Ok(reloaded) => reloaded,
        Err(error) => {
            tracing::error!("reload refused: {error}; {KEPT}");
            return;
        }
    };
    if reloaded.applied.iter().any(|key| key == "log.level") {
        if let Err(error) = logging::replace_filter(filter) {
            tracing::warn!("{}", Explained(&error));
        }
    }
    for key in &reloaded.need_restart {
        tracing::warn!(
            key = key.as_str(),
            "changed in the configuration, but only a restart applies it: the running value stays in force until then"
        );
    }
    tracing::info!("configuration reloaded: {}", summary(&reloaded));
}

/// What a reload changed, in one line: the keys applied, the keys waiting for a restart, the
/// bridges added, removed and restarted (saying which were restarted for their files alone),
/// and the files read again and put in force (a renewed certificate, a password or ACL file
/// edited: whether they changed is not compared); "nothing changed" when there is none.
fn summary(reloaded: &Reloaded) -> String {
    let bridges = &reloaded.bridges;
    let restarted: Vec<String> = bridges
        .restarted
        .iter()
        .map(|name| match bridges.renewed.contains(name) {
            true => format!("{name} (its password or TLS files changed)"),
            false => name.clone(),
        })
        .collect();
    let parts: Vec<String> = [
        ("applied", &reloaded.applied),
        ("waiting for a restart", &reloaded.need_restart),
        ("bridges added", &bridges.added),
        ("bridges removed", &bridges.removed),
        ("bridges restarted", &restarted),
        ("files read again and in force", &reloaded.files_reread),
    ]
    .into_iter()
    .filter(|(_, names)| !names.is_empty())
    .map(|(what, names)| format!("{what}: {}", names.join(" ")))
    .collect();
    match parts.is_empty() {
        true => "nothing changed".to_string(),
        false => parts.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_only_what_changed() {
        let mut reloaded = Reloaded::default();
        assert_eq!(summary(&reloaded), "nothing changed");
        reloaded.applied = vec!["log.level".into(), "limits.max_inflight".into()];
        reloaded.bridges.removed = vec!["cloud".into()];
        assert_eq!(
            summary(&reloaded),
            "applied: log.level limits.max_inflight; bridges removed: cloud"
        );
    }

    #[test]
    fn the_summary_names_the_files_read_again() {
        let reloaded = Reloaded {
            files_reread: vec!["listeners[1].tls".into(), "password_file".into()],
            ..Reloaded::default()
        };
        assert_eq!(
            summary(&reloaded),
            "files read again and in force: listeners[1].tls password_file"
        );
    }

    #[test]
    fn the_summary_says_which_bridges_restarted_for_their_files() {
        let mut reloaded = Reloaded::default();
        reloaded.bridges.restarted = vec!["cloud".into(), "backup".into()];
        reloaded.bridges.renewed = vec!["backup".into()];
        assert_eq!(
            summary(&reloaded),
            "bridges restarted: cloud backup (its password or TLS files changed)"
        );
    }
}
