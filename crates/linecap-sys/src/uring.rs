//! io_uring multishot receive with a provided-buffer ring.
//!
//! One submission receives many datagrams: the kernel picks a buffer from
//! the ring for each and posts a completion naming the buffer. What goes in
//! the buffer is the [`Layout`]'s choice: with [`Layout::Header`] (a
//! multishot `recvmsg`) an `io_uring_recvmsg_out` header, the sender's
//! address, control messages and the payload; with [`Layout::Payload`] (a
//! multishot `recv`) the payload alone. Buffers named by completions belong to user
//! space until [`UringRecv::recycle`] puts them back in the ring. When the
//! ring runs dry the kernel ends the multishot request (`ENOBUFS`, no
//! `F_MORE`); it is re-armed on the next wait.
//!
//! Needs Linux ≥ 6.0 (multishot receive); [`UringRecv::new`] probes and
//! says so when io_uring is missing or disabled.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, types};

const BGID: u16 = 7;
const USER_DATA: u64 = 0x0001_1ca9;
/// The user data of the cancel that ends the receive.
const CANCEL: u64 = USER_DATA + 1;
/// How long ending the receive may wait for its last completion.
const END_WAIT_MS: u64 = 200;
/// Completions a wait asks for before it returns (Linux 6.13's minimum
/// wait lets it return earlier with fewer, see [`MIN_WAIT_US`]).
const BATCH_WANT: usize = 64;
/// How long a wait that has a completion waits for more (µs): the latency
/// a slow stream pays. Measured against one wake-up per completion (the
/// bench's FIFO NAPI thread and `sendmmsg` sender): 2.1× → 3.0× the plain
/// `recvmmsg` loop's delivered share, and the receive thread at 0.79× the
/// loop's cost per packet at 250 kpps (docs/BENCHMARKS.md, session 9).
const MIN_WAIT_US: u32 = 50;
/// Room for the sender's address (sockaddr_in6).
pub const NAME_LEN: u32 = 28;
/// Room for control messages (timestamp, GRO segment size).
pub const CONTROL_LEN: u32 = 64;

/// What the kernel writes into each buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A multishot `recvmsg`: header, sender's address and control messages
    /// before the payload (parse with `io_uring::types::RecvMsgOut`).
    Header,
    /// A multishot `recv` with `MSG_TRUNC`: the payload at the buffer's
    /// start, the completion's length the datagram's whole length (longer
    /// than the buffer when it was cut). The kernel writes no header per
    /// datagram and the wait parses none.
    Payload,
}

/// One completed receive: which buffer, how many bytes, or the error.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    /// Buffer id.
    pub bid: u16,
    /// Bytes written into the buffer ([`Layout::Payload`]: the datagram's
    /// length, which may exceed the buffer's).
    pub len: usize,
}

/// A multishot receive on one socket with its buffer ring.
pub struct UringRecv {
    ring: IoUring,
    fd: RawFd,
    entries: u16,
    buf_size: usize,
    ring_mem: NonNull<BufRingEntry>,
    ring_len: usize,
    bufs: NonNull<u8>,
    bufs_len: usize,
    msghdr: Box<libc::msghdr>,
    layout: Layout,
    tail: u16,
    armed: bool,
    /// [`UringRecv::stop`] ended the receive for good.
    stopped: bool,
    /// Completions come as deferred task work, run only by a wait.
    deferred: bool,
    /// A ring made disabled (deferred task work) was enabled by its thread.
    enabled: bool,
    /// The last wait brought a whole batch: the socket has more queued.
    behind: bool,
    completions: Vec<Completion>,
    rearms: u64,
}

// SAFETY: the ring, buffer memory and msghdr are owned by this value and
// only touched through it (and by the kernel on its behalf).
unsafe impl Send for UringRecv {}

