//! `linecap capture`: its options and the summary it prints.

use super::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use linecap::capture::{CaptureEvent, Watcher};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// UDP socket (recvmmsg, GRO, reuseport).
    Socket,
    /// AF_PACKET TPACKET_V3 ring on an interface (fanout over threads).
    Afpacket,
    /// UDP socket read by io_uring multishot recvmsg with a provided-buffer ring (Linux 6.0+).
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
    /// Busy-poll the device from the receiving thread, this many microseconds per poll (socket and xdp backends).
    #[arg(long, value_name = "USECS")]
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
    /// CPUs to pin receive threads to, in order: `1`, `2,3` or `0-3,6`.
    #[arg(long, value_parser = strict::parse_cpus)]
    cpus: Option<strict::Cpus>,
    /// `recvmmsg` batches, or `recv`: one syscall per packet (the naive baseline).
    #[arg(long, value_enum, default_value = "recvmmsg")]
    mode: RecvMode,
    /// Do not ask for UDP GRO super-packets.
    #[arg(long)]
    no_gro: bool,
    /// Keep UDP GRO on even while it does not coalesce (by default it is
    /// switched off when messages carry fewer than 1.25 datagrams, and
    /// probed again once a second while the receiver falls behind).
    #[arg(long, conflicts_with = "no_gro")]
    gro_always: bool,
    /// Messages per recvmmsg call.
    #[arg(long, default_value_t = 64)]
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

/// The smallest pcap write chunk: one record of a 64 KiB datagram with
/// its synthetic headers and pcapng framing fits.
const MIN_CHUNK: usize = 128 << 10;

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

/// Options that apply to some backends or sinks only, and what they need.
const BACKEND_RULES: &[(&str, &[Backend], &str)] = &[
    (
        "listen",
        &[Backend::Socket, Backend::Uring, Backend::Xdp],
        "applies to the socket, uring and xdp backends (afpacket takes the whole interface: narrow it with --filter 'udp port N')",
    ),
    (
        "iface",
        &[Backend::Afpacket, Backend::Xdp],
        "applies to --backend afpacket and xdp (the socket backends bind --listen)",
    ),
    ("ring_block_size", &[Backend::Afpacket], "applies to --backend afpacket"),
    ("ring_blocks", &[Backend::Afpacket], "applies to --backend afpacket"),
    ("retire_ms", &[Backend::Afpacket], "applies to --backend afpacket"),
    (
        "fanout",
        &[Backend::Afpacket],
        "applies to --backend afpacket (several --threads share one fanout group)",
    ),
    (
        "bpf_file",
        &[Backend::Afpacket],
        "applies to --backend afpacket: tcpdump programs start at the link header (use --filter with the socket backends)",
    ),
    ("queue", &[Backend::Xdp], "applies to --backend xdp"),
    ("queues", &[Backend::Xdp], "applies to --backend xdp (use --threads with the other backends)"),
    ("force", &[Backend::Xdp], "applies to --backend xdp"),
    ("xdp_ring", &[Backend::Xdp], "applies to --backend xdp"),
    ("busy_poll", &[Backend::Socket, Backend::Xdp], "applies to the socket and xdp backends"),
    ("mode", &[Backend::Socket], "applies to --backend socket"),
    ("no_gro", &[Backend::Socket, Backend::Uring], "applies to the socket and uring backends"),
    ("gro_always", &[Backend::Socket, Backend::Uring], "applies to the socket and uring backends"),
    (
        "rcvbuf",
        &[Backend::Socket, Backend::Uring],
        "applies to the socket and uring backends (rings are sized with --ring-* or --xdp-ring)",
    ),
    ("join", &[Backend::Socket, Backend::Uring], "applies to the socket and uring backends"),
];

/// Options that belong to a sink, and the sink they need.
const SINK_RULES: &[(&str, &str)] = &[
    ("rotate_size", "needs --write"),
    ("rotate_time", "needs --write"),
    ("sink_buffer", "needs --write"),
    ("format", "needs --blocks or --shm"),
    ("raw", "needs --blocks or --shm (and --format raw)"),
    ("slot_bytes", "needs --blocks or --shm"),
    ("slots", "needs --blocks or --shm"),
    ("channels", "needs --blocks or --shm"),
    ("frames_per_second", "needs --blocks or --shm (and --format vdif)"),
    ("window", "needs --blocks or --shm"),
    ("resync_gap", "needs --blocks or --shm"),
    ("no_zero_fill", "needs --blocks or --shm"),
    ("block_queue", "needs --blocks or --shm"),
    ("shm_slots", "needs --shm"),
    ("shm_lossless", "needs --shm"),
];

