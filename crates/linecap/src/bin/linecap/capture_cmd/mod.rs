//! `linecap capture`: its options and the summary it prints.

use super::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use linecap::capture::{CaptureEvent, Watcher};

mod options;
mod rules;
mod summary;

use options::*;
use rules::check_applicable;
pub(crate) use summary::summary;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// UDP socket (recvmmsg, GRO, reuseport).
    Socket,
    /// AF_PACKET TPACKET_V3 ring on an interface (fanout over threads).
    Afpacket,
    /// UDP socket read by one io_uring multishot receive into a provided-buffer ring (Linux 6.0+).
    Uring,
    /// AF_XDP socket on one queue of --iface, fed by linecap's XDP program (the --listen port).
    Xdp,
}

#[derive(Clone, Copy, ValueEnum)]
enum VerifyFormat {
    /// 64-bit sequence number + derived pattern.
    Seq,
}

#[derive(Args)]
pub(crate) struct CaptureArgs {
    /// Read options from this TOML file (keys are the long options: `listen = ":9000"`,
    /// `cpus = [1]`, `quiet = true`); options after it on the command line override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Kernel interface to read from.
    #[arg(long, value_enum, default_value = "socket")]
    backend: Backend,
    /// Read packets back from these pcap or pcapng files instead of the network
    /// (`-`: standard input; a quoted glob such as 'out-*.pcap' reads a rotated
    /// set in name order), through the same sinks and books.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    read: Vec<String>,
    /// Address and UDP port to listen on (socket backend).
    #[arg(long, default_value = "0.0.0.0:9000", value_parser = strict::parse_listen)]
    listen: SocketAddr,
    /// Interface to capture on (afpacket backend).
    #[arg(long)]
    iface: Option<String>,
    /// Ring block size (afpacket; a multiple of 4 KiB).
    #[arg(long, default_value = "1M", value_parser = units::parse_size)]
    ring_block_size: u64,
    /// Ring blocks (afpacket).
    #[arg(long, default_value_t = 64)]
    ring_blocks: u32,
    /// Milliseconds after which a partly filled block is handed over (afpacket).
    #[arg(long, default_value_t = 10)]
    retire_ms: u32,
    /// UDP datagrams to this address of the host and port that no socket would
    /// receive end right after the capture's tap (a tcx ingress program, removed
    /// with the capture), instead of going up the stack, where the kernel
    /// tries to answer each with an ICMP port unreachable; an application that
    /// binds the port still gets them. It runs before the firewall: a stream a
    /// DNAT or TPROXY rule would send elsewhere ends too (afpacket).
    #[arg(long, value_name = "ADDR:PORT")]
    discard_unreceived: Option<SocketAddr>,
    /// Receive queue (xdp backend; the first one with --queues).
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// AF_XDP sockets, one per receive queue from --queue on, each in its own thread (xdp backend).
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// Replace an XDP program attached with `ip link` (xdp backend; never one held by another process's BPF link).
    #[arg(long)]
    force: bool,
    /// AF_XDP ring entries and UMEM frames (xdp backend; a power of two).
    #[arg(long, default_value_t = 4096)]
    xdp_ring: u32,
    /// Busy-poll the device from the receiving thread, this many microseconds per poll (socket and xdp backends). Where the kernel refuses (no CAP_NET_ADMIN, an older kernel) the capture says so once and receives without it.
    #[arg(long, value_name = "USECS", value_parser = strict::parse_busy_poll)]
    busy_poll: Option<u32>,
    /// How a fanout group spreads packets over --threads (afpacket).
    #[arg(long, value_enum, default_value = "hash")]
    fanout: FanoutMode,
    /// Keep only packets matching a tcpdump-style expression (subset: see docs/FILTERS.md).
    #[arg(long, conflicts_with = "bpf_file")]
    filter: Option<String>,
    /// Attach a classic BPF program from `tcpdump -ddd` output (afpacket).
    #[arg(long)]
    bpf_file: Option<PathBuf>,
    /// Receive threads (one SO_REUSEPORT socket each).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// How the kernel spreads datagrams over the --threads sockets (socket and
    /// uring): `hash` of addresses and ports, or `src-port` (source port modulo
    /// the threads: a sender's consecutive source ports, `send --flows N`, land
    /// on consecutive threads).
    #[arg(long, value_enum, default_value = "hash")]
    spread: SpreadArg,
    /// CPUs to pin receive threads to, in order: `1`, `2,3` or `0-3,6`.
    #[arg(long, value_parser = strict::parse_cpus)]
    cpus: Option<strict::Cpus>,
    /// CPUs the writer threads of --write and --blocks run on (default: every
    /// CPU but the --cpus of the receive threads, so writing never takes a
    /// receive core's time).
    #[arg(long, value_parser = strict::parse_cpus)]
    writer_cpus: Option<strict::Cpus>,
    /// How the socket backend reads: `auto` (recvmmsg batches while UDP GRO
    /// is on, an io_uring multishot receive while it is off, recvmmsg where
    /// io_uring is unavailable or with --busy-poll), `recvmmsg` always, or
    /// `recv`: one syscall per packet (the naive baseline).
    #[arg(long, value_enum, default_value = "auto")]
    mode: RecvMode,
    /// Do not ask for UDP GRO super-packets.
    #[arg(long)]
    no_gro: bool,
    /// Keep UDP GRO on even while it does not coalesce (by default it is
    /// switched off when messages carry fewer than 2 datagrams, and probed
    /// again while the receiver falls behind: after 30 s, then ever more
    /// rarely, up to every 16 min).
    #[arg(long, conflicts_with = "no_gro")]
    gro_always: bool,
    /// Messages per recvmmsg call.
    #[arg(long, default_value_t = 64, value_parser = strict::parse_batch)]
    batch: usize,
    /// Socket receive buffer (forced above rmem_max when root).
    #[arg(long, default_value = "32M", value_parser = units::parse_size)]
    rcvbuf: u64,
    /// Join this IPv4 multicast group.
    #[arg(long)]
    join: Option<Ipv4Addr>,
    /// Run inside this network namespace (`ip netns` name).
    #[arg(long)]
    netns: Option<String>,
    /// Stop after this long (e.g. 10s).
    #[arg(long, value_parser = units::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many packets.
    #[arg(long, value_parser = strict::parse_positive)]
    count: Option<u64>,
    /// Exit with status 3 if the capture lost more than this: packets (`1000`)
    /// or a share of what reached the capture (`0.1%`). Lost = every counted
    /// drop, or the verifier's or assembler's missing count where larger.
    #[arg(long, value_parser = parse_max_loss)]
    max_loss: Option<MaxLoss>,
    /// Exit with status 3 if the capture lost any packet (`--max-loss 0`).
    #[arg(long, conflicts_with = "max_loss")]
    fail_on_loss: bool,
    /// Write packets to this pcap file (nanosecond timestamps).
    #[arg(long)]
    write: Option<PathBuf>,
    /// File format of --write [default: pcapng for a .pcapng path, else pcap].
    #[arg(long, value_enum, requires = "write")]
    write_format: Option<linecap::sink::pcap::FileFormat>,
    /// Start a new pcap file before one exceeds this size (files are numbered).
    #[arg(long, value_parser = units::parse_size)]
    rotate_size: Option<u64>,
    /// Start a new pcap file after this long.
    #[arg(long, value_parser = units::parse_duration)]
    rotate_time: Option<Duration>,
    /// Memory between capture and disk; when full, packets are dropped and counted.
    #[arg(long, default_value = "64M", value_parser = units::parse_size)]
    sink_buffer: u64,
    /// Write the pcap file with O_DIRECT (large aligned writes that bypass the page
    /// cache; never on tmpfs). On this project's test VM it measured slower than the
    /// page cache (docs/BENCHMARKS.md): measure it on your disks.
    #[arg(long)]
    direct_io: bool,
    /// Testing aid: limit the pcap writer to this many bytes per second.
    #[arg(long, value_parser = units::parse_size, hide = true)]
    sink_throttle: Option<u64>,
    /// Benchmark baseline: instead of a capture, the plainest recvmmsg loop
    /// (same socket and buffer, no GRO, no control messages), counting only.
    #[arg(long, hide = true)]
    plain_loop: bool,
    /// Check every payload of this format, count gaps/duplicates/reordering.
    #[arg(long, value_enum)]
    verify: Option<VerifyFormat>,
    /// What makes one numbered stream for --verify: each `sender` address (each
    /// sending socket numbers its own stream), or each `host` whatever its source
    /// ports (one stream dealt over ports: `send --flows N`; one receive thread).
    #[arg(long, value_enum, default_value = "sender")]
    verify_streams: VerifyStreams,
    /// Forward every UDP payload to this address (zero-copy gather, UDP GSO; never waits: drops are counted).
    #[arg(long, value_name = "ADDR")]
    relay: Option<SocketAddr>,
    /// Relay plain datagrams instead of UDP GSO super-packets.
    #[arg(long, requires = "relay")]
    relay_no_gso: bool,
    /// Assemble into block files in this folder (one file + JSON sidecar per block).
    #[arg(long, conflicts_with = "shm")]
    blocks: Option<PathBuf>,
    /// Assemble into a shared-memory ring of blocks, /dev/shm/linecap-blocks-NAME (see docs/SHM.md).
    #[arg(long)]
    shm: Option<String>,
    /// Block slots in the shared-memory ring.
    #[arg(long, default_value_t = 8)]
    shm_slots: usize,
    /// Wait for the ring's reader instead of overwriting unread blocks (backpressure, counted).
    #[arg(long)]
    shm_lossless: bool,
    /// Packet format for assembly.
    #[arg(long, value_enum, default_value = "seq")]
    format: StreamKind,
    /// Raw packet description, e.g. header=16,counter=0:8:be,channel=8:2:be,payload=256.
    #[arg(long)]
    raw: Option<String>,
    /// Data bytes per packet for --format seq (the payload minus its 8-byte sequence number).
    #[arg(long, default_value_t = 264)]
    slot_bytes: usize,
    /// Packets per block (per channel).
    #[arg(long, default_value_t = 8192)]
    slots: usize,
    /// Channels (rows) per block; the raw format's channel field (VDIF: thread id) selects the row.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// VDIF frames per second per thread (sequence = seconds x this + frame number).
    #[arg(long, default_value_t = 25_600)]
    frames_per_second: u64,
    /// Open blocks that absorb reordering.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// A jump of more than this many packets restarts the stream (counted as a resync).
    #[arg(long, default_value_t = 1 << 24)]
    resync_gap: u64,
    /// Leave missing slots as they are instead of zero-filling them.
    #[arg(long)]
    no_zero_fill: bool,
    /// Completed blocks that may wait for the disk before blocks are dropped (counted).
    #[arg(long, default_value_t = 8)]
    block_queue: usize,
    /// With several receive threads, which all fill one sequence of blocks: when
    /// one falls behind, `lossy` sends the blocks out on time and counts its
    /// missing slots lost; `lossless` makes the others wait for it (counted).
    #[arg(long, value_enum, default_value = "lossy")]
    group_policy: GroupPolicy,
    /// Name of the counters file (`linecap stats NAME`): 1-64 of A-Z a-z 0-9 . _ -;
    /// default `cap-<pid>`. A named capture's counters stay readable after it ends;
    /// a second capture with a running one's name is refused.
    #[arg(long, value_parser = parse_name)]
    name: Option<String>,
    /// Permission of the counters file and the shm ring, in octal (the owner always
    /// writes; 0644 lets every user read, 0640 only the group, 0666 lets another
    /// user's reader acknowledge blocks of a --shm-lossless ring).
    #[arg(long, default_value = "0644", value_parser = parse_mode)]
    file_mode: u32,
    /// Serve this capture's counters at http://ADDR/metrics (Prometheus text) while it
    /// runs, e.g. `:9100` or `127.0.0.1:9100` (`stats --serve` exports every capture).
    #[arg(long, value_name = "ADDR", value_parser = strict::parse_listen)]
    metrics: Option<SocketAddr>,
    /// After the sockets, rings and files are open, drop to this user (and its group),
    /// keeping no capabilities, as `tcpdump -Z` does.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No live display.
    #[arg(long)]
    quiet: bool,
}

