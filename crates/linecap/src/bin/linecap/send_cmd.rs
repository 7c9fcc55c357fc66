//! `linecap send`: its options and the line it prints.

use super::*;

use linecap::send::impair::Impairments;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
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
pub(crate) struct SendArgs {
    /// Destination address (or host name) and UDP port; `:9000` is this machine.
    #[arg(long, value_parser = strict::parse_destination)]
    to: SocketAddr,
    /// UDP source port of the frames (afpacket, xdp, xdp-live backends): one flow per
    /// generator; with --flows, the first flow's port (default 41000).
    #[arg(long)]
    src_port: Option<u16>,
    /// Spread the stream over this many flows (consecutive source ports from
    /// --src-port), as an instrument does so that RSS hands it to several queues:
    /// socket (a socket per flow), afpacket and xdp (each frame's port), xdp-live (a
    /// generator per flow, each on its own CPU: veth hands CPU c's frames to
    /// receive queue c).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    flows: u16,
    /// Consecutive sequence numbers each flow carries before the next flow's turn.
    #[arg(long, default_value_t = 1, value_parser = strict::parse_positive)]
    flow_run: u64,
    /// UDP payload bytes per packet.
    #[arg(long, default_value = "272", value_parser = units::parse_size)]
    size: u64,
    /// Rate: packets per second (`2.35Mpps`, `100000`) or payload bits per second (`5.12Gbit`); `max` = unpaced.
    #[arg(long, default_value = "100kpps", value_parser = units::parse_rate)]
    rate: Rate,
    /// Stop after this many packets.
    #[arg(long, value_parser = strict::parse_positive)]
    count: Option<u64>,
    /// Stop after this long.
    #[arg(long, value_parser = units::parse_duration)]
    duration: Option<Duration>,
    /// Sending threads (sequence numbers are interleaved across them).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// CPUs to pin send threads to: `0`, `0,1` or `0-3`.
    #[arg(long, value_parser = strict::parse_cpus)]
    cpus: Option<strict::Cpus>,
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
    #[arg(long, value_parser = strict::parse_batch)]
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
    /// Leave out this share of sequence numbers (`1%`, `0.01`), counted in the report
    /// (socket backend; never the first packet, so a receiver sees every gap).
    #[arg(long, value_name = "P", value_parser = parse_share)]
    drop: Option<f64>,
    /// Hold back this share of packets and send each after DEPTH later ones
    /// (`1%:16`; DEPTH 8 if not given), counted.
    #[arg(long, value_name = "P[:DEPTH]", value_parser = parse_reorder)]
    reorder: Option<(f64, u32)>,
    /// Send this share of packets twice, counted.
    #[arg(long, value_name = "P", value_parser = parse_share)]
    duplicate: Option<f64>,
    /// Seed of --drop, --reorder and --duplicate: the same seed, the same damage.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// A share: `1%` or `0.01`, within 0..=1.
pub(crate) fn parse_share(s: &str) -> Result<f64, String> {
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.trim().parse::<f64>(),
    }
    .map_err(|_| format!("'{s}' is not a share (e.g. 1% or 0.01)"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("'{s}' is not between 0 and 100%"));
    }
    Ok(v)
}

/// `P` or `P:DEPTH`.
pub(crate) fn parse_reorder(s: &str) -> Result<(f64, u32), String> {
    let (p, depth) = match s.split_once(':') {
        Some((p, d)) => (p, d.parse::<u32>().map_err(|_| format!("depth '{d}' is not a whole number"))?),
        None => (s, 8),
    };
    if depth == 0 {
        return Err("depth must be at least 1".into());
    }
    Ok((parse_share(p)?, depth))
}

/// The damage `--drop`, `--reorder` and `--duplicate` ask for.
pub(crate) fn impairments(
    drop: Option<f64>,
    reorder: Option<(f64, u32)>,
    duplicate: Option<f64>,
    seed: u64,
) -> Impairments {
    Impairments {
        drop: drop.unwrap_or(0.0),
        reorder: reorder.map_or(0.0, |r| r.0),
        depth: reorder.map_or(8, |r| r.1),
        duplicate: duplicate.unwrap_or(0.0),
        seed,
    }
}

/// Options that apply to some send backends only.
const SEND_BACKEND_RULES: &[(&str, &[SendBackend], &str)] = &[
    (
        "iface",
        &[SendBackend::Afpacket, SendBackend::Xdp, SendBackend::XdpLive],
        "applies to the afpacket, xdp and xdp-live backends (the socket backend routes by --to)",
    ),
    ("gso", &[SendBackend::Socket], "applies to --backend socket"),
    ("drop", &[SendBackend::Socket], "applies to --backend socket"),
    ("reorder", &[SendBackend::Socket], "applies to --backend socket"),
    ("duplicate", &[SendBackend::Socket], "applies to --backend socket"),
];

