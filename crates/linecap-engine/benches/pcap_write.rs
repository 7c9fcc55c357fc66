//! `cargo bench --bench pcap_write`: the whole writing path of
//! `capture --write` for 272-byte payloads from a socket (a synthetic IPv4 +
//! UDP header per record, nanosecond pcap): encoding on the receive thread,
//! the hand-off of chunks, and the writer thread's writes into a tmpfs
//! file (`/dev/shm`). Batches of 64 packets, as `recvmmsg` returns them.
//! Prints, as medians of interleaved rounds: packets per second through
//! the whole path (until the writer closed the file), the receive thread's
//! CPU per packet (encode + hand-off), the writer's, and drops at the
//! hand-off (there must be none for the rate to mean anything).

use std::net::SocketAddr;
use std::time::Instant;

use linecap_engine::packet::{Batch, FLAG_UDP, PacketMeta};
use linecap_engine::sink::Sink;
use linecap_engine::sink::pcap::{PcapOptions, PcapSink};

#[path = "support/pcap_counters.rs"]
mod pcap_counters;
use pcap_counters::pcap_counters;

const PAYLOAD: usize = 272;
const BATCH: usize = 64;
const PACKETS: usize = 4_000_000;

struct Round {
    pps: f64,
    rx_ns: f64,
    writer_ns: f64,
    drops: u64,
}

/// How the writer writes.
#[derive(Clone, Copy)]
enum Mode {
    /// The default: buffered, the page cache paced (write-back per chunk).
    Paced,
    /// Buffered, the kernel flushing when it likes.
    Buffered,
    /// `--direct-io`.
    Direct,
}

fn round(dir: &std::path::Path, n: usize, mode: Mode) -> Round {
    let counters = dir.join(format!("counters-{n}"));
    let (file, queue, writer) = pcap_counters(&counters);
    let mut opts = PcapOptions::new(dir.join(format!("bench-{n}.pcap")));
    opts.buffer_bytes = 64 << 20;
    opts.chunk_bytes = 4 << 20;
    opts.direct_io = matches!(mode, Mode::Direct);
    opts.write_back = matches!(mode, Mode::Paced);
    // The receive side waits for the writer (as a file read back does):
    // every packet is written, and the rate is the writer's sustained one.
    opts.wait_for_writer = true;
    let mut slab = vec![0u8; BATCH * PAYLOAD];
    let metas: Vec<PacketMeta> = (0..BATCH)
        .map(|i| PacketMeta {
            offset: (i * PAYLOAD) as u32,
            len: PAYLOAD as u32,
            ts_ns: 1_700_000_000_000_000_000 + i as u64,
            msg: i as u32,
            flags: FLAG_UDP,
            ..PacketMeta::default()
        })
        .collect();
    let src: SocketAddr = "198.18.0.1:40000".parse().unwrap();
    let dst: SocketAddr = "198.18.0.2:9000".parse().unwrap();
    let sources = vec![Some(src); BATCH];
    let start = Instant::now();
    let proc0 = process_cpu_ns();
    let (u0, s0) = linecap_engine::sys::thread_cpu_ns();
    let mut sink = PcapSink::start(opts, queue, writer).unwrap();
    for b in 0..PACKETS / BATCH {
        for (i, chunk) in slab.chunks_mut(PAYLOAD).enumerate() {
            chunk[..8].copy_from_slice(&((b * BATCH + i) as u64).to_le_bytes());
        }
        sink.consume(&Batch::new(&slab, &metas, &sources, dst));
    }
    let (u1, s1) = linecap_engine::sys::thread_cpu_ns();
    sink.finish().unwrap();
    let secs = start.elapsed().as_secs_f64();
    let proc1 = process_cpu_ns();
    let _ = std::fs::remove_file(dir.join(format!("bench-{n}.pcap")));
    let snap = linecap_engine::stats::Snapshot::read("bench", &counters).unwrap();
    drop(file);
    let _ = std::fs::remove_file(&counters);
    let rx_cpu = (u1 - u0) + (s1 - s0);
    let written = snap.sum("pcap.writer.", "packets");
    let drops = snap.sum("pcap.queue.", "ring_full_drops");
    assert_eq!(written + drops, PACKETS as u64, "every packet written or counted");
    Round {
        pps: written as f64 / secs,
        rx_ns: rx_cpu as f64 / PACKETS as f64,
        writer_ns: proc1.saturating_sub(proc0).saturating_sub(rx_cpu) as f64 / written.max(1) as f64,
        drops,
    }
}

/// CPU time of the whole process (every thread), from /proc/self/stat.
fn process_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field of the line, stime the 15th, in clock ticks (100 Hz here).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) * 10_000_000
}

/// Bytes of one record: pcap record header, synthetic IPv4 + UDP, payload.
const RECORD: f64 = (16 + 20 + 8 + PAYLOAD) as f64;

fn main() {
    // LINECAP_BENCH_DIR: write there instead (a disk: the writer's sync at
    // the end is inside the measured time, so the page cache cannot flatter it).
    // Rounds alternate the default writer (page cache paced per chunk),
    // plain buffered writes and O_DIRECT (tmpfs uses neither pacing nor
    // O_DIRECT), so the three are compared in the same run.
    let base = std::env::var("LINECAP_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let dir = std::path::PathBuf::from(format!("{base}/lc-pcap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut paced, mut buffered, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..5 {
        paced.push(round(&dir, 3 * n, Mode::Paced));
        buffered.push(round(&dir, 3 * n + 1, Mode::Buffered));
        direct.push(round(&dir, 3 * n + 2, Mode::Direct));
    }
    let _ = std::fs::remove_dir_all(&dir);
    for (name, rounds) in [("paced write-back", &paced), ("buffered", &buffered), ("O_DIRECT", &direct)] {
        let med = |f: &dyn Fn(&Round) -> f64| {
            let mut v: Vec<f64> = rounds.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let (pps, lo, hi) = med(&|r| r.pps);
        let (rx, _, _) = med(&|r| r.rx_ns);
        let (wr, _, _) = med(&|r| r.writer_ns);
        println!(
            "pcap write path ({name}), {PAYLOAD}-byte payloads into {base}: {:.2} M packets/s written, {:.0} MB/s (median of {}, range {:.2}-{:.2} M/s); receive thread {rx:.1} ns/packet (encode + hand-off), writer {wr:.1} ns/packet; drops at the hand-off {}",
            pps / 1e6,
            pps * RECORD / 1e6,
            rounds.len(),
            lo / 1e6,
            hi / 1e6,
            rounds.iter().map(|r| r.drops).sum::<u64>()
        );
    }
}
