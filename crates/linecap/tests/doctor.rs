//! `linecap doctor` on losses induced for real on a testbed (issue 14):
//! each names the place, the count within what the kernel lets one know,
//! and the fix; a clean run gets nothing but "ok", while the capture runs
//! and after it ends.

mod common;

use linecap::capture::DropPlace;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use linecap::capture::CaptureReport;
use linecap::stats::{Snapshot, stats_path};
use linecap::testbed::{Placement, Testbed, TestbedOptions};

fn testbed() -> Testbed {
    let mut o = TestbedOptions::new(&unique("dr"));
    o.placement = Placement::Napi;
    Testbed::up(&o).expect("testbed up")
}

/// A named capture in the testbed's receiving namespace, running; its
/// counters file stays after it ends (removed by the guard).
struct Capture {
    child: Option<Child>,
    name: String,
}

impl Capture {
    fn start(tb: &Testbed, args: &[&str]) -> Self {
        let name = unique("dr");
        let child = Command::new(exe())
            .args(["capture", "--netns", &tb.ns_rx, "--name", &name, "--json", "--quiet"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let me = Capture { child: Some(child), name };
        let until = Instant::now() + Duration::from_secs(20);
        while !Snapshot::read(&me.name, &stats_path(&me.name)).is_ok_and(|s| s.running) {
            assert!(Instant::now() < until, "capture did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn stop(&mut self) -> CaptureReport {
        linecap::sys::send_signal(self.pid(), libc::SIGINT).unwrap();
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(stats_path(&self.name));
    }
}

/// doctor NAME as JSON, and its exit status.
fn doctor(name: &str) -> (Option<i32>, Vec<serde_json::Value>) {
    let o = linecap(&["doctor", name, "--json", "--interval", "0s"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code(), v.as_array().unwrap().clone())
}

fn losses(v: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    v.iter().filter(|f| f["level"] != "ok").collect()
}

/// Sends `count` packets to the testbed's receiver and waits until the
/// capture has published its kernel counters (every 500 ms). Returns what
/// the receiving veth refused (counted on the sending end), which never
/// reached the receiver's stack.
fn send_to(tb: &Testbed, port: u16, count: u64, rate: &str) -> u64 {
    let before = tb.tx_iface().unwrap();
    let to = format!("198.18.0.2:{port}");
    let sent = send(Some(&tb.ns_tx), &["--to", &to, "--count", &count.to_string(), "--rate", rate]);
    assert_eq!(sent.packets, count);
    std::thread::sleep(Duration::from_millis(800));
    tb.tx_iface().unwrap().tx_dropped - before.tx_dropped
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth): run the tests as root")]
fn a_clean_run_gets_nothing_but_ok_while_it_runs_and_after() {
    let tb = testbed();
    let rx_cpu = tb.rx_cpu.to_string();
    let mut cap = Capture::start(&tb, &["--listen", "198.18.0.2:9000", "--verify", "seq", "--cpus", &rx_cpu]);
    send_to(&tb, 9000, 20_000, "20kpps");
    let (code, v) = doctor(&cap.name);
    assert!(losses(&v).is_empty(), "{v:#?}");
    assert_eq!(code, Some(0));
    // Its receive thread shares the NAPI thread's core: read from /proc, said as ok.
    let placement = v.iter().find(|f| f["place"].as_str().unwrap().ends_with("placement"));
    let what = placement.map_or("", |f| f["what"].as_str().unwrap());
    assert!(what.contains(&format!("shares CPU {rx_cpu} with napi/")), "{v:#?}");
    let report = cap.stop();
    assert_eq!(report.verify.unwrap().valid, 20_000);
    let (code, v) = doctor(&cap.name);
    assert!(losses(&v).is_empty(), "after it ended: {v:#?}");
    assert_eq!(code, Some(0));
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth): run the tests as root")]
fn a_stream_to_another_port_or_excluded_by_the_filter_is_named() {
    let tb = testbed();
    // Listening on 9001 while the stream goes to 9000.
    let mut cap = Capture::start(&tb, &["--listen", "198.18.0.2:9001"]);
    let refused = send_to(&tb, 9000, 10_000, "50kpps");
    let (code, v) = doctor(&cap.name);
    assert_eq!(code, Some(3), "{v:#?}");
    let f = losses(&v)[0];
    assert_eq!(f["counter"], "udp_no_ports", "{v:#?}");
    assert_eq!(f["count"].as_u64().unwrap() + refused, 10_000, "{v:#?}");
    assert!(f["fix"].as_str().unwrap().contains("it takes port 9001"), "{v:#?}");
    cap.stop();
    // A socket filter that excludes the stream: named, not the buffer.
    // (without GRO, so that the filter sees, and counts, each datagram).
    let mut cap = Capture::start(&tb, &["--listen", "198.18.0.2:9000", "--filter", "udp port 1", "--no-gro"]);
    let refused = send_to(&tb, 9000, 10_000, "50kpps");
    let (code, v) = doctor(&cap.name);
    assert_eq!(code, Some(3), "{v:#?}");
    let f = losses(&v)[0];
    assert!(f["place"].as_str().unwrap().ends_with("filter"), "{v:#?}");
    assert_eq!(f["count"].as_u64().unwrap() + refused, 10_000, "{v:#?}");
    assert!(!v.iter().any(|f| f["what"].as_str().unwrap().contains("buffer overflowed")), "{v:#?}");
    cap.stop();
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn an_af_packet_capture_of_an_unheard_stream_is_pointed_at_discard_unreceived() {
    let tb = testbed();
    let afpacket = ["--backend", "afpacket", "--iface", tb.if_rx.as_str(), "--filter", "udp port 9000"];
    let mut cap = Capture::start(&tb, &afpacket);
    let refused = send_to(&tb, 9000, 10_000, "50kpps");
    let (_, v) = doctor(&cap.name);
    let f = v
        .iter()
        .find(|f| f["place"].as_str().unwrap().ends_with("after the tap"))
        .unwrap_or_else(|| panic!("{v:#?}"));
    assert_eq!(f["counter"], "udp_no_ports", "{v:#?}");
    assert_eq!(f["count"].as_u64().unwrap() + refused, 10_000, "{v:#?}");
    assert!(f["fix"].as_str().unwrap().contains("--discard-unreceived"), "{v:#?}");
    cap.stop();
    // With it, nothing goes on to UDP, and nothing is said.
    let mut cap =
        Capture::start(&tb, &[&afpacket[..], &["--discard-unreceived", "198.18.0.2:9000"]].concat());
    send_to(&tb, 9000, 10_000, "50kpps");
    let (_, v) = doctor(&cap.name);
    assert!(!v.iter().any(|f| f["place"].as_str().unwrap().ends_with("after the tap")), "{v:#?}");
    cap.stop();
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth): run the tests as root")]
fn a_capture_on_the_napi_core_that_loses_is_told_to_move_with_the_exact_count() {
    let tb = testbed();
    let rx_cpu = tb.rx_cpu.to_string();
    let (code, v, report) = stalled(
        &tb,
        &["--listen", "198.18.0.2:9000", "--verify", "seq", "--rcvbuf", "64K", "--cpus", &rx_cpu],
    );
    assert_eq!(code, Some(3));
    let f = losses(&v)[0];
    assert_eq!(f["counter"], "kernel_drops", "{v:#?}");
    let fix = f["fix"].as_str().unwrap();
    assert!(fix.starts_with(&format!("the receive thread shares CPU {rx_cpu} with napi/")), "{fix}");
    assert!(fix.contains("--busy-poll"), "{fix}");
    assert!(f["setting"].as_str().unwrap().starts_with("receive buffer"), "{v:#?}");
    // Two counts of the same loss: the socket's (exact without GRO
    // super-packets) and the verifier's (datagrams, but blind to the tail
    // after the last number it received). The finding gives the larger
    // where GRO merged datagrams, else the socket's.
    let missing = report.verify.unwrap().missing;
    assert!(missing > 0, "{report:?}");
    let socket = report.drops[&DropPlace::SocketOverflow];
    let counted = f["count"].as_u64().unwrap();
    assert!(counted >= socket && counted <= socket.max(missing), "{counted} vs {report:?}");
}

/// A capture with `args`, stopped for 300 ms in the middle of a
/// 60,000-packet stream so that whatever buffers it has overflow for
/// certain (and the stream's later numbers show the gap): doctor's status
/// and findings while it still runs, then its report.
fn stalled(tb: &Testbed, args: &[&str]) -> (Option<i32>, Vec<serde_json::Value>, CaptureReport) {
    let mut cap = Capture::start(tb, args);
    stall_during_stream(tb, &cap);
    let (code, v) = doctor(&cap.name);
    (code, v, cap.stop())
}

fn stall_during_stream(tb: &Testbed, cap: &Capture) {
    let ns_tx = tb.ns_tx.clone();
    let sender = std::thread::spawn(move || {
        send(Some(&ns_tx), &["--to", "198.18.0.2:9000", "--count", "60000", "--rate", "100kpps"])
    });
    std::thread::sleep(Duration::from_millis(150));
    linecap::sys::send_signal(cap.pid(), libc::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    linecap::sys::send_signal(cap.pid(), libc::SIGCONT).unwrap();
    assert_eq!(sender.join().unwrap().packets, 60_000);
    std::thread::sleep(Duration::from_millis(800));
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth): run the tests as root")]
fn a_packet_ring_too_small_is_named_with_its_size() {
    let tb = testbed();
    let (code, v, report) = stalled(
        &tb,
        &["--backend", "afpacket", "--iface", &tb.if_rx, "--ring-blocks", "2", "--ring-block-size", "4096"],
    );
    assert_eq!(code, Some(3), "{v:#?}");
    let f = losses(&v)[0];
    assert_eq!(f["counter"], "kernel_drops", "{v:#?}");
    assert_eq!(f["count"].as_u64().unwrap(), report.drops[&DropPlace::PacketRingDropped], "{v:#?}");
    assert!(f["fix"].as_str().unwrap().contains("--ring-blocks"), "{v:#?}");
    assert_eq!(f["setting"], "ring 8 KiB per thread", "{v:#?}");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn an_af_xdp_ring_too_small_is_named_once() {
    let tb = testbed();
    let (code, v, report) = stalled(
        &tb,
        &["--backend", "xdp", "--iface", &tb.if_rx, "--listen", "198.18.0.2:9000", "--xdp-ring", "64"],
    );
    assert_eq!(code, Some(3), "{v:#?}");
    let found = losses(&v);
    let f = found[0];
    assert!(f["fix"].as_str().unwrap().contains("--xdp-ring"), "{v:#?}");
    assert!(f["setting"].as_str().unwrap().starts_with("UMEM 128 KiB"), "{v:#?}");
    let xsk: u64 = report.drops.iter().filter(|(k, _)| k.at_xsk()).map(|(_, n)| n).sum();
    assert_eq!(f["count"].as_u64().unwrap(), xsk, "{v:#?}");
    // veth counts the same frames as rx_dropped: not a second finding.
    assert!(!found.iter().any(|f| f["counter"] == "iface_rx_dropped"), "{v:#?}");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth): run the tests as root")]
fn a_writer_slower_than_the_capture_is_named() {
    let tb = testbed();
    let dir = TempDir::new("drw");
    let file = dir.0.join("slow.pcap");
    // The writer may write 200 KB/s: a 100 kpps stream of 300-byte records
    // overflows its 2 MiB hand-off within a second.
    let mut cap = Capture::start(
        &tb,
        &[
            "--listen",
            "198.18.0.2:9000",
            "--write",
            file.to_str().unwrap(),
            "--sink-buffer",
            "2M",
            "--sink-throttle",
            "200K",
        ],
    );
    let ns_tx = tb.ns_tx.clone();
    let sent = send(Some(&ns_tx), &["--to", "198.18.0.2:9000", "--count", "60000", "--rate", "100kpps"]);
    assert_eq!(sent.packets, 60_000);
    std::thread::sleep(Duration::from_millis(800));
    let (code, v) = doctor(&cap.name);
    let report = cap.stop();
    assert_eq!(code, Some(3), "{v:#?}");
    let f = losses(&v).into_iter().find(|f| f["stage"] == "pcap.queue").expect("the writer's queue is named");
    assert!(f["fix"].as_str().unwrap().contains("--sink-buffer"), "{v:#?}");
    assert!(
        f["count"].as_u64().unwrap() > 0
            && f["count"].as_u64().unwrap() <= report.drops[&DropPlace::PcapRingFull]
    );
}
