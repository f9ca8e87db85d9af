//! `cairn check-config`: the effective configuration (defaults, file and environment
//! combined, a bridge queue's bounds as `[limits]` fills them in) printed as TOML, or every
//! problem in it; the files it names (TLS, password and ACL files, the bridges' password and
//! TLS files) are read too, as `serve` reads them.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use cairn::config::Overrides;

use super::logging;
use super::setup::{effective_config, report_problems};
use super::{Explained, Outcome};

/// `cairn check-config`: the effective configuration as TOML on `out` (exit 0), or every
/// problem on `err` (exit 2).
pub fn check_config(file: Option<&Path>, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
    let mut config = match effective_config(file, &Overrides::default()) {
        Ok(config) => config,
        Err(problems) => {
            report_problems(&problems, err);
            return Outcome::BadConfig;
        }
    };
    // The log filter in force (`RUST_LOG` wins over `log.level`), as `serve` reads it.
    if let Err(error) = logging::filter(&config.log.level) {
        let _ = writeln!(err, "cairn: {}", Explained(&error));
        return Outcome::BadConfig;
    }
    // A bridge queue's bounds not given are `[limits]`' own: printed as they apply.
    for bridge in &mut config.bridges {
        bridge.queue = bridge.queue.filled_in(&config.limits);
    }
    let printed = toml::to_string(&config)
        .context("cannot print the configuration as TOML")
        .and_then(|text| {
            out.write_all(text.as_bytes())
                .context("cannot write to stdout")
        });
    match printed {
        Ok(()) => Outcome::Success,
        Err(error) => {
            let _ = writeln!(err, "cairn: {}", Explained(&error));
            Outcome::RuntimeError
        }
    }
}
#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use cairn::config::Config;

    use super::*;

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
    fn check_config_prints_the_effective_config_as_toml() {
        let file = temp_config("[limits]\nmax_inflight = 7\n");
        let (outcome, out, err) = run_check_config(Some(file.path()));
        assert_eq!(outcome, Outcome::Success, "{err}");
        let printed: Config = toml::from_str(&out).expect("output is TOML of a Config");
        assert_eq!(printed.limits.max_inflight, 7);
        assert_eq!(printed.listeners, Config::default().listeners);
    }

    /// A bridge queue's bounds not given are printed as `[limits]` gives them, so the output
    /// says what applies; one given keeps its value.
    #[test]
    fn check_config_prints_the_bridge_queue_bounds_in_force() {
        let file = temp_config(
            "[limits]\nmax_queued_messages = 5000\nqueue_full_policy = \"refuse_newest\"\n\
             [[bridges]]\nname = \"cloud\"\naddresses = [\"cloud.example.com:1883\"]\n\
             [bridges.queue]\nmax_bytes = 1000000\n\
             [[bridges.topics]]\nfilter = \"sensors/#\"\n",
        );
        let (outcome, out, err) = run_check_config(Some(file.path()));
        assert_eq!(outcome, Outcome::Success, "{err}");
        let printed: Config = toml::from_str(&out).expect("output is TOML of a Config");
        let queue = printed.bridges[0].queue;
        assert_eq!(queue.max_messages, Some(5000), "{out}");
        assert_eq!(queue.max_bytes, Some(1_000_000), "{out}");
        assert_eq!(
            queue.policy,
            Some(cairn::config::QueueFullPolicy::RefuseNewest),
            "{out}"
        );
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

    /// A bridge's password file and TLS files are read as `serve` reads them, and each one
    /// that cannot be is named (`serve` would refuse to start on them).
    #[test]
    fn check_config_reports_unreadable_bridge_files() {
        let bridge = |name: &str, extra: &str| {
            format!(
                "[[bridges]]\nname = \"{name}\"\naddresses = [\"cloud.example.com:8883\"]\n{extra}\
                 [[bridges.topics]]\nfilter = \"sensors/#\"\n"
            )
        };
        let file = temp_config(&format!(
            "{}{}",
            bridge("pass", "password_file = \"/nonexistent/cloud.pass\"\n"),
            bridge("tls", "[bridges.tls]\nca = \"/nonexistent/cloud-ca.pem\"\n"),
        ));
        let (outcome, _, err) = run_check_config(Some(file.path()));
        assert_eq!(outcome, Outcome::BadConfig);
        for part in [
            "bridge pass",
            "/nonexistent/cloud.pass",
            "bridge tls",
            "/nonexistent/cloud-ca.pem",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
    }
}
