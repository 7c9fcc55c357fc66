//! The `linecap` command line.

mod capture_cmd;
mod config;
mod demo;
mod live;
mod log;
mod replay_cmd;
mod send_cmd;
mod strict;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

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

pub(crate) use capture_cmd::summary;
use capture_cmd::{CaptureArgs, cmd_capture};
use replay_cmd::{ReplayArgs, cmd_replay};
pub(crate) use send_cmd::send_line;
use send_cmd::{SendArgs, cmd_send};

#[derive(Parser)]
#[command(
    name = "linecap",
    version,
    about = "Capture, send and account for packet streams at line rate",
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Exit statuses, for scripts (also in the README).
const EXIT_STATUS: &str = "Exit status: 0 done as asked; 1 a runtime error (an interface, a privilege, a disk); \
2 a usage error (an option wrong or not applicable); 3 the capture lost more than --max-loss allows \
(capture --fail-on-loss or --max-loss), doctor found a loss, or the books of demo or soak do not close.";

#[derive(Subcommand)]
enum Cmd {
    /// Capture a UDP stream and hand it to sinks (pcap, seq verifier, null).
    Capture(Box<CaptureArgs>),
    /// Send a paced, sequence-numbered UDP stream (emulates the FPGA).
    Send(SendArgs),
    /// Send the UDP payloads of recorded captures again: at their recorded timing, a multiple of it, a rate, or unpaced.
    Replay(ReplayArgs),
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
    /// Run one capture on a testbed for a long time at a steady rate, sampling its memory,
    /// descriptors and books (leaks and drift show here, not in short runs).
    Soak(SoakArgs),
    /// Print a shell completion script (e.g. `linecap completions bash > /etc/bash_completion.d/linecap`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `linecap man | man -l -`.
    Man,
}

#[derive(Args)]
struct DoctorArgs {
    /// Capture to explain, running or ended (default: every running capture).
    name: Option<String>,
    /// Judge the interfaces of this network namespace (`ip netns` name).
    #[arg(long)]
    netns: Option<String>,
    /// The findings as JSON: each with its capture, stage, counter, count, share of
    /// what was offered and the setting in force, beside the words.
    #[arg(long)]
    json: bool,
    /// Also judge the machine's history: drops since boot, since an interface came up
    /// (by default findings are about the captures' lifetimes).
    #[arg(long)]
    history: bool,
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
    /// Remove the counters files and rings of captures that ended (a named
    /// capture keeps them for `stats NAME`); running captures' stay.
    #[arg(long, conflicts_with_all = ["json", "prometheus", "watch", "name", "serve"])]
    prune: bool,
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
struct SoakArgs {
    /// How long the stream runs.
    #[arg(long, default_value = "10m", value_parser = units::parse_duration)]
    duration: Duration,
    /// Offered rate (e.g. 80% of the capture's zero-loss rate from `linecap bench`).
    #[arg(long, value_parser = units::parse_rate)]
    rate: Rate,
    /// Between samples.
    #[arg(long, default_value = "10s", value_parser = units::parse_duration)]
    interval: Duration,
    /// A capture option to add (repeat it; e.g. --capture-arg=--backend --capture-arg=uring).
    #[arg(long = "capture-arg", allow_hyphen_values = true)]
    capture_args: Vec<String>,
    /// Folder for soak.json and soak.csv.
    #[arg(long, default_value = "soak-results")]
    out: PathBuf,
}

fn cmd_soak(a: SoakArgs) -> anyhow::Result<ExitCode> {
    sys::install_stop_handler()?;
    let Some(rate_pps) = a.rate.pps(272) else {
        strict::usage!("--rate: a soak runs at a steady rate, not `max`");
    };
    let cfg = bench::soak::SoakConfig {
        duration: a.duration,
        rate_pps,
        interval: a.interval,
        capture_args: a.capture_args,
        out: a.out,
    };
    let r = bench::soak::run(&cfg)?;
    println!(
        "soak {:.0} s at {}: rss {} KiB after the first minute, {} KiB at the end (most {}); fds {} -> {}; verifier missing {}",
        r.samples.last().map_or(0.0, |s| s.t_s),
        units::si_scaled(r.rate_pps, "pps"),
        r.rss_kib.0,
        r.rss_kib.1,
        r.rss_kib.2,
        r.fds.0,
        r.fds.1,
        r.missing
    );
    println!("accounting: {}", r.identity.line());
    Ok(if r.identity.holds() { ExitCode::SUCCESS } else { ExitCode::from(strict::exit::LOSS) })
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
    /// Leave the receiving veth's NAPI thread at normal priority (many hosts
    /// run softirq work in ksoftirqd) instead of SCHED_FIFO.
    #[arg(long)]
    napi_normal: bool,
}

fn main() -> ExitCode {
    linecap::sys::default_sigpipe();
    log::init();
    let args = match config::expand(std::env::args().collect()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("linecap: error: {message}");
            return ExitCode::from(strict::exit::USAGE);
        }
    };
    if let Some(message) = negative_number(args.iter().cloned()) {
        eprintln!("linecap: error: {message}");
        return ExitCode::from(strict::exit::USAGE);
    }
    let matches = cli_command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match dispatch(cli, &matches) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("linecap: error: {e:#}");
            ExitCode::from(strict::status_of(&e))
        }
    }
}

