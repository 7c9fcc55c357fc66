//! pcap files with nanosecond timestamps, written by a thread of their own.
//!
//! A socket capture has only UDP payloads, so each record gets a synthetic
//! IPv4/IPv6 + UDP header (link type RAW) built from the sender's address and
//! the address the capture listens on: tshark and tcpdump decode it as the
//! UDP datagram it was. Records are encoded on the receive thread straight
//! into chunks of the [`handoff`](super::handoff); the writer thread writes
//! whole chunks (large sequential writes) and rotates files by size or time
//! between chunks, so every file holds only whole records and stays readable
//! after SIGINT, SIGTERM or a full disk. On a disk the writes bypass the
//! page cache (`O_DIRECT`, large aligned writes: `direct.rs`).

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::handoff::{Chunk, Consumer, Producer, Refused, handoff};
use crate::format::l2l4::{self, Decoded, ipv4_checksum};
use crate::packet::{Batch, FIXED_HEADER_LEN, Packet};

mod direct;
mod encode;
#[cfg(test)]
mod lent_tests;
mod writer;

use crate::stats::{QueueIdx, StageCounters, WriterIdx};
pub use encode::*;
use writer::*;

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
    /// The file (with rotation, files are numbered: `out.pcap` → `out-000000.pcap`, ...: six digits, so that names sort by time).
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
    /// Write files with `O_DIRECT` in large aligned writes where the file
    /// system allows it (not tmpfs, not a pipe): see `direct.rs`.
    pub direct_io: bool,
    /// Pace the page cache on a disk: each chunk's write-back starts at
    /// once, the previous chunk's is waited for and its pages dropped
    /// (`sync_file_range`, `POSIX_FADV_DONTNEED`); not on tmpfs or a pipe.
    pub write_back: bool,
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
            // Measured slower than the page cache with one write in flight
            // (docs/BENCHMARKS.md): off until writes overlap.
            direct_io: false,
            write_back: true,
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
        Some(ext) => format!("{stem}-{index:06}.{ext}"),
        None => format!("{stem}-{index:06}"),
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
    /// Records whose frame the source lent (the writer copied it).
    lent: u64,
}

impl PcapSink {
    /// Opens the first file (so a bad path fails now, with a clear error)
    /// and starts the writer thread.
    pub fn start(opts: PcapOptions, queue: StageCounters, writer: StageCounters) -> io::Result<Self> {
        let rotating = opts.rotation.max_bytes.is_some() || opts.rotation.max_age.is_some();
        // The buffer first: a machine without the memory for it refuses
        // before any file is created.
        let chunks = (opts.buffer_bytes / opts.chunk_bytes).max(2);
        let (mut producer, consumer) = handoff(chunks, opts.chunk_bytes).map_err(|e| {
            let mib = (chunks * opts.chunk_bytes) >> 20;
            io::Error::new(
                e.kind(),
                format!("cannot set up the writer's {mib} MiB buffer: {e}; give a smaller --sink-buffer"),
            )
        })?;
        let file = if opts.to_stdout() {
            if rotating {
                let why = "--write -: a stream to standard output cannot rotate";
                return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
            }
            File::from(io::stdout().as_fd().try_clone_to_owned()?)
        } else {
            let first = numbered_path(&opts.path, 0, rotating);
            super::create_output_file(&first).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create pcap file {}: {e}", first.display()))
            })?
        };
        let (link, format) = (opts.link, opts.format);
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
            lent: 0,
        })
    }
}

impl PcapSink {
    /// Records the batch's first frames without reading them, as many as
    /// its source lends (see [`crate::loan`]): the writer encodes them.
    /// Returns how many were taken, and adds them to the tally.
    fn push_lent(&mut self, batch: &Batch<'_>, tally: &mut Tally) -> usize {
        let Some(run) = batch.loan_run().filter(|_| self.link == Link::Ethernet) else { return 0 };
        let Some(producer) = self.producer.as_mut() else { return 0 };
        let fmt = self.format;
        let mut taken = 0;
        for (addr, frame_len) in run.frames() {
            let len = fmt.record_len(frame_len as usize);
            let payload = (frame_len as usize).saturating_sub(FIXED_HEADER_LEN) as u32;
            if producer.push_lent(len, payload, (run.lender, addr, frame_len), run.ts_ns).is_err() {
                // The rest go the copying way, which counts them if refused too.
                break;
            }
            tally.packets += 1;
            tally.bytes += len as u64;
            taken += 1;
        }
        batch.loans_taken(taken);
        self.lent += taken as u64;
        taken
    }

    /// Encodes packet `p` into the hand-off: its record's length, or why not.
    fn push_copy(&mut self, p: &Packet<'_>, dst: &SocketAddr) -> Result<usize, Refused> {
        let Some(producer) = self.producer.as_mut() else { return Err(Refused::Closed) };
        let (fmt, payload) = (self.format, p.data.len() as u32);
        match p.frame {
            Some(headers) if self.link == Link::Ethernet && p.is_segment => {
                let len = segment_record_len(headers, p.data, fmt);
                producer
                    .push(len, payload, |out| encode_segment_record(out, p.ts_ns, headers, p.data, fmt))
                    .map(|()| len)
            }
            Some(frame) if self.link == Link::Ethernet => {
                let len = frame_record_len(frame, fmt);
                producer
                    .push(len, payload, |out| encode_frame_record(out, p.ts_ns, frame, p.wire_len, fmt))
                    .map(|()| len)
            }
            _ => {
                let len = record_len(p, dst, fmt);
                producer.push(len, payload, |out| encode_record(out, p, dst, fmt)).map(|()| len)
            }
        }
    }
}

