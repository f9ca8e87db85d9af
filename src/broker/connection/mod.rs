//! One client connection, from the first byte to the close: waiting for CONNECT
//! ([`connect`]), then the connected loop that reads packets ([`inbound`]), writes queued
//! messages ([`outbound`]), releases acks after their commit ([`acks`](super::acks)) and enforces
//! keep-alive, until DISCONNECT, an error, a takeover or shutdown ends it.

mod connect;
mod inbound;
mod outbound;

use outbound::Step;

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::{Access, Who};
use crate::codec::{encoded_len, Disconnect, Packet, ProtocolVersion, ReasonCode};
use crate::config::Config;
use crate::store::{Loaded, StoreError};
use crate::transport::parking::{self, Resume};
use crate::transport::{
    Arrival, FrameSettings, Framed, Handshake, Parkable, ParkingSpot, Peer, ReadError,
};

use super::acks::AckQueue;
use super::aliases::OutboundAliases;
use super::queue::LoadRequest;
use super::state::ConnectionSignal;
use super::{settle, Broker};
use crate::model::Delivery;

/// Why a connected session's connection ended.
#[derive(Debug)]
enum Exit {
    /// The client sent DISCONNECT; its Will survives only with reason 0x04 [MQTT-3.14.4-3].
    Disconnected { keep_will: bool },
    /// The network closed or failed without DISCONNECT.
    Lost(Box<str>),
    /// The client broke the protocol: v5 clients get DISCONNECT with this reason first.
    Violation(ReasonCode, Box<str>),
    /// Another connection took the session over; DISCONNECT 0x8E was sent.
    TakenOver,
    /// A reload removed the user its password login named; DISCONNECT 0x87 was sent. Its
    /// Will is dropped with its rights.
    Revoked,
    /// The broker is shutting down; DISCONNECT 0x8B was sent.
    Shutdown,
    /// The store failed this connection where no ack can say so: a commit of the session's
    /// own record, of a PUBREL, of a 3.1.1 PUBACK or of inflight records, or a read of queued
    /// messages. v5 clients get DISCONNECT 0x80 first; the store logs the cause.
    StoreFailed(Box<str>),
}

impl Exit {
    /// How a connection the state asked to close with `reason` ends.
    fn closed_for(reason: ReasonCode) -> Exit {
        match reason {
            ReasonCode::NotAuthorized => Exit::Revoked,
            ReasonCode::ServerShuttingDown => Exit::Shutdown,
            // [MQTT-3.1.2-24] No packet within 1.5 × Keep Alive (the broker's sweep saw it).
            ReasonCode::KeepAliveTimeout => Exit::Violation(reason, "keep-alive timeout".into()),
            _ => Exit::TakenOver,
        }
    }
}

/// How long a connection the broker sends away (a takeover, the shutdown) waits for the
/// commits its acks wait for, beyond one commit window (`store.commit_window_ms`, up to a
/// second): the commit's fsync, unless the disk is failing.
const ACKS_BEFORE_GOODBYE: Duration = Duration::from_millis(500);

/// A park shorter than this was a pause in a conversation (a subscriber between messages, a
/// client between CONNACK and SUBSCRIBE), not idleness.
const BRIEF_PARK_MS: u64 = 100;

/// After this many brief parks in a row a connection stops parking for [`STAY_MS`]: a busy
/// client would otherwise pay a task's spawn for every packet or message.
const BRIEF_PARKS: u8 = 2;

/// How long a connection that parked briefly [`BRIEF_PARKS`] times in a row keeps its task
/// (at least: it parks at its next idle moment after that).
const STAY_MS: u64 = 1_000;

/// When a connection parks: at every idle moment, unless a run of brief parks shows a busy
/// client, which then keeps its task for [`STAY_MS`] (a park and its resume cost a task's
/// spawn). Times are milliseconds of the broker's clock modulo 2^32, four bytes of every
/// connection: differences are right for 49 days.
///
/// A resumed connection does not park again before something happened: its socket rejoins
/// the runtime's reactor with no readiness known, so a wake for bytes shows as a read only
/// after the reactor's next turn, and parking before it would ping-pong.
#[derive(Debug, Clone, Copy)]
struct ParkHistory {
    /// Brief parks in a row (see [`BRIEF_PARK_MS`]).
    brief: u8,
    /// Resumed, and no event has come since.
    awaiting_event: bool,
    /// When the connection last parked (while parked) or was resumed (while running).
    at_ms: u32,
}

impl ParkHistory {
    /// `broker`'s clock in milliseconds, modulo 2^32.
    fn clock(broker: &Broker) -> u32 {
        broker.clock_ms() as u32
    }

