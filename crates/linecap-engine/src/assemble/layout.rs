//! The shape of a block: `channels` rows of `slots` packets of `slot_bytes`.

/// Block geometry. Deserialising checks it as [`Layout::new`] does, so a
/// sidecar or a ring header cannot smuggle in zero slots or a size that
/// wraps around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Unchecked")]
pub struct Layout {
    /// Data bytes each packet contributes.
    pub slot_bytes: usize,
    /// Packets per block per channel (the time axis).
    pub slots: usize,
    /// Rows (channel, beam, antenna...); 1 for a plain stream.
    pub channels: usize,
}

/// A layout as read, before [`Layout::new`] checked it.
#[derive(serde::Deserialize)]
struct Unchecked {
    slot_bytes: usize,
    slots: usize,
    channels: usize,
}

impl TryFrom<Unchecked> for Layout {
    type Error = String;
    fn try_from(u: Unchecked) -> Result<Self, String> {
        Layout::new(u.slot_bytes, u.slots, u.channels)
    }
}

impl Layout {
    /// Checks a geometry, with a reason a user can act on.
    pub fn new(slot_bytes: usize, slots: usize, channels: usize) -> Result<Self, String> {
        if slot_bytes == 0 || slots == 0 || channels == 0 {
            return Err("slot size, slots per block and channels must all be at least 1".into());
        }
        let bytes = slot_bytes.checked_mul(slots).and_then(|b| b.checked_mul(channels));
        match bytes {
            Some(b) if b <= 1 << 32 => Ok(Self { slot_bytes, slots, channels }),
            _ => Err(format!("a block of {channels} x {slots} x {slot_bytes} bytes is larger than 4 GiB")),
        }
    }

    /// Bytes of one block.
    pub fn block_bytes(&self) -> usize {
        self.slot_bytes * self.slots * self.channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialising_checks_the_geometry() {
        let ok: Result<Layout, _> = serde_json::from_str(r#"{"slot_bytes":8,"slots":4,"channels":2}"#);
        assert_eq!(ok.unwrap().block_bytes(), 64);
        for bad in [
            r#"{"slot_bytes":8,"slots":0,"channels":2}"#,
            r#"{"slot_bytes":4294967296,"slots":4294967296,"channels":1}"#,
            r#"{"slot_bytes":18446744073709551615,"slots":2,"channels":1}"#,
        ] {
            assert!(serde_json::from_str::<Layout>(bad).is_err(), "{bad}");
        }
    }
}
