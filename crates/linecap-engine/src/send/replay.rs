//! Replay: the UDP payloads of recorded captures sent again to a socket
//! address, at the recorded timing (or a multiple of it), at a fixed rate,
//! or unpaced, once or in loops. Files are read as `capture --read` reads
//! them ([`crate::source::file`]), batch by batch, never whole into memory;
//! payloads go out in `sendmmsg` batches. What is not a UDP datagram is
//! counted and left out.
//!
//! Timing: packet `i` is due at `start + (ts_i - ts_0) / speed`. Packets
//! due within [`SLACK_NS`] of now go out together in one call; before a
//! later one the sender flushes what it holds and sleeps (or, in the last
//! 20 µs, spins) until that packet is [`SLACK_NS`] from due. How late each
//! call's first packet left (after the call returned) is kept in a
//! histogram, so the report says how well the gaps were kept.

use std::net::SocketAddr;

use super::impair::{Fate, ImpairCounts, Impairer, Impairments};
use super::pacing::Pacer;
use super::socket::MAX_UDP_PAYLOAD;
use super::socket::SendReport;
use crate::format::l2l4::{self, Decoded};
use crate::packet::{Batch, Packet};
use crate::source::Source;
use crate::source::file::{FileOptions, FileSource, Input};
use crate::sys::packet as pk;
use crate::sys::{self, mmsg::MmsgTx};

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timing {
    /// The recorded gaps divided by this factor (1: as recorded).
    Recorded(f64),
    /// A fixed rate, packets per second.
    Rate(f64),
    /// As fast as the socket takes them.
    Max,
}

/// What to replay, where, how.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// The files, in order.
    pub inputs: Vec<Input>,
    /// Where the packets go.
    pub target: Target,
    /// Pacing.
    pub timing: Timing,
    /// Times to go through the files.
    pub loops: u32,
    /// Datagrams per `sendmmsg`.
    pub batch: usize,
    /// CPU to pin the sender to.
    pub cpu: Option<usize>,
    /// Damage done on purpose, counted (`--drop`, `--reorder`, `--duplicate`).
    pub impair: Impairments,
}

/// Where replayed packets go.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every UDP payload to this address, through a socket.
    Socket(SocketAddr),
    /// Every frame as recorded (rewritten where asked) on this interface,
    /// through an AF_PACKET TX ring.
    Frames {
        /// The interface.
        iface: String,
        /// Addresses to rewrite.
        rewrite: Rewrite,
    },
}

/// How late packets left against their due time (recorded timing only).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lateness {
    /// Packets measured.
    pub packets: u64,
    /// Median, 99th percentile and largest lateness, ns (upper bounds of
    /// power-of-two buckets, the largest exact).
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// Largest.
    pub max_ns: u64,
}

/// What a replay did.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ReplayReport {
    /// The sender's figures (`backend`: `replay`).
    #[serde(flatten)]
    pub sent: SendReport,
    /// Records read from the files (every loop).
    pub records: u64,
    /// Of those, not UDP datagrams (left out).
    pub not_udp: u64,
    /// Records the files' reader skipped (unsupported link, cut short).
    pub skipped: u64,
    /// Frames that could not go out as recorded (larger than a ring frame).
    #[serde(default)]
    pub unsendable: u64,
    /// How late packets left (recorded timing only).
    pub lateness: Option<Lateness>,
}

/// Power-of-two buckets of lateness, ns.
#[derive(Debug)]
struct LateHistogram {
    buckets: [u64; 64],
    max: u64,
    n: u64,
}

impl Default for LateHistogram {
    fn default() -> Self {
        LateHistogram { buckets: [0; 64], max: 0, n: 0 }
    }
}

impl LateHistogram {
    fn add(&mut self, late_ns: u64, count: u64) {
        self.buckets[(64 - late_ns.leading_zeros()) as usize % 64] += count;
        self.max = self.max.max(late_ns);
        self.n += count;
    }

    fn quantile(&self, q: f64) -> u64 {
        let want = (self.n as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= want.max(1) {
                return if i == 0 { 0 } else { (1u64 << i).saturating_sub(1).min(self.max) };
            }
        }
        self.max
    }

    fn summary(&self) -> Lateness {
        Lateness {
            packets: self.n,
            p50_ns: self.quantile(0.5),
            p99_ns: self.quantile(0.99),
            max_ns: self.max,
        }
    }
}

