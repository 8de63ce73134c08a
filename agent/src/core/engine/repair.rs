//! Local repair: what the engine does when a link's liveness changes, and
//! what neighbours tell each other about prefixes they lost.
//!
//! * A link goes down: the table switches every next-hop group that used it
//!   to its first live alternate in one step (cost: the groups using the
//!   link, not the prefixes). Prefixes left with no live hop at all are
//!   *lost*: the node withdraws them from every neighbour at once, inside
//!   the tunnels, so nodes upstream switch to their own alternates without
//!   waiting for a controller.
//! * A neighbour withdraws prefixes: they stop using that neighbour for
//!   them (and may in turn lose them and withdraw further). A withdrawal for
//!   a prefix we only cover with a shorter route installs a more specific
//!   repair route without that neighbour.
//! * A link comes back after its hold-down: groups switch back to the
//!   primary, regained prefixes are restored to the neighbours, and the
//!   returning neighbour hears which prefixes we still lack.
//!
//! Withdrawals only ever remove next hops from lists the controller (or
//! operator) computed to be loop-free, so they cannot create a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::mesh::{MeshMessage, MeshPacket, PREFIXES_PER_MESSAGE, Timing, WirePrefix};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{EVENT_HISTORY, Engine};
use crate::core::LinkId;
use crate::core::liveness::{DownCause, Transition};
use crate::core::table::Hop;

/// Route bookkeeping behind the table.
#[derive(Debug, Default)]
pub(super) struct Repair {
    /// Routes as configured (primary first, then loop-free alternates).
    pub configured: BTreeMap<IpNet, Vec<Hop>>,
    /// More specific routes installed because a neighbour withdrew a prefix
    /// we only had a shorter route for, with the neighbour whose withdrawal
    /// created each one.
    derived: BTreeMap<IpNet, LinkId>,
    /// How many entries of `derived` each neighbour created; at most
    /// [`MAX_DERIVED_ROUTES_PER_LINK`].
    derived_per_link: BTreeMap<LinkId, usize>,
    /// Withdrawals ignored because their neighbour reached
    /// [`MAX_DERIVED_ROUTES_PER_LINK`].
    pub refused_derived: u64,
    /// For each prefix, the neighbours that withdrew it.
    withdrawn: BTreeMap<IpNet, BTreeSet<LinkId>>,
    /// For each neighbour, the prefixes it withdrew.
    withdrawn_by: BTreeMap<LinkId, BTreeSet<IpNet>>,
    /// Prefixes this node has no live path to (and withdrew).
    pub lost: BTreeSet<IpNet>,
    /// Default routes withdrawn from one neighbour only, while our uplink
    /// is down, because that neighbour is now our next hop for them.
    pub poisoned: BTreeMap<LinkId, BTreeSet<IpNet>>,
}

/// How many repair routes one neighbour's withdrawals may create here.
///
/// Withdrawals of prefixes we hold a route for only change that route, so
/// they are bounded by the table the controller gave us; a withdrawal of a
/// more specific prefix creates a new route, and without a cap a neighbour
/// could make us hold one per address it cares to name (2^128 of them).
/// An honest neighbour withdraws more specific prefixes only for the few
/// destinations it has finer routes for than we do (roaming clients' host
/// routes, a building LAN inside a covering prefix): 256 is far above that
/// in a city mesh, and at a few hundred bytes per route it costs at most
/// ~100 KB per link on a 128 MB router. Beyond the cap a withdrawal of a
/// new more specific prefix is ignored: traffic for it keeps following the
/// shorter route, which is what happened before local repair existed
/// (the controller's global repair still fixes it).
pub(super) const MAX_DERIVED_ROUTES_PER_LINK: usize = 256;

impl Repair {
    fn add_derived(&mut self, prefix: IpNet, link: LinkId) {
        if self.derived.insert(prefix, link).is_none() {
            *self.derived_per_link.entry(link).or_default() += 1;
        }
    }

    fn remove_derived(&mut self, prefix: IpNet) {
        if let Some(link) = self.derived.remove(&prefix)
            && let Some(count) = self.derived_per_link.get_mut(&link)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.derived_per_link.remove(&link);
            }
        }
    }

    fn derived_by(&self, link: LinkId) -> usize {
        self.derived_per_link.get(&link).copied().unwrap_or(0)
    }

    /// How many repair routes exist because of `link`'s withdrawals.
    #[cfg(test)]
    pub(super) fn derived_count(&self, link: LinkId) -> usize {
        self.derived_by(link)
    }
}

