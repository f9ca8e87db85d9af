//! Seeded sequences of session operations against the real binary, checked step by step
//! against a model of what MQTT lets a client see (design.md promises 1 and 2). Three client
//! identifiers (two v5, one 3.1.1) go through random connects (Clean Start / Clean Session 0
//! and 1, sessions that outlive their connection and sessions that do not), takeovers,
//! subscriptions, normal and abrupt disconnects (v5: with the DISCONNECT's Session Expiry
//! override), QoS 1 messages published to them, graceful restarts and `kill -9`, in any order
//! and many times over, so that every path the same client identifier can take is followed by
//! every other.
//!
//! At each step the test checks what the client sees: the CONNACK's Session Present
//! ([MQTT-3.2.2-2], [MQTT-3.2.2-3]; 0 after Clean Start [MQTT-3.2.2-1]), every message routed
//! to a session delivered once and in publish order ([MQTT-4.6.0-5] / [MQTT-4.6.0-6]), none
//! delivered to a session that did not exist or did not subscribe, a message the client left
//! unacknowledged sent again when its session resumes, with DUP 1 ([MQTT-4.4.0-1],
//! [MQTT-3.3.1-1]), and no repeat except of a message received before a `kill -9` (its PUBACK
//! may not have been committed).
//!
//! What a `kill -9` may take back follows Cairn's durability rule: every CONNACK, SUBACK and
//! PUBACK that waits for a commit (the SUBACK of a stored session, the PUBACK of a message
//! queued for one, the CONNACK that discards a stored session) proves that everything done
//! before it is on disk, as commits happen in order. A change made since the last such proof
//! (a new session whose CONNACK did not wait, a session ended by DISCONNECT) may or may not
//! survive the kill: the model keeps both outcomes until the client's next CONNACK tells which.
//!
//! It found two faults, each now with a test of its own in `expiry.rs`: a stored session
//! resumed with a Session Expiry Interval of 0 came back after a restart, and a session made
//! to outlive its connection by a takeover came back without its subscriptions and messages.
//!
//! Every step is printed (the test harness shows it when the test fails);
//! `CAIRN_SEQUENCE_SEED` runs one more seed (e.g. one a failure printed).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;

use cairn::codec::{Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode};

use crate::common::clients::{connect_ok, granted, persistent_connect, text, with_expiry};
use crate::common::prng::SplitMix64;
use crate::common::serve::ServeProcess;
use crate::common::{connect_packet, RawClient};
use crate::process;
use crate::support::{message, publish};

/// Seeds every run takes.
const SEEDS: [u64; 3] = [0x5e55_1014, 7, 2024];
/// The variable naming one more seed.
const SEED_VARIABLE: &str = "CAIRN_SEQUENCE_SEED";
/// Steps per seed.
const STEPS: usize = 120;
/// The clients of a sequence and their protocol versions.
const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V5,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];

/// A session as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    /// It outlives its connection: 3.1.1 Clean Session 0, or a v5 Session Expiry Interval
    /// above 0 (long enough never to pass during a test). Only these are stored.
    stored: bool,
    subscribed: bool,
    /// Messages routed to it that its client has not received yet, in publish order.
    pending: VecDeque<u32>,
}

impl Session {
    fn new(stored: bool) -> Session {
        Session {
            stored,
            subscribed: false,
            pending: VecDeque::new(),
        }
    }

    /// The same session as far as a crash can tell (messages received meanwhile come back
    /// as allowed repeats).
    fn same_shape(&self, other: &Session) -> bool {
        (self.stored, self.subscribed) == (other.stored, other.subscribed)
    }
}

