//! Seeded sequences of session operations against the real binary, checked step by step
//! against a model of what MQTT lets a client see (design.md promises 1 and 2). Three client
//! identifiers (two v5, one 3.1.1) go through random connects (Clean Start / Clean Session 0
//! and 1, sessions that outlive their connection and sessions that do not), takeovers,
//! subscriptions, normal and abrupt disconnects (v5: with the DISCONNECT's Session Expiry
//! override), QoS 1 and QoS 2 messages published to them (one flow in three left open by
//! the receiving client: no PUBACK, PUBREC or PUBCOMP), graceful restarts and `kill -9`, in
//! any order and many times over, so that every path the same client identifier can take is
//! followed by every other. One connect in three carries a Will (QoS 1, no delay) that an
//! observer's stored session collects: at the end every Will whose connection ended without a
//! normal DISCONNECT (closed by the client, taken over, ended by a restart or a kill) must have
//! reached it [MQTT-3.1.2-8] [MQTT-3.1.3-9], and none whose connection sent one
//! [MQTT-3.1.2-10].
//!
//! At each step the test checks what the client sees: the CONNACK's Session Present
//! ([MQTT-3.2.2-2], [MQTT-3.2.2-3]; 0 after Clean Start [MQTT-3.2.2-1]), every message routed
//! to a session delivered once and in publish order ([MQTT-4.6.0-5] / [MQTT-4.6.0-6]), none
//! delivered to a session that did not exist or did not subscribe, every flow the client left
//! open taken up again when its session resumes (the PUBLISH with DUP 1, or the PUBREL:
//! [MQTT-4.4.0-1], [MQTT-3.3.1-1]), no QoS 2 message delivered twice, and no repeat of a QoS 1
//! message except of one received before a `kill -9` (its PUBACK may not have been
//! committed).
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;

use cairn::codec::{Disconnect, Packet, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode};

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
const STEPS: usize = 150;
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

/// What a client still owes for a message it received: the broker sends it again when the
/// session resumes, in the order the flows began [MQTT-4.4.0-1].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// The PUBLISH was not acknowledged (no PUBACK; for QoS 2 no PUBREC): it comes again
    /// with DUP 1 [MQTT-3.3.1-1].
    Publish { number: u32, qos: QoS },
    /// QoS 2: PUBREL received, PUBCOMP not sent: the PUBREL comes again.
    Release { number: u32, packet_id: u16 },
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
    /// Flows it left open, oldest first: sent again when its session resumes.
    owed: Vec<Owed>,
    /// A `kill -9` came since its last connect: what it acknowledged may come again (a QoS 1
    /// PUBLISH, a PUBREL), as may an unacknowledged QoS 1 message without DUP (its inflight
    /// record may not have been committed, so it comes from the queue).
    crashed: bool,
    /// Messages the broker may send again.
    repeats: Repeats,
    /// Open flows the broker took up again on a later connection.
    resumed_flows: usize,
    /// The Will of its current connection (Will Delay 0), by number.
    will: Option<u32>,
}

/// The Wills the clients' connections carried (QoS 1, Will Delay 0, each with its own number),
/// and what became of them.
#[derive(Default)]
struct Wills {
    next: u32,
    /// Published for sure: the connection ended without a normal DISCONNECT (closed by the
    /// client, taken over, or ended by a restart or a kill) [MQTT-3.1.2-8] [MQTT-3.1.3-9].
    published: Vec<u32>,
    /// Discarded: the connection ended with a normal DISCONNECT [MQTT-3.1.2-10].
    discarded: HashSet<u32>,
}

/// The topic the Wills of client `index` go to, and the observer's filter.
fn will_topic(index: usize) -> String {
    format!("seq/will/{index}")
}
const WILL_FILTER: &str = "seq/will/#";
const OBSERVER: &str = "seq-observer";

/// Messages a client received that the broker may send it again.
#[derive(Default)]
struct Repeats {
    /// QoS 1 messages whose PUBACK a kill may have lost.
    acknowledged: HashSet<u32>,
    /// Messages of any QoS received by a session that a kill brought back as of an earlier
    /// proof (its flows may start over).
    resurrected: HashSet<u32>,
}

