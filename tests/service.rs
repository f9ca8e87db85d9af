//! The real `cairn serve` under a stand-in service manager: a datagram socket in a temporary
//! directory as `NOTIFY_SOCKET`, with `WATCHDOG_USEC` set. READY=1 comes with a STATUS= line
//! naming the listener (which accepts MQTT by then), WATCHDOG=1 keeps coming while the broker
//! runs, and SIGTERM brings STOPPING=1 and a clean exit. No systemd needed.

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cairn::codec::ProtocolVersion;
use common::binary::cairn;
use common::serve::ServeProcess;
use common::{RawClient, WAIT};
use tokio::net::UnixDatagram;

/// The watchdog interval asked for: keep-alives come about every second.
const WATCHDOG_USEC: &str = "2000000";

/// Generous: the broker starts, recovers and pings on a loaded machine.
const NOTIFY_WAIT: Duration = WAIT.saturating_mul(3);

/// A stand-in for systemd's notification socket.
struct ServiceManager {
    socket: UnixDatagram,
    /// Every notification received so far, in order.
    received: Vec<String>,
}

impl ServiceManager {
    /// Waits (within [`NOTIFY_WAIT`]) for a notification with a line `wanted`; returns it.
    async fn expect(&mut self, wanted: &str) -> String {
        let found = tokio::time::timeout(NOTIFY_WAIT, async {
            let mut buf = vec![0u8; 4096];
            loop {
                let read = self.socket.recv(&mut buf).await.expect("receive");
                let text = String::from_utf8_lossy(&buf[..read]).into_owned();
                self.received.push(text.clone());
                if text.lines().any(|line| line == wanted) {
                    return text;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "no {wanted} within {NOTIFY_WAIT:?}; received {:?}",
                self.received
            )
        })
    }
}

/// The value of the `STATUS=` line of `notification`.
fn status(notification: &str) -> &str {
    notification
        .lines()
        .find_map(|line| line.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= in {notification:?}"))
}

/// STATUS=starting…, then READY=1 once serving, with the listener in STATUS=; at least two
/// WATCHDOG=1; STOPPING=1 on SIGTERM, then exit 0.
#[tokio::test]
async fn serve_tells_the_service_manager_ready_alive_and_stopping() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let socket_path = dir.path().join("notify");
    let mut manager = ServiceManager {
        socket: UnixDatagram::bind(&socket_path).expect("bind the notification socket"),
        received: Vec::new(),
    };
    let data_dir = dir.path().join("data");
    let mut command = cairn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir.display().to_string(),
    ]);
    command
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC);
    let mut serving = ServeProcess::spawn(command).await;

    let ready = manager.expect("READY=1").await;
    assert!(
        status(&manager.received[0]).starts_with("starting"),
        "a STATUS= before READY=1: {:?}",
        manager.received
    );
    let serving_status = status(&ready);
    let listening: SocketAddr = serving_status
        .strip_prefix("serving MQTT on ")
        .and_then(|rest| rest.split(';').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("STATUS= names the listener: {serving_status:?}"));
    assert_eq!(listening, serving.addr, "{serving_status}");
    assert!(
        serving_status.contains("0 sessions restored"),
        "{serving_status}"
    );
    // Ready means serving: a client gets its CONNACK.
    let client = RawClient::connect(listening, ProtocolVersion::V5, "after-ready").await;

    manager.expect("WATCHDOG=1").await;
    manager.expect("WATCHDOG=1").await;
    assert!(
        !manager
            .received
            .iter()
            .any(|notification| notification.contains("STOPPING=1")),
        "no STOPPING=1 before the signal: {:?}",
        manager.received
    );

    serving.signal("-TERM").await;
    let stopping = manager.expect("STOPPING=1").await;
    assert!(status(&stopping).starts_with("stopping"), "{stopping}");
    let exit = serving.exit_status().await;
    let log = serving.stderr().await;
    assert!(exit.success(), "exit 0 after SIGTERM, not {exit}: {log}");
    assert!(
        !log.contains("still hold the broker"),
        "the store closed in order: {log}"
    );
    drop(client);
}