/// What every output counts, and the call being filled.
#[derive(Default)]
struct Tally {
    /// Packets queued in the current call, and the due time of its first.
    queued: usize,
    first_due: Option<u64>,
    packets: u64,
    bytes: u64,
    errors: u64,
    refused: u64,
    /// Frames that could not be sent as they are (too large for a ring frame).
    unsendable: u64,
    late: LateHistogram,
}

impl Tally {
    fn queue(&mut self, bytes: usize, due: Option<u64>) {
        self.queued += 1;
        self.bytes += bytes as u64;
        if self.first_due.is_none() {
            self.first_due = due;
        }
    }

    /// The queued call went out: its lateness is its first packet's.
    fn sent(&mut self) {
        if let Some(due) = self.first_due.take() {
            self.late.add(sys::monotonic_ns().saturating_sub(due), self.queued as u64);
        }
        self.packets += self.queued as u64;
        self.queued = 0;
    }
}

/// Where replayed packets go.
trait Output {
    /// Queues one packet (sending the call first when it is full).
    fn push(&mut self, p: &Packet<'_>, due: Option<u64>) -> crate::Result<()>;
    /// Sends the queued packets.
    fn flush(&mut self) -> crate::Result<()>;
    /// What was sent.
    fn tally(&self) -> &Tally;
}

/// UDP payloads through a connected socket, `sendmmsg` batches.
struct SocketOut {
    fd: std::os::fd::OwnedFd,
    tx: MmsgTx,
    batch: usize,
    t: Tally,
}

impl SocketOut {
    fn open(to: SocketAddr, batch: usize) -> crate::Result<Self> {
        let fd = sys::udp_socket(&to)?;
        let _ = sys::setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
        sys::connect(&fd, &to).map_err(|e| crate::failed!("cannot send to {to}: {e}"))?;
        Ok(SocketOut { fd, tx: MmsgTx::new(batch, MAX_UDP_PAYLOAD), batch, t: Tally::default() })
    }
}

impl Output for SocketOut {
    fn push(&mut self, p: &Packet<'_>, due: Option<u64>) -> crate::Result<()> {
        if self.t.queued == self.batch {
            self.flush()?;
        }
        let n = p.data.len().min(MAX_UDP_PAYLOAD);
        self.tx.slot_mut(self.t.queued)[..n].copy_from_slice(&p.data[..n]);
        self.tx.set(self.t.queued, n, None);
        self.t.queue(n, due);
        Ok(())
    }

    /// Sends the queued payloads, retrying what the kernel did not take.
    fn flush(&mut self) -> crate::Result<()> {
        let mut from = 0;
        let mut consecutive = 0u32;
        while from < self.t.queued {
            match self.tx.send(&self.fd, from, self.t.queued - from) {
                Ok(n) => {
                    from += n;
                    consecutive = 0;
                }
                Err(e) if transient(&e) && consecutive < 100_000 => {
                    self.t.errors += 1;
                    self.t.refused += u64::from(e.raw_os_error() == Some(libc::ECONNREFUSED));
                    consecutive += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(crate::failed!("replay send failed: {e}")),
            }
        }
        self.t.sent();
        Ok(())
    }

    fn tally(&self) -> &Tally {
        &self.t
    }
}

/// Whole frames through an AF_PACKET TX ring on an interface (qdisc
/// bypass), their addresses rewritten where asked.
struct RingOut {
    fd: std::os::fd::OwnedFd,
    ring: pk::TxRing,
    iface: String,
    rewrite: Rewrite,
    next: usize,
    batch: usize,
    submitted: Vec<usize>,
    t: Tally,
}

/// Ring frames: room for a 1500-byte MTU frame with VLAN tags.
const RING_FRAME: u32 = 2048;
const RING_FRAMES: u32 = 4096;

impl RingOut {
    fn open(iface: &str, rewrite: Rewrite, batch: usize) -> crate::Result<Self> {
        let ifindex = pk::if_index(iface).map_err(|_| {
            crate::failed!("interface '{iface}' not found in this network namespace (see 'ip link')")
        })?;
        let fd = pk::packet_socket().map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) => {
                crate::failed!("AF_PACKET needs CAP_NET_RAW: run as root or grant it with setcap")
            }
            _ => crate::failed!("cannot open an AF_PACKET socket: {e}"),
        })?;
        pk::set_v2(&fd)?;
        pk::set_qdisc_bypass(&fd)?;
        let ring = pk::TxRing::setup(&fd, RING_FRAME, RING_FRAMES)
            .map_err(|e| crate::failed!("cannot set up the TX ring: {e}"))?;
        pk::bind_iface(&fd, ifindex)?;
        let batch = batch.clamp(1, ring.frames() / 2);
        Ok(RingOut {
            fd,
            ring,
            iface: iface.into(),
            rewrite,
            next: 0,
            batch,
            submitted: Vec::with_capacity(batch),
            t: Tally::default(),
        })
    }
}

