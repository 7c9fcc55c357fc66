//! The offline source: packets read back from pcap and pcapng files (or a
//! stream of one on stdin), fed to the same sinks as a live capture.
//!
//! Files are read in large chunks into one buffer and parsed in place
//! ([`crate::format::capfile`]); a batch borrows the buffer as a ring
//! block is borrowed. Every record is made an Ethernet frame, so the sinks
//! and the L2-L4 decoder see one link type: Linux cooked headers (SLL,
//! SLL2) are rewritten in place into an Ethernet header, a raw IP packet
//! gets one written into its record header's bytes, which are read by
//! then. Records of other link types, and a record cut short by the end of
//! a file, are counted (the source's drops) and skipped.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::{RecvStats, Source};
use crate::format::capfile::{self, CapfileError, LinkType, Record, Step};
use crate::format::l2l4::{self, Decoded};
use crate::packet::{Batch, FLAG_UDP, PacketMeta};

/// Bytes read from a file per read: large enough that reading costs
/// little per packet, small enough to stay in the caches' reach.
const READ_BYTES: usize = 256 << 10;

/// Packets per batch.
const BATCH: usize = 512;

const ETH_HEADER: usize = 14;

/// Where packets are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A capture file.
    Path(PathBuf),
    /// Standard input (`-`).
    Stdin,
    /// Bytes already in memory (an embedding program's buffer, a test).
    Memory(std::sync::Arc<[u8]>),
}

impl Input {
    /// `-` is standard input; anything else a path.
    pub fn parse(s: &str) -> Self {
        if s == "-" { Input::Stdin } else { Input::Path(PathBuf::from(s)) }
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        match self {
            Input::Stdin => Ok(Box::new(io::stdin())),
            Input::Memory(bytes) => Ok(Box::new(io::Cursor::new(bytes.clone()))),
            Input::Path(p) => {
                let f = std::fs::File::open(p).map_err(|e| with_name(e, p))?;
                if f.metadata()?.is_dir() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is a folder, not a capture file", p.display()),
                    ));
                }
                Ok(Box::new(f))
            }
        }
    }
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Path(p) => write!(f, "{}", p.display()),
            Input::Stdin => f.write_str("standard input"),
            Input::Memory(b) => write!(f, "{} bytes in memory", b.len()),
        }
    }
}

fn with_name(e: io::Error, p: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot read {}: {e}", p.display()))
}

/// The files of a pattern whose last component holds `*` or `?` (as a
/// quoted glob reaches us), sorted by name: rotated sets
/// (`out-000000.pcap`, `out-000001.pcap`, ...) come in the order they were
/// written. A pattern without wildcards is itself.
pub fn expand(pattern: &str) -> io::Result<Vec<PathBuf>> {
    let path = Path::new(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?']) {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| with_name(e, &dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard_match(name.as_bytes(), n.as_bytes())))
        .map(|e| e.path())
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no file matches {pattern}")));
    }
    Ok(found)
}

/// `*` any run of bytes, `?` one byte, anything else itself.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard_match(&pattern[1..], name) || (!name.is_empty() && wildcard_match(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard_match(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// What to read.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// The files, in the order their packets are delivered.
    pub inputs: Vec<Input>,
    /// Keep only the frames this program accepts (compiled for
    /// [`crate::filter::Target::Link`]); the others are counted as filtered.
    pub filter: Option<crate::filter::Program>,
}

/// Why records were skipped, by cause.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Records of a link type linecap does not decode (or too short for
    /// their link header).
    pub link: u64,
    /// Records cut short by the end of their file.
    pub truncated: u64,
}

/// The file being read.
struct Open {
    input: Input,
    file: Box<dyn Read + Send>,
    reader: capfile::Reader,
}

/// Reads capture files one after the other.
pub struct FileSource {
    pending: VecDeque<Input>,
    open: Option<Open>,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    metas: Vec<PacketMeta>,
    sources: Vec<Option<SocketAddr>>,
    skipped: Skipped,
    filter: Option<crate::filter::Program>,
    filtered: u64,
    last: RecvStats,
    files: u64,
    done: bool,
    /// A file turned out corrupt after the packets before the damage were
    /// parsed: they are delivered first, then this ends the capture.
    failed: Option<io::Error>,
}

