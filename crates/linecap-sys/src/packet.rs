//! AF_PACKET with a TPACKET_V3 receive ring: socket, ring setup, the
//! mmap'd blocks and their hand-over protocol with the kernel.
//!
//! The ring is `block_nr` blocks of `block_size` bytes. The kernel fills a
//! block with packets, then *retires* it (full, or after the retire timeout)
//! by setting `TP_STATUS_USER` in the block header; user space reads the
//! block and hands it back by writing `TP_STATUS_KERNEL`. Between those two
//! stores the block belongs to user space alone: that is what makes the
//! `&[u8]` view of [`Ring::block`] sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::cvt;

const SOL_PACKET: i32 = 263;
const PACKET_RX_RING: i32 = 5;
const PACKET_STATISTICS: i32 = 6;
const PACKET_VERSION: i32 = 10;
const PACKET_FANOUT: i32 = 18;
const PACKET_IGNORE_OUTGOING: i32 = 23;
const PACKET_VNET_HDR: i32 = 15;

/// The `virtio_net_hdr` the kernel writes just before each frame's link
/// header once [`set_vnet_hdr`] is on (little-endian on every host linecap
/// runs on: the kernel writes it in the host's order for a packet socket).
pub mod vnet {
    /// Bytes of the header.
    pub const SIZE: usize = 10;
    /// Offset of `gso_type`.
    pub const GSO_TYPE: usize = 1;
    /// Offset of `gso_size` (u16).
    pub const GSO_SIZE: usize = 4;
    /// `VIRTIO_NET_HDR_GSO_UDP_L4`: a UDP GRO super-packet of `gso_size` segments.
    pub const GSO_UDP_L4: u8 = 5;
}
const TPACKET_V3: i32 = 2;
const ETH_P_ALL: u16 = 0x0003;

/// Block status: owned by the kernel.
pub const TP_STATUS_KERNEL: u32 = 0;
/// Block status: retired, owned by user space.
pub const TP_STATUS_USER: u32 = 1;
/// Block status: the ring dropped packets while this block was open.
pub const TP_STATUS_LOSING: u32 = 1 << 2;
/// Packet status: `tp_vlan_tci` holds a stripped VLAN tag.
pub const TP_STATUS_VLAN_VALID: u32 = 1 << 4;

/// Offsets in a block descriptor (`struct tpacket_block_desc`).
pub mod block {
    /// `hdr.bh1.block_status`.
    pub const STATUS: usize = 8;
    /// `hdr.bh1.num_pkts`.
    pub const NUM_PKTS: usize = 12;
    /// `hdr.bh1.offset_to_first_pkt`.
    pub const FIRST: usize = 16;
    /// `hdr.bh1.blk_len`.
    pub const LEN: usize = 20;
    /// `hdr.bh1.seq_num`.
    pub const SEQ: usize = 24;
}

/// Offsets in a packet header (`struct tpacket3_hdr`, 48 bytes).
pub mod pkt {
    /// `tp_next_offset`.
    pub const NEXT: usize = 0;
    /// `tp_sec`.
    pub const SEC: usize = 4;
    /// `tp_nsec`.
    pub const NSEC: usize = 8;
    /// `tp_snaplen`: bytes captured.
    pub const SNAPLEN: usize = 12;
    /// `tp_len`: bytes on the wire.
    pub const LEN: usize = 16;
    /// `tp_status`.
    pub const STATUS: usize = 20;
    /// `tp_mac`: offset of the link header from the packet header.
    pub const MAC: usize = 24;
    /// `hv1.tp_vlan_tci`.
    pub const VLAN_TCI: usize = 32;
    /// Size of the header.
    pub const SIZE: usize = 48;
}

#[repr(C)]
#[derive(Default)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}
const _: () = assert!(size_of::<TpacketReq3>() == 28);

#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}
const _: () = assert!(size_of::<TpacketStatsV3>() == 12);

