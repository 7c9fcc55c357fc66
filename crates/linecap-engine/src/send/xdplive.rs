//! The `xdp-live` generator: the kernel transmits the frames itself.
//! `BPF_PROG_RUN` in live-frames mode runs linecap's generator program on a
//! template frame again and again; the program writes each frame's `seq`
//! payload (the number from its state map and its pattern) and returns
//! XDP_TX, so the frame leaves through the interface. No socket, no copy
//! from user space per packet: the way past user-space senders' limits.
//! Pacing is per frame, inside the program (see `bpf::generator`): user
//! space only sets the schedule, calls the kernel in long runs and reads
//! back how many frames went out.

use std::os::fd::AsRawFd;

use super::afpacket::{FrameTarget, HDR};
use super::socket::{SendConfig, SendReport};
use crate::bpf::generator::{Deal, GenState, dealt_seq_program};
use crate::bpf::insn::to_bytes;
use crate::sys::{self, bpf};
use crate::units::Rate;

/// The longest one BPF_PROG_RUN call may last. Each call has a fixed cost
/// (measured here: ~25 ms to set up and tear down its page pool, during
/// which nothing is sent), so calls are long; SIGINT still ends one at
/// once (the kernel's loop returns EINTR on a pending signal).
const MAX_CALL_NS: u64 = 5_000_000_000;
/// Program runs in the first call, before their speed is known.
const FIRST_RUNS: u64 = 1 << 16;
/// A guess of one paced program run's cost, to size the first call
/// (measured here: 100–200 ns; the limit stops sending in any case).
const FIRST_RUN_NS_GUESS: u64 = 100;
/// A frame later than this many periods makes the schedule slip instead of
/// a catch-up burst (64 frames fit in veth's 256-frame ring).
const MAX_LAG_FRAMES: u64 = 64;
/// How long after the start paced flows begin: time for every generator to
/// load its program and set up its first call.
const FLOWS_START_NS: u64 = 200_000_000;
/// Frames the kernel sends per batch (and per flush) in live-frames mode.
const LIVE_BATCH: u32 = 64;

/// A paced run of known length has a known frame count: the program
/// stops there by itself, so the count is exact whatever the call sizes.
fn frame_limit(cfg: &SendConfig, rate: Option<f64>) -> u64 {
    match (cfg.count, cfg.duration, rate) {
        (Some(c), _, _) => c,
        (None, Some(d), Some(r)) => (d.as_secs_f64() * r).round() as u64,
        _ => u64::MAX,
    }
}

/// When to stop calling. Paced with a duration, the frame count ends the
/// run; the deadline is then only a guard, in case the schedule slipped.
fn deadline(cfg: &SendConfig, rate: Option<f64>, start: u64) -> Option<u64> {
    cfg.duration.map(|d| {
        let d = d.as_nanos() as u64;
        start + if rate.is_some() && cfg.count.is_none() { d + d / 2 + 1_000_000_000 } else { d }
    })
}

/// Runs in the first call. Paced, calls are long from the first, or each
/// call's set-up would show as a gap in the stream.
fn first_runs(cfg: &SendConfig, rate: Option<f64>) -> u64 {
    if rate.is_some() {
        let first_ns = cfg.duration.map_or(MAX_CALL_NS, |d| d.as_nanos() as u64).min(MAX_CALL_NS);
        (first_ns / FIRST_RUN_NS_GUESS).max(FIRST_RUNS)
    } else {
        FIRST_RUNS
    }
}

/// The stream's own length, first frame to last (a paced call may go on
/// idling after the last frame), else the wall time since `start`.
fn stream_seconds(st: &GenState, sent: u64, start: u64) -> f64 {
    if sent > 1 && st.last_ns > st.first_ns {
        (st.last_ns - st.first_ns) as f64 / 1e9 * sent as f64 / (sent - 1) as f64
    } else {
        (sys::monotonic_ns() - start) as f64 / 1e9
    }
}

