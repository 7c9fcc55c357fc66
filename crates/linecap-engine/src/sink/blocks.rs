//! The block sink: decodes each packet's sequence number (and channel),
//! places it with the [`Assembler`], and hands completed blocks to a writer
//! thread that stores each as `block-<first_seq>.bin` with a JSON sidecar
//! (layout, first sequence, presence map, counts).
//!
//! The hand-off is a bounded queue of whole blocks; the writer returns each
//! buffer to the assembler's pool. When the queue is full the block is
//! dropped and counted (with the packets it held): capture never waits.
//!
//! The assembly keeps its own books: packets = placed + duplicates + late +
//! malformed + invalid + bad_channel + no_buffer; placed packets end in a written
//! block, a dropped block, or a block that failed to write.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use super::shmring::{Published, RingOptions, RingWriter};
use crate::assemble::{Assembler, AssemblyCounts, Block, Layout, Options, PageBuf};
use crate::format::raw::{RawSpec, Unwrap};
use crate::format::seq;
use crate::packet::Batch;
use crate::stats::{BlocksIdx, StageCounters};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How packets carry their sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StreamFormat {
    /// linecap's `seq` payload: u64 sequence number, then the data.
    Seq,
    /// A user-described header.
    Raw(RawSpec),
    /// VDIF frames; the thread id selects the row.
    Vdif {
        /// Frames per second (per thread): sequence = seconds × fps + frame.
        fps: u64,
    },
    /// SPEAD-64-48 packets (heap counter, size, offset, payload length).
    Spead,
    /// SPEAD-64-48 heaps, one slot each: every packet's payload goes at its
    /// heap offset, whatever the packets' lengths (spead2's multi-item
    /// heaps); a heap arrives when all its bytes did.
    SpeadHeap,
}

/// What a packet decodes to.
enum Decoded<'a> {
    /// Sequence counter, channel, data.
    Packet(u64, u64, &'a [u8]),
    /// Part of a slot: sequence counter (heap), offset, slot content size, data.
    Part(u64, usize, usize, &'a [u8]),
    /// Well-formed, flagged invalid by its sender.
    Invalid,
    /// Not decodable.
    Malformed,
}

impl StreamFormat {
    /// Decodes (sequence counter, channel, data).
    fn decode<'a>(&self, p: &'a [u8]) -> Decoded<'a> {
        let packet = |v: Option<(u64, u64, &'a [u8])>| match v {
            Some((s, c, d)) => Decoded::Packet(s, c, d),
            None => Decoded::Malformed,
        };
        match self {
            StreamFormat::Seq => packet(seq::seq_of(p).map(|s| (s, 0, &p[seq::MIN_LEN..]))),
            StreamFormat::Raw(s) => packet(s.decode(p)),
            StreamFormat::Vdif { fps } => match crate::format::vdif::parse(p) {
                None => Decoded::Malformed,
                Some((h, _)) if h.invalid => Decoded::Invalid,
                // Saturating: --frames-per-second is the user's, the
                // header's fields the network's; a wild product lands far
                // out of the window, where the assembler counts it.
                Some((h, data)) => Decoded::Packet(
                    u64::from(h.seconds).saturating_mul(*fps).saturating_add(u64::from(h.frame)),
                    u64::from(h.thread),
                    data,
                ),
            },
            StreamFormat::Spead => {
                packet(crate::format::spead::parse(p).and_then(|s| Some((s.seq()?, 0, s.payload))))
            }
            StreamFormat::SpeadHeap => match crate::format::spead::parse(p) {
                Some(s) if !s.control && usize::try_from(s.heap_size).is_ok_and(|n| n > 0) => Decoded::Part(
                    s.heap_cnt,
                    usize::try_from(s.heap_offset).unwrap_or(usize::MAX),
                    s.heap_size as usize,
                    s.payload,
                ),
                _ => Decoded::Malformed,
            },
        }
    }

    /// Bits of the format's sequence counter (narrower ones are unwrapped).
    pub fn counter_bits(&self) -> u32 {
        match self {
            StreamFormat::Seq => 64,
            StreamFormat::Raw(s) => s.counter.bits(),
            StreamFormat::Vdif { .. } | StreamFormat::Spead | StreamFormat::SpeadHeap => 64,
        }
    }

    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            StreamFormat::Seq => "seq",
            StreamFormat::Raw(_) => "raw",
            StreamFormat::Vdif { .. } => "vdif",
            StreamFormat::Spead => "spead",
            StreamFormat::SpeadHeap => "spead-heap",
        }
    }
}

