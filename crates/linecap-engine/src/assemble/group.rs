//! Group assembly: several receive threads (members) fill **one** sequence
//! of blocks, each placing the packets it receives, as spead2's chunk
//! stream groups do.
//!
//! Per packet a member touches only its own window (a small array of the
//! blocks it holds) and the block's memory: the slot is claimed with one
//! atomic `fetch_or` on the block's presence word ([`SharedSlots`]), so a
//! copy that arrives at two members is placed once and counted once as a
//! duplicate, by the member that lost the claim. The group's lock is taken
//! per block, not per packet: to open a block, to release the blocks a
//! member's window moved past, and to hand completed blocks out.
//!
//! A block is complete when every live member has moved past it (its
//! window slid beyond it): whoever releases it last moves it to the
//! completed queue, and it is handed out, in order, once no member still
//! points at it. When a member falls behind (a flow that went quiet, a
//! thread descheduled) and a block would open more than the group window
//! (`2 × window` blocks) past the oldest held block, the policy decides:
//! - [`Policy::Lossy`]: the slow members are released from the old blocks
//!   by force (counted per member as `group_forced`); they learn it at their
//!   next batch, and their packets for those blocks are then late.
//! - [`Policy::Lossless`]: the member that wants the new block waits
//!   (counted as `group_waits`) until the slow ones move on.
//!
//! A member that ends (its thread stopped or died) releases everything and
//! is no longer waited for. Not supported in a group: blocks made of parts
//! (SPEAD heaps spread over packets); the caller refuses that format.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{AssemblyCounts, Block, Candidate, Layout, Options, PageBuf};
use crate::sys::slots::{Fill, SharedSlots};

/// What a group does when a member falls out of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Blocks go out on time; the slow member's missing slots are lost.
    #[default]
    Lossy,
    /// Blocks wait for the slow member; the others wait with them.
    Lossless,
}

/// Where completed blocks go, and where their buffers come back from.
/// Called under the group's lock, so neither may wait for a member.
pub trait BlockOut: Send {
    /// A completed block, in block order, and the group's counts with it.
    fn take(&mut self, block: Block, counts: &GroupCounts);
    /// A block buffer handed back (written, or dropped), if there is one.
    fn give_back(&mut self) -> Option<PageBuf>;
    /// Every member has left and every block was taken: the last call.
    fn finish(&mut self, counts: &GroupCounts) {
        let _ = counts;
    }
}

/// Counts kept by the group itself (the members count their packets).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupCounts {
    /// Blocks completed and handed out.
    pub blocks: u64,
    /// Slots that never arrived (see [`AssemblyCounts::slots_lost`]).
    pub slots_lost: u64,
    /// Members that ended while the others went on.
    pub members_left: u64,
}

struct Live {
    number: u64,
    /// One bit per member that has not moved past this block yet.
    holders: u64,
    slots: Arc<SharedSlots>,
}

struct State {
    /// Open blocks, ascending.
    live: VecDeque<Live>,
    /// Blocks every member let go of, ascending, waiting until no member
    /// still points at them (a member released by force points at its
    /// blocks until its next batch).
    done: VecDeque<(u64, Arc<SharedSlots>)>,
    pool: Vec<PageBuf>,
    /// Per member: every block below this one is released.
    released_below: Vec<u64>,
    /// Members still running.
    alive: u64,
    /// First sequence number of the stream (slots before it are not lost).
    start: Option<u64>,
    /// Highest sequence number any member placed, as told under the lock.
    highest: u64,
    last_completed: Option<u64>,
    counts: GroupCounts,
    out: Box<dyn BlockOut>,
}

/// The shared half of a group assembly. Make it with [`Group::new`], then
/// one [`Member`] per receive thread.
pub struct Group {
    layout: Layout,
    window: u64,
    /// Blocks that may be open between the oldest held one and the newest.
    span: u64,
    resync_gap: u64,
    zero_fill: bool,
    policy: Policy,
    pool_size: usize,
    state: Mutex<State>,
    /// Per member: bumped when the group released it by force, read once
    /// per batch by the member.
    forced: Vec<AtomicU64>,
    /// Per member: times it waited for a slow member (lossless).
    waits: Vec<AtomicU64>,
    /// Set when the capture ends: a lossless wait gives up.
    closing: AtomicBool,
}

/// Why a member could not get a block.
enum Refused {
    /// The member is already past it (released, perhaps by force).
    Late,
    /// No buffer free, or (lossless) the group window is full: retry.
    Wait,
    /// No buffer free (lossy): drop the packet.
    NoBuffer,
}

