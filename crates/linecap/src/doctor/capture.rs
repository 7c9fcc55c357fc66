//! Judging one capture: its drops by place, with the setting in force
//! and what would help.

use super::*;

/// A capture's `settings` stage, read back (all zero in files written
/// before it existed).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Settings {
    pub(super) rcvbuf: u64,
    pub(super) forced: bool,
    pub(super) filter: bool,
    pub(super) busy_poll: bool,
    /// The errno with which the kernel refused the busy polling asked for.
    pub(super) busy_poll_refused: u64,
    pub(super) cpu_mask: u64,
    pub(super) port: u64,
}

pub(super) fn settings_of(c: &Snapshot) -> Settings {
    Settings {
        rcvbuf: c.total(SettingsIdx::RcvbufBytes),
        forced: c.total(SettingsIdx::RcvbufForced) != 0,
        filter: c.total(SettingsIdx::Filter) != 0,
        busy_poll: c.total(SettingsIdx::BusyPollNs) != 0,
        busy_poll_refused: c.total(SettingsIdx::BusyPollRefused),
        cpu_mask: c.total(SettingsIdx::CpuMask),
        port: c.total(SettingsIdx::Port),
    }
}

/// One capture's counts, summed over its threads, and what they imply.
pub(super) struct CaptureView<'a> {
    pub(super) c: &'a Snapshot,
    pub(super) settings: Settings,
    pub(super) received: u64,
    /// Drops at the capture's own socket, ring or AF_XDP socket.
    pub(super) drops: u64,
    /// Frames the interfaces dropped while it ran, not counted twice.
    pub(super) iface: u64,
    pub(super) softnet: u64,
    pub(super) missing: u64,
    /// What reached the host for it (received + every drop + what the
    /// verifier found missing beyond them).
    pub(super) offered: u64,
    /// A receive thread pinned to the CPU of a NAPI thread: (CPU, thread).
    pub(super) shares_core: Option<(usize, String)>,
    /// A CPU without NAPI threads, to move the receive thread to.
    pub(super) free_cpu: Option<usize>,
}

impl<'a> CaptureView<'a> {
    fn new(sys: &SystemFacts, c: &'a Snapshot) -> Self {
        let drops = c.total(RxIdx::KernelDrops);
        let mut iface = kernel_stage(c, KernelIdx::IfaceRxDropped);
        if c.kind() == Some(BackendKind::Xdp) {
            // veth counts a frame its redirect could not hand to the AF_XDP
            // socket as an rx drop too: the socket's own count names it.
            iface = iface.saturating_sub(drops);
        }
        let softnet = kernel_stage(c, KernelIdx::SoftnetDropped);
        let received = c.total(RxIdx::Packets);
        let missing = c.total(VerifyIdx::Missing);
        let counted = drops.saturating_add(iface).saturating_add(softnet);
        let offered = received.saturating_add(counted).saturating_add(missing.saturating_sub(counted));
        let settings = settings_of(c);
        let (shares_core, free_cpu) = placement(sys, c, &settings);
        CaptureView { c, settings, received, drops, iface, softnet, missing, offered, shares_core, free_cpu }
    }

    fn place(&self, stage: &str) -> String {
        format!("capture '{}': {stage}", self.c.name)
    }

    /// Whether UDP GRO coalesced datagrams for this capture (its messages
    /// carried more than one), so that its socket counted super-packets.
    fn gro_was_on(&self) -> bool {
        let asked = self.c.total(RxIdx::GroOn) > 0 || self.c.total(RxIdx::GroSwitches) > 0;
        asked && self.c.total(RxIdx::Datagrams) < self.received
    }

