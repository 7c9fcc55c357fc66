//! A shared-memory ring of block slots, `/dev/shm/linecap-blocks-<NAME>`,
//! that other processes read zero-copy (e.g. numpy via
//! `python/linecap_blocks.py`). Layout (little-endian, documented in
//! docs/SHM.md):
//!
//! ```text
//! header, 4096 bytes (u64 words at byte offsets):
//!     0 magic "LCBLKRG1"     8 version | header_bytes << 32
//!    16 nslots              24 slot_stride (bytes)      32 meta_bytes
//!    40 block_bytes         48 slot_bytes | slots << 32
//!    56 channels | flags << 32 (flag 1: lossless)        64 writer pid
//!    72 format (0 seq, 1 raw)
//!   128 write_seq  (blocks published; writer, release)
//!   192 read_seq   (blocks consumed; the reader writes it)
//!   256 published  264 overwritten  272 backpressure_waits  280 dropped
//! slot i at 4096 + i * slot_stride:
//!     0 seq (k + 1 once block k is complete, 0 while being written)
//!     8 number  16 first_seq  24 filled  32 lost  40 presence words
//!    64 presence bits (one per channel x slot, row-major)
//!    meta_bytes: the block data (channels x slots x slot_bytes)
//! ```
//!
//! Publishing block `k`: wait (lossless) or overwrite (lossy) when the ring
//! is full; set the slot's `seq` to 0, write the bytes, set `seq` to k + 1
//! and `write_seq` to k + 1, both with release ordering. A reader takes
//! block `r` from slot `r % nslots` if its `seq` is r + 1, and checks it
//! again after use to detect an overwrite.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::assemble::{Block, Layout};
use crate::sys::shm::{ByteMap, ClaimError, Claimed};

const MAGIC: u64 = u64::from_le_bytes(*b"LCBLKRG1");
const HEADER: usize = 4096;
const PAGE: usize = 4096;
/// Header word offsets.
mod off {
    pub const WRITE_SEQ: usize = 128;
    pub const READ_SEQ: usize = 192;
    pub const PUBLISHED: usize = 256;
    pub const OVERWRITTEN: usize = 264;
    pub const WAITS: usize = 272;
    pub const DROPPED: usize = 280;
    pub const PID: usize = 64;
}

/// Where a ring lives.
pub fn ring_path(name: &str) -> PathBuf {
    crate::stats::stats_dir().join(format!("linecap-blocks-{name}"))
}

/// Options of a ring.
#[derive(Debug, Clone)]
pub struct RingOptions {
    /// Name (file `linecap-blocks-<name>` in /dev/shm).
    pub name: String,
    /// Block slots.
    pub slots: usize,
    /// Wait for the reader instead of overwriting unread blocks.
    pub lossless: bool,
    /// Permission of the ring file (a reader that acknowledges blocks in
    /// lossless mode needs write access).
    pub mode: u32,
    /// Leave the ring file in place when the writer ends.
    pub keep: bool,
}

/// The writer of a block ring.
pub struct RingWriter {
    map: ByteMap,
    nslots: u64,
    stride: usize,
    meta: usize,
    block_bytes: usize,
    lossless: bool,
    next: u64,
    path: PathBuf,
    claimed: Claimed,
    keep: bool,
}

/// Outcome of publishing one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// In the ring.
    Ok,
    /// In the ring, over a block the reader had not read (lossy).
    Overwrote,
    /// Not published: the reader did not make room in time (lossless, at shutdown).
    Dropped,
}

impl RingWriter {
    /// Creates the ring. Refuses a name whose writer is still alive.
    pub fn create(opts: &RingOptions, layout: Layout, format: u64) -> Result<Self, String> {
        crate::stats::check_name(&opts.name).map_err(|e| format!("--shm: {e}"))?;
        let path = ring_path(&opts.name);
        let nslots = opts.slots.max(2);
        let bits = layout.channels * layout.slots;
        let meta = (64 + bits.div_ceil(64) * 8).next_multiple_of(PAGE);
        let block_bytes = layout.block_bytes();
        let stride = (meta + block_bytes).next_multiple_of(PAGE);
        let total = HEADER + nslots * stride;
        let (map, claimed) = ByteMap::create(&path, total, opts.mode).map_err(|e| match e {
            ClaimError::InUse { .. } => {
                let pid = RingSnapshot::read(&path).map_or(0, |s| s.writer_pid);
                format!(
                    "shm ring '{}' is in use by process {pid}: stop it or choose another --shm name",
                    opts.name
                )
            }
            other => other.to_string(),
        })?;
        let w = |at: usize, v: u64| map.word(at).store(v, Ordering::Relaxed);
        w(8, 1 | (HEADER as u64) << 32);
        w(16, nslots as u64);
        w(24, stride as u64);
        w(32, meta as u64);
        w(40, block_bytes as u64);
        w(48, layout.slot_bytes as u64 | (layout.slots as u64) << 32);
        w(56, layout.channels as u64 | u64::from(opts.lossless) << 32);
        w(off::PID, u64::from(std::process::id()));
        w(72, format);
        map.word(0).store(MAGIC, Ordering::Release);
        Ok(Self {
            map,
            nslots: nslots as u64,
            stride,
            meta,
            block_bytes,
            lossless: opts.lossless,
            next: 0,
            path,
            claimed,
            keep: opts.keep,
        })
    }

