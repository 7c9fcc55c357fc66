//! The attacks of issue 9, kept as tests so they stay fixed: a local user
//! planting links, FIFOs and foreign files where linecap shares its books;
//! a second capture with a running one's name; clients that try to hold the
//! exporter; crafted packets inside a genuine flow; a full disk.
//!
//! Traffic stays on loopback (or in a tmpfs this test mounts); every loop
//! is bounded in count and time.

mod common;

use linecap::capture::DropPlace;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use linecap::stats::stats_path;

/// A file or link this test planted in the shared directory, removed on drop.
struct Planted(PathBuf);
impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs linecap and waits at most `secs` for it (a hang is killed and fails the test).
fn linecap_within(args: &[&str], secs: u64) -> Output {
    let mut child = Command::new(exe())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("linecap runs");
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("linecap {args:?} hung for {secs} s: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Makes a FIFO as any local user could (mkfifo(1), mode 0666).
fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").args(["-m", "0666"]).arg(path).status().expect("mkfifo runs").success();
    assert!(ok, "mkfifo {}", path.display());
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_planted_symlink_redirects_nothing() {
    let name = unique("sym");
    let dir = TempDir::new("sym");
    let target = dir.0.join("root-owned");
    std::fs::write(&target, b"precious").unwrap();
    let link = Planted(stats_path(&name));
    std::os::unix::fs::symlink(&target, &link.0).unwrap();
    let o = linecap_within(&["capture", "--listen", &free_loopback(), "--name", &name, "--count", "1"], 20);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&target).unwrap(), b"precious", "the link's target is untouched");
    assert!(std::fs::symlink_metadata(&link.0).unwrap().file_type().is_symlink());
}

#[test]
fn output_files_are_never_written_through_a_planted_symlink_or_fifo() {
    // A shared folder where another user planted, at the names linecap is
    // about to write, a link to a file it must not touch, and a FIFO.
    let dir = TempDir::new("plant");
    let target = dir.0.join("precious");
    std::fs::write(&target, b"precious").unwrap();
    let pcap = dir.0.join("c.pcap");
    std::os::unix::fs::symlink(&target, &pcap).unwrap();
    let o = linecap_within(
        &["capture", "--listen", &free_loopback(), "--write", pcap.to_str().unwrap(), "--count", "1"],
        20,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    let fifo = dir.0.join("f.pcap");
    mkfifo(&fifo);
    let o = linecap_within(
        &["capture", "--listen", &free_loopback(), "--write", fifo.to_str().unwrap(), "--count", "1"],
        20,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("FIFO"), "{}", stderr(&o));
    // Block files have predictable names: the planted one is a write error
    // (counted), the others are written.
    let blocks = dir.0.join("blocks");
    std::fs::create_dir(&blocks).unwrap();
    std::os::unix::fs::symlink(&target, blocks.join("block-00000000000000000000.bin")).unwrap();
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--blocks", blocks.to_str().unwrap(), "--slots", "100"]);
    let sent = send(None, &["--to", &addr, "--count", "500", "--rate", "20kpps"]);
    let b = stop(cap).blocks.unwrap();
    assert_eq!(sent.packets, 500);
    assert_eq!((b.write_errors, b.written + b.dropped_blocks), (1, 4), "{b:?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious", "the link's target is untouched");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn a_foreign_file_is_neither_adopted_nor_written() {
    let name = unique("own");
    let file = Planted(stats_path(&name));
    std::fs::write(&file.0, [0u8; 4096]).unwrap();
    std::os::unix::fs::chown(&file.0, Some(65534), Some(65534)).unwrap();
    let o = linecap_within(&["capture", "--listen", &free_loopback(), "--name", &name, "--count", "1"], 20);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("belongs to uid 65534"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&file.0).unwrap(), [0u8; 4096]);
}

#[test]
fn a_fifo_in_the_shared_directory_hangs_no_reader() {
    let name = unique("fifo");
    let fifo = Planted(stats_path(&name));
    mkfifo(&fifo.0);
    // Each returns (the FIFO is skipped or refused); none blocks in open().
    let o = linecap_within(&["stats", &name], 20);
    assert!(!o.status.success() && stderr(&o).contains("FIFO"), "{}", stderr(&o));
    assert!(linecap_within(&["stats"], 20).status.success());
    assert!(linecap_within(&["stats", "--prometheus"], 20).status.success());
    assert!(linecap_within(&["doctor", "--interval", "100ms"], 30).status.code().is_some());
    // A capture with that name is refused, the FIFO left alone.
    let o = linecap_within(&["capture", "--listen", &free_loopback(), "--name", &name, "--count", "1"], 20);
    assert!(stderr(&o).contains("FIFO"), "{}", stderr(&o));
}

#[test]
fn a_second_capture_with_the_same_name_is_refused_and_the_first_keeps_exact_books() {
    let addr = free_loopback();
    let name = unique("twice");
    let first = capture_named(None, &name, &["--listen", &addr, "--verify", "seq"]);
    // The second is refused before it opens a socket or touches the file.
    let o = linecap_within(&["capture", "--listen", &free_loopback(), "--name", &name, "--count", "1"], 20);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("already running (pid"), "{}", stderr(&o));
    let sent = send(None, &["--to", &addr, "--count", "5000", "--rate", "50kpps"]);
    let rep = stop(first);
    let v = rep.verify.unwrap();
    assert_eq!(rep.packets, v.valid, "the report equals the verifier's count");
    assert_books(&sent, &rep, &[]);
}

