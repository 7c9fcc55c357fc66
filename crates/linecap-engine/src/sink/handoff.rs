//! A bounded hand-off of byte chunks from the receive thread to a writer
//! thread. The producer fills a chunk with whole records and passes it on
//! when full; the writer writes it and gives it back. A fixed number of
//! chunks is allocated up front: when none is free the producer drops the
//! record and counts it. One channel operation per chunk (thousands of
//! packets), none per packet.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::loan::Lender;
use crate::sys::shm::PageBuf;

/// A buffer of whole records and how many packets they hold.
pub struct Chunk {
    /// Room for `chunk_size` bytes, zeroed and its pages in place once,
    /// when allocated: records are encoded in place, so nothing is cleared
    /// or resized per record, and the receive thread never takes a page
    /// fault in it (a first touch of 4 MiB is a thousand faults: measured
    /// here, 1 137 on the receive thread in the first two seconds of a
    /// writing capture, before the pages were put in place up front).
    room: PageBuf,
    /// Bytes of `room` holding records.
    filled: usize,
    /// Packets encoded in `buf`.
    pub packets: u64,
    /// Each record's payload length, in order: what a writer that could
    /// write only part of the chunk reports as lost, exactly. Allocated
    /// once for the most records a chunk can hold.
    pub payloads: Vec<u32>,
    /// Records whose frame is still in the source's memory, and of which
    /// the receive thread wrote nothing: the writer encodes each into the
    /// room left for it before the chunk is written. Touching the room
    /// at all (even a record header) costs the receive thread a miss per
    /// record, as much as copying the frame: the room was last written a
    /// whole buffer ago. These descriptors are a sequential stream.
    lent: Vec<LentFrame>,
    /// Whose memory the lent frames are in (one source per chunk).
    lender: Option<Lender>,
    /// The first lent record's receive time: the others' are kept as
    /// nanoseconds after it.
    lent_since_ns: u64,
}

/// A record left to the writer, 16 bytes: its frame is `len` bytes at
/// `addr` in the lender's memory, received `after_ns` after the chunk's
/// first lent record; the record starts at `at`.
#[derive(Clone, Copy)]
struct LentFrame {
    addr: u32,
    len: u32,
    at: u32,
    after_ns: u32,
}

impl Chunk {
    /// The encoded records.
    pub fn bytes(&self) -> &[u8] {
        &self.room[..self.filled]
    }

    /// Payload bytes of all records.
    pub fn payload_bytes(&self) -> u64 {
        self.payloads.iter().map(|&l| u64::from(l)).sum()
    }

    /// Encodes the records left to the writer with `encode(room, ts_ns,
    /// frame)`, which writes the record of `frame` at the start of `room`,
    /// and gives the frames back: after this the chunk is whole. The
    /// writer's work, once per chunk, before it writes it.
    pub fn complete(&mut self, mut encode: impl FnMut(&mut [u8], u64, &[u8])) {
        let Some(lender) = self.lender.take() else { return };
        // The frames were written by the kernel on another core: ask for
        // the next ones while encoding this one.
        const AHEAD: usize = 4;
        for f in self.lent.iter().take(AHEAD) {
            prefetch_all(lender.frame(f.addr.into(), f.len));
        }
        for (i, f) in self.lent.iter().enumerate() {
            if let Some(next) = self.lent.get(i + AHEAD) {
                prefetch_all(lender.frame(next.addr.into(), next.len));
            }
            let ts_ns = self.lent_since_ns + u64::from(f.after_ns);
            encode(&mut self.room[f.at as usize..self.filled], ts_ns, lender.frame(f.addr.into(), f.len));
        }
        lender.give_back(self.lent.len() as u64);
        self.lent.clear();
    }
}

impl Chunk {
    /// Gives back frames still lent without copying them (a chunk not
    /// written, or dropped): the source must never run short of frames.
    fn return_lent(&mut self) {
        if let Some(lender) = self.lender.take() {
            lender.give_back(self.lent.len() as u64);
            self.lent.clear();
        }
    }
}

impl Chunk {
    /// Appends a record of `len` bytes left to the writer (see `push_lent`).
    #[inline]
    fn add_lent(&mut self, len: usize, payload: u32, frame: LentFrame) {
        self.lent.push(frame);
        self.filled += len;
        self.packets += 1;
        self.payloads.push(payload);
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.return_lent();
    }
}

/// Asks for every cache line of `data`.
fn prefetch_all(data: &[u8]) {
    for at in (0..data.len()).step_by(64) {
        crate::sys::prefetch(&data[at..]);
    }
    if let Some(last) = data.len().checked_sub(1) {
        crate::sys::prefetch(&data[last..]);
    }
}

/// Smallest record a chunk holds (a pcap record header): bounds the
/// records per chunk, so `payloads` never grows.
pub const MIN_RECORD: usize = 16;

