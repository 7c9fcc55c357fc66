//! The `linecap` command line.

mod demo;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use linecap::assemble::{Layout, Options as AsmOptions};
use linecap::capture::{self, BackendConfig, CaptureConfig, CaptureReport};
use linecap::format::raw::RawSpec;
use linecap::send::PayloadFormat;
use linecap::send::socket::{self as send_socket, SendConfig, SendReport};
use linecap::sink::blocks::{BlockOutput, BlockSinkOptions, Sidecar, StreamFormat};
use linecap::sink::pcap::{Link, PcapOptions, Rotation};
use linecap::sink::shmring::RingOptions;
use linecap::source::afpacket::{AfPacketOptions, FanoutMode};
use linecap::source::socket::RecvMode;
use linecap::source::socket::SocketOptions;
use linecap::source::xdp::XdpOptions;
use linecap::stats::{self, Snapshot, render};
use linecap::testbed::{self, Placement, Testbed, TestbedOptions};
use linecap::units::{self, Rate};
use linecap::{bench, filter, sys};

#[derive(Parser)]
#[command(name = "linecap", version, about = "Capture, send and account for packet streams at line rate")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Capture a UDP stream and hand it to sinks (pcap, seq verifier, null).
    Capture(Box<CaptureArgs>),
    /// Send a paced, sequence-numbered UDP stream (emulates the FPGA).
    Send(SendArgs),
    /// Show the live counters of running (or finished) captures.
    Stats(StatsArgs),
    /// Manage the two-namespace veth testbed.
    Testbed(TestbedArgs),
    /// Send the reference stream through a testbed, capture it, account for it.
    Demo(DemoArgs),
    /// Find each receiver's highest zero-loss rate and its CPU cost per packet.
    Bench(BenchArgs),
    /// Look at assembled blocks.
    Blocks(BlocksArgs),
    /// Where packets are lost (captures' counters, this machine's settings) and which setting would help.
    Doctor(DoctorArgs),
}

#[derive(Args)]
struct DoctorArgs {
    /// Capture to explain (default: every capture whose counters exist, running or finished).
    name: Option<String>,
    /// Judge the interfaces of this network namespace (`ip netns` name).
    #[arg(long)]
    netns: Option<String>,
    /// The findings as JSON.
    #[arg(long)]
    json: bool,
    /// For running captures, look twice this far apart to tell losses happening now (0: once).
    #[arg(long, default_value = "1s", value_parser = units::parse_duration)]
    interval: Duration,
}

#[derive(Args)]
struct BlocksArgs {
    #[command(subcommand)]
    action: BlocksAction,
}

