//! The `xdp` backend: linecap's XDP program redirects the capture's flow
//! (UDP to the listen port) from one receive queue into an AF_XDP socket;
//! everything else goes on to the kernel. A batch is the rx descriptors
//! one call finds; packets are views into the UMEM; the frames go back on
//! the fill ring when the next batch is asked for.
//!
//! Two sockets per queue share one UMEM and fill ring: the program sends
//! frames of the fixed layout (Ethernet II, IPv4 without options, UDP,
//! nothing after the datagram) to the first, every other frame of the flow
//! to the second. A fixed-layout batch is described from its descriptors
//! alone: the receive thread never reads a frame no sink reads. Measured
//! on the FIFO-NAPI testbed at 2.35 Mpps (xdp-live), builds alternated:
//! with every frame parsed the receive thread spent 1.47× the minimal
//! loop's time per packet and delivered 0.86× its share, with the lanes
//! 0.99× and 1.00× (docs/BENCHMARKS.md, session 11). The program is attached
//! through a BPF link, so it is detached when linecap exits, even on a
//! crash. Native (driver) mode first, generic mode as a fallback that says so.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::{KernelRefusal, PollGaps, RecvStats, Source};
use crate::bpf::insn::to_bytes;
use crate::bpf::xdp::{Match, ParsedLane, XDP_PASS, redirect_program};
use crate::format::l2l4::{self, Decoded};
use crate::loan::FramePool;
use crate::packet::{Batch, FLAG_UDP, PacketMeta};
use crate::sys::xsk::{XdpStats, XskRx, XskSideRx};
use crate::sys::{self, bpf};

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// Packets per busy poll of the device (as the kernel's NAPI weight). 256
/// (veth's whole ring in one poll) lost more, not less: measured 0.98–1.6 M
/// of 14.1 M frames against 12 k–2.7 M with 64, interleaved, each poll
/// then often outlasting 100 µs.
const BUSY_POLL_BUDGET: u32 = 64;

/// Options of an XDP source.
#[derive(Debug, Clone)]
pub struct XdpOptions {
    /// Interface.
    pub iface: String,
    /// Receive queue (the first, with `queues` > 1).
    pub queue: u32,
    /// Sockets, one per queue from `queue` on.
    pub queues: u32,
    /// The flow: UDP destination port, and address when not a wildcard.
    pub listen: SocketAddr,
    /// Ring entries (power of two).
    pub ring: u32,
    /// Frame size (2048 or 4096).
    pub frame_size: u32,
    /// Packets per batch.
    pub batch: usize,
    /// Busy polling: microseconds per poll (None: wait in poll(2)).
    pub busy_poll: Option<u32>,
    /// Replace an XDP program attached through rtnetlink (`ip link set
    /// ... xdp`). A program held by another process's BPF link is never
    /// replaced.
    pub force: bool,
    /// Frames of another layout than the fixed one (see [`ParsedLane`]) on
    /// a second socket per queue, so the rest need not be read to be
    /// described. False: one socket takes every frame (the minimal loop,
    /// as a user's libxdp program).
    pub parsed_lane: bool,
    /// Spare UMEM frames, so that a sink may keep frames past their batch
    /// (a pcap writer copies them on its own thread: see [`crate::loan`]).
    /// 0: nothing is lent.
    pub lend_frames: u32,
}

/// How the program and socket ended up running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct XdpMode {
    /// Zero-copy (else copy) AF_XDP.
    pub zero_copy: bool,
    /// Native (driver) XDP (else generic).
    pub native: bool,
}

/// An AF_XDP receiver with its program attached.
pub struct XdpSource {
    // Dropped first: the last socket of a capture to go detaches the
    // program before its socket closes.
    _attached: Arc<Attached>,
    // Closed before the socket whose UMEM it shares.
    side: Option<XskSideRx>,
    xsk: XskRx,
    /// The last batch's descriptors: its frames are the sinks' until the
    /// next call gives them back.
    held: Vec<(u64, u32)>,
    held_lane: Lane,
    /// Spare frames and frames lent past their batch (with `lend_frames`).
    pool: Option<FramePool>,
    /// The frames the last batch's go back as (with frames lent).
    fill: Vec<u64>,
    metas: Vec<PacketMeta>,
    sources: Vec<Option<SocketAddr>>,
    last: RecvStats,
    mode: XdpMode,
    batch: usize,
    busy: Option<BusyPoller>,
    /// Why the kernel refused the busy polling asked for (the socket then
    /// waits in `poll(2)`).
    busy_poll_refused: Option<KernelRefusal>,
}

