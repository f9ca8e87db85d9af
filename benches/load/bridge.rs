//! The bridge scenarios: a gateway broker (--broker) bridges `bench/#` out to an upstream broker
//! (--upstream); the tool publishes to the gateway and counts what reaches the upstream. The
//! brokers and their bridge are the caller's (benches/bridge.sh); the tool only talks MQTT to
//! them, so any gateway's bridge can be measured.
//!
//! - bridge-session: creates the upstream subscriber's persistent session on `bench/#` (fixed
//!   client id [`UPSTREAM_SUBSCRIBER`]) and leaves it offline, so the upstream keeps what
//!   reaches it before the subscriber returns.
//! - bridge-fill: P publishers send --count messages each to the gateway on `bench/<i>` while
//!   the uplink is down; every one acknowledged (the gateway holds the backlog).
//! - bridge-drain: a local publisher at --rate on `local/latency` (not bridged) measures the
//!   gateway's PUBACK latency; after --warmup it writes --ready-file (the caller then starts the
//!   upstream), the persistent subscriber reconnects as soon as the upstream listens and must
//!   receive all P × --count messages of the fill, in order per publisher; duplicates are
//!   counted, not failed (QoS 1 allows them). Reports the wall-clock time of the first and
//!   last message and the local PUBACK latency during the drain (first to last message).
//! - bridge-wear: a subscriber online upstream, one publisher at --rate to the gateway on
//!   `bench/0`; once messages flow and --warmup has passed, the gateway's `/proc/<pid>/io`
//!   write_bytes over --duration, per message acknowledged in that interval; with
//!   --store-stats also Cairn's store counters (commits, bytes, queue entries never written).
//!
//! With --delay-proxy, bridge-drain and bridge-wear put a proxy between the gateway's bridge
//! and the upstream that delays each direction by --uplink-delay, as a WAN would.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{sleep, timeout, Instant};

use crate::args::Args;
use crate::broker_proc;
use crate::connection::{ClientOptions, MqttConnection, SessionStart};
use crate::delay_proxy;
use crate::durable::{publish_while_offline, SYS_WAIT};
use crate::error::LoadError;
use crate::progress::Progress;
use crate::publisher::{Pacing, PublisherPlan, PublisherReport};
use crate::run::{
    client_id, client_options, publisher_plan, supervise, Crew, DeliveryCheck, Topology,
};
use crate::scenarios::{Percentiles, Summary};
use crate::stamp::{duration_nanos, Clock};
use crate::subscriber::{Subscriber, SubscriberPlan, SubscriberReport};
use crate::sys_stats::{self, StoreStats};

/// The filter the gateway bridges out and the upstream subscriber holds.
const BRIDGED_FILTER: &str = "bench/#";

/// The topic of the local publisher whose PUBACK latency the drain measures; not bridged.
const LOCAL_TOPIC: &str = "local/latency";

/// Client id of the upstream subscriber's persistent session, the same in every process.
pub const UPSTREAM_SUBSCRIBER: &str = "load-bridge-subscriber";

/// Session Expiry Interval of the upstream subscriber's session (MQTT 5.0), seconds.
const SESSION_EXPIRY_SECS: u32 = 3600;

/// Pause between attempts to reach an upstream that is not listening yet.
const RETRY_PAUSE: Duration = Duration::from_millis(5);

/// The fill's publishers on `bench/<i>`, as the upstream subscriber sees them.
fn bridged_topology(args: &Args) -> Topology {
    Topology {
        publishers: args.publishers,
        subscribers: 1,
        filter: BRIDGED_FILTER.to_owned(),
        topic_of: |index| format!("bench/{index}"),
    }
}

