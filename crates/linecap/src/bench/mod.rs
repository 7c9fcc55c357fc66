//! `linecap bench`: for each receiver row and payload size, on a testbed,
//! find the highest offered rate with zero loss and measure what each
//! packet costs: CPU of the receiver's own threads and of the whole
//! receive core (NAPI thread and softirq included), per delivered packet.
//!
//! The offered stream is individual datagrams (no GSO super-packets cross
//! the veth), as an FPGA sends them. Each point is a fresh capture and a
//! fresh sender run as child processes, pinned: sender on the send core,
//! receiver and NAPI thread on the receive core.

pub mod baseline;
pub mod peers;
pub mod report;
pub mod soak;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;

use crate::orchestrate::{self, CaptureChild, Identity, TestbedCounters};
use crate::sys;
use crate::testbed::{self, Placement, Testbed, TestbedOptions};

mod rows;

pub use rows::{Row, SenderRow};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The linecap executable (children are run from it).
    pub exe: PathBuf,
    /// Rows.
    pub rows: Vec<Row>,
    /// Payload sizes.
    pub sizes: Vec<usize>,
    /// Duration of each point.
    pub duration: Duration,
    /// Bisection steps.
    pub steps: usize,
    /// Output folder.
    pub out: PathBuf,
    /// Add peer rows (tcpdump) when installed.
    pub peers: bool,
    /// Placement of receive work.
    pub placement: Placement,
    /// Rounds of the interleaved sender comparison (0: skip it).
    pub sender_rounds: usize,
    /// Offer the stream with the kernel-side generator (xdp-live) instead
    /// of a user-space socket sender.
    pub xdp_live: bool,
    /// Measure every row at this one rate (packets/s), in `rounds`
    /// interleaved rounds, instead of searching for the zero-loss rate.
    pub at_pps: Option<f64>,
    /// Rounds at `at_pps`.
    pub rounds: usize,
    /// Leave the NAPI thread at normal priority (as on hosts whose softirq
    /// work runs in ksoftirqd) instead of SCHED_FIFO.
    pub napi_normal: bool,
    /// Runs per bisection point; the median loss decides the step.
    pub repeats: usize,
}

/// A generator's result: unpaced rate on one core over interleaved rounds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SenderResult {
    /// Generator.
    pub row: SenderRow,
    /// Payload bytes.
    pub size: usize,
    /// Packets per second of each round.
    pub pps: Vec<f64>,
    /// Sender CPU ns per packet of each round.
    pub cpu_ns_per_packet: Vec<f64>,
}

/// Median of a list (0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One measured point.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    /// Row.
    pub row: Row,
    /// Payload bytes.
    pub size: usize,
    /// Rate asked of the sender (None: unpaced).
    pub asked_pps: Option<f64>,
    /// Rate the sender achieved.
    pub offered_pps: f64,
    /// Packets sent.
    pub sent: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// Rate delivered over the sender's run (offered × delivered / sent).
    #[serde(default)]
    pub delivered_pps: f64,
    /// The books, with where every loss happened.
    pub identity: Identity,
    /// CPU of the receiver's own threads per delivered packet.
    pub rx_threads_ns_per_packet: f64,
    /// CPU of the whole receive core per delivered packet.
    pub rx_core_ns_per_packet: f64,
    /// Packets per receive syscall.
    pub packets_per_syscall: f64,
    /// Packets per datagram (GRO coalescing factor).
    pub packets_per_datagram: f64,
    /// Sender CPU per packet.
    pub sender_ns_per_packet: f64,
    /// CPU steal on the receive core during the point (%).
    #[serde(default)]
    pub rx_core_steal_pct: f64,
    /// Round (from 1) of an interleaved `--at` run; 0 otherwise.
    #[serde(default)]
    pub round: usize,
}

impl Point {
    /// Packets lost (offered − delivered).
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.delivered)
    }
}

/// A row's result at one size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowResult {
    /// Row.
    pub row: Row,
    /// Payload bytes.
    pub size: usize,
    /// Highest zero-loss point found.
    pub zero_loss: Option<Point>,
    /// The unpaced point (the sender's maximum).
    pub max: Point,
    /// True when even the sender's maximum was received without loss:
    /// the figure is bound by the generator, not the receiver.
    pub generator_bound: bool,
    /// Every point measured.
    pub points: Vec<Point>,
}