impl Repeats {
    /// Whether `publish`, not due, is a repeat the broker may send.
    fn allow(&self, publish: &Publish) -> bool {
        let number = number_of(publish);
        (publish.qos == QoS::AtLeastOnce && self.acknowledged.contains(&number))
            || self.resurrected.contains(&number)
    }
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

    /// Receives what is due: the flows it left open on an earlier connection of the session
    /// (`again`), PUBLISHes in the order first sent (the order [MQTT-4.6.0-1] asks of a
    /// client) and PUBRELs in any order (a server resends its window in PUBLISH order, which
    /// after a restart need not be the order of the PUBRECs), then the session's pending
    /// messages in publish order ([MQTT-4.6.0-6]), each exactly once (QoS 2: a PUBLISH under a packet identifier
    /// awaiting its PUBREL is the same message [MQTT-4.3.3-10]). Allowed repeats are answered
    /// and passed over. One flow in three is left open (no PUBACK, PUBREC or PUBCOMP); it
    /// waits for every PUBREL of the PUBRECs it sent, then for the ping barrier: nothing else
    /// is waiting.
    async fn receive_due(&mut self, again: Vec<Owed>, random: &mut SplitMix64, context: &str) {
        let mut publishes_again: VecDeque<(u32, QoS)> = VecDeque::new();
        let mut releases_again: Vec<(u32, u16)> = Vec::new();
        for owed in again {
            match owed {
                Owed::Publish { number, qos } => publishes_again.push_back((number, qos)),
                Owed::Release { number, packet_id } => releases_again.push((number, packet_id)),
            }
        }
        let mut pending: VecDeque<u32> = self
            .session
            .as_ref()
            .map(|session| session.pending.iter().copied().collect())
            .unwrap_or_default();
        // PUBREC sent on this connection, PUBREL not received yet: packet id -> message.
        let mut releasing: HashMap<u16, u32> = HashMap::new();
        while !publishes_again.is_empty()
            || !releases_again.is_empty()
            || !pending.is_empty()
            || !releasing.is_empty()
        {
            let connection = self.connection.as_mut().expect("online");
            let packet = connection.recv().await;
            eprintln!("    got {}", describe(&packet));
            match packet {
                Packet::Publish(publish) => {
                    let number = number_of(&publish);
                    let packet_id = publish.packet_id.expect("QoS 1 or 2");
                    if releasing.get(&packet_id) == Some(&number) {
                        // Sent again before our PUBREC arrived: the same message.
                        connection
                            .send(&Packet::PubRec(PubResponse::success(packet_id)))
                            .await;
                        continue;
                    }
                    if publishes_again.front().map(|(owed, _)| *owed) == Some(number) {
                        let (_, qos) = publishes_again.pop_front().expect("front");
                        self.resumed_flows += 1;
                        assert_eq!(publish.qos, qos, "{context}: QoS of message {number}");
                        if qos == QoS::ExactlyOnce || !self.crashed {
                            assert!(
                                publish.dup,
                                "{context}: {} was sent message {number} again without DUP \
                                 [MQTT-3.3.1-1]",
                                self.id
                            );
                        }
                    } else if publishes_again.is_empty() && pending.front() == Some(&number) {
                        pending.pop_front();
                        assert!(
                            self.received.insert(number),
                            "{context}: {} received message {number} twice",
                            self.id
                        );
                        if let Some(session) = &mut self.session {
                            session.pending.pop_front();
                        }
                    } else {
                        assert!(
                            self.repeats.allow(&publish),
                            "{context}: {} received message {number} (QoS {:?}) where {:?} \
                             (again) or {:?} (new) was due (order [MQTT-4.6.0-1] \
                             [MQTT-4.6.0-6], or a repeat with no crash since)",
                            self.id,
                            publish.qos,
                            publishes_again.front(),
                            pending.front()
                        );
                        if publish.qos == QoS::ExactlyOnce {
                            connection
                                .send(&Packet::PubRec(PubResponse::success(packet_id)))
                                .await;
                            releasing.insert(packet_id, number);
                        } else {
                            connection.acknowledge(&publish).await;
                        }
                        continue;
                    }
                    if random.below(3) == 0 {
                        self.owed.push(Owed::Publish {
                            number,
                            qos: publish.qos,
                        });
                    } else if publish.qos == QoS::AtLeastOnce {
                        connection
                            .send(&Packet::PubAck(PubResponse::success(packet_id)))
                            .await;
                    } else {
                        connection
                            .send(&Packet::PubRec(PubResponse::success(packet_id)))
                            .await;
                        releasing.insert(packet_id, number);
                    }
                }
                Packet::PubRel(release) => {
                    let packet_id = release.packet_id;
                    let number = if let Some(number) = releasing.remove(&packet_id) {
                        number
                    } else if let Some(index) = releases_again
                        .iter()
                        .position(|(_, owed)| *owed == packet_id)
                    {
                        self.resumed_flows += 1;
                        releases_again.remove(index).0
                    } else {
                        assert!(
                            self.crashed,
                            "{context}: {} was sent PUBREL {packet_id}, which it completed, \
                             with no crash since (open: {releases_again:?})",
                            self.id
                        );
                        connection
                            .send(&Packet::PubComp(PubResponse::success(packet_id)))
                            .await;
                        continue;
                    };
                    if random.below(3) == 0 {
                        self.owed.push(Owed::Release { number, packet_id });
                    } else {
                        connection
                            .send(&Packet::PubComp(PubResponse::success(packet_id)))
                            .await;
                    }
                }
                other => panic!("{context}: {} was sent {other:?}", self.id),
            }
        }
        self.settle(context).await;
        self.crashed = false;
    }

