//! The XDP program linecap emits, loaded by the running kernel's verifier
//! and run on crafted frames with BPF_PROG_TEST_RUN: the capture's flow is
//! redirected, everything else passes. Needs root (CAP_BPF, CAP_NET_ADMIN).

mod common;

use std::net::Ipv4Addr;

use common::*;
use etherparse::PacketBuilder;
use linecap::bpf::insn::to_bytes;
use linecap::bpf::xdp::{Match, ParsedLane, XDP_DROP, XDP_PASS, XDP_TX, redirect_program};
use linecap::sys::bpf;

fn udp4(dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut o = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([198, 18, 0, 1], dst, 64)
        .udp(4000, dport)
        .write(&mut o, &[7; 64])
        .unwrap();
    o
}

/// `frame` (IPv4, no options) with 4 bytes of IP options: the UDP header
/// moves, the IP total length grows.
fn with_ip_options(mut frame: Vec<u8>) -> Vec<u8> {
    frame[14] = 0x46;
    frame.splice(34..34, [1u8, 1, 1, 0]);
    let total = u16::from_be_bytes([frame[16], frame[17]]) + 4;
    frame[16..18].copy_from_slice(&total.to_be_bytes());
    frame
}

/// IPv6 UDP to port 9000.
fn udp6(payload: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    PacketBuilder::ethernet2([2; 6], [2; 6])
        .ipv6([1; 16], [2; 16], 64)
        .udp(4000, 9000)
        .write(&mut o, payload)
        .unwrap();
    o
}

