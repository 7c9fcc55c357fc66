//! A receive thread: its sinks, its loop (receive a batch, hand it to
//! each sink, count once) and its drain at the end.

use super::*;

pub(super) struct RxThreadResult {
    pub(super) verify: Option<VerifyCounts>,
    pub(super) sink_error: Option<String>,
    /// Why the source stopped giving packets, when it failed (a file that
    /// turned out corrupt, an interface gone): the capture failed.
    pub(super) source_error: Option<String>,
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

/// The sinks of each receive thread, in the order of its stages.
pub(super) type ThreadSinks = (StageCounters, Option<VerifySink>, Vec<Box<dyn Sink>>);

/// Starts every receive thread's sinks (writers, rings, relays) on the
/// stages made for them.
pub(super) fn build_sinks(
    cfg: &CaptureConfig,
    stages: Vec<StageCounters>,
) -> crate::Result<Vec<ThreadSinks>> {
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
pub(super) fn rx_loop(
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