/// Where completed blocks go.
#[derive(Debug, Clone)]
pub enum BlockOutput {
    /// Files in a folder (block + JSON sidecar each).
    Dir(PathBuf),
    /// A shared-memory ring other processes read.
    Shm(RingOptions),
}

/// Options of a block sink.
#[derive(Debug, Clone)]
pub struct BlockSinkOptions {
    /// Where blocks go.
    pub output: BlockOutput,
    /// Block geometry.
    pub layout: Layout,
    /// Window, resync gap, zero fill, pool size.
    pub assembler: Options,
    /// Packet format.
    pub format: StreamFormat,
    /// Completed blocks that may wait for the writer.
    pub queue: usize,
    /// When the queue is full, wait for the writer instead of dropping the
    /// block (a source that can wait: a file read back loses nothing).
    pub wait_for_writer: bool,
}

/// What the sidecar of a block file says.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sidecar {
    /// Packet format.
    pub format: StreamFormat,
    /// Block number.
    pub number: u64,
    /// Sequence number of slot 0.
    pub first_seq: u64,
    /// Geometry.
    pub layout: Layout,
    /// Slots that arrived.
    pub filled: u64,
    /// Slots that were expected and did not arrive.
    pub lost: u64,
    /// Presence bits, one per (channel, slot), row-major, as little-endian u64 words in hex.
    pub presence: String,
    /// Whether missing slots were zero-filled.
    pub zero_filled: bool,
    /// The data file.
    pub data: String,
}

/// Largest sidecar read (the presence map of the largest block fits).
pub const MAX_SIDECAR_BYTES: usize = 256 << 20;

impl Sidecar {
    /// Parses a sidecar's text, checking what it claims: the layout (no
    /// zero or wrapping sizes) and the data file's name (a plain
    /// `block-*.bin` name, so it cannot point outside its directory).
    pub fn parse(text: &str) -> Result<Self, String> {
        let s: Sidecar =
            serde_json::from_str(text).map_err(|e| format!("not a linecap block sidecar: {e}"))?;
        let plain = !s.data.is_empty()
            && !s.data.starts_with('.')
            && !s.data.contains(['/', '\\', '\0'])
            && s.data.ends_with(".bin");
        if !plain {
            return Err(format!(
                "its data file name '{}' is not a block file beside it",
                s.data.escape_debug()
            ));
        }
        Ok(s)
    }