impl Group {
    /// A group of `members` for `layout`, its buffers allocated now. At
    /// most 64 members.
    pub fn new(
        layout: Layout,
        opts: Options,
        policy: Policy,
        members: usize,
        out: Box<dyn BlockOut>,
    ) -> Arc<Self> {
        let members = members.clamp(1, 64);
        let window = opts.window.max(1) as u64;
        let span = 2 * window;
        let pool_size = opts.pool.max(span as usize + 2);
        let pool = (0..pool_size).filter_map(|_| PageBuf::new(layout.block_bytes()).ok()).collect();
        let alive = if members == 64 { u64::MAX } else { (1u64 << members) - 1 };
        Arc::new(Self {
            layout,
            window,
            span,
            resync_gap: opts.resync_gap,
            zero_fill: opts.zero_fill,
            policy,
            pool_size,
            state: Mutex::new(State {
                live: VecDeque::new(),
                done: VecDeque::new(),
                pool,
                released_below: vec![0; members],
                alive,
                start: None,
                highest: 0,
                last_completed: None,
                counts: GroupCounts::default(),
                out,
            }),
            forced: (0..members).map(|_| AtomicU64::new(0)).collect(),
            waits: (0..members).map(|_| AtomicU64::new(0)).collect(),
            closing: AtomicBool::new(false),
        })
    }

    /// Member `id` (0-based, below the group's size). Each id once.
    pub fn member(self: &Arc<Self>, id: usize) -> Member {
        assert!(id < self.forced.len(), "member {id} of a group of {}", self.forced.len());
        Member {
            group: self.clone(),
            id,
            cache: (0..self.window).map(|_| None).collect(),
            base: None,
            head: 0,
            highest: 0,
            seen_forced: 0,
            candidate: Candidate::default(),
            counts: AssemblyCounts::default(),
            left: false,
        }
    }

    /// The block layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The capture is ending: lossless waits stop waiting.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// What the group counted.
    pub fn counts(&self) -> GroupCounts {
        self.lock().counts
    }

    /// Times member `id` was released from blocks by force (lossy).
    pub fn forced(&self, id: usize) -> u64 {
        self.forced.get(id).map_or(0, |f| f.load(Ordering::Acquire))
    }

