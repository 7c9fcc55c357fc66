//! Root tests on a real testbed: namespaces, veth, threaded NAPI, and the
//! books closed against the sender's own count and veth's drop counters.

mod common;

use common::*;
use linecap::capture::CaptureReport;
use linecap::capture::DropPlace;
use linecap::orchestrate::TestbedCounters;
use linecap::testbed::{Placement, Testbed, TestbedOptions, netns_exists};

fn testbed(placement: Placement) -> Testbed {
    let mut o = TestbedOptions::new(&unique("t"));
    o.placement = placement;
    Testbed::up(&o).expect("testbed up")
}

/// Runs one capture/send pair through the testbed and checks the books.
/// Returns the capture report and the network's drops by place.
fn run_through(
    tb: &Testbed,
    cap_args: &[&str],
    send_args: &[&str],
) -> (CaptureReport, Vec<(DropPlace, u64)>) {
    let listen = format!("{}:9000", linecap::testbed::RX_ADDR);
    let mut c = vec!["--listen", listen.as_str(), "--verify", "seq"];
    c.extend_from_slice(cap_args);
    let mut s = vec!["--to", listen.as_str()];
    s.extend_from_slice(send_args);
    let before = TestbedCounters::read(tb).unwrap();
    let cap = capture(Some(&tb.ns_rx), &c);
    let sent = send(Some(&tb.ns_tx), &s);
    let rep = stop(cap);
    let after = TestbedCounters::read(tb).unwrap();
    assert!(sent.packets > 0);
    let network = before.drops(&after, &rep);
    assert_books(&sent, &rep, &network);
    let v = rep.verify.unwrap();
    assert_eq!((v.corrupt, v.malformed, v.duplicates), (0, 0, 0));
    // One flow numbered from 0: every lost packet is a gap in the sequence
    // or after its highest number; this checks our receive count against
    // the sequence numbers, independently of the kernel's counters.
    if sent.threads == 1 {
        assert_eq!(v.missing + (sent.packets - 1 - v.highest_seq), sent.packets - rep.received, "{v:?}");
    }
    // Every datagram the sender's kernel took reached the veth: it crossed
    // it or the receiving ring refused it.
    assert_eq!(before.sender_frames(&after), sent.packets);
    (rep, network)
}

