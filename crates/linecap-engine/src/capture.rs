//! The capture engine: one pinned receive thread per socket, each running
//! source → sinks to completion on its batch; a monitor on the calling
//! thread that refreshes kernel counters, the live line and the stop
//! conditions; and the final report with the per-stage accounting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::assemble::AssemblyCounts;
use crate::sink::blocks::{BlockOutput, BlockReport, BlockSink, BlockSinkOptions};
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

/// Which kernel interface to read, with its options.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// UDP sockets (one per thread, SO_REUSEPORT when several).
    Socket(SocketOptions),
    /// UDP sockets read with io_uring multishot recvmsg (one ring per thread).
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
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Write a pcap file.
    pub pcap: Option<PcapOptions>,
    /// Verify `seq` payloads.
    pub verify: bool,
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
            duration: None,
            count: None,
            pcap: None,
            verify: false,
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

/// The final accounting of a capture.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CaptureReport {
    /// Counters file name.
    pub name: String,
    /// Backend (`socket`, `afpacket`).
    pub backend: String,
    /// Receive mode (`recv`, `recvmmsg`, `tpacket_v3`).
    pub mode: String,
    /// Whether UDP GRO was on (socket backend).
    pub gro: bool,
    /// Receive threads.
    pub threads: usize,
    /// Where it listened: an address and port, or an interface.
    pub listen: String,
    /// Packets delivered through every stage.
    pub packets: u64,
    /// Payload bytes of the delivered packets.
    pub bytes: u64,
    /// Payload bytes of every packet received (`received`).
    #[serde(default)]
    pub received_bytes: u64,
    /// Packets linecap took from the kernel.
    pub received: u64,
    /// Datagrams or GRO super-packets received.
    pub datagrams: u64,
    /// Receive syscalls made.
    pub syscalls: u64,
    /// Drops attributed to this capture, by stage: offered = packets + sum of these
    /// (plus what the network lost before the socket, which the testbed reads).
    pub drops: BTreeMap<String, u64>,
    /// Kernel counters of this network namespace over the capture (deltas).
    pub kernel: BTreeMap<String, u64>,
    /// Wall time from start to stop.
    pub duration_s: f64,
    /// CPU time of the receive threads.
    pub cpu_user_ns: u64,
    /// CPU time of the receive threads in the kernel.
    pub cpu_sys_ns: u64,
    /// Receive-thread CPU per received packet.
    pub cpu_ns_per_packet: f64,
    /// Receive buffer granted by the kernel (socket backend), or ring size in bytes.
    pub rcvbuf: i64,
    /// Verifier counts (summed over threads), with `--verify seq`.
    pub verify: Option<VerifyCounts>,
    /// Assembly and block files (summed over threads), with `--blocks`.
    #[serde(default)]
    pub blocks: Option<BlockReport>,
    /// The relay's books (summed over threads), with `--relay`.
    #[serde(default)]
    pub relay: Option<RelayCounts>,
    /// Why the capture stopped.
    pub stopped_by: String,
    /// What went wrong, if a receive thread failed (panicked or could not
    /// receive): the report holds what was counted until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl CaptureReport {
    /// The backend it read from (`None` for a bench peer's report).
    pub fn kind(&self) -> Option<BackendKind> {
        BackendKind::parse(&self.backend)
    }

    /// Sum of all attributed drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}

struct RxThreadResult {
    verify: Option<VerifyCounts>,
    sink_error: Option<String>,
    /// Why the source stopped giving packets, when it failed (a file that
    /// turned out corrupt, an interface gone): the capture failed.
    source_error: Option<String>,
}

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
    v.push(StageSpec { name: "settings".into(), counters: SETTINGS_COUNTERS });
    v.push(StageSpec { name: "kernel".into(), counters: KERNEL_COUNTERS });
    v
}