    /// Times member `id` waited for a slow member (lossless).
    pub fn waits(&self, id: usize) -> u64 {
        self.waits.get(id).map_or(0, |w| w.load(Ordering::Relaxed))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A member that panicked while holding the lock left the state
        // consistent at block granularity: go on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Member `id` lets go of every block below `below`.
    fn release_below(&self, st: &mut State, id: usize, below: u64) {
        let bit = 1u64 << id;
        for b in st.live.iter_mut().take_while(|b| b.number < below) {
            b.holders &= !bit;
        }
        st.released_below[id] = st.released_below[id].max(below);
        self.retire(st);
    }

    /// Moves the oldest open blocks nobody holds to the completed queue and
    /// hands out those no member points at any more, in order.
    fn retire(&self, st: &mut State) {
        while st.live.front().is_some_and(|b| b.holders & st.alive == 0) {
            let b = st.live.pop_front().expect("checked");
            st.done.push_back((b.number, b.slots));
        }
        while let Some((number, slots)) = st.done.pop_front() {
            match Arc::try_unwrap(slots) {
                Ok(slots) => self.complete(st, number, slots),
                Err(still_held) => {
                    st.done.push_front((number, still_held));
                    break;
                }
            }
        }
    }

    fn complete(&self, st: &mut State, number: u64, slots: SharedSlots) {
        let l = self.layout;
        let per_block = (l.slots * l.channels) as u64;
        if let Some(prev) = st.last_completed
            && number > prev + 1
        {
            st.counts.slots_lost += (number - prev - 1) * per_block;
        }
        st.last_completed = Some(number);
        let (mut data, present) = slots.into_parts();
        let first_seq = number * l.slots as u64;
        let start = st.start.unwrap_or(first_seq);
        let mut filled = 0;
        let mut lost = 0;
        for i in 0..l.channels * l.slots {
            if present[i / 64] >> (i % 64) & 1 == 1 {
                filled += 1;
                continue;
            }
            let s = first_seq + (i % l.slots) as u64;
            if s >= start && s <= st.highest {
                lost += 1;
            }
            if self.zero_fill {
                data[i * l.slot_bytes..(i + 1) * l.slot_bytes].fill(0);
            }
        }
        st.counts.blocks += 1;
        st.counts.slots_lost += lost;
        let counts = st.counts;
        st.out.take(Block { number, first_seq, data, present, filled, lost }, &counts);
    }

    /// The block `number` for member `id`: found open, or opened now.
    fn fetch(&self, id: usize, number: u64) -> Result<Arc<SharedSlots>, Refused> {
        let mut st = self.lock();
        if number < st.released_below[id] {
            return Err(Refused::Late);
        }
        if let Some(b) = st.live.iter().find(|b| b.number == number) {
            return Ok(b.slots.clone());
        }
        if let Some(oldest) = st.live.front().map(|b| b.number)
            && number >= oldest + self.span
        {
            let closing = self.closing.load(Ordering::Acquire);
            if self.policy == Policy::Lossless && !closing {
                return Err(Refused::Wait);
            }
            self.force_below(&mut st, number + 1 - self.span);
        }
        let Some(buf) = self.buffer(&mut st) else {
            let closing = self.closing.load(Ordering::Acquire);
            let wait = self.policy == Policy::Lossless && !closing;
            return Err(if wait { Refused::Wait } else { Refused::NoBuffer });
        };
        let l = self.layout;
        let slots =
            Arc::new(SharedSlots::new(buf, l.slot_bytes, l.slots * l.channels).expect("pool buffers fit"));
        let holders = (0..st.released_below.len())
            .filter(|&m| st.released_below[m] <= number)
            .fold(0u64, |h, m| h | 1 << m)
            & st.alive;
        let at = st.live.iter().position(|b| b.number > number).unwrap_or(st.live.len());
        st.live.insert(at, Live { number, holders, slots: slots.clone() });
        Ok(slots)
    }

    /// A free buffer: from the pool, or handed back by the output.
    fn buffer(&self, st: &mut State) -> Option<PageBuf> {
        let want = self.layout.block_bytes();
        while let Some(b) = st.out.give_back() {
            if b.len() == want && st.pool.len() < self.pool_size {
                st.pool.push(b);
            }
        }
        st.pool.pop()
    }

    /// Lossy: releases every member still holding a block below `below`,
    /// telling each one.
    fn force_below(&self, st: &mut State, below: u64) {
        let mut slow = 0u64;
        for b in st.live.iter().take_while(|b| b.number < below) {
            slow |= b.holders;
        }
        for m in (0..st.released_below.len()).filter(|&m| slow >> m & 1 == 1) {
            self.release_below(st, m, below);
            self.forced[m].fetch_add(1, Ordering::Release);
        }
    }

    /// Member `id` ended: it is not waited for any more.
    fn leave(&self, id: usize, highest: u64) {
        let mut st = self.lock();
        st.highest = st.highest.max(highest);
        st.alive &= !(1u64 << id);
        st.released_below[id] = u64::MAX;
        if st.alive != 0 && !self.closing.load(Ordering::Acquire) {
            st.counts.members_left += 1;
            tracing::warn!(
                "receive thread {id} left the assembly group; the others go on, and its share of the blocks is counted lost"
            );
        }
        if st.alive == 0 {
            // The last one out completes what is left, and closes the output.
            for b in st.live.iter_mut() {
                b.holders = 0;
            }
            self.retire(&mut st);
            let counts = st.counts;
            st.out.finish(&counts);
            return;
        }
        self.retire(&mut st);
    }
}

/// One receive thread's share of a group assembly: places the packets it
/// receives into the group's blocks. Drop it (or call [`Member::leave`])
/// when the thread ends.
pub struct Member {
    group: Arc<Group>,
    id: usize,
    /// The blocks this member holds, at `number % window`.
    cache: Vec<Option<(u64, Arc<SharedSlots>)>>,
    /// Oldest block number held (the window's start), once started.
    base: Option<u64>,
    /// Newest block number placed into.
    head: u64,
    highest: u64,
    seen_forced: u64,
    /// Far packets in a row agreeing with each other: (count, lowest, highest).
    candidate: Candidate,
    counts: AssemblyCounts,
    left: bool,
}

impl Member {
    /// This member's counts (`blocks` and `slots_lost` are the group's:
    /// see [`Group::counts`]).
    pub fn counts(&self) -> AssemblyCounts {
        self.counts
    }

    /// This member's index in its group.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The group.
    pub fn group(&self) -> &Arc<Group> {
        &self.group
    }

    /// Counts a packet the format could not decode.
    pub fn malformed(&mut self) {
        self.counts.count_malformed();
    }

    /// Counts a packet its sender flagged as carrying invalid data.
    pub fn invalid(&mut self) {
        self.counts.count_invalid();
    }

    /// Once per batch: learns whether the group released this member from
    /// old blocks by force, and lets go of them.
    pub fn sync(&mut self) {
        let forced = self.group.forced[self.id].load(Ordering::Acquire);
        if forced == self.seen_forced {
            return;
        }
        self.seen_forced = forced;
        let group = self.group.clone();
        let mut st = group.lock();
        let below = st.released_below[self.id];
        // Let go of the blocks first, so that they can be handed out now.
        self.drop_below(below);
        if let Some(base) = self.base {
            self.base = Some(base.max(below));
            self.head = self.head.max(below);
        }
        st.highest = st.highest.max(self.highest);
        group.retire(&mut st);
    }

