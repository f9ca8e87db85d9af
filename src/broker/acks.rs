//! Acknowledgements waiting for their store commit: PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and
//! UNSUBACK are released here, and only here, once the changes they acknowledge are committed,
//! in the order the client's packets arrived. The session stored at CONNECT, when the CONNACK
//! did not wait for it, waits here too, with no packet: every later ack comes after it.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Context, Poll};

use crate::codec::Packet;
use crate::model::Delivery;
use crate::store::{Commit, StoreError};

use super::state::SubscriptionsBefore;

/// One acknowledgement held back until its commit completes.
#[derive(Debug)]
pub struct PendingAck {
    pub commit: Commit,
    /// The packet to send once committed; `None` for a change no packet acknowledges. Boxed:
    /// a packet is several hundred bytes, and the queue's slots stay allocated between
    /// bursts (a few dozen bytes each this way).
    pub ack: Option<Box<Packet>>,
    /// Retained messages to queue right after a SUBACK is sent.
    pub after: Vec<Delivery>,
    /// The subscriptions a SUBACK's or UNSUBACK's change replaced, to put back if its commit
    /// fails (boxed: rarely there).
    pub undo: Option<Box<SubscriptionsBefore>>,
    /// A PUBACK or PUBREC whose commit had not completed when it was queued (see
    /// [`AckQueue::publish_acks_awaiting_commit`]).
    awaited_commit: bool,
}

/// A commit finished: the ack to release, or the error that stopped it.
pub type Released = (Result<(), StoreError>, PendingAck);

/// The acknowledgements of one connection, oldest first. Boxed only while some wait: an idle
/// connection (most of thousands of sensors, most of the time) holds 8 bytes for it.
#[derive(Debug, Default)]
pub struct AckQueue(Option<Box<Pending>>);

/// The acks waiting, and how many of them answer PUBLISHes.
#[derive(Debug, Default)]
struct Pending {
    acks: VecDeque<PendingAck>,
    /// How many of `acks` are PUBACKs.
    pubacks: u32,
    /// How many of `acks` are PUBRECs.
    pubrecs: u32,
    /// How many of `acks` are PUBACKs and PUBRECs queued before their commit completed.
    awaiting_commit: u32,
}

impl AckQueue {
    /// Holds `ack` back until `commit` completes.
    pub fn push(&mut self, commit: Commit, ack: Packet, after: Vec<Delivery>) {
        self.push_undoable(commit, ack, after, None);
    }

    /// Holds the SUBACK or UNSUBACK `ack` back until `commit` completes, with the
    /// subscriptions its change replaced (see [`PendingAck::undo`]).
    pub fn push_subscription_change(
        &mut self,
        mut commit: Commit,
        ack: Packet,
        after: Vec<Delivery>,
        before: SubscriptionsBefore,
    ) {
        // A change with nothing to write (a session the store does not keep) cannot fail.
        let undo = (!commit.is_durable()).then(|| Box::new(before));
        self.push_undoable(commit, ack, after, undo);
    }

    fn push_undoable(
        &mut self,
        mut commit: Commit,
        ack: Packet,
        after: Vec<Delivery>,
        undo: Option<Box<SubscriptionsBefore>>,
    ) {
        let answers_publish = matches!(ack, Packet::PubAck(_) | Packet::PubRec(_));
        let awaited_commit = answers_publish && !commit.is_durable();
        let pending = self.0.get_or_insert_default();
        pending.pubacks += u32::from(matches!(ack, Packet::PubAck(_)));
        pending.pubrecs += u32::from(matches!(ack, Packet::PubRec(_)));
        pending.awaiting_commit += u32::from(awaited_commit);
        pending.acks.push_back(PendingAck {
            commit,
            ack: Some(Box::new(ack)),
            after,
            undo,
            awaited_commit,
        });
    }

    /// Watches `commit` of a change no packet acknowledges: a failure ends the connection.
    /// One already durable (nothing to write) takes no slot.
    pub fn push_unacknowledged(&mut self, mut commit: Commit) {
        if commit.is_durable() {
            return;
        }
        self.0.get_or_insert_default().acks.push_back(PendingAck {
            commit,
            ack: None,
            after: Vec::new(),
            undo: None,
            awaited_commit: false,
        });
    }

    /// The oldest ack if its commit has completed. Acks leave strictly in order. The last one
    /// out gives the queue's memory back: an idle connection holds no slots (a few hundred
    /// bytes each for thousands of idle clients), and a busy one allocates again cheaply.
    pub fn pop_ready(&mut self) -> Option<Released> {
        let pending = self.0.as_deref_mut()?;
        let result = pending.acks.front_mut()?.commit.try_result()?;
        let released = pending.acks.pop_front()?;
        let ack = released.ack.as_deref();
        pending.pubacks -= u32::from(matches!(ack, Some(Packet::PubAck(_))));
        pending.pubrecs -= u32::from(matches!(ack, Some(Packet::PubRec(_))));
        pending.awaiting_commit -= u32::from(released.awaited_commit);
        if pending.acks.is_empty() {
            self.0 = None;
        }
        Some((result, released))
    }

    /// Waits until the oldest ack's commit completes (forever if none is pending).
    /// Cancel-safe; call [`AckQueue::pop_ready`] afterwards.
    pub async fn front_committed(&mut self) {
        poll_fn(|cx| self.poll_front_committed(cx)).await
    }

    /// [`AckQueue::front_committed`] as a poll: ready once the oldest ack's commit completes
    /// (never if none is pending); otherwise `cx` is woken when it does. Call
    /// [`AckQueue::pop_ready`] afterwards.
    pub fn poll_front_committed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self
            .0
            .as_deref_mut()
            .and_then(|pending| pending.acks.front_mut())
        {
            Some(front) => front.commit.poll_ready(cx),
            None => Poll::Pending,
        }
    }

    /// How many PUBACKs are waiting: inbound QoS 1 messages not yet acknowledged. (Inbound
    /// QoS 2 messages are counted by the session until PUBREL, whether or not their PUBREC left.)
    pub fn pending_pubacks(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |pending| pending.pubacks as usize)
    }

    /// How many answers to inbound PUBLISHes (PUBACK, PUBREC) were held back for a commit that
    /// had not completed when they were queued: messages the client cannot know were received
    /// for as long as the store takes. Answers queued with nothing left to commit (a clean
    /// session's) leave at the next flush and do not count.
    pub fn publish_acks_awaiting_commit(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |pending| pending.awaiting_commit as usize)
    }

    /// How many acks of any kind wait for their commit.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |pending| pending.acks.len())
    }

    /// Whether no ack waits.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::PubResponse;

    /// An idle client's connection holds no ack slots: the queue's memory goes once the last
    /// ack has left.
    #[test]
    fn an_emptied_queue_holds_no_memory() {
        let mut acks = AckQueue::default();
        for packet_id in 1..=3 {
            let ack = Packet::PubAck(PubResponse::success(packet_id));
            acks.push(Commit::nothing(), ack, Vec::new());
        }
        assert_eq!(acks.len(), 3);
        assert_eq!(acks.pending_pubacks(), 3);
        assert_eq!(
            acks.publish_acks_awaiting_commit(),
            0,
            "acks of changes with nothing to commit wait for no commit"
        );
        while acks.pop_ready().is_some() {}
        assert!(acks.is_empty() && acks.pending_pubacks() == 0);
        assert!(acks.0.is_none(), "memory kept by an idle connection");
        assert_eq!(size_of::<AckQueue>(), 8);
    }
}
