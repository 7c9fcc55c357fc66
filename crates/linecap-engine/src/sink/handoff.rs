//! A bounded hand-off of byte chunks from the receive thread to a writer
//! thread. The producer fills a chunk with whole records and passes it on
//! when full; the writer writes it and gives it back. A fixed number of
//! chunks is allocated up front: when none is free the producer drops the
//! record and counts it. One channel operation per chunk (thousands of
//! packets), none per packet.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

/// A buffer of whole records and how many packets they hold.
pub struct Chunk {
    /// Room for `chunk_size` bytes, zeroed once when allocated: records are
    /// encoded in place, so nothing is cleared or resized per record.
    room: Box<[u8]>,
    /// Bytes of `room` holding records.
    filled: usize,
    /// Packets encoded in `buf`.
    pub packets: u64,
    /// Each record's payload length, in order: what a writer that could
    /// write only part of the chunk reports as lost, exactly. Allocated
    /// once for the most records a chunk can hold.
    pub payloads: Vec<u32>,
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
}

/// Smallest record a chunk holds (a pcap record header): bounds the
/// records per chunk, so `payloads` never grows.
pub const MIN_RECORD: usize = 16;

/// The producer's end.
pub struct Producer {
    full: SyncSender<Chunk>,
    free: Receiver<Chunk>,
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
    free: SyncSender<Chunk>,
}

/// Creates a hand-off of `chunks` buffers of `chunk_size` bytes each.
pub fn handoff(chunks: usize, chunk_size: usize) -> (Producer, Consumer) {
    let chunks = chunks.max(2);
    let (full_tx, full_rx) = sync_channel(chunks);
    let (free_tx, free_rx) = sync_channel(chunks);
    for _ in 0..chunks {
        let payloads = Vec::with_capacity(chunk_size / MIN_RECORD + 1);
        free_tx
            .send(Chunk { room: vec![0; chunk_size].into_boxed_slice(), filled: 0, packets: 0, payloads })
            .expect("channel has room");
    }
    (
        Producer { full: full_tx, free: free_rx, current: None, chunk_size, passed: 0, wait: false },
        Consumer { full: full_rx, free: free_tx },
    )
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
            self.current = Some(match self.free.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) if self.wait => self.free.recv().map_err(|_| Refused::Closed)?,
                Err(TryRecvError::Empty) => return Err(Refused::Full),
                Err(TryRecvError::Disconnected) => return Err(Refused::Closed),
            });
        }
        let c = self.current.as_mut().expect("set above");
        let at = c.filled;
        encode(&mut c.room[at..at + len]);
        c.filled = at + len;
        c.packets += 1;
        c.payloads.push(payload);
        Ok(())
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
    /// Waits up to `timeout` for a full chunk; `Err(true)` when the producer is gone.
    pub fn recv(&self, timeout: std::time::Duration) -> Result<Chunk, bool> {
        use std::sync::mpsc::RecvTimeoutError;
        self.full.recv_timeout(timeout).map_err(|e| e == RecvTimeoutError::Disconnected)
    }

    /// Returns a written chunk for reuse.
    pub fn give_back(&self, mut c: Chunk) {
        c.filled = 0;
        c.packets = 0;
        c.payloads.clear();
        let _ = self.free.try_send(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bounded_and_counted() {
        let (mut p, c) = handoff(2, 200);
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

    #[test]
    fn closed_writer_is_reported() {
        let (mut p, c) = handoff(2, 16);
        drop(c);
        // The pre-filled free chunks are still usable; flushing then fails.
        assert_eq!(p.push(16, 0, |_| {}), Ok(()));
        assert_eq!(p.push(16, 0, |_| {}), Err(Refused::Closed));
    }
}