/// One client identifier: its session in the broker as the model knows it, its connection.
struct Client {
    version: ProtocolVersion,
    id: String,
    topic: String,
    session: Option<Session>,
    /// The session as of the last commit proof (what a `kill -9` keeps for sure).
    proven: Option<Session>,
    /// After a `kill -9` that may have taken a change back: the other possible session.
    either: Option<Option<Session>>,
    connection: Option<RawClient>,
    /// Every message the client has received.
    received: HashSet<u32>,
    /// Received messages it did not acknowledge, in the order they came: inflight in its
    /// session, to be sent again when it resumes.
    unacknowledged: Vec<u32>,
    /// A `kill -9` came while some were unacknowledged: their inflight records may not have
    /// been committed, so they may come back from the queue, without DUP.
    crashed_while_unacknowledged: bool,
    /// Received messages the broker may send again (their PUBACK may have been lost to a kill).
    repeatable: HashSet<u32>,
}

impl Client {
    /// Whether the model knows the session for sure.
    fn certain(&self) -> bool {
        self.either.is_none()
    }

    /// Whether every change of the session is proven durable.
    fn proven(&self) -> bool {
        match (&self.session, &self.proven) {
            (None, None) => true,
            (Some(session), Some(proven)) => session.same_shape(proven),
            _ => false,
        }
    }

    /// Receives what is due, in order: first the messages it left unacknowledged on an
    /// earlier connection of the session (`redelivered`, which must come again, with DUP 1
    /// unless a kill may have lost their inflight record [MQTT-4.4.0-1] [MQTT-3.3.1-1]), then
    /// the session's pending messages. Allowed repeats are acknowledged and passed over. Each
    /// message it takes is left unacknowledged one time in four (it stays inflight); then the
    /// ping barrier: nothing else is waiting and every acknowledgement has been handled.
    async fn receive_due(&mut self, redelivered: Vec<u32>, random: &mut SplitMix64, context: &str) {
        let pending = self
            .session
            .as_ref()
            .map(|session| session.pending.iter().copied().collect::<Vec<_>>())
            .unwrap_or_default();
        let due = redelivered
            .iter()
            .map(|&number| (number, true))
            .chain(pending.iter().map(|&number| (number, false)));
        for (wanted, redelivery) in due {
            let connection = self.connection.as_mut().expect("online");
            let publish = loop {
                let publish = connection.expect_publish().await;
                let number = number_of(&publish);
                if number == wanted {
                    break publish;
                }
                assert!(
                    self.repeatable.contains(&number),
                    "{context}: {} received message {number} where {wanted} was due (order \
                     [MQTT-4.6.0-6], or a repeat with no crash since)",
                    self.id
                );
                connection.acknowledge(&publish).await;
            };
            if redelivery && !self.crashed_while_unacknowledged {
                assert!(
                    publish.dup,
                    "{context}: {} was sent message {wanted} again without DUP [MQTT-3.3.1-1]",
                    self.id
                );
            }
            if !redelivery {
                self.received.insert(wanted);
                if let Some(session) = &mut self.session {
                    session.pending.pop_front();
                }
            }
            if random.below(4) == 0 {
                self.unacknowledged.push(wanted);
            } else {
                connection.acknowledge(&publish).await;
            }
        }
        self.crashed_while_unacknowledged = false;
        self.settle(context).await;
    }

    /// PINGREQ, and only allowed repeats before the PINGRESP.
    async fn settle(&mut self, context: &str) {
        let connection = self.connection.as_mut().expect("online");
        for publish in connection.publishes_before_pingresp().await {
            connection.acknowledge(&publish).await;
            let number = number_of(&publish);
            assert!(
                self.received.contains(&number) && self.repeatable.contains(&number),
                "{context}: {} received message {number}, which was not due",
                self.id
            );
        }
    }
}

/// The message number a payload carries.
fn number_of(publish: &Publish) -> u32 {
    text(publish)
        .strip_prefix('m')
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("not a sequence message: {publish:?}"))
}

/// One sequence's broker, clients and counters.
struct Sequence {
    seed: u64,
    random: SplitMix64,
    cairn: Option<ServeProcess>,
    clients: Vec<Client>,
    next_message: u32,
    barriers: u32,
    /// The step under way, for failure messages.
    step: String,
    /// Steps taken, by kind, and kills whose outcome the model could not know in advance.
    taken: std::collections::BTreeMap<&'static str, usize>,
    uncertain_kills: usize,
}

