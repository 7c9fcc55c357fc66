//! AF_XDP receive: a socket bound to one queue of an interface, its UMEM
//! (the frame memory shared with the kernel) and its fill and rx rings.
//!
//! Protocol: user space puts free frame addresses on the fill ring; the
//! kernel takes them, writes frames and posts `(addr, len)` descriptors on
//! the rx ring. A frame named by an rx descriptor belongs to user space
//! until its address goes back on the fill ring. Producer and consumer
//! indexes are shared words: each side writes its own with release ordering
//! and reads the other's with acquire ordering.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::cvt;
use super::shm::PageBuf;

const AF_XDP: i32 = 44;
const SOL_XDP: i32 = 283;
const XDP_MMAP_OFFSETS: i32 = 1;
const XDP_RX_RING: i32 = 2;
const XDP_UMEM_REG: i32 = 4;
const XDP_UMEM_FILL_RING: i32 = 5;
const XDP_UMEM_COMPLETION_RING: i32 = 6;
const XDP_STATISTICS: i32 = 7;
const XDP_PGOFF_RX_RING: i64 = 0;
const XDP_UMEM_PGOFF_FILL_RING: i64 = 0x1_0000_0000;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_SHARED_UMEM: u16 = 1 << 0;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_RING_NEED_WAKEUP: u32 = 1;

#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}
const _: () = assert!(size_of::<UmemReg>() == 32);

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}
const _: () = assert!(size_of::<MmapOffsets>() == 128);

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}
const _: () = assert!(size_of::<SockaddrXdp>() == 16);

/// `XDP_STATISTICS`: the kernel's counts for this socket (cumulative).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct XdpStats {
    /// Frames dropped for other reasons than the two below.
    pub rx_dropped: u64,
    /// Invalid descriptors on the rx side.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the tx side.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the tx ring was empty.
    pub tx_ring_empty_descs: u64,
}
const _: () = assert!(size_of::<XdpStats>() == 48);

/// One mapped ring: shared producer/consumer/flags words and descriptors.
struct Ring {
    map: NonNull<u8>,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut u8,
    size: u32,
}

