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
/// The packet's sender was not read when it was received: its `frame` is
/// Ethernet II + IPv4 without options + UDP, and [`Batch::get`] reads the
/// source address and port from there (only sinks that ask pay for it).
pub const FLAG_SRC_IN_FRAME: u8 = 4;

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

/// The source of an Ethernet II + IPv4 (no options) + UDP frame.
fn ipv4_udp_source(frame: &[u8]) -> Option<SocketAddr> {
    let ip: [u8; 4] = frame.get(26..30)?.try_into().ok()?;
    let port: [u8; 2] = frame.get(34..36)?.try_into().ok()?;
    Some(SocketAddr::from((ip, u16::from_be_bytes(port))))
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
        let frame = (m.frame_len > 0).then(|| clip(self.slab, m.frame_offset, m.frame_len));
        let src = if m.flags & FLAG_SRC_IN_FRAME != 0 {
            frame.and_then(ipv4_udp_source)
        } else {
            self.sources.get(m.msg as usize).copied().flatten()
        };
        Packet {
            data: clip(self.slab, m.offset, m.len),
            ts_ns: m.ts_ns,
            src,
            frame,
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
    fn described_from_length(frame: &[u8]) -> (Vec<u8>, Option<SocketAddr>) {
        let header = crate::bpf::xdp::FIXED_HEADER_LEN as u32;
        let len = frame.len() as u32;
        let m = PacketMeta {
            offset: header,
            len: len - header,
            frame_len: len,
            wire_len: len,
            flags: FLAG_UDP | FLAG_SRC_IN_FRAME,
            ..PacketMeta::default()
        };
        let metas = [m];
        let p = Batch::new(frame, &metas, &[], SocketAddr::from(([0, 0, 0, 0], 0))).get(0);
        assert!(p.is_udp);
        (p.data.to_vec(), p.src)
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
            let (data, from) = described_from_length(&frame);
            prop_assert_eq!(&data[..], &frame[u.payload_offset..u.payload_offset + u.payload_len]);
            prop_assert_eq!(&data[..], &payload[..]);
            prop_assert_eq!(from, Some(u.src));
        }
    }

    #[test]
    fn a_sender_read_from_a_frame_too_short_is_unknown() {
        let frame = fixed_layout([198, 18, 0, 1], 4000, &[]);
        let m = PacketMeta { frame_len: 30, flags: FLAG_UDP | FLAG_SRC_IN_FRAME, ..PacketMeta::default() };
        let metas = [m];
        let p = Batch::new(&frame[..30], &metas, &[], SocketAddr::from(([0, 0, 0, 0], 0))).get(0);
        assert_eq!(p.src, None);
        assert!(p.data.is_empty());
    }
}
