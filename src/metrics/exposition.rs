//! The Prometheus text exposition format, version 0.0.4: for each metric a `# HELP` and a
//! `# TYPE` line, then its samples, `name{label="value"} number`. Escapes help texts and label
//! values as the format says; knows nothing of what the numbers mean.

use std::fmt::Write;

/// A metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until a restart); its name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A sample's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Integer(u64),
    Float(f64),
}

impl From<u64> for Number {
    fn from(value: u64) -> Number {
        Number::Integer(value)
    }
}

impl From<u32> for Number {
    fn from(value: u32) -> Number {
        Number::Integer(u64::from(value))
    }
}

impl From<usize> for Number {
    fn from(value: usize) -> Number {
        Number::Integer(value as u64)
    }
}

impl From<f64> for Number {
    fn from(value: f64) -> Number {
        Number::Float(value)
    }
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Number::Integer(value) => write!(f, "{value}"),
            Number::Float(value) if value.is_nan() => f.write_str("NaN"),
            Number::Float(value) if value == f64::INFINITY => f.write_str("+Inf"),
            Number::Float(value) if value == f64::NEG_INFINITY => f.write_str("-Inf"),
            Number::Float(value) => write!(f, "{value}"),
        }
    }
}

/// A text being written, metric after metric.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Starts the metric `name`: its `# HELP` and `# TYPE` lines. Its samples follow.
    pub fn metric(&mut self, name: &str, kind: Kind, help: &str) -> &mut Exposition {
        debug_assert_eq!(
            kind == Kind::Counter,
            name.ends_with("_total"),
            "{name}: counters, and only they, end in _total"
        );
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.text, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        self
    }

    /// A sample of the metric `name` (the one started last) with `labels`.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Into<Number>,
    ) -> &mut Exposition {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape(value, true));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", value.into());
        self
    }

    /// A metric with one sample and no labels.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Into<Number>) {
        self.metric(name, kind, help).sample(name, &[], value);
    }

    /// The text written.
    pub fn finish(self) -> String {
        self.text
    }
}

/// `text` with `\` and line feeds escaped (help texts), and `"` too (label values).
fn escape(text: &str, quotes: bool) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if quotes => escaped.push_str("\\\""),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_has_help_type_and_samples_with_labels() {
        let mut exposition = Exposition::default();
        exposition
            .metric("cairn_bridge_sent_total", Kind::Counter, "Messages sent.")
            .sample("cairn_bridge_sent_total", &[("bridge", "cloud")], 7u64)
            .sample(
                "cairn_bridge_sent_total",
                &[("bridge", "b"), ("x", "y")],
                0u64,
            );
        exposition.single("cairn_ratio", Kind::Gauge, "A ratio.", 2.5);
        assert_eq!(
            exposition.finish(),
            "# HELP cairn_bridge_sent_total Messages sent.\n\
             # TYPE cairn_bridge_sent_total counter\n\
             cairn_bridge_sent_total{bridge=\"cloud\"} 7\n\
             cairn_bridge_sent_total{bridge=\"b\",x=\"y\"} 0\n\
             # HELP cairn_ratio A ratio.\n\
             # TYPE cairn_ratio gauge\n\
             cairn_ratio 2.5\n"
        );
    }

    #[test]
    fn help_texts_and_label_values_are_escaped() {
        let mut exposition = Exposition::default();
        exposition
            .metric("m", Kind::Gauge, "a \\ b\nc \"d\"")
            .sample("m", &[("l", "x\\y\"z\nw")], 1u64);
        assert_eq!(
            exposition.finish(),
            "# HELP m a \\\\ b\\nc \"d\"\n\
             # TYPE m gauge\n\
             m{l=\"x\\\\y\\\"z\\nw\"} 1\n"
        );
    }

    #[test]
    fn special_floats_use_the_formats_spelling() {
        assert_eq!(Number::from(f64::NAN).to_string(), "NaN");
        assert_eq!(Number::from(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Number::from(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Number::from(0.25).to_string(), "0.25");
        assert_eq!(Number::from(3.0).to_string(), "3");
        assert_eq!(Number::from(u64::MAX).to_string(), "18446744073709551615");
    }
}
