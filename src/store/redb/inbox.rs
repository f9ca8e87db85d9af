//! The writer's inbox: jobs handed over by any thread, gathered into groups by the writer
//! thread. It wakes the writer only when the writer must act: a first job after a pause, an
//! urgent job, a group full enough to close the commit window early, or the first job of a
//! group that a SUBACK or UNSUBACK waits for (it ends the window). A job that can wait
//! for the window (an acknowledgement, a send) is only added, so a busy broker does not pay
//! a thread wake-up per batch; and acknowledgements received alone (see [`Job::lazy`]) open
//! no window: they wait for the next job that does, or [`LAZY_WINDOW`].
//!
//! Never touches the database; the writer does.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::writer::{Job, LAZY_WINDOW, MAX_BATCHES_PER_COMMIT, WINDOW_CLOSES_AT};

/// Jobs waiting for the writer.
#[derive(Debug, Default)]
pub struct Inbox {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Pending {
    jobs: Vec<Job>,
    /// Records of `jobs` (see [`Job::records`]).
    records: usize,
    /// Some job of `jobs` is urgent.
    urgent: bool,
    /// When the oldest job of `jobs` came: lazy jobs alone are committed [`LAZY_WINDOW`]
    /// after it.
    oldest_at: Option<Instant>,
    /// When the newest job of `jobs` that is not lazy ([`Job::lazy`]) came: with one, the
    /// group commits within the window (see [`window_left`]).
    newest_due_at: Option<Instant>,
    /// When the first job of `jobs` came that a SUBACK or UNSUBACK waits for
    /// ([`Job::answers_a_subscription`]): the window's time is up from then on, and the group
    /// waits only for its work to pause.
    subscription_at: Option<Instant>,
    /// No job comes any more.
    closed: bool,
    /// What the writer sleeps for.
    writer: Writer,
    /// Times the writer was woken.
    #[cfg(test)]
    wakes: usize,
}

/// What the writer thread is doing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Committing, or about to look at the jobs: it sees new ones without a wake-up.
    #[default]
    Busy,
    /// Waiting for the first job of a group.
    Idle,
    /// Waiting for the commit window to close.
    Gathering,
}

impl Pending {
    /// Whether some job of `jobs` is not lazy: the group commits within the window.
    fn due(&self) -> bool {
        self.newest_due_at.is_some()
    }

    /// Whether the gathered jobs must be committed now, before the window closes.
    fn group_closes(&self) -> bool {
        self.urgent
            || self.records >= WINDOW_CLOSES_AT
            || self.jobs.len() >= MAX_BATCHES_PER_COMMIT
            || self.closed
    }

    /// Whether the writer sleeps through something it must act on.
    fn writer_must_wake(&self) -> bool {
        match self.writer {
            Writer::Busy => false,
            Writer::Idle => self.due() || self.closed,
            Writer::Gathering => self.group_closes(),
        }
    }
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves only jobs behind, never a broken invariant.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a job, in submission order; gives it back if the inbox is closed.
    pub fn push(&self, job: Job) -> Result<(), Job> {
        let mut pending = self.lock();
        if pending.closed {
            return Err(job);
        }
        pending.records += job.records();
        pending.urgent |= job.urgent();
        let now = Instant::now();
        if !job.lazy() {
            pending.newest_due_at = Some(now);
        }
        if pending.jobs.is_empty() {
            pending.oldest_at = Some(now);
        }
        // A writer gathering for the window must learn that its time is up.
        let ends_window = job.answers_a_subscription() && pending.subscription_at.is_none();
        if ends_window {
            pending.subscription_at = Some(now);
        }
        pending.jobs.push(job);
        self.wake_if_needed(&mut pending, ends_window);
        Ok(())
    }

    /// No job comes any more: the writer takes what is left, then stops.
    pub fn close(&self) {
        let mut pending = self.lock();
        pending.closed = true;
        self.wake_if_needed(&mut pending, false);
    }

