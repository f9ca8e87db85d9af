//! Starting and stopping a broker: the wiring. Opens the store and restores its sessions,
//! binds every configured listener (TCP, TLS, WebSocket over either) and runs its accept loop
//! ([`crate::transport::accept`]) with the engine serving each connection, and shuts down in
//! order — listeners first, then every connection (v5 clients get DISCONNECT 0x8B), then the
//! store.
//!
//! Tests, benches and the `cairn` binary all start brokers through [`Server::start`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::access::{AccessError, Rules};
use crate::bridge::running::{self, BridgeChanges, RunningBridges};
use crate::bridge::{self, BridgeError};
use crate::broker::connection;
use crate::broker::state::ConnectionSignal;
use crate::broker::{keep_alive, sys, Broker};
use crate::codec::ReasonCode;
use crate::config::reload::{self, ReloadPlan};
use crate::config::{Config, ListenerConfig};
use crate::metrics;
use crate::store::redb::{DurableOptions, OpenError};
use crate::store::{Store, StoreError};
use crate::transport::{
    listener, Admission, Arrival, Listener, Parkable, ReloadableTls, Serve, TlsError, TlsListener,
    WebSocketSettings,
};

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
    #[error("listener {addr} has kind \"{kind}\" but no [listeners.tls] settings")]
    MissingTls {
        addr: SocketAddr,
        kind: &'static str,
    },
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error("could not restore the stored sessions: {0}")]
    Restore(#[from] StoreError),
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error(transparent)]
    Metrics(#[from] metrics::BindError),
}

/// The keys of `config` that name files a reload reads again (see [`Reloaded::files_reread`]).
fn files_read(config: &Config) -> Vec<String> {
    let tls = config
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, listener)| listener.tls.is_some())
        .map(|(index, _)| format!("listeners[{index}].tls"));
    let access = [
        config
            .password_file
            .as_ref()
            .map(|_| "password_file".to_string()),
        config.acl_file.as_ref().map(|_| "acl_file".to_string()),
    ];
    tls.chain(access.into_iter().flatten()).collect()
}

impl ServerError {
    /// Whether the configuration itself cannot be served: it names password, ACL, TLS or bridge
    /// files that cannot be used (`cairn check-config` finds the same), or a TLS listener
    /// without its settings. Not an address in use, nor the store.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            ServerError::Tls { .. }
                | ServerError::MissingTls { .. }
                | ServerError::Access(_)
                | ServerError::Bridge(_)
        )
    }
}

/// What a reload changed (see [`ServerHandle::reload`]).
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Keys whose new value is in force now (`log.level` is the caller's to apply).
    pub applied: Vec<String>,
    /// Keys whose new value waits for a restart; the running value stays in force.
    pub need_restart: Vec<String>,
    /// Bridges added, removed, and restarted with new settings or renewed password or TLS
    /// files.
    pub bridges: BridgeChanges,
    /// Connections closed because the password file no longer has their user.
    pub logins_closed: usize,
    /// The keys whose files were read again and put in force, changed or not: each TLS
    /// listener's `tls` (certificate, key, client CA), `password_file`, `acl_file`.
    pub files_reread: Vec<String>,
}

/// Entry point for starting brokers.
#[derive(Debug)]
pub struct Server;