/// Which rx ring a batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// The socket of the fixed-layout frames: described from the descriptor.
    Fixed,
    /// The second socket: frames of any other layout, parsed.
    Parsed,
}

/// The program, its XSKMAP and the BPF link: one per capture, shared by
/// its sockets (one per queue).
struct Attached {
    _link: OwnedFd,
    _map: OwnedFd,
}

/// Which socket's receive call busy-polls the device's NAPI context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PollThrough {
    /// Not known yet: no socket has a NAPI id.
    Unknown,
    /// The AF_XDP socket itself (drivers that give it a NAPI id).
    Xsk,
    /// The anchor UDP socket (veth gives AF_XDP sockets no NAPI id).
    Anchor,
}

/// Busy polling for an AF_XDP socket. A socket learns its NAPI id from the
/// packets it receives; on veth an AF_XDP socket never does, so busy
/// polling it would poll nothing. A UDP socket that has received one
/// datagram through the device's normal path does know the id, and a
/// receive call on it polls that NAPI context just the same: the anchor,
/// bound to the capture's port + 1 (which the XDP program passes on).
struct BusyPoller {
    anchor: Option<OwnedFd>,
    gaps: PollGaps,
    port: u16,
    through: PollThrough,
    next_check_ns: u64,
    since_ns: u64,
    hinted: bool,
}

impl BusyPoller {
    /// The busy poller of `xsk`; `Ok(Err(_))` where the kernel refuses
    /// busy polling (the capture goes on without it), `Err` where a socket
    /// cannot be had at all.
    fn open(
        o: &XdpOptions,
        usecs: u32,
        xsk: &XskRx,
        with_anchor: bool,
    ) -> io::Result<Result<Self, KernelRefusal>> {
        if let Err(e) = sys::set_busy_poll(xsk.fd(), usecs, BUSY_POLL_BUDGET) {
            return Ok(Err(KernelRefusal::busy_poll(&e)));
        }
        let port = anchor_port(o.listen.port());
        // The anchor only matters where the driver gives AF_XDP sockets no
        // NAPI id (veth): a port in use is a note, not a failure.
        let anchor = if with_anchor {
            let at = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            let anchor = sys::udp_socket(&at)?;
            match sys::bind(&anchor, &at) {
                Ok(()) => {
                    if let Err(e) = sys::set_busy_poll(&anchor, usecs, BUSY_POLL_BUDGET) {
                        return Ok(Err(KernelRefusal::busy_poll(&e)));
                    }
                    Some(anchor)
                }
                Err(e) => {
                    tracing::warn!(
                        "busy polling without an anchor socket (UDP port {port}: {e}); it works where the driver gives AF_XDP sockets a NAPI id"
                    );
                    None
                }
            }
        } else {
            None
        };
        Ok(Ok(Self {
            anchor,
            gaps: PollGaps::default(),
            port,
            through: PollThrough::Unknown,
            next_check_ns: 0,
            since_ns: sys::monotonic_ns(),
            hinted: false,
        }))
    }

    /// Polls the device once; false while no socket knows its NAPI id.
    fn poll(&mut self, xsk: &XskRx) -> bool {
        if self.through == PollThrough::Unknown {
            let now = sys::monotonic_ns();
            if now < self.next_check_ns {
                return false;
            }
            self.next_check_ns = now + 10_000_000;
            let xsk_id = sys::napi_id(xsk.fd()).unwrap_or(0);
            let anchor_id = self.anchor.as_ref().map_or(0, |a| sys::napi_id(a).unwrap_or(0));
            if xsk_id != 0 {
                self.through = PollThrough::Xsk;
                tracing::info!("busy polling NAPI context {xsk_id} through the AF_XDP socket");
            } else if anchor_id != 0 {
                self.through = PollThrough::Anchor;
                tracing::info!(
                    "busy polling NAPI context {anchor_id} through the anchor socket (port {})",
                    self.port
                );
            } else {
                if !self.hinted && self.anchor.is_some() && now > self.since_ns + 1_000_000_000 {
                    self.hinted = true;
                    tracing::warn!(
                        "busy polling waits for a NAPI id: this device gives AF_XDP none (veth); send one UDP datagram to port {} to start it",
                        self.port
                    );
                }
                return false;
            }
        }
        match (self.through, &self.anchor) {
            (PollThrough::Anchor, Some(a)) => sys::poke_recv(a),
            _ => xsk.wake(),
        }
        // Gaps between polls: while none runs, only veth's ring holds frames.
        self.gaps.poll(sys::monotonic_ns());
        true
    }
}

