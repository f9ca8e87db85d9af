//! The idle-memory scenario: the broker's resident memory growth per idle connection, read
//! from `/proc/<pid>/status` (VmRSS) before and after opening N connections.
//!
//! Warm-up opens and closes a few connections first, so one-off allocations (thread pools,
//! first-use tables) are not charged to the measured connections.

use tokio::task::JoinSet;
use tokio::time::sleep;

use crate::args::Args;
use crate::broker_proc::rss_kib;
use crate::connection::{ClientOptions, MqttConnection};
use crate::error::LoadError;
use crate::run::{client_id, client_options};
use crate::scenarios::Summary;

/// Connections opened and closed before the baseline reading.
const WARMUP_CONNECTIONS: u32 = 10;

/// Handshakes in progress at once.
const CONCURRENT_HANDSHAKES: usize = 32;

/// Opens `--connections` idle connections and reports the broker's RSS growth per connection.
pub async fn idle_memory(args: &Args) -> Result<Summary, LoadError> {
    let pid = args.broker_pid.ok_or(LoadError::MissingBrokerPid)?;
    let options = client_options(args);
    let warmup = open_idle(&options, WARMUP_CONNECTIONS, "warm-up").await?;
    disconnect_all(warmup).await?;
    sleep(args.settle).await;
    let before_kib = rss_kib(pid)?;

    let connections = open_idle(&options, args.connections, "idle").await?;
    sleep(args.settle).await;
    let after_kib = rss_kib(pid)?;
    disconnect_all(connections).await?;

    let growth_bytes = (i128::from(after_kib) - i128::from(before_kib)) * 1024;
    let per_connection = growth_bytes / i128::from(args.connections);
    eprintln!(
        "broker {pid}: VmRSS {before_kib} KiB → {after_kib} KiB with {} idle connections: \
         {per_connection} bytes per connection",
        args.connections
    );
    Ok(Summary {
        fields: vec![
            ("connections", args.connections.to_string()),
            ("rss_before_kib", before_kib.to_string()),
            ("rss_after_kib", after_kib.to_string()),
            ("bytes_per_conn", per_connection.to_string()),
        ],
        problems: Vec::new(),
    })
}

/// Opens `count` connections, `CONCURRENT_HANDSHAKES` at a time.
async fn open_idle(
    options: &ClientOptions,
    count: u32,
    role: &'static str,
) -> Result<Vec<MqttConnection>, LoadError> {
    let mut opened = Vec::with_capacity(count as usize);
    let mut handshakes = JoinSet::new();
    for index in 0..count {
        if handshakes.len() >= CONCURRENT_HANDSHAKES {
            opened.push(next_opened(&mut handshakes).await?);
        }
        let options = options.clone();
        handshakes.spawn(async move {
            let who = format!("{role} connection {index}");
            MqttConnection::open(who, &client_id(role, index), &options).await
        });
    }
    while !handshakes.is_empty() {
        opened.push(next_opened(&mut handshakes).await?);
    }
    Ok(opened)
}

/// The next finished handshake of `handshakes`, which must not be empty.
async fn next_opened(
    handshakes: &mut JoinSet<Result<(MqttConnection, crate::connection::BrokerLimits), LoadError>>,
) -> Result<MqttConnection, LoadError> {
    match handshakes.join_next().await {
        Some(joined) => Ok(joined??.0),
        None => Err(LoadError::EndedEarly("handshake")),
    }
}

/// Disconnects every connection cleanly.
async fn disconnect_all(connections: Vec<MqttConnection>) -> Result<(), LoadError> {
    for connection in connections {
        connection.disconnect().await?;
    }
    Ok(())
}
