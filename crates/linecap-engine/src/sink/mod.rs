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

/// Creates (or truncates) an output file the way a root tool must in a
/// folder other users can write to: a symbolic link planted at the path is
/// refused, not followed (`O_NOFOLLOW`), and so is anything but a regular
/// file (a FIFO would block the writer: it is opened without blocking and
/// refused).
pub fn create_output_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::new(
                e.kind(),
                format!("{} is a symbolic link: linecap does not write through one", path.display()),
            ),
            Some(libc::ENXIO) => std::io::Error::new(
                e.kind(),
                format!("{} is a FIFO nobody reads: linecap writes regular files", path.display()),
            ),
            _ => e,
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file: linecap writes regular files", path.display()),
        ));
    }
    Ok(file)
}
