//! A token bucket on the caller's clock: how discovery bounds the work a
//! stranger on the air can make it do (signature checks, replies, pages).

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub(crate) struct Budget {
    tokens: u32,
    burst: u32,
    /// One token comes back every `refill`.
    refill: Duration,
    last: Option<Instant>,
}

impl Budget {
    pub(crate) fn new(burst: u32, refill: Duration) -> Self {
        Self {
            tokens: burst,
            burst,
            refill,
            last: None,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let last = *self.last.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last);
        if !self.refill.is_zero() && elapsed >= self.refill {
            let earned = elapsed.as_nanos() / self.refill.as_nanos();
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            // Keep the remainder: a steady trickle earns its full rate.
            let spent = self.refill.saturating_mul(earned.min(self.burst.max(1)));
            self.last = Some(if earned >= self.burst {
                now
            } else {
                last + spent
            });
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate() {
        let t0 = Instant::now();
        let mut budget = Budget::new(3, Duration::from_millis(100));
        assert_eq!((0..10).filter(|_| budget.take(t0)).count(), 3);
        let t = t0 + Duration::from_millis(250);
        assert_eq!((0..10).filter(|_| budget.take(t)).count(), 2);
        let t = t0 + Duration::from_millis(300);
        assert_eq!((0..10).filter(|_| budget.take(t)).count(), 1);
        let t = t0 + Duration::from_secs(100);
        assert_eq!((0..10).filter(|_| budget.take(t)).count(), 3, "capped");
    }
}
