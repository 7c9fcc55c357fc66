//! pcap files with nanosecond timestamps, written by a thread of their own.
//!
//! A socket capture has only UDP payloads, so each record gets a synthetic
//! IPv4/IPv6 + UDP header (link type RAW) built from the sender's address and
//! the address the capture listens on: tshark and tcpdump decode it as the
//! UDP datagram it was. Records are encoded on the receive thread straight
//! into chunks of the [`handoff`](super::handoff); the writer thread writes
//! whole chunks (large sequential writes) and rotates files by size or time
//! between chunks, so every file holds only whole records and stays readable
//! after SIGINT, SIGTERM or a full disk.

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::handoff::{Chunk, Consumer, Producer, Refused, handoff};
use crate::format::l2l4::ipv4_checksum;
use crate::packet::{Batch, Packet};
use crate::stats::{QueueIdx, StageCounters, WriterIdx};

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

fn ip_header_len(dst: &SocketAddr) -> usize {
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
fn sum16(data: &[u8]) -> u32 {
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
fn udp6_checksum(src: &[u8], dst: &[u8], datagram: &[u8]) -> u16 {
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

/// When to start a new file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotation {
    /// Start a new file before one would exceed this many bytes.
    pub max_bytes: Option<u64>,
    /// Start a new file after this long.
    pub max_age: Option<Duration>,
}

/// Options of a pcap sink.
#[derive(Debug, Clone)]
pub struct PcapOptions {
    /// The file (with rotation, files are numbered: `out.pcap` → `out-000.pcap`, ...).
    pub path: PathBuf,
    /// Rotation policy.
    pub rotation: Rotation,
    /// Memory between capture and disk.
    pub buffer_bytes: usize,
    /// Size of one hand-off chunk (also the largest write).
    pub chunk_bytes: usize,
    /// Testing aid: limit the writer to this many bytes per second.
    pub throttle_bytes_per_sec: Option<u64>,
    /// What the records hold (set by the capture from its backend).
    pub link: Link,
    /// pcap or pcapng.
    pub format: FileFormat,
    /// When every chunk waits for the writer, wait for one instead of
    /// dropping the packet (a source that can wait: a file read back).
    pub wait_for_writer: bool,
}

impl PcapOptions {
    /// `-`: the file is a stream on standard output (`--write -`), written
    /// in order, never rotated or cut back.
    pub fn to_stdout(&self) -> bool {
        self.path == Path::new("-")
    }

    /// Defaults: 64 MiB of buffer in 1 MiB chunks, no rotation.
    pub fn new(path: PathBuf) -> Self {
        Self {
            format: FileFormat::for_path(&path),
            path,
            rotation: Rotation::default(),
            buffer_bytes: 64 << 20,
            chunk_bytes: 1 << 20,
            throttle_bytes_per_sec: None,
            link: Link::SyntheticIp,
            wait_for_writer: false,
        }
    }
}

/// Path of file number `index` (only numbered when rotating).
pub fn numbered_path(base: &Path, index: u32, rotating: bool) -> PathBuf {
    if !rotating {
        return base.to_path_buf();
    }
    let stem = base.file_stem().and_then(|s| s.to_str()).unwrap_or("capture");
    let name = match base.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{stem}-{index:03}.{ext}"),
        None => format!("{stem}-{index:03}"),
    };
    base.with_file_name(name)
}

/// The receive thread's side of a pcap sink.
pub struct PcapSink {
    producer: Option<Producer>,
    queue: StageCounters,
    dropped: u64,
    writer: Option<JoinHandle<io::Result<()>>>,
    last_flush: Instant,
    link: Link,
    format: FileFormat,
}

impl PcapSink {
    /// Opens the first file (so a bad path fails now, with a clear error)
    /// and starts the writer thread.
    pub fn start(opts: PcapOptions, queue: StageCounters, writer: StageCounters) -> io::Result<Self> {
        let rotating = opts.rotation.max_bytes.is_some() || opts.rotation.max_age.is_some();
        let file = if opts.to_stdout() {
            if rotating {
                let why = "--write -: a stream to standard output cannot rotate";
                return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
            }
            File::from(io::stdout().as_fd().try_clone_to_owned()?)
        } else {
            let first = numbered_path(&opts.path, 0, rotating);
            File::create(&first).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create pcap file {}: {e}", first.display()))
            })?
        };
        let (link, format) = (opts.link, opts.format);
        let chunks = (opts.buffer_bytes / opts.chunk_bytes).max(2);
        let (mut producer, consumer) = handoff(chunks, opts.chunk_bytes);
        producer.wait_when_full(opts.wait_for_writer);
        let handle = std::thread::Builder::new()
            .name("linecap-pcap".into())
            .spawn(move || write_loop(opts, rotating, file, consumer, writer))?;
        Ok(Self {
            producer: Some(producer),
            queue,
            dropped: 0,
            writer: Some(handle),
            last_flush: Instant::now(),
            link,
            format,
        })
    }
}

