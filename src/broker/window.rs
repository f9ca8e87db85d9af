//! A session's outbound inflight window: the QoS 1 and 2 messages sent and not yet
//! acknowledged, in the order they are resent after a reconnect, and the packet identifiers
//! they hold.
//!
//! That order is two: the entries awaiting PUBCOMP in the order their PUBRECs came
//! [MQTT-4.6.0-4] (a PUBREC moves its entry behind those released before it,
//! [`Window::release`]), then those awaiting PUBACK or PUBREC in the order their PUBLISHes were
//! sent [MQTT-4.6.0-1]. The spec orders each kind among itself only; PUBRELs go first so that
//! a receiver which counts its open QoS 2 flows against its Receive Maximum (Mosquitto does
//! when a session resumes) closes them before the PUBLISHes resent come.
//!
//! Handing out a packet identifier asks whether one is in use [MQTT-2.3.1-2]. A window of the
//! usual size (the default Receive Maximum cap is 32) answers by looking through its entries.
//! A window allowed thousands of messages (a bridge to a server that announces no Receive
//! Maximum, with `max_inflight` raised for a long round trip) would then look through
//! thousands for every message sent; past [`LIST_LIMIT`] entries it also keeps one bit per
//! identifier (8 KiB, given back when the window empties), and the answer stays one lookup.

use std::collections::VecDeque;

use crate::model::{Inflight, OutboundState, FIRST_RELEASE_ORDER};

/// Most entries looked through to find whether an identifier is in use; a larger window keeps
/// its identifiers in a bitmap.
const LIST_LIMIT: usize = 64;

/// Words of the bitmap: one bit for each of the 65,536 identifiers.
const BITMAP_WORDS: usize = (u16::MAX as usize + 1) / 64;

/// The window: its entries in resend order, and once it has held more than [`LIST_LIMIT`] of
/// them (until it empties), which identifiers they hold.
#[derive(Debug, Default)]
pub struct Window(Form);

/// The large form is boxed, so a session's window costs the same few words as a bare list
/// (sessions are many, and most hold nothing in flight).
#[derive(Debug)]
enum Form {
    Listed(VecDeque<Inflight>),
    Indexed(Box<IndexedWindow>),
}

/// A large window: its entries, and one bit per identifier in use.
#[derive(Debug)]
struct IndexedWindow {
    entries: VecDeque<Inflight>,
    in_use: [u64; BITMAP_WORDS],
}

impl Default for Form {
    fn default() -> Form {
        Form::Listed(VecDeque::new())
    }
}

impl Window {
    /// A window of these entries, in resend order (released ones are moved before the others
    /// if they are not there already, each kind keeping its order).
    pub fn restored(entries: impl IntoIterator<Item = Inflight>) -> Window {
        let mut entries: VecDeque<Inflight> = entries.into_iter().collect();
        entries
            .make_contiguous()
            .sort_by_key(|entry| entry.state != OutboundState::AwaitingPubComp);
        Window::of(entries)
    }

    /// Adds a message just sent (awaiting PUBACK or PUBREC), behind every other.
    pub fn push(&mut self, entry: Inflight) {
        debug_assert_ne!(entry.state, OutboundState::AwaitingPubComp);
        match &mut self.0 {
            Form::Listed(entries) => {
                entries.push_back(entry);
                if entries.len() > LIST_LIMIT {
                    *self = Window::of(std::mem::take(entries));
                }
            }
            Form::Indexed(window) => {
                set(&mut window.in_use, entry.packet_id);
                window.entries.push_back(entry);
            }
        }
    }

    /// PUBREC came for the entry at `position` (from [`Window::position`]): it awaits
    /// PUBCOMP, behind every entry released before it and before those not released, under
    /// the same identifier. Returns its release order (see [`Inflight::release_order`]).
    pub fn release(&mut self, position: usize) -> Option<u64> {
        let entries = self.entries_mut();
        let mut entry = entries.remove(position)?;
        let released = released_count(entries);
        let order = match released.checked_sub(1) {
            Some(last) => entries[last].release_order + 1,
            None => FIRST_RELEASE_ORDER,
        }
        .max(FIRST_RELEASE_ORDER);
        entry.state = OutboundState::AwaitingPubComp;
        entry.release_order = order;
        entries.insert(released, entry);
        Some(order)
    }

    /// Takes out the entry at `position` (from [`Window::position`]).
    pub fn remove(&mut self, position: usize) -> Option<Inflight> {
        match &mut self.0 {
            Form::Listed(entries) => entries.remove(position),
            Form::Indexed(window) => {
                let removed = window.entries.remove(position)?;
                clear(&mut window.in_use, removed.packet_id);
                if window.entries.is_empty() {
                    *self = Window::default();
                }
                Some(removed)
            }
        }
    }

