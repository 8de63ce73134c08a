//! Reconnect backoff: exponential with jitter, so a thousand routers that
//! lost their controller at the same moment do not return in lockstep.

use std::time::Duration;

/// First retry after a failure: quick enough for a controller restart.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Ceiling: a node rejoins within half a minute of the controller's return.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// ±20 %: spreads a city's reconnects over a few seconds.
const JITTER_PERCENT: u64 = 20;

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The delay before the next attempt, given a random number (so tests can
    /// pass a fixed one); doubles the following delay up to [`BACKOFF_MAX`].
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
        let span = millis * JITTER_PERCENT / 100;
        let offset = if span == 0 {
            0
        } else {
            random % (2 * span + 1)
        };
        Duration::from_millis(millis - span + offset)
    }

    /// After a successful session: start again from the minimum.
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_ceiling_with_bounded_jitter() {
        let mut b = Backoff::default();
        let delays: Vec<Duration> = (0..8).map(|i| b.next_delay(i * 7919)).collect();
        for (d, base) in delays.iter().zip([1u64, 2, 4, 8, 16, 30, 30, 30]) {
            let base = Duration::from_secs(base);
            assert!(
                *d >= base * 8 / 10 && *d <= base * 12 / 10,
                "{d:?} vs {base:?}"
            );
        }
        b.reset();
        assert!(b.next_delay(0) <= Duration::from_millis(1200));
    }
}
