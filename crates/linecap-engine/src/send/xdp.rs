//! The `xdp` generator: frames built by linecap in the UMEM of an AF_XDP
//! socket and posted on its tx ring; the completion ring gives each frame
//! back once the kernel sent it (drained every batch). A frame counts as
//! sent when it comes back completed. With `--flows N`, each frame carries
//! its flow's source port.

use super::afpacket::{FrameTarget, HDR};
use super::pacing::Pacer;
use super::socket::{SendConfig, SendReport};
use crate::sys;
use crate::sys::xsk::XskTx;

const FRAMES: u32 = 4096;
const FRAME: u32 = 2048;

/// Sends through an AF_XDP tx ring until the count or duration is reached, or SIGINT.
pub fn run(cfg: &SendConfig, iface: &str) -> crate::Result<SendReport> {
    super::afpacket::check_frame_sender(cfg, "--backend xdp sends from one socket")?;
    crate::ensure_valid!(
        HDR + cfg.size <= FRAME as usize,
        "--size {} does not fit a {FRAME}-byte frame",
        cfg.size
    );
    let target = FrameTarget::resolve(iface, cfg, 40_002, "xdp")?;
    let header = target.header;
    let base_port = super::flows::frame_base_port(&header, cfg)?;
    let mut xsk = XskTx::new(target.ifindex, 0, FRAMES, FRAME, FRAMES / 2)?;
    super::pin_sender(cfg.cpus.first().copied());
    let len = HDR + cfg.size;
    let batch = cfg.batch.clamp(1, (FRAMES / 4) as usize) as u64;
    let start = sys::monotonic_ns();
    let deadline = cfg.duration.map(|d| start + d.as_nanos() as u64);
    let rate = cfg.rate.pps(cfg.size);
    let mut pacer = Pacer::new(rate, if rate.is_some() { cfg.burst.max(1) } else { batch }, start);
    let (mut posted, mut completed) = (0u64, 0u64);
    loop {
        completed += xsk.reclaim();
        let Some(want) =
            super::next_turn(&mut pacer, deadline, cfg.count.map_or(u64::MAX, |c| c - posted), batch)
        else {
            break;
        };
        let base = posted;
        let n = xsk.post(want as usize, len, |frame, i| {
            frame[..HDR].copy_from_slice(&header);
            super::flows::set_frame_flow(frame, base_port, base + i as u64, cfg);
            cfg.format.fill(&mut frame[HDR..], base + i as u64);
        }) as u64;
        xsk.kick()?;
        posted += n;
        pacer.sent(n);
    }
    // Let the kernel finish what was posted (bounded).
    let until = sys::monotonic_ns() + 1_000_000_000;
    while completed < posted && sys::monotonic_ns() < until {
        xsk.kick()?;
        completed += xsk.reclaim();
        std::thread::yield_now();
    }
    let elapsed = (sys::monotonic_ns() - start) as f64 / 1e9;
    let (u, s) = sys::thread_cpu_ns();
    Ok(SendReport::frames(
        super::socket::Generator::Xdp,
        completed,
        cfg.size,
        elapsed,
        u + s,
        posted - completed,
    ))
}
