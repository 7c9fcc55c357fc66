//! The unit of hand-off between sources and sinks: a [`Batch`] of
//! [`Packet`]s that borrow the source's receive buffer (no copy). The batch
//! lives until the sink returns; then the source reuses the buffer (or, for
//! a kernel ring, hands the block back to the kernel).

use std::net::SocketAddr;

use crate::loan::{Lender, LoanDesk};

/// The packet is a UDP datagram (its `data` is the UDP payload).
pub const FLAG_UDP: u8 = 1;
/// The packet is one datagram of a GRO super-packet a raw backend saw whole:
/// its `frame` is the super-packet's headers only, whose lengths (and
/// checksums) are the whole super-packet's; a sink that writes frames
/// rebuilds them for this datagram ([`crate::sink::pcap::encode_segment_record`]).
pub const FLAG_SEGMENT: u8 = 2;

/// The bytes before the UDP payload in a frame of the fixed layout:
/// Ethernet II, IPv4 without options, UDP, nothing after the datagram
/// (what the xdp backend's program vouches for, see
/// [`crate::bpf::xdp::ParsedLane`]).
pub const FIXED_HEADER_LEN: usize = 14 + 20 + 8;

/// Where one packet sits in the source's buffer, and what the kernel said.
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketMeta {
    /// Offset of the UDP payload in the slab.
    pub offset: u32,
    /// Payload length.
    pub len: u32,
    /// Kernel receive timestamp, ns since the epoch.
    pub ts_ns: u64,
    /// Index into the batch's sender addresses.
    pub msg: u32,
    /// Offset of the link-layer frame in the slab (raw backends).
    pub frame_offset: u32,
    /// Captured frame length (0: no frame, a socket backend).
    pub frame_len: u32,
    /// Frame length on the wire (may exceed `frame_len` when cut by a snap length).
    pub wire_len: u32,
    /// `FLAG_*` bits.
    pub flags: u8,
}

/// One received packet, borrowed from the source.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// UDP payload (empty when the packet is not a UDP datagram).
    pub data: &'a [u8],
    /// Kernel receive timestamp, ns since the epoch.
    pub ts_ns: u64,
    /// Sender address, when known.
    pub src: Option<SocketAddr>,
    /// The link-layer frame, for raw backends (AF_PACKET).
    pub frame: Option<&'a [u8]>,
    /// Frame length on the wire.
    pub wire_len: u32,
    /// Whether this is a UDP datagram.
    pub is_udp: bool,
    /// Whether `frame` holds only the headers of a GRO super-packet this
    /// datagram was one segment of (see [`FLAG_SEGMENT`]).
    pub is_segment: bool,
}

/// A batch of packets from one receive call (or one ring block).
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    slab: &'a [u8],
    packets: Described<'a>,
    /// The address the packets were sent to (socket backends; unspecified for raw ones).
    pub dst: SocketAddr,
    /// Where a sink may keep frames past the batch (see [`crate::loan`]).
    loans: Option<&'a LoanDesk>,
}

/// The frames a sink may keep past their batch now: the batch's first
/// ones, as many as the source has spares for. Described without reading
/// a frame.
#[derive(Clone, Copy)]
pub struct LoanRun<'a> {
    /// Through whom the frames are read later and given back.
    pub lender: &'a Lender,
    frames: &'a [(u64, u32)],
    slab_len: usize,
    /// When the frames were received.
    pub ts_ns: u64,
}

impl LoanRun<'_> {
    /// Each frame's place in the lender's memory and its length (clipped
    /// to the memory), in order; a frame past 4 GiB ends the run (a
    /// hand-off keeps 32 bits of its place).
    pub fn frames(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.frames.iter().map_while(|&(at, len)| {
            let start = u32::try_from(at).ok()?;
            let end = (at.saturating_add(u64::from(len))).min(self.slab_len as u64);
            Some((start, end.saturating_sub(at) as u32))
        })
    }
}

/// How a batch's packets are described.
#[derive(Clone, Copy)]
enum Described<'a> {
    /// One [`PacketMeta`] each, senders by index.
    Metas { metas: &'a [PacketMeta], sources: &'a [Option<SocketAddr>] },
    /// Frames of the fixed layout named by (offset, length) in the slab,
    /// all received at `ts_ns`: nothing was read from them, so the
    /// receive thread never touched a frame no sink reads.
    FixedFrames { frames: &'a [(u64, u32)], ts_ns: u64 },
}

/// A prefetch of each cache line `data` spans.
fn prefetch_lines(data: &[u8]) {
    for at in line_starts(data) {
        crate::sys::prefetch(&data[at..]);
    }
}

/// One offset into `data` in each 64-byte cache line it spans, in order.
fn line_starts(data: &[u8]) -> impl Iterator<Item = usize> {
    const LINE: usize = 64;
    let first_line_left = LINE - data.as_ptr() as usize % LINE;
    std::iter::once(0).chain((first_line_left..).step_by(LINE)).take_while(move |&at| at < data.len())
}

fn clip(slab: &[u8], offset: u64, len: u32) -> &[u8] {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(slab.len());
    let end = start.saturating_add(len as usize).min(slab.len());
    &slab[start..end]
}