/// Writes what the capture runs with, as granted, into its `settings` stage.
fn publish_settings(c: &StageCounters, cfg: &CaptureConfig, info: &SourceInfo) {
    let mask = cfg.cpus.iter().filter(|&&cpu| cpu < 64).fold(0u64, |m, &cpu| m | 1 << cpu);
    let (filter, gro, busy_poll, ring, port) = match &cfg.backend {
        BackendConfig::Socket(o) | BackendConfig::Uring(o) => {
            (o.filter.is_some(), o.gro, o.busy_poll, 0, o.listen.port())
        }
        BackendConfig::Xdp(o) => {
            (false, false, o.busy_poll, u64::from(o.ring) * u64::from(o.frame_size), o.listen.port())
        }
        BackendConfig::AfPacket { opts, .. } => (
            opts.filter.is_some(),
            false,
            None,
            u64::from(opts.ring.block_size) * u64::from(opts.ring.block_nr),
            0,
        ),
        BackendConfig::File(o) => (o.filter.is_some(), false, None, 0, 0),
    };
    c.set(SettingsIdx::RcvbufBytes as usize, u64::try_from(info.buffer).unwrap_or(0));
    c.set(SettingsIdx::RcvbufForced as usize, u64::from(info.buffer_forced));
    c.set(SettingsIdx::Filter as usize, u64::from(filter));
    c.set(SettingsIdx::Gro as usize, u64::from(gro));
    c.set(SettingsIdx::BusyPollNs as usize, u64::from(busy_poll.unwrap_or(0)) * 1000);
    c.set(SettingsIdx::Threads as usize, cfg.threads as u64);
    c.set(SettingsIdx::CpuMask as usize, mask);
    c.set(SettingsIdx::RingBytes as usize, ring);
    c.set(SettingsIdx::Port as usize, u64::from(port));
}

