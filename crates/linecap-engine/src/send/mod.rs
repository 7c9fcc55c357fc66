//! The traffic generator: emulates the FPGA's stream with exact pacing.

pub mod afpacket;
pub mod flows;
pub mod impair;
pub mod pacing;
pub mod replay;
pub mod socket;
pub mod xdp;
pub mod xdplive;

use crate::format::raw::RawSpec;
use crate::format::seq;

/// What the generator writes into each packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// linecap's `seq` payload (sequence number + verifiable pattern).
    Seq,
    /// A raw header with a counter (and a channel, cycling over `channels`).
    Raw {
        /// The packet description.
        spec: RawSpec,
        /// Channels to cycle through: packet `k` carries counter `k / channels`, channel `k % channels`.
        channels: u64,
    },
    /// VDIF frames (the packet is the whole frame), threads cycling.
    Vdif {
        /// Frames per second per thread.
        fps: u64,
        /// Threads to cycle through.
        threads: u64,
    },
    /// SPEAD-64-48 packets, heaps of `parts` packets.
    Spead {
        /// Packets per heap.
        parts: u64,
    },
}

impl PayloadFormat {
    /// Fills packet number `k` of this stream.
    #[inline]
    pub fn fill(&self, buf: &mut [u8], k: u64) {
        match self {
            PayloadFormat::Seq => seq::fill(buf, k),
            PayloadFormat::Raw { spec, channels } => {
                let ch = (*channels).max(1);
                spec.encode(buf, k / ch, k % ch);
            }
            PayloadFormat::Vdif { fps, threads } => crate::format::vdif::encode(buf, k, *threads, *fps),
            PayloadFormat::Spead { parts } => crate::format::spead::encode(buf, k, *parts),
        }
    }
}

/// Pins the calling sender thread to `cpu` (if given); a failure is said, not fatal.
pub(crate) fn pin_sender(cpu: Option<usize>) {
    if let Some(c) = cpu
        && let Err(e) = crate::sys::pin_to_cpu(0, c)
    {
        tracing::warn!("cannot pin the send thread to CPU {c}: {e}");
    }
}

/// One turn of a paced send loop: `None` to stop (SIGINT, the deadline,
/// the count reached), else how many packets to send now (at most `most`),
/// having waited for the pacer first when none was due yet.
pub(crate) fn next_turn(
    pacer: &mut pacing::Pacer,
    deadline: Option<u64>,
    remaining: u64,
    most: u64,
) -> Option<u64> {
    loop {
        if crate::sys::stop_requested() || remaining == 0 {
            return None;
        }
        let now = crate::sys::monotonic_ns();
        if deadline.is_some_and(|d| now >= d) {
            return None;
        }
        let want = pacer.allowance(now).min(most).min(remaining);
        if want > 0 {
            return Some(want);
        }
        wait_for_next(pacer, now, deadline);
    }
}

/// Waits until the pacer's next packet is due (or the deadline): sleeps
/// when that is more than 20 µs away, spins briefly otherwise.
pub(crate) fn wait_for_next(pacer: &pacing::Pacer, now: u64, deadline: Option<u64>) {
    let due = pacer.next_due_ns();
    if due > now + 20_000 {
        crate::sys::sleep_until_monotonic(due.min(deadline.unwrap_or(u64::MAX)));
    } else {
        std::hint::spin_loop();
    }
}
