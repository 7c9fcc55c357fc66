//! Assembly: sequence-numbered packets into large contiguous blocks with an
//! exact record of what is missing. Pure and deterministic: no I/O, no
//! clock; the caller feeds packets and receives completed blocks.
//!
//! A packet's place is computed, not searched: with `slots` packets per
//! block, sequence number `s` goes to block `s / slots`, slot `s % slots`,
//! row `channel` (two-dimensional layouts: time × channel). Its data is
//! copied once into `block[(channel * slots + slot) * slot_bytes ..]` and a
//! presence bit is set. A window of open blocks absorbs reordering; when a
//! packet belongs past the window, the oldest blocks are completed (missing
//! slots zero-filled, or left as they are) and handed out. Packets older
//! than the window are late; a second copy is a duplicate. A packet further
//! than `resync_gap` away (either way) moves nothing by itself: it is held
//! as a candidate and counted `out_of_window`; only when [`RESYNC_AGREE`]
//! far packets in a row agree (each within the window of the previous
//! ones) with no in-stream packet between them does the stream restart
//! there (a `resync`: every open block closes; the held packets' slots are
//! lost). So one crafted packet, or a burst of garbage, costs counted
//! drops, not a train of near-empty blocks. Block buffers come from a fixed
//! pool: when none is free, the packet is dropped and counted.

pub mod group;
pub mod layout;

pub use layout::Layout;

pub use crate::sys::shm::PageBuf;

use std::collections::VecDeque;

/// Far packets in a row that must agree before the stream restarts there.
pub const RESYNC_AGREE: u64 = 4;

/// Far packets in a row that agree with each other (each within `reach`
/// of the lowest and the highest of them): a restart of the stream in the
/// making, or strays.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Candidate {
    agreeing: u64,
    low: u64,
    high: u64,
}

impl Candidate {
    /// Adds a far packet; once [`RESYNC_AGREE`] agree, returns the lowest
    /// of them (where the stream restarts) and starts over.
    pub(crate) fn offer(&mut self, seq: u64, reach: u64) -> Option<u64> {
        let agrees = self.agreeing > 0 && seq.abs_diff(self.high) <= reach && seq.abs_diff(self.low) <= reach;
        *self = if agrees {
            Candidate { agreeing: self.agreeing + 1, low: self.low.min(seq), high: self.high.max(seq) }
        } else {
            Candidate { agreeing: 1, low: seq, high: seq }
        };
        if self.agreeing < RESYNC_AGREE {
            return None;
        }
        let low = self.low;
        *self = Candidate::default();
        Some(low)
    }
}

/// What the assembler counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AssemblyCounts {
    /// Packets offered to the assembler.
    pub packets: u64,
    /// Packets copied into a block.
    pub placed: u64,
    /// Second and later copies of a slot.
    pub duplicates: u64,
    /// Packets older than the window.
    pub late: u64,
    /// Packets the format could not decode (short, bad header).
    pub malformed: u64,
    /// Well-formed packets whose sender flagged their data invalid (VDIF's
    /// invalid bit): they arrived, but their slot stays empty in the loss
    /// map and is filled like a missing one.
    #[serde(default)]
    pub invalid: u64,
    /// Packets whose channel is outside the layout.
    pub bad_channel: u64,
    /// Packets dropped because no block buffer was free.
    pub no_buffer: u64,
    /// Times the stream jumped further than the resync gap and restarted.
    pub resyncs: u64,
    /// Packets further than the resync gap from the stream that did not
    /// (yet) move it: strays, crafted numbers, and the packets that
    /// confirmed a resync before it happened.
    #[serde(default)]
    pub out_of_window: u64,
    /// Blocks completed and handed out.
    pub blocks: u64,
    /// Slots that never arrived (between the stream's first and newest
    /// packet): the missing slots
    /// of completed blocks, plus every slot of a block that never opened
    /// because none of its packets arrived (such a block is not handed out).
    pub slots_lost: u64,
}

impl AssemblyCounts {
    /// Counts a packet the format could not decode.
    pub fn count_malformed(&mut self) {
        self.packets += 1;
        self.malformed += 1;
    }