/// Something that happened to a link or route, kept for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    LinkDown {
        link: LinkId,
        cause: DownCause,
        silent_for: Duration,
        groups: usize,
        rerouted: usize,
        lost: usize,
    },
    LinkUp {
        link: LinkId,
        groups: usize,
        rerouted: usize,
        restored: usize,
    },
    Withdrawn {
        link: LinkId,
        prefixes: usize,
        lost: usize,
    },
    Restored {
        link: LinkId,
        prefixes: usize,
        regained: usize,
    },
    /// The gateway's uplink changed state; `prefixes` were lost (down) or
    /// regained (up) here.
    Uplink {
        up: bool,
        groups: usize,
        rerouted: usize,
        prefixes: usize,
    },
}

/// How many failovers wait for [`Engine::poll_failover`] at most; older
/// ones are dropped first (the controller only needs them for its history).
const FAILOVER_QUEUE: usize = 256;

/// A link this node took down and what its local repair did, for the
/// controller's event history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    pub peer: PublicKeyBytes,
    pub cause: DownCause,
    /// From the last sign of life to the decision.
    pub silent_for: Duration,
    /// Prefixes moved to an alternate next hop.
    pub rerouted: usize,
    /// Prefixes left without a live path.
    pub lost: usize,
    /// When the link went down.
    pub at: Instant,
}

impl Engine {
    /// The next link this node took down, oldest first, for the
    /// controller's event history. Drain it after each call, like
    /// [`Engine::poll_output`]; at most 256 wait (`FAILOVER_QUEUE`), the
    /// oldest dropped first.
    pub fn poll_failover(&mut self) -> Option<Failover> {
        self.failovers.pop_front()
    }
}

/// An event as `freimesh-agent status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventView {
    pub age_ms: u64,
    pub link: String,
    pub kind: String,
    pub detail: String,
}

impl Event {
    pub(super) fn view(&self, age: Duration, hop_name: &dyn Fn(Hop) -> String) -> EventView {
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        let (link, kind, detail) = match self {
            Event::Uplink {
                up,
                groups,
                rerouted,
                prefixes,
            } => {
                let (kind, what) = if *up {
                    ("uplink-up", "restored")
                } else {
                    ("uplink-down", "lost")
                };
                return EventView {
                    age_ms,
                    link: "uplink".to_owned(),
                    kind: kind.to_owned(),
                    detail: format!(
                        "{groups} groups switched, {rerouted} prefixes rerouted, {prefixes} {what}"
                    ),
                };
            }
            Event::LinkDown {
                link,
                cause,
                silent_for,
                groups,
                rerouted,
                lost,
            } => (
                link,
                "link-down",
                format!(
                    "cause {}, detected after {} ms of silence; {groups} groups switched, {rerouted} prefixes rerouted, {lost} lost",
                    cause_name(*cause),
                    silent_for.as_millis()
                ),
            ),
            Event::LinkUp {
                link,
                groups,
                rerouted,
                restored,
            } => (
                link,
                "link-up",
                format!(
                    "{groups} groups switched back, {rerouted} prefixes rerouted, {restored} restored"
                ),
            ),
            Event::Withdrawn {
                link,
                prefixes,
                lost,
            } => (
                link,
                "withdrawn",
                format!("neighbour withdrew {prefixes} prefixes; {lost} now lost here"),
            ),
            Event::Restored {
                link,
                prefixes,
                regained,
            } => (
                link,
                "restored",
                format!("neighbour restored {prefixes} prefixes; {regained} regained here"),
            ),
        };
        EventView {
            age_ms,
            link: hop_name(Hop::Link(*link)),
            kind: kind.to_owned(),
            detail,
        }
    }
}

/// A sample beyond this is an echo from a previous run (or a clock value
/// that wrapped): no tunnel round trip takes 10 s.
const MAX_RTT_SAMPLE_US: u32 = 10_000_000;

/// The microsecond clock in `LinkState` is 32 bits on the wire: it wraps
/// every ~71 minutes, and round trips are taken modulo the wrap.
const CLOCK_WRAP_US: u128 = 1 << 32;

