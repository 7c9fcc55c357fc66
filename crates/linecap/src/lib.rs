//! linecap's tools: the command line's building blocks on top of the
//! engine (`linecap-engine`): the [`testbed`] every test and benchmark
//! runs in, the [`bench`](mod@bench), the [`orchestrate`]d send-and-capture runs and
//! the [`doctor`].
//!
//! The engine's modules are re-exported under their own names, so
//! `linecap::capture` is `linecap_engine::capture`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use linecap_engine::Error as EngineError;
pub use linecap_engine::{
    assemble, bpf, capture, filter, format, packet, send, sink, source, stats, sys, units,
};

pub mod bench;
pub mod doctor;
pub mod orchestrate;
pub mod testbed;
