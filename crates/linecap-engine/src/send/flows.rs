//! `send --flows N`: one sequence-numbered stream spread over N flows (N
//! UDP source ports, consecutive from a base), as an instrument spreads
//! its stream so that a NIC's RSS hands it to several queues and cores.
//! Consecutive numbers are dealt round robin over the flows, or in runs
//! of K (`--flow-run K`): number `k` goes out on flow `(k / K) % N`.
//!
//! Each flow is its own connected socket bound to its source port; a call
//! sends one flow's share of the turn with `sendmmsg`, and a call the
//! kernel took only in part is finished before the next flow's, so every
//! number of the turn goes out exactly once.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::pacing::Pacer;
use super::socket::{SendConfig, ThreadResult, after_send_error};
use crate::sys::{self, mmsg::MmsgTx};

/// Source port of the first flow when `--src-port` is not given.
pub const DEFAULT_BASE_PORT: u16 = 41000;

/// The flow that carries number `k`.
#[inline]
pub fn flow_of(k: u64, flows: usize, run: u64) -> usize {
    ((k / run.max(1)) % flows.max(1) as u64) as usize
}

/// The source port of the first flow of a frame generator (the port its
/// constant header carries), checked to leave room for the other flows.
pub(super) fn frame_base_port(header: &[u8], cfg: &SendConfig) -> crate::Result<u16> {
    let base = u16::from_be_bytes([header[34], header[35]]);
    crate::ensure_valid!(
        usize::from(base) + cfg.flows <= 65_536,
        "--src-port {base} with --flows {} runs past port 65535",
        cfg.flows
    );
    Ok(base)
}

/// Writes the source port of number `k`'s flow into an Ethernet/IPv4/UDP
/// frame built by a generator (its UDP checksum is 0, so nothing else
/// changes); nothing when the stream is one flow.
#[inline]
pub(super) fn set_frame_flow(frame: &mut [u8], base_port: u16, k: u64, cfg: &SendConfig) {
    if cfg.flows > 1 {
        let flow = flow_of(k, cfg.flows, cfg.flow_run) as u16;
        frame[34..36].copy_from_slice(&base_port.wrapping_add(flow).to_be_bytes());
    }
}

/// One connected socket per flow, bound to consecutive source ports.
pub(super) fn open_flow_sockets(cfg: &SendConfig) -> crate::Result<Vec<OwnedFd>> {
    let base = cfg.src_port.unwrap_or(DEFAULT_BASE_PORT);
    crate::ensure_valid!(
        usize::from(base) + cfg.flows <= 65_536,
        "--src-port {base} with --flows {} runs past port 65535",
        cfg.flows
    );
    (0..cfg.flows)
        .map(|f| {
            let port = base + f as u16;
            let fd = sys::udp_socket(&cfg.to)?;
            let _ = sys::setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
            let local: SocketAddr = match cfg.to {
                SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, port).into(),
                SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, port).into(),
            };
            sys::bind(&fd, &local).map_err(|e| {
                crate::failed!("cannot use source port {port} for flow {f}: {e} (choose another --src-port)")
            })?;
            sys::connect(&fd, &cfg.to).map_err(|e| {
                crate::failed!(
                    "cannot send to {}: {e} (is there a route to it in this network namespace?)",
                    cfg.to
                )
            })?;
            Ok(fd)
        })
        .collect()
}

/// Sends the stream over `fds`, one flow each, until the count, the
/// deadline or a stop.
pub(super) fn flows_thread(
    cfg: &SendConfig,
    fds: &[OwnedFd],
    deadline: Option<u64>,
    stop: &AtomicBool,
) -> crate::Result<ThreadResult> {
    super::pin_sender(cfg.cpus.first().copied());
    let flows = fds.len();
    let batch = cfg.batch.clamp(1, 1024);
    let mut tx = MmsgTx::new(batch, cfg.size);
    let rate = cfg.rate.pps(cfg.size);
    let burst = if rate.is_some() { cfg.burst.max(1) } else { batch as u64 };
    let mut pacer = Pacer::new(rate, burst, sys::monotonic_ns());
    // Where each flow's share of the turn sits among the messages (allocated once).
    let mut shares = vec![(0usize, 0usize); flows];
    let mut next: u64 = 0;
    let (mut errors, mut refused) = (0u64, 0u64);
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let remaining = cfg.count.map_or(u64::MAX, |q| q - next);
        let Some(want) = super::next_turn(&mut pacer, deadline, remaining, batch as u64) else {
            break;
        };
        let mut m = 0;
        for (f, share) in shares.iter_mut().enumerate() {
            let first = m;
            for k in (next..next + want).filter(|&k| flow_of(k, flows, cfg.flow_run) == f) {
                cfg.format.fill(&mut tx.slot_mut(m)[..cfg.size], k);
                tx.set(m, cfg.size, None);
                m += 1;
            }
            *share = (first, m - first);
        }
        for (fd, &(first, n)) in fds.iter().zip(&shares) {
            let (e, r) = send_all(&mut tx, fd, first, n, cfg.to)?;
            errors += e;
            refused += r;
        }
        next += want;
        pacer.sent(want);
    }
    let (u, s) = sys::thread_cpu_ns();
    Ok(ThreadResult { impaired: None, packets: next, errors, refused, gso: false, cpu_ns: u + s })
}

/// Sends messages `first..first + n` on `fd`, retrying what the kernel did
/// not take. Returns the failed calls, and of those the refused ones.
fn send_all(
    tx: &mut MmsgTx,
    fd: &OwnedFd,
    first: usize,
    n: usize,
    to: SocketAddr,
) -> crate::Result<(u64, u64)> {
    let (mut at, mut errors, mut refused, mut consecutive) = (first, 0, 0, 0);
    while at < first + n {
        match tx.send(fd, at, first + n - at) {
            Ok(sent) => {
                at += sent;
                consecutive = 0;
            }
            Err(e) => {
                errors += 1;
                refused += u64::from(e.raw_os_error() == Some(libc::ECONNREFUSED));
                consecutive += 1;
                after_send_error(&e, false, consecutive, to)?;
            }
        }
    }
    Ok((errors, refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_dealt_round_robin_or_in_runs() {
        let deal = |flows, run| (0..8).map(|k| flow_of(k, flows, run)).collect::<Vec<_>>();
        assert_eq!(deal(2, 1), [0, 1, 0, 1, 0, 1, 0, 1]);
        assert_eq!(deal(3, 2), [0, 0, 1, 1, 2, 2, 0, 0]);
        assert_eq!(deal(1, 1), [0; 8]);
    }
}
