//! Block sinks of several receive threads that fill one sequence of
//! blocks: one group assembly, one writer, one output (a folder or a ring
//! that readers read as they read a single thread's).
//!
//! Counters: each member's stage holds its own packets (placed, late,
//! duplicates... and how often it fell out of step: `group_forced`,
//! `group_waits`); the group's stage (`blocks.group`) holds the blocks,
//! the lost slots, the writer's figures and `members_left`. A lossless
//! group waits for the writer too, instead of dropping blocks at its queue.

use super::outlet::Outlet;
use super::{BlockSink, BlockSinkOptions, Mode, StreamFormat, set_writer_totals};
use crate::assemble::group::{BlockOut, Group, GroupCounts};
use crate::assemble::{Block, Options, PageBuf};
use crate::format::raw::Unwrap;
use crate::stats::{BlocksIdx, StageCounters};

/// The group's output: the writer's queue, and the group's stage. Called
/// under the group's lock, so the stage has one writer at a time.
struct GroupOut {
    outlet: Outlet,
    stage: StageCounters,
    /// Buffers of blocks dropped at the queue, given back first.
    spare: Vec<PageBuf>,
}

impl GroupOut {
    fn publish(&self, counts: &GroupCounts) {
        let set = |i: BlocksIdx, v: u64| self.stage.set(i as usize, v);
        set(BlocksIdx::Blocks, counts.blocks);
        set(BlocksIdx::SlotsLost, counts.slots_lost);
        set(BlocksIdx::MembersLeft, counts.members_left);
        set(BlocksIdx::DroppedBlocks, self.outlet.dropped_blocks);
        set(BlocksIdx::DroppedPackets, self.outlet.dropped_packets);
    }
}

impl BlockOut for GroupOut {
    fn take(&mut self, block: Block, counts: &GroupCounts) {
        if let Some(buf) = self.outlet.hand_off(block) {
            self.spare.push(buf);
        }
        self.publish(counts);
    }

    fn give_back(&mut self) -> Option<PageBuf> {
        self.spare.pop().or_else(|| self.outlet.reclaim())
    }

    fn finish(&mut self, counts: &GroupCounts) {
        let t = self.outlet.close();
        set_writer_totals(&self.stage, &t);
        self.publish(counts);
    }
}

impl BlockSink {
    /// The block sinks of `member_stages.len()` receive threads that fill
    /// one sequence of blocks (one folder or one ring), with the group's
    /// own counters on `group_stage`. Refuses a format whose slots are made
    /// of parts (SPEAD heaps): their parts may arrive at different threads.
    pub fn start_group(
        opts: BlockSinkOptions,
        member_stages: Vec<StageCounters>,
        group_stage: StageCounters,
    ) -> std::io::Result<Vec<Self>> {
        if opts.format == StreamFormat::SpeadHeap {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "spead-heap blocks are assembled by one receive thread: use --threads 1 (or --format spead)",
            ));
        }
        let members = member_stages.len();
        if !(1..=64).contains(&members) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a group assembles for 1 to 64 receive threads, not {members}"),
            ));
        }
        // Lossless all the way: blocks also wait for the writer, rather
        // than being dropped at its queue (a lossless group that caught up
        // with a slow thread completes many blocks at once).
        let mut opts = opts;
        opts.wait_for_writer |= opts.policy == crate::assemble::group::Policy::Lossless;
        let queue = opts.queue.max(1);
        let pool = opts.assembler.pool.max(2 * opts.assembler.window + queue + members + 1);
        let outlet = Outlet::start(&opts, pool)?;
        let out = GroupOut { outlet, stage: group_stage, spare: Vec::new() };
        let group =
            Group::new(opts.layout, Options { pool, ..opts.assembler }, opts.policy, members, Box::new(out));
        Ok(member_stages
            .into_iter()
            .enumerate()
            .map(|(id, counters)| BlockSink {
                unwrap: Unwrap::new(opts.format.counter_bits()),
                format: opts.format,
                counters,
                mode: Mode::Member(group.member(id)),
            })
            .collect())
    }
}
