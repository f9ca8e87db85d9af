//! Checks of the tool's own bookkeeping (stamps, sequence and loss accounting, packet
//! identifiers, pacing, the end-to-end window, percentiles, the durable scenarios' measured
//! phase and `$SYS` values), run when the tool is started
//! without `--scenario`, which is how `cargo test --all-targets` and plain `cargo bench` run
//! this harness-less target. A wrong count here would make every benchmark lie.

use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use crate::broker_proc::{cpu_ticks_of, sectors_written_of};
use crate::durable::whole_phase;
use crate::progress::Progress;
use crate::publisher::{due_time, InflightTable, PublisherReport, Slot};
use crate::scenarios::Percentiles;
use crate::stamp::{Stamp, STAMP_LEN};
use crate::subscriber::SequenceCheck;
use crate::sys_stats::record;

/// How many checks [`failures`] runs.
pub const CHECKS: usize = 13;

/// A named check: `true` when it holds.
type Check = (&'static str, fn() -> bool);

/// Runs every check; the names of those that failed.
pub fn failures() -> Vec<&'static str> {
    let checks: [Check; CHECKS] = [
        ("stamp survives a payload round trip", stamp_round_trip),
        (
            "CPU ticks are read past a command name with spaces and parentheses",
            cpu_ticks_past_odd_name,
        ),
        (
            "a block device's sectors written are its stat line's seventh field",
            sectors_written_field,
        ),
        (
            "a payload shorter than a stamp is refused",
            short_payload_refused,
        ),
        (
            "sequence check counts gaps as lost and repeats as behind",
            sequence_accounting,
        ),
        (
            "packet identifiers skip 0 and ids in use",
            packet_ids_skip_zero_and_busy,
        ),
        (
            "acks move only from the expected state",
            acks_need_expected_state,
        ),
        ("rate pacing spaces messages evenly", rate_pacing),
        (
            "the end-to-end window opens as messages arrive",
            window_opens_on_receipt,
        ),
        (
            "percentiles use the nearest rank",
            percentiles_by_nearest_rank,
        ),
        (
            "a counted run spans first send to last acknowledgement",
            whole_phase_spans_sends_to_acks,
        ),
        (
            "$SYS store values are read by topic, others ignored",
            sys_values_by_topic,
        ),
        (
            "a scrambled order names every client once",
            scrambled_order_is_a_permutation,
        ),
    ];
    checks
        .iter()
        .filter(|(_, check)| !check())
        .map(|(name, _)| *name)
        .collect()
}

fn stamp_round_trip() -> bool {
    let stamp = Stamp {
        publisher: 7,
        sequence: u64::MAX - 1,
        sent_nanos: 123_456_789,
    };
    let mut scratch = BytesMut::new();
    let payload = stamp.payload(64, &mut scratch);
    payload.len() == 64 && Stamp::read(&payload) == Some(stamp)
}

fn short_payload_refused() -> bool {
    Stamp::read(&[0; STAMP_LEN - 1]).is_none()
}

fn sequence_accounting() -> bool {
    let mut check = SequenceCheck::default();
    for sequence in [0, 1, 3, 2, 3, 4] {
        check.observe(sequence);
    }
    // 0, 1, 3, 4 arrive in order; 2 and the second 3 arrive behind.
    check.received == 4 && check.behind == 2
}

fn packet_ids_skip_zero_and_busy() -> bool {
    let mut table = InflightTable::new();
    let first = table.allocate(Slot::AwaitingPubAck);
    let second = table.allocate(Slot::AwaitingPubAck);
    let mut last = second;
    for _ in 3..=u16::MAX {
        last = table.allocate(Slot::AwaitingPubAck);
    }
    let freed = table.advance(1, Slot::AwaitingPubAck, Slot::Free);
    let wrapped = table.allocate(Slot::AwaitingPubRec);
    let exhausted = table.allocate(Slot::AwaitingPubRec);
    first == Some(1)
        && second == Some(2)
        && last == Some(u16::MAX)
        && freed
        && wrapped == Some(1)
        && exhausted.is_none()
        && table.in_use == usize::from(u16::MAX)
}

