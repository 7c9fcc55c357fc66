//! `capture --read`: files written by linecap, tcpdump and dumpcap read
//! back through the same sinks, with the packet counts tshark gives; the
//! blocks a file assembles equal the live capture's; hostile files end in
//! a one-line error or a counted skip.

mod common;

use linecap::capture::DropPlace;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use linecap::capture::CaptureReport;

/// `linecap capture --read ARGS... --json`: its report and exit status.
fn read(args: &[&str]) -> (Option<CaptureReport>, std::process::Output) {
    let name = unique("rd");
    let mut all = vec!["capture", "--quiet", "--json", "--name", name.as_str(), "--read"];
    all.extend_from_slice(args);
    let out = linecap(&all);
    let _ = std::fs::remove_file(linecap::stats::stats_path(&name));
    let report = serde_json::from_slice(&out.stdout).ok();
    (report, out)
}

fn read_ok(args: &[&str]) -> CaptureReport {
    let (r, out) = read(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    r.expect("a JSON report")
}

/// Frames of `file` that tshark shows, with a display filter.
fn tshark_count(file: &Path, display_filter: &str) -> Option<u64> {
    let out = Command::new("tshark").arg("-r").arg(file).args(["-n", "-Y", display_filter]).output().ok()?;
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).lines().count() as u64)
}

#[test]
fn a_linecap_recording_assembles_into_the_blocks_the_live_capture_made() {
    let dir = TempDir::new("readback");
    for (name, fmt) in [("live.pcap", "pcap"), ("live.pcapng", "pcapng")] {
        let file = dir.0.join(name);
        let (live, again) = (dir.0.join(format!("{fmt}-live")), dir.0.join(format!("{fmt}-again")));
        std::fs::create_dir_all(&live).unwrap();
        std::fs::create_dir_all(&again).unwrap();
        let rep = record_loopback(&file, &live, "20000");
        // The books of the recording are what the comparison can rely on:
        // every packet reached both the file and the assembler.
        assert_eq!(rep.drops.get(&DropPlace::PcapRingFull), Some(&0), "{rep:#?}");
        assert_eq!(rep.blocks.as_ref().unwrap().dropped_blocks, 0, "{rep:#?}");
        let back = read_ok(&[file.to_str().unwrap(), "--verify", "seq", "--blocks", again.to_str().unwrap()]);
        assert_eq!(back.kind(), Some(linecap::source::BackendKind::File));
        assert_eq!(back.stopped_by, "end of input");
        assert_eq!((back.received, back.packets), (rep.packets, rep.packets), "{back:#?}");
        assert_eq!(back.total_drops(), 0, "{back:#?}");
        let v = back.verify.unwrap();
        assert_eq!((v.valid, v.corrupt, v.malformed), (rep.packets, 0, 0));
        let (a, b) = (read_blocks(&live), read_blocks(&again));
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len(), "{fmt}: as many blocks");
        for ((sa, da), (sb, db)) in a.iter().zip(&b) {
            assert_eq!(sa, sb, "{fmt}: sidecars (presence maps) equal");
            assert!(da == db, "{fmt}: block {} byte for byte", sa.number);
        }
    }
}