/// The command line's definition (also the source of completions and the
/// manual page).
fn cli_command() -> clap::Command {
    // A later option overrides an earlier one, so that options typed after
    // `--config FILE` override the file's.
    Cli::command().args_override_self(true).mut_subcommands(|c| c.args_override_self(true))
}

/// No linecap option takes a negative number: a value such as `-1` gets
/// "must be positive" instead of clap's "unexpected argument '-1'".
fn negative_number(args: impl Iterator<Item = String>) -> Option<String> {
    let args: Vec<String> = args.collect();
    args.windows(2).find_map(|w| {
        let (option, value) = (&w[0], &w[1]);
        let numeric =
            value.len() > 1 && value.starts_with('-') && value[1..].starts_with(|c: char| c.is_ascii_digit());
        (option.starts_with("--") && numeric).then(|| format!("{option} {value}: must be positive"))
    })
}

fn dispatch(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let sub = matches.subcommand().map(|(_, m)| m).expect("clap requires a subcommand");
    match cli.cmd {
        Cmd::Capture(a) => cmd_capture(*a, sub),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut cli_command(), "linecap", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man => {
            clap_mangen::Man::new(cli_command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Send(a) => cmd_send(a, sub),
        Cmd::Replay(a) => cmd_replay(a, sub),
        Cmd::Stats(a) => cmd_stats(a),
        Cmd::Testbed(a) => cmd_testbed(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Bench(a) => cmd_bench(a),
        Cmd::Soak(a) => cmd_soak(a),
        Cmd::Blocks(a) => cmd_blocks(a),
        Cmd::Doctor(a) => cmd_doctor(a),
    }
}

fn cmd_doctor(a: DoctorArgs) -> anyhow::Result<ExitCode> {
    // Captures' counters live in /dev/shm, shared by every namespace.
    let mut caps = stats::read_captures(a.name.as_deref()).map_err(anyhow::Error::msg)?;
    // Unnamed, doctor judges what runs now: an ended capture's losses are
    // old news unless it is named.
    let ended = if a.name.is_none() { caps.iter().filter(|c| !c.running).count() } else { 0 };
    if a.name.is_none() {
        caps.retain(|c| c.running);
    }
    let mut facts = linecap::doctor::read_global();
    if a.netns.is_some() {
        enter_netns(&a.netns)?;
        sys::remount_sysfs().map_err(|e| anyhow::anyhow!("cannot mount the namespace's sysfs: {e}"))?;
    }
    linecap::doctor::read_namespace(&mut facts);
    linecap::doctor::read_placement(&mut facts, &caps);
    let mut findings = linecap::doctor::diagnose(&facts, &caps, a.history);
    // Running captures: what they lose now, from two looks `interval` apart.
    let running = caps.iter().any(|c| c.running);
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
            println!("no running capture to explain (start one, or name it); judging this machine only");
        }
        if ended > 0 {
            println!("({ended} ended capture(s) not judged: name one, e.g. linecap doctor NAME)");
        }
        print!("{}", linecap::doctor::render(&findings));
    }
    // For cron, CI and monitoring: a loss found is status 3.
    let lost = findings.iter().any(|f| f.level == linecap::doctor::Level::Loss);
    Ok(if lost { ExitCode::from(strict::exit::LOSS) } else { ExitCode::SUCCESS })
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

fn cmd_stats(a: StatsArgs) -> anyhow::Result<ExitCode> {
    sys::install_stop_handler()?;
    if a.prune {
        let mut removed = 0;
        for p in stats::prune() {
            match p.outcome {
                Ok(true) => {
                    removed += 1;
                    println!("removed {}", p.file);
                }
                Ok(false) => {}
                Err(e) => eprintln!("kept {}: {e}", p.file),
            }
        }
        println!("{removed} file(s) of ended captures removed from {}", stats::stats_dir().display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(addr) = a.serve {
        let l = stats::serve::bind(addr)?;
        // The bound address (port 0 picks one), for whoever started us.
        println!("serving http://{}/metrics", l.local_addr()?);
        std::io::Write::flush(&mut std::io::stdout())?;
        stats::serve::serve(&l)?;
        return Ok(ExitCode::SUCCESS);
    }
    // The previous round's snapshots and when they were read, for rates.
    let mut previous: Vec<Snapshot> = Vec::new();
    let mut previous_at = std::time::Instant::now();
    loop {
        let snaps = stats::read_captures(a.name.as_deref()).map_err(anyhow::Error::msg)?;
        if a.json {
            println!("{}", serde_json::to_string(&snaps)?);
        } else if a.prometheus {
            print!("{}", render::prometheus(&snaps));
        } else {
            if a.watch && sys::stdout_is_tty() {
                print!("\x1b[2J\x1b[H");
            } else if a.watch {
                println!();
            }
            if snaps.is_empty() {
                println!("no captures (counters live in {})", stats::stats_dir().display());
            }
            // Running captures first; the ended ones after, as such.
            let (running, ended): (Vec<&Snapshot>, Vec<&Snapshot>) = snaps.iter().partition(|s| s.running);
            let secs = previous_at.elapsed().as_secs_f64();
            for s in &running {
                let before = previous.iter().find(|p| p.name == s.name && p.pid == s.pid);
                print!("{}", render::table_with_rates(s, before.map(|b| (b, secs))));
            }
            if !ended.is_empty() && a.name.is_none() {
                println!("ended ({} capture(s); `linecap stats --prune` removes their files):", ended.len());
            }
            for s in &ended {
                print!("{}", render::table(s));
            }
        }
        if !a.watch || sys::stop_requested() {
            return Ok(ExitCode::SUCCESS);
        }
        // Watching one capture: its end ends the watch, and says so.
        if a.name.is_some() && snaps.iter().all(|s| !s.running) {
            println!("capture ended: these are its final counters");
            return Ok(ExitCode::SUCCESS);
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        previous = snaps;
        previous_at = std::time::Instant::now();
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn cmd_testbed(a: TestbedArgs) -> anyhow::Result<ExitCode> {
    match a.action {
        TestbedAction::Up => {
            let mut o = TestbedOptions::new(&a.name);
            o.placement = a.placement;
            if !(1..=64).contains(&a.queues) {
                strict::usage!("--queues must be 1 to 64");
            }
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
    let (s, text, _data) = Sidecar::load(&side)
        .map_err(|e| anyhow::anyhow!("{e} (blocks are written by capture --blocks DIR)"))?;
    let l = s.layout;
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
    const MAX_ROWS: usize = 64;
    if l.channels > MAX_ROWS {
        println!("  (first {MAX_ROWS} of {} channels)", l.channels);
    }
    for ch in 0..l.channels.min(MAX_ROWS) {
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
        napi_normal: a.napi_normal,
    };
    let results = bench::run(&cfg)?;
    println!("{}", bench::report::markdown(&results));
    Ok(ExitCode::SUCCESS)
}
