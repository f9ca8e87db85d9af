//! Bridges: selected topics to an upstream (cloud) broker and back, over an uplink that comes
//! and goes.
//!
//! A bridge is a persistent session of the engine (named `$bridge/<name>`, see
//! [`crate::broker::state::BridgeSession`]) whose subscriptions are its `out` rules: its
//! queue, on disk and bounded, is the outbound buffer, and an entry leaves it only once the
//! upstream's PUBACK (or PUBREC, then PUBCOMP) is committed. When the uplink is up, an MQTT
//! client connection ([`uplink`]) attaches to that session like a local client does and
//! drains it upstream in order; `in` rules are subscriptions upstream whose messages are
//! published locally, acknowledged upstream once committed.
//!
//! - [`handshake`](mod@handshake): dialling, CONNECT and CONNACK, what the server granted;
//! - [`uplink`]: one connected uplink until it ends;
//! - [`running`]: the bridges a broker runs, started with it and replaced by a reload;
//! - [`reconnect`]: after an attempt or a connection, where and how to dial next, and when;
//! - [`backoff`]: the delays between attempts;
//! - [`status`]: the state and counters `$SYS` shows;
//! - [`topics`]: which topics a bridge carries and how their names change on the way
//!   (Mosquitto's `topic` rules with their prefixes); pure string work;
//! - [`identity`]: who a bridge is upstream: its client id and the password from its file.

pub mod backoff;
pub mod handshake;
pub mod identity;
pub mod reconnect;
pub mod running;
pub mod status;
pub mod thread;
pub mod topics;
pub mod uplink;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::broker::queue::QueueLimits;
use crate::broker::state::{BridgeSession, BRIDGE_SESSION_PREFIX};
use crate::broker::Broker;
use crate::codec::{ProtocolVersion, QoS, SubscriptionOptions};
use crate::config::{BridgeConfig, BridgeProtocol};
use crate::transport::client::{ClientIdentity, TlsClient, TlsClientSettings};
use crate::transport::TlsError;

use self::backoff::Backoff;
use self::handshake::{handshake, Dialect};
use self::reconnect::Reconnect;
use self::status::{BridgeStatus, LinkState};
use self::topics::rule_out;
use self::uplink::{Ended, Uplink};

/// The system's trust store, for a bridge whose `tls.ca` is not given.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("bridge {name}: cannot read password_file {path}: {source}")]
    Password {
        name: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bridge {name}: {source}")]
    Tls {
        name: String,
        #[source]
        source: TlsError,
    },
}

/// How a bridge prepared at a reload differs from the one running under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Difference {
    /// It would run exactly as the running one does.
    None,
    /// The same settings, but its password file or TLS files (CA bundle, client certificate
    /// chain, key) hold something else now: renewed or rotated.
    Files,
    /// Its settings changed.
    Settings,
}

/// One configured bridge, ready to connect. (Its `Debug` leaves the password out.)
pub struct Bridge {
    pub config: BridgeConfig,
    /// The engine session holding its queue: `$bridge/<name>`.
    pub session_id: Arc<str>,
    /// The client identifier upstream.
    pub client_id: String,
    pub password: Option<String>,
    pub tls: Option<TlsClient>,
    /// Largest packet accepted from upstream (our `limits.max_packet_size`).
    pub max_packet_size: u32,
    pub status: Arc<BridgeStatus>,
    /// Set when a reload removes or replaces the bridge: its task says goodbye upstream and
    /// ends, as at shutdown.
    stop: watch::Sender<bool>,
}

/// The password in the bridge's `password_file`, if it has one.
fn password_of(config: &BridgeConfig) -> Result<Option<String>, BridgeError> {
    config
        .read_password()
        .map_err(|source| BridgeError::Password {
            name: config.name.clone(),
            path: config
                .password_file
                .as_ref()
                .map(|path| path.display().to_string())
                .unwrap_or_default(),
            source,
        })
}

