//! The `socket` generator: a connected UDP socket, `sendmmsg` batches of
//! `seq` payloads, optionally UDP GSO super-packets (one buffer, many
//! datagrams on the wire), paced by a [`Pacer`].
//!
//! With several threads, each thread has its own socket (its own source
//! port, hence its own flow) and numbers its own stream from 0 at
//! `rate / T`; the receiver's verifier tracks each flow separately.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::pacing::Pacer;
use crate::format::seq;
use crate::sys::{self, mmsg::MmsgTx};
use crate::units::Rate;

/// Most datagrams the kernel accepts in one GSO super-packet.
const MAX_GSO_SEGMENTS: usize = 64;
/// Largest UDP payload.
pub(crate) const MAX_UDP_PAYLOAD: usize = 65_507;

/// What to send.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Destination.
    pub to: SocketAddr,
    /// UDP payload bytes per packet (≥ 8 for `seq`).
    pub size: usize,
    /// Rate for all threads together.
    pub rate: Rate,
    /// Stop after this many packets (all threads).
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Sending threads.
    pub threads: usize,
    /// CPUs to pin the threads to.
    pub cpus: Vec<usize>,
    /// Messages per sendmmsg.
    pub batch: usize,
    /// Token-bucket size in packets.
    pub burst: u64,
    /// Use UDP GSO super-packets.
    pub gso: bool,
    /// Payload format.
    pub format: super::PayloadFormat,
    /// Benchmark baseline instead of the generator: the plainest sendmmsg
    /// loop (one prebuilt batch sent again and again; no pacing, no
    /// per-packet sequence numbers).
    pub plain_loop: bool,
    /// UDP source port of the frames the frame-building backends write
    /// (afpacket, xdp, xdp-live); None: their default (40000, 40002, 40001).
    pub src_port: Option<u16>,
    /// Damage done to the stream on purpose (socket backend), counted.
    pub impair: super::impair::Impairments,
    /// Flows (source ports, from `src_port`) one stream is spread over
    /// (socket backend, one thread); 1: one flow per thread.
    pub flows: usize,
    /// Consecutive numbers per flow before the next flow's turn.
    pub flow_run: u64,
}

impl SendConfig {
    /// The CLI's defaults: one unpinned thread sending `seq` payloads of
    /// `size` bytes to `to` at `rate` in `sendmmsg` batches of 64 with a
    /// 32-packet burst, no GSO, until SIGINT (set `count` or `duration`).
    pub fn new(to: SocketAddr, size: usize, rate: Rate) -> Self {
        SendConfig {
            to,
            size,
            rate,
            count: None,
            duration: None,
            threads: 1,
            cpus: Vec::new(),
            batch: 64,
            burst: 32,
            gso: false,
            format: super::PayloadFormat::Seq,
            plain_loop: false,
            src_port: None,
            impair: super::impair::Impairments::default(),
            flows: 1,
            flow_run: 1,
        }
    }
}

/// Which generator sent a stream. Serialized (and printed) by the name
/// the CLI's `--backend` gives it; code branches on the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generator {
    /// `sendmmsg` on UDP sockets.
    #[default]
    Socket,
    /// Frames in an AF_PACKET TX ring.
    Afpacket,
    /// The kernel-side generator (BPF_PROG_RUN live frames).
    XdpLive,
    /// Frames on an AF_XDP socket's tx ring.
    Xdp,
    /// `replay` through a socket.
    Replay,
    /// `replay --backend afpacket`.
    ReplayAfpacket,
}

impl Generator {
    /// Its name, as `--backend` and the JSON report spell it.
    pub fn name(self) -> &'static str {
        match self {
            Generator::Socket => "socket",
            Generator::Afpacket => "afpacket",
            Generator::XdpLive => "xdp-live",
            Generator::Xdp => "xdp",
            Generator::Replay => "replay",
            Generator::ReplayAfpacket => "replay-afpacket",
        }
    }
}

impl std::fmt::Display for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What was sent.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SendReport {
    /// The generator that sent it.
    pub backend: Generator,
    /// Datagrams the kernel accepted.
    pub packets: u64,
    /// UDP payload bytes the kernel accepted.
    pub bytes: u64,
    /// Wall time.
    pub duration_s: f64,
    /// Achieved packets per second.
    pub pps: f64,
    /// Achieved payload bits per second.
    pub payload_bps: f64,
    /// Sending threads.
    pub threads: usize,
    /// Whether GSO was used to the end.
    pub gso: bool,
    /// Send calls that failed and were retried (ENOBUFS, ECONNREFUSED...).
    pub send_errors: u64,
    /// Of those, the calls the kernel refused because the destination said
    /// nothing listens there (an ICMP port unreachable came back).
    #[serde(default)]
    pub refused: u64,
    /// Sender CPU time per packet (all threads).
    pub cpu_ns_per_packet: f64,
    /// What was done to the stream on purpose (`--drop`, `--reorder`,
    /// `--duplicate`), exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impaired: Option<super::impair::ImpairCounts>,
}