    /// The writer is gone (its thread ended by a panic): the inbox closes, and the jobs left
    /// in it are dropped, so their waiters learn that no answer will come.
    pub fn abandon(&self) {
        let mut pending = self.lock();
        pending.closed = true;
        pending.jobs.clear();
    }

    /// Wakes the writer if it sleeps through something it must act on, or through the end of
    /// its window (`ends_window`).
    fn wake_if_needed(&self, pending: &mut Pending, ends_window: bool) {
        if pending.writer_must_wake() || (ends_window && pending.writer == Writer::Gathering) {
            pending.writer = Writer::Busy;
            #[cfg(test)]
            {
                pending.wakes += 1;
            }
            self.wake.notify_one();
        }
    }

    /// The next group (writer thread only): blocks for a first job that is not lazy (lazy
    /// ones alone are taken [`LAZY_WINDOW`] after the oldest came, also when they came to a
    /// writer asleep with nothing to do, or when the inbox closes),
    /// then, while the group holds fewer than [`WINDOW_CLOSES_AT`] records, no urgent job and
    /// no more than [`MAX_BATCHES_PER_COMMIT`] jobs, waits for more until `window` has passed
    /// (or a job a SUBACK or UNSUBACK waits for has come) and its jobs have come to a pause
    /// (see [`window_left`]; 0: only what is already there). `None` once the inbox is closed
    /// and empty.
    pub fn gather(&self, window: Duration) -> Option<Vec<Job>> {
        let mut pending = self.lock();
        while !pending.due() && !pending.closed {
            // A lazy job's push wakes no writer: one with no job looks again every
            // LAZY_WINDOW, so that acknowledgements received alone wait at most that long.
            let lazy_left = match (pending.jobs.is_empty(), pending.oldest_at) {
                (false, Some(oldest)) => {
                    (oldest + LAZY_WINDOW).saturating_duration_since(Instant::now())
                }
                _ => LAZY_WINDOW,
            };
            if lazy_left.is_zero() {
                break;
            }
            pending.writer = Writer::Idle;
            pending = self.wait(pending, Some(lazy_left));
        }
        if pending.jobs.is_empty() {
            return None;
        }
        let deadline = Instant::now() + window;
        let settle = settle_time(window);
        while pending.due() && !pending.group_closes() {
            let (deadline, pause) = match pending.subscription_at {
                Some(at) => (deadline.min(at), settle.min(SUBSCRIPTIONS_SETTLE)),
                None => (deadline, settle),
            };
            let limit = deadline + 2 * settle;
            let left = window_left(
                deadline,
                pause,
                limit,
                pending.newest_due_at,
                Instant::now(),
            );
            if left.is_zero() {
                break;
            }
            pending.writer = Writer::Gathering;
            pending = self.wait(pending, Some(left));
        }
        pending.writer = Writer::Busy;
        Some(take_group(&mut pending))
    }

    /// Sleeps until woken (or `timeout` passes); a spurious wake-up only means looking again.
    fn wait<'a>(
        &self,
        pending: MutexGuard<'a, Pending>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Pending> {
        let mut pending = match timeout {
            Some(timeout) => {
                self.wake
                    .wait_timeout(pending, timeout)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0
            }
            None => self
                .wake
                .wait(pending)
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
        pending.writer = Writer::Busy;
        pending
    }

    /// Times the writer was woken so far.
    #[cfg(test)]
    fn wakes(&self) -> usize {
        self.lock().wakes
    }
}

/// How much longer a commit window to go until `deadline` waits, at `now`, when the newest job
/// that is not lazy came at `newest_due`: until the deadline, and past it until the jobs have
/// paused for `pause` ([`settle_time`] of the window; the newest job may be a message whose
/// receiver is about to take it and acknowledge it: a delivery to an online subscriber, a
/// bridge's upstream on a LAN), but never past `limit` (twice the window's [`settle_time`]
/// after the deadline, whatever the pause). A message arriving at the end of a window would
/// otherwise be written in it, and its send and
/// acknowledgement in the next, where the whole chain, kept together, cancels out unwritten:
/// with a sensor publishing at a steady rate, one message arrives near the end of nearly
/// every window.
fn window_left(
    deadline: Instant,
    pause: Duration,
    limit: Instant,
    newest_due: Option<Instant>,
    now: Instant,
) -> Duration {
    let until_deadline = deadline.saturating_duration_since(now);
    let until_pause = newest_due.map_or(Duration::ZERO, |newest| {
        (newest + pause).saturating_duration_since(now)
    });
    let until_limit = limit.saturating_duration_since(now);
    until_deadline.max(until_pause.min(until_limit))
}