    /// Keeps only the entries `keep` says yes to, in order.
    pub fn retain(&mut self, keep: impl FnMut(&Inflight) -> bool) {
        let mut entries = std::mem::take(self.entries_mut());
        entries.retain(keep);
        *self = Window::of(entries);
    }

    /// Where the entry with `packet_id` in `state` is. One awaiting PUBCOMP is looked for
    /// among the released entries only, at the front: a large window of QoS 2 messages is not
    /// looked through for every PUBCOMP.
    pub fn position(&self, packet_id: u16, state: OutboundState) -> Option<usize> {
        let mut entries = self.iter();
        if state == OutboundState::AwaitingPubComp {
            return entries
                .take_while(|entry| entry.state == OutboundState::AwaitingPubComp)
                .position(|entry| entry.packet_id == packet_id);
        }
        entries.position(|entry| entry.packet_id == packet_id && entry.state == state)
    }

    /// Whether an entry holds `packet_id`.
    pub fn holds(&self, packet_id: u16) -> bool {
        match &self.0 {
            Form::Listed(entries) => entries.iter().any(|entry| entry.packet_id == packet_id),
            Form::Indexed(window) => {
                window.in_use[usize::from(packet_id) / 64] & bit(packet_id) != 0
            }
        }
    }

    /// The entries, in resend order.
    pub fn iter(&self) -> impl Iterator<Item = &Inflight> {
        self.entries().iter()
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// Entries the window's buffer holds room for.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.entries().capacity()
    }

    /// An empty window gives its buffer back (it comes back with the next message).
    pub fn shed_idle_memory(&mut self) {
        if self.is_empty() {
            *self = Window::default();
        }
    }

    /// The window of `entries`, indexed if there are more than a look through is worth.
    fn of(entries: VecDeque<Inflight>) -> Window {
        if entries.len() <= LIST_LIMIT {
            return Window(Form::Listed(entries));
        }
        let mut in_use = [0u64; BITMAP_WORDS];
        for entry in &entries {
            set(&mut in_use, entry.packet_id);
        }
        Window(Form::Indexed(Box::new(IndexedWindow { entries, in_use })))
    }

    fn entries(&self) -> &VecDeque<Inflight> {
        match &self.0 {
            Form::Listed(entries) => entries,
            Form::Indexed(window) => &window.entries,
        }
    }

    fn entries_mut(&mut self) -> &mut VecDeque<Inflight> {
        match &mut self.0 {
            Form::Listed(entries) => entries,
            Form::Indexed(window) => &mut window.entries,
        }
    }
}

/// How many entries at the front await PUBCOMP: the released ones.
fn released_count(entries: &VecDeque<Inflight>) -> usize {
    entries
        .iter()
        .take_while(|entry| entry.state == OutboundState::AwaitingPubComp)
        .count()
}

fn bit(packet_id: u16) -> u64 {
    1 << (packet_id % 64)
}

fn set(bits: &mut [u64; BITMAP_WORDS], packet_id: u16) {
    bits[usize::from(packet_id) / 64] |= bit(packet_id);
}

