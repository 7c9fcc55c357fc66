//! The `afpacket` backend: an AF_PACKET socket with a TPACKET_V3 receive
//! ring bound to one interface, optionally one member of a fanout group.
//!
//! A batch is one retired block: the packets are views into the mapped
//! block (no copy), decoded once (Ethernet / VLAN / IPv4 / IPv6 / UDP). The
//! block goes back to the kernel when the next batch is asked for, i.e.
//! after the sinks are done with it. `PACKET_STATISTICS` is clear-on-read,
//! so its drops are accumulated here.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;

use super::{RecvStats, Source};
use crate::format::l2l4::{self, Decoded};
use crate::packet::{Batch, FLAG_SEGMENT, FLAG_UDP, PacketMeta};
use crate::sys::packet::{
    self as pk, Ring, RingSpec, TP_STATUS_LOSING, TP_STATUS_USER, TP_STATUS_VLAN_VALID, vnet,
};

/// How packets are spread over the members of a fanout group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum FanoutMode {
    /// By flow hash (IP fragments reassembled first), so a flow stays on one thread.
    Hash,
    /// Round robin.
    Lb,
    /// By the CPU the packet arrived on.
    Cpu,
    /// By the NIC's receive queue.
    Qm,
    /// Fill one socket, roll over to the next when it is full.
    Rollover,
}

impl FanoutMode {
    fn kernel(self) -> (u16, u16) {
        const DEFRAG: u16 = 0x8000;
        match self {
            FanoutMode::Hash => (0, DEFRAG),
            FanoutMode::Lb => (1, 0),
            FanoutMode::Cpu => (2, 0),
            FanoutMode::Rollover => (3, 0),
            FanoutMode::Qm => (5, 0),
        }
    }
}

/// Options of an AF_PACKET source.
#[derive(Debug, Clone)]
pub struct AfPacketOptions {
    /// Interface to capture on.
    pub iface: String,
    /// Ring geometry.
    pub ring: RingSpec,
    /// Fanout group id and mode (several sockets share the traffic).
    pub fanout: Option<(u16, FanoutMode)>,
    /// Classic BPF program to attach (`(code, jt, jf, k)`).
    pub filter: Option<Vec<(u16, u8, u8, u32)>>,
    /// End UDP datagrams to this local address and port that no socket
    /// would receive after the tap (`--discard-unreceived`, see
    /// [`crate::bpf::discard`]).
    pub discard_unreceived: Option<SocketAddr>,
}

impl AfPacketOptions {
    /// Defaults: 64 blocks of 1 MiB, 2 KiB frames, 10 ms retire timeout.
    pub fn new(iface: &str) -> Self {
        Self {
            iface: iface.to_string(),
            ring: RingSpec { block_size: 1 << 20, block_nr: 64, frame_size: 2048, retire_ms: 10 },
            fanout: None,
            filter: None,
            discard_unreceived: None,
        }
    }
}

/// Classic BPF that drops packets this host sends (`tcpdump -dd inbound`
/// in spirit): PACKET_IGNORE_OUTGOING is not honoured for fanout members,
/// whose traffic goes through the group's hook, but a socket filter is.
pub const DROP_OUTGOING: [(u16, u8, u8, u32); 4] = [
    (0x28, 0, 0, 0xffff_f004), // ldh [SKF_AD_OFF + SKF_AD_PKTTYPE]
    (0x15, 0, 1, 4),           // jeq #PACKET_OUTGOING, drop, accept
    (0x06, 0, 0, 0),           // ret #0
    (0x06, 0, 0, 0xffff_ffff), // ret #-1 (whole packet)
];

/// Memory the kernel says is available, in bytes (`MemAvailable`).
fn mem_available() -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 =
        m.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Checks a ring geometry before asking the kernel, with reasons a user can act on.
pub fn check_ring(spec: &RingSpec) -> Result<(), String> {
    let page = 4096u32;
    if spec.block_size == 0 || !spec.block_size.is_multiple_of(page) {
        return Err(format!(
            "--ring-block-size {} must be a positive multiple of the page size (4096)",
            spec.block_size
        ));
    }
    if spec.frame_size < 64 || !spec.frame_size.is_multiple_of(16) || spec.frame_size > spec.block_size {
        return Err(format!(
            "frame size {} must be a multiple of 16 between 64 and the block size",
            spec.frame_size
        ));
    }
    if spec.block_nr == 0 {
        return Err("--ring-blocks must be at least 1".into());
    }
    let total = u64::from(spec.block_size) * u64::from(spec.block_nr);
    if let Some(avail) = mem_available()
        && total > avail / 2
    {
        return Err(format!(
            "a ring of {} MiB is more than half of the {} MiB of memory available: use fewer or smaller blocks",
            total >> 20,
            avail >> 20
        ));
    }
    Ok(())
}