/// Each socket's busy poller, as asked; where the kernel refuses busy
/// polling, none (every socket waits in `poll(2)`, as without it) and why.
/// What decides a refusal (the capability, the kernel) is the same for
/// every socket of a capture, so the first socket meets it. One anchor per
/// capture (it binds the port + 1): the first socket's; the others
/// busy-poll through their own NAPI id.
fn busy_pollers(o: &XdpOptions, socks: &[(XskRx, Option<XskSideRx>)]) -> io::Result<BusyPollers> {
    let none = || socks.iter().map(|_| None).collect();
    let Some(usecs) = o.busy_poll else { return Ok((none(), None)) };
    let mut pollers = Vec::with_capacity(socks.len());
    for (i, (xsk, _)) in socks.iter().enumerate() {
        match BusyPoller::open(o, usecs, xsk, i == 0)? {
            Ok(p) => pollers.push(Some(p)),
            Err(refusal) => return Ok((none(), Some(refusal))),
        }
    }
    Ok((pollers, None))
}

/// Each socket's busy poller, or none and the kernel's refusal.
type BusyPollers = (Vec<Option<BusyPoller>>, Option<KernelRefusal>);

/// `--force`: removes an XDP program attached through rtnetlink, in either
/// mode. A program held by a BPF link (another linecap, libxdp) refuses
/// (EBUSY): that one belongs to a running process and stays.
fn replace_netlink_program(iface: &str, ifindex: u32) -> io::Result<()> {
    for mode in [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE] {
        bpf::xdp_netlink_set(ifindex, -1, mode).map_err(|e| {
            let why = if e.raw_os_error() == Some(libc::EBUSY) {
                "it is held by a BPF link of a running process (another capture?), which --force never removes: stop that process".to_string()
            } else {
                e.to_string()
            };
            io::Error::new(e.kind(), format!("cannot remove the XDP program attached to {iface}: {why}"))
        })?;
    }
    tracing::warn!("--force: removed the XDP program attached to {iface}; it is not restored at exit");
    Ok(())
}

/// The busy-poll anchor's UDP port for a capture on `port`.
pub fn anchor_port(port: u16) -> u16 {
    port.wrapping_add(1).max(1)
}

impl XdpSource {
    /// Creates the socket, the XSKMAP and program, and attaches it.
    pub fn open(o: &XdpOptions) -> io::Result<Self> {
        Ok(Self::open_all(&XdpOptions { queues: 1, ..o.clone() })?.remove(0))
    }