/// All results of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResults {
    /// When (RFC 3339, UTC).
    pub date: String,
    /// Machine description.
    pub machine: String,
    /// Placement label.
    pub placement: String,
    /// Seconds per point.
    pub duration_s: f64,
    /// What offered the stream.
    #[serde(default)]
    pub generator: String,
    /// Rows.
    pub rows: Vec<RowResult>,
    /// Generators compared on one core.
    pub senders: Vec<SenderResult>,
    /// Points at one fixed rate (`--at`), in measurement order.
    #[serde(default)]
    pub fixed: Vec<Point>,
}

struct Bench<'a> {
    cfg: &'a BenchConfig,
    tb: Testbed,
    /// A second testbed with the busy-poll placement, for rows that busy-poll.
    tb_busy: Option<Testbed>,
}

const PORT: u16 = 9000;

/// Busy time of one core over an interval: wall time minus idle time.
pub(crate) struct CoreMeter {
    cpu: usize,
    t0: u64,
    idle0: u64,
    steal0: u64,
}

impl CoreMeter {
    pub(crate) fn start(cpu: usize) -> Self {
        Self {
            cpu,
            t0: sys::monotonic_ns(),
            idle0: sys::cpu_idle_ns(cpu).unwrap_or(0),
            steal0: sys::cpu_steal_ns(cpu).unwrap_or(0),
        }
    }

    /// Share of the wall time the hypervisor took from the core (%): rounds
    /// are comparable only at like steal.
    pub(crate) fn steal_pct(&self) -> f64 {
        let wall = (sys::monotonic_ns() - self.t0).max(1);
        let steal = sys::cpu_steal_ns(self.cpu).unwrap_or(0).saturating_sub(self.steal0);
        100.0 * steal as f64 / wall as f64
    }

    pub(crate) fn busy_ns(&self) -> u64 {
        let wall = sys::monotonic_ns() - self.t0;
        let idle = sys::cpu_idle_ns(self.cpu).unwrap_or(0).saturating_sub(self.idle0);
        wall.saturating_sub(idle)
    }
}

/// The rows in the order round `round` (from 0) measures them: rotated by
/// one each round, so that over as many rounds as rows each row takes each
/// place once. A fixed order puts a row always right after its baseline:
/// a drift within a round (seen here: a run's delivered count moving 7%
/// from one run to the next) would then count against that row every time.
fn round_order(rows: &[Row], round: usize) -> impl Iterator<Item = Row> + '_ {
    let start = if rows.is_empty() { 0 } else { round % rows.len() };
    rows[start..].iter().chain(&rows[..start]).copied()
}