#[derive(Subcommand)]
enum BlocksAction {
    /// Print a block's layout and loss map (FILE: the .bin or its .json
    /// sidecar; or the NAME of a shared-memory ring: its newest block).
    Inspect {
        /// Block file, or ring name.
        file: PathBuf,
        /// JSON output (the sidecar, checked against the data file).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
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
enum StreamKind {
    /// linecap's seq payload.
    Seq,
    /// A described header (--raw SPEC).
    Raw,
    /// VDIF frames (thread id = channel; --frames-per-second).
    Vdif,
    /// SPEAD-64-48 (heap counter, size, offset, payload length): a slot per packet.
    Spead,
    /// SPEAD-64-48, a slot per heap (--slot-bytes ≥ heap size): packets of any lengths (spead2's heaps).
    SpeadHeap,
}

#[derive(Clone, Copy, ValueEnum)]
enum VerifyFormat {
    /// 64-bit sequence number + derived pattern.
    Seq,
}

#[derive(Args)]
struct CaptureArgs {
    /// Kernel interface to read from.
    #[arg(long, value_enum, default_value = "socket")]
    backend: Backend,
    /// Address and UDP port to listen on (socket backend).
    #[arg(long, default_value = "0.0.0.0:9000")]
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
    /// CPUs to pin receive threads to, e.g. `1` or `2,3`.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// `recvmmsg` batches, or `recv`: one syscall per packet (the naive baseline).
    #[arg(long, value_enum, default_value = "recvmmsg")]
    mode: RecvMode,
    /// Do not ask for UDP GRO super-packets.
    #[arg(long)]
    no_gro: bool,
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
    #[arg(long)]
    count: Option<u64>,
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
    /// Name of the counters file (`linecap stats NAME`); default `cap-<pid>`.
    #[arg(long)]
    name: Option<String>,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No live display.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum SendBackend {
    /// sendmmsg on a UDP socket (UDP GSO with --gso).
    Socket,
    /// Frames built by linecap in an AF_PACKET TX ring (qdisc bypass); needs --iface.
    Afpacket,
    /// The kernel transmits: BPF_PROG_RUN live frames with linecap's generator program; needs --iface.
    XdpLive,
    /// Frames built in an AF_XDP socket's UMEM and posted on its tx ring; needs --iface.
    Xdp,
}

#[derive(Args)]
struct SendArgs {
    /// Destination address and UDP port.
    #[arg(long)]
    to: SocketAddr,
    /// UDP source port of the frames (afpacket, xdp, xdp-live backends): one flow per generator.
    #[arg(long)]
    src_port: Option<u16>,
    /// UDP payload bytes per packet.
    #[arg(long, default_value = "272", value_parser = units::parse_size)]
    size: u64,
    /// Rate: packets per second (`2.35Mpps`, `100000`) or payload bits per second (`5.12Gbit`); `max` = unpaced.
    #[arg(long, default_value = "100kpps", value_parser = units::parse_rate)]
    rate: Rate,
    /// Stop after this many packets.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this long.
    #[arg(long, value_parser = units::parse_duration)]
    duration: Option<Duration>,
    /// Sending threads (sequence numbers are interleaved across them).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// CPUs to pin send threads to.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Kernel interface to send through.
    #[arg(long, value_enum, default_value = "socket")]
    backend: SendBackend,
    /// Interface to send on (afpacket backend).
    #[arg(long)]
    iface: Option<String>,
    /// Payload format.
    #[arg(long, value_enum, default_value = "seq")]
    format: StreamKind,
    /// Raw packet description for --format raw (sets the packet size).
    #[arg(long)]
    raw: Option<String>,
    /// Channels to cycle through with --format raw (VDIF: threads).
    #[arg(long, default_value_t = 1)]
    channels: u64,
    /// VDIF frames per second per thread.
    #[arg(long, default_value_t = 25_600)]
    frames_per_second: u64,
    /// Packets per SPEAD heap (--size is the datagram: 48 header bytes + payload).
    #[arg(long, default_value_t = 1)]
    heap_packets: u64,
    /// Send UDP GSO super-packets (falls back to plain datagrams, once, when refused).
    #[arg(long)]
    gso: bool,
    /// Messages per sendmmsg call, or frames per TX-ring kick [default: 64, afpacket 512].
    #[arg(long)]
    batch: Option<usize>,
    /// Token-bucket size in packets: the most sent back-to-back after a stall.
    #[arg(long, default_value_t = 32)]
    burst: u64,
    /// Run inside this network namespace.
    #[arg(long)]
    netns: Option<String>,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Benchmark baseline: a plain sendmmsg loop of one prebuilt batch (no pacing, no seq).
    #[arg(long, hide = true)]
    plain_loop: bool,
}

#[derive(Args)]
struct StatsArgs {
    /// Capture name (all captures when omitted).
    name: Option<String>,
    /// JSON output.
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Prometheus text exposition format.
    #[arg(long)]
    prometheus: bool,
    /// Refresh every second until interrupted.
    #[arg(long)]
    watch: bool,
    /// Serve every capture's counters over HTTP at /metrics (Prometheus), e.g. 127.0.0.1:9187, until interrupted.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["json", "prometheus", "watch", "name"])]
    serve: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct TestbedArgs {
    #[command(subcommand)]
    action: TestbedAction,
    /// Testbed name (namespaces NAME-tx and NAME-rx).
    #[arg(long, default_value = "linecap", global = true)]
    name: String,
    /// Where receive-side kernel work runs (`sender` is unrealistic, for comparison only).
    #[arg(long, value_enum, default_value = "napi", global = true)]
    placement: Placement,
    /// Queues of each veth end (veth receives an XDP frame on the queue of the sending CPU).
    #[arg(long, default_value_t = 1, global = true)]
    queues: u32,
}

#[derive(Subcommand, Clone, Copy)]
enum TestbedAction {
    /// Create it.
    Up,
    /// Remove it.
    Down,
    /// Describe it.
    Status,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// What offers the stream: `kernel` (BPF_PROG_RUN live frames, reaches the reference
    /// rate; needs root) or `socket` (sendmmsg); default: kernel as root, else socket.
    #[arg(long, value_enum)]
    sender: Option<DemoSender>,
    /// Same as --sender kernel.
    #[arg(long, conflicts_with = "sender")]
    xdp_live: bool,
    /// How long to send.
    #[arg(long, default_value = "5s", value_parser = units::parse_duration)]
    duration: Duration,
    /// Offered rate (payload bits or packets per second).
    #[arg(long, default_value = "5.12Gbit", value_parser = units::parse_rate)]
    rate: Rate,
    /// Payload bytes.
    #[arg(long, default_value = "272", value_parser = units::parse_size)]
    size: u64,
    /// Where receive-side kernel work runs (an xdp receiver always uses busy-poll).
    #[arg(long, value_enum, default_value = "napi")]
    placement: Placement,
    /// The receiver: `socket` (recvmmsg+gro) or `xdp` (AF_XDP, busy-polling);
    /// default: xdp with the kernel sender, else socket.
    #[arg(long, value_enum)]
    receiver: Option<DemoReceiver>,
}

/// Senders the demo can run.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DemoSender {
    /// The kernel transmits (xdp-live), on the testbed.
    Kernel,
    /// A UDP socket, sendmmsg.
    Socket,
}

/// Receivers the demo can run.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DemoReceiver {
    /// A UDP socket, recvmmsg with GRO.
    Socket,
    /// An AF_XDP socket busy-polling the receiving veth (needs root).
    Xdp,
}

#[derive(Args)]
struct BenchArgs {
    /// Rows to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "recv,recvmmsg,recvmmsg+gro,uring,xdp,afpacket,afpacket2"
    )]
    backends: Vec<String>,
    /// Payload sizes.
    #[arg(long, value_delimiter = ',', default_value = "272", value_parser = units::parse_size)]
    sizes: Vec<u64>,
    /// Length of each measured point.
    #[arg(long, default_value = "2s", value_parser = units::parse_duration)]
    duration: Duration,
    /// Bisection steps per row.
    #[arg(long, default_value_t = 6)]
    steps: usize,
    /// Output folder (results.json, results.md, plot.svg).
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Also measure tcpdump and netsniff-ng when installed.
    #[arg(long)]
    peers: bool,
    /// Where receive-side kernel work runs.
    #[arg(long, value_enum, default_value = "napi")]
    placement: Placement,
    /// Interleaved rounds comparing generators on one core (0 skips them).
    #[arg(long, default_value_t = 3)]
    sender_rounds: usize,
    /// Offer the receivers' stream with the kernel-side generator (xdp-live): millions of packets per second.
    #[arg(long)]
    xdp_live: bool,
    /// Measure every row at this one rate (e.g. 2.35Mpps, 5.12Gbit) instead of searching for the zero-loss rate.
    #[arg(long, value_parser = units::parse_rate)]
    at: Option<Rate>,
    /// Interleaved rounds at the --at rate.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Runs per bisection point of the zero-loss search; the median loss decides (odd: 1, 3, 5).
    #[arg(long, default_value_t = 1)]
    repeats: usize,
}