    /// Counts a packet its sender flagged as carrying invalid data.
    pub fn count_invalid(&mut self) {
        self.packets += 1;
        self.invalid += 1;
    }

    /// Every packet offered ended in exactly one of these.
    pub fn accounted(&self) -> u64 {
        self.placed
            + self.duplicates
            + self.late
            + self.malformed
            + self.invalid
            + self.bad_channel
            + self.no_buffer
            + self.out_of_window
    }
}

/// A block handed out by the assembler. Give `data` back with
/// [`Assembler::recycle`] when done, or the pool runs dry.
#[derive(Debug)]
pub struct Block {
    /// Block number (`first_seq / slots`).
    pub number: u64,
    /// Sequence number of slot 0.
    pub first_seq: u64,
    /// `channels × slots × slot_bytes` bytes, page-aligned (huge pages when possible).
    pub data: PageBuf,
    /// One bit per (channel, slot), row-major, LSB first.
    pub present: Vec<u64>,
    /// Slots that arrived.
    pub filled: u64,
    /// Slots that never arrived and were expected (not before the stream start).
    pub lost: u64,
}

impl Block {
    /// Whether (channel, slot) arrived.
    pub fn is_present(&self, channel: usize, slot: usize, slots: usize) -> bool {
        let i = channel * slots + slot;
        self.present.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }
}

/// Assembler options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Open blocks (reordering tolerance = `window × slots` packets).
    pub window: usize,
    /// A jump of more than this many packets restarts the stream.
    pub resync_gap: u64,
    /// Zero-fill missing slots (otherwise they keep old bytes).
    pub zero_fill: bool,
    /// Buffers in the pool (≥ window).
    pub pool: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { window: 4, resync_gap: 1 << 24, zero_fill: true, pool: 16 }
    }
}

struct Open {
    number: u64,
    data: PageBuf,
    present: Vec<u64>,
    filled: u64,
    /// Bytes received per slot, for slots filled by parts (heaps); empty
    /// until the first part arrives.
    got: Vec<u32>,
    /// One bit per byte of the block: where a received part started (a
    /// part that starts where another did is a duplicate). Empty until the
    /// first part arrives.
    starts: Vec<u64>,
}

/// Places packets into blocks.
pub struct Assembler {
    layout: Layout,
    opts: Options,
    open: VecDeque<Open>,
    /// Block number of `open[0]`, once the stream started.
    base: Option<u64>,
    /// First sequence number of the current stream (slots before it are not lost).
    start: u64,
    pool: Vec<PageBuf>,
    counts: AssemblyCounts,
    /// Number of the last block completed in the current stream.
    last_completed: Option<u64>,
    /// Highest sequence number placed or seen in the current stream.
    highest: u64,
    /// Far packets in a row agreeing with each other: (count, lowest, highest).
    candidate: Candidate,
}