impl Bench<'_> {
    /// Interleaved rounds at one rate: drift over minutes hits every row
    /// alike, and each round starts one row later (see [`round_order`]).
    fn rounds_at(&self, rows: &[Row], at: f64) -> anyhow::Result<Vec<Point>> {
        let mut fixed = Vec::new();
        for round in 0..self.cfg.rounds {
            for &size in &self.cfg.sizes {
                for row in round_order(rows, round) {
                    if sys::stop_requested() {
                        return Ok(fixed);
                    }
                    let mut p = self.measure(row, size, Some(at))?;
                    p.round = round + 1;
                    tracing::info!(
                        "  {:<13} {size:>5} B  round {}: {}",
                        row.name(),
                        round + 1,
                        point_line(&p)
                    );
                    fixed.push(p);
                }
            }
        }
        Ok(fixed)
    }

    /// Each row's zero-loss search, size by size.
    fn searches(&self, rows: &[Row]) -> anyhow::Result<Vec<RowResult>> {
        let mut results = Vec::new();
        for &size in &self.cfg.sizes {
            for &row in rows {
                if sys::stop_requested() {
                    return Ok(results);
                }
                results.push(self.row(row, size)?);
            }
        }
        Ok(results)
    }

    fn testbed_for(&self, row: Row) -> &Testbed {
        match (&self.tb_busy, row.busy_polls()) {
            (Some(tb), true) => tb,
            _ => &self.tb,
        }
    }

    fn measure(&self, row: Row, size: usize, pps: Option<f64>) -> anyhow::Result<Point> {
        let tb = self.testbed_for(row);
        let listen = format!("{}:{PORT}", testbed::RX_ADDR);
        let multi = sys::online_cpus() > 1;
        let mut send_args = vec![
            "--to".to_string(),
            listen.clone(),
            "--size".into(),
            size.to_string(),
            "--rate".into(),
            pps.map_or("max".into(), |p| format!("{p:.0}")),
            "--duration".into(),
            format!("{}ms", self.cfg.duration.as_millis()),
        ];
        if multi {
            send_args.extend(["--cpus".into(), tb.tx_cpu.to_string()]);
        }
        if self.cfg.xdp_live {
            send_args.extend(["--backend".into(), "xdp-live".into(), "--iface".into(), tb.if_tx.clone()]);
        }
        let before = TestbedCounters::read(tb)?;
        if row == Row::Tcpdump {
            return peers::measure_tcpdump(self.cfg, tb, size, pps, &send_args, before);
        }
        // AF_PACKET takes the whole interface (its rows filter instead).
        let mut cap_args = if row.is_afpacket() { Vec::new() } else { vec!["--listen".to_string(), listen] };
        cap_args.extend(row.capture_args(tb));
        let written = row.write_path(tb, &self.cfg.out).map(RemovedAfter);
        if let Some(w) = &written {
            cap_args.extend(["--write".into(), w.0.display().to_string()]);
        }
        let name = format!("bench-{}", std::process::id());
        let cap = CaptureChild::spawn(&self.cfg.exe, Some(&tb.ns_rx), &name, &cap_args, false)?;
        if matches!(row, Row::XdpBusyPoll | Row::XdpMinimalBusyPoll) {
            orchestrate::prime_busy_poll(&self.cfg.exe, tb, PORT)?;
        }
        let core = CoreMeter::start(tb.rx_cpu);
        let sent = orchestrate::send(&self.cfg.exe, Some(&tb.ns_tx), &send_args)?;
        std::thread::sleep(Duration::from_millis(100));
        let core_ns = core.busy_ns();
        let steal = core.steal_pct();
        let rep = cap.stop()?;
        let id =
            Identity::close(&sent, &rep, &before.drops_from(&TestbedCounters::read(tb)?, &rep, Some(&sent)));
        let per = |x: f64| {
            if rep.packets > 0 { x / rep.packets as f64 } else { 0.0 }
        };
        Ok(Point {
            row,
            size,
            asked_pps: pps,
            offered_pps: sent.pps,
            sent: sent.packets,
            delivered: rep.packets,
            delivered_pps: sent.pps * rep.packets as f64 / sent.packets.max(1) as f64,
            identity: id,
            rx_threads_ns_per_packet: rep.cpu_ns_per_packet,
            rx_core_ns_per_packet: per(core_ns as f64),
            packets_per_syscall: rep.received as f64 / rep.syscalls.max(1) as f64,
            packets_per_datagram: rep.received as f64 / rep.datagrams.max(1) as f64,
            sender_ns_per_packet: sent.cpu_ns_per_packet,
            rx_core_steal_pct: steal,
            round: 0,
        })
    }

    /// Runs every generator unpaced for `rounds` interleaved rounds (A B C A
    /// B C ...), so drift over minutes hits all of them alike.
    fn senders(&self, size: usize, rounds: usize) -> anyhow::Result<Vec<SenderResult>> {
        let tb = &self.tb;
        let rows = [
            SenderRow::PlainLoop,
            SenderRow::Socket,
            SenderRow::Afpacket,
            SenderRow::Xdp,
            SenderRow::XdpLive,
            SenderRow::SocketGso,
        ];
        let mut out: Vec<SenderResult> = rows
            .iter()
            .map(|&row| SenderResult { row, size, pps: Vec::new(), cpu_ns_per_packet: Vec::new() })
            .collect();
        let listen = format!("{}:{PORT}", testbed::RX_ADDR);
        for round in 0..rounds {
            for r in out.iter_mut() {
                if sys::stop_requested() {
                    return Ok(out);
                }
                let mut cap_args = vec!["--listen".to_string(), listen.clone()];
                if sys::online_cpus() > 1 {
                    cap_args.extend(["--cpus".into(), tb.rx_cpu.to_string()]);
                }
                let name = format!("bench-{}", std::process::id());
                let cap = CaptureChild::spawn(&self.cfg.exe, Some(&tb.ns_rx), &name, &cap_args, false)?;
                let mut args = vec![
                    "--to".to_string(),
                    listen.clone(),
                    "--size".into(),
                    size.to_string(),
                    "--rate".into(),
                    "max".into(),
                    "--duration".into(),
                    format!("{}ms", self.cfg.duration.as_millis()),
                    "--cpus".into(),
                    tb.tx_cpu.to_string(),
                ];
                args.extend(r.row.args(tb));
                let sent = orchestrate::send(&self.cfg.exe, Some(&tb.ns_tx), &args)?;
                drop(cap);
                tracing::info!(
                    "  sender {:<20} {size:>5} B  round {}: {:>8.1} kpps, {:.0} ns CPU/packet",
                    r.row.name(),
                    round + 1,
                    sent.pps / 1e3,
                    sent.cpu_ns_per_packet
                );
                r.pps.push(sent.pps);
                r.cpu_ns_per_packet.push(sent.cpu_ns_per_packet);
            }
        }
        Ok(out)
    }

    /// Measures a bisection point `repeats` times and returns the run with
    /// the median loss (one stall of the machine then cannot decide the
    /// step alone); the other runs are kept in `points`.
    fn measure_median(
        &self,
        row: Row,
        size: usize,
        pps: f64,
        points: &mut Vec<Point>,
    ) -> anyhow::Result<Point> {
        let mut runs = Vec::with_capacity(self.cfg.repeats.max(1));
        for _ in 0..self.cfg.repeats.max(1) {
            runs.push(self.measure(row, size, Some(pps))?);
            if sys::stop_requested() {
                break;
            }
        }
        runs.sort_by_key(Point::lost);
        let mid = runs.swap_remove((runs.len() - 1) / 2);
        points.extend(runs);
        Ok(mid)
    }

    fn row(&self, row: Row, size: usize) -> anyhow::Result<RowResult> {
        let max = self.measure(row, size, None)?;
        tracing::info!("  {:<13} {size:>5} B  unpaced: {}", row.name(), point_line(&max));
        let mut points = vec![max.clone()];
        if max.lost() == 0 {
            return Ok(RowResult {
                row,
                size,
                zero_loss: Some(max.clone()),
                max,
                generator_bound: true,
                points,
            });
        }
        let (mut lo, mut hi) = (0.0f64, max.offered_pps);
        let mut best: Option<Point> = None;
        for _ in 0..self.cfg.steps {
            if sys::stop_requested() {
                break;
            }
            let r = if lo == 0.0 { hi / 2.0 } else { (lo + hi) / 2.0 };
            let p = self.measure_median(row, size, r, &mut points)?;
            tracing::info!(
                "  {:<13} {size:>5} B  {:>8.1} kpps asked: {}",
                row.name(),
                r / 1e3,
                point_line(&p)
            );
            if p.lost() == 0 {
                lo = r;
                best = Some(p.clone());
            } else {
                hi = r;
            }
            points.push(p);
        }
        Ok(RowResult { row, size, zero_loss: best, max, generator_bound: false, points })
    }
}