fn acks_need_expected_state() -> bool {
    let mut table = InflightTable::new();
    let Some(id) = table.allocate(Slot::AwaitingPubRec) else {
        return false;
    };
    let puback_refused = !table.advance(id, Slot::AwaitingPubAck, Slot::Free);
    let pubrec = table.advance(id, Slot::AwaitingPubRec, Slot::AwaitingPubComp);
    let still_in_flight = table.in_use == 1;
    let pubcomp = table.advance(id, Slot::AwaitingPubComp, Slot::Free);
    let unknown_refused = !table.advance(id, Slot::AwaitingPubComp, Slot::Free);
    puback_refused && pubrec && still_in_flight && pubcomp && unknown_refused && table.in_use == 0
}

fn rate_pacing() -> bool {
    let start = Instant::now();
    due_time(start, 1000, 0) == start
        && due_time(start, 1000, 1) == start + Duration::from_millis(1)
        && due_time(start, 3, 3) == start + Duration::from_secs(1)
}

fn window_opens_on_receipt() -> bool {
    let progress = Progress::new(2, 2);
    let filled = progress.try_reserve() && progress.try_reserve();
    let shut = !progress.try_reserve();
    progress.set_received(0, 2);
    let still_shut = !progress.try_reserve();
    progress.set_received(1, 1);
    let reopened = progress.try_reserve();
    filled && shut && still_shut && reopened && progress.total_received() == 3
}

fn percentiles_by_nearest_rank() -> bool {
    let sorted: Vec<u64> = (1..=1000).collect();
    let expected = Percentiles {
        p50: 500,
        p90: 900,
        p99: 990,
        p999: 999,
        max: 1000,
    };
    let single = Percentiles {
        p50: 7,
        p90: 7,
        p99: 7,
        p999: 7,
        max: 7,
    };
    Percentiles::of(&sorted) == Some(expected)
        && Percentiles::of(&[7]) == Some(single)
        && Percentiles::of(&[]).is_none()
}

fn whole_phase_spans_sends_to_acks() -> bool {
    let report = |index, acks: Vec<(u64, u64)>| PublisherReport {
        index,
        sent: acks.len() as u64,
        stalls: 0,
        acks,
    };
    let publishers = [
        report(0, vec![(100, 50), (120, 10)]),
        report(1, vec![(90, 5), (300, 400)]),
    ];
    whole_phase(&publishers) == (90, 700) && whole_phase(&[]) == (0, 0)
}

fn sys_values_by_topic() -> bool {
    let mut values = [None; 4];
    let read = record(&mut values, "$SYS/broker/store/commits", b"12").is_ok()
        && record(&mut values, "$SYS/broker/store/bytes_written", b"4096").is_ok()
        && record(&mut values, "$SYS/broker/messages/queued", b" 7 ").is_ok()
        && record(&mut values, "$SYS/broker/store/messages_elided", b"30").is_ok()
        && record(&mut values, "$SYS/broker/uptime", b"3 seconds").is_ok();
    let garbled = record(&mut values, "$SYS/broker/store/commits", b"many").is_err();
    read && garbled && values == [Some(12), Some(4096), Some(7), Some(30)]
}

fn scrambled_order_is_a_permutation() -> bool {
    [1u32, 2, 3, 10, 100, 9_900, 10_000, 65_536]
        .iter()
        .all(|&count| {
            let mut seen = vec![false; count as usize];
            for index in 0..count {
                let slot = &mut seen[crate::run::scrambled(index, count) as usize];
                if *slot {
                    return false;
                }
                *slot = true;
            }
            count < 3 || (0..count).any(|index| crate::run::scrambled(index, count) != index)
        })
}

fn sectors_written_field() -> bool {
    // reads merged sectors ticks, writes merged sectors ticks, in flight, ...
    let stat = "    2731        0   144906     1052   197224   112036 12897208   239868        0";
    sectors_written_of(stat) == Some(12_897_208) && sectors_written_of("1 2 3").is_none()
}

fn cpu_ticks_past_odd_name() -> bool {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
    // stime ...
    let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 10 0 0 0 17 25 0 0 20 0 3";
    cpu_ticks_of(stat) == Some(42) && cpu_ticks_of("4242 (cut) S 1 2").is_none()
}
