//! Reading capture files: classic pcap (µs or ns timestamps, either byte
//! order) and pcapng (sections of either byte order, several interfaces
//! with their own link types and timestamp resolutions; enhanced, simple
//! and obsolete packet blocks). A parser over a byte buffer that holds the
//! file from some record boundary on: it says where the next packet's
//! bytes are, that it needs more bytes, or what is wrong. It never copies
//! a packet and never panics, whatever the bytes (`fuzz/`).

use std::ops::Range;

/// The largest record or block accepted: a length field beyond it is a
/// corrupt file, not a reason to allocate (pcap's own limit is 256 KiB;
/// pcapng blocks carry options too).
pub const MAX_RECORD: usize = 16 << 20;

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER: u32 = 0x1a2b_3c4d;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_OBSOLETE_PB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// What the records of an interface hold, by their LINKTYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// An IPv4 or IPv6 packet, version from its first nibble: LINKTYPE_RAW
    /// (101, and the 12 and 14 of some systems' headers).
    RawIp,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// Linux cooked capture v1, LINKTYPE_LINUX_SLL (113): a 16-byte header.
    Sll,
    /// Linux cooked capture v2, LINKTYPE_LINUX_SLL2 (276): a 20-byte header.
    Sll2,
    /// Anything else: its records are counted and skipped.
    Unsupported(u32),
}

impl LinkType {
    /// The link type a file's LINKTYPE value stands for. pcap keeps FCS
    /// flags in the top bits of the field: only the low 16 bits name it.
    pub fn from_linktype(v: u32) -> Self {
        match v & 0xffff {
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::Sll,
            276 => LinkType::Sll2,
            other => LinkType::Unsupported(other),
        }
    }
}

/// What is wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapfileError {
    /// The first bytes are no pcap or pcapng magic.
    #[error("not a pcap or pcapng file (magic {0:#010x})")]
    NotACapture(u32),
    /// Shorter than a file header.
    #[error("empty or shorter than a capture file header")]
    Empty,
    /// A length field that cannot be (beyond [`MAX_RECORD`], not a multiple
    /// of 4 in pcapng, shorter than its own header, or a trailer that
    /// disagrees): the rest of the file cannot be framed.
    #[error("corrupt {what} length {len} at byte {at}")]
    CorruptLength {
        /// A record or a block.
        what: &'static str,
        /// The length read.
        len: u64,
        /// Where in the file.
        at: u64,
    },
    /// A packet block names an interface no block described.
    #[error("packet block for interface {0}, which the file never described")]
    UnknownInterface(u32),
    /// The pcap header's version is not 2.x.
    #[error("pcap version {0}.{1} (only 2.x exists)")]
    Version(u16, u16),
}

/// One packet's place in the buffer and what the file says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The captured bytes, within the buffer given to [`Reader::next`].
    pub data: Range<usize>,
    /// Bytes before `data` that belong to the record's framing (a header
    /// already read): a reader may overwrite them (at least 12).
    pub headroom: usize,
    /// Timestamp, ns since the epoch.
    pub ts_ns: u64,
    /// Length on the wire (at least the captured length).
    pub wire_len: u32,
    /// The interface's link type.
    pub link: LinkType,
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A packet; the record ends `consumed` bytes into the buffer.
    Packet(Record, usize),
    /// A block that holds no packet (interface, statistics, names, a new
    /// section): `consumed` bytes read.
    Skip(usize),
    /// The buffer ends inside a record: give more bytes (or, at the end of
    /// the file, the record is truncated).
    NeedMore,
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second is 10^exp (`pow2` false) or 2^exp.
    exp: u8,
    pow2: bool,
    offset_s: i64,
}