/// Options that choose or tune a network source: none applies to --read.
const NETWORK_ONLY: &[&str] = &["backend", "threads", "netns", "batch", "plain_loop", "user"];

/// Refuses every option given that the chosen backend or sinks ignore.
fn check_applicable(a: &CaptureArgs, m: &clap::ArgMatches) -> anyhow::Result<()> {
    if !a.read.is_empty() {
        let network = NETWORK_ONLY.iter().copied().chain(BACKEND_RULES.iter().map(|(id, ..)| *id));
        for id in network {
            if strict::given(m, id) {
                strict::usage!(
                    "--{}: --read takes packets from files, not from the network",
                    id.replace('_', "-")
                );
            }
        }
    }
    strict::refuse_inapplicable(
        m,
        &BACKEND_RULES.iter().map(|(id, _, why)| (*id, *why)).collect::<Vec<_>>(),
        |id| BACKEND_RULES.iter().any(|(rule, backends, _)| *rule == id && backends.contains(&a.backend)),
    )?;
    let assembling = a.blocks.is_some() || a.shm.is_some();
    strict::refuse_inapplicable(m, SINK_RULES, |id| match id {
        "rotate_size" | "rotate_time" | "sink_buffer" => a.write.is_some(),
        "shm_slots" | "shm_lossless" => a.shm.is_some(),
        _ => assembling,
    })?;
    if strict::given(m, "threads") && a.backend == Backend::Xdp {
        strict::usage!("--threads: --backend xdp runs one thread per queue: give --queues N");
    }
    if a.threads == 0 {
        strict::usage!("--threads must be positive");
    }
    Ok(())
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

/// The pcap sink's options from `--write` and its companions.
fn pcap_options(a: &CaptureArgs) -> anyhow::Result<Option<PcapOptions>> {
    Ok(match &a.write {
        Some(p) => {
            if p.as_os_str() == "-" {
                if a.rotate_size.is_some() || a.rotate_time.is_some() {
                    strict::usage!("--write -: a stream to standard output cannot rotate (give a file)");
                }
                sys::ignore_sigpipe();
            } else {
                check_output_dir(p)?;
            }
            let mut o = PcapOptions::new(p.clone());
            o.rotation = Rotation { max_bytes: a.rotate_size, max_age: a.rotate_time };
            o.buffer_bytes = (a.sink_buffer as usize).max(2 << 20);
            // A chunk holds the largest record (a 64 KiB datagram and its
            // headers), and at most a quarter of a rotated file, so that
            // rotation keeps every file under --rotate-size.
            o.chunk_bytes = (o.buffer_bytes / 16).clamp(MIN_CHUNK, 4 << 20);
            if let Some(max) = a.rotate_size {
                if max < 4 * MIN_CHUNK as u64 {
                    strict::usage!(
                        "--rotate-size {max} is too small: files must hold at least {} bytes (4 write chunks)",
                        4 * MIN_CHUNK
                    );
                }
                o.chunk_bytes = o.chunk_bytes.min((max / 4) as usize);
            }
            o.throttle_bytes_per_sec = a.sink_throttle;
            if let Some(f) = a.write_format {
                o.format = f;
            }
            if matches!(a.backend, Backend::Afpacket | Backend::Xdp) || !a.read.is_empty() {
                o.link = Link::Ethernet;
            }
            Some(o)
        }
        None => None,
    })
}

/// What `--read` reads: the files (globs expanded) and the filter, run
/// over each frame as the kernel would run it on an AF_PACKET socket.
fn file_options(a: &CaptureArgs) -> anyhow::Result<linecap::source::file::FileOptions> {
    let mut inputs = Vec::new();
    for r in &a.read {
        if r == "-" {
            inputs.push(linecap::source::file::Input::Stdin);
            continue;
        }
        let paths = linecap::source::file::expand(r).map_err(|e| anyhow::anyhow!("--read: {e}"))?;
        inputs.extend(paths.into_iter().map(linecap::source::file::Input::Path));
    }
    let filter = match &a.filter {
        Some(expr) => Some(
            filter::compile(expr, filter::Target::Link)
                .map_err(|e| strict::usage_error(format!("--filter: {e}")))?,
        ),
        None => None,
    };
    Ok(linecap::source::file::FileOptions { inputs, filter })
}

/// The backend and its options.
fn backend_config(a: &CaptureArgs) -> anyhow::Result<BackendConfig> {
    if !a.read.is_empty() {
        return Ok(BackendConfig::File(file_options(a)?));
    }
    Ok(match a.backend {
        Backend::Socket | Backend::Uring => {
            let o = SocketOptions {
                listen: a.listen,
                mode: a.mode,
                gro: !a.no_gro,
                gro_adaptive: !a.gro_always,
                batch: a.batch,
                rcvbuf: i32::try_from(a.rcvbuf).unwrap_or(i32::MAX),
                reuseport: false,
                join: a.join,
                busy_poll: a.busy_poll,
                // Only what the sinks use: timestamps for a pcap, the
                // sender for a pcap's headers and the verifier's flows.
                timestamps: a.write.is_some(),
                sources: a.write.is_some() || a.verify.is_some(),
                filter: match (&a.filter, &a.bpf_file) {
                    (Some(expr), _) => Some(
                        filter::compile(expr, filter::Target::Udp { ipv6: a.listen.is_ipv6() })
                            .map_err(|e| strict::usage_error(format!("--filter: {e}")))?
                            .0,
                    ),
                    (None, Some(_)) => unreachable!("--bpf-file is refused for this backend"),
                    (None, None) => None,
                },
            };
            if let Backend::Uring = a.backend { BackendConfig::Uring(o) } else { BackendConfig::Socket(o) }
        }
        Backend::Xdp => {
            let Some(iface) = &a.iface else {
                strict::usage!("--backend xdp needs --iface IF (see 'ip link')");
            };
            if !a.xdp_ring.is_power_of_two() {
                strict::usage!("--xdp-ring must be a power of two");
            }
            if !(1..=256).contains(&a.queues) {
                strict::usage!("--queues must be 1 to 256");
            }
            BackendConfig::Xdp(XdpOptions {
                iface: iface.clone(),
                queue: a.queue,
                listen: a.listen,
                ring: a.xdp_ring,
                frame_size: 2048,
                batch: a.batch,
                busy_poll: a.busy_poll,
                queues: a.queues,
                force: a.force,
            })
        }
        Backend::Afpacket => {
            let Some(iface) = &a.iface else {
                strict::usage!("--backend afpacket needs --iface IF (see 'ip link')");
            };
            let mut opts = AfPacketOptions::new(iface);
            opts.ring.block_size = u32::try_from(a.ring_block_size).unwrap_or(u32::MAX);
            opts.ring.block_nr = a.ring_blocks;
            opts.ring.retire_ms = a.retire_ms;
            linecap::source::afpacket::check_ring(&opts.ring).map_err(strict::usage_error)?;
            opts.filter = match (&a.filter, &a.bpf_file) {
                (Some(expr), _) => Some(
                    filter::compile_inbound(expr)
                        .map_err(|e| strict::usage_error(format!("--filter: {e}")))?
                        .0,
                ),
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read --bpf-file {}", path.display()))?;
                    let prog = filter::ddd::parse(&text)
                        .map_err(|e| strict::usage_error(format!("--bpf-file {}: {e}", path.display())))?;
                    Some(filter::inbound(&prog).0)
                }
                (None, None) => None,
            };
            BackendConfig::AfPacket { opts, fanout: a.fanout }
        }
    })
}