impl SendReport {
    /// Whether the kernel-side generator (BPF_PROG_RUN live frames) sent
    /// the stream: veth counts its refused frames on both ends.
    pub fn from_kernel_generator(&self) -> bool {
        self.backend == Generator::XdpLive
    }

    /// The report of a single-threaded frame generator (`afpacket`, `xdp`,
    /// `xdp-live`): `packets` of `size` payload bytes in `elapsed_s`
    /// seconds, `cpu_ns` of its thread's CPU time, `send_errors` retried.
    pub fn frames(
        backend: Generator,
        packets: u64,
        size: usize,
        elapsed_s: f64,
        cpu_ns: u64,
        send_errors: u64,
    ) -> Self {
        let pps = packets as f64 / elapsed_s.max(1e-9);
        SendReport {
            backend,
            packets,
            bytes: packets * size as u64,
            duration_s: elapsed_s,
            pps,
            payload_bps: pps * size as f64 * 8.0,
            threads: 1,
            gso: false,
            send_errors,
            refused: 0,
            cpu_ns_per_packet: if packets > 0 { cpu_ns as f64 / packets as f64 } else { 0.0 },
            impaired: None,
        }
    }
}

pub(super) struct ThreadResult {
    pub(super) impaired: Option<super::impair::ImpairCounts>,
    pub(super) packets: u64,
    pub(super) errors: u64,
    pub(super) refused: u64,
    pub(super) gso: bool,
    pub(super) cpu_ns: u64,
}