impl Interface {
    fn ts_ns(&self, units: u64) -> u64 {
        let ns = if self.pow2 {
            let exp = u32::from(self.exp.min(63));
            ((u128::from(units) * 1_000_000_000) >> exp) as u64
        } else if self.exp <= 9 {
            units.saturating_mul(10u64.pow(9 - u32::from(self.exp)))
        } else {
            units / 10u64.saturating_pow(u32::from(self.exp) - 9)
        };
        ns.saturating_add_signed(self.offset_s.saturating_mul(1_000_000_000))
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Pcap { swapped: bool, nanos: bool, link: LinkType },
    Pcapng { swapped: bool, interfaces: Vec<Interface> },
}

/// A capture file's framing, read record by record.
#[derive(Debug, Clone)]
pub struct Reader {
    kind: Kind,
    /// File offset of the buffer's first byte (for messages).
    at: u64,
}

fn u16_at(b: &[u8], at: usize, swapped: bool) -> Option<u16> {
    let v = u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?);
    Some(if swapped { v.swap_bytes() } else { v })
}

fn u32_at(b: &[u8], at: usize, swapped: bool) -> Option<u32> {
    let v = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?);
    Some(if swapped { v.swap_bytes() } else { v })
}

impl Reader {
    /// Reads the file header from the start of `buf`: the reader and the
    /// bytes it took, `Ok(None)` when `buf` is too short to tell.
    pub fn start(buf: &[u8]) -> Result<Option<(Reader, usize)>, CapfileError> {
        let Some(magic) = u32_at(buf, 0, false) else { return Ok(None) };
        match magic {
            PCAPNG_SHB => {
                let r = Reader { kind: Kind::Pcapng { swapped: false, interfaces: Vec::new() }, at: 0 };
                Ok(Some((r, 0)))
            }
            m if [PCAP_MAGIC_US, PCAP_MAGIC_NS].contains(&m.swap_bytes())
                || [PCAP_MAGIC_US, PCAP_MAGIC_NS].contains(&m) =>
            {
                if buf.len() < 24 {
                    return Ok(None);
                }
                let swapped = m != PCAP_MAGIC_US && m != PCAP_MAGIC_NS;
                let nanos = m == PCAP_MAGIC_NS || m.swap_bytes() == PCAP_MAGIC_NS;
                let (major, minor) =
                    (u16_at(buf, 4, swapped).unwrap_or(0), u16_at(buf, 6, swapped).unwrap_or(0));
                if major != 2 {
                    return Err(CapfileError::Version(major, minor));
                }
                let link = LinkType::from_linktype(u32_at(buf, 20, swapped).unwrap_or(0));
                Ok(Some((Reader { kind: Kind::Pcap { swapped, nanos, link }, at: 24 }, 24)))
            }
            m => Err(CapfileError::NotACapture(m)),
        }
    }

    /// Notes that the caller dropped `n` bytes of the file from its buffer
    /// (so messages name file offsets).
    pub fn advance(&mut self, n: usize) {
        self.at += n as u64;
    }

    /// The next record of `buf`, which starts at a record boundary.
    pub fn next(&mut self, buf: &[u8]) -> Result<Step, CapfileError> {
        match &mut self.kind {
            Kind::Pcap { swapped, nanos, link } => pcap_record(buf, *swapped, *nanos, *link, self.at),
            Kind::Pcapng { swapped, interfaces } => pcapng_block(buf, swapped, interfaces, self.at),
        }
    }
}

fn pcap_record(
    buf: &[u8],
    swapped: bool,
    nanos: bool,
    link: LinkType,
    at: u64,
) -> Result<Step, CapfileError> {
    let (Some(sec), Some(frac), Some(caplen), Some(wire)) =
        (u32_at(buf, 0, swapped), u32_at(buf, 4, swapped), u32_at(buf, 8, swapped), u32_at(buf, 12, swapped))
    else {
        return Ok(Step::NeedMore);
    };
    let caplen = caplen as usize;
    if caplen > MAX_RECORD {
        return Err(CapfileError::CorruptLength { what: "pcap record", len: caplen as u64, at });
    }
    let end = 16 + caplen;
    if buf.len() < end {
        return Ok(Step::NeedMore);
    }
    let frac_ns = if nanos { u64::from(frac) } else { u64::from(frac) * 1000 };
    let record = Record {
        data: 16..end,
        headroom: 16,
        ts_ns: u64::from(sec) * 1_000_000_000 + frac_ns,
        wire_len: wire.max(caplen as u32),
        link,
    };
    Ok(Step::Packet(record, end))
}

