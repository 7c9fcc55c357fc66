//! The `uring` backend: the same UDP socket as `socket`, read by one
//! io_uring multishot receive into a ring of provided buffers. One
//! submission, many completions; a batch is every completion one wait
//! collected, its packets views into the buffers, which go back to the
//! ring when the next batch is asked for. A multishot `recvmsg` (a header
//! per datagram) only when a sink wants the sender's address or a control
//! message (timestamps, GRO segment sizes); else a multishot `recv`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use super::socket::{SocketOptions, SocketSetup, open_udp_socket, split_gro};
use super::{RecvStats, Source};
use crate::packet::{Batch, PacketMeta};
use crate::sys;
use crate::sys::cmsg::{parse_control, parse_sockaddr};
use crate::sys::uring::{Completion, Layout, UringRecv};

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
    layout: Layout,
    metas: Vec<PacketMeta>,
    sources: Vec<Option<SocketAddr>>,
    last: RecvStats,
}

impl UringSource {
    /// Opens the socket as the `socket` backend does and arms the ring.
    pub fn open(opts: &SocketOptions) -> io::Result<Self> {
        let (fd, setup) = open_udp_socket(opts)?;
        let size = if setup.gro { GRO_BUF } else { PLAIN_BUF };
        // Pay for the per-datagram header only where something reads it.
        let layout =
            if opts.sources || opts.timestamps || setup.gro { Layout::Header } else { Layout::Payload };
        let recv = UringRecv::new(fd.as_raw_fd(), BUFFERS, size, layout)?;
        Ok(Self {
            recv,
            fd,
            setup,
            layout,
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

/// The packet views of the completions of `recv`'s last wait, written as
/// `layout` says, one message (and sender) per completion.
pub(crate) fn describe(
    recv: &UringRecv,
    layout: Layout,
    metas: &mut Vec<PacketMeta>,
    sources: &mut Vec<Option<SocketAddr>>,
    stats: &mut RecvStats,
) {
    match layout {
        Layout::Header => describe_headers(recv, metas, sources, stats),
        Layout::Payload => describe_payloads(recv, metas, sources, stats),
    }
}

/// Buffers of a multishot `recvmsg`: header, address, control, payload.
fn describe_headers(
    recv: &UringRecv,
    metas: &mut Vec<PacketMeta>,
    sources: &mut Vec<Option<SocketAddr>>,
    stats: &mut RecvStats,
) {
    let slab_start = recv.slab().as_ptr() as usize;
    for c in recv.completions() {
        let buf = recv.buffer(c);
        let Ok(out) = io_uring::types::RecvMsgOut::parse(buf, recv.msghdr()) else {
            stats.truncated += 1;
            continue;
        };
        stats.truncated += u64::from(out.is_payload_truncated());
        let control = parse_control(out.control_data());
        let payload = out.payload_data();
        let offset = (payload.as_ptr() as usize - slab_start) as u32;
        let msg = sources.len() as u32;
        sources.push(parse_sockaddr(out.name_data()));
        split_gro(metas, offset, payload.len() as u32, control.gro_segment, control.ts_ns, msg);
    }
}

/// Buffers of a multishot `recv`: each the payload alone, at its start.
fn describe_payloads(
    recv: &UringRecv,
    metas: &mut Vec<PacketMeta>,
    sources: &mut Vec<Option<SocketAddr>>,
    stats: &mut RecvStats,
) {
    let size = recv.buf_size();
    for &Completion { bid, len } in recv.completions() {
        stats.truncated += u64::from(len > size);
        let msg = sources.len() as u32;
        sources.push(None);
        split_gro(metas, (bid as usize * size) as u32, len.min(size) as u32, 0, 0, msg);
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
        describe(&self.recv, self.layout, &mut self.metas, &mut self.sources, &mut stats);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn options(sources: bool) -> SocketOptions {
        let mut opts = SocketOptions::new("127.0.0.1:0".parse().unwrap());
        opts.gro = false;
        opts.rcvbuf = 1 << 20;
        opts.sources = sources;
        opts
    }

    /// Sends datagrams of these lengths (each filled with its index) and
    /// returns every packet the source delivers, with the truncations it counted.
    fn round_trip(src: &mut UringSource, lens: &[usize]) -> (Vec<Vec<u8>>, Vec<Option<SocketAddr>>, u64) {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for (i, &len) in lens.iter().enumerate() {
            tx.send_to(&vec![i as u8; len], src.setup().local).unwrap();
        }
        let (mut got, mut from, mut truncated) = (Vec::new(), Vec::new(), 0);
        while got.len() < lens.len() {
            let Some(b) = src.recv_batch(false).unwrap() else { continue };
            for p in b.iter() {
                got.push(p.data.to_vec());
                from.push(p.src);
            }
            truncated += src.last().truncated;
        }
        (got, from, truncated)
    }

    /// Without a sink that wants addresses or control messages the kernel
    /// writes the payload alone; a datagram longer than a buffer is cut to
    /// it and counted, as with a header.
    #[test]
    fn payloads_alone_unless_a_sink_wants_the_header() {
        let lens = [100, PLAIN_BUF + 900, 272];
        for sources in [false, true] {
            let mut src = UringSource::open(&options(sources)).expect("io_uring on this kernel");
            let expect = if sources { Layout::Header } else { Layout::Payload };
            assert_eq!(src.layout, expect);
            let (got, from, truncated) = round_trip(&mut src, &lens);
            assert_eq!(truncated, 1, "sources {sources}");
            assert_eq!(got[0], vec![0u8; 100]);
            assert_eq!(got[2], vec![2u8; 272]);
            // Cut to what the buffer holds (less the header, with one).
            assert!(got[1].len() < PLAIN_BUF + 900 && got[1].len() > PLAIN_BUF - 200, "{}", got[1].len());
            assert!(got[1].iter().all(|&b| b == 1));
            assert_eq!(from.iter().all(Option::is_some), sources);
        }
    }
}
