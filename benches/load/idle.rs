//! The idle-connection scenarios: the broker's resident memory growth per idle connection,
//! read from `/proc/<pid>/status` (VmRSS) before and after opening N connections, C at a time.
//!
//! - idle-memory: clean sessions that only connect.
//! - reboot-storm: what a gateway sees after it reboots and every sensor reconnects at once:
//!   each client connects with Clean Session 0 (Clean Start 0 and a one-hour Session Expiry in
//!   MQTT 5), subscribes once to its own topic at `--qos`, then idles. Also reports how many
//!   clients per second got through CONNACK and SUBACK, and the bytes the broker caused to be
//!   written to storage per client (`/proc/<pid>/io` write_bytes: the SD-card wear).
//!
//! Warm-up opens and closes a few connections of the same kind first, so one-off allocations
//! (thread pools, first-use tables) are not charged to the measured connections.

use cairn::codec::QoS;
use std::time::Duration;
use tokio::task::JoinSet;

use tokio::time::{sleep, Instant};

use crate::args::{Args, Scenario};
use crate::broker_proc::{cpu_ms, device_written_bytes, rss_kib, write_bytes};
use crate::connection::{ClientOptions, MqttConnection, SessionStart};
use crate::error::LoadError;
use crate::run::{client_id, client_options, scrambled};
use crate::scenarios::{Percentiles, Summary};

/// Connections opened and closed before the baseline reading.
const WARMUP_CONNECTIONS: u32 = 10;

/// Session Expiry Interval of reboot-storm's MQTT 5 sessions (3.1.1 sessions never expire).
const STORM_EXPIRY_SECS: u32 = 3600;

/// How each connection of a run is opened.
#[derive(Debug, Clone, Copy)]
enum Opening {
    /// A clean session, nothing more.
    Clean,
    /// A persistent session with one subscription at this QoS to the client's own topic.
    PersistentSubscribed(QoS),
}

/// What opening the measured connections did to the broker.
struct Growth {
    before_kib: u64,
    after_kib: u64,
    /// Seconds from the first TCP connect to the last handshake's end.
    opening_secs: f64,
    /// Bytes the broker caused to be written to storage meanwhile (until the RSS reading).
    written: u64,
    /// With --storage: bytes written to its block device meanwhile.
    device_written: Option<u64>,
    /// CPU time the broker used from the first TCP connect to the last handshake's end, ms.
    cpu_ms: u64,
    /// With --command-each: the RSS once every client has received and acknowledged one
    /// message.
    commanded_kib: Option<u64>,
    /// The measured handshakes' latencies.
    timings: Timings,
}

impl Growth {
    fn bytes_per_connection(&self, connections: u32) -> i128 {
        (i128::from(self.after_kib) - i128::from(self.before_kib)) * 1024 / i128::from(connections)
    }

    fn fields(&self, connections: u32) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("connections", connections.to_string()),
            ("rss_before_kib", self.before_kib.to_string()),
            ("rss_after_kib", self.after_kib.to_string()),
            (
                "bytes_per_conn",
                self.bytes_per_connection(connections).to_string(),
            ),
        ];
        if let Some(commanded_kib) = self.commanded_kib {
            let per_connection = (i128::from(commanded_kib) - i128::from(self.before_kib)) * 1024
                / i128::from(connections);
            fields.push(("rss_commanded_kib", commanded_kib.to_string()));
            fields.push(("bytes_per_conn_commanded", per_connection.to_string()));
        }
        fields.extend(self.timings.fields());
        fields
    }
}

/// Opens `--connections` idle connections and reports the broker's RSS growth per connection.
pub async fn idle_memory(args: &Args) -> Result<Summary, LoadError> {
    let connections = args.connections(Scenario::IdleMemory);
    let growth = measure(args, Scenario::IdleMemory, Opening::Clean).await?;
    eprintln!(
        "VmRSS {} KiB → {} KiB with {connections} idle connections: {} bytes per connection",
        growth.before_kib,
        growth.after_kib,
        growth.bytes_per_connection(connections)
    );
    Ok(Summary {
        fields: growth.fields(connections),
        problems: Vec::new(),
    })
}