impl Sequence {
    fn addr(&self) -> SocketAddr {
        self.cairn.as_ref().expect("running").addr
    }

    /// Everything done so far is on disk: a commit was awaited.
    fn proof(&mut self) {
        for client in &mut self.clients {
            if client.certain() {
                client.proven = client.session.clone();
            }
        }
    }

    /// A proof on demand: a persistent helper session subscribes to a new filter; its SUBACK
    /// waits for a commit after everything before it.
    async fn barrier(&mut self) {
        self.barriers += 1;
        let connect = with_expiry(persistent_connect(ProtocolVersion::V5, "seq-barrier"), 300);
        let (mut helper, _) = connect_ok(self.addr(), connect).await;
        let filter = format!("seq/barrier/{}", self.barriers);
        let suback = helper.subscribe(1, &filter, QoS::AtLeastOnce).await;
        assert_eq!(
            suback.reasons,
            vec![granted(QoS::AtLeastOnce)],
            "{}",
            self.step
        );
        helper.go_offline().await;
        self.proof();
    }

    async fn connect(&mut self, index: usize, takeover: bool) {
        if !self.clients[index].proven() {
            // Two unproven changes in a row would leave a kill two sessions to choose from
            // that the Session Present flag alone cannot tell apart.
            self.barrier().await;
        }
        let clean = self.random.below(4) == 0;
        let stored = self.random.below(3) != 0;
        let addr = self.addr();
        let step = self.step.clone();
        let client = &mut self.clients[index];
        let mut connect = match client.version {
            ProtocolVersion::V311 => {
                let mut connect = connect_packet(ProtocolVersion::V311, &client.id);
                connect.clean_start = clean;
                connect
            }
            ProtocolVersion::V5 => {
                let mut connect = connect_packet(ProtocolVersion::V5, &client.id);
                connect.clean_start = clean;
                with_expiry(connect, if stored { 300 } else { 0 })
            }
        };
        // 3.1.1: Clean Session 0 is what makes a session outlive its connection.
        let stored = match client.version {
            ProtocolVersion::V311 => !clean,
            ProtocolVersion::V5 => stored,
        };
        connect.keep_alive = 0;
        let (connection, connack) = connect_ok(addr, connect).await;
        if takeover {
            let mut old = client.connection.take().expect("online");
            let seen = old.expect_closed().await;
            let expected = match client.version {
                ProtocolVersion::V5 => vec![Packet::Disconnect(Disconnect::new(
                    ReasonCode::SessionTakenOver,
                ))],
                ProtocolVersion::V311 => Vec::new(),
            };
            assert_eq!(
                seen, expected,
                "{step}: the old connection of a takeover [MQTT-3.1.4-3]"
            );
        }
        let present = connack.session_present;
        eprintln!(
            "  clean {clean} stored {stored}: present {present}; model {:?} or {:?}",
            client.session, client.either
        );
        let mut proof = false;
        let mut redelivered = std::mem::take(&mut client.unacknowledged);
        if clean {
            assert!(
                !present,
                "{step}: Session Present after Clean Start [MQTT-3.2.2-1]"
            );
            // A stored session discarded: the CONNACK waited for its deletion.
            proof = client.certain() && client.session.as_ref().is_some_and(|s| s.stored);
            client.session = Some(Session::new(stored));
            redelivered.clear();
        } else {
            let candidates: Vec<Option<Session>> = match client.either.take() {
                Some(other) => vec![client.session.take(), other],
                None => vec![client.session.take()],
            };
            let (chosen, found) = candidates
                .into_iter()
                .enumerate()
                .find(|(_, candidate)| candidate.is_some() == present)
                .unwrap_or_else(|| {
                    panic!(
                        "{step}: Session Present {present} for {} [MQTT-3.2.2-2/3]",
                        client.id
                    )
                });
            if chosen > 0 {
                // The session as of the last proof: what it received since may come again.
                client.repeatable.extend(redelivered.drain(..));
            }
            let mut session = found.unwrap_or_else(|| {
                redelivered.clear();
                Session::new(stored)
            });
            session.stored = stored;
            session
                .pending
                .retain(|number| !client.received.contains(number));
            client.session = Some(session);
        }
        client.either = None;
        client.connection = Some(connection);
        client
            .receive_due(redelivered, &mut self.random, &step)
            .await;
        if proof {
            self.proof();
        }
    }

