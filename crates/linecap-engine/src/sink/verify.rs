//! The `seq` verifier: checks every payload and tracks the sequence to
//! count gaps, duplicates and reordering exactly.
//!
//! Exactness within a window: the tracker remembers which of the last
//! [`WINDOW`] sequence numbers it has seen, so a packet arriving late but
//! within the window fills its gap (counted as reordered), a second copy is
//! a duplicate, and anything older is counted as `too_old` (it cannot be
//! told apart from a duplicate any more).
//!
//! One packet never moves the stream far. A number more than [`WINDOW`]
//! ahead of the highest (or behind it, out of the window) is held as a
//! *candidate*: if [`RESYNC_AGREE`] such packets in a row agree with each
//! other (each within the window of the candidate's highest) while no
//! in-window packet arrives, the sender really jumped (a restart, a loss
//! burst longer than the window) and the tracker resyncs onto them;
//! otherwise they are counted `out_of_window` and the stream is untouched.
//! A confirmed forward jump of at most [`MAX_MISSING_GAP`] counts its gap
//! as `missing`; a wilder one (or any backward one) is a `resync` without
//! folding a number nobody can trust into `missing`.

use std::net::SocketAddr;

use crate::format::seq::{self, Check};
use crate::packet::Batch;
use crate::stats::{StageCounters, VerifyIdx};

/// Sequence numbers remembered behind the highest one seen.
pub const WINDOW: u64 = 1 << 16;

/// Far packets in a row that must agree before the tracker moves to them.
pub const RESYNC_AGREE: usize = 4;

/// Largest confirmed forward jump whose gap is counted as `missing`
/// (16 M packets: 7 s of the reference stream).
pub const MAX_MISSING_GAP: u64 = 1 << 24;

/// Counts of what the verifier saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyCounts {
    /// Payloads examined.
    pub packets: u64,
    /// Payloads whose pattern matched.
    pub valid: u64,
    /// Payloads whose pattern did not match their sequence number.
    pub corrupt: u64,
    /// Payloads too short to check: under 16 bytes (a sequence number and one pattern word).
    pub malformed: u64,
    /// Second and later copies of a sequence number.
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number (and filled a gap).
    pub reordered: u64,
    /// Sequence numbers between the first and highest seen that never arrived.
    pub missing: u64,
    /// Packets older than the window (or older than the first one seen).
    pub too_old: u64,
    /// Highest sequence number seen (largest over flows).
    pub highest_seq: u64,
    /// Frames that were not UDP datagrams (raw backends), not checked.
    #[serde(default)]
    pub not_udp: u64,
    /// Valid packets far outside the stream's window that did not move it
    /// (a crafted or stray number, or the few before a resync was refused).
    #[serde(default)]
    pub out_of_window: u64,
    /// Times the stream moved to a far sequence number that enough
    /// following packets agreed on.
    #[serde(default)]
    pub resyncs: u64,
}

/// Pure sequence tracker (no I/O), exact within [`WINDOW`].
#[derive(Debug, Clone)]
pub struct SeqTracker {
    first: Option<u64>,
    highest: u64,
    bits: Vec<u64>,
    counts: VerifyCounts,
    /// Far packets in a row, not yet counted anywhere but `valid`.
    candidate: Vec<u64>,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self {
            first: None,
            highest: 0,
            bits: vec![0; (WINDOW / 64) as usize],
            counts: VerifyCounts::default(),
            candidate: Vec::with_capacity(RESYNC_AGREE),
        }
    }
}

