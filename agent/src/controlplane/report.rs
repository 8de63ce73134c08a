//! What the agent reports about its links, as a sans-IO core: link states
//! and measurements (with the configured candidate neighbours) when they
//! change, byte counters every [`TRAFFIC_INTERVAL`].
//!
//! # Contract (call order)
//!
//! [`LinkReporter::new`] with the candidates and the start instant; then,
//! every [`REPORT_TICK`] or so, [`LinkReporter::handle_link_states`] with
//! the engine's [`crate::core::Engine::link_states`] and drain
//! [`LinkReporter::poll_upstream`] into [`super::Session::handle_upstream`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{Candidate, LinkMeasurement, LinkTraffic, Report};

use super::Upstream;
use crate::core::LinkReport;

/// How often the shell samples the engine's link states: up/down changes
/// reach the controller within this.
pub const REPORT_TICK: Duration = Duration::from_millis(250);
/// How often measurements go to the controller (if they moved; up/down
/// changes go at once).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// How often byte counters go to the controller (the protocol's number).
pub const TRAFFIC_INTERVAL: Duration =
    Duration::from_secs(freimesh_proto::control::TRAFFIC_INTERVAL_S);
/// What the agent reports as a link's round-trip time until it has measured
/// one (the first `LinkState` exchange, within a state refresh).
pub const NOMINAL_RTT_US: u32 = 1_000;
/// A measurement counts as moved when it changed by more than
/// 1/`MOVED_DIVISOR` of its last reported value: smaller wobbles change
/// no path the controller would compute.
const MOVED_DIVISOR: u32 = 10;
/// Loss below this (0.1 %) is compared as if it were this: near zero a
/// single lost probe would otherwise be "more than a tenth" every time.
const LOSS_FLOOR_PPM: u32 = 1_000;
/// An RTT change smaller than this is no move however small the RTT: a
/// few hundred microseconds between two sub-millisecond links are
/// scheduling, not distance, and would only swap equal paths.
const RTT_MOVED_FLOOR: Duration = Duration::from_millis(1);

/// The link-report core; see the module docs.
#[derive(Debug)]
pub struct LinkReporter {
    candidates: Vec<Candidate>,
    /// Up/down per link as last reported.
    last_states: Option<Vec<(PublicKeyBytes, bool)>>,
    /// Measurements as last reported.
    measured: Vec<LinkReport>,
    next_full: Instant,
    next_traffic: Instant,
    out: VecDeque<Upstream>,
    /// Some link has been up since the reporter started.
    seen_up: bool,
    /// Every link is down (after one had been up).
    isolated: bool,
    /// A link came up after an isolation; taken by [`Self::take_rejoined`].
    rejoined: bool,
}

impl LinkReporter {
    pub fn new(candidates: Vec<Candidate>, now: Instant) -> Self {
        Self {
            candidates,
            last_states: None,
            measured: Vec::new(),
            next_full: now,
            next_traffic: now + TRAFFIC_INTERVAL,
            out: VecDeque::new(),
            seen_up: false,
            isolated: false,
            rejoined: false,
        }
    }

    /// Replaces the candidates (discovered neighbours come and go); the
    /// next [`Self::handle_link_states`] reports them.
    pub fn set_candidates(&mut self, candidates: Vec<Candidate>) {
        if self.candidates != candidates {
            self.candidates = candidates;
            self.last_states = None;
        }
    }

    /// Whether a link came up since the last call after every link had
    /// been down. While a router is cut off, the controller takes its
    /// links down and every route toward it away, so a control session
    /// through an exit cannot carry anything back to it (and TCP, with no
    /// acknowledgements, not even its report that the links are up
    /// again): the shell starts a new session through a neighbour.
    pub fn take_rejoined(&mut self) -> bool {
        std::mem::take(&mut self.rejoined)
    }

    /// The engine's link states at `now`.
    pub fn handle_link_states(&mut self, current: &[LinkReport], now: Instant) {
        let any_up = current.iter().any(|l| l.up);
        if any_up {
            if self.isolated {
                self.rejoined = true;
            }
            self.isolated = false;
            self.seen_up = true;
        } else if self.seen_up && !current.is_empty() {
            self.isolated = true;
        }
        if now >= self.next_traffic {
            self.next_traffic += TRAFFIC_INTERVAL;
            let counters = current
                .iter()
                .map(|l| LinkTraffic {
                    peer: l.peer,
                    tx_bytes: l.tx_bytes,
                    rx_bytes: l.rx_bytes,
                })
                .collect();
            self.out.push_back(Upstream::Traffic(counters));
        }
        let states: Vec<(PublicKeyBytes, bool)> = current.iter().map(|l| (l.peer, l.up)).collect();
        // Up/down changes go out at once; measurements with the periodic
        // report, and only when the cost moved by more than a tenth, so RTT
        // jitter does not make the controller recompute routes.
        let changed = self.last_states.as_ref() != Some(&states);
        let due = now >= self.next_full;
        if due {
            self.next_full = now + REPORT_INTERVAL;
        }
        if !(changed || (due && moved(&self.measured, current))) {
            return;
        }
        let links = current
            .iter()
            .map(|l| LinkMeasurement {
                peer: l.peer,
                rtt_us: l.rtt.map_or(NOMINAL_RTT_US, |r| {
                    u32::try_from(r.as_micros()).unwrap_or(u32::MAX).max(1)
                }),
                loss_ppm: l.loss_ppm,
                up: l.up,
            })
            .collect();
        self.last_states = Some(states);
        self.measured = current.to_vec();
        self.out.push_back(Upstream::Report(Report {
            links,
            candidates: self.candidates.clone(),
        }));
    }

