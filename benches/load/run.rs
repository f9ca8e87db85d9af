//! One publish/subscribe run shared by fan-in, fan-out and latency: connects the subscribers,
//! then the publishers; warms up; measures deliveries over a duration or a count; stops the
//! publishers, waits for the last deliveries, and checks that every message arrived as its
//! QoS promises.
//!
//! A client task that fails or ends early ends the run with its error. The durable scenarios
//! drive the same [`Crew`] through their own phases.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cairn::codec::QoS;
use cairn::transport::client::{TlsClient, TlsClientSettings};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tokio::time::{sleep, timeout, Instant};

use crate::args::Args;
use crate::connection::{ClientOptions, MqttConnection};
use crate::error::LoadError;
use crate::progress::Progress;
use crate::publisher::{Pacing, Publisher, PublisherPlan, PublisherReport};
use crate::stamp::Clock;
use crate::subscriber::{Subscriber, SubscriberPlan, SubscriberReport};

/// Who publishes where and who listens.
pub struct Topology {
    pub publishers: u32,
    pub subscribers: u32,
    /// Filter every subscriber subscribes to.
    pub filter: String,
    /// Topic of publisher `i`.
    pub topic_of: fn(u32) -> String,
}

/// How publishers are paced.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Flat out within the end-to-end window of `--window` messages.
    Flat,
    /// Each publisher at this many messages per second.
    PerSecond(u32),
}

/// What a run measured and what every client reported.
pub struct RunOutcome {
    /// Deliveries (all subscribers together) during the measured interval.
    pub measured_deliveries: u64,
    /// Length of the measured interval.
    pub measured_for: Duration,
    /// The measured interval on the run's clock, nanoseconds.
    pub measured_nanos: (u64, u64),
    pub publishers: Vec<PublisherReport>,
    pub subscribers: Vec<SubscriberReport>,
}

impl RunOutcome {
    /// Messages sent by all publishers together.
    pub fn sent(&self) -> u64 {
        self.publishers.iter().map(|p| p.sent).sum()
    }

    /// Deliveries per second over the measured interval.
    pub fn rate(&self) -> f64 {
        self.measured_deliveries as f64 / self.measured_for.as_secs_f64().max(f64::EPSILON)
    }

    /// Times a publisher found the end-to-end window shut for the stall timeout.
    pub fn stalls(&self) -> u64 {
        self.publishers.iter().map(|p| p.stalls).sum()
    }
}

/// A finished client task.
pub enum Finished {
    Publisher(PublisherReport),
    Subscriber(SubscriberReport),
}

pub type Tasks = JoinSet<Result<Finished, LoadError>>;

/// Runs `topology` with `pace` as `args` says; `log_latency` keeps every message's latency.
pub async fn run(
    args: &Args,
    topology: &Topology,
    pace: Pace,
    log_latency: bool,
) -> Result<RunOutcome, LoadError> {
    let clock = Clock::start();
    let progress = Arc::new(Progress::new(topology.subscribers as usize, args.window));
    let mut crew = Crew::default();
    crew.start_subscribers(args, topology, &progress, clock, log_latency)
        .await?;
    let pacing = match pace {
        Pace::Flat => Pacing::Window(Arc::clone(&progress)),
        Pace::PerSecond(per_second) => Pacing::Rate {
            start: Instant::now(),
            per_second,
        },
    };
    crew.start_publishers(args, topology, |index| {
        publisher_plan(args, topology, index, &pacing, clock)
    })
    .await?;
    eprintln!(
        "connected {} publisher(s) and {} subscriber(s) to {}; warming up for {:?}",
        topology.publishers, topology.subscribers, args.broker, args.warmup
    );
    let measured = supervise(&mut crew.tasks, measure(args, &progress, clock)).await?;
    let publishers = crew.stop_publishers(topology.publishers).await?;
    let sent = publishers.iter().map(|p| p.sent).sum();
    crew.await_deliveries(&progress, sent, args.drain_timeout)
        .await?;
    let subscribers = crew.stop_subscribers(args.drain_timeout).await?;
    Ok(RunOutcome {
        measured_deliveries: measured.deliveries,
        measured_for: measured.elapsed,
        measured_nanos: measured.nanos,
        publishers,
        subscribers,
    })
}

