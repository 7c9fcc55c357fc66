//! `linecap doctor`: where packets are lost, and which setting would help.
//!
//! Two sources of evidence: the counters of captures (their shared-memory
//! files: every drop linecap counted, by place) and the machine (sysctls,
//! per-CPU softnet counters, interfaces: drops, GRO, receive rings, busy
//! polling knobs). Reading them is [`read_system`]; judging them is the
//! pure [`diagnose`], which tests feed with made-up facts.

use std::fmt::Write as _;

use crate::source::BackendKind;
use crate::stats::Snapshot;
use crate::stats::kernel::{self, IfaceCounters, UdpSnmp};
use crate::sys;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Packets were lost here.
    Loss,
    /// A setting or a sign that will cost packets at higher rates.
    Warn,
    /// Checked, nothing to do.
    Ok,
}

/// One thing the doctor found: words for people, fields for programs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// How much it matters.
    pub level: Level,
    /// Where: a capture's stage, a CPU, an interface, a sysctl.
    pub place: String,
    /// What was seen, with the numbers.
    pub what: String,
    /// What to do about it.
    pub fix: Option<String>,
    /// The capture it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<String>,
    /// The stage kind whose counter shows it (`rx`, `verify`, `kernel`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The counter that shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<String>,
    /// Packets (or datagrams) concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `count` is a lower bound (a UDP GRO super-packet is counted once).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub at_least: bool,
    /// `count` as a share of what was offered to the capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// The setting in force that the fix is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
}

impl Finding {
    fn counted(mut self, capture: &str, stage: &str, counter: &str, count: u64, offered: u64) -> Self {
        self.capture = Some(capture.to_string());
        self.stage = Some(stage.to_string());
        self.counter = Some(counter.to_string());
        self.count = Some(count);
        self.share = (offered > 0).then(|| count as f64 / offered as f64);
        self
    }

    fn at_least(mut self) -> Self {
        self.at_least = true;
        self
    }

    fn with_setting(mut self, setting: String) -> Self {
        self.setting = Some(setting);
        self
    }

