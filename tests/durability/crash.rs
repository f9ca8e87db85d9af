//! The crash loop (design.md promise 1): publishers send QoS 1 and QoS 2 messages under load,
//! pipelined, while one persistent subscriber is online but slow (a small Receive Maximum) and
//! another is offline; the real binary is killed with SIGKILL at seeded random moments and
//! started again on the same data directory each time. Every client behaves as the spec asks
//! of a client across reconnects: publishers resend their unacknowledged PUBLISHes (DUP 1) and
//! PUBRELs in order [MQTT-4.4.0-1], subscribers keep their inbound QoS 2 packet identifiers
//! until PUBREL and never pass a repeat on ([MQTT-4.3.3-10] (5.0) / [MQTT-4.3.3-2] (3.1.1)).
//!
//! In the end every message a publisher saw acknowledged must have reached both subscribers:
//! QoS 1 at least once, QoS 2 exactly once, in publish order per publisher (the first
//! delivery of each message; QoS 1 repeats from redelivery are allowed).
//!
//! `CAIRN_CRASH_CYCLES` sets the number of kills of the default test (3); `CAIRN_CRASH_SEED`
//! repeats a run's kill times (the seed is printed, and named in every failure).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cairn::codec::{
    Connect, Disconnect, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::common::clients::{new_session, persistent_connect, subscribe_ok};
use crate::common::prng::SplitMix64;
use crate::common::serve::ServeProcess;
use crate::common::RawClient;
use crate::process;

/// Kills in the default test.
const DEFAULT_CYCLES: usize = 3;
/// Kills in the soak variant.
const SOAK_CYCLES: usize = 50;
const CYCLES_VARIABLE: &str = "CAIRN_CRASH_CYCLES";
const SEED_VARIABLE: &str = "CAIRN_CRASH_SEED";
/// When a kill comes, in milliseconds after the broker became ready.
const KILL_AFTER_MS: Range<u64> = 50..500;
/// Unacknowledged messages each publisher keeps in flight (below the broker's Receive Maximum).
const WINDOW: usize = 8;
/// The online subscriber's Receive Maximum: small, so messages queue up behind it.
const SLOW_RECEIVE_MAXIMUM: u16 = 4;
/// The longest the final phase (publishers completing, subscribers catching up) may take.
const FINAL_PHASE: Duration = Duration::from_secs(180);
/// Most messages each publisher publishes per kill: the slow subscriber must receive them all
/// within [`FINAL_PHASE`] (QoS 2 at a Receive Maximum of 4 costs two commits per few messages),
/// and the faster the broker, the more the publishers would publish otherwise.
const MESSAGES_PER_CYCLE: u64 = 200;
/// Every publisher publishes below this; the subscribers subscribe to all of it.
const TOPIC_ROOT: &str = "crash";

/// The publishers: one per protocol version and QoS.
const PUBLISHERS: [(ProtocolVersion, QoS); 4] = [
    (ProtocolVersion::V5, QoS::AtLeastOnce),
    (ProtocolVersion::V311, QoS::AtLeastOnce),
    (ProtocolVersion::V5, QoS::ExactlyOnce),
    (ProtocolVersion::V311, QoS::ExactlyOnce),
];
/// The subscriber that stays connected (reconnecting after each kill).
const ONLINE_SUBSCRIBER: (&str, ProtocolVersion) = ("crash-online", ProtocolVersion::V5);
/// The subscriber that connects only after the last kill.
const OFFLINE_SUBSCRIBER: (&str, ProtocolVersion) = ("crash-offline", ProtocolVersion::V311);

/// Promise 1 under `CAIRN_CRASH_CYCLES` (default 3) SIGKILLs at random moments, the broker
/// with its default worker threads (one on a two-core machine: tokio's current-thread
/// scheduler).
#[tokio::test]
async fn acknowledged_messages_survive_sigkills_under_load() {
    crash_cycles(default_cycles(), Workers::Default).await;
}

