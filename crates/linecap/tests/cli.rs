//! The command line as scripts and services use it (issue 12): strict
//! options, exit statuses, `--config`, completions and manual page,
//! `capture --metrics`, `capture --user`, and `send` to a closed port.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use linecap::stats::{Snapshot, stats_path};

/// Waits until capture `name` runs (its counters file is locked by it).
fn wait_running(name: &str, child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if Snapshot::read(name, &stats_path(name)).is_ok_and(|s| s.running) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("capture '{name}' ended before it ran: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("capture '{name}' did not start within 20 s");
}

fn spawn_capture(name: &str, args: &[&str]) -> Reaped {
    let mut child = Command::new(exe())
        .args(["capture", "--name", name, "--json", "--quiet"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(name, &mut child);
    Reaped::new(child)
}

/// Removes a named capture's kept counters file.
struct Counters(String);

impl Drop for Counters {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(stats_path(&self.0));
    }
}

#[test]
fn options_that_do_not_apply_are_refused_by_name() {
    let lo = free_loopback();
    for (args, needle) in [
        (&["capture", "--iface", "lo", "--count", "1"][..], "--iface applies to --backend afpacket and xdp"),
        (
            &["capture", "--listen", &lo, "--raw", "header=8,counter=0:8:be,payload=8"][..],
            "--raw needs --blocks or --shm",
        ),
        (&["capture", "--listen", &lo, "--format", "vdif"][..], "--format needs --blocks or --shm"),
        (&["capture", "--listen", &lo, "--fanout", "lb"][..], "--fanout applies to --backend afpacket"),
        (&["capture", "--listen", &lo, "--rotate-time", "10s"][..], "--rotate-time needs --write"),
        (&["capture", "--listen", &lo, "--shm-slots", "4"][..], "--shm-slots needs --shm"),
        (&["capture", "--listen", &lo, "--queues", "2"][..], "--queues applies to --backend xdp"),
        (
            &["capture", "--backend", "afpacket", "--iface", "lo", "--rcvbuf", "1M"][..],
            "--rcvbuf applies to the socket",
        ),
        (
            &["capture", "--backend", "afpacket", "--iface", "lo", "--listen", &lo][..],
            "--listen applies to the socket",
        ),
        (&["capture", "--listen", &lo, "--cpus", "100000"][..], "CPU 100000 does not exist"),
        (&["capture", "--listen", &lo, "--cpus", "3-1"][..], "lower CPU to the higher"),
        (&["capture", "--listen", &lo, "--count", "0"][..], "must be positive"),
        (&["capture", "--listen", &lo, "--busy-poll", "0"][..], "spin without polling the device"),
        (&["capture", "--listen", &lo, "--batch", "0"][..], "a batch must hold at least 1"),
        (&["send", "--to", &lo, "--batch", "0", "--count", "1"][..], "a batch must hold at least 1"),
        (&["capture", "--listen", &lo, "--busy-poll", "4294967295"][..], "than the kernel takes"),
        (&["capture", "--listen", &lo, "--threads", "-1"][..], "--threads -1: must be positive"),
        (&["capture", "--listen", &lo, "--user", "no-such-user-lc"][..], "no such user"),
        (&["send", "--to", &lo, "--rate", "0", "--count", "1"][..], "must be positive"),
        (&["send", "--to", &lo, "--count", "-5"][..], "must be positive"),
        (&["send", "--to", &lo, "--iface", "lo", "--count", "1"][..], "--iface applies to the afpacket"),
        (
            &["send", "--to", &lo, "--gso", "--backend", "afpacket", "--iface", "lo", "--count", "1"][..],
            "--gso applies",
        ),
        (
            &["send", "--to", &lo, "--heap-packets", "4", "--count", "1"][..],
            "--heap-packets needs --format spead",
        ),
        (&["send", "--to", "198.18.0.2", "--count", "1"][..], "needs a port"),
        (&["soak", "--rate", "max", "--duration", "1s"][..], "steady rate"),
        (&["soak", "--rate", "0", "--duration", "1s"][..], "must be positive"),
    ] {
        assert_usage_error(linecap(args), needle);
    }
}

#[test]
fn addresses_cpu_ranges_and_byte_rates_are_understood() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    // `:PORT` is this machine; `0-1` is a range; MB/s is megabytes per second.
    let o = linecap(&[
        "send",
        "--to",
        &format!(":{port}"),
        "--count",
        "5",
        "--cpus",
        "0-1",
        "--rate",
        "1MB/s",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: linecap::send::socket::SendReport = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r.packets, 5);
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 2048];
    assert_eq!(rx.recv(&mut buf).unwrap(), 272);
}

#[test]
fn sending_where_nothing_listens_says_so() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = linecap(&["send", "--to", &format!("127.0.0.1:{port}"), "--count", "2000", "--rate", "20kpps"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("nothing listens at"), "{e}");
}

/// A capture whose process is stopped while a burst arrives loses packets
/// for certain (the socket buffer overflows), so the loss status is
/// exercised every run, not only when the machine is slow.
fn capture_losing_packets(extra: &[&str]) -> (std::process::Output, linecap::capture::CaptureReport) {
    let name = unique("loss");
    let _counters = Counters(name.clone());
    let addr = free_loopback();
    let mut args =
        vec!["--listen", &addr, "--rcvbuf", "64K", "--no-gro", "--duration", "4s", "--verify", "seq"];
    args.extend_from_slice(extra);
    let child = spawn_capture(&name, &args);
    linecap::sys::send_signal(child.id(), libc::SIGSTOP).unwrap();
    let sent = send(None, &["--to", &addr, "--count", "20000", "--rate", "max"]);
    assert_eq!(sent.packets, 20000);
    linecap::sys::send_signal(child.id(), libc::SIGCONT).unwrap();
    let out = child.wait_with_output();
    let report: linecap::capture::CaptureReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(report.total_drops() > 0, "a stopped reader with a 64 KiB buffer lost nothing: {report:?}");
    assert_eq!(report.packets + report.total_drops(), 20000, "{report:?}");
    (out, report)
}

#[test]
fn a_capture_that_loses_more_than_allowed_exits_3() {
    let (out, report) = capture_losing_packets(&["--fail-on-loss"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains(&format!("lost {}", report.total_drops().max(report.verify.unwrap().missing))), "{e}");
    // The same loss within what --max-loss allows: success.
    let (out, _) = capture_losing_packets(&["--max-loss", "100%"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // And without either option a loss is reported, not a failure.
    let (out, _) = capture_losing_packets(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_config_file_sets_options_and_the_command_line_overrides_it() {
    let dir = TempDir::new("config");
    let addr = free_loopback();
    let file = dir.0.join("capture.toml");
    std::fs::write(
        &file,
        format!("listen = \"{addr}\"\nverify = \"seq\"\nduration = \"30s\"\nquiet = true\njson = true\n"),
    )
    .unwrap();
    let name = unique("cfg");
    let _counters = Counters(name.clone());
    // --duration after --config overrides the file's 30 s.
    let mut child = Command::new(exe())
        .args(["capture", "--config", file.to_str().unwrap(), "--duration", "3s", "--name", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(&name, &mut child);
    let child = Reaped::new(child);
    let sent = send(None, &["--to", &addr, "--count", "1000", "--rate", "50kpps"]);
    let out = child.wait_with_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: linecap::capture::CaptureReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.verify.unwrap().valid, sent.packets);
    assert_eq!(report.stopped_by, "duration");
    // A key that is no option is refused by name, as on the command line.
    std::fs::write(&file, "listen = \":9\"\nrcvbuff = \"1M\"\n").unwrap();
    assert_usage_error(linecap(&["capture", "--config", file.to_str().unwrap()]), "--rcvbuff");
    std::fs::write(&file, "listen = [\n").unwrap();
    assert_usage_error(linecap(&["capture", "--config", file.to_str().unwrap()]), "--config");
}

#[test]
fn completions_and_manual_come_from_the_cli_definition() {
    let o = linecap(&["completions", "bash"]);
    assert!(o.status.success());
    let script = String::from_utf8_lossy(&o.stdout);
    assert!(script.contains("--rotate-size") && script.contains("complete"), "{script}");
    let o = linecap(&["man"]);
    assert!(o.status.success());
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH linecap"), "{page}");
    assert!(page.contains("Exit status"), "the manual says what the exit statuses mean");
}

#[test]
fn a_capture_serves_its_own_metrics_and_promtool_accepts_them() {
    let name = unique("met");
    let _counters = Counters(name.clone());
    let addr = free_loopback();
    let metrics = free_loopback_tcp();
    let child = spawn_capture(&name, &["--listen", &addr, "--verify", "seq", "--metrics", &metrics]);
    let sent = send(None, &["--to", &addr, "--count", "500", "--rate", "50kpps"]);
    // The counters are published as the capture goes (every batch, every
    // 100 ms at the latest): ask until the last packets show.
    let valid = format!("linecap_verify_valid_total{{capture=\"{name}\",thread=\"0\"}} {}", sent.packets);
    let until = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = http_get(&metrics, "/metrics");
        if body.contains(&valid) || Instant::now() > until {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.contains("200"), "{status}");
    assert!(body.contains(&format!("linecap_up{{capture=\"{name}\"}} 1")), "{body}");
    assert!(body.contains("linecap_info{") && body.contains("backend=\"socket\""), "{body}");
    assert!(body.contains("# HELP linecap_rx_packets_total Packets the receive thread delivered"), "{body}");
    assert!(!body.contains("instance="), "instance is Prometheus's label: {body}");
    assert!(
        body.contains(&format!(
            "linecap_verify_valid_total{{capture=\"{name}\",thread=\"0\"}} {}",
            sent.packets
        )),
        "{body}"
    );
    promtool_check(&body);
    linecap::sys::send_signal(child.id(), libc::SIGINT).unwrap();
    let out = child.wait_with_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The exporter ended with the capture.
    assert!(std::net::TcpStream::connect(&metrics).is_err());
}

/// A loopback TCP address nothing listens on (a moment ago).
fn free_loopback_tcp() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

/// One field of /proc/PID/status.
fn status_field(pid: u32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).unwrap().trim().to_string()
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root: the capture drops from root to user nobody")]
fn user_drops_root_and_every_capability_once_open() {
    let name = unique("usr");
    let _counters = Counters(name.clone());
    let addr = free_loopback();
    let child = spawn_capture(
        &name,
        &["--listen", &addr, "--verify", "seq", "--user", "nobody", "--duration", "30s"],
    );
    let nobody = linecap::sys::user::lookup_user("nobody").unwrap().expect("user nobody exists");
    // The drop happens once the capture runs: wait for it.
    let until = Instant::now() + Duration::from_secs(10);
    while status_field(child.id(), "Uid").split_whitespace().next() != Some(&nobody.uid.to_string())
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let uids: Vec<String> = status_field(child.id(), "Uid").split_whitespace().map(String::from).collect();
    assert!(uids.iter().all(|u| *u == nobody.uid.to_string()), "real, effective, saved, fs: {uids:?}");
    for caps in ["CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(u64::from_str_radix(&status_field(child.id(), caps), 16).unwrap(), 0, "{caps}");
    }
    assert_eq!(status_field(child.id(), "Groups"), "", "no supplementary groups");
    // It still captures, and the counters file became nobody's.
    let sent = send(None, &["--to", &addr, "--count", "1000", "--rate", "50kpps"]);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(stats_path(&name)).unwrap().uid(), nobody.uid);
    linecap::sys::send_signal(child.id(), libc::SIGINT).unwrap();
    let out = child.wait_with_output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: linecap::capture::CaptureReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.verify.unwrap().valid, sent.packets);
}

#[test]
#[cfg_attr(not(linecap_root), ignore = "needs root: setcap on a copy of the binary, run as user nobody")]
fn file_capabilities_are_enough_and_each_backend_names_what_it_lacks() {
    if Command::new("setcap").arg("-v").output().is_err() {
        skip_or_fail("setcap not installed (.ci/run installs libcap2-bin)");
        return;
    }
    let dir = TempDir::new("caps");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.0.join("linecap");
    std::fs::copy(exe(), &copy).unwrap();
    let grant = |caps: &str| {
        let o = Command::new("setcap").arg(format!("{caps}+ep")).arg(&copy).output().unwrap();
        assert!(o.status.success(), "setcap {caps}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let afpacket = ["capture", "--backend", "afpacket", "--iface", "lo", "--duration", "1s", "--quiet"];
    let xdp = [
        "capture",
        "--backend",
        "xdp",
        "--iface",
        "lo",
        "--listen",
        "127.0.0.1:9",
        "--duration",
        "1s",
        "--quiet",
    ];
    // The UMEM is locked memory: without CAP_IPC_LOCK it must fit `ulimit -l`.
    const XDP_CAPS: &str = "cap_net_raw,cap_net_admin,cap_bpf,cap_perfmon,cap_ipc_lock";
    let cases: [(&[&str], &str, &str, &str); 4] = [
        (&afpacket, "cap_net_raw", "cap_net_admin", "needs CAP_NET_RAW"),
        (&xdp, XDP_CAPS, "cap_net_raw,cap_net_admin,cap_bpf,cap_ipc_lock", "CAP_PERFMON"),
        (&xdp, XDP_CAPS, "cap_net_raw,cap_bpf,cap_perfmon,cap_ipc_lock", "CAP_NET_ADMIN"),
        (&xdp, XDP_CAPS, "cap_net_admin,cap_bpf,cap_perfmon,cap_ipc_lock", "CAP_NET_RAW"),
    ];
    for (args, enough, short, needle) in cases {
        grant(enough);
        let Some(o) = run_as_nobody(&copy, args) else { return };
        assert!(o.status.success(), "{enough}: {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        grant(short);
        let Some(o) = run_as_nobody(&copy, args) else { return };
        assert_fails_with(o, needle);
    }
    // The socket backend needs nothing to receive; CAP_NET_ADMIN lets it
    // force a receive buffer above net.core.rmem_max.
    let lo = free_loopback();
    let socket = ["capture", "--listen", &lo, "--rcvbuf", "1G", "--duration", "1s", "--quiet"];
    grant("cap_net_admin");
    let Some(o) = run_as_nobody(&copy, &socket) else { return };
    assert!(String::from_utf8_lossy(&o.stderr).contains("forced"), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = Command::new("setcap").arg("-r").arg(&copy).output();
    let Some(o) = run_as_nobody(&copy, &socket) else { return };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("forced"), "{}", String::from_utf8_lossy(&o.stderr));
}
