//! Starting and stopping a broker: binds every configured listener (TCP or TLS), runs one
//! accept loop per listener and one task per connection, and shuts down in order — listeners
//! first, then every connection (v5 clients get DISCONNECT 0x8B), then returns.
//!
//! Tests, benches and the `cairn` binary all start brokers through [`Server::start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::broker::connection::{self, Peer};
use crate::broker::{sys, Broker};
use crate::config::{Config, ListenerConfig, ListenerKind};
use crate::store::redb::{DurableOptions, OpenError};
use crate::store::{Store, StoreError};
use crate::transport::admission::{Admission, Handshake};
use crate::transport::listener;
use crate::transport::tls::{self, TlsError};

/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS listener {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: TlsError,
    },
    #[error("listener {addr} has kind \"tls\" but no [listeners.tls] settings")]
    MissingTls { addr: SocketAddr },
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error("could not restore the stored sessions: {0}")]
    Restore(#[from] StoreError),
}

/// Entry point for starting brokers.
#[derive(Debug)]
pub struct Server;

/// A running broker.
#[derive(Debug)]
pub struct ServerHandle {
    addrs: Vec<SocketAddr>,
    broker: Arc<Broker>,
    /// Tells the accept loops to stop.
    stop_listeners: watch::Sender<bool>,
    /// The accept loops and the `$SYS` task, awaited at shutdown.
    tasks: Vec<JoinHandle<()>>,
    /// Every connection task holds a clone; when all are dropped, `all_closed` yields `None`.
    connections: mpsc::Sender<()>,
    all_closed: mpsc::Receiver<()>,
}

/// What an accept loop needs for a TLS listener.
#[derive(Clone)]
struct TlsSetup {
    acceptor: TlsAcceptor,
    cn_as_username: bool,
}

impl Server {
    /// Opens the store under `data_dir` and restores its sessions, binds every configured
    /// listener (loading TLS certificates: errors name the file), and returns once the broker
    /// accepts connections.
    pub async fn start(config: Config) -> Result<ServerHandle, ServerError> {
        let config = Arc::new(config);
        let options = DurableOptions {
            commit_window: Duration::from_millis(config.store.commit_window_ms),
            fsync: config.store.fsync,
        };
        match listener::raise_fd_limit() {
            Ok(limit) => tracing::debug!(limit, "open file limit"),
            Err(error) => tracing::warn!(%error, "cannot raise the open file limit"),
        }
        let (store, recovered) = Store::open(&config.data_dir, options)?;
        let broker = Broker::new(config.clone(), store);
        broker.restore(recovered).await?;
        let mut bound = Vec::with_capacity(config.listeners.len());
        for listener in &config.listeners {
            let tls = tls_setup(listener)?;
            let socket = listener::bind(listener.bind).map_err(|source| ServerError::Bind {
                addr: listener.bind,
                source,
            })?;
            let addr = socket.local_addr().map_err(|source| ServerError::Bind {
                addr: listener.bind,
                source,
            })?;
            bound.push((socket, addr, tls));
        }
        let (stop_listeners, _) = watch::channel(false);
        let (connections, all_closed) = mpsc::channel(1);
        // Connections awaiting CONNECT are limited like connected clients: a flood of silent
        // sockets holds at most that many descriptors, each for `connect_timeout`.
        let admission = Admission::new(
            config.limits.max_connections,
            Duration::from_secs(config.limits.connect_timeout),
        );
        let mut addrs = Vec::with_capacity(bound.len());
        let mut tasks = Vec::with_capacity(bound.len() + 1);
        for (socket, addr, tls) in bound {
            tracing::info!(%addr, tls = tls.is_some(), "listening");
            addrs.push(addr);
            tasks.push(tokio::spawn(accept_loop(
                socket,
                tls,
                broker.clone(),
                admission.clone(),
                stop_listeners.subscribe(),
                connections.clone(),
            )));
        }
        if config.sys_interval > 0 {
            tasks.push(tokio::spawn(sys::run(
                broker.clone(),
                Duration::from_secs(config.sys_interval),
            )));
        }
        Ok(ServerHandle {
            addrs,
            broker,
            tasks,
            stop_listeners,
            connections,
            all_closed,
        })
    }
}