impl Output for RingOut {
    fn push(&mut self, p: &Packet<'_>, due: Option<u64>) -> crate::Result<()> {
        let Some(frame) = p.frame.filter(|f| f.len() <= self.ring.max_frame()) else {
            self.t.unsendable += 1;
            return Ok(());
        };
        if self.t.queued == self.batch {
            self.flush()?;
        }
        // The kick is blocking: after a flush every frame is user space's again.
        if self.ring.data_mut(self.next).is_none() {
            self.flush()?;
        }
        let Some(buf) = self.ring.data_mut(self.next) else {
            return Err(crate::failed!("the TX ring on {} holds a frame the kernel never sent", self.iface));
        };
        buf[..frame.len()].copy_from_slice(frame);
        self.rewrite.apply(&mut buf[..frame.len()]);
        self.ring.submit(self.next, frame.len());
        self.submitted.push(self.next);
        self.next = (self.next + 1) % self.ring.frames();
        self.t.queue(frame.len(), due);
        Ok(())
    }

    fn flush(&mut self) -> crate::Result<()> {
        if self.t.queued == 0 {
            return Ok(());
        }
        match pk::tx_kick(&self.fd) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR)) => {
                self.t.errors += 1
            }
            Err(e) => return Err(crate::failed!("AF_PACKET send on {} failed: {e}", self.iface)),
        }
        // Each submitted frame is sent or refused now.
        let ring = &self.ring;
        let refused =
            self.submitted.iter().filter(|&&i| ring.status(i) & pk::TP_STATUS_WRONG_FORMAT != 0).count();
        self.submitted.clear();
        self.t.errors += refused as u64;
        self.t.queued -= refused;
        self.t.sent();
        Ok(())
    }

    fn tally(&self) -> &Tally {
        &self.t
    }
}

/// Addresses to write into every replayed frame (AF_PACKET replay), as
/// tcprewrite does: MACs as given; a new IPv4 destination with the header
/// checksum recomputed and the UDP checksum cleared (0: not computed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Source MAC.
    pub src_mac: Option<[u8; 6]>,
    /// Destination MAC.
    pub dst_mac: Option<[u8; 6]>,
    /// Destination IPv4 address of UDP datagrams.
    pub dst_ip: Option<std::net::Ipv4Addr>,
}

impl Rewrite {
    fn apply(&self, frame: &mut [u8]) {
        if frame.len() < 14 {
            return;
        }
        if let Some(m) = self.dst_mac {
            frame[0..6].copy_from_slice(&m);
        }
        if let Some(m) = self.src_mac {
            frame[6..12].copy_from_slice(&m);
        }
        let Some(ip) = self.dst_ip else { return };
        let Decoded::Udp(u) = l2l4::decode(frame, None) else { return };
        if !u.dst.is_ipv4() {
            return;
        }
        let l3 = u.l3_offset;
        let ihl = usize::from(frame[l3] & 0x0f) * 4;
        frame[l3 + 16..l3 + 20].copy_from_slice(&ip.octets());
        frame[l3 + 10..l3 + 12].fill(0);
        let c = l2l4::ipv4_checksum(&frame[l3..l3 + ihl]);
        frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        if let Some(udp_sum) = frame.get_mut(l3 + ihl + 6..l3 + ihl + 8) {
            udp_sum.fill(0);
        }
    }
}

fn transient(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR | libc::ECONNREFUSED))
}

/// Where the replay stands in the recording's time.
struct Clock {
    timing: Timing,
    start: u64,
    /// Recorded time that maps onto `start`, once known.
    ts0: Option<u64>,
    /// Recorded time carried over from earlier loops.
    offset: u64,
    last_ts: u64,
    pacer: Pacer,
}

impl Clock {
    /// When a packet recorded at `ts` is due (monotonic ns), if paced by the recording.
    fn due(&mut self, ts: u64) -> Option<u64> {
        let Timing::Recorded(speed) = self.timing else { return None };
        let ts0 = match self.ts0 {
            Some(t) => t,
            None => {
                // The first packet of a loop leaves now, not when the
                // replay began opening files; later loops keep the offset.
                if self.offset == 0 {
                    self.start = sys::monotonic_ns();
                }
                *self.ts0.insert(ts)
            }
        };
        self.last_ts = self.last_ts.max(ts);
        let rel = (ts.saturating_sub(ts0) + self.offset) as f64 / speed;
        Some(self.start + rel as u64)
    }