impl super::Sink for PcapSink {
    fn consume(&mut self, batch: &Batch<'_>) {
        let (mut packets, mut bytes, mut drops) = (0u64, 0u64, 0u64);
        let Some(producer) = self.producer.as_mut() else {
            return;
        };
        let fmt = self.format;
        let mut drop_bytes = 0u64;
        for p in batch.iter() {
            let payload = p.data.len() as u32;
            let pushed = match p.frame {
                Some(frame) if self.link == Link::Ethernet => {
                    let len = frame_record_len(frame, fmt);
                    producer
                        .push(len, payload, |out| encode_frame_record(out, p.ts_ns, frame, p.wire_len, fmt))
                        .map(|()| len)
                }
                _ => {
                    let len = record_len(&p, &batch.dst, fmt);
                    producer.push(len, payload, |out| encode_record(out, &p, &batch.dst, fmt)).map(|()| len)
                }
            };
            match pushed {
                Ok(len) => {
                    packets += 1;
                    bytes += len as u64;
                }
                Err(Refused::Full | Refused::Closed) => {
                    drops += 1;
                    drop_bytes += u64::from(payload);
                }
            }
        }
        self.dropped += drops;
        self.queue.add(QueueIdx::Packets as usize, packets);
        self.queue.add(QueueIdx::Bytes as usize, bytes);
        self.queue.add(QueueIdx::RingFullDrops as usize, drops);
        self.queue.add(QueueIdx::RingFullBytes as usize, drop_bytes);
        self.queue.set(QueueIdx::Chunks as usize, producer.passed());
    }

    fn tick(&mut self) {
        if self.last_flush.elapsed() >= Duration::from_millis(100) {
            if let Some(p) = self.producer.as_mut() {
                let _ = p.flush();
                self.queue.set(QueueIdx::Chunks as usize, p.passed());
            }
            self.last_flush = Instant::now();
        }
    }

    fn finish(&mut self) -> crate::Result<()> {
        // Flushing, then dropping the producer closes the channel: the writer
        // writes what is queued and exits.
        if let Some(mut p) = self.producer.take() {
            let _ = p.flush();
            // The last flush is a chunk passed too: the queue's count and
            // the writer's agree at the end.
            self.queue.set(QueueIdx::Chunks as usize, p.passed());
        }
        if let Some(h) = self.writer.take() {
            h.join().map_err(|_| crate::failed!("pcap writer thread panicked"))??;
        }
        Ok(())
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }

    fn name(&self) -> &'static str {
        "pcap"
    }
}

struct Output {
    file: File,
    /// A pipe or terminal (`--write -`): written in order, never cut back.
    stream: bool,
    written: u64,
    opened: Instant,
    index: u32,
    files: u64,
}

/// After a failed write, how long the writer drops chunks (counted) before
/// it tries the disk again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The writer's state about the disk.
struct Health {
    /// The last error, while writing fails.
    failing: Option<io::Error>,
    /// When the disk was last tried.
    tried: Instant,
}

