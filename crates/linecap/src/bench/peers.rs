//! Reference rows: other programs on the same kernel interface, measured
//! the same way as linecap's rows (same testbed, pinning, sender, books).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{BenchConfig, Point, Row};
use crate::capture::{CaptureReport, DropPlace, Reader};
use crate::orchestrate::{self, Identity, TestbedCounters};
use crate::sys;
use crate::testbed::Testbed;

/// Where tcpdump is installed, if it is.
pub fn tcpdump_path() -> Option<PathBuf> {
    ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// tcpdump's closing statistics.
#[derive(Debug, PartialEq, Eq)]
pub struct TcpdumpStats {
    /// Packets tcpdump wrote.
    pub captured: u64,
    /// Packets the kernel passed to its ring (on Linux this includes the drops).
    pub received_by_filter: u64,
    /// Packets the ring had no room for.
    pub dropped_by_kernel: u64,
}

/// Parses tcpdump's closing statistics.
pub fn parse_tcpdump_stats(text: &str) -> Option<TcpdumpStats> {
    let num = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some(TcpdumpStats {
        captured: num("packets captured")?,
        received_by_filter: num("received by filter")?,
        dropped_by_kernel: num("dropped by kernel")?,
    })
}

/// tcpdump on the receive side of `tb`, pinned to its receive core,
/// once it says it listens: the child and its stderr.
fn start_tcpdump(
    tb: &Testbed,
) -> anyhow::Result<(std::process::Child, BufReader<std::process::ChildStderr>)> {
    let tcpdump = tcpdump_path().context("tcpdump is not installed")?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &tb.ns_rx])
        .arg(&tcpdump)
        .args(["-i", &tb.if_rx, "-n", "-B", "65536", "-w", "/dev/null", "udp", "port", "9000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start tcpdump")?;
    let pid = child.id();
    let _ = sys::pin_to_cpu(pid as i32, tb.rx_cpu);
    let mut err = BufReader::new(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line)? == 0 || Instant::now() > deadline {
            let _ = child.kill();
            bail!("tcpdump did not start listening");
        }
        if line.contains("listening on") {
            break;
        }
    }
    Ok((child, err))
}

/// tcpdump's figures as a capture report, for the books.
fn tcpdump_report(st: &TcpdumpStats, tb: &Testbed, cfg: &BenchConfig, cpu: u64) -> CaptureReport {
    let captured = st.captured;
    let mut drops = std::collections::BTreeMap::new();
    drops.insert(DropPlace::PacketRingDropped, st.dropped_by_kernel);
    // In the ring but not yet read when tcpdump stopped.
    drops.insert(
        DropPlace::UnreadAtExit,
        st.received_by_filter.saturating_sub(st.dropped_by_kernel).saturating_sub(captured),
    );
    CaptureReport {
        failure: None,
        name: "tcpdump".into(),
        backend: Reader::Peer("tcpdump".into()),
        mode: "tpacket_v3".into(),
        gro: false,
        threads: 1,
        listen: format!("interface {}", tb.if_rx),
        packets: captured,
        bytes: 0,
        received_bytes: 0,
        received: captured,
        datagrams: captured,
        syscalls: 1,
        drops,
        kernel: Default::default(),
        duration_s: cfg.duration.as_secs_f64(),
        cpu_user_ns: cpu,
        cpu_sys_ns: 0,
        cpu_ns_per_packet: if captured > 0 { cpu as f64 / captured as f64 } else { 0.0 },
        rcvbuf: 0,
        verify: None,
        blocks: None,
        relay: None,
        stopped_by: "SIGINT".into(),
    }
}

/// `tcpdump -w /dev/null` on the receiving veth, as a row.
pub fn measure_tcpdump(
    cfg: &BenchConfig,
    tb: &Testbed,
    size: usize,
    pps: Option<f64>,
    send_args: &[String],
    before: TestbedCounters,
) -> anyhow::Result<Point> {
    let (mut child, mut err) = start_tcpdump(tb)?;
    let pid = child.id();
    let core = super::CoreMeter::start(tb.rx_cpu);
    let sent = orchestrate::send(&cfg.exe, Some(&tb.ns_tx), send_args)?;
    // libpcap's TPACKET_V3 blocks retire after up to 1 s (tcpdump's default
    // timeout): wait for the last one, or its packets look lost.
    std::thread::sleep(Duration::from_millis(1200));
    let core_ns = core.busy_ns();
    let steal = core.steal_pct();
    let cpu = sys::task_runtime_ns(pid as i32).unwrap_or(0);
    sys::send_signal(pid, libc::SIGINT)?;
    let mut rest = String::new();
    err.read_to_string(&mut rest)?;
    child.wait()?;
    let st = parse_tcpdump_stats(&rest).with_context(|| format!("no statistics from tcpdump: {rest}"))?;
    let captured = st.captured;
    let rep = tcpdump_report(&st, tb, cfg, cpu);
    let after = TestbedCounters::read(tb)?;
    // tcpdump taps frames before IP/UDP: only the veth's own drops apply
    // (an xdp-live sender's refused frames counted once, as for the rows).
    let id = Identity::close(&sent, &rep, &before.drops_from(&after, &rep, Some(&sent)));
    Ok(Point {
        row: Row::Tcpdump,
        size,
        asked_pps: pps,
        offered_pps: sent.pps,
        sent: sent.packets,
        delivered: captured,
        delivered_pps: sent.pps * captured as f64 / sent.packets.max(1) as f64,
        identity: id,
        rx_threads_ns_per_packet: rep.cpu_ns_per_packet,
        rx_core_ns_per_packet: if captured > 0 { core_ns as f64 / captured as f64 } else { 0.0 },
        packets_per_syscall: 0.0,
        packets_per_datagram: 1.0,
        sender_ns_per_packet: sent.cpu_ns_per_packet,
        rx_core_steal_pct: steal,
        round: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcpdump_stats() {
        let t = "listening on x\n^C\n1234 packets captured\n1300 packets received by filter\n66 packets dropped by kernel\n";
        let s = parse_tcpdump_stats(t).unwrap();
        assert_eq!((s.captured, s.received_by_filter, s.dropped_by_kernel), (1234, 1300, 66));
        assert_eq!(parse_tcpdump_stats("nothing"), None);
    }
}