    fn about(mut self, capture: &str) -> Self {
        self.capture = Some(capture.to_string());
        self
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n` with its share of `offered`: `1,234 (0.52% of 237,000 offered)`.
fn of_offered(n: u64, offered: u64) -> String {
    if offered == 0 {
        return thousands(n);
    }
    format!("{} ({:.2}% of {} offered)", thousands(n), n as f64 * 100.0 / offered as f64, thousands(offered))
}

/// A byte count for people (`64 MiB`, `212 KiB`).
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n.is_multiple_of(1 << 30) => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

pub use crate::stats::kernel::{SoftnetCpu, parse_softnet};

/// What the doctor knows of an interface.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IfaceFacts {
    /// Name.
    pub name: String,
    /// Counters since the interface came up.
    pub counters: IfaceCounters,
    /// GRO on, when the device says.
    pub gro: Option<bool>,
    /// Receive ring (in use, maximum), for devices that have one.
    pub rx_ring: Option<(u32, u32)>,
    /// `napi_defer_hard_irqs`.
    pub defer_hard_irqs: Option<u64>,
    /// `gro_flush_timeout` (ns).
    pub gro_flush_timeout: Option<u64>,
}

/// What the doctor knows of the machine.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SystemFacts {
    /// Online CPUs.
    pub cpus: usize,
    /// `net.core.rmem_max`.
    pub rmem_max: Option<u64>,
    /// `net.core.netdev_max_backlog`.
    pub netdev_max_backlog: Option<u64>,
    /// `net.core.netdev_budget`.
    pub netdev_budget: Option<u64>,
    /// `net.core.netdev_budget_usecs`.
    pub netdev_budget_usecs: Option<u64>,
    /// Per-CPU softnet counters since boot.
    pub softnet: Vec<SoftnetCpu>,
    /// UDP counters since boot.
    pub udp: UdpSnmp,
    /// Interfaces (loopback left out).
    pub ifaces: Vec<IfaceFacts>,
    /// The kernel's NAPI threads (`napi/IF-ID`) and the CPUs each may run on.
    pub napi_threads: Vec<KernelThread>,
    /// Running captures' receive threads: the CPUs each may run on, by capture.
    pub capture_cpus: Vec<(String, Vec<Vec<usize>>)>,
}

/// A thread and the CPUs it may run on.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelThread {
    /// Its name (`comm`).
    pub name: String,
    /// `Cpus_allowed_list`.
    pub cpus: Vec<usize>,
}

/// The CPUs a task may run on (`Cpus_allowed_list` of its status file).
fn allowed_cpus(status: &str) -> Vec<usize> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|v| crate::units::parse_cpu_list(v.trim()).ok())
        .unwrap_or_default()
}

/// The kernel's NAPI threads, from /proc (threaded NAPI names them `napi/IF-ID`).
pub fn read_napi_threads() -> Vec<KernelThread> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| {
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?.trim().to_string();
            name.starts_with("napi/").then_some(())?;
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            Some(KernelThread { name, cpus: allowed_cpus(&status) })
        })
        .collect()
}

/// The CPUs each receive thread (`linecap-rxN`) of process `pid` may run on.
pub fn read_capture_cpus(pid: u32) -> Vec<Vec<usize>> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut threads: Vec<(String, Vec<usize>)> = dir
        .flatten()
        .filter_map(|e| {
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?.trim().to_string();
            name.starts_with("linecap-rx").then_some(())?;
            Some((name, allowed_cpus(&std::fs::read_to_string(e.path().join("status")).ok()?)))
        })
        .collect();
    threads.sort();
    threads.into_iter().map(|(_, cpus)| cpus).collect()
}

/// Adds where the kernel's receive work and the running captures' receive
/// threads may run.
pub fn read_placement(s: &mut SystemFacts, caps: &[Snapshot]) {
    s.napi_threads = read_napi_threads();
    s.capture_cpus =
        caps.iter().filter(|c| c.running).map(|c| (c.name.clone(), read_capture_cpus(c.pid))).collect();
}

fn sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/net/core/{name}")).ok()?.trim().parse().ok()
}

fn iface_sysfs(ifname: &str, file: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/{file}")).ok()?.trim().parse().ok()
}

/// Reads the machine's side (this network namespace's interfaces).
pub fn read_system() -> SystemFacts {
    let mut s = read_global();
    read_namespace(&mut s);
    s
}

/// The facts that belong to the machine, not to a network namespace
/// (sysctls of net.core are the initial namespace's, softnet per CPU).
pub fn read_global() -> SystemFacts {
    SystemFacts {
        cpus: sys::online_cpus(),
        rmem_max: sysctl("rmem_max"),
        netdev_max_backlog: sysctl("netdev_max_backlog"),
        netdev_budget: sysctl("netdev_budget"),
        netdev_budget_usecs: sysctl("netdev_budget_usecs"),
        softnet: parse_softnet(&std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default()),
        ..SystemFacts::default()
    }
}

/// Adds the current network namespace's UDP counters and interfaces.
pub fn read_namespace(s: &mut SystemFacts) {
    let k = kernel::KernelSnapshot::read();
    s.udp = k.udp;
    s.ifaces = k
        .ifaces
        .iter()
        .filter(|(name, _)| name.as_str() != "lo")
        .map(|(name, c)| IfaceFacts {
            name: name.clone(),
            counters: *c,
            gro: sys::get_gro(name).ok(),
            rx_ring: sys::rx_ring_size(name).ok().filter(|&(_, max)| max > 0),
            defer_hard_irqs: iface_sysfs(name, "napi_defer_hard_irqs"),
            gro_flush_timeout: iface_sysfs(name, "gro_flush_timeout"),
        })
        .collect();
}

/// A socket buffer that large is the most a socket capture should need
/// for a burst at line rate; rmem_max below it limits unprivileged ones.
const RMEM_ADVISED: u64 = 64 << 20;

fn finding(level: Level, place: impl Into<String>, what: impl Into<String>, fix: Option<String>) -> Finding {
    Finding {
        level,
        place: place.into(),
        what: what.into(),
        fix,
        capture: None,
        stage: None,
        counter: None,
        count: None,
        at_least: false,
        share: None,
        setting: None,
    }
}

/// Judges the evidence: captures first (where their packets went, over
/// their lifetime), then the machine's settings. Counters that cover the
/// machine's whole history (drops since boot, since an interface came up)
/// are judged only when `history` is asked for, or when there is no
/// capture to judge: they are old news for a capture that lost nothing.
pub fn diagnose(sys: &SystemFacts, caps: &[Snapshot], history: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in caps {
        diagnose_capture(sys, c, &mut out);
    }
    diagnose_settings(sys, caps, &mut out);
    if history || caps.is_empty() {
        diagnose_history(sys, &mut out);
    }
    out.sort_by_key(|f| f.level);
    out
}

/// A capture's `settings` stage, read back (all zero in files written
/// before it existed).
#[derive(Debug, Clone, Copy, Default)]
struct Settings {
    rcvbuf: u64,
    forced: bool,
    filter: bool,
    busy_poll: bool,
    cpu_mask: u64,
    port: u64,
}

fn settings_of(c: &Snapshot) -> Settings {
    let st = c.stages.iter().find(|s| s.name == "settings");
    let get = |n: &str| st.map_or(0, |s| s.get(n));
    Settings {
        rcvbuf: get("rcvbuf_bytes"),
        forced: get("rcvbuf_forced") != 0,
        filter: get("filter") != 0,
        busy_poll: get("busy_poll_ns") != 0,
        cpu_mask: get("cpu_mask"),
        port: get("port"),
    }
}

/// One capture's counts, summed over its threads, and what they imply.
struct CaptureView<'a> {
    c: &'a Snapshot,
    settings: Settings,
    received: u64,
    /// Drops at the capture's own socket, ring or AF_XDP socket.
    drops: u64,
    /// Frames the interfaces dropped while it ran, not counted twice.
    iface: u64,
    softnet: u64,
    missing: u64,
    /// What reached the host for it (received + every drop + what the
    /// verifier found missing beyond them).
    offered: u64,
    /// A receive thread pinned to the CPU of a NAPI thread: (CPU, thread).
    shares_core: Option<(usize, String)>,
    /// A CPU without NAPI threads, to move the receive thread to.
    free_cpu: Option<usize>,
}

impl<'a> CaptureView<'a> {
    fn new(sys: &SystemFacts, c: &'a Snapshot) -> Self {
        let drops = c.sum("rx.", "kernel_drops");
        let mut iface = kernel_stage(c, "iface_rx_dropped");
        if c.kind() == Some(BackendKind::Xdp) {
            // veth counts a frame its redirect could not hand to the AF_XDP
            // socket as an rx drop too: the socket's own count names it.
            iface = iface.saturating_sub(drops);
        }
        let softnet = kernel_stage(c, "softnet_dropped");
        let received = c.sum("rx.", "packets");
        let missing = c.sum("verify.", "missing");
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
        let asked = self.c.sum("rx.", "gro_on") > 0 || self.c.sum("rx.", "gro_switches") > 0;
        asked && self.c.sum("rx.", "datagrams") < self.received
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
        Some(format!(
            "the receive thread shares CPU {cpu} with {napi}, the kernel's receive work for the interface: \
             use {other}--busy-poll (the thread then does that work itself)"
        ))
    }
}

/// Whether a running capture's receive thread (or an ended one's pinned
/// CPUs) shares its only CPU with a NAPI thread, and a CPU that has none.
fn placement(
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

fn diagnose_capture(sys: &SystemFacts, c: &Snapshot, out: &mut Vec<Finding>) {
    let v = CaptureView::new(sys, c);
    receive_losses(sys, &v, out);
    listen_mismatch(&v, out);
    upstream_losses(&v, out);
    sink_losses(&v, out);
    host_losses(sys, &v, out);
    busy_poll_gaps(&v, out);
    let corrupt = c.sum("verify.", "corrupt").saturating_add(c.sum("verify.", "malformed"));
    if corrupt > 0 {
        out.push(
            finding(
                Level::Warn,
                v.place("payloads"),
                format!("{} payloads corrupt or malformed", thousands(corrupt)),
                Some("check the sender's format (--verify expects linecap's seq payload)".into()),
            )
            .counted(&c.name, "verify", "corrupt", corrupt, v.offered),
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
fn buffer_setting(sys: &SystemFacts, s: &Settings) -> String {
    let rmem = sys.rmem_max.map_or("?".into(), bytes);
    if s.forced {
        format!("receive buffer {} (forced above net.core.rmem_max {rmem})", bytes(s.rcvbuf))
    } else {
        format!("receive buffer {} (net.core.rmem_max {rmem}; root forces above it)", bytes(s.rcvbuf))
    }
}

fn receive_losses(sys: &SystemFacts, v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let c = v.c;
    if v.drops == 0 {
        if v.received > 0 {
            out.push(
                finding(
                    Level::Ok,
                    v.place("receive"),
                    format!("{} received, no kernel drops", thousands(v.received)),
                    None,
                )
                .counted(&c.name, "rx", "packets", v.received, v.offered),
            );
        } else if v.settings.filter {
            out.push(
                finding(
                    Level::Warn,
                    v.place("filter"),
                    "received nothing: its filter may exclude the stream".to_string(),
                    Some(
                        "check --filter against the stream (tcpdump -ni IF with the same expression)".into(),
                    ),
                )
                .about(&c.name)
                .with_setting("a filter is attached".into()),
            );
        }
        return;
    }
    let (mut overflow, excluded) = if v.settings.filter && c.kind().is_some_and(BackendKind::is_socket) {
        // The socket counts what its filter rejects with its overflows; the
        // namespace's UDP buffer errors count only the overflows.
        let overflow = v.drops.min(kernel_stage(c, "udp_rcvbuf_errors"));
        (overflow, v.drops - overflow)
    } else {
        (v.drops, 0)
    };
    if excluded > 0 {
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
        .counted(&c.name, "rx", "kernel_drops", excluded, v.offered)
        .with_setting("a filter is attached".into());
        if v.gro_was_on() {
            f = f.at_least();
        }
        out.push(f);
    }
    if overflow == 0 {
        return;
    }
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
        .counted(&c.name, "rx", "kernel_drops", overflow, v.offered)
        .with_setting(setting);
    if gro && v.missing == 0 {
        f = f.at_least();
    }
    out.push(f);
}

/// Where a capture's own receive drops happen, the fix, and the setting in force.
fn receive_place(sys: &SystemFacts, v: &CaptureView<'_>) -> (String, String, String) {
    let c = v.c;
    match c.kind() {
        Some(BackendKind::AfPacket) => (
            "the packet ring was full".into(),
            "a larger ring (--ring-blocks, --ring-block-size), more receive threads (--threads N --fanout), \
             and a receive core apart from the NIC's interrupts (--cpus)"
                .into(),
            format!("ring {} per thread", bytes(c.stages.iter().find(|s| s.name == "settings").map_or(0, |s| s.get("ring_bytes")))),
        ),
        Some(BackendKind::Xdp) => (
            format!(
                "the AF_XDP socket's rings ({} rx ring full, {} no fill frame)",
                thousands(c.sum("rx.", "ring_full_drops")),
                thousands(c.sum("rx.", "no_buffer_drops"))
            ),
            "larger rings and UMEM (--xdp-ring), faster sinks, busy polling (--busy-poll) so the receiver runs \
             the device's NAPI itself, or more queues (--queues)"
                .into(),
            format!(
                "UMEM {}{}",
                bytes(c.stages.iter().find(|s| s.name == "settings").map_or(0, |s| s.get("ring_bytes"))),
                if v.settings.busy_poll { ", busy polling" } else { ", no busy polling" }
            ),
        ),
        _ => {
            let bigger = if v.settings.forced && v.settings.rcvbuf >= RMEM_ADVISED {
                "a faster receiver rather than a larger buffer (it is already large): "
            } else {
                "a larger buffer (--rcvbuf), "
            };
            (
                "the socket receive buffer overflowed".into(),
                format!(
                    "{bigger}more threads (--threads N, SO_REUSEPORT), --busy-poll, or --backend afpacket|xdp"
                ),
                buffer_setting(sys, &v.settings),
            )
        }
    }
}

/// Datagrams for a port nobody listened on while the capture ran: the
/// stream goes somewhere the capture is not listening.
fn listen_mismatch(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let no_ports = kernel_stage(v.c, "udp_no_ports");
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
        .counted(&v.c.name, "kernel", "udp_no_ports", no_ports, v.offered.saturating_add(no_ports)),
    );
}

/// Sequence numbers missing beyond every drop this host counted.
fn upstream_losses(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
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
        .counted(&v.c.name, "verify", "missing", extra, v.offered),
    );
}

fn sink_losses(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    for (stage, counter, what, fix) in [
        (
            "pcap.queue.",
            "ring_full_drops",
            "the pcap writer fell behind: packets dropped at its queue",
            "a faster disk (or tmpfs), a larger --sink-buffer, or less to write (--filter)",
        ),
        (
            "pcap.writer.",
            "write_error_drops",
            "writing the pcap file failed (disk full or failing)",
            "free space on the disk, or --rotate-size with a cleaner",
        ),
        (
            "blocks.",
            "dropped_blocks",
            "blocks dropped: the block writer fell behind",
            "a faster disk, a larger --block-queue, or the shared-memory ring (--shm)",
        ),
        (
            "blocks.",
            "ring_dropped",
            "blocks dropped: the shared-memory ring's reader fell behind",
            "a faster reader, or more slots in the ring",
        ),
        (
            "relay.",
            "dropped",
            "the relay's socket was full",
            "a larger socket buffer at the relay, or a faster destination",
        ),
    ] {
        let n = v.c.sum(stage, counter);
        if n > 0 {
            let kind = stage.trim_end_matches('.');
            out.push(
                finding(
                    Level::Loss,
                    v.place(kind),
                    format!("{}: {what}", of_offered(n, v.offered)),
                    Some(fix.into()),
                )
                .counted(&v.c.name, kind, counter, n, v.offered),
            );
        }
    }
}

fn host_losses(sys: &SystemFacts, v: &CaptureView<'_>, out: &mut Vec<Finding>) {
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
            .counted(&v.c.name, "kernel", "softnet_dropped", v.softnet, v.offered)
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
        .counted(&v.c.name, "kernel", "iface_rx_dropped", v.iface, v.offered),
    );
}

fn busy_poll_gaps(v: &CaptureView<'_>, out: &mut Vec<Finding>) {
    let gaps = v.c.sum("rx.", "poll_gaps");
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
                v.c.sum("rx.", "poll_gap_ns") as f64 / 1e6
            ),
            Some(
                "keep the receive core for the capture alone (isolcpus=, nohz_full=, irqaffinity= on the kernel \
                 command line), or run it SCHED_FIFO (chrt -f 50)"
                    .into(),
            ),
        )
        .counted(&v.c.name, "rx", "poll_gaps", gaps, 0),
    );
}

/// What running captures are doing now: two snapshots of the same
/// captures `secs` apart give rates, and any drop that grew between them
/// is a loss happening now (cumulative counters cannot tell that).
pub fn diagnose_now(before: &[Snapshot], after: &[Snapshot], secs: f64) -> Vec<Finding> {
    let mut out = Vec::new();
    let secs = secs.max(1e-3);
    for a in after {
        let Some(b) = before.iter().find(|b| b.name == a.name && b.pid == a.pid && a.pid != 0) else {
            continue;
        };
        let d = |prefix: &str, counter: &str| a.sum(prefix, counter).saturating_sub(b.sum(prefix, counter));
        let dk = |counter: &str| kernel_stage(a, counter).saturating_sub(kernel_stage(b, counter));
        let received = d("rx.", "packets");
        let places = [
            ("the kernel at this capture's socket or ring", d("rx.", "kernel_drops")),
            ("the pcap writer's queue", d("pcap.queue.", "ring_full_drops")),
            ("the pcap file (write errors)", d("pcap.writer.", "write_error_drops")),
            ("the relay (socket full)", d("relay.", "dropped")),
            ("the relay (errors)", d("relay.", "errors")),
            ("the block writer", d("blocks.", "dropped_packets")),
            ("a CPU's backlog", dk("softnet_dropped")),
            ("the interfaces", dk("iface_rx_dropped")),
        ];
        let losing: Vec<String> = places
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(place, n)| format!("{:.0}/s at {place}", *n as f64 / secs))
            .collect();
        let place = format!("capture '{}': now", a.name);
        let rate = format!("{:.1} kpps received over the last {secs:.1} s", received as f64 / secs / 1e3);
        if losing.is_empty() {
            out.push(finding(Level::Ok, place, format!("{rate}, nothing lost"), None));
        } else {
            out.push(finding(
                Level::Loss,
                place,
                format!("{rate}; losing {}", losing.join(", ")),
                Some("see the findings below for each place".into()),
            ));
        }
    }
    out
}

fn kernel_stage(c: &Snapshot, counter: &str) -> u64 {
    c.stages.iter().filter(|s| s.name == "kernel").map(|s| s.get(counter)).fold(0, u64::saturating_add)
}

/// Settings that will cost packets, judged now (not counters of the past).
fn diagnose_settings(sys: &SystemFacts, caps: &[Snapshot], out: &mut Vec<Finding>) {
    // rmem_max matters to a socket capture whose buffer was not forced.
    let unforced_socket =
        caps.iter().any(|c| c.kind().is_some_and(BackendKind::is_socket) && !settings_of(c).forced);
    if caps.is_empty() || unforced_socket {
        match sys.rmem_max {
            Some(v) if v < RMEM_ADVISED => out.push(
                finding(
                    Level::Warn,
                    "net.core.rmem_max",
                    format!("{}: socket captures not run as root get at most this much buffer", bytes(v)),
                    Some(format!("sysctl -w net.core.rmem_max={RMEM_ADVISED}")),
                )
                .with_setting(format!("net.core.rmem_max {v}")),
            ),
            Some(v) => out.push(finding(Level::Ok, "net.core.rmem_max", bytes(v), None)),
            None => {}
        }
    }
    for i in &sys.ifaces {
        let place = format!("interface {}", i.name);
        if let Some((now, max)) = i.rx_ring
            && now < max
        {
            out.push(
                finding(
                    Level::Warn,
                    place.clone(),
                    format!("receive ring {now} of at most {max} descriptors"),
                    Some(format!("ethtool -G {} rx {max}", i.name)),
                )
                .with_setting(format!("rx ring {now}")),
            );
        }
        if i.gro == Some(false) {
            out.push(finding(
                Level::Warn,
                place.clone(),
                "GRO off: UDP GRO cannot coalesce datagrams for socket captures".to_string(),
                Some(format!("ethtool -K {} gro on", i.name)),
            ));
        }
        if i.defer_hard_irqs.unwrap_or(0) > 0 && i.gro_flush_timeout.unwrap_or(0) > 0 {
            out.push(finding(
                Level::Ok,
                place,
                format!(
                    "interrupts deferred to busy pollers (napi_defer_hard_irqs {}, gro_flush_timeout {} ns): \
                     captures here should use --busy-poll",
                    i.defer_hard_irqs.unwrap_or(0),
                    i.gro_flush_timeout.unwrap_or(0)
                ),
                None,
            ));
        }
    }
}

/// The machine's history: counters since boot or since an interface came
/// up, which may predate every capture (`doctor --history`).
fn diagnose_history(sys: &SystemFacts, out: &mut Vec<Finding>) {
    for s in &sys.softnet {
        if s.dropped > 0 {
            out.push(finding(
                Level::Warn,
                format!("CPU {}", s.cpu),
                format!(
                    "{} packets dropped at its backlog since boot (of {})",
                    thousands(s.dropped),
                    thousands(s.processed)
                ),
                Some(format!(
                    "sysctl -w net.core.netdev_max_backlog={} (now {})",
                    sys.netdev_max_backlog.unwrap_or(1000).clamp(1000, 1 << 40) * 4,
                    sys.netdev_max_backlog.map_or("?".into(), |v| v.to_string())
                )),
            ));
        }
    }
    let squeezed = sys.softnet.iter().map(|s| s.time_squeeze).fold(0, u64::saturating_add);
    if squeezed > 0 {
        out.push(finding(
            Level::Warn,
            "NAPI budget",
            format!(
                "softirq ran out of budget or time {} times since boot (time_squeeze)",
                thousands(squeezed)
            ),
            Some(format!(
                "sysctl -w net.core.netdev_budget=600 net.core.netdev_budget_usecs=8000 (now {} and {})",
                sys.netdev_budget.map_or("?".into(), |v| v.to_string()),
                sys.netdev_budget_usecs.map_or("?".into(), |v| v.to_string())
            )),
        ));
    } else if !sys.softnet.is_empty() {
        out.push(finding(Level::Ok, "NAPI budget", "never ran out (time_squeeze 0)", None));
    }
    if sys.udp.rcvbuf_errors > 0 {
        out.push(finding(
            Level::Warn,
            "UDP",
            format!(
                "{} datagrams dropped at full socket buffers since boot (any socket)",
                thousands(sys.udp.rcvbuf_errors)
            ),
            Some("run 'linecap doctor NAME' while a capture runs to see whether they are its".into()),
        ));
    }
    for i in sys.ifaces.iter().filter(|i| i.counters.rx_dropped > 0) {
        out.push(finding(
            Level::Warn,
            format!("interface {}", i.name),
            format!(
                "{} frames dropped since it came up ({} received)",
                thousands(i.counters.rx_dropped),
                thousands(i.counters.rx_packets)
            ),
            Some(format!("ethtool -S {} shows where; a larger ring or more queues usually helps", i.name)),
        ));
    }
}

/// The findings as text, losses first.
pub fn render(findings: &[Finding]) -> String {
    let mut s = String::new();
    if findings.iter().all(|f| f.level == Level::Ok) {
        let _ = writeln!(s, "no losses found and no setting to change");
    }
    for f in findings {
        let mark = match f.level {
            Level::Loss => "LOSS",
            Level::Warn => "warn",
            Level::Ok => "ok  ",
        };
        let _ = writeln!(s, "{mark}  {}: {}", f.place, f.what);
        if let Some(fix) = &f.fix {
            let _ = writeln!(s, "      fix: {fix}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::StageSnapshot;

    fn cap(backend: &str, stages: Vec<(&str, Vec<(&str, u64)>)>) -> Snapshot {
        Snapshot {
            name: "c".into(),
            pid: 1,
            running: true,
            owner_uid: 0,
            started_ns: 0,
            updated_ns: 0,
            backend: backend.into(),
            stages: stages
                .into_iter()
                .map(|(n, cs)| StageSnapshot {
                    name: n.into(),
                    counters: cs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                })
                .collect(),
        }
    }

    fn healthy() -> SystemFacts {
        SystemFacts {
            cpus: 2,
            rmem_max: Some(1 << 28),
            netdev_max_backlog: Some(1000),
            netdev_budget: Some(300),
            netdev_budget_usecs: Some(2000),
            softnet: vec![SoftnetCpu { cpu: 0, processed: 10, ..SoftnetCpu::default() }],
            ..SystemFacts::default()
        }
    }

    #[test]
    fn softnet_lines() {
        let t = "0000a1b2 00000003 00000010 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n\
                 00000001 00000000 00000000\nbad line\n";
        let v = parse_softnet(t);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], SoftnetCpu { cpu: 0, processed: 0xa1b2, dropped: 3, time_squeeze: 16 });
        assert_eq!(v[1].processed, 1);
    }

    #[test]
    fn healthy_machine_and_capture_say_so() {
        let c = cap("socket", vec![("rx.0", vec![("packets", 100), ("kernel_drops", 0)])]);
        let f = diagnose(&healthy(), &[c], false);
        assert!(f.iter().all(|f| f.level == Level::Ok), "{f:#?}");
        assert!(render(&f).starts_with("no losses found"));
    }

    #[test]
    fn each_backend_gets_its_own_fix() {
        for (backend, extra, needle) in [
            ("socket", vec![], "--rcvbuf"),
            ("afpacket", vec![], "--ring-blocks"),
            ("xdp", vec![("ring_full_drops", 3u64), ("no_buffer_drops", 2)], "--xdp-ring"),
        ] {
            let mut counters = vec![("packets", 100), ("kernel_drops", 5)];
            counters.extend(extra);
            let f = diagnose(&healthy(), &[cap(backend, vec![("rx.0", counters)])], false);
            assert_eq!(f[0].level, Level::Loss, "{backend}: {f:#?}");
            assert!(f[0].what.contains("5 (4.76% of 105 offered) packets dropped"), "{f:#?}");
            assert_eq!((f[0].count, f[0].counter.as_deref()), (Some(5), Some("kernel_drops")), "{f:#?}");
            assert!(f[0].fix.as_deref().unwrap().contains(needle), "{backend}: {f:#?}");
        }
    }

    #[test]
    fn losses_beyond_counted_drops_point_upstream() {
        let c = cap(
            "socket",
            vec![
                ("rx.0", vec![("packets", 90), ("kernel_drops", 4)]),
                ("verify.0", vec![("missing", 10)]),
                ("kernel", vec![("iface_rx_dropped", 1)]),
            ],
        );
        let f = diagnose(&healthy(), &[c], false);
        let up = f.iter().find(|f| f.place.contains("sequence numbers")).expect("upstream finding");
        assert!(up.what.contains("5 more than"), "{up:#?}");
        assert_eq!(up.count, Some(5));
    }

    #[test]
    fn machine_settings_are_judged() {
        let mut s = healthy();
        s.rmem_max = Some(212_992);
        s.softnet = vec![SoftnetCpu { cpu: 1, processed: 100, dropped: 7, time_squeeze: 9 }];
        s.ifaces = vec![IfaceFacts {
            name: "eth9".into(),
            rx_ring: Some((256, 4096)),
            gro: Some(false),
            ..IfaceFacts::default()
        }];
        let text = render(&diagnose(&s, &[], true));
        for needle in [
            "net.core.rmem_max=67108864",
            "CPU 1: 7 packets dropped",
            "netdev_budget=600",
            "ethtool -G eth9 rx 4096",
            "ethtool -K eth9 gro on",
        ] {
            assert!(text.contains(needle), "{needle} in:\n{text}");
        }
    }

    #[test]
    fn rates_now_name_the_place_losing() {
        let before = cap("socket", vec![("rx.0", vec![("packets", 1000), ("kernel_drops", 5)])]);
        let same = cap("socket", vec![("rx.0", vec![("packets", 3000), ("kernel_drops", 5)])]);
        let f = diagnose_now(std::slice::from_ref(&before), &[same], 2.0);
        assert_eq!(f[0].level, Level::Ok);
        assert!(f[0].what.contains("1.0 kpps received") && f[0].what.contains("nothing lost"), "{f:?}");
        let worse = cap(
            "socket",
            vec![
                ("rx.0", vec![("packets", 3000), ("kernel_drops", 205)]),
                ("relay.0", vec![("dropped", 40)]),
            ],
        );
        let f = diagnose_now(&[before], &[worse], 2.0);
        assert_eq!(f[0].level, Level::Loss);
        assert!(
            f[0].what.contains("100/s at the kernel") && f[0].what.contains("20/s at the relay"),
            "{f:?}"
        );
    }

    #[test]
    fn interface_loss_behind_deferred_interrupts_asks_for_busy_polling() {
        let mut s = healthy();
        s.ifaces = vec![IfaceFacts {
            name: "veth9".into(),
            defer_hard_irqs: Some(2),
            gro_flush_timeout: Some(10_000_000),
            ..IfaceFacts::default()
        }];
        let c = cap("xdp", vec![("rx.0", vec![("packets", 9)]), ("kernel", vec![("iface_rx_dropped", 90)])]);
        let f = diagnose(&s, &[c], false);
        assert_eq!(f[0].level, Level::Loss);
        assert!(
            f[0].fix.as_deref().unwrap().contains("veth9 defer their work") && f[0].what.starts_with("90 (")
        );
    }

    fn settings(pairs: Vec<(&'static str, u64)>) -> (&'static str, Vec<(&'static str, u64)>) {
        ("settings", pairs)
    }

    #[test]
    fn a_buffer_too_small_shows_the_buffer_in_force() {
        let c = cap(
            "socket",
            vec![
                ("rx.0", vec![("packets", 99_000), ("kernel_drops", 1_000)]),
                settings(vec![("rcvbuf_bytes", 256 << 10), ("rcvbuf_forced", 0)]),
            ],
        );
        let f = diagnose(&healthy(), &[c], false);
        assert_eq!(f[0].level, Level::Loss);
        assert!(f[0].what.starts_with("1,000 (1.00% of 100,000 offered) packets dropped"), "{f:#?}");
        assert_eq!(
            f[0].setting.as_deref(),
            Some("receive buffer 256 KiB (net.core.rmem_max 256 MiB; root forces above it)")
        );
        assert!(f[0].fix.as_deref().unwrap().starts_with("a larger buffer (--rcvbuf)"), "{f:#?}");
        assert_eq!(f[0].share, Some(0.01));
    }

    #[test]
    fn udp_gro_drops_are_a_lower_bound_unless_sequences_say_more() {
        let rx = ("rx.0", vec![("packets", 1000), ("kernel_drops", 10), ("gro_on", 1)]);
        let f = diagnose(&healthy(), &[cap("socket", vec![rx.clone()])], false);
        assert!(f[0].at_least && f[0].what.starts_with("at least 10"), "{f:#?}");
        let verified = cap("socket", vec![rx, ("verify.0", vec![("missing", 160)])]);
        let f = diagnose(&healthy(), &[verified], false);
        assert_eq!(f[0].count, Some(160), "the verifier's count is the datagram count: {f:#?}");
        assert!(!f[0].at_least);
        assert!(!f.iter().any(|f| f.place.contains("sequence numbers")), "not sent upstream: {f:#?}");
    }

    #[test]
    fn a_filter_that_excludes_the_stream_is_named_not_the_buffer() {
        let c = cap(
            "socket",
            vec![
                ("rx.0", vec![("packets", 0), ("kernel_drops", 5000)]),
                ("kernel", vec![("udp_rcvbuf_errors", 0)]),
                settings(vec![("filter", 1)]),
            ],
        );
        let f = diagnose(&healthy(), &[c], false);
        assert_eq!(f[0].level, Level::Loss);
        assert!(
            f[0].place.ends_with("filter") && f[0].fix.as_deref().unwrap().contains("--filter"),
            "{f:#?}"
        );
        assert!(!f.iter().any(|f| f.what.contains("buffer overflowed")), "{f:#?}");
    }

    #[test]
    fn a_stream_to_another_port_is_named() {
        let c = cap(
            "socket",
            vec![
                ("rx.0", vec![("packets", 0)]),
                ("kernel", vec![("udp_no_ports", 70_000)]),
                settings(vec![("port", 9000)]),
            ],
        );
        let f = diagnose(&healthy(), &[c], false);
        assert_eq!(f[0].level, Level::Loss);
        assert!(f[0].what.starts_with("70,000 datagrams arrived for UDP ports nobody listened on"), "{f:#?}");
        assert!(f[0].fix.as_deref().unwrap().contains("it takes port 9000"), "{f:#?}");
        assert_eq!(f[0].counter.as_deref(), Some("udp_no_ports"));
    }

    #[test]
    fn af_xdp_redirect_failures_are_not_counted_twice() {
        let c = cap(
            "xdp",
            vec![
                ("rx.0", vec![("packets", 900), ("kernel_drops", 100), ("no_buffer_drops", 100)]),
                ("kernel", vec![("iface_rx_dropped", 100)]),
            ],
        );
        let f = diagnose(&healthy(), &[c], false);
        assert_eq!(f.iter().filter(|f| f.level == Level::Loss).count(), 1, "{f:#?}");
        assert!(f[0].fix.as_deref().unwrap().contains("--xdp-ring"));
    }

    #[test]
    fn a_receive_thread_on_the_napi_core_is_told_to_move() {
        let mut s = healthy();
        s.napi_threads = vec![KernelThread { name: "napi/veth1-8193".into(), cpus: vec![1] }];
        s.capture_cpus = vec![("c".into(), vec![vec![1]])];
        let losing = cap(
            "socket",
            vec![
                ("rx.0", vec![("packets", 900), ("kernel_drops", 100)]),
                settings(vec![("rcvbuf_bytes", 64 << 20), ("rcvbuf_forced", 1)]),
            ],
        );
        let f = diagnose(&s, &[losing], false);
        let fix = f[0].fix.as_deref().unwrap();
        assert!(fix.starts_with("the receive thread shares CPU 1 with napi/veth1-8193"), "{fix}");
        assert!(fix.contains("--cpus 0") && fix.contains("--busy-poll"), "{fix}");
        assert!(fix.contains("rather than a larger buffer"), "the buffer is already large: {fix}");
        // A busy poller is not told to busy-poll.
        let polling = cap(
            "xdp",
            vec![
                ("rx.0", vec![("packets", 900), ("kernel_drops", 100)]),
                settings(vec![("busy_poll_ns", 20_000)]),
            ],
        );
        let f = diagnose(&s, &[polling], false);
        let fix = f[0].fix.as_deref().unwrap();
        assert!(
            fix.starts_with("the busy-polling receive thread shares CPU 1") && fix.contains("use --cpus 0"),
            "{fix}"
        );
        assert!(!fix.contains("use --cpus 0 (a CPU without NAPI threads), or --busy-poll"), "{fix}");
        // Sharing without loss is worth a line, not an alarm.
        let fine = cap("socket", vec![("rx.0", vec![("packets", 900)])]);
        let f = diagnose(&s, &[fine], false);
        assert!(f.iter().all(|f| f.level == Level::Ok), "{f:#?}");
    }

    #[test]
    fn a_slow_writer_and_a_full_ring_are_their_own_places() {
        let c = cap(
            "socket",
            vec![("rx.0", vec![("packets", 1000)]), ("pcap.queue.0", vec![("ring_full_drops", 300)])],
        );
        let f = diagnose(&healthy(), &[c], false);
        assert_eq!(f[0].stage.as_deref(), Some("pcap.queue"));
        assert!(f[0].fix.as_deref().unwrap().contains("--sink-buffer"));
        let ring = cap(
            "afpacket",
            vec![
                ("rx.0", vec![("packets", 1000), ("kernel_drops", 30)]),
                settings(vec![("ring_bytes", 1 << 20)]),
            ],
        );
        let f = diagnose(&healthy(), &[ring], false);
        assert_eq!(f[0].setting.as_deref(), Some("ring 1 MiB per thread"));
    }

    #[test]
    fn old_news_is_left_out_unless_history_is_asked_for() {
        let mut s = healthy();
        s.softnet = vec![SoftnetCpu { cpu: 0, processed: 10, dropped: 3, time_squeeze: 99 }];
        s.udp.rcvbuf_errors = 1234;
        s.ifaces = vec![IfaceFacts {
            name: "eth0".into(),
            counters: IfaceCounters { rx_dropped: 5, ..IfaceCounters::default() },
            ..IfaceFacts::default()
        }];
        s.rmem_max = Some(212_992);
        let forced = cap(
            "socket",
            vec![
                ("rx.0", vec![("packets", 100)]),
                settings(vec![("rcvbuf_bytes", 64 << 20), ("rcvbuf_forced", 1)]),
            ],
        );
        let f = diagnose(&s, std::slice::from_ref(&forced), false);
        assert!(f.iter().all(|f| f.level == Level::Ok), "a clean capture gets nothing but ok: {f:#?}");
        let f = diagnose(&s, &[forced], true);
        for needle in
            ["since boot (of 10)", "time_squeeze", "1,234 datagrams", "5 frames dropped since it came up"]
        {
            assert!(f.iter().any(|f| f.what.contains(needle)), "{needle}: {f:#?}");
        }
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    proptest::proptest! {
        #[test]
        fn softnet_parser_never_panics(t in ".{0,300}") {
            let _ = parse_softnet(&t);
        }
    }
}