/// Sends until the count or duration is reached, or SIGINT/SIGTERM.
pub fn run(cfg: &SendConfig) -> crate::Result<SendReport> {
    crate::ensure_valid!(
        cfg.size >= seq::MIN_LEN,
        "--size must be at least {} bytes for the seq format",
        seq::MIN_LEN
    );
    crate::ensure_valid!(
        cfg.size <= MAX_UDP_PAYLOAD,
        "--size must be at most {MAX_UDP_PAYLOAD} bytes (one UDP datagram)"
    );
    crate::ensure_valid!(cfg.threads >= 1, "--threads must be at least 1");
    crate::ensure_valid!(
        cfg.count.is_some() || cfg.duration.is_some(),
        "give --count or --duration: every traffic run is bounded"
    );
    if cfg.flows > 1 {
        return run_flows(cfg);
    }
    let mut sockets = Vec::new();
    for _ in 0..cfg.threads {
        let fd = sys::udp_socket(&cfg.to)?;
        let _ = sys::setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
        sys::connect(&fd, &cfg.to).map_err(|e| {
            crate::failed!(
                "cannot send to {}: {e} (is there a route to it in this network namespace?)",
                cfg.to
            )
        })?;
        sockets.push(fd);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = sys::monotonic_ns();
    let deadline = cfg.duration.map(|d| start + d.as_nanos() as u64);
    let mut handles = Vec::new();
    for (t, fd) in sockets.into_iter().enumerate() {
        let cfg = cfg.clone();
        let stop = stop.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("linecap-tx{t}"))
                .spawn(move || send_thread(t, &cfg, fd, deadline, &stop))?,
        );
    }
    let mut report =
        SendReport { backend: Generator::Socket, threads: cfg.threads, gso: cfg.gso, ..Default::default() };
    let mut cpu = 0;
    let mut first_err = None;
    for h in handles {
        match h.join().map_err(|_| crate::failed!("a send thread panicked"))? {
            Ok(r) => {
                report.packets += r.packets;
                report.send_errors += r.errors;
                report.refused += r.refused;
                report.gso &= r.gso;
                cpu += r.cpu_ns;
                if let Some(c) = r.impaired {
                    report.impaired.get_or_insert_with(Default::default).add(&c);
                }
            }
            Err(e) => {
                stop.store(true, Ordering::Release);
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let elapsed = (sys::monotonic_ns() - start) as f64 / 1e9;
    report.bytes = report.packets * cfg.size as u64;
    report.duration_s = elapsed;
    report.pps = report.packets as f64 / elapsed.max(1e-9);
    report.payload_bps = report.pps * cfg.size as f64 * 8.0;
    report.cpu_ns_per_packet = if report.packets > 0 { cpu as f64 / report.packets as f64 } else { 0.0 };
    Ok(report)
}

/// `--flows N`: one thread, one stream, N source ports.
fn run_flows(cfg: &SendConfig) -> crate::Result<SendReport> {
    crate::ensure_valid!(cfg.threads == 1, "--flows spreads one thread's stream: give --threads 1");
    crate::ensure_valid!(
        !cfg.gso && !cfg.plain_loop,
        "--flows sends plain datagrams: drop --gso and --plain-loop"
    );
    crate::ensure_valid!(!cfg.impair.any(), "--flows does not combine with --drop, --reorder or --duplicate");
    let fds = super::flows::open_flow_sockets(cfg)?;
    let stop = AtomicBool::new(false);
    let start = sys::monotonic_ns();
    let deadline = cfg.duration.map(|d| start + d.as_nanos() as u64);
    let r = super::flows::flows_thread(cfg, &fds, deadline, &stop)?;
    let elapsed = (sys::monotonic_ns() - start) as f64 / 1e9;
    let pps = r.packets as f64 / elapsed.max(1e-9);
    Ok(SendReport {
        backend: Generator::Socket,
        packets: r.packets,
        bytes: r.packets * cfg.size as u64,
        duration_s: elapsed,
        pps,
        payload_bps: pps * cfg.size as f64 * 8.0,
        threads: 1,
        gso: false,
        send_errors: r.errors,
        refused: r.refused,
        cpu_ns_per_packet: if r.packets > 0 { r.cpu_ns as f64 / r.packets as f64 } else { 0.0 },
        impaired: None,
    })
}

fn send_thread(
    t: usize,
    cfg: &SendConfig,
    fd: OwnedFd,
    deadline: Option<u64>,
    stop: &AtomicBool,
) -> crate::Result<ThreadResult> {
    super::pin_sender(cfg.cpus.get(t).copied());
    if cfg.plain_loop {
        return plain_loop(cfg, &fd, deadline, stop);
    }
    let threads = cfg.threads as u64;
    let quota = cfg.count.map(|n| (n.saturating_sub(t as u64)).div_ceil(threads));
    let mut gso = cfg.gso;
    let segs = if gso { MAX_GSO_SEGMENTS.min(MAX_UDP_PAYLOAD / cfg.size).max(1) } else { 1 };
    let batch = cfg.batch.clamp(1, 1024);
    let mut tx = MmsgTx::new(batch, cfg.size * segs);
    let rate = cfg.rate.pps(cfg.size).map(|r| r / threads as f64);
    // The bucket must hold at least one full send call when unlimited.
    let burst = if rate.is_some() { cfg.burst.max(1) } else { (batch * segs) as u64 };
    let mut pacer = Pacer::new(rate, burst, sys::monotonic_ns());
    let mut next_index: u64 = 0; // this thread's next sequence number
    let mut errors = 0u64;
    let mut refused = 0u64;
    let mut consecutive_errors = 0u32;
    // Datagrams carried by each message of the current call (allocated once).
    let mut counts = vec![0u64; batch];
    let mut dealer = Dealer::new(cfg, t, batch * segs);
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // GSO may be dropped on the way (the device refused it): per turn.
        let per_call = if gso { (batch * segs) as u64 } else { batch as u64 };
        let remaining = quota.map_or(u64::MAX, |q| q - next_index);
        let Some(want) = super::next_turn(&mut pacer, deadline, remaining, per_call) else {
            break;
        };
        // Fill messages: with GSO each message carries up to `segs` datagrams.
        let per_msg = if gso { segs as u64 } else { 1 };
        let msgs = want.div_ceil(per_msg) as usize;
        let mut k = next_index;
        for (m, count) in counts.iter_mut().enumerate().take(msgs) {
            let n = per_msg.min(want - (k - next_index));
            let slot = tx.slot_mut(m);
            for j in 0..n as usize {
                let seq = dealer.deal(k, quota.map_or(u64::MAX, |q| q - k));
                cfg.format.fill(&mut slot[j * cfg.size..(j + 1) * cfg.size], seq);
                k += 1;
            }
            let seg = if gso && n > 1 { Some(cfg.size as u16) } else { None };
            tx.set(m, n as usize * cfg.size, seg);
            *count = n;
        }
        match tx.send(&fd, 0, msgs) {
            Ok(sent_msgs) => {
                let sent: u64 = counts[..sent_msgs].iter().sum();
                dealer.unsent_after(sent as usize);
                next_index += sent;
                pacer.sent(sent);
                consecutive_errors = 0;
            }
            Err(e) => {
                dealer.unsent_after(0);
                errors += 1;
                refused += u64::from(e.raw_os_error() == Some(libc::ECONNREFUSED));
                consecutive_errors += 1;
                gso = after_send_error(&e, gso, consecutive_errors, cfg.to)?;
            }
        }
    }
    let (u, s) = sys::thread_cpu_ns();
    let impaired = dealer.finish();
    Ok(ThreadResult { impaired, packets: next_index, errors, refused, gso, cpu_ns: u + s })
}

/// Which sequence number each datagram carries: the wire index itself, or
/// with impairments the impairer's choice. Numbers dealt into a call the
/// kernel did not take are dealt again first, so a partial send never
/// turns into an uncounted gap.
struct Dealer {
    impairer: Option<super::impair::Impairer>,
    /// Numbers of the current call, in order (allocated once).
    dealt: Vec<u64>,
    /// Numbers dealt before and not sent, to deal again.
    again: std::collections::VecDeque<u64>,
}

impl Dealer {
    fn new(cfg: &SendConfig, t: usize, per_call: usize) -> Self {
        let impairer = cfg.impair.any().then(|| super::impair::Impairer::new(cfg.impair, t as u64));
        let room = if impairer.is_some() { per_call } else { 0 };
        Dealer {
            impairer,
            dealt: Vec::with_capacity(room),
            again: std::collections::VecDeque::with_capacity(room),
        }
    }

    /// The number of the datagram with wire index `k`, `remaining`
    /// datagrams (this one included) before the thread's quota.
    #[inline]
    fn deal(&mut self, k: u64, remaining: u64) -> u64 {
        let Some(imp) = self.impairer.as_mut() else { return k };
        let seq = self.again.pop_front().unwrap_or_else(|| imp.next(remaining));
        self.dealt.push(seq);
        seq
    }

    /// The call sent its first `sent` datagrams: the rest are dealt again.
    fn unsent_after(&mut self, sent: usize) {
        for &s in self.dealt.iter().skip(sent).rev() {
            self.again.push_front(s);
        }
        self.dealt.clear();
    }

    /// What was done; what is still held or owed counts as dropped.
    fn finish(self) -> Option<super::impair::ImpairCounts> {
        let mut imp = self.impairer?;
        Some(imp.abandon())
    }
}

/// What a failed send call means: GSO refused (go on without it), a
/// transient error (yield and retry), or the end. Returns whether GSO stays on.
pub(super) fn after_send_error(
    e: &std::io::Error,
    gso: bool,
    consecutive: u32,
    to: SocketAddr,
) -> crate::Result<bool> {
    if consecutive > 100_000 {
        return Err(crate::failed!("send to {to} keeps failing: {e}"));
    }
    match e.raw_os_error() {
        Some(libc::EIO | libc::EINVAL) if gso => {
            tracing::warn!("UDP GSO refused here ({e}); sending plain datagrams");
            Ok(false)
        }
        _ if transient(e) => {
            std::thread::yield_now();
            Ok(gso)
        }
        _ => Err(crate::failed!("send to {to} failed: {e}")),
    }
}

/// Whether a send error is worth retrying (queue full, a late ICMP error).
fn transient(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR | libc::ECONNREFUSED))
}