impl SeqTracker {
    fn bit(&mut self, s: u64) -> (usize, u64) {
        let i = s % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn clear_range(&mut self, from: u64, to_incl: u64) {
        if to_incl - from + 1 >= WINDOW {
            self.bits.iter_mut().for_each(|w| *w = 0);
            return;
        }
        let mut s = from;
        while s <= to_incl {
            let (w, b) = self.bit(s);
            if s.is_multiple_of(64) && to_incl - s >= 63 {
                self.bits[w] = 0;
                s += 64;
            } else {
                self.bits[w] &= !b;
                s += 1;
            }
        }
    }

    /// Records one checked payload.
    pub fn record(&mut self, check: Check) {
        self.counts.packets += 1;
        let s = match check {
            Check::Malformed => {
                self.counts.malformed += 1;
                return;
            }
            Check::Corrupt(_) => {
                // The sequence number itself may be damaged: don't track it.
                self.counts.corrupt += 1;
                return;
            }
            Check::Valid(s) => {
                self.counts.valid += 1;
                s
            }
        };
        let Some(first) = self.first else {
            self.start_at(s);
            return;
        };
        let ahead = s > self.highest;
        let far = if ahead { s - self.highest > WINDOW } else { self.highest - s >= WINDOW };
        if far {
            self.hold_candidate(s);
            return;
        }
        // An in-window packet: the stream goes on where it was.
        self.reject_candidate();
        if ahead {
            self.advance_to(s);
        } else if s < first {
            self.counts.too_old += 1;
        } else {
            let (w, b) = self.bit(s);
            if self.bits[w] & b != 0 {
                self.counts.duplicates += 1;
            } else {
                self.bits[w] |= b;
                self.counts.reordered += 1;
                self.counts.missing -= 1;
            }
        }
    }

    fn start_at(&mut self, s: u64) {
        self.first = Some(s);
        self.highest = s;
        self.bits.iter_mut().for_each(|w| *w = 0);
        let (w, b) = self.bit(s);
        self.bits[w] |= b;
    }

    /// Moves the highest number to `s` (at most a window ahead, or a
    /// confirmed jump): the numbers in between are missing until they come.
    fn advance_to(&mut self, s: u64) {
        self.counts.missing += s - self.highest - 1;
        self.clear_range(self.highest + 1, s);
        self.highest = s;
        let (w, b) = self.bit(s);
        self.bits[w] |= b;
    }

    /// A far packet: joins the candidate if it agrees with it, else starts a
    /// new one (the old candidate's packets were strays).
    fn hold_candidate(&mut self, s: u64) {
        let agrees = self.candidate.iter().max().is_some_and(|&top| s.abs_diff(top) < WINDOW);
        if !agrees {
            self.reject_candidate();
        }
        self.candidate.push(s);
        if self.candidate.len() >= RESYNC_AGREE {
            self.resync();
        }
    }

    fn reject_candidate(&mut self) {
        self.counts.out_of_window += self.candidate.len() as u64;
        self.candidate.clear();
    }

    /// Moves the stream onto the agreeing candidate packets.
    fn resync(&mut self) {
        let mut held = std::mem::take(&mut self.candidate);
        held.sort_unstable();
        let (low, high) = (held[0], held[held.len() - 1]);
        self.counts.resyncs += 1;
        if low > self.highest && low - self.highest <= MAX_MISSING_GAP {
            // The sender jumped ahead (a loss longer than the window): the
            // gap is missing, and the tracker goes on from there.
            self.advance_to(low);
        } else {
            self.start_at(low);
        }
        for &s in &held[1..] {
            let (w, b) = self.bit(s);
            if self.bits[w] & b != 0 {
                self.counts.duplicates += 1;
                continue;
            }
            if s > self.highest {
                self.advance_to(s);
            } else {
                self.bits[w] |= b;
                self.counts.missing -= 1;
            }
        }
        debug_assert_eq!(self.highest, high);
        self.candidate = held;
        self.candidate.clear();
    }

    /// Counts at the end of a stream: candidate packets still held are
    /// strays (`out_of_window`).
    pub fn final_counts(&self) -> VerifyCounts {
        let mut c = self.counts();
        c.out_of_window += self.candidate.len() as u64;
        c
    }

    /// Counts so far.
    pub fn counts(&self) -> VerifyCounts {
        VerifyCounts { highest_seq: self.highest().unwrap_or(0), ..self.counts }
    }

    /// Highest sequence number seen.
    pub fn highest(&self) -> Option<u64> {
        self.first.map(|_| self.highest)
    }
}

/// Most flows tracked separately; packets of further flows are counted
/// in one shared tracker (their sequence accounting is then approximate).
pub const MAX_FLOWS: usize = 256;

impl VerifyCounts {
    /// Adds another set of counts (flows, threads).
    pub fn add(&mut self, o: &VerifyCounts) {
        self.packets += o.packets;
        self.valid += o.valid;
        self.corrupt += o.corrupt;
        self.malformed += o.malformed;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.missing += o.missing;
        self.too_old += o.too_old;
        self.highest_seq = self.highest_seq.max(o.highest_seq);
        self.not_udp += o.not_udp;
        self.out_of_window += o.out_of_window;
        self.resyncs += o.resyncs;
    }
}

/// What makes one numbered stream, for the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamKey {
    /// Each sender address (IP and port): each sending socket numbers its
    /// own stream (`send --threads N`).
    #[default]
    Sender,
    /// Each sending host, whatever the port: one stream dealt over several
    /// source ports (`send --flows N`), seen whole by one receive thread.
    Host,
}

impl StreamKey {
    /// The key of a packet from `src`.
    fn of(self, src: Option<SocketAddr>) -> Option<SocketAddr> {
        match self {
            StreamKey::Sender => src,
            StreamKey::Host => src.map(|a| SocketAddr::new(a.ip(), 0)),
        }
    }
}

