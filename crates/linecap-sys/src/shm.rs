//! A file mapped shared into memory and seen as an array of `AtomicU64`:
//! the medium of the live counters that other processes read.
//!
//! Only atomic access is offered, because another process may write the
//! memory at any time; a plain `&[u8]` over it would be a data race.
//!
//! Files in a shared place (`/dev/shm` is world-writable) are *claimed*,
//! never opened by name for writing: [`claim`] creates a fresh file under a
//! private temporary name (`O_CREAT|O_EXCL|O_NOFOLLOW`), locks it
//! (`flock`, held for the owner's life), and only then links it to its
//! public name, which `link(2)` refuses to do over anything that exists. An
//! existing file of that name is taken over only when it is a regular file
//! of this user whose owner died (its lock is free); a symlink, a FIFO, a
//! foreign file or a live owner's file is refused untouched. Readers open
//! with `O_NOFOLLOW|O_NONBLOCK` (a FIFO cannot hang them) and copy the
//! bytes ([`read_checked`]) instead of mapping them, so a file shrunk under
//! them cannot raise SIGBUS.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
    /// Claims `path` (see [`claim`]) with `bytes` zeroed bytes and maps it
    /// read-write. The lock that holds the name lives as long as the map.
    pub fn create(path: &Path, bytes: usize, mode: u32) -> Result<(Self, Claimed), ClaimError> {
        let bytes = bytes.next_multiple_of(8);
        let claimed = claim(path, bytes as u64, mode)?;
        let file = claimed.file.try_clone().map_err(|e| ClaimError::io(path, e))?;
        let map = Self::map(file, bytes, libc::PROT_READ | libc::PROT_WRITE)
            .map_err(|e| ClaimError::io(path, e))?;
        Ok((map, claimed))
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
    /// Claims `path` (see [`claim`]) with `len` zeroed bytes and maps it.
    pub fn create(path: &Path, len: usize, mode: u32) -> Result<(Self, Claimed), ClaimError> {
        let claimed = claim(path, len as u64, mode)?;
        let file = claimed.file.try_clone().map_err(|e| ClaimError::io(path, e))?;
        let map = Self::map(file, len).map_err(|e| ClaimError::io(path, e))?;
        Ok((map, claimed))
    }

    fn map(file: File, len: usize) -> io::Result<Self> {
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

/// Why a shared file could not be claimed. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// A live process holds the name.
    #[error("{} is held by a running process", path.display())]
    InUse {
        /// The public name.
        path: PathBuf,
    },
    /// The name belongs to another user.
    #[error("{} belongs to uid {uid}, not to this user (uid {me}): remove it if it is not a capture, or choose another name", path.display())]
    Foreign {
        /// The public name.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Our effective uid.
        me: u32,
    },
    /// The name is taken by a symlink, FIFO, directory or device.
    #[error("{} is a {kind}, not a file linecap made: remove it, or choose another name", path.display())]
    NotRegular {
        /// The public name.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A system call failed.
    #[error("cannot create {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
}

impl ClaimError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}

/// A claimed file: open read-write, locked for as long as `file` (or a
/// clone of it) stays open.
#[derive(Debug)]
pub struct Claimed {
    /// The file, already sized.
    pub file: File,
    /// Whether a stale file of a dead owner was replaced.
    pub replaced_stale: bool,
}

/// What a reader learnt about a shared file besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    /// Owner uid.
    pub uid: u32,
    /// Whether a live process holds the file's lock (its writer runs).
    pub locked: bool,
}

/// Creates `path` as a fresh file of `len` zero bytes with permission
/// `mode` (umask not applied), locked for its owner's life; see the module
/// documentation for what is refused.
pub fn claim(path: &Path, len: u64, mode: u32) -> Result<Claimed, ClaimError> {
    let (tmp, file) = create_private(path, len, mode)?;
    let result = publish(&tmp, path);
    // The private name goes whatever happened: the public one (if linked)
    // keeps the inode, and our open file keeps the lock.
    let _ = std::fs::remove_file(&tmp);
    result.map(|replaced_stale| Claimed { file, replaced_stale })
}

/// Links the private file to its public name; returns whether a stale file
/// had to be removed first.
fn publish(tmp: &Path, path: &Path) -> Result<bool, ClaimError> {
    let mut replaced_stale = false;
    // A few rounds: a racing process may take over or release the name
    // between our steps; each round starts from what is there now.
    for _ in 0..8 {
        match std::fs::hard_link(tmp, path) {
            Ok(()) => return Ok(replaced_stale),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ClaimError::io(path, e)),
        }
        replaced_stale |= remove_if_stale(path)?;
    }
    Err(ClaimError::InUse { path: path.to_path_buf() })
}

/// A temporary name beside `path`, unique to this process and call.
static CALLS: AtomicUsize = AtomicUsize::new(0);

fn private_name(path: &Path) -> PathBuf {
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let base = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{base}.claim.{}.{n}", std::process::id()))
}