    /// The next loop starts one mean gap after this one's last packet.
    fn next_loop(&mut self) {
        if let Some(ts0) = self.ts0.take() {
            self.offset += self.last_ts.saturating_sub(ts0) + 1;
        }
        self.last_ts = 0;
    }
}

/// Replays until every loop is done, or SIGINT/SIGTERM.
pub fn run(cfg: &ReplayConfig) -> crate::Result<ReplayReport> {
    crate::ensure_valid!(cfg.loops >= 1, "--loop must be at least 1");
    if let Timing::Recorded(s) | Timing::Rate(s) = cfg.timing {
        crate::ensure_valid!(s > 0.0 && s.is_finite(), "--speed and --rate must be positive");
    }
    super::pin_sender(cfg.cpu);
    let batch = cfg.batch.clamp(1, 1024);
    let mut out: Box<dyn Output> = match &cfg.target {
        Target::Socket(to) => Box::new(SocketOut::open(*to, batch)?),
        Target::Frames { iface, rewrite } => Box::new(RingOut::open(iface, *rewrite, batch)?),
    };
    let start = sys::monotonic_ns();
    let rate = match cfg.timing {
        Timing::Rate(r) => Some(r),
        _ => None,
    };
    let mut clock = Clock {
        timing: cfg.timing,
        start,
        ts0: None,
        offset: 0,
        last_ts: 0,
        pacer: Pacer::new(rate, 32, start),
    };
    let mut report = ReplayReport::default();
    let mut damage = cfg.impair.any().then(|| Damage::new(cfg.impair));
    'loops: for _ in 0..cfg.loops {
        let mut src = FileSource::open(FileOptions { inputs: cfg.inputs.clone(), filter: None })?;
        loop {
            if sys::stop_requested() {
                break 'loops;
            }
            let Some(b) = src.recv_batch(false)? else {
                if src.finished() {
                    break;
                }
                continue;
            };
            report.records += b.len() as u64;
            send_batch(&b, out.as_mut(), &mut clock, &mut report, &cfg.target, damage.as_mut())?;
        }
        report.skipped += src.skipped().link + src.skipped().truncated;
        clock.next_loop();
    }
    let impaired: Option<ImpairCounts> = match damage.as_mut() {
        Some(d) => {
            d.release(out.as_mut(), 0)?;
            Some(d.imp.counts())
        }
        None => None,
    };
    out.flush()?;
    let elapsed = (sys::monotonic_ns() - start) as f64 / 1e9;
    let (u, s) = sys::thread_cpu_ns();
    let t = out.tally();
    let backend = if matches!(cfg.target, Target::Socket(_)) { "replay" } else { "replay-afpacket" };
    let mut sent = SendReport::frames(backend, t.packets, 0, elapsed, u + s, t.errors);
    sent.bytes = t.bytes;
    sent.payload_bps = t.bytes as f64 * 8.0 / elapsed.max(1e-9);
    sent.refused = t.refused;
    sent.impaired = impaired;
    report.sent = sent;
    report.unsendable = t.unsendable;
    if matches!(cfg.timing, Timing::Recorded(_)) {
        report.lateness = Some(t.late.summary());
    }
    Ok(report)
}

/// Queues a batch's UDP payloads, waiting for each one's due time.
fn send_batch(
    b: &Batch<'_>,
    out: &mut dyn Output,
    clock: &mut Clock,
    report: &mut ReplayReport,
    target: &Target,
    mut damage: Option<&mut Damage>,
) -> crate::Result<()> {
    let whole_frames = matches!(target, Target::Frames { .. });
    for p in b.iter() {
        if !p.is_udp {
            report.not_udp += 1;
            if !whole_frames {
                continue;
            }
        }
        let due = clock.due(p.ts_ns);
        if let Some(due) = due {
            let now = sys::monotonic_ns();
            if due > now + SLACK_NS {
                // Everything queued is due already: send it before waiting.
                out.flush()?;
                wait_until(due - SLACK_NS);
            }
        } else if clock.pacer.is_limited() {
            loop {
                let now = sys::monotonic_ns();
                if clock.pacer.allowance(now) > 0 {
                    break;
                }
                out.flush()?;
                super::wait_for_next(&clock.pacer, now, None);
            }
            clock.pacer.sent(1);
        }
        match damage.as_deref_mut() {
            Some(d) => d.push(out, &p, due)?,
            None => out.push(&p, due)?,
        }
    }
    Ok(())
}

