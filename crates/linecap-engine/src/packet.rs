//! The unit of hand-off between sources and sinks: a [`Batch`] of
//! [`Packet`]s that borrow the source's receive buffer (no copy). The batch
//! lives until the sink returns; then the source reuses the buffer (or, for
//! a kernel ring, hands the block back to the kernel).

use std::net::SocketAddr;

/// The packet is a UDP datagram (its `data` is the UDP payload).
pub const FLAG_UDP: u8 = 1;
/// The packet is one datagram of a GRO super-packet a raw backend saw whole:
/// its `frame` is the super-packet's headers only, whose lengths (and
/// checksums) are the whole super-packet's; a sink that writes frames
/// rebuilds them for this datagram ([`crate::sink::pcap::encode_segment_record`]).
pub const FLAG_SEGMENT: u8 = 2;

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
    metas: &'a [PacketMeta],
    sources: &'a [Option<SocketAddr>],
    /// The address the packets were sent to (socket backends; unspecified for raw ones).
    pub dst: SocketAddr,
}

fn clip(slab: &[u8], offset: u32, len: u32) -> &[u8] {
    let start = (offset as usize).min(slab.len());
    let end = (start + len as usize).min(slab.len());
    &slab[start..end]
}

impl<'a> Batch<'a> {
    /// Builds a batch over a slab. Offsets outside the slab are clipped, never trusted.
    pub fn new(
        slab: &'a [u8],
        metas: &'a [PacketMeta],
        sources: &'a [Option<SocketAddr>],
        dst: SocketAddr,
    ) -> Self {
        Self { slab, metas, sources, dst }
    }

    /// Number of packets.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    /// True when the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Sum of payload bytes.
    pub fn bytes(&self) -> u64 {
        self.metas.iter().map(|m| u64::from(m.len)).sum()
    }

    /// Packet `i`.
    pub fn get(&self, i: usize) -> Packet<'a> {
        let m = &self.metas[i];
        Packet {
            data: clip(self.slab, m.offset, m.len),
            ts_ns: m.ts_ns,
            src: self.sources.get(m.msg as usize).copied().flatten(),
            frame: (m.frame_len > 0).then(|| clip(self.slab, m.frame_offset, m.frame_len)),
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
