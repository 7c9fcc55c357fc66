//! `linecap bench` and `linecap soak`: the measurements.

use super::*;

#[derive(Args)]
pub(crate) struct SoakArgs {
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

pub(crate) fn cmd_soak(a: SoakArgs) -> anyhow::Result<ExitCode> {
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
pub(crate) struct BenchArgs {
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
    /// Interleaved rounds at the --at rate (each round starts one row later).
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

pub(crate) fn cmd_bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
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