#[test]
fn a_name_that_is_not_a_name_is_refused() {
    for bad in ["", "a\"b", "a\nb", "../x", ".hidden", "blocks-x"] {
        let o = linecap_within(&["capture", "--listen", &free_loopback(), "--name", bad, "--count", "1"], 20);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
    }
}

/// One scrape on a fresh connection, with a read deadline: (status line, body).
fn scrape(addr: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // A bare-LF request: answered too.
    s.write_all(b"GET /metrics HTTP/1.1\nHost: x\n\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).expect("the exporter answers");
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

#[test]
fn the_exporter_answers_while_idle_and_slow_clients_hold_connections() {
    let (exporter, at) = start_exporter();
    // 200 clients that connect and say nothing, 10 that send a byte at a time.
    let idle: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(&at).unwrap()).collect();
    let mut slow: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(&at).unwrap()).collect();
    for s in &mut slow {
        s.write_all(b"G").unwrap();
    }
    // A one-at-a-time exporter would need 2 s per held connection (> 400 s).
    let (status, _) = scrape(&at);
    assert_eq!(status, "HTTP/1.1 200 OK");
    for s in &mut slow {
        let _ = s.write_all(b"E");
    }
    let (status, _) = scrape(&at);
    assert_eq!(status, "HTTP/1.1 200 OK");
    drop(idle);
    drop(slow);
    linecap::sys::send_signal(exporter.id(), libc::SIGINT).unwrap();
    let out = exporter.wait_with_output();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Sends `seq` payloads 0..n from one socket, with `crafted` sent from the
/// same socket (the same flow) after packet `at`.
fn flow_with_one_crafted(to: &str, n: u64, at: u64, crafted: &[u8]) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = [0u8; 272];
    for seq in 0..n {
        linecap::format::seq::fill(&mut buf, seq);
        s.send_to(&buf, to).unwrap();
        if seq == at {
            s.send_to(crafted, to).unwrap();
        }
        if seq % 200 == 199 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn one_crafted_sequence_number_changes_only_out_of_window() {
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--verify", "seq"]);
    // A number far ahead carrying a correct pattern: only its distance gives it away.
    let mut crafted = [0u8; 16];
    linecap::format::seq::fill(&mut crafted, 1 << 63);
    flow_with_one_crafted(&addr, 5000, 2000, &crafted);
    let rep = stop(cap);
    let v = rep.verify.unwrap();
    assert_eq!(rep.total_drops(), 0, "{rep:?}");
    assert_eq!((v.valid, v.out_of_window), (5001, 1), "{v:?}");
    assert_eq!((v.missing, v.too_old, v.resyncs, v.duplicates), (0, 0, 0, 0), "{v:?}");
    // And a bare 8-byte number is not a valid payload.
    let cap = capture(None, &["--listen", &addr, "--verify", "seq"]);
    flow_with_one_crafted(&addr, 100, 50, &(1u64 << 63).to_le_bytes());
    let v = stop(cap).verify.unwrap();
    assert_eq!((v.valid, v.malformed, v.missing), (100, 1, 0), "{v:?}");
}

/// A SPEAD-64-48 packet with these immediate items and no payload.
fn spead_items(heap_cnt: u64, heap_size: u64, offset: u64, payload_len: u64) -> Vec<u8> {
    use linecap::format::spead::*;
    let mut p = vec![MAGIC, VERSION, 2, 6, 0, 0, 0, 4];
    for (id, v) in
        [(HEAP_CNT, heap_cnt), (HEAP_SIZE, heap_size), (HEAP_OFFSET, offset), (PAYLOAD_LEN, payload_len)]
    {
        p.extend_from_slice(&(1u64 << 63 | u64::from(id) << 48 | v).to_be_bytes());
    }
    p
}

#[test]
fn one_crafted_spead_packet_does_not_kill_the_capture() {
    use linecap::format::spead::{GEN_HEADER, encode};
    let dir = TempDir::new("spead-crafted");
    let addr = free_loopback();
    let (slot, slots) = (256usize, 8u64);
    let cap = capture(
        None,
        &[
            "--listen",
            &addr,
            "--blocks",
            dir.0.to_str().unwrap(),
            "--format",
            "spead-heap",
            "--slot-bytes",
            &slot.to_string(),
            "--slots",
            &slots.to_string(),
        ],
    );
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut p = vec![0u8; GEN_HEADER + slot];
    for k in 0..64u64 {
        encode(&mut p, k, 1); // heap k + 1, one packet per heap
        s.send_to(&p, &addr).unwrap();
        if k == 10 {
            // Offset equal to the heap size, no payload, on a block's last slot.
            let crafted = spead_items(2 * slots - 1, slot as u64, slot as u64, 0);
            assert_eq!(crafted.len(), 40);
            s.send_to(&crafted, &addr).unwrap();
        }
    }
    let rep = stop(cap);
    assert!(rep.failure.is_none(), "{rep:?}");
    let a = rep.blocks.unwrap().assembly;
    assert_eq!((a.packets, a.placed, a.malformed), (65, 64, 1), "{a:?}");
    assert_eq!(a.packets, a.accounted());
}

#[test]
fn blocks_inspect_refuses_hostile_sidecars_without_panicking() {
    let dir = TempDir::new("sidecars");
    let secret = dir.0.join("secret");
    std::fs::write(&secret, [7u8; 64]).unwrap();
    // A genuine sidecar, then each field an attacker would forge.
    let genuine = linecap::sink::blocks::Sidecar {
        format: linecap::sink::blocks::StreamFormat::Seq,
        number: 0,
        first_seq: 0,
        layout: linecap::assemble::Layout::new(8, 8, 1).unwrap(),
        filled: 0,
        lost: 0,
        presence: String::new(),
        zero_filled: true,
        data: "block-0.bin".into(),
    };
    let layout =
        |slots: u64, bytes: u64| serde_json::json!({"slot_bytes": bytes, "slots": slots, "channels": 1});
    let cases = [
        ("zero", layout(0, 8), "block-0.bin".to_string(), "must all be at least 1"),
        ("wrap", layout(1 << 32, 1 << 32), "block-0.bin".to_string(), "larger than 4 GiB"),
        ("escape", layout(8, 8), "../secret".to_string(), "not a block file beside it"),
        ("absolute", layout(8, 8), secret.display().to_string(), "not a block file beside it"),
    ];
    for (tag, layout, data, why) in cases {
        let side = dir.0.join(format!("{tag}.json"));
        let mut v = serde_json::to_value(&genuine).unwrap();
        v["layout"] = layout;
        v["data"] = serde_json::Value::String(data);
        std::fs::write(&side, v.to_string()).unwrap();
        let o = linecap_within(&["blocks", "inspect", side.to_str().unwrap()], 20);
        assert_eq!(o.status.code(), Some(1), "{tag}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{tag}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{tag}: {}", stderr(&o));
    }
    // A FIFO as a sidecar: refused at once.
    let fifo = dir.0.join("fifo.json");
    mkfifo(&fifo);
    assert_eq!(linecap_within(&["blocks", "inspect", fifo.to_str().unwrap()], 20).status.code(), Some(1));
}

/// A small file system mounted for one test (a tmpfs, or ext4 on a loop
/// device: one that takes `O_DIRECT`), unmounted and removed on drop.
struct SmallDisk(PathBuf, Option<PathBuf>);
impl SmallDisk {
    fn mount(bytes: u64) -> Option<Self> {
        let dir = std::env::temp_dir().join(unique("lc-disk-"));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs", dir.to_str()?])
            .status()
            .ok()?
            .success();
        ok.then_some(Self(dir, None))
    }

    fn ext4(bytes: u64) -> Option<Self> {
        let dir = std::env::temp_dir().join(unique("lc-ext4-"));
        let image = dir.with_extension("img");
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::File::create(&image).ok()?.set_len(bytes).ok()?;
        let disk = Self(dir, Some(image));
        let made = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(disk.1.as_ref()?).status().ok()?;
        let mounted = made.success()
            && Command::new("mount")
                .args(["-o", "loop"])
                .arg(disk.1.as_ref()?)
                .arg(&disk.0)
                .status()
                .ok()?
                .success();
        mounted.then_some(disk)
    }

    /// Bytes free for files, as df says.
    fn free(&self) -> u64 {
        let o = Command::new("df").args(["--output=avail", "-B1"]).arg(&self.0).output().unwrap();
        String::from_utf8_lossy(&o.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
    }
}
impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
        if let Some(image) = &self.1 {
            let _ = std::fs::remove_file(image);
        }
    }
}

fn pcap_records(path: &Path) -> u64 {
    let f = std::fs::File::open(path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(f).expect("a readable pcap header");
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        p.expect("every record whole");
        n += 1;
    }
    n
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (namespaces, veth, BPF): run the tests as root")]
fn a_full_disk_costs_counted_packets_and_writing_resumes_when_space_returns() {
    let Some(disk) = SmallDisk::mount(4 << 20) else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    // Leave about 300 KB free: the capture fills it within a second.
    let filler = disk.0.join("filler");
    std::fs::write(&filler, vec![0u8; (4 << 20) - (300 << 10)]).unwrap();
    let file = disk.0.join("c.pcap");
    let addr = free_loopback();
    let cap = capture(None, &["--listen", &addr, "--write", file.to_str().unwrap(), "--sink-buffer", "2M"]);
    let first = send(None, &["--to", &addr, "--count", "4000", "--rate", "20kpps"]);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&filler).unwrap();
    // The writer tries the disk again at most a second after its last failure.
    std::thread::sleep(Duration::from_millis(1500));
    let second = send(None, &["--to", &addr, "--count", "4000", "--rate", "20kpps"]);
    let rep = stop(cap);
    let mut sent = first;
    sent.packets += second.packets;
    assert!(rep.drops[&DropPlace::PcapWriteError] > 0, "the disk was full: {rep:?}");
    assert_books(&sent, &rep, &[]);
    // Every record in the file is whole, and the file holds every delivered packet.
    assert_eq!(pcap_records(&file), rep.packets);
    assert!(rep.packets > 4000, "writing resumed after space returned: {rep:?}");
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root (mount): run the tests as root")]
fn a_full_disk_written_with_o_direct_keeps_whole_records_and_resumes() {
    // ext4 takes O_DIRECT: the writer stages 4 MiB and writes it aligned;
    // the disk fills during such a write.
    let disk = SmallDisk::ext4(32 << 20).expect("mkfs.ext4 and a loop mount (root)");
    let filler = disk.0.join("filler");
    std::fs::write(&filler, vec![0u8; (disk.free() - (1 << 20)) as usize]).unwrap();
    let file = disk.0.join("c.pcap");
    let addr = free_loopback();
    let cap = capture(
        None,
        &["--listen", &addr, "--write", file.to_str().unwrap(), "--sink-buffer", "8M", "--direct-io"],
    );
    // 6 MB of records: more than the free megabyte, and than one stage.
    let first = send(None, &["--to", &addr, "--count", "20000", "--rate", "50kpps"]);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let second = send(None, &["--to", &addr, "--count", "20000", "--rate", "50kpps"]);
    let rep = stop(cap);
    let mut sent = first;
    sent.packets += second.packets;
    assert!(rep.drops[&DropPlace::PcapWriteError] > 0, "the disk was full: {rep:?}");
    assert_books(&sent, &rep, &[]);
    assert_eq!(pcap_records(&file), rep.packets, "every record whole, every delivered packet in the file");
    // A failed direct write loses what was staged (up to 4 MiB, counted);
    // once space returned, the second stream went to the file whole.
    assert!(rep.packets >= second.packets, "writing resumed after space returned: {rep:?}");
}

#[test]
fn the_counters_file_has_the_mode_asked_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique("mode");
    let cap = capture_named(None, &name, &["--listen", &free_loopback(), "--file-mode", "0640"]);
    let mode = std::fs::metadata(stats_path(&name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    stop(cap);
}
