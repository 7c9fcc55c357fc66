//! The `linecap` command line.

mod bench_cmd;
mod blocks_cmd;
mod capture_cmd;
mod config;
mod demo;
mod doctor_cmd;
mod live;
mod log;
mod replay_cmd;
mod send_cmd;
mod stats_cmd;
mod strict;
mod testbed_cmd;

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

use bench_cmd::*;
use blocks_cmd::*;
pub(crate) use capture_cmd::summary;
use capture_cmd::{CaptureArgs, cmd_capture};
use doctor_cmd::*;
use replay_cmd::{ReplayArgs, cmd_replay};
pub(crate) use send_cmd::send_line;
use send_cmd::{SendArgs, cmd_send};
use stats_cmd::*;
use testbed_cmd::*;

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
