//! What the assembler benches share: a seeded stream of sequence numbers,
//! and one assembler fed with it.

use std::hint::black_box;

use linecap_engine::assemble::Assembler;

/// 0..n with `reorder_percent` of the numbers displaced by up to 64 places
/// (xorshift, seeded: every run and every bench sees the same stream).
pub fn stream(n: u64, reorder_percent: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    let mut x = 0x1234_5678_9abc_def0u64;
    for i in 1..v.len() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 100 < reorder_percent {
            let j = i.saturating_sub(1 + (x >> 32) as usize % 64);
            v.swap(i, j);
        }
    }
    v
}

/// Pushes every number of `seqs` with `payload` into `a`, touching and
/// recycling each block it completes, then flushes: what one receive
/// thread's assembler does.
pub fn feed(a: &mut Assembler, seqs: &[u64], payload: &[u8]) {
    let mut done = Vec::with_capacity(4);
    for &s in seqs {
        a.push(s, 0, payload, &mut |b| done.push(b));
        for b in done.drain(..) {
            black_box(&b.data[0]);
            a.recycle(b.data);
        }
    }
    a.flush(&mut |b| {
        black_box(b.filled);
    });
}
