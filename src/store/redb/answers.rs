//! Answers from the writer thread to the tasks waiting on it. A task of a tokio runtime woken
//! from another thread costs that runtime a wake-up of its event loop (tokio's current-thread
//! scheduler writes its eventfd for every such task), so a reboot storm, each client waiting
//! for its SUBACK's commit, cost two `write`s and up to two wake-ups per client. A group's
//! answers are therefore handed over per runtime: one task spawned on it answers all of that
//! runtime's waiters from within, where a woken task is queued without a system call. A
//! waiter outside any runtime (the store commands, blocking tests) is answered directly.
//!
//! A runtime's answers reach it in the order its waiters were answered, group after group:
//! tasks spawned from outside a runtime run in the order they were spawned.

use tokio::runtime::{Handle, Id};
use tokio::sync::oneshot;

use crate::store::StoreError;

use super::writer::LoadedEntries;

/// Where one waiter's answer goes: its channel, and the runtime its task runs on (none for a
/// thread outside every runtime).
#[derive(Debug)]
pub struct Reply<T> {
    sender: oneshot::Sender<T>,
    runtime: Option<Handle>,
}

impl<T> Reply<T> {
    /// A reply to a waiter on the calling thread's runtime, if it is in one, and the
    /// waiter's end.
    pub fn channel() -> (Reply<T>, oneshot::Receiver<T>) {
        let (sender, receiver) = oneshot::channel();
        let runtime = Handle::try_current().ok();
        (Reply { sender, runtime }, receiver)
    }

    /// Answers at once, from this thread. A waiter that gave up needs no answer.
    pub fn send(self, value: T) {
        let _ = self.sender.send(value);
    }
}

/// One answer, waiting to be sent.
#[derive(Debug)]
enum Answer {
    /// A commit's or a barrier's outcome.
    Done(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
    /// A load's entries.
    Entries(
        oneshot::Sender<Result<LoadedEntries, StoreError>>,
        Result<LoadedEntries, StoreError>,
    ),
}

impl Answer {
    fn send(self) {
        // A waiter that gave up (dropped its receiver) needs no answer.
        match self {
            Answer::Done(sender, outcome) => drop(sender.send(outcome)),
            Answer::Entries(sender, entries) => drop(sender.send(entries)),
        }
    }
}

/// The answers to one runtime's waiters (or to those outside every runtime).
#[derive(Debug)]
struct ForRuntime {
    /// `None`: waiters outside every runtime.
    runtime: Option<(Id, Handle)>,
    answers: Vec<Answer>,
}

/// A group's answers, gathered, then handed over by [`Answers::send`].
#[derive(Debug, Default)]
pub struct Answers {
    runtimes: Vec<ForRuntime>,
}

impl Answers {
    /// Adds the outcome for a commit or a barrier.
    pub fn done(&mut self, reply: Reply<Result<(), StoreError>>, outcome: Result<(), StoreError>) {
        self.add(reply.runtime, Answer::Done(reply.sender, outcome));
    }

    /// Adds the entries for a load.
    pub fn entries(
        &mut self,
        reply: Reply<Result<LoadedEntries, StoreError>>,
        entries: Result<LoadedEntries, StoreError>,
    ) {
        self.add(reply.runtime, Answer::Entries(reply.sender, entries));
    }

    fn add(&mut self, runtime: Option<Handle>, answer: Answer) {
        let id = runtime.as_ref().map(Handle::id);
        match self
            .runtimes
            .iter_mut()
            .find(|group| group.runtime.as_ref().map(|(id, _)| *id) == id)
        {
            Some(group) => group.answers.push(answer),
            None => self.runtimes.push(ForRuntime {
                runtime: runtime.map(|handle| (handle.id(), handle)),
                answers: vec![answer],
            }),
        }
    }

    /// Sends every answer, in the order added: one task on each runtime answers its waiters;
    /// waiters outside every runtime are answered from this thread. A runtime shut down has
    /// no waiters left: its answers are dropped with the task it refuses.
    pub fn send(self) {
        for group in self.runtimes {
            match group.runtime {
                Some((_, runtime)) => {
                    let answers = group.answers;
                    drop(runtime.spawn(async move { answers.into_iter().for_each(Answer::send) }));
                }
                None => group.answers.into_iter().for_each(Answer::send),
            }
        }
    }

    /// How many runtimes (counting "none" as one) the answers go to.
    #[cfg(test)]
    fn runtimes(&self) -> usize {
        self.runtimes.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Generous: the machine is shared and loaded.
    const WAIT: Duration = Duration::from_secs(60);

    fn current_thread_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_reply_made_outside_a_runtime_is_answered_directly() {
        let (reply, receiver) = Reply::<Result<(), StoreError>>::channel();
        let mut answers = Answers::default();
        answers.done(reply, Ok(()));
        answers.send();
        assert!(matches!(receiver.blocking_recv(), Ok(Ok(()))));
    }

    #[test]
    fn a_group_wakes_each_runtime_once_and_answers_every_waiter() {
        let runtime = current_thread_runtime();
        let other = current_thread_runtime();
        let mut answers = Answers::default();
        let mut waiting = Vec::new();
        for index in 0..10u64 {
            let (reply, receiver) = runtime.block_on(async { Reply::channel() });
            answers.done(reply, Ok(()));
            // Each waiter a task of its own, parked on its receiver.
            waiting.push(
                runtime.spawn(
                    async move { tokio::time::timeout(WAIT, receiver).await.map(|_| index) },
                ),
            );
        }
        let (reply, other_receiver) = other.block_on(async { Reply::channel() });
        answers.done(reply, Err(StoreError::WriterGone));
        let (outside, outside_receiver) = Reply::channel();
        answers.done(outside, Err(StoreError::WriterGone));
        assert_eq!(
            answers.runtimes(),
            3,
            "two runtimes, and the waiter outside both"
        );
        runtime.block_on(tokio::task::yield_now());
        assert_eq!(
            runtime.metrics().global_queue_depth(),
            0,
            "every waiter parked"
        );
        // Answered from another thread, as the writer does.
        std::thread::spawn(move || answers.send())
            .join()
            .expect("answers sent");
        assert_eq!(
            runtime.metrics().global_queue_depth(),
            1,
            "one task queued from outside for the ten waiters, not one per waiter"
        );
        for (index, task) in (0..10u64).zip(waiting) {
            let answered = runtime.block_on(task).expect("the waiter ran");
            assert_eq!(
                answered.ok(),
                Some(index),
                "waiter {index} answered in time"
            );
        }
        let other_outcome =
            other.block_on(async { tokio::time::timeout(WAIT, other_receiver).await });
        assert!(matches!(other_outcome, Ok(Ok(Err(StoreError::WriterGone)))));
        assert!(matches!(
            outside_receiver.blocking_recv(),
            Ok(Err(StoreError::WriterGone))
        ));
    }

    #[test]
    fn answers_for_a_runtime_shut_down_are_dropped_without_a_panic() {
        let runtime = current_thread_runtime();
        let (reply, receiver) =
            runtime.block_on(async { Reply::<Result<(), StoreError>>::channel() });
        drop(receiver);
        drop(runtime);
        let mut answers = Answers::default();
        answers.done(reply, Ok(()));
        answers.send();
    }
}
