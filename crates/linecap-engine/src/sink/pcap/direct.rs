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

/// The `O_DIRECT` half of an output file.
pub(super) struct DirectFile {
    file: File,
    stage: PageBuf,
    staged: usize,
    /// File offset of `stage[0]`: every byte before it is on the disk.
    at: u64,
    pending: VecDeque<Pending>,
    /// When the oldest byte still staged was staged.
    since: Option<std::time::Instant>,
}

impl DirectFile {
    /// Opens `path` (already created) for direct writes from offset 0, or
    /// None when the file system refuses `O_DIRECT` or no staging buffer
    /// can be had.
    pub(super) fn open(path: &Path) -> Option<Self> {
        let file = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()?;
        if crate::sys::on_tmpfs(&file).unwrap_or(true) {
            return None;
        }
        let stage = PageBuf::new(STAGE).ok()?;
        Some(Self { file, stage, staged: 0, at: 0, pending: VecDeque::new(), since: None })
    }

    /// Bytes in the file once everything staged is written.
    pub(super) fn len(&self) -> u64 {
        self.at + self.staged as u64
    }

    /// Stages `buf`; the stage goes to the disk whenever it is full. On an
    /// error, every byte before [`DirectFile::on_disk`] is written.
    pub(super) fn append(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            self.since.get_or_insert_with(std::time::Instant::now);
            let n = (STAGE - self.staged).min(buf.len());
            self.stage[self.staged..self.staged + n].copy_from_slice(&buf[..n]);
            self.staged += n;
            buf = &buf[n..];
            if self.staged == STAGE {
                self.write_aligned()?;
            }
        }
        Ok(())
    }

    /// Stages a chunk of whole records, pending until its bytes are on the disk.
    pub(super) fn append_chunk(&mut self, bytes: &[u8], packets: u64, payload: u64) -> io::Result<()> {
        let end = self.len() + bytes.len() as u64;
        self.pending.push_back(Pending { end, packets, bytes: bytes.len() as u64, payload });
        self.append(bytes)
    }

    /// Writes the whole blocks staged so far when the oldest staged byte
    /// has waited `max_wait` (a slow stream still reaches the disk, not
    /// only when 4 MiB have gathered). Returns whether it wrote.
    pub(super) fn write_if_stale(&mut self, max_wait: std::time::Duration) -> io::Result<bool> {
        let stale = self.staged >= ALIGN && self.since.is_some_and(|t| t.elapsed() >= max_wait);
        if stale {
            self.write_aligned()?;
        }
        Ok(stale)
    }

    /// Bytes surely on the disk.
    pub(super) fn on_disk(&self) -> u64 {
        self.at
    }

    /// The pending chunks now wholly on the disk, oldest first.
    pub(super) fn take_written(&mut self) -> impl Iterator<Item = Pending> + '_ {
        let at = self.at;
        std::iter::from_fn(move || {
            let done = self.pending.front().is_some_and(|p| p.end <= at);
            if done { self.pending.pop_front() } else { None }
        })
    }

    /// Every pending chunk (they will not be written), oldest first.
    pub(super) fn take_pending(&mut self) -> Vec<Pending> {
        self.pending.drain(..).collect()
    }

    /// Writes the stage's aligned prefix and keeps the rest staged.
    fn write_aligned(&mut self) -> io::Result<()> {
        let n = self.staged / ALIGN * ALIGN;
        let mut done = 0;
        while done < n {
            match self.file.write_at(&self.stage[done..n], self.at + done as u64) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing")),
                // A direct write of less than asked ends on a block boundary.
                Ok(k) => done += k / ALIGN * ALIGN,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.consume(done);
                    return Err(e);
                }
            }
        }
        self.consume(n);
        Ok(())
    }

    /// `n` staged bytes (a multiple of ALIGN) are on the disk.
    fn consume(&mut self, n: usize) {
        self.stage.copy_within(n..self.staged, 0);
        self.staged -= n;
        self.at += n as u64;
        // What stays staged is under a block: it waits for the next ones
        // (or the file's end), from now.
        self.since = (self.staged > 0).then(std::time::Instant::now);
    }

    /// Writes everything staged: the aligned part directly, the tail
    /// through `buffered` (the same file, opened without `O_DIRECT`).
    pub(super) fn finish(&mut self, buffered: &File) -> io::Result<()> {
        self.write_aligned()?;
        buffered.write_all_at(&self.stage[..self.staged], self.at)?;
        self.at += self.staged as u64;
        self.staged = 0;
        Ok(())
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
        std::env::temp_dir().join(format!("lc-direct-{tag}-{}", std::process::id()))
    }

    #[test]
    fn staged_chunks_reach_the_file_whole_and_in_order() {
        let path = temp("order");
        let buffered = File::create(&path).unwrap();
        let Some(mut d) = DirectFile::open(&path) else {
            // tmpfs and some overlay file systems refuse O_DIRECT.
            eprintln!("skipped: {} refuses O_DIRECT", path.display());
            let _ = std::fs::remove_file(&path);
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
        assert!(written > 0 && written < 40, "some chunks reached the disk before the end: {written}");
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
