//! `cargo bench --bench pcap_lend`: what writing a pcap costs the receive
//! thread of an AF_XDP capture, with the frames copied on the receive
//! thread (as a ring source without spare frames does) against the frames
//! lent to the writer (`linecap_engine::loan`), in interleaved rounds.
//!
//! The UMEM, its fill ring and rx ring are played by this thread: each
//! batch takes the next 64 frames the fill ring holds, writes a 272-byte
//! datagram into each (Ethernet, IPv4, UDP: the fixed layout, as the
//! kernel's copy-mode receive does on the receive core), hands the batch
//! to the pcap sink and puts the frames (or, for frames lent, spare ones)
//! back on the fill ring, as `XdpSource` does. The writer thread writes
//! into a tmpfs file (`/dev/shm`). Batches are paced to the reference rate
//! (2.35 Mpps); the time measured is inside the sink and the frame pool
//! only, per packet, with no sink as the floor. Prints medians of
//! interleaved rounds, the packets lent and the drops at the hand-off
//! (with drops, the writer did not keep up and the figure means less).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use linecap_engine::loan::FramePool;
use linecap_engine::packet::Batch;
use linecap_engine::sink::Sink;
use linecap_engine::sink::pcap::{Link, PcapOptions, PcapSink};
use linecap_engine::sys::shm::PageBuf;

#[path = "support/pcap_counters.rs"]
mod pcap_counters;
use pcap_counters::pcap_counters;

const PAYLOAD: usize = 272;
const FRAME: usize = 14 + 20 + 8 + PAYLOAD;
const FRAME_SIZE: u64 = 2048;
const RING: u64 = 4096;
const SPARES: u64 = 16_384;
const BATCH: usize = 64;
const PACKETS: usize = 4_000_000;
/// The reference rate (5.12 Gb/s of 272-byte payloads).
const RATE_PPS: f64 = 2.35e6;

/// What the receive loop does with each batch.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// No sink: the capture without writing.
    Bare,
    /// The pcap sink copies each frame into its hand-off.
    Copied,
    /// The pcap sink lends the frames to its writer.
    Lent,
}

struct Round {
    rx_ns: f64,
    lent: u64,
    drops: u64,
}

/// A fixed-layout frame: Ethernet II, IPv4 without options, UDP.
fn frame_template() -> Vec<u8> {
    let mut f = vec![0u8; FRAME];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((FRAME - 14) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[198, 18, 0, 1]);
    f[30..34].copy_from_slice(&[198, 18, 0, 2]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&9000u16.to_be_bytes());
    f[38..40].copy_from_slice(&((8 + PAYLOAD) as u16).to_be_bytes());
    f
}

fn round(dir: &std::path::Path, n: usize, mode: Mode) -> Round {
    let counters = dir.join(format!("counters-{n}"));
    let (file, queue, writer) = pcap_counters(&counters);
    let path = dir.join(format!("lend-{n}.pcap"));
    let mut opts = PcapOptions::new(path.clone());
    opts.chunk_bytes = 4 << 20;
    opts.link = Link::Ethernet;
    // As a capture: a writer that falls behind costs counted drops.
    opts.wait_for_writer = false;
    // The kernel writes each frame as it receives it; here every frame is
    // written once, up front: under load a batch's frames were written
    // long ago and are cold, as these are.
    let mut umem = PageBuf::new(((RING + SPARES) * FRAME_SIZE) as usize).unwrap();
    let template = frame_template();
    for f in 0..(RING + SPARES) as usize {
        let at = f * FRAME_SIZE as usize;
        umem[at..at + FRAME].copy_from_slice(&template);
        umem[at + 42..at + 50].copy_from_slice(&(f as u64).to_le_bytes());
    }
    let umem = Arc::new(umem);
    let mut fill: VecDeque<u64> = (0..RING).map(|f| f * FRAME_SIZE).collect();
    let mut pool = FramePool::new(Arc::clone(&umem), (RING..RING + SPARES).map(|f| f * FRAME_SIZE).collect());
    let mut sink = (mode != Mode::Bare).then(|| PcapSink::start(opts, queue, writer).unwrap());
    let mut held: Vec<(u64, u32)> = Vec::with_capacity(BATCH);
    let mut refill = Vec::with_capacity(BATCH);
    // Time inside the sink and the pool only, batches paced to the
    // reference rate: the pacing's sleeps are not the receive thread's work.
    let mut busy = Duration::ZERO;
    let start = Instant::now();
    for b in 0..PACKETS / BATCH {
        let due = Duration::from_secs_f64((b * BATCH) as f64 / RATE_PPS);
        if let Some(ahead) = due.checked_sub(start.elapsed())
            && ahead > Duration::from_micros(200)
        {
            std::thread::sleep(ahead);
        }
        let t = Instant::now();
        pool.reclaim();
        held.clear();
        held.extend((0..BATCH).map(|_| (fill.pop_front().expect("never dry"), FRAME as u32)));
        let batch = Batch::fixed_frames(&umem, &held, 1_700_000_000_000_000_000 + b as u64);
        let batch = if mode == Mode::Lent { batch.lending(pool.desk()) } else { batch };
        if let Some(s) = sink.as_mut() {
            s.consume(&batch);
        }
        let lent = pool.settle(&held, &mut refill);
        busy += t.elapsed();
        if lent {
            fill.extend(refill.iter().copied());
        } else {
            fill.extend(held.iter().map(|h| h.0));
        }
    }
    if let Some(mut s) = sink {
        s.finish().unwrap();
    }
    let _ = std::fs::remove_file(&path);
    let snap = linecap_engine::stats::Snapshot::read("bench", &counters).unwrap();
    drop(file);
    let _ = std::fs::remove_file(&counters);
    Round {
        rx_ns: busy.as_nanos() as f64 / PACKETS as f64,
        lent: snap.sum("pcap.queue.", "lent"),
        drops: snap.sum("pcap.queue.", "ring_full_drops"),
    }
}

fn main() {
    let dir = std::path::PathBuf::from(format!("/dev/shm/lc-lend-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rounds: Vec<(Mode, Round)> = Vec::new();
    for n in 0..5 {
        for (k, mode) in [Mode::Bare, Mode::Copied, Mode::Lent].into_iter().enumerate() {
            rounds.push((mode, round(&dir, 3 * n + k, mode)));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    for (name, mode) in
        [("no sink", Mode::Bare), ("frames copied", Mode::Copied), ("frames lent", Mode::Lent)]
    {
        let mut ns: Vec<f64> = rounds.iter().filter(|r| r.0 == mode).map(|r| r.1.rx_ns).collect();
        ns.sort_by(f64::total_cmp);
        let lent: u64 = rounds.iter().filter(|r| r.0 == mode).map(|r| r.1.lent).sum();
        let drops: u64 = rounds.iter().filter(|r| r.0 == mode).map(|r| r.1.drops).sum();
        println!(
            "pcap from AF_XDP frames ({name}): receive thread {:.1} ns/packet in the sink and frame pool (median of {}, range {:.1}-{:.1}); packets lent {lent}, drops at the hand-off {drops}",
            ns[ns.len() / 2],
            ns.len(),
            ns[0],
            ns[ns.len() - 1]
        );
    }
}
