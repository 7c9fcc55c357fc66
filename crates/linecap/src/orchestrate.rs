//! Runs `linecap capture` and `linecap send` as child processes (inside
//! testbed namespaces when given), and closes the books: the accounting
//! identity *offered = delivered + every counted drop*, where the drops
//! include what the network lost before the socket (veth's sender-side
//! `tx_dropped`, the receiving interface's `rx_dropped`).
//!
//! Used by `linecap demo`, `linecap bench` and the integration tests, so
//! all three measure the same way.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::capture::{CaptureReport, DropPlace};
use crate::send::socket::SendReport;
use crate::source::BackendKind;
use crate::stats::{self, Snapshot};
use crate::sys;

/// A capture running as a child process.
pub struct CaptureChild {
    child: Option<Child>,
    name: String,
}

fn command(exe: &Path, netns: Option<&str>, sub: &str, args: &[String]) -> Command {
    let mut c = Command::new(exe);
    c.arg(sub);
    if let Some(ns) = netns {
        c.args(["--netns", ns]);
    }
    c.args(args);
    c
}

impl CaptureChild {
    /// Starts `linecap capture --json --name NAME ARGS` and waits until its
    /// sockets are bound (its counters file appears with its pid).
    /// `show_live`: let its stderr (live display) through to ours.
    pub fn spawn(
        exe: &Path,
        netns: Option<&str>,
        name: &str,
        args: &[String],
        show_live: bool,
    ) -> anyhow::Result<Self> {
        let mut all = vec!["--json".to_string(), "--name".into(), name.to_string()];
        all.extend_from_slice(args);
        let mut cmd = command(exe, netns, "capture", &all);
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        cmd.stderr(if show_live { Stdio::inherit() } else { Stdio::piped() });
        let child = cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
        let mut me = Self { child: Some(child), name: name.to_string() };
        let pid = me.child.as_ref().expect("set").id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = Snapshot::read(name, &stats::stats_path(name))
                && s.pid == pid
            {
                return Ok(me);
            }
            if let Some(status) = me.child.as_mut().expect("set").try_wait()? {
                let err = me.stderr_text();
                bail!("capture exited before it was ready ({status}): {}", err.trim());
            }
            if Instant::now() > deadline {
                bail!("capture did not become ready within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr_text(&mut self) -> String {
        let mut s = String::new();
        if let Some(c) = self.child.as_mut()
            && let Some(e) = c.stderr.as_mut()
        {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits until the capture's receive counters (packets and the
    /// kernel's drops) have not moved for 250 ms, or `limit` passed: what
    /// a sender sent before has then reached it or been counted lost. A
    /// NAPI thread that runs late (a loaded machine) still holds datagrams
    /// for a while after the sender returned; stopped before they arrive,
    /// the capture would miss them and no counter would say so.
    pub fn settle(&self, limit: Duration) {
        let path = stats::stats_path(&self.name);
        let seen = || {
            Snapshot::read(&self.name, &path)
                .map(|s| (s.total(stats::RxIdx::Packets), s.total(stats::RxIdx::KernelDrops)))
                .ok()
        };
        let deadline = Instant::now() + limit;
        let (mut last, mut still_since) = (seen(), Instant::now());
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let now = seen();
            if now != last {
                (last, still_since) = (now, Instant::now());
            } else if still_since.elapsed() >= Duration::from_millis(250) {
                return;
            }
        }
    }

    /// Stops the capture with SIGINT and returns its report.
    pub fn stop(self) -> anyhow::Result<CaptureReport> {
        self.stop_with(libc::SIGINT)
    }

    /// Stops the capture with a signal (SIGINT, SIGTERM) and returns its report.
    pub fn stop_with(self, signal: i32) -> anyhow::Result<CaptureReport> {
        sys::send_signal(self.pid(), signal)?;
        self.wait()
    }

    /// Waits for the capture to stop by itself and returns its report.
    pub fn wait(mut self) -> anyhow::Result<CaptureReport> {
        let child = self.child.take().expect("child present");
        let out = child.wait_with_output()?;
        // Only if it is still our child's (ended) file, never a live one.
        let _ = crate::sys::shm::remove_stale(&stats::stats_path(&self.name));
        if !out.status.success() {
            bail!("capture failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).with_context(|| format!("capture printed no JSON report: {text}"))
    }
}

impl Drop for CaptureChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let _ = crate::sys::shm::remove_stale(&stats::stats_path(&self.name));
        }
    }
}

/// Starts busy polling of a capture `--backend xdp --busy-poll` on the
/// testbed: veth gives the AF_XDP socket no NAPI id, so one datagram to
/// the anchor socket (capture port + 1) gives it one. Waits until the
/// capture has had time to notice (it looks every 10 ms).
pub fn prime_busy_poll(exe: &Path, tb: &crate::testbed::Testbed, port: u16) -> anyhow::Result<()> {
    let to = format!("{}:{}", crate::testbed::RX_ADDR, crate::source::xdp::anchor_port(port));
    send(exe, Some(&tb.ns_tx), &["--to".into(), to, "--count".into(), "1".into()])?;
    std::thread::sleep(std::time::Duration::from_millis(50));
    Ok(())
}

/// Runs `linecap send --json ARGS` to completion.
pub fn send(exe: &Path, netns: Option<&str>, args: &[String]) -> anyhow::Result<SendReport> {
    let mut all = vec!["--json".to_string()];
    all.extend_from_slice(args);
    let out = command(exe, netns, "send", &all).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("send failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("send printed no JSON report: {text}"))
}

/// The books of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Identity {
    /// Packets the sender's kernel accepted.
    pub offered: u64,
    /// Packets delivered through every stage of the capture.
    pub delivered: u64,
    /// Every counted drop, by place.
    pub drops: BTreeMap<DropPlace, u64>,
    /// Offered minus delivered minus drops (0 when every packet is accounted for).
    pub unaccounted: i64,
    /// Counts of the same loss from two sources, checked against each
    /// other: an identity whose terms were derived from one another could
    /// not fail, these can.
    pub checks: Vec<CrossCheck>,
}

/// Two independent counts of one loss and whether they agree.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CrossCheck {
    /// What is compared, with the numbers.
    pub what: String,
    /// Whether they agree within what each can know.
    pub holds: bool,
}

/// The most datagrams UDP GRO merges into one super-packet (UDP_GRO_CNT_MAX).
const GRO_MAX_SEGMENTS: u64 = 64;

impl Identity {
    /// Builds the books from the sender's count, the capture's report and
    /// the network's own drop counters over the run. A network entry with
    /// the same name as a capture entry replaces it (a better count of the
    /// same place, see [`TestbedCounters::drops`]), and the two are checked
    /// against each other, as the verifier's gaps are against the drops.
    pub fn close(sent: &SendReport, cap: &CaptureReport, network_drops: &[(DropPlace, u64)]) -> Self {
        let mut drops = cap.drops.clone();
        let mut checks = Vec::new();
        for (k, v) in network_drops {
            if let Some(&own) = cap.drops.get(k) {
                checks.push(socket_check(*k, own, *v, cap.gro));
            }
            drops.insert(*k, *v);
        }
        let total: u64 = drops.values().sum();
        if let Some(v) = &cap.verify
            && sent.threads <= 1
        {
            // The verifier sits beside the pcap writer, not after it: it
            // sees the packets the writer drops.
            let before_sinks: u64 = drops.iter().filter(|(k, _)| !k.at_writer()).map(|(_, v)| v).sum();
            checks.push(verifier_check(sent, before_sinks, v));
        }
        Self {
            offered: sent.packets,
            delivered: cap.packets,
            unaccounted: sent.packets as i64 - cap.packets as i64 - total as i64,
            drops,
            checks,
        }
    }

