//! The capture engine: one pinned receive thread per socket, each running
//! source → sinks to completion on its batch; a monitor on the calling
//! thread that refreshes kernel counters, the live line and the stop
//! conditions; and the final report with the per-stage accounting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::assemble::AssemblyCounts;
use crate::sink::blocks::{BlockReport, BlockSink, BlockSinkOptions};
use crate::sink::pcap::{PcapOptions, PcapSink};
use crate::sink::relay::{RelayCounts, RelayOptions, RelaySink};
use crate::sink::verify::{VerifyCounts, VerifySink};
use crate::sink::{NullSink, Sink};
use crate::source::BackendKind;
use crate::source::Source;
use crate::source::afpacket::{AfPacketOptions, AfPacketSource, FanoutMode};
use crate::source::socket::{RecvMode, SocketOptions, SocketSource};
use crate::source::uring::UringSource;
use crate::source::xdp::{XdpOptions, XdpSource};
use crate::stats::kernel::KernelSnapshot;
use crate::stats::{
    BLOCKS_COUNTERS, BlocksIdx, KERNEL_COUNTERS, KernelIdx, QUEUE_COUNTERS, QueueIdx, RELAY_COUNTERS,
    RX_COUNTERS, RelayIdx, RxIdx, SETTINGS_COUNTERS, SettingsIdx, Snapshot, StageCounters, StageSpec,
    StatsFile, VERIFY_COUNTERS, VerifyIdx, WRITER_COUNTERS, WriterIdx,
};
use crate::sys;

mod drops;
mod open;
mod place;
mod report;
mod rx;

pub use drops::DropPlace;
use open::{SourceInfo, open_sources};
use report::build_report;
pub use report::{CaptureReport, Reader, live_line};
use rx::{RxThreadResult, build_sinks, rx_loop};

/// Which kernel interface to read, with its options.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// UDP sockets (one per thread, SO_REUSEPORT when several).
    Socket(SocketOptions),
    /// UDP sockets read with an io_uring multishot receive (one ring per thread).
    Uring(SocketOptions),
    /// AF_XDP on one queue, with linecap's XDP program redirecting the flow.
    Xdp(XdpOptions),
    /// AF_PACKET TPACKET_V3 rings (one per thread, one fanout group when several).
    AfPacket {
        /// Ring, interface and filter options.
        opts: AfPacketOptions,
        /// How a fanout group spreads packets over the threads.
        fanout: FanoutMode,
    },
    /// Capture files read back, one after the other, by one thread.
    File(crate::source::file::FileOptions),
}

/// Everything a capture needs to know.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Counters file name (`linecap stats NAME`).
    pub name: String,
    /// Backend and its options.
    pub backend: BackendConfig,
    /// Receive threads (one socket or ring each).
    pub threads: usize,
    /// CPUs to pin the receive threads to, in order (none: not pinned).
    pub cpus: Vec<usize>,
    /// CPUs the sinks' writer threads run on (none: every CPU the capture
    /// may use but `cpus`).
    pub writer_cpus: Vec<usize>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Write a pcap file.
    pub pcap: Option<PcapOptions>,
    /// Verify `seq` payloads.
    pub verify: bool,
    /// What makes one stream for the verifier.
    pub verify_streams: crate::sink::verify::StreamKey,
    /// Assemble into block files.
    pub blocks: Option<BlockSinkOptions>,
    /// Forward every UDP payload to another address.
    pub relay: Option<RelayOptions>,
    /// Told when the capture starts and, every half second, how it goes
    /// (the engine prints nothing itself: the CLI's live line is a watcher).
    pub watcher: Option<Watcher>,
    /// Permission of the counters file and rings (owner writes; see
    /// [`crate::stats::DEFAULT_FILE_MODE`]).
    pub file_mode: u32,
    /// Keep the counters file after the capture ends (`linecap stats NAME`
    /// shows the final numbers); otherwise it is removed.
    pub keep_stats: bool,
}

