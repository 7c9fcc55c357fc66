//! `cargo bench --bench read_back`: `capture --read` of a pcap file in the
//! page cache (tmpfs), 272-byte seq payloads in Ethernet/IPv4/UDP frames,
//! on one core: the file source into the null sink and into block
//! assembly (files in tmpfs, the writer waited for), against the plainest
//! reader of the same file, the pcap-file crate's `PcapReader` loop that
//! only sums the packets' lengths. Rounds interleaved; medians.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Instant;

use linecap_engine::assemble::{Layout, Options};
use linecap_engine::format::seq;
use linecap_engine::sink::Sink;
use linecap_engine::sink::blocks::{BlockOutput, BlockSink, BlockSinkOptions, StreamFormat};
use linecap_engine::sink::shmring::RingOptions;
use linecap_engine::source::Source;
use linecap_engine::source::file::{FileOptions, FileSource, Input};
use linecap_engine::stats::{BLOCKS_COUNTERS, StageSpec, StatsFile};

const PACKETS: u64 = 3_000_000;
const PAYLOAD: usize = 272;
const ROUNDS: usize = 5;

fn write_file(path: &Path) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut hdr = vec![];
    hdr.extend(0xa1b2_3c4du32.to_le_bytes());
    hdr.extend(2u16.to_le_bytes());
    hdr.extend(4u16.to_le_bytes());
    hdr.extend([0; 8]);
    hdr.extend(262_144u32.to_le_bytes());
    hdr.extend(1u32.to_le_bytes());
    f.write_all(&hdr).unwrap();
    let mut frame = Vec::new();
    let mut payload = vec![0u8; PAYLOAD];
    for k in 0..PACKETS {
        seq::fill(&mut payload, k);
        frame.clear();
        etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(40_000, 9000)
            .write(&mut frame, &payload)
            .unwrap();
        f.write_all(&((k / 1_000_000) as u32).to_le_bytes()).unwrap();
        f.write_all(&((k % 1_000_000) as u32 * 1000).to_le_bytes()).unwrap();
        f.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&frame).unwrap();
    }
}

/// The plainest reader: pcap-file's loop, summing lengths.
fn plain(path: &Path) -> f64 {
    let t = Instant::now();
    let mut r = pcap_file::pcap::PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(p) = r.next_packet() {
        bytes += p.unwrap().data.len() as u64;
        n += 1;
    }
    assert_eq!(n, PACKETS);
    std::hint::black_box(bytes);
    n as f64 / t.elapsed().as_secs_f64()
}

/// linecap's file source, every batch handed to `sink` (or only counted).
fn linecap(path: &Path, mut sink: Option<&mut dyn Sink>) -> f64 {
    let t = Instant::now();
    let opts = FileOptions { inputs: vec![Input::Path(path.into())], filter: None };
    let mut src = FileSource::open(opts).unwrap();
    let mut n = 0u64;
    while let Some(b) = src.recv_batch(false).unwrap() {
        n += b.len() as u64;
        if let Some(s) = sink.as_mut() {
            s.consume(&b);
        }
    }
    if let Some(s) = sink {
        s.finish().unwrap();
    }
    assert_eq!(n, PACKETS);
    n as f64 / t.elapsed().as_secs_f64()
}

/// Into block files in tmpfs (`ring: false`) or a lossy shared-memory
/// ring nobody reads (`ring: true`: the assembly alone, no write calls).
fn blocks(path: &Path, dir: &Path, round: usize, ring: bool) -> f64 {
    let out = dir.join(format!("blocks-{round}"));
    std::fs::create_dir_all(&out).unwrap();
    let output = if ring {
        BlockOutput::Shm(RingOptions {
            name: format!("read-bench-{}-{round}", std::process::id()),
            slots: 8,
            lossless: false,
            mode: 0o600,
            keep: false,
        })
    } else {
        BlockOutput::Dir(out.clone())
    };
    let counters = dir.join(format!("counters-{round}"));
    let spec = [StageSpec { name: "blocks.0".into(), counters: BLOCKS_COUNTERS }];
    let (file, mut c) = StatsFile::create_at(&counters, &spec, 0o600).unwrap();
    let opts = BlockSinkOptions {
        output,
        layout: Layout::new(PAYLOAD - 8, 8192, 1).unwrap(),
        assembler: Options { window: 4, resync_gap: 1 << 24, zero_fill: true, pool: 14 },
        format: StreamFormat::Seq,
        queue: 8,
        wait_for_writer: true,
        policy: Default::default(),
    };
    let mut sink = BlockSink::start(opts, c.pop().unwrap()).unwrap();
    let pps = linecap(path, Some(&mut sink));
    drop(file);
    let _ = std::fs::remove_file(&counters);
    let _ = std::fs::remove_dir_all(&out);
    pps
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let dir = std::path::PathBuf::from(format!("/dev/shm/lc-read-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("in.pcap");
    write_file(&file);
    let _ = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let (mut p, mut l, mut b, mut r) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        p.push(plain(&file));
        l.push(linecap(&file, None));
        b.push(blocks(&file, &dir, round, false));
        r.push(blocks(&file, &dir, round, true));
    }
    let ratios: Vec<f64> = l.iter().zip(&p).map(|(a, b)| a / b).collect();
    let _ = std::fs::remove_dir_all(&dir);
    let show = |name: &str, v: Vec<f64>| {
        let (m, lo, hi) = median(v);
        println!("{name:<40} {:6.2} M packets/s (range {:.2}-{:.2})", m / 1e6, lo / 1e6, hi / 1e6);
    };
    println!(
        "read back {PACKETS} packets of {PAYLOAD}-byte payloads from tmpfs, {ROUNDS} interleaved rounds:"
    );
    show("pcap-file PcapReader loop (baseline)", p);
    show("linecap file source, null sink", l);
    show("linecap file source into --blocks (tmpfs)", b);
    show("linecap file source into --shm (no reader)", r);
    let (m, lo, hi) = median(ratios);
    println!("linecap null sink / baseline, same round: {m:.2}x (range {lo:.2}-{hi:.2})");
}