fn main() -> ExitCode {
    linecap::sys::default_sigpipe();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("linecap: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Capture(a) => cmd_capture(*a),
        Cmd::Send(a) => cmd_send(a),
        Cmd::Stats(a) => cmd_stats(a),
        Cmd::Testbed(a) => cmd_testbed(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Bench(a) => cmd_bench(a),
        Cmd::Blocks(a) => cmd_blocks(a),
        Cmd::Doctor(a) => cmd_doctor(a),
    }
}

fn cmd_doctor(a: DoctorArgs) -> anyhow::Result<ExitCode> {
    // Captures' counters live in /dev/shm, shared by every namespace.
    let names = match &a.name {
        Some(n) => vec![n.clone()],
        None => stats::list_names(),
    };
    let mut caps = Vec::new();
    for n in &names {
        match Snapshot::read(n, &stats::stats_path(n)) {
            Ok(s) => caps.push(s),
            Err(e) if a.name.is_some() => {
                bail!(
                    "no counters for capture '{n}' ({e}); captures with counters: {:?}",
                    stats::list_names()
                )
            }
            Err(_) => {}
        }
    }
    let mut facts = linecap::doctor::read_global();
    if a.netns.is_some() {
        enter_netns(&a.netns)?;
        sys::remount_sysfs().map_err(|e| anyhow::anyhow!("cannot mount the namespace's sysfs: {e}"))?;
    }
    linecap::doctor::read_namespace(&mut facts);
    let mut findings = linecap::doctor::diagnose(&facts, &caps);
    // Running captures: what they lose now, from two looks `interval` apart.
    let running = caps.iter().any(|c| c.pid != 0 && linecap::sys::shm::process_alive(c.pid));
    if running && !a.interval.is_zero() {
        std::thread::sleep(a.interval);
        let later: Vec<Snapshot> =
            caps.iter().filter_map(|c| Snapshot::read(&c.name, &stats::stats_path(&c.name)).ok()).collect();
        let mut now = linecap::doctor::diagnose_now(&caps, &later, a.interval.as_secs_f64());
        now.append(&mut findings);
        now.sort_by_key(|f| f.level);
        findings = now;
    }
    if a.json {
        println!("{}", serde_json::to_string(&findings)?);
    } else {
        if caps.is_empty() {
            println!("no capture counters to explain (start one, or name it); judging this machine only");
        }
        print!("{}", linecap::doctor::render(&findings));
    }
    Ok(ExitCode::SUCCESS)
}

/// Moves the whole process into a network namespace before any thread starts.
fn enter_netns(ns: &Option<String>) -> anyhow::Result<()> {
    let Some(ns) = ns else { return Ok(()) };
    if ns.contains('/') || ns.is_empty() {
        bail!("--netns takes a name from 'ip netns list', not a path");
    }
    let path = format!("/var/run/netns/{ns}");
    if !std::path::Path::new(&path).exists() {
        bail!(
            "network namespace '{ns}' not found (see 'ip netns list'; 'linecap testbed up' creates NAME-tx and NAME-rx)"
        );
    }
    sys::enter_netns(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            anyhow::anyhow!("entering network namespace '{ns}' needs CAP_SYS_ADMIN: run as root")
        } else {
            anyhow::anyhow!("cannot enter network namespace '{ns}': {e}")
        }
    })
}