    fn drop_below(&mut self, below: u64) {
        for e in self.cache.iter_mut() {
            if e.as_ref().is_some_and(|(n, _)| *n < below) {
                *e = None;
            }
        }
    }

    /// Places one packet: sequence number, channel (row), and its data
    /// (`slot_bytes` long; shorter is padded with zeros, longer is cut).
    #[inline]
    pub fn push(&mut self, seq: u64, channel: usize, data: &[u8]) {
        self.counts.packets += 1;
        let l = self.group.layout;
        if channel >= l.channels {
            self.counts.bad_channel += 1;
            return;
        }
        let number = seq / l.slots as u64;
        if !self.admit(seq, number) {
            return;
        }
        let Some(at) = self.block(number) else { return };
        let i = channel * l.slots + (seq % l.slots as u64) as usize;
        let Some((_, slots)) = &self.cache[at] else { return };
        match slots.fill(i, data) {
            Fill::Placed => self.counts.placed += 1,
            Fill::Duplicate => self.counts.duplicates += 1,
        }
        self.highest = self.highest.max(seq);
    }

    /// Moves the window for a packet of block `number`: false when the
    /// packet is late or held as a far stray (counted).
    fn admit(&mut self, seq: u64, number: u64) -> bool {
        let Some(base) = self.base else {
            self.start(seq, number);
            return true;
        };
        let slots = self.group.layout.slots as u64;
        let far_ahead =
            number > self.head && (number - self.head).saturating_mul(slots) > self.group.resync_gap;
        let far_behind = number < base && (base - number).saturating_mul(slots) > self.group.resync_gap;
        if far_ahead || far_behind {
            return self.far(seq);
        }
        self.candidate = Candidate::default();
        if number < base {
            self.counts.late += 1;
            return false;
        }
        if number > self.head {
            self.advance(number);
        }
        true
    }

    fn start(&mut self, seq: u64, number: u64) {
        self.base = Some(number);
        self.head = number;
        self.highest = seq;
        let mut st = self.group.lock();
        st.start = Some(st.start.map_or(seq, |s| s.min(seq)));
        self.group.release_below(&mut st, self.id, number);
    }

    /// Slides the window so that `number` is its newest block, releasing
    /// the blocks it moved past.
    fn advance(&mut self, number: u64) {
        self.head = number;
        let base = self.base.unwrap_or(number);
        let new_base = (number + 1).saturating_sub(self.group.window).max(base);
        if new_base > base {
            self.drop_below(new_base);
            self.base = Some(new_base);
            let mut st = self.group.lock();
            st.highest = st.highest.max(self.highest);
            self.group.release_below(&mut st, self.id, new_base);
        }
    }

    /// A packet far from the window: held as a resync candidate; once
    /// [`RESYNC_AGREE`](super::RESYNC_AGREE) agree, the member restarts there.
    fn far(&mut self, seq: u64) -> bool {
        let l = self.group.layout;
        let Some(low) = self.candidate.offer(seq, self.group.window * l.slots as u64) else {
            self.counts.out_of_window += 1;
            return false;
        };
        self.counts.resyncs += 1;
        self.cache.iter_mut().for_each(|e| *e = None);
        let number = low / l.slots as u64;
        let mut st = self.group.lock();
        st.highest = st.highest.max(self.highest);
        self.group.release_below(&mut st, self.id, u64::MAX);
        // A restart: loss is counted from the new stream's first packet.
        st.released_below[self.id] = number;
        st.start = Some(low);
        st.highest = seq;
        st.last_completed = None;
        drop(st);
        self.base = Some(number);
        self.head = seq / l.slots as u64;
        self.highest = seq;
        true
    }

    /// Where the shared block `number` (inside the window) sits in the
    /// cache, fetched from the group when it is not there yet (no reference
    /// count is touched per packet). None when the packet was dropped
    /// (counted).
    #[inline]
    fn block(&mut self, number: u64) -> Option<usize> {
        let at = (number % self.group.window) as usize;
        if self.cache[at].as_ref().is_some_and(|(n, _)| *n == number) {
            return Some(at);
        }
        loop {
            match self.group.fetch(self.id, number) {
                Ok(s) => {
                    self.cache[at] = Some((number, s));
                    return Some(at);
                }
                Err(Refused::Late) => {
                    self.counts.late += 1;
                    return None;
                }
                Err(Refused::NoBuffer) => {
                    self.counts.no_buffer += 1;
                    return None;
                }
                Err(Refused::Wait) => {
                    self.group.waits[self.id].fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            }
        }
    }

    /// This member is done: it releases every block and is no longer
    /// waited for. The last member out completes the remaining blocks.
    pub fn leave(&mut self) {
        if std::mem::replace(&mut self.left, true) {
            return;
        }
        self.cache.iter_mut().for_each(|e| *e = None);
        self.group.leave(self.id, self.highest);
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests;