/// The source of an Ethernet II + IPv4 (no options) + UDP frame.
fn ipv4_udp_source(frame: &[u8]) -> Option<SocketAddr> {
    let ip: [u8; 4] = frame.get(26..30)?.try_into().ok()?;
    let port: [u8; 2] = frame.get(34..36)?.try_into().ok()?;
    Some(SocketAddr::from((ip, u16::from_be_bytes(port))))
}

/// The packet view of a fixed-layout frame (one too short to be one is a
/// frame without a datagram).
fn fixed_frame_packet(frame: &[u8], ts_ns: u64, wire_len: u32) -> Packet<'_> {
    let data = frame.get(FIXED_HEADER_LEN..);
    Packet {
        data: data.unwrap_or_default(),
        ts_ns,
        src: data.and_then(|_| ipv4_udp_source(frame)),
        frame: Some(frame),
        wire_len,
        is_udp: data.is_some(),
        is_segment: false,
    }
}

impl<'a> Batch<'a> {
    /// Builds a batch over a slab. Offsets outside the slab are clipped, never trusted.
    pub fn new(
        slab: &'a [u8],
        metas: &'a [PacketMeta],
        sources: &'a [Option<SocketAddr>],
        dst: SocketAddr,
    ) -> Self {
        Self { slab, packets: Described::Metas { metas, sources }, dst, loans: None }
    }

    /// Builds a batch of fixed-layout frames `(offset, length)` in `slab`
    /// (see [`FIXED_HEADER_LEN`]) received at `ts_ns`.
    pub fn fixed_frames(slab: &'a [u8], frames: &'a [(u64, u32)], ts_ns: u64) -> Self {
        let dst = SocketAddr::from(([0, 0, 0, 0], 0));
        Self { slab, packets: Described::FixedFrames { frames, ts_ns }, dst, loans: None }
    }

    /// Lets sinks keep this batch's fixed-layout frames past it, through
    /// `desk` (see [`crate::loan`]).
    pub fn lending(self, desk: &'a LoanDesk) -> Self {
        Self { loans: Some(desk), ..self }
    }