    /// One socket on each of the queues `queue .. queue + queues`, all fed
    /// by one program through one XSKMAP (indexed by receive queue).
    pub fn open_all(o: &XdpOptions) -> io::Result<Vec<Self>> {
        let ifindex = sys::packet::if_index(&o.iface).map_err(|_| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("interface '{}' not found in this network namespace (see 'ip link')", o.iface),
            )
        })?;
        let queues = o.queue..o.queue + o.queues.max(1);
        // Keys 0..end: each queue's socket; end..2 end: its parsed lane's.
        let lane = o.parsed_lane.then_some(ParsedLane { key_offset: queues.end, fallback: XDP_PASS });
        let slots = if lane.is_some() { 2 * queues.end } else { queues.end };
        let map = bpf::map_create(bpf::MAP_TYPE_XSKMAP, 4, 4, slots, "lc_xsks")?;
        let mut socks = Vec::with_capacity(queues.len());
        for q in queues {
            // The fill ring takes the first `ring` frames; the rest are spares.
            let xsk = XskRx::new(ifindex, q, o.ring + o.lend_frames, o.frame_size, o.ring)?;
            bpf::map_update_u32(&map, q, xsk.fd().as_raw_fd() as u32)?;
            let side = match lane {
                Some(l) => {
                    let side = xsk.open_side(ifindex, q, o.ring)?;
                    bpf::map_update_u32(&map, q + l.key_offset, side.fd().as_raw_fd() as u32)?;
                    Some(side)
                }
                None => None,
            };
            socks.push((xsk, side));
        }
        let ipv4_dst = match o.listen.ip() {
            IpAddr::V4(a) if a != Ipv4Addr::UNSPECIFIED => Some(a),
            _ => None,
        };
        let prog =
            redirect_program(Match { port: o.listen.port(), ipv4_dst }, map.as_raw_fd(), XDP_PASS, lane);
        let prog = bpf::prog_load(bpf::PROG_TYPE_XDP, bpf::ATTACH_XDP, &to_bytes(&prog), "lc_redirect")
            .map_err(|e| io::Error::other(e.to_string()))?;
        let mut attach = bpf::xdp_link(&prog, ifindex, XDP_FLAGS_DRV_MODE);
        if o.force
            && matches!(attach.as_ref().map_err(|e| e.raw_os_error()), Err(Some(libc::EBUSY | libc::EEXIST)))
        {
            replace_netlink_program(&o.iface, ifindex)?;
            attach = bpf::xdp_link(&prog, ifindex, XDP_FLAGS_DRV_MODE);
        }
        let (link, native) = match attach {
            Ok(l) => (l, true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "another XDP program is attached to {}: linecap does not replace it unless told to; detach it (ip link set dev {} xdp off) or pass --force",
                        o.iface, o.iface
                    ),
                ));
            }
            Err(_) => {
                let l = bpf::xdp_link(&prog, ifindex, XDP_FLAGS_SKB_MODE).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot attach XDP to {}: {e}; does it support XDP?", o.iface),
                    )
                })?;
                tracing::warn!("{} has no native XDP; using generic XDP (slower)", o.iface);
                (l, false)
            }
        };
        let attached = Arc::new(Attached { _link: link, _map: map });
        let (pollers, busy_poll_refused) = busy_pollers(o, &socks)?;
        let mut out = Vec::with_capacity(socks.len());
        for ((xsk, side), busy) in socks.into_iter().zip(pollers) {
            let mode = XdpMode { zero_copy: xsk.zero_copy(), native };
            let pool = (o.lend_frames > 0).then(|| {
                let spare = (o.ring..o.ring + o.lend_frames).map(|f| u64::from(f) * u64::from(o.frame_size));
                FramePool::new(xsk.umem_shared(), spare.collect())
            });
            out.push(Self {
                _attached: Arc::clone(&attached),
                side,
                xsk,
                held: Vec::with_capacity(o.batch),
                held_lane: Lane::Fixed,
                pool,
                fill: Vec::with_capacity(o.batch),
                metas: Vec::with_capacity(o.batch),
                sources: Vec::with_capacity(o.batch),
                last: RecvStats::default(),
                mode,
                batch: o.batch.max(1),
                busy,
                busy_poll_refused: busy_poll_refused.clone(),
            });
        }
        Ok(out)
    }

    /// Copy or zero-copy, native or generic.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Whether the receive thread busy-polls the device (asked and granted).
    pub fn busy_polls(&self) -> bool {
        self.busy.is_some()
    }

    /// Why the kernel refused the busy polling asked for, where it did.
    pub fn busy_poll_refused(&self) -> Option<&KernelRefusal> {
        self.busy_poll_refused.as_ref()
    }

    /// The kernel's AF_XDP counters, both sockets' together (the fill
    /// ring's count is shared, so it is the first socket's).
    pub fn stats(&self) -> io::Result<XdpStats> {
        let mut s = self.xsk.stats()?;
        if let Some(side) = &self.side {
            let t = side.stats()?;
            s.rx_dropped += t.rx_dropped;
            s.rx_ring_full += t.rx_ring_full;
            s.rx_invalid_descs += t.rx_invalid_descs;
        }
        Ok(s)
    }
}