/// What a batch did at the hand-off.
#[derive(Default)]
struct Tally {
    packets: u64,
    bytes: u64,
    drops: u64,
    drop_bytes: u64,
}

impl super::Sink for PcapSink {
    fn consume(&mut self, batch: &Batch<'_>) {
        if self.producer.is_none() {
            return;
        }
        let mut tally = Tally::default();
        let lent = self.push_lent(batch, &mut tally);
        // Lent frames are not read here at all; copied ones are, all of them.
        if lent < batch.len() {
            batch.prefetch_frames();
        }
        for i in lent..batch.len() {
            let p = batch.get(i);
            match self.push_copy(&p, &batch.dst) {
                Ok(len) => {
                    tally.packets += 1;
                    tally.bytes += len as u64;
                }
                Err(Refused::Full | Refused::Closed) => {
                    tally.drops += 1;
                    tally.drop_bytes += p.data.len() as u64;
                }
            }
        }
        self.dropped += tally.drops;
        self.queue.add(QueueIdx::Packets as usize, tally.packets);
        self.queue.add(QueueIdx::Bytes as usize, tally.bytes);
        self.queue.add(QueueIdx::RingFullDrops as usize, tally.drops);
        self.queue.add(QueueIdx::RingFullBytes as usize, tally.drop_bytes);
        self.queue.set(QueueIdx::Lent as usize, self.lent);
        if let Some(p) = self.producer.as_ref() {
            self.queue.set(QueueIdx::Chunks as usize, p.passed());
        }
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
            is_segment: false,
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

    /// A GRO super-packet of three 100-byte datagrams (its headers say 300)
    /// becomes three standalone records, which etherparse reads back with
    /// consistent lengths and whose checksums it computes the same.
    #[test]
    fn a_super_packet_s_datagrams_get_headers_of_their_own() {
        for v6 in [false, true] {
            let payload: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
            let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6]);
            let mut whole = Vec::new();
            if v6 {
                b.ipv6([0x20; 16], [0x21; 16], 64).udp(4000, 9000).write(&mut whole, &payload).unwrap();
            } else {
                b.ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
                    .udp(4000, 9000)
                    .write(&mut whole, &payload)
                    .unwrap();
            }
            let headers = &whole[..whole.len() - payload.len()];
            for seg in payload.chunks(100) {
                let mut out = vec![0u8; segment_record_len(headers, seg, FileFormat::Pcap)];
                encode_segment_record(&mut out, 7, headers, seg, FileFormat::Pcap);
                assert_eq!(u32::from_le_bytes(out[8..12].try_into().unwrap()) as usize, headers.len() + 100);
                let p = etherparse::SlicedPacket::from_ethernet(&out[16..]).expect("a whole frame");
                let Some(etherparse::TransportSlice::Udp(udp)) = p.transport else { panic!("UDP") };
                assert_eq!((udp.length(), udp.payload()), (108, seg));
                let header = udp.to_header();
                match p.net {
                    Some(etherparse::NetSlice::Ipv4(ip)) => {
                        let h = ip.header().to_header();
                        assert_eq!(h.total_len, 20 + 108);
                        assert_eq!(h.header_checksum, h.calc_header_checksum());
                        assert_eq!(header.checksum, 0, "IPv4: no UDP checksum");
                    }
                    Some(etherparse::NetSlice::Ipv6(ip)) => {
                        let h = ip.header().to_header();
                        assert_eq!(h.payload_length, 108);
                        assert_eq!(header.checksum, header.calc_checksum_ipv6(&h, seg).unwrap());
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    proptest::proptest! {
        /// Whatever bytes stand where a super-packet's headers should, a
        /// record is written whole and nothing panics.
        #[test]
        fn a_segment_record_never_panics(
            headers in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            let mut out = vec![0u8; segment_record_len(&headers, &payload, FileFormat::Pcap)];
            encode_segment_record(&mut out, 1, &headers, &payload, FileFormat::Pcap);
            // A classic pcap record: its 16-byte header, the headers, the payload.
            proptest::prop_assert_eq!(out.len(), 16 + headers.len() + payload.len());
            proptest::prop_assert_eq!(&out[16 + headers.len()..], &payload[..]);
        }
    }

    #[test]
    fn ipv6_record_checksum_verifies() {
        let p = Packet {
            frame: None,
            wire_len: 0,
            is_udp: true,
            is_segment: false,
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
        assert_eq!(numbered_path(b, 3, true), PathBuf::from("/x/out-000003.pcap"));
        assert_eq!(numbered_path(Path::new("cap"), 1, true), PathBuf::from("cap-000001"));
    }
}
