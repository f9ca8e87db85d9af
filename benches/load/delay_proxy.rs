//! A TCP proxy that stands for a WAN uplink between a gateway's bridge and its upstream: every
//! byte is forwarded in order, each direction `delay` after it arrived (a round trip of twice
//! the delay). Connections are accepted and proxied until the tool exits.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::connection;
use crate::error::LoadError;

/// Listens on `listen` and proxies every connection to `upstream` with `delay` each way.
pub async fn start(listen: &str, upstream: String, delay: Duration) -> Result<(), LoadError> {
    let listener = connection::listen(listen).await?;
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                // An upstream that is down: the gateway sees its connection closed and retries.
                if let Ok(outbound) = TcpStream::connect(&upstream).await {
                    proxy(inbound, outbound, delay);
                }
            });
        }
    });
    Ok(())
}

fn proxy(inbound: TcpStream, outbound: TcpStream, delay: Duration) {
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (from_gateway, to_gateway) = inbound.into_split();
    let (from_upstream, to_upstream) = outbound.into_split();
    forward(from_gateway, to_upstream, delay);
    forward(from_upstream, to_gateway, delay);
}

/// Copies `from` to `to`, each chunk `delay` after it was read; ends (closing `to`) when `from`
/// ends or either fails.
fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    let chunk = Bytes::copy_from_slice(&buf[..read]);
                    if chunks.send((Instant::now() + delay, chunk)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some((at, chunk)) = due.recv().await {
            sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
}