/// Opens `--connections` persistent sessions, `--concurrency` at a time, each subscribing once;
/// reports how many got through CONNACK and SUBACK per second and the broker's RSS growth per
/// connection.
pub async fn reboot_storm(args: &Args) -> Result<Summary, LoadError> {
    let connections = args.connections(Scenario::RebootStorm);
    let opening = Opening::PersistentSubscribed(args.qos.qos());
    let growth = measure(args, Scenario::RebootStorm, opening).await?;
    let rate = f64::from(connections) / growth.opening_secs;
    let written_per_client = growth.written / u64::from(connections);
    let cpu_us_per_client = growth.cpu_ms * 1000 / u64::from(connections);
    eprintln!(
        "{connections} clients connected and subscribed in {:.3} s ({} at a time): {rate:.0} \
         per second, the broker using {} ms of CPU ({cpu_us_per_client} µs per client); VmRSS \
         {} KiB → {} KiB: {} bytes per connection; {written_per_client} bytes written to \
         storage per client",
        growth.opening_secs,
        args.concurrency(Scenario::RebootStorm),
        growth.cpu_ms,
        growth.before_kib,
        growth.after_kib,
        growth.bytes_per_connection(connections)
    );
    let mut fields = vec![
        (
            "concurrency",
            args.concurrency(Scenario::RebootStorm).to_string(),
        ),
        ("secs", format!("{:.3}", growth.opening_secs)),
        ("rate", format!("{rate:.0}")),
        ("cpu_us_per_client", cpu_us_per_client.to_string()),
        ("written_per_client", written_per_client.to_string()),
    ];
    if let Some(device_written) = growth.device_written {
        fields.push((
            "device_written_per_client",
            (device_written / u64::from(connections)).to_string(),
        ));
    }
    fields.extend(growth.fields(connections));
    Ok(Summary {
        fields,
        problems: Vec::new(),
    })
}

/// Warms up, reads the broker's RSS, opens the scenario's connections, waits `--settle`, reads
/// it again, and closes them.
async fn measure(args: &Args, scenario: Scenario, opening: Opening) -> Result<Growth, LoadError> {
    let pid = args.broker_pid.ok_or(LoadError::MissingBrokerPid {
        scenario: scenario.name(),
    })?;
    // The next run (another broker's) must not find thousands of this run's sockets waiting.
    let options = ClientOptions {
        reset_at_close: true,
        ..client_options(args)
    };
    let batch = Batch {
        options: &options,
        opening,
        concurrency: args.concurrency(scenario) as usize,
        reply_timeout: args.connect_timeout,
    };
    let (warmup, _) = batch.open(WARMUP_CONNECTIONS, "warm-up", false).await?;
    disconnect_all(warmup).await?;
    sleep(args.settle).await;
    let before_kib = rss_kib(pid)?;
    let written_before = write_bytes(pid)?;
    let device_before = args
        .storage
        .as_deref()
        .map(device_written_bytes)
        .transpose()?;
    let cpu_before = cpu_ms(pid)?;

    let started = Instant::now();
    let (connections, timings) = batch
        .open(args.connections(scenario), scenario.name(), args.shuffle)
        .await?;
    let opening_secs = started.elapsed().as_secs_f64();
    let cpu_ms = cpu_ms(pid)?.saturating_sub(cpu_before);
    sleep(args.settle).await;
    let after_kib = rss_kib(pid)?;
    let written = write_bytes(pid)?.saturating_sub(written_before);
    let device_written = match (args.storage.as_deref(), device_before) {
        (Some(storage), Some(before)) => {
            Some(device_written_bytes(storage)?.saturating_sub(before))
        }
        _ => None,
    };
    let mut connections = connections;
    let commanded_kib = if args.command_each && scenario == Scenario::RebootStorm {
        command_each(args, &options, &mut connections).await?;
        sleep(args.settle).await;
        Some(rss_kib(pid)?)
    } else {
        None
    };
    disconnect_all(connections).await?;
    Ok(Growth {
        before_kib,
        after_kib,
        opening_secs,
        written,
        device_written,
        cpu_ms,
        commanded_kib,
        timings,
    })
}

/// Sends one QoS 1 message to every storm client's own topic, all at once from one
/// publisher (a durable broker acknowledges each after its commit: one at a time would take a
/// commit window each), and has each client receive and acknowledge its own.
async fn command_each(
    args: &Args,
    options: &ClientOptions,
    connections: &mut [MqttConnection],
) -> Result<(), LoadError> {
    let role = Scenario::RebootStorm.name();
    let (mut publisher, _) =
        MqttConnection::open("command publisher".into(), "storm-commands", options).await?;
    let packet_id = |index: usize| (index % usize::from(u16::MAX)) as u16 + 1;
    for index in 0..connections.len() {
        let topic = format!("storm/{}", client_id(role, index as u32));
        publisher.queue_publish(&topic, b"command", packet_id(index))?;
    }
    publisher.flush().await?;
    for index in 0..connections.len() {
        publisher
            .await_puback(packet_id(index), args.connect_timeout)
            .await?;
    }
    for connection in connections.iter_mut() {
        connection
            .acknowledge_next_publish(args.connect_timeout)
            .await?;
    }
    publisher.disconnect().await
}

