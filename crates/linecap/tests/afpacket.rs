//! Root tests of the AF_PACKET backend on a real testbed: TPACKET_V3 ring,
//! fanout, Ethernet pcap files, and the errors a user can make.

mod common;

use common::*;
use linecap::capture::{CaptureReport, DropPlace};
use linecap::orchestrate::TestbedCounters;
use linecap::testbed::{Placement, Testbed, TestbedOptions};
use pcap_file::pcap::PcapReader;

fn testbed() -> Testbed {
    let mut o = TestbedOptions::new(&unique("a"));
    o.placement = Placement::Napi;
    Testbed::up(&o).expect("testbed up")
}

fn run(tb: &Testbed, cap_args: &[&str], send_args: &[&str]) -> (linecap::capture::CaptureReport, u64) {
    let to = format!("{}:9000", linecap::testbed::RX_ADDR);
    let mut c = vec!["--backend", "afpacket", "--iface", tb.if_rx.as_str(), "--verify", "seq"];
    c.extend_from_slice(cap_args);
    let mut s = vec!["--to", to.as_str()];
    s.extend_from_slice(send_args);
    let before = TestbedCounters::read(tb).unwrap();
    let cap = capture(Some(&tb.ns_rx), &c);
    let sent = send(Some(&tb.ns_tx), &s);
    let rep = stop(cap);
    let after = TestbedCounters::read(tb).unwrap();
    assert_eq!(rep.kind(), Some(linecap::source::BackendKind::AfPacket));
    assert_books(&sent, &rep, &before.drops(&after, &rep));
    let v = rep.verify.unwrap();
    assert_eq!((v.corrupt, v.malformed, v.duplicates, v.not_udp), (0, 0, 0, 0), "{v:?}");
    assert_eq!(v.valid, rep.received);
    (rep, sent.packets)
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn tpacket_v3_ring_closes_the_books() {
    let tb = testbed();
    let (rep, sent) = run(&tb, &[], &["--count", "40000", "--rate", "100kpps"]);
    assert!(rep.packets > 0 && rep.packets <= sent);
    // A small ring, unpaced: drops may happen and must land in the ring's counter.
    let (rep, _) =
        run(&tb, &["--ring-blocks", "2", "--ring-block-size", "64k"], &["--duration", "1s", "--rate", "max"]);
    assert!(rep.drops.contains_key(&DropPlace::PacketRingDropped), "{rep:#?}");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn fanout_spreads_flows_and_keeps_the_books() {
    let tb = testbed();
    for mode in ["hash", "lb"] {
        let (rep, _) = run(
            &tb,
            &["--threads", "2", "--fanout", mode],
            &["--count", "40000", "--rate", "80kpps", "--threads", "4"],
        );
        assert_eq!(rep.threads, 2);
    }
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn ethernet_pcap_is_readable() {
    let tb = testbed();
    let dir = TempDir::new("afp");
    let file = dir.0.join("eth.pcap");
    let (rep, _) = run(
        &tb,
        &["--write", file.to_str().unwrap()],
        &["--count", "3000", "--rate", "30kpps", "--size", "300"],
    );
    let mut r = PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    assert_eq!(r.header().datalink, pcap_file::DataLink::ETHERNET);
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        let linecap::format::l2l4::Decoded::Udp(u) = linecap::format::l2l4::decode(&p.data, None) else {
            panic!("record {n} is not UDP")
        };
        assert_eq!(u.payload_len, 300);
        assert!(matches!(
            linecap::format::seq::check(&p.data[u.payload_offset..]),
            linecap::format::seq::Check::Valid(_)
        ));
        n += 1;
    }
    assert_eq!(n, rep.packets);
    if let Ok(out) = std::process::Command::new("tcpdump").arg("-r").arg(&file).arg("-n").output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().filter(|l| l.contains("UDP, length 300")).count() as u64, rep.packets);
    }
    // The same frames as pcapng: one Ethernet interface, an EPB per frame.
    let file = dir.0.join("eth.pcapng");
    let (rep, _) = run(
        &tb,
        &["--write", file.to_str().unwrap()],
        &["--count", "2000", "--rate", "30kpps", "--size", "300"],
    );
    let mut r = pcap_file::pcapng::PcapNgReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let (mut n, mut idb) = (0u64, 0);
    while let Some(b) = r.next_block() {
        match b.unwrap() {
            pcap_file::pcapng::Block::InterfaceDescription(i) => {
                assert_eq!(i.linktype, pcap_file::DataLink::ETHERNET);
                idb += 1;
            }
            pcap_file::pcapng::Block::EnhancedPacket(p) => {
                let linecap::format::l2l4::Decoded::Udp(u) = linecap::format::l2l4::decode(&p.data, None)
                else {
                    panic!("block {n} is not UDP")
                };
                assert_eq!(u.payload_len, 300);
                n += 1;
            }
            other => panic!("unexpected block {other:?}"),
        }
    }
    assert_eq!((idb, n), (1, rep.packets));
}

