//! A two-node ejabberd cluster (mod_mqtt) as a clustered cloud broker, following the recipe
//! of `../shared/upstreams.md`: nodes `cairn1@localhost` and `cairn2@localhost`, each with its
//! own directory and MQTT port, node 2 joined to node 1.
//!
//! Each cluster runs its own `epmd` (the Erlang port mapper) on a free port, passed to the
//! nodes and to `ejabberdctl` in `ERL_EPMD_PORT`, so clusters of tests running in parallel
//! never see each other's nodes, and the fixed node names cannot collide. Dropping the cluster
//! kills both nodes (SIGKILL by the pid each wrote) and its `epmd`.
//!
//! ejabberd needs root: `ejabberdctl` runs the nodes as the `ejabberd` user, which owns the
//! cluster's directory. Its MQTT clients must send a user name and a password (any will do:
//! anonymous login), and it caps Session Expiry at 300 s.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tempfile::TempDir;
use tokio::process::{Child, Command};

use super::{accepts, free_ports, loopback, wait_until_refused, POLL, STARTUP};
use crate::common::programs;

const CTL: &str = "ejabberdctl";
const EPMD: &str = "epmd";
/// The user `ejabberdctl` runs the nodes as.
const USER: &str = "ejabberd";
const PACKAGE: &str = "ejabberd";
/// The Erlang resolver's configuration (Debian's, without its alias): `localhost` is
/// 127.0.0.1, whatever the machine's resolver says.
const INETRC: &str = "{lookup,[\"file\",\"native\"]}.\n{host,{127,0,0,1}, [\"localhost\"]}.\n";
/// Fresh ports tried for `epmd` before giving up.
const PORT_ATTEMPTS: usize = 5;

/// One node of the cluster.
struct Node {
    /// Its Erlang node name, e.g. `cairn1@localhost`.
    name: String,
    /// Its configuration, database and logs.
    dir: PathBuf,
    /// Its MQTT listener.
    addr: SocketAddr,
    /// The operating-system pid of its Erlang VM; `None` once stopped.
    pid: Option<u32>,
}

/// Two joined ejabberd nodes.
pub struct EjabberdCluster {
    nodes: [Node; 2],
    /// The cluster's own port mapper (killed when dropped).
    epmd: Child,
    epmd_port: u16,
    /// Holds every node's directory; deleted after the nodes are killed.
    _dir: TempDir,
}