/// A file a bench point writes, removed when the point is done (a
/// point at 1 Mpps writes 300 MB a second).
struct RemovedAfter(PathBuf);

impl Drop for RemovedAfter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn point_line(p: &Point) -> String {
    format!(
        "offered {:>8.1} kpps, delivered {:>8.1} kpps, lost {} ({}), rx threads {:.0} ns/pkt, rx core {:.0} ns/pkt, {:.1} pkts/syscall, {:.2} pkts/datagram, steal {:.1}%",
        p.offered_pps / 1e3,
        p.delivered_pps / 1e3,
        p.lost(),
        if p.identity.holds() {
            "all attributed".to_string()
        } else {
            format!("{} unaccounted", p.identity.unaccounted)
        },
        p.rx_threads_ns_per_packet,
        p.rx_core_ns_per_packet,
        p.packets_per_syscall,
        p.packets_per_datagram,
        p.rx_core_steal_pct
    )
}

/// A one-line description of this machine.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{} CPUs, {model}, Linux {}", sys::online_cpus(), kernel.trim())
}

/// Runs the whole bench and writes results.json, results.md and plot.svg.
pub fn run(cfg: &BenchConfig) -> anyhow::Result<BenchResults> {
    testbed::require_root("linecap bench")?;
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let mut o = TestbedOptions::new(&testbed::unique_name("bench"));
    o.placement = cfg.placement;
    o.napi_fifo = !cfg.napi_normal;
    let tb = Testbed::up(&o)?;
    tracing::info!("{}", tb.describe());
    let tb_busy = if cfg.rows.iter().any(Row::busy_polls) {
        let mut o = TestbedOptions::new(&testbed::unique_name("bench"));
        o.placement = Placement::BusyPoll;
        let tb = Testbed::up(&o)?;
        tracing::info!("{}", tb.describe());
        Some(tb)
    } else {
        None
    };
    let bench = Bench { cfg, tb, tb_busy };
    let mut rows = cfg.rows.clone();
    if cfg.peers && !rows.contains(&Row::Tcpdump) {
        if peers::tcpdump_path().is_some() {
            rows.push(Row::Tcpdump);
        } else {
            tracing::warn!("bench: tcpdump is not installed; no peer row (apt-get install tcpdump)");
        }
    }
    let mut senders = Vec::new();
    if cfg.sender_rounds > 0 {
        for &size in &cfg.sizes {
            senders.extend(bench.senders(size, cfg.sender_rounds)?);
        }
    }
    let (results, fixed) = match cfg.at_pps {
        Some(at) => (Vec::new(), bench.rounds_at(&rows, at)?),
        None => (bench.searches(&rows)?, Vec::new()),
    };
    let _ = std::fs::remove_file(crate::sink::shmring::ring_path(&format!("{}-ring", bench.tb.name)));
    let res = BenchResults {
        date: report::utc_now(),
        machine: machine(),
        placement: cfg.placement.label().to_string(),
        duration_s: cfg.duration.as_secs_f64(),
        generator: if cfg.xdp_live { "xdp-live (kernel)".into() } else { "socket (sendmmsg)".into() },
        rows: results,
        senders,
        fixed,
    };
    std::fs::write(cfg.out.join("results.json"), serde_json::to_string_pretty(&res)?)?;
    let md = report::markdown(&res);
    std::fs::write(cfg.out.join("results.md"), &md)?;
    std::fs::write(cfg.out.join("plot.svg"), report::svg(&res))?;
    tracing::info!("wrote {}/results.json, results.md, plot.svg", cfg.out.display());
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over as many rounds as rows, every row is measured once in every place.
    #[test]
    fn each_round_starts_one_row_later() {
        let rows = [Row::PlainRecvmmsg, Row::Recvmmsg, Row::Default];
        let orders: Vec<Vec<Row>> = (0..4).map(|r| round_order(&rows, r).collect()).collect();
        assert_eq!(orders[0], rows);
        assert_eq!(orders[1], [Row::Recvmmsg, Row::Default, Row::PlainRecvmmsg]);
        assert_eq!(orders[2], [Row::Default, Row::PlainRecvmmsg, Row::Recvmmsg]);
        assert_eq!(orders[3], orders[0]);
        for place in 0..rows.len() {
            let mut at_place: Vec<Row> = orders[..3].iter().map(|o| o[place]).collect();
            at_place.sort_by_key(|r| r.name());
            let mut all = rows.to_vec();
            all.sort_by_key(|r| r.name());
            assert_eq!(at_place, all, "place {place}");
        }
        assert_eq!(round_order(&[], 5).count(), 0);
    }
}