/// The round trip a `LinkState` from the neighbour proves, in microseconds,
/// or `None` if it proves nothing. The neighbour supplies `echo_us` (our
/// clock value it saw last) and `held_us` (how long it kept it), and could
/// lie about both to look closer than it is:
///
/// * the echo must be a clock value we really sent on this link
///   (`sent_clocks`), so it cannot be moved forward to shrink the
///   elapsed time;
/// * `held_us` is clamped to the time that actually passed since we sent
///   that value: an honest neighbour can never have held it longer. A
///   claim beyond it is a lie, and we then trust none of it (held = 0): the
///   sample is the whole elapsed time, the largest round trip it can be,
///   so lying makes a neighbour look far, never close.
///
/// What is left: a neighbour can claim to have held our value up to the
/// time it really did (at most its state-refresh period), which is why
/// the controller also takes the larger of both ends' measurements.
pub(super) fn rtt_from_echo(clock_us: u32, timing: Timing, sent_clocks: &[u32]) -> Option<u32> {
    if timing.echo_us == 0 || !sent_clocks.contains(&timing.echo_us) {
        return None;
    }
    let elapsed = clock_us.wrapping_sub(timing.echo_us);
    if elapsed >= MAX_RTT_SAMPLE_US {
        return None;
    }
    let held = if timing.held_us > elapsed {
        tracing::debug!(
            held_us = timing.held_us,
            elapsed_us = elapsed,
            "neighbour claims to have held our clock longer than it existed; hold ignored"
        );
        0
    } else {
        timing.held_us
    };
    Some(elapsed - held)
}

fn cause_name(cause: DownCause) -> &'static str {
    match cause {
        DownCause::Silence => "silence",
        DownCause::PeerDoesNotHearUs => "peer does not hear us",
        DownCause::Carrier => "carrier loss",
    }
}

fn to_wire(prefix: IpNet) -> WirePrefix {
    WirePrefix {
        addr: prefix.addr(),
        len: prefix.prefix_len(),
    }
}

fn from_wire(prefix: WirePrefix) -> Option<IpNet> {
    IpNet::new(prefix.addr, prefix.len).ok().map(|p| p.trunc())
}

impl Engine {
    /// Acts on a change of a link's liveness.
    pub(super) fn apply_transition(&mut self, link: LinkId, transition: Transition, now: Instant) {
        match transition {
            Transition::Down { cause, silent_for } => {
                let changes = self.table.set_link_up(link, false);
                let rerouted = changes
                    .iter()
                    .filter(|c| c.after.is_some())
                    .map(|c| c.prefixes)
                    .sum();
                let mut lost = Vec::new();
                for change in changes.iter().filter(|c| c.after.is_none()) {
                    if let Some(group) = self.table.group(change.group) {
                        lost.extend(group.prefixes().iter().copied());
                    }
                }
                let newly_lost: Vec<IpNet> = lost
                    .into_iter()
                    .filter(|p| self.repair.lost.insert(*p))
                    .collect();
                tracing::info!(
                    link = %self.links[link.0].name, ?cause, detected_after_ms = silent_for.as_millis(),
                    groups = changes.len(), rerouted, lost = newly_lost.len(), "link down: switched to alternates"
                );
                self.record(
                    now,
                    Event::LinkDown {
                        link,
                        cause,
                        silent_for,
                        groups: changes.len(),
                        rerouted,
                        lost: newly_lost.len(),
                    },
                );
                if self.failovers.len() == FAILOVER_QUEUE {
                    self.failovers.pop_front();
                }
                self.failovers.push_back(Failover {
                    peer: self.links[link.0].peer,
                    cause,
                    silent_for,
                    rerouted,
                    lost: newly_lost.len(),
                    at: now,
                });
                self.announce(&newly_lost, true, now);
                // Tell the neighbour at once that we no longer hear it, in
                // case only one direction failed.
                self.send_link_state(link, now);
            }
            Transition::Up => {
                // A neighbour that comes back starts with a clean slate: it
                // withdraws again what it still lacks.
                let forgotten = self.repair.withdrawn_by.remove(&link).unwrap_or_default();
                for prefix in &forgotten {
                    if let Some(set) = self.repair.withdrawn.get_mut(prefix) {
                        set.remove(&link);
                    }
                }
                let changes = self.table.set_link_up(link, true);
                let rerouted = changes.iter().map(|c| c.prefixes).sum();
                let mut regained = Vec::new();
                for change in changes.iter().filter(|c| c.before.is_none()) {
                    if let Some(group) = self.table.group(change.group) {
                        regained.extend(group.prefixes().iter().copied());
                    }
                }
                for prefix in forgotten {
                    self.reapply(prefix);
                }
                let regained: Vec<IpNet> = regained
                    .into_iter()
                    .filter(|p| self.repair.lost.remove(p))
                    .collect();
                tracing::info!(
                    link = %self.links[link.0].name, groups = changes.len(), rerouted, restored = regained.len(),
                    "link up"
                );
                self.record(
                    now,
                    Event::LinkUp {
                        link,
                        groups: changes.len(),
                        rerouted,
                        restored: regained.len(),
                    },
                );
                self.announce(&regained, false, now);
                self.send_link_state(link, now);
                self.send_lost_set(link, now);
            }
        }
    }