/// The client tasks of a run and the switches that stop them.
pub struct Crew {
    /// Watched by [`supervise`] while the run waits for something else.
    pub tasks: Tasks,
    stop_publishers: watch::Sender<bool>,
    stop_subscribers: watch::Sender<bool>,
}

impl Default for Crew {
    fn default() -> Crew {
        Crew {
            tasks: Tasks::new(),
            stop_publishers: watch::Sender::new(false),
            stop_subscribers: watch::Sender::new(false),
        }
    }
}

impl Crew {
    /// Connects and subscribes every subscriber, then starts it.
    async fn start_subscribers(
        &mut self,
        args: &Args,
        topology: &Topology,
        progress: &Arc<Progress>,
        clock: Clock,
        log_latency: bool,
    ) -> Result<(), LoadError> {
        let options = client_options(args);
        for index in 0..topology.subscribers {
            let plan = SubscriberPlan {
                index: index as usize,
                publishers: topology.publishers as usize,
                progress: Arc::clone(progress),
                clock,
                log_latency,
                count_duplicates: false,
            };
            let subscriber = connect_subscriber(args, &options, &topology.filter, plan).await?;
            self.start_subscriber(subscriber);
        }
        Ok(())
    }

    /// Starts a connected, subscribed subscriber.
    pub fn start_subscriber(&mut self, subscriber: Subscriber) {
        let stop = self.stop_subscribers.subscribe();
        self.tasks
            .spawn(async move { subscriber.run(stop).await.map(Finished::Subscriber) });
    }

    /// Connects every publisher of `topology` with the plan `plan_of(index)`, then starts it.
    pub async fn start_publishers(
        &mut self,
        args: &Args,
        topology: &Topology,
        plan_of: impl Fn(u32) -> PublisherPlan,
    ) -> Result<(), LoadError> {
        let options = client_options(args);
        for index in 0..topology.publishers {
            let publisher = connect_publisher(&options, plan_of(index)).await?;
            let stop = self.stop_publishers.subscribe();
            self.tasks
                .spawn(async move { publisher.run(stop).await.map(Finished::Publisher) });
        }
        Ok(())
    }

    /// Stops the publishers and waits until all `count` have their messages acknowledged.
    pub async fn stop_publishers(&mut self, count: u32) -> Result<Vec<PublisherReport>, LoadError> {
        self.stop_publishers.send_replace(true);
        self.await_publishers(count).await
    }

    /// Waits until all `count` publishers have finished (stopped, or sent their limit).
    pub async fn await_publishers(
        &mut self,
        count: u32,
    ) -> Result<Vec<PublisherReport>, LoadError> {
        let mut reports = Vec::with_capacity(count as usize);
        while reports.len() < count as usize {
            match self.tasks.join_next().await {
                Some(Ok(Ok(Finished::Publisher(report)))) => reports.push(report),
                Some(other) => return Err(ended_early(other)),
                None => return Err(LoadError::EndedEarly("publisher")),
            }
        }
        reports.sort_by_key(|report| report.index);
        Ok(reports)
    }

    /// Waits until every subscriber has received all `sent` messages, or `limit` passes
    /// (then the delivery check reports what is missing).
    pub async fn await_deliveries(
        &mut self,
        progress: &Progress,
        sent: u64,
        limit: Duration,
    ) -> Result<(), LoadError> {
        let all_delivered = progress.wait_until(|p| p.slowest_received() >= sent);
        match timeout(limit, supervise(&mut self.tasks, all_delivered)).await {
            Ok(supervised) => supervised,
            Err(_) => {
                eprintln!("not every message arrived within {limit:?} of publishing stopping");
                Ok(())
            }
        }
    }

    /// Stops the subscribers and collects their reports.
    pub async fn stop_subscribers(
        &mut self,
        limit: Duration,
    ) -> Result<Vec<SubscriberReport>, LoadError> {
        self.stop_subscribers.send_replace(true);
        let mut reports = Vec::new();
        let collect = async {
            while let Some(joined) = self.tasks.join_next().await {
                match joined {
                    Ok(Ok(Finished::Subscriber(report))) => reports.push(report),
                    other => return Err(ended_early(other)),
                }
            }
            Ok(())
        };
        timeout(limit, collect)
            .await
            .map_err(|_| LoadError::StuckStopping {
                role: "subscriber",
                timeout: limit,
            })??;
        reports.sort_by_key(|report| report.index);
        Ok(reports)
    }
}

