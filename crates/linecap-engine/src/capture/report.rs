//! The final accounting of a capture, built from its counters file, and
//! the live line.

use super::*;

/// The final accounting of a capture.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CaptureReport {
    /// Counters file name.
    pub name: String,
    /// What read the packets.
    pub backend: Reader,
    /// Receive mode (`recv`, `recvmmsg`, `tpacket_v3`).
    pub mode: String,
    /// Whether UDP GRO was on (socket backend).
    pub gro: bool,
    /// Receive threads.
    pub threads: usize,
    /// Where it listened: an address and port, or an interface.
    pub listen: String,
    /// Packets delivered through every stage.
    pub packets: u64,
    /// Payload bytes of the delivered packets.
    pub bytes: u64,
    /// Payload bytes of every packet received (`received`).
    #[serde(default)]
    pub received_bytes: u64,
    /// Packets linecap took from the kernel.
    pub received: u64,
    /// Datagrams or GRO super-packets received.
    pub datagrams: u64,
    /// Receive syscalls made.
    pub syscalls: u64,
    /// Drops attributed to this capture, by stage: offered = packets + sum of these
    /// (plus what the network lost before the socket, which the testbed reads).
    pub drops: BTreeMap<DropPlace, u64>,
    /// Kernel counters of this network namespace over the capture (deltas).
    pub kernel: BTreeMap<String, u64>,
    /// Wall time from start to stop.
    pub duration_s: f64,
    /// CPU time of the receive threads.
    pub cpu_user_ns: u64,
    /// CPU time of the receive threads in the kernel.
    pub cpu_sys_ns: u64,
    /// Receive-thread CPU per received packet.
    pub cpu_ns_per_packet: f64,
    /// Receive buffer granted by the kernel (socket backend), or ring size in bytes.
    pub rcvbuf: i64,
    /// Verifier counts (summed over threads), with `--verify seq`.
    pub verify: Option<VerifyCounts>,
    /// Assembly and block files (summed over threads), with `--blocks`.
    #[serde(default)]
    pub blocks: Option<BlockReport>,
    /// The relay's books (summed over threads), with `--relay`.
    #[serde(default)]
    pub relay: Option<RelayCounts>,
    /// Why the capture stopped.
    pub stopped_by: String,
    /// What went wrong, if a receive thread failed (panicked or could not
    /// receive): the report holds what was counted until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// What read a capture's packets: one of linecap's backends or, in a
/// bench, another tool measured beside it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Reader {
    /// A linecap backend.
    Linecap(BackendKind),
    /// Another tool (a bench peer such as tcpdump), by name.
    Peer(String),
}

impl std::fmt::Display for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reader::Linecap(kind) => f.write_str(kind.name()),
            Reader::Peer(name) => f.write_str(name),
        }
    }
}

impl CaptureReport {
    /// The backend it read from (`None` for a bench peer's report).
    pub fn kind(&self) -> Option<BackendKind> {
        match self.backend {
            Reader::Linecap(kind) => Some(kind),
            Reader::Peer(_) => None,
        }
    }

    /// Drops counted at one place (0 where the capture has no such place).
    pub fn dropped_at(&self, place: DropPlace) -> u64 {
        self.drops.get(&place).copied().unwrap_or(0)
    }

