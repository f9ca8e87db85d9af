//! Graceful shutdown: every connection is closed (v5 clients first get DISCONNECT 0x8B Server
//! shutting down), shutdown returns, and the listener no longer accepts connections.

use cairn::codec::{ProtocolVersion, ReasonCode};
use tokio::net::TcpStream;

use crate::common::clients::expect_server_close;
use crate::common::{start_broker, RawClient, WAIT};

// MQTT 5.0 §3.14.2.1 (0x8B Server shutting down) and MQTT 3.1.1 §3.14 (a server closes the
// connection without DISCONNECT): shutdown says goodbye to each client in its own version.
#[tokio::test]
async fn shutdown_disconnects_every_client() {
    let broker = start_broker().await;
    let addr = broker.addr;
    let mut v5 = RawClient::connect(addr, ProtocolVersion::V5, "staying-v5").await;
    let mut v311 = RawClient::connect(addr, ProtocolVersion::V311, "staying-v311").await;
    v5.expect_nothing_pending().await;
    v311.expect_nothing_pending().await;

    let shutdown = tokio::spawn(broker.shutdown());
    expect_server_close(&mut v5, ReasonCode::ServerShuttingDown).await;
    expect_server_close(&mut v311, ReasonCode::ServerShuttingDown).await;
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown returns once every connection is closed")
        .expect("shutdown task");

    let refused = TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "the listener is closed after shutdown, got {refused:?}"
    );
}