impl Ring {
    fn map(fd: &OwnedFd, off: &RingOffset, pgoff: i64, size: u32, desc_bytes: usize) -> io::Result<Self> {
        let map_len = off.desc as usize + size as usize * desc_bytes;
        // SAFETY: mapping the ring the kernel allocated for this socket at its
        // documented page offset, of the size its offsets describe.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = p.cast::<u8>();
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS and lie inside the mapping.
        unsafe {
            Ok(Self {
                map: NonNull::new(base).ok_or_else(|| io::Error::other("mmap returned null"))?,
                map_len,
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                desc: base.add(off.desc as usize),
                size,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping, 4-aligned, shared with the kernel atomically.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }

    fn flags(&self) -> u32 {
        // SAFETY: as above.
        unsafe { &*self.flags }.load(Ordering::Acquire)
    }

    /// Copies up to `max` rx descriptors `(addr, len)` into `out` without
    /// consuming them. Returns how many.
    fn peek_rx(&self, out: &mut Vec<(u64, u32)>, max: usize) -> usize {
        out.clear();
        let cons = self.consumer().load(Ordering::Relaxed);
        let prod = self.producer().load(Ordering::Acquire);
        let n = (prod.wrapping_sub(cons) as usize).min(max);
        for i in 0..n as u32 {
            let slot = (cons.wrapping_add(i) & (self.size - 1)) as usize;
            // SAFETY: slot < size; descriptors between our consumer and the
            // kernel's producer are complete (acquire above) and ours to read.
            let (addr, len) = unsafe {
                let d = self.desc.add(slot * 16);
                (d.cast::<u64>().read_unaligned(), d.add(8).cast::<u32>().read_unaligned())
            };
            out.push((addr, len));
        }
        n
    }

    /// Hands `n` entries back to the producer.
    fn consume(&self, n: u32) {
        let cons = self.consumer().load(Ordering::Relaxed);
        self.consumer().store(cons.wrapping_add(n), Ordering::Release);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}

/// A second AF_XDP socket on an [`XskRx`]'s queue, sharing its UMEM and
/// fill ring: an rx ring of its own (see [`XskRx::open_side`]).
pub struct XskSideRx {
    // The ring is unmapped before the socket closes (field order).
    rx: Ring,
    fd: OwnedFd,
}

// SAFETY: the ring is owned by this value and used by one thread.
unsafe impl Send for XskSideRx {}

impl XskSideRx {
    /// The socket (for the XSKMAP).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// As [`XskRx::peek`], on this socket's rx ring.
    pub fn peek(&self, out: &mut Vec<(u64, u32)>, max: usize) -> usize {
        self.rx.peek_rx(out, max)
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> io::Result<XdpStats> {
        xdp_stats(&self.fd)
    }
}

/// An AF_XDP socket receiving on one queue.
pub struct XskRx {
    // Rings are unmapped before the socket closes (field order).
    fill: Ring,
    rx: Ring,
    fd: OwnedFd,
    /// Shared with whoever holds frames lent past their batch (a writer
    /// thread): the memory outlives the socket until they are done.
    umem: Arc<PageBuf>,
    frame_size: u32,
    zero_copy: bool,
}

// SAFETY: the rings and UMEM are owned by this value and used by one thread.
unsafe impl Send for XskRx {}

fn sockopt<T>(fd: &OwnedFd, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a valid value of the type the option expects, for the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            name,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Opens an AF_XDP socket, registers a UMEM of `frames` frames and sets up
/// the fill and completion rings plus one data ring (`XDP_RX_RING` or
/// `XDP_TX_RING`) of `ring` entries. Returns the socket, the UMEM and the
/// ring offsets to map.
/// The kernel pins a UMEM's pages and charges them to the locked-memory
/// limit unless CAP_IPC_LOCK is held; ENOBUFS alone does not say so.
fn umem_hint(e: io::Error, bytes: usize) -> io::Error {
    if e.raw_os_error() != Some(libc::ENOBUFS) {
        return e;
    }
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    let limit = match unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } {
        0 if lim.rlim_cur == libc::RLIM_INFINITY => "unlimited".to_string(),
        0 => format!("{} KiB", lim.rlim_cur / 1024),
        _ => "unknown".to_string(),
    };
    io::Error::new(
        e.kind(),
        format!(
            "cannot register the AF_XDP UMEM ({} KiB): {e}; it is locked memory and the limit is {limit} (ulimit -l): raise it (LimitMEMLOCK=infinity under systemd), grant CAP_IPC_LOCK, or use a smaller --xdp-ring",
            bytes / 1024
        ),
    )
}

fn open_umem(
    frames: u32,
    frame_size: u32,
    ring: u32,
    data_ring: i32,
) -> io::Result<(OwnedFd, PageBuf, MmapOffsets)> {
    // SAFETY: plain syscall; the fd is owned below.
    let raw = cvt(unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) }).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) {
            io::Error::new(e.kind(), "an AF_XDP socket needs CAP_NET_RAW (its XDP program CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON): run as root or grant them with setcap")
        } else {
            io::Error::new(e.kind(), format!("cannot open an AF_XDP socket: {e}"))
        }
    })?;
    // SAFETY: `raw` was just returned by socket() and nobody else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let umem = PageBuf::new(frames as usize * frame_size as usize)?;
    let reg = UmemReg {
        addr: umem.as_ptr() as u64,
        len: umem.len() as u64,
        chunk_size: frame_size,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    sockopt(&fd, XDP_UMEM_REG, &reg).map_err(|e| umem_hint(e, umem.len()))?;
    // Binding needs a fill ring even when only sending.
    sockopt(&fd, XDP_UMEM_FILL_RING, &ring)?;
    sockopt(&fd, XDP_UMEM_COMPLETION_RING, &ring)?;
    sockopt(&fd, data_ring, &ring)?;
    let off = mmap_offsets(&fd)?;
    Ok((fd, umem, off))
}

/// Where the socket's rings lie in their mappings (`XDP_MMAP_OFFSETS`).
fn mmap_offsets(fd: &OwnedFd) -> io::Result<MmapOffsets> {
    let mut off = MmapOffsets::default();
    let mut len = size_of::<MmapOffsets>() as libc::socklen_t;
    // SAFETY: `off` is writable for `len` bytes.
    cvt(unsafe {
        libc::getsockopt(fd.as_raw_fd(), SOL_XDP, XDP_MMAP_OFFSETS, (&raw mut off).cast(), &mut len)
    })?;
    Ok(off)
}

/// `XDP_STATISTICS` of a socket.
fn xdp_stats(fd: &OwnedFd) -> io::Result<XdpStats> {
    let mut s = XdpStats::default();
    let mut len = size_of::<XdpStats>() as libc::socklen_t;
    // SAFETY: `s` is writable for `len` bytes.
    cvt(unsafe { libc::getsockopt(fd.as_raw_fd(), SOL_XDP, XDP_STATISTICS, (&raw mut s).cast(), &mut len) })?;
    Ok(s)
}

/// Binds to (ifindex, queue): zero-copy when the driver can, copy mode
/// otherwise. Returns whether zero-copy was taken.
fn bind_queue(fd: &OwnedFd, ifindex: u32, queue: u32, extra: u16) -> io::Result<bool> {
    for (mode, zc) in [(XDP_ZEROCOPY, true), (XDP_COPY, false)] {
        let sa = SockaddrXdp {
            family: AF_XDP as u16,
            flags: mode | extra,
            ifindex,
            queue_id: queue,
            shared_umem_fd: 0,
        };
        // A socket closed a moment ago releases its queue asynchronously:
        // EBUSY for up to about a second, then the queue is free.
        let mut tries = 0;
        let e = loop {
            // SAFETY: `sa` is a valid sockaddr_xdp of the size passed.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const sa).cast(),
                    size_of::<SockaddrXdp>() as libc::socklen_t,
                )
            };
            if r == 0 {
                return Ok(zc);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBUSY) || tries >= 40 {
                break e;
            }
            tries += 1;
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        if !zc {
            let hint = match e.raw_os_error() {
                Some(libc::EINVAL) => "; does the queue exist on this interface?",
                Some(libc::EBUSY) => "; another AF_XDP socket uses this queue",
                _ => "",
            };
            return Err(io::Error::new(
                e.kind(),
                format!("cannot bind the AF_XDP socket to queue {queue}: {e}{hint}"),
            ));
        }
    }
    unreachable!("the copy-mode attempt returns")
}

