//! pcap files: readable by the pcap-file crate, tshark and tcpdump; rotated;
//! complete after SIGTERM; drops counted when the disk is slow or full.

mod common;

use linecap::capture::DropPlace;
use std::path::Path;
use std::process::Command;

use common::*;
use pcap_file::pcap::PcapReader;

/// Reads a pcap file with the pcap-file crate and checks every record:
/// nanosecond header, RAW link type, an IPv4/UDP header, a valid seq payload.
fn read_checked(path: &Path, payload: usize) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let mut r = PcapReader::new(f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(r.header().ts_resolution, pcap_file::TsResolution::NanoSecond);
    assert_eq!(r.header().datalink, pcap_file::DataLink::RAW);
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{} record {n}: {e}", path.display()));
        assert_eq!(p.data.len(), 20 + 8 + payload);
        assert_eq!(p.data[0], 0x45);
        assert_eq!(p.data[9], 17, "UDP");
        assert!(
            matches!(linecap::format::seq::check(&p.data[28..]), linecap::format::seq::Check::Valid(_)),
            "record {n} payload"
        );
        n += 1;
    }
    n
}

/// How many records a user's tool decodes as UDP datagrams of `payload` bytes.
fn tool_count(tool: &str, path: &Path, payload: usize) -> Option<u64> {
    let mut cmd = Command::new(tool);
    cmd.arg("-r").arg(path).arg("-n");
    if tool == "tshark" {
        // Fields, not the summary line: heuristic dissectors relabel some payloads.
        cmd.args(["-Y", "udp", "-T", "fields", "-e", "udp.length"]);
    }
    let out = cmd.output().ok()?;
    assert!(out.status.success(), "{tool} -r failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let want = if tool == "tshark" { format!("{}", payload + 8) } else { format!("UDP, length {payload}") };
    Some(text.lines().filter(|l| l.trim().ends_with(&want)).count() as u64)
}

#[test]
fn pcap_is_readable_by_crate_tshark_and_tcpdump() {
    let dir = TempDir::new("pcap");
    let file = dir.0.join("out.pcap");
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--write", file.to_str().unwrap()]);
    let sent = send(None, &["--to", &addr, "--count", "3000", "--rate", "30kpps", "--size", "200"]);
    let rep = stop(cap);
    assert_books(&sent, &rep, &[]);
    assert_eq!(read_checked(&file, 200), rep.packets);
    for tool in ["tshark", "tcpdump"] {
        match tool_count(tool, &file, 200) {
            Some(n) => assert_eq!(n, rep.packets, "{tool} sees every packet as UDP"),
            None => skip_or_fail(&format!("{tool} not installed (.ci/run installs it)")),
        }
    }
}

/// Captures `count` packets of `size` bytes over loopback into `dir/name`
/// rotated every 300 KiB; returns the report and the files, sorted.
fn rotated_capture(
    dir: &TempDir,
    name: &str,
    count: &str,
    rate: &str,
    size: &str,
) -> (linecap::capture::CaptureReport, Vec<std::path::PathBuf>) {
    let file = dir.0.join(name);
    let addr = free_loopback();
    let cap = capture(
        None,
        &[
            "--listen",
            &addr,
            "--write",
            file.to_str().unwrap(),
            "--rotate-size",
            "600k",
            "--sink-buffer",
            "2M",
        ],
    );
    let sent = send(None, &["--to", &addr, "--count", count, "--rate", rate, "--size", size]);
    let rep = stop(cap);
    assert_books(&sent, &rep, &[]);
    let mut files: Vec<_> = std::fs::read_dir(&dir.0).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    (rep, files)
}

#[test]
fn rotation_by_size_keeps_every_file_whole() {
    let dir = TempDir::new("rot");
    let (rep, files) = rotated_capture(&dir, "rot.pcap", "12000", "50kpps", "272");
    assert!(files.len() >= 5, "{files:?}");
    let mut total = 0;
    for f in &files {
        assert!(f.file_name().unwrap().to_str().unwrap().starts_with("rot-"));
        // Chunks are at most a quarter of the limit: no file exceeds it.
        assert!(std::fs::metadata(f).unwrap().len() <= 600 * 1024, "{f:?} too large");
        total += read_checked(f, 272);
    }
    assert_eq!(total, rep.packets);
}

#[test]
fn sigterm_mid_capture_leaves_a_complete_file_and_a_summary() {
    let dir = TempDir::new("term");
    let file = dir.0.join("t.pcap");
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--write", file.to_str().unwrap(), "--verify", "seq"]);
    let a = addr.clone();
    // Traffic keeps flowing while the capture is told to stop.
    let sender =
        std::thread::spawn(move || send(None, &["--to", &a, "--duration", "2s", "--rate", "20kpps"]));
    std::thread::sleep(std::time::Duration::from_millis(700));
    let rep = cap.stop_with(libc::SIGTERM).unwrap();
    sender.join().unwrap();
    assert_eq!(rep.stopped_by, "SIGTERM");
    assert!(rep.packets > 0);
    assert_eq!(read_checked(&file, 272), rep.packets);
}

#[test]
fn slow_disk_drops_are_counted_and_memory_bounded() {
    let dir = TempDir::new("slow");
    let file = dir.0.join("slow.pcap");
    let addr = free_loopback();
    let cap = capture(
        None,
        &[
            "--listen",
            &addr,
            "--write",
            file.to_str().unwrap(),
            "--sink-buffer",
            "2M",
            "--sink-throttle",
            "1M",
        ],
    );
    let sent = send(None, &["--to", &addr, "--count", "30000", "--rate", "60kpps", "--size", "272"]);
    let rep = stop(cap);
    assert!(rep.drops[&DropPlace::PcapRingFull] > 0, "the sink was slower than the stream: {rep:#?}");
    assert_books(&sent, &rep, &[]);
    assert_eq!(read_checked(&file, 272), rep.packets);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn full_disk_is_counted_and_the_file_stays_readable() {
    let dir = TempDir::new("full");
    let mnt = dir.0.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(ok.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let file = mnt.join("full.pcap");
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--write", file.to_str().unwrap(), "--sink-buffer", "2M"]);
    let sent = send(None, &["--to", &addr, "--count", "5000", "--rate", "50kpps", "--size", "272"]);
    let rep = stop(cap);
    assert!(rep.drops[&DropPlace::PcapWriteError] > 0, "{rep:#?}");
    assert_books(&sent, &rep, &[]);
    assert_eq!(read_checked(&file, 272), rep.packets);
}

#[test]
fn ipv6_capture_writes_ipv6_records() {
    let Ok(probe) = std::net::UdpSocket::bind("[::1]:0") else {
        eprintln!("skipped ipv6_capture_writes_ipv6_records: no IPv6 on loopback");
        return;
    };
    let addr = probe.local_addr().unwrap().to_string();
    drop(probe);
    let dir = TempDir::new("v6");
    let file = dir.0.join("v6.pcap");
    let cap = capture(None, &["--listen", &addr, "--write", file.to_str().unwrap(), "--verify", "seq"]);
    let sent = send(None, &["--to", &addr, "--count", "500", "--rate", "20kpps", "--size", "100"]);
    let rep = stop(cap);
    assert_books(&sent, &rep, &[]);
    let mut r = PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        assert_eq!(p.data[0] >> 4, 6);
        assert_eq!(p.data[6], 17, "next header UDP");
        assert_eq!(u16::from_be_bytes([p.data[4], p.data[5]]), 108, "payload length");
        assert_eq!(&p.data[8..24], &std::net::Ipv6Addr::LOCALHOST.octets());
        n += 1;
    }
    assert_eq!(n, rep.packets);
    if let Some(c) = tool_count("tcpdump", &file, 100) {
        assert_eq!(c, rep.packets);
    }
}

#[test]
fn rotation_by_time_starts_new_files() {
    let dir = TempDir::new("rtime");
    let file = dir.0.join("t.pcap");
    let addr = free_loopback();
    let cap =
        capture(None, &["--listen", &addr, "--write", file.to_str().unwrap(), "--rotate-time", "300ms"]);
    let sent = send(None, &["--to", &addr, "--duration", "1500ms", "--rate", "5kpps"]);
    let rep = stop(cap);
    assert_books(&sent, &rep, &[]);
    let files: Vec<_> = std::fs::read_dir(&dir.0).unwrap().flatten().map(|e| e.path()).collect();
    assert!(files.len() >= 3, "{files:?}");
    let total: u64 = files.iter().map(|f| read_checked(f, 272)).sum();
    assert_eq!(total, rep.packets);
}

/// Reads a pcapng file with the pcap-file crate: one section, one RAW
/// interface with nanosecond timestamps, then Enhanced Packet Blocks that
/// each hold an IPv4/UDP datagram with a valid seq payload.
fn read_checked_ng(path: &Path, payload: usize) -> u64 {
    use pcap_file::pcapng::{Block, PcapNgReader};
    let f = std::fs::File::open(path).unwrap();
    let mut r = PcapNgReader::new(f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut n, mut interfaces) = (0u64, 0);
    let mut last_ts = std::time::Duration::ZERO;
    while let Some(b) = r.next_block() {
        match b.unwrap_or_else(|e| panic!("{} block after {n} packets: {e}", path.display())) {
            Block::InterfaceDescription(i) => {
                interfaces += 1;
                assert_eq!(i.linktype, pcap_file::DataLink::RAW);
                assert!(
                    i.options.iter().any(|o| matches!(
                        o,
                        pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfTsResol(9)
                    )),
                    "nanosecond timestamps declared: {:?}",
                    i.options
                );
            }
            Block::EnhancedPacket(p) => {
                assert_eq!(p.data.len(), 20 + 8 + payload);
                assert_eq!((p.data[0], p.data[9]), (0x45, 17));
                assert!(matches!(
                    linecap::format::seq::check(&p.data[28..]),
                    linecap::format::seq::Check::Valid(_)
                ));
                assert!(p.timestamp >= last_ts, "timestamps in order");
                last_ts = p.timestamp;
                n += 1;
            }
            other => panic!("unexpected block {other:?}"),
        }
    }
    assert_eq!(interfaces, 1);
    n
}

#[test]
fn pcapng_is_readable_by_crate_tshark_and_tcpdump_and_rotates_whole() {
    let dir = TempDir::new("ng");
    let (rep, files) = rotated_capture(&dir, "out.pcapng", "6000", "40kpps", "200");
    assert!(files.len() >= 3, "{files:?}");
    let mut total = 0;
    for f in &files {
        assert!(f.to_str().unwrap().ends_with(".pcapng"), "{f:?}");
        total += read_checked_ng(f, 200);
    }
    assert_eq!(total, rep.packets);
    for tool in ["tshark", "tcpdump"] {
        match tool_count(tool, &files[0], 200) {
            Some(n) => assert_eq!(n, read_checked_ng(&files[0], 200), "{tool} on {:?}", files[0]),
            None => skip_or_fail(&format!("{tool} not installed (.ci/run installs it)")),
        }
    }
}

/// The CPUs the thread named `name` of process `pid` may run on, once it
/// exists (waits up to 5 s).
fn thread_cpus(pid: u32, name: &str) -> Option<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() == name {
                let status = std::fs::read_to_string(task.path().join("status")).ok()?;
                let line = status.lines().find(|l| l.starts_with("Cpus_allowed_list:"))?;
                return Some(line.split_whitespace().nth(1)?.to_string());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

#[test]
fn the_thread_watching_a_capture_runs_off_the_receive_core() {
    if linecap::sys::online_cpus() < 2 {
        return skip_or_fail("needs 2 CPUs to keep the watching thread off the receive core");
    }
    let mut child = Command::new(exe())
        .args(["capture", "--listen", &free_loopback(), "--cpus", "0", "--duration", "3s", "--quiet"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // It moves once the receive thread has started: wait for that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut cpus = String::new();
    while std::time::Instant::now() < deadline {
        let status = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status")).unwrap_or_default();
        cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        if cpus == "1" || cpus.starts_with("1-") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = linecap::sys::send_signal(pid, libc::SIGINT);
    let _ = child.wait();
    assert!(cpus == "1" || cpus.starts_with("1-"), "the watching thread may run on {cpus}");
}

#[test]
fn the_pcap_writer_runs_off_the_receive_core_or_where_it_is_told() {
    if linecap::sys::online_cpus() < 2 {
        return skip_or_fail("needs 2 CPUs to keep the writer off the receive core");
    }
    let dir = TempDir::new("writer-cpus");
    for (extra, want) in [(&[][..], "1"), (&["--writer-cpus", "0"][..], "0")] {
        let path = dir.0.join("w.pcap");
        let mut child = Command::new(exe())
            .args(["capture", "--listen", &free_loopback(), "--cpus", "0", "--duration", "3s", "--quiet"])
            .args(["--write", path.to_str().unwrap()])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let cpus = thread_cpus(child.id(), "linecap-pcap");
        let _ = linecap::sys::send_signal(child.id(), libc::SIGINT);
        let _ = child.wait();
        let cpus = cpus.expect("the capture started its pcap writer thread");
        // Two CPUs: the receive thread has CPU 0, so the writer gets the
        // rest unless told; on a larger machine "1" is the start of it.
        assert!(cpus == want || (want == "1" && cpus.starts_with("1-")), "writer on {cpus}, {extra:?}");
        let _ = std::fs::remove_file(&path);
    }
}
