//! linecap's engine: move packets between the network and applications as
//! fast as the kernel allows, and account for every one of them.
//!
//! [`source`]s hand [`packet::Batch`]es to [`sink`]s on pinned receive
//! threads ([`capture`]); [`assemble`] turns sequence-numbered streams
//! ([`format`](mod@format)) into blocks; [`send`] emulates the stream; [`stats`] keeps
//! per-stage counters in shared memory. The engine never prints: what it
//! has to say goes into its reports, its counters and its typed errors.
//! All `unsafe` code lives in the [`sys`] crate (`linecap-sys`).
//!
//! See `examples/` for the engine embedded in a program of its own, and
//! `docs/ARCHITECTURE.md` for the map.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use linecap_sys as sys;

/// A configuration the engine refuses before it opens anything (a
/// capture's or a generator's options that contradict each other or the
/// kernel's limits): the CLI reports it as a usage error (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(pub String);

/// Returns an [`InvalidConfig`] error unless `cond` holds.
macro_rules! ensure_valid {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::InvalidConfig(format!($($arg)+)).into());
        }
    };
}
pub(crate) use ensure_valid;

pub mod assemble;
pub mod bpf;
pub mod capture;
pub mod filter;
pub mod format;
pub mod packet;
pub mod send;
pub mod sink;
pub mod source;
pub mod stats;
pub mod units;
