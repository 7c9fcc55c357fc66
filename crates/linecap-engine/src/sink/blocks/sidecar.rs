//! The JSON sidecar written beside each block file: what the block holds
//! and which of its slots arrived.

use std::path::{Path, PathBuf};

use super::StreamFormat;
use crate::assemble::Layout;

/// What the sidecar of a block file says.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sidecar {
    /// Packet format.
    pub format: StreamFormat,
    /// Block number.
    pub number: u64,
    /// Sequence number of slot 0.
    pub first_seq: u64,
    /// Geometry.
    pub layout: Layout,
    /// Slots that arrived.
    pub filled: u64,
    /// Slots that were expected and did not arrive.
    pub lost: u64,
    /// Presence bits, one per (channel, slot), row-major, as little-endian u64 words in hex.
    pub presence: String,
    /// Whether missing slots were zero-filled.
    pub zero_filled: bool,
    /// The data file.
    pub data: String,
}

/// Largest sidecar read (the presence map of the largest block fits).
pub const MAX_SIDECAR_BYTES: usize = 256 << 20;

impl Sidecar {
    /// Parses a sidecar's text, checking what it claims: the layout (no
    /// zero or wrapping sizes) and the data file's name (a plain
    /// `block-*.bin` name, so it cannot point outside its directory).
    pub fn parse(text: &str) -> Result<Self, String> {
        let s: Sidecar =
            serde_json::from_str(text).map_err(|e| format!("not a linecap block sidecar: {e}"))?;
        let plain = !s.data.is_empty()
            && !s.data.starts_with('.')
            && !s.data.contains(['/', '\\', '\0'])
            && s.data.ends_with(".bin");
        if !plain {
            return Err(format!(
                "its data file name '{}' is not a block file beside it",
                s.data.escape_debug()
            ));
        }
        Ok(s)
    }

    /// Reads the sidecar at `path` (never following a symlink, never
    /// blocking on a FIFO) and checks its data file: a regular file beside
    /// it, of exactly the layout's size. Returns the sidecar, its text and
    /// the data file's path.
    pub fn load(path: &Path) -> Result<(Self, String, PathBuf), String> {
        let (bytes, _) = crate::sys::shm::read_checked(path, MAX_SIDECAR_BYTES)
            .map_err(|e| format!("cannot read the sidecar {} ({e})", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{} is not text", path.display()))?;
        let s = Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let data = path.with_file_name(&s.data);
        let meta = std::fs::symlink_metadata(&data)
            .map_err(|e| format!("data file {} is missing ({e})", data.display()))?;
        if !meta.is_file() {
            return Err(format!("data file {} is not a regular file", data.display()));
        }
        let want = s.layout.block_bytes() as u64;
        if meta.len() != want {
            return Err(format!(
                "{} holds {} bytes, the layout says {want}: the file is damaged",
                data.display(),
                meta.len()
            ));
        }
        Ok((s, text, data))
    }

    /// Whether (channel, slot) arrived.
    pub fn is_present(&self, channel: usize, slot: usize) -> bool {
        let i = channel * self.layout.slots + slot;
        let word = i / 64;
        self.presence
            .get(word * 16..word * 16 + 16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }
}

/// Presence words as the sidecar writes them.
pub(super) fn hex_words(words: &[u64]) -> String {
    words.iter().map(|w| format!("{w:016x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_presence_round_trip() {
        let words = [0b1011u64, 1 << 63];
        let s = Sidecar {
            format: StreamFormat::Seq,
            number: 0,
            first_seq: 0,
            layout: Layout::new(8, 64, 2).unwrap(),
            filled: 4,
            lost: 124,
            presence: hex_words(&words),
            zero_filled: true,
            data: "b.bin".into(),
        };
        assert!(s.is_present(0, 0) && s.is_present(0, 1) && !s.is_present(0, 2) && s.is_present(0, 3));
        assert!(s.is_present(1, 63) && !s.is_present(1, 62));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Sidecar>(&json).unwrap(), s);
    }
}
