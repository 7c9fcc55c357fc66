//! A file mapped shared into memory and seen as an array of `AtomicU64`:
//! the medium of the live counters that other processes read.
//!
//! Only atomic access is offered, because another process may write the
//! memory at any time; a plain `&[u8]` over it would be a data race.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use super::cvt;

/// A shared mapping of a whole file, unmapped on drop.
pub struct SharedMap {
    ptr: NonNull<AtomicU64>,
    words: usize,
    _file: File,
}

// SAFETY: the mapping is only accessed through atomics, which are Sync; the
// pointer is valid until drop.
unsafe impl Send for SharedMap {}
// SAFETY: see above: all access is atomic.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Creates (or truncates) `path` with `bytes` zeroed bytes and maps it read-write.
    pub fn create(path: &Path, bytes: usize) -> io::Result<Self> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o644).open(path)?;
        let bytes = bytes.next_multiple_of(8);
        file.set_len(bytes as u64)?;
        Self::map(file, bytes, libc::PROT_READ | libc::PROT_WRITE)
    }

    /// Maps an existing file read-only.
    pub fn open_readonly(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let bytes = file.metadata()?.len() as usize;
        if bytes < 8 || !bytes.is_multiple_of(8) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a linecap counters file"));
        }
        Self::map(file, bytes, libc::PROT_READ)
    }

    fn map(file: File, bytes: usize, prot: i32) -> io::Result<Self> {
        // SAFETY: mapping a regular file we hold open, length checked > 0;
        // MAP_SHARED so other processes see the same pages.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), bytes, prot, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<AtomicU64>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, words: bytes / 8, _file: file })
    }

    /// The mapping as 64-bit atomic words.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is `words * 8` bytes, page-aligned (so aligned
        // for AtomicU64), valid until drop, and only accessed atomically.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.words) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `map`; no references
        // into it outlive `self` (they borrow from it).
        let ret = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.words * 8) };
        let _ = cvt(ret);
    }
}