/// The same with three worker threads, the default on a four-core gateway (a Raspberry Pi 4):
/// tokio's multi-thread scheduler, whose connections and store answers move between threads.
#[tokio::test]
async fn acknowledged_messages_survive_sigkills_under_load_on_three_workers() {
    crash_cycles(default_cycles(), Workers::Three).await;
}

/// Promise 1 under 50 SIGKILLs at random moments.
#[tokio::test]
#[ignore = "soak run: `cargo test --test durability -- --ignored`"]
async fn acknowledged_messages_survive_fifty_sigkills_under_load() {
    crash_cycles(SOAK_CYCLES, Workers::Default).await;
}

/// The kills of the default tests: `CAIRN_CRASH_CYCLES`, else [`DEFAULT_CYCLES`].
fn default_cycles() -> usize {
    match std::env::var(CYCLES_VARIABLE) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{CYCLES_VARIABLE}={value:?} is not a number")),
        Err(_) => DEFAULT_CYCLES,
    }
}

/// How many worker threads the broker runs.
#[derive(Debug, Clone, Copy)]
enum Workers {
    /// Its default for this machine's cores.
    Default,
    /// Three, whatever the cores.
    Three,
}

impl Workers {
    /// `cairn serve` on `data_dir` with these workers, ready; checks its start-up line says
    /// how many it runs.
    async fn start(self, data_dir: &Path) -> ServeProcess {
        let mut command = process::serve_command(data_dir);
        if let Workers::Three = self {
            command.env("CAIRN_WORKER_THREADS", "3");
        }
        let cairn = ServeProcess::spawn(command).await;
        if let Workers::Three = self {
            let log = cairn.log();
            assert!(
                log.contains("worker_threads=3"),
                "the broker runs three workers:\n{log}"
            );
        }
        cairn
    }
}

/// The seed from `CAIRN_CRASH_SEED`, else from the clock.
fn seed() -> u64 {
    match std::env::var(SEED_VARIABLE) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VARIABLE}={value:?} is not a number")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64),
    }
}

/// Runs the load, kills the broker `cycles` times, lets everything complete on a last
/// broker, and checks what each subscriber received.
async fn crash_cycles(cycles: usize, workers: Workers) {
    let seed = seed();
    let context = format!("{cycles} cycles, {workers:?} workers, {SEED_VARIABLE}={seed}");
    eprintln!("crash test: {context}");
    let mut random = SplitMix64::new(seed);
    let data_dir = tempfile::tempdir().expect("a data directory");
    let mut cairn = workers.start(data_dir.path()).await;
    for (id, version) in [ONLINE_SUBSCRIBER, OFFLINE_SUBSCRIBER] {
        let mut subscriber = new_session(cairn.addr, version, id).await;
        subscribe_ok(
            &mut subscriber,
            1,
            &format!("{TOPIC_ROOT}/#"),
            QoS::ExactlyOnce,
        )
        .await;
        subscriber.go_offline().await;
    }

    let (endpoints, endpoint) = watch::channel(Endpoint {
        generation: 1,
        addr: cairn.addr,
    });
    let (totals_sender, totals) = watch::channel(None);
    let finishing = Arc::new(AtomicBool::new(false));
    let publishers: Vec<(PublisherSpec, JoinHandle<u64>)> = PUBLISHERS
        .iter()
        .enumerate()
        .map(|(index, &(version, qos))| {
            let spec = PublisherSpec::new(index, version, qos);
            let task = tokio::spawn(run_publisher(
                spec.clone(),
                Dialer::new(endpoint.clone(), 0),
                finishing.clone(),
                MESSAGES_PER_CYCLE * cycles as u64,
            ));
            (spec, task)
        })
        .collect();
    let online = tokio::spawn(run_subscriber(
        SubscriberSpec::online(),
        Dialer::new(endpoint.clone(), 0),
        totals.clone(),
    ));

    let mut slowest_start = Duration::ZERO;
    for cycle in 1..=cycles {
        let after = Duration::from_millis(random.within(KILL_AFTER_MS));
        // Not synchronisation: the kill is meant to land at an arbitrary moment of the load.
        tokio::time::sleep(after).await;
        cairn.kill().await;
        if cycle == cycles {
            finishing.store(true, Ordering::Release);
        }
        let starting = Instant::now();
        cairn = workers.start(data_dir.path()).await;
        slowest_start = slowest_start.max(starting.elapsed());
        endpoints.send_replace(Endpoint {
            generation: cycle as u64 + 1,
            addr: cairn.addr,
        });
    }
    let last_generation = cycles as u64 + 1;

    let final_phase = async {
        let mut issued = Vec::with_capacity(publishers.len());
        for (spec, task) in publishers {
            let count = task.await.expect("publisher task");
            issued.push((spec, count));
        }
        let topic_totals = issued
            .iter()
            .map(|(spec, count)| (spec.topic.clone(), *count))
            .collect();
        totals_sender.send_replace(Some(topic_totals));
        let online = online.await.expect("online subscriber task");
        let offline = run_subscriber(
            SubscriberSpec::offline(),
            Dialer::new(endpoint.clone(), last_generation - 1),
            totals.clone(),
        )
        .await;
        (issued, online, offline)
    };
    let (issued, online, offline) = tokio::time::timeout(FINAL_PHASE, final_phase)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{context}: the last broker did not complete every flow within {FINAL_PHASE:?}; \
                 its log:\n{}",
                cairn.log()
            )
        });
    let counts: Vec<String> = issued
        .iter()
        .map(|(spec, count)| format!("{} {count}", spec.topic))
        .collect();
    eprintln!(
        "crash test: {context}: messages acknowledged: {}; slowest restart {slowest_start:?}",
        counts.join(", ")
    );
    for (name, received) in [
        (ONLINE_SUBSCRIBER.0, online),
        (OFFLINE_SUBSCRIBER.0, offline),
    ] {
        for (spec, count) in &issued {
            let deliveries = received.get(&spec.topic).map_or(&[][..], Vec::as_slice);
            check_deliveries(deliveries, spec.qos, *count)
                .unwrap_or_else(|problem| panic!("{context}: {name}, {}: {problem}", spec.topic));
        }
    }
    cairn.kill().await;
}

