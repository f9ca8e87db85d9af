//! A session's queue of messages waiting to be sent: bounded by messages, bytes and a budget
//! shared by every queue, and held mostly on disk.
//!
//! Entries the store keeps ("stored": every QoS 1/2 entry of a persistent session, and any
//! entry queued behind stored ones) carry a per-session sequence number; they leave the queue
//! only from the front, so a session's stored entries are always one contiguous range of
//! sequence numbers. Only the oldest entries are held in memory (the *head*, at most
//! [`WINDOW`] entries and none added while the session is offline, unless the queue is told
//! to hold more: a bridge's, [`MessageQueue::hold_in_memory`]); the newer ones are *spilled*:
//! in the store only, remembered here by their
//! size and when they were queued (8 bytes each, so the age of the oldest entry is known
//! without reading it back). The connection reads spilled entries
//! back in batches ([`LoadRequest`]) as the head drains, so memory does not grow with the
//! number of queued messages. Entries the store does not keep (QoS 0 for an online session,
//! every entry of a session that ends with its connection) are always in the head.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::codec::QoS;
use crate::config::QueueFullPolicy;

use crate::model::{entry_size, Delivery, StoreOp, StoredEntry};

/// Most entries a queue holds in memory unless it is told to hold more
/// ([`MessageQueue::hold_in_memory`]); a load refills the head to this size once it has
/// drained to half of it.
pub const WINDOW: usize = 256;

/// Most entries one load reads back: the store's one thread reads them between commits, and
/// a longer read would hold up every other session's commit.
pub const LOAD_BATCH: usize = 2048;

/// What an entry in memory costs besides its topic and payload, as a queue held by memory
/// ([`MessageQueue::hold_in_memory`]) counts it: the entry, its delivery and its message
/// (about 300 bytes an entry of 71 bytes of topic and payload, measured over a bridge's
/// backlog).
pub const ENTRY_OVERHEAD: u64 = 256;

/// The bounds every queue applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most entries per session.
    pub max_messages: usize,
    /// Most bytes (topic + payload of each entry) per session.
    pub max_bytes: u64,
    /// What happens to a message that does not fit.
    pub policy: QueueFullPolicy,
    /// Whether QoS 0 messages are queued for an offline session.
    pub queue_qos0_offline: bool,
}

/// The one byte budget every queue of a broker draws from.
#[derive(Debug)]
pub struct QueueBudget {
    /// Bytes queued in every session together.
    used: AtomicU64,
    /// Most bytes queued in every session together (a reload may change it).
    limit: AtomicU64,
}

impl QueueBudget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: u64) -> Arc<QueueBudget> {
        Arc::new(QueueBudget {
            used: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
        })
    }

    /// Most bytes queued in every session together.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// A new limit, for the messages queued from now on: bytes queued already stay, also
    /// above it.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes queued in every session together.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// One entry held in memory.
#[derive(Debug)]
pub struct Queued {
    /// The entry's place in the store, if the store keeps it.
    pub seq: Option<u64>,
    /// Bytes it counts for.
    size: u32,
    pub delivery: Delivery,
}

/// What the queue remembers of an entry held in the store only.
#[derive(Debug, Clone, Copy)]
struct Spilled {
    /// Bytes it counts for.
    size: u32,
    /// When it was queued ([`crate::model::unix_seconds`]).
    queued_at: u32,
}

/// What happened to an offered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offered {
    /// The message is in the queue.
    pub queued: bool,
    /// Messages lost to the bounds: older ones dropped for it, or itself refused.
    pub dropped: u64,
}

/// A request to read spilled entries `from..to` back from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadRequest {
    /// Identifies the request: a reply to an older one is ignored.
    pub ticket: u64,
    pub from: u64,
    pub to: u64,
}

/// A session's queue. See the module documentation. Empty, it costs its session 32 bytes:
/// most sessions of idle devices hold nothing, so the bookkeeping of a queue in use (about
/// 140 bytes and the head's buffer) is boxed only while the queue is used, and given back
/// when it is empty again at a disconnect.
#[derive(Debug)]
pub struct MessageQueue {
    /// The queue while it holds anything (or a load, a burst of drops, an order to hold its
    /// head offline); `None` while it is empty.
    in_use: Option<Box<QueueInUse>>,
    /// The budget it draws from.
    budget: Arc<QueueBudget>,
    /// While it is empty: the sequence number of the next stored entry, and the ticket of
    /// the next load (never reused, so a reply to a load of an earlier use is ignored).
    next_seq: u64,
    next_ticket: u64,
}

impl MessageQueue {
    /// An empty queue drawing from `budget`.
    pub fn new(budget: Arc<QueueBudget>) -> MessageQueue {
        MessageQueue {
            in_use: None,
            budget,
            next_seq: 0,
            next_ticket: 0,
        }
    }

    /// The queue of a session read back from the store: every entry spilled. `entries` are
    /// ascending by sequence number; `next_seq` is above every sequence number the session
    /// used (its inflight entries' too). A missing number becomes a placeholder that the first
    /// load reports as lost (counted as queued when the entry after it was).
    pub fn restored(
        budget: Arc<QueueBudget>,
        entries: &[StoredEntry],
        next_seq: u64,
    ) -> MessageQueue {
        let in_use = QueueInUse::restored(budget.clone(), entries, next_seq);
        let mut queue = MessageQueue::new(budget);
        queue.in_use = Some(Box::new(in_use));
        queue.box_only_if_used();
        queue
    }

    /// The queue in use, boxed now if it was empty.
    fn in_use(&mut self) -> &mut QueueInUse {
        let (budget, next_seq, next_ticket) = (&self.budget, self.next_seq, self.next_ticket);
        self.in_use
            .get_or_insert_with(|| Box::new(QueueInUse::new(budget.clone(), next_seq, next_ticket)))
    }