impl XskRx {
    /// Creates the socket, registers `frames` frames of `frame_size` bytes
    /// (a power of two, 2048 or 4096), sets up rings of `ring` entries (a
    /// power of two), fills the fill ring and binds to (ifindex, queue):
    /// zero-copy when the driver can, copy mode otherwise.
    pub fn new(ifindex: u32, queue: u32, frames: u32, frame_size: u32, ring: u32) -> io::Result<Self> {
        let (fd, umem, off) = open_umem(frames, frame_size, ring, XDP_RX_RING)?;
        let rx = Ring::map(&fd, &off.rx, XDP_PGOFF_RX_RING, ring, 16)?;
        let fill = Ring::map(&fd, &off.fr, XDP_UMEM_PGOFF_FILL_RING, ring, 8)?;
        let mut me = Self { fill, rx, fd, umem: Arc::new(umem), frame_size, zero_copy: false };
        // Hand the kernel as many frames as the fill ring holds.
        let n = ring.min(frames);
        for i in 0..n {
            me.fill_slot(i, u64::from(i) * u64::from(frame_size));
        }
        me.fill.producer().store(n, Ordering::Release);
        me.zero_copy = bind_queue(&me.fd, ifindex, queue, XDP_USE_NEED_WAKEUP)?;
        Ok(me)
    }

    fn fill_slot(&mut self, idx: u32, addr: u64) {
        let slot = (idx & (self.fill.size - 1)) as usize;
        // SAFETY: slot < size, inside the descriptor array; this index is
        // past the published producer, so the kernel does not read it yet.
        unsafe { self.fill.desc.add(slot * 8).cast::<u64>().write_unaligned(addr) };
    }

    /// Whether the socket runs in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The socket (for the XSKMAP, poll, wakeups).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The frame memory (frames are views into it).
    pub fn umem(&self) -> &[u8] {
        &self.umem[..]
    }

    /// The frame memory, for a thread that reads frames lent to it after
    /// their batch (it stays mapped while that thread holds it). A lent
    /// frame is one this socket keeps off the fill ring until it is
    /// given back, so the kernel does not write it meanwhile.
    pub fn umem_shared(&self) -> Arc<PageBuf> {
        Arc::clone(&self.umem)
    }