fn drop_of(network: &[(DropPlace, u64)], key: DropPlace) -> u64 {
    network.iter().find(|(k, _)| *k == key).map_or(0, |(_, v)| *v)
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn napi_testbed_closes_the_books() {
    let tb = testbed(Placement::Napi);
    assert!(tb.napi_pid.is_some(), "threaded NAPI kthread pinned");
    run_through(&tb, &[], &["--count", "50000", "--rate", "100kpps"]);
    run_through(&tb, &["--mode", "recv", "--no-gro"], &["--count", "20000", "--rate", "50kpps"]);
    // Unpaced into a small buffer: the socket overflows. Without GRO the
    // socket's own drop counter and the interface-derived count agree exactly.
    let (rep, net) =
        run_through(&tb, &["--rcvbuf", "64k", "--no-gro"], &["--duration", "1s", "--rate", "max"]);
    assert_eq!(
        rep.drops[&DropPlace::SocketOverflow],
        drop_of(&net, DropPlace::SocketOverflow),
        "{rep:#?} {net:?}"
    );
    // With GRO a dropped super-packet counts once at the socket; the
    // interface-derived count (datagrams) is at least that.
    let (rep, net) = run_through(&tb, &["--rcvbuf", "64k"], &["--duration", "1s", "--rate", "max"]);
    assert!(
        rep.drops[&DropPlace::SocketOverflow] <= drop_of(&net, DropPlace::SocketOverflow),
        "{rep:#?} {net:?}"
    );
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn sender_placement_and_reuseport_threads() {
    let tb = testbed(Placement::Sender);
    assert!(tb.napi_pid.is_none());
    run_through(&tb, &["--threads", "2"], &["--count", "40000", "--rate", "80kpps", "--threads", "4"]);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn testbed_is_removed_on_drop() {
    let tb = testbed(Placement::Napi);
    let (a, b) = (tb.ns_tx.clone(), tb.ns_rx.clone());
    assert!(netns_exists(&a) && netns_exists(&b));
    // The same name cannot be taken twice.
    let mut o = TestbedOptions::new(&tb.name);
    o.placement = Placement::Sender;
    let err = Testbed::up(&o).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    drop(tb);
    assert!(!netns_exists(&a) && !netns_exists(&b));
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn demo_succeeds_and_says_where_it_ran() {
    // As root the default is the reference stream from the kernel-side
    // generator into a busy-polling AF_XDP receiver.
    let out = linecap(&["demo", "--duration", "1s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("every packet accounted for"), "{text}");
    assert!(text.contains("sender: the kernel (xdp-live)") && text.contains("busy-poll placement"), "{text}");
    // The user-space sender on the realistic NAPI placement.
    let out = linecap(&["demo", "--duration", "1s", "--sender", "socket"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("every packet accounted for"), "{text}");
    assert!(text.contains("sender: a socket") && text.contains("realistic placement"), "{text}");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn a_short_soak_samples_the_capture_and_closes_its_books() {
    let dir = TempDir::new("soak");
    let out_dir = dir.0.to_str().unwrap();
    let out =
        linecap(&["soak", "--duration", "2s", "--rate", "20kpps", "--interval", "500ms", "--out", out_dir]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}\n{}", String::from_utf8_lossy(&out.stdout));
    // Every sample names the loss on both sides of the capture.
    assert!(log.contains("(capture) +") && log.contains("(veth), verifier missing"), "{log}");
    let soak: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("soak.json")).unwrap()).unwrap();
    let id = &soak["identity"];
    assert_eq!(id["unaccounted"], 0, "{soak:#}");
    assert!(id["checks"].as_array().unwrap().iter().all(|c| c["holds"] == true), "{soak:#}");
    // 2 s at 20 kpps: the sender stops at the duration, a little short of it.
    let offered = id["offered"].as_u64().unwrap();
    assert!((20000..=40000).contains(&offered), "{soak:#}");
    let samples = soak["samples"].as_array().unwrap();
    assert!(samples.len() >= 4, "a sample every 500 ms: {soak:#}");
    assert!(samples.iter().all(|s| s["rss_kib"].as_u64() > Some(0) && s["threads"].as_u64() > Some(0)));
    let csv = std::fs::read_to_string(dir.0.join("soak.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("t_s,rss_kib,fds,threads,delivered,kernel_drops,veth_drops,missing"));
    assert_eq!(csv.lines().count(), samples.len() + 1);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn multicast_join_receives_the_group() {
    let tb = testbed(Placement::Napi);
    let group = "239.255.0.1:9000";
    let before = TestbedCounters::read(&tb).unwrap();
    let cap = capture(Some(&tb.ns_rx), &["--listen", group, "--join", "239.255.0.1", "--verify", "seq"]);
    let sent = send(Some(&tb.ns_tx), &["--to", group, "--count", "5000", "--rate", "50kpps"]);
    let rep = stop(cap);
    let after = TestbedCounters::read(&tb).unwrap();
    assert!(rep.packets > 0, "multicast reached the capture: {rep:#?}");
    assert_books(&sent, &rep, &before.drops(&after, &rep));
    assert_eq!(rep.verify.unwrap().corrupt, 0);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn demo_with_the_kernel_generator_closes_the_books() {
    let out = linecap(&["demo", "--duration", "1s", "--xdp-live"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("sender: the kernel (xdp-live)"), "{text}");
    assert!(text.contains("receiver: AF_XDP"), "{text}");
    assert!(text.contains("every packet accounted for"), "{text}");
    // The socket receiver on the same stream: books close as well.
    let out = linecap(&["demo", "--duration", "1s", "--xdp-live", "--receiver", "socket"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("receiver: socket"), "{text}");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn busy_polling_socket_drives_veth_napi() {
    // On the busy-poll placement veth defers its work to a busy poller; a
    // socket learns its NAPI id from its first datagram and then polls.
    // The same stream without and with --busy-poll: the difference is the
    // feature (measured quiet: 50,683 and 199,253 of 200,000), relative so
    // a loaded machine that slows both cannot fail it.
    let tb = testbed(Placement::BusyPoll);
    let (without, _) = run_through(&tb, &[], &["--count", "200000", "--rate", "100kpps"]);
    let (with, _) = run_through(&tb, &["--busy-poll", "20"], &["--count", "200000", "--rate", "100kpps"]);
    assert!(
        with.received >= without.received + 30_000,
        "busy polling moved the datagrams: {} of 200000 with it, {} without",
        with.received,
        without.received
    );
    // The report shows busy polling's own figures only where it ran.
    assert!(with.kernel.contains_key("busy_poll_gap_us"), "{:?}", with.kernel);
    assert!(!without.kernel.contains_key("busy_poll_gap_us"), "{:?}", without.kernel);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn bench_searches_and_compares_at_one_rate_with_books_closed() {
    let dir = TempDir::new("bench");
    let out = dir.0.to_str().unwrap();
    // Runs the bench with these options, then reads its results.json.
    let bench_rows = |rows: &str, opts: &[&str]| -> serde_json::Value {
        let mut args = vec!["bench", "--backends", rows, "--duration", "300ms"];
        args.extend_from_slice(opts);
        args.extend(["--sender-rounds", "0", "--out", out]);
        let o = linecap(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("results.json")).unwrap()).unwrap()
    };
    let bench = |opts: &[&str]| bench_rows("recvmmsg+gro,xdp+busypoll", opts);
    let r = bench(&["--steps", "1", "--repeats", "3"]);
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        // The unpaced point, then one step measured three times.
        let points = row["points"].as_array().unwrap();
        assert!(points.len() == 1 || points.len() == 4, "{row}");
        for p in points {
            assert_eq!(p["identity"]["unaccounted"], 0, "books closed: {p}");
        }
    }
    assert!(std::fs::read_to_string(dir.0.join("results.md")).unwrap().contains("xdp+busypoll"));
    // Every row at one rate, in rounds.
    let r = bench(&["--at", "50kpps", "--rounds", "2"]);
    let fixed = r["fixed"].as_array().unwrap();
    assert_eq!(fixed.len(), 4, "2 rows x 2 rounds");
    for p in fixed {
        assert_eq!(p["identity"]["unaccounted"], 0, "{p}");
        assert!(p["sent"].as_u64().unwrap() > 0);
    }
    // A row and its baseline: the ratio table and plot, books closed for both.
    let r = bench_rows("plain-recvmmsg,default", &["--at", "50kpps", "--rounds", "2"]);
    for p in r["fixed"].as_array().unwrap() {
        assert_eq!(p["identity"]["unaccounted"], 0, "{p}");
    }
    let md = std::fs::read_to_string(dir.0.join("results.md")).unwrap();
    assert!(
        md.contains("as a ratio to the plainest receiver")
            && md.contains("| default | 272 B | plain-recvmmsg |"),
        "{md}"
    );
    let svg = std::fs::read_to_string(dir.0.join("plot.svg")).unwrap();
    assert!(svg.contains("default 272 B vs plain-recvmmsg"), "{svg}");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn doctor_judges_a_namespaces_interfaces() {
    // The namespace's own sysfs must be mounted to see its interfaces'
    // settings (after setns, /sys still shows the old namespace's).
    let tb = testbed(Placement::BusyPoll);
    let o = linecap(&["doctor", "no-such-capture-x", "--netns", &tb.ns_rx]);
    assert_eq!(o.status.code(), Some(1), "a named capture that does not exist is an error");
    let o = linecap(&["doctor", "--netns", &tb.ns_rx, "--interval", "0s"]);
    let text = String::from_utf8_lossy(&o.stdout);
    // Unnamed, doctor judges every running capture: another test's may be
    // losing packets right now (status 3); the machine's part is what this
    // test is about.
    assert!(matches!(o.status.code(), Some(0 | 3)), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains(&format!("interface {}: interrupts deferred to busy pollers", tb.if_rx)), "{text}");
    // The host's own /sys is untouched.
    assert!(!std::path::Path::new(&format!("/sys/class/net/{}", tb.if_rx)).exists());
}