    /// Gives the box back if the queue holds nothing, keeping its numbering.
    pub fn box_only_if_used(&mut self) {
        if let Some(queue) = self.in_use.take_if(|queue| queue.is_idle()) {
            self.next_seq = queue.next_seq;
            self.next_ticket = queue.next_ticket;
        }
    }

    /// Draws from `budget` from now on; the bytes already queued move over to it.
    pub fn move_to_budget(&mut self, budget: Arc<QueueBudget>) {
        if let Some(queue) = &mut self.in_use {
            queue.move_to_budget(budget.clone());
        }
        self.budget = budget;
    }

    /// Holds entries in memory, as well as in the store, up to `bytes` of memory (each
    /// entry's topic and payload plus [`ENTRY_OVERHEAD`]; at least one entry), also while the
    /// session is offline: a bridge's backlog, queued while its uplink is down, then drains
    /// from memory instead of being read back. Entries beyond are spilled as usual; a smaller
    /// limit than the head holds applies as the head drains.
    pub fn hold_in_memory(&mut self, bytes: u64) {
        self.in_use().hold_in_memory(bytes);
    }

    /// Entries queued, in memory and spilled.
    pub fn len(&self) -> usize {
        self.in_use.as_ref().map_or(0, |queue| queue.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes queued.
    pub fn bytes(&self) -> u64 {
        self.in_use.as_ref().map_or(0, |queue| queue.bytes)
    }

    /// Entries held in memory.
    pub fn in_memory(&self) -> usize {
        self.in_use.as_ref().map_or(0, |queue| queue.head.len())
    }

    /// The sequence number the next stored entry gets.
    #[cfg(test)]
    pub fn next_seq(&self) -> u64 {
        self.in_use
            .as_ref()
            .map_or(self.next_seq, |queue| queue.next_seq)
    }

    /// When the oldest entry, in memory or spilled, was queued ([`crate::model::unix_seconds`]).
    pub fn oldest_queued_at(&self) -> Option<u32> {
        self.in_use.as_ref()?.oldest_queued_at()
    }

    /// The oldest entry in memory.
    pub fn front(&self) -> Option<&Queued> {
        self.in_use.as_ref()?.head.front()
    }

    /// Takes the oldest entry in memory; the caller records what became of a stored one.
    pub fn pop_front(&mut self, client_id: &str) -> Option<Queued> {
        self.in_use.as_mut()?.pop_front(client_id)
    }

    /// Offers a delivery: queues it within `limits`, dropping older entries or refusing it as
    /// the policy says. A `persistent` session's QoS 1/2 entries (and, once anything is
    /// spilled, every entry) are stored with an `Enqueue` op in `ops`; an `online` session
    /// keeps up to its head limit in memory.
    pub fn offer(
        &mut self,
        delivery: Delivery,
        client_id: &Arc<str>,
        placement: Placement,
        limits: &QueueLimits,
        ops: &mut Vec<StoreOp>,
    ) -> Offered {
        let Placement { persistent, online } = placement;
        let mut offered = Offered::default();
        if !online && delivery.qos == QoS::AtMostOnce && !limits.queue_qos0_offline {
            return offered; // Not a loss: QoS 0 is not kept for offline sessions by default.
        }
        // Boxed from here on: a message refused keeps the box for its burst of drops.
        let queue = self.in_use();
        let size = entry_size(&delivery);
        // A message that would not fit even in an empty queue is refused alone: dropping the
        // queued ones for it would lose them for nothing.
        let fits_at_all = queue.fits_once_emptied(size, limits);
        while !queue.has_room(size, limits) {
            let can_drop =
                limits.policy == QueueFullPolicy::DropOldest && !queue.is_empty() && fits_at_all;
            if !can_drop {
                offered.dropped += 1;
                queue.note_drop(client_id, limits, size, fits_at_all);
                return offered;
            }
            queue.note_drop(client_id, limits, size, fits_at_all);
            queue.drop_oldest(client_id, ops);
            offered.dropped += 1;
        }
        let spilling = !queue.spilled.is_empty();
        let stored = spilling || (persistent && (delivery.qos != QoS::AtMostOnce || !online));
        let in_memory =
            !stored || (!spilling && (online || queue.held_offline) && queue.head_has_room(size));
        queue.add_bytes(size);
        offered.queued = true;
        if !stored {
            queue.push_head(Queued {
                seq: None,
                size,
                delivery,
            });
            return offered;
        }
        let seq = queue.next_seq;
        queue.next_seq += 1;
        if in_memory {
            queue.spill_from = queue.next_seq;
            ops.push(StoreOp::Enqueue {
                client_id: client_id.clone(),
                seq,
                delivery: delivery.clone(),
            });
            queue.push_head(Queued {
                seq: Some(seq),
                size,
                delivery,
            });
        } else {
            queue.spilled.push_back(Spilled {
                size,
                queued_at: delivery.queued_at,
            });
            ops.push(StoreOp::Enqueue {
                client_id: client_id.clone(),
                seq,
                delivery,
            });
        }
        offered
    }

    /// The load to start now, if the head has drained to half its limits, entries are
    /// spilled and no load is under way: up to [`LOAD_BATCH`] entries towards refilling the
    /// head (at least one). Marks it under way.
    pub fn load_request(&mut self) -> Option<LoadRequest> {
        self.in_use.as_mut()?.load_request()
    }

    /// Moves the entries a load read back (ascending sequence numbers) into the head. Entries
    /// dropped since the request are skipped; entries of the range the store did not have are
    /// counted as lost and returned. A reply to a request that is no longer current is ignored.
    pub fn apply_load(&mut self, request: LoadRequest, entries: Vec<(u64, Delivery)>) -> u64 {
        self.in_use
            .as_mut()
            .map_or(0, |queue| queue.apply_load(request, entries))
    }

    /// The session lost its connection: any load under way is abandoned, and the stored
    /// entries at the end of the head go back to the store only, so an offline session holds
    /// as little as possible in memory — unless the queue holds its head while offline. An
    /// empty queue gives its box back.
    pub fn release_memory(&mut self) {
        if let Some(queue) = &mut self.in_use {
            queue.release_memory();
        }
        self.box_only_if_used();
    }

    /// A new connection took the session: a load of the previous one no longer applies.
    pub fn forget_load(&mut self) {
        if let Some(queue) = &mut self.in_use {
            queue.loading = false;
        }
    }

    /// Messages lost in the current burst of drops.
    #[cfg(test)]
    fn burst(&self) -> u64 {
        self.in_use.as_ref().map_or(0, |queue| queue.burst)
    }

    /// Whether the queue holds its box.
    #[cfg(test)]
    pub fn is_boxed(&self) -> bool {
        self.in_use.is_some()
    }

    /// Every entry in memory, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.in_use.iter().flat_map(|queue| queue.head.iter())
    }
}

/// A queue in use: its entries and their bookkeeping (see the module documentation).
#[derive(Debug)]
struct QueueInUse {
    /// The oldest entries, in memory.
    head: VecDeque<Queued>,
    /// The entries in the store only, oldest first: sequence numbers `spill_from..next_seq`.
    spilled: VecDeque<Spilled>,
    /// Sequence number of the oldest spilled entry (`next_seq` when none is spilled).
    spill_from: u64,
    /// Sequence number of the next stored entry.
    next_seq: u64,
    /// Bytes of every entry, in memory or spilled.
    bytes: u64,
    budget: Arc<QueueBudget>,
    /// A load is under way: the one whose ticket is `next_ticket - 1`.
    loading: bool,
    next_ticket: u64,
    /// Messages lost to the bounds in the current burst (0: none).
    burst: u64,
    /// The burst ends once the queue has drained to this many entries: half of what it held
    /// when the burst began, so a queue that stays full is one burst, not one per message.
    burst_ends_at: u32,
    /// Most entries held in memory.
    head_limit: u32,
    /// Most memory the head may take, by [`Self::memory_of`]; `u64::MAX` when only
    /// `head_limit` bounds it.
    memory_limit: u64,
    /// What the head takes now, by [`Self::memory_of`].
    head_memory: u64,
    /// The head also grows, and stays, while the session is offline.
    held_offline: bool,
}

impl QueueInUse {
    /// An empty queue drawing from `budget`, numbering its stored entries from `next_seq` and
    /// its loads from `next_ticket`.
    fn new(budget: Arc<QueueBudget>, next_seq: u64, next_ticket: u64) -> QueueInUse {
        QueueInUse {
            head: VecDeque::new(),
            spilled: VecDeque::new(),
            spill_from: next_seq,
            next_seq,
            bytes: 0,
            budget,
            loading: false,
            next_ticket,
            burst: 0,
            burst_ends_at: 0,
            head_limit: WINDOW as u32,
            memory_limit: u64::MAX,
            head_memory: 0,
            held_offline: false,
        }
    }