/// The TLS client of the bridge's `[bridges.tls]`, if it has one: its CA bundle, client
/// certificate and key read.
fn tls_of(config: &BridgeConfig) -> Result<Option<TlsClient>, BridgeError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let first_host = config
        .addresses
        .first()
        .map(|address| host_of(address).to_string())
        .unwrap_or_default();
    let settings = TlsClientSettings {
        ca: tls.ca.clone().unwrap_or_else(|| SYSTEM_CA_BUNDLE.into()),
        server_name: tls.server_name.clone().unwrap_or(first_host),
        identity: match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => Some(ClientIdentity {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        alpn: tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
    };
    TlsClient::new(&settings)
        .map(Some)
        .map_err(|source| BridgeError::Tls {
            name: config.name.clone(),
            source,
        })
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("name", &self.config.name)
            .field("session_id", &self.session_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// Reads the bridge's secrets and certificates.
    pub fn new(config: &BridgeConfig, max_packet_size: u32) -> Result<Bridge, BridgeError> {
        let password = password_of(config)?;
        let tls = tls_of(config)?;
        Ok(Bridge {
            session_id: Arc::from(format!("{BRIDGE_SESSION_PREFIX}{}", config.name)),
            client_id: config.client_id(),
            password,
            tls,
            max_packet_size,
            status: Arc::new(BridgeStatus::new(&config.name)),
            config: config.clone(),
            stop: watch::channel(false).0,
        })
    }

    /// What is wrong with the bridge's password file and its TLS files, both read as
    /// [`Bridge::new`] reads them: every problem, where `new` stops at the first.
    pub fn file_problems(config: &BridgeConfig) -> Vec<BridgeError> {
        let password = password_of(config).err();
        let tls = tls_of(config).err();
        password.into_iter().chain(tls).collect()
    }

    /// How this bridge, prepared at a reload, differs from `running`, the one running under
    /// the same name: a reload keeps the bridge connected only when nothing does.
    fn difference(&self, running: &Bridge) -> Difference {
        if self.config != running.config || self.max_packet_size != running.max_packet_size {
            return Difference::Settings;
        }
        let same_tls = match (&self.tls, &running.tls) {
            (Some(new), Some(old)) => new.same_material(old),
            (new, old) => new.is_none() && old.is_none(),
        };
        match self.password == running.password && same_tls {
            true => Difference::None,
            false => Difference::Files,
        }
    }

    /// Tells the bridge's task to end (see [`Bridge::stop_signal`]).
    fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A receiver whose `changed()` completes when the bridge is stopped, or at once if it
    /// was stopped before the receiver was made.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        let mut signal = self.stop.subscribe();
        if *signal.borrow() {
            signal.mark_changed();
        }
        signal
    }

    /// The highest QoS used upstream, by the bridge's own setting.
    pub fn max_qos(&self) -> QoS {
        QoS::from_u8(self.config.max_qos).unwrap_or(QoS::ExactlyOnce)
    }

    /// The highest QoS the `out` rule that carries `local_topic` sends it at, as configured
    /// now (a message queued under an earlier configuration goes at no more); QoS 2 when no
    /// rule carries it (it is not sent at all then).
    pub fn max_qos_out(&self, local_topic: &str) -> QoS {
        rule_out(&self.config.topics, local_topic)
            .and_then(|rule| QoS::from_u8(rule.qos))
            .unwrap_or(QoS::ExactlyOnce)
    }

    /// How the bridge's session must look: subscribed to the local filter of every `out`
    /// rule, with No Local (what came in through the bridge never goes back out) and Retain
    /// As Published, and retained messages only for a new subscription.
    fn session(&self, limits: QueueLimits, in_memory_bytes: u64) -> BridgeSession {
        let subscriptions = self
            .config
            .topics
            .iter()
            .filter(|rule| rule.direction.carries_out())
            .map(|rule| {
                let options = SubscriptionOptions {
                    qos: QoS::from_u8(rule.qos).unwrap_or(QoS::AtLeastOnce),
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: 1,
                };
                (Arc::from(rule.local_filter()), options)
            })
            .collect();
        BridgeSession {
            client_id: self.session_id.clone(),
            limits,
            in_memory_bytes,
            subscriptions,
        }
    }
}

/// The host part of "host:port" (brackets of an IPv6 address removed).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Runs a bridge until the broker shuts down or the bridge is stopped: connect, drain,
/// reconnect (see [`reconnect`]).
async fn run(bridge: Arc<Bridge>, broker: Arc<Broker>) {
    let config = &bridge.config;
    let backoff = Backoff::new(
        Duration::from_secs(u64::from(config.reconnect_min)),
        Duration::from_secs(u64::from(config.reconnect_max)),
        seed(&bridge.client_id),
    );
    let version = match config.protocol {
        BridgeProtocol::V5 => ProtocolVersion::V5,
        BridgeProtocol::V311 => ProtocolVersion::V311,
    };
    let dialect = Dialect::new(version, config.try_private);
    let fallback_311 = config.fallback_311 && config.credentials_fit_311();
    if config.fallback_311 && !fallback_311 {
        tracing::warn!(bridge = %config.name, "no fallback to MQTT 3.1.1: it sends a password only with a user name, and the bridge has no username");
    }
    let mut next = Reconnect::new(backoff, config.addresses.len(), dialect, fallback_311);
    let stable_after = Duration::from_secs(u64::from(config.stable_after));
    let mut shutdown = broker.shutdown_signal();
    let mut stop = bridge.stop_signal();
    loop {
        let target = config.addresses[next.address()].clone();
        bridge.status.set(LinkState::Connecting {
            address: target.clone(),
        });
        let attempt = tokio::select! {
            _ = shutdown.changed() => break,
            _ = stop.changed() => break,
            attempt = handshake(&bridge, &target, next.dialect) => attempt,
        };
        let wait = match attempt {
            Ok(handshaken) => {
                BridgeStatus::count(&bridge.status.connections, 1);
                bridge.status.set(LinkState::Connected { address: target });
                let since = Instant::now();
                let mut uplink = Uplink::attach(bridge.clone(), broker.clone(), handshaken);
                let ended = uplink.run().await;
                uplink.finish().await;
                if matches!(ended, Ended::Shutdown) {
                    break;
                }
                next.after_connection(ended, since.elapsed() >= stable_after)
            }
            Err(failure) => next.after_failure(failure),
        };
        if wait.alarming {
            tracing::error!(bridge = %config.name, client_id = %bridge.client_id, "{}", wait.reason);
        }
        bridge.status.error(&wait.reason);
        bridge.status.set(LinkState::Backoff {
            reason: wait.reason,
            // Rounded up: the state never says less than the wait (1.94 s said 1 s).
            seconds: wait.delay.as_millis().div_ceil(1000) as u64,
        });
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = stop.changed() => break,
            _ = tokio::time::sleep(wait.delay) => {}
        }
    }
    bridge.status.set(LinkState::Stopped);
}