    /// The history of a connection that started running at `now`.
    fn started(now: u32) -> ParkHistory {
        ParkHistory {
            brief: 0,
            awaiting_event: false,
            at_ms: now,
        }
    }

    /// Whether to park at an idle moment at `now`.
    fn parks_now(&mut self, now: u32) -> bool {
        if self.awaiting_event {
            return false;
        }
        if self.brief < BRIEF_PARKS {
            return true;
        }
        if u64::from(now.wrapping_sub(self.at_ms)) < STAY_MS {
            return false;
        }
        self.brief = 0;
        true
    }

    /// The connection parked at `now`.
    fn parked(&mut self, now: u32) {
        self.at_ms = now;
    }

    /// The connection was resumed at `now`.
    fn resumed(&mut self, now: u32) {
        let brief = u64::from(now.wrapping_sub(self.at_ms)) < BRIEF_PARK_MS;
        self.brief = if brief {
            self.brief.saturating_add(1)
        } else {
            0
        };
        self.at_ms = now;
        self.awaiting_event = true;
    }

    /// An event came: the connection may park at its next idle moment.
    fn event_came(&mut self) {
        self.awaiting_event = false;
    }
}

/// Why the connected loop returned.
#[derive(Debug)]
enum Stop {
    /// The connection ended.
    Exit(Exit),
    /// Nothing is under way and nothing has arrived: the connection may park.
    Park,
}

/// What the connected loop woke up for.
enum Event {
    /// The state's signal: messages were queued, or the connection must close.
    Woken,
    /// The oldest held-back ack's commit completed.
    AckCommitted,
    /// Spilled queue entries were read back.
    Loaded(Result<Vec<(u64, Delivery)>, StoreError>),
    /// Bytes arrived (`true`), the client closed (`false`), or the read failed.
    Read(Result<bool, ReadError>),
}

/// The state of a connection after a successful CONNECT.
#[derive(Debug)]
struct Client {
    broker: Arc<Broker>,
    /// The configuration in force when the connection arrived: the limits announced in its
    /// CONNACK hold for its whole life, whatever a reload changes meanwhile.
    config: Arc<Config>,
    client_id: Arc<str>,
    connection_id: u64,
    version: ProtocolVersion,
    /// How the engine reaches it (wakes, a close), with its user name for the ACL.
    signal: Arc<ConnectionSignal>,
    /// Keep Alive in force, in seconds; zero turns the check off.
    keep_alive: u16,
    /// Whether the session outlives the connection (Session Expiry Interval > 0 at CONNECT).
    /// Only such sessions write their subscriptions and message flows to the store; a
    /// DISCONNECT may not raise an interval of 0 [MQTT-3.14.2-2].
    persistent: bool,
    /// The client is a bridge (Mosquitto's 3.1.1 bridge bit): its subscriptions act as No
    /// Local and Retain As Published.
    bridge: bool,
    /// Topic Aliases both ways (v5), from CONNECT if the client accepts aliases, else from
    /// the first alias it sets. Boxed: most clients use none, and empty tables would take
    /// about 100 bytes of every idle connection's task.
    aliases: Option<Box<TopicAliases>>,
    /// The client's Receive Maximum: most unacknowledged QoS 1/2 messages we may send it.
    client_receive_maximum: u16,
    /// The client's Maximum Packet Size.
    client_max_packet_size: u32,
    /// QoS 1 and 2 messages sent whose flow the client has not completed yet: while it owes
    /// acks the connection does not park (they are on their way).
    unacknowledged: u16,
    /// Its parks so far, which say whether it parks at its next idle moment.
    parks: ParkHistory,
    acks: AckQueue,
    /// Spilled queue entries being read back from the store (boxed: rarely there).
    load: Option<Box<PendingLoad>>,
    /// How many of the inflight window's resends after a reconnect wait for the client's
    /// Receive Maximum: each goes as an earlier flow completes.
    held_resends: u16,
    /// Where it parks while idle (plain TCP and TLS). Last: it holds the connection's place among
    /// the open ones, given back after everything else (the engine's handle first).
    parking: Option<ParkingSpot>,
}

impl Client {
    /// This client as the ACL sees it.
    fn who(&self) -> Who<'_> {
        Who {
            username: self.signal.username(),
            client_id: &self.client_id,
        }
    }

    /// Whether the ACL in force lets this client publish to (`Write`) or receive a message
    /// on (`Read`) `topic`.
    fn may(&self, topic: &str, access: Access) -> bool {
        self.broker.access().allows(self.who(), topic, access)
    }
}