    /// See [`MessageQueue::move_to_budget`].
    fn move_to_budget(&mut self, budget: Arc<QueueBudget>) {
        self.budget.give_back(self.bytes);
        budget.take(self.bytes);
        self.budget = budget;
    }

    /// See [`MessageQueue::hold_in_memory`].
    fn hold_in_memory(&mut self, bytes: u64) {
        self.head_limit = u32::MAX;
        self.memory_limit = bytes;
        self.held_offline = true;
    }

    /// What an entry of `size` bytes (topic and payload) takes in memory, as counted against
    /// a memory limit.
    fn memory_of(size: u32) -> u64 {
        u64::from(size) + ENTRY_OVERHEAD
    }

    /// Whether the head has room for one more entry of `size` bytes: below its entry limit
    /// and, with a memory limit, within it (an empty head always takes one).
    fn head_has_room(&self, size: u32) -> bool {
        self.head.len() < self.head_limit as usize
            && (self.head.is_empty()
                || self.head_memory + Self::memory_of(size) <= self.memory_limit)
    }

    fn push_head(&mut self, entry: Queued) {
        self.head_memory += Self::memory_of(entry.size);
        self.head.push_back(entry);
    }

    /// Takes the head's oldest entry.
    fn pop_head_front(&mut self) -> Option<Queued> {
        let entry = self.head.pop_front()?;
        self.head_memory -= Self::memory_of(entry.size);
        Some(entry)
    }

    /// Takes the head's newest entry.
    fn pop_head_back(&mut self) -> Option<Queued> {
        let entry = self.head.pop_back()?;
        self.head_memory -= Self::memory_of(entry.size);
        Some(entry)
    }

    /// See [`MessageQueue::restored`].
    fn restored(budget: Arc<QueueBudget>, entries: &[StoredEntry], next_seq: u64) -> QueueInUse {
        let first = entries.first().map_or(next_seq, |entry| entry.seq);
        let mut queue = QueueInUse::new(budget, first, 0);
        for &StoredEntry {
            seq,
            size,
            queued_at,
        } in entries
        {
            while queue.next_seq < seq {
                queue.spilled.push_back(Spilled { size: 0, queued_at });
                queue.next_seq += 1;
            }
            queue.spilled.push_back(Spilled { size, queued_at });
            queue.add_bytes(size);
            queue.next_seq = seq + 1;
        }
        queue.next_seq = queue.next_seq.max(next_seq);
        if queue.spilled.is_empty() {
            queue.spill_from = queue.next_seq;
        }
        queue
    }