    /// A message from the neighbour at the other end of `link`.
    pub(super) fn handle_mesh_message(&mut self, link: LinkId, message: MeshMessage, now: Instant) {
        match message {
            MeshMessage::LinkState { hears_you, timing } => {
                let clock = self.clock_us(now);
                let state = &mut self.links[link.0];
                if let Some(rtt_us) = rtt_from_echo(clock, timing, &state.sent_clocks) {
                    state.rtt_sample(Duration::from_micros(u64::from(rtt_us)), now);
                }
                state.peer_clock = Some((timing.clock_us, now));
                state
                    .liveness
                    .set_peer_interval(Duration::from_millis(u64::from(timing.interval_ms)));
                if let Some(transition) = self.links[link.0].liveness.peer_state(hears_you, now) {
                    self.apply_transition(link, transition, now);
                }
                if self.links[link.0].liveness.take_hearing_resumed() {
                    self.send_link_state(link, now);
                }
            }
            MeshMessage::Withdraw(prefixes) => {
                let mut count = 0;
                let mut newly_lost = Vec::new();
                let refused_before = self.repair.refused_derived;
                for prefix in prefixes.into_iter().filter_map(from_wire) {
                    if !self.neighbour_withdraws(link, prefix) {
                        continue;
                    }
                    count += 1;
                    if self.reapply(prefix) == Some(false) {
                        newly_lost.push(prefix);
                    }
                }
                if self.repair.refused_derived > refused_before {
                    // Debug, not warn: a hostile neighbour could otherwise
                    // flood the log as well; `status` shows the total.
                    tracing::debug!(
                        link = %self.links[link.0].name,
                        refused = self.repair.refused_derived - refused_before,
                        cap = MAX_DERIVED_ROUTES_PER_LINK,
                        "withdrawals of more specific prefixes beyond the per-link cap ignored"
                    );
                }
                if count > 0 {
                    tracing::info!(link = %self.links[link.0].name, prefixes = count, lost = newly_lost.len(), "neighbour withdrew prefixes");
                    self.record(
                        now,
                        Event::Withdrawn {
                            link,
                            prefixes: count,
                            lost: newly_lost.len(),
                        },
                    );
                }
                self.announce(&newly_lost, true, now);
            }
            MeshMessage::LostSet(prefixes) => {
                let wanted: BTreeSet<IpNet> = prefixes.into_iter().filter_map(from_wire).collect();
                let had = self
                    .repair
                    .withdrawn_by
                    .get(&link)
                    .cloned()
                    .unwrap_or_default();
                let restore: Vec<WirePrefix> =
                    had.difference(&wanted).copied().map(to_wire).collect();
                let withdraw: Vec<WirePrefix> =
                    wanted.difference(&had).copied().map(to_wire).collect();
                if !withdraw.is_empty() {
                    self.handle_mesh_message(link, MeshMessage::Withdraw(withdraw), now);
                }
                if !restore.is_empty() {
                    self.handle_mesh_message(link, MeshMessage::Restore(restore), now);
                }
            }
            MeshMessage::Restore(prefixes) => {
                let mut count = 0;
                let mut regained = Vec::new();
                for prefix in prefixes.into_iter().filter_map(from_wire) {
                    let Some(set) = self.repair.withdrawn.get_mut(&prefix) else {
                        continue;
                    };
                    if !set.remove(&link) {
                        continue;
                    }
                    if set.is_empty() {
                        self.repair.withdrawn.remove(&prefix);
                    }
                    if let Some(by) = self.repair.withdrawn_by.get_mut(&link) {
                        by.remove(&prefix);
                    }
                    count += 1;
                    if self.reapply(prefix) == Some(true) {
                        regained.push(prefix);
                    }
                }
                if count > 0 {
                    tracing::info!(link = %self.links[link.0].name, prefixes = count, regained = regained.len(), "neighbour restored prefixes");
                    self.record(
                        now,
                        Event::Restored {
                            link,
                            prefixes: count,
                            regained: regained.len(),
                        },
                    );
                }
                self.announce(&regained, false, now);
            }
        }
    }