    /// "use --cpus 0 (or --busy-poll ...)" when the receive thread shares
    /// its core with the kernel's receive work.
    fn placement_fix(&self) -> Option<String> {
        let (cpu, napi) = self.shares_core.as_ref()?;
        if self.settings.busy_poll {
            // It polls its own device already: the NAPI thread on its core
            // is another interface's, competing for the CPU.
            let to = self.free_cpu.map_or("a CPU of its own".to_string(), |c| format!("--cpus {c}"));
            return Some(format!(
                "the busy-polling receive thread shares CPU {cpu} with {napi}, another interface's receive work: use {to}"
            ));
        }
        let other =
            self.free_cpu.map_or(String::new(), |c| format!("--cpus {c} (a CPU without NAPI threads), or "));
        let busy_poll = if self.settings.busy_poll_refused != 0 {
            "--busy-poll where the kernel grants it (it refused this capture's)"
        } else {
            "--busy-poll"
        };
        Some(format!(
            "the receive thread shares CPU {cpu} with {napi}, the kernel's receive work for the interface: \
             use {other}{busy_poll} (the thread then does that work itself)"
        ))
    }
}

/// Whether a running capture's receive thread (or an ended one's pinned
/// CPUs) shares its only CPU with a NAPI thread, and a CPU that has none.
pub(super) fn placement(
    sys: &SystemFacts,
    c: &Snapshot,
    settings: &Settings,
) -> (Option<(usize, String)>, Option<usize>) {
    let pinned: Vec<usize> = match sys.capture_cpus.iter().find(|(name, _)| *name == c.name) {
        Some((_, threads)) => threads.iter().filter(|t| t.len() == 1).map(|t| t[0]).collect(),
        None => (0..64).filter(|b| settings.cpu_mask & (1 << b) != 0).collect(),
    };
    let shared = pinned
        .iter()
        .find_map(|&cpu| sys.napi_threads.iter().find(|t| t.cpus == [cpu]).map(|t| (cpu, t.name.clone())));
    let busy: Vec<usize> = sys.napi_threads.iter().filter(|t| t.cpus.len() == 1).map(|t| t.cpus[0]).collect();
    let free = (0..sys.cpus).find(|c| !busy.contains(c));
    (shared, free)
}

pub(super) fn diagnose_capture(sys: &SystemFacts, c: &Snapshot, out: &mut Vec<Finding>) {
    let v = CaptureView::new(sys, c);
    receive_losses(sys, &v, out);
    listen_mismatch(&v, out);
    unheard_after_tap(&v, out);
    upstream_losses(&v, out);
    sink_losses(&v, out);
    group_out_of_step(&v, out);
    host_losses(sys, &v, out);
    busy_poll_refused(&v, out);
    busy_poll_gaps(&v, out);
    let corrupt = c.total(VerifyIdx::Corrupt).saturating_add(c.total(VerifyIdx::Malformed));
    if corrupt > 0 {
        out.push(
            finding(
                Level::Warn,
                v.place("payloads"),
                format!("{} payloads corrupt or malformed", thousands(corrupt)),
                Some("check the sender's format (--verify expects linecap's seq payload)".into()),
            )
            .counted(&c.name, VerifyIdx::Corrupt, corrupt, v.offered),
        );
    }
    if let (Some((cpu, napi)), false) = (&v.shares_core, v.drops > 0) {
        out.push(
            finding(
                Level::Ok,
                v.place("placement"),
                format!("its receive thread shares CPU {cpu} with {napi}; nothing lost at this rate"),
                v.placement_fix(),
            )
            .about(&c.name),
        );
    }
}

/// The setting a socket's loss is about: its buffer, as granted.
pub(super) fn buffer_setting(sys: &SystemFacts, s: &Settings) -> String {
    let rmem = sys.rmem_max.map_or("?".into(), bytes);
    if s.forced {
        format!("receive buffer {} (forced above net.core.rmem_max {rmem})", bytes(s.rcvbuf))
    } else {
        format!("receive buffer {} (net.core.rmem_max {rmem}; root forces above it)", bytes(s.rcvbuf))
    }
}

pub(super) fn receive_losses(sys: &SystemFacts, v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let c = v.c;
    if v.drops == 0 {
        quiet_receive(v, out);
        return;
    }
    let (overflow, excluded) = if v.settings.filter && c.kind().is_some_and(BackendKind::is_socket) {
        // The socket counts what its filter rejects with its overflows; the
        // namespace's UDP buffer errors count only the overflows.
        let overflow = v.drops.min(kernel_stage(c, KernelIdx::UdpRcvbufErrors));
        (overflow, v.drops - overflow)
    } else {
        (v.drops, 0)
    };
    if excluded > 0 {
        out.push(filtered_out(v, excluded));
    }
    if overflow > 0 {
        out.push(overflowed(sys, v, overflow));
    }
}