fn parse_name(s: &str) -> Result<String, String> {
    linecap::stats::check_name(s)?;
    Ok(s.to_string())
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("'{s}' is not an octal file mode such as 0644"))?;
    if mode & !0o777 != 0 {
        return Err(format!("'{s}': only permission bits (at most 0777)"));
    }
    if mode & 0o600 != 0o600 {
        return Err(format!("'{s}': the owner must read and write (0600 at least)"));
    }
    Ok(mode)
}

/// The files a capture owns in shared directories, given to `--user` before
/// it drops root so that it can remove them at exit (/dev/shm is sticky).
fn owned_files(name: &str, a: &CaptureArgs) -> Vec<PathBuf> {
    let mut files = vec![linecap::stats::stats_path(name)];
    if let Some(ring) = &a.shm {
        files.push(linecap::sink::shmring::ring_path(ring));
    }
    files
}

/// `live`, and once the capture has opened everything: hand `files` to
/// `account` and become it. A failure stops the capture and is kept in
/// `failed` for the command to report.
fn privilege_drop(
    live: Watcher,
    account: sys::user::Account,
    files: Vec<PathBuf>,
    failed: Arc<Mutex<Option<String>>>,
) -> Watcher {
    Watcher(Arc::new(move |event: &CaptureEvent<'_>| {
        (live.0)(event);
        if !matches!(event, CaptureEvent::Started { .. }) {
            return;
        }
        let result = files
            .iter()
            .try_for_each(|f| std::os::unix::fs::lchown(f, Some(account.uid), Some(account.gid)))
            .and_then(|()| sys::user::become_user(account));
        if let Err(e) = result {
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                "--user: cannot become uid {} ({e}): it needs root or CAP_SETUID and CAP_SETGID",
                account.uid
            ));
            sys::request_stop();
        }
    }))
}

