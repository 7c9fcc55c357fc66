//! The plainest receivers that do a capture's job, to measure linecap's
//! own receivers against in the same rounds: the loops a user writes in
//! thirty lines of C. Run as `linecap capture --plain-loop` (hidden), so
//! the bench starts, stops and accounts for them exactly as for a capture.
//!
//! - socket: one UDP socket with the same receive buffer as a capture,
//!   `recvmmsg` of 64 messages into 2 KiB buffers, no GRO, no control
//!   messages, no sender addresses, nothing done with the data but counting.
//! - xdp: the same AF_XDP socket, UMEM and XDP program as the xdp backend,
//!   read as libxdp's minimal receiver does (peek, refill at once, `poll`):
//!   [`XdpSource::run_minimal`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::capture::{CaptureReport, DropPlace, Reader};
use crate::source::socket::{RecvMode, SocketOptions, open_udp_socket};
use crate::source::xdp::{XdpOptions, XdpSource};
use crate::source::{BackendKind, Source};
use crate::stats::{KERNEL_COUNTERS, RX_COUNTERS, RxIdx, StageCounters, StageSpec, StatsFile};
use crate::sys::{
    self,
    mmsg::{MmsgRx, Wants},
};

/// What the plain loop is asked to do.
#[derive(Debug, Clone)]
pub struct PlainLoop {
    /// Counters file name (the bench waits for it).
    pub name: String,
    /// Address to bind.
    pub listen: SocketAddr,
    /// Receive buffer asked for (bytes).
    pub rcvbuf: i32,
    /// CPU to pin the loop to.
    pub cpu: Option<usize>,
    /// Stop after this long (else at SIGINT/SIGTERM).
    pub duration: Option<Duration>,
}

const BATCH: usize = 64;
const SLOT: usize = 2048;

/// Runs the loop until SIGINT/SIGTERM or the duration, then drains the
/// socket; reports in a capture's terms (`packets`, the socket's drops).
pub fn run(p: &PlainLoop) -> anyhow::Result<CaptureReport> {
    let (file, rx) = counters_file(p)?;
    let opts = SocketOptions {
        listen: p.listen,
        mode: RecvMode::Recvmmsg,
        gro: false,
        gro_adaptive: false,
        batch: BATCH,
        rcvbuf: p.rcvbuf,
        reuseport: false,
        spread: Default::default(),
        join: None,
        filter: None,
        busy_poll: None,
        timestamps: false,
        sources: false,
    };
    let (fd, setup) = open_udp_socket(&opts)?;
    file.set_backend(BackendKind::Socket);
    file.publish();
    let started = Instant::now();
    let ((packets, calls, drops, user, sys_ns), stopped_by) = run_pinned(p, started, move |stop2| {
        let mut msgs = MmsgRx::new(BATCH, SLOT, Wants { names: false, control: false });
        let (mut packets, mut calls) = (0u64, 0u64);
        loop {
            let draining = stop2.load(Ordering::Relaxed);
            match msgs.recv(&fd, BATCH, draining) {
                Ok(n) => {
                    packets += n as u64;
                    calls += 1;
                    rx.set(RxIdx::Packets as usize, packets);
                }
                Err(_) if draining => break,
                Err(_) => {}
            }
        }
        rx.set(RxIdx::Datagrams as usize, packets);
        rx.set(RxIdx::Syscalls as usize, calls);
        let drops = sys::socket_drops(&fd).unwrap_or(0);
        rx.set(RxIdx::KernelDrops as usize, drops);
        let (u, s) = sys::thread_cpu_ns();
        (packets, calls, drops, u, s)
    })?;
    let mut drop_map = BTreeMap::new();
    drop_map.insert(DropPlace::SocketOverflow, drops);
    let mut r =
        report(p, BackendKind::Socket, "plain-recvmmsg", packets, calls, drop_map, started, user, sys_ns);
    r.listen = setup.local.to_string();
    r.rcvbuf = i64::from(setup.rcvbuf);
    r.stopped_by = stopped_by.into();
    Ok(r)
}

