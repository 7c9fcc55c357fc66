//! The Python package (`python/`): its readers of block files and counters
//! files, run with `python -m unittest` against what a real capture wrote.

mod common;

use std::process::Command;

use common::*;

/// Removes a named capture's counters file (a named capture keeps it).
struct CountersFile(std::path::PathBuf);

impl Drop for CountersFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn python_readers_read_what_a_capture_wrote() {
    let py = std::env::var("LINECAP_PYTHON").unwrap_or_else(|_| "python3".into());
    if !Command::new(&py).args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success()) {
        return skip_or_fail(&format!("{py} has no numpy (.ci/run makes a venv with it)"));
    }
    let dir = TempDir::new("pypkg");
    let blocks = dir.0.join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    let name = unique("py");
    let counters = CountersFile(linecap::stats::stats_path(&name));
    let addr = free_loopback();
    // Run directly (not through `orchestrate`, which removes the counters
    // file of an ended capture): it ends by itself after the count.
    let child = Command::new(exe())
        .args(["capture", "--quiet", "--json", "--name", &name, "--listen", &addr, "--count", "20000"])
        .args(["--blocks", blocks.to_str().unwrap(), "--slots", "1024"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cap = Reaped::new(child);
    let t0 = std::time::Instant::now();
    while linecap::stats::Snapshot::read(&name, &counters.0).is_err() {
        assert!(t0.elapsed().as_secs() < 20, "the capture never published its counters");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sent = send(None, &["--to", &addr, "--count", "20000", "--rate", "40kpps", "--drop", "0.5%"]);
    let out = cap.wait_with_output();
    let rep: linecap::capture::CaptureReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_books(&sent, &rep, &[]);
    let b = rep.blocks.as_ref().unwrap();
    assert_eq!(b.dropped_blocks, 0, "{rep:#?}");
    let src = format!("{}/../../python", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&py)
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(format!("{src}/tests"))
        .env("PYTHONPATH", format!("{src}/src"))
        .env("LINECAP_TEST_BLOCKS", &blocks)
        .env("LINECAP_TEST_COUNTERS", &counters.0)
        .env("LINECAP_TEST_PACKETS", rep.received.to_string())
        .env("LINECAP_TEST_NBLOCKS", b.written.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("skipped"), "every Python test ran: {text}");
}
