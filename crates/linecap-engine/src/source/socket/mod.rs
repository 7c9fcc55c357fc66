//! The `socket` backend: a UDP socket read with `recvmmsg` (or one `recvmsg`
//! per packet, the naive baseline) into a pre-allocated slab.
//!
//! With UDP GRO the kernel may coalesce several datagrams of a flow into one
//! super-packet; the `UDP_GRO` control message gives the segment size and the
//! source splits it back into packets (the last may be shorter) without
//! copying. Kernel drops at the socket (receive buffer full) come, exactly,
//! from `SO_MEMINFO`, read every 100 ms. GRO that does not pay goes off on a
//! fresh socket (`swap.rs`): one that ever had it slows every UDP packet of
//! the machine until it closes.
//!
//! In [`RecvMode::Auto`] (the CLI's default) a socket without GRO is read by
//! an io_uring multishot receive instead (`ring.rs`), where the kernel has
//! one: no per-datagram message header to copy in and out, measured cheaper
//! than `recvmmsg` per datagram in every regime of the bench.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;

mod ring;
mod swap;

use super::gro::{AfterOff, GroPolicy, StreamSize, Switch};
use super::{KernelRefusal, PollGaps, RecvStats, Source};
use crate::packet::{Batch, FLAG_UDP, PacketMeta};
use crate::sys::{
    self,
    mmsg::{MmsgRx, Wants},
};

/// Largest GRO super-packet the kernel builds (64 KiB).
const GRO_SLOT: usize = 65_536;
/// Slot size without GRO: a jumbo frame's payload.
const PLAIN_SLOT: usize = 9_216;
/// The kernel coalesces at most this many segments into one super-packet.
const MAX_GRO_SEGMENTS: usize = 64;

/// How datagrams are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum RecvMode {
    /// `recvmmsg` while UDP GRO is on (its segment sizes come as control
    /// messages); an io_uring multishot receive while it is off, where the
    /// kernel allows io_uring (else `recvmmsg`); `recvmmsg` when busy polling.
    Auto,
    /// One `recvmsg` per datagram: the naive baseline.
    Recv,
    /// `recvmmsg` batches, whatever GRO does.
    Recvmmsg,
}

/// Options of a socket source.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Address and port to bind.
    pub listen: SocketAddr,
    /// Read mode.
    pub mode: RecvMode,
    /// Ask for UDP GRO super-packets.
    pub gro: bool,
    /// Switch GRO off while it does not coalesce (and probe it again when
    /// the receiver falls behind): see [`super::gro`]. False keeps it as asked.
    pub gro_adaptive: bool,
    /// Messages per `recvmmsg`.
    pub batch: usize,
    /// Requested receive buffer (bytes).
    pub rcvbuf: i32,
    /// Share the port with sibling sockets (one per thread).
    pub reuseport: bool,
    /// How the kernel spreads datagrams over the sibling sockets.
    pub spread: Spread,
    /// IPv4 multicast group to join.
    pub join: Option<Ipv4Addr>,
    /// Classic BPF program run at the UDP header (see `filter::Target::Udp`).
    pub filter: Option<Vec<crate::filter::Insn>>,
    /// Busy polling: microseconds per poll (None: block in the kernel).
    pub busy_poll: Option<u32>,
    /// Ask the kernel for a receive timestamp per datagram (a pcap needs
    /// them; nothing else does, and `SO_TIMESTAMPNS` makes the kernel stamp
    /// every packet of the machine).
    pub timestamps: bool,
    /// Ask for each datagram's sender (the verifier's flows and a pcap's
    /// synthetic headers need it; blocks and the relay do not).
    pub sources: bool,
}

impl SocketOptions {
    /// The CLI's defaults for a socket bound to `listen`: `recvmmsg` in
    /// batches of 64 while GRO is on, io_uring while it is off, adaptive
    /// UDP GRO, a 32 MiB receive buffer, no timestamps or sender addresses
    /// (ask for them if a sink needs them).
    pub fn new(listen: SocketAddr) -> Self {
        SocketOptions {
            listen,
            mode: RecvMode::Auto,
            gro: true,
            gro_adaptive: true,
            batch: 64,
            rcvbuf: 32 << 20,
            reuseport: false,
            spread: Spread::Hash,
            join: None,
            filter: None,
            busy_poll: None,
            timestamps: false,
            sources: false,
        }
    }
}