impl FileSource {
    /// Opens the first input and reads its header, so a missing file, an
    /// empty one or one that is no capture fails now, with its name.
    pub fn open(opts: FileOptions) -> io::Result<Self> {
        let FileOptions { inputs, filter } = opts;
        if inputs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file to read"));
        }
        let mut s = FileSource {
            pending: inputs.into(),
            open: None,
            buf: vec![0; READ_BYTES],
            start: 0,
            end: 0,
            metas: Vec::with_capacity(BATCH),
            sources: Vec::with_capacity(BATCH),
            skipped: Skipped::default(),
            filter,
            filtered: 0,
            last: RecvStats::default(),
            files: 0,
            done: false,
            failed: None,
        };
        s.next_file()?;
        Ok(s)
    }

    /// Records skipped so far, by cause.
    pub fn skipped(&self) -> Skipped {
        self.skipped
    }

    /// Files opened so far.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// Opens the next input and reads its header; `done` when none is left.
    fn next_file(&mut self) -> io::Result<()> {
        self.open = None;
        self.start = 0;
        self.end = 0;
        let Some(input) = self.pending.pop_front() else {
            self.done = true;
            return Ok(());
        };
        let mut file = input.open()?;
        let bad = |e: CapfileError| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", input));
        let (reader, header) = loop {
            if let Some(r) = capfile::Reader::start(&self.buf[..self.end]).map_err(bad)? {
                break r;
            }
            if self.fill(&mut *file)? == 0 {
                return Err(bad(CapfileError::Empty));
            }
        };
        self.start = header;
        self.files += 1;
        self.open = Some(Open { input, file, reader });
        Ok(())
    }

    /// Reads more bytes after `end`: how many (0 at the end of the file).
    fn fill(&mut self, file: &mut dyn Read) -> io::Result<usize> {
        loop {
            match file.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves the unread bytes to the front of the buffer (growing it when
    /// one record is larger than the buffer) and reads more. `false` at
    /// the end of the file.
    fn refill(&mut self) -> io::Result<bool> {
        let Some(mut open) = self.open.take() else { return Ok(false) };
        open.reader.advance(self.start);
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            // capfile bounds a record, so this stops at MAX_RECORD.
            self.buf.resize((self.buf.len() * 2).min(capfile::MAX_RECORD + READ_BYTES), 0);
        }
        let n = self
            .fill(&mut *open.file)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", open.input)))?;
        self.open = Some(open);
        Ok(n > 0)
    }

    /// Parses up to a batch of records from the buffer.
    fn parse(&mut self) -> io::Result<()> {
        self.metas.clear();
        self.sources.clear();
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        while self.metas.len() < BATCH {
            let step = match open.reader.next(&self.buf[self.start..self.end]) {
                Ok(step) => step,
                Err(e) => {
                    let e = io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", open.input));
                    self.failed = Some(e);
                    break;
                }
            };
            match step {
                Step::NeedMore => break,
                Step::Skip(n) => self.start += n,
                Step::Packet(rec, n) => {
                    let at = self.start;
                    self.start += n;
                    match ethernet_frame(&mut self.buf, at, &rec) {
                        Some(frame) if !accepts(self.filter.as_ref(), &self.buf[frame.clone()]) => {
                            self.filtered += 1;
                        }
                        Some(frame) => {
                            let (meta, src) = describe(&self.buf, frame, &rec, self.sources.len());
                            self.sources.push(src);
                            self.metas.push(meta);
                        }
                        None => self.skipped.link += 1,
                    }
                }
            }
        }
        Ok(())
    }
}

fn accepts(filter: Option<&crate::filter::Program>, frame: &[u8]) -> bool {
    filter.is_none_or(|p| crate::filter::interp::run(&p.0, frame, &[], &Default::default()) != 0)
}

/// Makes the record an Ethernet frame in place: its range in `buf`, or
/// `None` for a link type that cannot be (or a record too short for its
/// own link header).
fn ethernet_frame(buf: &mut [u8], at: usize, rec: &Record) -> Option<std::ops::Range<usize>> {
    let (start, end) = (at + rec.data.start, at + rec.data.end);
    let len = end - start;
    let ethernet_header = |buf: &mut [u8], from: usize, ethertype: [u8; 2]| {
        buf[from..from + 12].fill(0);
        buf[from + 12..from + ETH_HEADER].copy_from_slice(&ethertype);
    };
    match rec.link {
        LinkType::Ethernet => Some(start..end),
        LinkType::Sll if len >= 16 => {
            // packet type, ARPHRD, address length, 8 address bytes,
            // protocol: the address's first six bytes become the source
            // MAC, the protocol stays where Ethernet keeps its type.
            buf.copy_within(start + 6..start + 12, start + 8);
            buf[start + 2..start + 8].fill(0);
            Some(start + 2..end)
        }
        LinkType::Sll2 if len >= 20 => {
            // protocol, reserved, ifindex, ARPHRD, packet type, address
            // length, 8 address bytes: the address is already where the
            // source MAC goes.
            let proto = [buf[start], buf[start + 1]];
            buf[start + 6..start + 12].fill(0);
            buf[start + 18..start + 20].copy_from_slice(&proto);
            Some(start + 6..end)
        }
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 if rec.headroom >= ETH_HEADER && len > 0 => {
            let ethertype = match (rec.link, buf[start] >> 4) {
                (LinkType::Ipv4, _) | (LinkType::RawIp, 4) => [0x08, 0x00],
                (LinkType::Ipv6, _) | (LinkType::RawIp, 6) => [0x86, 0xdd],
                _ => return None,
            };
            ethernet_header(buf, start - ETH_HEADER, ethertype);
            Some(start - ETH_HEADER..end)
        }
        _ => None,
    }
}

/// The packet's metadata, as a raw backend describes a frame.
fn describe(
    buf: &[u8],
    frame: std::ops::Range<usize>,
    rec: &Record,
    msg: usize,
) -> (PacketMeta, Option<SocketAddr>) {
    let len = frame.len();
    // The wire length grows or shrinks with the link header that replaced the file's.
    let header_delta = len as i64 - rec.data.len() as i64;
    let wire = (i64::from(rec.wire_len) + header_delta).max(len as i64) as u32;
    let mut m = PacketMeta {
        ts_ns: rec.ts_ns,
        msg: msg as u32,
        frame_offset: frame.start as u32,
        frame_len: len as u32,
        wire_len: wire,
        ..PacketMeta::default()
    };
    let src = match l2l4::decode(&buf[frame.clone()], None) {
        Decoded::Udp(u) => {
            m.offset = (frame.start + u.payload_offset) as u32;
            m.len = u.payload_len as u32;
            m.flags = FLAG_UDP;
            Some(u.src)
        }
        Decoded::Other | Decoded::Malformed => None,
    };
    (m, src)
}

impl Source for FileSource {
    fn recv_batch(&mut self, _nonblocking: bool) -> io::Result<Option<Batch<'_>>> {
        loop {
            if self.done {
                self.last = RecvStats::default();
                return Ok(None);
            }
            self.parse()?;
            if !self.metas.is_empty() {
                break;
            }
            if let Some(e) = self.failed.take() {
                self.done = true;
                return Err(e);
            }
            if !self.refill()? {
                if self.end > self.start {
                    // The file ended inside a record.
                    self.skipped.truncated += 1;
                    tracing::warn!(
                        "{}: the last record is cut short ({} bytes); counted and skipped",
                        self.open.as_ref().map_or_else(String::new, |o| o.input.to_string()),
                        self.end - self.start
                    );
                }
                self.next_file()?;
            }
        }
        let truncated = self.metas.iter().filter(|m| m.frame_len < m.wire_len).count() as u64;
        self.last = RecvStats { datagrams: self.metas.len() as u64, truncated, syscalls: 0 };
        let dst = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        Ok(Some(Batch::new(&self.buf[..self.end], &self.metas, &self.sources, dst)))
    }

    fn last(&self) -> RecvStats {
        self.last
    }

    /// Records read but not delivered: of link types linecap does not
    /// decode, or cut short at the end of a file.
    fn kernel_drops(&mut self) -> io::Result<u64> {
        Ok(self.skipped.link + self.skipped.truncated)
    }

    fn filtered(&self) -> u64 {
        self.filtered
    }

    fn finished(&self) -> bool {
        self.done
    }
}