/// What `--max-loss` allows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MaxLoss {
    /// At most this many packets.
    Packets(u64),
    /// At most this share (0..=1) of what reached the capture.
    Share(f64),
}

fn parse_max_loss(s: &str) -> Result<MaxLoss, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p.trim().parse().map_err(|_| format!("'{s}' is not a percentage such as 0.1%"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("'{s}': a share is between 0% and 100%"));
        }
        return Ok(MaxLoss::Share(v / 100.0));
    }
    match t.parse::<u64>() {
        Ok(n) => Ok(MaxLoss::Packets(n)),
        Err(_) => Err(format!("'{s}' is neither a packet count (1000) nor a share (0.1%)")),
    }
}

/// Packets the capture lost, as far as it can know: every counted drop,
/// or the verifier's (or assembler's) missing count where that is larger
/// (a GRO super-packet dropped whole is one drop but many datagrams).
fn lost(report: &CaptureReport) -> u64 {
    let missing = report.verify.map_or(0, |v| v.missing);
    let slots = report.blocks.as_ref().map_or(0, |b| b.assembly.slots_lost);
    report.total_drops().max(missing).max(slots)
}

/// Whether `report` lost more than `max` allows, with the sentence that says so.
fn over_max_loss(report: &CaptureReport, max: MaxLoss) -> Option<String> {
    let lost = lost(report);
    let offered = report.packets + report.total_drops();
    let (over, limit) = match max {
        MaxLoss::Packets(n) => (lost > n, format!("{n} packets")),
        MaxLoss::Share(f) => (lost as f64 > f * offered as f64, format!("{}%", f * 100.0)),
    };
    over.then(|| format!("the capture lost {lost} of {offered} packets, more than --max-loss {limit}"))
}