/// The Topic Aliases of one connection (v5).
#[derive(Debug, Default)]
struct TopicAliases {
    /// Inbound Topic Alias → topic name.
    inbound: HashMap<u16, Arc<str>>,
    /// Aliases we assigned, within the client's Topic Alias Maximum (0: none).
    outbound: OutboundAliases,
}

/// A read of spilled queue entries under way.
#[derive(Debug)]
struct PendingLoad {
    request: LoadRequest,
    loaded: Loaded,
}

/// Waits for the pending load's entries (forever if there is none). Cancel-safe.
async fn load_done(
    load: &mut Option<Box<PendingLoad>>,
) -> Result<Vec<(u64, Delivery)>, StoreError> {
    match load {
        Some(pending) => pending.loaded.entries().await,
        None => std::future::pending().await,
    }
}

/// Serves one connection until it ends (or parks). Its handshake (its place among the
/// connections awaiting CONNECT, and the deadline for CONNECT) is given back once CONNECT is
/// answered.
///
/// Built from two futures one after the other, not as one `async fn`: the CONNECT phase is
/// boxed and freed once done, and the connected phase then takes its place. An `async fn`
/// awaiting both would keep room for the client and its frame beside the connected phase's
/// own (rustc does not reuse the room of a local moved away), about twice an idle task.
pub fn serve<S>(broker: Arc<Broker>, arrival: Box<Arrival<S>>) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Parkable + Unpin + Send + 'static,
{
    Box::pin(arrive(broker, arrival)).then(|arrived| match arrived {
        Some(connection) => Either::Left(connected(connection)),
        None => Either::Right(std::future::ready(())),
    })
}

/// A connected client and its frame, boxed on their way into [`connected`] (an argument's
/// room stays in a future for its whole life; a box's is one pointer).
struct Connection<S> {
    client: Client,
    framed: Framed<S>,
}

impl<S> Connection<S> {
    /// Takes the connection out of its box and frees the box at once.
    #[allow(clippy::boxed_local)] // the box is the point: it is freed here
    fn unbox(self: Box<Self>) -> Connection<S> {
        *self
    }
}

/// The CONNECT phase: the connected client and its frame, or `None` once refused and closed.
async fn arrive<S>(broker: Arc<Broker>, arrival: Box<Arrival<S>>) -> Option<Box<Connection<S>>>
where
    S: AsyncRead + AsyncWrite + Parkable + Unpin + Send + 'static,
{
    let Arrival {
        stream,
        peer,
        handshake,
        parking,
    } = arrival.unbox();
    let config = broker.config();
    let mut framed = Framed::new(stream, config.limits.max_packet_size);
    let Some(client) = await_connect(&broker, config, &mut framed, peer, handshake, parking).await
    else {
        framed.close().await;
        return None;
    };
    broker
        .metrics()
        .clients_connected
        .fetch_add(1, Ordering::Relaxed);
    client.signal.heard_at(broker.clock_ms(), client.timeout());
    framed.release_read_buffer();
    Some(Box::new(Connection { client, framed }))
}

/// The connected connection, from its CONNACK or from being resumed, until it parks or ends.
async fn connected<S>(connection: Box<Connection<S>>)
where
    S: AsyncRead + AsyncWrite + Parkable + Unpin + Send + 'static,
{
    let Connection {
        mut client,
        mut framed,
    } = connection.unbox();
    let exit = loop {
        match client.run(&mut framed).await {
            Stop::Exit(exit) => break exit,
            Stop::Park => match client.park(framed) {
                None => return,
                Some(Awake::Running(back, frame)) => (client, framed) = (back, frame),
                Some(Awake::Lost(back, error)) => {
                    // A task of its own (rare): awaited here, it would take room in every
                    // connection's future.
                    tokio::spawn(back.lost_while_parked(error));
                    return;
                }
            },
        }
    };
    Box::pin(client.finish(&mut framed, exit)).await;
}

/// Waits for CONNECT until the handshake's deadline and accepts or refuses it; `handshake` is
/// given back when it returns.
async fn await_connect<S>(
    broker: &Arc<Broker>,
    config: Arc<Config>,
    framed: &mut Framed<S>,
    peer: Peer,
    handshake: Handshake,
    parking: Option<ParkingSpot>,
) -> Option<Client>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = match tokio::time::timeout_at(handshake.deadline(), framed.read_packet()).await {
        Ok(Ok(Some(packet))) => packet,
        Ok(Ok(None)) => return None,
        Ok(Err(error)) => {
            connect::refuse_unreadable(framed, &error, peer.addr);
            return None;
        }
        Err(_) => {
            tracing::debug!(peer = %peer.addr, "no CONNECT within limits.connect_timeout; closing");
            return None;
        }
    };
    let Packet::Connect(connect) = first else {
        // [MQTT-3.1.0-1] The first packet must be CONNECT.
        tracing::info!(peer = %peer.addr, packet = first.name(), "first packet is not CONNECT; closing");
        return None;
    };
    connect::accept(broker, config, framed, *connect, &peer, parking).await
}