/// The options every client of the run connects with.
pub fn client_options(args: &Args) -> ClientOptions {
    ClientOptions {
        broker: args.broker.clone(),
        version: args.protocol(),
        keep_alive: args.keep_alive,
        handshake_timeout: args.connect_timeout,
        tls: TLS.get().cloned().flatten(),
        reset_at_close: false,
    }
}

/// TLS to the broker under test (`--tls-ca`), set once at start.
static TLS: OnceLock<Option<TlsClient>> = OnceLock::new();

/// Reads `--tls-ca` before any client exists: clients then connect to `--broker` through TLS,
/// verifying the broker's certificate for `--tls-server-name` (default: the host of
/// `--broker`).
pub fn set_tls(args: &Args) -> Result<(), LoadError> {
    let tls = match &args.tls_ca {
        None => None,
        Some(ca) => {
            let server_name = match &args.tls_server_name {
                Some(name) => name.clone(),
                None => host_of(&args.broker).to_owned(),
            };
            let settings = TlsClientSettings {
                ca: ca.clone(),
                server_name,
                identity: None,
                alpn: Vec::new(),
            };
            Some(TlsClient::new(&settings).map_err(|error| LoadError::Tls(error.to_string()))?)
        }
    };
    let _ = TLS.set(tls);
    Ok(())
}

/// The host of "host:port" (an IPv6 address without its brackets).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The prefix of every client identifier (`--client-prefix`), set once at start.
static CLIENT_PREFIX: OnceLock<String> = OnceLock::new();

/// Sets the prefix of client identifiers, if one is given, before any client exists (a
/// second call keeps the first prefix); without one they are unique to this process.
pub fn set_client_prefix(prefix: Option<String>) {
    if let Some(prefix) = prefix {
        let _ = CLIENT_PREFIX.set(prefix);
    }
}

/// The client identifier of `role` and `index`: unique to this process unless
/// `--client-prefix` names the sessions to reuse.
pub fn client_id(role: &str, index: u32) -> String {
    let prefix = CLIENT_PREFIX.get_or_init(|| format!("load-{}", std::process::id()));
    format!("{prefix}-{role}-{index}")
}

