//! `linecap doctor`: where packets are lost, and which setting would help.
//!
//! Two sources of evidence: the counters of captures (their shared-memory
//! files: every drop linecap counted, by place) and the machine (sysctls,
//! per-CPU softnet counters, interfaces: drops, GRO, receive rings, busy
//! polling knobs). Reading them is [`read_system`]; judging them is the
//! pure [`diagnose`], which tests feed with made-up facts.

use std::fmt::Write as _;

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

/// One thing the doctor found.
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
}

/// One CPU's line of `/proc/net/softnet_stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SoftnetCpu {
    /// CPU (line number).
    pub cpu: usize,
    /// Packets processed.
    pub processed: u64,
    /// Packets dropped because the CPU's backlog was full.
    pub dropped: u64,
    /// Times NAPI stopped with work left (budget or time ran out).
    pub time_squeeze: u64,
}

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
}

/// Parses `/proc/net/softnet_stat` (hex columns: processed, dropped,
/// time_squeeze, ...), one line per CPU. Never panics.
pub fn parse_softnet(text: &str) -> Vec<SoftnetCpu> {
    text.lines()
        .enumerate()
        .filter_map(|(cpu, line)| {
            let mut cols = line.split_whitespace().map(|c| u64::from_str_radix(c, 16).ok());
            Some(SoftnetCpu {
                cpu,
                processed: cols.next()??,
                dropped: cols.next()??,
                time_squeeze: cols.next()??,
            })
        })
        .collect()
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
    Finding { level, place: place.into(), what: what.into(), fix }
}

/// Judges the evidence: captures first (where their packets went), then
/// the machine (settings that will cost packets).
pub fn diagnose(sys: &SystemFacts, caps: &[Snapshot]) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in caps {
        diagnose_capture(sys, c, &mut out);
    }
    diagnose_system(sys, &mut out);
    out.sort_by_key(|f| f.level);
    out
}

fn diagnose_capture(sys: &SystemFacts, c: &Snapshot, out: &mut Vec<Finding>) {
    let place = |stage: &str| format!("capture '{}': {stage}", c.name);
    let received = c.sum("rx.", "packets");
    let drops = c.sum("rx.", "kernel_drops");
    let rmem = sys.rmem_max.map_or("?".into(), |v| v.to_string());
    if drops > 0 {
        let (stage, fix) = match c.backend.as_str() {
            "afpacket" => (
                "the packet ring was full".to_string(),
                "a larger ring (--ring-blocks, --ring-block-size), more receive threads (--threads N --fanout), \
                 and a receive core apart from the NIC's interrupts (--cpus)"
                    .to_string(),
            ),
            "xdp" => {
                let full = c.sum("rx.", "ring_full_drops");
                let no_buf = c.sum("rx.", "no_buffer_drops");
                (
                    format!("the AF_XDP socket's rings ({full} rx ring full, {no_buf} no fill frame)"),
                    "larger rings and UMEM (--xdp-ring), faster sinks, busy polling (--busy-poll) so the \
                     receiver runs the device's NAPI itself, or more queues (--queues)"
                        .to_string(),
                )
            }
            _ => (
                "the socket receive buffer overflowed".to_string(),
                format!(
                    "a larger buffer (--rcvbuf; net.core.rmem_max is {rmem}, root forces above it), keep GRO on, \
                     more threads (--threads N, SO_REUSEPORT), --busy-poll, or --backend afpacket|xdp"
                ),
            ),
        };
        out.push(finding(
            Level::Loss,
            place("receive"),
            format!("{drops} packets dropped by the kernel: {stage} ({received} received)"),
            Some(fix),
        ));
    } else if received > 0 {
        out.push(finding(Level::Ok, place("receive"), format!("{received} received, no kernel drops"), None));
    }
    let gaps = c.sum("rx.", "poll_gaps");
    if gaps > 0 {
        out.push(finding(
            Level::Warn,
            place("busy polling"),
            format!(
                "the device went unpolled for over 100 µs {gaps} times ({:.1} ms in all): the receiving thread \
                 was off its core",
                c.sum("rx.", "poll_gap_ns") as f64 / 1e6
            ),
            Some(
                "keep the receive core for the capture alone (isolcpus=, nohz_full=, irqaffinity= on the kernel \
                 command line), or run it SCHED_FIFO (chrt -f 50)"
                    .into(),
            ),
        ));
    }
    let missing = c.sum("verify.", "missing");
    let kernel_seen = drops
        .saturating_add(kernel_stage(c, "iface_rx_dropped"))
        .saturating_add(kernel_stage(c, "softnet_dropped"));
    if missing > kernel_seen {
        out.push(finding(
            Level::Loss,
            place("sequence numbers"),
            format!(
                "{missing} packets missing from the sequences, {} more than this host counted dropping",
                missing - kernel_seen
            ),
            Some(
                "they were lost before this host's counters: at the sender, in the network, or in the NIC \
                 (ethtool -S IF: look for rx_missed, rx_fifo, rx_no_buffer)"
                    .into(),
            ),
        ));
    }
    let corrupt = c.sum("verify.", "corrupt").saturating_add(c.sum("verify.", "malformed"));
    if corrupt > 0 {
        out.push(finding(
            Level::Warn,
            place("payloads"),
            format!("{corrupt} payloads corrupt or malformed"),
            Some("check the sender's format (--verify expects linecap's seq payload)".into()),
        ));
    }
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
    ] {
        let n = c.sum(stage, counter);
        if n > 0 {
            out.push(finding(
                Level::Loss,
                place(stage.trim_end_matches('.')),
                format!("{n}: {what}"),
                Some(fix.into()),
            ));
        }
    }
    let softnet = kernel_stage(c, "softnet_dropped");
    if softnet > 0 {
        out.push(finding(
            Level::Loss,
            place("kernel backlog"),
            format!("{softnet} packets dropped at a CPU's backlog while it ran"),
            Some(format!(
                "sysctl -w net.core.netdev_max_backlog={} (now {})",
                sys.netdev_max_backlog.unwrap_or(1000).clamp(1000, 1 << 40) * 4,
                sys.netdev_max_backlog.map_or("?".into(), |v| v.to_string())
            )),
        ));
    }
    let iface = kernel_stage(c, "iface_rx_dropped");
    if iface > 0 {
        let deferring: Vec<&str> = sys
            .ifaces
            .iter()
            .filter(|i| i.defer_hard_irqs.unwrap_or(0) > 0 && i.gro_flush_timeout.unwrap_or(0) > 0)
            .map(|i| i.name.as_str())
            .collect();
        let fix = if deferring.is_empty() {
            "a larger NIC ring (ethtool -G IF rx N), more queues (RSS), or a faster receiver".to_string()
        } else {
            format!(
                "{} defer their work to busy pollers (napi_defer_hard_irqs): capture with --busy-poll, \
                 or a larger NIC ring (ethtool -G IF rx N)",
                deferring.join(", ")
            )
        };
        out.push(finding(
            Level::Loss,
            place("interfaces"),
            format!("{iface} frames dropped by interfaces while it ran (rx_dropped)"),
            Some(fix),
        ));
    }
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