impl CaptureConfig {
    /// A capture named `name` on `backend` with one unpinned thread, no
    /// sink but the count, no stop condition (it runs until SIGINT/SIGTERM
    /// or [`crate::sys::request_stop`]), no watcher, and its counters file
    /// removed at the end.
    pub fn new(name: &str, backend: BackendConfig) -> Self {
        CaptureConfig {
            name: name.to_string(),
            backend,
            threads: 1,
            cpus: Vec::new(),
            writer_cpus: Vec::new(),
            duration: None,
            count: None,
            pcap: None,
            verify: false,
            verify_streams: Default::default(),
            blocks: None,
            relay: None,
            watcher: None,
            file_mode: crate::stats::DEFAULT_FILE_MODE,
            keep_stats: false,
        }
    }
}

/// What a running capture tells its [`Watcher`].
#[derive(Debug)]
pub enum CaptureEvent<'a> {
    /// The sources are open and the receive threads started.
    Started {
        /// The capture's name (its counters file).
        name: &'a str,
        /// Where it listens: an address, or an interface and queue.
        listen: &'a str,
        /// The backend and its settings, in words.
        description: &'a str,
        /// Receive threads.
        threads: usize,
    },
    /// Every half second while it runs: the counters and the rates since
    /// the previous event.
    Progress {
        /// The capture's counters, read back from its file.
        snapshot: &'a Snapshot,
        /// Packets per second received since the previous event.
        pps: f64,
        /// Payload bits per second received since the previous event.
        bps: f64,
    },
}

/// A callback for a capture's [`CaptureEvent`]s, called from its monitor
/// thread (never from a receive thread).
#[derive(Clone)]
pub struct Watcher(pub Arc<dyn Fn(&CaptureEvent<'_>) + Send + Sync>);

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher(..)")
    }
}

/// The stage of a group assembly's own counters (several receive threads, one block sequence).
pub const GROUP_STAGE: &str = "blocks.group";

fn stage_specs(cfg: &CaptureConfig) -> Vec<StageSpec> {
    let mut v = Vec::new();
    for t in 0..cfg.threads {
        v.push(StageSpec { name: format!("rx.{t}"), counters: RX_COUNTERS });
        if cfg.verify {
            v.push(StageSpec { name: format!("verify.{t}"), counters: VERIFY_COUNTERS });
        }
        if cfg.pcap.is_some() {
            v.push(StageSpec { name: format!("pcap.queue.{t}"), counters: QUEUE_COUNTERS });
            v.push(StageSpec { name: format!("pcap.writer.{t}"), counters: WRITER_COUNTERS });
        }
        if cfg.blocks.is_some() {
            v.push(StageSpec { name: format!("blocks.{t}"), counters: BLOCKS_COUNTERS });
        }
        if cfg.relay.is_some() {
            v.push(StageSpec { name: format!("relay.{t}"), counters: RELAY_COUNTERS });
        }
    }
    if cfg.blocks.is_some() && cfg.threads > 1 {
        // The group's blocks, lost slots and writer (its members' packets are on blocks.N).
        v.push(StageSpec { name: GROUP_STAGE.into(), counters: BLOCKS_COUNTERS });
    }
    v.push(StageSpec { name: "settings".into(), counters: SETTINGS_COUNTERS });
    v.push(StageSpec { name: "kernel".into(), counters: KERNEL_COUNTERS });
    v
}

/// Writes what the capture runs with, as granted, into its `settings` stage.
fn publish_settings(c: &StageCounters, cfg: &CaptureConfig, info: &SourceInfo) {
    let mask = cfg.cpus.iter().filter(|&&cpu| cpu < 64).fold(0u64, |m, &cpu| m | 1 << cpu);
    let (filter, ring, port) = match &cfg.backend {
        BackendConfig::Socket(o) | BackendConfig::Uring(o) => (o.filter.is_some(), 0, o.listen.port()),
        BackendConfig::Xdp(o) => (false, u64::from(o.ring) * u64::from(o.frame_size), o.listen.port()),
        BackendConfig::AfPacket { opts, .. } => {
            (opts.filter.is_some(), u64::from(opts.ring.block_size) * u64::from(opts.ring.block_nr), 0)
        }
        BackendConfig::File(o) => (o.filter.is_some(), 0, 0),
    };
    // GRO and busy polling as the kernel granted them, not as asked.
    let (gro, busy_poll) = (info.gro, info.busy_poll);
    c.set(SettingsIdx::RcvbufBytes as usize, u64::try_from(info.buffer).unwrap_or(0));
    c.set(SettingsIdx::RcvbufForced as usize, u64::from(info.buffer_forced));
    c.set(SettingsIdx::Filter as usize, u64::from(filter));
    c.set(SettingsIdx::Gro as usize, u64::from(gro));
    c.set(SettingsIdx::BusyPollNs as usize, u64::from(busy_poll.unwrap_or(0)) * 1000);
    let refused = info.busy_poll_refused.map_or(0, |errno| u64::try_from(errno).unwrap_or(0));
    c.set(SettingsIdx::BusyPollRefused as usize, refused);
    c.set(SettingsIdx::Threads as usize, cfg.threads as u64);
    c.set(SettingsIdx::CpuMask as usize, mask);
    c.set(SettingsIdx::RingBytes as usize, ring);
    c.set(SettingsIdx::Port as usize, u64::from(port));
}