impl XdpSource {
    /// The benchmark baseline on this socket: the minimal AF_XDP receiver
    /// a user writes with libxdp (peek the rx ring, give the frames back on
    /// the fill ring at once, `poll(2)` when empty, or one busy poll of the
    /// device when opened with `--busy-poll`), counting packets only.
    /// Returns when `stop` is set and the rx ring is empty: the syscalls
    /// it made (its waits, or busy polls, when the rx ring was empty).
    pub fn run_minimal(&mut self, stop: &std::sync::atomic::AtomicBool, mut count: impl FnMut(u64)) -> u64 {
        let mut descs = Vec::with_capacity(self.batch);
        let mut syscalls = 0;
        loop {
            let n = self.xsk.peek(&mut descs, self.batch);
            if n == 0 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return syscalls;
                }
                syscalls += 1;
                let polled = self.busy.as_mut().is_some_and(|bp| bp.poll(&self.xsk));
                if !polled {
                    let _ = sys::packet::poll_in(self.xsk.fd(), if self.busy.is_some() { 1 } else { 100 });
                }
                continue;
            }
            self.xsk.release(&descs);
            count(n as u64);
        }
    }
}

impl Source for XdpSource {
    fn recv_batch(&mut self, nonblocking: bool) -> io::Result<Option<Batch<'_>>> {
        self.release_held();
        let mut descs = std::mem::take(&mut self.held);
        let waited = self.take_frames(&mut descs, nonblocking);
        self.held = descs;
        let (n, syscalls) = waited?;
        if n == 0 {
            return Ok(None);
        }
        self.last = RecvStats { datagrams: n as u64, syscalls, ..RecvStats::default() };
        if self.held_lane == Lane::Fixed && self.side.is_some() {
            // The program vouched for the layout: nothing to read.
            let batch = Batch::fixed_frames(self.xsk.umem(), &self.held, sys::realtime_ns());
            return Ok(Some(match &self.pool {
                Some(pool) => batch.lending(pool.desk()),
                None => batch,
            }));
        }
        self.describe_frames();
        Ok(Some(Batch::new(
            self.xsk.umem(),
            &self.metas,
            &self.sources,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        )))
    }

    fn last(&self) -> RecvStats {
        self.last
    }

    /// Frames the kernel could not deliver to this socket: rx ring full,
    /// fill ring empty, other drops, invalid descriptors.
    fn kernel_drops(&mut self) -> io::Result<u64> {
        let s = self.stats()?;
        Ok(s.rx_dropped + s.rx_ring_full + s.rx_invalid_descs)
    }

    /// rx ring full; no frame on the fill ring to copy into (copy mode's
    /// `rx_dropped`: the fill ring was empty, or the frame too large).
    fn drop_detail(&mut self) -> Option<(u64, u64)> {
        self.stats().ok().map(|s| (s.rx_ring_full, s.rx_dropped))
    }

    fn poll_gaps(&self) -> Option<(u64, u64)> {
        self.busy.as_ref().map(|b| (b.gaps.count, b.gaps.total_ns))
    }

    fn fill_ring_empty(&self) -> u64 {
        self.xsk.stats().map_or(0, |s| s.rx_fill_ring_empty_descs)
    }
}

impl XdpSource {
    /// Takes up to a batch of frames from the rx ring into `descs`, waiting
    /// (or busy-polling) when it is empty: (frames, syscalls made).
    fn take_frames(&mut self, descs: &mut Vec<(u64, u32)>, nonblocking: bool) -> io::Result<(usize, u64)> {
        let (mut n, mut lane) = peek_lanes(&self.xsk, self.side.as_ref(), descs, self.batch);
        let mut syscalls = 0;
        if let (Some(bp), 0) = (&mut self.busy, n) {
            // The receive call runs the device's NAPI poll in this thread,
            // only once the rx ring is drained: a poll moves up to two
            // budgets of frames, and polling faster than this thread takes
            // them would fill the rx ring and empty the fill ring (measured:
            // 9.2 M of 23 M frames lost for want of a fill frame). Spin
            // (polling) while nothing comes.
            let until = sys::monotonic_ns() + if nonblocking { 0 } else { 100_000_000 };
            loop {
                syscalls += 1;
                if !bp.poll(&self.xsk) {
                    // No NAPI context known yet: the kernel's softirq delivers.
                    self.xsk.wake();
                    sys::packet::poll_in(self.xsk.fd(), if nonblocking { 0 } else { 1 })?;
                    syscalls += 1;
                }
                (n, lane) = peek_lanes(&self.xsk, self.side.as_ref(), descs, self.batch);
                if n > 0 || sys::monotonic_ns() >= until {
                    break;
                }
            }
        } else if n == 0 {
            // One syscall per wait, as the minimal loop: poll(2) on the
            // socket wakes a zero-copy driver itself when it asked for it
            // (and `release` wakes it when the fill ring asks); a separate
            // wake-up before each poll doubled the syscalls per packet
            // (7.3-8.8 packets per syscall against the minimal loop's
            // 15-17 at 1 Mpps) for nothing in copy mode.
            self.xsk.wait(self.side.as_ref(), if nonblocking { 0 } else { 100 })?;
            syscalls += 1;
            (n, lane) = peek_lanes(&self.xsk, self.side.as_ref(), descs, self.batch);
        }
        self.held_lane = lane;
        Ok((n, syscalls))
    }