/// Checks one publisher's messages as one subscriber received them (in arrival order) against
/// the `issued` messages the publisher saw acknowledged, numbered 1..=issued.
fn check_deliveries(deliveries: &[Delivery], qos: QoS, issued: u64) -> Result<(), String> {
    let mut first: HashMap<u64, Delivery> = HashMap::new();
    let mut last_first = 0;
    for delivery in deliveries {
        let sequence = delivery.sequence;
        if !(1..=issued).contains(&sequence) {
            return Err(format!("message {sequence} was never published"));
        }
        match first.get(&sequence) {
            None => {
                if sequence < last_first {
                    return Err(format!(
                        "message {sequence} first arrived after message {last_first}"
                    ));
                }
                last_first = sequence;
                first.insert(sequence, *delivery);
            }
            Some(earlier) if qos == QoS::ExactlyOnce => {
                return Err(format!(
                    "QoS 2 message {sequence} delivered twice: as packet id {} (DUP {}), then \
                     as packet id {} (DUP {})",
                    earlier.packet_id, earlier.dup, delivery.packet_id, delivery.dup
                ));
            }
            Some(_) => {}
        }
    }
    let missing: Vec<u64> = (1..=issued).filter(|n| !first.contains_key(n)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} of {issued} acknowledged messages never delivered: {:?}",
            missing.len(),
            &missing[..missing.len().min(20)]
        ));
    }
    Ok(())
}

/// Where the current broker listens; `generation` grows with every start.
#[derive(Debug, Clone, Copy)]
struct Endpoint {
    generation: u64,
    addr: SocketAddr,
}

/// Connects to brokers as they come: each connection goes to a newer broker than the last.
struct Dialer {
    endpoint: watch::Receiver<Endpoint>,
    last_generation: u64,
}

impl Dialer {
    fn new(endpoint: watch::Receiver<Endpoint>, last_generation: u64) -> Dialer {
        Dialer {
            endpoint,
            last_generation,
        }
    }

