//! Writing a capture file with `O_DIRECT`: the chunks' bytes are staged
//! into one page-aligned buffer and go to the disk in large aligned writes
//! that bypass the page cache (no copy into it, no write-back later
//! competing with the next writes); the unaligned tail of a file goes
//! through an ordinary descriptor when the file ends.
//!
//! Until its bytes are on the disk a chunk is *pending*: the writer counts
//! its packets as written only then. When an aligned write fails (a full
//! disk), the file is cut back to the end of the last chunk that reached
//! the disk whole, the pending chunks are counted as dropped, and the file
//! goes on without `O_DIRECT` (the ordinary writer's retry and cut-back).
//! File systems that refuse `O_DIRECT` (tmpfs) are written as before.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::sys::shm::PageBuf;

/// Alignment of offsets, lengths and the buffer (the largest logical block
/// size of common disks).
const ALIGN: usize = 4096;
/// Bytes staged before an aligned write: large writes are what the disk
/// wants (`dd oflag=direct bs=4M` is the yardstick).
pub(super) const STAGE: usize = 4 << 20;

/// A chunk whose bytes are staged but not yet all on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    /// File offset just past the chunk.
    pub(super) end: u64,
    /// Its records.
    pub(super) packets: u64,
    /// Its bytes (records with their headers).
    pub(super) bytes: u64,
    /// Its packets' payload bytes.
    pub(super) payload: u64,
}

/// Stage buffers: one being filled, the others in flight.
const STAGES: usize = 4;
/// Threads that write stages: aligned writes in flight at once (the disk
/// wants more than one to reach its sequential speed; one in flight
/// measured 0.66x the page cache path).
const WRITERS: usize = 3;

/// A stage handed to a writer thread, and what came back.
struct Job {
    buf: PageBuf,
    len: usize,
    at: u64,
}
type Done = (Job, io::Result<()>);

/// The `O_DIRECT` half of an output file.
pub(super) struct DirectFile {
    stage: PageBuf,
    staged: usize,
    /// File offset of `stage[0]`.
    at: u64,
    /// Stage buffers not in flight.
    free: Vec<PageBuf>,
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    done: std::sync::mpsc::Receiver<Done>,
    in_flight: usize,
    writers: Vec<std::thread::JoinHandle<()>>,
    /// Every byte before it is on the disk.
    on_disk: u64,
    /// Writes finished past `on_disk` (a later one can finish first).
    finished: std::collections::BTreeMap<u64, u64>,
    /// The first write that failed.
    failed: Option<io::Error>,
    pending: VecDeque<Pending>,
    /// When the oldest byte still staged was staged.
    since: Option<std::time::Instant>,
}

impl DirectFile {
    /// Opens `path` (already created) for direct writes from offset 0, or
    /// None when the file system refuses `O_DIRECT` (or is tmpfs) or the
    /// buffers or threads cannot be had.
    pub(super) fn open(path: &Path) -> Option<Self> {
        let file = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()?;
        if crate::sys::on_tmpfs(&file).unwrap_or(true) {
            return None;
        }
        let file = std::sync::Arc::new(file);
        let mut free = (0..STAGES).map(|_| PageBuf::new(STAGE)).collect::<io::Result<Vec<_>>>().ok()?;
        let stage = free.pop()?;
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let (finished, done) = std::sync::mpsc::channel::<Done>();
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        let writers = (0..WRITERS)
            .map(|i| {
                let (file, queue, finished) = (file.clone(), queue.clone(), finished.clone());
                std::thread::Builder::new()
                    .name(format!("linecap-dio{i}"))
                    .spawn(move || write_stages(&file, &queue, &finished))
                    .ok()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            stage,
            staged: 0,
            at: 0,
            free,
            jobs: Some(jobs),
            done,
            in_flight: 0,
            writers,
            on_disk: 0,
            finished: Default::default(),
            failed: None,
            pending: VecDeque::new(),
            since: None,
        })
    }

