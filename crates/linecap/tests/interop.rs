//! Interoperability with the tools of the field, run in the Python venv
//! that .ci/run provisions (`LINECAP_PYTHON` with spead2, baseband, numpy):
//! spead2's sender into linecap's SPEAD assembly; linecap's SPEAD generator
//! into spead2's receiver; VDIF frames written by baseband, assembled and
//! compared byte for byte (the bytes are the 2-bit samples).

mod common;

use std::process::{Command, Stdio};

use common::*;

/// The Python peers are heavy (thread pools, busy receivers): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs a command to completion, killing it after `secs` (a hung peer
/// fails the test instead of holding CI).
fn output_within(cmd: &mut Command, secs: u64) -> std::process::Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("peer did not finish within {secs} s: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn python_with(modules: &str) -> Option<String> {
    let py = std::env::var("LINECAP_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&py).args(["-c", &format!("import {modules}")]).output() {
        Ok(o) if o.status.success() => Some(py),
        _ => {
            skip_or_fail(&format!("{py} lacks {modules} (.ci/run installs them in .ci/venv)"));
            None
        }
    }
}

fn script(name: &str) -> String {
    format!("{}/tests/py/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn spead2_sender_is_assembled_heap_for_heap() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(py) = python_with("spead2, numpy") else { return };
    let dir = TempDir::new("spead-in");
    let addr = free_loopback();
    let port = addr.rsplit(':').next().unwrap();
    let (n, size) = (300u64, 1024usize);
    let cap = capture(
        None,
        &[
            "--listen",
            &addr,
            "--blocks",
            dir.0.to_str().unwrap(),
            "--format",
            "spead",
            "--slot-bytes",
            "1024",
            "--slots",
            "64",
        ],
    );
    let out = output_within(
        Command::new(&py).arg(script("spead2_send.py")).args([port, &n.to_string(), &size.to_string()]),
        60,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rep = stop(cap);
    let b = rep.blocks.unwrap();
    assert_eq!(b.assembly.placed, n, "{b:?}");
    assert_eq!(b.assembly.malformed, 1, "the end-of-stream heap is not data");
    assert_eq!(check_spead2_heaps(&dir, 64, size), n);
}

/// Checks every heap present in the block files against what
/// spead2_send.py sent (byte i of heap h is (7 i + 131 h) mod 256, heaps
/// counted from 1, one heap per slot); returns how many it checked.
fn check_spead2_heaps(dir: &TempDir, slots: usize, size: usize) -> u64 {
    let mut checked = 0;
    for (s, data) in read_blocks(&dir.0) {
        for slot in 0..slots {
            if !s.is_present(0, slot) {
                continue;
            }
            let h = s.first_seq + slot as u64 - 1;
            let got = &data[slot * size..(slot + 1) * size];
            let want: Vec<u8> = (0..size as u64).map(|i| ((i * 7 + h * 131) & 0xff) as u8).collect();
            assert_eq!(got, &want[..], "heap {}", h + 1);
            checked += 1;
        }
    }
    checked
}

#[test]
fn spead2_heaps_of_unequal_packets_are_assembled_heap_for_heap() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(py) = python_with("spead2, numpy") else { return };
    let dir = TempDir::new("spead-heap");
    let addr = free_loopback();
    let port = addr.rsplit(':').next().unwrap();
    // 4000-byte heaps in 1024-byte packets: payloads of unequal lengths
    // (the first packet also carries the item pointer), offsets that are
    // not multiples of any one payload length.
    let (n, size, slots) = (200u64, 4000usize, 50usize);
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
            &size.to_string(),
            "--slots",
            &slots.to_string(),
        ],
    );
    let out = output_within(
        Command::new(&py).arg(script("spead2_send.py")).args([
            port,
            &n.to_string(),
            &size.to_string(),
            "1024",
        ]),
        60,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rep = stop(cap);
    let b = rep.blocks.unwrap();
    let a = &b.assembly;
    assert_eq!(a.packets, a.accounted(), "{a:?}");
    assert_eq!((a.duplicates, a.late, a.no_buffer), (0, 0, 0), "{a:?}");
    assert!(a.placed >= 5 * n, "several packets per heap: {a:?}");
    assert_eq!(check_spead2_heaps(&dir, slots, size), n, "every heap complete and byte for byte");
}