    /// Sum of all attributed drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}

/// The one-line live display.
pub fn live_line(s: &Snapshot, pps: f64, bps: f64) -> String {
    let drops = s.total(RxIdx::KernelDrops);
    let ring = s.total(QueueIdx::RingFullDrops);
    let werr = s.total(WriterIdx::WriteErrorDrops);
    let mut line = format!(
        "{} {:>10} {:>10} | delivered {} | drops: kernel {drops}",
        s.name,
        crate::units::si_scaled(pps, "pps"),
        crate::units::si_scaled(bps, "b/s"),
        s.total(RxIdx::Packets) - ring - werr,
    );
    if s.stages.iter().any(|st| st.name.starts_with("pcap.")) {
        line += &format!(" ring {ring} disk {werr}");
    }
    if s.stages.iter().any(|st| st.name.starts_with("blocks.")) {
        line += &format!(
            " | blocks {} slots lost {} late {} dup {} resync {} dropped {}",
            s.total(BlocksIdx::Blocks),
            s.total(BlocksIdx::SlotsLost),
            s.total(BlocksIdx::Late),
            s.total(BlocksIdx::Duplicates),
            s.total(BlocksIdx::Resyncs),
            s.total(BlocksIdx::DroppedBlocks)
        );
    }
    if s.stages.iter().any(|st| st.name.starts_with("verify.")) {
        line +=
            &format!(" | seq gaps {} dup {}", s.total(VerifyIdx::Missing), s.total(VerifyIdx::Duplicates));
    }
    line += &format!(
        " | kernel rcvbuf {} ifdrop {}",
        s.total(KernelIdx::UdpRcvbufErrors),
        s.total(KernelIdx::IfaceRxDropped)
    );
    line
}

pub(super) fn build_report(
    cfg: &CaptureConfig,
    info: &SourceInfo,
    s: &Snapshot,
    k0: &KernelSnapshot,
    k1: &KernelSnapshot,
    duration: Duration,
    stopped_by: String,
) -> CaptureReport {
    let received = s.total(RxIdx::Packets);
    let ring = s.total(QueueIdx::RingFullDrops);
    let werr = s.total(WriterIdx::WriteErrorDrops);
    let mut drops = BTreeMap::new();
    let kernel_drops = s.total(RxIdx::KernelDrops);
    if info.backend == BackendKind::Xdp {
        // Each place an AF_XDP socket loses frames, by the kernel's own
        // counts; the drop stage holds what they do not name.
        let ring_full = s.total(RxIdx::RingFullDrops);
        let no_buffer = s.total(RxIdx::NoBufferDrops);
        drops.insert(DropPlace::XskRxRingFull, ring_full);
        drops.insert(DropPlace::XskNoFillFrame, no_buffer);
        drops.insert(info.drop_stage, kernel_drops.saturating_sub(ring_full + no_buffer));
    } else {
        drops.insert(info.drop_stage, kernel_drops);
    }
    if cfg.pcap.is_some() {
        drops.insert(DropPlace::PcapRingFull, ring);
        drops.insert(DropPlace::PcapWriteError, werr);
    }
    let mut kernel = BTreeMap::new();
    if info.backend == BackendKind::File {
        // A file's packets never met the kernel: what the reader left out instead.
        kernel.insert("records_filtered".into(), s.total(RxIdx::Filtered));
    } else {
        kernel_figures(&mut kernel, info, s, k0, k1);
    }
    let user = s.total(RxIdx::CpuUserNs);
    let sys_ns = s.total(RxIdx::CpuSysNs);
    CaptureReport {
        name: cfg.name.clone(),
        backend: Reader::Linecap(info.backend),
        mode: info.mode.clone(),
        gro: info.gro,
        threads: cfg.threads,
        listen: info.listen.clone(),
        packets: received - ring - werr,
        bytes: s
            .total(RxIdx::Bytes)
            .saturating_sub(s.total(QueueIdx::RingFullBytes))
            .saturating_sub(s.total(WriterIdx::WriteErrorBytes)),
        received_bytes: s.total(RxIdx::Bytes),
        received,
        datagrams: s.total(RxIdx::Datagrams),
        syscalls: s.total(RxIdx::Syscalls),
        drops,
        kernel,
        duration_s: duration.as_secs_f64(),
        cpu_user_ns: user,
        cpu_sys_ns: sys_ns,
        cpu_ns_per_packet: if received > 0 { (user + sys_ns) as f64 / received as f64 } else { 0.0 },
        rcvbuf: info.buffer,
        verify: None,
        blocks: None,
        relay: None,
        stopped_by,
        failure: None,
    }
}

/// What the kernel counted over a live capture: the UDP stack's errors,
/// the interface's and softnet's drops, and the backend's own warnings.
fn kernel_figures(
    kernel: &mut BTreeMap<String, u64>,
    info: &SourceInfo,
    s: &Snapshot,
    k0: &KernelSnapshot,
    k1: &KernelSnapshot,
) {
    kernel.insert("udp_rcvbuf_errors".into(), k1.udp.rcvbuf_errors.saturating_sub(k0.udp.rcvbuf_errors));
    kernel.insert("udp_in_errors".into(), k1.udp.in_errors.saturating_sub(k0.udp.in_errors));
    kernel.insert("udp_csum_errors".into(), k1.udp.in_csum_errors.saturating_sub(k0.udp.in_csum_errors));
    kernel.insert("udp_no_ports".into(), k1.udp.no_ports.saturating_sub(k0.udp.no_ports));
    kernel.insert("iface_rx_dropped".into(), k1.iface_rx_dropped().saturating_sub(k0.iface_rx_dropped()));
    kernel.insert("softnet_dropped".into(), k1.softnet_dropped.saturating_sub(k0.softnet_dropped));
    if info.backend == BackendKind::Xdp {
        // Times a frame found the fill ring empty (a warning sign: the
        // frames it would have used sat unreleased or in the rx ring).
        kernel.insert("xsk_fill_ring_empty_descs".into(), s.total(RxIdx::FillRingEmpty));
    }
    if info.busy_poll.is_some() {
        kernel.insert("busy_poll_gaps_over_100us".into(), s.total(RxIdx::PollGaps));
        kernel.insert("busy_poll_gap_us".into(), s.total(RxIdx::PollGapNs) / 1000);
    }
    if info.backend == BackendKind::AfPacket {
        kernel.insert("ring_freezes".into(), s.total(RxIdx::RingFreezes));
        kernel.insert("losing_blocks".into(), s.total(RxIdx::LosingBlocks));
    }
}

/// The verifier's, relay's and assembler's figures, and what the receive
/// threads said went wrong.
pub(super) fn add_sink_reports(
    report: &mut CaptureReport,
    cfg: &CaptureConfig,
    snap: &Snapshot,
    results: &[RxThreadResult],
) {
    let mut verify_total: Option<VerifyCounts> = None;
    for r in results {
        if let Some(v) = r.verify {
            verify_total.get_or_insert_with(VerifyCounts::default).add(&v);
        }
    }
    report.verify = verify_total;
    if cfg.relay.is_some() {
        report.relay = Some(relay_counts(snap));
    }
    if cfg.blocks.is_some() {
        report.blocks = Some(block_report(snap));
    }
    if let Some(e) = results.iter().find_map(|r| r.sink_error.clone()) {
        tracing::error!("{e}");
    }
    if let Some(e) = results.iter().find_map(|r| r.source_error.clone()) {
        report.failure.get_or_insert(e);
    }
}

fn relay_counts(snap: &Snapshot) -> RelayCounts {
    let g = |c: RelayIdx| snap.total(c);
    RelayCounts {
        offered: g(RelayIdx::Offered),
        relayed: g(RelayIdx::Relayed),
        dropped: g(RelayIdx::Dropped),
        errors: g(RelayIdx::Errors),
        not_udp: g(RelayIdx::NotUdp),
        syscalls: g(RelayIdx::Syscalls),
        messages: g(RelayIdx::Messages),
    }
}

fn block_report(snap: &Snapshot) -> BlockReport {
    let g = |c: BlocksIdx| snap.total(c);
    BlockReport {
        assembly: AssemblyCounts {
            packets: g(BlocksIdx::Packets),
            placed: g(BlocksIdx::Placed),
            duplicates: g(BlocksIdx::Duplicates),
            late: g(BlocksIdx::Late),
            malformed: g(BlocksIdx::Malformed),
            invalid: g(BlocksIdx::Invalid),
            bad_channel: g(BlocksIdx::BadChannel),
            no_buffer: g(BlocksIdx::NoBuffer),
            resyncs: g(BlocksIdx::Resyncs),
            out_of_window: g(BlocksIdx::OutOfWindow),
            blocks: g(BlocksIdx::Blocks),
            slots_lost: g(BlocksIdx::SlotsLost),
        },
        written: g(BlocksIdx::Written),
        dropped_blocks: g(BlocksIdx::DroppedBlocks),
        dropped_packets: g(BlocksIdx::DroppedPackets),
        write_errors: g(BlocksIdx::WriteErrors),
        wraps: g(BlocksIdx::Wraps),
        ring_overwritten: g(BlocksIdx::RingOverwritten),
        ring_waits: g(BlocksIdx::RingWaits),
        ring_dropped: g(BlocksIdx::RingDropped),
        group_forced: g(BlocksIdx::GroupForced),
        group_waits: g(BlocksIdx::GroupWaits),
        members_left: g(BlocksIdx::MembersLeft),
    }
}
