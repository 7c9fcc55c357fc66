//! The pcap sink with frames lent by their source (see [`crate::loan`]):
//! the file must be the one the same frames make copied.

use std::sync::Arc;

use etherparse::PacketBuilder;

use super::*;
use crate::loan::FramePool;
use crate::stats::{QUEUE_COUNTERS, StageSpec, StatsFile, WRITER_COUNTERS};
use crate::sys::shm::PageBuf;

const FRAME_SIZE: u64 = 2048;
const FRAMES: u64 = 8;

/// A UMEM of 16 frames: 8 fixed-layout frames (each its own payload
/// length and bytes) in the first 8, spares after.
fn umem() -> (Arc<PageBuf>, Vec<(u64, u32)>) {
    let mut mem = PageBuf::new((2 * FRAMES * FRAME_SIZE) as usize).unwrap();
    let mut descs = Vec::new();
    for i in 0..FRAMES {
        let mut f = Vec::new();
        let payload: Vec<u8> = (0..(i as usize * 37) % 300 + 1).map(|b| (b as u8) ^ (i as u8)).collect();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(40000 + i as u16, 9000)
            .write(&mut f, &payload)
            .unwrap();
        let at = (i * FRAME_SIZE) as usize;
        mem[at..at + f.len()].copy_from_slice(&f);
        descs.push((at as u64, f.len() as u32));
    }
    (Arc::new(mem), descs)
}

/// Writes the frames in two batches through a pcap sink, lending through
/// a pool of `spares` spare frames when some; returns the file, the
/// packets lent and the frames still out once the writer is done.
fn write(dir: &Path, name: &str, fmt: FileFormat, spares: Option<u64>) -> (Vec<u8>, u64, usize) {
    let stages = [
        StageSpec { name: "pcap.queue.0".into(), counters: QUEUE_COUNTERS },
        StageSpec { name: "pcap.writer.0".into(), counters: WRITER_COUNTERS },
    ];
    let (_file, mut c) = StatsFile::create_at(&dir.join(format!("{name}.counters")), &stages, 0o600).unwrap();
    let (writer, queue) = (c.pop().unwrap(), c.pop().unwrap());
    let path = dir.join(format!("{name}.pcap"));
    let mut opts = PcapOptions::new(path.clone());
    (opts.link, opts.format, opts.chunk_bytes, opts.buffer_bytes) = (Link::Ethernet, fmt, 1 << 16, 1 << 20);
    let (mem, descs) = umem();
    let spare = (FRAMES..FRAMES + spares.unwrap_or(0)).map(|f| f * FRAME_SIZE).collect();
    let mut pool = FramePool::new(Arc::clone(&mem), spare);
    let mut sink = PcapSink::start(opts, queue, writer).unwrap();
    let mut fill = Vec::new();
    for (n, half) in descs.chunks(4).enumerate() {
        pool.reclaim();
        let batch = Batch::fixed_frames(&mem, half, 1_700_000_000_000_000_000 + n as u64);
        let batch = if spares.is_some() { batch.lending(pool.desk()) } else { batch };
        crate::sink::Sink::consume(&mut sink, &batch);
        pool.settle(half, &mut fill);
    }
    crate::sink::Sink::finish(&mut sink).unwrap();
    pool.reclaim();
    (std::fs::read(&path).unwrap(), sink.lent, pool.lent_out())
}

fn scratch() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("lc-lent-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn lent_frames_make_the_file_copied_frames_make() {
    for fmt in [FileFormat::Pcap, FileFormat::Pcapng] {
        let dir = scratch();
        let (copied, lent_none, _) = write(&dir, "copied", fmt, None);
        let (lent, lent_all, out) = write(&dir, "lent", fmt, Some(FRAMES));
        // Three spares: three frames lent, the rest copied, one file.
        let (mixed, lent_some, out_mixed) = write(&dir, "mixed", fmt, Some(3));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((lent_none, lent_all, lent_some), (0, FRAMES, 3));
        assert_eq!((out, out_mixed), (0, 0), "every frame given back once written");
        assert!(copied.len() > 8 * 42, "the frames were written");
        assert!(copied == lent, "{fmt:?}: lent frames write the same bytes");
        assert!(copied == mixed, "{fmt:?}: lent and copied in one file");
    }
}