fn write_loop(
    opts: PcapOptions,
    rotating: bool,
    first: File,
    consumer: Consumer,
    counters: StageCounters,
) -> io::Result<()> {
    let stream = opts.to_stdout();
    let mut out = Output { file: first, stream, written: 0, opened: Instant::now(), index: 0, files: 1 };
    let mut health = Health { failing: None, tried: Instant::now() };
    let mut throttle = Throttle { start: Instant::now(), bytes: 0 };
    counters.set(WriterIdx::Files as usize, 1);
    let header = opts.format.file_header(opts.link);
    match write_at_most(&out.file, &header, 0, stream).1.map_or(Ok(()), Err) {
        Ok(()) => out.written = header.len() as u64,
        Err(e) => health.failing = Some(e),
    }
    loop {
        let chunk = match consumer.recv(Duration::from_millis(100)) {
            Ok(c) => c,
            Err(true) => break,
            Err(false) => continue,
        };
        if let Some(limit) = opts.throttle_bytes_per_sec {
            throttle.wait(chunk.bytes().len(), limit);
        }
        write_chunk(&opts, rotating, &header, &mut out, &mut health, &chunk, &counters);
        counters.add(WriterIdx::Chunks as usize, 1);
        consumer.give_back(chunk);
    }
    let _ = out.file.sync_data();
    match health.failing {
        Some(e) => Err(io::Error::new(e.kind(), format!("pcap writer: {e}"))),
        None => Ok(()),
    }
}

/// A testing aid: holds the writer to a byte rate.
struct Throttle {
    start: Instant,
    bytes: u64,
}

impl Throttle {
    fn wait(&mut self, bytes: usize, limit: u64) {
        self.bytes += bytes as u64;
        let due = Duration::from_secs_f64(self.bytes as f64 / limit.max(1) as f64);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            std::thread::sleep(wait);
        }
        if self.start.elapsed() > Duration::from_secs(10) {
            *self = Self { start: Instant::now(), bytes: 0 };
        }
    }
}

/// Writes one chunk, or as many of its whole records as the disk takes.
/// While the disk fails, chunks are dropped (counted) and the disk is
/// tried again every [`RETRY_AFTER`]; writing resumes when it takes data.
fn write_chunk(
    opts: &PcapOptions,
    rotating: bool,
    header: &[u8],
    out: &mut Output,
    health: &mut Health,
    chunk: &Chunk,
    counters: &StageCounters,
) {
    let drop_all = |from: usize| {
        counters.add(WriterIdx::WriteErrorDrops as usize, chunk.packets - from as u64);
        let lost: u64 = chunk.payloads[from.min(chunk.payloads.len())..].iter().map(|&l| u64::from(l)).sum();
        counters.add(WriterIdx::WriteErrorBytes as usize, lost);
    };
    if health.failing.is_some() && health.tried.elapsed() < RETRY_AFTER {
        drop_all(0);
        return;
    }
    health.tried = Instant::now();
    let file_ok = out.written >= header.len() as u64;
    if !out.stream
        && (rotating && (needs_rotation(&opts.rotation, out, chunk.bytes().len(), header.len()) || !file_ok)
            || !file_ok && health.failing.is_some())
    {
        match rotate(opts, out, header, rotating) {
            Ok(()) => counters.set(WriterIdx::Files as usize, out.files),
            Err(e) => {
                fail(opts, out, rotating, health, e);
                drop_all(0);
                return;
            }
        }
    }
    let (done, err) = write_at_most(&out.file, chunk.bytes(), out.written, out.stream);
    let (keep_bytes, keep_records) = if err.is_none() {
        (chunk.bytes().len(), chunk.packets as usize)
    } else {
        whole_records(opts.format, chunk.bytes(), done)
    };
    if err.is_some() && !out.stream {
        // Cut the file back to its last whole record so it stays readable.
        let _ = out.file.set_len(out.written + keep_bytes as u64);
    }
    out.written += keep_bytes as u64;
    counters.add(WriterIdx::Packets as usize, keep_records as u64);
    counters.add(WriterIdx::Bytes as usize, keep_bytes as u64);
    match err {
        None => {
            if health.failing.take().is_some() {
                counters.add(WriterIdx::Resumed as usize, 1);
                tracing::warn!(
                    "pcap writing to {} resumed ({} packets dropped meanwhile, counted)",
                    numbered_path(&opts.path, out.index, rotating).display(),
                    counters.get(WriterIdx::WriteErrorDrops as usize)
                );
            }
        }
        Some(e) if out.stream && e.kind() == io::ErrorKind::BrokenPipe => {
            // Whoever read the stream is gone (`| head`): nothing more can
            // be delivered, so the capture ends, its books whole.
            if health.failing.is_none() {
                tracing::warn!("the reader of standard output closed the pipe: the capture stops");
                crate::sys::request_stop();
            }
            health.failing = Some(e);
            drop_all(keep_records);
        }
        Some(e) => {
            fail(opts, out, rotating, health, e);
            drop_all(keep_records);
        }
    }
}

