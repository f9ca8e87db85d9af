//! A Mosquitto broker as the bridge's upstream, or as the reference for its password and ACL
//! files (`Secured`): started on a free loopback port with a profile, stopped (an outage) and
//! started again on the same port, killed when dropped. Its log goes to a file in its own
//! temporary directory and is shown when it fails.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tempfile::TempDir;
use tokio::process::{Child, Command};

use super::{accepts, free_ports, loopback, POLL, STARTUP};
use crate::common::programs;

const PROGRAM: &str = "mosquitto";
/// What Mosquitto logs when its listener's port is taken.
const PORT_TAKEN: &str = "Address already in use";
/// The end of the line Mosquitto logs once its listeners are open.
const RUNNING: &str = " running";
/// Fresh ports tried before giving up on starting.
const PORT_ATTEMPTS: usize = 5;

/// The configuration a test's Mosquitto runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MosquittoProfile {
    /// Anonymous clients, Mosquitto's defaults (no persistence).
    Plain,
    /// What a cloud broker announces and enforces (`../shared/upstreams.md`): Maximum QoS 1,
    /// no retained messages, Maximum Packet Size 131072, Receive Maximum 10, Server Keep Alive
    /// at most 1200 s, Topic Alias Maximum 8, and no persistence (a restart forgets every
    /// session).
    CloudLike,
    /// Mosquitto's own authentication and authorisation, from the files
    /// [`MosquittoUpstream::start_with_files`] wrote into its directory: the password file
    /// `passwd`, and the ACL file `acl` when `acl` is true; anonymous clients let in when
    /// `anonymous` is.
    Secured { anonymous: bool, acl: bool },
}

impl MosquittoProfile {
    /// The configuration file's text with the listener on 127.0.0.1:`port`, its files in `dir`.
    fn config(self, port: u16, dir: &Path) -> String {
        let anonymous = match self {
            MosquittoProfile::Secured { anonymous, .. } => anonymous,
            MosquittoProfile::Plain | MosquittoProfile::CloudLike => true,
        };
        let mut config = format!(
            "per_listener_settings false\nlistener {port} 127.0.0.1\n\
             allow_anonymous {anonymous}\npersistence false\n"
        );
        match self {
            MosquittoProfile::Plain => {}
            MosquittoProfile::CloudLike => config.push_str(
                "max_qos 1\nretain_available false\nmax_packet_size 131072\n\
                 max_inflight_messages 10\nmax_keepalive 1200\nmax_topic_alias 8\n",
            ),
            MosquittoProfile::Secured { acl, .. } => {
                // Started as root, Mosquitto would become the user `mosquitto`, who cannot read
                // the test's directory; as anyone else it ignores this line.
                config.push_str("user root\n");
                config.push_str(&format!("password_file {}\n", dir.join("passwd").display()));
                if acl {
                    config.push_str(&format!("acl_file {}\n", dir.join("acl").display()));
                }
            }
        }
        config
    }
}

/// A running (or deliberately stopped) Mosquitto.
pub struct MosquittoUpstream {
    profile: MosquittoProfile,
    port: u16,
    /// The configuration file and the log.
    dir: TempDir,
    /// `None` while stopped.
    child: Option<Child>,
}

/// Mosquitto could not listen on its port: another process holds it.
struct PortTaken;

impl MosquittoUpstream {
    /// Starts Mosquitto with `profile` on a free port and returns once it accepts connections.
    /// `None` when `mosquitto` is not installed and the test is skipped (under `CI=true` the
    /// test fails instead).
    pub async fn start(profile: MosquittoProfile, test: &str) -> Option<MosquittoUpstream> {
        MosquittoUpstream::start_with_files(profile, &[], test).await
    }

    /// [`MosquittoUpstream::start`], with `files` (name, text) written into its directory
    /// first: the `passwd` and `acl` of [`MosquittoProfile::Secured`].
    pub async fn start_with_files(
        profile: MosquittoProfile,
        files: &[(&str, &str)],
        test: &str,
    ) -> Option<MosquittoUpstream> {
        if !programs::available(PROGRAM, PROGRAM, test) {
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory for mosquitto");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write a file for mosquitto");
        }
        let mut upstream = MosquittoUpstream {
            profile,
            port: 0,
            dir,
            child: None,
        };
        for _ in 0..PORT_ATTEMPTS {
            [upstream.port] = free_ports();
            if upstream.launch().await.is_ok() {
                return Some(upstream);
            }
        }
        panic!("mosquitto found no free port in {PORT_ATTEMPTS} tries")
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// An outage: SIGTERM, then waits until it has exited (it closes its clients' connections
    /// and forgets their sessions, having no persistence).
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("stop a running mosquitto");
        let pid = child.id().expect("a running mosquitto has a pid");
        programs::signal(pid, "-TERM").await;
        let exited = tokio::time::timeout(STARTUP, child.wait()).await;
        match exited {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => panic!("waiting for mosquitto to exit: {error}"),
            Err(_) => panic!(
                "mosquitto did not exit within {STARTUP:?} of SIGTERM: {}",
                self.log()
            ),
        }
    }

    /// Starts it again after [`MosquittoUpstream::stop`], on the same port (waiting while
    /// another process holds it), and returns once it accepts connections. Without
    /// persistence this is a cloud that forgot every session.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "mosquitto is already running");
        let retried = tokio::time::timeout(STARTUP, async {
            while self.launch().await.is_err() {
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        assert!(
            retried.is_ok(),
            "mosquitto could not listen on port {} again within {STARTUP:?}: {}",
            self.port,
            self.log()
        );
    }

    /// Starts the process on `self.port` and waits until it accepts connections.
    async fn launch(&mut self) -> Result<(), PortTaken> {
        let config = self.dir.path().join("mosquitto.conf");
        let text = self.profile.config(self.port, self.dir.path());
        std::fs::write(&config, text).expect("write mosquitto.conf");
        // Mosquitto logs to stderr by default; into a file, a busy log never blocks it.
        let log = File::create(self.log_path()).expect("create mosquitto's log");
        let mut child = Command::new(PROGRAM)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start mosquitto: {error}"));
        let addr = self.addr();
        let ready = tokio::time::timeout(STARTUP, async {
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(status);
                }
                // Its own listener, not another process that holds the port.
                if self.has_listened() && accepts(addr).await {
                    return None;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        match ready {
            Ok(None) => {
                self.child = Some(child);
                Ok(())
            }
            Ok(Some(_)) if self.log().contains(PORT_TAKEN) => Err(PortTaken),
            Ok(Some(status)) => panic!("mosquitto exited with {status}: {}", self.log()),
            Err(_) => panic!(
                "mosquitto did not accept connections on {addr} within {STARTUP:?}: {}",
                self.log()
            ),
        }
    }

    /// Whether the current run has logged that its listener is open.
    fn has_listened(&self) -> bool {
        self.log().lines().any(|line| line.ends_with(RUNNING))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// What the current (or last) run logged (connections, disconnections and their reasons),
    /// for a test's failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}