    async fn subscribe(&mut self, index: usize) {
        let step = self.step.clone();
        let client = &mut self.clients[index];
        let connection = client.connection.as_mut().expect("online");
        let suback = connection
            .subscribe(7, &client.topic, QoS::AtLeastOnce)
            .await;
        assert_eq!(suback.reasons, vec![granted(QoS::AtLeastOnce)], "{step}");
        let session = client.session.as_mut().expect("online");
        let stored = session.stored;
        session.subscribed = true;
        if stored {
            self.proof();
        }
    }

    async fn publish_to(&mut self, index: usize) {
        let number = self.next_message;
        self.next_message += 1;
        let addr = self.addr();
        let step = self.step.clone();
        let mut publisher = RawClient::connect(addr, ProtocolVersion::V5, "seq-publisher").await;
        let topic = self.clients[index].topic.clone();
        publish(
            &mut publisher,
            message(&topic, QoS::AtLeastOnce, 1, &format!("m{number}")),
        )
        .await;
        publisher.go_offline().await;
        let client = &mut self.clients[index];
        let routed = client.session.as_mut().filter(|session| session.subscribed);
        let stored = routed.as_ref().is_some_and(|session| session.stored);
        if let Some(session) = routed {
            session.pending.push_back(number);
        }
        if client.connection.is_some() {
            client
                .receive_due(Vec::new(), &mut self.random, &step)
                .await;
        }
        if stored {
            // Its PUBACK waited for the message's place in the stored queue.
            self.proof();
        }
    }

    async fn disconnect(&mut self, index: usize) {
        let end_session = self.random.below(3) == 0;
        let client = &mut self.clients[index];
        let mut connection = client.connection.take().expect("online");
        let session = client.session.as_mut().expect("online");
        let mut disconnect = Disconnect::new(ReasonCode::Success);
        if client.version == ProtocolVersion::V5 && session.stored && end_session {
            // [MQTT-3.14.2-2] allows only a change from a non-zero interval.
            disconnect.properties.session_expiry_interval = Some(0);
            session.stored = false;
        }
        eprintln!("  {disconnect:?}");
        connection.send(&Packet::Disconnect(disconnect)).await;
        let after = connection.expect_closed().await;
        assert!(
            after.is_empty(),
            "{}: after DISCONNECT: {after:?}",
            self.step
        );
        if !session.stored {
            client.session = None;
            client.unacknowledged.clear();
        }
    }

    /// Closes the socket without DISCONNECT; only for stored sessions, which stay whenever
    /// the broker notices.
    fn drop_connection(&mut self, index: usize) {
        self.clients[index].connection = None;
    }

    async fn restart(&mut self, data_dir: &Path, kill: bool) {
        let cairn = self.cairn.take().expect("running");
        if kill {
            cairn.kill().await;
        } else {
            cairn.terminate().await;
        }
        for client in &mut self.clients {
            client.connection = None;
            let kept = client.session.take().filter(|session| session.stored);
            if kill {
                let proven = client.proven.take().filter(|session| session.stored);
                let same = match (&kept, &proven) {
                    (None, None) => true,
                    (Some(kept), Some(proven)) => kept.same_shape(proven),
                    _ => false,
                };
                if client.certain() && !same {
                    client.either = Some(proven.clone());
                    self.uncertain_kills += 1;
                }
                client.proven = proven;
                client.repeatable.extend(client.received.iter().copied());
                client.crashed_while_unacknowledged |= !client.unacknowledged.is_empty();
            } else if client.certain() {
                client.proven = kept.clone();
            }
            client.session = kept;
        }
        self.cairn = Some(process::start(data_dir).await);
    }