/// Records a write error (said once per failing spell).
fn fail(opts: &PcapOptions, out: &Output, rotating: bool, health: &mut Health, e: io::Error) {
    if health.failing.is_none() {
        tracing::warn!(
            "pcap write to {} failed: {e}; packets are dropped and counted, and the disk is tried again every second (free space or choose another --write path)",
            numbered_path(&opts.path, out.index, rotating).display()
        );
    }
    health.failing = Some(e);
}

/// Writes `buf` at `at` (a stream: where it stands) until done or an
/// error: (bytes written, the error).
fn write_at_most(file: &File, buf: &[u8], at: u64, stream: bool) -> (usize, Option<io::Error>) {
    let mut done = 0;
    while done < buf.len() {
        let wrote =
            if stream { (&*file).write(&buf[done..]) } else { file.write_at(&buf[done..], at + done as u64) };
        match wrote {
            Ok(0) => return (done, Some(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing"))),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// The longest prefix of whole records within the first `limit` bytes of a
/// chunk: (bytes, records). Reads only the records' own length fields.
pub fn whole_records(fmt: FileFormat, buf: &[u8], limit: usize) -> (usize, usize) {
    let (mut at, mut n) = (0usize, 0usize);
    loop {
        let len = match fmt {
            FileFormat::Pcap => {
                buf.get(at + 8..at + 12).map(|b| 16 + u32::from_le_bytes(b.try_into().expect("4")) as usize)
            }
            FileFormat::Pcapng => {
                buf.get(at + 4..at + 8).map(|b| u32::from_le_bytes(b.try_into().expect("4")) as usize)
            }
        };
        match len {
            Some(len) if len > 0 && at + len <= limit.min(buf.len()) => {
                at += len;
                n += 1;
            }
            _ => return (at, n),
        }
    }
}

fn needs_rotation(r: &Rotation, out: &Output, next: usize, header: usize) -> bool {
    let too_big = r.max_bytes.is_some_and(|m| out.written > header as u64 && out.written + next as u64 > m);
    let too_old = r.max_age.is_some_and(|a| out.opened.elapsed() >= a);
    too_big || too_old
}

/// Starts the next file, or rewrites the header of the current one when it
/// never made it to disk (no file is left without one). `out` changes only
/// on success.
fn rotate(opts: &PcapOptions, out: &mut Output, header: &[u8], rotating: bool) -> io::Result<()> {
    if !rotating || out.written < header.len() as u64 {
        out.file.set_len(0)?;
        out.file.write_all_at(header, 0)?;
        out.written = header.len() as u64;
        return Ok(());
    }
    let _ = out.file.sync_data();
    let path = numbered_path(&opts.path, out.index + 1, true);
    let file = File::create(&path)?;
    if let Err(e) = file.write_all_at(header, 0) {
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    *out = Output {
        file,
        stream: false,
        written: header.len() as u64,
        opened: Instant::now(),
        index: out.index + 1,
        files: out.files + 1,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "hello" from 198.18.0.1:4000 to 198.18.0.2:5000, encoded as one
    /// record into a buffer prefilled with 0xAA (padding must overwrite it).
    fn hello(fmt: FileFormat) -> Vec<u8> {
        let p = Packet {
            frame: None,
            wire_len: 0,
            is_udp: true,
            data: b"hello",
            ts_ns: 1_700_000_000_123_456_789,
            src: Some("198.18.0.1:4000".parse().unwrap()),
        };
        let dst: SocketAddr = "198.18.0.2:5000".parse().unwrap();
        let mut out = vec![0xAAu8; record_len(&p, &dst, fmt)];
        encode_record(&mut out, &p, &dst, fmt);
        out
    }

    #[test]
    fn record_is_a_valid_udp_datagram() {
        let out = hello(FileFormat::Pcap);
        assert_eq!(u32::from_le_bytes(out[0..4].try_into().unwrap()), 1_700_000_000);
        assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()), 123_456_789);
        assert_eq!(u32::from_le_bytes(out[8..12].try_into().unwrap()), 33);
        let ip = &out[16..36];
        assert_eq!(ipv4_checksum(ip), 0, "header checksum must verify");
        assert_eq!(&ip[12..16], &[198, 18, 0, 1]);
        assert_eq!(&out[36..38], &4000u16.to_be_bytes());
        assert_eq!(&out[38..40], &5000u16.to_be_bytes());
        assert_eq!(&out[44..], b"hello");
    }

    #[test]
    fn ipv6_record_checksum_verifies() {
        let p = Packet {
            frame: None,
            wire_len: 0,
            is_udp: true,
            data: b"odd",
            ts_ns: 5,
            src: Some("[2001:db8::1]:4000".parse().unwrap()),
        };
        let dst: SocketAddr = "[2001:db8::2]:5000".parse().unwrap();
        let mut out = vec![0u8; record_len(&p, &dst, FileFormat::Pcap)];
        encode_record(&mut out, &p, &dst, FileFormat::Pcap);
        let seg = &out[16..];
        assert_eq!(seg[0] >> 4, 6);
        let c = u16::from_be_bytes([seg[46], seg[47]]);
        assert_ne!(c, 0);
        // Summing the datagram with its checksum in place gives all ones.
        let mut sum = sum16(&seg[8..24]) + sum16(&seg[24..40]) + 11 + 17 + sum16(&seg[40..]);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
    }

    #[test]
    fn pcapng_blocks_are_framed_and_padded() {
        let f = FileFormat::Pcapng;
        let out = hello(f);
        // 33 bytes of IP/UDP/payload padded to 36, 28 + 36 + 4.
        assert_eq!(out.len(), 68);
        let w = |at: usize| u32::from_le_bytes(out[at..at + 4].try_into().unwrap());
        assert_eq!((w(0), w(4), w(64)), (6, 68, 68), "type, total length twice");
        assert_eq!(u64::from(w(12)) << 32 | u64::from(w(16)), 1_700_000_000_123_456_789);
        assert_eq!((w(20), w(24)), (33, 33));
        assert_eq!(&out[28 + 28..28 + 33], b"hello");
        assert_eq!(&out[61..64], &[0, 0, 0], "padding zeroed");
        assert_eq!(ipv4_checksum(&out[28..48]), 0);
        let h = f.file_header(Link::SyntheticIp);
        assert_eq!(h.len(), 60);
        assert_eq!(FileFormat::for_path(Path::new("x.PCAPNG")), FileFormat::Pcapng);
        assert_eq!(FileFormat::for_path(Path::new("x.pcap")), FileFormat::Pcap);
    }

    #[test]
    fn numbering() {
        let b = Path::new("/x/out.pcap");
        assert_eq!(numbered_path(b, 3, false), PathBuf::from("/x/out.pcap"));
        assert_eq!(numbered_path(b, 3, true), PathBuf::from("/x/out-003.pcap"));
        assert_eq!(numbered_path(Path::new("cap"), 1, true), PathBuf::from("cap-001"));
    }
}
