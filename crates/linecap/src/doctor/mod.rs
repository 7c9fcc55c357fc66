//! `linecap doctor`: where packets are lost, and which setting would help.
//!
//! Two sources of evidence: the counters of captures (their shared-memory
//! files: every drop linecap counted, by place) and the machine (sysctls,
//! per-CPU softnet counters, interfaces: drops, GRO, receive rings, busy
//! polling knobs). Reading them is [`read_system`]; judging them is the
//! pure [`diagnose`], which tests feed with made-up facts.

use std::fmt::Write as _;

use crate::source::BackendKind;
use crate::stats::kernel::{self, IfaceCounters, UdpSnmp};
use crate::stats::{
    BlocksIdx, Counter, KernelIdx, QueueIdx, RelayIdx, RxIdx, SettingsIdx, Snapshot, VerifyIdx, WriterIdx,
};
use crate::sys;

mod capture;
mod facts;

use capture::*;
pub use facts::*;

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
    /// Names the counter behind the finding (its stage kind: `rx`,
    /// `pcap.queue`, ...) and its count, as a share of what was offered.
    fn counted<C: Counter>(self, capture: &str, counter: C, count: u64, offered: u64) -> Self {
        self.counted_at(capture, C::STAGE.trim_end_matches('.'), counter, count, offered)
    }

    /// As [`counted`](Self::counted), at one named stage (`blocks.group`).
    fn counted_at<C: Counter>(
        mut self,
        capture: &str,
        stage: &str,
        counter: C,
        count: u64,
        offered: u64,
    ) -> Self {
        self.capture = Some(capture.to_string());
        self.stage = Some(stage.to_string());
        self.counter = Some(counter.name().to_string());
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
        let received = delta(a, b, RxIdx::Packets);
        let places = [
            ("the kernel at this capture's socket or ring", delta(a, b, RxIdx::KernelDrops)),
            ("the pcap writer's queue", delta(a, b, QueueIdx::RingFullDrops)),
            ("the pcap file (write errors)", delta(a, b, WriterIdx::WriteErrorDrops)),
            ("the relay (socket full)", delta(a, b, RelayIdx::Dropped)),
            ("the relay (errors)", delta(a, b, RelayIdx::Errors)),
            ("the block writer", delta(a, b, BlocksIdx::DroppedPackets)),
            ("a CPU's backlog", delta(a, b, KernelIdx::SoftnetDropped)),
            ("the interfaces", delta(a, b, KernelIdx::IfaceRxDropped)),
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

/// How much counter `c` grew from snapshot `b` to `a`.
fn delta<C: Counter>(a: &Snapshot, b: &Snapshot, c: C) -> u64 {
    a.total(c).saturating_sub(b.total(c))
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

    /// A socket capture on a machine that forbids io_uring is told what
    /// that costs it; one where io_uring is allowed is not.
    #[test]
    fn a_socket_capture_without_io_uring_is_told_so() {
        let c = || cap("socket", vec![("rx.0", vec![("packets", 100), ("kernel_drops", 5)])]);
        let mut off = healthy();
        off.io_uring_disabled = Some(2);
        let f = diagnose(&off, &[c()], false);
        assert!(
            f[0].fix.as_deref().unwrap().starts_with("io_uring allowed (kernel.io_uring_disabled is 2"),
            "{f:#?}"
        );
        for allowed in [None, Some(0), Some(1)] {
            let mut on = healthy();
            on.io_uring_disabled = allowed;
            let f = diagnose(&on, &[c()], false);
            assert!(!f[0].fix.as_deref().unwrap().contains("io_uring"), "{allowed:?}: {f:#?}");
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
    fn an_unheard_stream_behind_a_packet_tap_is_named() {
        let c = cap(
            "afpacket",
            vec![
                ("rx.0", vec![("packets", 450_000)]),
                ("kernel", vec![("udp_no_ports", 450_000), ("iface_rx_dropped", 550_000)]),
            ],
        );
        let f = diagnose(&healthy(), &[c], false);
        let tap = f.iter().find(|f| f.place.ends_with("after the tap")).expect("named");
        assert_eq!(tap.level, Level::Loss);
        assert!(tap.fix.as_deref().unwrap().contains("--discard-unreceived"), "{f:#?}");
        assert_eq!(tap.counter.as_deref(), Some("udp_no_ports"));
        // A few unheard datagrams (another stream) are not worth a word.
        let c = cap(
            "afpacket",
            vec![("rx.0", vec![("packets", 450_000)]), ("kernel", vec![("udp_no_ports", 100)])],
        );
        assert!(!diagnose(&healthy(), &[c], false).iter().any(|f| f.place.ends_with("after the tap")));
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
    fn busy_polling_the_kernel_refused_is_named_with_what_grants_it() {
        let mut s = healthy();
        s.napi_threads = vec![KernelThread { name: "napi/veth1-8193".into(), cpus: vec![1] }];
        s.capture_cpus = vec![("c".into(), vec![vec![1]])];
        let refused = |errno: u64| {
            cap(
                "socket",
                vec![
                    ("rx.0", vec![("packets", 900), ("kernel_drops", 100)]),
                    settings(vec![("busy_poll_refused", errno)]),
                ],
            )
        };
        let f = diagnose(&s, &[refused(libc::EPERM as u64)], false);
        let warn = f.iter().find(|f| f.place.ends_with("busy polling")).expect("a busy-polling finding");
        assert_eq!(warn.level, Level::Warn);
        assert!(warn.what.contains("refused by the kernel (errno 1)"), "{warn:#?}");
        assert!(warn.fix.as_deref().unwrap().contains("CAP_NET_ADMIN"), "{warn:#?}");
        // The placement fix does not send it back to the flag it was refused.
        let fix = f[0].fix.as_deref().unwrap();
        assert!(fix.contains("--busy-poll where the kernel grants it"), "{fix}");
        // Another refusal: the kernel's age, not a capability.
        let f = diagnose(&s, &[refused(libc::ENOPROTOOPT as u64)], false);
        let warn = f.iter().find(|f| f.place.ends_with("busy polling")).unwrap();
        assert!(warn.fix.as_deref().unwrap().contains("Linux 5.11"), "{warn:#?}");
        // Not refused: no such finding.
        let f = diagnose(&s, &[refused(0)], false);
        assert!(f.iter().all(|f| !f.place.ends_with("busy polling")), "{f:#?}");
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