fn pcap_for_thread(opts: &PcapOptions, t: usize, threads: usize) -> PcapOptions {
    let mut o = opts.clone();
    if threads > 1 {
        let stem = o.path.file_stem().and_then(|s| s.to_str()).unwrap_or("capture").to_string();
        let name = match o.path.extension().and_then(|e| e.to_str()) {
            Some(ext) => format!("{stem}.t{t}.{ext}"),
            None => format!("{stem}.t{t}"),
        };
        o.path = o.path.with_file_name(name);
        o.buffer_bytes /= threads;
    }
    o
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
    stats_file.set_backend(info.backend.name());
    let kernel_counters = stages.pop().expect("kernel stage is last");
    publish_settings(&stages.pop().expect("settings stage is before it"), cfg, &info);
    // Readers (and `orchestrate`, waiting for readiness) see the file from here.
    stats_file.publish();

    // Sinks per thread, built here so file errors surface before traffic.
    let per_thread = build_sinks(cfg, stages)?;

    let stop = Arc::new(AtomicBool::new(false));
    let delivered_total = Arc::new(AtomicU64::new(0));
    let start_kernel = KernelSnapshot::read();
    let started = Instant::now();
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
    stats_file.set_remove_on_drop(!cfg.keep_stats);
    if let Some(w) = &cfg.watcher {
        (w.0)(&CaptureEvent::Started {
            name: &cfg.name,
            listen: &info.listen,
            description: &info.description,
            threads: cfg.threads,
        });
    }

    let stopped_by = monitor(cfg, &handles, &stop, started, &stats_file, &kernel_counters, &start_kernel);
    let duration = started.elapsed();
    // A panic in a receive thread is a bug; it must not cost the books of
    // the others: they stop and drain, the report is built from what was
    // counted, and the failure is carried in it (the CLI exits 1).
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
    publish_kernel(&kernel_counters, &start_kernel);
    stats_file.touch();
    let snap = Snapshot::read(&cfg.name, stats_file.path())?;
    let end_kernel = KernelSnapshot::read();
    let mut report = build_report(cfg, &info, &snap, &start_kernel, &end_kernel, duration, stopped_by);
    report.failure = failure;
    let mut verify_total: Option<VerifyCounts> = None;
    for r in &results {
        if let Some(v) = r.verify {
            verify_total.get_or_insert_with(VerifyCounts::default).add(&v);
        }
    }
    report.verify = verify_total;
    if cfg.relay.is_some() {
        let g = |c: RelayIdx| snap.total(c);
        report.relay = Some(RelayCounts {
            offered: g(RelayIdx::Offered),
            relayed: g(RelayIdx::Relayed),
            dropped: g(RelayIdx::Dropped),
            errors: g(RelayIdx::Errors),
            not_udp: g(RelayIdx::NotUdp),
            syscalls: g(RelayIdx::Syscalls),
            messages: g(RelayIdx::Messages),
        });
    }
    if cfg.blocks.is_some() {
        let g = |c: BlocksIdx| snap.total(c);
        report.blocks = Some(BlockReport {
            assembly: AssemblyCounts {
                packets: g(BlocksIdx::Packets),
                placed: g(BlocksIdx::Placed),
                duplicates: g(BlocksIdx::Duplicates),
                late: g(BlocksIdx::Late),
                malformed: g(BlocksIdx::Malformed),
                invalid: g(BlocksIdx::Invalid),
                bad_channel: g(BlocksIdx::BadChannel),
                no_buffer: g(BlocksIdx::NoBuffer),
                resyncs: g(BlocksIdx::Resyncs),
                out_of_window: g(BlocksIdx::OutOfWindow),
                blocks: g(BlocksIdx::Blocks),
                slots_lost: g(BlocksIdx::SlotsLost),
            },
            written: g(BlocksIdx::Written),
            dropped_blocks: g(BlocksIdx::DroppedBlocks),
            dropped_packets: g(BlocksIdx::DroppedPackets),
            write_errors: g(BlocksIdx::WriteErrors),
            wraps: g(BlocksIdx::Wraps),
            ring_overwritten: g(BlocksIdx::RingOverwritten),
            ring_waits: g(BlocksIdx::RingWaits),
            ring_dropped: g(BlocksIdx::RingDropped),
        });
    }
    if let Some(e) = results.iter().find_map(|r| r.sink_error.clone()) {
        tracing::error!("{e}");
    }
    if let Some(e) = results.iter().find_map(|r| r.source_error.clone()) {
        report.failure.get_or_insert(e);
    }
    Ok(report)
}

/// The sinks of each receive thread, in the order of its stages.
type ThreadSinks = (StageCounters, Option<VerifySink>, Vec<Box<dyn Sink>>);

