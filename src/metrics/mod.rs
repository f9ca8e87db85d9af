//! The Prometheus endpoint (`[metrics] bind`, off by default): `GET /metrics` answers with the
//! broker's and the bridges' figures in the text exposition format. It reads figures and never
//! changes anything; a scrape costs two short looks at the engine's state.
//!
//! - [`http`]: one request, one answer, bounded in size and time;
//! - [`exposition`]: the text format;
//! - [`report`]: which figures become which metrics.

pub mod exposition;
pub mod http;
pub mod report;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::bridge::BridgeFigures;
use crate::broker::sys::Figures;
use crate::broker::Broker;
use crate::config::MetricsConfig;

/// Scrapes answered at once; more connections wait to be accepted.
const CONCURRENT_SCRAPES: usize = 4;
/// The pause after a failed accept.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// The bridges' figures now (they change with the configuration, so they are asked each time).
pub type BridgeSource = Arc<dyn Fn() -> Vec<BridgeFigures> + Send + Sync>;

/// A bound metrics endpoint.
#[derive(Debug)]
pub struct Endpoint {
    socket: TcpListener,
    pub addr: SocketAddr,
}

/// The endpoint's address cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr} (metrics.bind): {source}")]
pub struct BindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Binds the endpoint `config` asks for, if any.
pub async fn bind(config: Option<&MetricsConfig>) -> Result<Option<Endpoint>, BindError> {
    let Some(config) = config else {
        return Ok(None);
    };
    Endpoint::bind(config.bind)
        .await
        .map(Some)
        .map_err(|source| BindError {
            addr: config.bind,
            source,
        })
}

impl Endpoint {
    /// Binds `bind`; `addr` is the address bound (with the real port when 0 was asked).
    pub async fn bind(bind: SocketAddr) -> std::io::Result<Endpoint> {
        let socket = crate::transport::listener::bind(bind)?;
        let addr = socket.local_addr()?;
        Ok(Endpoint { socket, addr })
    }

    /// Answers scrapers until `stop` turns true; scrapes in progress are then cut short, so
    /// that none holds the broker once this returns.
    pub async fn run(
        self,
        broker: Arc<Broker>,
        bridges: BridgeSource,
        mut stop: watch::Receiver<bool>,
    ) {
        tracing::info!(addr = %self.addr, "serving metrics at /metrics");
        let mut scrapes = JoinSet::new();
        loop {
            while scrapes.try_join_next().is_some() {}
            let full = scrapes.len() >= CONCURRENT_SCRAPES;
            let accepted = tokio::select! {
                // Full: the next connection waits until a scrape ends.
                _ = scrapes.join_next(), if full => continue,
                accepted = self.socket.accept(), if !full => accepted,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, most likely: give the broker's connections room.
                    tracing::warn!(%error, "metrics: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            scrapes.spawn(answer(stream, peer, broker.clone(), bridges.clone()));
        }
        scrapes.shutdown().await;
    }
}

/// Answers one connection: reads its request, writes the metrics or the error, closes.
async fn answer(
    mut stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    bridges: BridgeSource,
) {
    let route = http::read_route(&mut stream).await;
    let body = || report::render(&Figures::read(&broker), &bridges());
    let answer = http::respond(&mut stream, route, body);
    match tokio::time::timeout(http::READ_TIMEOUT, answer).await {
        Ok(Ok(())) => http::linger(&mut stream).await,
        Ok(Err(error)) => tracing::debug!(%peer, %error, "metrics: answer not delivered"),
        Err(_) => tracing::debug!(%peer, "metrics: the scraper does not read"),
    }
}
