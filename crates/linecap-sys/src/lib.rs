//! The operating-system glue: every raw syscall, `mmap` and socket option
//! that linecap uses lives here, behind safe wrappers.
//!
//! This is the only module allowed to use `unsafe`. Every `unsafe` block
//! carries a `// SAFETY:` line saying why it holds. The rest of the crate
//! sees file descriptors, byte slices and `io::Result`s.
//!
//! Calls that fail go through [`cvt`], which turns the C convention
//! (`-1` + `errno`) into `io::Error` so callers can match on the kind.

pub mod bpf;
pub mod cmsg;
pub mod mmsg;
pub mod packet;
pub mod shm;
pub mod slots;
pub mod uring;
pub mod user;
pub mod xsk;

mod ethtool;
mod file;
mod process;
mod signal;
mod sock;

pub use ethtool::*;
pub use file::*;
pub use process::*;
pub use signal::*;
pub use sock::*;

use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Turns a C return value into an `io::Result`, reading `errno` on `-1`.
pub fn cvt<T: Copy + PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// A raw descriptor number, for logging.
pub fn raw(fd: &impl AsRawFd) -> RawFd {
    fd.as_raw_fd()
}