/// Starts every receive thread's sinks (writers, rings, relays) on the
/// stages made for them.
fn build_sinks(cfg: &CaptureConfig, stages: Vec<StageCounters>) -> crate::Result<Vec<ThreadSinks>> {
    let mut per_thread = Vec::new();
    let mut stage_iter = stages.into_iter();
    // A file waits for its sinks' writers: nothing read back is dropped at a queue.
    let can_wait = matches!(cfg.backend, BackendConfig::File(_));
    for t in 0..cfg.threads {
        let rx = stage_iter.next().expect("rx stage");
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        let mut verify = None;
        if cfg.verify {
            verify = Some(VerifySink::new(stage_iter.next().expect("verify stage")));
        }
        if let Some(p) = &cfg.pcap {
            let q = stage_iter.next().expect("queue stage");
            let w = stage_iter.next().expect("writer stage");
            let mut opts = pcap_for_thread(p, t, cfg.threads);
            opts.wait_for_writer = can_wait;
            sinks.push(Box::new(PcapSink::start(opts, q, w)?));
        }
        if let Some(b) = &cfg.blocks {
            let st = stage_iter.next().expect("blocks stage");
            let mut o = b.clone();
            o.wait_for_writer = can_wait;
            if cfg.threads > 1 {
                match &mut o.output {
                    BlockOutput::Dir(d) => {
                        *d = d.join(format!("t{t}"));
                        std::fs::create_dir_all(&*d)?;
                    }
                    BlockOutput::Shm(r) => r.name = format!("{}.t{t}", r.name),
                }
            }
            sinks.push(Box::new(BlockSink::start(o, st)?));
        }
        if let Some(r) = &cfg.relay {
            let st = stage_iter.next().expect("relay stage");
            sinks.push(Box::new(RelaySink::start(r, st)?));
        }
        if sinks.is_empty() && verify.is_none() {
            sinks.push(Box::new(NullSink));
        }
        per_thread.push((rx, verify, sinks));
    }
    Ok(per_thread)
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

/// What the opened sources are, for messages and the report.
struct SourceInfo {
    backend: BackendKind,
    mode: String,
    listen: String,
    description: String,
    gro: bool,
    buffer: i64,
    buffer_forced: bool,
    drop_stage: &'static str,
}

struct Opened {
    sources: Vec<Box<dyn Source>>,
    info: SourceInfo,
}

fn open_sources(cfg: &CaptureConfig) -> crate::Result<Opened> {
    let mut sources: Vec<Box<dyn Source>> = Vec::with_capacity(cfg.threads);
    let info = match &cfg.backend {
        BackendConfig::Socket(o) => open_sockets(cfg, o, false, &mut sources)?,
        BackendConfig::Uring(o) => open_sockets(cfg, o, true, &mut sources)?,
        BackendConfig::Xdp(o) => open_xdp(cfg, o, &mut sources)?,
        BackendConfig::AfPacket { opts, fanout } => open_afpacket(cfg, opts, *fanout, &mut sources)?,
        BackendConfig::File(o) => open_files(cfg, o, &mut sources)?,
    };
    Ok(Opened { sources, info })
}

/// One UDP socket per thread (SO_REUSEPORT when several), read with
/// `recvmmsg` or io_uring; what they are, for messages and the report.
fn open_sockets(
    cfg: &CaptureConfig,
    o: &SocketOptions,
    uring: bool,
    sources: &mut Vec<Box<dyn Source>>,
) -> crate::Result<SourceInfo> {
    let o = SocketOptions { reuseport: cfg.threads > 1, ..o.clone() };
    let mut setup = None;
    for _ in 0..cfg.threads {
        let opened: std::io::Result<(Box<dyn Source>, _)> = if uring {
            UringSource::open(&o).map(|s| {
                let st = s.setup().clone();
                (Box::new(s) as Box<dyn Source>, st)
            })
        } else {
            SocketSource::open(&o).map(|s| {
                let st = s.setup().clone();
                (Box::new(s) as Box<dyn Source>, st)
            })
        };
        let (s, st) = opened.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => crate::failed!(
                "{e}: another program holds this port; stop it or choose another --listen port"
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                crate::failed!("{e}: no interface has this address in this network namespace")
            }
            _ => crate::Error::from(e),
        })?;
        setup.get_or_insert(st);
        sources.push(s);
    }
    let setup = setup.expect("at least one thread");
    if o.gro && !setup.gro {
        tracing::warn!("UDP GRO is not available on this kernel; receiving plain datagrams");
    }
    let mode = match (uring, o.mode) {
        (true, _) => "multishot-recvmsg",
        (false, RecvMode::Recv) => "recv",
        (false, RecvMode::Recvmmsg) => "recvmmsg",
    };
    Ok(SourceInfo {
        backend: if uring { BackendKind::Uring } else { BackendKind::Socket },
        mode: mode.into(),
        listen: setup.local.to_string(),
        description: format!(
            "{}/{mode}{}, rcvbuf {} KiB{}",
            if uring { "uring" } else { "socket" },
            if setup.gro { "+gro" } else { "" },
            setup.rcvbuf / 1024,
            if setup.rcvbuf_forced { ", forced" } else { "" }
        ),
        gro: setup.gro,
        buffer: i64::from(setup.rcvbuf),
        buffer_forced: setup.rcvbuf_forced,
        // The kernel counts datagrams a socket filter rejects in the
        // same per-socket counter as overflows (and in UdpInErrors);
        // only udp_rcvbuf_errors, namespace-wide, tells them apart.
        drop_stage: if o.filter.is_some() { "socket_overflow_or_filtered" } else { "socket_overflow" },
    })
}

