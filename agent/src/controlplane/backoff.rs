//! Reconnect backoff: exponential with jitter, so a thousand routers that
//! lost their controller at the same moment do not return in lockstep; and
//! the [`Dialer`] that walks the paths to the controller with it: the
//! configured endpoints over the underlay first, then the control exits'
//! overlay relays, then the neighbours' link-local relays.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// Pause before trying the next endpoint after one failed: a dead
/// endpoint has already cost its connect time (up to
/// [`super::CONNECT_TIMEOUT`]); the pause only keeps a list of endpoints
/// that all refuse at once from spinning.
pub const NEXT_ENDPOINT_DELAY: Duration = Duration::from_millis(200);

/// A session through a neighbour's link-local relay, once the controller
/// has named control exits, ends after this long so the next round can
/// move it to an exit: the relay's link-local slots are few and a town's
/// newcomers enrol through them one cell after another. Long enough for
/// the routes of the Welcome to be in place.
pub const LEAVE_NEIGHBOUR_RELAY_AFTER: Duration = Duration::from_secs(3);
/// Each time a session came back to a neighbour's relay after leaving it
/// (no exit answered), the next try waits twice as long, up to this.
pub const LEAVE_NEIGHBOUR_RELAY_MAX: Duration = Duration::from_secs(300);

/// While a router has no control exit (it never enrolled) and hears
/// neighbours' relays, a failed round waits at most this long: the relays
/// refuse only until their own routers are enrolled, which in a town
/// coming up happens cell by cell within seconds, and a relay admits one
/// new connection per source every 5 s (`crate::relay::SOURCE_REFILL`)
/// anyway. Without the cap the backoff doubles while the neighbours are
/// still enrolling and the newcomer sleeps up to 30 s after they are.
pub const NEIGHBOUR_ROUND_MAX: Duration = Duration::from_secs(5);

/// How a path reaches the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A configured controller endpoint, over the underlay.
    Underlay,
    /// A control exit's overlay relay, through the mesh.
    Exit,
    /// A neighbour's link-local relay on a mesh interface.
    Neighbour,
}

/// One way to the controller: where to connect and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialPath {
    pub addr: SocketAddr,
    pub kind: PathKind,
}

/// Which path to the controller to dial, and when, as a sans-IO core.
///
/// A round tries the configured endpoints first (over the underlay; with
/// no route the kernel refuses at once, so they cost nothing then), then
/// the control exits (the controller's list, in its order), then the
/// neighbours' link-local relays. The relay paths change as the
/// controller and discovery report them ([`Dialer::handle_relay_paths`]);
/// the configured endpoints never leave the round, so no routing fault
/// or bad exit list can cut a router off from an underlay that works
/// again. A failed attempt moves on to the next path after
/// [`NEXT_ENDPOINT_DELAY`]; only when every path has failed in a row does
/// the [`Backoff`] delay apply, so one dead replica does not slow down
/// reaching the next. A path that welcomed the agent is tried first again
/// after its session ends (it answered last), and the backoff starts over;
/// except a neighbour's link-local relay: after a session through one the
/// round starts again from the top (its slots are few, and an enrolled
/// router has exits by then). A welcomed session through a neighbour's
/// relay is not kept for good once exits are known: [`Dialer::poll_leave`]
/// says when to end it, so the next round moves it to an exit; if no exit
/// answers and the round comes back to a neighbour, the next move waits
/// twice as long ([`LEAVE_NEIGHBOUR_RELAY_MAX`] at most).
///
/// Contract: dial [`Dialer::path`]; when its session is welcomed, call
/// [`Dialer::handle_welcomed`]; end the session at [`Dialer::poll_leave`]
/// (if any) after [`Dialer::handle_leave`]; when the attempt or session
/// ends, call [`Dialer::handle_session_end`] and wait the delay it
/// returns.
#[derive(Debug, Clone)]
pub struct Dialer {
    configured: Vec<SocketAddr>,
    /// The round: configured endpoints, exits, neighbour relays.
    endpoints: Vec<DialPath>,
    current: usize,
    /// Endpoints that failed in a row since the last welcome or full round.
    failed_in_round: usize,
    backoff: Backoff,
    /// The path of the welcomed session now running, and since when.
    welcomed: Option<(DialPath, Instant)>,
    /// How long a session through a neighbour's relay runs before it
    /// moves to an exit; doubles while moving fails.
    leave_after: Duration,
    /// The running session lost its route: the next round starts at the
    /// neighbours' relays.
    path_lost: bool,
}

impl Dialer {
    pub fn new(endpoints: Vec<SocketAddr>) -> Self {
        let round = endpoints
            .iter()
            .map(|&addr| DialPath {
                addr,
                kind: PathKind::Underlay,
            })
            .collect();
        Self {
            configured: endpoints,
            endpoints: round,
            current: 0,
            failed_in_round: 0,
            backoff: Backoff::default(),
            welcomed: None,
            leave_after: LEAVE_NEIGHBOUR_RELAY_AFTER,
            path_lost: false,
        }
    }

