//! The shape of a block: `channels` rows of `slots` packets of `slot_bytes`.

/// Block geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// Data bytes each packet contributes.
    pub slot_bytes: usize,
    /// Packets per block per channel (the time axis).
    pub slots: usize,
    /// Rows (channel, beam, antenna...); 1 for a plain stream.
    pub channels: usize,
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
