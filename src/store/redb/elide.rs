//! Ops that cancel out within one group commit, so the writer need not write them: a queue
//! entry that was enqueued, sent and acknowledged (or enqueued and discarded) before the
//! group was written never touches the disk, nor does its body if no other entry holds it.
//! This is what keeps the store's writes near zero for online subscribers that keep up. An
//! entry queued earlier that is sent and acknowledged within one group leaves its queue
//! without an inflight row ever being written.
//!
//! A chain is recognised only inside one group, never across a `DeleteSession` of its session
//! (a session created again may reuse its sequence numbers), and never across a load (`None`
//! in the list): what a load reads must be on the disk it reads.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::StoreOp;

/// What the writer does with one op of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Apply,
    /// It cancels out with others of the group.
    Skip,
    /// An acknowledgement whose send is in the same group: queue entry `seq` of its session
    /// is simply discarded.
    DiscardInstead {
        seq: u64,
    },
}

/// One outbound flow begun in the group: the ops it is made of so far.
struct Flow {
    /// The Enqueue, if it is in the group too.
    enqueued: Option<usize>,
    /// The Inflight and any Released ops.
    steps: Vec<usize>,
    seq: u64,
}

/// For each op of `ops` (in group order; `None` for a load), what the writer does with it.
pub fn plan(ops: &[Option<&StoreOp>]) -> Vec<Plan> {
    let mut plan = vec![Plan::Apply; ops.len()];
    // (client, seq) → index of its Enqueue, until the entry leaves the queue.
    let mut queued: HashMap<(&Arc<str>, u64), usize> = HashMap::new();
    // (client, packet id) → the flow sent under it in this group.
    let mut flows: HashMap<(&Arc<str>, u16), Flow> = HashMap::new();
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
                    plan[enqueued] = Plan::Skip;
                    plan[index] = Plan::Skip;
                }
            }
            StoreOp::Inflight {
                client_id,
                seq,
                packet_id,
                ..
            } => {
                let flow = Flow {
                    enqueued: queued.remove(&(client_id, *seq)),
                    steps: vec![index],
                    seq: *seq,
                };
                flows.insert((client_id, *packet_id), flow);
            }
            StoreOp::Released {
                client_id,
                packet_id,
                ..
            } => {
                if let Some(flow) = flows.get_mut(&(client_id, *packet_id)) {
                    flow.steps.push(index);
                }
            }
            StoreOp::Acked {
                client_id,
                packet_id,
            } => {
                let Some(flow) = flows.remove(&(client_id, *packet_id)) else {
                    continue;
                };
                for step in flow.steps {
                    plan[step] = Plan::Skip;
                }
                plan[index] = match flow.enqueued {
                    Some(enqueued) => {
                        plan[enqueued] = Plan::Skip;
                        Plan::Skip
                    }
                    None => Plan::DiscardInstead { seq: flow.seq },
                };
            }
            StoreOp::DeleteSession { client_id } => {
                queued.retain(|(client, _), _| *client != client_id);
                flows.retain(|(client, _), _| *client != client_id);
            }
            _ => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use crate::model::{Delivery, Message};
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
                queued_at: 0,
            },
        }
    }

    fn inflight(name: &str, seq: u64, packet_id: u16) -> StoreOp {
        StoreOp::Inflight {
            client_id: client(name),
            seq,
            packet_id,
            sent_topic: None,
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
            order: crate::model::FIRST_RELEASE_ORDER,
        }
    }

    const A: Plan = Plan::Apply;
    const S: Plan = Plan::Skip;

    fn run(ops: &[StoreOp]) -> Vec<Plan> {
        plan(&ops.iter().map(Some).collect::<Vec<_>>())
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
        assert_eq!(run(&ops), [S, A, S, S, S, A]);
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
        assert_eq!(run(&ops), [S, S]);
    }

    #[test]
    fn an_entry_queued_earlier_sent_and_acked_now_is_discarded() {
        let ops = [
            inflight("a", 1, 7),
            released("a", 7),
            acked("a", 7),
            acked("a", 8),
        ];
        assert_eq!(run(&ops), [S, S, Plan::DiscardInstead { seq: 1 }, A]);
    }

    #[test]
    fn flows_still_open_at_the_end_of_the_group_are_written() {
        let ops = [enqueue("a", 1), inflight("a", 1, 7), released("a", 7)];
        assert_eq!(run(&ops), [A, A, A]);
    }

    #[test]
    fn chains_never_span_a_load() {
        let (enqueued, sent, done) = (enqueue("a", 1), inflight("a", 1, 7), acked("a", 7));
        let ops = [Some(&enqueued), None, Some(&sent), Some(&done)];
        assert_eq!(
            plan(&ops),
            [A, A, S, Plan::DiscardInstead { seq: 1 }],
            "the entry is written before the load; its flow after it still collapses"
        );
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
        assert_eq!(
            run(&ops),
            [A, A, S, Plan::DiscardInstead { seq: 1 }],
            "the flow after the delete is its own"
        );
    }
}