fn anon_map(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh private anonymous mapping; no aliasing possible.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl UringRecv {
    /// Sets up a ring for socket `fd` with `entries` buffers (a power of
    /// two) of `buf_size` bytes each, and arms the multishot receive.
    pub fn new(fd: RawFd, entries: u16, buf_size: usize, layout: Layout) -> io::Result<Self> {
        if !entries.is_power_of_two() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "buffer count must be a power of two"));
        }
        // Completions run as deferred task work, only when the receive
        // thread asks for them: the NAPI context then queues work without
        // waking the thread per datagram. Such a ring belongs to one task,
        // fixed when it is enabled: the receive thread, at its first wait.
        let deferred =
            IoUring::builder().setup_single_issuer().setup_defer_taskrun().setup_r_disabled().build(256).ok();
        let enabled = deferred.is_none();
        let ring = deferred.map_or_else(|| IoUring::new(256), Ok).map_err(|e| {
            let hint = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|v| format!(" (kernel.io_uring_disabled = {})", v.trim()))
                .unwrap_or_default();
            io::Error::new(e.kind(), format!("io_uring is unavailable{hint}: {e}; use --backend socket"))
        })?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::RecvMsgMulti::CODE) || !crate::kernel_at_least(6, 0) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring multishot receive needs Linux 6.0 or newer; use --backend socket",
            ));
        }
        let ring_len = (entries as usize * size_of::<BufRingEntry>()).next_multiple_of(4096);
        let ring_mem = anon_map(ring_len)?.cast::<BufRingEntry>();
        let bufs_len = entries as usize * buf_size;
        let bufs = anon_map(bufs_len)?;
        // SAFETY: all-zero is a valid msghdr; only the two lengths matter
        // for a multishot recvmsg (the buffers come from the ring).
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = NAME_LEN;
        msghdr.msg_controllen = CONTROL_LEN as usize;
        let mut me = Self {
            ring,
            fd,
            entries,
            buf_size,
            ring_mem,
            ring_len,
            bufs,
            bufs_len,
            msghdr,
            layout,
            tail: 0,
            armed: false,
            stopped: false,
            deferred: !enabled,
            enabled,
            behind: false,
            completions: Vec::with_capacity(entries as usize),
            rearms: 0,
        };
        // SAFETY: `ring_mem` is a page-aligned mapping of `entries` entries
        // that lives as long as `me` (unregistered only by dropping the ring).
        unsafe {
            me.ring.submitter().register_buf_ring_with_flags(me.ring_mem.as_ptr() as u64, entries, BGID, 0)?
        };
        for bid in 0..entries {
            me.push_buffer(bid);
        }
        me.publish_tail();
        me.arm()?;
        Ok(me)
    }

    fn push_buffer(&mut self, bid: u16) {
        let slot = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: `slot` < entries, inside the ring mapping; the kernel only
        // reads entries between its head and our published tail, and this
        // one is past the tail until `publish_tail`.
        let e = unsafe { &mut *self.ring_mem.as_ptr().add(slot) };
        // SAFETY: `bid * buf_size` is inside the buffer mapping.
        e.set_addr(unsafe { self.bufs.as_ptr().add(bid as usize * self.buf_size) } as u64);
        e.set_len(self.buf_size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish_tail(&mut self) {
        // SAFETY: the tail is the 16-bit `resv` field of entry 0, inside the
        // mapping and 2-aligned; the kernel reads it, so store atomically with
        // release ordering after the entries were written.
        let tail = unsafe { &*BufRingEntry::tail(self.ring_mem.as_ptr()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    fn arm(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.fd);
        let sqe = match self.layout {
            Layout::Header => opcode::RecvMsgMulti::new(fd, &*self.msghdr, BGID).build(),
            Layout::Payload => opcode::RecvMulti::new(fd, BGID).flags(libc::MSG_TRUNC).build(),
        }
        .user_data(USER_DATA);
        // SAFETY: the msghdr is boxed in `self` and outlives the request
        // (the ring is dropped before it); the fd stays open while `self` lives.
        unsafe { self.ring.submission().push(&sqe).map_err(|_| io::Error::other("submission queue full"))? };
        self.armed = true;
        Ok(())
    }

    /// Times the multishot request ended and was re-armed (ring ran dry).
    pub fn rearms(&self) -> u64 {
        self.rearms
    }

    /// Waits up to `timeout_ms` (0: no wait) for completions and collects
    /// them. Returns how many datagrams arrived.
    pub fn wait(&mut self, timeout_ms: u32) -> io::Result<usize> {
        if !self.enabled {
            self.ring.submitter().register_enable_rings()?;
            self.enabled = true;
        }
        if self.stopped {
            self.completions.clear();
            return Ok(0);
        }
        if !self.armed {
            self.arm()?;
            self.rearms += 1;
        }
        let ts = Timespec::new().nsec(timeout_ms * 1_000_000);
        let mut args = SubmitArgs::new().timespec(&ts);
        // Deferred task work runs only in a wait: even a zero one asks.
        let mut want = usize::from(timeout_ms > 0 || self.deferred);
        if timeout_ms > 0 && !self.behind && self.deferred && self.ring.params().is_feature_min_timeout() {
            // Wake for a batch, or for what came within MIN_WAIT_US of the
            // first datagram: one wake-up per datagram starved a receive
            // thread that shares its core with the NAPI thread. Not while
            // behind: the datagrams are queued already, and a thread that
            // sleeps then leaves its share of the core to the NAPI thread.
            want = BATCH_WANT;
            args = args.min_wait_usec(MIN_WAIT_US);
        }
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        self.completions.clear();
        self.reap(true)?;
        self.behind = self.completions.len() >= BATCH_WANT;
        Ok(self.completions.len())
    }

    /// Takes every posted completion: the receive's datagrams into
    /// `completions` (their buffers straight back into the ring unless
    /// `keep`), its end noted (`armed` false), a failure returned.
    fn reap(&mut self, keep: bool) -> io::Result<()> {
        let mut error = None;
        for cqe in self.ring.completion() {
            if cqe.user_data() != USER_DATA {
                continue; // the cancel's own completion
            }
            let flags = cqe.flags();
            if !cqueue::more(flags) {
                self.armed = false;
            }
            let res = cqe.result();
            match cqueue::buffer_select(flags) {
                // An error that still consumed a buffer comes with length 0.
                Some(bid) => self.completions.push(Completion { bid, len: res.max(0) as usize }),
                None if res == -libc::ENOBUFS || res == -libc::ECANCELED || res >= 0 => {}
                None => error = Some(io::Error::from_raw_os_error(-res)),
            }
        }
        if !keep {
            self.recycle();
        }
        error.map_or(Ok(()), Err)
    }

    /// Ends the receive for good and keeps what it took: afterwards
    /// [`UringRecv::completions`] holds the datagrams it completed since
    /// the last wait (whose buffers go back to the ring first), and every
    /// later datagram stays queued on the socket for whoever reads it
    /// next. Waits at most 200 ms for the end; `wait` then returns nothing.
    pub fn stop(&mut self) -> io::Result<usize> {
        self.recycle();
        self.end_receive(true)?;
        self.stopped = true;
        Ok(self.completions.len())
    }

    /// Completions of the last wait.
    pub fn completions(&self) -> &[Completion] {
        &self.completions
    }

    /// All buffers, as one slab (completed buffers are offsets into it).
    pub fn slab(&self) -> &[u8] {
        // SAFETY: the mapping is `bufs_len` bytes and lives as long as `self`.
        // The kernel writes only buffers it owns (in the ring); the ones named
        // by completions are ours until `recycle`, and this borrow ends
        // before `recycle` (which takes `&mut self`).
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr(), self.bufs_len) }
    }

    /// The bytes of a completed buffer (what it holds: a datagram longer
    /// than the buffer was cut).
    pub fn buffer(&self, c: &Completion) -> &[u8] {
        let start = c.bid as usize * self.buf_size;
        &self.slab()[start..start + c.len.min(self.buf_size)]
    }

    /// Size of one buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// The msghdr the kernel lays each buffer out with (for parsing).
    pub fn msghdr(&self) -> &libc::msghdr {
        &self.msghdr
    }

    /// Puts every buffer of the last wait back in the ring.
    pub fn recycle(&mut self) {
        if self.completions.is_empty() {
            return;
        }
        for i in 0..self.completions.len() {
            let bid = self.completions[i].bid;
            self.push_buffer(bid);
        }
        self.completions.clear();
        self.publish_tail();
    }
}

impl UringRecv {
    /// Cancels the multishot receive and waits (at most 200 ms) for its
    /// last completion, keeping the datagrams it completed meanwhile
    /// (`keep`) or giving their buffers back. The request holds the socket,
    /// and a ring is torn down asynchronously after it closes: without this
    /// the port stayed bound for a while after the capture ended (a next
    /// capture on it failed with "address in use", seen with deferred task
    /// work).
    fn end_receive(&mut self, keep: bool) -> io::Result<()> {
        if !self.armed || !self.enabled {
            return Ok(());
        }
        let sqe = opcode::AsyncCancel::new(USER_DATA).build().user_data(CANCEL);
        // SAFETY: a cancel names the request by its user data; it points at nothing.
        if unsafe { self.ring.submission().push(&sqe) }.is_err() {
            return Err(io::Error::other("submission queue full"));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(END_WAIT_MS);
        while self.armed && std::time::Instant::now() < deadline {
            let ts = Timespec::new().nsec(10_000_000);
            match self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts)) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            self.reap(keep)?;
        }
        if self.armed {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the io_uring receive did not end"));
        }
        Ok(())
    }
}

impl Drop for UringRecv {
    fn drop(&mut self) {
        let _ = self.end_receive(false);
        // Unregister before unmapping, so the kernel stops using the memory.
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
        // SAFETY: unmapping the two regions mapped in `new`; no borrow of
        // them outlives `self`.
        unsafe {
            libc::munmap(self.ring_mem.as_ptr().cast(), self.ring_len);
            libc::munmap(self.bufs.as_ptr().cast(), self.bufs_len);
        }
    }
}