    /// Bytes in the file once everything staged is written.
    pub(super) fn len(&self) -> u64 {
        self.at + self.staged as u64
    }

    /// Stages `buf`; a full stage goes to a writer thread. On an error,
    /// every byte before [`DirectFile::on_disk`] is written.
    pub(super) fn append(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            self.since.get_or_insert_with(std::time::Instant::now);
            let n = (STAGE - self.staged).min(buf.len());
            self.stage[self.staged..self.staged + n].copy_from_slice(&buf[..n]);
            self.staged += n;
            buf = &buf[n..];
            if self.staged == STAGE {
                self.send_aligned()?;
            }
        }
        self.reap(false)
    }

    /// Stages a chunk of whole records, pending until its bytes are on the disk.
    pub(super) fn append_chunk(&mut self, bytes: &[u8], packets: u64, payload: u64) -> io::Result<()> {
        let end = self.len() + bytes.len() as u64;
        self.pending.push_back(Pending { end, packets, bytes: bytes.len() as u64, payload });
        self.append(bytes)
    }

    /// Sends the whole blocks staged so far when the oldest staged byte
    /// has waited `max_wait` (a slow stream still reaches the disk, not
    /// only when 4 MiB have gathered), and takes what finished.
    pub(super) fn write_if_stale(&mut self, max_wait: std::time::Duration) -> io::Result<()> {
        if self.staged >= ALIGN && self.since.is_some_and(|t| t.elapsed() >= max_wait) {
            self.send_aligned()?;
        }
        self.reap(false)
    }

    /// Bytes surely on the disk.
    pub(super) fn on_disk(&self) -> u64 {
        self.on_disk
    }

    /// The pending chunks now wholly on the disk, oldest first.
    pub(super) fn take_written(&mut self) -> impl Iterator<Item = Pending> + '_ {
        let at = self.on_disk;
        std::iter::from_fn(move || {
            let done = self.pending.front().is_some_and(|p| p.end <= at);
            if done { self.pending.pop_front() } else { None }
        })
    }

    /// Every pending chunk (they will not be written), oldest first.
    pub(super) fn take_pending(&mut self) -> Vec<Pending> {
        self.pending.drain(..).collect()
    }

    /// Hands the stage's aligned prefix to a writer thread; the unaligned
    /// rest moves to the start of the next stage buffer (waiting for one
    /// to come back when all are in flight).
    fn send_aligned(&mut self) -> io::Result<()> {
        let n = self.staged / ALIGN * ALIGN;
        if n == 0 {
            return Ok(());
        }
        while self.free.is_empty() {
            self.reap(true)?;
        }
        let mut next = self.free.pop().expect("checked");
        let rest = self.staged - n;
        next[..rest].copy_from_slice(&self.stage[n..self.staged]);
        let buf = std::mem::replace(&mut self.stage, next);
        let job = Job { buf, len: n, at: self.at };
        self.at += n as u64;
        self.staged = rest;
        self.since = (rest > 0).then(std::time::Instant::now);
        match &self.jobs {
            Some(jobs) if jobs.send(job).is_ok() => self.in_flight += 1,
            _ => return Err(io::Error::other("the direct writer threads ended")),
        }
        Ok(())
    }

    /// Takes finished writes (waiting for one when `wait`), moving
    /// `on_disk` over every write finished in order. The first failure
    /// is returned, now and on every later call.
    fn reap(&mut self, wait: bool) -> io::Result<()> {
        let mut wait = wait && self.in_flight > 0;
        loop {
            let got = if wait { self.done.recv().ok() } else { self.done.try_recv().ok() };
            let Some((job, result)) = got else { break };
            wait = false;
            self.in_flight -= 1;
            match result {
                Ok(()) => {
                    self.finished.insert(job.at, job.len as u64);
                }
                Err(e) => {
                    self.failed.get_or_insert(e);
                }
            }
            self.free.push(job.buf);
        }
        while let Some(len) = self.finished.remove(&self.on_disk) {
            self.on_disk += len;
        }
        match &self.failed {
            Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }

    /// Waits for every write in flight (before the file is cut back).
    pub(super) fn settle(&mut self) {
        while self.in_flight > 0 {
            let _ = self.reap(true);
        }
        let _ = self.reap(false);
    }

    /// Writes everything staged and waits for every write: the aligned
    /// part directly, the tail through `buffered` (the same file, opened
    /// without `O_DIRECT`).
    pub(super) fn finish(&mut self, buffered: &File) -> io::Result<()> {
        self.send_aligned()?;
        while self.in_flight > 0 {
            self.reap(true)?;
        }
        self.reap(false)?;
        buffered.write_all_at(&self.stage[..self.staged], self.at)?;
        self.at += self.staged as u64;
        self.on_disk = self.at;
        self.staged = 0;
        Ok(())
    }
}