/// The verifier as a sink: one tracker per stream (by default per sender
/// address, since each sending socket numbers its own stream; or per host,
/// see [`StreamKey`]); counts published per batch.
pub struct VerifySink {
    key: StreamKey,
    flows: Vec<(Option<SocketAddr>, SeqTracker)>,
    last: usize,
    not_udp: u64,
    counters: StageCounters,
}

impl VerifySink {
    /// A verifier publishing into `counters` (a `verify` stage), telling
    /// streams apart by `key`.
    pub fn new(counters: StageCounters, key: StreamKey) -> Self {
        Self { key, flows: Vec::new(), last: 0, not_udp: 0, counters }
    }

    /// Final counts, summed over flows (held candidates counted as strays).
    pub fn counts(&self) -> VerifyCounts {
        self.sum(SeqTracker::final_counts)
    }

    fn sum(&self, of: impl Fn(&SeqTracker) -> VerifyCounts) -> VerifyCounts {
        let mut t = VerifyCounts { not_udp: self.not_udp, ..VerifyCounts::default() };
        for (_, f) in &self.flows {
            t.add(&of(f));
        }
        t
    }

    fn flow(&mut self, src: Option<SocketAddr>) -> &mut SeqTracker {
        let src = self.key.of(src);
        // Packets come in runs from one flow: check the last one first.
        if self.flows.get(self.last).is_none_or(|(a, _)| *a != src) {
            self.last = match self.flows.iter().position(|(a, _)| *a == src) {
                Some(i) => i,
                None if self.flows.len() < MAX_FLOWS => {
                    self.flows.push((src, SeqTracker::default()));
                    self.flows.len() - 1
                }
                None => MAX_FLOWS - 1,
            };
        }
        &mut self.flows[self.last].1
    }
}

impl super::Sink for VerifySink {
    fn consume(&mut self, batch: &Batch<'_>) {
        for p in batch.iter() {
            if !p.is_udp {
                self.not_udp += 1;
                continue;
            }
            self.flow(p.src).record(seq::check(p.data));
        }
        // Live counts leave held candidates out, so no published counter
        // ever goes down when they turn out to be a resync.
        let c = self.sum(SeqTracker::counts);
        let set = |i: VerifyIdx, v: u64| self.counters.set(i as usize, v);
        set(VerifyIdx::Packets, c.packets);
        set(VerifyIdx::Valid, c.valid);
        set(VerifyIdx::Corrupt, c.corrupt);
        set(VerifyIdx::Malformed, c.malformed);
        set(VerifyIdx::Duplicates, c.duplicates);
        set(VerifyIdx::Reordered, c.reordered);
        set(VerifyIdx::Missing, c.missing);
        set(VerifyIdx::TooOld, c.too_old);
        set(VerifyIdx::Flows, self.flows.len() as u64);
        set(VerifyIdx::NotUdp, c.not_udp);
        set(VerifyIdx::OutOfWindow, c.out_of_window);
        set(VerifyIdx::Resyncs, c.resyncs);
    }