/// No receive drops: all is well, or nothing came (a filter may be why).
fn quiet_receive(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let c = v.c;
    if v.received > 0 {
        out.push(
            finding(
                Level::Ok,
                v.place("receive"),
                format!("{} received, no kernel drops", thousands(v.received)),
                None,
            )
            .counted(&c.name, RxIdx::Packets, v.received, v.offered),
        );
    } else if v.settings.filter {
        out.push(
            finding(
                Level::Warn,
                v.place("filter"),
                "received nothing: its filter may exclude the stream".to_string(),
                Some("check --filter against the stream (tcpdump -ni IF with the same expression)".into()),
            )
            .about(&c.name)
            .with_setting("a filter is attached".into()),
        );
    }
}

/// Datagrams the socket's filter excluded (counted with its drops).
fn filtered_out(v: &CaptureView<'_>, excluded: u64) -> Finding {
    let c = v.c;
    let level = if v.received == 0 { Level::Loss } else { Level::Ok };
    // With UDP GRO the filter sees super-packets: one count each.
    let bound = if v.gro_was_on() { "at least " } else { "" };
    let mut f = finding(
        level,
        v.place("filter"),
        format!(
            "{bound}{} datagrams excluded by its filter, {} received",
            thousands(excluded),
            thousands(v.received)
        ),
        (v.received == 0).then(|| "its filter excludes the whole stream: check --filter".to_string()),
    )
    .counted(&c.name, RxIdx::KernelDrops, excluded, v.offered)
    .with_setting("a filter is attached".into());
    if v.gro_was_on() {
        f = f.at_least();
    }
    f
}

/// The kernel dropped packets at the capture's own socket or ring.
fn overflowed(sys: &SystemFacts, v: &CaptureView<'_>, mut overflow: u64) -> Finding {
    let c = v.c;
    let gro = c.kind().is_some_and(BackendKind::is_socket) && v.gro_was_on();
    if gro && v.missing > overflow {
        // The verifier counts datagrams; the socket counted super-packets.
        overflow = overflow.max(v.missing.saturating_sub(v.iface + v.softnet));
    }
    let (stage, fix, setting) = receive_place(sys, v);
    let fix = match v.placement_fix() {
        Some(p) => format!("{p}; else {fix}"),
        None => fix,
    };
    let what = if gro && v.missing == 0 {
        format!(
            "at least {} datagrams dropped by the kernel: {stage} (UDP GRO on: a dropped super-packet counts once; --verify seq counts them exactly)",
            of_offered(overflow, v.offered)
        )
    } else {
        format!("{} packets dropped by the kernel: {stage}", of_offered(overflow, v.offered))
    };
    let mut f = finding(Level::Loss, v.place("receive"), what, Some(fix))
        .counted(&c.name, RxIdx::KernelDrops, overflow, v.offered)
        .with_setting(setting);
    if gro && v.missing == 0 {
        f = f.at_least();
    }
    f
}

