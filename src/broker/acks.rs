//! Acknowledgements waiting for their store commit: PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and
//! UNSUBACK are released here, and only here, once the changes they acknowledge are committed,
//! in the order the client's packets arrived. The session stored at CONNECT, when the CONNACK
//! did not wait for it, waits here too, with no packet: every later ack comes after it.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Context, Poll};

use crate::codec::Packet;
use crate::store::{Commit, StoreError};

use crate::model::Delivery;

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
}

/// A commit finished: the ack to release, or the error that stopped it.
pub type Released = (Result<(), StoreError>, PendingAck);

/// The acknowledgements of one connection, oldest first.
#[derive(Debug, Default)]
pub struct AckQueue {
    pending: VecDeque<PendingAck>,
    /// How many of `pending` are PUBACKs.
    pubacks: u32,
    /// How many of `pending` are PUBRECs.
    pubrecs: u32,
}

impl AckQueue {
    /// Holds `ack` back until `commit` completes.
    pub fn push(&mut self, commit: Commit, ack: Packet, after: Vec<Delivery>) {
        self.pubacks += u32::from(matches!(ack, Packet::PubAck(_)));
        self.pubrecs += u32::from(matches!(ack, Packet::PubRec(_)));
        self.pending.push_back(PendingAck {
            commit,
            ack: Some(Box::new(ack)),
            after,
        });
    }

    /// Watches `commit` of a change no packet acknowledges: a failure ends the connection.
    /// One already durable (nothing to write) takes no slot.
    pub fn push_unacknowledged(&mut self, mut commit: Commit) {
        if commit.is_durable() {
            return;
        }
        self.pending.push_back(PendingAck {
            commit,
            ack: None,
            after: Vec::new(),
        });
    }

    /// The oldest ack if its commit has completed. Acks leave strictly in order. The last one
    /// out gives the queue's memory back: an idle connection holds no slots (a few hundred
    /// bytes each for thousands of idle clients), and a busy one allocates again cheaply.
    pub fn pop_ready(&mut self) -> Option<Released> {
        let result = self.pending.front_mut()?.commit.try_result()?;
        let released = self.pending.pop_front()?;
        if self.pending.is_empty() {
            self.pending = VecDeque::new();
        }
        let ack = released.ack.as_deref();
        self.pubacks -= u32::from(matches!(ack, Some(Packet::PubAck(_))));
        self.pubrecs -= u32::from(matches!(ack, Some(Packet::PubRec(_))));
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
        match self.pending.front_mut() {
            Some(front) => front.commit.poll_ready(cx),
            None => Poll::Pending,
        }
    }

    /// How many PUBACKs are waiting: inbound QoS 1 messages not yet acknowledged. (Inbound
    /// QoS 2 messages are counted by the session until PUBREL, whether or not their PUBREC left.)
    pub fn pending_pubacks(&self) -> usize {
        self.pubacks as usize
    }

    /// How many answers to inbound PUBLISHes (PUBACK, PUBREC) wait for their commit: messages
    /// the client cannot yet know were received.
    pub fn pending_publish_acks(&self) -> usize {
        (self.pubacks + self.pubrecs) as usize
    }

    /// How many acks of any kind wait for their commit.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no ack waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
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
        assert!(acks.pending.capacity() > 0);
        while acks.pop_ready().is_some() {}
        assert!(acks.is_empty());
        assert_eq!(
            acks.pending.capacity(),
            0,
            "slots kept by an idle connection"
        );
    }
}