/// What the socket ended up with (the kernel may refuse or clamp requests).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SocketSetup {
    /// Bound address.
    pub local: SocketAddr,
    /// Receive buffer the kernel granted (bytes, as reported: twice the request).
    pub rcvbuf: i32,
    /// Whether SO_RCVBUFFORCE was allowed.
    pub rcvbuf_forced: bool,
    /// Whether UDP GRO is on.
    pub gro: bool,
    /// Busy polling as granted: microseconds per poll, or `None` (not
    /// asked, or refused).
    pub busy_poll: Option<u32>,
    /// Why the kernel refused the busy polling asked for: the socket then
    /// waits in the kernel as without it.
    pub busy_poll_refused: Option<KernelRefusal>,
}

/// How datagrams are spread over the sockets of a `SO_REUSEPORT` group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spread {
    /// The kernel's hash of the addresses and ports.
    #[default]
    Hash,
    /// Source port modulo the number of sockets (this many): consecutive
    /// source ports land on consecutive sockets, as a sender that spreads
    /// one stream over several flows expects (a NIC's RSS by port).
    SourcePort(u32),
}

/// `SKF_NET_OFF`: classic BPF loads at this offset read the network header.
const SKF_NET_OFF: u32 = (-0x100000i32) as u32;

/// The reuseport program of [`Spread::SourcePort`]: the UDP source port
/// (after an IPv4 header of any length, or a fixed IPv6 header) modulo
/// `sockets`.
pub fn source_port_spread(ipv6: bool, sockets: u32) -> Vec<crate::filter::Insn> {
    const LDX_MSH_B: u16 = 0xb1;
    const LD_H_IND: u16 = 0x48;
    const LD_H_ABS: u16 = 0x28;
    const MOD_K: u16 = 0x94;
    const RET_A: u16 = 0x16;
    let load_port = if ipv6 {
        vec![(LD_H_ABS, 0, 0, SKF_NET_OFF.wrapping_add(40))]
    } else {
        // X = 4 * (IHL), then A = the half-word at the network header + X.
        vec![(LDX_MSH_B, 0, 0, SKF_NET_OFF), (LD_H_IND, 0, 0, SKF_NET_OFF)]
    };
    load_port.into_iter().chain([(MOD_K, 0, 0, sockets.max(1)), (RET_A, 0, 0, 0)]).collect()
}

