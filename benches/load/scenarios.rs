//! The message-moving scenarios (fan-in, fan-out, latency): each sets up its topology, runs
//! it, prints human lines on stderr and returns the fields of its RESULT line.

use cairn::codec::QoS;

use crate::args::Args;
use crate::error::LoadError;
use crate::run::{run, DeliveryCheck, Pace, RunOutcome, Topology};

/// What a scenario found: the RESULT fields, and the failures that make the run exit 1.
pub struct Summary {
    pub fields: Vec<(&'static str, String)>,
    pub problems: Vec<String>,
}

/// Filter and topic of the fan-out and latency scenarios.
const SHARED_TOPIC: &str = "load/shared";

/// P publishers on `load/<i>` → one subscriber on `load/#`.
pub async fn fan_in(args: &Args) -> Result<Summary, LoadError> {
    let topology = Topology {
        publishers: args.publishers,
        subscribers: 1,
        filter: "load/#".to_owned(),
        topic_of: |index| format!("load/{index}"),
    };
    throughput(args, &topology).await
}

/// One publisher → S subscribers of the same topic.
pub async fn fan_out(args: &Args) -> Result<Summary, LoadError> {
    let topology = Topology {
        publishers: 1,
        subscribers: args.subscribers,
        filter: SHARED_TOPIC.to_owned(),
        topic_of: |_| SHARED_TOPIC.to_owned(),
    };
    throughput(args, &topology).await
}

/// One publisher at `--rate` → one subscriber; latency percentiles of the measured interval.
pub async fn latency(args: &Args) -> Result<Summary, LoadError> {
    let topology = Topology {
        publishers: 1,
        subscribers: 1,
        filter: SHARED_TOPIC.to_owned(),
        topic_of: |_| SHARED_TOPIC.to_owned(),
    };
    let outcome = run(args, &topology, Pace::PerSecond(args.rate), true).await?;
    let check = DeliveryCheck::of(&outcome);
    let mut problems = check.problems(args.qos.qos());
    let micros = measured_latencies_micros(&outcome);
    let percentiles = Percentiles::of(&micros);
    match &percentiles {
        Some(p) => eprintln!(
            "{} samples at {}/s: p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            micros.len(),
            args.rate,
            p.p50,
            p.p90,
            p.p99,
            p.p999,
            p.max
        ),
        None => problems.push("no message sent in the measured interval arrived".to_owned()),
    }
    let p = percentiles.unwrap_or_default();
    let mut fields = vec![
        ("rate", args.rate.to_string()),
        ("payload", args.payload.to_string()),
        ("samples", micros.len().to_string()),
        ("p50_us", p.p50.to_string()),
        ("p90_us", p.p90.to_string()),
        ("p99_us", p.p99.to_string()),
        ("p999_us", p.p999.to_string()),
        ("max_us", p.max.to_string()),
    ];
    fields.extend(delivery_fields(&outcome, &check));
    report_qos0_loss(args.qos.qos(), &check);
    Ok(Summary { fields, problems })
}

/// Runs a flat-out topology and reports deliveries per second.
async fn throughput(args: &Args, topology: &Topology) -> Result<Summary, LoadError> {
    let outcome = run(args, topology, Pace::Flat, false).await?;
    let check = DeliveryCheck::of(&outcome);
    eprintln!(
        "{} deliveries in {:.3} s: {:.0} deliveries/s",
        outcome.measured_deliveries,
        outcome.measured_for.as_secs_f64(),
        outcome.rate()
    );
    report_qos0_loss(args.qos.qos(), &check);
    if outcome.stalls() > 0 {
        eprintln!(
            "publishers waited {} time(s) for the window to reopen and wrote messages off",
            outcome.stalls()
        );
    }
    let mut fields = vec![
        ("publishers", topology.publishers.to_string()),
        ("subscribers", topology.subscribers.to_string()),
        ("payload", args.payload.to_string()),
        ("msgs", outcome.measured_deliveries.to_string()),
        ("secs", format!("{:.3}", outcome.measured_for.as_secs_f64())),
        ("rate", format!("{:.0}", outcome.rate())),
    ];
    fields.extend(delivery_fields(&outcome, &check));
    Ok(Summary {
        fields,
        problems: check.problems(args.qos.qos()),
    })
}

/// The correctness fields every message-moving RESULT line carries.
fn delivery_fields(outcome: &RunOutcome, check: &DeliveryCheck) -> Vec<(&'static str, String)> {
    vec![
        ("sent", outcome.sent().to_string()),
        ("lost", check.lost.to_string()),
        ("behind", check.behind.to_string()),
        ("stalls", outcome.stalls().to_string()),
    ]
}

/// QoS 0 loss is allowed by MQTT, so it is a note rather than a failure.
fn report_qos0_loss(qos: QoS, check: &DeliveryCheck) {
    if qos == QoS::AtMostOnce && check.lost > 0 {
        eprintln!("note: the broker dropped {} QoS 0 deliveries", check.lost);
    }
}

/// Latencies in µs of messages sent during the measured interval, sorted.
fn measured_latencies_micros(outcome: &RunOutcome) -> Vec<u64> {
    let (from, to) = outcome.measured_nanos;
    let mut micros: Vec<u64> = outcome
        .subscribers
        .iter()
        .flat_map(|subscriber| subscriber.latencies.iter())
        .filter(|(sent, _)| (from..to).contains(sent))
        .map(|(_, latency)| latency / 1_000)
        .collect();
    micros.sort_unstable();
    micros
}

/// Latency percentiles in µs (nearest rank).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    /// Percentiles of `sorted`, or `None` when it is empty.
    pub fn of(sorted: &[u64]) -> Option<Percentiles> {
        Some(Percentiles {
            p50: nearest_rank(sorted, 500)?,
            p90: nearest_rank(sorted, 900)?,
            p99: nearest_rank(sorted, 990)?,
            p999: nearest_rank(sorted, 999)?,
            max: *sorted.last()?,
        })
    }
}

/// The smallest value with at least `per_mille` ‰ of `sorted` at or below it (integer
/// arithmetic: 0.999 × 1000 in floating point rounds up to the wrong rank).
fn nearest_rank(sorted: &[u64], per_mille: usize) -> Option<u64> {
    let rank = (sorted.len() * per_mille).div_ceil(1000);
    sorted.get(rank.max(1) - 1).copied()
}
