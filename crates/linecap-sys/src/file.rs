//! Files linecap writes: which file system holds them, and paced write-back.

use std::io;
use std::mem::zeroed;
use std::os::fd::AsRawFd;

use crate::cvt;

/// `TMPFS_MAGIC` (linux/magic.h): the `f_type` of a tmpfs.
const TMPFS_MAGIC: libc::c_long = 0x0102_1994;

/// Whether the open file `fd` lives in memory (tmpfs, /dev/shm): there,
/// direct I/O buys nothing (Linux 6.6 accepts `O_DIRECT` on tmpfs and
/// copies through the page cache anyway).
pub fn on_tmpfs(fd: &impl AsRawFd) -> io::Result<bool> {
    // SAFETY: all-zero is a valid statfs; the kernel fills it for a valid fd.
    let mut st: libc::statfs = unsafe { zeroed() };
    // SAFETY: `st` is a valid, writable statfs for the call.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_type as libc::c_long == TMPFS_MAGIC)
}

/// Starts write-back of `len` bytes from `offset` without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), or, with `wait`, waits until
/// they are written (`WAIT_BEFORE | WRITE | WAIT_AFTER`), then tells the
/// kernel their pages are not needed again (`POSIX_FADV_DONTNEED`): a
/// streaming writer that keeps the disk busy and the page cache small.
pub fn write_back(fd: &impl AsRawFd, offset: u64, len: u64, wait: bool) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off64_t::try_from(offset), libc::off64_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    // SAFETY: plain syscall on a valid fd with integer arguments.
    cvt(unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, flags) })?;
    if wait {
        // SAFETY: as above; advice only, its failure changes nothing.
        unsafe { libc::posix_fadvise(fd.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(())
}
