//! Sources: where batches come from. Each backend opens its kernel
//! interface, then hands out [`Batch`]es that borrow its buffers until the
//! sinks are done with them.

pub mod afpacket;
pub mod file;
pub mod gro;
pub mod socket;
pub mod uring;
pub mod xdp;

use std::io;

use crate::packet::Batch;

/// A gap between two busy polls longer than this is counted: 100 µs is
/// about what veth's 256-frame ring holds at 2.35 Mpps.
pub const POLL_GAP_NS: u64 = 100_000;

/// A setting the kernel refused (busy polling: it needs CAP_NET_ADMIN, or
/// a kernel that has it): the capture goes on without it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KernelRefusal {
    /// The error number (`EPERM` for a missing capability; 0 if none).
    pub errno: i32,
    /// What the kernel said, with what would make it agree.
    pub why: String,
}

impl KernelRefusal {
    /// The kernel's refusal `e` of busy polling, with what would make it agree.
    pub fn busy_poll(e: &io::Error) -> Self {
        let errno = e.raw_os_error().unwrap_or(0);
        let why = match errno {
            libc::EPERM => format!("{e}; busy polling needs CAP_NET_ADMIN: run as root"),
            libc::ENOPROTOOPT => format!("{e}; busy polling needs Linux 5.11 or later"),
            _ => e.to_string(),
        };
        Self { errno, why }
    }
}

/// Gaps between consecutive busy polls longer than [`POLL_GAP_NS`].
#[derive(Debug, Default, Clone, Copy)]
pub struct PollGaps {
    last_ns: u64,
    /// Gaps counted.
    pub count: u64,
    /// Their total length.
    pub total_ns: u64,
}

impl PollGaps {
    /// Notes a poll at `now_ns`.
    pub fn poll(&mut self, now_ns: u64) {
        let gap = now_ns.saturating_sub(self.last_ns);
        if self.last_ns != 0 && gap > POLL_GAP_NS {
            self.count += 1;
            self.total_ns += gap;
        }
        self.last_ns = now_ns;
    }
}

/// Per-call facts for the counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecvStats {
    /// Datagrams, GRO super-packets or frames received by the call.
    pub datagrams: u64,
    /// Packets cut because they did not fit (slot or snap length).
    pub truncated: u64,
    /// System calls the receive made (a ring handed over without waiting
    /// makes none).
    pub syscalls: u64,
}

/// The kernel interfaces a capture reads from. Printed and stored by
/// [`BackendKind::name`] (the report's and the counters file's `backend`),
/// parsed back by [`BackendKind::parse`]; code branches on the kind, never
/// on the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// UDP sockets with `recvmmsg`.
    Socket,
    /// UDP sockets read through io_uring.
    Uring,
    /// AF_PACKET TPACKET_V3 rings.
    AfPacket,
    /// AF_XDP sockets fed by linecap's XDP program.
    Xdp,
    /// pcap or pcapng files read back (`capture --read`).
    File,
}

impl BackendKind {
    /// Its name, as the CLI's `--backend` spells it.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Socket => "socket",
            BackendKind::Uring => "uring",
            BackendKind::AfPacket => "afpacket",
            BackendKind::Xdp => "xdp",
            BackendKind::File => "file",
        }
    }

    /// The kind a name stands for (`None`: not a capture backend, e.g. a
    /// bench peer's report, or a file of another version).
    pub fn parse(name: &str) -> Option<Self> {
        [BackendKind::Socket, BackendKind::Uring, BackendKind::AfPacket, BackendKind::Xdp, BackendKind::File]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// A UDP socket behind the kernel's IP stack (its drops are the
    /// socket's, its filter runs at the UDP header).
    pub fn is_socket(self) -> bool {
        matches!(self, BackendKind::Socket | BackendKind::Uring)
    }
}

/// A receive backend, owned by one receive thread.
pub trait Source: Send {
    /// Receives one batch. `Ok(None)`: nothing arrived within the source's
    /// wait (about 100 ms), or nothing is queued when `nonblocking`.
    fn recv_batch(&mut self, nonblocking: bool) -> io::Result<Option<Batch<'_>>>;
    /// Facts about the last receive call.
    fn last(&self) -> RecvStats;
    /// Exact cumulative count of packets the kernel dropped at this source
    /// (socket buffer or packet ring full).
    fn kernel_drops(&mut self) -> io::Result<u64>;
    /// Adaptive UDP GRO (socket backend): whether it is on now, and how
    /// many times it was switched.
    fn gro_state(&self) -> Option<(bool, u64)> {
        None
    }
    /// Times a packet ring froze because every block was held (rings only).
    fn ring_freezes(&self) -> u64 {
        0
    }
    /// Times the kernel found the AF_XDP fill ring empty (AF_XDP only).
    fn fill_ring_empty(&self) -> u64 {
        0
    }
    /// Ring blocks the kernel retired while it was losing packets (rings only).
    fn losing_blocks(&self) -> u64 {
        0
    }
    /// Of [`kernel_drops`](Self::kernel_drops), those for a full receive
    /// ring and those for want of a buffer to copy into, where the kernel
    /// tells them apart (AF_XDP).
    fn drop_detail(&mut self) -> Option<(u64, u64)> {
        None
    }
    /// Packets a filter run in user space refused (a file's `--filter`).
    fn filtered(&self) -> u64 {
        0
    }
    /// Whether the source has nothing more to give, ever (the end of its
    /// files): the receive thread then ends, and the capture with it.
    fn finished(&self) -> bool {
        false
    }
    /// Busy polling: times the device went unpolled for longer than
    /// [`POLL_GAP_NS`] (the receiving thread was elsewhere: preempted, or
    /// the machine took its core), and their total length.
    fn poll_gaps(&self) -> Option<(u64, u64)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_gaps_count_only_long_ones() {
        let mut g = PollGaps::default();
        for t in [1_000, 50_000, 149_000, 400_000, 400_100, 1_400_100] {
            g.poll(t);
        }
        // 149 µs → 400 µs (251 µs) and 400.1 µs → 1400.1 µs (1 ms).
        assert_eq!((g.count, g.total_ns), (2, 251_000 + 1_000_000));
    }
}
