//! Link liveness: is the neighbour at the other end of a tunnel alive, and
//! does it hear us?
//!
//! BFD's asynchronous mode, inside the tunnel. Each side sends a heartbeat
//! (an empty WireGuard keepalive, the smallest authenticated packet) every
//! `interval` unless it sent something else on the link in that interval;
//! *any* authenticated packet from the neighbour is proof of life. A link
//! whose neighbour has been silent for `interval × multiplier` is down.
//! Neighbours also tell each other, in a small `LinkState` message, whether
//! they hear each other, when that changes and every `state_refresh`: so a
//! link that fails in one direction only goes down on both ends.
//!
//! A link that was up and failed must then be heard for its whole hold-down,
//! with no more than 100 − [`RECOVERY_QUALITY_PERCENT`] % of its heartbeats
//! missing, before it carries traffic again: a flapping or lossy
//! link does not flap routes, it stays out of use. Each failure within a
//! short time of the last recovery doubles the hold-down (up to
//! [`MAX_HOLD_DOWN`]); a link that stays up long enough earns the base value
//! back.
//!
//! A link that is down is still probed, so that it is heard when it comes
//! back, but slowly ([`DOWN_PROBE_INTERVAL`]): see that constant for why
//! a dead neighbour must not get the full heartbeat rate.
//!
//! Heartbeats and state refreshes may go out a little early, so that a
//! node wakes once for all its links instead of once per link (see
//! [`COALESCING_DIVISOR`]). Early only ever means the neighbour hears us
//! sooner, and the schedule keeps one heartbeat per interval; detection
//! deadlines are never moved.
//!
//! Everything here is a pure function of the `now` it is given.

use std::time::{Duration, Instant};

/// Longest hold-down a flapping link can accumulate.
pub const MAX_HOLD_DOWN: Duration = Duration::from_secs(60);
/// Share of heartbeat intervals in which a recovering link must be heard
/// during its hold-down. A link losing 30 % of its packets fails this and
/// stays out of use instead of flapping.
pub const RECOVERY_QUALITY_PERCENT: u32 = 90;
/// A link that stays up this many base hold-downs loses its flap penalty.
const PENALTY_DECAY_FACTOR: u32 = 10;
/// Heartbeat period of a link that is down (when the profile's own is
/// shorter). A down link's neighbour is gone or unreachable, and what we
/// send it may not leave the host: on an interface without carrier, or
/// towards a neighbour that no longer answers ARP, the kernel queues each
/// datagram on the unresolved neighbour entry (up to `unres_qlen_bytes`,
/// 208 KiB by default, for the 3 s its resolution takes) and charges it
/// to our one underlay socket, whose send buffer is just as large. At the
/// fast profile's 100 heartbeats a second that queue filled the buffer
/// 2.7 s after a carrier cut, and every send of the agent, on every link,
/// failed with `EAGAIN`: the alternate path went silent, was declared
/// dead, and sat out its hold-down (the failover lab's 1.2 s "carrier
/// loss" gap). Four probes a second keep a dead link's queue near 8 KB
/// (12 probes of ~700 bytes of kernel memory each; 8 dead links: a third
/// of the buffer) and add at most 250 ms to a recovery that waits a
/// hold-down of at least 1 s anyway.
pub const DOWN_PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// How early a heartbeat may go out so that a node wakes once per
/// interval for all its links instead of once per link (idle CPU). How the
/// schedule then moves decides the probe traffic:
///
/// * **Joining.** When a link of the same interval is due now, an idle
///   link (its last packet was a heartbeat) due within half an interval
///   goes too and takes that schedule: one early heartbeat, after which
///   the two share every wake-up. Any two schedules are within half an
///   interval of each other one way or the other, so one round puts all
///   idle links of a profile on one schedule. A link carrying traffic does
///   not join (it needs no heartbeat, and joining would add some).
/// * **Riding along.** Woken for anything else (a faster link, a
///   detection deadline, WireGuard's timers), a heartbeat due within
///   `1 / COALESCING_DIVISOR` of its interval goes out but keeps its own
///   schedule; otherwise a `default` link next to `fast` ones would be
///   pulled 10 ms early every time and send a quarter more heartbeats
///   than its profile says.
///
/// A state refresh rides along within one heartbeat interval.
pub const COALESCING_DIVISOR: u32 = 4;
/// See [`COALESCING_DIVISOR`]: an idle link joins a due schedule of its
/// interval when its own heartbeat is due within `1 / JOIN_DIVISOR` of it.
pub const JOIN_DIVISOR: u32 = 2;
/// An idle link may answer its neighbour's heartbeat with its own (follow
/// it, see `Engine::follow_neighbour`) once `1 / FOLLOW_GUARD_DIVISOR` of
/// an interval has passed since its last one, and only where the round
/// trip is shorter than that: the neighbour's answer to our own heartbeat
/// then always comes too soon to be followed, so two ends never answer
/// each other back and forth.
pub const FOLLOW_GUARD_DIVISOR: u32 = 8;