/// Creates the upstream subscriber's persistent session and leaves it offline.
pub async fn bridge_session(args: &Args) -> Result<Summary, LoadError> {
    let options = upstream_options(args, "bridge-session")?;
    let (mut connection, _) = open_upstream_session(&options).await?;
    connection
        .subscribe(BRIDGED_FILTER, args.qos.qos(), args.connect_timeout)
        .await?;
    connection.disconnect().await?;
    eprintln!(
        "persistent session {UPSTREAM_SUBSCRIBER} subscribed to {BRIDGED_FILTER} on {} and \
         went offline",
        options.broker
    );
    Ok(Summary {
        fields: vec![("client_id", UPSTREAM_SUBSCRIBER.to_owned())],
        problems: Vec::new(),
    })
}

/// P publishers send to the gateway while its uplink is down.
pub async fn bridge_fill(args: &Args) -> Result<Summary, LoadError> {
    let topology = Topology {
        subscribers: 0,
        ..bridged_topology(args)
    };
    let phase = publish_while_offline(args, &client_options(args), &topology).await?;
    Ok(Summary {
        fields: phase.fields(args, &topology),
        problems: Vec::new(),
    })
}

/// The upstream subscriber returns while the gateway drains its backlog; a local publisher
/// measures the gateway's PUBACK latency meanwhile.
pub async fn bridge_drain(args: &Args) -> Result<Summary, LoadError> {
    let upstream = upstream_options(args, "bridge-drain")?;
    delay_uplink(args, &upstream).await?;
    let topology = bridged_topology(args);
    let per_publisher = args.count.ok_or(LoadError::MissingCount {
        scenario: "bridge-drain",
    })?;
    let expected = u64::from(args.publishers) * per_publisher;
    let clock = Clock::start();
    let mut crew = Crew::default();
    start_paced_publisher(args, &mut crew, clock, |_| LOCAL_TOPIC.to_owned()).await?;
    supervise(&mut crew.tasks, sleep(args.warmup)).await?;
    let ready_nanos = clock.now_nanos();
    if let Some(path) = &args.ready_file {
        write_ready_file(path)?;
    }
    eprintln!("waiting for the upstream at {} to listen", upstream.broker);
    let connect = reconnect_upstream(&upstream, args.drain_timeout);
    let (connection, session_present) = supervise(&mut crew.tasks, connect).await??;
    if !session_present {
        return Err(LoadError::SessionLost {
            who: connection.who().to_owned(),
        });
    }
    let connected_at = epoch_nanos();
    let progress = Arc::new(Progress::new(1, args.window));
    crew.start_subscriber(upstream_subscriber(
        connection, &topology, &progress, clock, false,
    ));
    let first = await_first_message(&mut crew, &progress, clock, args.drain_timeout).await?;
    crew.await_deliveries(&progress, expected, args.drain_timeout)
        .await?;
    let last = (clock.now_nanos(), epoch_nanos());
    let local = crew.stop_publishers(1).await?;
    let subscribers = crew.stop_subscribers(args.drain_timeout).await?;
    let drained = progress.total_received();
    let drain_secs = Duration::from_nanos(last.0.saturating_sub(first.0)).as_secs_f64();
    eprintln!(
        "the upstream subscriber received {drained} of {expected} messages, {drain_secs:.3} s \
         from the first to the last"
    );
    let during = ack_percentiles(&local, (first.0, last.0), "during the drain");
    let before = ack_percentiles(&local, (0, ready_nanos), "before the drain (uplink down)");
    let fill: Vec<PublisherReport> = (0..args.publishers)
        .map(|index| PublisherReport {
            index,
            sent: per_publisher,
            stalls: 0,
            acks: Vec::new(),
        })
        .collect();
    let delivery = upstream_delivery(&fill, &subscribers, args);
    let mut fields = vec![
        ("expected", expected.to_string()),
        ("drained", drained.to_string()),
        ("connected_ns", connected_at.to_string()),
        ("first_ns", first.1.to_string()),
        ("last_ns", last.1.to_string()),
        ("drain_secs", format!("{drain_secs:.3}")),
        ("local_rate", args.rate.to_string()),
        ("local_p50_us", during.p50.to_string()),
        ("local_p99_us", during.p99.to_string()),
        ("local_max_us", during.max.to_string()),
        ("idle_p50_us", before.p50.to_string()),
        ("idle_p99_us", before.p99.to_string()),
    ];
    fields.extend(delivery.fields);
    Ok(Summary {
        fields,
        problems: delivery.problems,
    })
}