    /// One random step that the clients' states allow.
    async fn step(&mut self, data_dir: &Path, number: usize) {
        let index = self.random.below(self.clients.len());
        let online = self.clients[index].connection.is_some();
        let choice = self.random.below(100);
        let what = match choice {
            0..=5 => "kill -9",
            6..=9 => "restart",
            10..=13 => "barrier",
            14..=45
                if online
                    && !self.clients[index]
                        .session
                        .as_ref()
                        .is_some_and(|s| s.subscribed) =>
            {
                "subscribe"
            }
            _ if !online => match choice {
                14..=59 => "connect",
                _ if self.clients[index].certain() => "publish",
                _ => "connect",
            },
            14..=33 => "subscribe",
            34..=59 => "publish",
            60..=73 => "disconnect",
            74..=85 => "takeover",
            _ if self.clients[index]
                .session
                .as_ref()
                .is_some_and(|s| s.stored) =>
            {
                "drop"
            }
            _ => "disconnect",
        };
        *self.taken.entry(what).or_default() += 1;
        self.step = format!(
            "seed {} step {number}: {what} {}",
            self.seed, self.clients[index].id
        );
        eprintln!("{}", self.step);
        match what {
            "kill -9" => self.restart(data_dir, true).await,
            "restart" => self.restart(data_dir, false).await,
            "barrier" => self.barrier().await,
            "connect" => self.connect(index, false).await,
            "takeover" => self.connect(index, true).await,
            "subscribe" => self.subscribe(index).await,
            "publish" => self.publish_to(index).await,
            "disconnect" => self.disconnect(index).await,
            "drop" => self.drop_connection(index),
            _ => unreachable!("{what}"),
        }
    }
}

async fn run(seed: u64) {
    let data_dir = tempfile::tempdir().expect("a data directory");
    let clients = VERSIONS
        .iter()
        .enumerate()
        .map(|(index, &version)| Client {
            version,
            id: format!("seq-{index}"),
            topic: format!("seq/{index}"),
            session: None,
            proven: None,
            either: None,
            connection: None,
            received: HashSet::new(),
            unacknowledged: Vec::new(),
            crashed_while_unacknowledged: false,
            repeatable: HashSet::new(),
        })
        .collect();
    let mut sequence = Sequence {
        seed,
        random: SplitMix64::new(seed),
        cairn: Some(process::start(data_dir.path()).await),
        clients,
        next_message: 0,
        barriers: 0,
        step: String::new(),
        taken: Default::default(),
        uncertain_kills: 0,
    };
    for number in 0..STEPS {
        sequence.step(data_dir.path(), number).await;
    }
    // In the end every client comes back and receives what is due.
    for index in 0..sequence.clients.len() {
        if sequence.clients[index].connection.is_none() {
            sequence.step = format!("seed {seed} end: connect {}", sequence.clients[index].id);
            sequence.connect(index, false).await;
        }
    }
    if let Some(cairn) = sequence.cairn.take() {
        cairn.terminate().await;
    }
    eprintln!(
        "seed {seed}: {:?}, {} messages published, {} received, {} sessions a kill could have taken back",
        sequence.taken,
        sequence.next_message,
        sequence.clients.iter().map(|client| client.received.len()).sum::<usize>(),
        sequence.uncertain_kills
    );
}

/// Promises 1 and 2 over seeded random sequences (see the module's comment): Session Present,
/// delivery once and in order, and what a `kill -9` may take back, at every step.
#[tokio::test]
async fn seeded_sequences_of_connects_takeovers_restarts_and_kills_keep_sessions_as_mqtt_says() {
    let mut seeds = SEEDS.to_vec();
    if let Ok(value) = std::env::var(SEED_VARIABLE) {
        seeds.push(
            value
                .parse()
                .unwrap_or_else(|_| panic!("{SEED_VARIABLE}={value:?} is not a number")),
        );
    }
    for seed in seeds {
        run(seed).await;
    }
}
