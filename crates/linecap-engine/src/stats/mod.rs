//! Live counters in a shared-memory file, one block per stage.
//!
//! Layout of `/dev/shm/linecap-<name>` (all little-endian u64 words):
//! ```text
//! header  (8 words, 64 B): magic "LCSTATS1", version | nstages << 32, pid,
//!                          started (ns since epoch), updated (ns),
//!                          backend (8 bytes of text, NUL padded), reserved...
//! stage i (104 words, 832 B, cache-line aligned):
//!   words  0..4   stage name (32 bytes, NUL padded)
//!   words  4..76  24 counter names (24 bytes each, NUL padded)
//!   words 80..104 24 counter values (three cache lines)
//! ```
//! Each stage block has exactly one writer thread, which updates it once
//! per batch with relaxed stores (no read-modify-write), so counting costs
//! no lock and no contended cache line. Readers in other processes load the
//! words; a value is at most one batch old.

pub mod help;
pub mod kernel;
mod names;
pub mod render;
pub mod serve;

pub use names::*;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys::shm::{ClaimError, SharedMap};

const MAGIC: u64 = u64::from_le_bytes(*b"LCSTATS1");
const VERSION: u64 = 2;
const HEADER_WORDS: usize = 8;
const STAGE_WORDS: usize = 104;
const NAME_WORDS: usize = 4;
const CNAME_WORDS: usize = 3;
const VALUES_AT: usize = 80;
/// Counters per stage.
pub const MAX_COUNTERS: usize = 24;

/// Where counter files live: `/dev/shm` when it exists, the temp dir otherwise.
pub fn stats_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() }
}

/// The counters file of capture `name`.
pub fn stats_path(name: &str) -> PathBuf {
    stats_dir().join(format!("linecap-{name}"))
}

