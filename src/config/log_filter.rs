//! The syntax of `log.level` (and `RUST_LOG`): `tracing`'s target filter, each directive a
//! level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or `target=level`. A bare word that
//! is not a level is, to `tracing`, a target enabled at every level and everything else off:
//! `warning` (Mosquitto's word) or `verbose` would then silence every line, errors included.
//! Such a word is refused here instead, naming the levels.

use tracing_subscriber::filter::Targets;

/// The level names a bare directive may be.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// `directives` as a filter, or why not.
pub fn parse_log_filter(directives: &str) -> Result<Targets, String> {
    for directive in directives.split(',').map(str::trim) {
        if !directive.is_empty()
            && !directive.contains('=')
            && !LEVELS
                .iter()
                .any(|level| level.eq_ignore_ascii_case(directive))
        {
            return Err(format!(
                "{directive:?} is not a level (one of {}) nor target=level",
                LEVELS.join(", ")
            ));
        }
    }
    directives
        .parse::<Targets>()
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_targets_are_filters() {
        for good in [
            "info",
            "WARN",
            "warn,cairn=debug",
            "cairn::bridge=trace",
            "off",
            "",
        ] {
            assert!(parse_log_filter(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_word_that_is_not_a_level_is_refused() {
        for bad in ["warning", "verbose", "info,cairn"] {
            let error = parse_log_filter(bad).expect_err(bad);
            assert!(error.contains("is not a level"), "{bad}: {error}");
        }
    }
}