    /// Records that `link` withdrew `prefix`; false if that changes nothing
    /// (we never route `prefix` via `link`, or knew it already).
    fn neighbour_withdraws(&mut self, link: LinkId, prefix: IpNet) -> bool {
        let uses_link = |hops: &Vec<Hop>| hops.contains(&Hop::Link(link));
        if !self.repair.configured.get(&prefix).is_some_and(uses_link) {
            // Only a shorter route covers it: derive a more specific repair
            // route from that one, without the withdrawing neighbour.
            let Some((_, group)) = self.table.covering(prefix) else {
                return false;
            };
            let hops = group.hops().to_vec();
            if !uses_link(&hops) || self.repair.configured.contains_key(&prefix) {
                return false;
            }
            if self.repair.derived_by(link) >= MAX_DERIVED_ROUTES_PER_LINK {
                self.repair.refused_derived += 1;
                return false;
            }
            self.repair.configured.insert(prefix, hops);
            self.repair.add_derived(prefix, link);
        }
        let fresh = self
            .repair
            .withdrawn
            .entry(prefix)
            .or_default()
            .insert(link);
        self.repair
            .withdrawn_by
            .entry(link)
            .or_default()
            .insert(prefix);
        fresh
    }

    /// Forgets a route entirely (the controller no longer computes it).
    pub(super) fn remove_route(&mut self, prefix: IpNet) {
        if let Some(old) = self.repair.configured.remove(&prefix) {
            self.former_hops.route_changed(prefix, &old, &[]);
        }
        self.repair.remove_derived(prefix);
        if let Some(links) = self.repair.withdrawn.remove(&prefix) {
            for link in links {
                if let Some(set) = self.repair.withdrawn_by.get_mut(&link) {
                    set.remove(&prefix);
                }
            }
        }
        self.repair.lost.remove(&prefix);
        for prefixes in self.repair.poisoned.values_mut() {
            prefixes.remove(&prefix);
        }
        self.table.remove(prefix);
        self.route_segments.remove(&prefix);
        self.reclassify(prefix);
    }

    /// Reinstalls `prefix` with its configured hops minus those withdrawn.
    /// Returns `Some(reachable)` if its reachability changed, and keeps the
    /// lost set in step.
    pub(super) fn reapply(&mut self, prefix: IpNet) -> Option<bool> {
        let excluded = self
            .repair
            .withdrawn
            .get(&prefix)
            .cloned()
            .unwrap_or_default();
        if self.repair.derived.contains_key(&prefix) && excluded.is_empty() {
            // The repair route is no longer needed: the shorter route it was
            // derived from serves the prefix again.
            self.repair.remove_derived(prefix);
            self.repair.configured.remove(&prefix);
            self.table.remove(prefix);
        } else if let Some(hops) = self.repair.configured.get(&prefix) {
            let mut effective: Vec<Hop> = hops
                .iter()
                .copied()
                .filter(|h| !matches!(h, Hop::Link(l) if excluded.contains(l)))
                .collect();
            if effective.is_empty() {
                // Keep the prefix in the table so a shorter route cannot
                // pull its packets toward a neighbour that withdrew it.
                effective.push(Hop::Unreachable);
            }
            // Cannot fail: the hops were validated when configured.
            let _ = self.table.insert(prefix, effective);
        }
        let reachable = match self.table.route(prefix) {
            Some(group) => group.active().is_some(),
            None => self
                .table
                .covering(prefix)
                .is_some_and(|(_, g)| g.active().is_some()),
        };
        let tracked = self.repair.configured.contains_key(&prefix);
        let was_lost = self.repair.lost.contains(&prefix);
        match (reachable, was_lost) {
            (false, false) if tracked => {
                self.repair.lost.insert(prefix);
                Some(false)
            }
            (true, true) => {
                self.repair.lost.remove(&prefix);
                Some(true)
            }
            (false, true) if !tracked => {
                // No longer ours to track; the covering prefix speaks for it.
                self.repair.lost.remove(&prefix);
                None
            }
            _ => None,
        }
    }