/// One AF_XDP socket and thread per queue.
fn open_xdp(
    cfg: &CaptureConfig,
    o: &XdpOptions,
    sources: &mut Vec<Box<dyn Source>>,
) -> crate::Result<SourceInfo> {
    crate::ensure_valid!(
        cfg.threads == o.queues.max(1) as usize,
        "--backend xdp runs one thread per queue (--queues {}, --threads {})",
        o.queues,
        cfg.threads
    );
    let all = XdpSource::open_all(o)?;
    let mode = all[0].mode();
    sources.extend(all.into_iter().map(|s| Box::new(s) as Box<dyn Source>));
    Ok(SourceInfo {
        backend: BackendKind::Xdp,
        mode: format!(
            "{}, {}",
            if mode.zero_copy { "zero-copy" } else { "copy" },
            if mode.native { "native" } else { "generic" }
        ),
        listen: if o.queues > 1 {
            format!(
                "interface {} queues {}-{} port {}",
                o.iface,
                o.queue,
                o.queue + o.queues - 1,
                o.listen.port()
            )
        } else {
            format!("interface {} queue {} port {}", o.iface, o.queue, o.listen.port())
        },
        description: format!(
            "xdp/{} {} XDP, {} ring entries",
            if mode.zero_copy { "zero-copy" } else { "copy-mode" },
            if mode.native { "native" } else { "generic" },
            o.ring
        ),
        gro: false,
        buffer: i64::from(o.ring) * i64::from(o.frame_size) * i64::from(o.queues.max(1)),
        buffer_forced: false,
        drop_stage: "xsk_dropped",
    })
}

/// One TPACKET_V3 ring per thread, in one fanout group when several.
fn open_afpacket(
    cfg: &CaptureConfig,
    opts: &AfPacketOptions,
    fanout: FanoutMode,
    sources: &mut Vec<Box<dyn Source>>,
) -> crate::Result<SourceInfo> {
    // Fanout group ids are per network namespace; the pid keeps
    // concurrent captures apart.
    let group = (std::process::id() & 0xffff) as u16;
    for _ in 0..cfg.threads {
        let mut o = opts.clone();
        if cfg.threads > 1 {
            o.fanout = Some((group, fanout));
        }
        sources.push(Box::new(AfPacketSource::open(&o)?));
    }
    let ring = u64::from(opts.ring.block_size) * u64::from(opts.ring.block_nr);
    Ok(SourceInfo {
        backend: BackendKind::AfPacket,
        mode: "tpacket_v3".into(),
        listen: format!("interface {}", opts.iface),
        description: format!(
            "afpacket/tpacket_v3, {} blocks of {} KiB, retire {} ms{}{}",
            opts.ring.block_nr,
            opts.ring.block_size / 1024,
            opts.ring.retire_ms,
            if cfg.threads > 1 { format!(", fanout {fanout:?}").to_lowercase() } else { String::new() },
            if opts.filter.is_some() { ", filtered" } else { "" }
        ),
        gro: false,
        buffer: ring as i64,
        buffer_forced: false,
        drop_stage: "packet_ring_dropped",
    })
}