    /// Consumes `consumed` descriptors from the rx ring they came from
    /// (`side`'s, or this socket's) and puts `frames` on the fill ring in
    /// their place: the same frames, or spare ones for frames still lent.
    /// `frames` must not be longer than `consumed`: the fill ring holds as
    /// many entries as frames the kernel may have.
    pub fn release_with(&mut self, side: Option<&XskSideRx>, consumed: usize, frames: &[u64]) {
        debug_assert!(frames.len() <= consumed);
        match side {
            Some(side) => side.rx.consume(consumed as u32),
            None => self.rx.consume(consumed as u32),
        }
        self.refill(frames.iter().copied());
    }

    /// Copies up to `max` rx descriptors `(addr, len)` into `out` without
    /// consuming them. Returns how many.
    pub fn peek(&self, out: &mut Vec<(u64, u32)>, max: usize) -> usize {
        self.rx.peek_rx(out, max)
    }

    /// Consumes `descs` from the rx ring and gives their frames back on the
    /// fill ring; wakes the kernel when it asked for it.
    pub fn release(&mut self, descs: &[(u64, u32)]) {
        if descs.is_empty() {
            return;
        }
        self.rx.consume(descs.len() as u32);
        self.refill(descs.iter().map(|d| d.0));
    }

    /// Consumes `descs` from `side`'s rx ring (they came from there) and
    /// gives their frames back on this socket's fill ring, which both share.
    pub fn release_side(&mut self, side: &XskSideRx, descs: &[(u64, u32)]) {
        if descs.is_empty() {
            return;
        }
        side.rx.consume(descs.len() as u32);
        self.refill(descs.iter().map(|d| d.0));
    }

    /// Opens a second socket on this socket's queue that shares its UMEM
    /// and fill ring (`XDP_SHARED_UMEM`) and has an rx ring of `ring`
    /// entries of its own: an XDP program can then sort frames between
    /// the two rx rings, and every frame still comes back through
    /// [`release`](Self::release) or [`release_side`](Self::release_side).
    pub fn open_side(&self, ifindex: u32, queue: u32, ring: u32) -> io::Result<XskSideRx> {
        // SAFETY: plain syscall; the fd is owned below.
        let raw = cvt(unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: `raw` was just returned by socket() and nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        sockopt(&fd, XDP_RX_RING, &ring)?;
        let rx = Ring::map(&fd, &mmap_offsets(&fd)?.rx, XDP_PGOFF_RX_RING, ring, 16)?;
        // A socket sharing the UMEM takes its mode from the first one and
        // may pass no mode flags of its own.
        let sa = SockaddrXdp {
            family: AF_XDP as u16,
            flags: XDP_SHARED_UMEM,
            ifindex,
            queue_id: queue,
            shared_umem_fd: self.fd.as_raw_fd() as u32,
        };
        // SAFETY: `sa` is a valid sockaddr_xdp of the size passed.
        cvt(unsafe {
            libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), size_of::<SockaddrXdp>() as libc::socklen_t)
        })
        .map_err(|e| {
            io::Error::new(e.kind(), format!("cannot bind a second AF_XDP socket to queue {queue}: {e}"))
        })?;
        Ok(XskSideRx { rx, fd })
    }

    /// Waits up to `timeout_ms` until this socket or `side` has frames.
    pub fn wait(&self, side: Option<&XskSideRx>, timeout_ms: i32) -> io::Result<()> {
        let Some(side) = side else {
            return super::packet::poll_in(&self.fd, timeout_ms).map(|_| ());
        };
        let mut fds = [&self.fd, &side.fd].map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        });
        super::packet::poll_fds(&mut fds, timeout_ms).map(|_| ())
    }

    fn refill(&mut self, addrs: impl Iterator<Item = u64>) {
        // The fill ring has room: it holds as many entries as frames in flight.
        let prod = self.fill.producer().load(Ordering::Relaxed);
        let mut n = 0u32;
        for addr in addrs {
            let frame = addr - addr % u64::from(self.frame_size);
            self.fill_slot(prod.wrapping_add(n), frame);
            n += 1;
        }
        self.fill.producer().store(prod.wrapping_add(n), Ordering::Release);
        if self.fill.flags() & XDP_RING_NEED_WAKEUP != 0 {
            self.wake();
        }
    }

    /// Asks the kernel to look at the rings (needed with need_wakeup).
    pub fn wake(&self) {
        // SAFETY: a zero-length non-blocking recvfrom only kicks the socket.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> io::Result<XdpStats> {
        xdp_stats(&self.fd)
    }
}

