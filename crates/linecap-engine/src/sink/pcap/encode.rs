//! What a pcap or pcapng file holds, byte by byte: headers, records
//! (a synthetic IPv4/IPv6 + UDP header around a socket's payload, or the
//! frame as captured), checksums.

use super::*;

/// Nanosecond-resolution pcap magic.
pub const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_RAW: packets start with an IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u32 = 101;
/// LINKTYPE_ETHERNET: packets are Ethernet frames.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// What the records of a file hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// UDP payloads from a socket, with a synthetic IP/UDP header (LINKTYPE_RAW).
    SyntheticIp,
    /// The frames as captured (AF_PACKET), LINKTYPE_ETHERNET.
    Ethernet,
}

impl Link {
    fn linktype(self) -> u32 {
        match self {
            Link::SyntheticIp => LINKTYPE_RAW,
            Link::Ethernet => LINKTYPE_ETHERNET,
        }
    }
}
/// Snap length written in the header.
pub const SNAPLEN: u32 = 262_144;

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Classic pcap, nanosecond timestamps (magic a1b23c4d).
    Pcap,
    /// pcapng: a section header, one interface (if_tsresol 9: nanoseconds),
    /// an Enhanced Packet Block per packet.
    Pcapng,
}

impl FileFormat {
    /// pcapng for a `.pcapng` path, else pcap.
    pub fn for_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("pcapng") => FileFormat::Pcapng,
            _ => FileFormat::Pcap,
        }
    }

    /// Bytes before a record's data.
    fn head(self) -> usize {
        match self {
            FileFormat::Pcap => 16,
            FileFormat::Pcapng => 28,
        }
    }

    /// Bytes a record of `data` bytes takes in the file.
    pub fn record_len(self, data: usize) -> usize {
        match self {
            FileFormat::Pcap => 16 + data,
            // Block header, data padded to 32 bits, trailing length.
            FileFormat::Pcapng => 28 + data.next_multiple_of(4) + 4,
        }
    }

    /// Writes the framing of a record around data already at
    /// `out[head..head + data]`: its header, padding and trailer.
    fn frame(self, out: &mut [u8], ts_ns: u64, data: usize, wire_len: u32) {
        let (caplen, wire) = (data as u32, wire_len.max(data as u32));
        match self {
            FileFormat::Pcap => {
                out[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
                out[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
                out[8..12].copy_from_slice(&caplen.to_le_bytes());
                out[12..16].copy_from_slice(&wire.to_le_bytes());
            }
            FileFormat::Pcapng => {
                let total = out.len() as u32;
                out[0..4].copy_from_slice(&6u32.to_le_bytes()); // Enhanced Packet Block
                out[4..8].copy_from_slice(&total.to_le_bytes());
                out[8..12].copy_from_slice(&0u32.to_le_bytes()); // interface 0
                out[12..16].copy_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
                out[16..20].copy_from_slice(&(ts_ns as u32).to_le_bytes());
                out[20..24].copy_from_slice(&caplen.to_le_bytes());
                out[24..28].copy_from_slice(&wire.to_le_bytes());
                let end = out.len();
                out[28 + data..end - 4].fill(0);
                out[end - 4..].copy_from_slice(&total.to_le_bytes());
            }
        }
    }

    /// What starts every file.
    pub fn file_header(self, link: Link) -> Vec<u8> {
        match self {
            FileFormat::Pcap => file_header(link).to_vec(),
            FileFormat::Pcapng => {
                let mut h = Vec::with_capacity(60);
                // Section Header Block: byte-order magic, version 1.0, length unknown.
                h.extend_from_slice(&0x0A0D_0D0Au32.to_le_bytes());
                h.extend_from_slice(&28u32.to_le_bytes());
                h.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
                h.extend_from_slice(&1u16.to_le_bytes());
                h.extend_from_slice(&0u16.to_le_bytes());
                h.extend_from_slice(&u64::MAX.to_le_bytes());
                h.extend_from_slice(&28u32.to_le_bytes());
                // Interface Description Block: link type, snap length,
                // if_tsresol = 9 (nanoseconds), end of options.
                h.extend_from_slice(&1u32.to_le_bytes());
                h.extend_from_slice(&32u32.to_le_bytes());
                h.extend_from_slice(&(link.linktype() as u16).to_le_bytes());
                h.extend_from_slice(&0u16.to_le_bytes());
                h.extend_from_slice(&SNAPLEN.to_le_bytes());
                h.extend_from_slice(&9u16.to_le_bytes());
                h.extend_from_slice(&1u16.to_le_bytes());
                h.extend_from_slice(&[9, 0, 0, 0]);
                h.extend_from_slice(&[0, 0, 0, 0]);
                h.extend_from_slice(&32u32.to_le_bytes());
                h
            }
        }
    }
}

/// The 24-byte classic pcap file header.
pub fn file_header(link: Link) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&MAGIC_NS.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&link.linktype().to_le_bytes());
    h
}

pub(super) fn ip_header_len(dst: &SocketAddr) -> usize {
    if dst.is_ipv4() { 20 } else { 40 }
}

/// Bytes one packet takes in the file.
pub fn record_len(p: &Packet<'_>, dst: &SocketAddr, fmt: FileFormat) -> usize {
    fmt.record_len(ip_header_len(dst) + 8 + p.data.len())
}

/// Bytes one captured frame takes in the file.
pub fn frame_record_len(frame: &[u8], fmt: FileFormat) -> usize {
    fmt.record_len(frame.len())
}

