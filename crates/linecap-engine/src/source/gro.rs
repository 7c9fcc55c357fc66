//! When UDP GRO pays: a pure policy that watches how many datagrams each
//! received message carries and switches the socket's `UDP_GRO` at run
//! time.
//!
//! GRO helps when one NAPI poll sees several packets of the flow (a burst
//! from a user-space sender, a NIC's interrupt coalescing): one message then
//! carries up to 64 datagrams. When the packets come one per poll (a
//! kernel-side sender, a paced stream on an idle core), GRO only costs: the
//! kernel holds every packet in its GRO list until the poll ends, and the
//! receiver reads 64 KiB slots for 272-byte datagrams. So the socket starts
//! with GRO on and the policy turns it off when a window of messages held
//! fewer than [`KEEP_RATIO`] datagrams each; while off, it probes (turns it
//! on again for one window), but only while the receiver is behind (its
//! receives come back full), since GRO cannot help a receiver that keeps
//! up. A probe that finds nothing doubles the wait before the next (30 s,
//! 60 s, ... 16 min): an overloaded receiver is always behind, and a probe
//! costs it far more than its window (see [`PROBE_EVERY_NS`]).
//!
//! Switching off replaces the socket where it can (`socket::swap`): a
//! socket that ever had `UDP_GRO` keeps the kernel's GRO lookup on for every
//! UDP packet of the machine until it closes.

/// What the socket's stream looks like to the switch: GRO can be turned
/// off safely only for a stream of one datagram size.
///
/// The kernel writes the `UDP_GRO` control message only while the socket
/// has GRO on, and segments a super-packet at enqueue only if GRO is off
/// *then*: super-packets queued before the switch arrive after it as one
/// message with no segment size. For a stream of one size they are split
/// at that size until the bytes that were queued at the switch have been
/// read; a stream of several sizes keeps GRO (the segment size of a stale
/// super-packet could not be known).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamSize {
    size: Option<u32>,
    mixed: bool,
}

impl StreamSize {
    /// Records one datagram size (a super-packet's segment size, or a plain
    /// message's length). A super-packet's shorter last segment is not one.
    pub fn record(&mut self, size: u32) {
        match self.size {
            None => self.size = Some(size),
            Some(s) if s != size => self.mixed = true,
            Some(_) => {}
        }
    }

    /// The stream's one datagram size, if it has exactly one.
    pub fn uniform(&self) -> Option<u32> {
        if self.mixed { None } else { self.size }
    }
}

/// Splitting stale super-packets after GRO was switched off.
#[derive(Debug, Clone, Copy, Default)]
pub struct AfterOff {
    /// Payload bytes still to read before no stale super-packet can remain
    /// (the receive queue's bytes at the switch: truesize ≥ length).
    pub at_risk_bytes: u64,
    /// The stream's datagram size.
    pub size: u32,
    /// Stale super-packets split.
    pub split: u64,
}

impl AfterOff {
    /// The segment size to split a message of `len` bytes that came with
    /// no `UDP_GRO` control message, or 0 to take it whole. Counts it.
    pub fn segment_for(&mut self, len: u32) -> u16 {
        if self.at_risk_bytes == 0 {
            return 0;
        }
        self.at_risk_bytes = self.at_risk_bytes.saturating_sub(u64::from(len));
        if len > self.size {
            self.split += 1;
            self.size.min(u32::from(u16::MAX)) as u16
        } else {
            0
        }
    }
}

