//! Accept loops' shared pieces (the agent listener and the admin API):
//! how long to pause after a failed `accept`, and a limiter for warnings
//! that would otherwise flood the log.

use std::time::{Duration, Instant};

/// After a failed `accept` (EMFILE when descriptors run out), wait this long
/// before the next: the error repeats at once otherwise and the loop spins a
/// core while nothing can be served anyway.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Repeated warnings (accept failures, refused connections) are logged at
/// most once per this interval, with the count of those left out.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// Lets a repeated warning through at most once per interval and counts
/// the ones it held back, so the next line can say how many there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarningLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarningLimiter {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// One more occurrence at `now`: `Some(n)` if it is to be logged, `n`
    /// being how many were left out since the last line; `None` to stay
    /// quiet.
    pub fn handle_occurrence(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_pass_once_per_interval_with_the_count_left_out() {
        let mut w = WarningLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(w.handle_occurrence(t0), Some(0));
        for ms in 1..=99 {
            assert_eq!(
                w.handle_occurrence(t0 + Duration::from_millis(ms * 10)),
                None
            );
        }
        assert_eq!(
            w.handle_occurrence(t0 + Duration::from_millis(1000)),
            Some(99)
        );
        assert_eq!(w.handle_occurrence(t0 + Duration::from_millis(1001)), None);
    }
}
