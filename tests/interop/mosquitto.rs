//! Command lines for Mosquitto's clients (`mosquitto_pub`, `mosquitto_sub`) aimed at a test
//! broker, and reading what they print.
//!
//! `mosquitto_sub` always runs with `-d` (its debug lines show the CONNACK and SUBACK, so a
//! test knows when it is subscribed without sleeping), `-C n` and `-W 10` (so it ends by
//! itself), and prints each message as `MSG <qos> <retain> <topic> <payload>`.

use std::net::SocketAddr;

use cairn::codec::{ProtocolVersion, QoS};

use crate::common::certs::TlsFiles;
use crate::common::programs::{self, Finished, Running};

pub const SUB: &str = "mosquitto_sub";
pub const PUB: &str = "mosquitto_pub";

/// The prefix of a message line printed by `mosquitto_sub`.
const MESSAGE_PREFIX: &str = "MSG ";

/// Runs a program with line-buffered standard output (coreutils).
const LINE_BUFFERED: &str = "stdbuf";

/// Whether both Mosquitto clients (and `stdbuf`) are installed (see [`programs::available`]).
pub fn available(test: &str) -> bool {
    programs::available(SUB, "mosquitto-clients", test)
        && programs::available(PUB, "mosquitto-clients", test)
        && programs::available(LINE_BUFFERED, "coreutils", test)
}

/// The arguments of one Mosquitto client invocation.
#[derive(Debug, Clone)]
pub struct Args(Vec<String>);

impl Args {
    /// Host, port, protocol version (`-V`) and client id (`-i`).
    pub fn new(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> Args {
        let version = match version {
            ProtocolVersion::V311 => "mqttv311",
            ProtocolVersion::V5 => "mqttv5",
        };
        Args(Vec::new()).with(&[
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-V",
            version,
            "-i",
            client_id,
        ])
    }

    /// Adds arguments.
    pub fn with(mut self, args: &[&str]) -> Args {
        self.0.extend(args.iter().map(|arg| arg.to_string()));
        self
    }

    /// Verifies the broker's certificate against the test CA.
    pub fn tls(self, files: &TlsFiles) -> Args {
        self.with(&["--cafile", &path(&files.ca)])
    }

    /// Presents the test client certificate (mTLS).
    pub fn client_cert(self, files: &TlsFiles) -> Args {
        self.with(&[
            "--cert",
            &path(&files.client_cert),
            "--key",
            &path(&files.client_key),
        ])
    }
}

fn path(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// The QoS as Mosquitto's `-q` option writes it.
pub fn qos_arg(qos: QoS) -> String {
    (qos as u8).to_string()
}

/// Runs `mosquitto_pub` to publish `payload` on `topic` and returns what it left behind.
pub async fn publish(args: Args, topic: &str, qos: QoS, payload: &str) -> Finished {
    let args = args.with(&["-d", "-t", topic, "-q", &qos_arg(qos), "-m", payload]);
    programs::run(PUB, &args.0).await
}

/// Starts `mosquitto_sub` on `filter` at `qos`, ending after `count` messages, without waiting
/// for anything.
pub fn spawn_subscriber(args: Args, filter: &str, qos: QoS, count: usize) -> Running {
    let args = args.with(&[
        "-d",
        "-t",
        filter,
        "-q",
        &qos_arg(qos),
        "-C",
        &count.to_string(),
        "-W",
        "10",
        "-F",
        "MSG %q %r %t %p",
    ]);
    // Line-buffered stdout: piped, mosquitto_sub would hold its lines until it exits.
    let mut command = vec!["-oL".to_string(), SUB.to_string()];
    command.extend(args.0);
    Running::spawn(LINE_BUFFERED, &command)
}

/// Starts `mosquitto_sub` as [`spawn_subscriber`] does and returns once the broker granted
/// the subscription at `qos` (its SUBACK line).
pub async fn subscriber(args: Args, filter: &str, qos: QoS, count: usize) -> Running {
    let mut running = spawn_subscriber(args, filter, qos, count);
    let granted = running
        .wait_for_line("its SUBACK", |line| line.starts_with("Subscribed (mid: "))
        .await;
    assert!(
        granted.ends_with(&format!(": {}", qos_arg(qos))),
        "granted QoS in `{granted}`"
    );
    running
}

/// The message lines of a finished `mosquitto_sub`, without the prefix:
/// `<qos> <retain> <topic> <payload>`.
pub fn messages(finished: &Finished) -> Vec<String> {
    finished
        .stdout
        .iter()
        .filter_map(|line| line.strip_prefix(MESSAGE_PREFIX))
        .map(str::to_string)
        .collect()
}
