//! A real `cairn serve` as a child process: ready once it logs `broker ready` (the address is
//! read from that line, so a test can listen on port 0 and no port is guessed), its stderr
//! collected line by line in the background (a chatty log never fills the pipe, a test can
//! wait for a line, failures show the log), stopped by a signal or SIGKILL, killed if the test
//! drops it.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::WAIT;

/// What the binary logs once its listeners accept connections, followed by their addresses.
const READY: &str = "broker ready";
/// The field of the ready line that carries the addresses.
const LISTENING: &str = "listening=";
/// SIGKILL.
const SIGKILL: i32 = 9;

/// A running `cairn serve`.
pub struct ServeProcess {
    child: Child,
    /// Where it listens (the first address of its ready line).
    pub addr: SocketAddr,
    /// Everything written to stderr so far.
    log: watch::Receiver<String>,
    /// Ends with the process's stderr.
    stderr: JoinHandle<()>,
}

impl ServeProcess {
    /// Spawns `command` (a `cairn serve`, possibly through a launcher that execs it in the same
    /// process) with stdout discarded and stderr collected, and waits until it is ready (within
    /// three times [`WAIT`]: start-up may recover or repair a store).
    pub async fn spawn(mut command: Command) -> ServeProcess {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cairn serve starts");
        let pipe = child.stderr.take().expect("stderr is piped");
        let (log_sender, mut log) = watch::channel(String::new());
        let stderr = tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log_sender.send_modify(|log| {
                    log.push_str(&line);
                    log.push('\n');
                });
            }
        });
        let ready = tokio::time::timeout(WAIT * 3, log.wait_for(|log| ready_line(log).is_some()))
            .await
            .map(|found| found.is_ok());
        let addr = match ready {
            Ok(true) => ready_line(&log.borrow()).and_then(first_address),
            Ok(false) => panic!(
                "cairn serve ended before it was ready: {}",
                log.borrow().as_str()
            ),
            Err(_) => panic!(
                "cairn serve not ready within {:?}: {}",
                WAIT * 3,
                log.borrow().as_str()
            ),
        };
        let addr = addr.unwrap_or_else(|| {
            panic!(
                "cairn serve's ready line names no address: {}",
                log.borrow().as_str()
            )
        });
        ServeProcess {
            child,
            addr,
            log,
            stderr,
        }
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.log.borrow().clone()
    }

    /// Waits (within [`WAIT`]) until a line of the log satisfies `wanted`; fails if the
    /// process's stderr ends first. `what` describes the line for the failure message.
    pub async fn wait_for_log_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) {
        let found = tokio::time::timeout(WAIT, self.log.wait_for(|log| log.lines().any(&wanted)))
            .await
            .map(|found| found.is_ok());
        match found {
            Ok(true) => {}
            Ok(false) => panic!(
                "cairn serve's stderr ended without a line {what}: {}",
                self.log()
            ),
            Err(_) => panic!("no log line {what} within {WAIT:?}: {}", self.log()),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("cairn serve is running")
    }

    /// Sends `signal` (such as `-HUP`) with the `kill` command.
    pub async fn signal(&self, signal: &str) {
        super::programs::signal(self.pid(), signal).await;
    }

    /// Waits (within [`WAIT`]) for the process to exit.
    pub async fn exit_status(&mut self) -> ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("cairn serve exits within the wait")
            .expect("wait for cairn serve")
    }

    /// Everything the process wrote to stderr, once it has closed it.
    pub async fn stderr(&mut self) -> String {
        (&mut self.stderr).await.expect("stderr reader");
        self.log()
    }

    /// Kills the process with SIGKILL (`kill -9`) and waits until it is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("send SIGKILL to cairn");
        let status = self.exit_status().await;
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "cairn ended by SIGKILL, not {status}: {}",
            self.log()
        );
    }

    /// Sends SIGTERM and waits until the process has ended; asserts a graceful exit (status 0).
    pub async fn terminate(mut self) {
        self.signal("-TERM").await;
        let status = self.exit_status().await;
        assert!(
            status.success(),
            "cairn ended gracefully after SIGTERM, not {status}: {}",
            self.log()
        );
    }
}

/// The ready line of `log`, if it has been written.
fn ready_line(log: &str) -> Option<&str> {
    log.lines().find(|line| line.contains(READY))
}

/// The first address the ready line names.
fn first_address(line: &str) -> Option<SocketAddr> {
    let (_, field) = line.split_once(LISTENING)?;
    let first = field.trim_matches('"').split([' ', '"']).next()?;
    first.parse().ok()
}