    /// Waits for a broker newer than the last one dialled and connects to it; a broker that
    /// cannot be reached (killed meanwhile) is skipped.
    async fn dial(&mut self) -> TcpStream {
        loop {
            let last = self.last_generation;
            let endpoint = *self
                .endpoint
                .wait_for(|endpoint| endpoint.generation > last)
                .await
                .expect("the test still runs");
            self.last_generation = endpoint.generation;
            if let Ok(stream) = TcpStream::connect(endpoint.addr).await {
                let _ = stream.set_nodelay(true);
                return stream;
            }
        }
    }
}

/// Dials the next broker and resumes the session with `connect`. Once a session has been
/// established (`established`), the broker must still have it: Session Present 1
/// [MQTT-3.2.2-3] (5.0) / [MQTT-3.2.2-2] (3.1.1). `None` if the broker went away meanwhile.
async fn open_session(
    dialer: &mut Dialer,
    connect: &Connect,
    established: &mut bool,
) -> Option<RawClient> {
    let mut wire = RawClient::from_stream(dialer.dial().await, connect.protocol);
    if !wire
        .try_send(&[Packet::Connect(Box::new(connect.clone()))])
        .await
    {
        return None;
    }
    match wire.read_packet().await? {
        Packet::ConnAck(connack) => {
            assert_eq!(
                connack.reason,
                ReasonCode::Success,
                "CONNACK for {}",
                connect.client_id
            );
            assert!(
                connack.session_present || !*established,
                "{}: its session was lost across a kill",
                connect.client_id
            );
            *established = true;
            Some(wire)
        }
        other => panic!("{}: expected CONNACK, got {other:?}", connect.client_id),
    }
}

/// One publisher: its client, topic and QoS.
#[derive(Debug, Clone)]
struct PublisherSpec {
    client_id: String,
    topic: String,
    version: ProtocolVersion,
    qos: QoS,
}

/// A message sent and not yet completed.
#[derive(Debug)]
struct Outstanding {
    sequence: u64,
    packet_id: u16,
    /// QoS 2: PUBREC arrived (the message is acknowledged) and PUBREL was sent.
    released: bool,
}

impl PublisherSpec {
    fn new(index: usize, version: ProtocolVersion, qos: QoS) -> PublisherSpec {
        PublisherSpec {
            client_id: format!("crash-pub-{index}"),
            topic: format!("{TOPIC_ROOT}/p{index}"),
            version,
            qos,
        }
    }

    /// The PUBLISH of message `sequence` (its payload is the sequence number).
    fn publish(&self, outstanding: &Outstanding, dup: bool) -> Packet {
        Packet::Publish(Publish {
            dup,
            qos: self.qos,
            retain: false,
            topic: self.topic.clone(),
            packet_id: Some(outstanding.packet_id),
            properties: Default::default(),
            payload: Bytes::from(outstanding.sequence.to_string()),
        })
    }

    /// What a reconnecting client resends for an outstanding message [MQTT-4.4.0-1]: the
    /// PUBLISH with DUP 1, or the PUBREL once PUBREC arrived.
    fn resend(&self, outstanding: &Outstanding) -> Packet {
        if outstanding.released {
            Packet::PubRel(PubResponse::success(outstanding.packet_id))
        } else {
            self.publish(outstanding, true)
        }
    }