/// A jitter seed that differs between gateways (their client identifiers) and starts.
fn seed(client_id: &str) -> u64 {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    client_id
        .bytes()
        .fold(time, |hash, byte| hash.rotate_left(5) ^ u64::from(byte))
}

/// One bridge's figures at one moment: what `$SYS/broker/bridge/<name>/` publishes and the
/// metrics endpoint shows, read in one place so that both show the same numbers.
#[derive(Debug, Clone)]
pub struct BridgeFigures {
    pub name: String,
    pub state: LinkState,
    /// Messages not yet acknowledged upstream, in flight included, and their bytes.
    pub queued: usize,
    pub queued_bytes: u64,
    /// Seconds the oldest of those has waited; 0 when none.
    pub oldest_queued_age: u32,
    pub sent: u64,
    pub received: u64,
    /// Dropped by the queue's bounds, or because the server could not take them.
    pub dropped: u64,
    pub reconnects: u64,
    pub last_error: String,
}

/// The figures of every bridge now.
pub fn figures(broker: &Broker, bridges: &[Arc<Bridge>]) -> Vec<BridgeFigures> {
    let counter =
        |value: &std::sync::atomic::AtomicU64| value.load(std::sync::atomic::Ordering::Relaxed);
    bridges
        .iter()
        .map(|bridge| {
            let (queued, queued_bytes, oldest, dropped_by_bounds) = broker.read(|state| {
                let session = state.session(&bridge.session_id);
                // In flight included, both counts: an entry leaves only once acknowledged.
                let (queued, bytes, oldest) = session.map_or((0, 0, None), |session| {
                    let in_flight_bytes: u64 = session
                        .inflight
                        .iter()
                        .map(|entry| u64::from(crate::model::entry_size(&entry.delivery)))
                        .sum();
                    (
                        session.queue.len() + session.inflight.len(),
                        session.queue.bytes() + in_flight_bytes,
                        session.oldest_queued_at(),
                    )
                });
                (
                    queued,
                    bytes,
                    oldest,
                    state.bridge_dropped(&bridge.session_id),
                )
            });
            let status = &bridge.status;
            BridgeFigures {
                name: bridge.config.name.clone(),
                state: status.state(),
                queued,
                queued_bytes,
                oldest_queued_age: oldest.map_or(0, |at| {
                    crate::model::unix_seconds(SystemTime::now()).saturating_sub(at)
                }),
                sent: counter(&status.sent),
                received: counter(&status.received),
                dropped: counter(&status.dropped) + dropped_by_bounds,
                reconnects: counter(&status.connections).saturating_sub(1),
                last_error: status.last_error(),
            }
        })
        .collect()
}