impl EjabberdCluster {
    /// Starts node 1, then node 2 joined to it, and returns once both accept MQTT
    /// connections. `None` when ejabberd is not installed or the test does not run as root
    /// and the test is skipped (under `CI=true` the test fails instead).
    pub async fn start(test: &str) -> Option<EjabberdCluster> {
        if !programs::available(CTL, PACKAGE, test)
            || !programs::available(EPMD, "erlang-base", test)
            || !runs_as_root(test)
        {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory for ejabberd");
        let ports = free_ports::<2>();
        let nodes = [0, 1].map(|index| {
            let number = index + 1;
            let node = Node {
                name: format!("cairn{number}@localhost"),
                dir: dir.path().join(format!("cairn{number}")),
                addr: loopback(ports[index]),
                pid: None,
            };
            node.write_config();
            node
        });
        own_as_ejabberd(dir.path()).await;
        let (epmd, epmd_port) = start_epmd().await;
        let mut cluster = EjabberdCluster {
            nodes,
            epmd,
            epmd_port,
            _dir: dir,
        };
        cluster.start_node(0).await;
        cluster.start_node(1).await;
        cluster.join_node_2().await;
        // Joining restarts ejabberd's applications on node 2.
        cluster.wait_accepting(1).await;
        Some(cluster)
    }

    /// The MQTT listeners of node 1 and node 2.
    pub fn addrs(&self) -> [SocketAddr; 2] {
        [self.nodes[0].addr, self.nodes[1].addr]
    }

    /// Kills node `node` (0 or 1) as a crashing cluster member dies (SIGKILL: the sessions it
    /// held are lost) and returns once its MQTT port refuses connections.
    pub async fn stop_node(&mut self, node: usize) {
        let pid = self.nodes[node]
            .pid
            .take()
            .unwrap_or_else(|| panic!("ejabberd node {} is already stopped", node + 1));
        programs::signal(pid, "-KILL").await;
        let addr = self.nodes[node].addr;
        assert!(
            wait_until_refused(addr).await,
            "ejabberd node {} still accepts on {addr} {STARTUP:?} after SIGKILL",
            node + 1
        );
    }

    /// Starts node `node` and waits until it accepts MQTT connections. Its pid is known (for
    /// the kill on drop) before the wait, so a node that never gets ready is killed too.
    async fn start_node(&mut self, node: usize) {
        self.ctl(node, &["start"]).await;
        let pid_file = self.nodes[node].dir.join("ejabberd.pid");
        let written = tokio::time::timeout(STARTUP, async {
            loop {
                let pid = std::fs::read_to_string(&pid_file).ok();
                if let Some(pid) = pid.and_then(|pid| pid.trim().parse().ok()) {
                    return pid;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        let Ok(pid) = written else {
            panic!(
                "ejabberd node {} wrote no pid to {} within {STARTUP:?}; its log:\n{}",
                node + 1,
                pid_file.display(),
                self.nodes[node].log()
            )
        };
        self.nodes[node].pid = Some(pid);
        self.wait_accepting(node).await;
    }

    /// Waits until node `node`'s MQTT listener accepts connections.
    async fn wait_accepting(&self, node: usize) {
        let addr = self.nodes[node].addr;
        let accepted = tokio::time::timeout(STARTUP, async {
            while !accepts(addr).await {
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        assert!(
            accepted.is_ok(),
            "ejabberd node {} did not accept on {addr} within {STARTUP:?}; its log:\n{}",
            node + 1,
            self.nodes[node].log()
        );
    }

    /// Joins node 2 to node 1. Node 2 may not reach node 1 yet (`{no_ping,..}`: node 1's
    /// distribution is still coming up on a loaded machine, though its MQTT port answers),
    /// so the join is tried again until it succeeds or [`STARTUP`] has passed. A refused join
    /// changes nothing, so trying again is safe.
    async fn join_node_2(&self) {
        let first = self.nodes[0].name.clone();
        let args = ["join_cluster", first.as_str()];
        let joined = tokio::time::timeout(STARTUP, async {
            loop {
                match self.try_ctl(1, &args).await {
                    Ok(()) => return,
                    Err(failure) if failure.contains("no_ping") => tokio::time::sleep(POLL).await,
                    Err(failure) => panic!("{failure}"),
                }
            }
        })
        .await;
        assert!(
            joined.is_ok(),
            "node 2 could not reach node 1 to join it within {STARTUP:?}; node 1's log:\n{}",
            self.nodes[0].log()
        );
    }

    /// Runs `ejabberdctl` for node `node` with `args`; fails the test unless it succeeds.
    async fn ctl(&self, node: usize, args: &[&str]) {
        if let Err(failure) = self.try_ctl(node, args).await {
            panic!("{failure}");
        }
    }

    /// Runs `ejabberdctl` for node `node` with `args`; on failure, says how, with the node's
    /// log.
    async fn try_ctl(&self, node: usize, args: &[&str]) -> Result<(), String> {
        let dir = &self.nodes[node].dir;
        let mut command = Command::new(CTL);
        command
            .arg("--ctl-config")
            .arg(dir.join("ejabberdctl.cfg"))
            .arg("--config-dir")
            .arg(dir)
            .arg("--spool")
            .arg(dir.join("db"))
            .arg("--logs")
            .arg(dir.join("log"))
            .args(args)
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(STARTUP, command.output())
            .await
            .unwrap_or_else(|_| panic!("{CTL} {args:?} did not end within {STARTUP:?}"))
            .unwrap_or_else(|error| panic!("cannot run {CTL}: {error}"));
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "{CTL} {args:?} for node {} failed with {}: {}{}; its log:\n{}",
            node + 1,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.nodes[node].log()
        ))
    }
}

impl Drop for EjabberdCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(pid) = node.pid.take() {
                // Synchronous: the VM is gone before the directory is deleted. It is not our
                // child (ejabberdctl detaches it), so only its pid can reach it.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let _ = self.epmd.start_kill();
    }
}

impl Node {
    /// Writes the node's `ejabberd.yml`, `ejabberdctl.cfg` and `inetrc`, and creates its
    /// database and log directories.
    fn write_config(&self) {
        for dir in [self.dir.join("db"), self.dir.join("log")] {
            std::fs::create_dir_all(&dir).expect("create an ejabberd directory");
        }
        let port = self.addr.port();
        let config = format!(
            "hosts: [localhost]\n\
             loglevel: info\n\
             auth_method: [anonymous]\n\
             anonymous_protocol: login_anon\n\
             allow_multiple_connections: true\n\
             listen:\n  - {{port: {port}, ip: \"127.0.0.1\", module: mod_mqtt, backlog: 1000}}\n\
             modules:\n  mod_mqtt:\n    access_publish: {{\"#\": [{{allow: all}}]}}\n    \
             access_subscribe: {{\"#\": [{{allow: all}}]}}\n"
        );
        let dir = self.dir.display();
        // Without its own ejabberdctl.cfg, Debian's overrides the configuration path.
        let ctl_config = format!(
            "ERLANG_NODE={}\nINET_DIST_INTERFACE=127.0.0.1\n\
             EJABBERD_CONFIG_PATH={dir}/ejabberd.yml\nEJABBERD_PID_PATH={dir}/ejabberd.pid\n",
            self.name
        );
        for (file, text) in [
            ("ejabberd.yml", config),
            ("ejabberdctl.cfg", ctl_config),
            ("inetrc", INETRC.to_string()),
        ] {
            std::fs::write(self.dir.join(file), text).expect("write an ejabberd file");
        }
    }

    /// The node's log so far, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log").join("ejabberd.log")).unwrap_or_default()
    }
}

/// Whether the test runs as root, which `ejabberdctl` needs; prints a skip line, or fails the
/// test under `CI=true`, when it does not.
fn runs_as_root(test: &str) -> bool {
    let root = std::fs::metadata("/proc/self").is_ok_and(|process| process.uid() == 0);
    if !root {
        let why = "ejabberdctl runs ejabberd as its user only when started by root";
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{test}: not running as root; {why}");
        }
        eprintln!("SKIPPED {test}: not running as root ({why})");
    }
    root
}

/// Gives `dir` and everything in it to the `ejabberd` user.
async fn own_as_ejabberd(dir: &Path) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{USER}:"))
        .arg(dir)
        .status()
        .await
        .expect("run chown");
    assert!(
        status.success(),
        "chown -R {USER}: {}: {status}",
        dir.display()
    );
}

/// Starts a port mapper on a free loopback port; returns it once it accepts connections.
async fn start_epmd() -> (Child, u16) {
    for _ in 0..PORT_ATTEMPTS {
        let [port] = free_ports();
        let mut epmd = Command::new(EPMD)
            .args(["-port", &port.to_string(), "-address", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {EPMD}: {error}"));
        let listening = tokio::time::timeout(STARTUP, async {
            loop {
                if let Ok(Some(_)) = epmd.try_wait() {
                    return false;
                }
                if accepts(loopback(port)).await {
                    return true;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        match listening {
            Ok(true) => return (epmd, port),
            // It exited: the port was taken meanwhile.
            Ok(false) => {}
            Err(_) => panic!("{EPMD} did not accept on port {port} within {STARTUP:?}"),
        }
    }
    panic!("{EPMD} found no free port in {PORT_ATTEMPTS} tries")
}
