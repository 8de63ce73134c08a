//! The engine's timers: heartbeats, liveness deadlines, state refreshes and
//! WireGuard's own timers, arranged so that an idle node wakes once per
//! heartbeat interval for all its links rather than once per link.
//!
//! Each link keeps its own exact deadlines ([`Liveness::next_deadline`]);
//! [`Engine::poll_timeout`] is the earliest of them. When the node wakes,
//! every link whose heartbeat falls due within the coalescing slack goes
//! out too ([`crate::core::liveness::COALESCING_DIVISOR`]), and WireGuard's
//! timers, which only need servicing every 100–250 ms, ride along with
//! whatever wake-up comes within [`WIREGUARD_SLACK`] after theirs.
//!
//! [`Liveness::next_deadline`]: crate::core::liveness::Liveness::next_deadline

use std::time::{Duration, Instant};

use boringtun::noise::TunnResult;
use boringtun::noise::errors::WireGuardError;

use super::{Engine, Output, RATE_LIMITER_WINDOW};
use crate::core::LinkId;
use crate::core::liveness::FOLLOW_GUARD_DIVISOR;

/// How long after its nominal tick WireGuard's timers may wait for a
/// wake-up the node has anyway: boringtun wants `update_timers` every
/// 100–250 ms, so a tick serviced between 100 and 150 ms after the last
/// one is on time, and an idle node with heartbeats never wakes for it
/// alone.
pub(super) const WIREGUARD_SLACK: Duration = Duration::from_millis(50);

/// Distinct heartbeat intervals on one node: one per profile, and the
/// slow probe of down links.
const INTERVAL_KINDS: usize = 4;

/// The heartbeat intervals of the links whose heartbeat is due now (not
/// merely within the slack): a link of the same interval that goes out
/// early joins their schedule.
#[derive(Debug, Default)]
struct DueIntervals {
    intervals: [Option<Duration>; INTERVAL_KINDS],
}

impl DueIntervals {
    fn insert(&mut self, interval: Duration) {
        if self.contains(interval) {
            return;
        }
        // More kinds than slots cannot happen with today's profiles; a
        // kind left out only keeps its own schedule (one more wake-up).
        if let Some(slot) = self.intervals.iter_mut().find(|s| s.is_none()) {
            *slot = Some(interval);
        }
    }

    fn contains(&self, interval: Duration) -> bool {
        self.intervals.contains(&Some(interval))
    }
}

