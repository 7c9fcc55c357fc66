//! The unit of hand-off between sources and sinks: a [`Batch`] of
//! [`Packet`]s that borrow the source's receive buffer (no copy). The batch
//! lives until the sink returns; then the source reuses the buffer.

use std::net::SocketAddr;

/// Where one packet sits in the source's buffer, and what the kernel said.
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketMeta {
    /// Offset of the payload in the slab.
    pub offset: u32,
    /// Payload length.
    pub len: u32,
    /// Kernel receive timestamp, ns since the epoch.
    pub ts_ns: u64,
    /// Index of the message (datagram or GRO super-packet) it came from,
    /// used to look up the sender.
    pub msg: u32,
}

/// One received packet, borrowed from the source.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// UDP payload.
    pub data: &'a [u8],
    /// Kernel receive timestamp, ns since the epoch.
    pub ts_ns: u64,
    /// Sender address, when known.
    pub src: Option<SocketAddr>,
}

/// A batch of packets from one receive call (or one ring block).
#[derive(Clone, Copy)]
pub struct Batch<'a> {
    slab: &'a [u8],
    metas: &'a [PacketMeta],
    sources: &'a [Option<SocketAddr>],
    /// The address the packets were sent to.
    pub dst: SocketAddr,
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
        let start = (m.offset as usize).min(self.slab.len());
        let end = (start + m.len as usize).min(self.slab.len());
        Packet {
            data: &self.slab[start..end],
            ts_ns: m.ts_ns,
            src: self.sources.get(m.msg as usize).copied().flatten(),
        }
    }

    /// The packets in order.
    pub fn iter(&self) -> impl Iterator<Item = Packet<'a>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}
