//! The block sink: decodes each packet's sequence number (and channel),
//! places it with the [`Assembler`], and hands completed blocks to a writer
//! thread that stores each as `block-<first_seq>.bin` with a JSON sidecar
//! (layout, first sequence, presence map, counts), or publishes it into a
//! shared-memory ring.
//!
//! With several receive threads the sinks are members of one group
//! ([`BlockSink::start_group`], [`crate::assemble::group`]): every thread
//! places into the same blocks, and one writer stores them.
//!
//! The hand-off is a bounded queue of whole blocks; the writer returns each
//! buffer to the assembler's pool. When the queue is full the block is
//! dropped and counted (with the packets it held): capture never waits.
//!
//! The assembly keeps its own books: packets = placed + duplicates + late +
//! malformed + invalid + bad_channel + no_buffer + out_of_window; placed
//! packets end in a written block, a dropped block, or a block that failed
//! to write.

mod group;
mod outlet;
mod sidecar;
mod stream;

use std::path::PathBuf;

use super::shmring::RingOptions;
use crate::assemble::group::{Member, Policy};
use crate::assemble::{Assembler, AssemblyCounts, Block, Layout, Options};
use crate::format::raw::Unwrap;
use crate::packet::Batch;
use crate::stats::{BlocksIdx, StageCounters};
use outlet::{Outlet, WriterTotals};
pub use sidecar::{MAX_SIDECAR_BYTES, Sidecar};
use stream::place;
pub use stream::{Placer, StreamFormat};

/// Where completed blocks go.
#[derive(Debug, Clone)]
pub enum BlockOutput {
    /// Files in a folder (block + JSON sidecar each).
    Dir(PathBuf),
    /// A shared-memory ring other processes read.
    Shm(RingOptions),
}

/// Options of a block sink.
#[derive(Debug, Clone)]
pub struct BlockSinkOptions {
    /// Where blocks go.
    pub output: BlockOutput,
    /// Block geometry.
    pub layout: Layout,
    /// Window, resync gap, zero fill, pool size.
    pub assembler: Options,
    /// Packet format.
    pub format: StreamFormat,
    /// Completed blocks that may wait for the writer.
    pub queue: usize,
    /// When the queue is full, wait for the writer instead of dropping the
    /// block (a source that can wait: a file read back loses nothing).
    pub wait_for_writer: bool,
    /// With several receive threads: what their group does when one falls
    /// out of step.
    pub policy: Policy,
}

/// Final figures of a block sink.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockReport {
    /// The assembler's counts.
    pub assembly: AssemblyCounts,
    /// Blocks written with their sidecar.
    pub written: u64,
    /// Blocks dropped because the writer was behind.
    pub dropped_blocks: u64,
    /// Packets inside dropped blocks.
    pub dropped_packets: u64,
    /// Blocks that failed to write.
    pub write_errors: u64,
    /// Times a narrow counter wrapped.
    pub wraps: u64,
    /// Shared-memory ring: unread blocks overwritten (lossy mode).
    #[serde(default)]
    pub ring_overwritten: u64,
    /// Shared-memory ring: waits for the reader (lossless mode).
    #[serde(default)]
    pub ring_waits: u64,
    /// Shared-memory ring: blocks given up at shutdown while the reader did not read (lossless).
    #[serde(default)]
    pub ring_dropped: u64,
    /// Group of receive threads: times a slow thread was released from
    /// blocks by force (lossy), summed over the threads.
    #[serde(default)]
    pub group_forced: u64,
    /// Group of receive threads: times a thread waited for a slow one (lossless).
    #[serde(default)]
    pub group_waits: u64,
    /// Group of receive threads: threads that ended while the others went on.
    #[serde(default)]
    pub members_left: u64,
}

/// Assembles on the receive thread, writes on its own thread.
pub struct BlockSink {
    unwrap: Unwrap,
    format: StreamFormat,
    counters: StageCounters,
    mode: Mode,
}

// One per receive thread, never moved per packet: boxing the larger
// variant would only add an indirection on the hot path.
#[allow(clippy::large_enum_variant)]
enum Mode {
    /// One receive thread: its own assembler and writer.
    Alone { asm: Assembler, outlet: Outlet },
    /// A member of a group: the group's blocks, the group's writer.
    Member(Member),
}

impl BlockSink {
    /// Checks the folder and starts the writer thread.
    pub fn start(opts: BlockSinkOptions, counters: StageCounters) -> std::io::Result<Self> {
        let queue = opts.queue.max(1);
        let pool = opts.assembler.pool.max(opts.assembler.window + queue + 1);
        let outlet = Outlet::start(&opts, pool)?;
        let asm = Assembler::new(opts.layout, Options { pool, ..opts.assembler });
        Ok(Self {
            unwrap: Unwrap::new(opts.format.counter_bits()),
            format: opts.format,
            counters,
            mode: Mode::Alone { asm, outlet },
        })
    }

