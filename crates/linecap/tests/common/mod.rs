//! Helpers shared by the integration tests: the binary under test, a
//! check that fails where a peer was promised and skips elsewhere, free loopback ports, and running
//! capture/send children through the same orchestration the demo uses.
#![allow(dead_code)]

use linecap::capture::DropPlace;
use std::path::PathBuf;
use std::process::{Command, Output};

use linecap::capture::CaptureReport;
use linecap::orchestrate::{self, CaptureChild};
use linecap::send::socket::SendReport;

/// The `linecap` binary built for these tests.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_linecap"))
}

/// A check that needs a tool or peer this machine lacks (tshark, tcpdump,
/// promtool, setpriv, the Python packages): where the run promised them
/// (`LINECAP_REQUIRE_PEERS`, set by `.ci/run`, which installs them) it
/// fails; elsewhere it says on stderr that it skipped.
pub fn skip_or_fail(reason: &str) {
    if std::env::var_os("LINECAP_REQUIRE_PEERS").is_some() {
        panic!("{reason}, but LINECAP_REQUIRE_PEERS says this run has every peer");
    }
    eprintln!("skipped: {reason}");
}

/// A loopback address with a port that was free a moment ago.
pub fn free_loopback() -> String {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().to_string()
}

/// A unique counters-file name for a capture in this test process.
pub fn unique(prefix: &str) -> String {
    linecap::testbed::unique_name(prefix)
}

/// Starts a capture child (no live display).
pub fn capture(netns: Option<&str>, args: &[&str]) -> CaptureChild {
    capture_named(netns, &unique("c"), args)
}

/// Starts a capture child whose counters file has this name.
pub fn capture_named(netns: Option<&str>, name: &str, args: &[&str]) -> CaptureChild {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    CaptureChild::spawn(&exe(), netns, name, &args, false).expect("capture starts")
}

/// Runs a sender child to completion.
pub fn send(netns: Option<&str>, args: &[&str]) -> SendReport {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    orchestrate::send(&exe(), netns, &args).expect("send runs")
}

/// Stops a capture after letting the last packets arrive (its counters
/// still for 250 ms, at most 10 s).
pub fn stop(c: CaptureChild) -> CaptureReport {
    c.settle(std::time::Duration::from_secs(10));
    c.stop().expect("capture report")
}

/// `linecap replay --json` with `args`, which must succeed; its report.
pub fn replay(args: &[&str]) -> linecap::send::replay::ReplayReport {
    let mut all = vec!["replay", "--json"];
    all.extend_from_slice(args);
    let o = linecap(&all);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Runs linecap with arguments and returns its output.
pub fn linecap(args: &[&str]) -> Output {
    Command::new(exe()).args(args).output().expect("linecap runs")
}

/// A fresh temporary folder, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(unique(&format!("lc-{tag}-")));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts the accounting identity with the network's own drops.
pub fn assert_books(sent: &SendReport, cap: &CaptureReport, network: &[(DropPlace, u64)]) {
    let id = linecap::orchestrate::Identity::close(sent, cap, network);
    assert!(id.holds(), "books do not close: {}\n{cap:#?}", id.line());
}

/// Asserts a clean failure: exit status 2, `needle` in the message, no panic.
pub fn assert_fails_with(o: Output, needle: &str) {
    assert_exit(o, 1, needle);
}

/// A usage error (exit status 2) that says `needle`.
pub fn assert_usage_error(o: Output, needle: &str) {
    assert_exit(o, 2, needle);
}

/// Exit status `code` (1 runtime, 2 usage, 3 loss) and a message with `needle`.
pub fn assert_exit(o: Output, code: i32, needle: &str) {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{e}");
    assert!(e.contains(needle), "expected '{needle}' in: {e}");
    assert!(!e.contains("panicked"), "{e}");
}

/// The blocks a `--blocks DIR` capture wrote: each sidecar with its data, by first sequence number.
pub fn read_blocks(dir: &std::path::Path) -> Vec<(linecap::sink::blocks::Sidecar, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let s: linecap::sink::blocks::Sidecar =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            let d = std::fs::read(p.with_file_name(&s.data)).unwrap();
            (s, d)
        })
        .collect();
    v.sort_by_key(|(s, _)| s.first_seq);
    v
}

/// A child process that is killed and reaped when the test ends, also when
/// it ends by a failed assertion: no test leaves a process behind.
pub struct Reaped(Option<std::process::Child>);

impl Reaped {
    /// Takes charge of `child`.
    pub fn new(child: std::process::Child) -> Self {
        Reaped(Some(child))
    }

    /// Its pid.
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    /// Waits for it to end by itself (after a signal the test sent).
    pub fn wait_with_output(mut self) -> Output {
        self.0.take().expect("child present").wait_with_output().expect("child waited for")
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `linecap stats --serve` on a free loopback port: the child and
/// the address it serves on.
pub fn start_exporter() -> (Reaped, String) {
    use std::io::BufRead;
    let mut exporter = Command::new(exe())
        .args(["stats", "--serve", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(exporter.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let at = line.trim().strip_prefix("serving http://").and_then(|l| l.strip_suffix("/metrics")).unwrap();
    (Reaped::new(exporter), at.to_string())
}

/// Checks Prometheus text with `promtool check metrics`, when installed.
pub fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        skip_or_fail("promtool not installed (.ci/run installs it)");
        return;
    };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// One HTTP GET on a fresh connection: (status line, body).
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Runs `exe` as user nobody with no inherited capabilities (only the
/// file capabilities of `exe` apply); `None` (skipped, or failed where
/// peers are required) without setpriv.
pub fn run_as_nobody(exe: &std::path::Path, args: &[&str]) -> Option<Output> {
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(exe)
        .args(args)
        .output();
    match o {
        Ok(o) => Some(o),
        Err(e) => {
            skip_or_fail(&format!("setpriv unavailable ({e})"));
            None
        }
    }
}

/// A live capture over loopback of `count` packets that writes `file` and
/// assembles blocks into `blocks`: its report, books checked.
pub fn record_loopback(file: &std::path::Path, blocks: &std::path::Path, count: &str) -> CaptureReport {
    let addr = free_loopback();
    let cap = capture(
        None,
        &["--listen", &addr, "--write", file.to_str().unwrap(), "--blocks", blocks.to_str().unwrap()],
    );
    let sent = send(None, &["--to", &addr, "--count", count, "--rate", "40kpps"]);
    let rep = stop(cap);
    assert_books(&sent, &rep, &[]);
    rep
}

/// The number of a capture's counter in a stage, read while it runs.
pub fn counter(name: &str, stage: &str, counter: &str) -> u64 {
    let o = linecap(&["stats", name, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let snaps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stages = snaps[0]["stages"].as_array().unwrap();
    let st = stages.iter().find(|s| s["name"] == stage).unwrap_or_else(|| panic!("no stage {stage}"));
    st["counters"].as_array().unwrap().iter().find(|c| c[0] == counter).unwrap()[1].as_u64().unwrap()
}