/// A running broker.
#[derive(Debug)]
pub struct ServerHandle {
    addrs: Vec<SocketAddr>,
    /// Where the metrics endpoint listens, if `[metrics]` asks for one.
    metrics_addr: Option<SocketAddr>,
    broker: Arc<Broker>,
    /// Places for connections awaiting CONNECT, shared by every listener.
    admission: Admission,
    /// Each listener's TLS setup (`None` for plain TCP), in the configuration's order.
    tls: Vec<Option<ReloadableTls>>,
    /// The WebSocket listeners' upgrade settings, whose frame limit follows
    /// `limits.max_packet_size` at a reload.
    websockets: Vec<WebSocketSettings>,
    bridges: RunningBridges,
    /// Tells the accept loops to stop.
    stop_listeners: watch::Sender<bool>,
    /// The accept loops and the `$SYS` task, awaited at shutdown (with the bridges).
    tasks: Vec<JoinHandle<()>>,
    /// Every connection task holds a clone; when all are dropped, `all_closed` yields `None`.
    connections: mpsc::Sender<()>,
    all_closed: mpsc::Receiver<()>,
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
            // Within 1 GiB (the key's bounds), so it fits a 32-bit usize.
            cache_bytes: usize::try_from(config.store.cache_bytes).unwrap_or(usize::MAX),
        };
        match listener::raise_fd_limit() {
            Ok(limit) => tracing::debug!(limit, "open file limit"),
            Err(error) => tracing::warn!(%error, "cannot raise the open file limit"),
        }
        let rules = Rules::load(&config)?;
        let (store, recovered) = Store::open(&config.data_dir, options)?;
        let broker = Broker::new(config.clone(), store, rules);
        broker.restore(recovered).await?;
        let mut bound = Vec::with_capacity(config.listeners.len());
        for configured in &config.listeners {
            let tls = tls_setup(configured)?.map(ReloadableTls::new);
            let websocket = configured
                .websocket_path()
                .map(|path| WebSocketSettings::new(path, config.limits.max_packet_size));
            let socket = listener::bind(configured.bind).map_err(|source| ServerError::Bind {
                addr: configured.bind,
                source,
            })?;
            let addr = socket.local_addr().map_err(|source| ServerError::Bind {
                addr: configured.bind,
                source,
            })?;
            bound.push((socket, addr, configured.kind, tls, websocket));
        }
        let metrics = metrics::bind(config.metrics.as_ref()).await?;
        // Bridge sessions take messages from the first client on.
        let bridges = RunningBridges::start(&broker).await?;
        let (stop_listeners, _) = watch::channel(false);
        let (connections, all_closed) = mpsc::channel(1);
        // Connections awaiting CONNECT are limited like connected clients: a flood of silent
        // sockets holds at most that many descriptors, each for `connect_timeout`.
        let admission = Admission::new(
            config.limits.max_connections,
            Duration::from_secs(config.limits.connect_timeout),
        );
        let mut addrs = Vec::with_capacity(bound.len());
        let mut tls_setups = Vec::with_capacity(bound.len());
        let mut websockets = Vec::new();
        let mut tasks = Vec::with_capacity(bound.len() + 1);
        for (index, (socket, addr, kind, tls, websocket)) in bound.into_iter().enumerate() {
            tracing::info!(%addr, kind = kind.name(), "listening");
            addrs.push(addr);
            tls_setups.push(tls.clone());
            websockets.extend(websocket.clone());
            let listener = Listener {
                socket,
                index,
                tls,
                websocket,
                admission: admission.clone(),
                server: Engine(broker.clone()),
            };
            tasks.push(tokio::spawn(
                listener.run(stop_listeners.subscribe(), connections.clone()),
            ));
        }
        let bridge_figures: metrics::BridgeSource = {
            let broker = broker.clone();
            let shown = bridges.shown();
            Arc::new(move || bridge::figures(&broker, &shown.current()))
        };
        tasks.push(tokio::spawn(keep_alive::run(
            broker.clone(),
            keep_alive::TICK,
        )));
        if config.sys_interval > 0 {
            let figures = bridge_figures.clone();
            tasks.push(tokio::spawn(sys::run(
                broker.clone(),
                Duration::from_secs(config.sys_interval),
                move || bridge::sys_values(&figures()),
            )));
        }
        let metrics_addr = metrics.as_ref().map(|endpoint| endpoint.addr);
        if let Some(endpoint) = metrics {
            let stop = stop_listeners.subscribe();
            tasks.push(tokio::spawn(endpoint.run(
                broker.clone(),
                bridge_figures,
                stop,
            )));
        }
        Ok(ServerHandle {
            addrs,
            metrics_addr,
            broker,
            admission,
            tls: tls_setups,
            websockets,
            bridges,
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

    /// Where the metrics endpoint listens (with the real port when 0 was configured).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The engine, for counters and status.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Puts a new configuration in force without dropping anyone (SIGHUP). Everything that
    /// can fail is done first — every TLS listener's files read again (a renewed certificate
    /// under the same name is the usual case), every bridge's password and TLS files — so
    /// an error changes nothing and the running configuration stays in force. Then: new TLS
    /// handshakes use the new certificates; connections made from now on get the new limits
    /// (connected clients keep those their CONNACK announced); queue bounds hold from the
    /// next message on; changed bridges (new settings, or a password file or TLS files that
    /// hold something else now) reconnect with their queue kept, removed ones end, added ones
    /// start. Keys that need a restart keep their running value and are named in
    /// [`Reloaded::need_restart`] (see [`crate::config::reload`]).
    pub async fn reload(&mut self, new: Config) -> Result<Reloaded, ServerError> {
        let running = self.broker.config();
        let ReloadPlan {
            config,
            applied,
            need_restart,
        } = reload::plan(&running, new);
        let tls = config
            .listeners
            .iter()
            .map(tls_setup)
            .collect::<Result<Vec<_>, _>>()?;
        let bridges = running::prepare(&config)?;
        let rules = Rules::load(&config)?;
        for (slot, setup) in self.tls.iter().zip(tls) {
            if let (Some(slot), Some(setup)) = (slot, setup) {
                slot.replace(setup);
            }
        }
        let (old, new) = (&running.limits, &config.limits);
        if (old.max_connections, old.connect_timeout) != (new.max_connections, new.connect_timeout)
        {
            self.admission.set_limits(
                new.max_connections,
                Duration::from_secs(new.connect_timeout),
            );
        }
        if old.max_packet_size != new.max_packet_size {
            for websocket in &self.websockets {
                websocket.set_max_packet_size(new.max_packet_size);
            }
        }
        let files_reread = files_read(&config);
        self.broker.reconfigure(Arc::new(config));
        let logins_closed = self.replace_rules(rules);
        let bridges = self.bridges.apply(&self.broker, bridges).await;
        Ok(Reloaded {
            applied,
            need_restart,
            bridges,
            logins_closed,
            files_reread,
        })
    }

    /// Puts the re-read password and ACL files in force and closes the connections whose
    /// password login names a user the new password file does not have (v5: DISCONNECT 0x87).
    /// Returns how many it closed.
    fn replace_rules(&self, rules: Rules) -> usize {
        self.broker.replace_rules(rules);
        let rules = self.broker.access().rules();
        let removed = |signal: &ConnectionSignal| {
            let user = signal.login()?;
            let known = rules
                .passwords
                .as_ref()
                .is_some_and(|passwords| passwords.contains(user));
            (!known).then_some(ReasonCode::NotAuthorized)
        };
        let closed = self.broker.read(|state| state.close_connections(removed));
        if closed > 0 {
            tracing::info!(
                closed,
                "closed the connections of users the password file no longer has"
            );
        }
        closed
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
            bridges,
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
        bridges.join().await;
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

/// The TLS setup of a listener, or `None` for plain TCP and plain WebSocket.
fn tls_setup(listener: &ListenerConfig) -> Result<Option<TlsListener>, ServerError> {
    if !listener.kind.uses_tls() {
        return Ok(None);
    }
    let settings = listener.tls.as_ref().ok_or(ServerError::MissingTls {
        addr: listener.bind,
        kind: listener.kind.name(),
    })?;
    TlsListener::new(settings)
        .map(Some)
        .map_err(|source| ServerError::Tls {
            addr: listener.bind,
            source,
        })
}

/// The engine, as the transport sees it: what serves each accepted connection.
#[derive(Clone)]
struct Engine(Arc<Broker>);

impl Serve for Engine {
    fn serve<S>(self, arrival: Box<Arrival<S>>) -> impl Future<Output = ()> + Send
    where
        S: AsyncRead + AsyncWrite + Parkable + Unpin + Send + 'static,
    {
        connection::serve(self.0, arrival)
    }
}
