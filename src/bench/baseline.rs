//! The plainest receiver that does a capture's job, to measure linecap's
//! own receivers against in the same rounds: the loop a user writes in
//! thirty lines of C. One UDP socket with the same receive buffer as a
//! capture, `recvmmsg` of 64 messages into 2 KiB buffers, no GRO, no
//! control messages, no sender addresses, and nothing done with the data
//! but counting it. Run as `linecap capture --plain-loop` (hidden), so the
//! bench starts, stops and accounts for it exactly as for a capture.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::capture::CaptureReport;
use crate::source::socket::{RecvMode, SocketOptions, open_udp_socket};
use crate::stats::{KERNEL_COUNTERS, RX_COUNTERS, RxIdx, StageSpec, StatsFile};
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
    let stages = [
        StageSpec { name: "rx.0".into(), counters: RX_COUNTERS },
        StageSpec { name: "kernel".into(), counters: KERNEL_COUNTERS },
    ];
    let (mut file, mut counters) = StatsFile::create(&p.name, &stages, crate::stats::DEFAULT_FILE_MODE)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    file.set_remove_on_drop(true);
    let opts = SocketOptions {
        listen: p.listen,
        mode: RecvMode::Recvmmsg,
        gro: false,
        gro_adaptive: false,
        batch: BATCH,
        rcvbuf: p.rcvbuf,
        reuseport: false,
        join: None,
        filter: None,
        busy_poll: None,
        timestamps: false,
        sources: false,
    };
    let (fd, setup) = open_udp_socket(&opts)?;
    file.set_backend("socket");
    file.publish();
    let rx = counters.remove(0);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (cpu, stop2) = (p.cpu, stop.clone());
    let worker = std::thread::spawn(move || {
        if let Some(c) = cpu {
            let _ = sys::pin_to_cpu(0, c);
        }
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
    });
    let stopped_by = loop {
        std::thread::sleep(Duration::from_millis(20));
        if sys::stop_requested() {
            break "SIGINT";
        }
        if p.duration.is_some_and(|d| started.elapsed() >= d) {
            break "duration";
        }
    };
    stop.store(true, Ordering::Relaxed);
    let (packets, calls, drops, user, sys_ns) =
        worker.join().map_err(|_| anyhow::anyhow!("the plain loop panicked"))?;
    let mut drop_map = BTreeMap::new();
    drop_map.insert("socket_overflow".to_string(), drops);
    Ok(CaptureReport {
        name: p.name.clone(),
        backend: "socket".into(),
        mode: "plain-recvmmsg".into(),
        gro: false,
        threads: 1,
        listen: setup.local.to_string(),
        packets,
        bytes: 0,
        received_bytes: 0,
        received: packets,
        datagrams: packets,
        syscalls: calls,
        drops: drop_map,
        kernel: BTreeMap::new(),
        duration_s: started.elapsed().as_secs_f64(),
        cpu_user_ns: user,
        cpu_sys_ns: sys_ns,
        cpu_ns_per_packet: if packets > 0 { (user + sys_ns) as f64 / packets as f64 } else { 0.0 },
        rcvbuf: i64::from(setup.rcvbuf),
        verify: None,
        blocks: None,
        relay: None,
        stopped_by: stopped_by.into(),
        failure: None,
    })
}