const XDP_TX_RING: i32 = 3;
const XDP_PGOFF_TX_RING: i64 = 0x8000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: i64 = 0x1_8000_0000;

/// An AF_XDP socket transmitting on one queue: frames are written into the
/// UMEM, posted on the tx ring, and come back on the completion ring once
/// the kernel sent them.
pub struct XskTx {
    tx: Ring,
    comp: Ring,
    fd: OwnedFd,
    umem: PageBuf,
    frame_size: u32,
    free: Vec<u64>,
    zero_copy: bool,
}

// SAFETY: the rings and UMEM are owned by this value and used by one thread.
unsafe impl Send for XskTx {}

impl XskTx {
    /// Creates the socket with `frames` frames of `frame_size` bytes and
    /// rings of `ring` entries, bound to (ifindex, queue): zero-copy when
    /// the driver can, copy mode otherwise.
    pub fn new(ifindex: u32, queue: u32, frames: u32, frame_size: u32, ring: u32) -> io::Result<Self> {
        let (fd, umem, off) = open_umem(frames, frame_size, ring, XDP_TX_RING)?;
        let tx = Ring::map(&fd, &off.tx, XDP_PGOFF_TX_RING, ring, 16)?;
        let comp = Ring::map(&fd, &off.cr, XDP_UMEM_PGOFF_COMPLETION_RING, ring, 8)?;
        let free = (0..frames.min(ring)).map(|i| u64::from(i) * u64::from(frame_size)).collect();
        let zero_copy = bind_queue(&fd, ifindex, queue, 0)?;
        Ok(Self { tx, comp, fd, umem, frame_size, free, zero_copy })
    }

    /// Whether the socket runs in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Takes back frames the kernel finished sending; returns how many.
    pub fn reclaim(&mut self) -> u64 {
        let cons = self.comp.consumer().load(Ordering::Relaxed);
        let prod = self.comp.producer().load(Ordering::Acquire);
        let n = prod.wrapping_sub(cons);
        for i in 0..n {
            let slot = (cons.wrapping_add(i) & (self.comp.size - 1)) as usize;
            // SAFETY: slot < size; entries between our consumer and the
            // kernel's producer are complete (acquire above).
            let addr = unsafe { self.comp.desc.add(slot * 8).cast::<u64>().read_unaligned() };
            self.free.push(addr);
        }
        self.comp.consumer().store(cons.wrapping_add(n), Ordering::Release);
        u64::from(n)
    }

    /// Posts up to `n` frames, each filled by `fill(frame, index)` with
    /// `len` bytes; returns how many were posted (limited by free frames
    /// and ring room). Call [`kick`](Self::kick) afterwards.
    pub fn post(&mut self, n: usize, len: usize, mut fill: impl FnMut(&mut [u8], usize)) -> usize {
        let prod = self.tx.producer().load(Ordering::Relaxed);
        let cons = self.tx.consumer().load(Ordering::Acquire);
        let room = (self.tx.size - prod.wrapping_sub(cons)) as usize;
        let n = n.min(room).min(self.free.len());
        let len = len.min(self.frame_size as usize);
        for i in 0..n {
            let addr = self.free.pop().expect("counted above");
            fill(&mut self.umem[addr as usize..addr as usize + len], i);
            let slot = (prod.wrapping_add(i as u32) & (self.tx.size - 1)) as usize;
            // SAFETY: slot < size and past the published producer: the
            // kernel does not read it until the store below.
            unsafe {
                let d = self.tx.desc.add(slot * 16);
                d.cast::<u64>().write_unaligned(addr);
                d.add(8).cast::<u32>().write_unaligned(len as u32);
                d.add(12).cast::<u32>().write_unaligned(0);
            }
        }
        self.tx.producer().store(prod.wrapping_add(n as u32), Ordering::Release);
        n
    }

    /// Asks the kernel to transmit what is posted.
    pub fn kick(&self) -> io::Result<()> {
        // SAFETY: a zero-length non-blocking send only triggers transmission.
        let r = unsafe {
            libc::sendto(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS | libc::EBUSY | libc::ENETDOWN))
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Frames not yet completed by the kernel.
    pub fn in_flight(&self, total: usize) -> usize {
        total - self.free.len()
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> io::Result<XdpStats> {
        xdp_stats(&self.fd)
    }
}
