//! The soak: one capture on the testbed for a long time at a steady rate
//! (80% of its zero-loss rate, say), sampled every few seconds for what
//! grows when something leaks (resident memory, open descriptors,
//! threads) and for the books, which must close at the end as they do
//! after a short run. `linecap soak --duration 1h --rate 200kpps`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::orchestrate::{self, CaptureChild, Identity, TestbedCounters};
use crate::stats::{self, RxIdx, Snapshot, VerifyIdx};
use crate::testbed::{self, Testbed, TestbedOptions};

/// What to soak.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long the stream runs.
    pub duration: Duration,
    /// Packets per second offered.
    pub rate_pps: f64,
    /// Between samples.
    pub interval: Duration,
    /// Capture options besides `--listen`, `--cpus` and `--verify seq`.
    pub capture_args: Vec<String>,
    /// Folder for soak.json and soak.csv.
    pub out: PathBuf,
}

/// One sample of the capture process and its counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Sample {
    /// Seconds since the stream started.
    pub t_s: f64,
    /// Resident memory of the capture process (KiB).
    pub rss_kib: u64,
    /// Open file descriptors of the capture process.
    pub fds: u64,
    /// Threads of the capture process.
    pub threads: u64,
    /// Packets delivered so far.
    pub delivered: u64,
    /// Drops the capture counted so far.
    pub kernel_drops: u64,
    /// Frames the testbed's veth dropped so far (its ring full while the
    /// NAPI thread ran late): loss before the capture, which it cannot count.
    pub veth_drops: u64,
    /// Sequence numbers the verifier found missing so far.
    pub missing: u64,
}

/// The soak's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakReport {
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// The books at the end (sender, capture, testbed).
    pub identity: Identity,
    /// The verifier's missing count at the end (every loss, wherever it happened).
    pub missing: u64,
    /// Offered rate, packets per second.
    pub rate_pps: f64,
    /// Resident memory after the first minute and at the end, and the most (KiB).
    pub rss_kib: (u64, u64, u64),
    /// Open descriptors at the first and the last sample.
    pub fds: (u64, u64),
}

fn proc_status_field(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next().map(str::to_string))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The capture process `pid` named `name` and the testbed's drops since `before`.
fn sample(pid: u32, name: &str, t_s: f64, tb: &Testbed, before: &TestbedCounters) -> Sample {
    let snap = Snapshot::read(name, &stats::stats_path(name)).ok();
    Sample {
        veth_drops: TestbedCounters::read(tb).map_or(0, |now| before.frames_dropped(&now)),
        t_s,
        rss_kib: proc_status_field(pid, "VmRSS"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
        threads: proc_status_field(pid, "Threads"),
        delivered: snap.as_ref().map_or(0, |s| s.total(RxIdx::Packets)),
        kernel_drops: snap.as_ref().map_or(0, |s| s.total(RxIdx::KernelDrops)),
        missing: snap.as_ref().map_or(0, |s| s.total(VerifyIdx::Missing)),
    }
}

/// Runs the soak on a testbed of its own and writes soak.json and soak.csv.
pub fn run(cfg: &SoakConfig) -> anyhow::Result<SoakReport> {
    testbed::require_root("the soak builds a testbed")?;
    let tb = Testbed::up(&TestbedOptions::new(&testbed::unique_name("soak")))?;
    tracing::info!("{}", tb.describe());
    let exe = orchestrate::linecap_exe();
    let name = testbed::unique_name("soak");
    let mut args: Vec<String> =
        ["--listen", "198.18.0.2:9000", "--verify", "seq", "--cpus", &tb.rx_cpu.to_string()]
            .map(String::from)
            .to_vec();
    args.extend(cfg.capture_args.iter().cloned());
    let capture = CaptureChild::spawn(&exe, Some(&tb.ns_rx), &name, &args, false)?;
    let before = TestbedCounters::read(&tb)?;
    let send_args: Vec<String> = [
        "--to".to_string(),
        "198.18.0.2:9000".to_string(),
        "--rate".into(),
        format!("{}", cfg.rate_pps),
        "--duration".into(),
        format!("{}s", cfg.duration.as_secs_f64()),
        "--cpus".into(),
        tb.tx_cpu.to_string(),
    ]
    .to_vec();
    let (exe_tx, ns_tx) = (exe.clone(), tb.ns_tx.clone());
    let sender = std::thread::spawn(move || orchestrate::send(&exe_tx, Some(&ns_tx), &send_args));
    let started = Instant::now();
    let mut samples = Vec::new();
    while !sender.is_finished() {
        std::thread::sleep(cfg.interval.min(Duration::from_millis(200)));
        if samples.is_empty()
            || started.elapsed().as_secs_f64() >= samples.len() as f64 * cfg.interval.as_secs_f64()
        {
            let s = sample(capture.pid(), &name, started.elapsed().as_secs_f64(), &tb, &before);
            tracing::info!(
                "soak {:>6.0} s: rss {} KiB, fds {}, threads {}, delivered {}, drops {} (capture) + {} (veth), verifier missing {}",
                s.t_s,
                s.rss_kib,
                s.fds,
                s.threads,
                s.delivered,
                s.kernel_drops,
                s.veth_drops,
                s.missing
            );
            samples.push(s);
        }
    }
    let sent = sender.join().map_err(|_| anyhow::anyhow!("the sender thread panicked"))??;
    samples.push(sample(capture.pid(), &name, started.elapsed().as_secs_f64(), &tb, &before));
    std::thread::sleep(Duration::from_millis(200));
    let report = capture.stop()?;
    let after = TestbedCounters::read(&tb)?;
    let identity = Identity::close(&sent, &report, &before.drops_from(&after, &report, Some(&sent)));
    let settled = samples.iter().find(|s| s.t_s >= 60.0).or(samples.first()).map_or(0, |s| s.rss_kib);
    let soak = SoakReport {
        missing: report.verify.map_or(0, |v| v.missing),
        rate_pps: cfg.rate_pps,
        rss_kib: (
            settled,
            samples.last().map_or(0, |s| s.rss_kib),
            samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        ),
        fds: (samples.first().map_or(0, |s| s.fds), samples.last().map_or(0, |s| s.fds)),
        samples,
        identity,
    };
    write_files(cfg, &soak)?;
    Ok(soak)
}

fn write_files(cfg: &SoakConfig, soak: &SoakReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.out)?;
    std::fs::write(cfg.out.join("soak.json"), serde_json::to_string_pretty(soak)?)?;
    let mut csv = String::from("t_s,rss_kib,fds,threads,delivered,kernel_drops,veth_drops,missing\n");
    for s in &soak.samples {
        csv += &format!(
            "{:.1},{},{},{},{},{},{},{}\n",
            s.t_s, s.rss_kib, s.fds, s.threads, s.delivered, s.kernel_drops, s.veth_drops, s.missing
        );
    }
    std::fs::write(cfg.out.join("soak.csv"), csv)?;
    Ok(())
}
