//! The traffic generator: emulates the FPGA's stream with exact pacing.

pub mod afpacket;
pub mod pacing;
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