    fn name(&self) -> &'static str {
        "verify"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny seeded generator, so simulations are reproducible.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    fn run(seqs: &[u64]) -> VerifyCounts {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.record(Check::Valid(s));
        }
        t.final_counts()
    }

    #[test]
    fn in_order() {
        let c = run(&(0..1000).collect::<Vec<_>>());
        assert_eq!((c.valid, c.missing, c.duplicates, c.reordered), (1000, 0, 0, 0));
    }

    #[test]
    fn gaps_dups_reorder() {
        let c = run(&[0, 1, 3, 2, 2, 7, 5, 9]);
        // missing: 4, 6, 8 ; reordered: 2, 5 ; duplicate: second 2
        assert_eq!(c.missing, 3);
        assert_eq!(c.reordered, 2);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.too_old, 0);
    }

    #[test]
    fn too_old_and_before_start() {
        let c = run(&[10, 9, 10 + WINDOW - 5, 11, 12]);
        assert_eq!(c.too_old, 1);
        assert_eq!(c.reordered, 2);
        assert_eq!(c.missing, WINDOW - 6 - 2);
        // Out of the window behind: a stray, not a move.
        let c = run(&[WINDOW * 2, 5, WINDOW * 2 + 1]);
        assert_eq!((c.out_of_window, c.too_old, c.missing), (1, 0, 0));
    }

    #[test]
    fn window_wraps_cleanly() {
        // Jump far ahead (confirmed by following packets), then revisit a
        // slot whose bit belonged to an old seq.
        let j = 3 * WINDOW;
        let c = run(&[0, j, j + 1, j + 2, j + 3, j - 1, j - 1]);
        assert_eq!(c.resyncs, 1);
        assert_eq!(c.reordered, 1);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.missing, j - 2);
    }

    #[test]
    fn one_wild_packet_in_a_flow_moves_nothing() {
        let mut seqs: Vec<u64> = (0..1000).collect();
        seqs.insert(500, 1 << 63);
        let c = run(&seqs);
        assert_eq!((c.out_of_window, c.missing, c.too_old, c.resyncs), (1, 0, 0, 0));
        assert_eq!(c.valid, 1001);
        // Even as the very first packet: the genuine flow takes over.
        let mut seqs: Vec<u64> = vec![1 << 63];
        seqs.extend(0..1000);
        let c = run(&seqs);
        assert_eq!((c.resyncs, c.missing, c.too_old), (1, 0, 0));
        assert_eq!(c.highest_seq, 999);
    }

    #[test]
    fn a_few_interleaved_wild_packets_never_win() {
        let mut seqs = Vec::new();
        for s in 0..10_000u64 {
            seqs.push(s);
            if s % 100 == 7 {
                seqs.push((1 << 62) + s); // agreeing strays, but the flow goes on between them
            }
        }
        let c = run(&seqs);
        assert_eq!((c.out_of_window, c.missing, c.resyncs), (100, 0, 0));
    }

    #[test]
    fn a_sender_restart_is_a_resync_without_missing() {
        let mut seqs: Vec<u64> = (1_000_000..1_001_000).collect();
        seqs.extend(0..1000);
        let c = run(&seqs);
        assert_eq!((c.resyncs, c.missing, c.out_of_window), (1, 0, 0));
        assert_eq!(c.highest_seq, 999);
    }

    #[test]
    fn a_confirmed_loss_burst_longer_than_the_window_is_missing() {
        let mut seqs: Vec<u64> = (0..100).collect();
        seqs.extend(100 + 5 * WINDOW..100 + 5 * WINDOW + 100);
        let c = run(&seqs);
        assert_eq!((c.resyncs, c.missing, c.out_of_window), (1, 5 * WINDOW, 0));
    }

    #[test]
    fn a_wild_forward_resync_folds_nothing_into_missing() {
        let mut seqs: Vec<u64> = (0..100).collect();
        seqs.extend((1 << 63)..(1 << 63) + 100);
        let c = run(&seqs);
        assert_eq!((c.resyncs, c.missing), (1, 0));
    }

    #[test]
    fn seeded_loss_reorder_duplication_exact() {
        for seed in 1..20u64 {
            let mut rng = Lcg(seed);
            let n = 50_000u64;
            let mut lost = std::collections::BTreeSet::new();
            let mut stream = Vec::new();
            for s in 0..n {
                let r = rng.next() % 1000;
                if r < 10 && s != 0 && s != n - 1 {
                    lost.insert(s);
                    continue;
                }
                stream.push(s);
                if r >= 990 {
                    stream.push(s); // duplicate
                }
            }
            let dups = stream.len() as u64 - (n - lost.len() as u64);
            // Reorder: swap neighbours now and then, never moving seq 0 from the front.
            let mut swaps = 0;
            let mut i = 1;
            while i + 1 < stream.len() {
                if rng.next().is_multiple_of(100) && stream[i] != stream[i + 1] {
                    stream.swap(i, i + 1);
                    swaps += 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            let c = run(&stream);
            assert_eq!(c.missing, lost.len() as u64, "seed {seed}");
            assert_eq!(c.duplicates, dups, "seed {seed}");
            assert!(c.reordered <= swaps, "seed {seed}");
            assert_eq!(c.valid, stream.len() as u64);
            assert_eq!(c.too_old, 0);
        }
    }

    #[test]
    fn reorder_count_is_exact_for_a_known_pattern() {
        // Every block of 4 arrives as 1,0,3,2: two late packets per block.
        let mut s = vec![0u64];
        for b in 0..100u64 {
            let base = 1 + 4 * b;
            s.extend([base + 1, base, base + 3, base + 2]);
        }
        let c = run(&s);
        assert_eq!(c.reordered, 200);
        assert_eq!(c.missing, 0);
    }

    #[test]
    fn malformed_and_corrupt_are_counted_not_tracked() {
        let mut t = SeqTracker::default();
        t.record(Check::Malformed);
        t.record(Check::Corrupt(1 << 60));
        t.record(Check::Valid(0));
        t.record(Check::Valid(1));
        let c = t.counts();
        assert_eq!((c.packets, c.malformed, c.corrupt, c.valid, c.missing), (4, 1, 1, 2, 0));
    }
}