/// The tap sees a UDP stream as the kernel holds it: merged by GRO for a
/// local socket with `UDP_GRO`, or as a local GSO sender's super-packets
/// (the same kind of skb). The capture splits each back into its datagrams
/// (books and verifier count datagrams, not frames), and its pcap holds one
/// standalone record per datagram, lengths and checksums rebuilt.
#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn gro_super_packets_are_split_back_into_datagrams() {
    let tb = testbed();
    gro_split_on(&tb, &format!("{}:9000", linecap::testbed::RX_ADDR));
    gro_split_on(&tb, &with_ipv6(&tb));
}

/// The books of a GSO sender's stream: exact unless veth dropped some of
/// it. veth counts a super-packet it drops once, whatever it held (the
/// paced sender's hold 1 to 64 datagrams), so with veth drops the
/// datagrams not accounted for lie between none and 63 per drop (CI's
/// machine, loaded: 95 drops, 4 datagrams more). Those datagrams counted
/// at veth, the books and the verifier's gaps must agree exactly.
fn assert_gso_books(
    sent: &linecap::send::socket::SendReport,
    cap: &CaptureReport,
    network: &[(DropPlace, u64)],
) {
    let veth = network.iter().filter(|(p, _)| *p == DropPlace::VethTxDropped).map(|(_, n)| n).sum::<u64>();
    if veth == 0 {
        return assert_books(sent, cap, network);
    }
    let id = linecap::orchestrate::Identity::close(sent, cap, network);
    let hidden = u64::try_from(id.unaccounted).unwrap_or(u64::MAX);
    assert!(hidden <= veth * 63, "{}\n{cap:#?}", id.line());
    let in_datagrams: Vec<_> = network
        .iter()
        .map(|&(place, n)| if place == DropPlace::VethTxDropped { (place, n + hidden) } else { (place, n) })
        .collect();
    assert_books(sent, cap, &in_datagrams);
}