    /// Whether offered = delivered + every counted drop, and every cross
    /// check agrees.
    pub fn holds(&self) -> bool {
        self.unaccounted == 0 && self.checks.iter().all(|c| c.holds)
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let drops: Vec<String> =
            self.drops.iter().filter(|(_, v)| **v > 0).map(|(k, v)| format!("{k} {v}")).collect();
        let failed: Vec<&str> = self.checks.iter().filter(|c| !c.holds).map(|c| c.what.as_str()).collect();
        format!(
            "offered {} = delivered {} + drops {} [{}]{}",
            self.offered,
            self.delivered,
            self.drops.values().sum::<u64>(),
            if drops.is_empty() { "none".to_string() } else { drops.join(", ") },
            match (self.unaccounted, failed.is_empty()) {
                (0, true) => "  ✓ every packet accounted for".to_string(),
                (0, false) => format!("  ✗ counts disagree: {}", failed.join("; ")),
                (n, _) => format!("  ✗ {n} unaccounted"),
            }
        )
    }
}

/// The socket's own drop count (in messages: a GRO super-packet counts
/// once) against the count derived from datagrams that crossed the wire:
/// own ≤ derived ≤ own × the most datagrams a message can hold.
fn socket_check(place: DropPlace, own: u64, derived: u64, gro: bool) -> CrossCheck {
    let most = own.saturating_mul(if gro { GRO_MAX_SEGMENTS } else { 1 });
    CrossCheck {
        what: format!(
            "{place}: the socket counted {own}, the datagrams that crossed the wire say {derived} \
             (agree when {own} ≤ {derived} ≤ {most})"
        ),
        holds: own <= derived && derived <= most,
    }
}

/// The verifier's missing numbers against every drop counted: it cannot
/// see more losses than were counted, and what it does not see can only
/// be the stream's tail after the last number it received.
fn verifier_check(sent: &SendReport, drops: u64, v: &crate::sink::verify::VerifyCounts) -> CrossCheck {
    // Numbers the sender left out on purpose are missing too; its copies
    // are packets without numbers of their own.
    let imp = sent.impaired.unwrap_or_default();
    let numbers = (sent.packets + imp.dropped).saturating_sub(imp.duplicated);
    let received_up_to = if v.packets == 0 { 0 } else { v.highest_seq.saturating_add(1) };
    let tail = numbers.saturating_sub(received_up_to);
    let gaps = drops + imp.dropped;
    let left_out =
        if imp.dropped > 0 { format!(" and {} left out by the sender", imp.dropped) } else { String::new() };
    CrossCheck {
        what: format!(
            "the verifier found {} missing of {numbers}; {drops} drops were counted{left_out}, {tail} of them possibly after its last number",
            v.missing
        ),
        holds: v.missing <= gaps && gaps - v.missing <= tail,
    }
}

/// The testbed's counters at one moment, to take deltas over a run.
#[derive(Debug, Clone, Copy)]
pub struct TestbedCounters {
    tx: crate::stats::kernel::IfaceCounters,
    rx: crate::stats::kernel::IfaceCounters,
}

impl TestbedCounters {
    /// Reads both veth ends.
    pub fn read(tb: &crate::testbed::Testbed) -> anyhow::Result<Self> {
        Ok(Self { tx: tb.tx_iface()?, rx: tb.rx_iface()? })
    }