fn cmd_capture(a: CaptureArgs) -> anyhow::Result<ExitCode> {
    enter_netns(&a.netns)?;
    sys::install_stop_handler()?;
    let pcap = match &a.write {
        Some(p) => {
            check_output_dir(p)?;
            let mut o = PcapOptions::new(p.clone());
            o.rotation = Rotation { max_bytes: a.rotate_size, max_age: a.rotate_time };
            o.buffer_bytes = (a.sink_buffer as usize).max(2 << 20);
            o.chunk_bytes = (o.buffer_bytes / 16).clamp(64 << 10, 4 << 20);
            o.throttle_bytes_per_sec = a.sink_throttle;
            if let Some(f) = a.write_format {
                o.format = f;
            }
            if let Backend::Afpacket | Backend::Xdp = a.backend {
                o.link = Link::Ethernet;
            }
            Some(o)
        }
        None => None,
    };
    let cfg = CaptureConfig {
        name: a.name.clone().unwrap_or_else(|| format!("cap-{}", std::process::id())),
        backend: match a.backend {
            Backend::Socket | Backend::Uring => {
                let o = SocketOptions {
                    listen: a.listen,
                    mode: a.mode,
                    gro: !a.no_gro,
                    batch: a.batch,
                    rcvbuf: i32::try_from(a.rcvbuf).unwrap_or(i32::MAX),
                    reuseport: false,
                    join: a.join,
                    busy_poll: a.busy_poll,
                    filter: match (&a.filter, &a.bpf_file) {
                        (Some(expr), _) => Some(
                            filter::compile(expr, filter::Target::Udp { ipv6: a.listen.is_ipv6() })
                                .map_err(|e| anyhow::anyhow!("--filter: {e}"))?
                                .0,
                        ),
                        (None, Some(_)) => bail!(
                            "--bpf-file applies to --backend afpacket: tcpdump programs start at the link header, a UDP socket's filter at the UDP header (use --filter)"
                        ),
                        (None, None) => None,
                    },
                };
                if let Backend::Uring = a.backend {
                    anyhow::ensure!(
                        a.busy_poll.is_none(),
                        "--busy-poll applies to the socket and xdp backends"
                    );
                    BackendConfig::Uring(o)
                } else {
                    BackendConfig::Socket(o)
                }
            }
            Backend::Xdp => {
                let Some(iface) = &a.iface else {
                    bail!("--backend xdp needs --iface IF (see 'ip link')");
                };
                anyhow::ensure!(a.xdp_ring.is_power_of_two(), "--xdp-ring must be a power of two");
                anyhow::ensure!((1..=256).contains(&a.queues), "--queues must be 1 to 256");
                anyhow::ensure!(
                    a.threads == 1 || a.threads == a.queues as usize,
                    "--backend xdp runs one thread per queue: give --queues N, not --threads"
                );
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
                    bail!("--backend afpacket needs --iface IF (see 'ip link')");
                };
                anyhow::ensure!(a.busy_poll.is_none(), "--busy-poll applies to the socket and xdp backends");
                let mut opts = AfPacketOptions::new(iface);
                opts.ring.block_size = u32::try_from(a.ring_block_size).unwrap_or(u32::MAX);
                opts.ring.block_nr = a.ring_blocks;
                opts.ring.retire_ms = a.retire_ms;
                opts.filter = match (&a.filter, &a.bpf_file) {
                    (Some(expr), _) => {
                        Some(filter::compile_inbound(expr).map_err(|e| anyhow::anyhow!("--filter: {e}"))?.0)
                    }
                    (None, Some(path)) => {
                        let text = std::fs::read_to_string(path)
                            .with_context(|| format!("cannot read --bpf-file {}", path.display()))?;
                        let prog = filter::ddd::parse(&text)
                            .map_err(|e| anyhow::anyhow!("--bpf-file {}: {e}", path.display()))?;
                        Some(filter::inbound(&prog).0)
                    }
                    (None, None) => None,
                };
                BackendConfig::AfPacket { opts, fanout: a.fanout }
            }
        },
        // With --backend xdp, a thread per queue.
        threads: if matches!(a.backend, Backend::Xdp) && a.queues > 1 {
            a.queues as usize
        } else {
            a.threads
        },
        cpus: a.cpus.clone(),
        duration: a.duration,
        count: a.count,
        pcap,
        verify: a.verify.is_some(),
        relay: a.relay.map(|to| linecap::sink::relay::RelayOptions {
            to,
            gso: !a.relay_no_gso,
            sndbuf: 32 << 20,
        }),
        blocks: match (&a.blocks, &a.shm) {
            (None, None) => None,
            (dir, shm) => {
                let format = match a.format {
                    StreamKind::Seq => StreamFormat::Seq,
                    StreamKind::Raw => {
                        let spec = a.raw.as_deref().context("--format raw needs --raw SPEC")?;
                        StreamFormat::Raw(RawSpec::parse(spec).map_err(|e| anyhow::anyhow!("--raw: {e}"))?)
                    }
                    StreamKind::Vdif => StreamFormat::Vdif { fps: a.frames_per_second.max(1) },
                    StreamKind::Spead => StreamFormat::Spead,
                    StreamKind::SpeadHeap => StreamFormat::SpeadHeap,
                };
                let slot_bytes = match format {
                    StreamFormat::Raw(spec) => spec.payload,
                    _ => a.slot_bytes,
                };
                let layout = Layout::new(slot_bytes, a.slots, a.channels).map_err(anyhow::Error::msg)?;
                let output = match (dir, shm) {
                    (Some(d), _) => BlockOutput::Dir(d.clone()),
                    (None, Some(name)) => BlockOutput::Shm(RingOptions {
                        name: name.clone(),
                        slots: a.shm_slots,
                        lossless: a.shm_lossless,
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
                })
            }
        },
        live: !a.quiet && sys::stderr_is_tty(),
        announce: true,
    };
    let report = capture::run(&cfg);
    // A capture named by the user keeps its counters file (`linecap stats
    // NAME` shows the final numbers); an unnamed one cleans up after itself.
    if a.name.is_none() {
        let _ = std::fs::remove_file(linecap::stats::stats_path(&cfg.name));
    }
    let report = report?;
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
    let _ = writeln!(
        s,
        "  rx         {} packets in {} datagrams, {} syscalls ({:.1} packets/syscall)",
        r.received,
        r.datagrams,
        r.syscalls,
        r.received as f64 / r.syscalls.max(1) as f64
    );
    let drops: Vec<String> = r.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "  drops      {}", drops.join(", "));
    let kernel: Vec<String> = r.kernel.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "  kernel     {}", kernel.join(", "));
    if let Some(v) = &r.verify {
        let _ = writeln!(
            s,
            "  verify     valid {}, corrupt {}, malformed {}, missing {}, duplicates {}, reordered {}, too old {}",
            v.valid, v.corrupt, v.malformed, v.missing, v.duplicates, v.reordered, v.too_old
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
            "  blocks     {} written, {} dropped ({} packets), {} write errors; packets placed {}, duplicates {}, late {}, malformed {}, invalid {}, bad channel {}, no buffer {}; slots lost {}",
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

fn cmd_send(a: SendArgs) -> anyhow::Result<ExitCode> {
    enter_netns(&a.netns)?;
    sys::install_stop_handler()?;
    let (format, size) = match a.format {
        StreamKind::Seq => (PayloadFormat::Seq, a.size as usize),
        StreamKind::Raw => {
            let spec = a.raw.as_deref().context("--format raw needs --raw SPEC")?;
            let spec = RawSpec::parse(spec).map_err(|e| anyhow::anyhow!("--raw: {e}"))?;
            (PayloadFormat::Raw { spec, channels: a.channels }, spec.packet_len())
        }
        StreamKind::Vdif => {
            let size = a.size as usize;
            anyhow::ensure!(
                size >= 40 && size.is_multiple_of(8),
                "--size (the VDIF frame) must be a multiple of 8 of at least 40 bytes"
            );
            (PayloadFormat::Vdif { fps: a.frames_per_second.max(1), threads: a.channels.max(1) }, size)
        }
        StreamKind::Spead | StreamKind::SpeadHeap => {
            let size = a.size as usize;
            anyhow::ensure!(
                size > linecap::format::spead::GEN_HEADER,
                "--size must exceed the 48-byte SPEAD header"
            );
            (PayloadFormat::Spead { parts: a.heap_packets.max(1) }, size)
        }
    };
    let cfg = SendConfig {
        to: a.to,
        size,
        format,
        rate: a.rate,
        count: a.count,
        duration: a.duration,
        threads: a.threads,
        cpus: a.cpus,
        batch: a.batch.unwrap_or(match a.backend {
            SendBackend::Socket => 64,
            SendBackend::Afpacket | SendBackend::XdpLive | SendBackend::Xdp => 512,
        }),
        burst: a.burst,
        gso: a.gso,
        plain_loop: a.plain_loop,
        src_port: a.src_port,
    };
    if matches!(a.backend, SendBackend::Socket) && a.src_port.is_some() {
        bail!("--src-port applies to the frame-building backends (afpacket, xdp, xdp-live)");
    }
    let r = match a.backend {
        SendBackend::Socket => send_socket::run(&cfg)?,
        SendBackend::Afpacket => {
            let Some(iface) = &a.iface else { bail!("--backend afpacket needs --iface IF (see 'ip link')") };
            linecap::send::afpacket::run(&cfg, iface)?
        }
        SendBackend::XdpLive => {
            let Some(iface) = &a.iface else { bail!("--backend xdp-live needs --iface IF (see 'ip link')") };
            linecap::send::xdplive::run(&cfg, iface)?
        }
        SendBackend::Xdp => {
            let Some(iface) = &a.iface else { bail!("--backend xdp needs --iface IF (see 'ip link')") };
            linecap::send::xdp::run(&cfg, iface)?
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{}", send_line(&r));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn send_line(r: &SendReport) -> String {
    format!(
        "sent {} packets, {} bytes in {:.2} s: {:.3} Mpps, {:.3} Gbit/s payload ({}{}, {} thread(s), {:.0} ns CPU/packet, {} retried errors)",
        r.packets,
        r.bytes,
        r.duration_s,
        r.pps / 1e6,
        r.payload_bps / 1e9,
        r.backend,
        if r.gso { "+gso" } else { "" },
        r.threads,
        r.cpu_ns_per_packet,
        r.send_errors
    )
}

fn cmd_stats(a: StatsArgs) -> anyhow::Result<ExitCode> {
    sys::install_stop_handler()?;
    if let Some(addr) = a.serve {
        let l = stats::serve::bind(addr)?;
        // The bound address (port 0 picks one), for whoever started us.
        println!("serving http://{}/metrics", l.local_addr()?);
        std::io::Write::flush(&mut std::io::stdout())?;
        stats::serve::serve(&l)?;
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let names = match &a.name {
            Some(n) => vec![n.clone()],
            None => stats::list_names(),
        };
        let mut snaps = Vec::new();
        for n in &names {
            match Snapshot::read(n, &stats::stats_path(n)) {
                Ok(s) => snaps.push(s),
                Err(e) if a.name.is_some() => {
                    bail!("no counters for capture '{n}' ({e}); running captures: {:?}", stats::list_names())
                }
                Err(_) => {}
            }
        }
        if a.json {
            println!("{}", serde_json::to_string(&snaps)?);
        } else if a.prometheus {
            print!("{}", render::prometheus(&snaps));
        } else {
            if a.watch {
                print!("\x1b[2J\x1b[H");
            }
            if snaps.is_empty() {
                println!("no captures (counters live in {})", stats::stats_dir().display());
            }
            for s in &snaps {
                print!("{}", render::table(s));
            }
        }
        if !a.watch || sys::stop_requested() {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn cmd_testbed(a: TestbedArgs) -> anyhow::Result<ExitCode> {
    match a.action {
        TestbedAction::Up => {
            let mut o = TestbedOptions::new(&a.name);
            o.placement = a.placement;
            anyhow::ensure!((1..=64).contains(&a.queues), "--queues must be 1 to 64");
            o.queues = a.queues;
            let tb = Testbed::up(&o)?.persist();
            println!("{}", tb.describe());
        }
        TestbedAction::Down => {
            testbed::require_root("removing the testbed")?;
            Testbed::attach(&a.name)?.down()?;
            println!("testbed {} removed", a.name);
        }
        TestbedAction::Status => {
            let tb = Testbed::attach(&a.name)?;
            println!("{}", tb.describe());
            if let (Ok(t), Ok(r)) = (tb.tx_iface(), tb.rx_iface()) {
                println!(
                    "  {}: tx {} packets, tx_dropped {}; {}: rx {} packets, rx_dropped {}",
                    tb.if_tx, t.tx_packets, t.tx_dropped, tb.if_rx, r.rx_packets, r.rx_dropped
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_blocks(a: BlocksArgs) -> anyhow::Result<ExitCode> {
    let BlocksAction::Inspect { file, json } = a.action;
    let ring = linecap::sink::shmring::ring_path(&file.to_string_lossy());
    if !file.exists() && !file.to_string_lossy().contains('/') && ring.exists() {
        let r = linecap::sink::shmring::RingSnapshot::read(&ring).map_err(anyhow::Error::msg)?;
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "ring {}: {} slots, {} channel(s) x {} slots x {} bytes, {}; writer {}",
                file.display(),
                r.nslots,
                r.layout.channels,
                r.layout.slots,
                r.layout.slot_bytes,
                if r.lossless { "lossless" } else { "lossy" },
                if r.writer_pid == 0 { "finished".to_string() } else { format!("pid {}", r.writer_pid) }
            );
            println!(
                "  published {} (write_seq {}), read_seq {}, overwritten {}, waits {}, dropped {}",
                r.published, r.write_seq, r.read_seq, r.overwritten, r.waits, r.dropped
            );
            if let Some(b) = &r.newest {
                println!(
                    "  newest block {}: first seq {}, filled {}, lost {}",
                    b.number, b.first_seq, b.filled, b.lost
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let side = if file.extension().is_some_and(|e| e == "json") {
        file.clone()
    } else {
        file.with_extension("json")
    };
    let text = std::fs::read_to_string(&side).with_context(|| {
        format!("cannot read the sidecar {} (blocks are written by capture --blocks DIR)", side.display())
    })?;
    let s: Sidecar = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a linecap block sidecar", side.display()))?;
    let data = side.with_file_name(&s.data);
    let len =
        std::fs::metadata(&data).with_context(|| format!("data file {} is missing", data.display()))?.len();
    let l = s.layout;
    if len != l.block_bytes() as u64 {
        bail!(
            "{} holds {len} bytes, the layout says {}: the file is damaged",
            data.display(),
            l.block_bytes()
        );
    }
    if json {
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "block {} ({}): format {}, first seq {}, {} channel(s) x {} slots x {} bytes = {} bytes",
        s.number,
        s.data,
        match s.format {
            StreamFormat::Raw(r) => format!("raw {r}"),
            StreamFormat::Vdif { fps } => format!("vdif at {fps} frames/s"),
            f => f.name().to_string(),
        },
        s.first_seq,
        l.channels,
        l.slots,
        l.slot_bytes,
        l.block_bytes()
    );
    println!(
        "  filled {} of {}, lost {}{}",
        s.filled,
        l.channels * l.slots,
        s.lost,
        if s.zero_filled { " (zero-filled)" } else { " (left as they were)" }
    );
    let width = 100usize;
    for ch in 0..l.channels {
        // One character per group of slots: '#' all present, '.' all missing, ':' some.
        let per = l.slots.div_ceil(width);
        let line: String = (0..l.slots.div_ceil(per))
            .map(|g| {
                let range = g * per..((g + 1) * per).min(l.slots);
                let n = range.clone().filter(|&i| s.is_present(ch, i)).count();
                if n == range.len() {
                    '#'
                } else if n == 0 {
                    '.'
                } else {
                    ':'
                }
            })
            .collect();
        println!("  ch {ch:>3} |{line}| ({per} slot(s) per mark)");
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    sys::install_stop_handler()?;
    let exe = std::env::current_exe().context("cannot find the linecap executable")?;
    let cfg = bench::BenchConfig {
        exe,
        rows: a
            .backends
            .iter()
            .map(|b| b.parse())
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?,
        sizes: a.sizes.iter().map(|&s| s as usize).collect(),
        duration: a.duration,
        steps: a.steps,
        out: a.out,
        peers: a.peers,
        placement: a.placement,
        sender_rounds: a.sender_rounds,
        xdp_live: a.xdp_live,
        at_pps: a.at.and_then(|r| r.pps(a.sizes.first().copied().unwrap_or(272) as usize)),
        rounds: a.rounds,
        repeats: a.repeats,
    };
    bench::run(&cfg)?;
    Ok(ExitCode::SUCCESS)
}