/// Timers of one kind of link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    /// Heartbeat interval; `None` for peers that do not speak freimesh
    /// (plain WireGuard): such a link is never probed and always up.
    pub interval: Option<Duration>,
    /// Missed intervals before the link is declared down.
    pub multiplier: u32,
    /// Base time a recovered link must stay heard before it is used again.
    pub hold_down: Duration,
    /// How often to repeat our `LinkState` (and pending withdrawals).
    pub state_refresh: Duration,
}

impl Profile {
    /// Fibre and Ethernet backbone: 10 ms heartbeats, down after 30 ms of
    /// silence. 48 kbit/s of heartbeats per direction is nothing on such a
    /// link.
    pub const FAST: Profile = Profile {
        name: "fast",
        interval: Some(Duration::from_millis(10)),
        multiplier: 3,
        hold_down: Duration::from_secs(1),
        state_refresh: Duration::from_secs(1),
    };
    /// Radio links between routers: 50 ms heartbeats, down after 150 ms.
    /// 20 keepalives of 60 bytes per second is 9.6 kbit/s on an IPv4
    /// underlay, under the 10 kbit/s budget of an idle link.
    pub const DEFAULT: Profile = Profile {
        name: "default",
        interval: Some(Duration::from_millis(50)),
        multiplier: 3,
        hold_down: Duration::from_secs(2),
        state_refresh: Duration::from_secs(2),
    };
    /// LTE and other metered uplinks: one heartbeat a second (480 bit/s),
    /// down after 3 s.
    pub const METERED: Profile = Profile {
        name: "metered",
        interval: Some(Duration::from_secs(1)),
        multiplier: 3,
        hold_down: Duration::from_secs(10),
        state_refresh: Duration::from_secs(30),
    };
    /// A plain WireGuard peer (wg-quick, wireguard-go): no heartbeats, no
    /// liveness; the link is always considered up.
    pub const WIREGUARD: Profile = Profile {
        name: "wireguard",
        interval: None,
        multiplier: 0,
        hold_down: Duration::ZERO,
        state_refresh: Duration::MAX,
    };

    pub const ALL: [Profile; 4] = [
        Profile::FAST,
        Profile::DEFAULT,
        Profile::METERED,
        Profile::WIREGUARD,
    ];

    pub fn by_name(name: &str) -> Option<Profile> {
        Self::ALL.into_iter().find(|p| p.name == name)
    }

    /// Silence after which the link is down.
    pub fn detection_time(&self) -> Option<Duration> {
        self.interval.map(|i| i * self.multiplier)
    }
}

/// Why a link went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownCause {
    /// Nothing heard for the detection time.
    Silence,
    /// The neighbour says it does not hear us.
    PeerDoesNotHearUs,
    /// The underlay interface lost carrier.
    Carrier,
}

/// A link's liveness state. Each state holds what only it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Never heard since start: not used, no hold-down to wait.
    Starting,
    Up {
        since: Instant,
    },
    Down {
        since: Instant,
        cause: DownCause,
    },
    /// Heard again after a failure: on probation until `until`, counting
    /// the heartbeat intervals in which nothing arrived.
    HoldDown {
        started: Instant,
        until: Instant,
        missed: u32,
        last: Instant,
    },
}

/// What a call changed, for the engine to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    /// Down, with how long the neighbour had been silent when we noticed.
    Down {
        cause: DownCause,
        silent_for: Duration,
    },
}