/// Where a capture's own receive drops happen, the fix, and the setting in force.
pub(super) fn receive_place(sys: &SystemFacts, v: &CaptureView<'_>) -> (String, String, String) {
    let c = v.c;
    match c.kind() {
        Some(BackendKind::AfPacket) => (
            "the packet ring was full".into(),
            "a larger ring (--ring-blocks, --ring-block-size), more receive threads (--threads N --fanout), \
             and a receive core apart from the NIC's interrupts (--cpus)"
                .into(),
            format!("ring {} per thread", bytes(c.total(SettingsIdx::RingBytes))),
        ),
        Some(BackendKind::Xdp) => (
            format!(
                "the AF_XDP socket's rings ({} rx ring full, {} no fill frame)",
                thousands(c.total(RxIdx::RingFullDrops)),
                thousands(c.total(RxIdx::NoBufferDrops))
            ),
            "larger rings and UMEM (--xdp-ring), faster sinks, busy polling (--busy-poll) so the receiver runs \
             the device's NAPI itself, or more queues (--queues)"
                .into(),
            format!(
                "UMEM {}{}",
                bytes(c.total(SettingsIdx::RingBytes)),
                if v.settings.busy_poll { ", busy polling" } else { ", no busy polling" }
            ),
        ),
        _ => {
            let bigger = if v.settings.forced && v.settings.rcvbuf >= RMEM_ADVISED {
                "a faster receiver rather than a larger buffer (it is already large): "
            } else {
                "a larger buffer (--rcvbuf), "
            };
            // The default mode reads a socket without GRO through io_uring.
            let uring = if sys.io_uring_disabled == Some(2) {
                "io_uring allowed (kernel.io_uring_disabled is 2, so the socket is read with recvmmsg; \
                 0 lets the default capture read it through io_uring, which kept 2× the plain recvmmsg \
                 loop's share where the receive core was starved), "
            } else {
                ""
            };
            (
                "the socket receive buffer overflowed".into(),
                format!(
                    "{uring}{bigger}more threads (--threads N, SO_REUSEPORT), --busy-poll, or --backend afpacket|xdp"
                ),
                buffer_setting(sys, &v.settings),
            )
        }
    }
}

/// Datagrams for a port nobody listened on while the capture ran: the
/// stream goes somewhere the capture is not listening.
pub(super) fn listen_mismatch(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let no_ports = kernel_stage(v.c, KernelIdx::UdpNoPorts);
    if no_ports == 0 || !v.c.kind().is_some_and(|k| k.is_socket() || k == BackendKind::Xdp) {
        return;
    }
    let level = if no_ports > v.received { Level::Loss } else { Level::Warn };
    let port =
        if v.settings.port > 0 { format!("port {}", v.settings.port) } else { "its --listen port".into() };
    out.push(
        finding(
            level,
            v.place("listen"),
            format!(
                "{} datagrams arrived for UDP ports nobody listened on while it ran ({} received by it)",
                thousands(no_ports),
                thousands(v.received)
            ),
            Some(format!(
                "it takes {port}: check --listen (address and port) against where the stream is sent \
                 (tcpdump -ni any udp shows it)"
            )),
        )
        .counted(&v.c.name, KernelIdx::UdpNoPorts, no_ports, v.offered.saturating_add(no_ports)),
    );
}

/// An AF_PACKET capture of a stream no socket receives: after the tap,
/// the kernel tries an ICMP port unreachable for every datagram (a route
/// lookup before the rate limit), which on the testbed took most of the
/// receive core. Said when at least half of what the capture got went so.
pub(super) fn unheard_after_tap(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let no_ports = kernel_stage(v.c, KernelIdx::UdpNoPorts);
    if v.c.kind() != Some(BackendKind::AfPacket) || no_ports == 0 || no_ports < v.received / 2 {
        return;
    }
    let level = if v.iface > 0 { Level::Loss } else { Level::Warn };
    out.push(
        finding(
            level,
            v.place("after the tap"),
            format!(
                "{} datagrams it captured went on up the stack to a UDP port no socket receives; the kernel \
                 tries an ICMP port unreachable for each, on the receive core{}",
                thousands(no_ports),
                if v.iface > 0 { ", while interfaces dropped frames" } else { "" }
            ),
            Some(
                "capture with --discard-unreceived ADDR:PORT (the stream's destination): they end after the \
                 tap unless a socket binds the port"
                    .into(),
            ),
        )
        .counted(&v.c.name, KernelIdx::UdpNoPorts, no_ports, v.offered.saturating_add(no_ports)),
    );
}

