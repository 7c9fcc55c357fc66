//! Frames lent past their batch. A ring source (AF_XDP) normally gives a
//! batch's frames back to the kernel as soon as the sinks return. A sink
//! that only passes frames on to a thread of its own (the pcap writer) may
//! instead keep them: it hands the thread where each frame is, not its
//! bytes, and the thread copies the frame straight from the UMEM into its
//! file buffer and gives it back. The receive thread then never reads the
//! frame: at 2.35 Mpps that copy, from a cold frame into a cold buffer,
//! was most of what writing cost it (docs/BENCHMARKS.md, session 12).
//!
//! The kernel must never be short of frames meanwhile, so a source that
//! lends has spare frames: each frame lent is replaced on the fill ring by
//! a spare one, and once the spares run out nothing more is lent (the sink
//! copies, as without lending). Frames come back in the order they were
//! lent (the writer takes chunks in order), so giving back is one counter
//! the writer raises: no queue, no per-frame message.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys::shm::PageBuf;

/// What a holder of lent frames needs: the memory they are in, and the
/// count through which it gives them back.
#[derive(Clone)]
pub struct Lender {
    memory: Arc<PageBuf>,
    returned: Arc<AtomicU64>,
    spares: usize,
}

impl Lender {
    /// The frame at `addr` of `len` bytes (clipped to the memory: a
    /// descriptor is never trusted).
    pub fn frame(&self, addr: u64, len: u32) -> &[u8] {
        let start = usize::try_from(addr).unwrap_or(usize::MAX).min(self.memory.len());
        let end = start.saturating_add(len as usize).min(self.memory.len());
        &self.memory[start..end]
    }

    /// Gives back the next `frames` frames lent (in the order they were).
    /// After this the holder must not read them: the kernel may write them.
    pub fn give_back(&self, frames: u64) {
        self.returned.fetch_add(frames, Ordering::Release);
    }

    /// How many frames the source can have out on loan at once: a holder
    /// that keeps many of them long makes the source stop lending.
    pub fn spares(&self) -> usize {
        self.spares
    }

    /// Whether both lend from the same source.
    pub fn same_as(&self, other: &Lender) -> bool {
        Arc::ptr_eq(&self.returned, &other.returned)
    }
}

/// A batch's side of lending: which of its packets a sink took. Lent
/// frames are always a prefix of the batch (a sink lends packet `i` only
/// after packets `0..i`), so the source learns which from one count.
pub struct LoanDesk {
    lender: Lender,
    /// Frames that may still be lent: the spares not yet on the fill ring.
    room: Cell<usize>,
    /// How many of the batch's first packets were lent.
    lent: Cell<usize>,
}

impl LoanDesk {
    /// Frames that may be lent now.
    pub fn room(&self) -> usize {
        self.room.get()
    }

    /// Frames of this batch lent so far.
    pub fn lent(&self) -> usize {
        self.lent.get()
    }

    /// Through whom lent frames are read and given back.
    pub fn lender(&self) -> &Lender {
        &self.lender
    }

    /// The batch's next `n` frames were taken (no more than the room).
    pub fn take(&self, n: usize) {
        debug_assert!(n <= self.room.get(), "lent beyond the spares");
        let n = n.min(self.room.get());
        self.lent.set(self.lent.get() + n);
        self.room.set(self.room.get() - n);
    }
}

/// The source's side: spare frames, and the frames out on loan in the
/// order they were lent, in one ring of slots. The slots from `returned`
/// to `lent` (modulo their number) hold the frames out on loan, oldest
/// first; the others hold spares. Lending frame F takes the spare in the
/// slot after the last frame out and puts F there; a frame given back
/// turns its slot into a spare by the count alone: one swap per frame
/// lent, nothing per frame returned.
pub struct FramePool {
    desk: LoanDesk,
    slots: Box<[u64]>,
    /// Frames lent so far.
    lent: u64,
    /// Frames given back so far, as last read from the holder's count.
    returned: u64,
}

impl FramePool {
    /// A pool lending frames of `memory`, with `spare` (addresses of frames
    /// the kernel does not hold) to put on the fill ring in their place.
    pub fn new(memory: Arc<PageBuf>, spare: Vec<u64>) -> Self {
        let lender = Lender { memory, returned: Arc::new(AtomicU64::new(0)), spares: spare.len() };
        let desk = LoanDesk { lender, room: Cell::new(spare.len()), lent: Cell::new(0) };
        Self { desk, slots: spare.into_boxed_slice(), lent: 0, returned: 0 }
    }