pub(crate) fn cmd_capture(a: CaptureArgs, m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    check_applicable(&a, m)?;
    enter_netns(&a.netns)?;
    sys::install_stop_handler()?;
    if a.plain_loop {
        if !matches!(a.backend, Backend::Socket | Backend::Xdp) {
            strict::usage!("--plain-loop is the socket and xdp backends' benchmark baseline");
        }
        return plain_loop(&a);
    }
    let pcap = pcap_options(&a)?;
    let account = a.user.as_deref().map(lookup_account).transpose()?;
    let name = a.name.clone().unwrap_or_else(|| format!("cap-{}", std::process::id()));
    // Bound before anything opens, so a taken port fails at once.
    let metrics = a.metrics.map(linecap::stats::serve::bind).transpose()?;
    let dropped = Arc::new(Mutex::new(None::<String>));
    let watcher = {
        let live = crate::live::watcher(!a.quiet && sys::stderr_is_tty());
        match account {
            None => live,
            Some(account) => privilege_drop(live, account, owned_files(&name, &a), dropped.clone()),
        }
    };
    let cfg = CaptureConfig {
        name: name.clone(),
        backend: backend_config(&a)?,
        // With --backend xdp, a thread per queue.
        threads: if matches!(a.backend, Backend::Xdp) && a.queues > 1 {
            a.queues as usize
        } else {
            a.threads
        },
        cpus: a.cpus.clone().unwrap_or_default().0,
        writer_cpus: a.writer_cpus.clone().unwrap_or_default().0,
        duration: a.duration,
        count: a.count,
        pcap,
        verify: a.verify.is_some(),
        verify_streams: match a.verify_streams {
            VerifyStreams::Sender => linecap::sink::verify::StreamKey::Sender,
            VerifyStreams::Host => linecap::sink::verify::StreamKey::Host,
        },
        relay: a.relay.map(|to| linecap::sink::relay::RelayOptions {
            to,
            gso: !a.relay_no_gso,
            sndbuf: 32 << 20,
        }),
        blocks: block_options(&a)?,
        watcher: Some(watcher),
        file_mode: a.file_mode,
        // A capture named by the user keeps its counters file (`linecap
        // stats NAME` shows the final numbers); an unnamed one cleans up.
        keep_stats: a.name.is_some(),
    };
    let exporter = metrics.map(|listener| Exporter::start(listener, &name));
    let report = capture::run(&cfg);
    crate::live::finish();
    drop(exporter);
    if let Some(why) = dropped.lock().unwrap_or_else(|p| p.into_inner()).take() {
        bail!("{why}");
    }
    report_and_status(&a, &report?)
}