impl Client {
    /// The connected loop, until the connection ends or parks.
    fn run<'a, S: AsyncRead + AsyncWrite + Unpin>(
        &'a mut self,
        framed: &'a mut Framed<S>,
    ) -> impl Future<Output = Stop> + 'a {
        self.serve_packets(framed).map(|served| match served {
            Ok(()) => Stop::Park,
            Err(exit) => Stop::Exit(exit),
        })
    }

    /// Reads, writes and waits until the connection ends (`Err`) or may park (`Ok`).
    async fn serve_packets<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
    ) -> Result<(), Exit> {
        // Shutdown closes every attached connection; one attached after that was begun is
        // not among them, so it looks here (its link is in the state before this look).
        if self.broker.shutting_down() {
            return Err(Exit::Shutdown);
        }
        // What came in the read that brought CONNECT (a client need not wait for CONNACK,
        // MQTT 5 §3.1.4): no readiness will announce bytes already read.
        self.handle_buffered(framed)?;
        loop {
            self.release_acks(framed)?;
            loop {
                match self.send_step(framed) {
                    Ok(Step::Done) => break,
                    Ok(Step::BatchFull) => {
                        if let Err(error) = framed.flush().await {
                            return Err(Exit::Lost(error.to_string().into()));
                        }
                    }
                    Ok(Step::Wait(wait)) => {
                        Box::pin(self.wait_step(framed, wait)).await?;
                    }
                    Err(exit) => return Err(exit),
                }
            }
            if let Err(error) = framed.flush().await {
                return Err(Exit::Lost(error.to_string().into()));
            }
            let reading = self.reading();
            if !reading {
                // Waiting for our own commits is no silence of the client's.
                self.signal.pause_deadline();
            } else if self.signal.deadline_paused() {
                self.signal.heard_at(self.broker.clock_ms(), self.timeout());
            }
            let event = if self.may_park(framed, reading) && self.parks.parks_now(self.now_ms()) {
                // Nothing under way: unless something is there already, park.
                match poll_fn(|cx| Poll::Ready(self.poll_event(framed, reading, cx))).await {
                    Poll::Ready(event) => event,
                    Poll::Pending => return Ok(()),
                }
            } else {
                poll_fn(|cx| self.poll_event(framed, reading, cx)).await
            };
            self.parks.event_came();
            match event {
                Event::Woken => {
                    if let Some(reason) = self.signal.close_reason() {
                        if matches!(
                            reason,
                            ReasonCode::SessionTakenOver | ReasonCode::ServerShuttingDown
                        ) {
                            // Boxed, as both are rare: every connection's future keeps room
                            // for its largest wait.
                            Box::pin(self.read_what_came_before(framed)).await?;
                        }
                        return Err(Exit::closed_for(reason));
                    }
                }
                Event::AckCommitted => {}
                Event::Loaded(entries) => {
                    self.take_loaded(entries)?;
                }
                Event::Read(Ok(true)) => {
                    self.signal.heard_at(self.broker.clock_ms(), self.timeout());
                    self.handle_buffered(framed)?;
                }
                Event::Read(Ok(false)) => {
                    return Err(Exit::Lost("connection closed by the client".into()))
                }
                Event::Read(Err(error)) => return Err(self.read_failed(error)),
            }
        }
    }

    /// Handles every whole packet read and not handled yet.
    fn handle_buffered<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
    ) -> Result<(), Exit> {
        while let Some(packet) = framed
            .next_buffered()
            .map_err(|error| self.read_failed(error.into()))?
        {
            self.handle(framed, packet)?;
        }
        framed.release_read_buffer();
        Ok(())
    }

    /// Before the connection closes for a takeover ([`Broker::take_over`] waits for it) or the
    /// shutdown: what its client sent before (before the new connection's CONNECT, or before
    /// the broker's goodbye), and the socket holds, is handled as it would have been: a
    /// DISCONNECT or the socket's close then ends the connection as such (`Err`), PUBACKs
    /// take their messages out of the window, PUBLISHes are taken (and acknowledged once
    /// stored, see [`Client::settle_acks`]). Nothing is waited for beyond one turn of the
    /// reactor, which reports what a socket just back from parking holds, and no more is read
    /// once the acks waiting for the store fill the Receive Maximum.
    async fn read_what_came_before<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
    ) -> Result<(), Exit> {
        tokio::task::yield_now().await;
        while self.reading() {
            match poll_fn(|cx| Poll::Ready(framed.poll_fill(cx))).await {
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(true)) => self.handle_buffered(framed)?,
                Poll::Ready(Ok(false)) => {
                    return Err(Exit::Lost("connection closed by the client".into()))
                }
                Poll::Ready(Err(error)) => return Err(self.read_failed(error)),
            }
        }
        Ok(())
    }

    /// Waits until every queued ack has its commit, for at most a commit window and
    /// [`ACKS_BEFORE_GOODBYE`], queuing each as it comes: a client the broker sends away (a
    /// takeover, the shutdown) learns of everything that was stored, and does not send it
    /// again (a duplicate for every subscriber).
    async fn settle_acks<S: AsyncRead + AsyncWrite + Unpin>(&mut self, framed: &mut Framed<S>) {
        let window = Duration::from_millis(self.config.store.commit_window_ms);
        let settled = async {
            while !self.acks.is_empty() {
                self.acks.front_committed().await;
                if self.release_acks(framed).is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(window + ACKS_BEFORE_GOODBYE, settled).await;
    }

    /// Whether the connection has nothing under way: no ack of ours waiting for its commit, no
    /// ack owed by the client (it is on its way: parking until it comes would cost a task's
    /// spawn per round trip), no load, nothing buffered either way, reading.
    fn may_park<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        framed: &Framed<S>,
        reading: bool,
    ) -> bool {
        self.parking.is_some()
            && reading
            && self.unacknowledged == 0
            && self.acks.is_empty()
            && self.load.is_none()
            && framed.is_idle()
    }

    /// The broker's clock as [`ParkHistory`] counts it.
    fn now_ms(&self) -> u32 {
        ParkHistory::clock(&self.broker)
    }

    /// Parks the connection: its task ends, and its state waits in a waker registered with its
    /// socket and its signal until either fires ([`parking`]); the socket leaves the runtime's
    /// reactor meanwhile. `None` once parked; given back (`Some`) if something is there
    /// already, or lost if the socket failed to leave or rejoin the reactor.
    fn park<S>(mut self, framed: Framed<S>) -> Option<Awake<S>>
    where
        S: AsyncRead + AsyncWrite + Parkable + Unpin + Send + 'static,
    {
        self.parks.parked(self.now_ms());
        let Some(spot) = self.parking.take() else {
            return Some(Awake::Running(self, framed));
        };
        let (stream, settings) = match framed.into_idle() {
            Ok(parts) => parts,
            Err(framed) => {
                self.parking = Some(spot);
                return Some(Awake::Running(self, framed));
            }
        };
        let client_id = &self.client_id;
        let ((), _) = self
            .broker
            .change(|state, _| state.connection_idle(client_id));
        let stream = match stream.leave_reactor() {
            Ok(stream) => stream,
            Err(error) => {
                self.parking = Some(spot);
                return Some(Awake::Lost(self, error));
            }
        };
        let parked = ParkedClient {
            client: self,
            stream,
            settings,
            spot,
        };
        let Err(parked) = parking::park(parked, |parked, cx| {
            let woken = parked.client.signal.register(cx);
            if woken || S::watch(&parked.stream, &parked.spot, cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }) else {
            return None;
        };
        let mut rejoined = parked.rejoin_reactor();
        if let Awake::Running(client, _) = &mut rejoined {
            // Woken while parking: a park that ended at once.
            let now = client.now_ms();
            client.parks.resumed(now);
        }
        Some(rejoined)
    }

    /// Ends a connection whose socket could not leave or rejoin the runtime's reactor (and is
    /// closed): as a lost connection, without a word to the client.
    async fn lost_while_parked(mut self, error: std::io::Error) {
        tracing::warn!(client_id = %self.client_id, %error, "an idle connection's socket failed to park or resume; closing it");
        self.release(Exit::Lost(error.to_string().into())).await;
    }

    /// What the connected loop waits for, in order of precedence: the state's signal (a
    /// close, or messages queued), the oldest ack's commit, a read of spilled entries, and
    /// bytes from the client while `reading`. A poll, not a `select!` over futures: the
    /// waiting state of an idle connection's task is a few pointers.
    fn poll_event<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
        reading: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Event> {
        if self.signal.poll_woken(cx).is_ready() {
            return Poll::Ready(Event::Woken);
        }
        if self.acks.poll_front_committed(cx).is_ready() {
            return Poll::Ready(Event::AckCommitted);
        }
        if let Some(pending) = &mut self.load {
            if let Poll::Ready(entries) = pending.loaded.poll_entries(cx) {
                return Poll::Ready(Event::Loaded(entries));
            }
        }
        if reading {
            if let Poll::Ready(filled) = framed.poll_fill(cx) {
                return Poll::Ready(Event::Read(filled));
            }
        }
        Poll::Pending
    }

    /// How long the client may stay silent: 1.5 × Keep Alive [MQTT-3.1.2-24]; zero (never
    /// times out) for Keep Alive 0.
    fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.keep_alive) * 1500)
    }

    /// Whether to read more from the client: not while as many acks as our Receive Maximum
    /// wait for their commit. A client that sends without waiting for its acks is held back
    /// by TCP flow control here, instead of piling up acks (and memory) without bound.
    fn reading(&self) -> bool {
        self.acks.len() < usize::from(self.config.limits.max_inflight)
    }

    /// Maps a read failure to how the connection ends.
    fn read_failed(&self, error: ReadError) -> Exit {
        match error {
            ReadError::Decode(error) => {
                Exit::Violation(error.reason_code(), error.to_string().into())
            }
            ReadError::TruncatedAtEof | ReadError::Io(_) => Exit::Lost(error.to_string().into()),
        }
    }

    /// Says goodbye as `exit` requires and hands the session back to the state.
    async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        framed: &mut Framed<S>,
        exit: Exit,
    ) {
        let goodbye = match &exit {
            Exit::Violation(reason, _) => Some(*reason),
            Exit::TakenOver => Some(ReasonCode::SessionTakenOver),
            Exit::Revoked => Some(ReasonCode::NotAuthorized),
            Exit::Shutdown => Some(ReasonCode::ServerShuttingDown),
            Exit::StoreFailed(_) => Some(ReasonCode::UnspecifiedError),
            Exit::Disconnected { .. } | Exit::Lost(_) => None,
        };
        match &exit {
            Exit::Violation(reason, why) => {
                tracing::info!(client_id = %self.client_id, reason = ?reason, "closing: {why}");
            }
            Exit::StoreFailed(why) => {
                tracing::info!(client_id = %self.client_id, "closing: the store could not record what this connection did: {why}");
            }
            Exit::Lost(why) => {
                tracing::debug!(client_id = %self.client_id, "connection lost: {why}")
            }
            _ => tracing::debug!(client_id = %self.client_id, ?exit, "connection ended"),
        }
        if matches!(exit, Exit::TakenOver | Exit::Shutdown) {
            self.settle_acks(framed).await;
        }
        if goodbye.is_some() {
            // Acks already committed go out first, in order, as they would have: the client
            // learns what was taken before the connection ends.
            let _ = self.release_acks(framed);
        }
        if let (Some(reason), ProtocolVersion::V5) = (goodbye, self.version) {
            let mut disconnect = Packet::Disconnect(Disconnect::new(reason));
            if let Exit::Violation(_, why) = &exit {
                // Allowed whatever Request Problem Information says [MQTT-3.1.2-29].
                explain_within(
                    &mut disconnect,
                    why.to_string(),
                    self.version,
                    self.client_max_packet_size,
                );
            }
            let _ = framed.queue(&disconnect);
        }
        self.release(exit).await;
        framed.close().await;
    }

    /// Releases the session as `exit` says (its Will, its timers, its new state stored) and
    /// waits until that is durable; the client no longer counts as connected.
    async fn release(&mut self, exit: Exit) {
        self.broker
            .metrics()
            .clients_connected
            .fetch_sub(1, Ordering::Relaxed);
        let keep_will = match exit {
            Exit::Disconnected { keep_will } => Some(keep_will),
            // Not a normal DISCONNECT: the Will goes [MQTT-3.1.2-8].
            Exit::Lost(_) | Exit::Violation(..) | Exit::StoreFailed(_) => Some(true),
            Exit::Revoked => Some(false),
            // The new connection already settled the Will; at shutdown the session stays as it
            // is for the next start.
            Exit::TakenOver | Exit::Shutdown => None,
        };
        let shutdown = matches!(exit, Exit::Shutdown);
        let (detached, commit) = self.broker.change(|state, changes| {
            if shutdown {
                state.closed_by_shutdown(&self.client_id, self.connection_id, changes);
            }
            keep_will.map(|keep_will| {
                state.detach(&self.client_id, self.connection_id, keep_will, changes)
            })
        });
        if let Some(detached) = detached {
            self.broker.arm_timers(self.client_id.clone(), &detached);
        }
        // The session is released, and its new state stored, before the socket closes: a
        // client that reconnects as soon as it sees the close finds the session in its next
        // state, and a crash right after cannot bring back a Will the DISCONNECT removed.
        settle(commit).await;
        self.broker.released(&self.signal);
    }
}