#[test]
fn rotated_sets_by_glob_and_a_stream_on_stdin() {
    let dir = TempDir::new("readset");
    let addr = free_loopback();
    let base = dir.0.join("rot.pcap");
    let cap = capture(
        None,
        &[
            "--listen",
            &addr,
            "--write",
            base.to_str().unwrap(),
            "--rotate-size",
            "600k",
            "--sink-buffer",
            "2M",
        ],
    );
    let sent = send(None, &["--to", &addr, "--count", "8000", "--rate", "40kpps"]);
    let rep = stop(cap);
    assert_books(&sent, &rep, &[]);
    let pattern = dir.0.join("rot-*.pcap");
    let all = read_ok(&[pattern.to_str().unwrap(), "--verify", "seq"]);
    assert_eq!(all.received, rep.packets, "every rotated file, in order");
    let v = all.verify.unwrap();
    assert_eq!((v.valid, v.reordered, v.missing), (rep.packets, 0, 0), "{v:?}");
    assert!(all.listen.contains("more"), "{}", all.listen);

    let first = dir.0.join("rot-000000.pcap");
    let mut child = Command::new(exe())
        .args(["capture", "--quiet", "--json", "--read", "-"])
        .stdin(std::fs::File::open(&first).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let piped: CaptureReport = serde_json::from_slice(&out.stdout).unwrap();
    let direct = read_ok(&[first.to_str().unwrap()]);
    assert!(piped.received > 0);
    assert_eq!(piped.received, direct.received, "stdin reads what the file holds");
}

#[test]
fn filter_and_write_convert_a_file() {
    let dir = TempDir::new("readfilt");
    let (a, b) = (free_loopback(), free_loopback());
    // One capture of two ports: a socket binds one, so record with two
    // and merge the files in order of their names (a then b).
    let (fa, fb) = (dir.0.join("a.pcap"), dir.0.join("b.pcap"));
    for (addr, f, n) in [(&a, &fa, "3000"), (&b, &fb, "2000")] {
        let cap = capture(None, &["--listen", addr, "--write", f.to_str().unwrap()]);
        let sent = send(None, &["--to", addr, "--count", n, "--rate", "40kpps"]);
        assert_books(&sent, &stop(cap), &[]);
    }
    let port_b = b.rsplit(':').next().unwrap();
    let only_b =
        read_ok(&[fa.to_str().unwrap(), fb.to_str().unwrap(), "--filter", &format!("udp dst port {port_b}")]);
    assert_eq!(only_b.received, 2000);
    assert_eq!(only_b.kernel.get("records_filtered"), Some(&3000));
    assert_eq!(only_b.total_drops(), 0, "filtered is not lost");
    // pcap -> pcapng, read by tshark.
    let ng = dir.0.join("b.pcapng");
    let conv = read_ok(&[fb.to_str().unwrap(), "--write", ng.to_str().unwrap()]);
    assert_eq!(conv.packets, 2000);
    match tshark_count(&ng, "udp") {
        Some(n) => assert_eq!(n, 2000),
        None => skip_or_fail("tshark not installed (.ci/run installs it)"),
    }
    let again = read_ok(&[ng.to_str().unwrap(), "--verify", "seq"]);
    assert_eq!(again.verify.unwrap().valid, 2000);
}

/// A pcap header (µs, Ethernet unless `link`) and records of `data`.
fn pcap_bytes(link: u32, records: &[&[u8]]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(0xa1b2_c3d4u32.to_le_bytes());
    f.extend(2u16.to_le_bytes());
    f.extend(4u16.to_le_bytes());
    f.extend([0; 8]);
    f.extend(65535u32.to_le_bytes());
    f.extend(link.to_le_bytes());
    for (i, d) in records.iter().enumerate() {
        f.extend((i as u32).to_le_bytes());
        f.extend(0u32.to_le_bytes());
        f.extend((d.len() as u32).to_le_bytes());
        f.extend((d.len() as u32).to_le_bytes());
        f.extend_from_slice(d);
    }
    f
}

fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(4000, 9000)
        .write(&mut v, payload)
        .unwrap();
    v
}

