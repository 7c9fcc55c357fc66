//! A block buffer that several threads fill at once, each slot written by
//! exactly one of them: the memory under a group assembly.
//!
//! A slot is claimed by setting its presence bit with one atomic
//! `fetch_or`; the thread that set the bit is the only one that ever writes
//! the slot's bytes, so concurrent fills of different slots never race,
//! and a second copy of a slot (a duplicate arriving at another thread)
//! learns it lost the claim and writes nothing. The bytes are read only
//! after [`SharedSlots::into_parts`], which takes the value by ownership:
//! every writer has let go of it by then (an `Arc` unwrapped, a thread
//! joined), and that hand-over orders their writes before the read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::shm::PageBuf;

/// What [`SharedSlots::fill`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The slot was free: its bytes are the caller's data now.
    Placed,
    /// Another fill claimed the slot first; nothing was written.
    Duplicate,
}

/// One presence word (64 slots) alone on its cache line: threads that fill
/// neighbouring runs of slots (a sender's flows in runs of 64) must not
/// pass one line back and forth for their claims.
#[repr(align(64))]
struct Claims(AtomicU64);

/// `slots` slots of `slot_bytes` over one page buffer, filled concurrently.
pub struct SharedSlots {
    buf: PageBuf,
    /// Start of `buf`'s bytes, taken once while `buf` was exclusively ours.
    base: *mut u8,
    slot_bytes: usize,
    slots: usize,
    present: Box<[Claims]>,
}

// SAFETY: the buffer is owned by this value; moving it between threads
// moves ownership (PageBuf is Send).
unsafe impl Send for SharedSlots {}
// SAFETY: shared access writes a slot only after winning its presence bit
// (one writer per slot, disjoint byte ranges), and never reads the bytes.
unsafe impl Sync for SharedSlots {}

impl SharedSlots {
    /// Wraps `buf` as `slots` slots of `slot_bytes`, none present. None when
    /// the buffer is too small for them.
    pub fn new(mut buf: PageBuf, slot_bytes: usize, slots: usize) -> Option<Self> {
        let bytes = slot_bytes.checked_mul(slots)?;
        if slot_bytes == 0 || bytes > buf.len() {
            return None;
        }
        let base = buf.as_mut_ptr();
        let present = (0..slots.div_ceil(64)).map(|_| Claims(AtomicU64::new(0))).collect();
        Some(Self { buf, base, slot_bytes, slots, present })
    }

    /// Slots in the buffer.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Whether `slot` was claimed (a snapshot: another thread may claim it
    /// right after).
    pub fn is_present(&self, slot: usize) -> bool {
        self.present.get(slot / 64).is_some_and(|w| w.0.load(Ordering::Relaxed) >> (slot % 64) & 1 == 1)
    }

    /// Claims `slot` and copies `data` into it (cut at `slot_bytes`, the
    /// rest of the slot zeroed). Panics if `slot` is out of range: callers
    /// compute it from the layout the buffer was made for.
    #[inline]
    pub fn fill(&self, slot: usize, data: &[u8]) -> Fill {
        assert!(slot < self.slots, "slot {slot} out of range");
        let bit = 1u64 << (slot % 64);
        // Acquire/Release is not needed for the bytes (they are published by
        // the ownership hand-over in `into_parts`); the claim only has to be
        // unique, which any ordering of a read-modify-write guarantees.
        if self.present[slot / 64].0.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            return Fill::Duplicate;
        }
        let n = data.len().min(self.slot_bytes);
        // SAFETY: `slot` is in range (asserted above), so the slot's bytes
        // lie inside the buffer; this thread set the slot's presence bit,
        // so it is the only one that writes them, and nobody reads them
        // through a shared reference (reads need `into_parts`).
        unsafe {
            let at = self.base.add(slot * self.slot_bytes);
            std::ptr::copy_nonoverlapping(data.as_ptr(), at, n);
            std::ptr::write_bytes(at.add(n), 0, self.slot_bytes - n);
        }
        Fill::Placed
    }

    /// The buffer and its presence words, once no one else holds this value.
    pub fn into_parts(self) -> (PageBuf, Vec<u64>) {
        let present = self.present.iter().map(|w| w.0.load(Ordering::Relaxed)).collect();
        (self.buf, present)
    }
}

impl std::fmt::Debug for SharedSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedSlots({} slots of {} bytes)", self.slots(), self.slot_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn one_claim_per_slot_and_short_data_zero_padded() {
        let s = SharedSlots::new(PageBuf::new(4 * 8).unwrap(), 8, 4).unwrap();
        assert_eq!(s.fill(1, &[7; 3]), Fill::Placed);
        assert_eq!(s.fill(1, &[9; 8]), Fill::Duplicate);
        assert_eq!(s.fill(3, &[5; 20]), Fill::Placed);
        assert!(s.is_present(1) && !s.is_present(0));
        let (buf, present) = s.into_parts();
        assert_eq!(present, vec![0b1010]);
        assert_eq!(&buf[8..16], &[7, 7, 7, 0, 0, 0, 0, 0]);
        assert_eq!(&buf[24..32], &[5; 8]);
    }

    #[test]
    fn too_small_a_buffer_is_refused() {
        assert!(SharedSlots::new(PageBuf::new(16).unwrap(), 8, 3).is_none());
        assert!(SharedSlots::new(PageBuf::new(16).unwrap(), 0, 3).is_none());
    }

    #[test]
    fn threads_fill_interleaved_slots_and_race_for_duplicates() {
        const SLOTS: usize = 4096;
        let s = Arc::new(SharedSlots::new(PageBuf::new(SLOTS * 16).unwrap(), 16, SLOTS).unwrap());
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let s = s.clone();
                // Every thread tries every slot: exactly one wins each.
                std::thread::spawn(move || {
                    (0..SLOTS).filter(|&i| s.fill(i, &[t; 16]) == Fill::Placed).count()
                })
            })
            .collect();
        let won: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(won, SLOTS);
        let (buf, present) = Arc::try_unwrap(s).unwrap().into_parts();
        assert!(present.iter().all(|&w| w == u64::MAX));
        // Each slot holds one writer's bytes whole, never a mix.
        assert!(buf.chunks(16).all(|c| c.iter().all(|&b| b == c[0])));
    }
}