/// Creates, sizes and locks a new file under a private name beside
/// `path`. A name someone planted (they are predictable: pid and a counter)
/// is skipped, never touched: the next one is tried.
fn create_private(path: &Path, len: u64, mode: u32) -> Result<(PathBuf, File), ClaimError> {
    let mut last = None;
    for _ in 0..8 {
        let tmp = private_name(path);
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp);
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(ClaimError::io(&tmp, e)),
        };
        // From here the file is ours: on failure it goes.
        return prepare(&file, len, mode).map(|()| (tmp.clone(), file)).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ClaimError::io(&tmp, e)
        });
    }
    Err(ClaimError::io(path, last.unwrap_or_else(|| io::Error::other("no private name was free"))))
}

/// Sizes a fresh file, sets its mode and takes its lock.
fn prepare(file: &File, len: u64, mode: u32) -> io::Result<()> {
    // fchmod after creation: the mode is what was asked, whatever the umask.
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))?;
    file.set_len(len)?;
    if !try_flock(file, libc::LOCK_EX)? {
        return Err(io::Error::other("a file just created was locked by another process"));
    }
    Ok(())
}

/// Removes `path` when it is a stale file of ours (regular, our uid, lock
/// free), holding its lock while checking that the name still points at
/// it. Returns whether it removed it; refuses everything else.
fn remove_if_stale(path: &Path) -> Result<bool, ClaimError> {
    let old = match open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(ClaimError::NotRegular { path: path.to_path_buf(), kind: "symbolic link" });
        }
        Err(e) => return Err(ClaimError::io(path, e)),
    };
    let meta = old.metadata().map_err(|e| ClaimError::io(path, e))?;
    check_regular(path, &meta)?;
    let me = effective_uid();
    if meta.uid() != me {
        return Err(ClaimError::Foreign { path: path.to_path_buf(), uid: meta.uid(), me });
    }
    // A reader probing with a shared lock holds it for microseconds: try a few times.
    let mut got = false;
    for _ in 0..20 {
        got = try_flock(&old, libc::LOCK_EX).map_err(|e| ClaimError::io(path, e))?;
        if got {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if !got {
        return Err(ClaimError::InUse { path: path.to_path_buf() });
    }
    // Still the same file under that name? Then it is ours to remove.
    match std::fs::symlink_metadata(path) {
        Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {
            std::fs::remove_file(path).map_err(|e| ClaimError::io(path, e))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), ClaimError> {
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(());
    }
    let kind = if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symbolic link"
    } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
        "FIFO"
    } else if std::os::unix::fs::FileTypeExt::is_socket(&ft) {
        "socket"
    } else {
        "device"
    };
    Err(ClaimError::NotRegular { path: path.to_path_buf(), kind })
}

