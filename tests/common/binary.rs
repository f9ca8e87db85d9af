//! The real `cairn` binary for tests that run it as a process.

use std::process::{Output, Stdio};

use tokio::process::Command;

use super::WAIT;

/// The service manager's variables: a test run under systemd must not notify it.
const SERVICE_MANAGER_VARIABLES: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The `cairn` binary with `args` and a clean environment (no `CAIRN_…`, `RUST_LOG` or service
/// manager variables from outside), stdout and stderr piped, killed if the test drops it.
pub fn cairn(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CAIRN_") {
            command.env_remove(key);
        }
    }
    for name in SERVICE_MANAGER_VARIABLES {
        command.env_remove(name);
    }
    command
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `command` to its end and returns what it printed; fails the test if it runs longer
/// than three times [`WAIT`].
pub async fn run_to_end(mut command: Command) -> Output {
    let program = format!("{:?}", command.as_std());
    tokio::time::timeout(WAIT * 3, command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not end within {:?}", WAIT * 3))
        .expect("cairn runs")
}

/// `cairn args…` run to its end (see [`run_to_end`]).
pub async fn run(args: &[&str]) -> Output {
    run_to_end(cairn(args)).await
}

/// What the process wrote to stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the process wrote to stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the process exited with `code`, showing its output otherwise.
pub fn assert_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}