/// Messages per decision: with coalescing, 256 messages hold thousands of
/// datagrams; without, 256 datagrams are a few hundred microseconds of
/// overhead (a window of 4096 lasted over a second at 200 kpps, measured).
pub const WINDOW: u64 = 256;
/// Datagrams per message (×4) below which GRO is switched off: 2. A
/// socket with GRO makes the kernel look every UDP packet up in GRO; a
/// bursty `sendmmsg` sender that GRO merges 1.3 to 1.6 at a time did not
/// repay that on the testbed (overloaded, the capture delivered 0.55–0.74
/// of what a plain loop did with 1.25 here, see `docs/BENCHMARKS.md`),
/// while GSO senders and coalescing NICs give 8 to 64.
pub const KEEP_RATIO_X4: u64 = 8;
/// Shown in docs: the ratio [`KEEP_RATIO_X4`] stands for.
pub const KEEP_RATIO: f64 = KEEP_RATIO_X4 as f64 / 4.0;
/// First wait between probes while GRO is off (ns). A probe turns the
/// kernel's GRO lookup on for every UDP packet, and a socket queue full of
/// merged packets is then read beside the fresh socket: overloaded on the
/// testbed (SCHED_FIFO NAPI, `sendmmsg` at 1 Mpps, 5 s runs), probes every
/// 1, 2, 4 s took the capture from 0.32–0.34 of the offered stream (no
/// probes) to 0.24–0.26. A stream that turns into GSO trains later is
/// found within this wait; `--gro-always` keeps GRO from the start.
pub const PROBE_EVERY_NS: u64 = 30_000_000_000;
/// Longest wait between probes (ns).
pub const PROBE_MAX_NS: u64 = 960_000_000_000;

/// What the policy wants done after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Leave the socket as it is.
    Keep,
    /// Turn `UDP_GRO` on (a probe).
    On,
    /// Turn `UDP_GRO` off.
    Off,
}

/// The policy's state; time is passed in, so it is tested without a clock.
#[derive(Debug, Clone)]
pub struct GroPolicy {
    on: bool,
    messages: u64,
    datagrams: u64,
    full_batches: u64,
    batches: u64,
    since_ns: u64,
    /// Wait before the next probe (doubles while probes find nothing).
    probe_wait_ns: u64,
    /// The current "on" is a probe (not the start, not a proven win).
    probing: bool,
    /// Times the socket's GRO was switched.
    pub switches: u64,
}

impl GroPolicy {
    /// A policy for a socket whose GRO is `on` now, at time `now_ns`.
    pub fn new(on: bool, now_ns: u64) -> Self {
        Self {
            on,
            messages: 0,
            datagrams: 0,
            full_batches: 0,
            batches: 0,
            since_ns: now_ns,
            probe_wait_ns: PROBE_EVERY_NS,
            probing: false,
            switches: 0,
        }
    }

    /// Whether GRO is on.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Records one receive: `messages` messages holding `datagrams`
    /// datagrams, `full` if the receive took as many messages as it could.
    pub fn record(&mut self, messages: u64, datagrams: u64, full: bool, now_ns: u64) -> Switch {
        self.messages += messages;
        self.datagrams += datagrams;
        self.batches += 1;
        self.full_batches += u64::from(full);
        if self.on {
            if self.messages < WINDOW {
                return Switch::Keep;
            }
            let pays = self.datagrams * 4 >= self.messages * KEEP_RATIO_X4;
            self.restart(now_ns);
            if pays {
                if self.probing {
                    self.probing = false;
                    self.probe_wait_ns = PROBE_EVERY_NS;
                }
                return Switch::Keep;
            }
            if self.probing {
                self.probe_wait_ns = (self.probe_wait_ns * 2).min(PROBE_MAX_NS);
            }
            self.on = false;
            self.probing = false;
            self.switches += 1;
            return Switch::Off;
        }
        if now_ns.saturating_sub(self.since_ns) < self.probe_wait_ns {
            return Switch::Keep;
        }
        // Behind for most of the last second: GRO might let it catch up.
        let behind = self.full_batches * 2 > self.batches;
        self.restart(now_ns);
        if !behind {
            return Switch::Keep;
        }
        self.on = true;
        self.probing = true;
        self.switches += 1;
        Switch::On
    }

    /// Wait before the next probe while GRO is off (ns).
    pub fn probe_wait_ns(&self) -> u64 {
        self.probe_wait_ns
    }

