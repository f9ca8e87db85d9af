//! The durable scenarios: QoS 1/2 publishers whose messages the broker must queue for offline
//! persistent sessions, acknowledging each (PUBACK, or PUBCOMP for QoS 2) once it is stored.
//!
//! - durable-fan-in: one persistent subscriber on `load/#` subscribes and leaves; P publishers
//!   publish (flat out within their inflight windows, or at --rate with --paced) for
//!   --duration, or --count messages each; then the subscriber comes back and must receive
//!   every acknowledged message, in order per publisher, within --drain-timeout. With
//!   --online the subscriber comes back before the publishers start and acknowledges every
//!   message as it arrives; the phase measured then ends once it has them all.
//! - durable-queues: S persistent sessions each subscribe to their own topic `load/<i>` and
//!   leave; one publisher per topic publishes; the messages stay queued in the broker.
//!
//! Both report acknowledged msg/s and acknowledgement latency; with --broker-pid the broker's
//! RSS and storage writes over the publishing phase, with --store-stats Cairn's `$SYS` store
//! counters (commits, bytes written, queue entries elided) over the same phase.

use std::sync::Arc;
use std::time::Duration;

use cairn::codec::QoS;
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant};

use crate::args::Args;
use crate::broker_proc;
use crate::connection::{ClientOptions, MqttConnection, SessionStart};
use crate::error::LoadError;
use crate::progress::Progress;
use crate::publisher::{Pacing, PublisherPlan, PublisherReport};
use crate::run::{
    client_id, client_options, publisher_plan, supervise, Crew, DeliveryCheck, Topology,
};
use crate::scenarios::{Percentiles, Summary};
use crate::stamp::Clock;
use crate::subscriber::{Subscriber, SubscriberPlan, SubscriberReport};
use crate::sys_stats::{self, StoreStats};

/// Session Expiry Interval of every persistent subscriber (MQTT 5.0), seconds.
const SESSION_EXPIRY_SECS: u32 = 3600;

/// Persistent sessions set up at once.
const CONCURRENT_SETUPS: usize = 32;

/// Longest wait for a live `$SYS` update (Cairn's default interval is 10 s).
pub const SYS_WAIT: Duration = Duration::from_secs(15);

/// One persistent subscriber on `load/#` (offline, or online with --online), P publishers on
/// `load/<i>`; every acknowledged message must reach the subscriber.
pub async fn durable_fan_in(args: &Args) -> Result<Summary, LoadError> {
    require_acknowledged(args, "durable-fan-in")?;
    let topology = Topology {
        publishers: args.publishers,
        subscribers: 1,
        filter: "load/#".to_owned(),
        topic_of: |index| format!("load/{index}"),
    };
    let options = client_options(args);
    register_sessions(args, &options, &topology).await?;
    let (phase, delivery) = if args.online {
        publish_to_online(args, &options, &topology).await?
    } else {
        let phase = publish_while_offline(args, &options, &topology).await?;
        let drain = drain(args, &options, &topology, &phase).await?;
        (phase, drain)
    };
    let mut fields = vec![("subscriber", subscriber_state(args).to_owned())];
    fields.extend(phase.fields(args, &topology));
    fields.extend(delivery.fields);
    Ok(Summary {
        fields,
        problems: delivery.problems,
    })
}

/// Where the persistent subscriber is while the publishers run, for the RESULT line.
fn subscriber_state(args: &Args) -> &'static str {
    if args.online {
        "online"
    } else {
        "offline"
    }
}

/// S offline persistent sessions, each fed on its own topic by its own publisher; no drain.
pub async fn durable_queues(args: &Args) -> Result<Summary, LoadError> {
    require_acknowledged(args, "durable-queues")?;
    let topology = Topology {
        publishers: args.subscribers,
        subscribers: args.subscribers,
        // No shared filter: session i subscribes to its own topic (see `filter_of`).
        filter: String::new(),
        topic_of: |index| format!("load/{index}"),
    };
    let options = client_options(args);
    register_sessions(args, &options, &topology).await?;
    let phase = publish_while_offline(args, &options, &topology).await?;
    Ok(Summary {
        fields: phase.fields(args, &topology),
        problems: Vec::new(),
    })
}