    /// Entries queued, in memory and spilled.
    fn len(&self) -> usize {
        self.head.len() + self.spilled.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// See [`MessageQueue::oldest_queued_at`].
    fn oldest_queued_at(&self) -> Option<u32> {
        match self.head.front() {
            Some(entry) => Some(entry.delivery.queued_at),
            None => self.spilled.front().map(|entry| entry.queued_at),
        }
    }

    /// See [`MessageQueue::pop_front`].
    fn pop_front(&mut self, client_id: &str) -> Option<Queued> {
        let entry = self.pop_head_front()?;
        self.remove_bytes(entry.size);
        self.end_burst(client_id);
        Some(entry)
    }

    /// Whether an entry of `size` bytes fits within the bounds.
    fn has_room(&self, size: u32, limits: &QueueLimits) -> bool {
        let size = u64::from(size);
        self.len() < limits.max_messages
            && self.bytes + size <= limits.max_bytes
            && self.budget.used() + size <= self.budget.limit()
    }

    /// Whether an entry of `size` would fit once this queue were empty: within the session's
    /// byte bound, and within what the other sessions leave of the broker's.
    fn fits_once_emptied(&self, size: u32, limits: &QueueLimits) -> bool {
        let size = u64::from(size);
        let used_by_others = self.budget.used().saturating_sub(self.bytes);
        size <= limits.max_bytes && used_by_others + size <= self.budget.limit()
    }

    /// Drops the oldest entry, recording it in the store if the store keeps it.
    fn drop_oldest(&mut self, client_id: &Arc<str>, ops: &mut Vec<StoreOp>) {
        let seq = if let Some(entry) = self.pop_head_front() {
            self.remove_bytes(entry.size);
            entry.seq
        } else if let Some(Spilled { size, .. }) = self.spilled.pop_front() {
            self.remove_bytes(size);
            let seq = self.spill_from;
            self.spill_from += 1;
            Some(seq)
        } else {
            None
        };
        if let Some(seq) = seq {
            ops.push(StoreOp::Discard {
                client_id: client_id.clone(),
                seq,
            });
        }
    }

    /// Counts a lost message; the first of a burst is logged (the burst's total when it ends),
    /// saying whether the message offered (of `size` bytes) could fit at all.
    fn note_drop(&mut self, client_id: &str, limits: &QueueLimits, size: u32, fits_at_all: bool) {
        if self.burst == 0 {
            self.burst_ends_at = u32::try_from(self.len() / 2).unwrap_or(u32::MAX);
            let what = match limits.policy {
                _ if !fits_at_all => format!(
                    "a message of {size} bytes does not fit even in an empty queue; it is \
                     refused, and the queued ones are kept"
                ),
                QueueFullPolicy::DropOldest => "dropping the oldest messages".to_string(),
                QueueFullPolicy::RefuseNewest => "refusing new messages".to_string(),
            };
            // A bridge's queue draws on no shared budget (its limit is u64::MAX).
            let in_all = match self.budget.limit() {
                u64::MAX => String::new(),
                limit => format!(", {limit} bytes in all"),
            };
            tracing::warn!(
                %client_id,
                queued = self.len(),
                bytes = self.bytes,
                budget_used = self.budget.used(),
                "queue full (limits: {} messages, {} bytes per session{in_all}): {what}",
                limits.max_messages,
                limits.max_bytes,
            );
        }
        self.burst += 1;
    }

    /// Ends a burst of drops once the queue has drained to half of what it held when the
    /// burst began, logging its total.
    fn end_burst(&mut self, client_id: &str) {
        if self.burst > 0 && self.len() <= self.burst_ends_at as usize {
            tracing::warn!(%client_id, dropped = self.burst, "queue has room again; {} messages were dropped while it was full", self.burst);
            self.burst = 0;
        }
    }

    /// See [`MessageQueue::load_request`].
    fn load_request(&mut self) -> Option<LoadRequest> {
        let head_limit = self.head_limit as usize;
        if self.loading
            || self.spilled.is_empty()
            || self.head.len() > head_limit / 2
            || self.head_memory > self.memory_limit / 2
        {
            return None;
        }
        let most = self
            .spilled
            .len()
            .min(head_limit - self.head.len())
            .min(LOAD_BATCH);
        let mut memory = self.head_memory;
        let fitting = self
            .spilled
            .iter()
            .take(most)
            .take_while(|entry| {
                memory += Self::memory_of(entry.size);
                memory <= self.memory_limit
            })
            .count();
        let count = fitting.max(1) as u64;
        let request = LoadRequest {
            ticket: self.next_ticket,
            from: self.spill_from,
            to: self.spill_from + count,
        };
        self.next_ticket += 1;
        self.loading = true;
        Some(request)
    }

    /// See [`MessageQueue::apply_load`].
    fn apply_load(&mut self, request: LoadRequest, entries: Vec<(u64, Delivery)>) -> u64 {
        if !self.loading || request.ticket + 1 != self.next_ticket {
            return 0;
        }
        self.loading = false;
        let mut lost = 0;
        for (seq, delivery) in entries {
            if seq < self.spill_from || seq >= request.to {
                continue;
            }
            lost += self.lose_spilled_below(seq);
            let Some(Spilled { size, .. }) = self.spilled.pop_front() else {
                break;
            };
            self.spill_from += 1;
            self.push_head(Queued {
                seq: Some(seq),
                size,
                delivery,
            });
        }
        lost + self.lose_spilled_below(request.to)
    }

    /// Forgets spilled entries numbered below `seq`: the store does not have them.
    fn lose_spilled_below(&mut self, seq: u64) -> u64 {
        let mut lost = 0;
        while self.spill_from < seq {
            let Some(Spilled { size, .. }) = self.spilled.pop_front() else {
                break;
            };
            self.remove_bytes(size);
            self.spill_from += 1;
            lost += 1;
        }
        lost
    }

    /// See [`MessageQueue::release_memory`].
    fn release_memory(&mut self) {
        self.loading = false;
        if self.held_offline {
            return;
        }
        while let Some(last) = self.head.back() {
            if last.seq.is_none() || last.seq.map(|seq| seq + 1) != Some(self.spill_from) {
                break;
            }
            if let Some(entry) = self.pop_head_back() {
                self.spilled.push_front(Spilled {
                    size: entry.size,
                    queued_at: entry.delivery.queued_at,
                });
                self.spill_from -= 1;
            }
        }
    }

    /// Whether it holds nothing worth boxing: no entry, no load under way, no burst of drops
    /// to report, and no order to hold its head offline.
    fn is_idle(&self) -> bool {
        self.is_empty() && !self.loading && self.burst == 0 && !self.held_offline
    }

    fn add_bytes(&mut self, size: u32) {
        self.bytes += u64::from(size);
        self.budget.take(u64::from(size));
    }

    fn remove_bytes(&mut self, size: u32) {
        self.bytes -= u64::from(size);
        self.budget.give_back(u64::from(size));
    }
}

impl Drop for QueueInUse {
    /// A queue that goes (its session ended) gives its bytes back to the budget.
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// Where an offered entry may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The store keeps the session (it outlives its connection, or is kept until it ends),
    /// so its QoS 1/2 entries are stored.
    pub persistent: bool,
    /// A connection is attached: new entries may be held in memory.
    pub online: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Message;
    use bytes::Bytes;