/// A subscriber online upstream, one publisher at --rate to the gateway: the gateway's storage
/// writes per bridged message in steady state.
pub async fn bridge_wear(args: &Args) -> Result<Summary, LoadError> {
    let upstream = upstream_options(args, "bridge-wear")?;
    let pid = args.broker_pid.ok_or(LoadError::MissingBrokerPid {
        scenario: "bridge-wear",
    })?;
    delay_uplink(args, &upstream).await?;
    let topology = Topology {
        publishers: 1,
        ..bridged_topology(args)
    };
    let clock = Clock::start();
    let progress = Arc::new(Progress::new(1, args.window));
    let (mut connection, _) = MqttConnection::open(
        "upstream subscriber".to_owned(),
        &client_id("bridge-sub", 0),
        &upstream,
    )
    .await?;
    connection
        .subscribe(BRIDGED_FILTER, args.qos.qos(), args.connect_timeout)
        .await?;
    let mut crew = Crew::default();
    crew.start_subscriber(upstream_subscriber(
        connection, &topology, &progress, clock, true,
    ));
    start_paced_publisher(args, &mut crew, clock, topology.topic_of).await?;
    await_first_message(&mut crew, &progress, clock, args.drain_timeout).await?;
    supervise(&mut crew.tasks, sleep(args.warmup)).await?;
    // The $SYS reader's own connection stays outside the interval /proc/<pid>/io measures.
    let store_from = supervise(&mut crew.tasks, store_stats(args)).await??;
    let from = (clock.now_nanos(), broker_proc::write_bytes(pid)?);
    supervise(&mut crew.tasks, sleep(args.duration)).await?;
    let to = (clock.now_nanos(), broker_proc::write_bytes(pid)?);
    let store_to = supervise(&mut crew.tasks, store_stats(args)).await??;
    let publishers = crew.stop_publishers(1).await?;
    let sent = publishers[0].sent;
    crew.await_deliveries(&progress, sent, args.drain_timeout)
        .await?;
    let subscribers = crew.stop_subscribers(args.drain_timeout).await?;
    let acked = acked_between(&publishers, (from.0, to.0));
    let written = to.1.saturating_sub(from.1);
    let per_message = written as f64 / acked.max(1) as f64;
    let secs = Duration::from_nanos(to.0 - from.0).as_secs_f64();
    eprintln!(
        "{acked} messages acknowledged in the {secs:.3} s measured; the gateway wrote {written} \
         bytes to storage ({per_message:.0} per message)"
    );
    let acks = ack_percentiles(&publishers, (from.0, to.0), "in the measured interval");
    let bridged = micros_sent_within(
        subscribers.iter().flat_map(|s| s.latencies.iter()),
        (from.0, to.0),
    );
    let through = Percentiles::of(&bridged).unwrap_or_default();
    eprintln!(
        "publisher to upstream subscriber through the bridge: p50 {} µs, p99 {} µs",
        through.p50, through.p99
    );
    let delivery = upstream_delivery(&publishers, &subscribers, args);
    let mut fields = vec![
        ("rate", args.rate.to_string()),
        ("secs", format!("{secs:.3}")),
        ("acked", acked.to_string()),
        ("io_bytes", written.to_string()),
        ("io_bytes_per_msg", format!("{per_message:.1}")),
        ("ack_p50_us", acks.p50.to_string()),
        ("ack_p99_us", acks.p99.to_string()),
        ("bridged_p50_us", through.p50.to_string()),
        ("bridged_p99_us", through.p99.to_string()),
    ];
    if let (Some(before), Some(after)) = (store_from, store_to) {
        fields.extend(store_fields(before, after, acked));
    }
    fields.extend(delivery.fields);
    Ok(Summary {
        fields,
        problems: delivery.problems,
    })
}