fn gro_split_on(tb: &Testbed, to: &str) {
    const SIZE: usize = 272;
    let dir = TempDir::new("afp-gro");
    let file = dir.0.join("gro.pcap");
    let gro_socket = capture(Some(&tb.ns_rx), &["--listen", to, "--gro-always"]);
    let tap = tap_port_9000(tb, &["--verify", "seq", "--write", file.to_str().unwrap()]);
    let before = TestbedCounters::read(tb).unwrap();
    // A GSO sender: its super-packets cross the veth whole, as GRO would
    // have merged them (the same kind of skb), whatever the machine's load.
    let sent = send(
        Some(&tb.ns_tx),
        &["--to", to, "--count", "20000", "--rate", "50kpps", "--size", "272", "--gso"],
    );
    let rep = stop(tap);
    let after = TestbedCounters::read(tb).unwrap();
    let sock = stop(gro_socket);
    assert!(sock.received > sock.datagrams, "{to}: the socket got super-packets: {sock:#?}");
    assert!(rep.received > rep.datagrams, "{to}: the tap saw super-packets whole: {rep:#?}");
    assert_gso_books(&sent, &rep, &before.drops(&after, &rep));
    let v = rep.verify.as_ref().unwrap();
    assert_eq!((v.valid, v.corrupt, v.duplicates), (rep.received, 0, 0), "{v:?}");
    let ip_len = if to.starts_with('[') { 40 } else { 20 };
    let mut r = PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let (mut n, mut summed) = (0, 0);
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        let linecap::format::l2l4::Decoded::Udp(u) = linecap::format::l2l4::decode(&p.data, None) else {
            panic!("{to}: record {n} is not UDP")
        };
        let whole = 14 + ip_len + 8 + SIZE;
        assert_eq!(
            (u.payload_len, p.data.len(), p.orig_len as usize),
            (SIZE, whole, whole),
            "{to}: record {n}"
        );
        let (ip, udp) = (&p.data[14..14 + ip_len], &p.data[14 + ip_len..]);
        if ip_len == 20 {
            assert_eq!(
                u16::from_be_bytes([ip[2], ip[3]]) as usize,
                20 + 8 + SIZE,
                "record {n}: total length"
            );
            assert_eq!(linecap::format::l2l4::ipv4_checksum(ip), 0, "record {n}: IPv4 header checksum");
        } else {
            assert_eq!(u16::from_be_bytes([ip[4], ip[5]]) as usize, 8 + SIZE, "record {n}: payload length");
            // veth leaves a frame's UDP checksum to the receiver (only the
            // pseudo-header's sum is there): only rebuilt records have one.
            summed += u64::from(udp6_sum(&ip[8..40], udp) == 0xffff);
        }
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, 8 + SIZE, "{to}: record {n}: UDP length");
        assert!(matches!(linecap::format::seq::check(&udp[8..]), linecap::format::seq::Check::Valid(_)));
        n += 1;
    }
    assert_eq!(n, rep.packets, "{to}: one record per datagram");
    if ip_len == 40 {
        // Each super-packet of k datagrams became k records with a checksum.
        assert!(summed > rep.received - rep.datagrams, "{to}: {summed} records with a UDP checksum");
        return;
    }
    if let Ok(out) = std::process::Command::new("tcpdump").arg("-r").arg(&file).arg("-n").arg("-v").output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().filter(|l| l.contains("UDP, length 272")).count() as u64, rep.packets);
        assert!(!text.contains("bad") && !text.contains("truncated"), "{}", &text[..text.len().min(2000)]);
    }
}

