//! The real `cairn` binary as a child process: `serve` on 127.0.0.1 port 0 with a given data
//! directory, ready once it logs `broker ready` (the address is read from that line, so no port
//! is guessed), stopped with SIGKILL or SIGTERM; its log is kept for failure messages.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::common::binary::cairn;
use crate::common::WAIT;

/// What the binary logs once its listeners accept connections, followed by their addresses.
const READY: &str = "broker ready";
/// The field of the ready line that carries the addresses.
const LISTENING: &str = "listening=";
/// SIGKILL.
const SIGKILL: i32 = 9;

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

/// `cairn serve` on `data_dir`, as [`CairnProcess::start`] runs it.
pub fn serve_command(data_dir: &Path) -> Command {
    let args = serve_args(data_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cairn_command(&args)
}

/// Runs `cairn serve` on `data_dir` to its end; it must end within [`WAIT`] (a refusal).
pub async fn serve_to_end(data_dir: &Path) -> Output {
    let mut command = serve_command(data_dir);
    command.stdout(Stdio::piped());
    tokio::time::timeout(WAIT, command.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`cairn serve` on {} did not end within {WAIT:?}",
                data_dir.display()
            )
        })
        .expect("cairn runs")
}

/// A running `cairn serve`.
pub struct CairnProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Everything it logged so far.
    log: Arc<Mutex<String>>,
}

impl CairnProcess {
    /// Starts `cairn serve` on `data_dir` and waits (within [`WAIT`]) until it is ready.
    pub async fn start(data_dir: &Path) -> CairnProcess {
        CairnProcess::spawn(serve_command(data_dir)).await
    }

    /// Spawns `command` (a `cairn serve` with stderr piped, possibly through a launcher that
    /// execs it in the same process) and waits (within [`WAIT`]) until it is ready.
    pub async fn spawn(mut command: Command) -> CairnProcess {
        let mut child = command.spawn().expect("cairn serve starts");
        let (log, mut lines) = collect_log(&mut child);
        let ready = tokio::time::timeout(WAIT, ready_address(&mut lines)).await;
        let addr = match ready {
            Ok(Some(addr)) => addr,
            Ok(None) => panic!("cairn serve ended before it was ready: {}", text(&log)),
            Err(_) => panic!("cairn serve not ready within {WAIT:?}: {}", text(&log)),
        };
        CairnProcess { child, addr, log }
    }

    /// Kills the process with SIGKILL (`kill -9`) and waits until it is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("send SIGKILL to cairn");
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("a killed cairn ends within the wait")
            .expect("wait for cairn");
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "cairn ended by SIGKILL, not {status}: {}",
            self.log()
        );
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("cairn is running")
    }

    /// Sends SIGTERM and waits until the process has ended; asserts a graceful exit (status 0).
    pub async fn terminate(mut self) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("run kill");
        assert!(sent.success(), "SIGTERM sent to cairn {pid}");
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("cairn ends within the wait after SIGTERM")
            .expect("wait for cairn");
        assert!(
            status.success(),
            "cairn ended gracefully after SIGTERM, not {status}: {}",
            self.log()
        );
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        text(&self.log)
    }
}

fn text(log: &Mutex<String>) -> String {
    log.lock().map(|log| log.clone()).unwrap_or_default()
}

/// Reads the child's stderr in the background for as long as it runs: every line is kept in
/// the returned log and also sent on the channel (while anyone listens).
fn collect_log(child: &mut Child) -> (Arc<Mutex<String>>, mpsc::UnboundedReceiver<String>) {
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = Arc::new(Mutex::new(String::new()));
    let (sender, lines) = mpsc::unbounded_channel();
    let kept = log.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if let Ok(mut log) = kept.lock() {
                log.push_str(&line);
                log.push('\n');
            }
            let _ = sender.send(line);
        }
    });
    (log, lines)
}

/// The first address of the ready line, or `None` if the log ends without one.
async fn ready_address(lines: &mut mpsc::UnboundedReceiver<String>) -> Option<SocketAddr> {
    while let Some(line) = lines.recv().await {
        if !line.contains(READY) {
            continue;
        }
        let (_, field) = line.split_once(LISTENING)?;
        let first = field.trim_matches('"').split([' ', '"']).next()?;
        return first.parse().ok();
    }
    None
}
