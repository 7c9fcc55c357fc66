//! Bench output: a markdown table for docs/BENCHMARKS.md and an SVG plot of
//! receive-core CPU per packet against offered rate, one line per row.

use std::fmt::Write;

use super::{BenchResults, Point};

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = crate::sys::realtime_ns() / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The results as a markdown section.
pub fn markdown(r: &BenchResults) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Run {} on {} ({}), {:.1} s per point, stream offered by {}.\n",
        r.date, r.machine, r.placement, r.duration_s, r.generator
    );
    zero_loss_table(&mut s, r);
    if !r.fixed.is_empty() {
        ratios_table(&mut s, &r.fixed);
        rounds_table(&mut s, &r.fixed);
    }
    if !r.senders.is_empty() {
        senders_table(&mut s, r);
    }
    s
}

/// Each row's highest zero-loss rate and its unpaced point.
fn zero_loss_table(s: &mut String, r: &BenchResults) {
    let _ = writeln!(
        s,
        "| row | payload | highest zero-loss rate | rx threads ns/pkt | rx core ns/pkt | pkts/syscall | pkts/datagram | sender max | delivered at sender max | loss at sender max | where lost |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in &r.rows {
        let (rate, thr, core, sc, dg) = match &row.zero_loss {
            Some(p) => (
                format!(
                    "{:.1} kpps{}",
                    p.offered_pps / 1e3,
                    if row.generator_bound { " (generator-bound)" } else { "" }
                ),
                format!("{:.0}", p.rx_threads_ns_per_packet),
                format!("{:.0}", p.rx_core_ns_per_packet),
                format!("{:.1}", p.packets_per_syscall),
                format!("{:.2}", p.packets_per_datagram),
            ),
            None => ("none found".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        let m = &row.max;
        let wh: Vec<String> =
            m.identity.drops.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            s,
            "| {} | {} B | {rate} | {thr} | {core} | {sc} | {dg} | {:.1} kpps | {:.1} kpps | {:.2}% | {}{} |",
            row.row.name(),
            row.size,
            m.offered_pps / 1e3,
            m.delivered_pps / 1e3,
            100.0 * m.lost() as f64 / m.sent.max(1) as f64,
            if wh.is_empty() { "-".to_string() } else { wh.join(", ") },
            if m.identity.holds() { "" } else { " (unaccounted!)" }
        );
    }
}

/// Every point of an `--at` run, round by round.
fn rounds_table(s: &mut String, fixed: &[Point]) {
    let _ = writeln!(s, "\nAt one rate, rows interleaved round by round (in measurement order):\n");
    let _ = writeln!(
        s,
        "| round | row | payload | offered | delivered | × baseline | loss | where lost | books | rx threads ns/pkt | rx core ns/pkt | steal |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|");
    for p in fixed {
        let wh: Vec<String> =
            p.identity.drops.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} B | {:.1} kpps ({} pkts) | {} pkts | {} | {:.3}% | {} | {} | {:.0} | {:.0} | {:.1}% |",
            p.round,
            p.row.name(),
            p.size,
            p.offered_pps / 1e3,
            p.sent,
            p.delivered,
            ratio_to_baseline(p, fixed).map_or("-".to_string(), |x| format!("{x:.2}×")),
            100.0 * p.lost() as f64 / p.sent.max(1) as f64,
            if wh.is_empty() { "-".to_string() } else { wh.join(", ") },
            if p.identity.holds() { "exact" } else { "UNACCOUNTED" },
            p.rx_threads_ns_per_packet,
            p.rx_core_ns_per_packet,
            p.rx_core_steal_pct
        );
    }
}

/// The generators against the plain sendmmsg loop.
fn senders_table(s: &mut String, r: &BenchResults) {
    let _ = writeln!(s, "\nGenerators, unpaced, one core, interleaved rounds (median, range):\n");
    let _ =
        writeln!(s, "| generator | payload | packets/s (median) | range | CPU ns/packet | vs plain loop |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for g in &r.senders {
        let base = r
            .senders
            .iter()
            .find(|b| b.size == g.size && b.row == super::SenderRow::PlainLoop)
            .map_or(0.0, |b| super::median(&b.pps));
        let lo = g.pps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = g.pps.iter().copied().fold(0.0, f64::max);
        let med = super::median(&g.pps);
        let _ = writeln!(
            s,
            "| {} | {} B | {:.1} kpps | {:.1}-{:.1} kpps | {:.0} | {:.2}x |",
            g.row.name(),
            g.size,
            med / 1e3,
            lo / 1e3,
            hi / 1e3,
            super::median(&g.cpu_ns_per_packet),
            if base > 0.0 { med / base } else { 0.0 }
        );
    }
}