#[test]
fn spead2_receiver_takes_linecap_heaps() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(py) = python_with("spead2") else { return };
    let addr = free_loopback();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let n = 500u64;
    let mut rx = Command::new(&py)
        .arg(script("spead2_recv.py"))
        .args([&port, &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(rx.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.contains("ready"), "{line}");
    // spead2 starts its reader threads asynchronously.
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Heaps of 2 packets of 256 payload bytes (304-byte datagrams).
    send(
        None,
        &[
            "--to",
            &addr,
            "--format",
            "spead",
            "--heap-packets",
            "2",
            "--size",
            "304",
            "--count",
            &(2 * n).to_string(),
            "--rate",
            "20kpps",
        ],
    );
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    rx.wait().unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["heaps"], n, "{v}");
    assert_eq!(v["complete"], n, "{v}");
    assert_eq!(v["bad"], 0, "{v}");
}

#[test]
fn baseband_vdif_frames_are_assembled_sample_for_sample() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(py) = python_with("baseband, numpy, astropy") else { return };
    let dir = TempDir::new("vdif");
    let file = dir.0.join("frames.vdif");
    let blocks_dir = dir.0.join("blocks");
    std::fs::create_dir(&blocks_dir).unwrap();
    let addr = free_loopback();
    let port = addr.rsplit(':').next().unwrap();
    let (nframes, nthread) = (400u64, 2u64);
    let cap = capture(
        None,
        &[
            "--listen",
            &addr,
            "--blocks",
            blocks_dir.to_str().unwrap(),
            "--format",
            "vdif",
            "--frames-per-second",
            "1000",
            "--channels",
            "2",
            "--slot-bytes",
            "128",
            "--slots",
            "100",
        ],
    );
    let out = output_within(
        Command::new(&py).arg(script("baseband_vdif.py")).args([
            file.to_str().unwrap(),
            port,
            &nframes.to_string(),
            &nthread.to_string(),
        ]),
        120,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rep = stop(cap);
    let b = rep.blocks.unwrap();
    // Frames their sender flagged invalid arrive, are counted as such, and
    // leave their slots empty in the loss map.
    let invalid = info["invalid_frames"].as_u64().unwrap();
    assert!(invalid > 0);
    assert_eq!(
        (b.assembly.placed, b.assembly.invalid, b.assembly.malformed),
        (nframes * nthread - invalid, invalid, 0),
        "{b:?}"
    );
    // Our reading of baseband's header agrees with baseband's own.
    let raw = std::fs::read(&file).unwrap();
    let (h, _) = linecap::format::vdif::parse(&raw).unwrap();
    assert_eq!(u64::from(h.seconds), info["seconds"].as_u64().unwrap());
    assert_eq!(u64::from(h.frame), info["frame_nr"].as_u64().unwrap());
    assert_eq!(u64::from(h.thread), info["thread_id"].as_u64().unwrap());
    assert_eq!(h.frame_bytes as u64, info["frame_nbytes"].as_u64().unwrap());
    // Every frame's samples are in its (thread, time) slot.
    let assembled = read_blocks(&blocks_dir);
    let mut checked = 0;
    for frame in raw.chunks(h.frame_bytes) {
        let (fh, data) = linecap::format::vdif::parse(frame).unwrap();
        let seq = u64::from(fh.seconds) * 1000 + u64::from(fh.frame);
        let (s, d) =
            assembled.iter().find(|(s, _)| s.first_seq <= seq && seq < s.first_seq + 100).expect("block");
        let slot = (seq - s.first_seq) as usize;
        let ch = usize::from(fh.thread);
        if fh.invalid {
            assert!(!s.is_present(ch, slot), "invalid frame {seq} thread {ch} left out");
            checked += 1;
            continue;
        }
        assert!(s.is_present(ch, slot));
        let at = (ch * 100 + slot) * 128;
        assert_eq!(&d[at..at + 128], data, "seq {seq} thread {ch}");
        checked += 1;
    }
    assert_eq!(checked, nframes * nthread);
}