/// Liveness of one link.
#[derive(Debug, Clone)]
pub struct Liveness {
    pub profile: Profile,
    pub state: State,
    last_heard: Option<Instant>,
    /// When our next heartbeat is due: one interval after we last sent
    /// anything (`None`: at once).
    next_heartbeat: Option<Instant>,
    /// Whether the last thing we sent was a heartbeat (no traffic since):
    /// only such a link joins another's schedule.
    idle: bool,
    /// We hear a neighbour again that we did not hear: our `LinkState` is
    /// due at once ([`Liveness::take_hearing_resumed`]).
    hearing_resumed: bool,
    /// The neighbour's latest `LinkState`: does it hear us?
    peer_hears_us: bool,
    /// The neighbour's heartbeat interval, from its `LinkState`: silence is
    /// judged by the slower of the two ends, so a `metered` router next to
    /// a `default` one is not declared dead between its heartbeats.
    peer_interval: Option<Duration>,
    hold_down: Duration,
    next_state_refresh: Option<Instant>,
}

impl Liveness {
    pub fn new(profile: Profile) -> Self {
        Self {
            profile,
            state: State::Starting,
            last_heard: None,
            next_heartbeat: None,
            idle: true,
            hearing_resumed: false,
            peer_hears_us: true,
            peer_interval: None,
            hold_down: profile.hold_down,
            next_state_refresh: None,
        }
    }

    /// Whether the link may carry traffic now.
    pub fn is_up(&self) -> bool {
        self.profile.interval.is_none() || matches!(self.state, State::Up { .. })
    }

    /// Whether our `LinkState` means anything yet. Before we first heard the
    /// neighbour, "I do not hear you" would only race with its handshake
    /// and take down a link that is just coming up, so we say nothing.
    pub fn has_state_to_report(&self) -> bool {
        self.profile.interval.is_some() && !matches!(self.state, State::Starting)
    }

    /// Whether we hear the neighbour now (what our `LinkState` says).
    /// The interval at which we can expect to hear the neighbour: the
    /// slower of its heartbeats and ours.
    fn expected_interval(&self) -> Option<Duration> {
        let own = self.profile.interval?;
        Some(self.peer_interval.map_or(own, |peer| peer.max(own)))
    }

    /// Silence after which the link is down.
    pub fn detection_time(&self) -> Option<Duration> {
        self.expected_interval()
            .map(|i| i * self.profile.multiplier)
    }

    /// Records the neighbour's heartbeat interval (0: it sends none).
    pub fn set_peer_interval(&mut self, interval: Duration) {
        self.peer_interval = (!interval.is_zero()).then_some(interval);
    }