/// QoS 0 is neither acknowledged nor stored: nothing durable to measure.
fn require_acknowledged(args: &Args, scenario: &'static str) -> Result<(), LoadError> {
    if args.qos.qos() == QoS::AtMostOnce {
        return Err(LoadError::QosNotDurable { scenario });
    }
    Ok(())
}

/// The filter persistent subscriber `index` holds: the topology's shared filter, or its own
/// topic when the topology has none.
fn filter_of(topology: &Topology, index: u32) -> String {
    if topology.filter.is_empty() {
        (topology.topic_of)(index)
    } else {
        topology.filter.clone()
    }
}

/// Creates every persistent session with its subscription, then leaves it offline.
async fn register_sessions(
    args: &Args,
    options: &ClientOptions,
    topology: &Topology,
) -> Result<(), LoadError> {
    let mut setups = JoinSet::new();
    for index in 0..topology.subscribers {
        if setups.len() >= CONCURRENT_SETUPS {
            next_setup(&mut setups).await?;
        }
        let options = options.clone();
        let filter = filter_of(topology, index);
        let qos = args.qos.qos();
        let reply_timeout = args.connect_timeout;
        setups.spawn(async move {
            let (mut connection, _) = open_persistent(&options, index).await?;
            connection.subscribe(&filter, qos, reply_timeout).await?;
            connection.disconnect().await
        });
    }
    while !setups.is_empty() {
        next_setup(&mut setups).await?;
    }
    eprintln!(
        "{} persistent session(s) subscribed and went offline",
        topology.subscribers
    );
    Ok(())
}

/// Waits for the next session setup of `setups`, which must not be empty.
async fn next_setup(setups: &mut JoinSet<Result<(), LoadError>>) -> Result<(), LoadError> {
    match setups.join_next().await {
        Some(joined) => joined?,
        None => Err(LoadError::EndedEarly("session setup")),
    }
}

/// Connects persistent subscriber `index` (Clean Start 0, Session Expiry 1 h).
async fn open_persistent(
    options: &ClientOptions,
    index: u32,
) -> Result<(MqttConnection, bool), LoadError> {
    let who = format!("persistent subscriber {index}");
    let session = SessionStart::Persistent {
        expiry_secs: SESSION_EXPIRY_SECS,
    };
    let (connection, limits) =
        MqttConnection::open_session(who, &client_id("durable-sub", index), options, session)
            .await?;
    Ok((connection, limits.session_present))
}

/// The publishing phase: what the publishers did and what the broker's counters moved by.
pub struct PublishPhase {
    clock: Clock,
    publishers: Vec<PublisherReport>,
    /// The interval acknowledged msg/s and latencies are taken over, on the run's clock.
    measured_nanos: (u64, u64),
    before: Probe,
    after: Probe,
}

/// Publishes while every subscriber is offline.
pub async fn publish_while_offline(
    args: &Args,
    options: &ClientOptions,
    topology: &Topology,
) -> Result<PublishPhase, LoadError> {
    let before = Probe::take(args, options).await?;
    let clock = Clock::start();
    let mut crew = Crew::default();
    let (publishers, measured_nanos) = publish(args, topology, &mut crew, clock).await?;
    let after = Probe::take(args, options).await?;
    Ok(PublishPhase {
        clock,
        publishers,
        measured_nanos,
        before,
        after,
    })
}