/// An AF_PACKET TPACKET_V3 receiver.
pub struct AfPacketSource {
    fd: OwnedFd,
    ring: Ring,
    next: usize,
    held: Option<usize>,
    metas: Vec<PacketMeta>,
    sources: Vec<Option<SocketAddr>>,
    last: RecvStats,
    drops: u64,
    freezes: u64,
    losing_blocks: u64,
    retire_ms: u32,
    /// Each frame comes after a `virtio_net_hdr` (its GRO segment size).
    vnet_hdr: bool,
    /// The tcx link of `--discard-unreceived`: the program goes with it.
    _discard: Option<OwnedFd>,
}

/// What `--discard-unreceived` may name: one unicast address and a port.
pub fn check_discard(dst: SocketAddr) -> Result<(), String> {
    let ip = dst.ip();
    if ip.is_unspecified() || ip.is_multicast() || dst.port() == 0 {
        return Err("give the one unicast address and the port the stream is sent to".into());
    }
    Ok(())
}

/// Refuses an address that is not this host's (in this namespace): the
/// kernel forwards datagrams to other hosts, and no local socket would
/// ever take them, so the program would end a routed stream.
fn check_local(dst: SocketAddr) -> io::Result<()> {
    let probe = crate::sys::udp_socket(&dst)?;
    crate::sys::bind(&probe, &SocketAddr::new(dst.ip(), 0)).map_err(|e| match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "--discard-unreceived {dst}: {} is not an address of this host (see 'ip addr')",
                dst.ip()
            ),
        ),
        _ => e,
    })
}

/// Loads the program of [`crate::bpf::discard`] for `dst` and links it to
/// the interface's tcx ingress; the returned link detaches it on close.
fn attach_discard(ifindex: u32, dst: SocketAddr) -> io::Result<OwnedFd> {
    use crate::bpf::{discard::discard_unreceived_program, insn::to_bytes};
    use crate::sys::bpf;
    let prog = to_bytes(&discard_unreceived_program(dst));
    let prog = bpf::prog_load(bpf::PROG_TYPE_SCHED_CLS, bpf::ATTACH_TCX_INGRESS, &prog, "lc_discard")
        .map_err(|e| {
            io::Error::other(format!("--discard-unreceived: the kernel refused the program: {e}"))
        })?;
    bpf::tcx_ingress_link(&prog, ifindex)
        .map_err(|e| io::Error::new(e.kind(), format!("--discard-unreceived: {e}")))
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "AF_PACKET needs CAP_NET_RAW: run as root or grant it with setcap"
        }
        Some(libc::ENOMEM) => "the kernel could not allocate the ring: use fewer or smaller blocks",
        Some(libc::EINVAL) => "the kernel refused the ring geometry",
        _ => "",
    };
    let msg = if hint.is_empty() { format!("{what}: {e}") } else { format!("{what}: {e}; {hint}") };
    io::Error::new(e.kind(), msg)
}