/// Longest capture or ring name.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a capture or ring name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not
/// starting with `.` or `-`. Names become file names in a shared directory
/// and label values in Prometheus text, so nothing else is let in.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("name '{}' must be 1 to {MAX_NAME_LEN} characters long", name.escape_debug()));
    }
    if name.starts_with("blocks-") {
        return Err(format!("name '{name}' may not start with 'blocks-' (the prefix of ring files)"));
    }
    if name.starts_with(['.', '-']) || !name.chars().all(ok_char) {
        return Err(format!(
            "name '{}' may hold only letters, digits, '.', '_' and '-', and not start with '.' or '-'",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Default permission of the files linecap shares: the owner writes,
/// everyone may read (`stats` and the ring reader as another user).
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// Why a counters file could not be created.
#[derive(Debug, thiserror::Error)]
pub enum StatsFileError {
    /// A running capture holds the name.
    #[error("capture '{name}' is already running (pid {pid}): stop it or choose another --name")]
    NameInUse {
        /// The name.
        name: String,
        /// The running capture's pid, as its file says (0 if unreadable).
        pid: u32,
    },
    /// The name is taken by something that is not ours, or the system refused.
    #[error(transparent)]
    Claim(ClaimError),
}

/// A stage to create: its name and the names of its counters.
pub struct StageSpec {
    /// e.g. `rx.0`, `verify.0`, `pcap.writer.0`, `kernel`.
    pub name: String,
    /// At most [`MAX_COUNTERS`] names.
    pub counters: &'static [&'static str],
}

/// The writer's side of a counters file. Holding it holds the capture's
/// name: a second capture with the same name is refused until it drops.
pub struct StatsFile {
    map: Arc<SharedMap>,
    path: PathBuf,
    claimed: crate::sys::shm::Claimed,
    remove_on_drop: bool,
}

/// The single-writer handle of one stage block.
pub struct StageCounters {
    map: Arc<SharedMap>,
    base: usize,
    /// Counters this stage declared: an index past them is a bug, and
    /// fails loudly instead of landing on another counter.
    len: usize,
}

fn write_str(words: &[AtomicU64], s: &str) {
    let mut buf = vec![0u8; words.len() * 8];
    let n = s.len().min(buf.len() - 1);
    buf[..n].copy_from_slice(&s.as_bytes()[..n]);
    for (w, c) in words.iter().zip(buf.chunks_exact(8)) {
        w.store(u64::from_le_bytes(c.try_into().expect("8")), Ordering::Relaxed);
    }
}

/// As [`write_str`], but the text may fill every byte (no NUL needed).
fn write_str_exact(words: &[AtomicU64], s: &str) {
    let mut buf = vec![0u8; words.len() * 8];
    let n = s.len().min(buf.len());
    buf[..n].copy_from_slice(&s.as_bytes()[..n]);
    for (w, c) in words.iter().zip(buf.chunks_exact(8)) {
        w.store(u64::from_le_bytes(c.try_into().expect("8")), Ordering::Relaxed);
    }
}

fn read_str(words: &[AtomicU64]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl StatsFile {
    /// Creates the counters file for `name` with the given stages and
    /// permission `mode` (see [`DEFAULT_FILE_MODE`]).
    pub fn create(
        name: &str,
        stages: &[StageSpec],
        mode: u32,
    ) -> Result<(Self, Vec<StageCounters>), StatsFileError> {
        let path = stats_path(name);
        Self::create_at(&path, stages, mode).map_err(|e| match e {
            ClaimError::InUse { .. } => StatsFileError::NameInUse {
                name: name.to_string(),
                pid: Snapshot::read(name, &path).map_or(0, |s| s.pid),
            },
            other => StatsFileError::Claim(other),
        })
    }

    /// Creates a counters file at an explicit path.
    pub fn create_at(
        path: &Path,
        stages: &[StageSpec],
        mode: u32,
    ) -> Result<(Self, Vec<StageCounters>), ClaimError> {
        let words = HEADER_WORDS + STAGE_WORDS * stages.len();
        let (map, claimed) = SharedMap::create(path, words * 8, mode)?;
        let map = Arc::new(map);
        let w = map.words();
        w[1].store(VERSION | (stages.len() as u64) << 32, Ordering::Relaxed);
        w[2].store(u64::from(std::process::id()), Ordering::Relaxed);
        w[3].store(crate::sys::realtime_ns(), Ordering::Relaxed);
        let mut handles = Vec::new();
        for (i, st) in stages.iter().enumerate() {
            assert!(st.counters.len() <= MAX_COUNTERS, "too many counters in stage {}", st.name);
            let base = HEADER_WORDS + i * STAGE_WORDS;
            write_str(&w[base..base + NAME_WORDS], &st.name);
            for (j, c) in st.counters.iter().enumerate() {
                let at = base + NAME_WORDS + j * CNAME_WORDS;
                write_str(&w[at..at + CNAME_WORDS], c);
            }
            handles.push(StageCounters { map: map.clone(), base: base + VALUES_AT, len: st.counters.len() });
        }
        // The magic is stored by `publish`: until then readers see no
        // counters file (a capture is "ready" once its sources are open).
        Ok((Self { map, path: path.to_path_buf(), claimed, remove_on_drop: false }, handles))
    }

    /// Makes the file visible to readers as a counters file (the magic is
    /// stored last: a reader that sees it sees the names).
    pub fn publish(&self) {
        self.map.words()[0].store(MAGIC, Ordering::Release);
    }

    /// Whether a stale file of a dead capture with this name was replaced.
    pub fn replaced_stale(&self) -> bool {
        self.claimed.replaced_stale
    }

    /// Whether the file is removed when this handle drops (if the name
    /// still points at it).
    pub fn set_remove_on_drop(&mut self, remove: bool) {
        self.remove_on_drop = remove;
    }

    /// Names the capture's backend (by [`crate::source::BackendKind::name`]: at most 8
    /// bytes), for readers that explain the counters.
    pub fn set_backend(&self, backend: crate::source::BackendKind) {
        write_str_exact(&self.map.words()[5..6], backend.name());
    }

    /// Marks the file as fresh (readers show how old the numbers are).
    pub fn touch(&self) {
        self.map.words()[4].store(crate::sys::realtime_ns(), Ordering::Relaxed);
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StatsFile {
    fn drop(&mut self) {
        // Leave the final numbers readable; mark the writer gone.
        self.map.words()[2].store(0, Ordering::Relaxed);
        if self.remove_on_drop {
            crate::sys::shm::remove_if_same(&self.path, &self.claimed.file);
        }
    }
}

impl StageCounters {
    #[inline]
    fn cell(&self, idx: usize) -> &AtomicU64 {
        // One predictable branch per batch update; a wrong index would
        // otherwise corrupt another counter's books.
        assert!(idx < self.len, "counter index {idx} outside its stage of {}", self.len);
        &self.map.words()[self.base + idx]
    }

    /// Adds to a counter (single writer: a load and a store, no lock prefix).
    #[inline]
    pub fn add(&self, idx: usize, v: u64) {
        let c = self.cell(idx);
        c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
    }

    /// Sets a counter.
    #[inline]
    pub fn set(&self, idx: usize, v: u64) {
        self.cell(idx).store(v, Ordering::Relaxed);
    }

    /// Reads a counter.
    #[inline]
    pub fn get(&self, idx: usize) -> u64 {
        self.cell(idx).load(Ordering::Relaxed)
    }
}

/// One stage as read from a counters file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageSnapshot {
    /// Stage name.
    pub name: String,
    /// Counter name → value, in file order.
    pub counters: Vec<(String, u64)>,
}

impl StageSnapshot {
    /// A counter's value by name (0 when absent).
    pub fn get(&self, name: &str) -> u64 {
        self.counters.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
    }
}

/// A whole counters file as read at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    /// Capture name.
    pub name: String,
    /// Writer's pid (0 once it exited).
    pub pid: u32,
    /// Whether the writer still runs (it holds the file's lock).
    #[serde(default)]
    pub running: bool,
    /// The file's owner.
    #[serde(default)]
    pub owner_uid: u32,
    /// Start time, ns since the epoch.
    pub started_ns: u64,
    /// Last refresh, ns since the epoch.
    pub updated_ns: u64,
    /// The capture's backend (empty in files written before it was recorded).
    #[serde(default)]
    pub backend: String,
    /// Stages in file order.
    pub stages: Vec<StageSnapshot>,
}

impl Snapshot {
    /// Reads a counters file written by another process (or this one).
    /// Never hangs (a FIFO is refused), never follows a symlink, and copies
    /// at most [`MAX_FILE_BYTES`].
    pub fn read(name: &str, path: &Path) -> io::Result<Self> {
        let (bytes, facts) = crate::sys::shm::read_checked(path, MAX_FILE_BYTES)?;
        let mut snap = Self::from_bytes(name, &bytes).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a linecap counters file", path.display()),
            )
        })?;
        snap.running = facts.locked && snap.pid != 0;
        snap.owner_uid = facts.uid;
        Ok(snap)
    }

    /// Parses a counters file from its bytes (tests, fuzzing, copies).
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Option<Self> {
        let words: Vec<AtomicU64> = bytes
            .chunks_exact(8)
            .map(|c| AtomicU64::new(u64::from_le_bytes(c.try_into().expect("8"))))
            .collect();
        Self::from_words(name, &words)
    }

    /// Parses the words of a counters file; `None` when it is not one.
    /// Never panics, whatever the words say.
    fn from_words(name: &str, w: &[AtomicU64]) -> Option<Self> {
        if w.len() < HEADER_WORDS || w[0].load(Ordering::Acquire) != MAGIC {
            return None;
        }
        let vn = w[1].load(Ordering::Relaxed);
        let n = (vn >> 32) as usize;
        if vn & 0xffff_ffff != VERSION || w.len() < HEADER_WORDS + n * STAGE_WORDS {
            return None;
        }
        let mut stages = Vec::with_capacity(n);
        for i in 0..n {
            let base = HEADER_WORDS + i * STAGE_WORDS;
            let name = read_str(&w[base..base + NAME_WORDS]);
            let mut counters = Vec::new();
            for j in 0..MAX_COUNTERS {
                let at = base + NAME_WORDS + j * CNAME_WORDS;
                let cname = read_str(&w[at..at + CNAME_WORDS]);
                if cname.is_empty() {
                    break;
                }
                counters.push((cname, w[base + VALUES_AT + j].load(Ordering::Relaxed)));
            }
            stages.push(StageSnapshot { name, counters });
        }
        Some(Self {
            name: name.to_string(),
            pid: w[2].load(Ordering::Relaxed) as u32,
            running: false,
            owner_uid: 0,
            started_ns: w[3].load(Ordering::Relaxed),
            updated_ns: w[4].load(Ordering::Relaxed),
            backend: read_str(&w[5..6]),
            stages,
        })
    }

    /// Sum of a counter over all stages whose name starts with `prefix`.
    /// The backend the capture read from (`None` if the file does not say
    /// or names one this version does not know).
    pub fn kind(&self) -> Option<crate::source::BackendKind> {
        crate::source::BackendKind::parse(&self.backend)
    }

    /// The sum of counter `c` over every stage of its kind.
    pub fn total<C: Counter>(&self, c: C) -> u64 {
        self.sum(C::STAGE, c.name())
    }

    /// The sum of the counter named `counter` over the stages whose name
    /// starts with `prefix` (0 where a stage has no such counter: files of
    /// other versions are read too). The engine's own code reads through
    /// [`Snapshot::total`].
    pub fn sum(&self, prefix: &str, counter: &str) -> u64 {
        // Saturating: a counters file may hold anything (another process wrote it).
        self.stages
            .iter()
            .filter(|s| s.name.starts_with(prefix))
            .map(|s| s.get(counter))
            .fold(0, u64::saturating_add)
    }
}