/// Brings the persistent subscriber back, publishes while it receives and acknowledges, and
/// waits until it has every acknowledged message before taking the closing probe, so the
/// store's work for the deliveries and their acknowledgements counts in the phase.
async fn publish_to_online(
    args: &Args,
    options: &ClientOptions,
    topology: &Topology,
) -> Result<(PublishPhase, Delivery), LoadError> {
    let clock = Clock::start();
    let progress = Arc::new(Progress::new(1, args.window));
    let mut crew = Crew::default();
    crew.start_subscriber(resume_subscriber(options, topology, &progress, clock, true).await?);
    let before = Probe::take(args, options).await?;
    let (publishers, measured_nanos) = publish(args, topology, &mut crew, clock).await?;
    let acknowledged: u64 = publishers.iter().map(|p| p.sent).sum();
    let started = Instant::now();
    crew.await_deliveries(&progress, acknowledged, args.drain_timeout)
        .await?;
    let caught_up_in = started.elapsed();
    let after = Probe::take(args, options).await?;
    let subscribers = crew.stop_subscribers(args.drain_timeout).await?;
    let phase = PublishPhase {
        clock,
        publishers,
        measured_nanos,
        before,
        after,
    };
    let delivered = progress.total_received();
    eprintln!(
        "the online subscriber received {delivered} of {acknowledged} messages, the last \
         {:.3} s after publishing stopped",
        caught_up_in.as_secs_f64()
    );
    let latencies = phase.delivery_latencies_micros(&subscribers);
    let p = Percentiles::of(&latencies).unwrap_or_default();
    eprintln!(
        "delivery latency (publisher send to subscriber receipt) p50 {} µs, p99 {} µs, max {} µs",
        p.p50, p.p99, p.max
    );
    let check = DeliveryCheck::between(&phase.publishers, &subscribers);
    let delivery = Delivery {
        fields: vec![
            ("delivered", delivered.to_string()),
            (
                "catch_up_secs",
                format!("{:.3}", caught_up_in.as_secs_f64()),
            ),
            ("delivery_p50_us", p.p50.to_string()),
            ("delivery_p99_us", p.p99.to_string()),
            ("lost", check.lost.to_string()),
            ("behind", check.behind.to_string()),
        ],
        problems: check.problems(args.qos.qos()),
    };
    Ok((phase, delivery))
}

/// Runs the publishers of `topology` in `crew` (beside any subscriber it holds) for
/// --duration after --warmup, or until each has sent --count messages (then the whole run is
/// measured); their reports and the measured interval on `clock`.
async fn publish(
    args: &Args,
    topology: &Topology,
    crew: &mut Crew,
    clock: Clock,
) -> Result<(Vec<PublisherReport>, (u64, u64)), LoadError> {
    let pacing = if args.paced {
        Pacing::Rate {
            start: Instant::now(),
            per_second: args.rate,
        }
    } else {
        Pacing::InflightOnly
    };
    crew.start_publishers(args, topology, |index| PublisherPlan {
        limit: args.count,
        log_acks: true,
        ..publisher_plan(args, topology, index, &pacing, clock)
    })
    .await?;
    eprintln!(
        "connected {} publisher(s) to {}; publishing while the subscriber(s) are {}",
        topology.publishers,
        args.broker,
        subscriber_state(args)
    );
    match args.count {
        Some(_) => {
            let publishers = crew.await_publishers(topology.publishers).await?;
            let whole = whole_phase(&publishers);
            Ok((publishers, whole))
        }
        None => {
            let measured = supervise(&mut crew.tasks, measure_window(args, clock)).await?;
            Ok((crew.stop_publishers(topology.publishers).await?, measured))
        }
    }
}

/// Waits out the warm-up, then --duration; the measured interval on the run's clock.
async fn measure_window(args: &Args, clock: Clock) -> (u64, u64) {
    sleep(args.warmup).await;
    let from = clock.now_nanos();
    sleep(args.duration).await;
    (from, clock.now_nanos())
}

/// From the first message sent to the last acknowledgement received.
pub fn whole_phase(publishers: &[PublisherReport]) -> (u64, u64) {
    let acks = publishers.iter().flat_map(|p| p.acks.iter());
    let first_sent = acks.clone().map(|(sent, _)| *sent).min().unwrap_or(0);
    let last_acked = acks
        .map(|(sent, latency)| sent + latency)
        .max()
        .unwrap_or(0);
    (first_sent, last_acked)
}

impl PublishPhase {
    /// Messages sent, all of them acknowledged.
    fn acknowledged(&self) -> u64 {
        self.publishers.iter().map(|p| p.sent).sum()
    }

