//! The uplink verdict, sans-IO: fed with "a probe round went out" and "an
//! answer came back" at instants the caller reads from its clock, it says
//! when the uplink goes down or comes back.
//!
//! * **Down** when no target answered for `misses × interval` (with the
//!   defaults 3 × 50 ms = 150 ms after the last answer). The deadline is
//!   exact, not rounded up to the next probe round: [`UplinkChecker::poll_timeout`]
//!   includes it, so a silent cut is seen 150 ms (plus one round trip)
//!   after the last answer.
//! * **Up** on the first answer, except after a failure: then answers must
//!   keep coming for a *gate* (2 intervals, so 100 ms, at first) before the
//!   uplink counts as back. Each failure within [`FLAP_WINDOW`] of the last
//!   recovery doubles the gate (up to [`MAX_GATE`]), so an uplink that
//!   flaps does not flap the default routes of the whole mesh with it; an
//!   uplink that stays up for a flap window gets the short gate back.
//! * At start the state is unknown: the first answer makes it up at once,
//!   `misses` intervals of silence make it down.

use std::time::{Duration, Instant};

/// Failures closer together than this after a recovery count as flapping.
pub const FLAP_WINDOW: Duration = Duration::from_secs(10);
/// The longest recovery gate a flapping uplink gets.
pub const MAX_GATE: Duration = Duration::from_millis(3200);
/// The first recovery gate, in probe intervals.
const BASE_GATE_INTERVALS: u32 = 2;

/// How the checker probes and judges; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckerSettings {
    /// Time between probe rounds (one echo request to every target).
    pub interval: Duration,
    /// Intervals without any answer after which the uplink is down (≥ 1).
    pub misses: u32,
}

impl CheckerSettings {
    /// The silence that makes the uplink down.
    pub fn down_after(&self) -> Duration {
        self.interval.saturating_mul(self.misses.max(1))
    }

    fn base_gate(&self) -> Duration {
        self.interval.saturating_mul(BASE_GATE_INTERVALS)
    }
}

/// The uplink checker's state machine; see the module docs.
#[derive(Debug, Clone)]
pub struct UplinkChecker {
    settings: CheckerSettings,
    /// `None` until the first verdict.
    up: Option<bool>,
    /// The last answer, or the start while there was none.
    last_answer: Instant,
    /// While down: when the current unbroken run of answers began.
    recovering_since: Option<Instant>,
    /// The gate the next recovery must pass.
    gate: Duration,
    /// When the uplink last came back up after a failure.
    recovered_at: Option<Instant>,
    next_probe: Instant,
}

impl UplinkChecker {
    /// A checker that probes for the first time at `now`.
    pub fn new(settings: CheckerSettings, now: Instant) -> Self {
        Self {
            settings,
            up: None,
            last_answer: now,
            recovering_since: None,
            gate: settings.base_gate(),
            recovered_at: None,
            next_probe: now,
        }
    }

    /// The current verdict, `None` before the first one.
    pub fn is_up(&self) -> Option<bool> {
        self.up
    }

    /// The gate the next recovery has to pass.
    pub fn gate(&self) -> Duration {
        self.gate
    }

    /// Whether a probe round is due at `now`; if so, the caller sends it
    /// and the next one is scheduled one interval later.
    pub fn probe_due(&mut self, now: Instant) -> bool {
        if now < self.next_probe {
            return false;
        }
        // After a stall (the process was not scheduled) probe once, not
        // once per missed interval.
        self.next_probe = (self.next_probe + self.settings.interval).max(now);
        if self.next_probe == now {
            self.next_probe = now + self.settings.interval;
        }
        true
    }

    /// When the caller must call [`handle_timeout`](Self::handle_timeout)
    /// next: the next probe round or the down deadline, whichever is first.
    pub fn poll_timeout(&self) -> Instant {
        if self.up == Some(false) {
            self.next_probe
        } else {
            self.next_probe.min(self.down_deadline())
        }
    }

    fn down_deadline(&self) -> Instant {
        self.last_answer + self.settings.down_after()
    }

