//! Where completed blocks leave the receive side: a bounded queue to a
//! writer thread that stores each block as a file with its sidecar, or
//! publishes it into a shared-memory ring, and hands the buffer back.
//!
//! Handing off never waits unless asked to (a file read back can wait):
//! when the queue is full the block is dropped and counted with the
//! packets it held, and its buffer is given back at once.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use super::sidecar::{Sidecar, hex_words};
use super::{BlockOutput, BlockSinkOptions, StreamFormat};
use crate::assemble::{Block, Layout, PageBuf};
use crate::sink::shmring::{Published, RingWriter};

struct Job {
    block: Block,
    sidecar: Sidecar,
}

/// What the writer thread did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct WriterTotals {
    pub(super) written: u64,
    pub(super) errors: u64,
    pub(super) overwritten: u64,
    pub(super) waits: u64,
    pub(super) ring_dropped: u64,
}

/// Writes a block and then its sidecar (a block with a sidecar is
/// complete). On any failure (a full disk) both are removed: no orphan
/// data file is left for a reader to trip on; the block is counted as a
/// write error by the caller.
fn write_block(dir: &Path, job: &Job) -> std::io::Result<()> {
    let data = dir.join(&job.sidecar.data);
    let tmp = dir.join(format!("{}.json.tmp", job.sidecar.data));
    let result = (|| {
        let mut f = crate::sink::create_output_file(&data)?;
        f.write_all(&job.block.data)?;
        let json = serde_json::to_string_pretty(&job.sidecar).map_err(std::io::Error::other)?;
        crate::sink::create_output_file(&tmp)?.write_all(json.as_bytes())?;
        std::fs::rename(&tmp, dir.join(format!("{}.json", job.sidecar.data.trim_end_matches(".bin"))))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&data);
    }
    result
}

/// The queue to the writer thread, and the writer.
pub(super) struct Outlet {
    tx: Option<SyncSender<Job>>,
    back: Receiver<PageBuf>,
    writer: Option<JoinHandle<WriterTotals>>,
    closing: Arc<AtomicBool>,
    format: StreamFormat,
    layout: Layout,
    zero_fill: bool,
    wait_for_writer: bool,
    /// Blocks dropped because the queue was full.
    pub(super) dropped_blocks: u64,
    /// Packets inside them.
    pub(super) dropped_packets: u64,
}

/// The ring's code for a stream format (in its header, for readers).
fn ring_code(format: &StreamFormat) -> u64 {
    match format {
        StreamFormat::Seq => 0,
        StreamFormat::Raw(_) => 1,
        StreamFormat::Vdif { .. } => 2,
        StreamFormat::Spead => 3,
        StreamFormat::SpeadHeap => 4,
    }
}

impl Outlet {
    /// Checks the output (the folder exists; the ring can be made) and
    /// starts the writer; `pool` buffers may come back.
    pub(super) fn start(opts: &BlockSinkOptions, pool: usize) -> std::io::Result<Self> {
        let ring = match &opts.output {
            BlockOutput::Dir(dir) if !dir.is_dir() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("block folder {} does not exist: create it first", dir.display()),
                ));
            }
            BlockOutput::Dir(_) => None,
            BlockOutput::Shm(r) => Some(
                RingWriter::create(r, opts.layout, ring_code(&opts.format)).map_err(std::io::Error::other)?,
            ),
        };
        let (tx, rx) = sync_channel::<Job>(opts.queue.max(1));
        let (back_tx, back) = sync_channel::<PageBuf>(pool);
        let closing = Arc::new(AtomicBool::new(false));
        let give_up = closing.clone();
        let output = opts.output.clone();
        let writer = std::thread::Builder::new()
            .name("linecap-blocks".into())
            .spawn(move || write_all(rx, &output, ring, &give_up, &back_tx))?;
        Ok(Self {
            tx: Some(tx),
            back,
            writer: Some(writer),
            closing,
            format: opts.format,
            layout: opts.layout,
            zero_fill: opts.assembler.zero_fill,
            wait_for_writer: opts.wait_for_writer,
            dropped_blocks: 0,
            dropped_packets: 0,
        })
    }

    /// Queues a completed block for the writer. Returns its buffer when
    /// the block was dropped (queue full, writer gone): counted.
    pub(super) fn hand_off(&mut self, block: Block) -> Option<PageBuf> {
        let sidecar = Sidecar {
            format: self.format,
            number: block.number,
            first_seq: block.first_seq,
            layout: self.layout,
            filled: block.filled,
            lost: block.lost,
            presence: hex_words(&block.present),
            zero_filled: self.zero_fill,
            data: format!("block-{:020}.bin", block.first_seq),
        };
        let job = Job { block, sidecar };
        let sent = match &self.tx {
            Some(tx) if self.wait_for_writer => tx.send(job).map_err(|e| TrySendError::Disconnected(e.0)),
            Some(tx) => tx.try_send(job),
            None => Err(TrySendError::Disconnected(job)),
        };
        match sent {
            Ok(()) => None,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.dropped_blocks += 1;
                self.dropped_packets += job.block.filled;
                Some(job.block.data)
            }
        }
    }

    /// A buffer the writer is done with, if any.
    pub(super) fn reclaim(&self) -> Option<PageBuf> {
        self.back.try_recv().ok()
    }

    /// Closes the queue and waits for the writer to finish what it holds.
    pub(super) fn close(&mut self) -> WriterTotals {
        // A lossless ring whose reader stopped must not hold the capture:
        // what the reader does not take now is given up and counted.
        self.closing.store(true, Ordering::Release);
        self.tx = None;
        self.writer.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

/// The writer thread: every queued block to its output, its buffer back.
fn write_all(
    rx: Receiver<Job>,
    output: &BlockOutput,
    mut ring: Option<RingWriter>,
    give_up: &AtomicBool,
    back: &SyncSender<PageBuf>,
) -> WriterTotals {
    let mut t = WriterTotals::default();
    for job in rx {
        match (output, ring.as_mut()) {
            (BlockOutput::Shm(_), Some(r)) => match r.publish(&job.block, || give_up.load(Ordering::Acquire))
            {
                Published::Ok | Published::Overwrote => t.written += 1,
                Published::Dropped => {}
            },
            (BlockOutput::Dir(dir), _) => match write_block(dir, &job) {
                Ok(()) => t.written += 1,
                Err(e) => {
                    if t.errors == 0 {
                        tracing::warn!(
                            "writing block {} failed: {e}; such blocks are counted as write errors",
                            job.sidecar.first_seq
                        );
                    }
                    t.errors += 1;
                }
            },
            (BlockOutput::Shm(_), None) => t.errors += 1,
        }
        let _ = back.try_send(job.block.data);
    }
    if let Some(r) = &ring {
        let (_, over, waits, dropped) = r.counts();
        (t.overwritten, t.waits, t.ring_dropped) = (over, waits, dropped);
        r.finish();
    }
    t
}