    /// Reads the sidecar at `path` (never following a symlink, never
    /// blocking on a FIFO) and checks its data file: a regular file beside
    /// it, of exactly the layout's size. Returns the sidecar, its text and
    /// the data file's path.
    pub fn load(path: &Path) -> Result<(Self, String, PathBuf), String> {
        let (bytes, _) = crate::sys::shm::read_checked(path, MAX_SIDECAR_BYTES)
            .map_err(|e| format!("cannot read the sidecar {} ({e})", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{} is not text", path.display()))?;
        let s = Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let data = path.with_file_name(&s.data);
        let meta = std::fs::symlink_metadata(&data)
            .map_err(|e| format!("data file {} is missing ({e})", data.display()))?;
        if !meta.is_file() {
            return Err(format!("data file {} is not a regular file", data.display()));
        }
        let want = s.layout.block_bytes() as u64;
        if meta.len() != want {
            return Err(format!(
                "{} holds {} bytes, the layout says {want}: the file is damaged",
                data.display(),
                meta.len()
            ));
        }
        Ok((s, text, data))
    }

    /// Whether (channel, slot) arrived.
    pub fn is_present(&self, channel: usize, slot: usize) -> bool {
        let i = channel * self.layout.slots + slot;
        let word = i / 64;
        self.presence
            .get(word * 16..word * 16 + 16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }
}

struct Job {
    block: Block,
    sidecar: Sidecar,
}

/// Decodes one payload of `format` and places it: the receive thread's
/// whole share of the block sink's work, pure (no I/O).
fn place(
    format: &StreamFormat,
    unwrap: &mut Unwrap,
    asm: &mut Assembler,
    payload: &[u8],
    out: &mut impl FnMut(Block),
) {
    match format.decode(payload) {
        Decoded::Packet(counter, channel, data) => {
            let s = unwrap.extend(counter);
            asm.push(s, channel as usize, data, out);
        }
        Decoded::Part(counter, offset, total, data) => {
            let s = unwrap.extend(counter);
            asm.push_part(s, 0, offset, total, data, out);
        }
        Decoded::Invalid => asm.invalid(),
        Decoded::Malformed => asm.malformed(),
    }
}

/// The block sink's decoding and placing without its threads and files:
/// for offline assembly, benchmarks and fuzzing.
pub struct Placer {
    format: StreamFormat,
    unwrap: Unwrap,
    asm: Assembler,
}

impl Placer {
    /// A placer for `format` into blocks of `layout`.
    pub fn new(format: StreamFormat, layout: Layout, opts: Options) -> Self {
        Self { unwrap: Unwrap::new(format.counter_bits()), asm: Assembler::new(layout, opts), format }
    }

    /// Places one UDP payload; completed blocks go to `out` (give their
    /// buffers back with [`Placer::recycle`]).
    pub fn place(&mut self, payload: &[u8], out: &mut impl FnMut(Block)) {
        place(&self.format, &mut self.unwrap, &mut self.asm, payload, out);
    }

    /// Returns a block's buffer to the pool.
    pub fn recycle(&mut self, data: PageBuf) {
        self.asm.recycle(data);
    }

    /// Completes every open block.
    pub fn flush(&mut self, out: &mut impl FnMut(Block)) {
        self.asm.flush(out);
    }

    /// What the assembler counted.
    pub fn counts(&self) -> crate::assemble::AssemblyCounts {
        self.asm.counts()
    }
}

/// Assembles on the receive thread, writes on its own thread.
pub struct BlockSink {
    asm: Assembler,
    unwrap: Unwrap,
    format: StreamFormat,
    tx: Option<SyncSender<Job>>,
    back: Receiver<PageBuf>,
    writer: Option<JoinHandle<WriterTotals>>,
    counters: StageCounters,
    dropped_blocks: u64,
    dropped_packets: u64,
    layout: Layout,
    zero_fill: bool,
    wait_for_writer: bool,
    closing: Arc<AtomicBool>,
}

#[derive(Debug, Default, Clone, Copy)]
struct WriterTotals {
    written: u64,
    errors: u64,
    overwritten: u64,
    waits: u64,
    ring_dropped: u64,
}

/// Final figures of a block sink.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BlockReport {
    /// The assembler's counts.
    pub assembly: AssemblyCounts,
    /// Blocks written with their sidecar.
    pub written: u64,
    /// Blocks dropped because the writer was behind.
    pub dropped_blocks: u64,
    /// Packets inside dropped blocks.
    pub dropped_packets: u64,
    /// Blocks that failed to write.
    pub write_errors: u64,
    /// Times a narrow counter wrapped.
    pub wraps: u64,
    /// Shared-memory ring: unread blocks overwritten (lossy mode).
    #[serde(default)]
    pub ring_overwritten: u64,
    /// Shared-memory ring: waits for the reader (lossless mode).
    #[serde(default)]
    pub ring_waits: u64,
    /// Shared-memory ring: blocks given up at shutdown while the reader did not read (lossless).
    #[serde(default)]
    pub ring_dropped: u64,
}

fn hex_words(words: &[u64]) -> String {
    words.iter().map(|w| format!("{w:016x}")).collect()
}

/// Writes a block and then its sidecar (a block with a sidecar is
/// complete). On any failure (a full disk) both are removed: no orphan
/// data file is left for a reader to trip on; the block is counted as a
/// write error by the caller.
fn write_block(dir: &Path, job: &Job) -> std::io::Result<()> {
    let data = dir.join(&job.sidecar.data);
    let tmp = dir.join(format!("{}.json.tmp", job.sidecar.data));
    let result = (|| {
        let mut f = File::create(&data)?;
        f.write_all(&job.block.data)?;
        let json = serde_json::to_string_pretty(&job.sidecar).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, dir.join(format!("{}.json", job.sidecar.data.trim_end_matches(".bin"))))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&data);
    }
    result
}

impl BlockSink {
    /// Checks the folder and starts the writer thread.
    pub fn start(opts: BlockSinkOptions, counters: StageCounters) -> std::io::Result<Self> {
        let mut ring = None;
        match &opts.output {
            BlockOutput::Dir(dir) if !dir.is_dir() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("block folder {} does not exist: create it first", dir.display()),
                ));
            }
            BlockOutput::Dir(_) => {}
            BlockOutput::Shm(r) => {
                let code = match opts.format {
                    StreamFormat::Seq => 0,
                    StreamFormat::Raw(_) => 1,
                    StreamFormat::Vdif { .. } => 2,
                    StreamFormat::Spead => 3,
                    StreamFormat::SpeadHeap => 4,
                };
                ring = Some(RingWriter::create(r, opts.layout, code).map_err(std::io::Error::other)?);
            }
        }
        let queue = opts.queue.max(1);
        let pool = opts.assembler.pool.max(opts.assembler.window + queue + 1);
        let asm = Assembler::new(opts.layout, Options { pool, ..opts.assembler });
        let (tx, rx) = sync_channel::<Job>(queue);
        let (back_tx, back) = sync_channel::<PageBuf>(pool);
        let closing = Arc::new(AtomicBool::new(false));
        let give_up = closing.clone();
        let output = opts.output.clone();
        let writer = std::thread::Builder::new().name("linecap-blocks".into()).spawn(move || {
            let mut t = WriterTotals::default();
            for job in rx {
                match (&output, ring.as_mut()) {
                    (BlockOutput::Shm(_), Some(r)) => {
                        match r.publish(&job.block, || give_up.load(Ordering::Acquire)) {
                            Published::Ok | Published::Overwrote => t.written += 1,
                            Published::Dropped => {}
                        }
                    }
                    (BlockOutput::Dir(dir), _) => match write_block(dir, &job) {
                        Ok(()) => t.written += 1,
                        Err(e) => {
                            if t.errors == 0 {
                                tracing::warn!(
                                    "writing block {} failed: {e}; such blocks are counted as write errors",
                                    job.sidecar.first_seq
                                );
                            }
                            t.errors += 1;
                        }
                    },
                    (BlockOutput::Shm(_), None) => t.errors += 1,
                }
                let _ = back_tx.try_send(job.block.data);
            }
            if let Some(r) = &ring {
                let (_, over, waits, dropped) = r.counts();
                (t.overwritten, t.waits, t.ring_dropped) = (over, waits, dropped);
                r.finish();
            }
            t
        })?;
        Ok(Self {
            asm,
            unwrap: Unwrap::new(opts.format.counter_bits()),
            format: opts.format,
            tx: Some(tx),
            back,
            writer: Some(writer),
            counters,
            dropped_blocks: 0,
            dropped_packets: 0,
            layout: opts.layout,
            zero_fill: opts.assembler.zero_fill,
            wait_for_writer: opts.wait_for_writer,
            closing,
        })
    }

    fn publish(&self) {
        let c = self.asm.counts();
        let set = |i: BlocksIdx, v: u64| self.counters.set(i as usize, v);
        set(BlocksIdx::Packets, c.packets);
        set(BlocksIdx::Placed, c.placed);
        set(BlocksIdx::Duplicates, c.duplicates);
        set(BlocksIdx::Late, c.late);
        set(BlocksIdx::Malformed, c.malformed);
        set(BlocksIdx::Invalid, c.invalid);
        set(BlocksIdx::BadChannel, c.bad_channel);
        set(BlocksIdx::NoBuffer, c.no_buffer);
        set(BlocksIdx::Resyncs, c.resyncs);
        set(BlocksIdx::OutOfWindow, c.out_of_window);
        set(BlocksIdx::Blocks, c.blocks);
        set(BlocksIdx::SlotsLost, c.slots_lost);
        set(BlocksIdx::DroppedBlocks, self.dropped_blocks);
        set(BlocksIdx::DroppedPackets, self.dropped_packets);
        set(BlocksIdx::Wraps, self.unwrap.wraps);
    }

    /// The final figures (after `finish`).
    fn report(&self, t: WriterTotals) -> BlockReport {
        BlockReport {
            assembly: self.asm.counts(),
            written: t.written,
            dropped_blocks: self.dropped_blocks,
            dropped_packets: self.dropped_packets,
            write_errors: t.errors,
            wraps: self.unwrap.wraps,
            ring_overwritten: t.overwritten,
            ring_waits: t.waits,
            ring_dropped: t.ring_dropped,
        }
    }

    fn reclaim(&mut self) {
        while let Ok(buf) = self.back.try_recv() {
            self.asm.recycle(buf);
        }
    }

    /// Completes the open blocks, waits for the writer, returns the figures.
    pub fn close(&mut self) -> BlockReport {
        let mut done = Vec::new();
        self.asm.flush(&mut |b| done.push(b));
        for b in done {
            self.hand_off(b);
        }
        // A lossless ring whose reader stopped must not hold the capture:
        // what the reader does not take now is given up and counted.
        self.closing.store(true, Ordering::Release);
        self.tx = None;
        let t = self.writer.take().and_then(|h| h.join().ok()).unwrap_or_default();
        self.publish();
        self.counters.set(BlocksIdx::Written as usize, t.written);
        self.counters.set(BlocksIdx::WriteErrors as usize, t.errors);
        self.counters.set(BlocksIdx::RingOverwritten as usize, t.overwritten);
        self.counters.set(BlocksIdx::RingWaits as usize, t.waits);
        self.counters.set(BlocksIdx::RingDropped as usize, t.ring_dropped);
        self.report(t)
    }

    fn hand_off(&mut self, block: Block) {
        let sidecar = Sidecar {
            format: self.format,
            number: block.number,
            first_seq: block.first_seq,
            layout: self.layout,
            filled: block.filled,
            lost: block.lost,
            presence: hex_words(&block.present),
            zero_filled: self.zero_fill,
            data: format!("block-{:020}.bin", block.first_seq),
        };
        let Some(tx) = &self.tx else { return };
        let job = Job { block, sidecar };
        let sent = if self.wait_for_writer {
            tx.send(job).map_err(|e| TrySendError::Disconnected(e.0))
        } else {
            tx.try_send(job)
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.dropped_blocks += 1;
                self.dropped_packets += job.block.filled;
                self.asm.recycle(job.block.data);
            }
        }
    }
}