/// Connections opened alike, `concurrency` handshakes at a time.
struct Batch<'a> {
    options: &'a ClientOptions,
    opening: Opening,
    concurrency: usize,
    reply_timeout: std::time::Duration,
}

impl Batch<'_> {
    /// Opens `count` connections named after `role`, in the order of their indices, or of
    /// their indices [`scrambled`] if `shuffle` (the set of identifiers is the same).
    async fn open(
        &self,
        count: u32,
        role: &'static str,
        shuffle: bool,
    ) -> Result<(Vec<MqttConnection>, Timings), LoadError> {
        let mut opened = Vec::with_capacity(count as usize);
        let mut handshakes = JoinSet::new();
        for index in 0..count {
            if handshakes.len() >= self.concurrency {
                opened.push(next_opened(&mut handshakes).await?);
            }
            let options = self.options.clone();
            let (opening, reply_timeout) = (self.opening, self.reply_timeout);
            handshakes.spawn(async move {
                let who = format!("{role} connection {index}");
                let id = client_id(
                    role,
                    if shuffle {
                        scrambled(index, count)
                    } else {
                        index
                    },
                );
                let started = Instant::now();
                let (connection, subscribed_us) = match opening {
                    Opening::Clean => (MqttConnection::open(who, &id, &options).await?.0, None),
                    Opening::PersistentSubscribed(qos) => {
                        let session = SessionStart::Persistent {
                            expiry_secs: STORM_EXPIRY_SECS,
                        };
                        let (mut connection, _) =
                            MqttConnection::open_session(who, &id, &options, session).await?;
                        let subscribing = Instant::now();
                        connection
                            .subscribe(&format!("storm/{id}"), qos, reply_timeout)
                            .await?;
                        (connection, Some(micros(subscribing.elapsed())))
                    }
                };
                let timing = Timing {
                    connected_us: micros(started.elapsed()) - subscribed_us.unwrap_or(0),
                    subscribed_us,
                };
                Ok((index, connection, timing))
            });
        }
        while !handshakes.is_empty() {
            opened.push(next_opened(&mut handshakes).await?);
        }
        opened.sort_unstable_by_key(|(index, _, _)| *index);
        let timings = Timings::of(opened.iter().map(|(_, _, timing)| *timing));
        let connections = opened
            .into_iter()
            .map(|(_, connection, _)| connection)
            .collect();
        Ok((connections, timings))
    }
}

/// How long one client's handshake took: from its TCP connect to the CONNACK, and from its
/// SUBSCRIBE to the SUBACK (none for a clean connection).
#[derive(Debug, Clone, Copy)]
struct Timing {
    connected_us: u64,
    subscribed_us: Option<u64>,
}

/// The handshakes' latencies: where a storm's time goes, the broker's work or its commit.
#[derive(Debug)]
struct Timings {
    connected: Option<Percentiles>,
    subscribed: Option<Percentiles>,
}

impl Timings {
    fn of(timings: impl Iterator<Item = Timing>) -> Timings {
        let (mut connected, mut subscribed) = (Vec::new(), Vec::new());
        for timing in timings {
            connected.push(timing.connected_us);
            subscribed.extend(timing.subscribed_us);
        }
        connected.sort_unstable();
        subscribed.sort_unstable();
        Timings {
            connected: Percentiles::of(&connected),
            subscribed: Percentiles::of(&subscribed),
        }
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = Vec::new();
        for (latency, [p50, p99]) in [
            (&self.connected, ["connack_p50_us", "connack_p99_us"]),
            (&self.subscribed, ["suback_p50_us", "suback_p99_us"]),
        ] {
            if let Some(latency) = latency {
                fields.push((p50, latency.p50.to_string()));
                fields.push((p99, latency.p99.to_string()));
            }
        }
        fields
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The next finished handshake of `handshakes`, which must not be empty.
async fn next_opened(
    handshakes: &mut JoinSet<Result<(u32, MqttConnection, Timing), LoadError>>,
) -> Result<(u32, MqttConnection, Timing), LoadError> {
    match handshakes.join_next().await {
        Some(joined) => joined?,
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