    /// Frames the sending veth handled over a run (sent or dropped).
    pub fn sender_frames(&self, after: &Self) -> u64 {
        (after.tx.tx_packets - self.tx.tx_packets) + (after.tx.tx_dropped - self.tx.tx_dropped)
    }

    /// Frames veth dropped over a run, on either end (its ring full, the
    /// receiving interface's drops): what never reached the receiving stack.
    pub fn frames_dropped(&self, after: &Self) -> u64 {
        (after.tx.tx_dropped - self.tx.tx_dropped) + (after.rx.rx_dropped - self.rx.rx_dropped)
    }

    /// Drops over a run, by place, in datagrams:
    /// - `veth_tx_dropped`: the receiving veth's ring was full (veth counts it
    ///   on the sender's side);
    /// - `rx_iface_dropped`: dropped by the receiving interface;
    /// - `socket_overflow`: datagrams that crossed the veth (its `rx_packets`
    ///   counts frames before GRO) but never reached the capture. The socket's
    ///   own counter (`SO_MEMINFO`) counts a dropped GRO super-packet once,
    ///   however many datagrams it held, so this count replaces it; without
    ///   GRO the two agree exactly (tested). Socket backend only.
    pub fn drops(&self, after: &Self, cap: &CaptureReport) -> Vec<(DropPlace, u64)> {
        self.drops_from(after, cap, None)
    }

    /// As [`drops`](Self::drops), knowing the sender: frames an XDP sender
    /// (`xdp-live`) could not hand to the peer are counted by veth on both
    /// ends (the sender's tx_dropped and the receiver's rx_dropped), once here.
    pub fn drops_from(
        &self,
        after: &Self,
        cap: &CaptureReport,
        sender: Option<&SendReport>,
    ) -> Vec<(DropPlace, u64)> {
        let crossed = after.rx.rx_packets - self.rx.rx_packets;
        let mut rx_dropped = after.rx.rx_dropped - self.rx.rx_dropped;
        if sender.is_some_and(SendReport::from_kernel_generator) {
            rx_dropped = rx_dropped.saturating_sub(after.tx.tx_dropped - self.tx.tx_dropped);
        }
        if cap.kind() == Some(BackendKind::Xdp) {
            // veth also counts a frame its XDP redirect could not hand to
            // the AF_XDP socket as an rx drop: the socket's own counters
            // (xsk_*) name that place; the rest had other causes.
            let xsk: u64 = cap.drops.iter().filter(|(k, _)| k.at_xsk()).map(|(_, v)| v).sum();
            rx_dropped = rx_dropped.saturating_sub(xsk);
        }
        let mut v = vec![
            (DropPlace::VethTxDropped, after.tx.tx_dropped - self.tx.tx_dropped),
            (DropPlace::RxIfaceDropped, rx_dropped),
        ];
        // Only a socket sits behind the IP stack; a packet ring's own
        // counter is exact and per packet.
        if cap.kind().is_some_and(BackendKind::is_socket) {
            v.push((DropPlace::SocketOverflow, crossed.saturating_sub(cap.received)));
        }
        v
    }
}

/// The linecap executable to run children with: `LINECAP_EXE`, else this
/// executable if it is linecap, else `target/{release,debug}/linecap`.
pub fn linecap_exe() -> PathBuf {
    if let Ok(p) = std::env::var("LINECAP_EXE") {
        return PathBuf::from(p);
    }
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("linecap"))
}
