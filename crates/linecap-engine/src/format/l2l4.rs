//! Decoding of link-layer frames down to the UDP payload: Ethernet, up to
//! two VLAN tags (802.1Q / 802.1ad), IPv4 (options, no fragments) and IPv6
//! (UDP as the first next header), UDP. Decoded once per packet by the raw
//! backends; a view over the buffer with fixed offsets, never a copy.
//!
//! Contract: [`decode`] never panics, whatever the bytes; what it cannot
//! decode is reported, not guessed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

mod field {
    use std::ops::Range;
    pub const ETH_TYPE: Range<usize> = 12..14;
    pub const ETH_LEN: usize = 14;
    pub const VLAN_LEN: usize = 4;
    pub const IPV4_MIN: usize = 20;
    pub const IPV6_LEN: usize = 40;
    pub const UDP_LEN: usize = 8;
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const PROTO_UDP: u8 = 17;

/// What a frame turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A UDP datagram.
    Udp(UdpInfo),
    /// Something else (ARP, TCP, ICMP, a fragment...): kept, not decoded further.
    Other,
    /// Too short or inconsistent to be what its headers claim.
    Malformed,
}

/// Where a UDP datagram's parts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpInfo {
    /// Sender.
    pub src: SocketAddr,
    /// Destination.
    pub dst: SocketAddr,
    /// Offset of the UDP payload in the frame.
    pub payload_offset: usize,
    /// Payload length (from the UDP header, clipped to what was captured).
    pub payload_len: usize,
    /// Outermost VLAN id, from the frame or from the kernel's stripped tag.
    pub vlan: Option<u16>,
    /// Offset of the IP header in the frame.
    pub l3_offset: usize,
}

/// The IPv4 header checksum of `h` (with its checksum field zeroed, the
/// value to store; over a header with a correct checksum, 0).
pub fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h.chunks_exact(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Decodes an Ethernet frame. `stripped_vlan`: a tag the kernel removed
/// (TPACKET's `tp_vlan_tci`), which counts as the outermost one.
pub fn decode(frame: &[u8], stripped_vlan: Option<u16>) -> Decoded {
    if frame.len() < field::ETH_LEN {
        return Decoded::Malformed;
    }
    let mut vlan = stripped_vlan.map(|tci| tci & 0x0fff);
    let mut ethertype = u16::from_be_bytes([frame[field::ETH_TYPE.start], frame[field::ETH_TYPE.start + 1]]);
    let mut at = field::ETH_LEN;
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        let (Some(tci), Some(inner)) = (be16(frame, at), be16(frame, at + 2)) else {
            return Decoded::Malformed;
        };
        vlan.get_or_insert(tci & 0x0fff);
        ethertype = inner;
        at += field::VLAN_LEN;
    }
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(frame, at, vlan),
        ETHERTYPE_IPV6 => ipv6(frame, at, vlan),
        _ => Decoded::Other,
    }
}

