//! Impairments a generator does to its own stream, to test a receiving
//! pipeline against known damage: drop, reorder and duplicate packets with
//! given probabilities, from a seed (the same seed, the same damage), and
//! count each, so that the receiver's loss map, late and duplicate counts
//! can be checked against what was done. netem does this to an interface;
//! here the sequence numbers themselves are dealt out of order.
//!
//! Exactness: every impairment is one a receiver can see. The first packet
//! is never dropped or held (a receiver starts counting at the first
//! number it sees), nor is the last one dropped (a gap shows only when a
//! later number arrives); a held packet counts as reordered only when a
//! higher number went out before it; held packets are all sent before the
//! stream ends.

use std::collections::VecDeque;

/// What to do to the stream (probabilities in 0..=1).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Impairments {
    /// Share of packets never sent.
    pub drop: f64,
    /// Share of packets held back and sent after `depth` later ones.
    pub reorder: f64,
    /// How many later packets a held one waits for.
    pub depth: u32,
    /// Share of packets sent twice (the copy right after the original).
    pub duplicate: f64,
    /// Seed of the draws (a sender thread `t` uses `seed + t`).
    pub seed: u64,
}

impl Impairments {
    /// Whether anything is done to the stream.
    pub fn any(&self) -> bool {
        self.drop > 0.0 || self.reorder > 0.0 || self.duplicate > 0.0
    }
}

/// What was done, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ImpairCounts {
    /// Sequence numbers never sent.
    pub dropped: u64,
    /// Packets sent after a higher sequence number.
    pub reordered: u64,
    /// Second copies sent.
    pub duplicated: u64,
}

impl ImpairCounts {
    /// Adds another thread's counts.
    pub fn add(&mut self, o: &ImpairCounts) {
        self.dropped += o.dropped;
        self.reordered += o.reordered;
        self.duplicated += o.duplicated;
    }
}

/// Deals out the sequence numbers of one sender thread, impaired.
#[derive(Debug, Clone)]
pub struct Impairer {
    cfg: Impairments,
    rng: u64,
    next_seq: u64,
    /// Packets sent so far (each copy counts).
    emitted: u64,
    /// Highest sequence number sent.
    highest: Option<u64>,
    /// Held packets: (release once `emitted` reaches this, sequence number).
    held: VecDeque<(u64, u64)>,
    /// The second copy of the last packet, due next.
    copy: Option<u64>,
    counts: ImpairCounts,
}

impl Impairer {
    /// A stream from sequence number 0, with thread `t`'s draws.
    pub fn new(cfg: Impairments, t: u64) -> Self {
        Impairer {
            cfg,
            rng: cfg.seed.wrapping_add(t).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            next_seq: 0,
            emitted: 0,
            highest: None,
            held: VecDeque::new(),
            copy: None,
            counts: ImpairCounts::default(),
        }
    }

    /// The number [`fate`](Self::fate) decides next.
    pub fn next_fresh(&self) -> u64 {
        self.next_seq
    }

    /// What was done so far.
    pub fn counts(&self) -> ImpairCounts {
        self.counts
    }

    /// The stream ends before its count (a deadline, SIGINT): the held
    /// packets are gaps below a number sent, so they count as dropped; a
    /// copy not sent is no duplicate. (Numbers dealt into a last call the
    /// kernel refused are not counted: with `--count` there is none.)
    pub fn abandon(&mut self) -> ImpairCounts {
        self.counts.dropped += self.held.len() as u64;
        self.held.clear();
        if self.copy.take().is_some() {
            self.counts.duplicated -= 1;
        }
        self.counts
    }