fn load(m: Match) -> std::os::fd::OwnedFd {
    let map = bpf::map_create(bpf::MAP_TYPE_XSKMAP, 4, 4, 4, "lc_xsks").unwrap();
    use std::os::fd::AsRawFd;
    // Fallback XDP_TX: an empty map slot makes a redirect attempt visible.
    let prog = redirect_program(m, map.as_raw_fd(), XDP_TX, None);
    let fd = bpf::prog_load(bpf::PROG_TYPE_XDP, bpf::ATTACH_XDP, &to_bytes(&prog), "lc_redirect")
        .unwrap_or_else(|e| panic!("{e}"));
    std::mem::forget(map); // the program holds its own reference; keep the test simple
    fd
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn verifier_accepts_and_decisions_are_right() {
    let p = load(Match { port: 9000, ipv4_dst: None });
    let run = |f: &[u8]| bpf::xdp_test_run(&p, f).unwrap() as i32;
    let redirect = XDP_TX;
    assert_eq!(run(&udp4([198, 18, 0, 2], 9000)), redirect, "the flow");
    assert_eq!(run(&udp4([198, 18, 0, 2], 9001)), XDP_PASS, "another port");
    let mut tcp = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
        .tcp(4000, 9000, 1, 100)
        .write(&mut tcp, &[0; 20])
        .unwrap();
    assert_eq!(run(&tcp), XDP_PASS, "TCP to the same port");
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(run(&arp), XDP_PASS, "ARP");
    assert_eq!(run(&udp6(&[0; 32])), redirect, "IPv6 UDP to the port");
    let mut frag = udp4([198, 18, 0, 2], 9000);
    frag[14 + 6] = 0x20; // more fragments
    assert_eq!(run(&frag), XDP_PASS, "a fragment");
    assert_eq!(run(&with_ip_options(udp4([198, 18, 0, 2], 9000))), redirect, "IPv4 options");
    // Truncated frames pass (bounds checks), never fault.
    let full = udp4([198, 18, 0, 2], 9000);
    for cut in [14, 20, 33, 34, 41] {
        assert_eq!(run(&full[..cut]), XDP_PASS, "cut at {cut}");
    }
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn frames_of_another_layout_than_the_fixed_one_go_to_the_parsed_lane() {
    let map = bpf::map_create(bpf::MAP_TYPE_XSKMAP, 4, 4, 4, "lc_xsks").unwrap();
    use std::os::fd::AsRawFd;
    // The map is empty: each lane's fallback action names the lane tried.
    let (fixed, parsed) = (XDP_TX, XDP_DROP);
    let lane = ParsedLane { key_offset: 1, fallback: parsed };
    let prog = redirect_program(Match { port: 9000, ipv4_dst: None }, map.as_raw_fd(), fixed, Some(lane));
    let p = bpf::prog_load(bpf::PROG_TYPE_XDP, bpf::ATTACH_XDP, &to_bytes(&prog), "lc_redirect")
        .unwrap_or_else(|e| panic!("{e}"));
    let run = |f: &[u8]| bpf::xdp_test_run(&p, f).unwrap() as i32;
    let flow = udp4([198, 18, 0, 2], 9000);
    assert_eq!(run(&flow), fixed, "the fixed layout");
    let mut empty = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(4000, 9000)
        .write(&mut empty, &[])
        .unwrap();
    assert_eq!(run(&empty), fixed, "an empty datagram");
    assert_eq!(run(&with_ip_options(flow.clone())), parsed, "IPv4 options");
    let padded = [&flow[..], &[0u8; 6]].concat();
    assert_eq!(run(&padded), parsed, "bytes after the datagram (Ethernet padding)");
    let mut short_udp = flow.clone();
    let udp_len = u16::from_be_bytes([flow[38], flow[39]]) - 10;
    short_udp[38..40].copy_from_slice(&udp_len.to_be_bytes());
    assert_eq!(run(&short_udp), parsed, "a UDP length short of the IP payload");
    assert_eq!(run(&flow[..flow.len() - 1]), parsed, "an IP length past the frame");
    let mut udp_past_ip = padded.clone();
    let udp_len = u16::from_be_bytes([flow[38], flow[39]]) + 6;
    udp_past_ip[38..40].copy_from_slice(&udp_len.to_be_bytes());
    assert_eq!(run(&udp_past_ip), parsed, "a UDP length past the IP length, to the frame's end");
    assert_eq!(run(&udp6(&[0; 32])), parsed, "IPv6");
    assert_eq!(run(&udp4([198, 18, 0, 2], 9001)), XDP_PASS, "another port");
    for cut in [14, 33, 41] {
        assert_eq!(run(&flow[..cut]), XDP_PASS, "cut at {cut}");
    }
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn address_match_narrows_the_flow() {
    let p = load(Match { port: 9000, ipv4_dst: Some(Ipv4Addr::new(198, 18, 0, 2)) });
    assert_eq!(bpf::xdp_test_run(&p, &udp4([198, 18, 0, 2], 9000)).unwrap() as i32, XDP_TX);
    assert_eq!(bpf::xdp_test_run(&p, &udp4([198, 18, 0, 3], 9000)).unwrap() as i32, XDP_PASS);
    // An address whose last byte has its top bit set: a 64-bit compare
    // with the sign-extended constant never matched it.
    let p = load(Match { port: 9000, ipv4_dst: Some(Ipv4Addr::new(198, 18, 0, 200)) });
    assert_eq!(bpf::xdp_test_run(&p, &udp4([198, 18, 0, 200], 9000)).unwrap() as i32, XDP_TX);
    assert_eq!(bpf::xdp_test_run(&p, &udp4([198, 18, 0, 72], 9000)).unwrap() as i32, XDP_PASS);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn a_bad_program_carries_the_verifier_log() {
    // Reads packet data without a bounds check: the verifier must refuse it.
    let mut a = linecap::bpf::insn::Asm::default();
    a.ldx(linecap::bpf::insn::Size::W, 2, 1, 0);
    a.ldx(linecap::bpf::insn::Size::B, 0, 2, 0);
    a.exit();
    let prog = a.finish().unwrap();
    let e = bpf::prog_load(bpf::PROG_TYPE_XDP, bpf::ATTACH_XDP, &to_bytes(&prog), "lc_bad").unwrap_err();
    assert!(e.log.contains("invalid access to packet") || e.log.contains("R2"), "{}", e.log);
    assert!(e.to_string().contains("verifier log"));
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn bpf_link_attaches_natively_and_detaches_with_its_fd() {
    use linecap::testbed::{Testbed, TestbedOptions};
    use std::os::fd::AsRawFd;
    let tb = Testbed::up(&TestbedOptions::new(&unique("x"))).unwrap();
    let shows_xdp = || {
        let out = std::process::Command::new("ip")
            .args(["-n", &tb.ns_rx, "link", "show", "dev", &tb.if_rx])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    };
    assert!(!shows_xdp());
    let ifr = tb.if_rx.clone();
    // Attach inside the receiving namespace, native (driver) mode: veth supports it.
    let link = linecap::stats::kernel::in_netns(&tb.ns_rx, move || {
        let map = bpf::map_create(bpf::MAP_TYPE_XSKMAP, 4, 4, 4, "lc_xsks").unwrap();
        let prog = redirect_program(Match { port: 9000, ipv4_dst: None }, map.as_raw_fd(), XDP_PASS, None);
        let p = bpf::prog_load(bpf::PROG_TYPE_XDP, bpf::ATTACH_XDP, &to_bytes(&prog), "lc_redirect").unwrap();
        let ifindex = linecap::sys::packet::if_index(&ifr).unwrap();
        const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
        bpf::xdp_link(&p, ifindex, XDP_FLAGS_DRV_MODE).unwrap()
    })
    .unwrap();
    assert!(shows_xdp(), "attached");
    // With no socket in the map, the flow falls back to the stack: a UDP
    // capture still gets every packet, and the books close.
    let (sent, rep, before, after) = verified_run(&tb, &["--count", "5000", "--rate", "50kpps"]);
    assert_books(&sent, &rep, &before.drops(&after, &rep));
    assert!(rep.received > 0);
    drop(link);
    // The link's release is asynchronous in the kernel; give it a moment.
    for _ in 0..100 {
        if !shows_xdp() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!shows_xdp(), "detached when the link fd closed");
}

fn xdp_testbed() -> linecap::testbed::Testbed {
    linecap::testbed::Testbed::up(&linecap::testbed::TestbedOptions::new(&unique("q"))).unwrap()
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn busy_polling_the_kernel_refuses_leaves_the_sockets_waiting_in_poll() {
    // The kernel refuses a busy-poll time beyond a C int (EINVAL) even to
    // root (the command line never asks for one; the engine is asked
    // directly): the source opens all the same, no socket busy-polls, and
    // it keeps the kernel's answer for the capture to say once.
    let tb = xdp_testbed();
    let iface = tb.if_rx.clone();
    let (busy, refusal) = linecap::stats::kernel::in_netns(&tb.ns_rx, move || {
        let o = linecap::source::xdp::XdpOptions {
            iface,
            queue: 0,
            queues: 1,
            listen: rx_to().parse().unwrap(),
            ring: 4096,
            frame_size: 2048,
            batch: 64,
            busy_poll: Some(u32::MAX),
            force: false,
            parsed_lane: true,
            lend_frames: 0,
        };
        let s = linecap::source::xdp::XdpSource::open(&o).expect("opens without busy polling");
        (s.busy_polls(), s.busy_poll_refused().cloned())
    })
    .unwrap();
    assert!(!busy);
    let refusal = refusal.expect("the refusal is kept");
    assert_eq!(refusal.errno, 22, "EINVAL: {refusal:?}");
    assert!(refusal.why.contains("Invalid argument"), "{refusal:?}");
}

/// The testbed's capture address.
fn rx_to() -> String {
    format!("{}:9000", linecap::testbed::RX_ADDR)
}

/// Sends through the testbed (`send_args` plus `--to` its port 9000) into a
/// verifying UDP capture; returns what was sent, the capture's report and
/// the testbed's counters before and after.
fn verified_run(
    tb: &linecap::testbed::Testbed,
    send_args: &[&str],
) -> (
    linecap::send::socket::SendReport,
    linecap::capture::CaptureReport,
    linecap::orchestrate::TestbedCounters,
    linecap::orchestrate::TestbedCounters,
) {
    use linecap::orchestrate::TestbedCounters;
    let to = rx_to();
    let before = TestbedCounters::read(tb).unwrap();
    let cap = capture(Some(&tb.ns_rx), &["--listen", &to, "--verify", "seq"]);
    let mut args = vec!["--to", to.as_str()];
    args.extend_from_slice(send_args);
    let sent = send(Some(&tb.ns_tx), &args);
    let rep = stop(cap);
    let after = TestbedCounters::read(tb).unwrap();
    (sent, rep, before, after)
}

fn has_xdp(tb: &linecap::testbed::Testbed) -> bool {
    let out = std::process::Command::new("ip")
        .args(["-n", &tb.ns_rx, "link", "show", "dev", &tb.if_rx])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn af_xdp_capture_closes_the_books() {
    use linecap::orchestrate::TestbedCounters;
    let tb = xdp_testbed();
    let to = rx_to();
    for (count_or_duration, rate) in [(["--count", "40000"], "100kpps"), (["--duration", "1s"], "max")] {
        let before = TestbedCounters::read(&tb).unwrap();
        let cap = capture(
            Some(&tb.ns_rx),
            &["--backend", "xdp", "--iface", &tb.if_rx, "--listen", &to, "--verify", "seq"],
        );
        assert!(has_xdp(&tb), "program attached while capturing");
        let mut s = vec!["--to", to.as_str(), "--rate", rate];
        s.extend_from_slice(&count_or_duration);
        let sent = send(Some(&tb.ns_tx), &s);
        let rep = stop(cap);
        let after = TestbedCounters::read(&tb).unwrap();
        assert_eq!(rep.kind(), Some(linecap::source::BackendKind::Xdp));
        assert_eq!(rep.mode, "copy, native", "veth: native XDP, copy-mode AF_XDP");
        assert_books(&sent, &rep, &before.drops(&after, &rep));
        let v = rep.verify.unwrap();
        assert_eq!((v.valid, v.corrupt, v.malformed), (rep.received, 0, 0));
        assert!(!has_xdp(&tb), "detached at exit");
    }
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn af_xdp_faults_are_clear() {
    let tb = xdp_testbed();
    let cap = |args: &[&str]| {
        let mut a = vec!["capture", "--netns", tb.ns_rx.as_str(), "--backend", "xdp", "--duration", "1s"];
        a.extend_from_slice(args);
        linecap(&a)
    };
    assert_usage_error(cap(&["--listen", "198.18.0.2:9000"]), "needs --iface");
    assert_fails_with(cap(&["--iface", "nosuchif0"]), "not found");
    assert_fails_with(cap(&["--iface", &tb.if_rx, "--queue", "7"]), "queue 7");
    // A queue past the device's (veth here has one) is named; --queues and
    // --threads must agree.
    assert_fails_with(cap(&["--iface", &tb.if_rx, "--queues", "2"]), "queue 1");
    assert_usage_error(cap(&["--iface", &tb.if_rx, "--queues", "0"]), "--queues must be 1 to 256");
    assert_usage_error(
        cap(&["--iface", &tb.if_rx, "--queues", "2", "--threads", "3"]),
        "one thread per queue",
    );
    // Another program attached: refused, never replaced.
    let ifr = tb.if_rx.clone();
    let link = linecap::stats::kernel::in_netns(&tb.ns_rx, move || {
        use std::os::fd::AsRawFd;
        let map = bpf::map_create(bpf::MAP_TYPE_XSKMAP, 4, 4, 1, "other").unwrap();
        let p = bpf::prog_load(
            bpf::PROG_TYPE_XDP,
            bpf::ATTACH_XDP,
            &to_bytes(&redirect_program(Match { port: 1, ipv4_dst: None }, map.as_raw_fd(), XDP_PASS, None)),
            "other",
        )
        .unwrap();
        bpf::xdp_link(&p, linecap::sys::packet::if_index(&ifr).unwrap(), 1 << 2).unwrap()
    })
    .unwrap();
    assert_fails_with(cap(&["--iface", &tb.if_rx]), "another XDP program is attached");
    // --force never takes a program held by a running process's BPF link.
    assert_fails_with(cap(&["--iface", &tb.if_rx, "--force"]), "never removes");
    drop(link);
    // A program attached the old way (rtnetlink, as `ip link set ... xdp`):
    // refused without --force, replaced with it.
    let ifr = tb.if_rx.clone();
    linecap::stats::kernel::in_netns(&tb.ns_rx, move || {
        use std::os::fd::AsRawFd;
        let map = bpf::map_create(bpf::MAP_TYPE_XSKMAP, 4, 4, 1, "other").unwrap();
        let p = bpf::prog_load(
            bpf::PROG_TYPE_XDP,
            bpf::ATTACH_XDP,
            &to_bytes(&redirect_program(Match { port: 1, ipv4_dst: None }, map.as_raw_fd(), XDP_PASS, None)),
            "other",
        )
        .unwrap();
        // The program stays attached after its fd closes.
        bpf::xdp_netlink_set(linecap::sys::packet::if_index(&ifr).unwrap(), p.as_raw_fd(), 1 << 2).unwrap();
    })
    .unwrap();
    assert!(has_xdp(&tb));
    assert_fails_with(cap(&["--iface", &tb.if_rx]), "pass --force");
    let o = cap(&["--iface", &tb.if_rx, "--force"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && e.contains("--force: removed the XDP program"), "{e}");
    assert!(!has_xdp(&tb), "ours detached at exit; the replaced one is not restored");
    // SIGKILL: the link dies with the process, the interface passes traffic
    // again. Named, so the counters file the killed capture leaves behind
    // is this test's to remove.
    let name = unique("xdp-killed");
    let mut child = std::process::Command::new(exe())
        .args([
            "capture",
            "--netns",
            &tb.ns_rx,
            "--backend",
            "xdp",
            "--iface",
            &tb.if_rx,
            "--duration",
            "30s",
            "--quiet",
            "--name",
            &name,
        ])
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if has_xdp(&tb) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(has_xdp(&tb));
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(linecap::stats::stats_path(&name));
    for _ in 0..100 {
        if !has_xdp(&tb) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!has_xdp(&tb), "program detached after SIGKILL");
    let to = rx_to();
    let cap = capture(Some(&tb.ns_rx), &["--listen", &to]);
    let sent = send(Some(&tb.ns_tx), &["--to", &to, "--count", "1000", "--rate", "20kpps"]);
    assert!(stop(cap).received > 0 && sent.packets == 1000, "traffic passes again");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn generator_program_writes_verifiable_seq_payloads() {
    use linecap::bpf::generator::GenState;
    use std::os::fd::AsRawFd;
    let map = bpf::map_create(bpf::MAP_TYPE_ARRAY, 4, GenState::SIZE as u32, 1, "lc_gen_state").unwrap();
    let set = |st: GenState| bpf::map_update_bytes(&map, &0u32.to_ne_bytes(), &st.to_bytes()).unwrap();
    let get = || {
        let mut b = [0u8; GenState::SIZE];
        bpf::map_lookup_bytes(&map, &0u32.to_ne_bytes(), &mut b).unwrap();
        GenState::from_bytes(&b)
    };
    for payload in [8usize, 272, 13] {
        let frame = udp4([198, 18, 0, 2], 9000);
        let mut f = frame[..42].to_vec();
        f.resize(42 + payload, 0xee);
        let prog = linecap::bpf::generator::seq_program(map.as_raw_fd(), 42, payload);
        let p = bpf::prog_load(bpf::PROG_TYPE_XDP, bpf::ATTACH_XDP, &to_bytes(&prog), "lc_gen")
            .unwrap_or_else(|e| panic!("{e}"));
        // Unpaced, limit 3: three frames numbered 0, 1, 2, then drops.
        set(GenState { limit: 3, ..GenState::default() });
        for want in 0..4u64 {
            let (action, out) = bpf::xdp_test_run_out(&p, &f).unwrap();
            if want == 3 {
                assert_eq!(action as i32, XDP_DROP, "past the limit");
                break;
            }
            assert_eq!(action as i32, XDP_TX);
            // Byte for byte what the user-space generator writes (payloads
            // under 16 bytes carry too little pattern for `check`).
            let mut expected = vec![0u8; payload];
            linecap::format::seq::fill(&mut expected, want);
            assert_eq!(&out[42..42 + payload], &expected[..], "payload {payload}, seq {want}");
        }
        let st = get();
        assert_eq!(st.next_seq, 3);
        assert_eq!((st.first_ns, st.last_ns), (0, 0), "unpaced runs read no clock");
        // Paced: not yet due drops and takes no number; due long ago sends
        // once, then the next frame (a period of ~an hour later) is not due.
        let hour_fp = 3600u64 * 1_000_000_000 * 256;
        set(GenState { limit: 10, due_fp: u64::MAX / 2, period_fp: hour_fp, ..GenState::default() });
        assert_eq!(bpf::xdp_test_run(&p, &f).unwrap() as i32, XDP_DROP, "early");
        assert_eq!(get().next_seq, 0);
        set(GenState { limit: 10, due_fp: 0, period_fp: hour_fp, max_lag_fp: 256, ..GenState::default() });
        assert_eq!(bpf::xdp_test_run(&p, &f).unwrap() as i32, XDP_TX, "due");
        assert_eq!(bpf::xdp_test_run(&p, &f).unwrap() as i32, XDP_DROP, "next one not due yet");
        let st = get();
        assert_eq!(st.next_seq, 1);
        assert!(st.first_ns > 0 && st.last_ns == st.first_ns, "{st:?}");
        // Late by far more than max_lag: the schedule slipped to now.
        let now_fp = linecap::sys::monotonic_ns() << 8;
        assert!(st.due_fp > now_fp && st.due_fp <= now_fp + hour_fp, "{st:?}");
    }
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (BPF): run the tests as root")]
fn generator_program_sends_its_flows_share_of_a_dealt_stream() {
    use linecap::bpf::generator::{Deal, GenState, dealt_seq_program};
    use linecap::send::flows::flow_of;
    use std::os::fd::AsRawFd;
    let map = bpf::map_create(bpf::MAP_TYPE_ARRAY, 4, GenState::SIZE as u32, 1, "lc_gen_state").unwrap();
    let mut f = udp4([198, 18, 0, 2], 9000)[..42].to_vec();
    f.resize(42 + 64, 0);
    for (flows, run) in [(2u32, 1u32), (3, 4)] {
        for flow in 0..flows {
            let prog = dealt_seq_program(map.as_raw_fd(), 42, 64, Deal { flows, flow, run });
            let p = bpf::prog_load(bpf::PROG_TYPE_XDP, bpf::ATTACH_XDP, &to_bytes(&prog), "lc_gen").unwrap();
            bpf::map_update_bytes(
                &map,
                &0u32.to_ne_bytes(),
                &GenState { limit: 20, ..GenState::default() }.to_bytes(),
            )
            .unwrap();
            // The flow's frames carry exactly its numbers, in order.
            let want: Vec<u64> = (0..200)
                .filter(|&k| flow_of(k, flows as usize, u64::from(run)) == flow as usize)
                .take(20)
                .collect();
            let got: Vec<u64> = (0..20)
                .map(|_| {
                    let (_, out) = bpf::xdp_test_run_out(&p, &f).unwrap();
                    u64::from_le_bytes(out[42..50].try_into().unwrap())
                })
                .collect();
            assert_eq!(got, want, "flows {flows}, flow {flow}, run {run}");
        }
    }
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn xdp_live_generator_is_verified_and_accounted() {
    let tb = xdp_testbed();
    let (sent, rep, before, after) = verified_run(
        &tb,
        &["--backend", "xdp-live", "--iface", &tb.if_tx, "--count", "20000", "--rate", "50kpps"],
    );
    assert_eq!((sent.backend.name(), sent.packets), ("xdp-live", 20000));
    // Bursts may overflow veth's ring: every such frame is counted there.
    assert_books(&sent, &rep, &before.drops_from(&after, &rep, Some(&sent)));
    let v = rep.verify.unwrap();
    assert_eq!((v.valid, v.corrupt, v.malformed), (rep.received, 0, 0), "the kernel-written payloads verify");
    assert!(rep.received > 0);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn af_xdp_sender_is_verified_and_accounted() {
    let tb = xdp_testbed();
    let (sent, rep, before, after) = verified_run(
        &tb,
        &["--backend", "xdp", "--iface", &tb.if_tx, "--count", "30000", "--rate", "100kpps"],
    );
    assert_eq!((sent.backend.name(), sent.packets), ("xdp", 30000), "every posted frame completed");
    assert_books(&sent, &rep, &before.drops(&after, &rep));
    let v = rep.verify.unwrap();
    assert_eq!((v.valid, v.corrupt, v.malformed, v.duplicates), (rep.received, 0, 0, 0));
    assert_eq!(before.sender_frames(&after), sent.packets);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn af_xdp_without_privilege_or_native_support_says_so() {
    let tb = xdp_testbed();
    // Without privileges: one line naming the capability.
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(exe())
        .args(["capture", "--backend", "xdp", "--iface", "lo", "--duration", "1s"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("CAP_NET_ADMIN"), "{e}");
    // Loopback has no native XDP: generic mode, said once.
    let o = linecap(&[
        "capture",
        "--netns",
        &tb.ns_rx,
        "--backend",
        "xdp",
        "--iface",
        "lo",
        "--duration",
        "500ms",
        "--json",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("no native XDP; using generic XDP"), "{e}");
    let rep: linecap::capture::CaptureReport = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep.mode, "copy, generic");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn busy_polling_receiver_drives_veth_napi_and_closes_the_books() {
    use linecap::orchestrate::{TestbedCounters, prime_busy_poll};
    use linecap::testbed::{Placement, Testbed, TestbedOptions};
    // The busy-poll placement defers veth's softirq work to the busy poller
    // (10 ms at a time): without the receiver polling, veth moves a few
    // batches per 10 ms, and most of the stream is lost at its ring.
    let mut o = TestbedOptions::new(&unique("b"));
    o.placement = Placement::BusyPoll;
    let tb = Testbed::up(&o).unwrap();
    let to = rx_to();
    // The same stream into the same receiver, without and with busy
    // polling: the difference is the feature. Without, veth's ring is
    // moved when the 10 ms flush timer fires, about 25 kpps whatever the
    // load (measured quiet at 200 kpps: 25,919 of 200,000); with, the
    // receiver moves it. At 50 kpps the busy poller needs little CPU, so
    // it keeps its lead on a loaded machine (at 200 kpps, the suite's
    // other tests and two CPU hogs once left it under 10,000 ahead).
    // Relative, so a loaded machine that slows both cannot fail it; a
    // busy poll that polls nothing would.
    let mut delivered = Vec::new();
    for busy in [false, true] {
        let before = TestbedCounters::read(&tb).unwrap();
        let mut args = vec!["--listen", &to, "--backend", "xdp", "--iface", &tb.if_rx, "--verify", "seq"];
        if busy {
            args.extend(["--busy-poll", "20"]);
        }
        let cap = capture(Some(&tb.ns_rx), &args);
        if busy {
            prime_busy_poll(&exe(), &tb, 9000).unwrap();
        }
        let sent = send(
            Some(&tb.ns_tx),
            &[
                "--backend",
                "xdp-live",
                "--iface",
                &tb.if_tx,
                "--to",
                &to,
                "--count",
                "200000",
                "--rate",
                "50kpps",
            ],
        );
        let rep = stop(cap);
        let after = TestbedCounters::read(&tb).unwrap();
        assert_eq!(sent.packets, 200_000);
        assert_books(&sent, &rep, &before.drops_from(&after, &rep, Some(&sent)));
        let v = rep.verify.unwrap();
        assert_eq!((v.valid, v.corrupt, v.malformed), (rep.received, 0, 0));
        delivered.push(rep.received);
    }
    eprintln!("delivered of 200000: {} without busy polling, {} with", delivered[0], delivered[1]);
    // The contrast needs the deferral: veth's ring moved by the flush timer
    // alone, about half of this stream. The suite's other captures beside
    // two CPU hogs have run veth's NAPI through other paths instead (183 356
    // and 186 299 of 200 000 delivered without busy polling, 187 514 and
    // 186 572 with): there is nothing to compare then, and the run says so.
    if delivered[0] > 150_000 {
        return skip_or_fail(&format!(
            "busy polling's lead not measurable: {} of 200000 delivered without it (the deferral did not hold)",
            delivered[0]
        ));
    }
    assert!(
        delivered[1] >= delivered[0] + 10_000,
        "busy polling moved the frames: {} of 200000 delivered with it, {} without",
        delivered[1],
        delivered[0]
    );
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn one_capture_reads_every_queue_with_a_socket_each() {
    if linecap::sys::online_cpus() < 2 {
        // Where the run promised a full machine (CI), this fails instead.
        return skip_or_fail("one_capture_reads_every_queue_with_a_socket_each needs 2 CPUs");
    }
    use linecap::orchestrate::TestbedCounters;
    use linecap::testbed::{Testbed, TestbedOptions};
    // veth receives an XDP frame on the queue of the CPU that sent it: a
    // generator on each CPU feeds each queue its own flow.
    let mut o = TestbedOptions::new(&unique("m"));
    o.queues = 2;
    let tb = Testbed::up(&o).unwrap();
    let to = rx_to();
    let before = TestbedCounters::read(&tb).unwrap();
    let cap = capture(
        Some(&tb.ns_rx),
        &["--listen", &to, "--backend", "xdp", "--iface", &tb.if_rx, "--queues", "2", "--verify", "seq"],
    );
    let gens: Vec<_> = [("0", "40001"), ("1", "40011")]
        .into_iter()
        .map(|(cpu, port)| {
            let (ns, to, ifname) = (tb.ns_tx.clone(), to.clone(), tb.if_tx.clone());
            std::thread::spawn(move || {
                send(
                    Some(&ns),
                    &[
                        "--backend",
                        "xdp-live",
                        "--iface",
                        &ifname,
                        "--to",
                        &to,
                        "--count",
                        "50000",
                        "--rate",
                        "50kpps",
                        "--cpus",
                        cpu,
                        "--src-port",
                        port,
                    ],
                )
            })
        })
        .collect();
    let mut sent: Vec<_> = gens.into_iter().map(|g| g.join().unwrap()).collect();
    let rep = stop(cap);
    let after = TestbedCounters::read(&tb).unwrap();
    assert_eq!((sent[0].packets, sent[1].packets), (50_000, 50_000));
    let mut total = sent.remove(0);
    total.packets += sent[0].packets;
    assert_books(&total, &rep, &before.drops_from(&after, &rep, Some(&total)));
    let v = rep.verify.unwrap();
    // Two flows, both numbered from 0: one merged flow would show duplicates.
    assert_eq!((v.valid, v.corrupt, v.malformed, v.duplicates), (rep.received, 0, 0, 0), "{v:?}");
    // Frames of the second queue reach a capture only through its socket
    // there: with one queue captured they would go on to the kernel.
    assert!(rep.received > 50_000, "both queues delivered: {} of 100000", rep.received);
    assert_eq!(rep.threads, 2);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn xdp_live_stops_on_sigint_and_reports_what_it_sent() {
    use linecap::orchestrate::TestbedCounters;
    let tb = xdp_testbed();
    let to = rx_to();
    let before = TestbedCounters::read(&tb).unwrap();
    let cap = capture(Some(&tb.ns_rx), &["--listen", &to, "--verify", "seq"]);
    // A long paced run: the kernel's loop is inside one BPF_PROG_RUN call
    // when the signal comes, and must end it (EINTR), not finish it.
    let child = std::process::Command::new(exe())
        .args([
            "send",
            "--netns",
            &tb.ns_tx,
            "--json",
            "--backend",
            "xdp-live",
            "--iface",
            &tb.if_tx,
            "--to",
            &to,
            "--rate",
            "20kpps",
            "--duration",
            "60s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    linecap::sys::send_signal(child.id(), libc::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent: linecap::send::socket::SendReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(sent.packets > 0 && sent.packets < 1_200_000, "stopped early: {}", sent.packets);
    let rep = stop(cap);
    let after = TestbedCounters::read(&tb).unwrap();
    // The count the generator reports is what went out: the books close on it.
    assert_books(&sent, &rep, &before.drops_from(&after, &rep, Some(&sent)));
}

/// The receiving veth end's MAC address.
fn rx_mac(tb: &linecap::testbed::Testbed) -> String {
    let out = std::process::Command::new("ip")
        .args(["-n", &tb.ns_rx, "-br", "link", "show", "dev", &tb.if_rx])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(2).expect("ip -br link: NAME STATE MAC").to_string()
}

/// Frames of the flow in every layout the parsed lane exists for, each
/// with its UDP payload length: the fixed layout (also empty), IPv4
/// options, bytes after the datagram (with a UDP length to the IP
/// packet's end and to the frame's), a UDP length short of the IP
/// payload, IPv6. Payloads are numbered so that every frame is distinct.
fn every_layout(n: u16) -> Vec<(Vec<u8>, usize)> {
    let v4 = |payload: &[u8]| {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2; 6], [2; 6])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(4000, 9000)
            .write(&mut f, payload)
            .unwrap();
        f
    };
    let mut out = Vec::new();
    for i in 0..n {
        let tag = i.to_be_bytes();
        let body = [&tag[..], &[7u8; 270]].concat();
        out.push((v4(&body), body.len()));
        out.push((v4(&[]), 0));
        out.push((with_ip_options(v4(&body[..100])), 100));
        let padded = [&v4(&body[..50])[..], &[0u8; 6]].concat();
        out.push((padded.clone(), 50));
        // The UDP length runs to the frame's end, past the IP packet's.
        let mut udp_past_ip = padded;
        udp_past_ip[38..40].copy_from_slice(&(8u16 + 56).to_be_bytes());
        out.push((udp_past_ip, 50));
        let mut short_udp = v4(&body[..60]);
        short_udp[38..40].copy_from_slice(&(8u16 + 40).to_be_bytes());
        out.push((short_udp, 40));
        out.push((udp6(&body[..64]), 64));
    }
    out
}

/// Ethernet II, IPv4 without options, UDP, nothing after the datagram:
/// the layout the program vouches for (`linecap::packet::FIXED_HEADER_LEN`).
fn is_fixed_layout(f: &[u8]) -> bool {
    let be16 = |at: usize| f.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
    f.len() >= 42
        && be16(12) == Some(0x0800)
        && f[14] == 0x45
        && f[23] == 17
        && be16(16) == Some(f.len() - 14)
        && be16(38) == Some(f.len() - 34)
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn af_xdp_capture_takes_every_layout_of_the_flow_whole() {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
    let tb = xdp_testbed();
    let dir = TempDir::new("xdplanes");
    let (sent_file, got_file) = (dir.0.join("sent.pcap"), dir.0.join("got.pcap"));
    let frames = every_layout(200);
    let mut w = PcapWriter::with_header(
        std::fs::File::create(&sent_file).unwrap(),
        PcapHeader { datalink: pcap_file::DataLink::ETHERNET, ..PcapHeader::default() },
    )
    .unwrap();
    for (i, (f, _)) in frames.iter().enumerate() {
        let at = std::time::Duration::from_micros(i as u64);
        w.write_packet(&PcapPacket::new(at, f.len() as u32, f)).unwrap();
    }
    drop(w);
    let name = unique("xdplanes");
    let cap = capture_named(
        Some(&tb.ns_rx),
        &name,
        &[
            "--backend",
            "xdp",
            "--iface",
            &tb.if_rx,
            "--listen",
            &rx_to(),
            "--write",
            got_file.to_str().unwrap(),
        ],
    );
    let (ns, iface, mac) = (tb.ns_tx.as_str(), tb.if_tx.as_str(), rx_mac(&tb));
    let path = sent_file.to_str().unwrap();
    let r = replay(&[
        "--netns",
        ns,
        "--backend",
        "afpacket",
        "--iface",
        iface,
        "--rate",
        "20kpps",
        "--dst-mac",
        &mac,
        path,
    ]);
    assert_eq!((r.sent.packets, r.unsendable), (frames.len() as u64, 0));
    // Every fixed-layout frame was lent to the pcap writer (it encoded the
    // record from the UMEM); the others were copied on the receive thread.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while counter(&name, "pcap.queue.0", "packets") < frames.len() as u64
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let fixed = frames.iter().filter(|(f, _)| is_fixed_layout(f)).count() as u64;
    assert!(0 < fixed && fixed < frames.len() as u64, "both lanes are exercised");
    assert_eq!(counter(&name, "pcap.queue.0", "lent"), fixed);
    let rep = stop(cap);
    let payload_bytes: usize = frames.iter().map(|(_, n)| n).sum();
    assert_eq!((rep.received, rep.total_drops()), (frames.len() as u64, 0), "{rep:#?}");
    assert_eq!(rep.bytes, payload_bytes as u64, "each payload's length, whichever lane it took");
    // The frames written are the frames sent (the lanes may interleave them
    // differently), with the destination MAC the replay wrote.
    let mut r = PcapReader::new(std::fs::File::open(&got_file).unwrap()).unwrap();
    let mut got = Vec::new();
    while let Some(p) = r.next_packet() {
        got.push(p.unwrap().data[6..].to_vec());
    }
    let mut want: Vec<Vec<u8>> = frames.iter().map(|(f, _)| f[6..].to_vec()).collect();
    got.sort();
    want.sort();
    assert!(
        got == want,
        "{} frames written, {} sent; first differing: {:?}",
        got.len(),
        want.len(),
        got.iter().zip(&want).find(|(a, b)| a != b)
    );
}
