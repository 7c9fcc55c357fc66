//! Group assembly against the single-thread assembler: the same packets,
//! dealt to members on their own threads, make the same blocks.

use super::*;
use crate::assemble::{Assembler, RESYNC_AGREE};
use std::sync::Mutex;

/// The data of packet `seq`: recognisable bytes.
fn data(seq: u64, n: usize) -> Vec<u8> {
    (0..n).map(|i| (seq as u8).wrapping_mul(31) ^ i as u8 ^ 0x5a).collect()
}

/// A completed block, copied out.
#[derive(Debug, Clone, PartialEq)]
struct Out {
    number: u64,
    data: Vec<u8>,
    present: Vec<u64>,
    filled: u64,
    lost: u64,
}

impl From<&Block> for Out {
    fn from(b: &Block) -> Self {
        Out {
            number: b.number,
            data: b.data.to_vec(),
            present: b.present.clone(),
            filled: b.filled,
            lost: b.lost,
        }
    }
}

/// Copies each block out and hands its buffer straight back.
#[derive(Clone, Default)]
struct Collect {
    blocks: Arc<Mutex<Vec<Out>>>,
    back: Arc<Mutex<Vec<PageBuf>>>,
}

impl BlockOut for Collect {
    fn take(&mut self, block: Block, _: &GroupCounts) {
        self.blocks.lock().unwrap().push(Out::from(&block));
        self.back.lock().unwrap().push(block.data);
    }
    fn give_back(&mut self) -> Option<PageBuf> {
        self.back.lock().unwrap().pop()
    }
}

const LAYOUT: Layout = Layout { slot_bytes: 24, slots: 64, channels: 1 };

fn single(packets: &[u64]) -> (Vec<Out>, AssemblyCounts) {
    let mut a = Assembler::new(LAYOUT, Options::default());
    let mut out = Vec::new();
    for &s in packets {
        let mut done = Vec::new();
        a.push(s, 0, &data(s, LAYOUT.slot_bytes), &mut |b| done.push(b));
        for b in done {
            out.push(Out::from(&b));
            a.recycle(b.data);
        }
    }
    a.flush(&mut |b| out.push(Out::from(&b)));
    (out, a.counts())
}

/// Deals `packets` to `members` threads by `deal`, each placing its share
/// in order; returns the blocks and the members' summed counts.
fn grouped(
    packets: &[u64],
    members: usize,
    policy: Policy,
    deal: impl Fn(u64) -> usize,
) -> (Vec<Out>, AssemblyCounts, Arc<Group>) {
    let out = Collect::default();
    let group = Group::new(LAYOUT, Options::default(), policy, members, Box::new(out.clone()));
    let shares: Vec<Vec<u64>> =
        (0..members).map(|m| packets.iter().copied().filter(|&s| deal(s) == m).collect()).collect();
    let threads: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(m, share)| {
            let mut member = group.member(m);
            std::thread::spawn(move || {
                for (k, s) in share.into_iter().enumerate() {
                    if k % 32 == 0 {
                        member.sync();
                    }
                    member.push(s, 0, &data(s, LAYOUT.slot_bytes));
                }
                member.group().close();
                member.counts()
            })
        })
        .collect();
    let mut counts = AssemblyCounts::default();
    for t in threads {
        let c = t.join().unwrap();
        counts.packets += c.packets;
        counts.placed += c.placed;
        counts.duplicates += c.duplicates;
        counts.late += c.late;
        counts.no_buffer += c.no_buffer;
    }
    let blocks = std::mem::take(&mut *out.blocks.lock().unwrap());
    (blocks, counts, group)
}

/// 0..n with every 7th packet lost and neighbours swapped every 5.
fn stream(n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).filter(|s| s % 7 != 3).collect();
    for i in (0..v.len() - 1).step_by(5) {
        v.swap(i, i + 1);
    }
    v
}

#[test]
fn two_members_make_the_blocks_one_assembler_makes() {
    // Flows of one packet each (round robin), and runs of 16 (--flow-run).
    for run in [1, 16] {
        let packets = stream(64 * 40);
        let (want, wc) = single(&packets);
        let (got, gc, group) = grouped(&packets, 2, Policy::Lossless, |s| (s / run % 2) as usize);
        assert_eq!(got.len(), want.len(), "run {run}");
        assert!(got == want, "run {run}: blocks differ");
        assert_eq!((gc.packets, gc.placed, gc.duplicates, gc.late), (wc.packets, wc.placed, 0, 0));
        let g = group.counts();
        assert_eq!((g.blocks, g.slots_lost, g.members_left), (wc.blocks, wc.slots_lost, 0));
    }
}

#[test]
fn a_copy_at_two_members_is_placed_once() {
    let packets: Vec<u64> = (0..64 * 8).collect();
    let out = Collect::default();
    let group = Group::new(LAYOUT, Options::default(), Policy::Lossy, 2, Box::new(out.clone()));
    let (mut a, mut b) = (group.member(0), group.member(1));
    for &s in &packets {
        a.push(s, 0, &data(s, LAYOUT.slot_bytes));
        b.push(s, 0, &data(s, LAYOUT.slot_bytes));
    }
    let (ca, cb) = (a.counts(), b.counts());
    group.close();
    drop((a, b));
    assert_eq!(ca.placed + cb.placed, packets.len() as u64);
    assert_eq!(ca.duplicates + cb.duplicates, packets.len() as u64);
    let blocks = out.blocks.lock().unwrap();
    assert_eq!(blocks.len(), 8);
    assert!(blocks.iter().all(|b| b.filled == 64 && b.lost == 0));
}