fn diagnose_system(sys: &SystemFacts, out: &mut Vec<Finding>) {
    for s in &sys.softnet {
        if s.dropped > 0 {
            out.push(finding(
                Level::Warn,
                format!("CPU {}", s.cpu),
                format!("{} packets dropped at its backlog since boot (of {})", s.dropped, s.processed),
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
            format!("softirq ran out of budget or time {squeezed} times since boot (time_squeeze)"),
            Some(format!(
                "sysctl -w net.core.netdev_budget=600 net.core.netdev_budget_usecs=8000 (now {} and {})",
                sys.netdev_budget.map_or("?".into(), |v| v.to_string()),
                sys.netdev_budget_usecs.map_or("?".into(), |v| v.to_string())
            )),
        ));
    } else if !sys.softnet.is_empty() {
        out.push(finding(Level::Ok, "NAPI budget", "never ran out (time_squeeze 0)", None));
    }
    match sys.rmem_max {
        Some(v) if v < RMEM_ADVISED => out.push(finding(
            Level::Warn,
            "net.core.rmem_max",
            format!("{v} bytes: socket captures not run as root get at most this much buffer"),
            Some(format!("sysctl -w net.core.rmem_max={RMEM_ADVISED}")),
        )),
        Some(v) => out.push(finding(Level::Ok, "net.core.rmem_max", format!("{v} bytes"), None)),
        None => {}
    }
    if sys.udp.rcvbuf_errors > 0 {
        out.push(finding(
            Level::Warn,
            "UDP",
            format!(
                "{} datagrams dropped at full socket buffers since boot (any socket)",
                sys.udp.rcvbuf_errors
            ),
            Some("run 'linecap doctor NAME' while a capture runs to see whether they are its".into()),
        ));
    }
    for i in &sys.ifaces {
        let place = format!("interface {}", i.name);
        if i.counters.rx_dropped > 0 {
            out.push(finding(
                Level::Warn,
                place.clone(),
                format!(
                    "{} frames dropped since it came up ({} received)",
                    i.counters.rx_dropped, i.counters.rx_packets
                ),
                Some(format!(
                    "ethtool -S {} shows where; a larger ring or more queues usually helps",
                    i.name
                )),
            ));
        }
        if let Some((now, max)) = i.rx_ring
            && now < max
        {
            out.push(finding(
                Level::Warn,
                place.clone(),
                format!("receive ring {now} of at most {max} descriptors"),
                Some(format!("ethtool -G {} rx {max}", i.name)),
            ));
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
        let f = diagnose(&healthy(), &[c]);
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
            let f = diagnose(&healthy(), &[cap(backend, vec![("rx.0", counters)])]);
            assert_eq!(f[0].level, Level::Loss, "{backend}: {f:#?}");
            assert!(f[0].what.contains("5 packets dropped"), "{f:#?}");
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
        let f = diagnose(&healthy(), &[c]);
        let up = f.iter().find(|f| f.place.contains("sequence numbers")).expect("upstream finding");
        assert!(up.what.contains("5 more than"), "{up:#?}");
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
        let text = render(&diagnose(&s, &[]));
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
        let f = diagnose(&s, &[c]);
        assert_eq!(f[0].level, Level::Loss);
        assert!(
            f[0].fix.as_deref().unwrap().contains("veth9 defer their work")
                && f[0].what.contains("90 frames")
        );
    }

    proptest::proptest! {
        #[test]
        fn softnet_parser_never_panics(t in ".{0,300}") {
            let _ = parse_softnet(&t);
        }
    }
}
