//! A flood of connections that never send CONNECT. MQTT 3.1.1 §3.1 and MQTT 5.0 §3.1: a
//! server that receives no CONNECT within a reasonable time after the network connection is
//! established SHOULD close it; Cairn's bound is `limits.connect_timeout`, whatever the number
//! of connections, including while `limits.max_connections` is reached.

use std::time::Duration;

use cairn::codec::{ProtocolVersion, ReasonCode};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::common::clients::connect_ok;
use crate::common::{connect_packet, start_broker_with};
use crate::support::{disconnect, expect_connect_refused};

/// Silent sockets opened at once: more than a default listen backlog (1024) holds.
const FLOOD: usize = 3000;
/// Clients connected before the flood: `limits.max_connections` is reached.
const CONNECTED: usize = 50;
/// File descriptors the test process keeps for itself beyond the sockets (the broker, its
/// store, the test harness).
const SPARE_FDS: u64 = 256;
/// How long a silent socket may stay open: the connect timeout plus a generous margin for a
/// loaded machine. The bug left sockets open for good.
const CLOSE_BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_all_closed_even_when_full() {
    // Both ends of every socket live in this process.
    let fd_limit = rlimit::increase_nofile_limit(u64::MAX).expect("read the fd limit");
    let flood = FLOOD.min(usize::try_from(fd_limit.saturating_sub(SPARE_FDS) / 2).unwrap_or(0));
    assert!(
        flood > 1024,
        "fd limit {fd_limit} too low for a flood beyond a listen backlog"
    );
    let broker = start_broker_with(|config| {
        config.limits.connect_timeout = 2;
        config.limits.max_connections = CONNECTED;
    })
    .await;

    let mut connected = Vec::with_capacity(CONNECTED);
    for n in 0..CONNECTED {
        let id = format!("resident-{n}");
        connected.push(
            connect_ok(broker.addr, connect_packet(ProtocolVersion::V311, &id))
                .await
                .0,
        );
    }
    // Full: one more client is refused (3.1.1 return code 0x03, Server unavailable).
    expect_connect_refused(
        broker.addr,
        connect_packet(ProtocolVersion::V311, "one-too-many"),
        ReasonCode::ServerUnavailable,
    )
    .await;

    let mut opening = JoinSet::new();
    for _ in 0..flood {
        let addr = broker.addr;
        opening.spawn(async move { TcpStream::connect(addr).await });
    }
    let mut watching = JoinSet::new();
    while let Some(opened) = opening.join_next().await {
        let mut socket = opened.expect("connect task").expect("TCP connect");
        watching.spawn(async move {
            let mut byte = [0u8; 1];
            match tokio::time::timeout(CLOSE_BOUND, socket.read(&mut byte)).await {
                // End of stream or reset: closed by the broker.
                Ok(Ok(0)) | Ok(Err(_)) => true,
                Ok(Ok(_)) => panic!("the broker sent data before CONNECT"),
                Err(_) => false,
            }
        });
    }
    let mut still_open = 0;
    while let Some(closed) = watching.join_next().await {
        if !closed.expect("watch task") {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open, 0,
        "{still_open} of {flood} silent sockets still open after {CLOSE_BOUND:?}"
    );

    // The residents were served all along; once one leaves, a newcomer gets its place.
    connected[0].expect_nothing_pending().await;
    let mut leaving = connected.pop().expect("a resident");
    disconnect(&mut leaving, ReasonCode::Success).await;
    let (mut newcomer, _) =
        connect_ok(broker.addr, connect_packet(ProtocolVersion::V5, "newcomer")).await;
    newcomer.expect_nothing_pending().await;
    drop(connected);
    broker.shutdown().await;
}