impl AfPacketSource {
    /// Opens the socket, sets up and maps the ring, binds, joins the fanout group.
    pub fn open(opts: &AfPacketOptions) -> io::Result<Self> {
        let ifindex = pk::if_index(&opts.iface).map_err(|_| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("interface '{}' not found in this network namespace (see 'ip link')", opts.iface),
            )
        })?;
        if !pk::if_is_up(&opts.iface)? {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!(
                    "interface '{}' is down: bring it up with 'ip link set {} up'",
                    opts.iface, opts.iface
                ),
            ));
        }
        check_ring(&opts.ring).map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
        let fd = pk::packet_socket().map_err(|e| annotate(e, "cannot open an AF_PACKET socket"))?;
        pk::set_v3(&fd).map_err(|e| annotate(e, "cannot select TPACKET_V3"))?;
        pk::ignore_outgoing(&fd)
            .map_err(|e| annotate(e, "cannot ignore outgoing packets (Linux >= 4.20)"))?;
        // The tap sees a UDP stream after GRO: where a local socket asked
        // for UDP_GRO (or the device forwards with it), one frame holds many
        // datagrams, and only this header says how to split them back.
        // Before Linux 6.2 the kernel cannot describe a UDP super-packet in
        // it and drops the frame instead: there it is not asked for.
        let vnet_hdr = crate::sys::kernel_at_least(6, 2)
            && pk::set_vnet_hdr(&fd)
                .map_err(|e| {
                    tracing::warn!(
                        "cannot ask for GRO segment sizes ({e}): a GRO super-packet will count as one packet"
                    )
                })
                .is_ok();
        let prog = opts.filter.as_deref().unwrap_or(&DROP_OUTGOING);
        pk::attach_filter(&fd, prog).map_err(|e| annotate(e, "the kernel refused the filter"))?;
        let ring = Ring::setup(&fd, &opts.ring).map_err(|e| annotate(e, "cannot set up the packet ring"))?;
        pk::bind_iface(&fd, ifindex).map_err(|e| annotate(e, "cannot bind to the interface"))?;
        if let Some((group, mode)) = opts.fanout {
            let (m, flags) = mode.kernel();
            pk::join_fanout(&fd, group, m, flags).map_err(|e| annotate(e, "cannot join the fanout group"))?;
        }
        // After the tap is bound, so no datagram ends before it is seen.
        // An address that is not the host's is the user's mistake; a
        // kernel that refuses the program (before 6.6: no tcx) is said once
        // and the capture goes on without it.
        let discard = match opts.discard_unreceived {
            Some(dst) => {
                check_local(dst)?;
                attach_discard(ifindex, dst)
                    .map_err(|e| tracing::warn!("{e}; the capture goes on without it"))
                    .ok()
            }
            None => None,
        };
        // Packets that arrived before the filter was in place are in no
        // block yet; statistics start from here.
        let _ = pk::packet_stats(&fd);
        Ok(Self {
            fd,
            ring,
            next: 0,
            held: None,
            metas: Vec::with_capacity(4096),
            sources: Vec::with_capacity(4096),
            last: RecvStats::default(),
            drops: 0,
            freezes: 0,
            losing_blocks: 0,
            retire_ms: opts.ring.retire_ms,
            vnet_hdr,
            _discard: discard,
        })
    }

    fn parse_block(&mut self, i: usize) {
        self.metas.clear();
        self.sources.clear();
        let Some(b) = self.ring.block(i) else { return };
        let rd = |at: usize| b.get(at..at + 4).map_or(0, |x| u32::from_ne_bytes(x.try_into().expect("4")));
        let rd16 = |at: usize| b.get(at..at + 2).map_or(0, |x| u16::from_ne_bytes(x.try_into().expect("2")));
        if rd(pk::block::STATUS) & TP_STATUS_LOSING != 0 {
            self.losing_blocks += 1;
        }
        let n = rd(pk::block::NUM_PKTS) as usize;
        let mut at = rd(pk::block::FIRST) as usize;
        let mut stats = RecvStats::default();
        for _ in 0..n {
            if at + pk::pkt::SIZE > b.len() {
                break;
            }
            let snap = rd(at + pk::pkt::SNAPLEN) as usize;
            let wire = rd(at + pk::pkt::LEN);
            let mac = at + usize::from(rd16(at + pk::pkt::MAC));
            let status = rd(at + pk::pkt::STATUS);
            let ts = u64::from(rd(at + pk::pkt::SEC)) * 1_000_000_000 + u64::from(rd(at + pk::pkt::NSEC));
            if mac + snap <= b.len() {
                let frame = &b[mac..mac + snap];
                let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| rd(at + pk::pkt::VLAN_TCI) as u16);
                let mut m = PacketMeta {
                    ts_ns: ts,
                    msg: self.sources.len() as u32,
                    frame_offset: mac as u32,
                    frame_len: snap as u32,
                    wire_len: wire,
                    ..PacketMeta::default()
                };
                let gro_segment = if self.vnet_hdr { gro_segment_size(b, mac) } else { 0 };
                stats.truncated += u64::from((snap as u32) < wire);
                match l2l4::decode(frame, vlan) {
                    Decoded::Udp(u) if gro_segment > 0 && u.payload_len > gro_segment => {
                        self.sources.push(Some(u.src));
                        split_super_packet(
                            &mut self.metas,
                            m,
                            mac,
                            u.payload_offset,
                            u.payload_len,
                            gro_segment,
                        );
                    }
                    Decoded::Udp(u) => {
                        m.offset = (mac + u.payload_offset) as u32;
                        m.len = u.payload_len as u32;
                        m.flags = FLAG_UDP;
                        self.sources.push(Some(u.src));
                        self.metas.push(m);
                    }
                    Decoded::Other | Decoded::Malformed => {
                        self.sources.push(None);
                        self.metas.push(m);
                    }
                }
            }
            let next = rd(at + pk::pkt::NEXT) as usize;
            if next == 0 {
                break;
            }
            at += next;
        }
        stats.datagrams = self.sources.len() as u64;
        self.last = stats;
    }
}

/// The segment size of the UDP GRO super-packet whose link header starts at
/// `mac` in `block`, from the `virtio_net_hdr` just before it; 0 when the
/// frame is not one.
fn gro_segment_size(block: &[u8], mac: usize) -> usize {
    let Some(h) = mac.checked_sub(vnet::SIZE).and_then(|at| block.get(at..mac)) else { return 0 };
    if h[vnet::GSO_TYPE] != vnet::GSO_UDP_L4 {
        return 0;
    }
    usize::from(u16::from_le_bytes([h[vnet::GSO_SIZE], h[vnet::GSO_SIZE + 1]]))
}

