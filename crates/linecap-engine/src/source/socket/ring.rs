//! [`RecvMode::Auto`](super::RecvMode::Auto)'s receive of a socket without
//! UDP GRO: one io_uring multishot receive into a ring of provided buffers
//! (see [`crate::sys::uring`]).
//!
//! Why not `recvmmsg`: each of its messages costs the kernel a header
//! copied in from user space and lengths written back, and the thread a
//! wake-up per call. Against the plain `recvmmsg` loop, the `uring` backend
//! measured 0.70× its receive thread's time per datagram at 250 kpps, the
//! same delivered share at 2.35 Mpps from the kernel generator, and 2.3×
//! its share under a real-time NAPI thread (docs/BENCHMARKS.md, session 10).
//! While GRO is on the socket stays with `recvmmsg`, whose control messages
//! carry the segment sizes.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{PLAIN_SLOT, SocketOptions};
use crate::packet::PacketMeta;
use crate::source::RecvStats;
use crate::sys::uring::{Layout, UringRecv};

/// Buffers in a ring: a wait takes up to this many datagrams (then the
/// receive ends with `ENOBUFS` and is re-armed at the next wait; the
/// datagrams wait on the socket meanwhile, nothing is lost).
const BUFFERS: u16 = 512;

/// How a ring for a socket with these options lays its buffers out: a
/// header only where a sink wants the sender or a timestamp.
pub(super) fn layout(opts: &SocketOptions) -> Layout {
    if opts.sources || opts.timestamps { Layout::Header } else { Layout::Payload }
}

/// A socket's multishot receive.
pub(super) struct Ring {
    recv: UringRecv,
    layout: Layout,
    stopped: bool,
}

impl Ring {
    /// Arms a receive on `fd`, each buffer a jumbo datagram's size, as
    /// `recvmmsg`'s slots without GRO (no datagram is cut that it would keep).
    pub(super) fn open(fd: &OwnedFd, layout: Layout) -> io::Result<Self> {
        let recv = UringRecv::new(fd.as_raw_fd(), BUFFERS, PLAIN_SLOT, layout)?;
        Ok(Self { recv, layout, stopped: false })
    }

    /// Datagrams one wait may return.
    pub(super) fn capacity(&self) -> usize {
        usize::from(BUFFERS)
    }

    /// The previous batch's buffers back to the kernel, then the datagrams
    /// that came (up to the socket's 100 ms unless `nonblocking`).
    pub(super) fn wait(&mut self, nonblocking: bool) -> io::Result<usize> {
        self.recv.recycle();
        self.recv.wait(if nonblocking { 0 } else { 100 })
    }

    /// Ends the receive, keeping what it took: returns how many datagrams
    /// [`Ring::describe`] will give. Every later datagram stays on the socket.
    pub(super) fn stop(&mut self) -> io::Result<usize> {
        let n = self.recv.stop()?;
        self.stopped = true;
        Ok(n)
    }

    /// The receive ended ([`Ring::stop`]).
    pub(super) fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Packet views of the last wait's (or the stop's) datagrams.
    pub(super) fn describe(
        &self,
        metas: &mut Vec<PacketMeta>,
        sources: &mut Vec<Option<SocketAddr>>,
        stats: &mut RecvStats,
    ) {
        crate::source::uring::describe(&self.recv, self.layout, metas, sources, stats);
    }

    /// The buffers the views point into.
    pub(super) fn slab(&self) -> &[u8] {
        self.recv.slab()
    }
}