/// The files to read back, by one thread (their order is the packets' order).
fn open_files(
    cfg: &CaptureConfig,
    opts: &crate::source::file::FileOptions,
    sources: &mut Vec<Box<dyn Source>>,
) -> crate::Result<SourceInfo> {
    crate::ensure_valid!(cfg.threads == 1, "--read: files are read by one thread (no --threads)");
    sources.push(Box::new(crate::source::file::FileSource::open(opts.clone())?));
    let inputs = opts.inputs.as_slice();
    let listen = match inputs {
        [one] => format!("{one}"),
        [first, ..] => format!("{first} and {} more", inputs.len() - 1),
        [] => String::new(),
    };
    Ok(SourceInfo {
        backend: BackendKind::File,
        mode: "read".into(),
        listen,
        description: format!("{} file(s) read back", inputs.len()),
        gro: false,
        buffer: 0,
        buffer_forced: false,
        drop_stage: "file_records_skipped",
    })
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

/// The one-line live display.
pub fn live_line(s: &Snapshot, pps: f64, bps: f64) -> String {
    let drops = s.total(RxIdx::KernelDrops);
    let ring = s.total(QueueIdx::RingFullDrops);
    let werr = s.total(WriterIdx::WriteErrorDrops);
    let k = s.stages.iter().find(|st| st.name == "kernel");
    let kv = |n: &str| k.map_or(0, |st| st.get(n));
    let mut line = format!(
        "{} {:>10} {:>10} | delivered {} | drops: kernel {drops}",
        s.name,
        crate::units::si_scaled(pps, "pps"),
        crate::units::si_scaled(bps, "b/s"),
        s.total(RxIdx::Packets) - ring - werr,
    );
    if s.stages.iter().any(|st| st.name.starts_with("pcap.")) {
        line += &format!(" ring {ring} disk {werr}");
    }
    if s.stages.iter().any(|st| st.name.starts_with("blocks.")) {
        line += &format!(
            " | blocks {} slots lost {} late {} dup {} resync {} dropped {}",
            s.total(BlocksIdx::Blocks),
            s.total(BlocksIdx::SlotsLost),
            s.total(BlocksIdx::Late),
            s.total(BlocksIdx::Duplicates),
            s.total(BlocksIdx::Resyncs),
            s.total(BlocksIdx::DroppedBlocks)
        );
    }
    if s.stages.iter().any(|st| st.name.starts_with("verify.")) {
        line +=
            &format!(" | seq gaps {} dup {}", s.total(VerifyIdx::Missing), s.total(VerifyIdx::Duplicates));
    }
    line += &format!(" | kernel rcvbuf {} ifdrop {}", kv("udp_rcvbuf_errors"), kv("iface_rx_dropped"));
    line
}

fn build_report(
    cfg: &CaptureConfig,
    info: &SourceInfo,
    s: &Snapshot,
    k0: &KernelSnapshot,
    k1: &KernelSnapshot,
    duration: Duration,
    stopped_by: String,
) -> CaptureReport {
    let received = s.total(RxIdx::Packets);
    let ring = s.total(QueueIdx::RingFullDrops);
    let werr = s.total(WriterIdx::WriteErrorDrops);
    let mut drops = BTreeMap::new();
    let kernel_drops = s.total(RxIdx::KernelDrops);
    if info.backend == BackendKind::Xdp {
        // Each place an AF_XDP socket loses frames, by the kernel's own counts.
        let ring_full = s.total(RxIdx::RingFullDrops);
        let no_buffer = s.total(RxIdx::NoBufferDrops);
        drops.insert("xsk_rx_ring_full".into(), ring_full);
        drops.insert("xsk_no_fill_frame".into(), no_buffer);
        drops.insert("xsk_invalid_descs".into(), kernel_drops.saturating_sub(ring_full + no_buffer));
    } else {
        drops.insert(info.drop_stage.to_string(), kernel_drops);
    }
    if cfg.pcap.is_some() {
        drops.insert("pcap_ring_full".to_string(), ring);
        drops.insert("pcap_write_error".to_string(), werr);
    }
    let mut kernel = BTreeMap::new();
    if info.backend == BackendKind::File {
        // A file's packets never met the kernel: what the reader left out instead.
        kernel.insert("records_filtered".into(), s.total(RxIdx::Filtered));
    } else {
        kernel_figures(&mut kernel, cfg, info, s, k0, k1);
    }
    let user = s.total(RxIdx::CpuUserNs);
    let sys_ns = s.total(RxIdx::CpuSysNs);
    CaptureReport {
        name: cfg.name.clone(),
        backend: info.backend.name().into(),
        mode: info.mode.clone(),
        gro: info.gro,
        threads: cfg.threads,
        listen: info.listen.clone(),
        packets: received - ring - werr,
        bytes: s
            .total(RxIdx::Bytes)
            .saturating_sub(s.total(QueueIdx::RingFullBytes))
            .saturating_sub(s.total(WriterIdx::WriteErrorBytes)),
        received_bytes: s.total(RxIdx::Bytes),
        received,
        datagrams: s.total(RxIdx::Datagrams),
        syscalls: s.total(RxIdx::Syscalls),
        drops,
        kernel,
        duration_s: duration.as_secs_f64(),
        cpu_user_ns: user,
        cpu_sys_ns: sys_ns,
        cpu_ns_per_packet: if received > 0 { (user + sys_ns) as f64 / received as f64 } else { 0.0 },
        rcvbuf: info.buffer,
        verify: None,
        blocks: None,
        relay: None,
        stopped_by,
        failure: None,
    }
}

/// What the kernel counted over a live capture: the UDP stack's errors,
/// the interface's and softnet's drops, and the backend's own warnings.
fn kernel_figures(
    kernel: &mut BTreeMap<String, u64>,
    cfg: &CaptureConfig,
    info: &SourceInfo,
    s: &Snapshot,
    k0: &KernelSnapshot,
    k1: &KernelSnapshot,
) {
    kernel.insert("udp_rcvbuf_errors".into(), k1.udp.rcvbuf_errors.saturating_sub(k0.udp.rcvbuf_errors));
    kernel.insert("udp_in_errors".into(), k1.udp.in_errors.saturating_sub(k0.udp.in_errors));
    kernel.insert("udp_csum_errors".into(), k1.udp.in_csum_errors.saturating_sub(k0.udp.in_csum_errors));
    kernel.insert("udp_no_ports".into(), k1.udp.no_ports.saturating_sub(k0.udp.no_ports));
    kernel.insert("iface_rx_dropped".into(), k1.iface_rx_dropped().saturating_sub(k0.iface_rx_dropped()));
    kernel.insert("softnet_dropped".into(), k1.softnet_dropped.saturating_sub(k0.softnet_dropped));
    if info.backend == BackendKind::Xdp {
        // Times a frame found the fill ring empty (a warning sign: the
        // frames it would have used sat unreleased or in the rx ring).
        kernel.insert("xsk_fill_ring_empty_descs".into(), s.total(RxIdx::FillRingEmpty));
    }
    if matches!(&cfg.backend, BackendConfig::Xdp(o) if o.busy_poll.is_some())
        || matches!(&cfg.backend, BackendConfig::Socket(o) if o.busy_poll.is_some())
    {
        kernel.insert("busy_poll_gaps_over_100us".into(), s.total(RxIdx::PollGaps));
        kernel.insert("busy_poll_gap_us".into(), s.total(RxIdx::PollGapNs) / 1000);
    }
    if info.backend == BackendKind::AfPacket {
        kernel.insert("ring_freezes".into(), s.total(RxIdx::RingFreezes));
        kernel.insert("losing_blocks".into(), s.total(RxIdx::LosingBlocks));
    }
}

/// The source's own kernel counters (a syscall: called every 100 ms, not per batch).
fn publish_source(source: &mut dyn Source, rx: &StageCounters) {
    if let Ok(d) = source.kernel_drops() {
        rx.set(RxIdx::KernelDrops as usize, d);
    }
    rx.set(RxIdx::RingFreezes as usize, source.ring_freezes());
    rx.set(RxIdx::FillRingEmpty as usize, source.fill_ring_empty());
    rx.set(RxIdx::Filtered as usize, source.filtered());
    rx.set(RxIdx::LosingBlocks as usize, source.losing_blocks());
    if let Some((gaps, gap_ns)) = source.poll_gaps() {
        rx.set(RxIdx::PollGaps as usize, gaps);
        rx.set(RxIdx::PollGapNs as usize, gap_ns);
    }
    if let Some((on, switches)) = source.gro_state() {
        rx.set(RxIdx::GroOn as usize, u64::from(on));
        rx.set(RxIdx::GroSwitches as usize, switches);
    }
    if let Some((ring_full, no_buffer)) = source.drop_detail() {
        rx.set(RxIdx::RingFullDrops as usize, ring_full);
        rx.set(RxIdx::NoBufferDrops as usize, no_buffer);
    }
}

#[allow(clippy::too_many_arguments)]
fn rx_loop(
    mut source: Box<dyn Source>,
    rx: StageCounters,
    mut verify: Option<VerifySink>,
    mut sinks: Vec<Box<dyn Sink>>,
    cpu: Option<usize>,
    stop: &AtomicBool,
    total: &AtomicU64,
    count: Option<u64>,
) -> RxThreadResult {
    if let Some(c) = cpu
        && let Err(e) = sys::pin_to_cpu(0, c)
    {
        tracing::warn!("cannot pin receive thread to CPU {c}: {e}");
    }
    let mut last_tick = Instant::now();
    let mut draining = false;
    let mut drain_deadline = Instant::now();
    let mut count_reached = false;
    let mut source_error = None;
    loop {
        if count_reached {
            break;
        }
        if !draining && stop.load(Ordering::Acquire) {
            // Take what is already queued in the socket before stopping, so
            // packets the kernel accepted are delivered, not lost.
            draining = true;
            drain_deadline = Instant::now() + Duration::from_secs(2);
        }
        if draining && Instant::now() > drain_deadline {
            break;
        }
        let batch = match source.recv_batch(draining) {
            Ok(b) => b,
            Err(e) => {
                source_error = Some(format!("receive failed: {e}"));
                break;
            }
        };
        let Some(batch) = batch else {
            if draining || source.finished() {
                break;
            }
            for s in &mut sinks {
                s.tick();
            }
            publish_source(source.as_mut(), &rx);
            last_tick = Instant::now();
            continue;
        };
        let n = batch.len() as u64;
        if let Some(v) = &mut verify {
            v.consume(&batch);
        }
        for s in &mut sinks {
            s.consume(&batch);
        }
        let bytes = batch.bytes();
        let last = source.last();
        rx.add(RxIdx::Packets as usize, n);
        rx.add(RxIdx::Bytes as usize, bytes);
        rx.add(RxIdx::Datagrams as usize, last.datagrams);
        rx.add(RxIdx::Syscalls as usize, last.syscalls);
        rx.add(RxIdx::Truncated as usize, last.truncated);
        if last_tick.elapsed() >= Duration::from_millis(100) {
            for s in &mut sinks {
                s.tick();
            }
            publish_source(source.as_mut(), &rx);
            let (u, k) = sys::thread_cpu_ns();
            rx.set(RxIdx::CpuUserNs as usize, u);
            rx.set(RxIdx::CpuSysNs as usize, k);
            last_tick = Instant::now();
        }
        if let Some(limit) = count
            && total.fetch_add(n, Ordering::Relaxed) + n >= limit
        {
            count_reached = true;
            stop.store(true, Ordering::Release);
        }
    }
    publish_source(source.as_mut(), &rx);
    let mut sink_error = None;
    for s in &mut sinks {
        if let Err(e) = s.finish() {
            sink_error = Some(format!("{} sink: {e:#}", s.name()));
        }
    }
    let (u, k) = sys::thread_cpu_ns();
    rx.set(RxIdx::CpuUserNs as usize, u);
    rx.set(RxIdx::CpuSysNs as usize, k);
    RxThreadResult { verify: verify.map(|v| v.counts()), sink_error, source_error }
}
