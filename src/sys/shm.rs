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

/// A file mapped shared read-write as bytes, for a ring whose layout the
/// writer owns (see `sink::shmring`). The writer is the only Rust user; a
/// reader in another process follows the ring's publication protocol
/// (sequence words stored with release ordering after the bytes).
pub struct ByteMap {
    ptr: NonNull<u8>,
    len: usize,
    _file: File,
}

// SAFETY: the mapping is owned by this value and used by one thread at a
// time (it is moved into the ring writer's thread).
unsafe impl Send for ByteMap {}

impl ByteMap {
    /// Creates (or truncates) `path` with `len` zeroed bytes and maps it.
    pub fn create(path: &Path, len: usize) -> io::Result<Self> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o644).open(path)?;
        file.set_len(len as u64)?;
        // SAFETY: mapping a regular file we hold open, of its exact length.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len, _file: file })
    }

    /// The 64-bit word at byte offset `at` (8-aligned), as an atomic.
    pub fn word(&self, at: usize) -> &AtomicU64 {
        assert!(at.is_multiple_of(8) && at + 8 <= self.len, "word offset {at} outside the map");
        // SAFETY: in bounds and aligned (checked); the mapping is page
        // aligned; shared words are only accessed atomically.
        unsafe { &*self.ptr.as_ptr().add(at).cast::<AtomicU64>() }
    }

    /// Bytes `at..at+len` for writing.
    pub fn bytes_mut(&mut self, at: usize, len: usize) -> &mut [u8] {
        assert!(at + len <= self.len, "range outside the map");
        // SAFETY: in bounds (checked); `&mut self` makes this the only Rust
        // reference. Another process may read these bytes concurrently:
        // the ring protocol tells it when they are complete.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(at), len) }
    }
}

impl Drop for ByteMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `create`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Whether a process exists (signal 0).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: kill with signal 0 only checks for existence and permission.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// A page-aligned buffer from its own anonymous mapping: block memory a GPU
/// driver can register. Huge pages (2 MiB) are used when the size is a
/// multiple of them and the kernel has some free; 4 KiB pages otherwise.
pub struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
    map_len: usize,
    huge: bool,
}

// SAFETY: the mapping is owned by this value alone; moving it moves ownership.
unsafe impl Send for PageBuf {}
// SAFETY: shared references only read.
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// A zeroed buffer of `len` bytes (at least one page is mapped).
    pub fn new(len: usize) -> io::Result<Self> {
        const HUGE: usize = 2 << 20;
        let try_huge = len >= HUGE && len.is_multiple_of(HUGE);
        let map = |flags: i32, map_len: usize| {
            // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    map_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                    -1,
                    0,
                )
            };
            (p != libc::MAP_FAILED).then_some(p)
        };
        if try_huge && let Some(p) = map(libc::MAP_HUGETLB, len) {
            let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
            return Ok(Self { ptr, len, map_len: len, huge: true });
        }
        let map_len = len.max(1).next_multiple_of(4096);
        let p = map(0, map_len).ok_or_else(io::Error::last_os_error)?;
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len, map_len, huge: false })
    }

    /// Whether the buffer sits on huge pages.
    pub fn is_huge(&self) -> bool {
        self.huge
    }
}

impl std::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is `len` valid bytes, owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl std::fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageBuf({} bytes{})", self.len, if self.huge { ", huge pages" } else { "" })
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `new`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.map_len) };
    }
}