    const ONLINE: Placement = Placement {
        persistent: true,
        online: true,
    };
    const OFFLINE: Placement = Placement {
        persistent: true,
        online: false,
    };

    /// What an entry [`offer`] makes takes in memory: 10 bytes of topic and payload.
    const HELD: u64 = 10 + ENTRY_OVERHEAD;

    fn limits(max_messages: usize, policy: QueueFullPolicy) -> QueueLimits {
        QueueLimits {
            max_messages,
            max_bytes: u64::MAX,
            policy,
            queue_qos0_offline: false,
        }
    }

    /// A delivery of message `id` on topic "t" with a 9-byte payload: 10 bytes in the bounds.
    fn delivery(id: u64, qos: QoS) -> Delivery {
        Delivery {
            message: Arc::new(Message::from_broker(
                id,
                "t",
                Bytes::from_static(b"123456789"),
                false,
            )),
            qos,
            retain: false,
            subscription_ids: Vec::new(),
            queued_at: 1_000 + id as u32,
        }
    }

    fn stored(seq: u64, size: u32, queued_at: u32) -> StoredEntry {
        StoredEntry {
            seq,
            size,
            queued_at,
        }
    }

    fn client() -> Arc<str> {
        Arc::from("c")
    }

    fn offer(
        queue: &mut MessageQueue,
        id: u64,
        placement: Placement,
        limits: &QueueLimits,
    ) -> (Offered, Vec<StoreOp>) {
        let mut ops = Vec::new();
        let offered = queue.offer(
            delivery(id, QoS::AtLeastOnce),
            &client(),
            placement,
            limits,
            &mut ops,
        );
        (offered, ops)
    }