    fn publish(&self) {
        let c = self.counts();
        let set = |i: BlocksIdx, v: u64| self.counters.set(i as usize, v);
        set(BlocksIdx::Packets, c.packets);
        set(BlocksIdx::Placed, c.placed);
        set(BlocksIdx::Duplicates, c.duplicates);
        set(BlocksIdx::Late, c.late);
        set(BlocksIdx::Malformed, c.malformed);
        set(BlocksIdx::Invalid, c.invalid);
        set(BlocksIdx::BadChannel, c.bad_channel);
        set(BlocksIdx::NoBuffer, c.no_buffer);
        set(BlocksIdx::Resyncs, c.resyncs);
        set(BlocksIdx::OutOfWindow, c.out_of_window);
        set(BlocksIdx::Wraps, self.unwrap.wraps);
        match &self.mode {
            Mode::Alone { outlet, .. } => {
                set(BlocksIdx::Blocks, c.blocks);
                set(BlocksIdx::SlotsLost, c.slots_lost);
                set(BlocksIdx::DroppedBlocks, outlet.dropped_blocks);
                set(BlocksIdx::DroppedPackets, outlet.dropped_packets);
            }
            // The group's blocks are counted on the group's own stage.
            Mode::Member(m) => {
                set(BlocksIdx::GroupForced, m.group().forced(m.id()));
                set(BlocksIdx::GroupWaits, m.group().waits(m.id()));
            }
        }
    }

    fn counts(&self) -> AssemblyCounts {
        match &self.mode {
            Mode::Alone { asm, .. } => asm.counts(),
            Mode::Member(m) => m.counts(),
        }
    }

    /// Completes the open blocks, waits for the writer, returns the
    /// figures (a group member's: its own packets; the group's blocks are
    /// on the group's stage).
    pub fn close(&mut self) -> BlockReport {
        let mut report = BlockReport { wraps: self.unwrap.wraps, ..Default::default() };
        match &mut self.mode {
            Mode::Alone { asm, outlet } => {
                let mut done = Vec::new();
                asm.flush(&mut |b| done.push(b));
                for b in done {
                    if let Some(buf) = outlet.hand_off(b) {
                        asm.recycle(buf);
                    }
                }
                let t = outlet.close();
                set_writer_totals(&self.counters, &t);
                report.written = t.written;
                report.write_errors = t.errors;
                report.ring_overwritten = t.overwritten;
                report.ring_waits = t.waits;
                report.ring_dropped = t.ring_dropped;
                report.dropped_blocks = outlet.dropped_blocks;
                report.dropped_packets = outlet.dropped_packets;
            }
            Mode::Member(m) => {
                m.group().close();
                m.leave();
            }
        }
        report.assembly = self.counts();
        self.publish();
        report
    }
}

/// What the writer did, on a stage.
fn set_writer_totals(c: &StageCounters, t: &WriterTotals) {
    c.set(BlocksIdx::Written as usize, t.written);
    c.set(BlocksIdx::WriteErrors as usize, t.errors);
    c.set(BlocksIdx::RingOverwritten as usize, t.overwritten);
    c.set(BlocksIdx::RingWaits as usize, t.waits);
    c.set(BlocksIdx::RingDropped as usize, t.ring_dropped);
}

impl super::Sink for BlockSink {
    fn consume(&mut self, batch: &Batch<'_>) {
        match &mut self.mode {
            Mode::Alone { asm, outlet } => {
                while let Some(buf) = outlet.reclaim() {
                    asm.recycle(buf);
                }
                let mut done: Vec<Block> = Vec::new();
                for p in batch.iter() {
                    if !p.is_udp {
                        asm.malformed();
                        continue;
                    }
                    place(&self.format, &mut self.unwrap, asm, p.data, &mut |b| done.push(b));
                }
                for b in done {
                    if let Some(buf) = outlet.hand_off(b) {
                        asm.recycle(buf);
                    }
                }
            }
            Mode::Member(m) => {
                m.sync();
                for p in batch.iter() {
                    if !p.is_udp {
                        m.malformed();
                        continue;
                    }
                    place(&self.format, &mut self.unwrap, m, p.data, &mut |_| {});
                }
            }
        }
        self.publish();
    }

    fn tick(&mut self) {
        // A member that receives nothing still lets go of the blocks the
        // group released it from.
        if let Mode::Member(m) = &mut self.mode {
            m.sync();
            self.publish();
        }
    }

    fn finish(&mut self) -> crate::Result<()> {
        self.close();
        Ok(())
    }

    fn name(&self) -> &'static str {
        "blocks"
    }
}