fn clear(bits: &mut [u64; BITMAP_WORDS], packet_id: u16) {
    bits[usize::from(packet_id) / 64] &= !bit(packet_id);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::codec::QoS;
    use crate::model::{Delivery, Message};

    fn entry(packet_id: u16) -> Inflight {
        Inflight {
            packet_id,
            delivery: Delivery {
                message: Arc::new(Message::from_broker(1, "t", Bytes::new(), false)),
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Vec::new(),
                queued_at: 0,
            },
            state: OutboundState::AwaitingPubAck,
            release_order: 0,
            sent_topic: None,
        }
    }

    /// Whatever the window's size, and through every way entries come and go, `holds` says
    /// exactly which identifiers are in use: the bitmap is built, kept and dropped in step.
    #[test]
    fn holds_answers_for_small_and_large_windows_alike() {
        let mut window = Window::default();
        let mut expected = std::collections::BTreeSet::new();
        let check = |window: &Window, expected: &std::collections::BTreeSet<u16>, when: &str| {
            for packet_id in [1, 2, 3, 64, 65, 100, 500, 4_095, 4_096, 65_535] {
                assert_eq!(
                    window.holds(packet_id),
                    expected.contains(&packet_id),
                    "identifier {packet_id} {when} ({} entries)",
                    window.len()
                );
            }
        };
        for packet_id in (1..=500).chain([4_095, 4_096, 65_535]) {
            window.push(entry(packet_id));
            expected.insert(packet_id);
        }
        assert!(
            matches!(window.0, Form::Indexed(_)),
            "a large window keeps a bitmap"
        );
        check(&window, &expected, "after sending");
        for packet_id in [1, 65, 4_096] {
            let position = window
                .position(packet_id, OutboundState::AwaitingPubAck)
                .expect("in the window");
            assert_eq!(window.remove(position).unwrap().packet_id, packet_id);
            expected.remove(&packet_id);
        }
        check(&window, &expected, "after acknowledgements out of order");
        window.retain(|entry| entry.packet_id % 2 == 0);
        expected.retain(|packet_id| packet_id % 2 == 0);
        check(&window, &expected, "after keeping the even ones");
        window.retain(|entry| entry.packet_id < 40);
        expected.retain(|packet_id| *packet_id < 40);
        assert!(
            matches!(window.0, Form::Listed(_)),
            "a small window looks through its list"
        );
        check(&window, &expected, "once small again");
        let restored = Window::restored((1..=100).map(entry));
        assert!(matches!(restored.0, Form::Indexed(_)));
        assert!(restored.holds(100) && !restored.holds(101));
    }

    /// The bitmap goes with the last entry, and an idle window holds no buffer.
    #[test]
    fn an_emptied_window_gives_its_memory_back() {
        let mut window = Window::restored((1..=200).map(entry));
        while !window.is_empty() {
            window.remove(0);
        }
        assert!(matches!(window.0, Form::Listed(_)));
        window.shed_idle_memory();
        assert_eq!(window.capacity(), 0);
    }

    fn qos2(packet_id: u16) -> Inflight {
        Inflight {
            state: OutboundState::AwaitingPubRec,
            ..entry(packet_id)
        }
    }

    /// What the window resends, in order: (identifier, awaiting PUBCOMP).
    fn resend_order(window: &Window) -> Vec<(u16, bool)> {
        window
            .iter()
            .map(|entry| {
                (
                    entry.packet_id,
                    entry.state == OutboundState::AwaitingPubComp,
                )
            })
            .collect()
    }

    fn receive_pubrec(window: &mut Window, packet_id: u16) -> u64 {
        let position = window
            .position(packet_id, OutboundState::AwaitingPubRec)
            .expect("awaiting PUBREC");
        window.release(position).expect("in the window")
    }

    /// [MQTT-4.6.0-4] PUBRELs are resent in the order their PUBRECs came, and [MQTT-4.6.0-1]
    /// PUBLISHes in the order they were sent, whatever order the PUBRECs took and whatever was
    /// sent meanwhile; release orders rise with the PUBRECs, and start again once no entry is
    /// released.
    #[test]
    fn pubrels_follow_the_order_of_their_pubrecs_in_both_forms() {
        for count in [5u16, 300] {
            let mut window = Window::default();
            for packet_id in 1..=count {
                window.push(qos2(packet_id));
            }
            let first = receive_pubrec(&mut window, 3);
            assert_eq!(first, FIRST_RELEASE_ORDER);
            assert_eq!(receive_pubrec(&mut window, 1), first + 1);
            window.push(qos2(count + 1));
            assert_eq!(receive_pubrec(&mut window, count), first + 2);
            let mut expected = vec![(3, true), (1, true), (count, true)];
            expected.extend(
                [2].into_iter()
                    .chain(4..count)
                    .chain([count + 1])
                    .map(|id| (id, false)),
            );
            assert_eq!(resend_order(&window), expected, "{count} entries");
            assert_eq!(window.position(3, OutboundState::AwaitingPubRec), None);
            assert_eq!(window.position(2, OutboundState::AwaitingPubComp), None);
            for (packet_id, state) in [
                (count + 1, OutboundState::AwaitingPubRec),
                (1, OutboundState::AwaitingPubComp),
                (3, OutboundState::AwaitingPubComp),
                (2, OutboundState::AwaitingPubRec),
            ] {
                let position = window.position(packet_id, state).expect("in the window");
                assert_eq!(window.remove(position).unwrap().packet_id, packet_id);
                assert!(!window.holds(packet_id), "{packet_id} given back");
            }
            assert!(window.holds(count), "a released entry keeps its identifier");
            assert_eq!(receive_pubrec(&mut window, 4), first + 3);
            window.retain(|entry| entry.state == OutboundState::AwaitingPubRec);
            window.push(qos2(count + 2));
            assert_eq!(receive_pubrec(&mut window, count + 2), FIRST_RELEASE_ORDER);
        }
    }

    /// An entry released before release orders existed (its order a queue sequence number)
    /// is restored before those awaiting PUBREC, and the next one is released after it.
    #[test]
    fn a_release_follows_one_restored_with_a_sequence_number() {
        let old = Inflight {
            state: OutboundState::AwaitingPubComp,
            release_order: 7,
            ..entry(9)
        };
        let mut window = Window::restored([qos2(10), old, qos2(11)]);
        assert_eq!(resend_order(&window), [(9, true), (10, false), (11, false)]);
        assert_eq!(receive_pubrec(&mut window, 11), FIRST_RELEASE_ORDER);
        assert_eq!(resend_order(&window), [(9, true), (11, true), (10, false)]);
        assert_eq!(window.position(11, OutboundState::AwaitingPubComp), Some(1));
    }

    /// One thing that happens to a window in [`a_window_follows_its_model`].
    #[derive(Debug, Clone)]
    enum Step {
        /// A QoS 1 (`false`) or QoS 2 (`true`) message is sent under the lowest free identifier.
        Send(bool),
        /// PUBACK for the nth entry awaiting one.
        PubAck(usize),
        /// PUBREC for the nth entry awaiting one.
        PubRec(usize),
        /// PUBCOMP for the nth released entry.
        PubComp(usize),
        /// The entries whose identifier is a multiple of this go (an upstream lost its session).
        Drop(u16),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            8 => any::<bool>().prop_map(Step::Send),
            1 => (0..200usize).prop_map(Step::PubAck),
            2 => (0..200usize).prop_map(Step::PubRec),
            1 => (0..200usize).prop_map(Step::PubComp),
            1 => (3..40u16).prop_map(Step::Drop),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever happens, in both forms (the window crosses [`LIST_LIMIT`] both ways): the
        /// window holds the released entries in PUBREC order with rising release orders, then
        /// those awaiting PUBACK or PUBREC in send order [MQTT-4.6.0-4, 4.6.0-1]; `position`
        /// finds each entry and `holds` knows exactly the identifiers in use [MQTT-2.3.1-2].
        #[test]
        fn a_window_follows_its_model(steps in proptest::collection::vec(step(), 1..500)) {
            let mut window = Window::default();
            // Identifiers released, in PUBREC order; then (identifier, state), in send order.
            let mut sent: Vec<(u16, OutboundState)> = Vec::new();
            let mut released: Vec<u16> = Vec::new();
            for step in steps {
                let nth = |states: &[(u16, OutboundState)], state, n: usize| {
                    let matching: Vec<u16> = states
                        .iter()
                        .filter(|(_, s)| *s == state)
                        .map(|(id, _)| *id)
                        .collect();
                    (!matching.is_empty()).then(|| matching[n % matching.len()])
                };
                match step {
                    Step::Send(qos2) => {
                        let Some(id) = (1..=300u16).find(|id| !window.holds(*id)) else {
                            continue;
                        };
                        let state = if qos2 {
                            OutboundState::AwaitingPubRec
                        } else {
                            OutboundState::AwaitingPubAck
                        };
                        window.push(Inflight { state, ..entry(id) });
                        sent.push((id, state));
                    }
                    Step::PubAck(n) => {
                        let Some(id) = nth(&sent, OutboundState::AwaitingPubAck, n) else {
                            continue;
                        };
                        let at = window.position(id, OutboundState::AwaitingPubAck).unwrap();
                        window.remove(at);
                        sent.retain(|(sent_id, _)| *sent_id != id);
                    }
                    Step::PubRec(n) => {
                        let Some(id) = nth(&sent, OutboundState::AwaitingPubRec, n) else {
                            continue;
                        };
                        receive_pubrec(&mut window, id);
                        sent.retain(|(sent_id, _)| *sent_id != id);
                        released.push(id);
                    }
                    Step::PubComp(n) => {
                        if released.is_empty() {
                            continue;
                        }
                        let id = released.remove(n % released.len());
                        let at = window.position(id, OutboundState::AwaitingPubComp).unwrap();
                        proptest::prop_assert_eq!(window.remove(at).unwrap().packet_id, id);
                    }
                    Step::Drop(every) => {
                        window.retain(|entry| entry.packet_id % every != 0);
                        sent.retain(|(id, _)| id % every != 0);
                        released.retain(|id| id % every != 0);
                    }
                }
                let expected: Vec<(u16, OutboundState)> = released
                    .iter()
                    .map(|id| (*id, OutboundState::AwaitingPubComp))
                    .chain(sent.iter().copied())
                    .collect();
                let actual: Vec<(u16, OutboundState)> =
                    window.iter().map(|entry| (entry.packet_id, entry.state)).collect();
                proptest::prop_assert_eq!(&actual, &expected);
                let orders: Vec<u64> = window
                    .iter()
                    .filter(|entry| entry.state == OutboundState::AwaitingPubComp)
                    .map(|entry| entry.release_order)
                    .collect();
                proptest::prop_assert!(orders.windows(2).all(|pair| pair[0] < pair[1]));
                proptest::prop_assert!(orders.iter().all(|order| *order >= FIRST_RELEASE_ORDER));
                for (index, (id, state)) in expected.iter().enumerate() {
                    proptest::prop_assert_eq!(window.position(*id, *state), Some(index));
                }
                for id in 1..=300u16 {
                    let in_use = expected.iter().any(|(used, _)| *used == id);
                    proptest::prop_assert_eq!(window.holds(id), in_use, "identifier {}", id);
                }
            }
        }
    }
}