/// Reads `bytes` as a capture file to the end: the packets delivered and
/// the records skipped, or the error that stopped it. What the fuzzer and
/// the property tests drive; it must never panic.
pub fn read_all(bytes: &[u8]) -> (u64, Skipped, Option<io::Error>) {
    let opts = FileOptions { inputs: vec![Input::Memory(bytes.into())], filter: None };
    let mut src = match FileSource::open(opts) {
        Ok(s) => s,
        Err(e) => return (0, Skipped::default(), Some(e)),
    };
    let mut packets = 0;
    loop {
        match src.recv_batch(false) {
            Ok(Some(b)) => packets += b.iter().filter(|p| p.is_udp || p.frame.is_some()).count() as u64,
            Ok(None) => return (packets, src.skipped(), None),
            Err(e) => return (packets, src.skipped(), Some(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Any bytes after a pcap or pcapng header: packets, counted
        /// skips or an error, never a panic, never more records than bytes.
        #[test]
        fn any_bytes_after_a_header_never_panic(
            ng in proptest::prelude::any::<bool>(),
            link in proptest::prelude::any::<u16>(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4000),
        ) {
            let mut f = if ng {
                let mut shb = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
                shb.extend(u64::MAX.to_le_bytes());
                shb.extend(28u32.to_le_bytes());
                let mut idb = vec![1, 0, 0, 0, 20, 0, 0, 0];
                idb.extend(link.to_le_bytes());
                idb.extend([0, 0, 0, 0, 0, 0, 20, 0, 0, 0]);
                [shb, idb].concat()
            } else {
                let mut h = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0];
                h.extend(u32::from(link % 300).to_le_bytes());
                h
            };
            f.extend_from_slice(&body);
            let (packets, skipped, _) = read_all(&f);
            proptest::prop_assert!(packets + skipped.link + skipped.truncated <= body.len() as u64 / 12 + 1);
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"out-*.pcap", b"out-000.pcap"));
        assert!(wildcard_match(b"out-???.pcap", b"out-001.pcap"));
        assert!(!wildcard_match(b"out-???.pcap", b"out-1.pcap"));
        assert!(wildcard_match(b"*", b""));
        assert!(!wildcard_match(b"a*b", b"acbd"));
    }

    fn raw_udp(payload: &[u8]) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p.extend([198, 18, 0, 1, 198, 18, 0, 2]);
        p.extend(4000u16.to_be_bytes());
        p.extend(5000u16.to_be_bytes());
        p.extend(((8 + payload.len()) as u16).to_be_bytes());
        p.extend([0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn record(link: LinkType, data: &[u8], headroom: usize, buf: &mut Vec<u8>) -> Record {
        buf.clear();
        buf.resize(headroom, 0xEE);
        buf.extend_from_slice(data);
        Record { data: headroom..buf.len(), headroom, ts_ns: 9, wire_len: data.len() as u32, link }
    }

    fn decoded(link: LinkType, data: &[u8], headroom: usize) -> Option<(Vec<u8>, u32, Option<SocketAddr>)> {
        let mut buf = Vec::new();
        let rec = record(link, data, headroom, &mut buf);
        let frame = ethernet_frame(&mut buf, 0, &rec)?;
        let (m, src) = describe(&buf, frame, &rec, 0);
        let payload = buf[m.offset as usize..(m.offset + m.len) as usize].to_vec();
        Some((payload, m.wire_len, src))
    }

    #[test]
    fn every_link_type_becomes_ethernet() {
        let ip = raw_udp(b"hello");
        let src: SocketAddr = "198.18.0.1:4000".parse().unwrap();
        let want = Some((b"hello".to_vec(), ip.len() as u32 + 14, Some(src)));
        assert_eq!(decoded(LinkType::RawIp, &ip, 16), want);
        assert_eq!(decoded(LinkType::Ipv4, &ip, 28), want);
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&ip);
        assert_eq!(decoded(LinkType::Sll, &sll, 16), want);
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        sll2.extend_from_slice(&ip);
        assert_eq!(decoded(LinkType::Sll2, &sll2, 16), want);
        let mut eth = vec![0; 12];
        eth.extend([0x08, 0x00]);
        eth.extend_from_slice(&ip);
        assert_eq!(decoded(LinkType::Ethernet, &eth, 16), want);
    }

    #[test]
    fn what_cannot_be_ethernet_is_refused() {
        assert_eq!(decoded(LinkType::Unsupported(147), b"anything", 16), None);
        assert_eq!(decoded(LinkType::Sll, b"short", 16), None);
        assert_eq!(decoded(LinkType::RawIp, &raw_udp(b"x"), 12), None, "no room for a header");
        assert_eq!(decoded(LinkType::RawIp, &[0x12, 0, 0], 16), None, "neither IPv4 nor IPv6");
    }
}