/// The ones'-complement sum of an IPv6 UDP datagram with its pseudo-header
/// (`addrs`: source and destination): 0xffff when its checksum is right.
fn udp6_sum(addrs: &[u8], udp: &[u8]) -> u16 {
    let words = |b: &[u8]| -> u64 {
        b.chunks(2).map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum()
    };
    let mut sum = words(addrs) + udp.len() as u64 + 17 + words(udp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn bad_interfaces_and_rings_are_refused_clearly() {
    let tb = testbed();
    let cap = |args: &[&str]| {
        let mut a =
            vec!["capture", "--netns", tb.ns_rx.as_str(), "--backend", "afpacket", "--duration", "1s"];
        a.extend_from_slice(args);
        linecap(&a)
    };
    assert_fails_with(cap(&["--iface", "nosuchif0"]), "interface 'nosuchif0' not found");
    assert_usage_error(cap(&[]), "needs --iface");
    assert_usage_error(
        cap(&["--iface", &tb.if_rx, "--ring-block-size", "5000"]),
        "multiple of the page size",
    );
    assert_usage_error(cap(&["--iface", &tb.if_rx, "--ring-blocks", "1000000"]), "more than half");
    // An interface that is down.
    std::process::Command::new("ip")
        .args(["-n", &tb.ns_rx, "link", "set", &tb.if_rx, "down"])
        .status()
        .unwrap();
    assert_fails_with(cap(&["--iface", &tb.if_rx]), "is down");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn tx_ring_generator_is_verified_by_a_socket_capture() {
    let tb = testbed();
    let to = format!("{}:9000", linecap::testbed::RX_ADDR);
    let before = TestbedCounters::read(&tb).unwrap();
    let cap = capture(Some(&tb.ns_rx), &["--listen", &to, "--verify", "seq"]);
    let sent = send(
        Some(&tb.ns_tx),
        &[
            "--backend",
            "afpacket",
            "--iface",
            &tb.if_tx,
            "--to",
            &to,
            "--count",
            "30000",
            "--rate",
            "100kpps",
        ],
    );
    let rep = stop(cap);
    let after = TestbedCounters::read(&tb).unwrap();
    assert_eq!(sent.packets, 30000);
    assert_eq!(sent.backend.name(), "afpacket");
    assert_books(&sent, &rep, &before.drops(&after, &rep));
    assert_eq!(before.sender_frames(&after), sent.packets, "every frame reached the veth");
    let v = rep.verify.unwrap();
    assert_eq!((v.valid, v.corrupt, v.malformed, v.duplicates), (rep.received, 0, 0, 0));
    assert_eq!(v.missing + (sent.packets - 1 - v.highest_seq), sent.packets - rep.received);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn tx_ring_errors_are_clear() {
    let tb = testbed();
    let send = |args: &[&str]| {
        let mut a = vec!["send", "--netns", tb.ns_tx.as_str(), "--backend", "afpacket", "--count", "10"];
        a.extend_from_slice(args);
        linecap(&a)
    };
    assert_usage_error(send(&["--to", "198.18.0.2:9000"]), "needs --iface");
    assert_fails_with(send(&["--to", "198.18.0.2:9000", "--iface", "nosuchif0"]), "not found");
    assert_fails_with(
        send(&["--to", "198.18.0.77:9000", "--iface", &tb.if_tx]),
        "no neighbour entry for 198.18.0.77",
    );
}

/// A file as a namespace sees it (`/proc/net`, `/sys/class/net`).
fn read_in(ns: &str, path: &str) -> String {
    let out = std::process::Command::new("ip").args(["netns", "exec", ns, "cat", path]).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// An AF_PACKET capture of the testbed's UDP port 9000 in the receive
/// namespace, with `extra` options.
fn tap_port_9000(tb: &Testbed, extra: &[&str]) -> linecap::orchestrate::CaptureChild {
    let c = ["--backend", "afpacket", "--iface", tb.if_rx.as_str(), "--filter", "udp port 9000"];
    capture(Some(&tb.ns_rx), &[&c[..], extra].concat())
}

/// UDP `NoPorts` of a namespace: datagrams that reached UDP with no socket.
fn udp_no_ports(ns: &str) -> u64 {
    let text = read_in(ns, "/proc/net/snmp");
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    let at = names.split_whitespace().position(|n| n == "NoPorts").unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// With `--discard-unreceived` on, a socket bound to the address still
/// gets the whole stream (its books close with no loss to the program).
/// `other_frames`: a count of the frames the sender's stack sends besides
/// the stream (they cross the veth too).
fn a_socket_keeps_its_stream(tb: &Testbed, to: &str, other_frames: &dyn Fn() -> u64) {
    let (before, others) = counters_beside(tb, other_frames);
    let sock = capture(Some(&tb.ns_rx), &["--listen", to, "--verify", "seq", "--count", "4000"]);
    let tap = tap_port_9000(tb, &["--discard-unreceived", to]);
    let s = send(Some(&tb.ns_tx), &["--to", to, "--count", "4000", "--rate", "20kpps"]);
    let (tap, sock) = (stop(tap), stop(sock));
    let (after, others_after) = counters_beside(tb, other_frames);
    let others = others_after - others;
    let network: Vec<_> = before
        .drops(&after, &sock)
        .into_iter()
        .map(|(place, n)| if place == DropPlace::SocketOverflow { (place, n - others) } else { (place, n) })
        .collect();
    assert_books(&s, &sock, &network);
    assert_eq!(sock.verify.as_ref().unwrap().valid, sock.received);
    // The tap sees the socket's GRO super-packets whole, and splits them
    // back into datagrams by their segment size.
    assert!(sock.received > 0 && tap.received_bytes == sock.received_bytes, "{tap:#?} {sock:#?}");
    assert_eq!(tap.received, sock.received, "{tap:#?} {sock:#?}");
}

/// The testbed's counters and, read in the same instant, the count of
/// the frames the sender's stack sends on its own: read again while that
/// count moved between its reads (a router solicitation between the two
/// reads was counted once in one and not the other: one frame unaccounted).
fn counters_beside(tb: &Testbed, other_frames: &dyn Fn() -> u64) -> (TestbedCounters, u64) {
    for _ in 0..100 {
        let others = other_frames();
        let counters = TestbedCounters::read(tb).unwrap();
        if other_frames() == others {
            return (counters, others);
        }
    }
    panic!("the sender's stack kept sending frames of its own for 100 reads");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn discard_unreceived_ends_the_stream_after_the_tap_but_never_before_a_socket() {
    let tb = testbed();
    let to = format!("{}:9000", linecap::testbed::RX_ADDR);
    let discard = ["--filter", "udp port 9000", "--discard-unreceived", to.as_str()];
    // Nobody listens: the capture gets every datagram, UDP none.
    // (`run` checks the books: what the network dropped is counted.)
    let (rep, _) = run(&tb, &discard, &["--count", "4000", "--rate", "20kpps"]);
    assert!(rep.received > 0, "{rep:#?}");
    assert_eq!(rep.kernel["udp_no_ports"], 0, "{rep:#?}");
    a_socket_keeps_its_stream(&tb, &to, &|| 0);
    // The program left with the capture: the kernel counts unheard datagrams again.
    let (n0, before) = (udp_no_ports(&tb.ns_rx), TestbedCounters::read(&tb).unwrap());
    send(Some(&tb.ns_tx), &["--to", to.as_str(), "--count", "500", "--rate", "20kpps"]);
    let unheard = settled(|| udp_no_ports(&tb.ns_rx)) - n0;
    let dropped = before.frames_dropped(&TestbedCounters::read(&tb).unwrap());
    assert_eq!(unheard + dropped, 500, "{unheard} unheard, {dropped} dropped by veth");
}

/// A counter of the receiving stack once it has been still for 250 ms (at
/// most 10 s): the sender returns once veth has queued its last frames for
/// the receiving NAPI thread, which runs late on a loaded machine.
fn settled(read: impl Fn() -> u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = read();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let now = read();
        if now == last || std::time::Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[test]
fn discard_unreceived_needs_one_local_unicast_address() {
    let o = linecap(&[
        "capture",
        "--backend",
        "afpacket",
        "--iface",
        "lo",
        "--discard-unreceived",
        "0.0.0.0:9000",
    ]);
    assert_usage_error(o, "unicast address");
    let o = linecap(&["capture", "--discard-unreceived", "127.0.0.1:9000"]);
    assert_usage_error(o, "applies to --backend afpacket");
    for bad in ["239.1.1.1:9000", "127.0.0.1:0"] {
        let o = linecap(&["capture", "--backend", "afpacket", "--iface", "lo", "--discard-unreceived", bad]);
        assert_usage_error(o, "unicast address");
    }
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn discard_unreceived_refuses_an_address_the_host_does_not_have() {
    // A routed stream to another host would end at the program: refused
    // before the capture starts, in the capture's own namespace.
    let tb = testbed();
    let o = linecap(&[
        "capture",
        "--netns",
        &tb.ns_rx,
        "--backend",
        "afpacket",
        "--iface",
        &tb.if_rx,
        "--discard-unreceived",
        "198.18.0.9:9000",
        "--duration",
        "1s",
    ]);
    assert_fails_with(o, "198.18.0.9 is not an address of this host");
}

/// `Udp6NoPorts` of a namespace.
fn udp6_no_ports(ns: &str) -> u64 {
    snmp6(ns, "Udp6NoPorts")
}

/// One counter of a namespace's `/proc/net/snmp6`.
fn snmp6(ns: &str, name: &str) -> u64 {
    let text = read_in(ns, "/proc/net/snmp6");
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Gives both ends of the testbed an IPv6 address (the testbed has none)
/// and the sender a permanent neighbour entry for the receiver (no
/// neighbour discovery to race with): the capture's address and port.
fn with_ipv6(tb: &Testbed) -> String {
    let ip = |args: &[&str]| {
        let ok = std::process::Command::new("ip").args(args).status().unwrap().success();
        assert!(ok, "ip {args:?}");
    };
    for (ns, dev, addr) in
        [(&tb.ns_tx, &tb.if_tx, "fd00:198::1/64"), (&tb.ns_rx, &tb.if_rx, "fd00:198::2/64")]
    {
        for key in ["all".to_string(), dev.clone()] {
            ip(&["netns", "exec", ns, "sysctl", "-qw", &format!("net.ipv6.conf.{key}.disable_ipv6=0")]);
        }
        ip(&["-n", ns, "addr", "add", addr, "dev", dev, "nodad"]);
    }
    let mac = read_in(&tb.ns_rx, &format!("/sys/class/net/{}/address", tb.if_rx));
    ip(&[
        "-n",
        &tb.ns_tx,
        "-6",
        "neigh",
        "replace",
        "fd00:198::2",
        "lladdr",
        mac.trim(),
        "dev",
        &tb.if_tx,
        "nud",
        "permanent",
    ]);
    "[fd00:198::2]:9000".to_string()
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn discard_unreceived_ends_an_ipv6_stream_too() {
    let tb = testbed();
    let to = with_ipv6(&tb);
    let n0 = udp6_no_ports(&tb.ns_rx);
    let cap = tap_port_9000(&tb, &["--discard-unreceived", &to]);
    let before = TestbedCounters::read(&tb).unwrap();
    let sent = send(Some(&tb.ns_tx), &["--to", to.as_str(), "--count", "3000", "--rate", "20kpps"]);
    let rep = stop(cap);
    let after = TestbedCounters::read(&tb).unwrap();
    assert_books(&sent, &rep, &before.drops(&after, &rep));
    assert!(rep.received > 0, "{rep:#?}");
    assert_eq!(udp6_no_ports(&tb.ns_rx), n0, "no datagram went on to UDP");
    // IPv6 sends ICMPv6 of its own (MLD reports, neighbour solicitations).
    a_socket_keeps_its_stream(&tb, &to, &|| snmp6(&tb.ns_tx, "Icmp6OutMsgs"));
    let (n1, before) = (udp6_no_ports(&tb.ns_rx), TestbedCounters::read(&tb).unwrap());
    send(Some(&tb.ns_tx), &["--to", to.as_str(), "--count", "300", "--rate", "20kpps"]);
    let dropped = before.frames_dropped(&TestbedCounters::read(&tb).unwrap());
    assert_eq!(settled(|| udp6_no_ports(&tb.ns_rx)) - n1 + dropped, 300, "the program left with the capture");
}

/// The discard program run by `BPF_PROG_TEST_RUN` on crafted frames, as a
/// tc program sees them on loopback: the verdict for each.
mod discard_program {
    use etherparse::PacketBuilder;
    use linecap::bpf::discard::{TCX_DROP, TCX_NEXT, discard_unreceived_program};
    use linecap::bpf::insn::to_bytes;
    use linecap::sys::bpf;
    use std::net::{SocketAddr, UdpSocket};

    fn load(dst: SocketAddr) -> std::os::fd::OwnedFd {
        let prog = to_bytes(&discard_unreceived_program(dst));
        bpf::prog_load(bpf::PROG_TYPE_SCHED_CLS, bpf::ATTACH_TCX_INGRESS, &prog, "lc_discard")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A frame to `dst` from this host's loopback; `mac` zero is loopback's
    /// own address (the test run's device), so the frame is for this host.
    fn frame(dst: SocketAddr, mac: [u8; 6]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], mac);
        let b = match dst {
            SocketAddr::V4(d) => b.ipv4([127, 0, 0, 1], d.ip().octets(), 64),
            SocketAddr::V6(d) => b.ipv6(
                [0; 15].into_iter().chain([1]).collect::<Vec<_>>().try_into().unwrap(),
                d.ip().octets(),
                64,
            ),
        };
        let mut out = Vec::new();
        b.udp(4000, dst.port()).write(&mut out, &[7; 64]).unwrap();
        out
    }

    fn verdict(prog: &std::os::fd::OwnedFd, f: &[u8]) -> i32 {
        bpf::xdp_test_run(prog, f).unwrap_or_else(|e| panic!("{} bytes: {e}", f.len())) as i32
    }

    /// A port with nobody on it, and a socket holding another.
    fn ports(ip: &str) -> (SocketAddr, UdpSocket) {
        let held = UdpSocket::bind(format!("{ip}:0")).unwrap();
        let free = UdpSocket::bind(format!("{ip}:0")).unwrap().local_addr().unwrap();
        (free, held)
    }

    #[test]
    #[cfg_attr(not(linecap_root), ignore = "needs root (BPF): run the tests as root")]
    fn it_drops_only_what_no_socket_takes_and_looks_at_nothing_else() {
        for ip in ["127.0.0.1", "[::1]"] {
            let (free, held) = ports(ip);
            let held = held.local_addr().unwrap();
            let host = [0; 6];
            // Nobody listens: dropped. A socket listens: it goes on.
            assert_eq!(verdict(&load(free), &frame(free, host)), TCX_DROP, "{free}");
            assert_eq!(verdict(&load(held), &frame(held, host)), TCX_NEXT, "{held}");
            let p = load(free);
            let mut other_port = free;
            other_port.set_port(free.port() ^ 1);
            assert_eq!(verdict(&p, &frame(other_port, host)), TCX_NEXT, "another port");
            assert_eq!(verdict(&p, &frame(free, [2; 6])), TCX_NEXT, "a frame for another host");
            assert_eq!(verdict(&p, &frame(free, [0xff; 6])), TCX_NEXT, "broadcast");
            // Cut inside the UDP header (the test run needs a whole IP header).
            let full = frame(free, host);
            let ip_end = if free.is_ipv4() { 34 } else { 54 };
            for cut in ip_end..full.len() - 64 {
                assert_eq!(verdict(&p, &full[..cut]), TCX_NEXT, "{ip} cut at {cut}");
            }
        }
        // IPv4: a fragment and a header with options go on up the stack.
        let (free, _held) = ports("127.0.0.1");
        let p = load(free);
        let mut fragment = frame(free, [0; 6]);
        fragment[20] |= 0x20; // more fragments
        assert_eq!(verdict(&p, &fragment), TCX_NEXT, "fragment");
        let plain = frame(free, [0; 6]);
        let mut options = plain[..34].to_vec();
        options[14] = 0x46; // IHL 6
        options.extend_from_slice(&[1, 1, 1, 0]); // NOPs, end of options
        options.extend_from_slice(&plain[34..]);
        assert_eq!(verdict(&p, &options), TCX_NEXT, "IPv4 options");
        // Any bytes after a header that leads the program on (for this
        // host, IPv4 or IPv6, half of them plain UDP): never a drop.
        let (free6, _held6) = ports("[::1]");
        let p6 = load(free6);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        };
        for i in 0..400usize {
            let v4 = i % 2 == 0;
            let len = if v4 { 34 } else { 54 } + i % 150;
            let mut bytes: Vec<u8> = (0..len).map(|_| next()).collect();
            bytes[..6].fill(0);
            bytes[12..14].copy_from_slice(if v4 { &[0x08, 0x00] } else { &[0x86, 0xdd] });
            if i % 4 < 2 {
                bytes[14] = if v4 { 0x45 } else { 0x60 };
                bytes[if v4 { 23 } else { 20 }] = 17;
            }
            assert_eq!(verdict(if v4 { &p } else { &p6 }, &bytes), TCX_NEXT, "{bytes:02x?}");
        }
    }
}