    /// Withdraws (or restores) `prefixes` on every neighbour that speaks
    /// freimesh and is up.
    pub(super) fn announce(&mut self, prefixes: &[IpNet], withdraw: bool, now: Instant) {
        if prefixes.is_empty() {
            return;
        }
        for i in 0..self.links.len() {
            if self.links[i].liveness.profile.interval.is_some() && self.links[i].liveness.is_up() {
                self.send_prefixes(LinkId(i), prefixes, withdraw, now);
            }
        }
    }

    /// Tells `link` every prefix we lack, as one replacing `LostSet` when
    /// it fits in a message, else as additive withdrawals.
    pub(super) fn send_lost_set(&mut self, link: LinkId, now: Instant) {
        if !self.links[link.0].liveness.is_up()
            || self.links[link.0].liveness.profile.interval.is_none()
        {
            return;
        }
        let mut lost: BTreeSet<IpNet> = self.repair.lost.clone();
        if let Some(poisoned) = self.repair.poisoned.get(&link) {
            lost.extend(poisoned.iter().copied());
        }
        let lost: Vec<IpNet> = lost.into_iter().collect();
        if lost.len() <= PREFIXES_PER_MESSAGE {
            let wire = lost.into_iter().map(to_wire).collect();
            self.send_mesh(link, MeshMessage::LostSet(wire), now);
        } else {
            self.send_prefixes(link, &lost, true, now);
        }
    }

    pub(super) fn send_prefixes(
        &mut self,
        link: LinkId,
        prefixes: &[IpNet],
        withdraw: bool,
        now: Instant,
    ) {
        // Only to neighbours that are up: anything sent before the session
        // is established would wait in boringtun's queue and could arrive
        // after a newer message. A neighbour that comes up hears our full
        // lost set then.
        if !self.links[link.0].liveness.is_up()
            || self.links[link.0].liveness.profile.interval.is_none()
        {
            return;
        }
        for chunk in prefixes.chunks(PREFIXES_PER_MESSAGE) {
            let wire: Vec<WirePrefix> = chunk.iter().copied().map(to_wire).collect();
            let message = if withdraw {
                MeshMessage::Withdraw(wire)
            } else {
                MeshMessage::Restore(wire)
            };
            self.send_mesh(link, message, now);
        }
    }

    pub(super) fn send_link_state(&mut self, link: LinkId, now: Instant) {
        if !self.links[link.0].liveness.has_state_to_report() {
            return;
        }
        let hears_you = self.links[link.0].liveness.hears_peer(now);
        let (echo_us, held_us) = match self.links[link.0].peer_clock {
            Some((clock, at)) => (
                clock,
                u32::try_from(now.saturating_duration_since(at).as_micros()).unwrap_or(u32::MAX),
            ),
            None => (0, 0),
        };
        // 0 means "no echo": never send it as a clock value.
        let clock_us = self.clock_us(now).max(1);
        self.links[link.0].remember_sent_clock(clock_us);
        let interval_ms = self.links[link.0]
            .liveness
            .profile
            .interval
            .map_or(0, |i| u32::try_from(i.as_millis()).unwrap_or(u32::MAX));
        let timing = Timing {
            clock_us,
            echo_us,
            held_us,
            interval_ms,
        };
        self.send_mesh(link, MeshMessage::LinkState { hears_you, timing }, now);
    }

    /// Our free-running microsecond clock for RTT exchanges.
    fn clock_us(&self, now: Instant) -> u32 {
        let micros = now.saturating_duration_since(self.epoch).as_micros();
        u32::try_from(micros % CLOCK_WRAP_US).unwrap_or(0)
    }

    fn send_mesh(&mut self, link: LinkId, message: MeshMessage, now: Instant) {
        let state = &mut self.links[link.0];
        state.mesh_tx_sequence = state.mesh_tx_sequence.wrapping_add(1);
        let packet = MeshPacket {
            incarnation: self.incarnation,
            sequence: state.mesh_tx_sequence,
            message,
        };
        self.send_on_link(link, &packet.encode(), now);
    }

    pub(super) fn record(&mut self, now: Instant, event: Event) {
        if self.events.len() == EVENT_HISTORY {
            self.events.pop_front();
        }
        self.events.push_back((now, event));
    }
}
