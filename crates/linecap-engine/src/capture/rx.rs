//! A receive thread: its sinks, its loop (receive a batch, hand it to
//! each sink, count once) and its drain at the end.

use super::*;
use crate::packet::Batch;
use crate::source::RecvStats;

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
    let mut member_stages = Vec::new();
    // A file waits for its sinks' writers: nothing read back is dropped at a queue.
    let can_wait = matches!(cfg.backend, BackendConfig::File(_));
    for t in 0..cfg.threads {
        let rx = stage_iter.next().expect("rx stage");
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        let mut verify = None;
        if cfg.verify {
            verify = Some(VerifySink::new(stage_iter.next().expect("verify stage"), cfg.verify_streams));
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
            if cfg.threads > 1 {
                // Members of one group, started once every stage is known.
                member_stages.push(st);
            } else {
                let mut o = b.clone();
                o.wait_for_writer = can_wait;
                sinks.push(Box::new(BlockSink::start(o, st)?));
            }
        }
        if let Some(r) = &cfg.relay {
            let st = stage_iter.next().expect("relay stage");
            sinks.push(Box::new(RelaySink::start(r, st)?));
        }
        if sinks.is_empty() && verify.is_none() && member_stages.is_empty() {
            sinks.push(Box::new(NullSink));
        }
        per_thread.push((rx, verify, sinks));
    }
    if let Some(b) = &cfg.blocks
        && !member_stages.is_empty()
    {
        let group_stage = stage_iter.next().expect("group stage");
        let mut o = b.clone();
        o.wait_for_writer = can_wait;
        let members = BlockSink::start_group(o, member_stages, group_stage)?;
        for ((_, _, sinks), member) in per_thread.iter_mut().zip(members) {
            sinks.push(Box::new(member));
        }
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
    // The tick's clock is the coarse one: it is read after every batch,
    // and the precise one reads the TSC each time (in perf, half of the
    // xdp receive thread's clock reads at 2.35 Mpps).
    const TICK_NS: u64 = 100_000_000;
    let mut last_tick = sys::coarse_monotonic_ns();
    let mut drain: Option<Instant> = None;
    let mut source_error = None;
    loop {
        if drain.is_none() && stop.load(Ordering::Acquire) {
            // Take what is already queued in the socket before stopping, so
            // packets the kernel accepted are delivered, not lost.
            drain = Some(Instant::now() + Duration::from_secs(2));
        }
        if drain.is_some_and(|deadline| Instant::now() > deadline) {
            break;
        }
        let batch = match source.recv_batch(drain.is_some()) {
            Ok(b) => b,
            Err(e) => {
                source_error = Some(format!("receive failed: {e}"));
                break;
            }
        };
        let Some(batch) = batch else {
            if drain.is_some() || source.finished() {
                break;
            }
            tick(source.as_mut(), &mut sinks, &rx, false);
            last_tick = sys::coarse_monotonic_ns();
            continue;
        };
        let n = batch.len() as u64;
        hand_over(&batch, &mut verify, &mut sinks, &rx);
        count_call(source.last(), &rx);
        if sys::coarse_monotonic_ns().saturating_sub(last_tick) >= TICK_NS {
            tick(source.as_mut(), &mut sinks, &rx, true);
            last_tick = sys::coarse_monotonic_ns();
        }
        if let Some(limit) = count
            && total.fetch_add(n, Ordering::Relaxed) + n >= limit
        {
            stop.store(true, Ordering::Release);
            break;
        }
    }
    publish_source(source.as_mut(), &rx);
    let mut sink_error = None;
    for s in &mut sinks {
        if let Err(e) = s.finish() {
            sink_error = Some(format!("{} sink: {e:#}", s.name()));
        }
    }
    publish_cpu(&rx);
    RxThreadResult { verify: verify.map(|v| v.counts()), sink_error, source_error }
}

/// One batch to the verifier and every sink, then counted once.
#[inline]
fn hand_over(
    batch: &Batch<'_>,
    verify: &mut Option<VerifySink>,
    sinks: &mut [Box<dyn Sink>],
    rx: &StageCounters,
) {
    if let Some(v) = verify {
        v.consume(batch);
    }
    for s in sinks.iter_mut() {
        s.consume(batch);
    }
    rx.add(RxIdx::Packets as usize, batch.len() as u64);
    rx.add(RxIdx::Bytes as usize, batch.bytes());
}

/// What the receive call that brought the batch did.
#[inline]
fn count_call(last: RecvStats, rx: &StageCounters) {
    rx.add(RxIdx::Datagrams as usize, last.datagrams);
    rx.add(RxIdx::Syscalls as usize, last.syscalls);
    rx.add(RxIdx::Truncated as usize, last.truncated);
}

/// Every 100 ms (or when nothing arrived): the sinks' timers, the
/// source's own counters and, while busy, the thread's CPU time.
fn tick(source: &mut dyn Source, sinks: &mut [Box<dyn Sink>], rx: &StageCounters, cpu: bool) {
    for s in sinks.iter_mut() {
        s.tick();
    }
    publish_source(source, rx);
    if cpu {
        publish_cpu(rx);
    }
}

fn publish_cpu(rx: &StageCounters) {
    let (u, k) = sys::thread_cpu_ns();
    rx.set(RxIdx::CpuUserNs as usize, u);
    rx.set(RxIdx::CpuSysNs as usize, k);
}