    /// Checks the silence. Returns the new verdict if it changed.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<bool> {
        if now < self.down_deadline() {
            return None;
        }
        // Silence breaks a recovery run too.
        self.recovering_since = None;
        if self.up == Some(false) {
            return None;
        }
        if self.up == Some(true)
            && let Some(recovered) = self.recovered_at
            && now.saturating_duration_since(recovered) < FLAP_WINDOW
        {
            self.gate = (self.gate * 2).min(MAX_GATE);
        }
        self.up = Some(false);
        Some(false)
    }

    /// An answer from any target arrived at `now`. Returns the new verdict
    /// if it changed.
    pub fn handle_answer(&mut self, now: Instant) -> Option<bool> {
        // While down, an answer after a silence as long as the down
        // deadline starts a new recovery run rather than continuing one.
        let silent_too_long = now >= self.down_deadline();
        self.last_answer = now;
        match self.up {
            None => {
                self.up = Some(true);
                Some(true)
            }
            Some(true) => {
                if let Some(recovered) = self.recovered_at
                    && now.saturating_duration_since(recovered) >= FLAP_WINDOW
                {
                    // Stable for a flap window: forgive the past.
                    self.gate = self.settings.base_gate();
                    self.recovered_at = None;
                }
                None
            }
            Some(false) => {
                let since = match self.recovering_since {
                    Some(since) if !silent_too_long => since,
                    _ => {
                        self.recovering_since = Some(now);
                        now
                    }
                };
                if now.saturating_duration_since(since) >= self.gate {
                    self.up = Some(true);
                    self.recovering_since = None;
                    self.recovered_at = Some(now);
                    Some(true)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn defaults() -> CheckerSettings {
        CheckerSettings {
            interval: 50 * MS,
            misses: 3,
        }
    }

    /// Drives a checker over virtual time: probes every interval, each
    /// answered `rtt` later while `answering(t)` says so. Returns every
    /// verdict change with its time since the start.
    fn simulate(
        settings: CheckerSettings,
        until: Duration,
        rtt: Duration,
        answering: impl Fn(Duration) -> bool,
    ) -> Vec<(Duration, bool)> {
        let start = Instant::now();
        let mut checker = UplinkChecker::new(settings, start);
        let mut pending: Vec<Instant> = Vec::new();
        let mut changes = Vec::new();
        let mut now = start;
        while now - start <= until {
            // Earliest of: next answer, the checker's own timeout.
            let next_answer = pending.iter().min().copied();
            let wake = match next_answer {
                Some(answer) if answer < checker.poll_timeout() => answer,
                _ => checker.poll_timeout(),
            };
            now = wake.max(now);
            if next_answer == Some(now) {
                pending.retain(|t| *t != now);
                if let Some(up) = checker.handle_answer(now) {
                    changes.push((now - start, up));
                }
                continue;
            }
            if let Some(up) = checker.handle_timeout(now) {
                changes.push((now - start, up));
            }
            if checker.probe_due(now) && answering(now - start) {
                pending.push(now + rtt);
            }
        }
        changes
    }

    #[test]
    fn healthy_uplink_is_up_at_once_and_stays_up() {
        let changes = simulate(defaults(), Duration::from_secs(5), MS, |_| true);
        assert_eq!(changes, vec![(MS, true)]);
    }

    #[test]
    fn dead_uplink_at_start_is_down_after_misses() {
        let changes = simulate(defaults(), Duration::from_secs(1), MS, |_| false);
        assert_eq!(changes, vec![(150 * MS, false)]);
    }

    #[test]
    fn silent_cut_is_down_150ms_after_the_last_answer() {
        // Cut at 1000 ms: the probe at 1000 gets no answer; the last
        // answer came at 951 ms.
        let changes = simulate(defaults(), Duration::from_secs(2), MS, |t| t < 1000 * MS);
        assert_eq!(changes, vec![(MS, true), (1101 * MS, false)]);
    }

    #[test]
    fn recovery_waits_for_the_gate_of_unbroken_answers() {
        let changes = simulate(defaults(), Duration::from_secs(3), MS, |t| {
            !(1000 * MS..2000 * MS).contains(&t)
        });
        // Back at 2001 (first answer); up once answers went on for 100 ms.
        assert_eq!(
            changes,
            vec![(MS, true), (1101 * MS, false), (2101 * MS, true)]
        );
    }

    #[test]
    fn one_lost_probe_is_not_a_failure() {
        let changes = simulate(defaults(), Duration::from_secs(2), MS, |t| {
            !(1000 * MS..1060 * MS).contains(&t)
        });
        assert_eq!(changes, vec![(MS, true)]);
    }

    #[test]
    fn flapping_uplink_gets_a_longer_gate_each_time() {
        // Up for 300 ms, down for 300 ms, over and over.
        let changes = simulate(defaults(), Duration::from_secs(6), MS, |t| {
            (t.as_millis() / 300) % 2 == 0
        });
        let ups: Vec<Duration> = changes
            .iter()
            .filter(|(_, up)| *up)
            .map(|(t, _)| *t)
            .collect();
        let downs = changes.iter().filter(|(_, up)| !*up).count();
        // Gates 100, 200, 400 ms: the first recovery passes (answers last
        // 300 ms), the second too (200 < 300), the third never does.
        assert_eq!(ups, vec![MS, 601 * MS + 100 * MS, 1201 * MS + 200 * MS]);
        assert_eq!(downs, 3);
    }

    #[test]
    fn a_gap_in_the_answers_restarts_the_recovery_run() {
        let start = Instant::now();
        let mut checker = UplinkChecker::new(defaults(), start);
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(checker.handle_answer(at(1)), Some(true));
        assert_eq!(checker.handle_timeout(at(151)), Some(false));
        assert_eq!(checker.handle_answer(at(200)), None);
        // 150 ms of silence: the run that began at 200 does not count.
        assert_eq!(checker.handle_answer(at(350)), None);
        assert_eq!(checker.handle_answer(at(400)), None);
        assert_eq!(checker.handle_answer(at(450)), Some(true));
    }

    #[test]
    fn gate_is_reset_after_a_stable_flap_window() {
        let start = Instant::now();
        let mut checker = UplinkChecker::new(defaults(), start);
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(checker.handle_answer(at(1)), Some(true));
        assert_eq!(checker.handle_timeout(at(151)), Some(false));
        assert_eq!(checker.handle_answer(at(200)), None);
        assert_eq!(checker.handle_answer(at(300)), Some(true));
        // Fails again within the flap window: the gate doubles.
        assert_eq!(checker.handle_timeout(at(450)), Some(false));
        assert_eq!(checker.gate(), 200 * MS);
        assert_eq!(checker.handle_answer(at(500)), None);
        assert_eq!(checker.handle_answer(at(600)), None);
        assert_eq!(checker.handle_answer(at(700)), Some(true));
        // Answers keep coming for longer than the flap window.
        let mut t = 700;
        while t < 700 + 10_100 {
            t += 50;
            assert_eq!(checker.handle_answer(at(t)), None);
        }
        assert_eq!(checker.gate(), 100 * MS);
    }

    #[test]
    fn late_answer_after_the_deadline_still_counts_as_a_failure() {
        let start = Instant::now();
        let mut checker = UplinkChecker::new(defaults(), start);
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(checker.handle_answer(at(1)), Some(true));
        // The timeout ran late; an answer arrived first.
        assert_eq!(checker.handle_answer(at(400)), None);
        assert_eq!(checker.is_up(), Some(true));
        // A healthy uplink never has such a gap; the answer restarts the
        // clock, so the verdict stays up as long as answers continue.
        assert_eq!(checker.handle_timeout(at(449)), None);
    }

    #[test]
    fn probes_are_due_once_per_interval_even_after_a_stall() {
        let start = Instant::now();
        let mut checker = UplinkChecker::new(defaults(), start);
        assert!(checker.probe_due(start));
        assert!(!checker.probe_due(start + 10 * MS));
        assert!(checker.probe_due(start + 50 * MS));
        // Stalled for a second: one probe, then the schedule resumes.
        assert!(checker.probe_due(start + 1050 * MS));
        assert!(!checker.probe_due(start + 1060 * MS));
        assert!(checker.probe_due(start + 1100 * MS));
    }
}