impl super::Sink for BlockSink {
    fn consume(&mut self, batch: &Batch<'_>) {
        self.reclaim();
        let mut done: Vec<Block> = Vec::new();
        for p in batch.iter() {
            if !p.is_udp {
                self.asm.malformed();
                continue;
            }
            place(&self.format, &mut self.unwrap, &mut self.asm, p.data, &mut |b| done.push(b));
        }
        for b in done {
            self.hand_off(b);
        }
        self.publish();
    }

    fn finish(&mut self) -> crate::Result<()> {
        self.close();
        Ok(())
    }

    fn name(&self) -> &'static str {
        "blocks"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_presence_round_trip() {
        let words = [0b1011u64, 1 << 63];
        let s = Sidecar {
            format: StreamFormat::Seq,
            number: 0,
            first_seq: 0,
            layout: Layout::new(8, 64, 2).unwrap(),
            filled: 4,
            lost: 124,
            presence: hex_words(&words),
            zero_filled: true,
            data: "b.bin".into(),
        };
        assert!(s.is_present(0, 0) && s.is_present(0, 1) && !s.is_present(0, 2) && s.is_present(0, 3));
        assert!(s.is_present(1, 63) && !s.is_present(1, 62));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Sidecar>(&json).unwrap(), s);
    }
}