    /// Handles an ack from the broker; returns the PUBREL to send for a PUBREC.
    fn on_ack(&self, packet: Packet, outstanding: &mut VecDeque<Outstanding>) -> Option<Packet> {
        let find = |packet_id: u16, released: bool, outstanding: &VecDeque<Outstanding>| {
            outstanding
                .iter()
                .position(|o| o.packet_id == packet_id && o.released == released)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: ack for packet id {packet_id} (released {released}), \
                         which is not outstanding: {outstanding:?}",
                        self.client_id
                    )
                })
        };
        match (self.qos, packet) {
            (QoS::AtLeastOnce, Packet::PubAck(ack)) => {
                assert_eq!(
                    ack.reason,
                    ReasonCode::Success,
                    "{}: PUBACK",
                    self.client_id
                );
                let position = find(ack.packet_id, false, outstanding);
                outstanding.remove(position);
                None
            }
            (QoS::ExactlyOnce, Packet::PubRec(rec)) => {
                assert_eq!(
                    rec.reason,
                    ReasonCode::Success,
                    "{}: PUBREC",
                    self.client_id
                );
                let position = find(rec.packet_id, false, outstanding);
                outstanding[position].released = true;
                Some(Packet::PubRel(PubResponse::success(rec.packet_id)))
            }
            (QoS::ExactlyOnce, Packet::PubComp(comp)) => {
                // 0x92: the broker completed the flow before a kill and the client, not having
                // seen the PUBCOMP, resent its PUBREL.
                assert!(
                    matches!(
                        comp.reason,
                        ReasonCode::Success | ReasonCode::PacketIdentifierNotFound
                    ),
                    "{}: PUBCOMP {comp:?}",
                    self.client_id
                );
                let position = find(comp.packet_id, true, outstanding);
                outstanding.remove(position);
                None
            }
            (_, other) => panic!("{}: unexpected {other:?}", self.client_id),
        }
    }
}

/// The packet identifier of message `sequence`: never 0, reused only 65,535 messages later.
fn packet_id_for(sequence: u64) -> u16 {
    ((sequence - 1) % u64::from(u16::MAX)) as u16 + 1
}

/// Publishes messages 1, 2, 3, … with `WINDOW` in flight, across kills, until `finishing` or
/// `limit` messages; then completes every outstanding flow and returns how many messages it
/// published (all of them acknowledged).
async fn run_publisher(
    spec: PublisherSpec,
    mut dialer: Dialer,
    finishing: Arc<AtomicBool>,
    limit: u64,
) -> u64 {
    let connect = persistent_connect(spec.version, &spec.client_id);
    let mut outstanding: VecDeque<Outstanding> = VecDeque::new();
    let mut issued = 0;
    let mut established = false;
    loop {
        let Some(mut wire) = open_session(&mut dialer, &connect, &mut established).await else {
            continue;
        };
        let resent: Vec<Packet> = outstanding.iter().map(|o| spec.resend(o)).collect();
        if !wire.try_send(&resent).await {
            continue;
        }
        loop {
            let mut fresh = Vec::new();
            while outstanding.len() < WINDOW && issued < limit && !finishing.load(Ordering::Acquire)
            {
                issued += 1;
                let message = Outstanding {
                    sequence: issued,
                    packet_id: packet_id_for(issued),
                    released: false,
                };
                fresh.push(spec.publish(&message, false));
                outstanding.push_back(message);
            }
            if outstanding.is_empty() {
                let goodbye = Packet::Disconnect(Disconnect::new(ReasonCode::Success));
                let _ = wire.try_send(&[goodbye]).await;
                return issued;
            }
            if !wire.try_send(&fresh).await {
                break;
            }
            let Some(packet) = wire.read_packet().await else {
                break;
            };
            if let Some(release) = spec.on_ack(packet, &mut outstanding) {
                if !wire.try_send(&[release]).await {
                    break;
                }
            }
        }
    }
}

/// One subscriber: its session and Receive Maximum.
struct SubscriberSpec {
    connect: Connect,
}

impl SubscriberSpec {
    fn online() -> SubscriberSpec {
        let (id, version) = ONLINE_SUBSCRIBER;
        let mut connect = persistent_connect(version, id);
        connect.properties.receive_maximum = Some(SLOW_RECEIVE_MAXIMUM);
        SubscriberSpec { connect }
    }

    fn offline() -> SubscriberSpec {
        let (id, version) = OFFLINE_SUBSCRIBER;
        SubscriberSpec {
            connect: persistent_connect(version, id),
        }
    }
}

/// One message as a subscriber received it.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    sequence: u64,
    packet_id: u16,
    dup: bool,
}

