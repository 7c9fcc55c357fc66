//! Batched datagram I/O: `recvmmsg`/`recvmsg` into a pre-allocated slab and
//! `sendmmsg` out of one, with the control messages linecap needs (receive
//! timestamps, socket drop counts, UDP GRO segment size, UDP GSO segment size).
//!
//! The header arrays point into buffers owned by the same struct; they are
//! heap allocations that never move or grow after construction, so the
//! pointers stay valid for the struct's whole life.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use super::{cvt, from_sockaddr};

/// Bytes of control buffer per message: timestamp (32) + drop count (24) +
/// GRO segment size (24), rounded up with room to spare.
const CTRL_WORDS: usize = 16;

/// What the kernel told us about one received datagram.
#[derive(Clone, Copy, Debug, Default)]
pub struct RxMeta {
    /// Bytes written into the slot (a GRO super-packet may hold many datagrams).
    pub len: usize,
    /// Segment size of a GRO super-packet (0 when not coalesced).
    pub gso_size: u16,
    /// Kernel receive timestamp, ns since the epoch (0 when absent).
    pub ts_ns: u64,
    /// The datagram was longer than the slot and was cut.
    pub truncated: bool,
}

/// What a receive asks the kernel to fill in besides the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wants {
    /// The sender's address (`msg_name`).
    pub names: bool,
    /// Control messages (timestamps, GRO segment size).
    pub control: bool,
}

/// A receive batch: `vlen` slots of `slot_size` bytes each.
pub struct MmsgRx {
    wants: Wants,
    slot_size: usize,
    slab: Vec<u8>,
    _iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    ctrl: Vec<[u64; CTRL_WORDS]>,
    hdrs: Vec<libc::mmsghdr>,
    meta: Vec<RxMeta>,
    filled: usize,
}

// SAFETY: the raw pointers inside `hdrs`/`_iovs` point only into heap buffers
// owned by this struct; moving the struct to another thread moves ownership of
// those buffers with it and nothing else aliases them.
unsafe impl Send for MmsgRx {}

impl MmsgRx {
    /// Allocates `vlen` slots of `slot_size` bytes; the kernel writes names
    /// and control messages only if `wants` says so.
    pub fn new(vlen: usize, slot_size: usize, wants: Wants) -> Self {
        let vlen = vlen.max(1);
        let mut slab = vec![0u8; vlen * slot_size];
        // SAFETY: all-zero is a valid sockaddr_storage / mmsghdr.
        let mut names: Vec<libc::sockaddr_storage> = (0..vlen).map(|_| unsafe { zeroed() }).collect();
        let mut ctrl = vec![[0u64; CTRL_WORDS]; vlen];
        let mut iovs: Vec<libc::iovec> = slab
            .chunks_mut(slot_size)
            .map(|c| libc::iovec { iov_base: c.as_mut_ptr().cast(), iov_len: c.len() })
            .collect();
        // SAFETY: all-zero is a valid mmsghdr; the pointers are set just below.
        let mut hdrs: Vec<libc::mmsghdr> = (0..vlen).map(|_| unsafe { zeroed() }).collect();
        for i in 0..vlen {
            let h = &mut hdrs[i].msg_hdr;
            h.msg_iov = &raw mut iovs[i];
            h.msg_iovlen = 1;
            if wants.names {
                h.msg_name = (&raw mut names[i]).cast();
                h.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            }
            if wants.control {
                h.msg_control = ctrl[i].as_mut_ptr().cast();
                h.msg_controllen = size_of::<[u64; CTRL_WORDS]>();
            }
        }
        Self {
            wants,
            slot_size,
            slab,
            _iovs: iovs,
            names,
            ctrl,
            hdrs,
            meta: vec![RxMeta::default(); vlen],
            filled: 0,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Size of one slot.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    fn reset(&mut self, n: usize) {
        let namelen = if self.wants.names { size_of::<libc::sockaddr_storage>() as u32 } else { 0 };
        let controllen = if self.wants.control { size_of::<[u64; CTRL_WORDS]>() } else { 0 };
        for (h, c) in self.hdrs.iter_mut().zip(self.ctrl.iter_mut()).take(n) {
            h.msg_hdr.msg_namelen = namelen;
            h.msg_hdr.msg_controllen = controllen;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
            c[0] = 0;
        }
    }

    /// Receives up to `max` datagrams with one `recvmmsg` call
    /// (`MSG_WAITFORONE`: blocks for the first, takes what else is queued).
    /// With `max == 1` it uses a single `recvmsg`, the naive baseline.
    pub fn recv(&mut self, fd: &impl AsRawFd, max: usize, nonblocking: bool) -> io::Result<usize> {
        let max = max.clamp(1, self.capacity());
        self.reset(self.filled.max(1));
        self.filled = 0;
        let n = if max == 1 {
            let flags = if nonblocking { libc::MSG_DONTWAIT } else { 0 };
            // SAFETY: hdrs[0].msg_hdr points at our own iovec/name/control
            // buffers, valid and correctly sized (see `new`).
            let len = cvt(unsafe { libc::recvmsg(fd.as_raw_fd(), &mut self.hdrs[0].msg_hdr, flags) })?;
            self.hdrs[0].msg_len = len as u32;
            1
        } else {
            let flags = libc::MSG_WAITFORONE | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
            // SAFETY: `hdrs` holds `max` valid headers pointing into our own
            // buffers; a null timeout means no timeout.
            let n = cvt(unsafe {
                libc::recvmmsg(
                    fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    max as u32,
                    flags,
                    std::ptr::null_mut(),
                )
            })?;
            n as usize
        };
        for i in 0..n {
            self.meta[i] = self.parse(i);
        }
        self.filled = n;
        Ok(n)
    }

    fn parse(&self, i: usize) -> RxMeta {
        let h = &self.hdrs[i];
        let mut meta = RxMeta {
            len: (h.msg_len as usize).min(self.slot_size),
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            ..RxMeta::default()
        };
        if !self.wants.control {
            return meta;
        }
        let words = &self.ctrl[i];
        // SAFETY: a [u64] array is readable as its bytes (u8 has no
        // alignment or validity requirement); the kernel wrote
        // msg_controllen of them, clamped to the buffer's size.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                words.as_ptr().cast::<u8>(),
                (h.msg_hdr.msg_controllen).min(size_of_val(words)),
            )
        };
        let control = super::cmsg::parse_control(bytes);
        meta.ts_ns = control.ts_ns;
        meta.gso_size = control.gro_segment;
        meta
    }