/// The `$SYS/broker/bridge/<name>/…` values of `bridges`: `state`, `queued`, `queued_bytes`,
/// `oldest_queued_age`, `sent`, `received`, `dropped`, `reconnects`, `last_error` (see
/// [`BridgeFigures`]).
pub fn sys_values(bridges: &[BridgeFigures]) -> Vec<(String, String)> {
    let mut values = Vec::with_capacity(bridges.len() * 9);
    for bridge in bridges {
        let topic = |leaf: &str| format!("$SYS/broker/bridge/{}/{leaf}", bridge.name);
        values.extend([
            (topic("state"), bridge.state.to_string()),
            (topic("queued"), bridge.queued.to_string()),
            (topic("queued_bytes"), bridge.queued_bytes.to_string()),
            (
                topic("oldest_queued_age"),
                bridge.oldest_queued_age.to_string(),
            ),
            (topic("sent"), bridge.sent.to_string()),
            (topic("received"), bridge.received.to_string()),
            (topic("dropped"), bridge.dropped.to_string()),
            (topic("reconnects"), bridge.reconnects.to_string()),
            (topic("last_error"), bridge.last_error.clone()),
        ]);
    }
    values
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A bridge's files in a temporary directory: its password file, the CA bundle it trusts
    /// and its client certificate with the key.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            let files = Files {
                dir: tempfile::tempdir().expect("a directory for the files"),
            };
            files.write("cloud.pass", "first password\n");
            files.write("ca.pem", &self_signed("cloud CA").0);
            files.renew_identity();
            files
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn write(&self, name: &str, contents: &str) {
            std::fs::write(self.path(name), contents).expect("write the file");
        }

        fn read(&self, name: &str) -> String {
            std::fs::read_to_string(self.path(name)).expect("read the file")
        }

        /// A new client certificate and key in place of the old ones.
        fn renew_identity(&self) {
            let (cert, key) = self_signed("gw-7");
            self.write("gw.pem", &cert);
            self.write("gw.key", &key);
        }

        fn config(&self) -> BridgeConfig {
            let text = format!(
                "name = \"cloud\"\naddresses = [\"127.0.0.1:8883\"]\nusername = \"gw-7\"\n\
                 password_file = {:?}\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
                self.path("cloud.pass"),
                self.path("ca.pem"),
                self.path("gw.pem"),
                self.path("gw.key"),
            );
            toml::from_str(&text).expect("a valid bridge")
        }

        /// The bridge as a reload prepares it from the files now.
        fn prepare(&self) -> Bridge {
            Bridge::new(&self.config(), 65_536).expect("the files are readable")
        }
    }

    /// A self-signed certificate for `name` and its key, as PEM.
    fn self_signed(name: &str) -> (String, String) {
        let certified =
            rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("a certificate");
        (certified.cert.pem(), certified.key_pair.serialize_pem())
    }

    #[test]
    fn the_same_files_read_again_leave_the_bridge_running() {
        let files = Files::new();
        let running = files.prepare();
        // Written again with the same contents (as a renewal job that found nothing to do).
        for name in ["cloud.pass", "ca.pem", "gw.pem", "gw.key"] {
            files.write(name, &files.read(name));
        }
        assert_eq!(files.prepare().difference(&running), Difference::None);
    }

    #[test]
    fn a_rotated_password_restarts_the_bridge() {
        let files = Files::new();
        let running = files.prepare();
        files.write("cloud.pass", "second password\n");
        assert_eq!(files.prepare().difference(&running), Difference::Files);
    }

    #[test]
    fn a_renewed_client_certificate_restarts_the_bridge() {
        let files = Files::new();
        let running = files.prepare();
        files.renew_identity();
        assert_eq!(files.prepare().difference(&running), Difference::Files);
    }

    #[test]
    fn a_renewed_ca_bundle_restarts_the_bridge() {
        let files = Files::new();
        let running = files.prepare();
        files.write("ca.pem", &self_signed("another cloud CA").0);
        assert_eq!(files.prepare().difference(&running), Difference::Files);
    }

    #[test]
    fn changed_settings_count_as_settings_even_with_the_same_files() {
        let files = Files::new();
        let running = files.prepare();
        let mut config = files.config();
        config.keep_alive += 1;
        let changed = Bridge::new(&config, 65_536).expect("the files are readable");
        assert_eq!(changed.difference(&running), Difference::Settings);
    }
}