    /// The frames a sink may keep now (see [`LoanRun`]): fixed-layout
    /// frames only, while the source has spare frames; none once a sink
    /// took some.
    pub fn loan_run(&self) -> Option<LoanRun<'a>> {
        let Described::FixedFrames { frames, ts_ns } = self.packets else { return None };
        let desk = self.loans?;
        let n = desk.room().min(frames.len());
        (n > 0 && desk.lent() == 0).then(|| LoanRun {
            lender: desk.lender(),
            frames: &frames[..n],
            slab_len: self.slab.len(),
            ts_ns,
        })
    }

    /// A sink kept the first `n` frames of [`loan_run`](Self::loan_run):
    /// the source leaves them off the fill ring until the lender is given
    /// them back.
    pub fn loans_taken(&self, n: usize) {
        if let Some(desk) = self.loans {
            desk.take(n);
        }
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        match self.packets {
            Described::Metas { metas, .. } => metas.len(),
            Described::FixedFrames { frames, .. } => frames.len(),
        }
    }

    /// True when the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of payload bytes.
    pub fn bytes(&self) -> u64 {
        match self.packets {
            Described::Metas { metas, .. } => metas.iter().map(|m| u64::from(m.len)).sum(),
            // As `get` reads them: the frame's bytes in the slab after the header.
            Described::FixedFrames { frames, .. } => frames
                .iter()
                .map(|&(at, len)| clip(self.slab, at, len).len().saturating_sub(FIXED_HEADER_LEN) as u64)
                .sum(),
        }
    }

    /// Asks the CPU for every cache line of the batch's frames before a
    /// sink reads them all. Frames come from a ring the kernel filled (AF_XDP,
    /// AF_PACKET): under load it wrote them long ago and they are cold, and
    /// the misses then overlap instead of queueing one by one in the sink's
    /// loop. A socket's payloads were copied by the receive call just made
    /// and are left alone. Reads nothing itself.
    pub fn prefetch_frames(&self) {
        match self.packets {
            Described::FixedFrames { frames, .. } => {
                for &(at, len) in frames {
                    prefetch_lines(clip(self.slab, at, len));
                }
            }
            Described::Metas { metas, .. } => {
                for m in metas.iter().filter(|m| m.frame_len > 0) {
                    prefetch_lines(clip(self.slab, u64::from(m.frame_offset), m.frame_len));
                }
            }
        }
    }

    /// Packet `i`.
    pub fn get(&self, i: usize) -> Packet<'a> {
        let (metas, sources) = match self.packets {
            Described::Metas { metas, sources } => (metas, sources),
            Described::FixedFrames { frames, ts_ns } => {
                let (at, len) = frames[i];
                return fixed_frame_packet(clip(self.slab, at, len), ts_ns, len);
            }
        };
        let m = &metas[i];
        Packet {
            data: clip(self.slab, u64::from(m.offset), m.len),
            ts_ns: m.ts_ns,
            src: sources.get(m.msg as usize).copied().flatten(),
            frame: (m.frame_len > 0).then(|| clip(self.slab, u64::from(m.frame_offset), m.frame_len)),
            wire_len: m.wire_len,
            is_udp: m.flags & FLAG_UDP != 0,
            is_segment: m.flags & FLAG_SEGMENT != 0,
        }
    }

    /// The packets in order.
    pub fn iter(&self) -> impl Iterator<Item = Packet<'a>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::l2l4::{self, Decoded};
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    fn fixed_layout(src: [u8; 4], sport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src, [198, 18, 0, 2], 64)
            .udp(sport, 9000)
            .write(&mut f, payload)
            .unwrap();
        f
    }

    /// A fixed-layout frame described from its length alone (as the xdp
    /// source does) reads back as the parser reads it: the same payload
    /// and, from the frame, the same sender.
    fn described_from_length(frame: &[u8]) -> (Vec<u8>, Option<SocketAddr>, u64) {
        let frames = [(0, frame.len() as u32)];
        let b = Batch::fixed_frames(frame, &frames, 7);
        let p = b.get(0);
        assert!(p.is_udp);
        assert_eq!((p.frame, p.ts_ns, b.len()), (Some(frame), 7, 1));
        (p.data.to_vec(), p.src, b.bytes())
    }

    proptest! {
        #[test]
        fn a_fixed_layout_frame_needs_no_parsing(
            src in any::<[u8; 4]>(),
            sport in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
        ) {
            let frame = fixed_layout(src, sport, &payload);
            let Decoded::Udp(u) = l2l4::decode(&frame, None) else { panic!("a UDP frame") };
            let (data, from, bytes) = described_from_length(&frame);
            prop_assert_eq!(&data[..], &frame[u.payload_offset..u.payload_offset + u.payload_len]);
            prop_assert_eq!(&data[..], &payload[..]);
            prop_assert_eq!(from, Some(u.src));
            prop_assert_eq!(bytes, payload.len() as u64);
        }
    }

    #[test]
    fn a_fixed_frame_too_short_or_past_the_slab_is_clipped_not_trusted() {
        let frame = fixed_layout([198, 18, 0, 1], 4000, &[1, 2, 3]);
        let frames = [(0, 30), (0, 1000), (u64::MAX, 64)];
        let b = Batch::fixed_frames(&frame, &frames, 0);
        let short = b.get(0);
        assert_eq!((short.is_udp, short.src, short.data.len()), (false, None, 0));
        let past = b.get(1);
        assert_eq!((past.data, past.frame.map(<[u8]>::len)), (&[1u8, 2, 3][..], Some(frame.len())));
        let outside = b.get(2);
        assert_eq!((outside.frame.map(<[u8]>::len), outside.is_udp), (Some(0), false));
        assert_eq!(b.bytes(), 3);
        b.prefetch_frames();
    }

    #[test]
    fn a_loan_run_never_trusts_a_descriptor() {
        use crate::loan::FramePool;
        let mem = std::sync::Arc::new(crate::sys::shm::PageBuf::new(4096).unwrap());
        let pool = FramePool::new(std::sync::Arc::clone(&mem), vec![2048; 8]);
        // A frame past the slab's end is clipped; one past 4 GiB ends the run.
        let descs = [(0, 100), (4000, 200), (1 << 32, 60), (0, 60)];
        let b = Batch::fixed_frames(&mem, &descs, 5).lending(pool.desk());
        let run = b.loan_run().unwrap();
        assert_eq!(run.frames().collect::<Vec<_>>(), [(0, 100), (4000, 96)]);
        assert_eq!(run.ts_ns, 5);
        b.loans_taken(2);
        assert!(b.loan_run().is_none(), "a second sink is offered nothing");
        assert_eq!(pool.desk().room(), 6);
        // Fewer spares than frames: the run is as long as the spares.
        let few = FramePool::new(std::sync::Arc::clone(&mem), vec![2048]);
        let b = Batch::fixed_frames(&mem, &descs, 0).lending(few.desk());
        assert_eq!(b.loan_run().unwrap().frames().count(), 1);
        // Socket batches and batches without a desk lend nothing.
        assert!(Batch::fixed_frames(&mem, &descs, 0).loan_run().is_none());
        let dst = SocketAddr::from(([0, 0, 0, 0], 0));
        assert!(Batch::new(&mem, &[], &[], dst).lending(pool.desk()).loan_run().is_none());
    }

    #[test]
    fn every_cache_line_of_a_frame_is_prefetched_once() {
        let buf = vec![0u8; 1024];
        for start in 0..130 {
            for len in [0, 1, 63, 64, 65, 314, 700] {
                let data = &buf[start..start + len];
                let lines: Vec<usize> =
                    line_starts(data).map(|at| (data.as_ptr() as usize + at) / 64).collect();
                let first = data.as_ptr() as usize / 64;
                let want: Vec<usize> = if len == 0 {
                    vec![]
                } else {
                    (first..=(data.as_ptr() as usize + len - 1) / 64).collect()
                };
                assert_eq!(lines, want, "start {start}, len {len}");
            }
        }
    }
}