    /// The next thing for the session core.
    pub fn poll_upstream(&mut self) -> Option<Upstream> {
        self.out.pop_front()
    }
}

/// Whether any link's RTT or loss moved by more than a tenth
/// ([`MOVED_DIVISOR`]) or appeared since the last report.
fn moved(before: &[LinkReport], now: &[LinkReport]) -> bool {
    now.iter().any(|l| {
        let Some(old) = before.iter().find(|b| b.peer == l.peer) else {
            return true;
        };
        let rtt_moved = match (old.rtt, l.rtt) {
            (Some(a), Some(b)) => {
                let change = a.abs_diff(b);
                change * MOVED_DIVISOR > a && change > RTT_MOVED_FLOOR
            }
            (None, Some(_)) => true,
            _ => false,
        };
        rtt_moved
            || old
                .loss_ppm
                .abs_diff(l.loss_ppm)
                .saturating_mul(MOVED_DIVISOR)
                > old.loss_ppm.max(LOSS_FLOOR_PPM)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(peer: u8, up: bool, rtt_ms: u64) -> LinkReport {
        LinkReport {
            peer: PublicKeyBytes([peer; 32]),
            up,
            rtt: Some(Duration::from_millis(rtt_ms)),
            loss_ppm: 0,
            tx_bytes: 100,
            rx_bytes: 200,
        }
    }

    fn drain(r: &mut LinkReporter) -> Vec<Upstream> {
        std::iter::from_fn(|| r.poll_upstream()).collect()
    }

    #[test]
    fn up_down_goes_at_once_measurements_only_when_they_move_traffic_every_ten_seconds() {
        let t0 = Instant::now();
        let mut r = LinkReporter::new(Vec::new(), t0);
        r.handle_link_states(&[link(2, true, 10)], t0);
        assert!(matches!(drain(&mut r)[..], [Upstream::Report(_)]), "first");
        // Jitter below a tenth, even when the periodic report is due.
        r.handle_link_states(&[link(2, true, 10)], t0 + REPORT_TICK);
        r.handle_link_states(&[link(2, true, 10)], t0 + REPORT_INTERVAL);
        assert!(drain(&mut r).is_empty());
        // Down: at once, before the interval.
        let t = t0 + REPORT_INTERVAL + REPORT_TICK;
        r.handle_link_states(&[link(2, false, 10)], t);
        assert!(matches!(drain(&mut r)[..], [Upstream::Report(_)]));
        // A moved RTT waits for the periodic report.
        let t = t0 + REPORT_INTERVAL * 2 - REPORT_TICK;
        r.handle_link_states(&[link(2, false, 30)], t);
        assert!(drain(&mut r).is_empty());
        r.handle_link_states(&[link(2, false, 30)], t0 + REPORT_INTERVAL * 2);
        let out = drain(&mut r);
        assert!(
            matches!(&out[..], [Upstream::Traffic(c), Upstream::Report(_)] if c[0].rx_bytes == 200),
            "{out:?}"
        );
        // Traffic every TRAFFIC_INTERVAL on the virtual clock, no more.
        let mut traffic = 0;
        let mut t = t0 + TRAFFIC_INTERVAL;
        while t <= t0 + TRAFFIC_INTERVAL * 6 {
            r.handle_link_states(&[link(2, false, 30)], t);
            traffic += drain(&mut r)
                .iter()
                .filter(|u| matches!(u, Upstream::Traffic(_)))
                .count();
            t += REPORT_TICK;
        }
        assert_eq!(traffic, 5, "one per interval after the first");
    }

    #[test]
    fn sub_millisecond_wobble_is_no_move_however_small_the_rtt() {
        let t0 = Instant::now();
        let us = |peer: u8, rtt_us: u64| LinkReport {
            rtt: Some(Duration::from_micros(rtt_us)),
            ..link(peer, true, 0)
        };
        let mut r = LinkReporter::new(Vec::new(), t0);
        r.handle_link_states(&[us(2, 400)], t0);
        drain(&mut r);
        // 400 → 900 µs is more than a tenth, but under a millisecond.
        r.handle_link_states(&[us(2, 900)], t0 + REPORT_INTERVAL);
        assert!(drain(&mut r).is_empty());
        // 400 → 1,600 µs is a move.
        r.handle_link_states(&[us(2, 1_600)], t0 + REPORT_INTERVAL * 2);
        assert!(matches!(drain(&mut r)[..], [.., Upstream::Report(_)]));
    }

    #[test]
    fn rejoining_after_every_link_was_down_is_told_once() {
        let t0 = Instant::now();
        let mut r = LinkReporter::new(Vec::new(), t0);
        // Links coming up at start are no rejoining.
        r.handle_link_states(&[link(2, false, 1), link(3, false, 1)], t0);
        r.handle_link_states(&[link(2, true, 1), link(3, false, 1)], t0);
        assert!(!r.take_rejoined());
        // One of two down: not cut off.
        r.handle_link_states(&[link(2, false, 1), link(3, true, 1)], t0);
        r.handle_link_states(&[link(2, true, 1), link(3, true, 1)], t0);
        assert!(!r.take_rejoined());
        // Both down, then one back.
        r.handle_link_states(&[link(2, false, 1), link(3, false, 1)], t0);
        assert!(!r.take_rejoined());
        r.handle_link_states(&[link(2, false, 1), link(3, true, 1)], t0);
        assert!(r.take_rejoined());
        assert!(!r.take_rejoined(), "once");
    }
}