    /// The ping barrier: PINGREQ, and before the PINGRESP only allowed repeats (answered in
    /// full) and, after a kill, PUBRELs of flows it completed (answered with PUBCOMP).
    async fn settle(&mut self, context: &str) {
        let connection = self.connection.as_mut().expect("online");
        connection.send(&Packet::PingReq).await;
        loop {
            match connection.recv().await {
                Packet::PingResp => return,
                Packet::Publish(publish) => {
                    assert!(
                        self.repeats.allow(&publish),
                        "{context}: {} received message {}, which was not due",
                        self.id,
                        number_of(&publish)
                    );
                    connection.acknowledge(&publish).await;
                }
                Packet::PubRel(release) if self.crashed => {
                    connection
                        .send(&Packet::PubComp(PubResponse::success(release.packet_id)))
                        .await;
                }
                other => panic!("{context}: {} was sent {other:?} before PINGRESP", self.id),
            }
        }
    }
}

/// A packet as the step trace shows it.
fn describe(packet: &Packet) -> String {
    match packet {
        Packet::Publish(publish) => format!(
            "PUBLISH {} QoS {:?} id {:?} dup {}",
            text(publish),
            publish.qos,
            publish.packet_id,
            publish.dup
        ),
        Packet::PubRel(release) => format!("PUBREL {}", release.packet_id),
        other => format!("{other:?}"),
    }
}

