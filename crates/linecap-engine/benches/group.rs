//! `cargo bench --bench group`: group assembly (several threads filling one
//! block sequence) against its yardsticks, measured in the same
//! interleaved rounds, for 264-byte and 8 KiB slots, in order and with 1%
//! of packets displaced:
//! - `single`: one thread, one assembler, the whole stream;
//! - `group of 1`: the same stream through a group with one member (the
//!   cost of the group's machinery alone);
//! - `2 independent`: two threads, each with its own assembler and its own
//!   stream of half the packets (what two cores of this machine do when
//!   they share nothing: the ceiling);
//! - `group of 2, rr` / `group of 2, runs of 64`: two threads filling one
//!   group, numbers dealt round robin (neighbouring slots on both threads:
//!   the worst case for cache lines) or in runs of 64 (`send --flow-run`).
//!
//! Packets per second are over the wall time from a barrier to the last
//! thread's end.

#[path = "common/mod.rs"]
mod common;
use common::{feed, stream};

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use linecap_engine::assemble::group::{BlockOut, Group, GroupCounts, Policy};
use linecap_engine::assemble::{Assembler, Block, Layout, Options, PageBuf};

/// Hands every block's buffer straight back.
struct Recycle(Vec<PageBuf>);

impl BlockOut for Recycle {
    fn take(&mut self, block: Block, _: &GroupCounts) {
        black_box(block.filled);
        self.0.push(block.data);
    }
    fn give_back(&mut self) -> Option<PageBuf> {
        self.0.pop()
    }
}

const OPTS: Options = Options { window: 4, resync_gap: 1 << 24, zero_fill: true, pool: 16 };

fn single(layout: Layout, seqs: &[u64], payload: &[u8]) -> u64 {
    let mut a = Assembler::new(layout, OPTS);
    feed(&mut a, seqs, payload);
    a.counts().placed
}

/// Runs `work(i)` on `threads` threads from one barrier; packets per second.
fn timed(threads: usize, work: impl Fn(usize) -> u64 + Sync) -> f64 {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || {
                    barrier.wait();
                    work(i)
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        let placed: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        placed as f64 / t.elapsed().as_secs_f64()
    })
}

fn group(layout: Layout, shares: &[Vec<u64>], payload: &[u8]) -> f64 {
    let g = Group::new(layout, OPTS, Policy::Lossless, shares.len(), Box::new(Recycle(Vec::new())));
    let members: Vec<_> = (0..shares.len()).map(|i| std::sync::Mutex::new(Some(g.member(i)))).collect();
    let g2 = Arc::clone(&g);
    let rate = timed(shares.len(), |i| {
        let mut m = members[i].lock().unwrap().take().unwrap();
        for (k, &s) in shares[i].iter().enumerate() {
            if k % 64 == 0 {
                m.sync();
            }
            m.push(s, 0, payload);
        }
        let placed = m.counts().placed;
        g2.close();
        m.leave();
        placed
    });
    assert_eq!(g.counts().slots_lost, 0);
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn deal(seqs: &[u64], run: u64) -> Vec<Vec<u64>> {
    (0..2).map(|m| seqs.iter().copied().filter(|s| (s / run % 2) as usize == m).collect()).collect()
}

fn main() {
    const ROUNDS: usize = 5;
    for (slot, slots, packets) in [(264usize, 8192usize, 4_000_000u64), (8192, 256, 400_000)] {
        let layout = Layout::new(slot, slots, 1).unwrap();
        let payload = vec![0xa5u8; slot];
        for reorder in [0, 1] {
            let seqs = stream(packets, reorder);
            let halves = [stream(packets / 2, reorder), stream(packets / 2, reorder)];
            let (rr, runs) = (deal(&seqs, 1), deal(&seqs, 64));
            let one = [seqs.clone()];
            let mut rows: Vec<(&str, Vec<f64>)> =
                ["single", "group of 1", "2 independent", "group of 2, rr", "group of 2, runs of 64"]
                    .into_iter()
                    .map(|n| (n, Vec::new()))
                    .collect();
            for _ in 0..ROUNDS {
                rows[0].1.push(timed(1, |_| single(layout, &seqs, &payload)));
                rows[1].1.push(group(layout, &one, &payload));
                rows[2].1.push(timed(2, |i| single(layout, &halves[i], &payload)));
                rows[3].1.push(group(layout, &rr, &payload));
                rows[4].1.push(group(layout, &runs, &payload));
            }
            let single_m = median(rows[0].1.clone());
            let indep_m = median(rows[2].1.clone());
            for (name, v) in &rows {
                let m = median(v.clone());
                println!(
                    "slot {slot:>4} B, {reorder}% reordered, {name:<22} {:>6.2} M packets/s (median of {ROUNDS}, {:.2}-{:.2}), {:.2}x single, {:.2}x 2 independent",
                    m / 1e6,
                    v.iter().copied().fold(f64::INFINITY, f64::min) / 1e6,
                    v.iter().copied().fold(0.0, f64::max) / 1e6,
                    m / single_m,
                    m / indep_m,
                );
            }
        }
    }
}
