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

/// What can go wrong in the engine, typed so that a program embedding it
/// can tell a refused configuration from a failing machine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration refused before anything opened (options that
    /// contradict each other or the kernel's limits): the CLI reports it
    /// as a usage error (exit status 2).
    #[error("{0}")]
    InvalidConfig(String),
    /// The counters file could not be claimed (a name in use, a planted file).
    #[error(transparent)]
    Name(#[from] stats::StatsFileError),
    /// A system call failed; the message says which and what to do.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The kernel's verifier refused an XDP program (its log inside).
    #[error(transparent)]
    Program(#[from] sys::bpf::LoadError),
    /// Anything else the engine ran into, in words (a sender that keeps
    /// failing, a thread that panicked, a generator the kernel refused).
    #[error("{0}")]
    Failed(String),
}

/// The engine's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Returns an [`Error::InvalidConfig`] unless `cond` holds.
macro_rules! ensure_valid {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::Error::InvalidConfig(format!($($arg)+)));
        }
    };
}
pub(crate) use ensure_valid;

/// An [`Error::Failed`] with a formatted message.
macro_rules! failed {
    ($($arg:tt)+) => {
        $crate::Error::Failed(format!($($arg)+))
    };
}
pub(crate) use failed;

pub mod assemble;
pub mod bpf;
pub mod capture;
pub mod filter;
pub mod format;
pub mod loan;
pub mod packet;
pub mod send;
pub mod sink;
pub mod source;
pub mod stats;
pub mod units;
