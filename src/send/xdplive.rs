//! The `xdp-live` generator: the kernel transmits the frames itself.
//! `BPF_PROG_RUN` in live-frames mode runs linecap's generator program on a
//! template frame again and again; the program writes each frame's `seq`
//! payload (the number from a counter map and its pattern) and returns
//! XDP_TX, so the frame leaves through the interface. No socket, no copy
//! from user space per packet: the way past user-space senders' limits.
//! Paced by batch: each call sends 100 ms worth of packets (a call has a
//! fixed cost of tens of milliseconds), so the average rate is exact and
//! the fine structure is bursts.

use std::os::fd::AsRawFd;

use super::afpacket::{FrameTarget, HDR};
use super::pacing::Pacer;
use super::socket::{SendConfig, SendReport};
use crate::bpf::{generator::seq_program, insn::to_bytes};
use crate::format::seq;
use crate::sys::{self, bpf};

/// Frames per BPF_PROG_RUN call when unpaced.
const CHUNK: u64 = 1 << 20;

/// Sends through the kernel's live-frames test run until the count or
/// duration is reached, or SIGINT.
pub fn run(cfg: &SendConfig, iface: &str) -> anyhow::Result<SendReport> {
    anyhow::ensure!(
        cfg.size >= seq::MIN_LEN,
        "--size must be at least {} bytes for the seq format",
        seq::MIN_LEN
    );
    anyhow::ensure!(
        cfg.count.is_some() || cfg.duration.is_some(),
        "give --count or --duration: every traffic run is bounded"
    );
    anyhow::ensure!(cfg.threads == 1, "--backend xdp-live runs one generator");
    anyhow::ensure!(
        matches!(cfg.format, super::PayloadFormat::Seq),
        "--backend xdp-live writes the seq format"
    );
    anyhow::ensure!(HDR + cfg.size <= 3500, "--size too large for one XDP frame");
    let target = FrameTarget::resolve(iface, cfg, 40_001, "xdp-live")?;
    let ifindex = target.ifindex;
    let mut frame = target.header.to_vec();
    frame.resize(HDR + cfg.size, 0);
    let map = bpf::map_create(bpf::MAP_TYPE_ARRAY, 4, 8, 1, "lc_seq")?;
    let prog = seq_program(map.as_raw_fd(), HDR, cfg.size);
    let prog = bpf::prog_load(bpf::PROG_TYPE_XDP, bpf::ATTACH_XDP, &to_bytes(&prog), "lc_gen")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    super::pin_sender(cfg.cpus.first().copied());
    let start = sys::monotonic_ns();
    let deadline = cfg.duration.map(|d| start + d.as_nanos() as u64);
    let rate = cfg.rate.pps(cfg.size);
    // Each call costs tens of milliseconds on this kind of machine (measured:
    // ~25 ms, the page pool's setup and teardown), so pacing is by batch:
    // 100 ms of packets per call, sent as fast as the kernel goes; the
    // average rate is exact, the fine structure is bursts.
    let burst = rate.map_or(CHUNK, |r| ((r / 10.0) as u64).clamp(64, CHUNK));
    let mut pacer = Pacer::new(rate, burst, start);
    let period_ns = rate.map_or(0, |r| (1e9 / r) as u64);
    let min_chunk = if rate.is_some() { burst } else { 1 };
    let mut sent = 0u64;
    loop {
        if sys::stop_requested() {
            break;
        }
        let now = sys::monotonic_ns();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let remaining = cfg.count.map_or(u64::MAX, |c| c - sent);
        if remaining == 0 {
            break;
        }
        let want = pacer.allowance(now).min(CHUNK).min(remaining);
        // Each BPF_PROG_RUN call has a fixed cost (a page pool is set up and
        // torn down): wait until a whole chunk is due rather than sending
        // a few frames per call.
        if want < min_chunk.min(remaining) {
            let need = min_chunk.min(remaining) - want;
            let due = pacer.next_due_ns() + need.saturating_sub(1) * period_ns;
            sys::sleep_until_monotonic(due.min(deadline.unwrap_or(u64::MAX)));
            continue;
        }
        bpf::xdp_run_live(&prog, &frame, ifindex, want as u32, 64)?;
        sent += want;
        pacer.sent(want);
    }
    let elapsed = (sys::monotonic_ns() - start) as f64 / 1e9;
    let (u, s) = sys::thread_cpu_ns();
    let pps = sent as f64 / elapsed.max(1e-9);
    Ok(SendReport {
        backend: "xdp-live".into(),
        packets: sent,
        bytes: sent * cfg.size as u64,
        duration_s: elapsed,
        pps,
        payload_bps: pps * cfg.size as f64 * 8.0,
        threads: 1,
        gso: false,
        send_errors: 0,
        cpu_ns_per_packet: if sent > 0 { (u + s) as f64 / sent as f64 } else { 0.0 },
    })
}