/// With --delay-proxy, starts the proxy the gateway's bridge connects through.
async fn delay_uplink(args: &Args, upstream: &ClientOptions) -> Result<(), LoadError> {
    match &args.delay_proxy {
        Some(listen) => {
            delay_proxy::start(listen, upstream.broker.clone(), args.uplink_delay).await
        }
        None => Ok(()),
    }
}

/// With --store-stats, Cairn's `$SYS` store counters now; `None` without.
async fn store_stats(args: &Args) -> Result<Option<StoreStats>, LoadError> {
    if !args.store_stats {
        return Ok(None);
    }
    sys_stats::read(&client_options(args), SYS_WAIT)
        .await
        .map(Some)
}

/// The store's commits, bytes and elided queue entries between two `$SYS` updates, per
/// message of the `acked` in the interval measured (the updates bracket it, up to one
/// `sys_interval` wider on each side: approximate).
fn store_fields(before: StoreStats, after: StoreStats, acked: u64) -> Vec<(&'static str, String)> {
    let per_message = |delta: u64| format!("{:.2}", delta as f64 / acked.max(1) as f64);
    let commits = after.commits.saturating_sub(before.commits);
    let written = after.bytes_written.saturating_sub(before.bytes_written);
    let elided = after.elided.saturating_sub(before.elided);
    eprintln!(
        "store: {commits} commits, {written} bytes written, {elided} queue entries never \
         written, over about {acked} messages"
    );
    vec![
        ("commits", commits.to_string()),
        ("store_bytes_per_msg", per_message(written)),
        ("elided_per_msg", per_message(elided)),
    ]
}

/// Connects one publisher to the gateway at --rate on `topic_of(0)`, logging its
/// acknowledgements.
async fn start_paced_publisher(
    args: &Args,
    crew: &mut Crew,
    clock: Clock,
    topic_of: fn(u32) -> String,
) -> Result<(), LoadError> {
    let topology = Topology {
        publishers: 1,
        subscribers: 0,
        filter: String::new(),
        topic_of,
    };
    let pacing = Pacing::Rate {
        start: Instant::now(),
        per_second: args.rate,
    };
    crew.start_publishers(args, &topology, |index| PublisherPlan {
        log_acks: true,
        ..publisher_plan(args, &topology, index, &pacing, clock)
    })
    .await
}

/// The client options of the upstream, which `scenario` needs --upstream for.
fn upstream_options(args: &Args, scenario: &'static str) -> Result<ClientOptions, LoadError> {
    let broker = args
        .upstream
        .clone()
        .ok_or(LoadError::MissingUpstream { scenario })?;
    Ok(ClientOptions {
        broker,
        tls: None,
        ..client_options(args)
    })
}

/// Opens the upstream subscriber's persistent session (Clean Start 0).
async fn open_upstream_session(
    options: &ClientOptions,
) -> Result<(MqttConnection, bool), LoadError> {
    let session = SessionStart::Persistent {
        expiry_secs: SESSION_EXPIRY_SECS,
    };
    let who = "upstream subscriber".to_owned();
    let (connection, limits) =
        MqttConnection::open_session(who, UPSTREAM_SUBSCRIBER, options, session).await?;
    Ok((connection, limits.session_present))
}

