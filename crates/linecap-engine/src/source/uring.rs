//! The `uring` backend: the same UDP socket as `socket`, read by one
//! io_uring multishot `recvmsg` into a ring of provided buffers. One
//! submission, many completions; a batch is every completion one wait
//! collected, its packets views into the buffers, which go back to the
//! ring when the next batch is asked for.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use super::socket::{SocketOptions, SocketSetup, open_udp_socket, split_gro};
use super::{RecvStats, Source};
use crate::packet::{Batch, PacketMeta};
use crate::sys::cmsg::{parse_control, parse_sockaddr};
use crate::sys::{self, uring::UringRecv};

/// Buffers in the ring (a power of two).
pub const BUFFERS: u16 = 4096;
const PLAIN_BUF: usize = 2048;
const GRO_BUF: usize = 65_536 + 256;

/// A UDP socket read through io_uring.
pub struct UringSource {
    // Dropped before `fd`: the ring must stop using the socket first.
    recv: UringRecv,
    fd: OwnedFd,
    setup: SocketSetup,
    metas: Vec<PacketMeta>,
    sources: Vec<Option<SocketAddr>>,
    last: RecvStats,
}

impl UringSource {
    /// Opens the socket as the `socket` backend does and arms the ring.
    pub fn open(opts: &SocketOptions) -> io::Result<Self> {
        let (fd, setup) = open_udp_socket(opts)?;
        let size = if setup.gro { GRO_BUF } else { PLAIN_BUF };
        let recv = UringRecv::new(fd.as_raw_fd(), BUFFERS, size)?;
        Ok(Self {
            recv,
            fd,
            setup,
            metas: Vec::with_capacity(BUFFERS as usize * 2),
            sources: Vec::with_capacity(BUFFERS as usize),
            last: RecvStats::default(),
        })
    }

    /// What the socket was given.
    pub fn setup(&self) -> &SocketSetup {
        &self.setup
    }

    /// Times the multishot receive ran out of buffers and was re-armed.
    pub fn rearms(&self) -> u64 {
        self.recv.rearms()
    }
}

impl Source for UringSource {
    fn recv_batch(&mut self, nonblocking: bool) -> io::Result<Option<Batch<'_>>> {
        self.recv.recycle();
        let n = self.recv.wait(if nonblocking { 0 } else { 100 })?;
        if n == 0 {
            return Ok(None);
        }
        self.metas.clear();
        self.sources.clear();
        // One io_uring_enter per batch (waiting for or reaping completions).
        let mut stats = RecvStats { datagrams: n as u64, syscalls: 1, ..RecvStats::default() };
        let slab_start = self.recv.slab().as_ptr() as usize;
        for c in self.recv.completions() {
            let buf = self.recv.buffer(c);
            let Ok(out) = io_uring::types::RecvMsgOut::parse(buf, self.recv.msghdr()) else {
                stats.truncated += 1;
                continue;
            };
            stats.truncated += u64::from(out.is_payload_truncated());
            let control = parse_control(out.control_data());
            let payload = out.payload_data();
            let offset = (payload.as_ptr() as usize - slab_start) as u32;
            let msg = self.sources.len() as u32;
            self.sources.push(parse_sockaddr(out.name_data()));
            split_gro(&mut self.metas, offset, payload.len() as u32, control.gro_segment, control.ts_ns, msg);
        }
        self.last = stats;
        Ok(Some(Batch::new(self.recv.slab(), &self.metas, &self.sources, self.setup.local)))
    }

    fn last(&self) -> RecvStats {
        self.last
    }

    fn kernel_drops(&mut self) -> io::Result<u64> {
        sys::socket_drops(&self.fd)
    }
}
