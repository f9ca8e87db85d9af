//! The end-to-end load tool: drives any MQTT 3.1.1 / 5.0 broker at host:port with one scenario
//! (fan-in, fan-out, latency, idle-memory, reboot-storm, durable-fan-in, durable-queues, and the
//! bridge scenarios bridge-session, bridge-fill, bridge-drain, bridge-wear, bridge-window) through a
//! hand-written tokio client on the cairn codec, checks that nothing was lost, and prints one
//! machine-readable `RESULT …` line on stdout (human lines go to stderr).
//!
//! `cargo bench --bench load -- --scenario fan-in --qos 1 --broker 127.0.0.1:1883`
//! Exit status: 0 when the run completed and passed its checks, 1 otherwise.
#![forbid(unsafe_code)]

#[path = "load/args.rs"]
mod args;
#[path = "load/bridge.rs"]
mod bridge;
#[path = "load/broker_proc.rs"]
mod broker_proc;
#[path = "load/connection.rs"]
mod connection;
#[path = "load/delay_proxy.rs"]
mod delay_proxy;
#[path = "load/durable.rs"]
mod durable;
#[path = "load/error.rs"]
mod error;
#[path = "load/idle.rs"]
mod idle;
#[path = "load/progress.rs"]
mod progress;
#[path = "load/publisher.rs"]
mod publisher;
#[path = "load/run.rs"]
mod run;
#[path = "load/scenarios.rs"]
mod scenarios;
#[path = "load/self_check.rs"]
mod self_check;
#[path = "load/stamp.rs"]
mod stamp;
#[path = "load/subscriber.rs"]
mod subscriber;
#[path = "load/sys_stats.rs"]
mod sys_stats;
#[path = "load/upstream_probe.rs"]
mod upstream_probe;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Args, Scenario};
use crate::error::LoadError;
use crate::scenarios::Summary;

fn main() -> ExitCode {
    let args = Args::parse();
    run::set_client_prefix(args.client_prefix.clone());
    let Some(scenario) = args.scenario else {
        return self_check();
    };
    match run_scenario(&args, scenario) {
        Ok(summary) => report(&args, scenario, &summary),
        Err(error) => {
            eprintln!("load: {error}");
            println!("{}", result_line(&args, scenario, &[], "error"));
            ExitCode::FAILURE
        }
    }
}

/// Without a scenario (as under `cargo test --all-targets`), checks the tool's bookkeeping.
fn self_check() -> ExitCode {
    let failures = self_check::failures();
    for failure in &failures {
        eprintln!("load: self-check FAILED: {failure}");
    }
    eprintln!(
        "load: {} of {} self-checks passed. No --scenario given: the load tool drives a \
         running broker, e.g. `cargo bench --bench load -- --scenario fan-in --broker \
         HOST:PORT` (see --help), or run benches/compare.sh (Cairn versus Mosquitto) or \
         benches/durable.sh (durable QoS 1, SD-card wear, recovery) or benches/bridge.sh (a \
         gateway's bridge draining a backlog).",
        self_check::CHECKS - failures.len(),
        self_check::CHECKS
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `scenario` on a runtime with `--threads` workers. The scenario itself runs as a task
/// on them, not on this thread: it waits on counters every received message moves, and from
/// here each of those wake-ups would cost two context switches, on the cores the brokers
/// measured need.
fn run_scenario(args: &Args, scenario: Scenario) -> Result<Summary, LoadError> {
    run::set_tls(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    let args = args.clone();
    runtime.block_on(async move {
        let task = tokio::spawn(async move {
            let args = &args;
            match scenario {
                Scenario::FanIn => scenarios::fan_in(args).await,
                Scenario::FanOut => scenarios::fan_out(args).await,
                Scenario::Latency => scenarios::latency(args).await,
                Scenario::IdleMemory => idle::idle_memory(args).await,
                Scenario::RebootStorm => idle::reboot_storm(args).await,
                Scenario::DurableFanIn => durable::durable_fan_in(args).await,
                Scenario::DurableQueues => durable::durable_queues(args).await,
                Scenario::BridgeSession => bridge::bridge_session(args).await,
                Scenario::BridgeFill => bridge::bridge_fill(args).await,
                Scenario::BridgeDrain => bridge::bridge_drain(args).await,
                Scenario::BridgeWear => bridge::bridge_wear(args).await,
                Scenario::BridgeWindow => upstream_probe::bridge_window(args).await,
            }
        });
        task.await.map_err(LoadError::Panicked)?
    })
}

/// Prints the RESULT line and every problem; the exit status says whether there were any.
fn report(args: &Args, scenario: Scenario, summary: &Summary) -> ExitCode {
    for problem in &summary.problems {
        eprintln!("load: FAILED: {problem}");
    }
    let status = if summary.problems.is_empty() {
        "ok"
    } else {
        "failed"
    };
    println!("{}", result_line(args, scenario, &summary.fields, status));
    if summary.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `RESULT scenario=… broker=… mqtt=… qos=… <fields> status=…`
fn result_line(
    args: &Args,
    scenario: Scenario,
    fields: &[(&'static str, String)],
    status: &str,
) -> String {
    let mut line = format!(
        "RESULT scenario={} broker={} mqtt={} qos={}",
        scenario.name(),
        args.label,
        args.mqtt_version.name(),
        args.qos.qos() as u8
    );
    for (key, value) in fields {
        line.push_str(&format!(" {key}={value}"));
    }
    line.push_str(&format!(" status={status}"));
    line
}