/// A chunk is passed on once it holds this share of the lender's spare
/// frames (1/4): frames are out on loan until their chunk is written, and
/// a 4 MiB chunk of 272-byte payloads would otherwise hold 12,700 of them,
/// most of the spares, so the source ran out of spares and copied while
/// the writer had only one chunk in hand.
const LENT_SHARE_PER_CHUNK: usize = 4;

/// The most lent records a chunk takes from `lender` before it is passed on.
fn lent_per_chunk(lender: &Lender) -> usize {
    (lender.spares() / LENT_SHARE_PER_CHUNK).max(1)
}

/// Smallest record with a lent frame: a record header and an Ethernet,
/// IPv4 and UDP header (only fixed-layout frames are lent).
const MIN_LENT_RECORD: usize = MIN_RECORD + crate::packet::FIXED_HEADER_LEN;

/// Chunks written and given back, the last given back on top: the next
/// chunk filled is the one the writer left warmest in the caches (a queue
/// would go round every chunk of the buffer, each cold by its turn).
struct FreeChunks {
    stack: Mutex<FreeStack>,
    given: Condvar,
}

struct FreeStack {
    chunks: Vec<Chunk>,
    /// The writer's end was dropped: no chunk comes back any more.
    writer_gone: bool,
}

impl FreeChunks {
    fn lock(&self) -> std::sync::MutexGuard<'_, FreeStack> {
        self.stack.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, c: Chunk) {
        self.lock().chunks.push(c);
        self.given.notify_one();
    }

    /// The warmest free chunk; with `wait`, waits for one while the writer
    /// is there to give one back.
    fn take(&self, wait: bool) -> Result<Chunk, Refused> {
        let mut stack = self.lock();
        loop {
            if let Some(c) = stack.chunks.pop() {
                return Ok(c);
            }
            if stack.writer_gone {
                return Err(Refused::Closed);
            }
            if !wait {
                return Err(Refused::Full);
            }
            stack = self.given.wait(stack).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.free.lock().writer_gone = true;
        self.free.given.notify_all();
    }
}

/// The producer's end.
pub struct Producer {
    full: SyncSender<Chunk>,
    free: Arc<FreeChunks>,
    current: Option<Chunk>,
    chunk_size: usize,
    /// Chunks passed to the writer (full or flushed).
    passed: u64,
    /// Wait for a free chunk instead of refusing the record.
    wait: bool,
}

/// The writer's end.
pub struct Consumer {
    full: Receiver<Chunk>,
    free: Arc<FreeChunks>,
}

/// Creates a hand-off of `chunks` buffers of `chunk_size` bytes each, all
/// of their memory in place.
pub fn handoff(chunks: usize, chunk_size: usize) -> std::io::Result<(Producer, Consumer)> {
    let chunks = chunks.max(2);
    let (full_tx, full_rx) = sync_channel(chunks);
    let stack = FreeStack { chunks: Vec::with_capacity(chunks), writer_gone: false };
    let free = Arc::new(FreeChunks { stack: Mutex::new(stack), given: Condvar::new() });
    for _ in 0..chunks {
        let payloads = reserved(chunk_size / MIN_RECORD + 1)?;
        let room = PageBuf::populated(chunk_size)?;
        // Reserved here rather than by the receive thread when it first
        // lends into this chunk (an allocation is a syscall there).
        let lent = reserved(chunk_size / MIN_LENT_RECORD + 1)?;
        let chunk = Chunk { room, filled: 0, packets: 0, payloads, lent, lender: None, lent_since_ns: 0 };
        free.push(chunk);
    }
    Ok((
        Producer {
            full: full_tx,
            free: Arc::clone(&free),
            current: None,
            chunk_size,
            passed: 0,
            wait: false,
        },
        Consumer { full: full_rx, free },
    ))
}

/// An empty list with room for `n` items, or an error where the memory
/// cannot hold it (an allocation that fails must not abort the capture).
fn reserved<T>(n: usize) -> std::io::Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
    Ok(v)
}

/// Why a record was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every chunk is waiting for the writer.
    Full,
    /// The writer is gone.
    Closed,
}

impl Producer {
    /// Size of one chunk: the largest record that can ever be taken.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// With `true`, a push waits for the writer to give a chunk back
    /// instead of refusing the record (for sources that can wait).
    pub fn wait_when_full(&mut self, wait: bool) {
        self.wait = wait;
    }

    /// Chunks passed to the writer so far (because full, or flushed).
    pub fn passed(&self) -> u64 {
        self.passed
    }

    /// Reserves `len` bytes for one record of `payload` payload bytes and
    /// lets `encode` write them. `encode` must write exactly `len` bytes
    /// (at least [`MIN_RECORD`]).
    pub fn push(&mut self, len: usize, payload: u32, encode: impl FnOnce(&mut [u8])) -> Result<(), Refused> {
        let c = self.room_for(len)?;
        let at = c.filled;
        encode(&mut c.room[at..at + len]);
        c.filled = at + len;
        c.packets += 1;
        c.payloads.push(payload);
        Ok(())
    }

