//! Bad input: each gets a one-line error that says what to do, and a
//! non-zero exit status, never a panic.

mod common;

use linecap::capture::DropPlace;
use std::process::Output;

use common::*;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean runtime failure: exit 1, one "linecap: error:" line mentioning `needle`.
fn assert_clean_error(o: &Output, needle: &str) {
    assert_clean_exit(o, 1, needle);
}

/// Asserts a clean usage error: exit 2, one "linecap: error:" line mentioning `needle`.
fn assert_clean_usage(o: &Output, needle: &str) {
    assert_clean_exit(o, 2, needle);
}

fn assert_clean_exit(o: &Output, code: i32, needle: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| l.starts_with("linecap: error:")).collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(lines[0].contains(needle), "expected '{needle}' in: {e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn unknown_network_namespace() {
    let o = linecap(&["capture", "--netns", "no-such-ns-lc", "--duration", "1s"]);
    assert_clean_error(&o, "network namespace 'no-such-ns-lc' not found");
    let o = linecap(&["send", "--netns", "no-such-ns-lc", "--to", "198.18.0.2:9", "--count", "1"]);
    assert_clean_error(&o, "not found");
}

#[test]
fn address_not_on_this_host() {
    let o = linecap(&["capture", "--listen", "198.19.255.254:9000", "--duration", "1s"]);
    assert_clean_error(&o, "no interface has this address");
}

#[test]
fn port_in_use() {
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let o = linecap(&["capture", "--listen", &addr, "--duration", "1s"]);
    assert_clean_error(&o, "another program holds this port");
}

#[test]
fn output_folder_missing_or_not_writable() {
    let o = linecap(&[
        "capture",
        "--listen",
        "127.0.0.1:0",
        "--write",
        "/nonexistent-lc/dir/x.pcap",
        "--count",
        "1",
    ]);
    assert_clean_error(&o, "does not exist");
    // /proc refuses new files even to root.
    let o = linecap(&["capture", "--listen", "127.0.0.1:0", "--write", "/proc/x.pcap", "--count", "1"]);
    assert_clean_error(&o, "not writable");
}