/// Sequence numbers missing beyond every drop this host counted.
pub(super) fn upstream_losses(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let kernel_seen = v.drops.saturating_add(v.iface).saturating_add(v.softnet);
    if v.missing <= kernel_seen {
        return;
    }
    let extra = v.missing - kernel_seen;
    let gro = v.c.kind().is_some_and(BackendKind::is_socket) && v.gro_was_on() && v.drops > 0;
    if gro {
        // Already attributed to the socket by `receive_losses`.
        return;
    }
    out.push(
        finding(
            Level::Loss,
            v.place("sequence numbers"),
            format!(
                "{} packets missing from the sequences, {} more than this host counted dropping",
                of_offered(v.missing, v.offered),
                thousands(extra)
            ),
            Some(
                "they were lost before this host's counters: at the sender (its own counters), on a veth \
                 pair the sending end's tx_dropped (ip -s link), in the network, or in the NIC (ethtool -S IF: \
                 rx_missed, rx_fifo, rx_no_buffer)"
                    .into(),
            ),
        )
        .counted(&v.c.name, VerifyIdx::Missing, extra, v.offered),
    );
}

pub(super) fn sink_losses(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let losses = [
        sink_loss(
            v,
            QueueIdx::RingFullDrops,
            "the pcap writer fell behind: packets dropped at its queue",
            "a faster disk (or tmpfs), a larger --sink-buffer, or less to write (--filter)",
        ),
        sink_loss(
            v,
            WriterIdx::WriteErrorDrops,
            "writing the pcap file failed (disk full or failing)",
            "free space on the disk, or --rotate-size with a cleaner",
        ),
        sink_loss(
            v,
            BlocksIdx::DroppedBlocks,
            "blocks dropped: the block writer fell behind",
            "a faster disk, a larger --block-queue, or the shared-memory ring (--shm)",
        ),
        sink_loss(
            v,
            BlocksIdx::RingDropped,
            "blocks dropped: the shared-memory ring's reader fell behind",
            "a faster reader, or more slots in the ring",
        ),
        sink_loss(
            v,
            RelayIdx::Dropped,
            "the relay's socket was full",
            "a larger socket buffer at the relay, or a faster destination",
        ),
    ];
    out.extend(losses.into_iter().flatten());
}

/// A sink's counted loss, if it lost any.
fn sink_loss<C: Counter>(v: &CaptureView<'_>, counter: C, what: &str, fix: &str) -> Option<Finding> {
    let n = v.c.total(counter);
    (n > 0).then(|| {
        finding(
            Level::Loss,
            v.place(C::STAGE.trim_end_matches('.')),
            format!("{}: {what}", of_offered(n, v.offered)),
            Some(fix.into()),
        )
        .counted(&v.c.name, counter, n, v.offered)
    })
}

pub(super) fn host_losses(sys: &SystemFacts, v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    if v.softnet > 0 {
        out.push(
            finding(
                Level::Loss,
                v.place("kernel backlog"),
                format!(
                    "{} packets dropped at a CPU's backlog while it ran",
                    of_offered(v.softnet, v.offered)
                ),
                Some(format!(
                    "sysctl -w net.core.netdev_max_backlog={}",
                    sys.netdev_max_backlog.unwrap_or(1000).clamp(1000, 1 << 40) * 4
                )),
            )
            .counted(&v.c.name, KernelIdx::SoftnetDropped, v.softnet, v.offered)
            .with_setting(format!(
                "net.core.netdev_max_backlog {}",
                sys.netdev_max_backlog.map_or("?".into(), |v| v.to_string())
            )),
        );
    }
    if v.iface == 0 {
        return;
    }
    let deferring: Vec<&str> = sys
        .ifaces
        .iter()
        .filter(|i| i.defer_hard_irqs.unwrap_or(0) > 0 && i.gro_flush_timeout.unwrap_or(0) > 0)
        .map(|i| i.name.as_str())
        .collect();
    let fix = if let Some(p) = v.placement_fix() {
        p
    } else if deferring.is_empty() {
        "a larger NIC ring (ethtool -G IF rx N), more queues (RSS), or a faster receiver".to_string()
    } else {
        format!(
            "{} defer their work to busy pollers (napi_defer_hard_irqs): capture with --busy-poll, \
             or a larger NIC ring (ethtool -G IF rx N)",
            deferring.join(", ")
        )
    };
    out.push(
        finding(
            Level::Loss,
            v.place("interfaces"),
            format!(
                "{} frames dropped by interfaces while it ran (rx_dropped)",
                of_offered(v.iface, v.offered)
            ),
            Some(fix),
        )
        .counted(&v.c.name, KernelIdx::IfaceRxDropped, v.iface, v.offered),
    );
}