/// A connection that is not (or no longer) parked.
enum Awake<S> {
    /// Running, its socket in the runtime's reactor.
    Running(Client, Framed<S>),
    /// Its socket failed to leave or rejoin the runtime's reactor, and is closed.
    Lost(Client, std::io::Error),
}

/// A parked connection: its client, its socket out of the runtime's reactor, what framing the
/// socket again takes, and the spot it parks at (out of the client meanwhile; last, as there).
struct ParkedClient<S: Parkable> {
    client: Client,
    stream: S::Parked,
    settings: FrameSettings,
    spot: ParkingSpot,
}

impl<S: AsyncRead + AsyncWrite + Parkable + Unpin> ParkedClient<S> {
    /// The client and its socket framed again, back in the runtime's reactor (`Running`); the
    /// client alone if its socket could not rejoin it (`Lost`, and closed).
    fn rejoin_reactor(self) -> Awake<S> {
        let ParkedClient {
            mut client,
            stream,
            settings,
            spot,
        } = self;
        let rejoined = {
            let _runtime = spot.runtime().enter();
            S::rejoin_reactor(stream, &spot)
        };
        client.parking = Some(spot);
        match rejoined {
            Ok(stream) => Awake::Running(client, Framed::resume(stream, settings)),
            Err(error) => Awake::Lost(client, error),
        }
    }
}