    fn seqs(ops: &[StoreOp]) -> Vec<(&'static str, u64)> {
        ops.iter()
            .filter_map(|op| match op {
                StoreOp::Enqueue { seq, .. } => Some(("enqueue", *seq)),
                StoreOp::Discard { seq, .. } => Some(("discard", *seq)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn offline_entries_are_stored_and_not_held_in_memory() {
        let budget = QueueBudget::new(u64::MAX);
        let mut queue = MessageQueue::new(budget.clone());
        let limits = limits(10, QueueFullPolicy::DropOldest);
        for id in 0..3 {
            let (offered, ops) = offer(&mut queue, id, OFFLINE, &limits);
            assert_eq!(
                offered,
                Offered {
                    queued: true,
                    dropped: 0
                }
            );
            assert_eq!(seqs(&ops), vec![("enqueue", id)]);
        }
        assert_eq!((queue.len(), queue.in_memory(), queue.bytes()), (3, 0, 30));
        assert_eq!(budget.used(), 30);
        drop(queue);
        assert_eq!(budget.used(), 0, "a queue that goes gives its bytes back");
    }

    #[test]
    fn online_entries_spill_beyond_the_window_and_load_back_in_order() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        let limits = limits(10_000, QueueFullPolicy::DropOldest);
        let total = WINDOW as u64 + 100;
        for id in 0..total {
            offer(&mut queue, id, ONLINE, &limits);
        }
        assert_eq!((queue.len(), queue.in_memory()), (total as usize, WINDOW));
        assert!(queue.load_request().is_none(), "the head is full");
        for _ in 0..=WINDOW / 2 {
            queue.pop_front("c");
        }
        let request = queue.load_request().expect("the head ran low");
        assert_eq!(request.from, WINDOW as u64);
        assert_eq!(request.to, total);
        assert!(queue.load_request().is_none(), "one load at a time");
        let entries = (request.from..request.to)
            .map(|seq| (seq, delivery(seq, QoS::AtLeastOnce)))
            .collect();
        assert_eq!(queue.apply_load(request, entries), 0);
        let order: Vec<u64> = queue.iter().filter_map(|entry| entry.seq).collect();
        let expected: Vec<u64> = (WINDOW as u64 / 2 + 1..total).collect();
        assert_eq!(order, expected);
        assert_eq!(queue.len(), queue.in_memory());
    }

    #[test]
    fn a_queue_moved_to_another_budget_takes_its_bytes_along() {
        let shared = QueueBudget::new(u64::MAX);
        let mut queue = MessageQueue::new(shared.clone());
        let limits = limits(10, QueueFullPolicy::DropOldest);
        for id in 0..3 {
            offer(&mut queue, id, OFFLINE, &limits);
        }
        assert_eq!(shared.used(), 30);
        let own = QueueBudget::new(u64::MAX);
        queue.move_to_budget(own.clone());
        assert_eq!((shared.used(), own.used()), (0, 30));
        offer(&mut queue, 3, OFFLINE, &limits);
        assert_eq!(
            (shared.used(), own.used()),
            (0, 40),
            "new entries draw on the new one"
        );
        drop(queue);
        assert_eq!(own.used(), 0, "and go back to it");
    }

    #[test]
    fn a_queue_holding_more_in_memory_loads_more_at_once() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        queue.hold_in_memory(4 * WINDOW as u64 * HELD);
        let limits = limits(100_000, QueueFullPolicy::DropOldest);
        let total = 8 * WINDOW as u64;
        for id in 0..total {
            offer(&mut queue, id, ONLINE, &limits);
        }
        assert_eq!(
            queue.in_memory(),
            4 * WINDOW,
            "the head fills to its own limit"
        );
        for _ in 0..WINDOW {
            queue.pop_front("c");
        }
        assert!(
            queue.load_request().is_none(),
            "no load while more than half the head is left"
        );
        for _ in 0..=WINDOW {
            queue.pop_front("c");
        }
        let request = queue.load_request().expect("the head ran below half");
        assert_eq!(request.from, 4 * WINDOW as u64);
        assert_eq!(
            request.to - request.from,
            (4 * WINDOW - queue.in_memory()) as u64,
            "one load refills the whole head"
        );
    }

    #[test]
    fn a_queue_holding_its_head_offline_keeps_a_backlog_in_memory_and_in_the_store() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        queue.hold_in_memory(2 * WINDOW as u64 * HELD);
        let limits = limits(100_000, QueueFullPolicy::DropOldest);
        for id in 0..3 * WINDOW as u64 {
            let (offered, ops) = offer(&mut queue, id, OFFLINE, &limits);
            assert!(offered.queued);
            assert_eq!(seqs(&ops), vec![("enqueue", id)], "stored all the same");
        }
        assert_eq!(
            (queue.len(), queue.in_memory()),
            (3 * WINDOW, 2 * WINDOW),
            "offline, the head fills to its limit; the rest is spilled"
        );
        queue.release_memory();
        assert_eq!(
            queue.in_memory(),
            2 * WINDOW,
            "losing the connection keeps the head"
        );
        let order: Vec<u64> = queue.iter().filter_map(|entry| entry.seq).collect();
        assert_eq!(order, (0..2 * WINDOW as u64).collect::<Vec<_>>());
    }

    #[test]
    fn no_load_reads_more_than_a_batch_however_large_the_head() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        let limits = limits(1_000_000, QueueFullPolicy::DropOldest);
        let total = 3 * LOAD_BATCH as u64;
        for id in 0..total {
            offer(&mut queue, id, OFFLINE, &limits);
        }
        queue.hold_in_memory(10 * LOAD_BATCH as u64 * HELD);
        let request = queue.load_request().expect("spilled entries");
        assert_eq!((request.from, request.to), (0, LOAD_BATCH as u64));
    }

    #[test]
    fn a_queue_held_by_memory_takes_one_entry_larger_than_its_limit() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        queue.hold_in_memory(HELD - 1);
        let limits = limits(100_000, QueueFullPolicy::DropOldest);
        for id in 0..3 {
            offer(&mut queue, id, OFFLINE, &limits);
        }
        assert_eq!(queue.in_memory(), 1, "an empty head takes one");
        queue.pop_front("c");
        let request = queue.load_request().expect("spilled entries");
        assert_eq!((request.from, request.to), (1, 2), "and reads one back");
    }

    #[test]
    fn drop_oldest_discards_from_the_front_even_when_spilled() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        let limits = limits(2, QueueFullPolicy::DropOldest);
        offer(&mut queue, 0, OFFLINE, &limits);
        offer(&mut queue, 1, OFFLINE, &limits);
        let (offered, ops) = offer(&mut queue, 2, OFFLINE, &limits);
        assert_eq!(
            offered,
            Offered {
                queued: true,
                dropped: 1
            }
        );
        assert_eq!(seqs(&ops), vec![("discard", 0), ("enqueue", 2)]);
        assert_eq!(queue.len(), 2);
    }

    /// A message larger than the session's byte bound, or than what the other sessions leave
    /// of the broker's, is refused alone under drop_oldest: the queued ones stay (they were
    /// all dropped for it, and then it was refused anyway).
    #[test]
    fn a_message_that_never_fits_is_refused_without_dropping_the_queue() {
        let small_bound = QueueLimits {
            max_bytes: 25,
            ..limits(100, QueueFullPolicy::DropOldest)
        };
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        offer(&mut queue, 0, OFFLINE, &small_bound);
        offer(&mut queue, 1, OFFLINE, &small_bound);
        // Refused alone: counted as dropped, nothing queued, nothing discarded.
        let refused_alone = |queue: &mut MessageQueue, big: Delivery, limits: &QueueLimits| {
            let mut ops = Vec::new();
            let offered = queue.offer(big, &client(), OFFLINE, limits, &mut ops);
            let alone = Offered {
                queued: false,
                dropped: 1,
            };
            assert_eq!(offered, alone);
            assert!(ops.is_empty(), "nothing discarded: {ops:?}");
        };
        let big = Delivery {
            message: Arc::new(Message::from_broker(
                2,
                "t",
                Bytes::from(vec![0; 30]),
                false,
            )),
            ..delivery(2, QoS::AtLeastOnce)
        };
        refused_alone(&mut queue, big.clone(), &small_bound);
        assert_eq!(queue.len(), 2);

        let budget = QueueBudget::new(40);
        let mut others = MessageQueue::new(budget.clone());
        let mut mine = MessageQueue::new(budget);
        let open = limits(100, QueueFullPolicy::DropOldest);
        offer(&mut others, 0, OFFLINE, &open);
        offer(&mut others, 1, OFFLINE, &open);
        offer(&mut mine, 2, OFFLINE, &open);
        refused_alone(&mut mine, big, &open);
        assert_eq!((mine.len(), others.len()), (1, 2));
    }