/// Sends through the kernel's live-frames test run until the count or
/// duration is reached, or SIGINT. With `--flows N`, N generators, each on
/// its own CPU (veth hands a frame sent from CPU c to receive queue c: N
/// flows reach N queues, as RSS spreads flows on a NIC), each sending its
/// flow's share of one stream from its own source port.
pub fn run(cfg: &SendConfig, iface: &str) -> crate::Result<SendReport> {
    super::afpacket::check_frame_sender(cfg, "--backend xdp-live runs one generator per flow (--flows N)")?;
    if cfg.flows <= 1 {
        return run_flow(cfg, iface, Deal::WHOLE, 0);
    }
    let flows = cfg.flows;
    crate::ensure_valid!(
        cfg.cpus.is_empty() || cfg.cpus.len() >= flows,
        "--flows {flows} with --backend xdp-live runs a generator per flow: give --cpus with {flows} CPUs"
    );
    let base = cfg.src_port.unwrap_or(40_001);
    crate::ensure_valid!(
        usize::from(base) + flows <= 65_536,
        "--src-port {base} with --flows {flows} runs past 65535"
    );
    let per_flow: Vec<SendConfig> = (0..flows)
        .map(|f| {
            let mut c = cfg.clone();
            c.src_port = Some(base + f as u16);
            c.cpus = vec![cfg.cpus.get(f).copied().unwrap_or(f % crate::sys::online_cpus().max(1))];
            c.count = cfg.count.map(|n| flow_share(n, flows as u64, cfg.flow_run, f as u64));
            c.rate = match cfg.rate {
                Rate::Unlimited => Rate::Unlimited,
                Rate::Pps(r) => Rate::Pps(r / flows as f64),
                Rate::Bits(b) => Rate::Bits(b / flows as f64),
            };
            c
        })
        .collect();
    // Paced flows start together, as one instrument's do: each generator's
    // schedule begins at the same moment, after every one has had time to
    // load its program (early runs drop until then).
    let start_at =
        if cfg.rate.pps(cfg.size).is_some() { crate::sys::monotonic_ns() + FLOWS_START_NS } else { 0 };
    let reports = std::thread::scope(|s| {
        let handles: Vec<_> = per_flow
            .iter()
            .enumerate()
            .map(|(f, c)| {
                let deal = Deal { flows: flows as u32, flow: f as u32, run: cfg.flow_run.max(1) as u32 };
                s.spawn(move || run_flow(c, iface, deal, start_at))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| crate::failed!("a generator thread panicked"))?)
            .collect::<Vec<_>>()
    });
    let mut total =
        SendReport { backend: super::socket::Generator::XdpLive, threads: flows, ..Default::default() };
    let mut cpu_ns = 0.0;
    for r in reports {
        let r = r?;
        total.packets += r.packets;
        total.bytes += r.bytes;
        total.duration_s = total.duration_s.max(r.duration_s);
        total.send_errors += r.send_errors;
        cpu_ns += r.cpu_ns_per_packet * r.packets as f64;
    }
    total.pps = total.packets as f64 / total.duration_s.max(1e-9);
    total.payload_bps = total.pps * cfg.size as f64 * 8.0;
    total.cpu_ns_per_packet = if total.packets > 0 { cpu_ns / total.packets as f64 } else { 0.0 };
    Ok(total)
}

/// How many of the first `count` numbers flow `flow` of `flows` carries,
/// dealt in runs of `run`.
pub fn flow_share(count: u64, flows: u64, run: u64, flow: u64) -> u64 {
    let run = run.max(1);
    let cycle = run * flows;
    (count / cycle) * run + (count % cycle).saturating_sub(flow * run).min(run)
}

