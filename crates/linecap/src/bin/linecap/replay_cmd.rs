//! `linecap replay`: recorded payloads sent again, and the line it prints.

use super::*;

use linecap::send::replay::{self, ReplayConfig, ReplayReport, Rewrite, Target, Timing};
use linecap::source::file::{self, Input};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReplayBackend {
    /// UDP payloads through a socket, to --to.
    Socket,
    /// Whole frames through an AF_PACKET TX ring on --iface, as tcpreplay sends them.
    Afpacket,
}

/// `aa:bb:cc:dd:ee:ff`.
fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("'{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| format!("'{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    }
    Ok(mac)
}

#[derive(Args)]
pub(crate) struct ReplayArgs {
    /// pcap or pcapng files (`-`: standard input; a quoted glob reads a rotated set in order).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Destination address (or host name) and UDP port of every payload; `:9000` is this machine
    /// (socket backend).
    #[arg(long, value_parser = strict::parse_destination)]
    to: Option<SocketAddr>,
    /// `socket`: the UDP payloads to --to; `afpacket`: the whole frames as recorded, on --iface.
    #[arg(long, value_enum, default_value = "socket")]
    backend: ReplayBackend,
    /// Interface to send the frames on (afpacket backend).
    #[arg(long)]
    iface: Option<String>,
    /// Write this source MAC into every frame (afpacket backend).
    #[arg(long, value_parser = parse_mac)]
    src_mac: Option<[u8; 6]>,
    /// Write this destination MAC into every frame (afpacket backend).
    #[arg(long, value_parser = parse_mac)]
    dst_mac: Option<[u8; 6]>,
    /// Write this IPv4 destination into every UDP datagram (afpacket backend; the
    /// header checksum is recomputed, the UDP checksum cleared).
    #[arg(long)]
    dst_ip: Option<std::net::Ipv4Addr>,
    /// A multiple of the recorded timing (2: twice as fast) [default: 1, as recorded].
    #[arg(long, conflicts_with_all = ["rate", "max"])]
    speed: Option<f64>,
    /// A fixed rate instead of the recorded timing: `100kpps`, `2.35Mpps`.
    #[arg(long, value_parser = units::parse_rate, conflicts_with = "max")]
    rate: Option<Rate>,
    /// Unpaced: as fast as the socket takes them.
    #[arg(long)]
    max: bool,
    /// Go through the files this many times.
    #[arg(long = "loop", value_name = "N", default_value_t = 1, value_parser = strict::parse_positive)]
    loops: u64,
    /// Datagrams per sendmmsg call, or frames per TX-ring kick [default: 64, afpacket 512].
    #[arg(long, value_parser = strict::parse_batch)]
    batch: Option<usize>,
    /// CPU to pin the sender to.
    #[arg(long)]
    cpu: Option<usize>,
    /// Run inside this network namespace.
    #[arg(long)]
    netns: Option<String>,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Leave out this share of packets (`1%`, `0.01`), counted (never the first).
    #[arg(long, value_name = "P", value_parser = crate::send_cmd::parse_share)]
    drop: Option<f64>,
    /// Hold back this share of packets and send each after DEPTH later ones (`1%:16`), counted.
    #[arg(long, value_name = "P[:DEPTH]", value_parser = crate::send_cmd::parse_reorder)]
    reorder: Option<(f64, u32)>,
    /// Send this share of packets twice, counted.
    #[arg(long, value_name = "P", value_parser = crate::send_cmd::parse_share)]
    duplicate: Option<f64>,
    /// Seed of --drop, --reorder and --duplicate: the same seed, the same damage.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub(crate) fn cmd_replay(a: ReplayArgs, m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let frames_only =
        ["iface", "src_mac", "dst_mac", "dst_ip"].map(|id| (id, "applies to --backend afpacket"));
    strict::refuse_inapplicable(m, &frames_only, |_| a.backend == ReplayBackend::Afpacket)?;
    strict::refuse_inapplicable(
        m,
        &[(
            "to",
            "applies to --backend socket (frames carry their addresses: rewrite them with --dst-ip, --dst-mac)",
        )],
        |_| a.backend == ReplayBackend::Socket,
    )?;
    let target = match (a.backend, a.to, &a.iface) {
        (ReplayBackend::Socket, Some(to), _) => Target::Socket(to),
        (ReplayBackend::Socket, None, _) => {
            strict::usage!("replay needs --to ADDR:PORT (or --backend afpacket --iface IF)")
        }
        (ReplayBackend::Afpacket, _, Some(iface)) => Target::Frames {
            iface: iface.clone(),
            rewrite: Rewrite { src_mac: a.src_mac, dst_mac: a.dst_mac, dst_ip: a.dst_ip },
        },
        (ReplayBackend::Afpacket, _, None) => {
            strict::usage!("--backend afpacket needs --iface IF (see 'ip link')")
        }
    };
    enter_netns(&a.netns)?;
    sys::install_stop_handler()?;
    let mut inputs = Vec::new();
    for f in &a.files {
        if f == "-" {
            inputs.push(Input::Stdin);
        } else {
            inputs.extend(file::expand(f).map_err(|e| anyhow::anyhow!("{e}"))?.into_iter().map(Input::Path));
        }
    }
    let timing = match (a.speed, a.rate, a.max) {
        (_, _, true) | (_, Some(Rate::Unlimited), _) => Timing::Max,
        (_, Some(Rate::Pps(p)), _) => Timing::Rate(p),
        (_, Some(Rate::Bits(_)), _) => {
            strict::usage!("--rate: give packets per second (kpps, Mpps): recorded payloads vary in size")
        }
        (speed, None, false) => Timing::Recorded(speed.unwrap_or(1.0)),
    };
    let cfg = ReplayConfig {
        inputs,
        target,
        timing,
        loops: u32::try_from(a.loops).unwrap_or(u32::MAX),
        batch: a.batch.unwrap_or(if a.backend == ReplayBackend::Afpacket { 512 } else { 64 }),
        cpu: a.cpu,
        impair: crate::send_cmd::impairments(a.drop, a.reorder, a.duplicate, a.seed),
    };
    let r = replay::run(&cfg)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{}", replay_line(&r));
    }
    if r.sent.refused > 0 {
        eprintln!(
            "linecap: nothing listens at {}: the kernel refused {} send calls; start the receiver first",
            a.to.map_or_else(String::new, |t| t.to_string()),
            r.sent.refused
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn replay_line(r: &ReplayReport) -> String {
    let impaired = r.sent.impaired.map_or(String::new(), |c| {
        format!("; impaired: {} dropped, {} reordered, {} duplicated", c.dropped, c.reordered, c.duplicated)
    });
    let late = r.lateness.map_or(String::new(), |l| {
        format!(
            "; late against the recording: median {} ns, p99 {} ns, max {} ns",
            l.p50_ns, l.p99_ns, l.max_ns
        )
    });
    format!(
        "replayed {} of {} records ({} not UDP, {} skipped, {} too large to send): {} bytes in {:.2} s, {:.3} Mpps, {} retried errors{late}{impaired}",
        r.sent.packets,
        r.records,
        r.not_udp,
        r.skipped,
        r.unsendable,
        r.sent.bytes,
        r.sent.duration_s,
        r.sent.pps / 1e6,
        r.sent.send_errors
    )
}