/// `PACKET_STATISTICS` since the last read (the kernel clears on read).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PacketStats {
    /// Packets that reached the socket (including drops).
    pub packets: u64,
    /// Packets the ring had no room for.
    pub drops: u64,
    /// Times the ring froze because user space held every block.
    pub freeze_q_cnt: u64,
}

/// Geometry of a receive ring.
#[derive(Debug, Clone, Copy)]
pub struct RingSpec {
    /// Bytes per block (a multiple of the page size).
    pub block_size: u32,
    /// Number of blocks.
    pub block_nr: u32,
    /// Frame size used by the kernel to validate the geometry.
    pub frame_size: u32,
    /// Milliseconds after which a partly filled block is retired.
    pub retire_ms: u32,
}

/// Opens a raw AF_PACKET socket receiving every protocol, close-on-exec.
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; the fd is owned below.
    let fd = cvt(unsafe {
        libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(ETH_P_ALL.to_be()))
    })?;
    // SAFETY: `fd` was just returned by socket() and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The index of an interface of the current network namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 { Err(io::Error::last_os_error()) } else { Ok(idx) }
}

/// Whether an interface is administratively up (`IFF_UP`).
pub fn if_is_up(name: &str) -> io::Result<bool> {
    let sock = super::udp_socket(&std::net::SocketAddr::from(([0, 0, 0, 0], 0)))?;
    // SAFETY: all-zero is a valid ifreq.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: `ifr` is a valid ifreq; SIOCGIFFLAGS writes ifru_flags only.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) })?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok(flags & libc::IFF_UP as libc::c_short != 0)
}

/// Selects TPACKET_V3 (must precede the ring setup).
pub fn set_v3(fd: &impl AsRawFd) -> io::Result<()> {
    super::setsockopt_int(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V3)
}

/// Asks for a `virtio_net_hdr` before each frame (before the ring is set
/// up): it gives a GRO super-packet's segment size (Linux 6.2 for UDP; an
/// older kernel drops such a frame, counted). See [`vnet`].
pub fn set_vnet_hdr(fd: &impl AsRawFd) -> io::Result<()> {
    super::setsockopt_int(fd, SOL_PACKET, PACKET_VNET_HDR, 1)
}

/// Binds the socket to one interface.
pub fn bind_iface(fd: &impl AsRawFd, ifindex: u32) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
    cvt(unsafe {
        libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), size_of::<libc::sockaddr_ll>() as libc::socklen_t)
    })
    .map(drop)
}

/// Ignores packets this host sends on the interface (Linux ≥ 4.20): a
/// capture of what arrives must not count our own replies (ICMP...).
pub fn ignore_outgoing(fd: &impl AsRawFd) -> io::Result<()> {
    super::setsockopt_int(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
}

/// Joins a fanout group: `mode` is a `PACKET_FANOUT_*` value, `flags` its flags.
pub fn join_fanout(fd: &impl AsRawFd, group: u16, mode: u16, flags: u16) -> io::Result<()> {
    let arg = i32::from(group) | (i32::from(mode | flags) << 16);
    super::setsockopt_int(fd, SOL_PACKET, PACKET_FANOUT, arg)
}

/// Reads and clears `PACKET_STATISTICS`.
pub fn packet_stats(fd: &impl AsRawFd) -> io::Result<PacketStats> {
    let mut st = TpacketStatsV3::default();
    let mut len = size_of::<TpacketStatsV3>() as libc::socklen_t;
    // SAFETY: `st` is writable for `len` bytes.
    cvt(unsafe {
        libc::getsockopt(fd.as_raw_fd(), SOL_PACKET, PACKET_STATISTICS, (&raw mut st).cast(), &mut len)
    })?;
    Ok(PacketStats {
        packets: u64::from(st.packets),
        drops: u64::from(st.drops),
        freeze_q_cnt: u64::from(st.freeze_q_cnt),
    })
}

/// Attaches a classic BPF program (`SO_ATTACH_FILTER`); instructions are
/// `(code, jt, jf, k)` as in `tcpdump -ddd`.
pub fn attach_filter(fd: &impl AsRawFd, prog: &[(u16, u8, u8, u32)]) -> io::Result<()> {
    attach_cbpf(fd, libc::SO_ATTACH_FILTER, prog)
}

/// Attaches a classic BPF program that picks, for each datagram, which
/// socket of the `SO_REUSEPORT` group gets it (`SO_ATTACH_REUSEPORT_CBPF`,
/// Linux 4.5): its return value is the socket's index in the group (the
/// order they were bound); out of range, the kernel falls back to its hash.
/// For UDP the program's data starts at the payload; headers are read at
/// `SKF_NET_OFF`.
pub fn attach_reuseport_filter(fd: &impl AsRawFd, prog: &[(u16, u8, u8, u32)]) -> io::Result<()> {
    attach_cbpf(fd, libc::SO_ATTACH_REUSEPORT_CBPF, prog)
}

fn attach_cbpf(fd: &impl AsRawFd, option: libc::c_int, prog: &[(u16, u8, u8, u32)]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> =
        prog.iter().map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k }).collect();
    let fprog = libc::sock_fprog { len: insns.len() as u16, filter: insns.as_mut_ptr() };
    // SAFETY: `fprog` points at `insns`, valid for the call; the kernel copies it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Waits until the socket is readable or `timeout_ms` passes.