/// The minimal AF_XDP receiver on the xdp backend's socket and program.
pub fn run_xdp(p: &PlainLoop, o: &XdpOptions) -> anyhow::Result<CaptureReport> {
    let (file, rx) = counters_file(p)?;
    let mut src = XdpSource::open(o)?;
    file.set_backend(BackendKind::Xdp);
    file.publish();
    let started = Instant::now();
    let ((packets, syscalls, ring_full, no_frame, all, user, sys_ns), stopped_by) =
        run_pinned(p, started, move |stop2| {
            let mut packets = 0u64;
            let syscalls = src.run_minimal(stop2, |n| {
                packets += n;
                rx.set(RxIdx::Packets as usize, packets);
            });
            let (ring_full, no_frame) = src.drop_detail().unwrap_or((0, 0));
            let all = src.kernel_drops().unwrap_or(0);
            let (u, s) = sys::thread_cpu_ns();
            (packets, syscalls, ring_full, no_frame, all, u, s)
        })?;
    let mut drops = BTreeMap::new();
    drops.insert(DropPlace::XskRxRingFull, ring_full);
    drops.insert(DropPlace::XskNoFillFrame, no_frame);
    drops.insert(DropPlace::XskInvalidDescs, all.saturating_sub(ring_full + no_frame));
    let mut r = report(p, BackendKind::Xdp, "minimal-afxdp", packets, syscalls, drops, started, user, sys_ns);
    r.listen = format!("interface {}", o.iface);
    r.stopped_by = stopped_by.into();
    Ok(r)
}

/// The baseline's counters file (the bench waits for it, as for a
/// capture's) and its receive stage; removed when the baseline ends.
fn counters_file(p: &PlainLoop) -> anyhow::Result<(StatsFile, StageCounters)> {
    let stages = [
        StageSpec { name: "rx.0".into(), counters: RX_COUNTERS },
        StageSpec { name: "kernel".into(), counters: KERNEL_COUNTERS },
    ];
    let (mut file, mut counters) = StatsFile::create(&p.name, &stages, crate::stats::DEFAULT_FILE_MODE)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    file.set_remove_on_drop(true);
    Ok((file, counters.remove(0)))
}

/// Runs `work` on a thread pinned to the baseline's CPU until SIGINT,
/// SIGTERM or the duration, when its stop flag is set; returns what it
/// returned and what stopped it.
fn run_pinned<T: Send + 'static>(
    p: &PlainLoop,
    started: Instant,
    work: impl FnOnce(&AtomicBool) -> T + Send + 'static,
) -> anyhow::Result<(T, &'static str)> {
    let stop = Arc::new(AtomicBool::new(false));
    let (cpu, flag) = (p.cpu, stop.clone());
    let worker = std::thread::spawn(move || {
        if let Some(c) = cpu {
            let _ = sys::pin_to_cpu(0, c);
        }
        work(&flag)
    });
    let stopped_by = wait_for_stop(p, started);
    stop.store(true, Ordering::Relaxed);
    let out = worker.join().map_err(|_| anyhow::anyhow!("the baseline's loop panicked"))?;
    Ok((out, stopped_by))
}

/// Waits for SIGINT/SIGTERM or the duration; says which.
fn wait_for_stop(p: &PlainLoop, started: Instant) -> &'static str {
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if sys::stop_requested() {
            return "SIGINT";
        }
        if p.duration.is_some_and(|d| started.elapsed() >= d) {
            return "duration";
        }
    }
}

/// A baseline's figures in a capture's report.
#[allow(clippy::too_many_arguments)]
fn report(
    p: &PlainLoop,
    backend: BackendKind,
    mode: &str,
    packets: u64,
    calls: u64,
    drops: BTreeMap<DropPlace, u64>,
    started: Instant,
    user: u64,
    sys_ns: u64,
) -> CaptureReport {
    CaptureReport {
        name: p.name.clone(),
        backend: Reader::Linecap(backend),
        mode: mode.into(),
        gro: false,
        threads: 1,
        listen: p.listen.to_string(),
        packets,
        bytes: 0,
        received_bytes: 0,
        received: packets,
        datagrams: packets,
        syscalls: calls,
        drops,
        kernel: BTreeMap::new(),
        duration_s: started.elapsed().as_secs_f64(),
        cpu_user_ns: user,
        cpu_sys_ns: sys_ns,
        cpu_ns_per_packet: if packets > 0 { (user + sys_ns) as f64 / packets as f64 } else { 0.0 },
        rcvbuf: 0,
        verify: None,
        blocks: None,
        relay: None,
        stopped_by: "".into(),
        failure: None,
    }
}
