//! Former next hops, for the feasible-source rule
//! ([`Engine::admit`](super::Engine)): a neighbour stays a feasible source
//! for a prefix for [`FEASIBLE_HOLD`] after it stopped being one of our
//! next hops toward it.
//!
//! Route changes reach the nodes along a path at slightly different
//! moments: when the controller moves a path away from a neighbour (a
//! drain, a recomputation after a failure), the node upstream may still
//! send through it for a few milliseconds while we already have the new
//! routes, and without this hold those packets would be dropped as
//! spoofed. The cost is bounded by the routes we hold: one entry per
//! (prefix, former hop), gone after the hold.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::core::LinkId;
use crate::core::table::Hop;

/// How long a former next hop stays a feasible source. A route change
/// reaches every node within a second; five minutes also cover an
/// operator's drain, maintenance and undrain of a transit node, during
/// which the drained node is no next hop anywhere but comes back as one
/// (the nodes behind it may switch back before we hear it is a next hop
/// again). What it allows: a neighbour that really was on the way to a
/// source within the last five minutes may still send from it.
pub(super) const FEASIBLE_HOLD: Duration = Duration::from_secs(300);

/// Former next hops per prefix, each with the end of its hold (`None`
/// until the engine's next timer tick stamps it: route changes come
/// without a clock).
#[derive(Debug, Default)]
pub(super) struct FormerHops {
    by_prefix: BTreeMap<IpNet, BTreeMap<LinkId, Option<Instant>>>,
    unstamped: Vec<IpNet>,
    /// Holds in the order they end.
    expiry: VecDeque<(Instant, IpNet, LinkId)>,
}

impl FormerHops {
    /// The route for `prefix` changed from `old` to `new` hops: links that
    /// left start their hold, links that are (again) in `new` are current.
    pub(super) fn route_changed(&mut self, prefix: IpNet, old: &[Hop], new: &[Hop]) {
        let entry = self.by_prefix.entry(prefix).or_default();
        let mut left = false;
        for hop in old {
            if let Hop::Link(link) = hop
                && !new.contains(hop)
            {
                entry.insert(*link, None);
                left = true;
            }
        }
        for hop in new {
            if let Hop::Link(link) = hop {
                entry.remove(link);
            }
        }
        if entry.is_empty() {
            self.by_prefix.remove(&prefix);
        } else if left {
            self.unstamped.push(prefix);
        }
    }

    /// Whether `link` was a next hop toward `prefix` within the hold.
    pub(super) fn contains(&self, prefix: IpNet, link: LinkId) -> bool {
        self.by_prefix
            .get(&prefix)
            .is_some_and(|links| links.contains_key(&link))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    /// Stamps new holds and ends the ones that are over.
    pub(super) fn tick(&mut self, now: Instant) {
        let until = now + FEASIBLE_HOLD;
        for prefix in std::mem::take(&mut self.unstamped) {
            if let Some(links) = self.by_prefix.get_mut(&prefix) {
                for (link, end) in links.iter_mut().filter(|(_, end)| end.is_none()) {
                    *end = Some(until);
                    self.expiry.push_back((until, prefix, *link));
                }
            }
        }
        while let Some(&(end, prefix, link)) = self.expiry.front() {
            if end > now {
                break;
            }
            self.expiry.pop_front();
            if let Some(links) = self.by_prefix.get_mut(&prefix) {
                // A hold restarted since (the link came back and left
                // again) has a later end: keep it.
                if links.get(&link) == Some(&Some(end)) {
                    links.remove(&link);
                }
                if links.is_empty() {
                    self.by_prefix.remove(&prefix);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    #[test]
    fn a_former_hop_is_held_for_the_hold_then_forgotten() {
        let (a, b, c) = (LinkId(0), LinkId(1), LinkId(2));
        let p = net("10.99.0.1/32");
        let mut former = FormerHops::default();
        former.route_changed(p, &[], &[Hop::Link(a), Hop::Link(b)]);
        assert!(former.is_empty(), "a new route has no former hops");
        former.route_changed(p, &[Hop::Link(a), Hop::Link(b)], &[Hop::Link(c)]);
        assert!(former.contains(p, a) && former.contains(p, b));
        assert!(!former.contains(p, c), "c is current, not former");
        let start = Instant::now();
        former.tick(start);
        former.tick(start + FEASIBLE_HOLD - Duration::from_millis(1));
        assert!(former.contains(p, a), "still within the hold");
        // b comes back and leaves again: its hold starts over.
        former.route_changed(p, &[Hop::Link(c)], &[Hop::Link(b), Hop::Link(c)]);
        assert!(!former.contains(p, b));
        former.route_changed(p, &[Hop::Link(b), Hop::Link(c)], &[Hop::Link(c)]);
        let later = start + Duration::from_secs(10);
        former.tick(later);
        former.tick(start + FEASIBLE_HOLD);
        assert!(!former.contains(p, a), "a's hold is over");
        assert!(former.contains(p, b), "b's second hold is not");
        former.tick(later + FEASIBLE_HOLD);
        assert!(!former.contains(p, b));
        assert!(former.is_empty(), "nothing left behind");
    }

    #[test]
    fn a_removed_route_holds_its_hops_too() {
        let p = net("10.20.0.0/24");
        let mut former = FormerHops::default();
        former.route_changed(p, &[Hop::Local, Hop::Link(LinkId(4))], &[]);
        assert!(former.contains(p, LinkId(4)));
        let now = Instant::now();
        former.tick(now);
        former.tick(now + FEASIBLE_HOLD);
        assert!(former.is_empty());
    }
}