/// The number a Will's payload carries.
fn will_number(publish: &Publish) -> u32 {
    text(publish)
        .strip_prefix('w')
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("not a sequence Will: {publish:?}"))
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
    /// The Wills of the clients' connections.
    wills: Wills,
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

    /// The observer of the Wills: a stored session subscribed to every client's Will topic,
    /// offline until the end, so each Will waits in its queue.
    async fn observe_wills(&mut self) {
        let connect = with_expiry(persistent_connect(ProtocolVersion::V5, OBSERVER), 300);
        let (mut observer, _) = connect_ok(self.addr(), connect).await;
        let suback = observer.subscribe(1, WILL_FILTER, QoS::AtLeastOnce).await;
        assert_eq!(suback.reasons, vec![granted(QoS::AtLeastOnce)]);
        observer.go_offline().await;
        self.proof();
    }

    /// Every Will that must have been published reached the observer, none that was
    /// discarded did.
    async fn check_wills(&mut self) {
        let step = self.step.clone();
        let connect = with_expiry(persistent_connect(ProtocolVersion::V5, OBSERVER), 300);
        let (mut observer, connack) = connect_ok(self.addr(), connect).await;
        assert!(connack.session_present, "{step}: the observer's session");
        let mut missing: HashSet<u32> = self.wills.published.iter().copied().collect();
        let mut seen = HashSet::new();
        while !missing.is_empty() {
            let will = observer.expect_publish().await;
            observer.acknowledge(&will).await;
            let number = will_number(&will);
            missing.remove(&number);
            seen.insert(number);
        }
        for will in observer.publishes_before_pingresp().await {
            observer.acknowledge(&will).await;
            seen.insert(will_number(&will));
        }
        let wrong: Vec<&u32> = seen.intersection(&self.wills.discarded).collect();
        assert!(
            wrong.is_empty(),
            "{step}: Wills published after a normal DISCONNECT [MQTT-3.1.2-10]: {wrong:?}"
        );
        observer.go_offline().await;
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
        let will = (self.random.below(3) == 0).then(|| {
            self.wills.next += 1;
            self.wills.next
        });
        let client = &mut self.clients[index];
        if let Some(number) = will {
            connect.will = Some(crate::common::clients::will(
                &will_topic(index),
                &format!("w{number}"),
            ));
        }
        // A connection closed without DISCONNECT (a drop), or about to be taken over: its Will
        // goes out.
        self.wills.published.extend(client.will.take());
        client.will = will;
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
            // A session that ends with its connection ended with the one taken over
            // [MQTT-3.1.2-6]: nothing of it is resumed.
            if client
                .session
                .as_ref()
                .is_some_and(|session| !session.stored)
            {
                client.session = None;
            }
        }
        let present = connack.session_present;
        eprintln!(
            "  clean {clean} stored {stored}: present {present}; model {:?} or {:?}, owed {:?}",
            client.session, client.either, client.owed
        );
        let mut proof = false;
        let mut redelivered = std::mem::take(&mut client.owed);
        if clean {
            assert!(
                !present,
                "{step}: Session Present after Clean Start [MQTT-3.2.2-1]"
            );
            // A stored session discarded: the CONNACK waited for its deletion.
            proof = client.certain() && client.session.as_ref().is_some_and(|s| s.stored);
            client.session = Some(Session::new(stored));
            if !proof {
                // Nothing proves the new session stored, and whatever was proven before it
                // is gone: a kill may leave no session at all.
                client.proven = None;
            }
            redelivered.clear();
        } else {
            let resolving = client.either.is_some();
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
                // The session as of the last proof: what it received since may come again,
                // and what it owed may or may not.
                client
                    .repeats
                    .resurrected
                    .extend(client.received.iter().copied());
                redelivered.clear();
            }
            if resolving {
                // What the restart found is on disk; a session made anew is not.
                client.proven = found.clone();
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
            .subscribe(7, &client.topic, QoS::ExactlyOnce)
            .await;
        assert_eq!(suback.reasons, vec![granted(QoS::ExactlyOnce)], "{step}");
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
        let qos = *self.random.pick(&[QoS::AtLeastOnce, QoS::ExactlyOnce]);
        publish(
            &mut publisher,
            message(&topic, qos, 1, &format!("m{number}")),
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
        self.wills.discarded.extend(client.will.take());
        connection.send(&Packet::Disconnect(disconnect)).await;
        let after = connection.expect_closed().await;
        assert!(
            after.is_empty(),
            "{}: after DISCONNECT: {after:?}",
            self.step
        );
        if !session.stored {
            client.session = None;
            client.owed.clear();
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
            self.wills.published.extend(client.will.take());
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
                client
                    .repeats
                    .acknowledged
                    .extend(client.received.iter().copied());
                client.crashed = true;
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
            owed: Vec::new(),
            crashed: false,
            repeats: Repeats::default(),
            resumed_flows: 0,
            will: None,
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
        wills: Wills::default(),
    };
    sequence.observe_wills().await;
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
    sequence.step = format!("seed {seed} end: the Wills");
    sequence.check_wills().await;
    if let Some(cairn) = sequence.cairn.take() {
        cairn.terminate().await;
    }
    eprintln!(
        "seed {seed}: {:?}, {} messages published, {} received, {} open flows resumed, {} \
         sessions a kill could have taken back, Wills {} published and {} discarded",
        sequence.taken,
        sequence.next_message,
        sequence
            .clients
            .iter()
            .map(|client| client.received.len())
            .sum::<usize>(),
        sequence
            .clients
            .iter()
            .map(|client| client.resumed_flows)
            .sum::<usize>(),
        sequence.uncertain_kills,
        sequence.wills.published.len(),
        sequence.wills.discarded.len()
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