/// The block sink's options from `--blocks` or `--shm` and the layout.
fn block_options(a: &CaptureArgs) -> anyhow::Result<Option<BlockSinkOptions>> {
    Ok(match (&a.blocks, &a.shm) {
        (None, None) => None,
        (dir, shm) => {
            let format = match a.format {
                StreamKind::Seq => StreamFormat::Seq,
                StreamKind::Raw => {
                    let spec = a
                        .raw
                        .as_deref()
                        .ok_or_else(|| strict::usage_error("--format raw needs --raw SPEC"))?;
                    StreamFormat::Raw(
                        RawSpec::parse(spec).map_err(|e| strict::usage_error(format!("--raw: {e}")))?,
                    )
                }
                StreamKind::Vdif => StreamFormat::Vdif { fps: a.frames_per_second.max(1) },
                StreamKind::Spead => StreamFormat::Spead,
                StreamKind::SpeadHeap => StreamFormat::SpeadHeap,
            };
            let slot_bytes = match format {
                StreamFormat::Raw(spec) => spec.payload,
                _ => a.slot_bytes,
            };
            let layout = Layout::new(slot_bytes, a.slots, a.channels).map_err(strict::usage_error)?;
            let output = match (dir, shm) {
                (Some(d), _) => BlockOutput::Dir(d.clone()),
                (None, Some(name)) => BlockOutput::Shm(RingOptions {
                    name: name.clone(),
                    slots: a.shm_slots,
                    lossless: a.shm_lossless,
                    mode: a.file_mode,
                    keep: a.name.is_some(),
                }),
                (None, None) => unreachable!("matched above"),
            };
            Some(BlockSinkOptions {
                output,
                layout,
                assembler: AsmOptions {
                    window: a.window,
                    resync_gap: a.resync_gap,
                    zero_fill: !a.no_zero_fill,
                    pool: a.window + a.block_queue + 2,
                },
                format,
                queue: a.block_queue,
                // The capture sets it for sources that can wait (files).
                wait_for_writer: false,
            })
        }
    })
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
        duration: a.duration,
        count: a.count,
        pcap,
        verify: a.verify.is_some(),
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

fn check_output_dir(p: &std::path::Path) -> anyhow::Result<()> {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!("output folder {} does not exist: create it or choose another --write path", dir.display());
    }
    let probe = dir.join(format!(".linecap-write-test-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => bail!("output folder {} is not writable ({e}): choose another --write path", dir.display()),
    }
}

/// The per-stage summary printed at the end of a capture.
pub(crate) fn summary(r: &CaptureReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let mode = &r.mode;
    let _ = writeln!(
        s,
        "capture '{}' on {} ({}/{mode}{}, {} thread(s)) stopped by {} after {:.2} s",
        r.name,
        r.listen,
        r.backend,
        if r.gro { "+gro" } else { "" },
        r.threads,
        r.stopped_by,
        r.duration_s
    );
    let _ = writeln!(
        s,
        "  delivered  {} packets, {} bytes ({:.1} kpps)",
        r.packets,
        r.bytes,
        r.packets as f64 / r.duration_s.max(1e-9) / 1e3
    );
    let drops: Vec<String> = r.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let kernel: Vec<String> = r.kernel.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if r.kind() == Some(linecap::source::BackendKind::File) {
        let _ = writeln!(s, "  read       {} packets; {}", r.received, kernel.join(", "));
        let _ = writeln!(s, "  skipped    {}", drops.join(", "));
    } else {
        let _ = writeln!(
            s,
            "  rx         {} packets in {} datagrams, {} syscalls ({:.1} packets/syscall)",
            r.received,
            r.datagrams,
            r.syscalls,
            r.received as f64 / r.syscalls.max(1) as f64
        );
        let _ = writeln!(s, "  drops      {}", drops.join(", "));
        let _ = writeln!(s, "  kernel     {}", kernel.join(", "));
    }
    if let Some(v) = &r.verify {
        let _ = writeln!(
            s,
            "  verify     valid {}, corrupt {}, malformed {}, missing {}, duplicates {}, reordered {}, too old {}, out of window {}, resyncs {}",
            v.valid,
            v.corrupt,
            v.malformed,
            v.missing,
            v.duplicates,
            v.reordered,
            v.too_old,
            v.out_of_window,
            v.resyncs
        );
    }
    if let Some(x) = &r.relay {
        let _ = writeln!(
            s,
            "  relay      offered {}, relayed {}, dropped {} (socket full), errors {}; {} messages in {} syscalls",
            x.offered, x.relayed, x.dropped, x.errors, x.messages, x.syscalls
        );
    }
    if let Some(b) = &r.blocks {
        let a = &b.assembly;
        let _ = writeln!(
            s,
            "  blocks     {} written, {} dropped ({} packets), {} write errors; packets placed {}, duplicates {}, late {}, malformed {}, invalid {}, bad channel {}, no buffer {}, out of window {} (resyncs {}); slots lost {}",
            b.written,
            b.dropped_blocks,
            b.dropped_packets,
            b.write_errors,
            a.placed,
            a.duplicates,
            a.late,
            a.malformed,
            a.invalid,
            a.bad_channel,
            a.no_buffer,
            a.out_of_window,
            a.resyncs,
            a.slots_lost
        );
    }
    let _ = writeln!(
        s,
        "  cpu        user {:.3} s, sys {:.3} s: {:.0} ns/packet (receive threads)",
        r.cpu_user_ns as f64 / 1e9,
        r.cpu_sys_ns as f64 / 1e9,
        r.cpu_ns_per_packet
    );
    s
}