/// Refuses every send option given that the backend or format ignores.
fn check_send_applicable(a: &SendArgs, m: &clap::ArgMatches) -> anyhow::Result<()> {
    let rules: Vec<(&str, &str)> = SEND_BACKEND_RULES.iter().map(|(id, _, why)| (*id, *why)).collect();
    strict::refuse_inapplicable(m, &rules, |id| {
        SEND_BACKEND_RULES.iter().any(|(rule, backends, _)| *rule == id && backends.contains(&a.backend))
    })?;
    let format_rules = [
        ("raw", "needs --format raw"),
        ("channels", "needs --format raw or vdif"),
        ("frames_per_second", "needs --format vdif"),
        ("heap_packets", "needs --format spead or spead-heap"),
    ];
    strict::refuse_inapplicable(m, &format_rules, |id| match id {
        "raw" => matches!(a.format, StreamKind::Raw),
        "channels" => matches!(a.format, StreamKind::Raw | StreamKind::Vdif),
        "frames_per_second" => matches!(a.format, StreamKind::Vdif),
        _ => matches!(a.format, StreamKind::Spead | StreamKind::SpeadHeap),
    })?;
    if a.threads == 0 {
        strict::usage!("--threads must be positive");
    }
    Ok(())
}

/// What goes into each packet, and the packet's size.
fn payload_format(a: &SendArgs) -> anyhow::Result<(PayloadFormat, usize)> {
    Ok(match a.format {
        StreamKind::Seq => (PayloadFormat::Seq, a.size as usize),
        StreamKind::Raw => {
            let spec =
                a.raw.as_deref().ok_or_else(|| strict::usage_error("--format raw needs --raw SPEC"))?;
            let spec = RawSpec::parse(spec).map_err(|e| strict::usage_error(format!("--raw: {e}")))?;
            (PayloadFormat::Raw { spec, channels: a.channels }, spec.packet_len())
        }
        StreamKind::Vdif => {
            let size = a.size as usize;
            if !(size >= 40 && size.is_multiple_of(8)) {
                strict::usage!("--size (the VDIF frame) must be a multiple of 8 of at least 40 bytes");
            }
            (PayloadFormat::Vdif { fps: a.frames_per_second.max(1), threads: a.channels.max(1) }, size)
        }
        StreamKind::Spead | StreamKind::SpeadHeap => {
            let size = a.size as usize;
            if size <= linecap::format::spead::GEN_HEADER {
                strict::usage!("--size must exceed the 48-byte SPEAD header");
            }
            (PayloadFormat::Spead { parts: a.heap_packets.max(1) }, size)
        }
    })
}

pub(crate) fn cmd_send(a: SendArgs, m: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    check_send_applicable(&a, m)?;
    enter_netns(&a.netns)?;
    sys::install_stop_handler()?;
    let (format, size) = payload_format(&a)?;
    let cfg = SendConfig {
        to: a.to,
        size,
        format,
        rate: a.rate,
        count: a.count,
        duration: a.duration,
        threads: a.threads,
        cpus: a.cpus.unwrap_or_default().0,
        batch: a.batch.unwrap_or(match a.backend {
            SendBackend::Socket => 64,
            SendBackend::Afpacket | SendBackend::XdpLive | SendBackend::Xdp => 512,
        }),
        burst: a.burst,
        gso: a.gso,
        plain_loop: a.plain_loop,
        src_port: a.src_port,
        impair: impairments(a.drop, a.reorder, a.duplicate, a.seed),
        flows: usize::from(a.flows),
        flow_run: a.flow_run,
    };
    if matches!(a.backend, SendBackend::Socket) && a.src_port.is_some() && a.flows == 1 {
        strict::usage!(
            "--src-port applies to the frame-building backends (afpacket, xdp, xdp-live), or with --flows"
        );
    }
    if a.flows > 1 && a.threads > 1 {
        strict::usage!("--flows spreads one thread's stream: give --threads 1");
    }
    if strict::given(m, "flow_run") && a.flows == 1 {
        strict::usage!("--flow-run needs --flows N");
    }
    let r = match a.backend {
        SendBackend::Socket => send_socket::run(&cfg)?,
        SendBackend::Afpacket => {
            let Some(iface) = &a.iface else {
                strict::usage!("--backend afpacket needs --iface IF (see 'ip link')")
            };
            linecap::send::afpacket::run(&cfg, iface)?
        }
        SendBackend::XdpLive => {
            let Some(iface) = &a.iface else {
                strict::usage!("--backend xdp-live needs --iface IF (see 'ip link')")
            };
            linecap::send::xdplive::run(&cfg, iface)?
        }
        SendBackend::Xdp => {
            let Some(iface) = &a.iface else {
                strict::usage!("--backend xdp needs --iface IF (see 'ip link')")
            };
            linecap::send::xdp::run(&cfg, iface)?
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{}", send_line(&r));
    }
    if r.refused > 0 {
        eprintln!(
            "linecap: nothing listens at {}: the kernel refused {} send calls (ICMP port unreachable came back); start the receiver first",
            a.to, r.refused
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn send_line(r: &SendReport) -> String {
    let impaired = r.impaired.map_or(String::new(), |c| {
        format!("; impaired: {} dropped, {} reordered, {} duplicated", c.dropped, c.reordered, c.duplicated)
    });
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
    ) + &impaired
}