    /// What the kernel reported for received message `i`.
    pub fn meta(&self, i: usize) -> &RxMeta {
        &self.meta[i]
    }

    /// The bytes of received message `i`.
    pub fn data(&self, i: usize) -> &[u8] {
        let start = i * self.slot_size;
        &self.slab[start..start + self.meta[i].len]
    }

    /// The whole slab (packets are offsets into it).
    pub fn slab(&self) -> &[u8] {
        &self.slab
    }

    /// The sender of received message `i` (None unless names were asked for).
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        if !self.wants.names {
            return None;
        }
        from_sockaddr(&self.names[i])
    }
}

/// A send batch: `vlen` slots of `slot_size` bytes, sent with one `sendmmsg`.
/// Each slot may carry a UDP GSO segment size, making it a super-packet the
/// kernel splits into datagrams.
pub struct MmsgTx {
    slot_size: usize,
    slab: Vec<u8>,
    iovs: Vec<libc::iovec>,
    ctrl: Vec<[u64; 4]>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: as for MmsgRx, the pointers refer only to buffers this struct owns.
unsafe impl Send for MmsgTx {}

impl MmsgTx {
    /// Allocates `vlen` slots of `slot_size` bytes.
    pub fn new(vlen: usize, slot_size: usize) -> Self {
        let vlen = vlen.max(1);
        let mut slab = vec![0u8; vlen * slot_size];
        let mut ctrl = vec![[0u64; 4]; vlen];
        let mut iovs: Vec<libc::iovec> = slab
            .chunks_mut(slot_size)
            .map(|c| libc::iovec { iov_base: c.as_mut_ptr().cast(), iov_len: c.len() })
            .collect();
        // SAFETY: all-zero is a valid mmsghdr; pointers set below.
        let mut hdrs: Vec<libc::mmsghdr> = (0..vlen).map(|_| unsafe { zeroed() }).collect();
        for i in 0..vlen {
            hdrs[i].msg_hdr.msg_iov = &raw mut iovs[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            // SAFETY: `ctrl[i]` is 32 bytes, enough for one cmsg carrying a u16.
            unsafe {
                let cm = ctrl[i].as_mut_ptr().cast::<libc::cmsghdr>();
                (*cm).cmsg_level = libc::SOL_UDP;
                (*cm).cmsg_type = libc::UDP_SEGMENT;
                (*cm).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
            }
        }
        Self { slot_size, slab, iovs, ctrl, hdrs }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// The writable bytes of slot `i`.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let start = i * self.slot_size;
        &mut self.slab[start..start + self.slot_size]
    }

    /// Sets how many bytes of slot `i` to send and, for a GSO super-packet,
    /// the segment size (`None`: a plain datagram).
    pub fn set(&mut self, i: usize, len: usize, gso_segment: Option<u16>) {
        self.iovs[i].iov_len = len.min(self.slot_size);
        let h = &mut self.hdrs[i].msg_hdr;
        match gso_segment {
            Some(seg) => {
                // SAFETY: the control buffer was initialised in `new` with a
                // UDP_SEGMENT header; CMSG_DATA points 16 bytes in, within it.
                unsafe {
                    let cm = self.ctrl[i].as_mut_ptr().cast::<libc::cmsghdr>();
                    libc::CMSG_DATA(cm).cast::<u16>().write_unaligned(seg);
                }
                h.msg_control = self.ctrl[i].as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a pure computation.
                h.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
            }
            None => {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
        }
    }

    /// Sends slots `from..from+n` on a connected socket. Returns how many
    /// messages the kernel took (it may take fewer than asked).
    pub fn send(&mut self, fd: &impl AsRawFd, from: usize, n: usize) -> io::Result<usize> {
        let n = n.min(self.capacity() - from);
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: `hdrs[from..from+n]` are valid headers pointing into our
        // buffers; the socket is connected so no address is needed.
        let sent =
            cvt(unsafe { libc::sendmmsg(fd.as_raw_fd(), self.hdrs.as_mut_ptr().add(from), n as u32, 0) })?;
        Ok(sent as usize)
    }
}

/// Most datagrams in one UDP GSO send (the kernel's UDP_MAX_SEGMENTS).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one UDP GSO send (an IPv4 datagram's limit).
const GSO_MAX_BYTES: usize = 65_507;

/// What one [`GatherTx::send`] did.
#[derive(Debug, Default)]
pub struct GatherSent {
    /// Packets the kernel took.
    pub packets: usize,
    /// Messages built (GSO super-packets count once).
    pub messages: usize,
    /// sendmmsg calls made.
    pub calls: usize,
    /// Why the rest was not sent, when it was an error (None: the socket
    /// buffer was full).
    pub error: Option<io::Error>,
    /// Messages the kernel took.
    messages_sent: usize,
}

/// Refusals in a row before the rest of a batch is given up: a connected
/// UDP socket reports an earlier datagram's ICMP error once, on a later
/// send, so one refusal is retried; two in a row mean it keeps refusing.
const MAX_REFUSALS: usize = 2;

/// Sends payloads that live elsewhere (a receive ring, a slab) without
/// copying them: one iovec per payload, runs of equal length gathered
/// into UDP GSO messages, everything in one `sendmmsg`. The pointers are
/// set and used within one call, so they never outlive the payloads.
pub struct GatherTx {
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    ctrl: Vec<[u64; 4]>,
    /// Per message: first iovec, packets, GSO segment size (0: none).
    groups: Vec<(usize, usize, u16)>,
}

// SAFETY: between calls the vectors hold no pointers anyone else uses; the
// iovec bases are cleared before `send` returns.
unsafe impl Send for GatherTx {}

impl Default for GatherTx {
    fn default() -> Self {
        Self::new()
    }
}

impl GatherTx {
    /// Empty; grows to the largest batch it is given, then stays.
    pub fn new() -> Self {
        Self { iovs: Vec::new(), hdrs: Vec::new(), ctrl: Vec::new(), groups: Vec::new() }
    }

    /// Sends payloads `get(0) .. get(n-1)` on a connected socket, in
    /// order, without waiting; with `gso`, runs of equal length go as one
    /// UDP GSO super-packet. Says how many the kernel took, and why the
    /// rest was not sent (an error, or a full socket buffer).
    pub fn send<'a>(
        &mut self,
        fd: &impl AsRawFd,
        n: usize,
        gso: bool,
        get: impl Fn(usize) -> &'a [u8],
    ) -> GatherSent {
        self.gather(n, gso, get);
        self.set_headers();
        let mut out = self.send_messages(fd);
        self.iovs.clear();
        out.packets = self.groups[..out.messages_sent].iter().map(|g| g.1).sum();
        out
    }

    /// One iovec per payload, grouped into messages (runs of equal length
    /// into GSO super-packets when `gso`).
    fn gather<'a>(&mut self, n: usize, gso: bool, get: impl Fn(usize) -> &'a [u8]) {
        self.iovs.clear();
        self.groups.clear();
        let mut i = 0;
        while i < n {
            let p = get(i);
            let first = self.iovs.len();
            self.iovs.push(libc::iovec { iov_base: p.as_ptr().cast_mut().cast(), iov_len: p.len() });
            let mut k = 1;
            if gso && !p.is_empty() {
                while i + k < n
                    && k < GSO_MAX_SEGMENTS
                    && (k + 1) * p.len() <= GSO_MAX_BYTES
                    && get(i + k).len() == p.len()
                {
                    let q = get(i + k);
                    self.iovs.push(libc::iovec { iov_base: q.as_ptr().cast_mut().cast(), iov_len: q.len() });
                    k += 1;
                }
            }
            // p.len() <= GSO_MAX_BYTES < u16::MAX whenever k > 1.
            self.groups.push((first, k, if k > 1 { p.len() as u16 } else { 0 }));
            i += k;
        }
    }

