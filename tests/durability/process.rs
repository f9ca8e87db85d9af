//! The real `cairn` binary as the durability tests run it: `serve` on 127.0.0.1 port 0 with a
//! given data directory, info logging and offline queues large enough for the crash test,
//! either to its end (a refusal) or as a [`ServeProcess`].

use std::path::Path;
use std::process::{Output, Stdio};

use tokio::process::Command;

use crate::common::binary::{cairn, run_to_end};
use crate::common::serve::ServeProcess;

/// `cairn` with `args`, a clean environment (no `CAIRN_…` or `RUST_LOG` from outside), info
/// logging to a piped stderr, no `$SYS` updates, and offline queues large enough for the
/// crash test; killed if the test drops it.
pub fn cairn_command(args: &[&str]) -> Command {
    let mut command = cairn(args);
    command
        .env("CAIRN_LOG__LEVEL", "info")
        .env("CAIRN_SYS_INTERVAL", "0")
        .env("CAIRN_LIMITS__MAX_QUEUED_MESSAGES", "1000000")
        .stdout(Stdio::null());
    command
}

/// The arguments of `cairn serve` on 127.0.0.1 port 0 with `data_dir`.
pub fn serve_args(data_dir: &Path) -> Vec<String> {
    vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ]
}

/// `cairn serve` on `data_dir`, as [`start`] runs it.
pub fn serve_command(data_dir: &Path) -> Command {
    let args = serve_args(data_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cairn_command(&args)
}

/// Runs `cairn serve` on `data_dir` to its end (a refusal).
pub async fn serve_to_end(data_dir: &Path) -> Output {
    let mut command = serve_command(data_dir);
    command.stdout(Stdio::piped());
    run_to_end(command).await
}

/// Starts `cairn serve` on `data_dir` and waits until it is ready.
pub async fn start(data_dir: &Path) -> ServeProcess {
    ServeProcess::spawn(serve_command(data_dir)).await
}