/// The largest counters file a reader copies (a capture has tens of stages).
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// What `prune` did with one file of the shared directory.
#[derive(Debug)]
pub struct Pruned {
    /// The file's name.
    pub file: String,
    /// Removed (its capture had ended), or why not.
    pub outcome: Result<bool, ClaimError>,
}

/// Removes the counters files and rings of captures that ended (their lock
/// is free) and belong to this user; running captures' files, and anything
/// that is not a regular file of ours, stay.
pub fn prune() -> Vec<Pruned> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(stats_dir()).into_iter().flatten().flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        if !file.starts_with("linecap-") {
            continue;
        }
        let outcome = crate::sys::shm::remove_stale(&e.path());
        out.push(Pruned { file, outcome });
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// The counters of capture `name` (a readable error naming the captures
/// that have counters when it has none), or of every capture whose file
/// reads (others are skipped: a file may vanish as it is listed).
pub fn read_captures(name: Option<&str>) -> Result<Vec<Snapshot>, String> {
    match name {
        Some(n) => Snapshot::read(n, &stats_path(n)).map(|s| vec![s]).map_err(|e| {
            format!("no counters for capture '{n}' ({e}); captures with counters: {:?}", list_names())
        }),
        None => Ok(list_names().iter().filter_map(|n| Snapshot::read(n, &stats_path(n)).ok()).collect()),
    }
}

