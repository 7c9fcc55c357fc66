//! Packets as a remote attacker would craft them: a valid header of each
//! format (so they pass the first check, which random bytes rarely do) with
//! hostile fields (zero, one, the slot size and its neighbours, 2^32, 2^48,
//! 2^63, all ones), lengths that disagree with what the header says, and
//! extra or missing items. Drives the never-panic checks of every decoder
//! and of the assembler: the property tests and the `hostile_stream` fuzz
//! target read a byte string as a series of such packets.

use crate::assemble::{AssemblyCounts, Layout, Options};
use crate::format::raw::RawSpec;
use crate::format::{spead, vdif};
use crate::sink::blocks::{Placer, StreamFormat};

/// Reads choices from fuzz input; an exhausted input reads zeros.
pub struct Choices<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Choices<'a> {
    /// Choices read from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }

    /// Whether every byte was used.
    pub fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }

    /// One byte.
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.at.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.at = start + n;
        &self.data[start..end]
    }

    /// A value from the ones that break arithmetic, or raw bytes.
    pub fn value(&mut self, slot: u64) -> u64 {
        let interesting = [
            0,
            1,
            2,
            7,
            slot.wrapping_sub(1),
            slot,
            slot.wrapping_add(1),
            2 * slot,
            u64::from(u32::MAX),
            1 << 32,
            (1 << 48) - 1,
            1 << 47,
            1 << 63,
            u64::MAX,
        ];
        let pick = usize::from(self.byte());
        match interesting.get(pick % 20) {
            Some(&v) => v,
            None if pick % 20 < 17 => u64::from(self.byte()), // small, close to a stream
            None => {
                let mut b = [0u8; 8];
                let raw = self.bytes(8);
                b[..raw.len()].copy_from_slice(raw);
                u64::from_le_bytes(b)
            }
        }
    }

    /// A length near `typical`, or a hostile one (0, 1, short, long).
    pub fn len(&mut self, typical: usize) -> usize {
        match self.byte() % 8 {
            0 => 0,
            1 => 1,
            2 => typical.saturating_sub(1),
            3 => typical + 1,
            4 => usize::from(self.byte()),
            _ => typical,
        }
    }
}

/// The raw spec the crafted raw packets follow.
pub fn raw_spec() -> RawSpec {
    RawSpec::parse("header=16,counter=0:8:be,channel=8:2:be,payload=32").expect("a valid spec")
}

/// One crafted packet of `format` for blocks of `layout`.
pub fn packet(format: &StreamFormat, layout: &Layout, c: &mut Choices<'_>) -> Vec<u8> {
    let slot = layout.slot_bytes as u64;
    match format {
        StreamFormat::Seq => {
            let mut p = c.value(slot).to_le_bytes().to_vec();
            p.resize(8 + c.len(layout.slot_bytes), 0xa5);
            p.truncate(c.len(p.len()));
            p
        }
        StreamFormat::Raw(spec) => {
            let mut p = vec![0u8; 16 + c.len(spec.payload)];
            let counter = c.value(slot).to_be_bytes();
            let n = p.len().min(8);
            p[..n].copy_from_slice(&counter[..n]);
            if p.len() >= 10 {
                p[8..10].copy_from_slice(&(c.value(layout.channels as u64) as u16).to_be_bytes());
            }
            p.truncate(c.len(p.len()));
            p
        }
        StreamFormat::Vdif { .. } => {
            let frame = c.len(32 + layout.slot_bytes);
            let mut p = vec![0x5a; frame.max(32)];
            let claimed = c.value(32 + slot) as usize;
            vdif::write_header(&mut p, c.value(1) as u32, c.value(slot) as u32, c.value(4) as u16, claimed);
            // Now and then a hostile bit anywhere in the header (legacy, invalid, sizes).
            if c.byte() & 1 == 1 {
                let at = usize::from(c.byte()) % 32;
                p[at] ^= 1 << (c.byte() % 8);
            }
            p.truncate(frame);
            p
        }
        StreamFormat::Spead | StreamFormat::SpeadHeap => spead_packet(slot, c),
    }
}

fn spead_packet(slot: u64, c: &mut Choices<'_>) -> Vec<u8> {
    if c.byte().is_multiple_of(2) { almost_genuine_spead(slot, c) } else { any_items_spead(slot, c) }
}