/// Busy polling asked for and refused by the kernel: the capture received
/// without it, and says how to have it.
pub(super) fn busy_poll_refused(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let errno = v.settings.busy_poll_refused;
    if errno == 0 {
        return;
    }
    let fix = match i32::try_from(errno) {
        Ok(libc::EPERM) => {
            "busy polling needs CAP_NET_ADMIN: run the capture as root, or give the binary the capability \
             (setcap cap_net_admin+ep)"
        }
        Ok(libc::ENOPROTOOPT) => {
            "busy polling needs a kernel with SO_PREFER_BUSY_POLL and SO_BUSY_POLL_BUDGET (Linux 5.11 or later)"
        }
        _ => "the capture's first lines say what the kernel answered",
    };
    out.push(
        finding(
            Level::Warn,
            v.place("busy polling"),
            format!("asked for and refused by the kernel (errno {errno}): the capture received without it"),
            Some(fix.into()),
        )
        .about(&v.c.name)
        .with_setting(format!("busy_poll_refused {errno}")),
    );
}

pub(super) fn busy_poll_gaps(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let gaps = v.c.total(RxIdx::PollGaps);
    if gaps == 0 {
        return;
    }
    out.push(
        finding(
            Level::Warn,
            v.place("busy polling"),
            format!(
                "the device went unpolled for over 100 µs {} times ({:.1} ms in all): the receiving thread \
                 was off its core",
                thousands(gaps),
                v.c.total(RxIdx::PollGapNs) as f64 / 1e6
            ),
            Some(
                "keep the receive core for the capture alone (isolcpus=, nohz_full=, irqaffinity= on the kernel \
                 command line), or run it SCHED_FIFO (chrt -f 50)"
                    .into(),
            ),
        )
        .counted(&v.c.name, RxIdx::PollGaps, gaps, 0),
    );
}

pub(super) fn kernel_stage(c: &Snapshot, counter: KernelIdx) -> u64 {
    c.total(counter)
}

/// Receive threads of one block group that fell out of step: each named,
/// with what it cost.
fn group_out_of_step(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let members = v.c.stages.iter().filter(|st| st.name.starts_with(BlocksIdx::STAGE));
    for st in members.filter(|st| st.name != crate::capture::GROUP_STAGE) {
        let thread = st.name.trim_start_matches(BlocksIdx::STAGE);
        let (forced, waits) = (st.get(BlocksIdx::GroupForced.name()), st.get(BlocksIdx::GroupWaits.name()));
        if forced > 0 {
            let late = st.get(BlocksIdx::Late.name());
            out.push(
                finding(
                    Level::Loss,
                    v.place(&st.name),
                    format!(
                        "receive thread {thread} fell behind the others: the group sent {forced} times blocks on without it (its missing slots lost, {} of its packets late)",
                        thousands(late)
                    ),
                    Some("a larger --window if its flow runs behind the others by more than two windows of blocks; a core of its own for each receive thread (--cpus); or --group-policy lossless to wait for it".into()),
                )
                .counted_at(&v.c.name, &st.name, BlocksIdx::GroupForced, forced, v.offered),
            );
        }
        if waits > 0 {
            out.push(finding(
                Level::Warn,
                v.place(&st.name),
                format!("receive thread {thread} waited {waits} times for a slower one (lossless group): while it waits, its socket or ring fills"),
                Some("find why the other thread is slow (its core, its share of the flows), or --group-policy lossy".into()),
            ));
        }
    }
    let left = v.c.total(BlocksIdx::MembersLeft);
    if left > 0 {
        out.push(finding(
            Level::Loss,
            v.place(crate::capture::GROUP_STAGE),
            format!("{left} receive thread(s) ended while the others went on: their share of every later block was lost"),
            Some("look for an error from that thread above (a receive failure, a panic)".into()),
        ));
    }
}