impl Assembler {
    /// An assembler for `layout`, its pool allocated now (page-sized
    /// allocations; the hot path never allocates block memory).
    pub fn new(layout: Layout, opts: Options) -> Self {
        let opts = Options { window: opts.window.max(1), pool: opts.pool.max(opts.window.max(1)), ..opts };
        // Allocation failure leaves a smaller pool: counted as no_buffer drops, not a crash.
        let pool = (0..opts.pool).filter_map(|_| PageBuf::new(layout.block_bytes()).ok()).collect();
        Self {
            layout,
            opts,
            open: VecDeque::with_capacity(opts.window),
            base: None,
            start: 0,
            pool,
            counts: AssemblyCounts::default(),
            last_completed: None,
            highest: 0,
            candidate: Candidate::default(),
        }
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Counts so far.
    pub fn counts(&self) -> AssemblyCounts {
        self.counts
    }

    /// Returns a block's buffer to the pool.
    pub fn recycle(&mut self, data: PageBuf) {
        if data.len() == self.layout.block_bytes() && self.pool.len() < self.opts.pool {
            self.pool.push(data);
        }
    }

    /// Counts a packet the format could not decode.
    pub fn malformed(&mut self) {
        self.counts.count_malformed();
    }

    /// Counts a packet its sender flagged as carrying invalid data.
    pub fn invalid(&mut self) {
        self.counts.count_invalid();
    }

    fn open_block(&mut self, number: u64) -> Option<Open> {
        let data = self.pool.pop()?;
        let bits = (self.layout.channels * self.layout.slots).div_ceil(64);
        Some(Open { number, data, present: vec![0; bits], filled: 0, got: Vec::new(), starts: Vec::new() })
    }

    fn complete(&mut self, b: Open, out: &mut impl FnMut(Block)) {
        let l = self.layout;
        // Blocks between the previous completed one and this one never
        // opened: none of their packets arrived.
        if let Some(prev) = self.last_completed
            && b.number > prev + 1
        {
            self.counts.slots_lost += (b.number - prev - 1) * (l.slots * l.channels) as u64;
        }
        self.last_completed = Some(b.number);
        let first_seq = b.number * l.slots as u64;
        let mut lost = 0;
        for ch in 0..l.channels {
            for slot in 0..l.slots {
                let i = ch * l.slots + slot;
                if b.present[i / 64] >> (i % 64) & 1 == 1 {
                    continue;
                }
                let s = first_seq + slot as u64;
                // Before the stream started, or past the newest packet at
                // the end of a capture: not expected (yet), so not lost.
                if s >= self.start && s <= self.highest {
                    lost += 1;
                }
            }
        }
        let mut data = b.data;
        if self.opts.zero_fill && b.filled < (l.channels * l.slots) as u64 {
            for ch in 0..l.channels {
                for slot in 0..l.slots {
                    let i = ch * l.slots + slot;
                    if b.present[i / 64] >> (i % 64) & 1 == 0 {
                        let at = i * l.slot_bytes;
                        data[at..at + l.slot_bytes].fill(0);
                    }
                }
            }
        }
        self.counts.blocks += 1;
        self.counts.slots_lost += lost;
        out(Block { number: b.number, first_seq, data, present: b.present, filled: b.filled, lost });
    }

    /// Completes every open block (end of stream, or resync).
    pub fn flush(&mut self, out: &mut impl FnMut(Block)) {
        while let Some(b) = self.open.pop_front() {
            self.complete(b, out);
        }
        self.base = None;
    }

    /// Places one packet: sequence number, channel (row), and its data
    /// (`slot_bytes` long; shorter is padded with zeros, longer is cut).
    pub fn push(&mut self, seq: u64, channel: usize, data: &[u8], out: &mut impl FnMut(Block)) {
        let Some((idx, i)) = self.admit(seq, channel, false, out) else { return };
        let l = self.layout;
        let b = &mut self.open[idx];
        b.present[i / 64] |= 1 << (i % 64);
        b.filled += 1;
        let at = i * l.slot_bytes;
        let n = data.len().min(l.slot_bytes);
        b.data[at..at + n].copy_from_slice(&data[..n]);
        if n < l.slot_bytes {
            b.data[at + n..at + l.slot_bytes].fill(0);
        }
        self.counts.placed += 1;
    }

    /// Counts a packet and finds where it goes: (open block index, slot
    /// index within the block), or None when it is counted as bad channel,
    /// malformed, late, no buffer, or a duplicate of an arrived slot.
    fn admit(
        &mut self,
        seq: u64,
        channel: usize,
        malformed: bool,
        out: &mut impl FnMut(Block),
    ) -> Option<(usize, usize)> {
        self.counts.packets += 1;
        let l = self.layout;
        if channel >= l.channels {
            self.counts.bad_channel += 1;
            return None;
        }
        if malformed {
            self.counts.malformed += 1;
            return None;
        }
        let idx = self.locate(seq, out)?;
        let i = channel * l.slots + (seq % l.slots as u64) as usize;
        let b = &self.open[idx];
        if b.present[i / 64] >> (i % 64) & 1 == 1 {
            self.counts.duplicates += 1;
            return None;
        }
        Some((idx, i))
    }

    /// Places one part of a slot made of several packets (a SPEAD heap):
    /// `data` goes at byte `offset` of the slot, whose content is `total`
    /// bytes (at most `slot_bytes`; the rest is zeroed). The slot counts as
    /// arrived once `total` bytes did; a slot still short when its block
    /// completes is lost (zero-filled like a missing one). A part that
    /// starts where another did, or would overrun what is still missing,
    /// is a duplicate.
    pub fn push_part(
        &mut self,
        seq: u64,
        channel: usize,
        offset: usize,
        total: usize,
        data: &[u8],
        out: &mut impl FnMut(Block),
    ) {
        let l = self.layout;
        // An empty part fills nothing, and one that starts at `total` would
        // mark a start bit past the slot: both are malformed.
        let bad = total == 0
            || total > l.slot_bytes
            || data.is_empty()
            || offset >= total
            || offset.checked_add(data.len()).is_none_or(|end| end > total);
        let Some((idx, i)) = self.admit(seq, channel, bad, out) else { return };
        let b = &mut self.open[idx];
        if b.got.is_empty() {
            // Once per block that receives parts (not per packet).
            b.got = vec![0; l.channels * l.slots];
            b.starts = vec![0; (l.channels * l.slots * l.slot_bytes).div_ceil(64)];
        }
        let at = i * l.slot_bytes;
        let mark = at + offset;
        let got = b.got[i] as usize;
        if b.starts[mark / 64] >> (mark % 64) & 1 == 1 || got + data.len() > total {
            self.counts.duplicates += 1;
            return;
        }
        b.starts[mark / 64] |= 1 << (mark % 64);
        b.data[at + offset..at + offset + data.len()].copy_from_slice(data);
        b.got[i] = (got + data.len()) as u32;
        self.counts.placed += 1;
        if got + data.len() == total {
            b.present[i / 64] |= 1 << (i % 64);
            b.filled += 1;
            if total < l.slot_bytes {
                b.data[at + total..at + l.slot_bytes].fill(0);
            }
        }
    }

    /// Adds a far packet to the candidate; once [`RESYNC_AGREE`] agree,
    /// returns the lowest sequence number among them (the new start).
    fn confirm_far(&mut self, seq: u64) -> Option<u64> {
        self.candidate.offer(seq, self.opts.window as u64 * self.layout.slots as u64)
    }

    /// Moves the window for `seq` and finds (or opens) its block: the index
    /// in `open`, or None when the packet is late or no buffer is free
    /// (counted).
    fn locate(&mut self, seq: u64, out: &mut impl FnMut(Block)) -> Option<usize> {
        let l = self.layout;
        let number = seq / l.slots as u64;
        let base = match self.base {
            None => {
                self.start = seq;
                self.highest = seq;
                self.base = Some(number);
                number
            }
            Some(base) => {
                let newest = base + self.open.len().max(1) as u64 - 1;
                let far_ahead = number > newest && (number - newest) * l.slots as u64 > self.opts.resync_gap;
                let far_behind = number < base && (base - number) * l.slots as u64 > self.opts.resync_gap;
                if far_ahead || far_behind {
                    let Some(low) = self.confirm_far(seq) else {
                        self.counts.out_of_window += 1;
                        return None;
                    };
                    self.counts.resyncs += 1;
                    self.flush(out);
                    self.last_completed = None;
                    // The held packets were not placed: from the lowest of
                    // them on, their slots are lost.
                    self.start = low;
                    self.highest = seq;
                    let number = low.min(seq) / l.slots as u64;
                    self.base = Some(number);
                    number
                } else {
                    self.candidate = Candidate::default();
                    base
                }
            }
        };
        if number < base {
            self.counts.late += 1;
            return None;
        }
        self.highest = self.highest.max(seq);
        // Slide the window so that the packet's block is its newest.
        let w = self.opts.window as u64;
        let base = if number >= base + w {
            let new_base = number + 1 - w;
            while self.open.front().is_some_and(|b| b.number < new_base) {
                let b = self.open.pop_front().expect("checked");
                self.complete(b, out);
            }
            new_base
        } else {
            base
        };
        self.base = Some(base);
        match self.open.iter().position(|b| b.number == number) {
            Some(i) => Some(i),
            None => {
                let Some(b) = self.open_block(number) else {
                    self.counts.no_buffer += 1;
                    return None;
                };
                let at = self.open.iter().position(|o| o.number > number).unwrap_or(self.open.len());
                self.open.insert(at, b);
                Some(at)
            }
        }
    }
}

#[cfg(test)]
mod tests;