/// A packet held back by `--reorder`, copied out of the file's buffer.
struct HeldPacket {
    seq: u64,
    /// The frame (when the file had one) or the payload.
    bytes: Vec<u8>,
    /// Where the payload starts in `bytes`.
    payload_at: usize,
    has_frame: bool,
    ts_ns: u64,
}

impl HeldPacket {
    fn packet(&self) -> Packet<'_> {
        Packet {
            data: &self.bytes[self.payload_at..],
            ts_ns: self.ts_ns,
            src: None,
            frame: self.has_frame.then_some(&self.bytes[..]),
            wire_len: self.bytes.len() as u32,
            is_udp: true,
        }
    }
}

/// `--drop/--reorder/--duplicate` on a replayed stream: the impairer
/// decides each packet's fate in file order (its number is its place in
/// the replay); held packets wait here as copies.
struct Damage {
    imp: Impairer,
    held: Vec<HeldPacket>,
}

impl Damage {
    fn new(cfg: Impairments) -> Self {
        Damage { imp: Impairer::new(cfg, 0), held: Vec::new() }
    }

    fn push(&mut self, out: &mut dyn Output, p: &Packet<'_>, due: Option<u64>) -> crate::Result<()> {
        self.release(out, u64::MAX)?;
        let seq = self.imp.next_fresh();
        match self.imp.fate(u64::MAX) {
            Fate::Dropped => {}
            Fate::Held => {
                let (bytes, payload_at) = match p.frame {
                    Some(f) => {
                        let at = (p.data.as_ptr() as usize).saturating_sub(f.as_ptr() as usize).min(f.len());
                        (f.to_vec(), at)
                    }
                    None => (p.data.to_vec(), 0),
                };
                let has_frame = p.frame.is_some();
                self.held.push(HeldPacket { seq, bytes, payload_at, has_frame, ts_ns: p.ts_ns });
            }
            Fate::Sent { copy } => {
                out.push(p, due)?;
                self.imp.sent(seq, false);
                if copy {
                    out.push(p, due)?;
                    self.imp.sent(seq, true);
                }
            }
        }
        Ok(())
    }

    /// Sends the held packets whose turn came (`remaining` 0: all of them).
    fn release(&mut self, out: &mut dyn Output, remaining: u64) -> crate::Result<()> {
        while let Some((seq, copy)) = self.imp.release(remaining) {
            let Some(i) = self.held.iter().position(|h| h.seq == seq) else { continue };
            let h = self.held.swap_remove(i);
            out.push(&h.packet(), None)?;
            self.imp.sent(seq, false);
            if copy {
                out.push(&h.packet(), None)?;
                self.imp.sent(seq, true);
            }
        }
        Ok(())
    }
}

/// How early a packet may leave so that packets due close together share
/// one call: one `sendmmsg` per packet of a 200 kpps recording would take
/// the whole core here (each costs about 5 µs). Gaps shorter than this are
/// not kept; longer ones are, within the lateness the report gives.
pub const SLACK_NS: u64 = 50_000;

/// Sleeps until `due` when it is more than 20 µs away, then spins.
fn wait_until(due: u64) {
    loop {
        let now = sys::monotonic_ns();
        if now >= due || sys::stop_requested() {
            return;
        }
        if due > now + 20_000 {
            sys::sleep_until_monotonic(due - 10_000);
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_frame_stays_a_valid_datagram() {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(4000, 9000)
            .write(&mut f, b"payload")
            .unwrap();
        let rw =
            Rewrite { src_mac: Some([7; 6]), dst_mac: Some([8; 6]), dst_ip: Some([198, 19, 1, 2].into()) };
        rw.apply(&mut f);
        assert_eq!((&f[0..6], &f[6..12]), (&[8u8; 6][..], &[7u8; 6][..]));
        let Decoded::Udp(u) = l2l4::decode(&f, None) else { panic!("still UDP") };
        assert_eq!(u.dst, "198.19.1.2:9000".parse().unwrap());
        assert_eq!(l2l4::ipv4_checksum(&f[14..34]), 0, "the header checksum verifies");
        assert_eq!(&f[40..42], &[0, 0], "UDP checksum cleared");
        assert_eq!(&f[u.payload_offset..], b"payload");
    }

    #[test]
    fn lateness_quantiles_are_bucket_bounds() {
        let mut h = LateHistogram::default();
        h.add(0, 50);
        h.add(1000, 49);
        h.add(1_000_000, 1);
        let s = h.summary();
        assert_eq!((s.packets, s.p50_ns, s.max_ns), (100, 0, 1_000_000));
        assert_eq!(s.p99_ns, 1023, "1000 ns falls in the bucket up to 1023");
    }
}
