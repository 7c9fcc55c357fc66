//! `cargo bench --bench pcap_write`: the whole writing path of
//! `capture --write` for 272-byte payloads from a socket (a synthetic IPv4 +
//! UDP header per record, nanosecond pcap): encoding on the receive thread,
//! the hand-off of chunks, and the writer thread's writes into a tmpfs
//! file (`/dev/shm`). Batches of 64 packets, as `recvmmsg` returns them.
//! Prints, as medians of interleaved rounds: packets per second through
//! the whole path (until the writer closed the file), the receive thread's
//! CPU per packet (encode + hand-off), the writer's, and drops at the
//! hand-off (there must be none for the rate to mean anything).
//!
//! Beside them, in the same rounds, the plainest program doing the write
//! itself: the same number of bytes in 4 MiB `write(2)`s of one buffer into
//! a new file (`dd bs=4M`), and the same with O_DIRECT (`dd oflag=direct`,
//! where the file system takes it), the final sync inside the time for
//! both. Each writer's rate is printed as a ratio to them. The order of the
//! five runs turns by one each round: on a VM the round after another
//! round's gigabyte was freed can pay for the host taking it back.

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

/// The writes of the plain loop: as the pcap writer's chunks.
const PLAIN_WRITE: usize = 4 << 20;

/// The plain loop's round: the bytes of `PACKETS` records written into a
/// new file in `PLAIN_WRITE`-byte writes, then synced; the rate in records
/// a second. None where the file system refuses O_DIRECT.
fn plain_round(dir: &std::path::Path, n: usize, direct: bool) -> Option<f64> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("plain-{n}.bin"));
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    if direct {
        open.custom_flags(libc::O_DIRECT);
    }
    let mut file = open.open(&path).ok()?;
    // Page-aligned, as O_DIRECT wants; not zeros, so nothing can elide it.
    let mut buf = linecap_engine::sys::shm::PageBuf::new(PLAIN_WRITE).unwrap();
    buf.fill(0x5a);
    let bytes = (PACKETS as f64 * RECORD) as usize;
    let start = Instant::now();
    let mut written = 0;
    let mut ok = true;
    while written < bytes && ok {
        ok = file.write_all(&buf).is_ok();
        written += PLAIN_WRITE;
    }
    ok = ok && file.sync_data().is_ok();
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    ok.then(|| PACKETS as f64 / secs)
}

/// Median and range of `v`.
fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// "R× (lo-hi) the NAME": a writer's rounds against a baseline's rounds of
/// the same interleave, or what is missing.
fn ratio_to(rounds: &[Round], baseline: &[Option<f64>], name: &str) -> String {
    let ratios: Vec<f64> = rounds.iter().zip(baseline).filter_map(|(r, b)| b.map(|b| r.pps / b)).collect();
    if ratios.is_empty() {
        return format!("no {name} here");
    }
    let (m, lo, hi) = median(ratios);
    format!("{m:.2}x ({lo:.2}-{hi:.2}) the {name}")
}

/// One run of a round.
#[derive(Clone, Copy)]
enum Job {
    Writer(Mode),
    Plain { direct: bool },
}

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
    let (mut plain, mut plain_direct) = (Vec::new(), Vec::new());
    let jobs = [
        Job::Plain { direct: false },
        Job::Writer(Mode::Paced),
        Job::Writer(Mode::Buffered),
        Job::Writer(Mode::Direct),
        Job::Plain { direct: true },
    ];
    let mut run = 0;
    for n in 0..5 {
        for k in 0..jobs.len() {
            run += 1;
            match jobs[(n + k) % jobs.len()] {
                Job::Plain { direct: false } => plain.push(plain_round(&dir, run, false)),
                Job::Plain { direct: true } => plain_direct.push(plain_round(&dir, run, true)),
                Job::Writer(Mode::Paced) => paced.push(round(&dir, run, Mode::Paced)),
                Job::Writer(Mode::Buffered) => buffered.push(round(&dir, run, Mode::Buffered)),
                Job::Writer(Mode::Direct) => direct.push(round(&dir, run, Mode::Direct)),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if linecap_engine::sys::on_tmpfs(&std::fs::File::open(&base).unwrap()).unwrap_or(false) {
        println!(
            "{base} is a tmpfs: neither pacing nor O_DIRECT applies there, the three writers below are one"
        );
    }
    for (name, rounds) in [("plain 4 MiB write() loop", &plain), ("plain 4 MiB O_DIRECT loop", &plain_direct)]
    {
        let rates: Vec<f64> = rounds.iter().flatten().copied().collect();
        if rates.is_empty() {
            println!("{name} into {base}: refused by the file system");
            continue;
        }
        let (pps, lo, hi) = median(rates);
        println!(
            "{name} into {base}: the bytes of {:.2} M records/s, {:.0} MB/s (median of {}, range {:.2}-{:.2})",
            pps / 1e6,
            pps * RECORD / 1e6,
            rounds.len(),
            lo / 1e6,
            hi / 1e6
        );
    }
    for (name, rounds) in [("paced write-back", &paced), ("buffered", &buffered), ("O_DIRECT", &direct)] {
        let (pps, lo, hi) = median(rounds.iter().map(|r| r.pps).collect());
        let (rx, _, _) = median(rounds.iter().map(|r| r.rx_ns).collect());
        let (wr, _, _) = median(rounds.iter().map(|r| r.writer_ns).collect());
        println!(
            "pcap write path ({name}), {PAYLOAD}-byte payloads into {base}: {:.2} M packets/s written, {:.0} MB/s (median of {}, range {:.2}-{:.2} M/s), {}, {}; receive thread {rx:.1} ns/packet (encode + hand-off), writer {wr:.1} ns/packet; drops at the hand-off {}",
            pps / 1e6,
            pps * RECORD / 1e6,
            rounds.len(),
            lo / 1e6,
            hi / 1e6,
            ratio_to(rounds, &plain, "plain write() loop"),
            ratio_to(rounds, &plain_direct, "plain O_DIRECT loop"),
            rounds.iter().map(|r| r.drops).sum::<u64>()
        );
    }
}
