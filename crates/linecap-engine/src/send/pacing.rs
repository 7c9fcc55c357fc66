//! Exact pacing: a token bucket on the monotonic clock.
//!
//! Packet `i` (counted from the last resynchronisation) is due at
//! `origin + i / rate`. At any instant the sender may send the packets that
//! are due, but never more than `burst` at once: after a stall the schedule
//! is moved forward so the backlog cannot exceed the bucket, which is what
//! a token bucket of capacity `burst` does. Pure code; the caller passes
//! the time, so tests need no clock.

/// A pacer for one sending thread.
#[derive(Debug, Clone)]
pub struct Pacer {
    period_ns: f64,
    burst: u64,
    origin_ns: u64,
    sent: u64,
}

impl Pacer {
    /// `rate_pps`: `None` for unlimited. `burst`: bucket size in packets (≥ 1).
    pub fn new(rate_pps: Option<f64>, burst: u64, now_ns: u64) -> Self {
        let period_ns = match rate_pps {
            Some(r) if r > 0.0 => 1e9 / r,
            _ => 0.0,
        };
        Self { period_ns, burst: burst.max(1), origin_ns: now_ns, sent: 0 }
    }

    /// Whether a rate limit applies.
    pub fn is_limited(&self) -> bool {
        self.period_ns > 0.0
    }

    /// How many packets may be sent at `now_ns` (up to `burst`).
    pub fn allowance(&mut self, now_ns: u64) -> u64 {
        if !self.is_limited() {
            return self.burst;
        }
        let elapsed = now_ns.saturating_sub(self.origin_ns) as f64;
        let due = (elapsed / self.period_ns) as u64 + 1;
        let allowed = due.saturating_sub(self.sent);
        if allowed > self.burst {
            // The bucket overflowed (we were late): forget the excess.
            let excess = allowed - self.burst;
            self.origin_ns += (excess as f64 * self.period_ns) as u64;
            return self.burst;
        }
        allowed
    }

    /// Records packets actually sent.
    pub fn sent(&mut self, n: u64) {
        self.sent += n;
    }

    /// When the next packet becomes due.
    pub fn next_due_ns(&self) -> u64 {
        self.origin_ns + (self.sent as f64 * self.period_ns) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rate_over_simulated_time() {
        // 1 Mpps, checked every 7 µs: after 1 s exactly 1e6 (+1, packet 0 at t=0).
        let mut p = Pacer::new(Some(1e6), 64, 0);
        let mut total = 0;
        let mut t = 0;
        while t < 1_000_000_000 {
            let a = p.allowance(t);
            p.sent(a);
            total += a;
            t += 7_000;
        }
        let a = p.allowance(1_000_000_000);
        total += a;
        assert_eq!(total, 1_000_001);
    }

    #[test]
    fn burst_caps_catch_up() {
        let mut p = Pacer::new(Some(1000.0), 10, 0);
        assert_eq!(p.allowance(0), 1);
        p.sent(1);
        // One second late: 1000 due, but the bucket holds 10.
        assert_eq!(p.allowance(1_000_000_000), 10);
        p.sent(10);
        // The backlog is gone, not postponed.
        assert_eq!(p.allowance(1_000_000_000), 0);
        assert_eq!(p.allowance(1_001_000_000), 1);
    }

    #[test]
    fn unlimited() {
        let mut p = Pacer::new(None, 32, 5);
        assert_eq!(p.allowance(5), 32);
        assert!(!p.is_limited());
    }

    #[test]
    fn next_due() {
        let mut p = Pacer::new(Some(100.0), 4, 1_000);
        p.sent(3);
        assert_eq!(p.next_due_ns(), 1_000 + 30_000_000);
    }
}