    /// The session on `path` got its Welcome at `now`. A session over the
    /// underlay or through an exit means moving off a neighbour's relay
    /// worked (or was never needed): the next move waits the minimum.
    pub fn handle_welcomed(&mut self, path: DialPath, now: Instant) {
        self.welcomed = Some((path, now));
        if path.kind != PathKind::Neighbour {
            self.leave_after = LEAVE_NEIGHBOUR_RELAY_AFTER;
        }
    }

    /// When to end the running session to move it off a neighbour's
    /// link-local relay: only for such a session, and only while the
    /// round holds a control exit to move to.
    pub fn poll_leave(&self) -> Option<Instant> {
        let (path, since) = self.welcomed?;
        let exit_known = self.endpoints.iter().any(|p| p.kind == PathKind::Exit);
        (path.kind == PathKind::Neighbour && exit_known).then(|| since + self.leave_after)
    }

    /// The session is being ended because its path lost its route (an
    /// exit's overlay address): the next round starts with the
    /// neighbours' link-local relays, which need no route, so the router
    /// can report its links and get routes again.
    pub fn handle_path_lost(&mut self) {
        self.path_lost = true;
    }

    /// The session is being ended at [`Dialer::poll_leave`]; should the
    /// round come back to a neighbour, its next move waits longer.
    pub fn handle_leave(&mut self) {
        self.leave_after = (self.leave_after * 2).min(LEAVE_NEIGHBOUR_RELAY_MAX);
    }