/// Creates, configures and binds a UDP socket as the options say (shared
/// by the recvmmsg and io_uring sources).
pub fn open_udp_socket(opts: &SocketOptions) -> io::Result<(OwnedFd, SocketSetup)> {
    let fd = sys::udp_socket(&opts.listen)?;
    if opts.reuseport {
        sys::setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    let (rcvbuf, forced) = sys::set_rcvbuf(&fd, opts.rcvbuf)?;
    // Only what a sink needs: each control message costs the kernel work
    // per datagram. The socket's drops come from SO_MEMINFO (exact), read
    // every 100 ms, so SO_RXQ_OVFL's per-datagram copy is not asked for.
    if opts.timestamps {
        sys::setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    }
    sys::set_rcvtimeo(&fd, 100_000)?;
    // A refusal is not an error: the capture goes on as without it, and
    // whoever opened the socket says so once.
    let (busy_poll, busy_poll_refused) = match opts.busy_poll {
        Some(usecs) => match sys::set_busy_poll(&fd, usecs, BUSY_POLL_BUDGET) {
            Ok(()) => (Some(usecs), None),
            Err(e) => (None, Some(KernelRefusal::busy_poll(&e))),
        },
        None => (None, None),
    };
    let gro = opts.gro && sys::setsockopt_int(&fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
    if let Some(prog) = &opts.filter {
        sys::packet::attach_filter(&fd, prog)
            .map_err(|e| io::Error::new(e.kind(), format!("the kernel refused the filter: {e}")))?;
    }
    sys::bind(&fd, &opts.listen)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {}: {e}", opts.listen)))?;
    if let Some(group) = opts.join {
        sys::join_multicast_v4(&fd, group, Ipv4Addr::UNSPECIFIED)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot join multicast group {group}: {e}")))?;
    }
    if let (true, Spread::SourcePort(n)) = (opts.reuseport, opts.spread) {
        // Every member attaches the same program: the group keeps one.
        sys::packet::attach_reuseport_filter(&fd, &source_port_spread(opts.listen.is_ipv6(), n)).map_err(
            |e| io::Error::new(e.kind(), format!("the kernel refused the reuseport program: {e}")),
        )?;
    }
    let local = sys::local_addr(&fd)?;
    Ok((fd, SocketSetup { local, rcvbuf, rcvbuf_forced: forced, gro, busy_poll, busy_poll_refused }))
}

/// Packets per busy poll of the device (as the kernel's NAPI weight).
const BUSY_POLL_BUDGET: u32 = 64;

/// What a wait on the ring left for the receive.
enum RingWait {
    /// Datagrams, described: the batch is the ring's.
    Batch,
    /// Nothing came within the wait.
    Empty,
    /// The ring ended with nothing left in it: read the socket directly.
    Ended,
}

/// A UDP socket receiving into a slab.
pub struct SocketSource {
    /// The current socket's io_uring receive ([`RecvMode::Auto`], GRO off).
    /// Declared before `fd`: it ends its receive before the socket closes.
    ring: Option<ring::Ring>,
    /// How a ring would lay out its buffers; `None` where none is used
    /// (other modes, busy polling, io_uring refused once).
    ring_layout: Option<sys::uring::Layout>,
    /// The policy turned GRO on while a ring read the socket: the ring
    /// ends first (at the next receive), then GRO goes on.
    gro_on_pending: bool,
    fd: OwnedFd,
    rx: MmsgRx,
    metas: Vec<PacketMeta>,
    sources: Vec<Option<SocketAddr>>,
    setup: SocketSetup,
    mode: RecvMode,
    batch: usize,
    last: RecvStats,
    busy_poll: bool,
    gaps: PollGaps,
    want_sources: bool,
    gro_policy: Option<GroPolicy>,
    /// Datagram sizes seen (GRO is switched off only for one size).
    stream_size: StreamSize,
    /// After a switch off: stale super-packets to split.
    after_off: AfterOff,
    /// The options to open a fresh socket with when GRO goes off (see
    /// [`swap`]); `None` where a swap could lose or double datagrams.
    swap: Option<SocketOptions>,
    /// The socket the last swap replaced, still being read.
    retiring: Option<swap::Retiring>,
    /// How long a replaced socket is read when the grace period cannot be
    /// waited for ([`swap::GRACE_NS`]; tests lengthen it).
    swap_fallback_ns: u64,
    /// Drops counted by sockets already closed.
    drops_before: u64,
}

impl SocketSource {
    /// Opens and binds the socket, with every option it asked for.
    pub fn open(opts: &SocketOptions) -> io::Result<Self> {
        let (fd, setup) = open_udp_socket(opts)?;
        let gro = setup.gro;
        let (vlen, slot) = match opts.mode {
            RecvMode::Recv => (1, if gro { GRO_SLOT } else { PLAIN_SLOT }),
            RecvMode::Recvmmsg | RecvMode::Auto => {
                (opts.batch.max(1), if gro { GRO_SLOT } else { PLAIN_SLOT })
            }
        };
        let per_msg = if gro { MAX_GRO_SEGMENTS } else { 1 };
        let rx = MmsgRx::new(vlen, slot, Wants { names: opts.sources, control: gro || opts.timestamps });
        // What the kernel granted decides how to wait: spinning on a socket
        // whose busy polling was refused would poll nothing.
        let busy_poll = setup.busy_poll;
        let ring_layout = (opts.mode == RecvMode::Auto && busy_poll.is_none()).then(|| ring::layout(opts));
        let mut me = Self {
            ring: None,
            ring_layout,
            gro_on_pending: false,
            fd,
            rx,
            metas: Vec::with_capacity(vlen * per_msg),
            sources: Vec::with_capacity(vlen),
            setup,
            mode: opts.mode,
            batch: vlen,
            busy_poll: busy_poll.is_some(),
            gaps: PollGaps::default(),
            last: RecvStats::default(),
            want_sources: opts.sources,
            gro_policy: (gro && opts.gro_adaptive).then(|| GroPolicy::new(true, sys::monotonic_ns())),
            stream_size: StreamSize::default(),
            after_off: AfterOff::default(),
            swap: swap::can_swap(opts).then(|| SocketOptions { busy_poll, ..opts.clone() }),
            retiring: None,
            swap_fallback_ns: swap::GRACE_NS,
            drops_before: 0,
        };
        if !gro {
            me.open_ring();
        }
        Ok(me)
    }

    /// Reads the current socket through io_uring from now on, where this
    /// source uses rings; one refusal and it never asks again.
    fn open_ring(&mut self) {
        let Some(layout) = self.ring_layout else { return };
        match ring::Ring::open(&self.fd, layout) {
            Ok(r) => {
                self.metas.reserve(r.capacity());
                self.sources.reserve(r.capacity());
                self.ring = Some(r);
            }
            Err(e) => {
                tracing::info!("no io_uring receive ({e}): the socket is read with recvmmsg");
                self.ring_layout = None;
            }
        }
    }

    /// What the socket was given.
    pub fn setup(&self) -> &SocketSetup {
        &self.setup
    }

    /// Feeds the GRO policy one receive of `n` messages (of at most `max`)
    /// and switches the socket as it says. Off is a fresh socket where one
    /// can be swapped in; in place (a socket of a group, a multicast
    /// member, a refused swap) it needs a stream of one datagram size (see
    /// [`StreamSize`]), and a stream of several keeps GRO for good.
    fn adapt_gro(&mut self, n: usize, max: usize) {
        let Some(policy) = &mut self.gro_policy else { return };
        // A ring's wait may bring more than a batch: that is behind too.
        let turn = policy.record(n as u64, self.metas.len() as u64, n >= max, sys::monotonic_ns());
        let result = match turn {
            Switch::Keep => return,
            Switch::On if self.ring.is_some() => {
                // The ring's buffers have no room for a segment size: it
                // ends first, at the next receive (this batch is in them).
                self.gro_on_pending = true;
                return;
            }
            Switch::On => sys::setsockopt_int(&self.fd, libc::SOL_UDP, libc::UDP_GRO, 1),
            Switch::Off if self.swap.is_some() && self.retiring.is_none() => match self.swap_socket() {
                Ok(()) => return,
                Err(e) => {
                    // Said once; from now on GRO goes off in place.
                    tracing::warn!(
                        "cannot open a fresh socket without UDP GRO ({e}); switching it off in place"
                    );
                    self.swap = None;
                    self.gro_off_in_place()
                }
            },
            Switch::Off => self.gro_off_in_place(),
        };
        if let Err(e) = result {
            // Said once; the socket stays as it is.
            tracing::warn!("the kernel refused to switch UDP GRO ({e}); keeping it as it is");
            self.gro_policy = None;
        }
    }

    /// Opens a ring once GRO went off in place on this socket and every
    /// super-packet queued before has been read (a ring's buffers would
    /// cut one).
    fn open_ring_if_gro_is_gone(&mut self) {
        let gone = self.ring_layout.is_some()
            && self.ring.is_none()
            && self.retiring.is_none()
            && self.gro_policy.as_ref().is_some_and(|p| !p.is_on())
            && self.after_off.at_risk_bytes == 0;
        if gone {
            self.open_ring();
        }
    }

    /// `UDP_GRO` off on the current socket (the kernel's GRO lookup stays
    /// on until it closes: see [`swap`]). Needs a stream of one datagram
    /// size; a stream of several keeps GRO for good.
    fn gro_off_in_place(&mut self) -> io::Result<()> {
        let Some(size) = self.stream_size.uniform() else {
            self.gro_policy = None;
            return Ok(());
        };
        sys::setsockopt_int(&self.fd, libc::SOL_UDP, libc::UDP_GRO, 0)?;
        // Whatever is queued now may hold super-packets that will come
        // without their segment size (unknown: split for good, which a
        // stream of one size allows).
        let queued = sys::socket_queued_bytes(&self.fd).unwrap_or(u64::MAX);
        self.after_off = AfterOff { at_risk_bytes: queued, size, split: self.after_off.split };
        Ok(())
    }
}

impl SocketSource {
    /// GRO off by a fresh socket without it (see [`swap`]): the old one,
    /// GRO still on, is read until no datagram can reach it any more.
    fn swap_socket(&mut self) -> io::Result<()> {
        let opts = self.swap.as_ref().expect("checked by the caller");
        let fresh = swap::fresh_socket_beside(&self.fd, opts, self.setup.local, self.setup.rcvbuf)?;
        let old = std::mem::replace(&mut self.fd, fresh);
        self.retiring = Some(swap::Retiring::start(old, self.swap_fallback_ns));
        self.open_ring();
        Ok(())
    }

    /// A batch from the current socket: its message count, 0 when none
    /// came (timeout, signal; busy polling spins until `until`).
    fn recv_current(&mut self, max: usize, nonblocking: bool, until: Option<u64>) -> io::Result<usize> {
        loop {
            if self.busy_poll {
                self.gaps.poll(sys::monotonic_ns());
            }
            match self.rx.recv(&self.fd, max, nonblocking || self.busy_poll) {
                Ok(n) => return Ok(n),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        && until.is_some_and(|u| sys::monotonic_ns() < u) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A batch from the current socket's ring.
    /// Waits on the current socket's ring and describes what came. A
    /// non-blocking receive (the capture's drain) that finds the ring empty
    /// ends it, so that the socket's own queue has the last word: then
    /// `recvmmsg` reads what is left.
    fn wait_ring(&mut self, nonblocking: bool, max: usize) -> io::Result<RingWait> {
        let ring = self.ring.as_mut().expect("checked by the caller");
        let mut n = ring.wait(nonblocking)?;
        if n == 0 {
            if !nonblocking {
                return Ok(RingWait::Empty);
            }
            n = ring.stop().unwrap_or_else(|e| {
                // Dropping the ring cancels its receive once more.
                tracing::warn!("cannot end the io_uring receive cleanly ({e}); reading on with recvmmsg");
                0
            });
            if n == 0 {
                self.ring = None;
                return Ok(RingWait::Ended);
            }
        }
        self.describe_ring(n);
        self.adapt_gro(n, max);
        Ok(RingWait::Batch)
    }

    /// Views of the `n` datagrams the ring's last wait (or its stop) brought.
    fn describe_ring(&mut self, n: usize) {
        let ring = self.ring.as_ref().expect("described while it reads");
        self.metas.clear();
        self.sources.clear();
        let mut stats = RecvStats { datagrams: n as u64, syscalls: 1, ..RecvStats::default() };
        ring.describe(&mut self.metas, &mut self.sources, &mut stats);
        self.last = stats;
    }

    /// The ring's datagrams described by the last receive or stop.
    fn ring_batch(&self) -> Batch<'_> {
        let ring = self.ring.as_ref().expect("a ring ends only after its last batch was read");
        Batch::new(ring.slab(), &self.metas, &self.sources, self.setup.local)
    }

    /// Ends the ring so that GRO can go on (a probe) and describes what it
    /// took meanwhile: returns how many datagrams (the socket's queue is
    /// read by `recvmmsg` after them). Where the receive cannot be ended
    /// the ring reads on and GRO stays off for good.
    fn end_ring_for_gro(&mut self) -> usize {
        self.gro_on_pending = false;
        let ring = self.ring.as_mut().expect("pending only while a ring reads");
        let n = match ring.stop() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("cannot end the io_uring receive for a GRO probe ({e}); keeping GRO off");
                self.gro_policy = None;
                return 0;
            }
        };
        if let Err(e) = sys::setsockopt_int(&self.fd, libc::SOL_UDP, libc::UDP_GRO, 1) {
            tracing::warn!("the kernel refused to switch UDP GRO ({e}); keeping it as it is");
            self.gro_policy = None;
        }
        self.describe_ring(n);
        n
    }

    /// A batch from the socket a swap replaced, while it has one; once it
    /// is empty and no datagram can reach it any more it closes (its drops
    /// kept) and the new socket has the port to itself.
    fn recv_retiring(&mut self, max: usize) -> Option<usize> {
        let old = self.retiring.as_ref()?;
        let unreachable = old.unreachable();
        if let Ok(n @ 1..) = self.rx.recv(&old.fd, max, true) {
            return Some(n);
        }
        if unreachable {
            let old = self.retiring.take().expect("checked above");
            self.drops_before += sys::socket_drops(&old.fd).unwrap_or(0);
            drop(old);
            if let Err(e) = swap::settle(&self.fd) {
                tracing::warn!("cannot close the port to other sockets after a GRO swap: {e}");
            }
        }
        None
    }
}

impl Source for SocketSource {
    fn last(&self) -> RecvStats {
        self.last
    }

    /// `SO_MEMINFO`'s `sk_drops`: exact, but a dropped GRO super-packet
    /// counts once; summed over the sockets GRO swaps replaced.
    fn kernel_drops(&mut self) -> io::Result<u64> {
        let retiring = match &self.retiring {
            Some(old) => sys::socket_drops(&old.fd)?,
            None => 0,
        };
        Ok(self.drops_before + retiring + sys::socket_drops(&self.fd)?)
    }

    /// Waits up to the socket's receive timeout (100 ms).
    fn poll_gaps(&self) -> Option<(u64, u64)> {
        self.busy_poll.then_some((self.gaps.count, self.gaps.total_ns))
    }

    fn gro_state(&self) -> Option<(bool, u64)> {
        self.gro_policy.as_ref().map(|p| (p.is_on(), p.switches))
    }

    fn recv_batch(&mut self, nonblocking: bool) -> io::Result<Option<Batch<'_>>> {
        let max = match self.mode {
            RecvMode::Recv => 1,
            RecvMode::Recvmmsg | RecvMode::Auto => self.batch,
        };
        // Busy polling: non-blocking receives, each of which runs the
        // device's NAPI poll in this thread when the queue is empty; spin
        // while nothing comes (up to the 100 ms a blocking receive waits).
        let until = self.busy_poll.then(|| sys::monotonic_ns() + if nonblocking { 0 } else { 100_000_000 });
        if self.gro_on_pending && self.end_ring_for_gro() > 0 {
            return Ok(Some(self.ring_batch()));
        }
        if self.ring.as_ref().is_some_and(ring::Ring::is_stopped) {
            // Ended, and its last datagrams (if any) went out already.
            self.ring = None;
        }
        let n = match self.recv_retiring(max) {
            Some(n) => n,
            None if self.ring.is_some() => match self.wait_ring(nonblocking, max)? {
                RingWait::Batch => return Ok(Some(self.ring_batch())),
                RingWait::Empty => return Ok(None),
                RingWait::Ended => self.recv_current(max, nonblocking, until)?,
            },
            None => self.recv_current(max, nonblocking, until)?,
        };
        if n == 0 {
            // The queue is empty: nothing queued before a switch is left.
            self.after_off.at_risk_bytes = 0;
            self.open_ring_if_gro_is_gone();
            return Ok(None);
        }
        self.metas.clear();
        self.sources.clear();
        let mut stats = RecvStats { datagrams: n as u64, syscalls: 1, ..RecvStats::default() };
        let slot = self.rx.slot_size();
        for i in 0..n {
            let m = *self.rx.meta(i);
            self.sources.push(if self.want_sources { self.rx.source(i) } else { None });
            stats.truncated += u64::from(m.truncated);
            let gso = if m.gso_size > 0 {
                self.stream_size.record(u32::from(m.gso_size));
                m.gso_size
            } else {
                let seg = self.after_off.segment_for(m.len as u32);
                if seg == 0 {
                    self.stream_size.record(m.len as u32);
                }
                seg
            };
            split_gro(&mut self.metas, (i * slot) as u32, m.len as u32, gso, m.ts_ns, i as u32);
        }
        self.last = stats;
        self.adapt_gro(n, max);
        self.open_ring_if_gro_is_gone();
        Ok(Some(Batch::new(self.rx.slab(), &self.metas, &self.sources, self.setup.local)))
    }
}

/// Splits one received message into packets: a GRO super-packet into
/// `gso_size` segments (the last may be shorter), anything else as is.
pub fn split_gro(out: &mut Vec<PacketMeta>, offset: u32, len: u32, gso_size: u16, ts_ns: u64, msg: u32) {
    let seg = u32::from(gso_size);
    if seg == 0 || len <= seg {
        out.push(PacketMeta {
            offset,
            len,
            ts_ns,
            msg,
            wire_len: len,
            flags: FLAG_UDP,
            ..PacketMeta::default()
        });
        return;
    }
    let mut at = 0;
    while at < len {
        let l = seg.min(len - at);
        out.push(PacketMeta {
            offset: offset + at,
            len: l,
            ts_ns,
            msg,
            wire_len: l,
            flags: FLAG_UDP,
            ..PacketMeta::default()
        });
        at += l;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::gro::WINDOW;

    #[test]
    fn split_plain_and_super() {
        let mut v = Vec::new();
        split_gro(&mut v, 100, 50, 0, 7, 0);
        assert_eq!(v.len(), 1);
        split_gro(&mut v, 1000, 1000, 272, 8, 1);
        let lens: Vec<u32> = v[1..].iter().map(|m| m.len).collect();
        assert_eq!(lens, vec![272, 272, 272, 184]);
        assert_eq!(v[4].offset, 1000 + 3 * 272);
        assert!(v[1..].iter().all(|m| m.ts_ns == 8 && m.msg == 1));
        // A super-packet exactly one segment long is a plain packet.
        let mut w = Vec::new();
        split_gro(&mut w, 0, 272, 272, 0, 0);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn loopback_round_trip() {
        let opts = SocketOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            mode: RecvMode::Recvmmsg,
            gro: true,
            gro_adaptive: true,
            batch: 8,
            rcvbuf: 1 << 20,
            reuseport: false,
            spread: Spread::Hash,
            join: None,
            filter: None,
            busy_poll: None,
            timestamps: true,
            sources: true,
        };
        let mut src = SocketSource::open(&opts).unwrap();
        let to = src.setup().local;
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            tx.send_to(&[i; 100], to).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 5 {
            let b = src.recv_batch(false).unwrap().expect("datagrams queued");
            for p in b.iter() {
                assert!(p.ts_ns > 0);
                assert_eq!(p.src, Some(tx.local_addr().unwrap()));
                got.push(p.data.to_vec());
            }
        }
        assert_eq!(got, (0..5u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
        assert!(src.recv_batch(true).unwrap().is_none());
        assert_eq!(src.kernel_drops().unwrap(), 0);
    }

    /// A source on loopback in the CLI's default mode (batches of 8, a
    /// 4 MiB buffer; a reuseport group member if asked) and a sender
    /// connected to it.
    fn loopback_source(reuseport: bool) -> (SocketSource, std::net::UdpSocket) {
        let mut opts = SocketOptions::new("127.0.0.1:0".parse().unwrap());
        opts.batch = 8;
        opts.rcvbuf = 4 << 20;
        opts.reuseport = reuseport;
        let src = SocketSource::open(&opts).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(src.setup().local).unwrap();
        (src, tx)
    }

    /// A datagram of `size` bytes whose first four carry `k`.
    fn numbered(size: usize, k: usize) -> Vec<u8> {
        let mut d = vec![0u8; size];
        d[..4].copy_from_slice(&(k as u32).to_le_bytes());
        d
    }

    /// Takes every datagram a batch holds, each once, by its number.
    fn take_numbers(src: &mut SocketSource, seen: &mut [bool]) -> usize {
        let Some(b) = src.recv_batch(true).unwrap() else { return 0 };
        let mut n = 0;
        for p in b.iter() {
            let k = u32::from_le_bytes(p.data[..4].try_into().unwrap()) as usize;
            assert!(!seen[k], "datagram {k} came twice");
            seen[k] = true;
            n += 1;
        }
        n
    }

    /// A socket of a group switches GRO off in place: a super-packet queued
    /// before the switch comes after it whole, with no segment size, and is
    /// split at the stream's one size, each datagram once.
    #[test]
    fn gro_off_in_place_splits_super_packets_queued_before_it() {
        const SIZE: usize = 272;
        // A group member: no swap, GRO goes off in place.
        let (mut src, tx) = loopback_source(true);
        let numbered = |k| numbered(SIZE, k);
        // One window of single datagrams (GRO does not pay), then a GSO
        // train of 64 that the loopback hands the GRO socket whole.
        let singles = WINDOW as usize;
        for k in 0..singles {
            tx.send(&numbered(k)).unwrap();
        }
        let mut train = sys::mmsg::MmsgTx::new(1, 64 * SIZE);
        for j in 0..64 {
            train.slot_mut(0)[j * SIZE..(j + 1) * SIZE].copy_from_slice(&numbered(singles + j));
        }
        train.set(0, 64 * SIZE, Some(SIZE as u16));
        assert_eq!(train.send(&tx, 0, 1).unwrap(), 1);
        // Then the stream goes on, queued behind the train.
        let after = 512;
        for k in 0..after {
            tx.send(&numbered(singles + 64 + k)).unwrap();
        }
        let total = singles + 64 + after;
        let mut seen = vec![false; total];
        let mut got = 0;
        while got < total {
            let n = take_numbers(&mut src, &mut seen);
            assert!(n > 0, "{got} of {total} datagrams came");
            got += n;
        }
        assert!(src.retiring.is_none(), "a group member is never swapped");
        assert_eq!(src.after_off.split, 1, "the train came whole after the switch and was split");
        assert_eq!(take_numbers(&mut src, &mut seen), 0);
        assert!(src.ring.is_some(), "once nothing stale is queued, a ring reads the socket");
        for k in 0..100 {
            tx.send(&numbered(total + k)).unwrap();
        }
        seen.resize(total + 100, false);
        let mut later = 0;
        while later < 100 {
            let n = take_numbers(&mut src, &mut seen);
            assert!(n > 0, "{later} of 100 datagrams came through the ring");
            later += n;
        }
        assert_eq!(take_numbers(&mut src, &mut seen), 0);
        assert_eq!(src.kernel_drops().unwrap(), 0);
    }

    #[test]
    fn gro_goes_off_on_a_fresh_socket_without_losing_or_doubling_a_datagram() {
        gro_swap_on("127.0.0.1:0");
        // IPv6 where the machine has a loopback for it.
        if std::net::UdpSocket::bind("[::1]:0").is_ok() {
            gro_swap_on("[::1]:0");
        }
    }

    /// A GRO probe while a ring reads the socket: the ring ends and hands
    /// over what it took, GRO goes on, and `recvmmsg` reads the rest and
    /// then a GSO train's super-packet, split; each datagram once.
    #[test]
    fn a_gro_probe_ends_the_ring_without_losing_or_doubling_a_datagram() {
        const SIZE: usize = 200;
        let (mut src, tx) = loopback_source(false);
        let numbered = |k| numbered(SIZE, k);
        const TOTAL: usize = 2000 + 600 + 64;
        let (mut seen, mut sent, mut got) = (vec![false; TOTAL], 0, 0);
        // Single datagrams until GRO has gone off on a fresh socket, read by a ring.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while (src.ring.is_none() || got < sent) && sent < 2000 && std::time::Instant::now() < deadline {
            while sent < 2000 && sent - got < 64 {
                tx.send(&numbered(sent)).unwrap();
                sent += 1;
            }
            got += take_numbers(&mut src, &mut seen);
        }
        assert!(src.ring.is_some(), "GRO went off and a ring reads the fresh socket");
        src.gro_policy = None; // no further decisions of its own
        // Datagrams in flight when the probe comes: some taken by the ring, the rest queued.
        for _ in 0..300 {
            tx.send(&numbered(sent)).unwrap();
            sent += 1;
        }
        got += take_numbers(&mut src, &mut seen);
        for _ in 0..300 {
            tx.send(&numbered(sent)).unwrap();
            sent += 1;
        }
        src.gro_on_pending = true;
        while got < sent && std::time::Instant::now() < deadline {
            got += take_numbers(&mut src, &mut seen);
        }
        assert_eq!(got, sent, "every datagram once across the ring's end");
        assert!(src.ring.is_none() && !src.gro_on_pending, "the ring ended");
        let gro = sys::getsockopt_int(&src.fd, libc::SOL_UDP, libc::UDP_GRO).unwrap();
        assert_eq!(gro, 1, "GRO is on for the probe");
        // A GSO train of 64 comes as one super-packet and is split.
        let mut train = sys::mmsg::MmsgTx::new(1, 64 * SIZE);
        for j in 0..64 {
            train.slot_mut(0)[j * SIZE..(j + 1) * SIZE].copy_from_slice(&numbered(sent + j));
        }
        train.set(0, 64 * SIZE, Some(SIZE as u16));
        assert_eq!(train.send(&tx, 0, 1).unwrap(), 1);
        sent += 64;
        while got < sent && std::time::Instant::now() < deadline {
            got += take_numbers(&mut src, &mut seen);
        }
        assert_eq!(got, sent, "the train's datagrams, each once");
        assert_eq!(src.kernel_drops().unwrap(), 0);
    }

    fn gro_swap_on(listen: &str) {
        const TOTAL: usize = 6000;
        let mut opts = SocketOptions::new(listen.parse().unwrap());
        // Small batches: the policy decides every 256 messages.
        opts.batch = 8;
        opts.rcvbuf = 4 << 20;
        let mut src = SocketSource::open(&opts).unwrap();
        // Where the kernel can wait for a grace period, the old socket must
        // close by it: the timer is put out of reach.
        let by_grace = sys::wait_rcu_grace_period().is_ok();
        if by_grace {
            src.swap_fallback_ns = 3_600_000_000_000;
        }
        let to = src.setup().local;
        let tx = std::net::UdpSocket::bind(SocketAddr::new(to.ip(), 0)).unwrap();
        let (mut seen, mut sent, mut got) = (vec![false; TOTAL], 0, 0);
        let mut swapped = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while got < TOTAL && std::time::Instant::now() < deadline {
            // At most 256 in flight: loopback never drops them.
            while sent < TOTAL && sent - got < 256 {
                let mut d = [0u8; 64];
                d[..4].copy_from_slice(&(sent as u32).to_le_bytes());
                tx.send_to(&d, to).unwrap();
                sent += 1;
            }
            got += take_numbers(&mut src, &mut seen);
            swapped |= src.retiring.is_some();
        }
        assert_eq!(got, TOTAL, "every datagram once");
        assert!(swapped, "one datagram per message: GRO goes off, on a fresh socket");
        assert!(src.ring.is_some(), "the fresh socket is read by an io_uring receive");
        let gro = sys::getsockopt_int(&src.fd, libc::SOL_UDP, libc::UDP_GRO).unwrap();
        assert_eq!(gro, 0, "the socket now read has never had GRO");
        // Once no datagram can reach it, the old socket closes with its
        // drops kept.
        if by_grace {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while src.retiring.is_some() && std::time::Instant::now() < deadline {
                assert_eq!(take_numbers(&mut src, &mut seen), 0);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        } else {
            std::thread::sleep(std::time::Duration::from_nanos(swap::GRACE_NS));
            assert_eq!(take_numbers(&mut src, &mut seen), 0);
        }
        assert!(src.retiring.is_none(), "the old socket closed (grace period waited for: {by_grace})");
        assert_eq!(src.kernel_drops().unwrap(), 0);
        let shared = sys::getsockopt_int(&src.fd, libc::SOL_SOCKET, libc::SO_REUSEPORT).unwrap();
        assert_eq!(shared, 0, "the port is not shared once the old socket is gone");
        // The port is the capture's alone again: no socket can join it.
        let other = sys::udp_socket(&to).unwrap();
        sys::setsockopt_int(&other, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1).unwrap();
        let e = sys::bind(&other, &to).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
    }
}
