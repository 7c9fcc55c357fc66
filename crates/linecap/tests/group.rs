//! One stream, several receive threads, one block sequence: `send --flows 2`
//! spreads a stream over two source ports, `capture --threads 2 --spread
//! src-port` gives each flow its own socket and thread, and both threads
//! fill the same blocks.

mod common;

use common::*;

fn group_args<'a>(addr: &'a str, dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--listen", addr, "--blocks", dir, "--slots", "256", "--slot-bytes", "192"];
    v.extend_from_slice(extra);
    v
}

/// 20 000 packets of 200 bytes: 4 MB, which the capture's socket buffer
/// (32 MiB asked) holds whole even if its thread is descheduled, so no
/// run here loses a packet in the kernel.
const COUNT: &str = "20000";

/// An even source port whose next one is free too, for `send --flows 2`
/// (tests run in parallel: each pair of flows gets its own ports).
fn free_port_pair() -> String {
    loop {
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let base = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        let a = std::net::UdpSocket::bind(("0.0.0.0", base));
        let b = std::net::UdpSocket::bind(("0.0.0.0", base + 1));
        if a.is_ok() && b.is_ok() {
            return base.to_string();
        }
    }
}

#[test]
fn two_threads_fill_the_blocks_one_thread_fills() {
    let (one, two) = (TempDir::new("grp1"), TempDir::new("grp2"));
    let send_args = |addr: &str| {
        let flows = ["--size", "200", "--flows", "2", "--src-port", &free_port_pair()].map(String::from);
        ["--to", addr, "--count", COUNT, "--rate", "50kpps"]
            .map(String::from)
            .into_iter()
            .chain(flows)
            .collect::<Vec<_>>()
    };
    let addr = free_loopback();
    let single = capture(None, &group_args(&addr, one.0.to_str().unwrap(), &[]));
    let sent1 = send(None, &send_args(&addr).iter().map(String::as_str).collect::<Vec<_>>());
    let r1 = stop(single);
    let addr = free_loopback();
    let name = unique("grp");
    let grouped = capture_named(
        None,
        &name,
        &group_args(&addr, two.0.to_str().unwrap(), &["--threads", "2", "--spread", "src-port"]),
    );
    let sent2 = send(None, &send_args(&addr).iter().map(String::as_str).collect::<Vec<_>>());
    // Each thread got its flow: the even numbers on one, the odd on the
    // other (read live, once both have taken what the sockets hold).
    let placed = || (counter(&name, "blocks.0", "placed"), counter(&name, "blocks.1", "placed"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while placed().0 + placed().1 < sent2.packets && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (p0, p1) = placed();
    let r2 = stop(grouped);
    assert_books(&sent1, &r1, &[]);
    assert_books(&sent2, &r2, &[]);
    assert_eq!((sent1.packets, sent2.packets), (20_000, 20_000));
    assert_eq!((p0, p1), (10_000, 10_000), "each flow reached its own thread");
    let (b1, b2) = (r1.blocks.unwrap(), r2.blocks.unwrap());
    assert_eq!(b2.assembly.placed, 20_000, "{b2:?}");
    assert_eq!((b2.assembly.duplicates, b2.assembly.late, b2.group_forced, b2.members_left), (0, 0, 0, 0));
    assert_eq!((b1.written, b2.written), (b1.assembly.blocks, b2.assembly.blocks));
    // One folder, no per-thread ones, and the same bytes as one thread's.
    let (f1, f2) = (read_blocks(&one.0), read_blocks(&two.0));
    assert_eq!(f2.len() as u64, b2.written);
    assert_eq!(f1.len(), f2.len());
    for ((s1, d1), (s2, d2)) in f1.iter().zip(&f2) {
        assert_eq!(s1, s2, "sidecars differ");
        assert!(d1 == d2, "block {} differs", s1.first_seq);
    }
    assert!(std::fs::read_dir(&two.0).unwrap().flatten().all(|e| e.path().is_file()));
}

/// Flow 1 is filtered out, so thread 1 receives nothing: the policy decides.
fn silent_member(
    policy: &str,
) -> (linecap::capture::CaptureReport, u64, u64, Vec<linecap::sink::blocks::Sidecar>) {
    let dir = TempDir::new("grps");
    let addr = free_loopback();
    let name = unique("grs");
    let port = addr.rsplit(':').next().unwrap().to_string();
    let base = free_port_pair();
    let filter = format!("udp dst port {port} and src port {base}");
    let cap = capture_named(
        None,
        &name,
        &group_args(
            &addr,
            dir.0.to_str().unwrap(),
            &["--threads", "2", "--spread", "src-port", "--group-policy", policy, "--filter", &filter],
        ),
    );
    let sent = send(
        None,
        &[
            "--to",
            &addr,
            "--count",
            COUNT,
            "--rate",
            "50kpps",
            "--size",
            "200",
            "--flows",
            "2",
            "--src-port",
            &base,
        ],
    );
    // A lossy group's thread 0 takes its whole flow while the capture runs
    // (a lossless one waits for thread 1 until the capture stops).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while policy == "lossy"
        && counter(&name, "blocks.0", "packets") < 10_000
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Live: the forced thread's own count (a waiting thread publishes its
    // waits when it can go on, so those are read from the report).
    let forced = counter(&name, "blocks.1", "group_forced");
    if policy == "lossy" {
        // doctor names the thread that fell behind.
        let o = linecap(&["doctor", &name, "--json", "--interval", "0s"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let f = v.as_array().unwrap().iter().find(|f| f["counter"] == "group_forced");
        let f = f.unwrap_or_else(|| panic!("doctor did not name the slow thread: {v:#}"));
        // (Its count may have grown since: the thread publishes it on its own ticks.)
        assert_eq!(f["stage"].as_str(), Some("blocks.1"), "{f:#}");
        assert!(f["count"].as_u64().unwrap() >= forced, "{f:#}");
        assert!(f["what"].as_str().unwrap().contains("receive thread 1 fell behind"), "{f:#}");
    }
    let rep = cap.stop().expect("capture report");
    assert_eq!(sent.packets, 20_000);
    let waits = rep.blocks.unwrap().group_waits;
    (rep, forced, waits, read_blocks(&dir.0).into_iter().map(|(s, _)| s).collect())
}

#[test]
fn lossy_group_sends_blocks_on_without_a_silent_thread() {
    let (rep, forced, waits, sidecars) = silent_member("lossy");
    let b = rep.blocks.unwrap();
    assert!(forced > 0, "thread 1 was never released by force");
    assert_eq!(waits, 0);
    // Every even number placed by thread 0; every odd slot counted lost.
    assert_eq!(b.assembly.placed, 10_000, "{b:?}");
    assert_eq!(b.assembly.placed + b.assembly.slots_lost, 20_000 - 1, "{b:?}");
    assert_eq!(b.written + b.dropped_blocks, b.assembly.blocks);
    assert_eq!(sidecars.len() as u64, b.written);
    for s in &sidecars {
        let sent = (0..256).filter(|i| s.first_seq + i < 20_000);
        assert!(sent.clone().all(|i| s.is_present(0, i as usize) == (i % 2 == 0)), "block {}", s.first_seq);
    }
}

#[test]
fn lossless_group_waits_for_a_silent_thread_and_counts_it() {
    let (rep, forced, waits, sidecars) = silent_member("lossless");
    let b = rep.blocks.unwrap();
    assert_eq!(forced, 0);
    assert!(waits > 0, "thread 0 never waited");
    // Nothing was lost to the wait: the socket buffer held the stream,
    // and at the end the group let go of the silent thread.
    assert_eq!(b.assembly.placed, 10_000, "{b:?}");
    assert_eq!(b.assembly.placed + b.assembly.slots_lost, 20_000 - 1, "{b:?}");
    // A lossless group waits for its writer too: no block dropped.
    assert_eq!((b.written, b.dropped_blocks), (20_000 / 256 + 1, 0), "{b:?}");
    assert_eq!(sidecars.len() as u64, b.written);
}

#[test]
fn group_refusals_say_what_to_do() {
    let dir = TempDir::new("grpr");
    let addr = free_loopback();
    let d = dir.0.to_str().unwrap();
    let o =
        linecap(&["capture", "--listen", &addr, "--threads", "2", "--blocks", d, "--format", "spead-heap"]);
    assert_fails_with(o, "--threads 1");
    let o = linecap(&["capture", "--listen", &addr, "--group-policy", "lossless"]);
    assert_usage_error(o, "--group-policy");
    let o = linecap(&["capture", "--listen", &addr, "--blocks", d, "--group-policy", "lossless"]);
    assert_usage_error(o, "several receive threads");
    let o = linecap(&["capture", "--listen", &addr, "--threads", "999"]);
    assert_usage_error(o, "CPUs");
    let o = linecap(&["send", "--to", &addr, "--count", "1", "--flows", "2", "--threads", "2"]);
    assert_usage_error(o, "--threads 1");
    let o = linecap(&["send", "--to", &addr, "--count", "1", "--flow-run", "4"]);
    assert_usage_error(o, "--flows");
    let o = linecap(&["capture", "--spread", "src-port", "--backend", "afpacket", "--iface", "lo"]);
    assert_usage_error(o, "--spread");
    let o = linecap(&["capture", "--listen", &addr, "--spread", "by-magic"]);
    assert_usage_error(o, "by-magic");
    // O_DIRECT is for a file: not without --write, not on a pipe.
    let o = linecap(&["capture", "--listen", &addr, "--direct-io"]);
    assert_usage_error(o, "--direct-io");
    let o = linecap(&["capture", "--listen", &addr, "--write", "-", "--direct-io"]);
    assert_usage_error(o, "--direct-io");
    // Writer threads exist only behind a file or a ring.
    let o = linecap(&["capture", "--listen", &addr, "--writer-cpus", "0"]);
    assert_usage_error(o, "--writer-cpus");
    let o = linecap(&["capture", "--listen", &addr, "--write", "/dev/null", "--writer-cpus", "4096"]);
    assert_usage_error(o, "does not exist");
}

#[test]
fn threads_writing_pcap_are_told_how_to_merge_their_files() {
    let dir = TempDir::new("grpm");
    let addr = free_loopback();
    let out = dir.0.join("cap.pcap");
    let child = std::process::Command::new(exe())
        .args(["capture", "--listen", &addr, "--threads", "2", "--spread", "src-port", "--count", "2000"])
        .args(["--duration", "20s", "--write", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let child = Reaped::new(child);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let base = free_port_pair();
    let sent = send(
        None,
        &["--to", &addr, "--count", "2000", "--rate", "20kpps", "--flows", "2", "--src-port", &base],
    );
    let o = child.wait_with_output();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let merged = dir.0.join("merged.pcap");
    assert!(err.contains("mergecap -w"), "{err}");
    let t: Vec<_> = (0..2).map(|t| dir.0.join(format!("cap.t{t}.pcap"))).collect();
    assert!(t.iter().all(|p| p.is_file()), "one file per thread");
    let Ok(m) = std::process::Command::new("mergecap").arg("-w").arg(&merged).args(&t).output() else {
        return skip_or_fail("mergecap is not installed");
    };
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let Ok(c) = std::process::Command::new("capinfos").args(["-c", "-M"]).arg(&merged).output() else {
        return skip_or_fail("capinfos is not installed");
    };
    let text = String::from_utf8_lossy(&c.stdout);
    assert!(text.contains(&format!("{}", sent.packets)), "{text}");
}

/// A testbed (two namespaces joined by veth) with `queues` receive queues.
fn testbed(queues: u32) -> linecap::testbed::Testbed {
    let mut o = linecap::testbed::TestbedOptions::new(&unique("g"));
    o.queues = queues;
    linecap::testbed::Testbed::up(&o).expect("testbed up")
}

/// Sends `send_args` through the testbed into a capture assembling into
/// `dir` with `cap_args`; checks the books and that every present slot
/// holds the generator's bytes; returns the report and each thread's
/// placed packets.
fn through_testbed(
    tb: &linecap::testbed::Testbed,
    dir: &std::path::Path,
    cap_args: &[&str],
    send_args: &[&str],
) -> (linecap::capture::CaptureReport, Vec<u64>) {
    use linecap::orchestrate::TestbedCounters;
    let to = format!("{}:9000", linecap::testbed::RX_ADDR);
    let name = unique("gt");
    let mut c = vec!["--blocks", dir.to_str().unwrap(), "--slots", "256"];
    c.extend_from_slice(&["--slot-bytes", "264"]);
    c.extend_from_slice(cap_args);
    let before = TestbedCounters::read(tb).unwrap();
    let cap = capture_named(Some(&tb.ns_rx), &name, &c);
    let mut s = vec!["--to", to.as_str(), "--count", "40000", "--rate", "40kpps"];
    s.extend_from_slice(send_args);
    let sent = send(Some(&tb.ns_tx), &s);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let placed = || (0..2).map(|t| counter(&name, &format!("blocks.{t}"), "packets")).collect::<Vec<_>>();
    while placed().iter().sum::<u64>() < sent.packets && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let per_thread = (0..2).map(|t| counter(&name, &format!("blocks.{t}"), "placed")).collect();
    let rep = stop(cap);
    let after = TestbedCounters::read(tb).unwrap();
    assert_books(&sent, &rep, &before.drops_from(&after, &rep, Some(&sent)));
    let b = rep.blocks.unwrap();
    assert_eq!(b.assembly.packets, rep.received);
    // Flows that drift apart by more than the group's window (generators
    // descheduled on a busy machine) make the slow thread's packets late:
    // counted, with their slots lost, and the slow thread's forced count.
    assert_eq!((b.assembly.duplicates, b.assembly.malformed), (0, 0), "{b:?}");
    assert_eq!(b.assembly.placed + b.assembly.late, rep.received, "{b:?}");
    assert!(
        b.assembly.late == 0 || b.group_forced > 0,
        "late packets come from a thread released by force: {b:?}"
    );
    assert_eq!(b.assembly.placed + b.assembly.slots_lost, sent.packets, "every slot present or lost: {b:?}");
    if b.assembly.late > 0 {
        eprintln!("note: the flows drifted apart here; {} packets arrived late, counted", b.assembly.late);
    }
    let mut want = vec![0u8; 272];
    let mut present = 0;
    for (s, data) in read_blocks(dir) {
        for slot in (0..256).filter(|&i| s.is_present(0, i)) {
            linecap::format::seq::fill(&mut want, s.first_seq + slot as u64);
            assert_eq!(&data[slot * 264..(slot + 1) * 264], &want[8..], "block {} slot {slot}", s.first_seq);
            present += 1;
        }
    }
    assert_eq!(present + b.dropped_packets, b.assembly.placed, "{b:?}");
    (rep, per_thread)
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn two_xdp_queues_fill_one_block_sequence() {
    // Two kernel generators, one per CPU, each its flow's half of one
    // stream; veth hands each CPU's frames to its own receive queue. The
    // generators' schedules start together; a wide window absorbs the
    // drift a busy machine puts between them.
    let tb = testbed(2);
    let dir = TempDir::new("gxdp");
    let (rep, per_thread) = through_testbed(
        &tb,
        &dir.0,
        &[
            "--listen",
            &format!("{}:9000", linecap::testbed::RX_ADDR),
            "--backend",
            "xdp",
            "--iface",
            &tb.if_rx,
            "--queues",
            "2",
        ],
        &["--backend", "xdp-live", "--iface", &tb.if_tx, "--flows", "2", "--cpus", "0,1"],
    );
    assert_eq!(rep.threads, 2);
    assert!(per_thread.iter().all(|&p| p > 0), "each queue's thread placed its flow: {per_thread:?}");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn an_afpacket_fanout_group_fills_one_block_sequence() {
    // A load-balancing fanout deals packets to the threads in turn: the
    // worst case for a group (neighbouring slots on both threads).
    let tb = testbed(1);
    let dir = TempDir::new("gafp");
    let (rep, per_thread) = through_testbed(
        &tb,
        &dir.0,
        &[
            "--backend",
            "afpacket",
            "--iface",
            &tb.if_rx,
            "--threads",
            "2",
            "--fanout",
            "lb",
            "--filter",
            "udp port 9000",
        ],
        &["--backend", "afpacket", "--iface", &tb.if_tx, "--flows", "2"],
    );
    assert_eq!(rep.threads, 2);
    assert!(per_thread.iter().all(|&p| p > 0), "{per_thread:?}");
}

#[test]
fn two_threads_publish_into_one_ring() {
    let name = unique("gring");
    let addr = free_loopback();
    let base = free_port_pair();
    let cap_args = ["--slots", "32", "--slot-bytes", "56"];
    let cap = capture(
        None,
        &[
            &["--listen", &addr, "--threads", "2", "--spread", "src-port", "--shm", &name][..],
            &cap_args,
            &["--shm-slots", "64"],
        ]
        .concat(),
    );
    let sent = send(
        None,
        &[
            "--to",
            &addr,
            "--count",
            "640",
            "--rate",
            "20kpps",
            "--size",
            "64",
            "--flows",
            "2",
            "--src-port",
            &base,
        ],
    );
    let b = stop(cap).blocks.unwrap();
    assert_eq!((sent.packets, b.assembly.placed, b.assembly.blocks), (640, 640, 20), "{b:?}");
    // Under load the writer's queue may drop a block: counted.
    assert_eq!(b.written + b.dropped_blocks, 20, "{b:?}");
    // One ring, by the capture's --shm name (no per-thread rings).
    let o = linecap(&["blocks", "inspect", &name]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains(&format!("published {}", b.written)), "{text}");
    assert!(!linecap::sink::shmring::ring_path(&format!("{name}.t0")).exists());
    let _ = std::fs::remove_file(linecap::sink::shmring::ring_path(&name));
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn flows_from_an_af_xdp_sender_reach_their_own_socket_threads() {
    // Frames built in an AF_XDP socket's UMEM, each with its flow's source
    // port; the capture's reuseport program hands flow i to thread i.
    let tb = testbed(1);
    let dir = TempDir::new("gsock");
    let to = format!("{}:9000", linecap::testbed::RX_ADDR);
    let (rep, per_thread) = through_testbed(
        &tb,
        &dir.0,
        &["--listen", &to, "--threads", "2", "--spread", "src-port"],
        &["--backend", "xdp", "--iface", &tb.if_tx, "--flows", "2"],
    );
    assert_eq!(rep.threads, 2);
    // Round robin over two flows: each thread placed its flow's half of
    // what arrived (the socket's own drops are counted in the books).
    assert!(per_thread.iter().all(|&p| p > 0), "{per_thread:?}");
    let placed: u64 = per_thread.iter().sum();
    assert!(per_thread.iter().all(|&p| p.abs_diff(placed / 2) <= placed / 10), "{per_thread:?}");
}

#[test]
fn one_stream_over_several_flows_is_verified_per_host() {
    let addr = free_loopback();
    let base = free_port_pair();
    let cap = capture(None, &["--listen", &addr, "--verify", "seq", "--verify-streams", "host"]);
    let sent = send(
        None,
        &["--to", &addr, "--count", "4000", "--rate", "40kpps", "--flows", "2", "--src-port", &base],
    );
    let rep = stop(cap);
    assert_books(&sent, &rep, &[]);
    let v = rep.verify.unwrap();
    // One stream, whole: no number missing, none counted twice (the flows'
    // sub-batches arrive interleaved, counted as reordering).
    assert_eq!((v.valid, v.missing, v.duplicates, v.highest_seq), (4000, 0, 0, 3999), "{v:?}");
    let o = linecap(&[
        "capture",
        "--listen",
        &addr,
        "--verify",
        "seq",
        "--verify-streams",
        "host",
        "--threads",
        "2",
    ]);
    assert_usage_error(o, "one receive thread");
    let o = linecap(&["capture", "--listen", &addr, "--verify-streams", "host"]);
    assert_usage_error(o, "--verify");
}