#[test]
fn lossy_keeps_blocks_flowing_past_a_silent_member() {
    let out = Collect::default();
    let group = Group::new(LAYOUT, Options::default(), Policy::Lossy, 2, Box::new(out.clone()));
    let mut a = group.member(0);
    let b = group.member(1);
    // Member 0 gets the even numbers; member 1, the odd ones, gets nothing.
    for s in (0..64 * 40).step_by(2) {
        a.push(s, 0, &data(s, LAYOUT.slot_bytes));
    }
    // Blocks went out while the capture ran, not only at its end.
    let during = out.blocks.lock().unwrap().len();
    assert!(during >= 40 - 2 * 4 - 1, "{during} blocks out while running");
    assert!(group.forced(1) > 0 && group.forced(0) == 0);
    group.close();
    drop((a, b));
    let blocks = out.blocks.lock().unwrap();
    assert_eq!(blocks.len(), 40);
    // Every odd slot is lost, up to the last packet (2558).
    assert!(
        blocks.iter().all(|b| b.filled == 32),
        "{:?}",
        blocks.iter().map(|b| b.filled).collect::<Vec<_>>()
    );
    assert_eq!(group.counts().slots_lost, 40 * 32 - 1);
}

#[test]
fn a_member_released_by_force_counts_its_packets_late() {
    let out = Collect::default();
    let group = Group::new(LAYOUT, Options::default(), Policy::Lossy, 2, Box::new(out.clone()));
    let (mut a, mut b) = (group.member(0), group.member(1));
    b.push(1, 0, &data(1, 24));
    for s in (0..64 * 20).step_by(2) {
        a.push(s, 0, &data(s, 24));
    }
    // Member 1 still points at block 0 until it syncs; then block 0 goes
    // out, and its packet for block 1 is late.
    b.sync();
    b.push(65, 0, &data(65, 24));
    assert_eq!((b.counts().placed, b.counts().late), (1, 1));
    group.close();
    drop((a, b));
    let blocks = out.blocks.lock().unwrap();
    assert_eq!(blocks[0].filled, 33, "member 1's packet before it fell behind is in block 0");
}

#[test]
fn lossless_waits_for_a_silent_member_until_it_leaves() {
    let out = Collect::default();
    let group = Group::new(LAYOUT, Options::default(), Policy::Lossless, 2, Box::new(out.clone()));
    let mut a = group.member(0);
    let b = group.member(1);
    let g = group.clone();
    let t = std::thread::spawn(move || {
        for s in (0..64 * 20).step_by(2) {
            a.push(s, 0, &data(s, 24));
        }
        a.counts()
    });
    // Member 0 must come to wait: nothing goes out while member 1 holds block 0.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while g.waits(0) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(g.waits(0) > 0, "member 0 never waited");
    assert!(out.blocks.lock().unwrap().is_empty());
    drop(b); // member 1 ends: no longer waited for, and counted as having left
    let ca = t.join().unwrap();
    assert_eq!((ca.placed, ca.no_buffer, ca.late), (640, 0, 0));
    group.close();
    assert_eq!(group.counts().members_left, 1);
}

#[test]
fn both_members_follow_a_restart_of_the_stream() {
    let far = 1u64 << 40;
    let mut packets: Vec<u64> = (0..64 * 4).collect();
    packets.extend(far..far + 64 * 4);
    // Dealt in one thread, alternately, so that neither member runs ahead.
    let out = Collect::default();
    let group = Group::new(LAYOUT, Options::default(), Policy::Lossy, 2, Box::new(out.clone()));
    let mut members = [group.member(0), group.member(1)];
    for &s in &packets {
        members[(s % 2) as usize].push(s, 0, &data(s, LAYOUT.slot_bytes));
    }
    let (c0, c1) = (members[0].counts(), members[1].counts());
    group.close();
    drop(members);
    assert_eq!((c0.resyncs, c1.resyncs), (1, 1));
    // Each member held its first far packets until they agreed.
    assert_eq!(c0.out_of_window + c1.out_of_window, 2 * (RESYNC_AGREE - 1));
    assert_eq!(c0.placed + c1.placed, packets.len() as u64 - 2 * (RESYNC_AGREE - 1), "{c0:?} {c1:?}");
    let got = out.blocks.lock().unwrap();
    assert_eq!(got.iter().map(|b| b.number).collect::<Vec<_>>()[..5], [0, 1, 2, 3, far / 64]);
    assert_eq!(got.len(), 8);
    assert_eq!(group.counts().members_left, 0);
}

#[test]
fn one_crafted_number_at_one_member_moves_nothing() {
    // A genuine stream dealt round robin, and one packet numbered far away
    // arriving at member 1 in the middle of it (and a bad channel at
    // member 0): both counted, the blocks those of the genuine stream.
    let mut packets: Vec<u64> = (0..64 * 12).collect();
    let (want, _) = single(&packets);
    packets.insert(64 * 6 + 1, 1 << 50);
    let out = Collect::default();
    let group = Group::new(LAYOUT, Options::default(), Policy::Lossy, 2, Box::new(out.clone()));
    let mut members = [group.member(0), group.member(1)];
    for &s in &packets {
        let m = if s == 1 << 50 { 1 } else { (s % 2) as usize };
        members[m].push(s, 0, &data(s, LAYOUT.slot_bytes));
    }
    members[0].push(3, 7, &data(3, LAYOUT.slot_bytes));
    let (c0, c1) = (members[0].counts(), members[1].counts());
    group.close();
    drop(members);
    assert_eq!((c1.out_of_window, c1.resyncs, c0.bad_channel), (1, 0, 1));
    assert_eq!(c0.placed + c1.placed, 64 * 12);
    assert!(*out.blocks.lock().unwrap() == want, "the crafted packet changed the blocks");
}