#[test]
fn bad_values_are_refused_by_name() {
    let o = linecap(&["send", "--to", "127.0.0.1:9", "--rate", "fast", "--count", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--rate"), "{}", stderr(&o));
    let o = linecap(&["send", "--to", "127.0.0.1:9", "--size", "4", "--count", "1"]);
    assert_clean_usage(&o, "--size must be at least 8");
    let o = linecap(&["send", "--to", "127.0.0.1:9"]);
    assert_clean_usage(&o, "give --count or --duration");
    let o = linecap(&["stats", "no-such-capture-lc"]);
    assert_clean_error(&o, "no counters for capture 'no-such-capture-lc'");
    let o = linecap(&["testbed", "status", "--name", "Bad_Name"]);
    assert_clean_usage(&o, "must be 1-12 characters");
    // This session's options, each misused once.
    let o = linecap(&["capture", "--listen", "127.0.0.1:0", "--backend", "uring", "--busy-poll", "20"]);
    assert_clean_usage(&o, "--busy-poll applies to the socket and xdp backends");
    // The receive mode is one of three, named in the error.
    let o = linecap(&["capture", "--listen", "127.0.0.1:0", "--mode", "ring"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("[possible values: auto, recv, recvmmsg]"), "{}", stderr(&o));
    let o = linecap(&["send", "--to", "127.0.0.1:9", "--src-port", "4000", "--count", "1"]);
    assert_clean_usage(&o, "--src-port applies to the frame-building backends");
    for (args, flag) in [
        (&["capture", "--listen", "127.0.0.1:0", "--relay-no-gso"][..], "--relay"),
        (&["capture", "--listen", "127.0.0.1:0", "--write-format", "pcapng"][..], "--write"),
        (&["capture", "--listen", "127.0.0.1:0", "--relay", "nowhere"][..], "--relay"),
        (&["capture", "--listen", "127.0.0.1:0", "--format", "spead-hep"][..], "--format"),
        // Session 3's options.
        (&["capture", "--listen", "127.0.0.1:0", "--file-mode", "0400"][..], "--file-mode"),
        (&["capture", "--listen", "127.0.0.1:0", "--file-mode", "1777"][..], "--file-mode"),
        (&["capture", "--listen", "127.0.0.1:0", "--file-mode", "rw-r--r--"][..], "--file-mode"),
        (&["capture", "--listen", "127.0.0.1:0", "--gro-always", "--no-gro"][..], "--gro-always"),
        (
            &["capture", "--listen", "127.0.0.1:0", "--rotate-size", "100k", "--write", "/tmp/x.pcap"][..],
            "--rotate-size",
        ),
        (&["capture", "--backend", "afpacket", "--iface", "lo", "--plain-loop"][..], "--plain-loop"),
        (&["stats", "--prune", "--json"][..], "--prune"),
    ] {
        let o = linecap(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(flag) && !stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
    let o = linecap(&["testbed", "up", "--name", "lcq", "--queues", "0"]);
    assert_clean_usage(&o, "--queues must be 1 to 64");
    // A port already taken: the exporter says so and exits.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let o = linecap(&["stats", "--serve", &taken.local_addr().unwrap().to_string()]);
    assert_clean_error(&o, "cannot listen on");
}

/// Runs linecap as user nobody, to check the messages for missing privileges.
fn as_nobody(args: &[&str]) -> Option<Output> {
    assert!(linecap::sys::is_root(), "dropping privileges needs root (the test is ignored elsewhere)");
    run_as_nobody(&exe(), args)
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root: setpriv drops to user nobody")]
fn root_only_steps_name_the_capability() {
    let Some(o) = as_nobody(&["testbed", "up", "--name", "lcnopriv"]) else { return };
    assert_clean_error(&o, "needs CAP_NET_ADMIN");
    // A namespace that exists, entered without privilege.
    let tb = linecap::testbed::Testbed::up(&linecap::testbed::TestbedOptions::new(&unique("p"))).unwrap();
    let Some(o) = as_nobody(&["capture", "--netns", &tb.ns_rx, "--duration", "1s"]) else { return };
    assert_clean_error(&o, "needs CAP_SYS_ADMIN");
    let Some(o) = as_nobody(&[
        "capture",
        "--backend",
        "xdp",
        "--iface",
        "lo",
        "--listen",
        "127.0.0.1:9",
        "--duration",
        "1s",
    ]) else {
        return;
    };
    assert_clean_error(&o, "CAP_PERFMON");
}

/// A file removed when the test ends, however it ends.
struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root: setpriv drops to user nobody")]
fn busy_polling_the_kernel_refuses_is_said_once_and_the_capture_goes_on() {
    // As user nobody the kernel refuses busy polling (it needs
    // CAP_NET_ADMIN) on each of the two sockets: one warning, and the
    // capture receives every datagram, waiting in the kernel.
    let addr = free_loopback();
    let name = unique("bpr");
    // A named capture keeps its counters file; this one is nobody's, which
    // `stats --prune` run by root would leave alone.
    let _file = RemovedOnDrop(linecap::stats::stats_path(&name));
    let sender = {
        let (addr, name) = (addr.clone(), name.clone());
        std::thread::spawn(move || {
            // The counters file reads as one once published, after the bind.
            let path = linecap::stats::stats_path(&name);
            let ready = || linecap::stats::Snapshot::read(&name, &path).is_ok_and(|s| s.pid != 0);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !ready() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            send(None, &["--to", &addr, "--count", "2000", "--rate", "20kpps"])
        })
    };
    let args = ["capture", "--listen", &addr, "--threads", "2", "--busy-poll", "20", "--count", "2000"];
    let Some(o) = as_nobody(&[&args[..], &["--duration", "20s", "--name", &name, "--json"]].concat()) else {
        return;
    };
    let sent = sender.join().unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert_eq!(e.matches("receiving without busy polling").count(), 1, "said once for two sockets: {e}");
    assert!(e.contains("busy polling needs CAP_NET_ADMIN"), "{e}");
    let rep: linecap::capture::CaptureReport = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((rep.received, sent.packets), (2000, 2000), "{e}");
    assert!(!rep.kernel.contains_key("busy_poll_gap_us"), "no busy polling: {:?}", rep.kernel);
    // The counters keep the refusal (EPERM is 1), and doctor names it.
    let snap = linecap::stats::Snapshot::read(&name, &linecap::stats::stats_path(&name)).unwrap();
    assert_eq!(snap.total(linecap::stats::SettingsIdx::BusyPollRefused), 1);
    let o = linecap(&["doctor", &name]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("refused by the kernel (errno 1)") && out.contains("CAP_NET_ADMIN"), "{out}");
}

#[test]
fn stats_reads_a_running_capture_from_another_process() {
    let addr = free_loopback();
    let name = unique("s");
    let cap = capture_named(None, &name, &["--listen", &addr, "--verify", "seq"]);
    let sent = send(None, &["--to", &addr, "--count", "2000", "--rate", "20kpps"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = linecap(&["stats", &name, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let snaps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stages = snaps[0]["stages"].as_array().unwrap();
    let rx = stages.iter().find(|s| s["name"] == "rx.0").unwrap();
    let packets = rx["counters"].as_array().unwrap().iter().find(|c| c[0] == "packets").unwrap()[1].as_u64();
    assert_eq!(packets, Some(sent.packets));
    let o = linecap(&["stats", &name, "--prometheus"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        text.contains(&format!(
            "linecap_rx_packets_total{{capture=\"{name}\",thread=\"0\"}} {}",
            sent.packets
        ))
    );
    promtool_check(&text);
    let rep = cap.stop().unwrap();
    assert_books(&sent, &rep, &[]);
}

#[test]
fn stats_serve_exports_running_captures_over_http() {
    let (exporter, at) = start_exporter();
    let addr = free_loopback();
    let name = unique("h");
    let cap = capture_named(None, &name, &["--listen", &addr]);
    let sent = send(None, &["--to", &addr, "--count", "2000", "--rate", "20kpps"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (status, body) = http_get(&at, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        body.contains(&format!(
            "linecap_rx_packets_total{{capture=\"{name}\",thread=\"0\"}} {}",
            sent.packets
        )),
        "{body}"
    );
    promtool_check(&body);
    assert_eq!(http_get(&at, "/nope").0, "HTTP/1.1 404 Not Found");
    cap.stop().unwrap();
    // A finished capture is no longer a target.
    let (_, body) = http_get(&at, "/metrics");
    assert!(!body.contains(&format!("capture=\"{name}\"")), "{body}");
    linecap::sys::send_signal(exporter.id(), libc::SIGINT).unwrap();
    let out = exporter.wait_with_output();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn doctor_names_where_a_capture_lost_packets_and_the_fix() {
    // A capture that cannot run while the stream arrives: its socket
    // buffer overflows, for certain.
    let addr = free_loopback();
    let name = unique("d");
    let cap = capture_named(None, &name, &["--listen", &addr, "--rcvbuf", "64k"]);
    linecap::sys::send_signal(cap.pid(), libc::SIGSTOP).unwrap();
    let sent = send(None, &["--to", &addr, "--count", "20000", "--rate", "max"]);
    linecap::sys::send_signal(cap.pid(), libc::SIGCONT).unwrap();
    // Asked while the capture runs (its counters are published every 100 ms).
    std::thread::sleep(std::time::Duration::from_millis(400));
    let o = linecap(&["doctor", &name]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(3), "a loss found is status 3: {}", stderr(&o));
    let o = linecap(&["doctor", &name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rep = cap.stop().unwrap();
    let dropped = rep.drops[&DropPlace::SocketOverflow];
    assert!(dropped > 0, "{rep:#?}");
    assert_books(&sent, &rep, &[]);
    let first = text.lines().next().unwrap();
    let dropped_text = linecap::doctor::thousands(dropped);
    assert!(first.starts_with(&format!("LOSS  capture '{name}': receive: {dropped_text} (")), "{text}");
    assert!(first.contains("offered) packets dropped"), "{text}");
    assert!(text.contains("socket receive buffer overflowed") && text.contains("--rcvbuf"), "{text}");
    assert_eq!(v[0]["level"], "loss");
    assert_eq!(v[0]["capture"], name.as_str());
    assert_eq!(v[0]["counter"], "kernel_drops");
    assert_eq!(v[0]["count"], dropped);
    assert!(v[0]["setting"].as_str().unwrap().starts_with("receive buffer"), "{v}");
    assert_clean_error(&linecap(&["doctor", "no-such-capture"]), "no counters for capture 'no-such-capture'");
}

#[test]
fn prune_removes_ended_captures_files_and_keeps_running_ones() {
    let ended = unique("ended");
    let o = linecap(&[
        "capture",
        "--listen",
        &free_loopback(),
        "--name",
        &ended,
        "--duration",
        "200ms",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ended_path = linecap::stats::stats_path(&ended);
    assert!(ended_path.exists(), "a named capture keeps its counters file");
    let running = unique("running");
    let cap = capture_named(None, &running, &["--listen", &free_loopback()]);
    let o = linecap(&["stats", "--prune"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("removed linecap-{ended}")), "{out}");
    assert!(!ended_path.exists());
    assert!(linecap::stats::stats_path(&running).exists(), "a running capture's file stays");
    cap.stop().unwrap();
}

/// A machine without the memory for the writer's buffer: the capture says
/// so in one line, names the flag that helps, and creates no file. The
/// buffer's pages are put in place when the capture starts, so the refusal
/// comes then, not as a stall or a crash mid-capture.
#[test]
fn a_writer_buffer_the_memory_cannot_hold_is_refused_before_any_file() {
    if std::process::Command::new("prlimit").arg("--version").output().is_err() {
        return skip_or_fail(
            "a_writer_buffer_the_memory_cannot_hold_is_refused_before_any_file needs prlimit (util-linux)",
        );
    }
    let dir = TempDir::new("membuf");
    let file = dir.0.join("never.pcap");
    let listen = free_loopback();
    // 400 MiB of address space: the program runs, a 1 GiB buffer cannot.
    let o = std::process::Command::new("prlimit")
        .arg(format!("--as={}", 400u64 << 20))
        .arg("--")
        .arg(exe())
        .args(["capture", "--listen", &listen, "--write", file.to_str().unwrap(), "--sink-buffer", "1G"])
        .args(["--duration", "2s"])
        .output()
        .unwrap();
    assert_clean_error(&o, "give a smaller --sink-buffer");
    assert!(!file.exists(), "no file is left behind");
}