impl Engine {
    /// When [`Engine::handle_timeout`] next has work: a heartbeat, a
    /// detection deadline, the end of a hold-down, a state refresh, or
    /// WireGuard's timers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // A retired link is never serviced: its stale heartbeat deadline
        // would make the shell wake at once, forever.
        let links = self
            .links
            .iter()
            .filter(|l| !l.retired)
            .filter_map(|l| l.liveness.next_deadline());
        let wireguard = self.next_wireguard_tick.map(|t| t + WIREGUARD_SLACK);
        links.chain(wireguard).min()
    }

    /// Liveness (detection, heartbeats, hold-downs, state refresh) and,
    /// every [`Engine::TICK`] or a little later, WireGuard's own timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.former_hops.tick(now);
        let mut due = DueIntervals::default();
        for link in self.links.iter().filter(|l| !l.retired) {
            if let (Some(deadline), Some(interval)) = (
                link.liveness.heartbeat_deadline(now),
                link.liveness.heartbeat_interval(),
            ) && deadline <= now
            {
                due.insert(interval);
            }
        }
        for i in 0..self.links.len() {
            self.service_liveness(LinkId(i), now, &due);
        }
        if self.next_wireguard_tick.is_none_or(|t| now >= t) {
            self.next_wireguard_tick = Some(now + Self::TICK);
            self.service_wireguard(now);
        }
    }

    /// Per-link timers: detection, hold-down, heartbeat, state refresh.
    fn service_liveness(&mut self, link: LinkId, now: Instant, due: &DueIntervals) {
        if self.links[link.0].retired {
            return;
        }
        if let Some(transition) = self.links[link.0].liveness.tick(now) {
            self.apply_transition(link, transition, now);
        }
        if self.links[link.0].liveness.take_state_refresh(now) {
            self.send_link_state(link, now);
            self.send_lost_set(link, now);
        }
        let liveness = &mut self.links[link.0].liveness;
        let join = liveness
            .heartbeat_interval()
            .is_some_and(|i| due.contains(i));
        if liveness.take_heartbeat(now, join) {
            // An empty WireGuard message is a keepalive; without a session
            // boringtun starts a handshake instead, which also proves life.
            self.encapsulate_to(link, &[], now);
        }
    }

    /// The neighbour on `link` just sent a heartbeat (a keepalive). If no
    /// other link of ours shares this link's schedule and the link may
    /// follow ([`Liveness::take_following_heartbeat`]: idle, same interval,
    /// ours not sent in the last eighth of one), ours goes now and takes
    /// the neighbour's schedule: both ends of the link then beat together,
    /// and a router whose single-link neighbours follow it hears all their
    /// heartbeats in one burst right after sending its own, instead of one
    /// wake-up each. Only on links whose round trip is under an eighth of
    /// an interval (see [`crate::core::liveness::FOLLOW_GUARD_DIVISOR`]).
    ///
    /// [`Liveness::take_following_heartbeat`]: crate::core::liveness::Liveness::take_following_heartbeat
    pub(super) fn follow_neighbour(&mut self, link: LinkId, now: Instant) {
        let state = &self.links[link.0];
        let Some(interval) = state.liveness.heartbeat_interval() else {
            return;
        };
        if state
            .rtt
            .is_none_or(|rtt| rtt >= interval / FOLLOW_GUARD_DIVISOR)
        {
            return;
        }
        let due = state.liveness.heartbeat_deadline(now);
        let shared = self
            .links
            .iter()
            .any(|l| l.id != link && !l.retired && l.liveness.heartbeat_deadline(now) == due);
        if !shared && self.links[link.0].liveness.take_following_heartbeat(now) {
            self.encapsulate_to(link, &[], now);
        }
    }

    fn service_wireguard(&mut self, now: Instant) {
        if self.next_rate_limiter_reset.is_none_or(|t| now >= t) {
            self.rate_limiter.reset_count();
            self.next_rate_limiter_reset = Some(now + RATE_LIMITER_WINDOW);
        }
        for i in 0..self.links.len() {
            let link = &mut self.links[i];
            // A new link's first initiation got no answer: once more now,
            // not after WireGuard's 5 s (see `EARLY_HANDSHAKE_RETRY`).
            let retry_early = !link.retired
                && link.early_retry_at.is_some_and(|at| now >= at)
                && link.tunn.since_handshake(now).is_none();
            if link.early_retry_at.is_some_and(|at| now >= at) {
                link.early_retry_at = None;
            }
            if retry_early {
                self.initiate(LinkId(i), true, now);
                continue;
            }
            let link = &mut self.links[i];
            match link.tunn.update_timers(&mut self.tx_scratch, now) {
                TunnResult::WriteToNetwork(datagram) => {
                    if let Some(to) = link.endpoint {
                        link.liveness.sent(now);
                        self.outputs.push_back(Output::Transmit {
                            to,
                            datagram: self.buffers.copy_of(datagram),
                        });
                    }
                }
                TunnResult::Err(WireGuardError::ConnectionExpired) => {
                    // boringtun retried every 5 s for 90 s and gave up. A
                    // mesh neighbour may come back at any time, so start a
                    // new attempt at once: one 148-byte initiation per 5 s
                    // to a dead neighbour, WireGuard's own retry cadence.
                    self.initiate(LinkId(i), true, now);
                }
                _ => {}
            }
        }
    }
}