pub fn poll_in(fd: &impl AsRawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN | libc::POLLERR, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    match n {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// `poll(2)` over many descriptors; `revents` are filled in place. Returns
/// how many are ready (0 on timeout or interruption).
pub fn poll_fds(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the
    // given length; poll writes only their revents.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    match n {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) }
        }
        n => Ok(n as usize),
    }
}

/// A mapped TPACKET_V3 receive ring.
pub struct Ring {
    ptr: NonNull<u8>,
    len: usize,
    block_size: usize,
    block_nr: usize,
}

// SAFETY: the mapping is owned by this value; moving it to another thread
// moves that ownership. Blocks are only read while user space owns them.
unsafe impl Send for Ring {}

impl Ring {
    /// Sets up the ring on `fd` (TPACKET_V3 selected) and maps it.
    pub fn setup(fd: &impl AsRawFd, spec: &RingSpec) -> io::Result<Self> {
        let req = TpacketReq3 {
            block_size: spec.block_size,
            block_nr: spec.block_nr,
            frame_size: spec.frame_size,
            frame_nr: (spec.block_size / spec.frame_size) * spec.block_nr,
            retire_blk_tov: spec.retire_ms,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        // SAFETY: `req` is a valid tpacket_req3 of the size passed.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_RX_RING,
                (&raw const req).cast(),
                size_of::<TpacketReq3>() as libc::socklen_t,
            )
        })?;
        let len = spec.block_size as usize * spec.block_nr as usize;
        let ptr = map_ring(fd, len)?;
        Ok(Self { ptr, len, block_size: spec.block_size as usize, block_nr: spec.block_nr as usize })
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.block_nr
    }

    fn status_cell(&self, i: usize) -> &AtomicU32 {
        assert!(i < self.block_nr);
        // SAFETY: the status word lies inside block `i` of the mapping, is
        // 4-byte aligned (blocks are page-aligned, offset 8), and the kernel
        // and we access it only atomically.
        unsafe { &*self.ptr.as_ptr().add(i * self.block_size + block::STATUS).cast::<AtomicU32>() }
    }

    /// The status of block `i` (acquire: the block's contents are visible after).
    pub fn status(&self, i: usize) -> u32 {
        self.status_cell(i).load(Ordering::Acquire)
    }

    /// The bytes of block `i`, which must be owned by user space
    /// (`status(i) & TP_STATUS_USER`); `None` otherwise.
    pub fn block(&self, i: usize) -> Option<&[u8]> {
        if self.status(i) & TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the block is inside the mapping, and user space owns it
        // until `release(i)`: the kernel does not write it meanwhile. The
        // returned borrow ends before `release` (which takes `&mut self`).
        Some(unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(i * self.block_size), self.block_size)
        })
    }

    /// Hands block `i` back to the kernel (release: our reads happen before).
    pub fn release(&mut self, i: usize) {
        self.status_cell(i).store(TP_STATUS_KERNEL, Ordering::Release);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `setup`; no borrow
        // of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

const PACKET_TX_RING: i32 = 13;
const PACKET_QDISC_BYPASS: i32 = 20;
const TPACKET_V2: i32 = 1;

/// TX frame status: free for user space to fill.
pub const TP_STATUS_AVAILABLE: u32 = 0;
/// TX frame status: filled, to be sent by the kernel.
pub const TP_STATUS_SEND_REQUEST: u32 = 1;
/// TX frame status: the kernel refused the frame.
pub const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;

/// `struct tpacket2_hdr` is 32 bytes; TX data starts right after it
/// (`TPACKET_ALIGN(sizeof(struct tpacket2_hdr))`).
const TPACKET2_HDR: usize = 32;
const TP2_LEN: usize = 4;

#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}
const _: () = assert!(size_of::<TpacketReq>() == 16);

/// Selects TPACKET_V2 (the TX ring format used here).
pub fn set_v2(fd: &impl AsRawFd) -> io::Result<()> {
    super::setsockopt_int(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2)
}

/// Sends straight to the driver, skipping the qdisc layer.
pub fn set_qdisc_bypass(fd: &impl AsRawFd) -> io::Result<()> {
    super::setsockopt_int(fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1)
}

/// The hardware address of an interface (`SIOCGIFHWADDR`).
pub fn if_hwaddr(name: &str) -> io::Result<[u8; 6]> {
    let ifr = ifreq_ioctl(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok(mac)
}

/// The IPv4 address of an interface (`SIOCGIFADDR`).
pub fn if_ipv4(name: &str) -> io::Result<std::net::Ipv4Addr> {
    let ifr = ifreq_ioctl(name, libc::SIOCGIFADDR)?;
    // SAFETY: SIOCGIFADDR filled the addr member with a sockaddr_in.
    let sa = unsafe { ifr.ifr_ifru.ifru_addr };
    // SAFETY: sockaddr and sockaddr_in have the same size; AF_INET was asked for.
    let sin: libc::sockaddr_in = unsafe { std::mem::transmute(sa) };
    Ok(std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()))
}

fn ifreq_ioctl(name: &str, req: libc::c_ulong) -> io::Result<libc::ifreq> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let sock = super::udp_socket(&std::net::SocketAddr::from(([0, 0, 0, 0], 0)))?;
    // SAFETY: all-zero is a valid ifreq.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: `ifr` is a valid ifreq with a NUL-terminated name; the
    // request writes only inside it.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), req, &mut ifr) })?;
    Ok(ifr)
}