    #[test]
    fn a_queue_kept_full_by_a_slow_reader_is_one_burst() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        let limits = limits(4, QueueFullPolicy::DropOldest);
        for id in 0..8 {
            offer(&mut queue, id, ONLINE, &limits);
        }
        assert_eq!(queue.burst(), 4);
        for id in 8..20 {
            queue.pop_front("c");
            offer(&mut queue, id, ONLINE, &limits);
            offer(&mut queue, id + 100, ONLINE, &limits);
        }
        assert_eq!(queue.burst(), 16, "still the same burst");
        queue.pop_front("c");
        assert_eq!(queue.burst(), 16, "three of four left: not drained yet");
        queue.pop_front("c");
        assert_eq!(queue.burst(), 0, "drained to half: the burst is over");
    }

    #[test]
    fn refuse_newest_keeps_the_queue_and_counts_the_refusal() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        let limits = limits(1, QueueFullPolicy::RefuseNewest);
        offer(&mut queue, 0, OFFLINE, &limits);
        let (offered, ops) = offer(&mut queue, 1, OFFLINE, &limits);
        assert_eq!(
            offered,
            Offered {
                queued: false,
                dropped: 1
            }
        );
        assert!(ops.is_empty());
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn byte_bounds_per_session_and_shared_budget_hold() {
        let budget = QueueBudget::new(50);
        let mut first = MessageQueue::new(budget.clone());
        let mut second = MessageQueue::new(budget.clone());
        let mut per_session = limits(100, QueueFullPolicy::RefuseNewest);
        per_session.max_bytes = 30;
        for id in 0..4 {
            offer(&mut first, id, OFFLINE, &per_session);
        }
        assert_eq!(first.bytes(), 30, "three 10-byte entries fit in 30 bytes");
        for id in 0..4 {
            offer(&mut second, id, OFFLINE, &per_session);
        }
        assert_eq!(second.bytes(), 20, "the shared budget of 50 leaves 20");
        assert_eq!(budget.used(), 50);
    }

    #[test]
    fn qos0_is_queued_offline_only_when_configured_and_then_stored() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        let mut limits = limits(10, QueueFullPolicy::DropOldest);
        let mut ops = Vec::new();
        let offered = queue.offer(
            delivery(1, QoS::AtMostOnce),
            &client(),
            OFFLINE,
            &limits,
            &mut ops,
        );
        assert_eq!(offered, Offered::default(), "not kept, not a loss");
        limits.queue_qos0_offline = true;
        let offered = queue.offer(
            delivery(2, QoS::AtMostOnce),
            &client(),
            OFFLINE,
            &limits,
            &mut ops,
        );
        assert!(offered.queued);
        assert_eq!(seqs(&ops), vec![("enqueue", 0)]);
        let offered = queue.offer(
            delivery(3, QoS::AtMostOnce),
            &client(),
            ONLINE,
            &limits,
            &mut ops,
        );
        assert!(offered.queued);
        assert_eq!(
            ops.len(),
            2,
            "QoS 0 behind a spilled entry is stored to keep the order"
        );
    }

    #[test]
    fn a_load_skips_entries_dropped_meanwhile_and_reports_missing_ones() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        let limits = limits(10, QueueFullPolicy::DropOldest);
        for id in 0..4 {
            offer(&mut queue, id, OFFLINE, &limits);
        }
        let request = queue.load_request().expect("spilled entries");
        assert_eq!((request.from, request.to), (0, 4));
        let mut ops = Vec::new();
        queue.in_use().drop_oldest(&client(), &mut ops);
        assert_eq!(seqs(&ops), vec![("discard", 0)]);
        // The store read 0..4 before the discard reached it, but has lost entry 2.
        let entries = [0, 1, 3]
            .into_iter()
            .map(|seq| (seq, delivery(seq, QoS::AtLeastOnce)))
            .collect();
        assert_eq!(queue.apply_load(request, entries), 1, "entry 2 is lost");
        let order: Vec<u64> = queue.iter().filter_map(|entry| entry.seq).collect();
        assert_eq!(order, vec![1, 3]);
        assert_eq!((queue.len(), queue.bytes()), (2, 20));
    }

    #[test]
    fn a_stale_load_is_ignored_and_detaching_releases_memory() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        let limits = limits(10, QueueFullPolicy::DropOldest);
        for id in 0..3 {
            offer(&mut queue, id, ONLINE, &limits);
        }
        assert_eq!(queue.in_memory(), 3);
        queue.release_memory();
        assert_eq!((queue.len(), queue.in_memory()), (3, 0));
        let stale = queue.load_request().expect("spilled entries");
        queue.forget_load();
        let fresh = queue.load_request().expect("a new load may start");
        let entries = || {
            (0..3)
                .map(|seq| (seq, delivery(seq, QoS::AtLeastOnce)))
                .collect()
        };
        assert_eq!(queue.apply_load(stale, entries()), 0);
        assert_eq!(queue.in_memory(), 0, "the stale reply changed nothing");
        queue.apply_load(fresh, entries());
        assert_eq!(queue.in_memory(), 3);
    }

    #[test]
    fn an_emptied_queue_gives_its_memory_back_at_a_disconnect_and_numbers_on() {
        assert_eq!(
            size_of::<MessageQueue>(),
            32,
            "what an idle session's queue costs"
        );
        let budget = QueueBudget::new(u64::MAX);
        let mut queue = MessageQueue::new(budget.clone());
        assert!(queue.in_use.is_none(), "a new queue is not boxed");
        let limits = limits(10, QueueFullPolicy::DropOldest);
        let entries = |ids: std::ops::Range<u64>| {
            ids.map(|id| (id, delivery(id, QoS::AtLeastOnce)))
                .collect::<Vec<_>>()
        };
        // First use: two entries queued offline, read back by one load, sent.
        offer(&mut queue, 0, OFFLINE, &limits);
        offer(&mut queue, 1, OFFLINE, &limits);
        let first = queue.load_request().expect("spilled entries");
        queue.apply_load(first, entries(0..2));
        while queue.pop_front("c").is_some() {}
        assert!(queue.in_use.is_some(), "kept while its connection lasts");
        queue.release_memory();
        assert!(
            queue.in_use.is_none(),
            "given back, empty, at the disconnect"
        );
        assert_eq!((queue.len(), queue.bytes(), budget.used()), (0, 0, 0));

        // Second use: numbering goes on, for entries and loads alike.
        let (_, ops) = offer(&mut queue, 2, OFFLINE, &limits);
        assert_eq!(seqs(&ops), [("enqueue", 2)]);
        let second = queue.load_request().expect("a spilled entry");
        assert_eq!(second.ticket, first.ticket + 1);
        assert_eq!(queue.apply_load(first, entries(0..2)), 0, "a stale reply");
        assert_eq!(queue.in_memory(), 0);
        queue.apply_load(second, entries(2..3));
        assert_eq!(queue.in_memory(), 1);
    }

    #[test]
    fn a_message_not_queued_leaves_an_empty_queue_unboxed() {
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        let mut ops = Vec::new();
        let offline = Placement {
            persistent: true,
            online: false,
        };
        let qos0 = delivery(0, QoS::AtMostOnce);
        let limits = limits(10, QueueFullPolicy::DropOldest);
        let offered = queue.offer(qos0, &client(), offline, &limits, &mut ops);
        assert!(!offered.queued && ops.is_empty());
        assert!(
            queue.in_use.is_none(),
            "QoS 0 for an offline session boxes nothing"
        );
        let refusing = QueueLimits {
            max_messages: 0,
            ..limits
        };
        let (offered, _) = offer(&mut queue, 1, OFFLINE, &refusing);
        assert_eq!(offered.dropped, 1);
        assert!(queue.in_use.is_some(), "kept to report the burst of drops");
    }

    #[test]
    fn restored_queue_numbers_continue_and_gaps_are_placeholders() {
        let budget = QueueBudget::new(u64::MAX);
        let entries = [stored(5, 10, 100), stored(7, 10, 101)];
        let mut queue = MessageQueue::restored(budget.clone(), &entries, 9);
        assert_eq!((queue.len(), queue.bytes(), queue.next_seq()), (3, 20, 9));
        let request = queue.load_request().expect("spilled entries");
        assert_eq!((request.from, request.to), (5, 8));
        let (_, ops) = offer(
            &mut queue,
            1,
            OFFLINE,
            &limits(10, QueueFullPolicy::DropOldest),
        );
        assert_eq!(seqs(&ops), vec![("enqueue", 9)]);
        assert_eq!(budget.used(), 30);
    }

    #[test]
    fn oldest_queue_time_is_the_heads_then_the_first_spilled_entrys() {
        let limits = limits(10, QueueFullPolicy::DropOldest);
        let mut queue = MessageQueue::new(QueueBudget::new(u64::MAX));
        assert_eq!(queue.oldest_queued_at(), None, "empty");
        for id in 0..3 {
            offer(&mut queue, id, ONLINE, &limits);
        }
        assert_eq!(queue.oldest_queued_at(), Some(1_000), "the head's front");
        queue.release_memory();
        assert_eq!(queue.in_memory(), 0);
        assert_eq!(
            queue.oldest_queued_at(),
            Some(1_000),
            "spilled, still known"
        );
        let mut ops = Vec::new();
        queue.in_use().drop_oldest(&client(), &mut ops);
        assert_eq!(
            queue.oldest_queued_at(),
            Some(1_001),
            "dropping the front reveals the next entry's time, without reading it back"
        );
        let request = queue.load_request().expect("spilled entries");
        let loaded = (1..3).map(|id| (id, delivery(id, QoS::AtLeastOnce)));
        assert_eq!(queue.apply_load(request, loaded.collect()), 0);
        queue.pop_front(&client());
        assert_eq!(queue.oldest_queued_at(), Some(1_002));
    }

    #[test]
    fn restored_queue_knows_when_its_entries_were_queued() {
        let entries = [stored(5, 10, 100), stored(7, 10, 101)];
        let mut queue = MessageQueue::restored(QueueBudget::new(u64::MAX), &entries, 9);
        assert_eq!(queue.oldest_queued_at(), Some(100));
        let mut ops = Vec::new();
        queue.in_use().drop_oldest(&client(), &mut ops);
        assert_eq!(
            queue.oldest_queued_at(),
            Some(101),
            "the placeholder for the missing entry 6 counts from the entry after it"
        );
    }
}