/// One generator: the frames of `deal`'s flow, its schedule starting at
/// `start_at` (monotonic ns; 0: at its first run).
fn run_flow(cfg: &SendConfig, iface: &str, deal: Deal, start_at: u64) -> crate::Result<SendReport> {
    crate::ensure_valid!(
        matches!(cfg.format, super::PayloadFormat::Seq),
        "--backend xdp-live writes the seq format"
    );
    crate::ensure_valid!(HDR + cfg.size <= 3500, "--size too large for one XDP frame");
    let target = FrameTarget::resolve(iface, cfg, 40_001, "xdp-live")?;
    let ifindex = target.ifindex;
    let mut frame = target.header.to_vec();
    frame.resize(HDR + cfg.size, 0);
    let map = bpf::map_create(bpf::MAP_TYPE_ARRAY, 4, GenState::SIZE as u32, 1, "lc_gen_state")?;
    let prog = dealt_seq_program(map.as_raw_fd(), HDR, cfg.size, deal);
    let prog = bpf::prog_load(bpf::PROG_TYPE_XDP, bpf::ATTACH_XDP, &to_bytes(&prog), "lc_gen")?;
    super::pin_sender(cfg.cpus.first().copied());
    let rate = cfg.rate.pps(cfg.size);
    let period_fp = rate.map_or(0, |r| ((256e9 / r) as u64).max(1));
    let limit = frame_limit(cfg, rate);
    let start = sys::monotonic_ns();
    let deadline = deadline(cfg, rate, start);
    let state = GenState {
        next_seq: 0,
        limit,
        // Due long ago: the schedule starts (slips to) the first run, after
        // the first call's set-up.
        due_fp: start_at << 8,
        period_fp,
        max_lag_fp: period_fp * MAX_LAG_FRAMES,
        ..GenState::default()
    };
    bpf::map_update_bytes(&map, &0u32.to_ne_bytes(), &state.to_bytes())?;
    let read_state = || -> crate::Result<GenState> {
        let mut b = [0u8; GenState::SIZE];
        bpf::map_lookup_bytes(&map, &0u32.to_ne_bytes(), &mut b)?;
        Ok(GenState::from_bytes(&b))
    };
    // Runs per call: sized from the speed of the previous call so a call
    // lasts until the run is due to end (or MAX_CALL_NS). Paced, most runs
    // are early and drop; their speed is measured, not assumed.
    let mut runs = first_runs(cfg, rate);
    let mut sent = 0u64;
    let period_ns = period_fp as f64 / 256.0;
    loop {
        let now = sys::monotonic_ns();
        if sys::stop_requested() || sent >= limit || deadline.is_some_and(|d| now >= d) {
            break;
        }
        let repeat = if rate.is_some() { runs } else { runs.min(limit - sent) };
        match bpf::xdp_run_live(&prog, &frame, ifindex, repeat as u32, LIVE_BATCH) {
            // SIGINT: the kernel's loop stops at once; what went out is counted.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => r?,
        }
        let sent_before = sent;
        sent = read_state()?.next_seq;
        let took = sys::monotonic_ns() - now;
        let mut budget_ns = deadline.map_or(MAX_CALL_NS, |d| d.saturating_sub(now + took)).min(MAX_CALL_NS);
        if rate.is_some() {
            budget_ns = budget_ns.min(((limit - sent) as f64 * period_ns) as u64 + 1_000_000);
        }
        let per_run_ns = took.max(1) as f64 / repeat as f64;
        runs = ((budget_ns as f64 / per_run_ns) as u64).clamp(1 << 10, u32::MAX as u64);
        if rate.is_none() && sent == sent_before {
            return Err(crate::failed!("the kernel sent nothing through {iface}: is it up, with a peer?"));
        }
    }
    let elapsed = stream_seconds(&read_state()?, sent, start);
    let (u, s) = sys::thread_cpu_ns();
    Ok(SendReport::frames(super::socket::Generator::XdpLive, sent, cfg.size, elapsed, u + s, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::flows::flow_of;

    #[test]
    fn flow_shares_add_up_to_the_count() {
        for (count, flows, run) in [(10u64, 2u64, 1u64), (11, 3, 4), (5, 4, 8), (0, 2, 1), (1000, 7, 3)] {
            let shares: Vec<u64> = (0..flows).map(|f| flow_share(count, flows, run, f)).collect();
            assert_eq!(shares.iter().sum::<u64>(), count, "{count} {flows} {run}");
            for f in 0..flows {
                let want =
                    (0..count).filter(|&k| flow_of(k, flows as usize, run) == f as usize).count() as u64;
                assert_eq!(shares[f as usize], want);
            }
        }
    }
}