/// The benchmark baseline: one prebuilt batch of identical datagrams sent
/// with `sendmmsg` in a tight loop. What "a plain sendmmsg loop" costs is
/// the yardstick for the generator's own overhead (pacing, sequence numbers).
fn plain_loop(
    cfg: &SendConfig,
    fd: &OwnedFd,
    deadline: Option<u64>,
    stop: &AtomicBool,
) -> crate::Result<ThreadResult> {
    let batch = cfg.batch.clamp(1, 1024);
    let mut tx = MmsgTx::new(batch, cfg.size);
    for m in 0..batch {
        seq::fill(tx.slot_mut(m), m as u64);
        tx.set(m, cfg.size, None);
    }
    let quota = cfg.count.map(|n| n.div_ceil(cfg.threads as u64));
    let (mut packets, mut errors) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) && !sys::stop_requested() {
        if deadline.is_some_and(|d| sys::monotonic_ns() >= d) || quota.is_some_and(|q| packets >= q) {
            break;
        }
        match tx.send(fd, 0, batch) {
            Ok(n) => packets += n as u64,
            Err(e) if transient(&e) => errors += 1,
            Err(e) => return Err(crate::failed!("send to {} failed: {e}", cfg.to)),
        }
    }
    let (u, s) = sys::thread_cpu_ns();
    Ok(ThreadResult { impaired: None, packets, errors, refused: 0, gso: false, cpu_ns: u + s })
}