    /// Gives the last batch's frames back to the kernel, through the rx
    /// ring they came from.
    fn release_held(&mut self) {
        let side = self.side.as_ref().filter(|_| self.held_lane == Lane::Parsed);
        match &mut self.pool {
            Some(pool) => {
                pool.reclaim();
                if pool.settle(&self.held, &mut self.fill) {
                    // Frames a sink kept stay off the fill ring; spares go in their place.
                    self.xsk.release_with(side, self.held.len(), &self.fill);
                } else {
                    release_as_taken(&mut self.xsk, side, &self.held);
                }
            }
            None => release_as_taken(&mut self.xsk, side, &self.held),
        }
        self.held.clear();
    }

    /// The batch's packet views: each frame decoded down to its UDP payload.
    fn describe_frames(&mut self) {
        self.metas.clear();
        self.sources.clear();
        let ts = sys::realtime_ns();
        let umem_len = self.xsk.umem().len() as u64;
        // Under load the frames of a batch were written long ago (the rx
        // ring holds up to 8 MiB of them) and are cold: ask for every
        // header first, so the misses overlap instead of queueing one by
        // one in the decode loop. Measured on the FIFO-NAPI testbed at
        // 2.35 Mpps: a loop that decodes each frame delivered 0.48-0.65 M
        // frames/s without this, 1.19-1.20 M with it (in 2 of 3 rounds).
        for &(addr, _) in &self.held {
            if let Some(frame) = self.xsk.umem().get(addr as usize..) {
                sys::prefetch(frame);
            }
        }
        for &(addr, len) in &self.held {
            if addr + u64::from(len) > umem_len {
                continue;
            }
            let frame = &self.xsk.umem()[addr as usize..(addr + u64::from(len)) as usize];
            let mut m = PacketMeta {
                ts_ns: ts,
                frame_offset: addr as u32,
                frame_len: len,
                wire_len: len,
                ..PacketMeta::default()
            };
            describe_parsed(&mut m, frame, addr, &mut self.sources);
            self.metas.push(m);
        }
    }
}

/// Gives `descs` back through the rx ring they came from (`side`'s, or
/// `xsk`'s own), their frames back on the fill ring.
fn release_as_taken(xsk: &mut XskRx, side: Option<&XskSideRx>, descs: &[(u64, u32)]) {
    match side {
        Some(side) => xsk.release_side(side, descs),
        None => xsk.release(descs),
    }
}

/// Up to `max` descriptors from the parsed lane (its frames are rare: it
/// goes first, so none waits behind a stream) or else the fixed one.
fn peek_lanes(
    xsk: &XskRx,
    side: Option<&XskSideRx>,
    descs: &mut Vec<(u64, u32)>,
    max: usize,
) -> (usize, Lane) {
    if let Some(side) = side {
        let n = side.peek(descs, max);
        if n > 0 {
            return (n, Lane::Parsed);
        }
    }
    (xsk.peek(descs, max), Lane::Fixed)
}

/// Fills in `m` for `frame` (at `addr` in the UMEM) from its headers,
/// its sender appended to `sources`.
fn describe_parsed(m: &mut PacketMeta, frame: &[u8], addr: u64, sources: &mut Vec<Option<SocketAddr>>) {
    m.msg = sources.len() as u32;
    match l2l4::decode(frame, None) {
        Decoded::Udp(u) => {
            m.offset = (addr as usize + u.payload_offset) as u32;
            m.len = u.payload_len as u32;
            m.flags = FLAG_UDP;
            sources.push(Some(u.src));
        }
        _ => sources.push(None),
    }
}