/// The four standard items in order, consistent but for one or two
/// fields pushed to an edge: the packets that reach the deepest code.
fn almost_genuine_spead(slot: u64, c: &mut Choices<'_>) -> Vec<u8> {
    let heap = u64::from(c.byte());
    let size = if c.byte().is_multiple_of(3) { c.value(slot) } else { slot };
    let parts = u64::from(c.byte() % 4) + 1;
    let len = (size / parts).max(1);
    let offset = match c.byte() % 6 {
        0 => 0,
        1 => len.wrapping_mul(u64::from(c.byte() % 4)),
        2 => size,
        3 => size.wrapping_sub(1),
        4 => size.wrapping_add(len),
        _ => c.value(slot),
    };
    let payload_len = match c.byte() % 4 {
        0 => 0,
        1 => c.value(slot),
        _ => len,
    };
    let mut p = vec![spead::MAGIC, spead::VERSION, 2, 6, 0, 0, 0, 4];
    for (id, v) in [
        (spead::HEAP_CNT, heap),
        (spead::HEAP_SIZE, size),
        (spead::HEAP_OFFSET, offset),
        (spead::PAYLOAD_LEN, payload_len),
    ] {
        p.extend_from_slice(&(1u64 << 63 | u64::from(id) << 48 | v & ((1 << 48) - 1)).to_be_bytes());
    }
    // The payload the header claims (if sane), else a hostile length.
    let actual = if payload_len <= 4 * slot && !c.byte().is_multiple_of(4) {
        payload_len as usize
    } else {
        c.len(len.min(4 * slot) as usize)
    };
    p.resize(p.len() + actual, 0x3c);
    p
}

/// Any number of items, in any order, immediate or not.
fn any_items_spead(slot: u64, c: &mut Choices<'_>) -> Vec<u8> {
    let items = usize::from(c.byte() % 7);
    let mut p = vec![spead::MAGIC, spead::VERSION, 2, 6, 0, 0, 0, items as u8];
    let ids = [
        spead::HEAP_CNT,
        spead::HEAP_SIZE,
        spead::HEAP_OFFSET,
        spead::PAYLOAD_LEN,
        spead::STREAM_CTRL,
        spead::DATA_ITEM,
    ];
    for i in 0..items {
        let id = if c.byte().is_multiple_of(4) { ids[usize::from(c.byte()) % ids.len()] } else { ids[i % 4] };
        let immediate = !c.byte().is_multiple_of(8);
        let v = u64::from(immediate) << 63 | u64::from(id & 0x7fff) << 48 | c.value(slot) & ((1 << 48) - 1);
        p.extend_from_slice(&v.to_be_bytes());
    }
    let payload = c.len(slot as usize);
    p.resize(p.len() + payload, 0x3c);
    p
}

/// Formats the hostile-stream checks cover.
pub fn formats() -> [StreamFormat; 5] {
    [
        StreamFormat::Seq,
        StreamFormat::Raw(raw_spec()),
        StreamFormat::Vdif { fps: 100 },
        StreamFormat::Spead,
        StreamFormat::SpeadHeap,
    ]
}

/// Reads `data` as crafted packets of `format` and places every one (a
/// small window and pool, buffers recycled as a writer would): returns the
/// assembler's counts, which must account for every packet.
pub fn assemble(format: &StreamFormat, data: &[u8]) -> AssemblyCounts {
    // Rows where the format has them (raw channels, VDIF threads); one row
    // for SPEAD, whose parts all land in row 0, so a part's edge is the
    // block's edge.
    let layout = match format {
        StreamFormat::Raw(spec) => Layout::new(spec.payload, 8, 4),
        StreamFormat::Vdif { .. } => Layout::new(32, 8, 4),
        _ => Layout::new(32, 8, 1),
    }
    .expect("a valid layout");
    let mut placer =
        Placer::new(*format, layout, Options { window: 2, resync_gap: 64, zero_fill: true, pool: 4 });
    let mut c = Choices::new(data);
    let mut done = Vec::new();
    while !c.is_empty() {
        let p = packet(format, &layout, &mut c);
        placer.place(&p, &mut |b| done.push(b));
        for b in done.drain(..) {
            placer.recycle(b.data);
        }
    }
    placer.flush(&mut |b| done.push(b));
    placer.counts()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn crafted_streams_never_panic_and_every_packet_is_accounted_for(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)
        ) {
            for f in formats() {
                let c = assemble(&f, &data);
                proptest::prop_assert_eq!(c.packets, c.accounted(), "{:?}: {:?}", f, c);
            }
        }
    }

    #[test]
    fn the_issue_9_spead_packet_is_among_what_is_crafted() {
        // heap 15 (a block's last slot with 8 slots), size 32, offset 32, no payload.
        let c = assemble(&StreamFormat::SpeadHeap, &[]);
        assert_eq!(c.packets, 0);
        let pk = {
            let mut p = vec![spead::MAGIC, spead::VERSION, 2, 6, 0, 0, 0, 4];
            for (id, v) in [
                (spead::HEAP_CNT, 15u64),
                (spead::HEAP_SIZE, 32),
                (spead::HEAP_OFFSET, 32),
                (spead::PAYLOAD_LEN, 0),
            ] {
                p.extend_from_slice(&(1u64 << 63 | u64::from(id) << 48 | v).to_be_bytes());
            }
            p
        };
        let layout = Layout::new(32, 8, 4).unwrap();
        let mut placer = Placer::new(StreamFormat::SpeadHeap, layout, Options::default());
        placer.place(&pk, &mut |_| {});
        assert_eq!(placer.counts().malformed, 1);
    }
}