/// What a subscriber received: per topic, the deliveries in arrival order.
#[derive(Debug, Default)]
struct Received {
    client_id: String,
    by_topic: HashMap<String, Vec<Delivery>>,
    distinct: HashMap<String, HashSet<u64>>,
    /// Inbound QoS 2 packet identifiers whose PUBREL has not arrived: a PUBLISH with one of
    /// these is a repeat, acknowledged but not passed on.
    awaiting_release: HashSet<u16>,
}

impl Received {
    /// Whether every message of every publisher (`totals`: topic → messages published) has
    /// arrived at least once.
    fn complete(&self, totals: &Option<HashMap<String, u64>>) -> bool {
        let Some(totals) = totals else {
            return false;
        };
        totals.iter().all(|(topic, total)| {
            let distinct = self.distinct.get(topic).map_or(0, |seen| {
                seen.iter().filter(|n| (1..=*total).contains(*n)).count()
            });
            distinct as u64 == *total
        })
    }

    /// Handles a packet from the broker; returns the answer to send.
    fn handle(&mut self, packet: Packet) -> Packet {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish),
            Packet::PubRel(rel) => {
                self.awaiting_release.remove(&rel.packet_id);
                Packet::PubComp(PubResponse::success(rel.packet_id))
            }
            other => panic!("{}: unexpected {other:?}", self.client_id),
        }
    }

    fn on_publish(&mut self, publish: Publish) -> Packet {
        let packet_id = publish.packet_id.unwrap_or_else(|| {
            panic!("{}: PUBLISH without packet id: {publish:?}", self.client_id)
        });
        let sequence: u64 = std::str::from_utf8(&publish.payload)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("{}: unexpected payload in {publish:?}", self.client_id));
        match publish.qos {
            QoS::AtLeastOnce => {
                self.record(&publish, sequence);
                Packet::PubAck(PubResponse::success(packet_id))
            }
            QoS::ExactlyOnce => {
                if self.awaiting_release.contains(&packet_id) {
                    assert!(
                        publish.dup,
                        "{}: a repeat of QoS 2 packet id {packet_id} without DUP \
                         [MQTT-3.3.1-1]: {publish:?}",
                        self.client_id
                    );
                } else {
                    self.awaiting_release.insert(packet_id);
                    self.record(&publish, sequence);
                }
                Packet::PubRec(PubResponse::success(packet_id))
            }
            QoS::AtMostOnce => panic!("{}: QoS 0 delivery {publish:?}", self.client_id),
        }
    }

    fn record(&mut self, publish: &Publish, sequence: u64) {
        self.distinct
            .entry(publish.topic.clone())
            .or_default()
            .insert(sequence);
        self.by_topic
            .entry(publish.topic.clone())
            .or_default()
            .push(Delivery {
                sequence,
                packet_id: publish.packet_id.unwrap_or(0),
                dup: publish.dup,
            });
    }
}

/// Receives and acknowledges messages across kills until every published message has arrived
/// (once `totals` is known); returns them per topic in arrival order.
async fn run_subscriber(
    spec: SubscriberSpec,
    mut dialer: Dialer,
    mut totals: watch::Receiver<Option<HashMap<String, u64>>>,
) -> HashMap<String, Vec<Delivery>> {
    let mut received = Received {
        client_id: spec.connect.client_id.clone(),
        ..Received::default()
    };
    // The session was created before the load.
    let mut established = true;
    loop {
        let Some(mut wire) = open_session(&mut dialer, &spec.connect, &mut established).await
        else {
            continue;
        };
        loop {
            if received.complete(&totals.borrow()) {
                let goodbye = Packet::Disconnect(Disconnect::new(ReasonCode::Success));
                let _ = wire.try_send(&[goodbye]).await;
                return received.by_topic;
            }
            let known = totals.borrow().is_some();
            tokio::select! {
                packet = wire.read_packet() => {
                    let Some(packet) = packet else { break };
                    let answer = received.handle(packet);
                    if !wire.try_send(&[answer]).await {
                        break;
                    }
                }
                changed = totals.changed(), if !known => {
                    changed.expect("the test still runs");
                }
            }
        }
    }
}