    fn restart(&mut self, now_ns: u64) {
        self.messages = 0;
        self.datagrams = 0;
        self.batches = 0;
        self.full_batches = 0;
        self.since_ns = now_ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn one_datagram_per_message_turns_gro_off_after_a_window() {
        let mut p = GroPolicy::new(true, 0);
        let mut t = 0;
        let mut seen = Vec::new();
        for _ in 0..WINDOW / 64 {
            t += MS;
            seen.push(p.record(64, 64, true, t));
        }
        assert_eq!(seen.last(), Some(&Switch::Off));
        assert!(seen[..seen.len() - 1].iter().all(|s| *s == Switch::Keep));
        assert!(!p.is_on());
    }

    #[test]
    fn coalescing_keeps_gro_on() {
        let mut p = GroPolicy::new(true, 0);
        for i in 0..10 * WINDOW {
            assert_eq!(p.record(1, 40, false, i * MS), Switch::Keep);
        }
        assert!(p.is_on());
    }

    #[test]
    fn while_off_it_probes_after_the_wait_only_when_behind() {
        let mut p = GroPolicy::new(false, 0);
        let step = PROBE_EVERY_NS / 1000;
        // Keeping up (batches not full): no probe, however long.
        for i in 1..=3000 {
            assert_eq!(p.record(3, 3, false, i * step), Switch::Keep);
        }
        // Behind: a probe after at most one wait.
        let mut t = 3000 * step;
        let mut probed = None;
        for _ in 0..1100 {
            t += step;
            if p.record(64, 64, true, t) == Switch::On {
                probed = Some(t);
                break;
            }
        }
        assert!(probed.is_some() && p.is_on());
        // The probe finds nothing to coalesce: off again after one window.
        let mut off = false;
        for _ in 0..WINDOW / 64 {
            t += MS;
            off |= p.record(64, 64, true, t) == Switch::Off;
        }
        assert!(off && !p.is_on());
        assert_eq!(p.switches, 2);
        assert_eq!(p.probe_wait_ns(), 2 * PROBE_EVERY_NS, "a fruitless probe doubles the wait");
    }

    #[test]
    fn a_stream_of_one_size_is_uniform_and_stale_super_packets_are_split_until_the_queue_is_read() {
        let mut z = StreamSize::default();
        for _ in 0..10 {
            z.record(272);
        }
        assert_eq!(z.uniform(), Some(272));
        let mut after = AfterOff { at_risk_bytes: 272 * 10, size: 272, split: 0 };
        assert_eq!(after.segment_for(272 * 4), 272, "a stale super-packet");
        assert_eq!(after.segment_for(272), 0, "a datagram");
        assert_eq!(after.segment_for(272 * 5), 272);
        assert_eq!(after.segment_for(272 * 3), 0, "past the bytes queued at the switch");
        assert_eq!(after.split, 2);
        z.record(100);
        assert_eq!(z.uniform(), None, "several sizes: GRO stays");
    }

    #[test]
    fn fruitless_probes_back_off_to_a_minute_and_a_fruitful_one_resets() {
        let mut p = GroPolicy::new(false, 0);
        let mut t = 0;
        for _ in 0..20 {
            // Behind until a probe starts, then a window without coalescing.
            while p.record(64, 64, true, t) != Switch::On {
                t += 10 * MS;
            }
            for _ in 0..WINDOW / 64 {
                t += MS;
                p.record(64, 64, true, t);
            }
        }
        assert_eq!(p.probe_wait_ns(), PROBE_MAX_NS);
        while p.record(64, 64, true, t) != Switch::On {
            t += 10 * MS;
        }
        for _ in 0..WINDOW {
            t += MS;
            assert_eq!(p.record(1, 40, true, t), Switch::Keep);
        }
        assert!(p.is_on());
        assert_eq!(p.probe_wait_ns(), PROBE_EVERY_NS);
    }
}
