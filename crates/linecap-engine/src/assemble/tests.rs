//! Seeded simulations of loss, reordering and duplication whose exact
//! counts and block contents are checked, and property tests.

use super::*;
use std::collections::BTreeSet;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// The data of packet (seq, channel): recognisable bytes.
fn data(seq: u64, ch: usize, n: usize) -> Vec<u8> {
    (0..n).map(|i| (seq as u8).wrapping_mul(31) ^ (ch as u8).wrapping_mul(7) ^ i as u8 ^ 0x5a).collect()
}

struct Run {
    blocks: Vec<Block>,
    counts: AssemblyCounts,
}

fn run(layout: Layout, opts: Options, packets: &[(u64, usize)]) -> Run {
    let mut a = Assembler::new(layout, opts);
    let mut blocks = Vec::new();
    for &(s, ch) in packets {
        let mut got = Vec::new();
        a.push(s, ch, &data(s, ch, layout.slot_bytes), &mut |b| got.push(b));
        for b in got {
            let mut copy = PageBuf::new(b.data.len()).unwrap();
            copy.copy_from_slice(&b.data);
            blocks.push(Block { data: copy, present: b.present.clone(), ..b });
            a.recycle(b.data);
        }
    }
    a.flush(&mut |b| blocks.push(b));
    Run { blocks, counts: a.counts() }
}

fn check_contents(layout: Layout, r: &Run) {
    for b in &r.blocks {
        for ch in 0..layout.channels {
            for slot in 0..layout.slots {
                let at = (ch * layout.slots + slot) * layout.slot_bytes;
                let bytes = &b.data[at..at + layout.slot_bytes];
                if b.is_present(ch, slot, layout.slots) {
                    assert_eq!(
                        bytes,
                        &data(b.first_seq + slot as u64, ch, layout.slot_bytes)[..],
                        "block {} slot {slot}",
                        b.number
                    );
                } else {
                    assert!(bytes.iter().all(|&x| x == 0), "missing slot zero-filled");
                }
            }
        }
    }
}