#[test]
fn hostile_files_end_in_one_line_or_a_counted_skip() {
    let dir = TempDir::new("readbad");
    let put = |name: &str, bytes: &[u8]| {
        let p = dir.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let frame = udp_frame(&[7; 40]);
    // Refused before the capture starts.
    let (_, o) = read(&[&put("empty.pcap", b"")]);
    assert_fails_with(o, "empty");
    let (_, o) = read(&[&put("text.pcap", b"this is not a capture file at all\n")]);
    assert_fails_with(o, "not a pcap or pcapng file");
    let (_, o) = read(&[dir.0.to_str().unwrap()]);
    assert_fails_with(o, "folder");
    let (_, o) = read(&[dir.0.join("missing.pcap").to_str().unwrap()]);
    assert_fails_with(o, "missing.pcap");
    let (_, o) = read(&[dir.0.join("none-*.pcap").to_str().unwrap()]);
    assert_fails_with(o, "no file matches");
    // A last record cut short: counted, the rest delivered, exit 0.
    let mut cut = pcap_bytes(1, &[&frame, &frame, &frame]);
    cut.truncate(cut.len() - 10);
    let r = read_ok(&[&put("cut.pcap", &cut)]);
    assert_eq!((r.received, r.drops.get(&DropPlace::FileRecordsSkipped)), (2, Some(&1)));
    // A link type linecap does not decode: every record counted as skipped.
    let r = read_ok(&[&put("usb.pcap", &pcap_bytes(189, &[&frame, &frame]))]);
    assert_eq!((r.received, r.drops.get(&DropPlace::FileRecordsSkipped)), (0, Some(&2)));
    // A corrupt length after two good records: those two, then a failure.
    let mut bad = pcap_bytes(1, &[&frame, &frame, &frame]);
    let third = 24 + 2 * (16 + frame.len());
    bad[third + 8..third + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let (r, o) = read(&[&put("corrupt.pcap", &bad)]);
    assert_eq!(r.expect("the report of what was read").received, 2);
    assert_fails_with(o, "corrupt pcap record length");
    // Not a frame, not UDP: delivered as what they are (a raw capture keeps them).
    let r = read_ok(&[&put("junk.pcap", &pcap_bytes(1, &[b"\x01\x02", &[0xff; 60]])), "--verify", "seq"]);
    assert_eq!(r.received, 2);
    assert_eq!(r.verify.unwrap().not_udp, 2);
}

#[test]
fn network_options_are_refused_with_read() {
    let dir = TempDir::new("readopts");
    let f = dir.0.join("x.pcap");
    std::fs::write(&f, pcap_bytes(1, &[])).unwrap();
    let f = f.to_str().unwrap();
    for extra in
        [&["--listen", ":9000"][..], &["--backend", "afpacket"], &["--threads", "2"], &["--rcvbuf", "1M"]]
    {
        let mut args = vec!["capture", "--read", f];
        args.extend_from_slice(extra);
        assert_usage_error(linecap(&args), "--read takes packets from files");
    }
}

/// Starts a capture tool in `ns`; it is stopped with SIGINT (so it
/// finishes its file) by [`finish`].
fn start_tool(ns: &str, args: &[&str]) -> Option<Reaped> {
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    Some(Reaped::new(child))
}

fn finish(tool: Reaped) {
    linecap::sys::send_signal(tool.id(), libc::SIGINT).unwrap();
    let out = tool.wait_with_output();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("rror"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth): run the tests as root")]
fn tcpdump_and_dumpcap_files_read_with_the_counts_tshark_gives() {
    let have = |t: &str| Command::new(t).arg("--version").output().is_ok_and(|o| o.status.success());
    if !["tcpdump", "dumpcap", "tshark"].iter().all(|t| have(t)) {
        return skip_or_fail("tcpdump, dumpcap or tshark not installed (.ci/run installs them)");
    }
    let tb = linecap::testbed::Testbed::up(&linecap::testbed::TestbedOptions::new(&unique("rd"))).unwrap();
    let dir = TempDir::new("readpeers");
    let path = |n: &str| dir.0.join(n).to_str().unwrap().to_string();
    let ifr = tb.if_rx.as_str();
    let files = [
        ("eth.pcap", vec!["tcpdump", "-U", "-n", "-i", ifr, "-w"]),
        ("sll.pcap", vec!["tcpdump", "-U", "-n", "-i", "any", "-y", "LINUX_SLL", "-w"]),
        ("sll2.pcap", vec!["tcpdump", "-U", "-n", "-i", "any", "-y", "LINUX_SLL2", "-w"]),
        ("dumpcap.pcapng", vec!["dumpcap", "-q", "-i", ifr, "-w"]),
        ("eth-ns.pcap", vec!["tcpdump", "-U", "-n", "--time-stamp-precision=nano", "-i", ifr, "-w"]),
        ("dumpcap.pcap", vec!["dumpcap", "-q", "-P", "-i", ifr, "-w"]),
    ];
    let mut tools = Vec::new();
    for (name, args) in &files {
        let p = path(name);
        let mut a = args.clone();
        a.push(&p);
        tools.push(start_tool(&tb.ns_rx, &a).expect("tool starts"));
    }
    // The tools need a moment to open their sockets; what they miss does
    // not matter: each file is compared with what tshark reads from it.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let to = format!("{}:9000", linecap::testbed::RX_ADDR);
    send(Some(&tb.ns_tx), &["--to", &to, "--count", "3000", "--rate", "20kpps"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    for t in tools {
        finish(t);
    }
    for (name, _) in &files {
        let f = dir.0.join(name);
        let all = tshark_count(&f, "frame").unwrap();
        // Not `udp.dstport` alone: ICMP port-unreachable errors quote the
        // datagrams' headers, and tshark matches those too.
        let udp = tshark_count(&f, "udp.dstport == 9000 && !icmp").unwrap();
        assert!(udp > 0, "{name}: the tool caught the stream");
        let r = read_ok(&[f.to_str().unwrap(), "--filter", "udp dst port 9000", "--verify", "seq"]);
        assert_eq!(r.received, udp, "{name}: the UDP datagrams tshark sees");
        assert_eq!(r.received + r.kernel["records_filtered"], all, "{name}: every frame tshark sees");
        let v = r.verify.unwrap();
        assert_eq!((v.valid, v.corrupt), (udp, 0), "{name}: {v:?}");
    }
}

#[test]
fn write_to_stdout_feeds_a_pipe_and_survives_its_reader_leaving() {
    let dir = TempDir::new("readpipe");
    let file = dir.0.join("rec.pcap");
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--write", file.to_str().unwrap()]);
    let sent = send(None, &["--to", &addr, "--count", "5000", "--rate", "40kpps"]);
    let rep = stop(cap);
    assert_books(&sent, &rep, &[]);
    let stream = |mut reader: Command| {
        let mut lc = Command::new(exe())
            .args(["capture", "--quiet", "--json", "--read", file.to_str().unwrap(), "--write", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let child = reader.stdin(lc.stdout.take().unwrap()).stdout(Stdio::piped()).spawn();
        // The command keeps its copy of the pipe's read end: gone, the
        // reader's exit is the pipe's end (EPIPE for the writer).
        drop(reader);
        let reader = child.and_then(|c| c.wait_with_output());
        let out = lc.wait_with_output().unwrap();
        let report: CaptureReport =
            serde_json::from_slice(out.stderr.rsplit(|&b| b == b'\n').nth(1).unwrap())
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status, report, reader)
    };
    // The stream read whole by tshark; the summary went to stderr.
    let mut tshark = Command::new("tshark");
    tshark.args(["-r", "-", "-n", "-Y", "udp"]);
    match stream(tshark) {
        (status, r, Ok(t)) if t.status.success() => {
            assert!(status.success());
            assert_eq!(r.packets, rep.packets);
            assert_eq!(String::from_utf8_lossy(&t.stdout).lines().count() as u64, rep.packets);
        }
        _ => skip_or_fail("tshark not installed (.ci/run installs it)"),
    }
    // A reader that leaves early: the capture stops, its books whole.
    let mut head = Command::new("head");
    head.args(["-c", "20000"]);
    let (status, r, _) = stream(head);
    assert!(status.success(), "no death by SIGPIPE");
    assert_eq!(r.received, rep.packets);
    assert!(r.packets < rep.packets);
    assert_eq!(r.packets + r.drops[&DropPlace::PcapWriteError], r.received, "{r:#?}");
}