/// An SVG line plot: x = offered kpps, y = receive-core ns per packet; for
/// an `--at` run with baselines, the rows' ratios to them instead.
pub fn svg(r: &BenchResults) -> String {
    if r.rows.is_empty() && !ratio_summaries(&r.fixed).is_empty() {
        return svg_ratios(r);
    }
    let pts: Vec<_> = r.rows.iter().flat_map(|row| row.points.iter()).filter(|p| p.delivered > 0).collect();
    let plot = Plot {
        xmax: pts.iter().map(|p| p.offered_pps / 1e3).fold(1.0, f64::max) * 1.05,
        ymax: pts.iter().map(|p| p.rx_core_ns_per_packet).fold(1.0, f64::max) * 1.1,
    };
    let mut s = String::new();
    cpu_axes(&mut s, &plot, &r.machine);
    cpu_lines(&mut s, &plot, r);
    s.push_str("</svg>\n");
    s
}

/// The CPU plot's frame: 760 x 440 px, margins for the axes and the legend.
struct Plot {
    xmax: f64,
    ymax: f64,
}

const PLOT: (f64, f64, f64, f64, f64, f64) = (760.0, 440.0, 70.0, 50.0, 40.0, 170.0);

impl Plot {
    fn x(&self, v: f64) -> f64 {
        let (w, _, ml, _, _, mr) = PLOT;
        ml + v / self.xmax * (w - ml - mr)
    }

    fn y(&self, v: f64) -> f64 {
        let (_, h, _, mb, mt, _) = PLOT;
        h - mb - v / self.ymax * (h - mb - mt)
    }
}

/// The SVG header, title, axes, ticks and axis labels.
fn cpu_axes(s: &mut String, plot: &Plot, machine: &str) {
    let (w, h, ml, mb, mt, mr) = PLOT;
    let (xmax, ymax) = (plot.xmax, plot.ymax);
    let x = |v: f64| plot.x(v);
    let y = |v: f64| plot.y(v);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{ml}" y="22" font-size="14">Receive-core CPU per packet vs offered rate ({})</text>"#,
        esc(machine)
    );
    let _ =
        writeln!(s, r#"<line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, h - mb, w - mr, h - mb);
    let _ = writeln!(s, r#"<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{}" stroke="black"/>"#, h - mb);
    for i in 0..=5 {
        let xv = xmax * i as f64 / 5.0;
        let yv = ymax * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0}</text>"#,
            x(xv),
            h - mb + 16.0,
            xv
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>"#,
            ml - 6.0,
            y(yv) + 4.0,
            yv
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">offered rate (kpps)</text>"#,
        (ml + w - mr) / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">rx core ns/packet</text>"#,
        (h - mb + mt) / 2.0,
        (h - mb + mt) / 2.0
    );
}

/// One line per row (filled points: zero loss; open: loss) and the legend.
fn cpu_lines(s: &mut String, plot: &Plot, r: &BenchResults) {
    let (w, _, _, _, mt, mr) = PLOT;
    let x = |v: f64| plot.x(v);
    let y = |v: f64| plot.y(v);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
    for (i, row) in r.rows.iter().enumerate() {
        let c = colors[i % colors.len()];
        let mut p: Vec<_> = row.points.iter().filter(|p| p.delivered > 0).collect();
        p.sort_by(|a, b| a.offered_pps.total_cmp(&b.offered_pps));
        let path: Vec<String> = p
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.offered_pps / 1e3), y(p.rx_core_ns_per_packet)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for p in &p {
            let fill = if p.lost() == 0 { c } else { "white" };
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{fill}" stroke="{c}"/>"#,
                x(p.offered_pps / 1e3),
                y(p.rx_core_ns_per_packet)
            );
        }
        let ly = mt + 20.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{c}"/><text x="{}" y="{}">{} {} B</text>"#,
            w - mr + 10.0,
            ly - 10.0,
            w - mr + 28.0,
            ly,
            row.row.name(),
            row.size
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="10">filled: zero loss; open: loss</text>"#,
        w - mr + 10.0,
        mt + 20.0 + 18.0 * r.rows.len() as f64 + 6.0
    );
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A point's delivered share of what was offered over its baseline's in
/// the same round and size (`Row::baseline`), when both were measured.
/// Shares, not counts: a user-space sender does not reach the same rate
/// twice, so equal shares are equal receivers.
pub fn ratio_to_baseline(p: &Point, all: &[Point]) -> Option<f64> {
    let b = baseline_point(p, all)?;
    let share = |x: &Point| x.delivered as f64 / x.sent.max(1) as f64;
    (b.delivered > 0).then(|| share(p) / share(b))
}