    /// The RESULT fields of the publishing phase, printing the human summary on the way.
    pub fn fields(&self, args: &Args, topology: &Topology) -> Vec<(&'static str, String)> {
        let (from, to) = self.measured_nanos;
        let seconds = Duration::from_nanos(to.saturating_sub(from)).as_secs_f64();
        let acked_in_window = self
            .all_acks()
            .filter(|(sent, latency)| (from..=to).contains(&(sent + latency)))
            .count();
        let rate = acked_in_window as f64 / seconds.max(f64::EPSILON);
        let latencies = self.latencies_micros();
        let p = Percentiles::of(&latencies).unwrap_or_default();
        eprintln!(
            "{} messages acknowledged ({acked_in_window} in the {seconds:.3} s measured): \
             {rate:.0} msg/s; acknowledgement latency p50 {} µs, p99 {} µs, max {} µs",
            self.acknowledged(),
            p.p50,
            p.p99,
            p.max
        );
        let mut fields = vec![
            ("publishers", topology.publishers.to_string()),
            ("sessions", topology.subscribers.to_string()),
            ("payload", args.payload.to_string()),
            ("acked", self.acknowledged().to_string()),
            ("secs", format!("{seconds:.3}")),
            ("rate", format!("{rate:.0}")),
            ("ack_p50_us", p.p50.to_string()),
            ("ack_p99_us", p.p99.to_string()),
            ("ack_max_us", p.max.to_string()),
        ];
        fields.extend(self.broker_fields());
        fields
    }

    fn all_acks(&self) -> impl Iterator<Item = &(u64, u64)> {
        self.publishers.iter().flat_map(|p| p.acks.iter())
    }

    /// Acknowledgement latencies in µs of messages sent during the measured interval, sorted.
    fn latencies_micros(&self) -> Vec<u64> {
        self.measured_micros(self.all_acks())
    }

    /// Delivery latencies in µs at `subscribers` of messages sent during the measured
    /// interval, sorted.
    fn delivery_latencies_micros(&self, subscribers: &[SubscriberReport]) -> Vec<u64> {
        self.measured_micros(subscribers.iter().flat_map(|s| s.latencies.iter()))
    }

    /// The latencies in µs of those (send time, latency) pairs whose message was sent during
    /// the measured interval, sorted.
    fn measured_micros<'a>(&self, samples: impl Iterator<Item = &'a (u64, u64)>) -> Vec<u64> {
        let (from, to) = self.measured_nanos;
        let mut micros: Vec<u64> = samples
            .filter(|(sent, _)| (from..=to).contains(sent))
            .map(|(_, latency)| latency / 1_000)
            .collect();
        micros.sort_unstable();
        micros
    }

    /// What the broker process and its store did over the phase, per acknowledged message.
    fn broker_fields(&self) -> Vec<(&'static str, String)> {
        let acked = self.acknowledged().max(1);
        let mut fields = Vec::new();
        if let (Some(before), Some(after)) = (self.before.process, self.after.process) {
            let written = after.write_bytes.saturating_sub(before.write_bytes);
            eprintln!(
                "broker: VmRSS {} KiB → {} KiB; {written} bytes written to storage \
                 ({} per message)",
                before.rss_kib,
                after.rss_kib,
                written / acked
            );
            fields.push(("rss_before_kib", before.rss_kib.to_string()));
            fields.push(("rss_after_kib", after.rss_kib.to_string()));
            fields.push(("io_bytes", written.to_string()));
            fields.push((
                "io_bytes_per_msg",
                format!("{:.1}", written as f64 / acked as f64),
            ));
        }
        if let (Some(before), Some(after)) = (self.before.device, self.after.device) {
            let written = after.saturating_sub(before);
            eprintln!("storage device: {written} bytes written");
            fields.push((
                "device_bytes_per_msg",
                format!("{:.1}", written as f64 / acked as f64),
            ));
        }
        if let (Some(before), Some(after)) = (self.before.store, self.after.store) {
            let commits = after.commits.saturating_sub(before.commits);
            let written = after.bytes_written.saturating_sub(before.bytes_written);
            let elided = after.elided.saturating_sub(before.elided);
            let per_commit = self.acknowledged() as f64 / commits.max(1) as f64;
            eprintln!(
                "store: {commits} commits ({per_commit:.1} messages each), {written} bytes \
                 written, {elided} queue entries never written; {} messages queued",
                after.queued
            );
            fields.push(("commits", commits.to_string()));
            fields.push(("msgs_per_commit", format!("{per_commit:.2}")));
            fields.push(("store_bytes", written.to_string()));
            fields.push((
                "store_bytes_per_msg",
                format!("{:.1}", written as f64 / acked as f64),
            ));
            fields.push(("elided", elided.to_string()));
            fields.push(("queued", after.queued.to_string()));
        }
        fields
    }
}