fn pcapng_block(
    buf: &[u8],
    swapped: &mut bool,
    interfaces: &mut Vec<Interface>,
    at: u64,
) -> Result<Step, CapfileError> {
    let Some(kind) = u32_at(buf, 0, *swapped) else { return Ok(Step::NeedMore) };
    if kind == PCAPNG_SHB || kind.swap_bytes() == PCAPNG_SHB {
        // A section header sets the byte order of everything up to the next one.
        let Some(bom) = u32_at(buf, 8, false) else { return Ok(Step::NeedMore) };
        *swapped = match bom {
            PCAPNG_BYTE_ORDER => false,
            b if b.swap_bytes() == PCAPNG_BYTE_ORDER => true,
            b => return Err(CapfileError::NotACapture(b)),
        };
        interfaces.clear();
    }
    let Some(len) = u32_at(buf, 4, *swapped) else { return Ok(Step::NeedMore) };
    let len = len as usize;
    if !(12..=MAX_RECORD).contains(&len) || !len.is_multiple_of(4) {
        return Err(CapfileError::CorruptLength { what: "pcapng block", len: len as u64, at });
    }
    if buf.len() < len {
        return Ok(Step::NeedMore);
    }
    if u32_at(buf, len - 4, *swapped) != Some(len as u32) {
        return Err(CapfileError::CorruptLength { what: "pcapng block trailer of", len: len as u64, at });
    }
    let block = &buf[..len - 4];
    let sw = *swapped;
    let iface =
        |id: u32, ifs: &[Interface]| ifs.get(id as usize).copied().ok_or(CapfileError::UnknownInterface(id));
    let packet = |body: usize, caplen: u32, wire: u32, ts: u64, i: Interface| {
        let end = (body + caplen as usize).min(block.len());
        let record = Record {
            data: body.min(end)..end,
            headroom: body,
            ts_ns: i.ts_ns(ts),
            wire_len: wire.max((end - body.min(end)) as u32),
            link: i.link,
        };
        Step::Packet(record, len)
    };
    let ts_of = |hi: usize| {
        let (h, l) = (u32_at(block, hi, sw).unwrap_or(0), u32_at(block, hi + 4, sw).unwrap_or(0));
        u64::from(h) << 32 | u64::from(l)
    };
    Ok(match kind {
        PCAPNG_IDB => {
            interfaces.push(describe_interface(block, sw));
            Step::Skip(len)
        }
        PCAPNG_EPB if block.len() >= 28 => {
            let i = iface(u32_at(block, 8, sw).unwrap_or(0), interfaces)?;
            let caplen = u32_at(block, 20, sw).unwrap_or(0);
            packet(28, caplen, u32_at(block, 24, sw).unwrap_or(0), ts_of(12), i)
        }
        PCAPNG_OBSOLETE_PB if block.len() >= 28 => {
            let i = iface(u32::from(u16_at(block, 8, sw).unwrap_or(0)), interfaces)?;
            let caplen = u32_at(block, 20, sw).unwrap_or(0);
            packet(28, caplen, u32_at(block, 24, sw).unwrap_or(0), ts_of(12), i)
        }
        PCAPNG_SPB if block.len() >= 12 => {
            let i = iface(0, interfaces)?;
            let wire = u32_at(block, 8, sw).unwrap_or(0);
            // No timestamp: the packet carries 0.
            packet(12, wire, wire, 0, Interface { offset_s: 0, ..i })
        }
        _ => Step::Skip(len),
    })
}

