//! Ops that cancel out within one group commit, so the writer need not write them: a queue
//! entry that was enqueued, sent and acknowledged (or enqueued and discarded) before the
//! group was written never touches the disk, nor does its body if no other entry holds it.
//! This is what keeps the store's writes near zero for online subscribers that keep up.
//!
//! A chain is recognised only inside one group, never across a `DeleteSession` of its session
//! (a session created again may reuse its sequence numbers), and never across a load (`None`
//! in the list): what a load reads must be on the disk it reads.

use std::collections::HashMap;
use std::sync::Arc;

use crate::store::StoreOp;

/// For each op of `ops` (in group order; `None` for a load), whether it cancels out with
/// others of the group.
pub fn cancelled(ops: &[Option<&StoreOp>]) -> Vec<bool> {
    let mut skip = vec![false; ops.len()];
    // (client, seq) → index of its Enqueue, until the entry leaves the queue.
    let mut queued: HashMap<(&Arc<str>, u64), usize> = HashMap::new();
    // (client, packet id) → indices of the Enqueue, Inflight and Released ops of its flow.
    let mut flows: HashMap<(&Arc<str>, u16), Vec<usize>> = HashMap::new();
    for (index, op) in ops.iter().enumerate() {
        let Some(op) = op else {
            queued.clear();
            flows.clear();
            continue;
        };
        match op {
            StoreOp::Enqueue { client_id, seq, .. } => {
                queued.insert((client_id, *seq), index);
            }
            StoreOp::Discard { client_id, seq } => {
                if let Some(enqueued) = queued.remove(&(client_id, *seq)) {
                    skip[enqueued] = true;
                    skip[index] = true;
                }
            }
            StoreOp::Inflight {
                client_id,
                seq,
                packet_id,
            } => {
                if let Some(enqueued) = queued.remove(&(client_id, *seq)) {
                    flows.insert((client_id, *packet_id), vec![enqueued, index]);
                }
            }
            StoreOp::Released {
                client_id,
                packet_id,
            } => {
                if let Some(flow) = flows.get_mut(&(client_id, *packet_id)) {
                    flow.push(index);
                }
            }
            StoreOp::Acked {
                client_id,
                packet_id,
            } => {
                for step in flows.remove(&(client_id, *packet_id)).into_iter().flatten() {
                    skip[step] = true;
                    skip[index] = true;
                }
            }
            StoreOp::DeleteSession { client_id } => {
                queued.retain(|(client, _), _| *client != client_id);
                flows.retain(|(client, _), _| *client != client_id);
            }
            _ => {}
        }
    }
    skip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::{Delivery, Message};
    use crate::codec::QoS;
    use bytes::Bytes;

    fn client(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    fn enqueue(name: &str, seq: u64) -> StoreOp {
        StoreOp::Enqueue {
            client_id: client(name),
            seq,
            delivery: Delivery {
                message: Arc::new(Message::from_broker(seq, "t", Bytes::new(), false)),
                qos: QoS::ExactlyOnce,
                retain: false,
                subscription_ids: Vec::new(),
            },
        }
    }

    fn inflight(name: &str, seq: u64, packet_id: u16) -> StoreOp {
        StoreOp::Inflight {
            client_id: client(name),
            seq,
            packet_id,
        }
    }

    fn acked(name: &str, packet_id: u16) -> StoreOp {
        StoreOp::Acked {
            client_id: client(name),
            packet_id,
        }
    }

    fn released(name: &str, packet_id: u16) -> StoreOp {
        StoreOp::Released {
            client_id: client(name),
            packet_id,
        }
    }

    fn run(ops: &[StoreOp]) -> Vec<bool> {
        cancelled(&ops.iter().map(Some).collect::<Vec<_>>())
    }

    #[test]
    fn a_completed_flow_cancels_out() {
        let ops = [
            enqueue("a", 1),
            enqueue("b", 1),
            inflight("a", 1, 7),
            released("a", 7),
            acked("a", 7),
            inflight("b", 1, 7),
        ];
        assert_eq!(run(&ops), [true, false, true, true, true, false]);
    }

    #[test]
    fn a_discarded_entry_cancels_out() {
        let ops = [
            enqueue("a", 1),
            StoreOp::Discard {
                client_id: client("a"),
                seq: 1,
            },
        ];
        assert_eq!(run(&ops), [true, true]);
    }

    #[test]
    fn flows_begun_in_an_earlier_group_are_written() {
        let ops = [inflight("a", 1, 7), acked("a", 7), acked("a", 8)];
        assert_eq!(run(&ops), [false, false, false]);
    }

    #[test]
    fn chains_never_span_a_load() {
        let (enqueued, sent, done) = (enqueue("a", 1), inflight("a", 1, 7), acked("a", 7));
        let ops = [Some(&enqueued), None, Some(&sent), Some(&done)];
        assert_eq!(cancelled(&ops), [false, false, false, false]);
    }

    #[test]
    fn chains_never_span_a_session_delete() {
        let ops = [
            enqueue("a", 1),
            StoreOp::DeleteSession {
                client_id: client("a"),
            },
            inflight("a", 1, 7),
            acked("a", 7),
        ];
        assert_eq!(run(&ops), [false, false, false, false]);
    }
}