#[test]
fn in_order_stream_fills_blocks_exactly() {
    let l = Layout::new(16, 8, 1).unwrap();
    let pk: Vec<_> = (0..64).map(|s| (s, 0)).collect();
    let r = run(l, Options::default(), &pk);
    assert_eq!(r.blocks.len(), 8);
    assert!(r.blocks.iter().all(|b| b.filled == 8 && b.lost == 0));
    assert_eq!(r.blocks.iter().map(|b| b.number).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    assert_eq!(r.counts.placed, 64);
    assert_eq!(r.counts.packets, r.counts.accounted());
    check_contents(l, &r);
}

#[test]
fn seeded_loss_reorder_duplication_exact() {
    for seed in 1..30u64 {
        for channels in [1usize, 3] {
            let l = Layout::new(24, 16, channels).unwrap();
            let opts = Options { window: 4, pool: 8, ..Options::default() };
            let mut rng = Lcg(seed);
            let n = 16 * 40u64; // whole blocks
            let mut stream = Vec::new();
            let mut lost = BTreeSet::new();
            let mut dups = 0u64;
            for s in 0..n {
                for ch in 0..channels {
                    let r = rng.next() % 1000;
                    // Keep the very first and very last packets so the stream's ends are known.
                    if r < 20 && s != 0 && s != n - 1 {
                        lost.insert((s, ch));
                        continue;
                    }
                    stream.push((s, ch));
                    if r >= 985 {
                        stream.push((s, ch));
                        dups += 1;
                    }
                }
            }
            // Reorder: displace packets by up to 20 positions (< (window-1) blocks), keeping the first in place.
            for i in (1..stream.len()).rev() {
                if rng.next().is_multiple_of(10) {
                    let j = i.saturating_sub((rng.next() % 20) as usize).max(1);
                    stream.swap(i, j);
                }
            }
            let r = run(l, opts, &stream);
            let c = r.counts;
            assert_eq!(c.packets, stream.len() as u64);
            assert_eq!(c.late, 0, "seed {seed}: displacement stays inside the window");
            assert_eq!(c.duplicates, dups, "seed {seed}");
            assert_eq!(c.placed, (n * channels as u64) - lost.len() as u64, "seed {seed}");
            assert_eq!(c.slots_lost, lost.len() as u64, "seed {seed} ch {channels}");
            assert_eq!(c.packets, c.accounted());
            assert_eq!(r.blocks.len() as u64, n / 16);
            for b in &r.blocks {
                for ch in 0..channels {
                    for slot in 0..16 {
                        let s = b.first_seq + slot as u64;
                        assert_eq!(b.is_present(ch, slot, 16), !lost.contains(&(s, ch)));
                    }
                }
            }
            check_contents(l, &r);
        }
    }
}

#[test]
fn late_packets_and_whole_lost_blocks() {
    let l = Layout::new(8, 4, 1).unwrap();
    let opts = Options { window: 2, pool: 4, ..Options::default() };
    // Blocks 0,1 ... then a jump to block 5 (blocks 2,3,4 never seen), then a late packet of block 0.
    let pk = vec![(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (20, 0), (21, 0), (22, 0), (23, 0), (1, 0)];
    let r = run(l, opts, &pk);
    assert_eq!(r.counts.late, 1);
    // Block 1 lost 3 slots (5,6,7), blocks 2..4 lost whole (12 slots).
    assert_eq!(r.counts.slots_lost, 3 + 12);
    assert_eq!(r.blocks.iter().map(|b| b.number).collect::<Vec<_>>(), vec![0, 1, 5]);
    assert_eq!(r.counts.packets, r.counts.accounted());
}

#[test]
fn slots_before_the_start_are_not_lost() {
    let l = Layout::new(8, 10, 1).unwrap();
    let pk: Vec<_> = (7..20).map(|s| (s, 0)).collect();
    let r = run(l, Options::default(), &pk);
    assert_eq!(r.counts.slots_lost, 0);
    assert_eq!(r.blocks[0].filled, 3);
    assert_eq!(r.blocks[0].lost, 0);
}

#[test]
fn far_jumps_resync_both_ways() {
    let l = Layout::new(8, 4, 1).unwrap();
    let opts = Options { window: 2, resync_gap: 100, pool: 4, ..Options::default() };
    let mut pk: Vec<(u64, usize)> = (0..8).map(|s| (s, 0)).collect();
    pk.extend((1000..1008).map(|s| (s, 0))); // far ahead
    pk.extend((0..4).map(|s| (s, 0))); // counter reset: far behind
    let r = run(l, opts, &pk);
    assert_eq!(r.counts.resyncs, 2);
    assert_eq!(r.counts.late, 0);
    // Each resync is confirmed by RESYNC_AGREE packets: the first three
    // are held (out of window) and their slots are lost.
    assert_eq!(r.counts.out_of_window, 2 * (RESYNC_AGREE - 1));
    assert_eq!(r.counts.slots_lost, 2 * (RESYNC_AGREE - 1));
    assert_eq!(r.counts.placed, 20 - 2 * (RESYNC_AGREE - 1));
    assert_eq!(r.counts.packets, r.counts.accounted());
    assert_eq!(r.blocks.iter().map(|b| b.number).collect::<Vec<_>>(), vec![0, 1, 250, 251, 0]);
}

#[test]
fn one_crafted_number_in_a_stream_moves_nothing() {
    let l = Layout::new(8, 4, 1).unwrap();
    let opts = Options { window: 2, resync_gap: 100, pool: 4, ..Options::default() };
    let mut pk: Vec<(u64, usize)> = (0..16).map(|s| (s, 0)).collect();
    pk.insert(5, (1 << 63, 0));
    pk.insert(9, ((1 << 63) + 1, 0));
    let r = run(l, opts, &pk);
    assert_eq!((r.counts.out_of_window, r.counts.resyncs, r.counts.slots_lost), (2, 0, 0));
    assert_eq!(r.counts.placed, 16);
    assert_eq!(r.blocks.iter().map(|b| b.number).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
}

#[test]
fn a_burst_of_garbage_opens_no_blocks() {
    let l = Layout::new(8, 1024, 1).unwrap();
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut pk = Vec::new();
    for _ in 0..100_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        pk.push((rng, 0));
    }
    let r = run(l, Options::default(), &pk);
    // The first packet starts a stream (one block); nothing else agrees.
    assert!(r.blocks.len() <= 1, "{} blocks", r.blocks.len());
    assert_eq!(r.counts.resyncs, 0);
    assert_eq!(r.counts.out_of_window, 99_999);
    assert_eq!(r.counts.packets, r.counts.accounted());
}

#[test]
fn an_empty_part_at_the_end_of_the_last_slot_is_malformed() {
    // The crafted SPEAD packet of issue 9: offset == heap size, no payload,
    // its heap on a block's last slot.
    let l = Layout::new(64, 4, 1).unwrap();
    let mut a = Assembler::new(l, Options::default());
    let mut out = |_b: Block| {};
    a.push_part(3, 0, 64, 64, &[], &mut out);
    a.push_part(3, 0, 63, 64, &[], &mut out);
    a.push_part(3, 0, 0, 64, &[1; 64], &mut out);
    let c = a.counts();
    assert_eq!((c.malformed, c.placed), (2, 1));
}

#[test]
fn pool_exhaustion_is_counted_not_blocking() {
    let l = Layout::new(8, 2, 1).unwrap();
    let mut a = Assembler::new(l, Options { window: 2, pool: 2, ..Options::default() });
    let mut held = Vec::new();
    for s in 0..10 {
        a.push(s, 0, &[1; 8], &mut |b| held.push(b)); // never recycled
    }
    let c = a.counts();
    assert!(c.no_buffer > 0);
    assert_eq!(c.packets, c.accounted());
    for b in held {
        a.recycle(b.data);
    }
    a.push(100, 0, &[1; 8], &mut |_| {});
    assert_eq!(a.counts().no_buffer, c.no_buffer, "recycled buffers are used again");
}

#[test]
fn bad_channel_and_malformed_are_counted() {
    let l = Layout::new(8, 2, 2).unwrap();
    let mut a = Assembler::new(l, Options::default());
    a.push(0, 2, &[0; 8], &mut |_| {});
    a.malformed();
    let c = a.counts();
    assert_eq!((c.bad_channel, c.malformed, c.packets), (1, 1, 2));
    assert!(Layout::new(0, 1, 1).is_err());
    assert!(Layout::new(1 << 20, 1 << 20, 16).is_err());
}

proptest::proptest! {
    #[test]
    fn every_packet_is_accounted_for(
        pk in proptest::collection::vec((0u64..200, 0usize..3), 0..400),
        window in 1usize..5,
        slots in 1usize..9,
    ) {
        let l = Layout::new(4, slots, 2).unwrap();
        let r = run(l, Options { window, pool: window + 1, resync_gap: 64, zero_fill: true }, &pk);
        proptest::prop_assert_eq!(r.counts.packets, r.counts.accounted());
        let filled: u64 = r.blocks.iter().map(|b| b.filled).sum();
        proptest::prop_assert_eq!(filled, r.counts.placed);
        check_contents(l, &r);
    }
}

#[test]
fn heaps_of_unequal_parts_fill_their_slot_or_count_lost() {
    // Slots of 100 bytes; heaps of 90 bytes in parts of 40, 30 and 20.
    let layout = Layout::new(100, 4, 1).unwrap();
    let mut a = Assembler::new(layout, Options { window: 2, ..Options::default() });
    let heap = |h: u64| -> Vec<u8> { (0..90).map(|i| (h as u8).wrapping_mul(13) ^ i as u8).collect() };
    let parts = [(0usize, 40usize), (40, 30), (70, 20)];
    let mut blocks = Vec::new();
    let mut push = |a: &mut Assembler, h: u64, (off, len): (usize, usize)| {
        let d = heap(h);
        a.push_part(h, 0, off, 90, &d[off..off + len], &mut |b| blocks.push(b));
    };
    // Heap 0 out of order; heap 1 misses a part; heap 2 gets one part twice;
    // heap 3 complete.
    for &p in &[parts[2], parts[0], parts[1]] {
        push(&mut a, 0, p);
    }
    push(&mut a, 1, parts[0]);
    push(&mut a, 1, parts[2]);
    for &p in &[parts[0], parts[0], parts[1], parts[2]] {
        push(&mut a, 2, p);
    }
    for &p in &parts {
        push(&mut a, 3, p);
    }
    // A part past the heap's end is malformed.
    a.push_part(3, 0, 80, 90, &[0; 20], &mut |b| blocks.push(b));
    a.flush(&mut |b| blocks.push(b));
    let c = a.counts();
    assert_eq!(blocks.len(), 1);
    let b = &blocks[0];
    for (h, present) in [(0, true), (1, false), (2, true), (3, true)] {
        assert_eq!(b.is_present(0, h, 4), present, "heap {h}");
        let slot = &b.data[h * 100..h * 100 + 100];
        if present {
            assert_eq!(&slot[..90], &heap(h as u64)[..], "heap {h} bytes");
            assert!(slot[90..].iter().all(|&x| x == 0), "tail zeroed");
        } else {
            assert!(slot.iter().all(|&x| x == 0), "an incomplete heap is zero-filled");
        }
    }
    assert_eq!((c.packets, c.placed, c.duplicates, c.malformed), (13, 11, 1, 1), "{c:?}");
    assert_eq!(c.packets, c.accounted());
    assert_eq!((b.filled, b.lost, c.slots_lost), (3, 1, 1));
}

proptest::proptest! {
    #[test]
    fn parts_never_panic_and_every_one_is_accounted_for(
        pk in proptest::collection::vec((0u64..60, 0usize..40, 0usize..40, 0usize..20), 0..300),
        window in 1usize..4,
    ) {
        // Heaps of up to 32 bytes in 32-byte slots; offsets, totals and
        // lengths drawn at random, many of them inconsistent.
        let l = Layout::new(32, 4, 1).unwrap();
        let mut a = Assembler::new(l, Options { window, pool: window + 1, resync_gap: 64, zero_fill: true });
        let data = [0xabu8; 40];
        // Blocks handed out are dropped, not recycled: the pool shrinks and
        // later parts count as no_buffer, which the books must show too.
        for &(seq, offset, total, len) in &pk {
            a.push_part(seq, 0, offset, total, &data[..len], &mut drop);
        }
        let c = a.counts();
        proptest::prop_assert_eq!(c.packets, pk.len() as u64);
        proptest::prop_assert_eq!(c.packets, c.accounted());
    }
}