impl<S> Resume for ParkedClient<S>
where
    S: AsyncRead + AsyncWrite + Parkable + Unpin + Send + 'static,
{
    fn resume(mut self) {
        let now = self.client.now_ms();
        self.client.parks.resumed(now);
        let runtime = self.spot.runtime().clone();
        match self.rejoin_reactor() {
            Awake::Running(client, framed) => {
                runtime.spawn(connected(Box::new(Connection { client, framed })));
            }
            Awake::Lost(client, error) => {
                runtime.spawn(client.lost_while_parked(error));
            }
        }
    }
}

/// Gives a CONNACK or DISCONNECT `why` as its Reason String, unless that would make it larger
/// than the client's Maximum Packet Size `limit`: the string is optional, the packet is not
/// [MQTT-3.1.2-25] [MQTT-3.2.2-19] [MQTT-3.14.2-3].
pub(super) fn explain_within(
    packet: &mut Packet,
    why: String,
    version: ProtocolVersion,
    limit: u32,
) {
    if let Some(reason_string) = reason_string_of(packet) {
        *reason_string = Some(why);
    }
    if encoded_len(packet, version) > limit as usize {
        if let Some(reason_string) = reason_string_of(packet) {
            *reason_string = None;
        }
    }
}

/// The Reason String of a CONNACK or DISCONNECT.
fn reason_string_of(packet: &mut Packet) -> Option<&mut Option<String>> {
    match packet {
        Packet::ConnAck(connack) => Some(&mut connack.properties.reason_string),
        Packet::Disconnect(disconnect) => Some(&mut disconnect.properties.reason_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    /// A resumed connection serving what woke it: an event came.
    fn resumed_and_served(parks: &mut ParkHistory, now: u32) {
        parks.resumed(now);
        parks.event_came();
    }

    /// A quiet client parks at every idle moment; one that parks briefly twice in a row keeps
    /// its task for a second, then parks again at its next idle moment.
    #[test]
    fn a_busy_connection_keeps_its_task_for_a_while() {
        let mut parks = ParkHistory::started(0);
        assert!(parks.parks_now(10), "the first idle moment after CONNACK");
        parks.parked(10);
        resumed_and_served(&mut parks, 11); // SUBSCRIBE right behind CONNACK: brief
        assert!(parks.parks_now(12), "one brief park is no busy client");
        parks.parked(12);
        resumed_and_served(&mut parks, 5_000); // a message five seconds later: not brief
        assert!(parks.parks_now(5_001));
        parks.parked(5_001);
        resumed_and_served(&mut parks, 5_002);
        parks.parked(5_003);
        resumed_and_served(&mut parks, 5_004); // two brief parks in a row: busy
        assert!(!parks.parks_now(5_005));
        assert!(!parks.parks_now(6_003), "not within a second of its resume");
        assert!(parks.parks_now(6_004), "a second after it");
        parks.parked(6_004);
        resumed_and_served(&mut parks, 6_005);
        assert!(
            parks.parks_now(6_006),
            "the run of brief parks starts again"
        );
    }

    /// A resumed connection parks again only once an event came: its socket rejoined the
    /// reactor with no readiness known, and the bytes that woke it show at the reactor's next
    /// turn.
    #[test]
    fn a_resumed_connection_parks_only_after_an_event() {
        let mut parks = ParkHistory::started(0);
        parks.parked(0);
        parks.resumed(5_000);
        assert!(!parks.parks_now(5_000), "nothing came since the resume");
        assert!(!parks.parks_now(9_000), "however long ago it was");
        parks.event_came();
        assert!(parks.parks_now(9_000));
    }

    /// The clock wraps after 49 days; differences stay right across the wrap.
    #[test]
    fn park_times_survive_the_clock_wrapping() {
        let mut parks = ParkHistory::started(u32::MAX - 5);
        parks.parked(u32::MAX - 5);
        resumed_and_served(&mut parks, 3); // 9 ms later, across the wrap: brief
        parks.parked(4);
        resumed_and_served(&mut parks, 5);
        assert!(!parks.parks_now(6), "two brief parks across the wrap");
        assert!(parks.parks_now(5 + 1_000));
    }
    use tokio::io::DuplexStream;

    /// The size of the future (or any value) `f` returns.
    fn returned_by<A, B, R>(_f: fn(A, B) -> R) -> usize {
        size_of::<R>()
    }

    /// The size of a connection's future, and of the parts it must hold: the connected loop
    /// and what that loop works on.
    fn future_and_parts() -> (usize, usize) {
        let serve = returned_by(serve::<DuplexStream>);
        let run = returned_by::<&'static mut Client, &'static mut Framed<DuplexStream>, _>(
            Client::run::<DuplexStream>,
        );
        let parts = run
            + size_of::<Client>()
            + size_of::<Framed<DuplexStream>>()
            + size_of::<Arc<Broker>>()
            + size_of::<Box<Arrival<DuplexStream>>>();
        (serve, parts)
    }

    /// An idle connection's task is mostly this future, so its size is memory per connection:
    /// it holds the connected loop and the parts that loop works on, with the Client once. A
    /// named local kept for the refused connection's `close().await` once held a second one.
    #[test]
    fn a_connection_future_holds_its_client_once() {
        let (serve, parts) = future_and_parts();
        assert!(
            serve < parts + size_of::<Client>(),
            "a connection future of {serve} bytes for {parts} bytes of parts, a Client being {}",
            size_of::<Client>()
        );
    }

    /// Nor does it keep what the transport handed over (socket, peer, handshake) beside the
    /// parts that took it over: an argument's slot stays in a future for its whole life, so
    /// they arrive boxed and leave the box at once.
    #[test]
    fn a_connection_future_keeps_no_arrival() {
        let (serve, parts) = future_and_parts();
        assert!(
            serve < parts + size_of::<Peer>(),
            "a connection future of {serve} bytes for {parts} bytes of parts"
        );
    }

    /// The most a plain TCP connection's future may take: with its place among the open
    /// connections (one word, see `transport::accept`) and tokio's task header and trailer
    /// (96 bytes) its task is then 512 bytes (seen in heaptrack's histogram of a 10,000-client
    /// storm; tokio rounds tasks up to 128 bytes on x86_64 and aarch64): what a running
    /// connection holds (an idle one parks, see [`PARKED_CONNECTION_BUDGET`]). It was 1,024
    /// while the connected loop waited in a `select!` of stored futures with a keep-alive
    /// timer, 640 while the accept loop's wrapper kept room for its arguments.
    const TCP_CONNECTION_FUTURE_BUDGET: usize = 400;

    /// The most a parked plain TCP connection's state may take (its waker's `Arc` and mutex
    /// add 24 bytes or so), where the task it gave up took 512. It was 208 while the parked
    /// socket was tokio's (a registration's handle beside the descriptor), 176 while the ack
    /// queue and the user name were kept inline.
    const PARKED_CONNECTION_BUDGET: usize = 128;

    #[test]
    fn a_parked_connection_fits_its_budget() {
        let parked = size_of::<ParkedClient<tokio::net::TcpStream>>();
        assert!(
            parked <= PARKED_CONNECTION_BUDGET,
            "a parked connection of {parked} bytes, over the budget of {PARKED_CONNECTION_BUDGET}"
        );
    }

    /// An idle connection carries nothing it does not use: no empty Topic Alias tables (most
    /// clients use none), no second copy of its arguments.
    #[test]
    fn a_tcp_connection_future_fits_its_budget() {
        let serve = returned_by(serve::<tokio::net::TcpStream>);
        assert!(
            serve <= TCP_CONNECTION_FUTURE_BUDGET,
            "a connection future of {serve} bytes, over the budget of {TCP_CONNECTION_FUTURE_BUDGET}"
        );
    }
}