/// An interface description block's link type and timestamp options.
fn describe_interface(block: &[u8], sw: bool) -> Interface {
    let link = LinkType::from_linktype(u32::from(u16_at(block, 8, sw).unwrap_or(0)));
    let mut i = Interface { link, exp: 6, pow2: false, offset_s: 0 };
    let mut at = 16;
    while let (Some(code), Some(olen)) = (u16_at(block, at, sw), u16_at(block, at + 2, sw)) {
        let olen = usize::from(olen);
        let Some(value) = block.get(at + 4..at + 4 + olen) else { break };
        match (code, value) {
            (0, _) => break,
            (OPT_IF_TSRESOL, [r]) => (i.exp, i.pow2) = (r & 0x7f, r & 0x80 != 0),
            (OPT_IF_TSOFFSET, v) if v.len() == 8 => {
                let raw = u64::from_le_bytes(v.try_into().expect("8 bytes"));
                i.offset_s = (if sw { raw.swap_bytes() } else { raw }) as i64;
            }
            _ => {}
        }
        at += 4 + olen.next_multiple_of(4);
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_file(magic: u32, big_endian: bool, link: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let w32 = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        let w16 = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut f = Vec::new();
        f.extend(w32(magic));
        f.extend(w16(2));
        f.extend(w16(4));
        f.extend([0; 8]);
        f.extend(w32(65535));
        f.extend(w32(link));
        for (sec, frac, data) in records {
            f.extend(w32(*sec));
            f.extend(w32(*frac));
            f.extend(w32(data.len() as u32));
            f.extend(w32(data.len() as u32 + 4));
            f.extend_from_slice(data);
        }
        f
    }

    /// A packet as read: (data, ts, wire, link).
    type Read = (Vec<u8>, u64, u32, LinkType);

    /// Every packet of a whole buffer.
    fn read_all(buf: &[u8]) -> Result<Vec<Read>, CapfileError> {
        let (mut r, mut at) = Reader::start(buf)?.expect("header present");
        let mut out = Vec::new();
        while at < buf.len() {
            match r.next(&buf[at..])? {
                Step::Packet(rec, n) => {
                    out.push((buf[at..][rec.data.clone()].to_vec(), rec.ts_ns, rec.wire_len, rec.link));
                    assert!(rec.headroom >= 12 && rec.data.start >= rec.headroom);
                    at += n;
                }
                Step::Skip(n) => at += n,
                Step::NeedMore => break,
            }
        }
        Ok(out)
    }

    #[test]
    fn pcap_in_either_byte_order_and_resolution() {
        for big in [false, true] {
            let us = pcap_file(PCAP_MAGIC_US, big, 1, &[(7, 5, b"abc"), (8, 0, b"")]);
            let got = read_all(&us).unwrap();
            assert_eq!(got[0], (b"abc".to_vec(), 7_000_005_000, 7, LinkType::Ethernet));
            assert_eq!(got[1].1, 8_000_000_000);
            let ns = pcap_file(PCAP_MAGIC_NS, big, 101, &[(7, 5, b"abc")]);
            assert_eq!(read_all(&ns).unwrap()[0].1, 7_000_000_005);
            assert_eq!(read_all(&ns).unwrap()[0].3, LinkType::RawIp);
        }
    }

    #[test]
    fn a_truncated_record_needs_more() {
        let f = pcap_file(PCAP_MAGIC_US, false, 1, &[(1, 0, b"hello")]);
        let (mut r, at) = Reader::start(&f).unwrap().unwrap();
        assert_eq!(r.next(&f[at..f.len() - 1]).unwrap(), Step::NeedMore);
        assert_eq!(r.next(&f[at..at + 10]).unwrap(), Step::NeedMore);
    }

    #[test]
    fn bad_headers_and_lengths_are_errors() {
        assert_eq!(
            Reader::start(b"GIF89a.........................").unwrap_err(),
            CapfileError::NotACapture(0x3846_4947)
        );
        assert!(Reader::start(b"").unwrap().is_none());
        let mut f = pcap_file(PCAP_MAGIC_US, false, 1, &[(1, 0, b"x")]);
        f[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read_all(&f), Err(CapfileError::CorruptLength { .. })));
        let mut v = pcap_file(PCAP_MAGIC_US, false, 1, &[]);
        v[4] = 3;
        assert_eq!(Reader::start(&v).unwrap_err(), CapfileError::Version(3, 4));
    }

    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let len = 12 + body.len().next_multiple_of(4);
        let mut b = Vec::new();
        b.extend(kind.to_le_bytes());
        b.extend((len as u32).to_le_bytes());
        b.extend_from_slice(body);
        b.resize(len - 4, 0);
        b.extend((len as u32).to_le_bytes());
        b
    }

    fn shb() -> Vec<u8> {
        let mut body = PCAPNG_BYTE_ORDER.to_le_bytes().to_vec();
        body.extend([1, 0, 0, 0]);
        body.extend(u64::MAX.to_le_bytes());
        block(PCAPNG_SHB, &body)
    }

    fn idb(link: u16, tsresol: Option<u8>) -> Vec<u8> {
        let mut body = link.to_le_bytes().to_vec();
        body.extend([0, 0]);
        body.extend(0u32.to_le_bytes());
        if let Some(r) = tsresol {
            body.extend(OPT_IF_TSRESOL.to_le_bytes());
            body.extend(1u16.to_le_bytes());
            body.extend([r, 0, 0, 0]);
            body.extend([0; 4]);
        }
        block(PCAPNG_IDB, &body)
    }

    fn epb(iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let mut body = iface.to_le_bytes().to_vec();
        body.extend(((ts >> 32) as u32).to_le_bytes());
        body.extend((ts as u32).to_le_bytes());
        body.extend((data.len() as u32).to_le_bytes());
        body.extend((data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        block(PCAPNG_EPB, &body)
    }

    #[test]
    fn pcapng_interfaces_with_their_own_link_and_resolution() {
        let f = [
            shb(),
            idb(1, None),
            idb(113, Some(9)),
            idb(1, Some(0x80 | 10)),
            epb(0, 1_500_000, b"us"),
            epb(1, 42, b"ns"),
            epb(2, 2048, b"p2"),
            block(5, b"stats"),
        ]
        .concat();
        let got = read_all(&f).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[0].0.as_slice(), got[0].1, got[0].3),
            (&b"us"[..], 1_500_000_000, LinkType::Ethernet)
        );
        assert_eq!((got[1].1, got[1].3), (42, LinkType::Sll));
        assert_eq!(got[2].1, 2_000_000_000, "2^-10 s units");
    }

    #[test]
    fn pcapng_big_endian_section_and_unknown_interface() {
        let mut be = shb();
        be[8..12].copy_from_slice(&PCAPNG_BYTE_ORDER.to_be_bytes());
        let n = be.len();
        be[4..8].copy_from_slice(&(n as u32).to_be_bytes());
        be[n - 4..].copy_from_slice(&(n as u32).to_be_bytes());
        let (mut r, _) = Reader::start(&be).unwrap().unwrap();
        assert_eq!(r.next(&be).unwrap(), Step::Skip(be.len()));
        let f = [shb(), epb(3, 0, b"x")].concat();
        assert_eq!(read_all(&f).unwrap_err(), CapfileError::UnknownInterface(3));
    }

    #[test]
    fn pcapng_bad_trailer_is_corrupt() {
        let mut f = [shb(), idb(1, None), epb(0, 0, b"abcd")].concat();
        let n = f.len();
        f[n - 1] ^= 1;
        assert!(matches!(read_all(&f), Err(CapfileError::CorruptLength { .. })));
    }

    #[test]
    fn caplen_beyond_the_block_is_clipped() {
        let mut e = epb(0, 0, b"abcd");
        e[20..24].copy_from_slice(&1000u32.to_le_bytes());
        let f = [shb(), idb(1, None), e].concat();
        assert_eq!(read_all(&f).unwrap()[0].0, b"abcd");
    }
}
