//! The `uring` backend: the same UDP socket as `socket`, read by one
//! io_uring multishot `recvmsg` into a ring of provided buffers. One
//! submission, many completions; a batch is every completion one wait
//! collected, its packets views into the buffers, which go back to the
//! ring when the next batch is asked for.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};

use super::socket::{SocketOptions, SocketSetup, open_udp_socket, split_gro};
use super::{RecvStats, Source};
use crate::packet::{Batch, PacketMeta};
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

/// Reads a kernel sockaddr (as bytes) into an address; `None` when unknown.
pub fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET => {
            let a: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port)))
        }
        libc::AF_INET6 => {
            let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port, 0, scope)))
        }
        _ => None,
    }
}

/// Reads the control messages linecap asks for: (timestamp ns, GRO segment size).
pub fn parse_control(mut c: &[u8]) -> (u64, u16) {
    let (mut ts, mut seg) = (0, 0);
    let hdr = 16; // cmsghdr on 64-bit Linux: len (8), level (4), type (4)
    while c.len() >= hdr {
        let len = u64::from_ne_bytes(c[0..8].try_into().expect("8")) as usize;
        let level = i32::from_ne_bytes(c[8..12].try_into().expect("4"));
        let ty = i32::from_ne_bytes(c[12..16].try_into().expect("4"));
        if len < hdr || len > c.len() {
            break;
        }
        let data = &c[hdr..len];
        match (level, ty) {
            (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) if data.len() >= 16 => {
                let s = u64::from_ne_bytes(data[0..8].try_into().expect("8"));
                let ns = u64::from_ne_bytes(data[8..16].try_into().expect("8"));
                // Saturating: the words are the kernel's, but a parser
                // never trusts arithmetic on what it reads.
                ts = s.saturating_mul(1_000_000_000).saturating_add(ns);
            }
            (libc::SOL_UDP, libc::UDP_GRO) if data.len() >= 4 => {
                seg = i32::from_ne_bytes(data[0..4].try_into().expect("4")) as u16;
            }
            _ => {}
        }
        c = &c[len.next_multiple_of(8).min(c.len())..];
    }
    (ts, seg)
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
        let mut stats = RecvStats { datagrams: n as u64, ..RecvStats::default() };
        let slab_start = self.recv.slab().as_ptr() as usize;
        for c in self.recv.completions() {
            let buf = self.recv.buffer(c);
            let Ok(out) = io_uring::types::RecvMsgOut::parse(buf, self.recv.msghdr()) else {
                stats.truncated += 1;
                continue;
            };
            stats.truncated += u64::from(out.is_payload_truncated());
            let (ts, seg) = parse_control(out.control_data());
            let payload = out.payload_data();
            let offset = (payload.as_ptr() as usize - slab_start) as u32;
            let msg = self.sources.len() as u32;
            self.sources.push(parse_sockaddr(out.name_data()));
            split_gro(&mut self.metas, offset, payload.len() as u32, seg, ts, msg);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_bytes() {
        let mut b = vec![0u8; 16];
        b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&9000u16.to_be_bytes());
        b[4..8].copy_from_slice(&[198, 18, 0, 1]);
        assert_eq!(parse_sockaddr(&b), Some("198.18.0.1:9000".parse().unwrap()));
        assert_eq!(parse_sockaddr(&b[..3]), None);
        assert_eq!(parse_sockaddr(&[0u8; 16]), None);
    }

    #[test]
    fn control_messages() {
        let mut c = Vec::new();
        // SCM_TIMESTAMPNS: len 32 (16 header + 16 timespec)
        c.extend_from_slice(&32u64.to_ne_bytes());
        c.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        c.extend_from_slice(&libc::SCM_TIMESTAMPNS.to_ne_bytes());
        c.extend_from_slice(&5u64.to_ne_bytes());
        c.extend_from_slice(&7u64.to_ne_bytes());
        // UDP_GRO: len 20, padded to 24
        c.extend_from_slice(&20u64.to_ne_bytes());
        c.extend_from_slice(&libc::SOL_UDP.to_ne_bytes());
        c.extend_from_slice(&libc::UDP_GRO.to_ne_bytes());
        c.extend_from_slice(&272i32.to_ne_bytes());
        c.extend_from_slice(&[0; 4]);
        assert_eq!(parse_control(&c), (5_000_000_007, 272));
        assert_eq!(parse_control(&c[..20]), (0, 0), "truncated");
        assert_eq!(parse_control(&[0xff; 40]), (0, 0));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let _ = parse_control(&data);
            let _ = parse_sockaddr(&data);
        }
    }
}