fn ipv4(frame: &[u8], at: usize, vlan: Option<u16>) -> Decoded {
    let Some(ip) = frame.get(at..) else { return Decoded::Malformed };
    if ip.len() < field::IPV4_MIN || ip[0] >> 4 != 4 {
        return Decoded::Malformed;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < field::IPV4_MIN || total < ihl || ip.len() < ihl {
        return Decoded::Malformed;
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    let more_fragments = frag & 0x2000 != 0;
    let offset = frag & 0x1fff;
    if ip[9] != PROTO_UDP || more_fragments || offset != 0 {
        return Decoded::Other;
    }
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    // The IP total length bounds the datagram (Ethernet may pad short frames).
    let end = ip.len().min(total);
    udp(frame, at, at + ihl, at + end, src, dst, vlan)
}

fn ipv6(frame: &[u8], at: usize, vlan: Option<u16>) -> Decoded {
    let Some(ip) = frame.get(at..) else { return Decoded::Malformed };
    if ip.len() < field::IPV6_LEN || ip[0] >> 4 != 6 {
        return Decoded::Malformed;
    }
    if ip[6] != PROTO_UDP {
        return Decoded::Other;
    }
    let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let mut s = [0u8; 16];
    let mut d = [0u8; 16];
    s.copy_from_slice(&ip[8..24]);
    d.copy_from_slice(&ip[24..40]);
    let end = ip.len().min(field::IPV6_LEN + payload);
    udp(
        frame,
        at,
        at + field::IPV6_LEN,
        at + end,
        IpAddr::V6(Ipv6Addr::from(s)),
        IpAddr::V6(Ipv6Addr::from(d)),
        vlan,
    )
}

fn udp(
    frame: &[u8],
    l3: usize,
    at: usize,
    end: usize,
    src: IpAddr,
    dst: IpAddr,
    vlan: Option<u16>,
) -> Decoded {
    let end = end.min(frame.len());
    if at + field::UDP_LEN > end {
        return Decoded::Malformed;
    }
    let h = &frame[at..at + field::UDP_LEN];
    let sport = u16::from_be_bytes([h[0], h[1]]);
    let dport = u16::from_be_bytes([h[2], h[3]]);
    let ulen = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if ulen < field::UDP_LEN {
        return Decoded::Malformed;
    }
    let payload_offset = at + field::UDP_LEN;
    let payload_len = (ulen - field::UDP_LEN).min(end - payload_offset);
    Decoded::Udp(UdpInfo {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        payload_offset,
        payload_len,
        vlan,
        l3_offset: l3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    fn udp4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(4000, 9000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn ipv4_udp() {
        let f = udp4(b"hello");
        let Decoded::Udp(u) = decode(&f, None) else { panic!() };
        assert_eq!(u.src, "198.18.0.1:4000".parse().unwrap());
        assert_eq!(u.dst, "198.18.0.2:9000".parse().unwrap());
        assert_eq!(&f[u.payload_offset..u.payload_offset + u.payload_len], b"hello");
        assert_eq!(u.vlan, None);
        assert_eq!(u.l3_offset, 14);
    }

    #[test]
    fn padded_short_frame_uses_ip_length() {
        let mut f = udp4(b"ab");
        f.resize(60, 0xee); // Ethernet minimum with padding
        let Decoded::Udp(u) = decode(&f, None) else { panic!() };
        assert_eq!(u.payload_len, 2);
    }

    #[test]
    fn vlan_in_frame_and_stripped() {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .single_vlan(0x123.try_into().unwrap())
            .ipv6([1; 16], [2; 16], 64)
            .udp(1, 2);
        let mut f = Vec::new();
        b.write(&mut f, b"xyz").unwrap();
        let Decoded::Udp(u) = decode(&f, None) else { panic!() };
        assert_eq!(u.vlan, Some(0x123));
        assert_eq!(&f[u.payload_offset..][..3], b"xyz");
        let Decoded::Udp(u) = decode(&udp4(b"q"), Some(0x2007)) else { panic!() };
        assert_eq!(u.vlan, Some(7));
    }

    #[test]
    fn fragments_tcp_arp_are_other() {
        let mut f = udp4(b"hello");
        f[14 + 6] = 0x20; // more fragments
        assert_eq!(decode(&f, None), Decoded::Other);
        let mut f = udp4(b"hello");
        f[14 + 9] = 6; // TCP
        assert_eq!(decode(&f, None), Decoded::Other);
        let mut arp = udp4(b"");
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(decode(&arp, None), Decoded::Other);
    }

    #[test]
    fn truncated_is_malformed() {
        let f = udp4(b"hello");
        for cut in [0, 13, 20, 33, 41] {
            assert_eq!(decode(&f[..cut], None), Decoded::Malformed, "cut {cut}");
        }
        // A snap length shorter than the datagram clips the payload.
        let Decoded::Udp(u) = decode(&f[..44], None) else { panic!() };
        assert_eq!(u.payload_len, 2);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), vlan in any::<Option<u16>>()) {
            let _ = decode(&data, vlan);
        }

        /// Differential test against etherparse on frames it builds.
        #[test]
        fn agrees_with_etherparse(payload in proptest::collection::vec(any::<u8>(), 0..300),
                                  sport in any::<u16>(), dport in any::<u16>(), v6 in any::<bool>()) {
            let b = PacketBuilder::ethernet2([1; 6], [2; 6]);
            let mut f = Vec::new();
            if v6 {
                b.ipv6([3; 16], [4; 16], 9).udp(sport, dport).write(&mut f, &payload).unwrap();
            } else {
                b.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 9).udp(sport, dport).write(&mut f, &payload).unwrap();
            }
            let theirs = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            let Decoded::Udp(u) = decode(&f, None) else { panic!("not decoded") };
            let Some(etherparse::TransportSlice::Udp(tu)) = theirs.transport else { panic!() };
            prop_assert_eq!(u.src.port(), tu.source_port());
            prop_assert_eq!(u.dst.port(), tu.destination_port());
            prop_assert_eq!(&f[u.payload_offset..u.payload_offset + u.payload_len], tu.payload());
        }
    }
}