/// A point's offered rate over its baseline's in the same round: 1.0 when
/// the sender held the same rate for both. An unpaced user-space sender
/// does not, and where the receive work shares the receiver's core (a
/// NAPI thread at real-time priority) a faster sender leaves the receiver
/// less of it: measured at 1.01–1.05 for the default capture's rounds
/// while its delivered ratio fell (`docs/BENCHMARKS.md`, session 9). Read
/// the two side by side.
pub fn offered_to_baseline(p: &Point, all: &[Point]) -> Option<f64> {
    let b = baseline_point(p, all)?;
    (b.offered_pps > 0.0).then(|| p.offered_pps / b.offered_pps)
}

/// The point of `p`'s baseline row in the same round and size.
fn baseline_point<'a>(p: &Point, all: &'a [Point]) -> Option<&'a Point> {
    let base = p.row.baseline()?;
    all.iter().find(|b| b.row == base && b.round == p.round && b.size == p.size)
}

/// One row's ratios to its baseline over the rounds of an `--at` run.
pub struct RatioSummary {
    /// Row.
    pub row: super::Row,
    /// Payload bytes.
    pub size: usize,
    /// Median ratio.
    pub median: f64,
    /// Lowest and highest ratio.
    pub range: (f64, f64),
    /// Median of the offered rate over the baseline's (1.0: same load).
    pub offered: f64,
    /// Rounds with both measured.
    pub rounds: usize,
    /// Lowest and highest steal on the receive core (%).
    pub steal: (f64, f64),
}

/// Every row with a baseline, summarised over its rounds.
pub fn ratio_summaries(points: &[Point]) -> Vec<RatioSummary> {
    let mut keys: Vec<(super::Row, usize)> = Vec::new();
    for p in points {
        if p.row.baseline().is_some() && !keys.contains(&(p.row, p.size)) {
            keys.push((p.row, p.size));
        }
    }
    let lo_hi =
        |v: &mut dyn Iterator<Item = f64>| v.fold((f64::INFINITY, 0.0f64), |(l, h), x| (l.min(x), h.max(x)));
    keys.into_iter()
        .filter_map(|(row, size)| {
            let mine: Vec<&Point> = points.iter().filter(|p| p.row == row && p.size == size).collect();
            let ratios: Vec<f64> = mine.iter().filter_map(|p| ratio_to_baseline(p, points)).collect();
            let offered: Vec<f64> = mine.iter().filter_map(|p| offered_to_baseline(p, points)).collect();
            (!ratios.is_empty()).then(|| RatioSummary {
                row,
                size,
                median: super::median(&ratios),
                range: lo_hi(&mut ratios.iter().copied()),
                offered: if offered.is_empty() { f64::NAN } else { super::median(&offered) },
                rounds: ratios.len(),
                steal: lo_hi(&mut mine.iter().map(|p| p.rx_core_steal_pct)),
            })
        })
        .collect()
}

/// Per row: the median and range of its per-round ratio to its baseline,
/// and of the receive core's steal.
fn ratios_table(s: &mut String, points: &[Point]) {
    let rows = ratio_summaries(points);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nDelivered share of the offered packets, as a ratio to the plainest receiver of the same job in the same round (an offered rate that differs from the baseline's means the sender did not hold the same load for both):\n"
    );
    let _ = writeln!(
        s,
        "| row | payload | baseline | ratio (median) | range | offered vs baseline | rounds | steal (range) |"
    );
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} B | {} | {:.2}× | {:.2}–{:.2} | {:.3}× | {} | {:.1}–{:.1}% |",
            r.row.name(),
            r.size,
            r.row.baseline().map_or("-", |b| b.name()),
            r.median,
            r.range.0,
            r.range.1,
            r.offered,
            r.rounds,
            r.steal.0,
            r.steal.1
        );
    }
}