/// Opens the persistent session as soon as the upstream accepts connections, trying again
/// every [`RETRY_PAUSE`] for up to `limit`.
async fn reconnect_upstream(
    options: &ClientOptions,
    limit: Duration,
) -> Result<(MqttConnection, bool), LoadError> {
    let deadline = Instant::now() + limit;
    loop {
        match open_upstream_session(options).await {
            Ok(opened) => return Ok(opened),
            Err(LoadError::Connect { .. } | LoadError::Closed { .. } | LoadError::Io { .. })
                if Instant::now() < deadline =>
            {
                sleep(RETRY_PAUSE).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The upstream subscriber, counting duplicates apart.
fn upstream_subscriber(
    connection: MqttConnection,
    topology: &Topology,
    progress: &Arc<Progress>,
    clock: Clock,
    log_latency: bool,
) -> Subscriber {
    let plan = SubscriberPlan {
        index: 0,
        publishers: topology.publishers as usize,
        progress: Arc::clone(progress),
        clock,
        log_latency,
        count_duplicates: true,
    };
    Subscriber::new(connection, plan)
}

/// Waits until the upstream subscriber has a first message; when, on the run's clock and
/// in nanoseconds since the Unix epoch.
async fn await_first_message(
    crew: &mut Crew,
    progress: &Progress,
    clock: Clock,
    limit: Duration,
) -> Result<(u64, u64), LoadError> {
    let arrived = supervise(
        &mut crew.tasks,
        progress.wait_until(|p| p.total_received() > 0),
    );
    timeout(limit, arrived)
        .await
        .map_err(|_| LoadError::Timeout {
            who: "upstream subscriber".to_owned(),
            awaited: "a first bridged message",
            timeout: limit,
        })??;
    Ok((clock.now_nanos(), epoch_nanos()))
}

/// Nanoseconds since the Unix epoch, now.
fn epoch_nanos() -> u64 {
    duration_nanos(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// Creates `path`, telling the caller the tool is ready for the upstream to start.
fn write_ready_file(path: &Path) -> Result<(), LoadError> {
    std::fs::write(path, b"ready\n").map_err(|source| LoadError::ReadyFile {
        path: path.to_owned(),
        source,
    })
}

/// Messages of `publishers` acknowledged within `window` on the run's clock.
fn acked_between(publishers: &[PublisherReport], window: (u64, u64)) -> u64 {
    let acked = publishers.iter().flat_map(|p| p.acks.iter());
    acked
        .filter(|(sent, latency)| (window.0..=window.1).contains(&(sent + latency)))
        .count() as u64
}

/// PUBACK latency percentiles in µs of the messages `publishers` sent within `window`, printed
/// with `label`.
fn ack_percentiles(publishers: &[PublisherReport], window: (u64, u64), label: &str) -> Percentiles {
    let micros = micros_sent_within(publishers.iter().flat_map(|p| p.acks.iter()), window);
    let p = Percentiles::of(&micros).unwrap_or_default();
    eprintln!(
        "local PUBACK latency {label}: {} samples, p50 {} µs, p99 {} µs, max {} µs",
        micros.len(),
        p.p50,
        p.p99,
        p.max
    );
    p
}

/// The latencies in µs of those (send time, latency) pairs sent within `window`, sorted.
fn micros_sent_within<'a>(
    samples: impl Iterator<Item = &'a (u64, u64)>,
    window: (u64, u64),
) -> Vec<u64> {
    let mut micros: Vec<u64> = samples
        .filter(|(sent, _)| (window.0..=window.1).contains(sent))
        .map(|(_, latency)| latency / 1_000)
        .collect();
    micros.sort_unstable();
    micros
}

/// What reached the upstream subscriber: the RESULT fields and the failures.
struct UpstreamDelivery {
    fields: Vec<(&'static str, String)>,
    problems: Vec<String>,
}

/// Checks what `subscribers` received against what `publishers` sent: a message missing or
/// reordered fails the run; a duplicate (a QoS 1 re-send) is counted and printed only.
fn upstream_delivery(
    publishers: &[PublisherReport],
    subscribers: &[SubscriberReport],
    args: &Args,
) -> UpstreamDelivery {
    let check = DeliveryCheck::between(publishers, subscribers);
    let duplicates: u64 = subscribers.iter().map(|s| s.duplicates).sum();
    if duplicates > 0 {
        eprintln!(
            "note: the upstream subscriber received {duplicates} duplicate(s) (QoS 1 allows them)"
        );
    }
    UpstreamDelivery {
        fields: vec![
            ("lost", check.lost.to_string()),
            ("behind", check.behind.to_string()),
            ("duplicates", duplicates.to_string()),
        ],
        problems: check.problems(args.qos.qos()),
    }
}