    /// What the next batch lends through.
    pub fn desk(&self) -> &LoanDesk {
        &self.desk
    }

    /// Frames out on loan now.
    pub fn lent_out(&self) -> usize {
        (self.lent - self.returned) as usize
    }

    /// After the sinks took a batch of `frames` (descriptor addresses): the
    /// frames to put on the fill ring in their place into `fill` (a spare
    /// one for each frame lent, the frame itself for the others). False
    /// when none was lent: the batch's own frames go back as they are.
    pub fn settle(&mut self, frames: &[(u64, u32)], fill: &mut Vec<u64>) -> bool {
        // Never more than the spares: the desk offers no more (room).
        let lent = self.desk.lent.replace(0).min(frames.len()).min(self.slots.len() - self.lent_out());
        if lent == 0 {
            return false;
        }
        fill.clear();
        for &(addr, _) in &frames[..lent] {
            let slot = &mut self.slots[(self.lent % self.slots.len() as u64) as usize];
            fill.push(std::mem::replace(slot, addr));
            self.lent += 1;
        }
        fill.extend(frames[lent..].iter().map(|f| f.0));
        self.desk.room.set(self.slots.len() - self.lent_out());
        true
    }

    /// Takes back the frames the holder gave back since the last call.
    pub fn reclaim(&mut self) {
        let returned = self.desk.lender.returned.load(Ordering::Acquire);
        // A count past what was lent frees no more than was lent.
        self.returned = returned.clamp(self.returned, self.lent);
        self.desk.room.set(self.slots.len() - self.lent_out());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(spares: u64) -> FramePool {
        let memory = Arc::new(PageBuf::new(16 * 2048).unwrap());
        FramePool::new(memory, (8..8 + spares).map(|i| i * 2048).collect())
    }

    #[test]
    fn nothing_lent_gives_the_frames_back_as_they_are() {
        let mut p = pool(4);
        let mut fill = vec![];
        assert!(!p.settle(&[(0, 60), (2048, 60)], &mut fill));
        assert_eq!(p.lent_out(), 0);
    }

    #[test]
    fn lent_frames_are_replaced_by_spares_and_come_back_in_order() {
        let mut p = pool(3);
        let batch = [(0, 60), (2048, 60), (4096, 60)];
        let lender = p.desk().lender().clone();
        p.desk().take(2);
        let mut fill = vec![];
        assert!(p.settle(&batch, &mut fill));
        assert_eq!(fill, [8 * 2048, 9 * 2048, 4096], "two spares, the third frame itself");
        assert_eq!(p.lent_out(), 2);
        assert_eq!(p.desk().room(), 1, "one spare left");
        lender.give_back(1);
        p.reclaim();
        assert_eq!(p.lent_out(), 1);
        // Two more lent: the last spare, then frame 0, the first given back.
        p.desk().take(2);
        p.settle(&[(6 * 2048, 60), (7 * 2048, 60)], &mut fill);
        assert_eq!(fill, [10 * 2048, 0]);
        assert_eq!(p.desk().room(), 0, "every spare out");
        lender.give_back(3);
        p.reclaim();
        assert_eq!(p.lent_out(), 0);
    }

    #[test]
    fn no_spare_no_loan() {
        let mut p = pool(1);
        p.desk().take(1);
        assert_eq!(p.desk().room(), 0, "the one spare is promised");
        let mut fill = vec![];
        assert!(p.settle(&[(0, 60), (2048, 60)], &mut fill));
        assert_eq!(fill, [8 * 2048, 2048]);
        assert_eq!(p.desk().room(), 0, "nothing given back yet");
    }

    #[test]
    fn a_count_beyond_what_was_lent_frees_no_more_than_was_lent() {
        let mut p = pool(2);
        p.desk().take(1);
        let mut fill = vec![];
        p.settle(&[(0, 60)], &mut fill);
        p.desk().lender.give_back(5);
        p.reclaim();
        assert_eq!(p.lent_out(), 0);
        assert_eq!(p.desk().room(), 2);
        p.desk().take(2);
        p.settle(&[(0, 60), (2048, 60)], &mut fill);
        assert_eq!(p.lent_out(), 2, "the count's excess freed nothing that was not lent");
    }

    #[test]
    fn frames_are_clipped_to_the_memory() {
        let p = pool(0);
        let l = &p.desk().lender;
        assert_eq!(l.frame(0, 60).len(), 60);
        assert_eq!(l.frame(16 * 2048 - 10, 60).len(), 10);
        assert!(l.frame(u64::MAX, 60).is_empty());
    }
}