    /// splitmix64: a uniform draw in [0, 1).
    fn draw(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The sequence number of the next packet to send, when `remaining`
    /// packets (this one included) are left to send.
    pub fn next(&mut self, remaining: u64) -> u64 {
        if let Some(s) = self.copy.take() {
            self.sent(s, true);
            return s;
        }
        let (s, copy) = match self.release(remaining) {
            Some(held) => held,
            None => loop {
                let s = self.next_seq;
                if let Fate::Sent { copy } = self.fate(remaining) {
                    break (s, copy);
                }
            },
        };
        if copy {
            self.copy = Some(s);
        }
        self.sent(s, false);
        s
    }

    /// A held packet whose turn has come (all of them once `remaining`
    /// leaves no room to wait): its number, and whether to send it twice.
    /// The caller sends it and says so with [`sent`](Self::sent).
    pub fn release(&mut self, remaining: u64) -> Option<(u64, bool)> {
        let flush = remaining <= self.held.len() as u64;
        let &(due, s) = self.held.front()?;
        if due > self.emitted && !flush {
            return None;
        }
        self.held.pop_front();
        Some((s, self.roll_copy(remaining)))
    }

    /// What becomes of the stream's next fresh packet (number
    /// `next_seq`, which this consumes). A [`Fate::Held`] packet comes
    /// back from [`release`](Self::release).
    pub fn fate(&mut self, remaining: u64) -> Fate {
        let s = self.next_seq;
        self.next_seq += 1;
        let first = self.emitted == 0;
        let last = remaining <= 1 + self.held.len() as u64;
        if !first && !last && self.cfg.drop > 0.0 && self.draw() < self.cfg.drop {
            self.counts.dropped += 1;
            return Fate::Dropped;
        }
        if !first && !last && self.cfg.reorder > 0.0 && self.draw() < self.cfg.reorder {
            self.held.push_back((self.emitted + u64::from(self.cfg.depth.max(1)), s));
            return Fate::Held;
        }
        Fate::Sent { copy: self.roll_copy(remaining) }
    }

    /// Notes that number `s` went out (`copy`: its second time).
    pub fn sent(&mut self, s: u64, copy: bool) {
        self.emitted += 1;
        if !copy && self.highest.is_some_and(|h| s < h) {
            self.counts.reordered += 1;
        }
        self.highest = Some(self.highest.map_or(s, |h| h.max(s)));
    }

    fn roll_copy(&mut self, remaining: u64) -> bool {
        let room = remaining > 1 + self.held.len() as u64;
        let copy = room && self.cfg.duplicate > 0.0 && self.draw() < self.cfg.duplicate;
        self.counts.duplicated += u64::from(copy);
        copy
    }
}

/// What becomes of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Never sent.
    Dropped,
    /// Sent later, when [`Impairer::release`] gives it back.
    Held,
    /// Sent now (`copy`: twice).
    Sent {
        /// Send it a second time right after.
        copy: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a receiver that sees every packet counts: (missing, reordered, duplicates).
    fn receiver(seqs: &[u64]) -> (u64, u64, u64) {
        let mut seen = std::collections::HashSet::new();
        let (mut highest, mut reordered, mut dups) = (0u64, 0, 0);
        for (i, &s) in seqs.iter().enumerate() {
            if !seen.insert(s) {
                dups += 1;
            } else if i > 0 && s < highest {
                reordered += 1;
            }
            highest = highest.max(s);
        }
        let missing = (0..=highest).filter(|s| !seen.contains(s)).count() as u64;
        (missing, reordered, dups)
    }

    #[test]
    fn a_receiver_counts_exactly_what_was_done() {
        for seed in 0..20 {
            let cfg = Impairments { drop: 0.05, reorder: 0.05, depth: 3, duplicate: 0.02, seed };
            let mut imp = Impairer::new(cfg, 0);
            let n = 5000;
            let seqs: Vec<u64> = (0..n).map(|i| imp.next(n - i)).collect();
            let c = imp.counts();
            assert!(c.dropped > 0 && c.reordered > 0 && c.duplicated > 0, "{c:?}");
            assert_eq!(receiver(&seqs), (c.dropped, c.reordered, c.duplicated), "seed {seed}: {c:?}");
            assert_eq!(seqs[0], 0);
        }
    }

    #[test]
    fn the_same_seed_the_same_damage_and_none_without() {
        let cfg = Impairments { drop: 0.1, reorder: 0.1, depth: 8, duplicate: 0.1, seed: 7 };
        let run = |cfg| {
            let mut imp = Impairer::new(cfg, 1);
            (0..1000).map(|i| imp.next(1000 - i)).collect::<Vec<_>>()
        };
        assert_eq!(run(cfg), run(cfg));
        assert_ne!(run(cfg), run(Impairments { seed: 8, ..cfg }));
        assert_eq!(run(Impairments::default()), (0..1000).collect::<Vec<_>>());
    }
}