impl Drop for DirectFile {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.writers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A writer thread: stages to the file at their offsets, until the jobs end.
fn write_stages(
    file: &File,
    queue: &std::sync::Mutex<std::sync::mpsc::Receiver<Job>>,
    finished: &std::sync::mpsc::Sender<Done>,
) {
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = file.write_all_at(&job.buf[..job.len], job.at);
        if finished.send((job, result)).is_err() {
            return;
        }
    }
}

/// Where a file cut back after a failed direct write ends: just past the
/// last pending chunk wholly on the disk (`on_disk`), or where pending
/// chunks began (`first_pending_start`) when none is.
pub(super) fn cut_point(pending: &[Pending], on_disk: u64, first_pending_start: u64) -> u64 {
    pending.iter().take_while(|p| p.end <= on_disk).last().map_or(first_pending_start, |p| p.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> std::path::PathBuf {
        // /var/tmp rather than /tmp: it is a disk on more systems (tmpfs
        // refuses O_DIRECT).
        Path::new("/var/tmp").join(format!("lc-direct-{tag}-{}", std::process::id()))
    }

    #[test]
    fn staged_chunks_reach_the_file_whole_and_in_order() {
        let path = temp("order");
        let buffered = File::create(&path).unwrap();
        let Some(mut d) = DirectFile::open(&path) else {
            // tmpfs and some overlay file systems refuse O_DIRECT. Where
            // CI promised a full machine, that is a failure, not a skip.
            let _ = std::fs::remove_file(&path);
            let why = format!("{} refuses O_DIRECT", path.display());
            assert!(
                std::env::var_os("LINECAP_REQUIRE_PEERS").is_none(),
                "{why}, but this run has every peer"
            );
            eprintln!("skipped: {why}");
            return;
        };
        let mut want = Vec::new();
        d.append(b"HEADER").unwrap();
        want.extend_from_slice(b"HEADER");
        // Chunks of odd sizes, past several stage fills.
        let mut written = 0;
        for i in 0..40u64 {
            let chunk: Vec<u8> = (0..(300_001 + i as usize * 7)).map(|k| (k as u64 ^ i) as u8).collect();
            d.append_chunk(&chunk, 3, 100).unwrap();
            want.extend_from_slice(&chunk);
            written += d.take_written().count();
            assert!(d.on_disk() % ALIGN as u64 == 0);
        }
        assert!(written < 40, "the last chunk is still staged: {written}");
        d.finish(&buffered).unwrap();
        assert_eq!(written + d.take_written().count(), 40);
        assert_eq!(std::fs::read(&path).unwrap(), want);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_cut_ends_after_the_last_chunk_on_disk() {
        let p = |end| Pending { end, packets: 1, bytes: 10, payload: 5 };
        let pending = [p(100), p(5000), p(9000)];
        assert_eq!(cut_point(&pending, 8192, 24), 5000);
        assert_eq!(cut_point(&pending, 4096, 24), 100);
        assert_eq!(cut_point(&pending, 0, 24), 24);
    }
}
