//! Sinks consume batches on the receive thread, in place. A sink that may
//! block (a disk, a slow consumer) hands work to its own thread through a
//! bounded [`handoff`] and counts what it cannot take, so the receive loop
//! never waits and memory stays bounded. The relay sends from the receive
//! thread itself, never waiting (a full socket buffer is a counted drop).

pub mod blocks;
pub mod handoff;
pub mod pcap;
pub mod relay;
pub mod shmring;
pub mod verify;

use crate::packet::Batch;

/// A consumer of packet batches, run to completion on the receive thread.
pub trait Sink: Send {
    /// Takes one batch. Must not block: a sink that cannot keep up counts drops.
    fn consume(&mut self, batch: &Batch<'_>);
    /// Called about every 100 ms, with or without traffic (flush partial buffers).
    fn tick(&mut self) {}
    /// Flushes and closes; returns an error that the user must see (disk full...).
    fn finish(&mut self) -> crate::Result<()> {
        Ok(())
    }
    /// Packets this sink dropped so far (they were not delivered).
    fn dropped(&self) -> u64 {
        0
    }
    /// Short name for messages.
    fn name(&self) -> &'static str;
}

/// Counts and discards (the receive counters already say everything).
pub struct NullSink;

impl Sink for NullSink {
    fn consume(&mut self, _batch: &Batch<'_>) {}
    fn name(&self) -> &'static str {
        "null"
    }
}