/// The broker's state at one moment, as far as the arguments let the tool see it.
#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    /// With --broker-pid.
    process: Option<ProcessStats>,
    /// With --store-stats.
    store: Option<StoreStats>,
    /// With --storage: bytes written to its block device so far.
    device: Option<u64>,
}

/// Memory and storage writes of the broker process.
#[derive(Debug, Clone, Copy)]
struct ProcessStats {
    rss_kib: u64,
    write_bytes: u64,
}

impl Probe {
    async fn take(args: &Args, options: &ClientOptions) -> Result<Probe, LoadError> {
        let process = match args.broker_pid {
            Some(pid) => Some(ProcessStats {
                rss_kib: broker_proc::rss_kib(pid)?,
                write_bytes: broker_proc::write_bytes(pid)?,
            }),
            None => None,
        };
        let store = if args.store_stats {
            Some(sys_stats::read(options, SYS_WAIT).await?)
        } else {
            None
        };
        let device = args
            .storage
            .as_deref()
            .map(broker_proc::device_written_bytes)
            .transpose()?;
        Ok(Probe {
            process,
            store,
            device,
        })
    }
}

/// What the subscriber received: the drain after an offline phase, or the deliveries of an
/// online one.
struct Delivery {
    fields: Vec<(&'static str, String)>,
    problems: Vec<String>,
}

/// Reconnects persistent subscriber 0, which must find its session, counting what it
/// receives in `progress`; `log_latency` keeps each message's delivery latency.
async fn resume_subscriber(
    options: &ClientOptions,
    topology: &Topology,
    progress: &Arc<Progress>,
    clock: Clock,
    log_latency: bool,
) -> Result<Subscriber, LoadError> {
    let (connection, session_present) = open_persistent(options, 0).await?;
    if !session_present {
        return Err(LoadError::SessionLost {
            who: connection.who().to_owned(),
        });
    }
    let plan = SubscriberPlan {
        index: 0,
        publishers: topology.publishers as usize,
        progress: Arc::clone(progress),
        clock,
        log_latency,
        count_duplicates: false,
    };
    Ok(Subscriber::new(connection, plan))
}

/// Brings the persistent subscriber back and checks that every acknowledged message arrives,
/// in order per publisher, within --drain-timeout.
async fn drain(
    args: &Args,
    options: &ClientOptions,
    topology: &Topology,
    phase: &PublishPhase,
) -> Result<Delivery, LoadError> {
    let acknowledged = phase.acknowledged();
    let progress = Arc::new(Progress::new(1, args.window));
    let started = Instant::now();
    let subscriber = resume_subscriber(options, topology, &progress, phase.clock, false).await?;
    let mut crew = Crew::default();
    crew.start_subscriber(subscriber);
    crew.await_deliveries(&progress, acknowledged, args.drain_timeout)
        .await?;
    let drained_for = started.elapsed();
    let drained = progress.total_received();
    let subscribers = crew.stop_subscribers(args.drain_timeout).await?;
    let check = DeliveryCheck::between(&phase.publishers, &subscribers);
    let drain_rate = drained as f64 / drained_for.as_secs_f64().max(f64::EPSILON);
    eprintln!(
        "the subscriber returned and received {drained} of {acknowledged} messages in \
         {:.3} s ({drain_rate:.0} msg/s)",
        drained_for.as_secs_f64()
    );
    Ok(Delivery {
        fields: vec![
            ("drained", drained.to_string()),
            ("drain_secs", format!("{:.3}", drained_for.as_secs_f64())),
            ("drain_rate", format!("{drain_rate:.0}")),
            ("lost", check.lost.to_string()),
            ("behind", check.behind.to_string()),
        ],
        problems: check.problems(args.qos.qos()),
    })
}