/// Names of the captures whose counters files exist.
pub fn list_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(stats_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("linecap-").map(str::to_string)))
        // Rings live beside the counters (`linecap-blocks-NAME`), and a
        // name nobody could have given is not a capture's.
        .filter(|n| !n.starts_with("blocks-") && check_name(n).is_ok())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let dir = std::env::temp_dir().join(format!("lc-stats-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("linecap-t");
        let stages = [
            StageSpec { name: "rx.0".into(), counters: RX_COUNTERS },
            StageSpec { name: "kernel".into(), counters: KERNEL_COUNTERS },
        ];
        let (file, h) = StatsFile::create_at(&path, &stages, DEFAULT_FILE_MODE).unwrap();
        assert!(Snapshot::read("t", &path).is_err(), "not a counters file before publish");
        file.publish();
        assert_eq!(Snapshot::read("t", &path).unwrap().backend, "");
        file.set_backend(crate::source::BackendKind::AfPacket);
        h[0].add(RxIdx::Packets as usize, 5);
        h[0].add(RxIdx::Packets as usize, 7);
        h[1].set(KernelIdx::SoftnetDropped as usize, 3);
        let s = Snapshot::read("t", &path).unwrap();
        assert_eq!(s.stages.len(), 2);
        assert_eq!(s.stages[0].name, "rx.0");
        assert_eq!(s.stages[0].get("packets"), 12);
        assert_eq!(s.stages[1].get("softnet_dropped"), 3);
        assert_eq!(s.sum("rx.", "packets"), 12);
        assert_eq!(s.pid, std::process::id());
        assert_eq!(s.backend, "afpacket");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let _ = Snapshot::from_bytes("f", &data);
            // And with a valid header in front, so the stage loop is reached.
            let mut d = MAGIC.to_le_bytes().to_vec();
            d.extend_from_slice(&(VERSION | 3 << 32).to_le_bytes());
            d.extend_from_slice(&data);
            let _ = Snapshot::from_bytes("f", &d);
        }
    }

    #[test]
    fn garbage_file_is_rejected() {
        let path = std::env::temp_dir().join(format!("lc-stats-garbage-{}", std::process::id()));
        std::fs::write(&path, [7u8; 128]).unwrap();
        assert!(Snapshot::read("g", &path).is_err());
        std::fs::write(&path, [7u8; 3]).unwrap();
        assert!(Snapshot::read("g", &path).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
