//! What a block sink reads from each packet: the stream formats, their
//! decoding into (sequence, channel, data), and the placing of one payload
//! into an assembly (one thread's own, or its share of a group's).

use crate::assemble::group::Member;
use crate::assemble::{Assembler, Block, Layout, Options, PageBuf};
use crate::format::raw::{RawSpec, Unwrap};
use crate::format::seq;

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
pub(super) enum Decoded<'a> {
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

/// An assembly a payload can be placed into.
pub(super) trait Places {
    /// A packet of a whole slot.
    fn push(&mut self, seq: u64, channel: usize, data: &[u8], out: &mut impl FnMut(Block));
    /// A part of a slot (a SPEAD heap's packet).
    fn push_part(&mut self, seq: u64, offset: usize, total: usize, data: &[u8], out: &mut impl FnMut(Block));
    /// A packet flagged invalid by its sender.
    fn invalid(&mut self);
    /// A packet that does not decode.
    fn malformed(&mut self);
}

impl Places for Assembler {
    fn push(&mut self, seq: u64, channel: usize, data: &[u8], out: &mut impl FnMut(Block)) {
        Assembler::push(self, seq, channel, data, out);
    }
    fn push_part(&mut self, seq: u64, offset: usize, total: usize, data: &[u8], out: &mut impl FnMut(Block)) {
        Assembler::push_part(self, seq, 0, offset, total, data, out);
    }
    fn invalid(&mut self) {
        Assembler::invalid(self);
    }
    fn malformed(&mut self) {
        Assembler::malformed(self);
    }
}

/// A group member hands its completed blocks out through the group, not
/// through `out`; a group is never made for a format of parts (the sink
/// refuses it), so a part here is malformed.
impl Places for Member {
    fn push(&mut self, seq: u64, channel: usize, data: &[u8], _: &mut impl FnMut(Block)) {
        Member::push(self, seq, channel, data);
    }
    fn push_part(&mut self, _: u64, _: usize, _: usize, _: &[u8], _: &mut impl FnMut(Block)) {
        Member::malformed(self);
    }
    fn invalid(&mut self) {
        Member::invalid(self);
    }
    fn malformed(&mut self) {
        Member::malformed(self);
    }
}

/// Decodes one payload of `format` and places it: the receive thread's
/// whole share of the block sink's work, pure (no I/O).
pub(super) fn place(
    format: &StreamFormat,
    unwrap: &mut Unwrap,
    asm: &mut impl Places,
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
            asm.push_part(s, offset, total, data, out);
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