/// One packet per datagram of a UDP GRO super-packet (the last may be
/// shorter), each with the super-packet's headers as its frame (see
/// [`FLAG_SEGMENT`]): `frame` is the super-packet's meta, its UDP payload
/// `payload_len` bytes from `payload_offset` in the frame at `mac`.
fn split_super_packet(
    out: &mut Vec<PacketMeta>,
    frame: PacketMeta,
    mac: usize,
    payload_offset: usize,
    payload_len: usize,
    segment: usize,
) {
    let mut at = 0;
    while at < payload_len {
        let len = segment.min(payload_len - at);
        out.push(PacketMeta {
            offset: (mac + payload_offset + at) as u32,
            len: len as u32,
            frame_len: payload_offset as u32,
            wire_len: (payload_offset + len) as u32,
            flags: FLAG_UDP | FLAG_SEGMENT,
            ..frame
        });
        at += len;
    }
}

impl Source for AfPacketSource {
    fn recv_batch(&mut self, nonblocking: bool) -> io::Result<Option<Batch<'_>>> {
        if let Some(b) = self.held.take() {
            self.ring.release(b);
        }
        let i = self.next;
        let mut polls = 0;
        if self.ring.status(i) & TP_STATUS_USER == 0 {
            polls = 1;
            // Non-blocking (draining) still waits one retire period, so the
            // block being filled is handed over instead of left behind.
            let wait = if nonblocking { self.retire_ms as i32 + 5 } else { 100 };
            pk::poll_in(&self.fd, wait)?;
            if self.ring.status(i) & TP_STATUS_USER == 0 {
                return Ok(None);
            }
        }
        self.parse_block(i);
        self.last.syscalls = polls;
        self.held = Some(i);
        self.next = (i + 1) % self.ring.blocks();
        let slab = self.ring.block(i).unwrap_or(&[]);
        Ok(Some(Batch::new(slab, &self.metas, &self.sources, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))))
    }

    fn last(&self) -> RecvStats {
        self.last
    }

    /// `PACKET_STATISTICS` drops, accumulated (the kernel clears on read).
    fn kernel_drops(&mut self) -> io::Result<u64> {
        let st = pk::packet_stats(&self.fd)?;
        self.drops += st.drops;
        self.freezes += st.freeze_q_cnt;
        Ok(self.drops)
    }

    fn ring_freezes(&self) -> u64 {
        self.freezes
    }

    fn losing_blocks(&self) -> u64 {
        self.losing_blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header before a frame whose link header starts at `mac`.
    fn block_with_vnet(mac: usize, gso_type: u8, gso_size: u16) -> Vec<u8> {
        let mut b = vec![0u8; mac + 64];
        let h = mac - vnet::SIZE;
        b[h + vnet::GSO_TYPE] = gso_type;
        b[h + vnet::GSO_SIZE..h + vnet::GSO_SIZE + 2].copy_from_slice(&gso_size.to_le_bytes());
        b
    }

    #[test]
    fn only_a_udp_super_packet_has_a_segment_size() {
        assert_eq!(gro_segment_size(&block_with_vnet(64, vnet::GSO_UDP_L4, 272), 64), 272);
        // TCP GRO (type 1), or no GSO at all: not split.
        assert_eq!(gro_segment_size(&block_with_vnet(64, 1, 1448), 64), 0);
        assert_eq!(gro_segment_size(&block_with_vnet(64, 0, 0), 64), 0);
        // A frame too close to the block's start (no room for the header),
        // or past its end: nothing is read out of bounds.
        assert_eq!(gro_segment_size(&[0u8; 32], 4), 0);
        assert_eq!(gro_segment_size(&[0u8; 32], 100), 0);
    }

    #[test]
    fn a_super_packet_splits_at_its_segment_size_the_last_shorter() {
        let frame = PacketMeta { ts_ns: 9, frame_offset: 1000, msg: 3, ..PacketMeta::default() };
        let mut out = Vec::new();
        split_super_packet(&mut out, frame, 1000, 42, 700, 272);
        let lens: Vec<u32> = out.iter().map(|m| m.len).collect();
        assert_eq!(lens, [272, 272, 156]);
        for (k, m) in out.iter().enumerate() {
            assert_eq!(m.offset as usize, 1000 + 42 + k * 272);
            assert_eq!((m.frame_offset, m.frame_len, m.wire_len), (1000, 42, 42 + m.len));
            assert_eq!((m.ts_ns, m.msg, m.flags), (9, 3, FLAG_UDP | FLAG_SEGMENT));
        }
    }
}