/// Runs a capture until its duration or count is reached, or SIGINT/SIGTERM.
pub fn run(cfg: &CaptureConfig) -> crate::Result<CaptureReport> {
    crate::ensure_valid!(cfg.threads >= 1, "--threads must be at least 1");
    crate::stats::check_name(&cfg.name).map_err(|e| crate::failed!("--name: {e}"))?;
    // Hold the name first: a second capture with the same name is refused
    // here, before it opens a socket (a reuseport member would steal the
    // first one's packets) or touches any file.
    let (mut stats_file, mut stages) = StatsFile::create(&cfg.name, &stage_specs(cfg), cfg.file_mode)?;
    // Until the capture runs, a failure leaves nothing behind.
    stats_file.set_remove_on_drop(true);
    // Open every source before starting anything, so a bad address, a
    // port in use or a missing interface fails at once with one message.
    let opened = open_sources(cfg)?;
    let sources = opened.sources;
    let info = opened.info;
    stats_file.set_backend(info.backend);
    let kernel_counters = stages.pop().expect("kernel stage is last");
    publish_settings(&stages.pop().expect("settings stage is before it"), cfg, &info);
    // Readers (and `orchestrate`, waiting for readiness) see the file from here.
    stats_file.publish();

    // Sinks per thread, built here so file errors surface before traffic;
    // their writer threads start away from the receive cores.
    let per_thread = {
        let _placed = place::PlacedOn::new(&place::writer_cpus(cfg));
        build_sinks(cfg, stages)?
    };

    let stop = Arc::new(AtomicBool::new(false));
    let start_kernel = KernelSnapshot::read();
    let started = Instant::now();
    let handles = start_receivers(cfg, sources, per_thread, &stop)?;
    stats_file.set_remove_on_drop(!cfg.keep_stats);
    if let Some(w) = &cfg.watcher {
        (w.0)(&CaptureEvent::Started {
            name: &cfg.name,
            listen: &info.listen,
            description: &info.description,
            threads: cfg.threads,
        });
    }
    let stopped_by = {
        // This thread wakes every 50 ms and reads the kernel's counters
        // from /proc every 500 ms (about 0.1 ms each time, measured): time
        // that, on a receive core, the kernel's receive work waits for.
        let _placed = place::PlacedOn::new(&place::writer_cpus(cfg));
        monitor(cfg, &handles, &stop, started, &stats_file, &kernel_counters, &start_kernel)
    };
    let duration = started.elapsed();
    let (results, panicked) = join_receivers(handles);
    publish_kernel(&kernel_counters, &start_kernel);
    stats_file.touch();
    let snap = Snapshot::read(&cfg.name, stats_file.path())?;
    let end_kernel = KernelSnapshot::read();
    let mut report = build_report(cfg, &info, &snap, &start_kernel, &end_kernel, duration, stopped_by);
    report.failure = panicked;
    report::add_sink_reports(&mut report, cfg, &snap, &results);
    Ok(report)
}

/// One receive thread per source, each with its sinks, pinned where asked.
fn start_receivers(
    cfg: &CaptureConfig,
    sources: Vec<Box<dyn Source>>,
    per_thread: Vec<rx::ThreadSinks>,
    stop: &Arc<AtomicBool>,
) -> crate::Result<Vec<std::thread::JoinHandle<RxThreadResult>>> {
    let delivered_total = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for (t, (source, (rx, verify, sinks))) in sources.into_iter().zip(per_thread).enumerate() {
        let stop = stop.clone();
        let total = delivered_total.clone();
        let cpu = cfg.cpus.get(t).copied();
        let count = cfg.count;
        let h = std::thread::Builder::new()
            .name(format!("linecap-rx{t}"))
            .spawn(move || rx_loop(source, rx, verify, sinks, cpu, &stop, &total, count))?;
        handles.push(h);
    }
    Ok(handles)
}