    fn bump(&self, at: usize) {
        let c = self.map.word(at);
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Publishes one block. In lossless mode waits while the ring is full,
    /// giving up (dropping, counted) only when `give_up()` says so.
    pub fn publish(&mut self, b: &Block, give_up: impl Fn() -> bool) -> Published {
        let k = self.next;
        let mut outcome = Published::Ok;
        loop {
            let read = self.map.word(off::READ_SEQ).load(Ordering::Acquire);
            if k < read + self.nslots {
                break;
            }
            if !self.lossless {
                outcome = Published::Overwrote;
                self.bump(off::OVERWRITTEN);
                break;
            }
            if give_up() {
                self.bump(off::DROPPED);
                return Published::Dropped;
            }
            self.bump(off::WAITS);
            std::thread::sleep(Duration::from_micros(200));
        }
        let base = HEADER + (k % self.nslots) as usize * self.stride;
        self.map.word(base).store(0, Ordering::Release);
        {
            let meta = self.map.bytes_mut(base + 8, 32);
            for (i, v) in [b.number, b.first_seq, b.filled, b.lost].into_iter().enumerate() {
                meta[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        let words = b.present.len().min((self.meta - 64) / 8);
        self.map.bytes_mut(base + 40, 8).copy_from_slice(&(words as u64).to_le_bytes());
        let pres = self.map.bytes_mut(base + 64, words * 8);
        for (i, w) in b.present.iter().take(words).enumerate() {
            pres[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        let n = b.data.len().min(self.block_bytes);
        self.map.bytes_mut(base + self.meta, n).copy_from_slice(&b.data[..n]);
        self.map.word(base).store(k + 1, Ordering::Release);
        self.next = k + 1;
        self.map.word(off::WRITE_SEQ).store(k + 1, Ordering::Release);
        self.bump(off::PUBLISHED);
        outcome
    }

    /// Marks the ring as finished (writer pid 0): readers stop waiting.
    pub fn finish(&self) {
        self.map.word(off::PID).store(0, Ordering::Release);
    }

    /// (published, overwritten, backpressure waits, dropped) so far.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let r = |at| self.map.word(at).load(Ordering::Relaxed);
        (r(off::PUBLISHED), r(off::OVERWRITTEN), r(off::WAITS), r(off::DROPPED))
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        self.finish();
        if !self.keep {
            crate::sys::shm::remove_if_same(&self.path, &self.claimed.file);
        }
    }
}

/// A ring's state as read from its file (for `blocks inspect NAME`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RingSnapshot {
    /// Slots.
    pub nslots: u64,
    /// Block geometry.
    pub layout: Layout,
    /// Lossless mode.
    pub lossless: bool,
    /// Writer pid (0: finished).
    pub writer_pid: u32,
    /// Blocks published.
    pub write_seq: u64,
    /// Blocks the reader consumed.
    pub read_seq: u64,
    /// Counters.
    pub published: u64,
    /// Unread blocks overwritten.
    pub overwritten: u64,
    /// Writer waits for the reader.
    pub waits: u64,
    /// Blocks given up.
    pub dropped: u64,
    /// The newest complete block's metadata.
    pub newest: Option<SlotMeta>,
}

/// One slot's metadata.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlotMeta {
    /// Block number.
    pub number: u64,
    /// First sequence number.
    pub first_seq: u64,
    /// Slots filled.
    pub filled: u64,
    /// Slots lost.
    pub lost: u64,
}

impl RingSnapshot {
    /// Reads a ring file (a copy of its header and newest slot metadata).
    /// Every size in the header is checked against the file before use: a
    /// damaged or forged ring gives an error, never a panic or a hang.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let (head, _, file_len) = crate::sys::shm::read_range_checked(path, 0, HEADER)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let w = |bytes: &[u8], at: usize| {
            bytes.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8")))
        };
        if head.len() < HEADER || head[..8] != MAGIC.to_le_bytes() {
            return Err(format!("{} is not a linecap block ring", path.display()));
        }
        let bad = |what: &str| format!("{} has a damaged header ({what})", path.display());
        let h = |at: usize| w(&head, at).ok_or_else(|| bad("short"));
        let nslots = h(16)?;
        let stride = h(24)?;
        let (sl, ch) = (h(48)?, h(56)?);
        let layout =
            Layout::new(sl as u32 as usize, (sl >> 32) as usize, ch as u32 as usize).map_err(|e| bad(&e))?;
        let expected = nslots.checked_mul(stride).and_then(|b| b.checked_add(HEADER as u64));
        if nslots == 0 || stride == 0 || expected != Some(file_len) {
            return Err(bad("slots and stride do not match the file's size"));
        }
        let write_seq = h(off::WRITE_SEQ)?;
        let newest = if write_seq > 0 {
            let base = HEADER as u64 + ((write_seq - 1) % nslots) * stride;
            crate::sys::shm::read_range_checked(path, base, 40).ok().and_then(|(m, _, _)| {
                let f = |i: usize| w(&m, i * 8);
                match (f(0), f(1), f(2), f(3), f(4)) {
                    (Some(seq), Some(number), Some(first_seq), Some(filled), Some(lost))
                        if seq == write_seq =>
                    {
                        Some(SlotMeta { number, first_seq, filled, lost })
                    }
                    _ => None,
                }
            })
        } else {
            None
        };
        Ok(Self {
            nslots,
            layout,
            lossless: ch >> 32 & 1 == 1,
            writer_pid: h(off::PID)? as u32,
            write_seq,
            read_seq: h(off::READ_SEQ)?,
            published: h(off::PUBLISHED)?,
            overwritten: h(off::OVERWRITTEN)?,
            waits: h(off::WAITS)?,
            dropped: h(off::DROPPED)?,
            newest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: u64, layout: Layout) -> Block {
        Block {
            number: n,
            first_seq: n * layout.slots as u64,
            data: {
                let mut d = crate::assemble::PageBuf::new(layout.block_bytes()).unwrap();
                d.fill(n as u8);
                d
            },
            present: vec![u64::MAX; (layout.slots * layout.channels).div_ceil(64)],
            filled: layout.slots as u64,
            lost: 0,
        }
    }

    fn opts(name: String, lossless: bool) -> RingOptions {
        RingOptions { name, slots: 2, lossless, mode: 0o644, keep: false }
    }

    #[test]
    fn lossy_overwrites_and_lossless_gives_up_when_told() {
        let layout = Layout::new(16, 64, 1).unwrap();
        let name = format!("test-{}-a", std::process::id());
        let mut w = RingWriter::create(&opts(name.clone(), false), layout, 0).unwrap();
        for n in 0..5 {
            let o = w.publish(&block(n, layout), || false);
            assert_eq!(o, if n < 2 { Published::Ok } else { Published::Overwrote });
        }
        assert_eq!(w.counts(), (5, 3, 0, 0));
        let snap = RingSnapshot::read(&ring_path(&name)).unwrap();
        assert_eq!((snap.write_seq, snap.overwritten, snap.nslots), (5, 3, 2));
        assert_eq!(snap.newest.as_ref().map(|b| b.number), Some(4));
        // The newest block is in slot 4 % 2 = 0 with seq 5.
        let bytes = std::fs::read(ring_path(&name)).unwrap();
        let stride = u64::from_le_bytes(bytes[24..32].try_into().unwrap()) as usize;
        let meta = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
        assert_eq!(u64::from_le_bytes(bytes[HEADER..HEADER + 8].try_into().unwrap()), 5);
        assert_eq!(bytes[HEADER + meta], 4);
        assert_eq!(u64::from_le_bytes(bytes[HEADER + stride..HEADER + stride + 8].try_into().unwrap()), 4);
        drop(w);
        let name2 = format!("test-{}-b", std::process::id());
        let mut l = RingWriter::create(&opts(name2.clone(), true), layout, 0).unwrap();
        assert_eq!(l.publish(&block(0, layout), || true), Published::Ok);
        assert_eq!(l.publish(&block(1, layout), || true), Published::Ok);
        assert_eq!(l.publish(&block(2, layout), || true), Published::Dropped, "full and told to give up");
        assert_eq!(l.counts().3, 1);
        let _ = std::fs::remove_file(ring_path(&name));
        let _ = std::fs::remove_file(ring_path(&name2));
    }

    #[test]
    fn a_live_writer_keeps_its_name() {
        let layout = Layout::new(8, 8, 1).unwrap();
        let name = format!("test-{}-c", std::process::id());
        let w = RingWriter::create(&opts(name.clone(), false), layout, 0).unwrap();
        // While the writer holds the ring, the name is refused, naming its pid.
        let e = RingWriter::create(&opts(name.clone(), false), layout, 0).err().unwrap();
        assert!(e.contains(&format!("in use by process {}", std::process::id())), "{e}");
        drop(w);
        assert!(RingWriter::create(&opts(name.clone(), false), layout, 0).is_ok());
        let _ = std::fs::remove_file(ring_path(&name));
        assert!(RingWriter::create(&opts("a/b".into(), false), layout, 0).is_err());
    }
}
