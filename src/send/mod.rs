//! The traffic generator: emulates the FPGA's stream with exact pacing.

pub mod afpacket;
pub mod pacing;
pub mod socket;
