//! The filter compiler against tcpdump's own: mixed traffic crosses a
//! testbed; for each expression, a linecap AF_PACKET capture with
//! `--filter EXPR` and `tcpdump EXPR` on the same interface must accept
//! exactly the same number of packets. Plus the socket target and bad input.

mod common;

use linecap::capture::DropPlace;
use std::io::{BufRead, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use etherparse::PacketBuilder;
use linecap::testbed::{Placement, Testbed, TestbedOptions};

const EXPRESSIONS: &[&str] = &[
    "udp",
    "tcp",
    "icmp",
    "arp",
    "ip6",
    "udp dst port 9000",
    "port 53",
    "tcp port 9000",
    "portrange 9000-9001",
    "src host 198.18.0.1",
    "dst host 198.18.0.2 and udp",
    "net 10.0.0.0/8",
    "vlan",
    "vlan 12",
    "not udp",
    "udp and not vlan",
    "(tcp or icmp) and dst host 198.18.0.2",
    "host 2001:db8::1",
];

/// The mixed traffic: `reps` copies of each kind of frame.
fn mixed(dst_mac: [u8; 6], reps: usize) -> Vec<Vec<u8>> {
    let eth = || PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], dst_mac);
    let a = [198, 18, 0, 1];
    let b = [198, 18, 0, 2];
    let mut kinds: Vec<Vec<u8>> = Vec::new();
    let mut put = |f: Vec<u8>| kinds.push(f);
    let udp = |src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16| {
        let mut o = Vec::new();
        eth().ipv4(src, dst, 64).udp(sp, dp).write(&mut o, &[9u8; 64]).unwrap();
        o
    };
    put(udp(a, b, 4000, 9000));
    put(udp(a, b, 4000, 9001));
    put(udp(a, b, 53, 5353));
    put(udp([10, 1, 1, 1], b, 1, 2));
    let mut o = Vec::new();
    eth().ipv4(a, b, 64).tcp(4000, 9000, 1, 100).write(&mut o, &[0u8; 10]).unwrap();
    put(o);
    let mut o = Vec::new();
    eth().ipv4(a, b, 64).icmpv4_echo_request(1, 1).write(&mut o, &[0u8; 8]).unwrap();
    put(o);
    let mut o = Vec::new();
    let mut s6 = [0u8; 16];
    s6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    s6[15] = 1;
    eth().ipv6(s6, [3; 16], 64).udp(7, 9000).write(&mut o, &[1u8; 32]).unwrap();
    put(o);
    let mut o = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], dst_mac)
        .single_vlan(12u16.try_into().unwrap())
        .ipv4(a, b, 64)
        .udp(4000, 9000)
        .write(&mut o, &[5u8; 64])
        .unwrap();
    put(o);
    let mut arp = vec![0u8; 42];
    arp[..6].copy_from_slice(&[0xff; 6]);
    arp[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    put(arp);
    (0..reps).flat_map(|_| kinds.clone()).collect()
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn filters_accept_what_tcpdump_accepts() {
    let Some(tcpdump) = linecap::bench::peers::tcpdump_path() else {
        skip_or_fail("filters_accept_what_tcpdump_accepts: tcpdump not installed (.ci/run installs it)");
        return;
    };
    let tb = Testbed::up(&TestbedOptions { placement: Placement::Napi, ..TestbedOptions::new(&unique("f")) })
        .unwrap();
    let mut caps = Vec::new();
    let mut dumps = Vec::new();
    for e in EXPRESSIONS {
        caps.push(capture(Some(&tb.ns_rx), &["--backend", "afpacket", "--iface", &tb.if_rx, "--filter", e]));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &tb.ns_rx])
            .arg(&tcpdump)
            .args(["-i", &tb.if_rx, "-Q", "in", "-n", "-w", "/dev/null", "--immediate-mode", e])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for "listening on".
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        while !seen.contains("listening") {
            let mut line = String::new();
            assert!(err.read_line(&mut line).unwrap() > 0, "tcpdump '{e}' exited: {seen}");
            seen += &line;
        }
        dumps.push((child, err));
    }
    let rx_mac = {
        let ns = tb.ns_rx.clone();
        let ifr = tb.if_rx.clone();
        linecap::stats::kernel::in_netns(&ns, move || linecap::sys::packet::if_hwaddr(&ifr)).unwrap().unwrap()
    };
    let frames = mixed(rx_mac, 20);
    let total = frames.len();
    let ift = tb.if_tx.clone();
    linecap::stats::kernel::in_netns(&tb.ns_tx, move || {
        let s = linecap::sys::packet::RawSender::open(&ift).unwrap();
        for f in &frames {
            s.send(f).unwrap();
            std::thread::sleep(Duration::from_micros(50));
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for ((e, cap), (child, mut err)) in EXPRESSIONS.iter().zip(caps).zip(dumps) {
        let rep = cap.stop().unwrap();
        linecap::sys::send_signal(child.id(), libc::SIGINT).unwrap();
        let mut text = String::new();
        err.read_to_string(&mut text).unwrap();
        let mut child = child;
        child.wait().unwrap();
        let st = linecap::bench::peers::parse_tcpdump_stats(&text)
            .unwrap_or_else(|| panic!("tcpdump {e}: {text}"));
        assert_eq!(st.dropped_by_kernel, 0);
        assert_eq!(
            rep.received, st.captured,
            "'{e}': linecap {} vs tcpdump {} of {total} frames",
            rep.received, st.captured
        );
    }
}

#[test]
fn socket_filter_keeps_matching_datagrams() {
    let addr = free_loopback();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let cap = capture(
        None,
        &["--listen", &addr, "--filter", &format!("udp dst port {port} and src host 127.0.0.1")],
    );
    let sent = send(None, &["--to", &addr, "--count", "500", "--rate", "20kpps"]);
    let rep = stop(cap);
    assert_eq!(rep.received, sent.packets);
    let cap = capture(None, &["--listen", &addr, "--filter", "src host 127.0.0.2"]);
    let sent = send(None, &["--to", &addr, "--count", "500", "--rate", "20kpps"]);
    let rep = stop(cap);
    assert_eq!(rep.received, 0);
    // The kernel counts filtered datagrams with overflows: the books say so.
    assert_eq!(rep.drops[&DropPlace::SocketOverflowOrFiltered], sent.packets);
    assert_books(&sent, &rep, &[]);
}

#[test]
fn bad_filters_point_at_the_token() {
    let o = linecap(&["capture", "--listen", "127.0.0.1:0", "--filter", "udp and prot 9000", "--count", "1"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("position 8") && e.contains("'prot'"), "{e}");
    let dir = TempDir::new("bpf");
    let f = dir.0.join("bad.bpf");
    std::fs::write(&f, "3\n40 0 0 12\n6 0 0\n").unwrap();
    let o = linecap(&[
        "capture",
        "--backend",
        "afpacket",
        "--iface",
        "lo",
        "--bpf-file",
        f.to_str().unwrap(),
        "--count",
        "1",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("line 3"), "{e}");
    let o =
        linecap(&["capture", "--listen", "127.0.0.1:0", "--bpf-file", f.to_str().unwrap(), "--count", "1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("applies to --backend afpacket"));
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn bpf_file_from_tcpdump_is_used() {
    let Some(tcpdump) = linecap::bench::peers::tcpdump_path() else { return };
    let tb = Testbed::up(&TestbedOptions::new(&unique("g"))).unwrap();
    let out = Command::new(&tcpdump).args(["-ddd", "-i", "lo", "udp dst port 9000"]).output().unwrap();
    assert!(out.status.success());
    let dir = TempDir::new("ddd");
    let f = dir.0.join("prog.bpf");
    std::fs::write(&f, &out.stdout).unwrap();
    let to = format!("{}:9000", linecap::testbed::RX_ADDR);
    let to2 = format!("{}:9001", linecap::testbed::RX_ADDR);
    let cap = capture(
        Some(&tb.ns_rx),
        &[
            "--backend",
            "afpacket",
            "--iface",
            &tb.if_rx,
            "--bpf-file",
            f.to_str().unwrap(),
            "--verify",
            "seq",
        ],
    );
    // First a stream the program rejects, then one it accepts.
    let _b = send(Some(&tb.ns_tx), &["--to", &to2, "--count", "200", "--rate", "20kpps"]);
    let before = linecap::orchestrate::TestbedCounters::read(&tb).unwrap();
    let a = send(Some(&tb.ns_tx), &["--to", &to, "--count", "300", "--rate", "20kpps"]);
    let rep = stop(cap);
    let after = linecap::orchestrate::TestbedCounters::read(&tb).unwrap();
    let v = rep.verify.unwrap();
    assert_eq!(v.valid, rep.received);
    // Every accepted packet is delivered or its loss is counted (veth ring,
    // packet ring), and no rejected one got in (it would leave the books short).
    assert_books(&a, &rep, &before.drops(&after, &rep));
}