/// The pause that ends a commit window once its time is up: an eighth of it, at most 5 ms
/// (2.5 ms at the default 20 ms; none for a window of 0).
fn settle_time(window: Duration) -> Duration {
    (window / 8).min(Duration::from_millis(5))
}

/// The pause that ends a group a SUBACK or UNSUBACK waits for (at most; a window's own pause
/// if shorter): long enough to gather the subscriptions of clients reconnecting together,
/// which come far closer than this (and never past the window's limit: twice its pause after
/// the first subscription). In storms of 10,000 clients subscribing ten at a time, 0.5 ms
/// took twice as many per second as 2.5 ms, with the same bytes written per client; at 100
/// at a time neither changed.
const SUBSCRIPTIONS_SETTLE: Duration = Duration::from_micros(500);

/// Takes up to [`MAX_BATCHES_PER_COMMIT`] jobs, oldest first; what stays keeps its counts.
fn take_group(pending: &mut Pending) -> Vec<Job> {
    if pending.jobs.len() <= MAX_BATCHES_PER_COMMIT {
        pending.records = 0;
        pending.urgent = false;
        pending.oldest_at = None;
        pending.newest_due_at = None;
        pending.subscription_at = None;
        return std::mem::take(&mut pending.jobs);
    }
    let rest = pending.jobs.split_off(MAX_BATCHES_PER_COMMIT);
    let group = std::mem::replace(&mut pending.jobs, rest);
    pending.records = pending.jobs.iter().map(Job::records).sum();
    pending.urgent = pending.jobs.iter().any(Job::urgent);
    let now = Instant::now();
    pending.newest_due_at = pending.jobs.iter().any(|job| !job.lazy()).then_some(now);
    pending.subscription_at = pending
        .jobs
        .iter()
        .any(Job::answers_a_subscription)
        .then_some(now);
    pending.oldest_at = Some(now);
    group
}

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, Arc};

    use bytes::Bytes;
    use tokio::sync::oneshot;

    use super::*;
    use crate::codec::QoS;
    use crate::model::{Delivery, Message, StoreOp};
    use crate::store::redb::answers::Reply;
    use crate::store::Pace;

    /// Generous: the machine is shared and loaded.
    const WAIT: Duration = Duration::from_secs(60);
    /// A window no test may wait out.
    const FOREVER: Duration = Duration::from_secs(3600);

    fn commit(ops: Vec<StoreOp>, pace: Pace) -> Job {
        let (done, _) = Reply::channel();
        Job::Commit { ops, done, pace }
    }

    fn enqueue(seq: u64) -> StoreOp {
        StoreOp::Enqueue {
            client_id: Arc::from("c"),
            seq,
            delivery: Delivery {
                message: Arc::new(Message::from_broker(seq, "t", Bytes::new(), false)),
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Vec::new(),
                queued_at: 0,
            },
        }
    }

    fn acked(packet_id: u16) -> StoreOp {
        StoreOp::Acked {
            client_id: Arc::from("c"),
            packet_id,
        }
    }

    /// Runs `gather` on an inbox holding `jobs` (not closed, as while the broker runs) in a
    /// thread and returns how many jobs its group took, or `None` if it did not return in time.
    fn gathered(jobs: Vec<Job>, window: Duration) -> Option<usize> {
        let inbox = Arc::new(Inbox::default());
        for job in jobs {
            inbox.push(job).expect("open");
        }
        let (result, outcome) = mpsc::channel();
        let writer = inbox.clone();
        std::thread::spawn(move || {
            let group = writer.gather(window).map_or(0, |group| group.len());
            let _ = result.send(group);
        });
        let taken = outcome.recv_timeout(WAIT).ok();
        inbox.close();
        taken
    }

    /// An empty inbox whose writer thread gathers one group for `window` and sleeps with
    /// nothing to do, and where that group will come.
    fn idle_writer(window: Duration) -> (Arc<Inbox>, mpsc::Receiver<Option<Vec<Job>>>) {
        let inbox = Arc::new(Inbox::default());
        let writer = inbox.clone();
        let (result, outcome) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = result.send(writer.gather(window));
        });
        await_writer(&inbox, Writer::Idle);
        (inbox, outcome)
    }

    /// An inbox whose writer thread gathers one message for a window that never ends, and
    /// where the size of its group will come.
    fn writer_gathering_a_message() -> (Arc<Inbox>, mpsc::Receiver<usize>) {
        let inbox = Arc::new(Inbox::default());
        let writer = inbox.clone();
        let (result, outcome) = mpsc::channel();
        std::thread::spawn(move || {
            let group = writer.gather(FOREVER).map_or(0, |group| group.len());
            let _ = result.send(group);
        });
        await_writer(&inbox, Writer::Idle);
        inbox
            .push(commit(vec![enqueue(1)], Pace::Window))
            .expect("open");
        await_writer(&inbox, Writer::Gathering);
        (inbox, outcome)
    }

    /// Waits until the writer thread sleeps as `expected`.
    fn await_writer(inbox: &Inbox, expected: Writer) {
        let deadline = Instant::now() + WAIT;
        while inbox.lock().writer != expected {
            assert!(
                Instant::now() < deadline,
                "the writer never slept as {expected:?}"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn an_urgent_job_closes_the_window() {
        let jobs = vec![
            commit(vec![enqueue(1)], Pace::Window),
            commit(Vec::new(), Pace::Now),
        ];
        assert_eq!(gathered(jobs, FOREVER), Some(2));
    }

    #[test]
    fn a_load_closes_the_window() {
        let (reply, _) = Reply::channel();
        let load = Job::Load {
            client_id: Arc::from("c"),
            range: 0..1,
            reply: Some(reply),
        };
        assert_eq!(gathered(vec![load], FOREVER), Some(1));
    }

    #[test]
    fn enough_messages_close_the_window() {
        let jobs = (0..WINDOW_CLOSES_AT as u64)
            .map(|seq| commit(vec![enqueue(seq)], Pace::Window))
            .collect();
        assert_eq!(gathered(jobs, FOREVER), Some(WINDOW_CLOSES_AT));
    }

    /// What a persistent client's CONNECT commits: its session and (no) Will.
    fn connect(client: u32) -> Vec<StoreOp> {
        let client_id: Arc<str> = Arc::from(format!("sensor-{client}"));
        vec![
            StoreOp::PutSession {
                client_id: client_id.clone(),
                expiry_interval: u32::MAX,
            },
            StoreOp::Will {
                client_id,
                will: None,
            },
        ]
    }

    /// What a persistent client's SUBSCRIBE to one filter commits.
    fn subscribe(client: u32) -> Vec<StoreOp> {
        vec![StoreOp::Subscribe {
            client_id: Arc::from(format!("sensor-{client}")),
            filter: Arc::from(format!("sensors/{client}/#")),
            options: crate::codec::SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            identifier: None,
        }]
    }

    /// Clients reconnecting together after a reboot, each waiting for its SUBACK, are not held
    /// for the window once there are enough of them: a group of subscriptions closes it like a
    /// group of messages.
    #[test]
    fn enough_subscriptions_close_the_window() {
        let jobs = (0..WINDOW_CLOSES_AT as u32)
            .map(|client| commit(subscribe(client), Pace::Window))
            .collect();
        assert_eq!(gathered(jobs, FOREVER), Some(WINDOW_CLOSES_AT));
    }

    /// A SUBACK or UNSUBACK is not held for the window: a group holding a subscription added
    /// or removed, or a barrier (an unchanged subscription's SUBACK), closes once its work
    /// pauses, though the window would never end.
    #[test]
    fn a_subscription_waits_for_a_pause_not_for_the_window() {
        assert_eq!(
            gathered(vec![commit(subscribe(1), Pace::Window)], FOREVER),
            Some(1)
        );
        let unsubscribe = StoreOp::Unsubscribe {
            client_id: Arc::from("sensor-1"),
            filter: Arc::from("sensors/1/#"),
        };
        assert_eq!(
            gathered(vec![commit(vec![unsubscribe], Pace::Window)], FOREVER),
            Some(1)
        );
        let (done, _) = Reply::channel();
        assert_eq!(gathered(vec![Job::Barrier { done }], FOREVER), Some(1));
        let messages = vec![
            commit(vec![enqueue(1)], Pace::Window),
            commit(subscribe(2), Pace::Window),
            commit(vec![enqueue(2)], Pace::Window),
        ];
        assert_eq!(
            gathered(messages, FOREVER),
            Some(3),
            "with what came before and after it"
        );
    }

    /// A writer gathering messages for the window is woken by the first subscription to come,
    /// and then waits only for the pause.
    #[test]
    fn a_subscription_ends_the_window_of_a_gathering_writer() {
        let (inbox, outcome) = writer_gathering_a_message();
        let woken = inbox.wakes();
        inbox
            .push(commit(subscribe(1), Pace::Window))
            .expect("open");
        assert_eq!(inbox.wakes(), woken + 1, "the subscription woke it");
        assert_eq!(outcome.recv_timeout(WAIT).ok(), Some(2));
        inbox.close();
    }

    /// Their sessions, stored at CONNECT without the CONNACK waiting, close nothing: they ride
    /// with the subscriptions (in a storm, one commit per 16 clients, not per 8: were they
    /// counted, this group would close at half its jobs), and alone they wait for the window.
    #[test]
    fn sessions_no_client_waits_for_ride_with_the_next_group() {
        let clients = WINDOW_CLOSES_AT as u32;
        let jobs = (0..clients)
            .flat_map(|client| {
                [
                    commit(connect(client), Pace::Window),
                    commit(subscribe(client), Pace::Window),
                ]
            })
            .collect();
        assert_eq!(gathered(jobs, FOREVER), Some(2 * WINDOW_CLOSES_AT));
        let sessions_only = (0..clients)
            .map(|client| commit(connect(client), Pace::Window))
            .collect();
        assert_eq!(
            gathered(sessions_only, Duration::from_millis(20)),
            Some(WINDOW_CLOSES_AT)
        );
    }

    #[test]
    fn a_small_group_waits_for_the_window_to_close() {
        let jobs = vec![commit(vec![enqueue(1)], Pace::Window)];
        assert_eq!(gathered(jobs, Duration::from_millis(20)), Some(1));
    }

    #[test]
    fn a_full_inbox_is_taken_in_groups_of_the_largest_size_in_order() {
        let inbox = Inbox::default();
        let total = MAX_BATCHES_PER_COMMIT + 3;
        for packet_id in 0..total {
            let pace = if packet_id == total - 1 {
                Pace::Now
            } else {
                Pace::Window
            };
            inbox
                .push(commit(vec![acked(packet_id as u16)], pace))
                .expect("open");
        }
        let first = inbox.gather(FOREVER).expect("jobs");
        assert_eq!(first.len(), MAX_BATCHES_PER_COMMIT);
        let second = inbox.gather(FOREVER).expect("the rest, urgent");
        assert_eq!(
            second.len(),
            3,
            "the urgent job still closes the rest's window"
        );
        let ids: Vec<u16> = first
            .iter()
            .chain(&second)
            .map(|job| match job {
                Job::Commit { ops, .. } => match ops[0] {
                    StoreOp::Acked { packet_id, .. } => packet_id,
                    _ => unreachable!("only acks were pushed"),
                },
                Job::Barrier { .. } | Job::Load { .. } => unreachable!("only commits were pushed"),
            })
            .collect();
        assert_eq!(
            ids,
            (0..total as u16).collect::<Vec<_>>(),
            "submission order"
        );
    }

    /// The point of the inbox: acknowledgements arriving while the writer gathers a window
    /// are added without waking it; a job that closes the group wakes it once.
    #[test]
    fn jobs_that_can_wait_do_not_wake_a_gathering_writer() {
        let (inbox, outcome) = writer_gathering_a_message();
        let woken = inbox.wakes();
        for packet_id in 1..100 {
            inbox
                .push(commit(vec![acked(packet_id)], Pace::Window))
                .expect("open");
        }
        assert_eq!(inbox.wakes(), woken, "99 acknowledgements, no wake-up");
        inbox.push(commit(Vec::new(), Pace::Now)).expect("open");
        assert_eq!(outcome.recv_timeout(WAIT).ok(), Some(101));
        assert_eq!(inbox.wakes(), woken + 1, "the urgent job woke it once");
    }

    /// Acknowledgements received alone open no commit window and wake no writer: they ride
    /// with the next job that needs a commit, in submission order.
    #[test]
    fn acknowledgements_alone_wait_for_the_next_group_that_commits() {
        let (inbox, outcome) = idle_writer(Duration::ZERO);
        let woken = inbox.wakes();
        for packet_id in 1..=3 {
            inbox
                .push(commit(vec![acked(packet_id)], Pace::Window))
                .expect("open");
        }
        assert_eq!(inbox.wakes(), woken, "acknowledgements alone wake nobody");
        assert!(!inbox.lock().due());
        inbox
            .push(commit(vec![enqueue(1)], Pace::Window))
            .expect("open");
        let group = outcome.recv_timeout(WAIT).ok().flatten().expect("a group");
        let kinds: Vec<&str> = group
            .iter()
            .map(|job| match job {
                Job::Commit { ops, .. } => match ops[0] {
                    StoreOp::Acked { .. } => "acked",
                    StoreOp::Enqueue { .. } => "enqueue",
                    _ => "other",
                },
                Job::Barrier { .. } | Job::Load { .. } => "other",
            })
            .collect();
        assert_eq!(kinds, ["acked", "acked", "acked", "enqueue"]);
        inbox.close();
    }

    /// With nothing else coming, acknowledgements alone are still committed, after
    /// [`LAZY_WINDOW`], however long the commit window; and at once when the inbox closes.
    #[test]
    fn acknowledgements_alone_are_committed_in_the_end() {
        let acks = || {
            (0..5)
                .map(|packet_id| commit(vec![acked(packet_id)], Pace::Window))
                .collect()
        };
        assert_eq!(gathered(acks(), FOREVER), Some(5));
        let inbox = Inbox::default();
        for job in acks() {
            inbox.push(job).expect("open");
        }
        inbox.close();
        assert_eq!(inbox.gather(FOREVER).map(|group| group.len()), Some(5));
        assert!(inbox.gather(FOREVER).is_none());
    }

    /// Acknowledgements that reach a writer asleep with nothing to do, and nothing after them,
    /// are committed [`LAZY_WINDOW`] after the first came, not left until the next job that
    /// needs a commit (after a power cut they were sent again, however long ago they came).
    #[test]
    fn acknowledgements_reaching_an_idle_writer_are_committed_after_the_lazy_window() {
        let (inbox, outcome) = idle_writer(FOREVER);
        let pushed = Instant::now();
        for packet_id in 1..=3 {
            inbox
                .push(commit(vec![acked(packet_id)], Pace::Window))
                .expect("open");
        }
        let group = outcome.recv_timeout(WAIT).ok().flatten();
        assert_eq!(group.map(|group| group.len()), Some(3));
        assert!(
            pushed.elapsed() >= LAZY_WINDOW,
            "they waited for company first"
        );
        inbox.close();
    }

    /// A window waits out its time, then for its jobs to pause (an eighth of it), never more
    /// than twice that past its time; a window of 0 never waits.
    #[test]
    fn a_window_closes_on_time_or_at_the_first_pause_after() {
        let window = Duration::from_millis(20);
        let settle = Duration::from_micros(2500);
        assert_eq!(settle_time(window), settle);
        let opened = Instant::now();
        let deadline = opened + window;
        let ms = Duration::from_millis;
        let limit = deadline + 2 * settle;
        let left = |newest: Duration, now: Duration| {
            window_left(deadline, settle, limit, Some(opened + newest), opened + now)
        };
        assert_eq!(left(ms(0), ms(5)), ms(15), "on time, whatever came last");
        assert_eq!(left(ms(4), ms(5)), ms(15));
        assert_eq!(
            left(ms(5), ms(20)),
            Duration::ZERO,
            "paused since long: closes"
        );
        assert_eq!(
            left(ms(19), ms(20)),
            settle - ms(1),
            "a job just before the time: waits for its pause"
        );
        assert_eq!(left(ms(24), ms(24)), ms(1), "jobs never pausing: the limit");
        assert_eq!(left(ms(25), ms(25)), Duration::ZERO);
        assert_eq!(settle_time(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            window_left(opened, Duration::ZERO, opened, Some(opened), opened),
            Duration::ZERO
        );
        assert_eq!(settle_time(Duration::from_secs(1)), ms(5), "at most 5 ms");
        // A group a SUBACK waits for: its time is up when the subscription came, it pauses for
        // [`SUBSCRIPTIONS_SETTLE`], and its limit stays twice the window's pause after that.
        let at = opened + ms(3);
        let (pause, limit) = (SUBSCRIPTIONS_SETTLE, at + 2 * settle);
        let left = |newest: Duration, now: Duration| {
            window_left(at, pause, limit, Some(opened + newest), opened + now)
        };
        assert_eq!(left(ms(3), ms(3)), pause, "a lone subscription: its pause");
        assert_eq!(left(ms(3), ms(4)), Duration::ZERO, "paused: closes");
        let us = Duration::from_micros;
        assert_eq!(
            left(us(7_800), us(7_800)),
            us(200),
            "subscriptions never pausing: the limit"
        );
    }

    /// An acknowledgement batch holding anything else, or asking for its commit now, is no
    /// lazy job.
    #[test]
    fn only_acknowledgements_received_alone_are_lazy() {
        assert!(commit(vec![acked(1), acked(2)], Pace::Window).lazy());
        assert!(!commit(vec![acked(1)], Pace::Now).lazy());
        assert!(!commit(vec![acked(1), enqueue(1)], Pace::Window).lazy());
        assert!(!commit(Vec::new(), Pace::Window).lazy());
    }

    #[test]
    fn an_abandoned_inbox_drops_its_jobs_and_refuses_more() {
        let inbox = Inbox::default();
        let (done, mut waiter) = Reply::channel();
        inbox
            .push(Job::Commit {
                ops: vec![acked(1)],
                done,
                pace: Pace::Window,
            })
            .expect("open");
        inbox.abandon();
        assert!(
            matches!(waiter.try_recv(), Err(oneshot::error::TryRecvError::Closed)),
            "the waiter learns that no answer will come"
        );
        assert!(inbox.push(commit(vec![acked(2)], Pace::Window)).is_err());
        assert!(inbox.gather(FOREVER).is_none());
    }

    #[test]
    fn a_closed_inbox_refuses_jobs_and_gives_back_what_was_left() {
        let inbox = Inbox::default();
        inbox
            .push(commit(vec![acked(1)], Pace::Window))
            .expect("open");
        inbox.close();
        assert!(inbox.push(commit(vec![acked(2)], Pace::Window)).is_err());
        let left = inbox
            .gather(FOREVER)
            .expect("the job pushed before closing");
        assert_eq!(
            left.len(),
            1,
            "taken at once: a closed inbox waits for no window"
        );
        assert!(inbox.gather(FOREVER).is_none(), "then the writer stops");
    }
}
