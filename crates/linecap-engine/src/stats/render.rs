//! Presenting a [`Snapshot`]: a table for people, JSON for programs, and
//! the Prometheus text exposition format for scrapers.

use std::fmt::Write;

use super::{RX_COUNTERS, RxIdx, Snapshot};
use crate::source::BackendKind;

/// The table's width: it fits a 100-column terminal.
pub const TABLE_WIDTH: usize = 100;

/// A table for people, one stage per row (wrapped to [`TABLE_WIDTH`]),
/// with only the counters that apply to the capture's backend (a counter
/// that is not zero is always shown). With `previous` (the snapshot
/// `seconds` earlier) each stage's packets also get their rate.
pub fn table(s: &Snapshot) -> String {
    table_with_rates(s, None)
}

/// [`table`] with rates since `previous`, taken `seconds` before `s`.
pub fn table_with_rates(s: &Snapshot, previous: Option<(&Snapshot, f64)>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", heading(s));
    for st in &s.stages {
        let kind = stage_kind(&st.name);
        let mut cells: Vec<String> = Vec::new();
        if let Some((prev, secs)) = previous
            && secs > 0.0
            && let Some(before) = prev.stages.iter().find(|p| p.name == st.name)
        {
            let counter = if kind == "relay" { "offered" } else { "packets" };
            let rate = st.get(counter).saturating_sub(before.get(counter)) as f64 / secs;
            if st.counters.iter().any(|(n, _)| n == counter) {
                cells.push(format!("[{}]", crate::units::si_scaled(rate, "pps")));
            }
        }
        cells.extend(
            st.counters
                .iter()
                .filter(|(n, v)| *v != 0 || applies(&s.backend, kind, n))
                .map(|(n, v)| format!("{n}={v}")),
        );
        wrap_row(&mut out, &st.name, &cells);
    }
    out
}

fn heading(s: &Snapshot) -> String {
    let state = match (s.pid, s.running) {
        (0, _) => "finished".to_string(),
        (p, true) => format!("pid {p}"),
        (p, false) => format!("pid {p}, gone without finishing: killed?"),
    };
    let backend = if s.backend.is_empty() { String::new() } else { format!("{}, ", s.backend) };
    // Anyone may write a file under /dev/shm: say whose numbers these are
    // when they are not the reader's own.
    let owner = if s.owner_uid != crate::sys::shm::effective_uid() {
        format!(", file of uid {}", s.owner_uid)
    } else {
        String::new()
    };
    format!("capture {} ({backend}{state}{owner})", s.name)
}

/// `rx.0` -> `rx`, `pcap.writer.0` -> `pcap.writer`, `kernel` -> `kernel`.
fn stage_kind(stage: &str) -> &str {
    match stage.rsplit_once('.') {
        Some((kind, n)) if n.chars().all(|c| c.is_ascii_digit()) => kind,
        _ => stage,
    }
}

/// Whether receive counter `name` means something for `backend` (the
/// other stages' counters all do).
fn applies(backend: &str, kind: &str, name: &str) -> bool {
    if kind != "rx" {
        return true;
    }
    // A backend this version does not know (a file of another): all.
    let Some(backend) = backend.split(['/', ' ']).next().and_then(BackendKind::parse) else {
        return true;
    };
    let common = [
        RxIdx::Packets,
        RxIdx::Bytes,
        RxIdx::Syscalls,
        RxIdx::KernelDrops,
        RxIdx::CpuUserNs,
        RxIdx::CpuSysNs,
    ];
    common.iter().chain(rx_counters_kept(backend)).any(|&c| RX_COUNTERS[c as usize] == name)
}

/// The receive counters a backend keeps beside the common ones.
fn rx_counters_kept(backend: BackendKind) -> &'static [RxIdx] {
    use RxIdx::*;
    match backend {
        BackendKind::Socket => &[Datagrams, Truncated, GroOn, GroSwitches, PollGaps, PollGapNs],
        BackendKind::Uring => &[Datagrams, Truncated, NoBufferDrops, GroOn],
        BackendKind::AfPacket => &[Truncated, RingFreezes, LosingBlocks],
        BackendKind::Xdp => &[RingFullDrops, NoBufferDrops, PollGaps, PollGapNs, FillRingEmpty],
        BackendKind::File => &[Truncated, Filtered],
    }
}

/// One stage's cells after its name, wrapped so no line passes the width.
fn wrap_row(out: &mut String, stage: &str, cells: &[String]) {
    let indent = " ".repeat(20);
    let mut line = format!("  {stage:<18}");
    let mut has_cells = false;
    for cell in cells {
        if has_cells && line.len() + 1 + cell.len() > TABLE_WIDTH {
            let _ = writeln!(out, "{line}");
            line.clone_from(&indent);
        }
        line.push(' ');
        line.push_str(cell);
        has_cells = true;
    }
    let _ = writeln!(out, "{line}");
}

