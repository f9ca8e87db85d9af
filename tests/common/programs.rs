//! Outside programs for the tests: finding them on PATH (a missing one skips the test, or fails
//! it under `CI=true`), running them with a deadline and kill-on-drop, and reading their
//! standard output line by line while they run.

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

use super::WAIT;

/// Whether `program` (from the Debian package `package`) can run here. When it is missing,
/// the test fails under `CI=true` (saying what to install) and otherwise prints a skip line,
/// so the caller returns early.
pub fn available(program: &str, package: &str, test: &str) -> bool {
    let install = format!("install Debian's {package} (apt-get install {package})");
    ready_or_skip(
        on_path(program),
        test,
        &format!("`{program}` is not on PATH"),
        &install,
    )
}

/// Whether something a test needs beyond a program (`ready`) is there. When it is not, the
/// test fails under `CI=true` (saying what is `missing` and how to `install` it) and otherwise
/// prints a skip line, so the caller returns early.
pub fn ready_or_skip(ready: bool, test: &str, missing: &str, install: &str) -> bool {
    if ready {
        return true;
    }
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test}: {missing}; {install}");
    }
    eprintln!("SKIPPED {test}: {missing} ({install} to run it)");
    false
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program)))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// What a program left behind when it ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Standard output lines not yet consumed by [`Running::wait_for_line`].
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Finished {
    /// Fails the test, showing everything the program said, unless it exited with 0.
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what} failed with {}: {self:#?}",
            self.status
        );
    }
}

/// An outside program running in the background; killed if dropped before it ends.
pub struct Running {
    name: String,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: ChildStderr,
    /// Every stdout line read so far, for failure messages.
    seen: Vec<String>,
}

impl Running {
    /// Starts `program` with `args`, capturing its output.
    pub fn spawn(program: &str, args: &[String]) -> Running {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {program}: {error}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        Running {
            name: format!("{program} {}", args.join(" ")),
            child,
            stdout: BufReader::new(stdout).lines(),
            stderr,
            seen: Vec::new(),
        }
    }

    /// Reads standard output until a line satisfies `wanted` and returns it. Fails the test if
    /// the program ends first or [`WAIT`] passes.
    pub async fn wait_for_line(
        &mut self,
        description: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let found = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = self.stdout.next_line().await {
                self.seen.push(line.clone());
                if wanted(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => {
                let stderr = self.stderr_now().await;
                panic!(
                    "`{}` ended before printing {description}; stdout: {:#?}; stderr: {stderr}",
                    self.name, self.seen
                )
            }
            Err(_) => panic!(
                "`{}` did not print {description} within {WAIT:?}; stdout: {:#?}",
                self.name, self.seen
            ),
        }
    }

    /// Waits for the program to end by itself (within three times [`WAIT`]) and collects the
    /// rest of its output.
    pub async fn finish(mut self) -> Finished {
        let name = self.name.clone();
        let ended = tokio::time::timeout(WAIT * 3, async {
            let mut stdout = Vec::new();
            while let Ok(Some(line)) = self.stdout.next_line().await {
                stdout.push(line);
            }
            let mut stderr = String::new();
            let _ = self.stderr.read_to_string(&mut stderr).await;
            let status = self.child.wait().await;
            (status, stdout, stderr)
        })
        .await;
        match ended {
            Ok((Ok(status), stdout, stderr)) => Finished {
                status,
                stdout,
                stderr,
            },
            Ok((Err(error), ..)) => panic!("waiting for `{name}`: {error}"),
            Err(_) => panic!("`{name}` did not end within {:?}", WAIT * 3),
        }
    }

    /// Whatever the program wrote to stderr so far (it has ended when this is called).
    async fn stderr_now(&mut self) -> String {
        let mut stderr = String::new();
        let _ = tokio::time::timeout(WAIT, self.stderr.read_to_string(&mut stderr)).await;
        stderr
    }
}

/// Runs `program` to its end and returns what it left behind.
pub async fn run(program: &str, args: &[String]) -> Finished {
    Running::spawn(program, args).finish().await
}

/// Sends `signal` (such as `-TERM`) to process `pid` with the `kill` command.
pub async fn signal(pid: u32, signal: &str) {
    let pid = pid.to_string();
    let status = Command::new("kill")
        .args([signal, &pid])
        .status()
        .await
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}: {status}");
}