    /// As [`push`](Self::push), for a record of `len` bytes left to the
    /// writer: its frame of `frame_len` bytes, received at `ts_ns`, stays
    /// at `addr` in the lender's memory and nothing is written now (see
    /// [`Chunk::complete`]). Taken: the frame is the writer's until it
    /// gives it back.
    #[inline]
    pub fn push_lent(
        &mut self,
        len: usize,
        payload: u32,
        (lender, addr, frame_len): (&Lender, u32, u32),
        ts_ns: u64,
    ) -> Result<(), Refused> {
        // The common case, a chunk under way with room: a few stores into
        // sequential memory, no call.
        let fits = self.current.as_ref().is_some_and(|c| {
            c.filled + len <= self.chunk_size
                && c.lent.len() < lent_per_chunk(lender)
                && c.lender.as_ref().is_some_and(|l| l.same_as(lender))
                && ts_ns.wrapping_sub(c.lent_since_ns) <= u64::from(u32::MAX)
        });
        if !fits {
            self.start_lent_chunk(len, lender, ts_ns)?;
        }
        let c = self.current.as_mut().expect("a chunk with room for it");
        let after_ns = ts_ns.saturating_sub(c.lent_since_ns) as u32;
        c.add_lent(len, payload, LentFrame { addr, len: frame_len, at: c.filled as u32, after_ns });
        Ok(())
    }

    /// Makes the current chunk one that takes a lent record of `len` bytes
    /// from `lender` received at `ts_ns`: a chunk holding lent records is
    /// passed on first (another source's, its share of the spares reached
    /// (see [`LENT_SHARE_PER_CHUNK`]), or its first lent record's time too
    /// far from this one for 32 bits of nanoseconds), or a full one.
    #[cold]
    fn start_lent_chunk(&mut self, len: usize, lender: &Lender, ts_ns: u64) -> Result<(), Refused> {
        if self.current.as_ref().is_some_and(|c| c.lender.is_some()) {
            self.flush()?;
        }
        let c = self.room_for(len)?;
        if c.lender.is_none() {
            c.lender = Some(lender.clone());
            c.lent_since_ns = ts_ns;
        }
        Ok(())
    }

    /// The current chunk, with room for a record of `len` bytes.
    fn room_for(&mut self, len: usize) -> Result<&mut Chunk, Refused> {
        debug_assert!(len >= MIN_RECORD, "a record is at least a record header");
        if len > self.chunk_size {
            return Err(Refused::Full);
        }
        if let Some(c) = &self.current
            && c.filled + len > self.chunk_size
        {
            self.flush()?;
        }
        if self.current.is_none() {
            self.current = Some(self.free.take(self.wait)?);
        }
        Ok(self.current.as_mut().expect("set above"))
    }

    /// Passes the current chunk (if any bytes) to the writer.
    pub fn flush(&mut self) -> Result<(), Refused> {
        match self.current.take() {
            Some(c) if c.filled > 0 => {
                self.full.try_send(c).map_err(|_| Refused::Closed)?;
                self.passed += 1;
                Ok(())
            }
            other => {
                self.current = other;
                Ok(())
            }
        }
    }
}

impl Consumer {
    /// Waits up to `timeout` for a full chunk (with records left to the
    /// writer: see [`Chunk::complete`]); `Err(true)` when the producer is gone.
    pub fn recv(&self, timeout: std::time::Duration) -> Result<Chunk, bool> {
        use std::sync::mpsc::RecvTimeoutError;
        self.full.recv_timeout(timeout).map_err(|e| e == RecvTimeoutError::Disconnected)
    }