/// Position `index` of `count` mapped to another index, each exactly once: a fixed stride
/// coprime with `count` (near the golden ratio of it, so neighbours land far apart).
pub fn scrambled(index: u32, count: u32) -> u32 {
    if count < 3 {
        return index;
    }
    let count = u64::from(count);
    let coprime = |stride: &u64| gcd(*stride, count) == 1;
    let stride = ((count * 618 / 1000).max(2)..count)
        .find(coprime)
        .unwrap_or(1);
    (u64::from(index) * stride % count) as u32
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Opens and subscribes one subscriber.
async fn connect_subscriber(
    args: &Args,
    options: &ClientOptions,
    filter: &str,
    plan: SubscriberPlan,
) -> Result<Subscriber, LoadError> {
    let index = plan.index as u32;
    let who = format!("subscriber {index}");
    let (mut connection, _) = MqttConnection::open(who, &client_id("sub", index), options).await?;
    connection
        .subscribe(filter, args.qos.qos(), args.connect_timeout)
        .await?;
    Ok(Subscriber::new(connection, plan))
}

/// What publisher `index` of `topology` does as `args` say: publish until stopped, at
/// `pacing`, without logging acknowledgements.
pub fn publisher_plan(
    args: &Args,
    topology: &Topology,
    index: u32,
    pacing: &Pacing,
    clock: Clock,
) -> PublisherPlan {
    PublisherPlan {
        index,
        topic: (topology.topic_of)(index),
        qos: args.qos.qos(),
        payload_len: args.payload,
        max_inflight: args.inflight,
        pacing: pacing.clone(),
        clock,
        drain_timeout: args.drain_timeout,
        limit: None,
        log_acks: false,
    }
}

/// Opens one publisher and fits its inflight window to the broker's Receive Maximum.
async fn connect_publisher(
    options: &ClientOptions,
    mut plan: PublisherPlan,
) -> Result<Publisher, LoadError> {
    let who = format!("publisher {}", plan.index);
    let client_id = client_id("pub", plan.index);
    let (connection, limits) = MqttConnection::open(who, &client_id, options).await?;
    if limits.maximum_qos < plan.qos as u8 {
        return Err(LoadError::QosUnsupported {
            who: connection.who().to_owned(),
            maximum: limits.maximum_qos,
            needed: plan.qos,
        });
    }
    plan.max_inflight = plan.max_inflight.min(limits.receive_maximum);
    Ok(Publisher::new(connection, plan))
}

/// The measured interval.
struct Measured {
    deliveries: u64,
    elapsed: Duration,
    nanos: (u64, u64),
}

/// Waits out the warm-up, then counts deliveries over `--duration` or until `--count`.
async fn measure(args: &Args, progress: &Progress, clock: Clock) -> Measured {
    sleep(args.warmup).await;
    let started = Instant::now();
    let before = progress.total_received();
    match args.count {
        Some(count) => {
            progress
                .wait_until(|p| p.total_received() >= before + count)
                .await
        }
        None => sleep(args.duration).await,
    }
    let ended = Instant::now();
    Measured {
        deliveries: progress.total_received() - before,
        elapsed: ended - started,
        nanos: (
            clock.nanos_at(started.into_std()),
            clock.nanos_at(ended.into_std()),
        ),
    }
}

/// Drives `work` while watching the client tasks: any task ending first ends the run.
pub async fn supervise<T>(
    tasks: &mut Tasks,
    work: impl std::future::Future<Output = T>,
) -> Result<T, LoadError> {
    tokio::select! {
        output = work => Ok(output),
        Some(joined) = tasks.join_next() => Err(ended_early(joined)),
    }
}

/// The error for a task that ended while it should still be running.
fn ended_early(joined: Result<Result<Finished, LoadError>, JoinError>) -> LoadError {
    match joined {
        Ok(Ok(Finished::Publisher(_))) => LoadError::EndedEarly("publisher"),
        Ok(Ok(Finished::Subscriber(_))) => LoadError::EndedEarly("subscriber"),
        Ok(Err(error)) => error,
        Err(join) => LoadError::Task(join),
    }
}

/// Delivery problems of a run: messages missing or out of sequence at any subscriber.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeliveryCheck {
    /// Messages sent but never received, summed over subscribers.
    pub lost: u64,
    /// Messages that arrived behind a later one from the same publisher (reordered or
    /// duplicated), summed over subscribers.
    pub behind: u64,
}

impl DeliveryCheck {
    /// Compares what every subscriber received with what every publisher sent.
    pub fn of(outcome: &RunOutcome) -> DeliveryCheck {
        DeliveryCheck::between(&outcome.publishers, &outcome.subscribers)
    }

    /// Compares what each of `subscribers` received with what each of `publishers` sent.
    pub fn between(
        publishers: &[PublisherReport],
        subscribers: &[SubscriberReport],
    ) -> DeliveryCheck {
        let mut check = DeliveryCheck::default();
        for subscriber in subscribers {
            for publisher in publishers {
                let seen = subscriber
                    .sequences
                    .get(publisher.index as usize)
                    .copied()
                    .unwrap_or_default();
                check.lost += publisher.sent.saturating_sub(seen.received);
                check.behind += seen.behind;
            }
        }
        check
    }

    /// The failures for `qos`: loss is one for QoS 1/2, disorder for every QoS
    /// (each topic is an Ordered Topic [MQTT-4.6.0-6]).
    pub fn problems(&self, qos: QoS) -> Vec<String> {
        let mut problems = Vec::new();
        if self.lost > 0 && qos != QoS::AtMostOnce {
            problems.push(format!(
                "{} QoS {} message deliveries never arrived",
                self.lost, qos as u8
            ));
        }
        if self.behind > 0 {
            problems.push(format!(
                "{} messages arrived behind a later message of the same publisher \
                 (duplicate or reordered) [MQTT-4.6.0-6]",
                self.behind
            ));
        }
        problems
    }
}