/// An SVG of each row's ratio to its baseline (`--at` runs): a bar to the
/// median, a line over the range of the rounds, a rule at 1.0×.
pub fn svg_ratios(r: &BenchResults) -> String {
    let rows = ratio_summaries(&r.fixed);
    let (w, ml, mr, mt, bar) = (760.0, 190.0, 40.0, 50.0, 26.0);
    let h = mt + 40.0 + bar * rows.len().max(1) as f64;
    let xmax = rows.iter().map(|r| r.range.1).fold(1.25, f64::max) * 1.05;
    let x = |v: f64| ml + v / xmax * (w - ml - mr);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="14">Delivered share as a ratio to the plainest receiver, same rounds ({})</text>"#,
        esc(&r.machine)
    );
    for (i, row) in rows.iter().enumerate() {
        let y = mt + bar * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{} {} B vs {}</text>"#,
            ml - 8.0,
            y + bar * 0.6,
            row.row.name(),
            row.size,
            row.row.baseline().map_or("-", |b| b.name())
        );
        let fill = if row.median >= 1.0 { "#2ca02c" } else { "#d62728" };
        let _ = writeln!(
            s,
            r#"<rect x="{ml}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}" opacity="0.6"/>"#,
            y + 4.0,
            x(row.median) - ml,
            bar - 8.0
        );
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black" stroke-width="2"/>"#,
            x(row.range.0),
            y + bar / 2.0,
            x(row.range.1),
            y + bar / 2.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{:.2}×</text>"#,
            x(row.range.1) + 6.0,
            y + bar * 0.6,
            row.median
        );
    }
    let bottom = mt + bar * rows.len().max(1) as f64;
    let _ = writeln!(
        s,
        r#"<line x1="{0:.1}" y1="{mt}" x2="{0:.1}" y2="{1:.1}" stroke="black" stroke-dasharray="4 3"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">1.0× (baseline)</text>"#,
        x(1.0),
        bottom,
        bottom + 18.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(row: super::super::Row, round: usize, offered_pps: f64, sent: u64, delivered: u64) -> Point {
        Point {
            row,
            size: 272,
            asked_pps: None,
            offered_pps,
            sent,
            delivered,
            delivered_pps: offered_pps * delivered as f64 / sent as f64,
            identity: crate::orchestrate::Identity {
                offered: sent,
                delivered,
                drops: Default::default(),
                unaccounted: 0,
                checks: Vec::new(),
            },
            rx_threads_ns_per_packet: 0.0,
            rx_core_ns_per_packet: 0.0,
            packets_per_syscall: 0.0,
            packets_per_datagram: 0.0,
            sender_ns_per_packet: 0.0,
            rx_core_steal_pct: 0.0,
            round,
        }
    }

    /// Each row is compared with its baseline of the same round only, and
    /// the table says when the sender did not hold the same load for both.
    #[test]
    fn ratios_pair_rounds_and_show_the_offered_load() {
        use super::super::Row::{Default as Capture, PlainRecvmmsg as Plain};
        let points = [
            point(Plain, 1, 500_000.0, 1_000_000, 300_000),
            point(Capture, 1, 550_000.0, 1_100_000, 297_000),
            point(Plain, 2, 400_000.0, 800_000, 400_000),
            point(Capture, 2, 400_000.0, 800_000, 400_000),
        ];
        let s = ratio_summaries(&points);
        assert_eq!(s.len(), 1, "only rows with a baseline");
        let r = &s[0];
        assert_eq!(r.rounds, 2);
        // Round 1: share 0.27 against 0.30; round 2: equal.
        assert!((r.range.0 - 0.9).abs() < 1e-9 && (r.range.1 - 1.0).abs() < 1e-9, "{:?}", r.range);
        assert!((r.median - 0.95).abs() < 1e-9, "{}", r.median);
        assert!((r.offered - 1.05).abs() < 1e-9, "{}", r.offered);
        let mut table = String::new();
        ratios_table(&mut table, &points);
        assert!(
            table.contains("| default | 272 B | plain-recvmmsg | 0.95× | 0.90–1.00 | 1.050× | 2 |"),
            "{table}"
        );
    }

    #[test]
    fn date_format() {
        let d = utc_now();
        assert_eq!(d.len(), 20);
        assert!(d.starts_with("20"));
    }
}