/// Asks the kernel to send every frame marked `TP_STATUS_SEND_REQUEST`
/// (blocking: returns when they are handed to the driver). Returns bytes sent.
pub fn tx_kick(fd: &impl AsRawFd) -> io::Result<usize> {
    // SAFETY: a zero-length send on a packet socket with a TX ring only
    // triggers transmission of the ring's requested frames.
    cvt(unsafe { libc::send(fd.as_raw_fd(), std::ptr::null(), 0, 0) }).map(|n| n as usize)
}

/// A mapped TPACKET_V2 transmit ring of fixed-size frames.
pub struct TxRing {
    ptr: NonNull<u8>,
    len: usize,
    frame_size: usize,
    frame_nr: usize,
}

// SAFETY: the mapping is owned by this value; frames are written only while
// user space owns them (status AVAILABLE).
unsafe impl Send for TxRing {}

impl TxRing {
    /// Sets up the TX ring on `fd` (TPACKET_V2 selected) and maps it.
    pub fn setup(fd: &impl AsRawFd, frame_size: u32, frame_nr: u32) -> io::Result<Self> {
        let per_block = (1u32 << 20) / frame_size;
        let block_nr = frame_nr.div_ceil(per_block.max(1));
        let req = TpacketReq { block_size: 1 << 20, block_nr, frame_size, frame_nr: block_nr * per_block };
        // SAFETY: `req` is a valid tpacket_req of the size passed.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_TX_RING,
                (&raw const req).cast(),
                size_of::<TpacketReq>() as libc::socklen_t,
            )
        })?;
        let len = (1usize << 20) * block_nr as usize;
        let ptr = map_ring(fd, len)?;
        Ok(Self { ptr, len, frame_size: frame_size as usize, frame_nr: req.frame_nr as usize })
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.frame_nr
    }

    /// Largest frame that fits.
    pub fn max_frame(&self) -> usize {
        self.frame_size - TPACKET2_HDR
    }

    fn base(&self, i: usize) -> *mut u8 {
        assert!(i < self.frame_nr);
        // Frames never straddle blocks: 1 MiB blocks hold whole frames.
        let per_block = (1usize << 20) / self.frame_size;
        let off = (i / per_block) * (1 << 20) + (i % per_block) * self.frame_size;
        // SAFETY: `off + frame_size` is inside the mapping (i < frame_nr).
        unsafe { self.ptr.as_ptr().add(off) }
    }

    fn status_cell(&self, i: usize) -> &AtomicU32 {
        // SAFETY: tp_status is the first, 4-aligned word of frame `i`, which
        // the kernel and we access atomically.
        unsafe { &*self.base(i).cast::<AtomicU32>() }
    }

    /// Status of frame `i`.
    pub fn status(&self, i: usize) -> u32 {
        self.status_cell(i).load(Ordering::Acquire)
    }

    /// The data area of frame `i` if user space owns it (AVAILABLE or a
    /// refused WRONG_FORMAT frame), to fill.
    pub fn data_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let st = self.status(i);
        if st != TP_STATUS_AVAILABLE && st & TP_STATUS_WRONG_FORMAT == 0 {
            return None;
        }
        let n = self.max_frame();
        // SAFETY: the frame is owned by user space (status checked above)
        // until `submit`; the area after the header is inside the frame.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base(i).add(TPACKET2_HDR), n) })
    }

    /// Marks frame `i` (filled with `len` bytes) for sending.
    pub fn submit(&mut self, i: usize, len: usize) {
        // SAFETY: tp_len is a u32 at offset 4 of the frame, owned by user
        // space until the status store below publishes it (release).
        unsafe { self.base(i).add(TP2_LEN).cast::<u32>().write_volatile(len as u32) };
        self.status_cell(i).store(TP_STATUS_SEND_REQUEST, Ordering::Release);
    }
}

impl Drop for TxRing {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `setup`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A raw AF_PACKET socket bound to one interface, sending whole frames
/// (tests and fault injection: mixed traffic, malformed frames).
pub struct RawSender {
    fd: OwnedFd,
    ifindex: u32,
}

impl RawSender {
    /// Opens a sender on interface `iface` of the current network namespace.
    pub fn open(iface: &str) -> io::Result<Self> {
        let ifindex = if_index(iface)?;
        let fd = packet_socket()?;
        bind_iface(&fd, ifindex)?;
        Ok(Self { fd, ifindex })
    }

    /// Sends one Ethernet frame as it is.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(frame.get(..6).unwrap_or(&[0; 6]));
        // SAFETY: `frame` and `sll` are valid for the call; the kernel copies them.
        cvt(unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })
        .map(drop)
    }
}

/// Maps the ring the kernel just allocated for a packet socket (after
/// PACKET_RX_RING / PACKET_TX_RING), `len` bytes, shared and prefaulted.
fn map_ring(fd: &impl AsRawFd, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh mapping (no address hint) of the socket's ring, of
    // exactly the size the kernel allocated; MAP_SHARED as packet rings require.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}