/// Escapes a Prometheus label value (`\\`, `\"`, newline), as the text
/// format requires; names are checked when captures start, but a counters
/// file may have been written by anyone.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Sanitises a name into a Prometheus metric-name fragment.
fn metric_part(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// Prometheus text format: one metric family per stage kind and counter,
/// labelled with the capture and the stage instance.
pub fn prometheus(snaps: &[Snapshot]) -> String {
    use std::collections::BTreeMap;
    // family name -> lines
    let mut fams: BTreeMap<String, (&'static str, &'static str, Vec<String>)> = BTreeMap::new();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP linecap_up 1 while the capture runs (its counters file is locked by it).");
    let _ = writeln!(out, "# TYPE linecap_up gauge");
    for s in snaps {
        let _ = writeln!(out, "linecap_up{{capture=\"{}\"}} {}", escape_label(&s.name), u8::from(s.running));
    }
    let _ = writeln!(out, "# HELP linecap_info The capture's backend and linecap's version; always 1.");
    let _ = writeln!(out, "# TYPE linecap_info gauge");
    for s in snaps {
        let _ = writeln!(
            out,
            "linecap_info{{capture=\"{}\",backend=\"{}\",version=\"{}\",pid=\"{}\"}} 1",
            escape_label(&s.name),
            escape_label(&s.backend),
            env!("CARGO_PKG_VERSION"),
            s.pid
        );
    }
    for s in snaps {
        for st in &s.stages {
            // "rx.0" -> kind "rx", instance "0"; "pcap.writer.0" -> "pcap_writer", "0".
            let (kind, inst) = match st.name.rsplit_once('.') {
                Some((k, i)) if i.chars().all(|c| c.is_ascii_digit()) => (k, i),
                _ => (st.name.as_str(), ""),
            };
            for (c, v) in &st.counters {
                let help = super::help::counter_help(kind, c);
                // Prometheus wants base units: nanosecond counters become seconds.
                let (c, value) = match c.strip_suffix("_ns") {
                    Some(base) => (format!("{base}_seconds"), format!("{:.9}", *v as f64 / 1e9)),
                    None => (c.clone(), v.to_string()),
                };
                // Settings are values, not counts: gauges without `_total`.
                let gauge = kind == "settings";
                let fam = if gauge {
                    format!("linecap_setting_{}", metric_part(&c))
                } else {
                    format!("linecap_{}_{}_total", metric_part(kind), metric_part(&c))
                };
                // `instance` and `job` belong to the Prometheus server: the
                // stage's number is the `thread` label.
                let capture = escape_label(&s.name);
                let label = if inst.is_empty() {
                    format!("{{capture=\"{capture}\"}}")
                } else {
                    format!("{{capture=\"{capture}\",thread=\"{inst}\"}}")
                };
                let kind_word = if gauge { "gauge" } else { "counter" };
                fams.entry(fam.clone())
                    .or_insert((help, kind_word, Vec::new()))
                    .2
                    .push(format!("{fam}{label} {value}"));
            }
        }
    }
    for (fam, (help, kind_word, lines)) in fams {
        let _ = writeln!(out, "# HELP {fam} {help}");
        let _ = writeln!(out, "# TYPE {fam} {kind_word}");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::StageSnapshot;

    fn snap() -> Snapshot {
        Snapshot {
            name: "cap".into(),
            pid: 1,
            running: true,
            owner_uid: 0,
            started_ns: 0,
            updated_ns: 0,
            backend: "socket".into(),
            stages: vec![
                StageSnapshot { name: "rx.0".into(), counters: vec![("packets".into(), 5)] },
                StageSnapshot { name: "rx.1".into(), counters: vec![("packets".into(), 6)] },
                StageSnapshot { name: "kernel".into(), counters: vec![("udp_rcvbuf_errors".into(), 1)] },
                StageSnapshot { name: "rx.2".into(), counters: vec![("cpu_user_ns".into(), 1_500_000_000)] },
            ],
        }
    }

    #[test]
    fn prometheus_groups_families() {
        let p = prometheus(&[snap()]);
        assert_eq!(p.matches("# TYPE linecap_rx_packets_total counter").count(), 1);
        assert!(p.contains("linecap_rx_packets_total{capture=\"cap\",thread=\"1\"} 6"));
        assert!(p.contains("linecap_kernel_udp_rcvbuf_errors_total{capture=\"cap\"} 1"));
        assert!(p.contains("linecap_rx_cpu_user_seconds_total{capture=\"cap\",thread=\"2\"} 1.500000000"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = snap();
        s.name = "a\"b\\c\nd".into();
        let p = prometheus(&[s]);
        assert!(p.contains("capture=\"a\\\"b\\\\c\\nd\""), "{p}");
        assert!(p.lines().all(|l| l.starts_with('#') || l.starts_with("linecap_")), "{p}");
    }

    #[test]
    fn table_fits_100_columns_and_shows_what_applies() {
        let mut s = snap();
        s.backend = "socket".into();
        s.stages[0].counters =
            crate::stats::RX_COUNTERS.iter().map(|n| (n.to_string(), 123_456_789_012)).collect();
        s.stages[0].counters.push(("ring_freezes".into(), 0));
        let t = table(&s);
        assert!(t.lines().all(|l| l.len() <= TABLE_WIDTH), "{t}");
        let mut quiet = snap();
        quiet.backend = "socket".into();
        quiet.stages[0].counters =
            vec![("packets".into(), 5), ("ring_freezes".into(), 0), ("losing_blocks".into(), 2)];
        let t = table(&quiet);
        assert!(t.contains("packets=5") && !t.contains("ring_freezes"), "{t}");
        assert!(t.contains("losing_blocks=2"), "a count that is not zero is always shown: {t}");
    }

    #[test]
    fn table_with_rates_gives_packets_per_second() {
        let before = snap();
        let mut now = snap();
        now.stages[0].counters = vec![("packets".into(), before.stages[0].get("packets") + 2_000_000)];
        let t = table_with_rates(&now, Some((&before, 1.0)));
        assert!(t.contains("[2.000 Mpps]"), "{t}");
    }

    #[test]
    fn table_lists_stages() {
        let t = table(&snap());
        assert!(t.contains("rx.1") && t.contains("packets=6"));
    }
}