/// How to merge the files that several receive threads wrote (one each,
/// `NAME.tN.EXT`, rotated ones numbered after it).
fn merge_hint(path: &std::path::Path, threads: usize) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("capture");
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| format!(".{e}")).unwrap_or_default();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let at = |name: String| dir.map_or(name.clone(), |d| d.join(&name).display().to_string());
    format!(
        "{threads} receive threads wrote one file each ({} ...); merge them in time order with: mergecap -w {} {}",
        at(format!("{stem}.t0{ext}")),
        at(format!("{stem}{ext}")),
        at(format!("{stem}.t*{ext}"))
    )
}

/// Prints the report and turns it into the exit status.
fn report_and_status(a: &CaptureArgs, report: &CaptureReport) -> anyhow::Result<ExitCode> {
    // With the packets on stdout (`--write -`), the summary goes to stderr.
    let packets_on_stdout = a.write.as_ref().is_some_and(|p| p.as_os_str() == "-");
    let text = if a.json { format!("{}\n", serde_json::to_string(report)?) } else { summary(report) };
    if packets_on_stdout {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if let Some(path) = a.write.as_ref().filter(|_| report.threads > 1 && !packets_on_stdout) {
        eprintln!("linecap: {}", merge_hint(path, report.threads));
    }
    if let Some(f) = &report.failure {
        bail!("{f} (the report above holds what was counted until then)");
    }
    let max_loss = if a.fail_on_loss { Some(MaxLoss::Packets(0)) } else { a.max_loss };
    if let Some(why) = max_loss.and_then(|max| over_max_loss(report, max)) {
        eprintln!("linecap: {why}");
        return Ok(ExitCode::from(strict::exit::LOSS));
    }
    Ok(ExitCode::SUCCESS)
}

/// `--user`'s account, looked up before anything opens.
fn lookup_account(user: &str) -> anyhow::Result<sys::user::Account> {
    sys::user::lookup_user(user)
        .with_context(|| format!("cannot look up --user {user}"))?
        .ok_or_else(|| strict::usage_error(format!("--user {user}: no such user (see getent passwd)")))
}

/// `--metrics`: the capture's own exporter on a thread of its own, stopped
/// (and joined) when dropped.
struct Exporter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Exporter {
    fn start(listener: std::net::TcpListener, name: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let what = linecap::stats::serve::Exported::Capture(name.to_string());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || linecap::stats::serve::serve_until(&listener, &what, &flag));
        Exporter { stop, thread: Some(thread) }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn plain_loop(a: &CaptureArgs) -> anyhow::Result<ExitCode> {
    let p = linecap::bench::baseline::PlainLoop {
        name: a.name.clone().unwrap_or_else(|| format!("plain-{}", std::process::id())),
        listen: a.listen,
        rcvbuf: i32::try_from(a.rcvbuf).unwrap_or(i32::MAX),
        cpu: a.cpus.as_ref().and_then(|c| c.0.first().copied()),
        duration: a.duration,
    };
    let report = match (a.backend, &a.iface) {
        (Backend::Xdp, Some(iface)) => {
            let o = linecap::source::xdp::XdpOptions {
                iface: iface.clone(),
                queue: a.queue,
                queues: 1,
                listen: a.listen,
                ring: a.xdp_ring,
                frame_size: 2048,
                batch: a.batch,
                busy_poll: a.busy_poll,
                force: a.force,
                parsed_lane: false,
                lend_frames: 0,
            };
            linecap::bench::baseline::run_xdp(&p, &o)?
        }
        (Backend::Xdp, None) => strict::usage!("--backend xdp needs --iface IF (see 'ip link')"),
        _ => linecap::bench::baseline::run(&p)?,
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", summary(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// What a group of receive threads does when one falls out of step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum GroupPolicy {
    /// Blocks go out on time; the slow thread's missing slots are lost.
    Lossy,
    /// Blocks wait for the slow thread.
    Lossless,
}

/// How datagrams are spread over several sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum SpreadArg {
    /// The kernel's hash of addresses and ports.
    Hash,
    /// Source port modulo the number of threads.
    SrcPort,
}

/// What makes one numbered stream for the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum VerifyStreams {
    /// Each sender address (IP and port).
    Sender,
    /// Each sending host, whatever its source ports.
    Host,
}