/// Waits for every receive thread. A panic in one is a bug; it must not
/// cost the books of the others: they stop and drain, the report is built
/// from what was counted, and the failure is carried in it (the CLI exits 1).
fn join_receivers(
    handles: Vec<std::thread::JoinHandle<RxThreadResult>>,
) -> (Vec<RxThreadResult>, Option<String>) {
    let mut results = Vec::new();
    let mut failure = None;
    for (t, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(r) => results.push(r),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                failure = Some(format!("receive thread {t} panicked: {what}"));
            }
        }
    }
    (results, failure)
}

/// Watches a running capture until every receive thread has ended: stops
/// them on a signal, the duration or the first to end; publishes the
/// kernel's counters and tells the watcher every half second. Returns why
/// it stopped.
fn monitor(
    cfg: &CaptureConfig,
    handles: &[std::thread::JoinHandle<RxThreadResult>],
    stop: &AtomicBool,
    started: Instant,
    stats_file: &StatsFile,
    kernel_counters: &StageCounters,
    start_kernel: &KernelSnapshot,
) -> String {
    // Every thread ending on its own: the count reached, or the files read.
    let ended = if matches!(cfg.backend, BackendConfig::File(_)) { "end of input" } else { "count" };
    let mut stopped_by = ended.to_string();
    let mut last_line = Instant::now();
    let mut last_packets = 0u64;
    let mut last_bytes = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if handles.iter().all(|h| h.is_finished()) {
            break;
        }
        // One thread ended on its own (count reached, a receive error, a
        // panic): the others stop and drain too.
        if handles.iter().any(|h| h.is_finished()) {
            stop.store(true, Ordering::Release);
        }
        if sys::stop_requested() {
            stopped_by = match sys::stop_signal() {
                Some(s) if s == libc::SIGTERM as u32 => "SIGTERM".into(),
                Some(_) => "SIGINT".into(),
                None => "request".into(),
            };
            stop.store(true, Ordering::Release);
        }
        if cfg.duration.is_some_and(|d| started.elapsed() >= d) {
            stopped_by = "duration".into();
            stop.store(true, Ordering::Release);
        }
        if last_line.elapsed() >= Duration::from_millis(500) {
            publish_kernel(kernel_counters, start_kernel);
            stats_file.touch();
            if let Some(w) = &cfg.watcher
                && let Ok(snapshot) = Snapshot::read(&cfg.name, stats_file.path())
            {
                let dt = last_line.elapsed().as_secs_f64();
                let p = snapshot.total(RxIdx::Packets);
                let b = snapshot.total(RxIdx::Bytes);
                let pps = p.saturating_sub(last_packets) as f64 / dt;
                let bps = b.saturating_sub(last_bytes) as f64 * 8.0 / dt;
                (w.0)(&CaptureEvent::Progress { snapshot: &snapshot, pps, bps });
                last_packets = p;
                last_bytes = b;
            }
            last_line = Instant::now();
        }
    }
    stopped_by
}

fn publish_kernel(c: &StageCounters, start: &KernelSnapshot) {
    let now = KernelSnapshot::read();
    c.set(KernelIdx::UdpRcvbufErrors as usize, now.udp.rcvbuf_errors.saturating_sub(start.udp.rcvbuf_errors));
    c.set(KernelIdx::UdpInErrors as usize, now.udp.in_errors.saturating_sub(start.udp.in_errors));
    c.set(KernelIdx::UdpCsumErrors as usize, now.udp.in_csum_errors.saturating_sub(start.udp.in_csum_errors));
    c.set(KernelIdx::UdpNoPorts as usize, now.udp.no_ports.saturating_sub(start.udp.no_ports));
    c.set(
        KernelIdx::IfaceRxDropped as usize,
        now.iface_rx_dropped().saturating_sub(start.iface_rx_dropped()),
    );
    c.set(KernelIdx::SoftnetDropped as usize, now.softnet_dropped.saturating_sub(start.softnet_dropped));
}