    /// Returns a written chunk for reuse.
    pub fn give_back(&self, mut c: Chunk) {
        c.return_lent();
        c.filled = 0;
        c.packets = 0;
        c.payloads.clear();
        self.free.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bounded_and_counted() {
        let (mut p, c) = handoff(2, 200).unwrap();
        // Two chunks of 200 bytes hold 2 * 10 records of 20 bytes; the 21st is refused.
        for i in 0..20 {
            assert_eq!(p.push(20, 5, |b| b.fill(i)), Ok(()), "record {i}");
        }
        assert_eq!(p.push(20, 5, |_| {}), Err(Refused::Full));
        let first = c.recv(Duration::from_millis(10)).unwrap();
        assert_eq!((first.bytes().len(), first.packets, first.payload_bytes()), (200, 10, 50));
        assert!(first.bytes()[..20].iter().all(|&b| b == 0));
        assert!(first.bytes()[20..40].iter().all(|&b| b == 1), "records in order");
        assert_eq!(p.passed(), 2, "both full chunks were passed on");
        c.give_back(first);
        assert_eq!(p.push(20, 5, |_| {}), Ok(()));
        assert_eq!(p.push(1000, 5, |_| {}), Err(Refused::Full));
    }

    /// A lender of 8 frames of 64 bytes, frame `i` filled with `i`, and
    /// how many frames it has had back.
    fn lender() -> (crate::loan::FramePool, Lender) {
        let mut mem = crate::sys::shm::PageBuf::new(8 * 64).unwrap();
        for (i, f) in mem.chunks_mut(64).enumerate() {
            f.fill(i as u8);
        }
        let pool = crate::loan::FramePool::new(std::sync::Arc::new(mem), (0..8).map(|i| i * 64).collect());
        let lender = pool.desk().lender().clone();
        (pool, lender)
    }

    #[test]
    fn a_lent_record_is_encoded_by_the_writer_then_its_frame_given_back() {
        let (mut pool, lender) = lender();
        let (mut p, c) = handoff(2, 200).unwrap();
        p.push(20, 5, |b| b.fill(0xEE)).unwrap();
        p.push_lent(16 + 10, 10, (&lender, 3 * 64, 10), 7).unwrap();
        pool.desk().take(1);
        let mut fill = vec![];
        pool.settle(&[(3 * 64, 10)], &mut fill);
        p.flush().unwrap();
        let mut chunk = c.recv(Duration::from_millis(10)).unwrap();
        assert_eq!((chunk.packets, chunk.payload_bytes()), (2, 15));
        chunk.complete(|room, ts_ns, frame| {
            room[..16].fill(ts_ns as u8);
            room[16..16 + frame.len()].copy_from_slice(frame);
        });
        assert_eq!(chunk.bytes()[..20], [0xEE; 20]);
        assert_eq!(chunk.bytes()[20..36], [7; 16], "the record's head, by the writer");
        assert_eq!(chunk.bytes()[36..46], [3; 10], "frame 3, copied by the writer");
        assert_eq!(pool.lent_out(), 1);
        pool.reclaim();
        assert_eq!(pool.lent_out(), 0, "given back once encoded");
    }

    #[test]
    fn a_chunk_never_written_still_gives_its_frames_back() {
        let (mut pool, lender) = lender();
        let (mut p, c) = handoff(2, 200).unwrap();
        p.push_lent(16 + 10, 10, (&lender, 64, 10), 0).unwrap();
        p.push_lent(16 + 10, 10, (&lender, 128, 10), 0).unwrap();
        pool.desk().take(2);
        let mut fill = vec![];
        pool.settle(&[(64, 10), (128, 10)], &mut fill);
        p.flush().unwrap();
        drop(c);
        drop(p);
        pool.reclaim();
        assert_eq!(pool.lent_out(), 0, "a writer gone returns what it held");
    }

    #[test]
    fn the_chunk_given_back_last_is_filled_next() {
        let (mut p, c) = handoff(3, 32).unwrap();
        for mark in [1u8, 2] {
            p.push(32, 0, |b| b.fill(mark)).unwrap();
            p.flush().unwrap();
        }
        let (first, second) = (c.recv(Duration::ZERO).unwrap(), c.recv(Duration::ZERO).unwrap());
        c.give_back(first);
        c.give_back(second);
        p.push(16, 0, |_| {}).unwrap();
        p.flush().unwrap();
        let next = c.recv(Duration::ZERO).unwrap();
        assert_eq!(next.room[20], 2, "the second chunk, still warm, not the oldest");
    }

    #[test]
    fn closed_writer_is_reported() {
        let (mut p, c) = handoff(2, 16).unwrap();
        drop(c);
        // The pre-filled free chunks are still usable; flushing then fails.
        assert_eq!(p.push(16, 0, |_| {}), Ok(()));
        assert_eq!(p.push(16, 0, |_| {}), Err(Refused::Closed));
    }

    /// Filling every chunk of a fresh hand-off costs the receive thread no
    /// page fault in the chunks' room (only the per-record lengths, a page
    /// per thousand records, fault on first touch).
    #[test]
    fn the_receive_thread_takes_no_page_fault_in_a_fresh_chunk() {
        const CHUNK: usize = 4 << 20;
        const RECORD: usize = 314;
        let (mut p, c) = handoff(2, CHUNK).unwrap();
        let records = 2 * (CHUNK / RECORD);
        let before = crate::sys::thread_minor_faults();
        for i in 0..records {
            p.push(RECORD, 272, |out| out.fill(i as u8)).unwrap();
        }
        let faults = crate::sys::thread_minor_faults() - before;
        let room_pages = (2 * CHUNK / 4096) as u64;
        assert!(faults < room_pages / 8, "{faults} page faults filling {room_pages} pages of room");
        drop(c);
    }
}
