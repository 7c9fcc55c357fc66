//! `cargo bench --bench assemble`: the assembler alone, 272-byte payloads
//! (264 data bytes after an 8-byte counter), in order and with 1% of
//! packets displaced, on one core. Prints packets per second (median of
//! interleaved rounds) and the memcpy rate it amounts to.

#[path = "common/mod.rs"]
mod common;
use common::{feed, stream};

use std::time::Instant;

use linecap_engine::assemble::{Assembler, Layout, Options};

const SLOT: usize = 264;
const SLOTS: usize = 8192;
const PACKETS: u64 = 4_000_000;

fn run(seqs: &[u64], payload: &[u8]) -> f64 {
    let layout = Layout::new(SLOT, SLOTS, 1).unwrap();
    let mut a = Assembler::new(layout, Options { window: 4, pool: 8, ..Options::default() });
    let t = Instant::now();
    feed(&mut a, seqs, payload);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(a.counts().placed, PACKETS);
    PACKETS as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let payload = vec![0xa5u8; SLOT];
    let in_order = stream(PACKETS, 0);
    let reordered = stream(PACKETS, 1);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        a.push(run(&in_order, &payload));
        b.push(run(&reordered, &payload));
    }
    for (name, v) in [("in order", a), ("1% reordered", b)] {
        let m = median(v.clone());
        println!(
            "assemble {name:<13} {:>6.1} M packets/s (median of {}, range {:.1}-{:.1}), {:.1} GB/s of payload copied",
            m / 1e6,
            v.len(),
            v.iter().copied().fold(f64::INFINITY, f64::min) / 1e6,
            v.iter().copied().fold(0.0, f64::max) / 1e6,
            m * SLOT as f64 / 1e9
        );
    }
}