/// Opens read-only without following a symlink and without blocking on a FIFO.
fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// `flock(op | LOCK_NB)`: `Ok(false)` when someone else holds a conflicting lock.
fn try_flock(file: &File, op: i32) -> io::Result<bool> {
    // SAFETY: flock on an fd we own; no memory is passed.
    let ret = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
    match cvt(ret) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a live process holds `file`'s lock (probes with a shared lock,
/// released at once).
fn held_by_writer(file: &File) -> bool {
    match try_flock(file, libc::LOCK_SH) {
        Ok(true) => {
            // SAFETY: releasing the lock we just took on our own fd.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            false
        }
        Ok(false) => true,
        Err(_) => false,
    }
}

/// Removes `path` when it is a file of this user whose owner is gone (its
/// lock is free); leaves a live one, and refuses a link, FIFO or another
/// user's file (see [`ClaimError`]). Returns whether it removed it.
pub fn remove_stale(path: &Path) -> Result<bool, ClaimError> {
    match remove_if_stale(path) {
        Err(ClaimError::InUse { .. }) => Ok(false),
        other => other,
    }
}

/// Removes `path` if it still names the inode open as `file` (a name
/// taken over since is left alone).
pub fn remove_if_same(path: &Path, file: &File) {
    if let (Ok(ours), Ok(now)) = (file.metadata(), std::fs::symlink_metadata(path))
        && ours.dev() == now.dev()
        && ours.ino() == now.ino()
    {
        let _ = std::fs::remove_file(path);
    }
}

/// The effective uid of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Reads up to `max` bytes of a shared file safely: no symlink followed, no
/// blocking on a FIFO, only a regular file, and a copy (not a mapping).
pub fn read_checked(path: &Path, max: usize) -> io::Result<(Vec<u8>, FileFacts)> {
    let file = open_nofollow(path)?;
    let meta = file.metadata()?;
    check_regular(path, &meta).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut bytes = Vec::with_capacity((meta.len() as usize).min(max));
    (&file).take(max as u64).read_to_end(&mut bytes)?;
    Ok((bytes, FileFacts { uid: meta.uid(), locked: held_by_writer(&file) }))
}

/// Reads `len` bytes at `offset` of a shared file opened as [`read_checked`] does.
pub fn read_range_checked(path: &Path, offset: u64, len: usize) -> io::Result<(Vec<u8>, FileFacts, u64)> {
    use std::os::unix::fs::FileExt;
    let file = open_nofollow(path)?;
    let meta = file.metadata()?;
    check_regular(path, &meta).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut bytes = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut bytes[got..], offset + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    bytes.truncate(got);
    Ok((bytes, FileFacts { uid: meta.uid(), locked: held_by_writer(&file) }, meta.len()))
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
        Self::map(len, 0)
    }

    /// As [`new`](Self::new), with every page in place on return
    /// (`MAP_POPULATE`): the first write to it costs no page fault, so the
    /// thread that fills it later never stalls on one.
    pub fn populated(len: usize) -> io::Result<Self> {
        Self::map(len, libc::MAP_POPULATE)
    }

    fn map(len: usize, populate: i32) -> io::Result<Self> {
        const HUGE: usize = 2 << 20;
        let try_huge = len >= HUGE && len.is_multiple_of(HUGE);
        let map = |flags: i32, map_len: usize| {
            // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    map_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | populate | flags,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A private directory for one test, removed on drop.
    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Self {
            let d = std::env::temp_dir().join(format!("lc-claim-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Self(d)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_claim_creates_a_locked_file_with_the_mode_asked() {
        let d = Dir::new("fresh");
        let p = d.0.join("linecap-a");
        let c = claim(&p, 64, 0o640).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!((m.len(), m.permissions().mode() & 0o777), (64, 0o640));
        assert!(!c.replaced_stale);
        let (_, facts) = read_checked(&p, 1024).unwrap();
        assert!(facts.locked, "the claim holds the lock");
        // Only the public name is left behind.
        assert_eq!(std::fs::read_dir(&d.0).unwrap().count(), 1);
    }

    #[test]
    fn a_live_claim_refuses_a_second_and_a_dead_one_is_taken_over() {
        let d = Dir::new("twice");
        let p = d.0.join("linecap-b");
        let first = claim(&p, 8, 0o644).unwrap();
        std::fs::write(d.0.join("marker"), b"x").unwrap();
        assert!(matches!(claim(&p, 8, 0o644), Err(ClaimError::InUse { .. })));
        // The first file is untouched by the refused claim.
        assert_eq!(std::fs::metadata(&p).unwrap().ino(), first.file.metadata().unwrap().ino());
        drop(first);
        let (_, facts) = read_checked(&p, 1024).unwrap();
        assert!(!facts.locked, "its owner is gone");
        let second = claim(&p, 8, 0o644).unwrap();
        assert!(second.replaced_stale);
    }

    #[test]
    fn a_planted_private_name_is_skipped_and_left_alone() {
        let d = Dir::new("planted");
        let p = d.0.join("linecap-f");
        // The next private names this process would use (other tests in this
        // process may take some meanwhile: the claim must succeed anyway).
        for n in 0..4 {
            let base = CALLS.load(Ordering::Relaxed) + n;
            let planted = d.0.join(format!(".linecap-f.claim.{}.{base}", std::process::id()));
            std::fs::write(&planted, b"theirs").unwrap();
        }
        let c = claim(&p, 8, 0o644).unwrap();
        assert_eq!(c.file.metadata().unwrap().len(), 8);
        let theirs =
            std::fs::read_dir(&d.0).unwrap().flatten().filter(|e| e.file_name() != "linecap-f").count();
        assert_eq!(theirs, 4, "the planted files stay");
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let d = Dir::new("link");
        let target = d.0.join("precious");
        std::fs::write(&target, b"root's data").unwrap();
        let p = d.0.join("linecap-c");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let e = claim(&p, 4096, 0o644).unwrap_err();
        assert!(matches!(e, ClaimError::NotRegular { kind: "symbolic link", .. }), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"root's data");
        assert!(read_checked(&p, 1024).is_err(), "readers do not follow it either");
    }

    #[test]
    fn a_fifo_is_refused_and_never_blocks_a_reader() {
        let d = Dir::new("fifo");
        let p = d.0.join("linecap-d");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        let e = claim(&p, 64, 0o644).unwrap_err();
        assert!(matches!(e, ClaimError::NotRegular { kind: "FIFO", .. }), "{e}");
        // Returns at once (O_NONBLOCK), with an error, not a hang.
        assert!(read_checked(&p, 1024).is_err());
        assert!(read_range_checked(&p, 0, 8).is_err());
    }

    #[test]
    #[cfg_attr(not(linecap_root), ignore = "needs root: chown to another user")]
    fn a_file_of_another_user_is_refused() {
        let d = Dir::new("foreign");
        let p = d.0.join("linecap-e");
        std::fs::write(&p, [0u8; 64]).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        let e = claim(&p, 64, 0o644).unwrap_err();
        assert!(matches!(e, ClaimError::Foreign { uid: 65534, .. }), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), [0u8; 64], "left as it was");
    }
}
