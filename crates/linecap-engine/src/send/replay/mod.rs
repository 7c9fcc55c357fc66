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

mod damage;
mod out;

pub use out::Rewrite;

use damage::Damage;
use out::{Output, RingOut, SocketOut};

use super::impair::{ImpairCounts, Impairments};
use super::pacing::Pacer;
use super::socket::{Generator, SendReport};
use crate::packet::Batch;
use crate::source::Source;
use crate::source::file::{FileOptions, FileSource, Input};
use crate::sys;

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
pub(crate) struct LateHistogram {
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
    pub(crate) fn add(&mut self, late_ns: u64, count: u64) {
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
    let backend = match cfg.target {
        Target::Socket(_) => Generator::Replay,
        Target::Frames { .. } => Generator::ReplayAfpacket,
    };
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