    /// Points each message's header at its iovecs, with a UDP_SEGMENT
    /// control message for a super-packet.
    fn set_headers(&mut self) {
        let msgs = self.groups.len();
        if self.hdrs.len() < msgs {
            // SAFETY: all-zero is a valid mmsghdr; its pointers are set below.
            self.hdrs.resize_with(msgs, || unsafe { zeroed() });
            self.ctrl.resize(msgs, [0; 4]);
        }
        for (m, &(first, k, seg)) in self.groups.iter().enumerate() {
            let h = &mut self.hdrs[m].msg_hdr;
            h.msg_iov = &raw mut self.iovs[first];
            h.msg_iovlen = k;
            if seg > 0 {
                // SAFETY: `ctrl[m]` is 32 bytes, room for one cmsg carrying a
                // u16; the CMSG_* macros compute offsets within it.
                unsafe {
                    let cm = self.ctrl[m].as_mut_ptr().cast::<libc::cmsghdr>();
                    (*cm).cmsg_level = libc::SOL_UDP;
                    (*cm).cmsg_type = libc::UDP_SEGMENT;
                    (*cm).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                    libc::CMSG_DATA(cm).cast::<u16>().write_unaligned(seg);
                    h.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
                }
                h.msg_control = self.ctrl[m].as_mut_ptr().cast();
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
        }
    }

    /// `sendmmsg` until every message went, the socket is full, or an error.
    fn send_messages(&mut self, fd: &impl AsRawFd) -> GatherSent {
        let msgs = self.groups.len();
        let mut out = GatherSent { messages: msgs, ..GatherSent::default() };
        let mut from = 0;
        let mut refusals = 0;
        // Bounded: each call either makes progress or is a refusal, and
        // refusals in a row are bounded.
        while from < msgs {
            out.calls += 1;
            // SAFETY: hdrs[from..msgs] point at iovecs whose bases are the
            // payloads `gather` took in this same `send` call, borrowed by its
            // caller until `send` returns; the socket is connected, so no
            // address is needed.
            let r = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(from),
                    (msgs - from) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                // Partial: the next call sends the rest or says why not.
                from += r as usize;
                refusals = 0;
                out.error = None;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // Reported once; this message was not sent: try it again.
                Some(libc::ECONNREFUSED) => {
                    out.error = Some(e);
                    refusals += 1;
                    if refusals >= MAX_REFUSALS {
                        break;
                    }
                }
                Some(libc::EAGAIN | libc::ENOBUFS) => {
                    out.error = None;
                    break;
                }
                _ => {
                    out.error = Some(e);
                    break;
                }
            }
        }
        out.messages_sent = from;
        out
    }
}

#[cfg(test)]
mod gather_tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn gathers_equal_runs_into_gso_and_keeps_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        // 70 payloads of 100 bytes (two GSO messages: 64 + 6), then 3 odd sizes.
        let mut payloads: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; 100]).collect();
        payloads.extend([vec![200u8; 10], vec![201u8; 20], vec![202u8; 20]]);
        let mut g = GatherTx::new();
        let sent = g.send(&tx, payloads.len(), true, |i| &payloads[i]);
        assert!(sent.error.is_none(), "{sent:?}");
        assert_eq!((sent.packets, sent.messages), (73, 4), "64 + 6 + 1 + 2 (the equal 20-byte pair)");
        let mut buf = [0u8; 2048];
        for p in &payloads {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &p[..], "in order, byte for byte");
        }
        // Without GSO: one message per payload.
        let sent = g.send(&tx, 5, false, |i| &payloads[i]);
        assert_eq!((sent.packets, sent.messages), (5, 5));
    }
}