/// Encodes a captured frame as it is (Ethernet files).
pub fn encode_frame_record(out: &mut [u8], ts_ns: u64, frame: &[u8], wire_len: u32, fmt: FileFormat) {
    let h = fmt.head();
    out[h..h + frame.len()].copy_from_slice(frame);
    fmt.frame(out, ts_ns, frame.len(), wire_len);
}

/// Bytes one datagram of a GRO super-packet takes in the file.
pub fn segment_record_len(headers: &[u8], payload: &[u8], fmt: FileFormat) -> usize {
    fmt.record_len(headers.len() + payload.len())
}

/// Encodes one datagram of a GRO super-packet that an AF_PACKET capture
/// saw whole: the super-packet's headers (up to the end of its UDP
/// header) rebuilt for this datagram alone, then its payload. Rebuilt: the
/// IPv4 total length and header checksum or the IPv6 payload length, the
/// UDP length and checksum (none for IPv4; computed for IPv6, which must
/// have one). `out` must be exactly [`segment_record_len`] bytes.
pub fn encode_segment_record(out: &mut [u8], ts_ns: u64, headers: &[u8], payload: &[u8], fmt: FileFormat) {
    let h = fmt.head();
    let n = headers.len() + payload.len();
    fmt.frame(out, ts_ns, n, n as u32);
    let rec = &mut out[h..h + n];
    rec[..headers.len()].copy_from_slice(headers);
    rec[headers.len()..].copy_from_slice(payload);
    // The source split only frames it decoded as UDP, so these are.
    let Decoded::Udp(u) = l2l4::decode(headers, None) else { return };
    let (l3, udp_at) = (u.l3_offset, u.payload_offset - 8);
    let udp_len = 8 + payload.len();
    rec[udp_at + 4..udp_at + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    rec[udp_at + 6..udp_at + 8].copy_from_slice(&[0, 0]);
    let ip_len = (udp_at - l3 + udp_len) as u16;
    if rec[l3] >> 4 == 4 {
        let ihl = usize::from(rec[l3] & 0x0f) * 4;
        rec[l3 + 2..l3 + 4].copy_from_slice(&ip_len.to_be_bytes());
        rec[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let c = ipv4_checksum(&rec[l3..l3 + ihl]);
        rec[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    } else {
        rec[l3 + 4..l3 + 6].copy_from_slice(&(ip_len - 40).to_be_bytes());
        let c = udp6_checksum(&rec[l3 + 8..l3 + 24], &rec[l3 + 24..l3 + 40], &rec[udp_at..]);
        rec[udp_at + 6..udp_at + 8].copy_from_slice(&c.to_be_bytes());
    }
}

/// Encodes one record (framing + synthetic IP/UDP + payload) into `out`,
/// which must be exactly [`record_len`] bytes.
pub fn encode_record(out: &mut [u8], p: &Packet<'_>, dst: &SocketAddr, fmt: FileFormat) {
    let iphl = ip_header_len(dst);
    let udp_len = 8 + p.data.len();
    let wire = iphl + udp_len;
    let hdr = fmt.head();
    fmt.frame(out, p.ts_ns, wire, wire as u32);
    let out = &mut out[..hdr + wire];
    let (sport, dport) = (p.src.map_or(0, |s| s.port()), dst.port());
    let ip = &mut out[hdr..hdr + iphl];
    match (dst, p.src) {
        (SocketAddr::V4(d), src) => {
            let s = match src {
                Some(SocketAddr::V4(s)) => s.ip().octets(),
                _ => [0; 4],
            };
            ip.copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            ip[2..4].copy_from_slice(&((wire as u16).to_be_bytes()));
            ip[12..16].copy_from_slice(&s);
            ip[16..20].copy_from_slice(&d.ip().octets());
            let c = ipv4_checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (SocketAddr::V6(d), src) => {
            let s = match src {
                Some(SocketAddr::V6(s)) => s.ip().octets(),
                _ => [0; 16],
            };
            ip.fill(0);
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            ip[6] = 17;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s);
            ip[24..40].copy_from_slice(&d.ip().octets());
        }
    }
    let udp = &mut out[hdr + iphl..hdr + iphl + 8];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    // UDP checksum 0 means "not computed": legal for IPv4, not for IPv6,
    // where the real one is written so tools do not flag the record.
    udp[6..8].copy_from_slice(&[0, 0]);
    out[hdr + iphl + 8..].copy_from_slice(p.data);
    if dst.is_ipv6() {
        let seg = &out[hdr..];
        let c = udp6_checksum(&seg[8..24], &seg[24..40], &seg[40..40 + udp_len]);
        out[hdr + 46..hdr + 48].copy_from_slice(&c.to_be_bytes());
    }
}

/// Ones'-complement sum of 16-bit big-endian words (odd byte padded).
pub(super) fn sum16(data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    let mut sum: u32 = 0;
    for w in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

/// UDP checksum over the IPv6 pseudo-header and the datagram (RFC 8200 §8.1).
pub(super) fn udp6_checksum(src: &[u8], dst: &[u8], datagram: &[u8]) -> u16 {
    let len = datagram.len() as u32;
    let mut sum = sum16(src) + sum16(dst) + (len >> 16) + (len & 0xffff) + 17 + sum16(datagram);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    match !(sum as u16) {
        0 => 0xffff,
        c => c,
    }
}
