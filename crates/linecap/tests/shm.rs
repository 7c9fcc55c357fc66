//! The shared-memory block ring: read live by the shipped Python reader
//! (numpy), lossy and lossless behaviour with a reader that stops, and a
//! name already in use.

mod common;

use std::process::Command;

use common::*;

/// A Python with numpy (`LINECAP_PYTHON`, else `python3`), or None with the reason printed.
fn python() -> Option<String> {
    let py = std::env::var("LINECAP_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&py).args(["-c", "import numpy"]).output() {
        Ok(o) if o.status.success() => Some(py),
        _ => {
            skip_or_fail(&format!(
                "the Python reader check: {py} has no numpy (.ci/run installs it in a venv)"
            ));
            None
        }
    }
}

fn reader_script() -> String {
    format!("{}/../../python/linecap_blocks.py", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn python_reader_reads_a_running_capture() {
    let Some(py) = python() else { return };
    let name = unique("ring");
    let addr = free_loopback();
    let cap = capture(
        None,
        &["--listen", &addr, "--shm", &name, "--shm-lossless", "--slots", "64", "--slot-bytes", "56"],
    );
    let reader = Command::new(&py)
        .arg(reader_script())
        .args([name.as_str(), "--verify-seq"])
        .env("LINECAP_RING_TIMEOUT", "10")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let the interpreter start (numpy import) before the stream does.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let sent = send(None, &["--to", &addr, "--count", "3200", "--rate", "20kpps", "--size", "64"]);
    let rep = stop(cap);
    let out = reader.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (done, blocks) = lines.split_last().expect("reader printed");
    assert_eq!(done["done"], true, "{text}");
    let b = rep.blocks.unwrap();
    assert_eq!(blocks.len() as u64, b.written, "the reader saw every published block");
    assert!(blocks.iter().all(|l| l["bad"] == 0 && l["overwritten"] == false), "{text}");
    let present: u64 = blocks.iter().map(|l| l["present"].as_u64().unwrap()).sum();
    // Blocks dropped at the writer's queue under load are counted.
    assert_eq!(present + b.dropped_packets, b.assembly.placed, "{b:?}");
    assert_eq!(b.assembly.packets, rep.received);
    assert_eq!(b.assembly.packets, b.assembly.accounted());
    assert!(b.assembly.placed > 0 && b.assembly.placed <= sent.packets);
    let _ = std::fs::remove_file(linecap::sink::shmring::ring_path(&name));
}

#[test]
fn a_reader_that_stops_is_counted_never_a_deadlock() {
    // No reader at all. Lossy: unread blocks are overwritten and counted.
    let name = unique("lossy");
    let addr = free_loopback();
    let cap = capture(
        None,
        &["--listen", &addr, "--shm", &name, "--shm-slots", "2", "--slots", "32", "--slot-bytes", "56"],
    );
    send(None, &["--to", &addr, "--count", "640", "--rate", "20kpps", "--size", "64"]);
    let b = stop(cap).blocks.unwrap();
    assert_eq!(b.written, 20);
    assert_eq!(b.ring_overwritten, 18, "{b:?}");
    let o = linecap(&["blocks", "inspect", &name]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("published 20") && text.contains("overwritten 18") && text.contains("finished"),
        "{text}"
    );
    let _ = std::fs::remove_file(linecap::sink::shmring::ring_path(&name));
    // Lossless: the writer waits, the queue fills and drops whole blocks
    // (counted), and the capture still stops when told.
    let name = unique("lossless");
    let cap = capture(
        None,
        &[
            "--listen",
            &addr,
            "--shm",
            &name,
            "--shm-lossless",
            "--shm-slots",
            "2",
            "--block-queue",
            "2",
            "--slots",
            "32",
            "--slot-bytes",
            "56",
        ],
    );
    send(None, &["--to", &addr, "--count", "640", "--rate", "20kpps", "--size", "64"]);
    let b = stop(cap).blocks.unwrap();
    assert_eq!(b.written, 2, "only the ring's two slots were ever free: {b:?}");
    assert!(b.ring_waits > 0, "{b:?}");
    assert_eq!(b.written + b.dropped_blocks + b.ring_dropped, b.assembly.blocks, "{b:?}");
    let _ = std::fs::remove_file(linecap::sink::shmring::ring_path(&name));
}

#[test]
fn a_ring_name_in_use_is_refused() {
    let name = unique("busy");
    let addr = free_loopback();
    let first = capture(None, &["--listen", &addr, "--shm", &name]);
    let o = linecap(&["capture", "--listen", "127.0.0.1:0", "--shm", &name, "--count", "1"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("in use by process"), "{e}");
    stop(first);
    let _ = std::fs::remove_file(linecap::sink::shmring::ring_path(&name));
}