impl ServerHandle {
    /// The addresses the listeners are bound to (with the real port when 0 was configured).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// The engine, for counters and status.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Graceful shutdown: listeners stop first, then every connection closes (v5 clients get
    /// DISCONNECT 0x8B), waiting up to ten seconds for them, then the store commits what it
    /// was given and closes.
    pub async fn shutdown(self) {
        let ServerHandle {
            broker,
            stop_listeners,
            connections,
            mut all_closed,
            tasks,
            ..
        } = self;
        stop_listeners.send_replace(true);
        broker.begin_shutdown();
        drop(connections);
        if tokio::time::timeout(SHUTDOWN_GRACE, all_closed.recv())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
        for task in tasks {
            let _ = task.await;
        }
        match Arc::try_unwrap(broker) {
            // Dropping the broker closes the store: its writer finishes what it was given.
            Ok(broker) => {
                let _ = tokio::task::spawn_blocking(move || drop(broker)).await;
            }
            Err(_) => {
                tracing::warn!("connections still hold the broker; the store closes when they end")
            }
        }
    }
}

/// The TLS acceptor of a listener, or `None` for plain TCP.
fn tls_setup(listener: &ListenerConfig) -> Result<Option<TlsSetup>, ServerError> {
    if listener.kind != ListenerKind::Tls {
        return Ok(None);
    }
    let settings = listener.tls.as_ref().ok_or(ServerError::MissingTls {
        addr: listener.bind,
    })?;
    let acceptor = tls::acceptor(settings).map_err(|source| ServerError::Tls {
        addr: listener.bind,
        source,
    })?;
    Ok(Some(TlsSetup {
        acceptor,
        cn_as_username: settings.cn_as_username,
    }))
}

/// Accepts connections until told to stop, one task each.
async fn accept_loop(
    socket: TcpListener,
    tls: Option<TlsSetup>,
    broker: Arc<Broker>,
    admission: Admission,
    mut stop: watch::Receiver<bool>,
    connections: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = socket.accept() => accepted,
        };
        match accepted {
            Ok((stream, addr)) => {
                let Some(handshake) = admission.admit() else {
                    // Closed at once, not left unaccepted: the kernel would keep it open.
                    tracing::debug!(peer = %addr, "too many connections awaiting CONNECT; closing");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                let tls = tls.clone();
                let guard = connections.clone();
                tokio::spawn(async move {
                    serve_stream(broker, stream, addr, tls, handshake).await;
                    drop(guard);
                });
            }
            Err(error) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one accepted connection: plain MQTT, or MQTT after a TLS handshake.
async fn serve_stream(
    broker: Arc<Broker>,
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<TlsSetup>,
    handshake: Handshake,
) {
    match tls {
        None => {
            let peer = Peer {
                addr,
                cert_username: None,
            };
            connection::serve(broker, stream, peer, handshake).await;
        }
        // A TLS connection's state is several kilobytes; boxing it keeps the task of every
        // plain TCP connection small.
        Some(tls) => Box::pin(serve_tls(broker, stream, addr, tls, handshake)).await,
    }
}

/// Runs the TLS handshake, then the MQTT connection over it.
async fn serve_tls(
    broker: Arc<Broker>,
    stream: TcpStream,
    addr: SocketAddr,
    tls: TlsSetup,
    handshake: Handshake,
) {
    let accepting = tls.acceptor.accept(stream);
    let stream = match tokio::time::timeout_at(handshake.deadline(), accepting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::info!(peer = %addr, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(peer = %addr, "TLS handshake timed out");
            return;
        }
    };
    let cert_username = if tls.cn_as_username {
        tls::peer_common_name(stream.get_ref().1)
    } else {
        None
    };
    let peer = Peer {
        addr,
        cert_username,
    };
    connection::serve(broker, stream, peer, handshake).await;
}
