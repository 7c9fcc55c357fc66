//! linecap: move packets between the network and applications as fast as
//! the kernel allows, and account for every one of them.
//!
//! See `docs/ARCHITECTURE.md` for the map. In short: [`source`]s hand
//! [`packet::Batch`]es to [`sink`]s on pinned receive threads ([`capture`]);
//! [`send`] emulates the stream; [`stats`] keeps per-stage counters in shared
//! memory; [`testbed`] builds the namespaces everything is tested in. All
//! `unsafe` code lives in [`sys`].
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod assemble;
pub mod bench;
pub mod bpf;
pub mod capture;
pub mod doctor;
pub mod filter;
pub mod format;
pub mod orchestrate;
pub mod packet;
pub mod send;
pub mod sink;
pub mod source;
pub mod stats;
pub mod sys;
pub mod testbed;
pub mod units;