    /// The endpoint to dial now; `None` with no path at all.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.path().map(|p| p.addr)
    }

    /// The path to dial now; `None` with no path at all.
    pub fn path(&self) -> Option<DialPath> {
        self.endpoints.get(self.current).copied()
    }

    /// The relay paths now known: the controller's control exits and the
    /// relays of neighbours heard on the mesh interfaces. They follow the
    /// configured endpoints in the round (duplicates dropped); the path
    /// dialled now keeps its turn if it is still in the round.
    pub fn handle_relay_paths(&mut self, exits: &[SocketAddr], neighbours: &[SocketAddr]) {
        let current = self.path();
        let mut round: Vec<DialPath> = Vec::new();
        let tagged = self
            .configured
            .iter()
            .map(|&addr| (addr, PathKind::Underlay))
            .chain(exits.iter().map(|&addr| (addr, PathKind::Exit)))
            .chain(neighbours.iter().map(|&addr| (addr, PathKind::Neighbour)));
        for (addr, kind) in tagged {
            if !round.iter().any(|p| p.addr == addr) {
                round.push(DialPath { addr, kind });
            }
        }
        if round == self.endpoints {
            return;
        }
        self.current = current
            .and_then(|c| round.iter().position(|p| *p == c))
            .unwrap_or(0);
        self.failed_in_round = self.failed_in_round.min(round.len().saturating_sub(1));
        self.endpoints = round;
    }

    /// The attempt on [`Dialer::endpoint`] ended (`welcomed`: it got as far
    /// as a Welcome); how long to wait before the next one. `random` feeds
    /// the backoff's jitter.
    pub fn handle_session_end(&mut self, welcomed: bool, random: u64) -> Duration {
        self.welcomed = None;
        let neighbour_first = std::mem::take(&mut self.path_lost)
            .then(|| {
                self.endpoints
                    .iter()
                    .position(|p| p.kind == PathKind::Neighbour)
            })
            .flatten();
        if let Some(first) = neighbour_first {
            self.current = first;
            self.failed_in_round = 0;
            return NEXT_ENDPOINT_DELAY;
        }
        if welcomed {
            self.backoff.reset();
            self.failed_in_round = 0;
            if self.path().is_some_and(|p| p.kind == PathKind::Neighbour) {
                // A neighbour's link-local relay is the way in for a
                // router that had nothing better; its slots are few (the
                // relay's per-interface cap). Once enrolled, the next
                // session tries the underlay and the exits first.
                self.current = 0;
            }
            return self.backoff.next_delay(random);
        }
        self.failed_in_round += 1;
        if !self.endpoints.is_empty() {
            self.current = (self.current + 1) % self.endpoints.len();
        }
        if self.failed_in_round < self.endpoints.len() {
            return NEXT_ENDPOINT_DELAY;
        }
        self.failed_in_round = 0;
        let delay = self.backoff.next_delay(random);
        let newcomer = !self.endpoints.iter().any(|p| p.kind == PathKind::Exit)
            && self.endpoints.iter().any(|p| p.kind == PathKind::Neighbour);
        if newcomer {
            delay.min(NEIGHBOUR_ROUND_MAX)
        } else {
            delay
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([192, 0, 2, 10], 7700 + i)))
            .collect()
    }

    #[test]
    fn one_endpoint_backs_off_as_before() {
        let mut dialer = Dialer::new(endpoints(1));
        let mut reference = Backoff::default();
        for i in 0..6 {
            assert_eq!(dialer.endpoint(), Some(endpoints(1)[0]));
            assert_eq!(dialer.handle_session_end(false, i), reference.next_delay(i));
        }
    }

    #[test]
    fn endpoints_are_tried_in_order_and_backoff_applies_per_round() {
        let list = endpoints(3);
        let mut dialer = Dialer::new(list.clone());
        let mut tried = Vec::new();
        let mut delays = Vec::new();
        for _ in 0..6 {
            tried.push(dialer.endpoint().expect("endpoint"));
            delays.push(dialer.handle_session_end(false, 0));
        }
        assert_eq!(tried, [&list[..], &list[..]].concat());
        assert_eq!(delays[0], NEXT_ENDPOINT_DELAY);
        assert_eq!(delays[1], NEXT_ENDPOINT_DELAY);
        assert!(delays[2] >= Duration::from_millis(800), "{:?}", delays[2]);
        assert!(
            delays[5] >= Duration::from_millis(1600),
            "doubled: {:?}",
            delays[5]
        );
    }

    #[test]
    fn the_endpoint_that_welcomed_is_tried_first_again() {
        let list = endpoints(3);
        let mut dialer = Dialer::new(list.clone());
        dialer.handle_session_end(false, 0);
        assert_eq!(dialer.endpoint(), Some(list[1]));
        let delay = dialer.handle_session_end(true, 0);
        assert!(
            delay <= Duration::from_millis(1200),
            "backoff reset: {delay:?}"
        );
        assert_eq!(dialer.endpoint(), Some(list[1]));
        // It fails next: the others get their turn before any backoff.
        assert_eq!(dialer.handle_session_end(false, 0), NEXT_ENDPOINT_DELAY);
        assert_eq!(dialer.endpoint(), Some(list[2]));
    }

    #[test]
    fn relay_paths_follow_the_configured_endpoints_which_never_leave() {
        let configured = endpoints(1);
        let exit: SocketAddr = "[fd00::1]:51819".parse().expect("addr");
        let neighbour: SocketAddr = "[fe80::2%3]:51819".parse().expect("addr");
        let mut dialer = Dialer::new(configured.clone());
        dialer.handle_relay_paths(&[exit], &[neighbour, exit]);
        let mut round = Vec::new();
        for _ in 0..3 {
            round.push(dialer.path().expect("path"));
            dialer.handle_session_end(false, 0);
        }
        assert_eq!(
            round,
            [
                DialPath {
                    addr: configured[0],
                    kind: PathKind::Underlay
                },
                DialPath {
                    addr: exit,
                    kind: PathKind::Exit
                },
                DialPath {
                    addr: neighbour,
                    kind: PathKind::Neighbour
                },
            ],
            "in order, the exit once"
        );
        // The exit answers; the lists change; it keeps its turn.
        dialer.handle_session_end(false, 0);
        assert_eq!(dialer.endpoint(), Some(exit));
        dialer.handle_session_end(true, 0);
        dialer.handle_relay_paths(&[exit], &[]);
        assert_eq!(dialer.endpoint(), Some(exit));
        // Every relay path gone: the underlay endpoint is still dialled.
        dialer.handle_relay_paths(&[], &[]);
        assert_eq!(dialer.endpoint(), Some(configured[0]));
    }

    #[test]
    fn after_a_session_through_a_neighbour_the_round_starts_from_the_top() {
        let configured = endpoints(1);
        let exit: SocketAddr = "[fd00::1]:51819".parse().expect("addr");
        let neighbour: SocketAddr = "[fe80::2%3]:51819".parse().expect("addr");
        let mut dialer = Dialer::new(configured.clone());
        dialer.handle_relay_paths(&[], &[neighbour]);
        dialer.handle_session_end(false, 0);
        assert_eq!(dialer.endpoint(), Some(neighbour));
        // Enrolled through the neighbour; the controller named an exit.
        dialer.handle_relay_paths(&[exit], &[neighbour]);
        assert_eq!(dialer.endpoint(), Some(neighbour), "keeps its turn");
        dialer.handle_session_end(true, 0);
        assert_eq!(dialer.endpoint(), Some(configured[0]));
        dialer.handle_session_end(false, 0);
        assert_eq!(dialer.endpoint(), Some(exit));
    }

    #[test]
    fn a_session_through_a_neighbour_moves_to_an_exit_and_backs_off_when_it_cannot() {
        let start = Instant::now();
        let configured = endpoints(1);
        let exit: SocketAddr = "[fd00::1]:51819".parse().expect("addr");
        let neighbour = DialPath {
            addr: "[fe80::2%3]:51819".parse().expect("addr"),
            kind: PathKind::Neighbour,
        };
        let mut dialer = Dialer::new(configured);
        dialer.handle_relay_paths(&[], &[neighbour.addr]);
        dialer.handle_session_end(false, 0);
        dialer.handle_welcomed(neighbour, start);
        assert_eq!(dialer.poll_leave(), None, "no exit to move to yet");
        dialer.handle_relay_paths(&[exit], &[neighbour.addr]);
        assert_eq!(
            dialer.poll_leave(),
            Some(start + LEAVE_NEIGHBOUR_RELAY_AFTER)
        );
        // It leaves; the exit does not answer; back on the neighbour.
        dialer.handle_leave();
        dialer.handle_session_end(true, 0);
        assert_eq!(dialer.poll_leave(), None, "no session");
        dialer.handle_session_end(false, 0);
        assert_eq!(dialer.endpoint(), Some(exit), "the exit is tried first");
        dialer.handle_session_end(false, 0);
        assert_eq!(dialer.path(), Some(neighbour));
        let later = start + Duration::from_secs(60);
        dialer.handle_welcomed(neighbour, later);
        assert_eq!(
            dialer.poll_leave(),
            Some(later + 2 * LEAVE_NEIGHBOUR_RELAY_AFTER),
            "waits twice as long"
        );
        for _ in 0..20 {
            dialer.handle_leave();
        }
        assert_eq!(dialer.poll_leave(), Some(later + LEAVE_NEIGHBOUR_RELAY_MAX));
        // Welcomed through the exit at last: the next move waits the minimum,
        // and a session through an exit never leaves.
        let exit_path = DialPath {
            addr: exit,
            kind: PathKind::Exit,
        };
        dialer.handle_welcomed(exit_path, later);
        assert_eq!(dialer.poll_leave(), None);
        dialer.handle_welcomed(neighbour, later);
        assert_eq!(
            dialer.poll_leave(),
            Some(later + LEAVE_NEIGHBOUR_RELAY_AFTER)
        );
    }

    #[test]
    fn a_newcomer_hearing_relays_retries_within_five_seconds_until_it_has_exits() {
        let configured = endpoints(1);
        let neighbour: SocketAddr = "[fe80::2%3]:51819".parse().expect("addr");
        let exit: SocketAddr = "[fd00::1]:51819".parse().expect("addr");
        let mut dialer = Dialer::new(configured);
        dialer.handle_relay_paths(&[], &[neighbour]);
        for _ in 0..10 {
            dialer.handle_session_end(false, 0);
            assert!(dialer.handle_session_end(false, 0) <= NEIGHBOUR_ROUND_MAX);
        }
        // With exits (an enrolled router) the backoff grows as before.
        dialer.handle_relay_paths(&[exit], &[neighbour]);
        let delays: Vec<Duration> = (0..3)
            .map(|_| dialer.handle_session_end(false, 0))
            .collect();
        assert!(delays[2] > NEIGHBOUR_ROUND_MAX, "{delays:?}");
    }

    #[test]
    fn a_session_whose_route_is_gone_redials_through_the_neighbours_at_once() {
        let configured = endpoints(1);
        let exit: SocketAddr = "[fd00::1]:51819".parse().expect("addr");
        let neighbour: SocketAddr = "[fe80::2%3]:51819".parse().expect("addr");
        let mut dialer = Dialer::new(configured.clone());
        dialer.handle_relay_paths(&[exit], &[neighbour]);
        dialer.handle_session_end(false, 0);
        assert_eq!(dialer.endpoint(), Some(exit));
        dialer.handle_path_lost();
        assert_eq!(dialer.handle_session_end(true, 0), NEXT_ENDPOINT_DELAY);
        assert_eq!(dialer.endpoint(), Some(neighbour));
        // Once: the next end follows the usual rules (a welcomed session
        // through a neighbour starts the round from the top again).
        dialer.handle_session_end(true, 0);
        assert_eq!(dialer.endpoint(), Some(configured[0]));
    }

    #[test]
    fn an_unenrolled_router_without_endpoints_dials_its_neighbours() {
        let neighbour: SocketAddr = "[fe80::2%3]:51819".parse().expect("addr");
        let mut dialer = Dialer::new(Vec::new());
        assert_eq!(dialer.endpoint(), None);
        dialer.handle_relay_paths(&[], &[neighbour]);
        assert_eq!(dialer.endpoint(), Some(neighbour));
    }

    #[test]
    fn an_empty_list_dials_nothing() {
        let mut dialer = Dialer::new(Vec::new());
        assert_eq!(dialer.endpoint(), None);
        assert!(dialer.handle_session_end(false, 0) >= Duration::from_millis(800));
    }

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