    pub fn hears_peer(&self, now: Instant) -> bool {
        match (self.last_heard, self.detection_time()) {
            (Some(t), Some(detect)) => now.saturating_duration_since(t) < detect,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    pub fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    /// An authenticated packet arrived from the neighbour.
    pub fn heard(&mut self, now: Instant) -> Option<Transition> {
        self.note_heard(now);
        self.evaluate(now)
    }

    fn note_heard(&mut self, now: Instant) {
        // A down link's neighbour that we hear again (after silence) must
        // learn it at once: its probation waits for our "I hear you", and
        // between slow probes the next refresh would find us not hearing.
        if matches!(self.state, State::Down { .. } | State::HoldDown { .. })
            && !self.hears_peer(now)
        {
            self.hearing_resumed = true;
        }
        self.last_heard = Some(now);
        if let (State::HoldDown { missed, last, .. }, Some(interval)) =
            (&mut self.state, self.profile.interval)
        {
            // A gap of k intervals means k - 1 heartbeats never came. Timer
            // drift (a heartbeat every 11 ms for a 10 ms interval) is no
            // loss; a gap of two intervals is.
            let gap = intervals_in(now.saturating_duration_since(*last), interval);
            *missed = missed.saturating_add(gap.saturating_sub(1));
            *last = now;
        }
    }

    /// We sent something on the link other than a heartbeat taken with
    /// [`Liveness::take_heartbeat`] (it suppresses the next heartbeat).
    pub fn sent(&mut self, now: Instant) {
        self.idle = false;
        if let Some(interval) = self.heartbeat_interval() {
            let after = now + interval;
            self.next_heartbeat = Some(self.next_heartbeat.map_or(after, |due| due.max(after)));
        }
    }

    /// The neighbour's `LinkState` arrived.
    pub fn peer_state(&mut self, hears_us: bool, now: Instant) -> Option<Transition> {
        self.peer_hears_us = hears_us;
        self.note_heard(now);
        self.evaluate(now)
    }

    /// The underlay interface lost carrier: down at once.
    pub fn carrier_lost(&mut self, now: Instant) -> Option<Transition> {
        self.profile.interval?;
        let silent_for = self
            .last_heard
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        // Forget the last proof of life: nothing heard before the loss may
        // bring the link back.
        self.last_heard = None;
        self.go_down(DownCause::Carrier, now)
            .map(|cause| Transition::Down { cause, silent_for })
    }

    /// Timers: detection, hold-down expiry.
    pub fn tick(&mut self, now: Instant) -> Option<Transition> {
        self.evaluate(now)
    }

    /// The period between our heartbeats now: the profile's interval, or
    /// [`DOWN_PROBE_INTERVAL`] while the link is down.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        let interval = self.profile.interval?;
        Some(match self.state {
            State::Down { .. } => interval.max(DOWN_PROBE_INTERVAL),
            _ => interval,
        })
    }

    /// When the next heartbeat is due, exactly (`None`: the link is never
    /// probed). A node must be awake then; it may send it earlier.
    pub fn heartbeat_deadline(&self, now: Instant) -> Option<Instant> {
        self.heartbeat_interval()?;
        Some(self.next_heartbeat.unwrap_or(now))
    }

    /// Whether a heartbeat should go out now: it is due, or the node is
    /// awake anyway and it is due soon ([`COALESCING_DIVISOR`]). `join`:
    /// a link with the same heartbeat interval is due now.
    pub fn heartbeat_due(&self, now: Instant, join: bool) -> bool {
        let Some(interval) = self.heartbeat_interval() else {
            return false;
        };
        let slack = if join && self.idle {
            interval / JOIN_DIVISOR
        } else {
            interval / COALESCING_DIVISOR
        };
        self.next_heartbeat.is_none_or(|due| now + slack >= due)
    }

    /// Takes the heartbeat [`Liveness::heartbeat_due`] says should go out
    /// now, if any, and schedules the next one; the caller sends it (and
    /// does not report it with [`Liveness::sent`]). An early heartbeat
    /// that joins (`join`, see [`COALESCING_DIVISOR`]) moves this link onto
    /// the schedule of the due one; otherwise it keeps its own.
    pub fn take_heartbeat(&mut self, now: Instant, join: bool) -> bool {
        let Some(interval) = self.heartbeat_interval() else {
            return false;
        };
        if !self.heartbeat_due(now, join) {
            return false;
        }
        let due = self.next_heartbeat.unwrap_or(now);
        let joins = join && self.idle;
        let from = if joins { now } else { due.max(now) };
        self.next_heartbeat = Some(from + interval);
        self.idle = true;
        true
    }

    /// Takes a heartbeat that answers the neighbour's, if this link may
    /// follow it now: idle, the neighbour beating at our interval, our last
    /// heartbeat at least [`FOLLOW_GUARD_DIVISOR`] of an interval ago. The
    /// link then keeps the neighbour's schedule.
    pub fn take_following_heartbeat(&mut self, now: Instant) -> bool {
        let Some(interval) = self.heartbeat_interval() else {
            return false;
        };
        let guard = interval / FOLLOW_GUARD_DIVISOR;
        let follows = self.idle
            && matches!(self.state, State::Up { .. })
            && self.peer_interval == Some(interval)
            && self
                .next_heartbeat
                .is_some_and(|due| now + interval >= due + guard);
        if follows {
            self.next_heartbeat = Some(now + interval);
        }
        follows
    }

    /// Whether our `LinkState` should be repeated now (it is due, or due
    /// within one heartbeat interval, when the node wakes for heartbeats
    /// anyway); if so, schedules the next one on the same period.
    pub fn take_state_refresh(&mut self, now: Instant) -> bool {
        let Some(slack) = self.heartbeat_interval() else {
            return false;
        };
        let due = match self.next_state_refresh {
            Some(due) if now + slack < due => return false,
            Some(due) => due.max(now),
            None => now,
        };
        self.next_state_refresh = Some(due + self.profile.state_refresh);
        true
    }

    /// Whether we began to hear the neighbour again since the last call:
    /// the caller then sends our `LinkState` at once.
    pub fn take_hearing_resumed(&mut self) -> bool {
        std::mem::take(&mut self.hearing_resumed)
    }

    /// Sends our `LinkState` early (it changed).
    pub fn refresh_state_now(&mut self) {
        self.next_state_refresh = None;
    }

    /// The earliest instant at which [`Liveness::tick`] or a heartbeat may
    /// have work.
    pub fn next_deadline(&self) -> Option<Instant> {
        let heartbeat = self.heartbeat_interval().and(self.next_heartbeat);
        let detection = match self.state {
            // The link's detection time (the slower of both ends'
            // intervals), as `hears_peer` judges it: our own profile's alone
            // would put the deadline in the past next to a slower neighbour,
            // and the timer would wake at once, again and again.
            State::Up { .. } | State::HoldDown { .. } => self
                .last_heard
                .zip(self.detection_time())
                .map(|(t, d)| t + d),
            _ => None,
        };
        let hold = match self.state {
            State::HoldDown { until, .. } => Some(until),
            _ => None,
        };
        [heartbeat, detection, hold, self.next_state_refresh]
            .into_iter()
            .flatten()
            .min()
    }

    fn evaluate(&mut self, now: Instant) -> Option<Transition> {
        self.profile.interval?;
        let hears = self.hears_peer(now);
        let silent_for = self
            .last_heard
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        match self.state {
            State::Starting if hears && self.peer_hears_us => {
                self.state = State::Up { since: now };
                Some(Transition::Up)
            }
            State::Starting => None,
            State::Up { since } => {
                let cause = if !hears {
                    DownCause::Silence
                } else if !self.peer_hears_us {
                    DownCause::PeerDoesNotHearUs
                } else {
                    // A long stable run earns back the base hold-down.
                    if now.saturating_duration_since(since)
                        >= self.profile.hold_down * PENALTY_DECAY_FACTOR
                    {
                        self.hold_down = self.profile.hold_down;
                    }
                    return None;
                };
                self.go_down(cause, now)
                    .map(|cause| Transition::Down { cause, silent_for })
            }
            State::Down { .. } if hears && self.peer_hears_us => {
                self.start_probation(now);
                None
            }
            State::Down { .. } => None,
            State::HoldDown {
                started,
                until,
                missed,
                ..
            } => {
                if !hears || !self.peer_hears_us {
                    // Failed again while on probation: a flap. Double the
                    // penalty and start over.
                    self.hold_down = (self.hold_down * 2).min(MAX_HOLD_DOWN);
                    let cause = if hears {
                        DownCause::PeerDoesNotHearUs
                    } else {
                        DownCause::Silence
                    };
                    self.state = State::Down { since: now, cause };
                    None
                } else if now >= until {
                    let interval = self.expected_interval().unwrap_or(Duration::MAX);
                    let expected =
                        intervals_in(until.saturating_duration_since(started), interval).max(1);
                    if missed.saturating_mul(100)
                        <= expected.saturating_mul(100 - RECOVERY_QUALITY_PERCENT)
                    {
                        self.state = State::Up { since: now };
                        Some(Transition::Up)
                    } else {
                        // Alive but lossy: stay out of use, look again later.
                        self.hold_down = (self.hold_down * 2).min(MAX_HOLD_DOWN);
                        self.start_probation(now);
                        None
                    }
                } else {
                    None
                }
            }
        }
    }

    fn start_probation(&mut self, now: Instant) {
        self.state = State::HoldDown {
            started: now,
            until: now + self.hold_down,
            missed: 0,
            last: now,
        };
        // Back to the full heartbeat rate at once (a down link was probed
        // slowly): the neighbour must hear us to start its own probation.
        self.next_heartbeat = Some(self.next_heartbeat.map_or(now, |due| due.min(now)));
    }

    fn go_down(&mut self, cause: DownCause, now: Instant) -> Option<DownCause> {
        match self.state {
            State::Up { since } => {
                // Failing soon after recovering is a flap: raise the penalty.
                if now.saturating_duration_since(since) < self.hold_down * PENALTY_DECAY_FACTOR {
                    self.hold_down = (self.hold_down * 2).min(MAX_HOLD_DOWN);
                }
                self.state = State::Down { since: now, cause };
                self.refresh_state_now();
                Some(cause)
            }
            State::HoldDown { .. } | State::Starting => {
                self.state = State::Down { since: now, cause };
                None
            }
            State::Down { .. } => None,
        }
    }
}

/// How many whole `interval`s fit in `span`.
fn intervals_in(span: Duration, interval: Duration) -> u32 {
    u32::try_from(span.as_nanos() / interval.as_nanos().max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
